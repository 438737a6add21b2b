//! `wasm-layout`: run by `scripts/build-plugins` on each plugin it builds.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use wasm_layout::{OrderList, lay_out};

/// Puts the functions an order list names first in each core module of a
/// plugin, drops its names and DWARF, and writes the result.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Function names to put first, one per line (`scripts/code-order`
    /// writes them). Without it the functions keep their order.
    #[arg(long)]
    order: Option<PathBuf>,
    /// Also write, per defined function: module, new index, old index,
    /// name (tab-separated), so a trace of the output can be named.
    #[arg(long)]
    map: Option<PathBuf>,
    /// The plugin as the linker wrote it, names included.
    input: PathBuf,
    /// Where to write the laid-out plugin.
    output: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let input = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let order = match &args.order {
        Some(path) => OrderList::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the order list {}", path.display()))?,
        ),
        None => OrderList::default(),
    };
    let layout = lay_out(&input, &order).with_context(|| format!("{}", args.input.display()))?;

    let file = args.input.file_name().map_or_else(
        || args.input.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    for m in &layout.modules {
        if m.moved > 0 {
            eprintln!(
                "wasm-layout: {file}: module {}: {} of {} functions moved to the front",
                m.module, m.moved, m.defined_functions
            );
        }
    }
    if !order.is_empty() {
        eprintln!(
            "wasm-layout: {file}: {} of {} listed names found{}",
            order.len() - layout.missing.len(),
            order.len(),
            if layout.missing.len() * 10 > order.len() {
                " (the list was written for another build: run scripts/code-order)"
            } else {
                ""
            }
        );
    }
    if let Some(map) = &args.map {
        let mut text = String::new();
        for p in &layout.placements {
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                p.module,
                p.new_index,
                p.old_index,
                p.name.as_deref().unwrap_or("")
            ));
        }
        write_atomically(map, text.as_bytes())?;
    }
    write_atomically(&args.output, &layout.bytes)
}

/// Writes beside `path` and renames, so a failed run never leaves half a
/// plugin where the engine would load it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
