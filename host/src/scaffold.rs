//! `wasmprobe new plugin NAME`: a plugin that builds to a component with
//! one command, so an author starts from something that runs.
//!
//! The files come from `templates/plugin/` (Rust, and the `probes.toml`
//! every language shares), `templates/plugin-python/` and
//! `templates/plugin-js/` (also readable on their own as template folders);
//! `{{name}}`, `{{crate}}`, `{{prefix}}`, `{{sdk}}` and `{{wasm}}` (where the
//! folder's `probes.toml` finds the built plugin) are filled in.
//! Python and JavaScript plugins get a copy of the WIT contract, which
//! their build generates bindings from.

use std::path::{Path, PathBuf};

use crate::config::PluginName;

/// The language a scaffolded plugin is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Lang {
    /// A crate on the wasmprobe SDK; `cargo build --release --target
    /// wasm32-wasip2`.
    #[default]
    Rust,
    /// An `app.py` built by componentize-py (`./build.sh`).
    Python,
    /// A `probe.js` built by componentize-js (`./build.sh`).
    Js,
}

const PROBES_TOML: &str = include_str!("../../templates/plugin/probes.toml");

/// The WIT contract, for plugins whose bindings are generated at build.
const WIT: &[(&str, &str)] = &[
    ("wit/world.wit", include_str!("../../wit/world.wit")),
    ("wit/types.wit", include_str!("../../wit/types.wit")),
    ("wit/log.wit", include_str!("../../wit/log.wit")),
    ("wit/state.wit", include_str!("../../wit/state.wit")),
    ("wit/http.wit", include_str!("../../wit/http.wit")),
    ("wit/icmp.wit", include_str!("../../wit/icmp.wit")),
    ("wit/tcp.wit", include_str!("../../wit/tcp.wit")),
    ("wit/dns.wit", include_str!("../../wit/dns.wit")),
    ("wit/secrets.wit", include_str!("../../wit/secrets.wit")),
];

/// The Rust template, as (relative path, text).
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/plugin/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/plugin/src/lib.rs"),
    ),
    ("probes.toml", PROBES_TOML),
    (
        "tests/up.json",
        include_str!("../../templates/plugin/tests/up.json"),
    ),
    (
        "tests/up.expect.toml",
        include_str!("../../templates/plugin/tests/up.expect.toml"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/plugin/.gitignore"),
    ),
];

/// The Python template, as (relative path, text); [`WIT`] goes with it.
const PYTHON_FILES: &[(&str, &str)] = &[
    (
        "app.py",
        include_str!("../../templates/plugin-python/app.py"),
    ),
    (
        "logic.py",
        include_str!("../../templates/plugin-python/logic.py"),
    ),
    (
        "test_logic.py",
        include_str!("../../templates/plugin-python/test_logic.py"),
    ),
    (
        "build.sh",
        include_str!("../../templates/plugin-python/build.sh"),
    ),
    ("probes.toml", PROBES_TOML),
    (
        "tests/up.json",
        include_str!("../../templates/plugin-python/tests/up.json"),
    ),
    (
        "tests/up.expect.toml",
        include_str!("../../templates/plugin-python/tests/up.expect.toml"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin-python/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/plugin-python/.gitignore"),
    ),
];

/// The JavaScript template, as (relative path, text); [`WIT`] goes with it.
/// Its tape is the Python template's: both make the same request.
const JS_FILES: &[(&str, &str)] = &[
    (
        "probe.js",
        include_str!("../../templates/plugin-js/probe.js"),
    ),
    (
        "logic.js",
        include_str!("../../templates/plugin-js/logic.js"),
    ),
    (
        "logic.test.js",
        include_str!("../../templates/plugin-js/logic.test.js"),
    ),
    (
        "package.json",
        include_str!("../../templates/plugin-js/package.json"),
    ),
    (
        "build.sh",
        include_str!("../../templates/plugin-js/build.sh"),
    ),
    ("probes.toml", PROBES_TOML),
    (
        "tests/up.json",
        include_str!("../../templates/plugin-python/tests/up.json"),
    ),
    (
        "tests/up.expect.toml",
        include_str!("../../templates/plugin-python/tests/up.expect.toml"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin-js/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/plugin-js/.gitignore"),
    ),
];

/// Why a plugin could not be scaffolded.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{0}")]
    Name(String),
    #[error("plugin name {0:?} must start with a letter (it also names the crate)")]
    NotACrateName(String),
    #[error("{} already exists; choose another name or --dir", .0.display())]
    Exists(PathBuf),
    #[error(
        "cannot find the wasmprobe SDK at {}; pass --sdk PATH (the plugins/sdk folder of a wasmprobe checkout)",
        .0.display()
    )]
    NoSdk(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The SDK of the source tree this binary was built from, when it is
/// still there.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
}

/// Writes a new plugin named `name` into `dir` (which must not exist)
/// and returns the files written. `sdk` is used by Rust plugins only.
pub fn new_plugin(
    name: &str,
    lang: Lang,
    dir: &Path,
    sdk: &Path,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let name = PluginName::try_from(name.to_string()).map_err(ScaffoldError::Name)?;
    let name = name.as_str();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(ScaffoldError::NotACrateName(name.to_string()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let snake = name.replace('-', "_");
    let (files, wit, sdk): (_, &[_], _) = match lang {
        Lang::Rust => {
            let sdk = sdk
                .canonicalize()
                .ok()
                .filter(|p| p.join("Cargo.toml").is_file())
                .ok_or_else(|| ScaffoldError::NoSdk(sdk.to_path_buf()))?;
            (FILES, &[], sdk.display().to_string())
        }
        Lang::Python => (PYTHON_FILES, WIT, String::new()),
        Lang::Js => (JS_FILES, WIT, String::new()),
    };
    // Where the folder's own probes.toml finds the built plugin.
    let wasm = match lang {
        Lang::Rust => format!("target/wasm32-wasip2/release/{snake}.wasm"),
        Lang::Python | Lang::Js => format!("{name}.wasm"),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &snake)
            .replace("{{prefix}}", &snake)
            .replace("{{sdk}}", &sdk)
            .replace("{{wasm}}", &wasm)
    };
    let mut written = Vec::new();
    for (rel, text) in files.iter().chain(wit) {
        let path = dir.join(rel);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, fill(text))?;
            if rel.ends_with(".sh") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            }
            Ok(())
        };
        write(&path).map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_placeholder() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("disk-check");
        let files = new_plugin("disk-check", Lang::Rust, &dir, &default_sdk())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(files.len(), FILES.len());
        assert_filled(&files);
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
        assert!(lib.contains("\"disk_check_up\""));
    }

    #[test]
    fn refuses_bad_names_and_existing_folders() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sdk = default_sdk();
        let bad = new_plugin("Disk Check", Lang::Rust, &tmp.path().join("a"), &sdk);
        assert!(matches!(bad, Err(ScaffoldError::Name(_))));
        let digit = new_plugin("9lives", Lang::Rust, &tmp.path().join("b"), &sdk);
        assert!(matches!(digit, Err(ScaffoldError::NotACrateName(_))));
        let exists = new_plugin("ok", Lang::Python, tmp.path(), &sdk);
        assert!(matches!(exists, Err(ScaffoldError::Exists(_))));
        let nosdk = new_plugin(
            "ok",
            Lang::Rust,
            &tmp.path().join("c"),
            &tmp.path().join("nope"),
        );
        assert!(matches!(nosdk, Err(ScaffoldError::NoSdk(_))));
        // Python plugins do not need the SDK.
        let python = new_plugin(
            "ok",
            Lang::Python,
            &tmp.path().join("d"),
            &tmp.path().join("nope"),
        );
        assert!(python.is_ok(), "{python:?}");
    }

    #[test]
    fn python_and_js_plugins_get_their_contract_and_an_executable_build() {
        for (lang, files, main, quoted) in [
            (Lang::Python, PYTHON_FILES, "app.py", "\"disk_check_up\""),
            (Lang::Js, JS_FILES, "probe.js", "'disk_check_up'"),
        ] {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let dir = tmp.path().join("disk-check");
            let written = new_plugin("disk-check", lang, &dir, Path::new("unused"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(written.len(), files.len() + WIT.len());
            check_contract_and_build(&dir, &written);
            let code = std::fs::read_to_string(dir.join(main)).unwrap_or_default();
            assert!(code.contains(quoted), "{lang:?}: {code}");
        }
    }

    /// No placeholder is left in any file written.
    fn assert_filled(written: &[PathBuf]) {
        for f in written {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            assert!(!text.contains("{{"), "{}: {text}", f.display());
        }
    }

    fn check_contract_and_build(dir: &Path, written: &[PathBuf]) {
        use std::os::unix::fs::PermissionsExt;
        assert_filled(written);
        // Every file of the contract, so the build needs nothing else.
        let wit: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(!wit.is_empty());
        for name in wit {
            assert!(dir.join("wit").join(&name).is_file(), "{name:?} not copied");
        }
        let mode = std::fs::metadata(dir.join("build.sh"))
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o111, 0o111);
    }
}
