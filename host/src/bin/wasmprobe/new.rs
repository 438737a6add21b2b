//! `wasmprobe new plugin`: scaffold a plugin from the templates.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{Exit, Status};

pub(crate) fn new_plugin(
    name: &str,
    lang: wasmprobe::scaffold::Lang,
    dir: Option<PathBuf>,
    sdk: Option<PathBuf>,
    carry_sdk: bool,
) -> Result<ExitCode, Exit> {
    use wasmprobe::scaffold::{Lang, Sdk};
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let sdk = Sdk::choose(sdk, carry_sdk);
    let files = wasmprobe::scaffold::new_plugin(name, lang, &dir, &sdk)
        .map_err(|e| Exit(Status::BadInput, e.into()))?;
    for f in &files {
        println!("created {}", f.display());
    }
    let dir = dir.display();
    match lang {
        Lang::Rust => {
            let crate_name = name.replace('-', "_");
            println!(
                "\nnext:\n  cd {dir}\n  cargo build --release --target wasm32-wasip2\n  cp target/wasm32-wasip2/release/{crate_name}.wasm <a plugin dir>/{name}.wasm"
            );
        }
        Lang::Python | Lang::Js => println!(
            "\nnext:\n  cd {dir}\n  ./build.sh\n  cp {name}.wasm <a plugin dir>/{name}.wasm"
        ),
    }
    Ok(Status::Ok.into())
}
