//! `wasmprobe new plugin NAME`: a plugin that builds to a component with
//! one command, so an author starts from something that runs.
//!
//! The files come from `templates/plugin/` (Rust, and the `probes.toml`
//! every language shares), `templates/plugin-python/` and
//! `templates/plugin-js/` (also readable on their own as template folders);
//! `{{name}}`, `{{crate}}`, `{{prefix}}`, `{{sdk}}` and `{{wasm}}` (where the
//! folder's `probes.toml` finds the built plugin) are filled in.
//! Python and JavaScript plugins get a copy of the WIT contract, which
//! their build generates bindings from. A Rust plugin uses the SDK of the
//! checkout this binary was built from when it is still there; otherwise
//! (a moved binary, the container image) the SDK travels inside the binary
//! and is written into the plugin's `vendor/` folder with the contract.

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

/// The SDK's sources, as written under `vendor/wasmprobe/plugins/sdk/`
/// (its `generate!` reads `../../wit`: the contract goes beside it).
const SDK_SOURCES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    (
        "src/blackbox.rs",
        include_str!("../../plugins/sdk/src/blackbox.rs"),
    ),
    ("src/dns.rs", include_str!("../../plugins/sdk/src/dns.rs")),
    (
        "src/family.rs",
        include_str!("../../plugins/sdk/src/family.rs"),
    ),
    ("src/http.rs", include_str!("../../plugins/sdk/src/http.rs")),
    ("src/icmp.rs", include_str!("../../plugins/sdk/src/icmp.rs")),
    ("src/log.rs", include_str!("../../plugins/sdk/src/log.rs")),
    (
        "src/outcome.rs",
        include_str!("../../plugins/sdk/src/outcome.rs"),
    ),
    (
        "src/secrets.rs",
        include_str!("../../plugins/sdk/src/secrets.rs"),
    ),
    (
        "src/state.rs",
        include_str!("../../plugins/sdk/src/state.rs"),
    ),
    ("src/tcp.rs", include_str!("../../plugins/sdk/src/tcp.rs")),
];

/// The SDK's manifest outside the workspace: what `plugins/sdk/Cargo.toml`
/// inherits, written out (a unit test keeps the two the same).
const SDK_MANIFEST: &str = r#"[package]
name = "wasmprobe-sdk"
description = "Write wasmprobe probe plugins: typed config, metric declarations, host capabilities"
version = "{{version}}"
edition = "2024"
rust-version = "1.95"
license = "Apache-2.0"
repository = "https://example.invalid/wasmprobe"

[dependencies]
wit-bindgen = { version = "0.63", default-features = false, features = ["macros", "realloc", "std"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
schemars = { version = "1", default-features = false, features = ["derive", "std"] }
crc32fast = "1"
"#;

/// Where a carried SDK goes, inside the plugin's folder.
const CARRIED: &str = "vendor/wasmprobe";

/// Where a Rust plugin's SDK comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// A `plugins/sdk` folder on disk, used in place.
    At(PathBuf),
    /// The copy inside this binary, written into the plugin's `vendor/`.
    Carried,
}

impl Sdk {
    /// `--sdk PATH` when given; `--carry-sdk`, or a binary whose checkout
    /// is gone, carries it; otherwise the checkout's.
    pub fn choose(path: Option<PathBuf>, carry: bool) -> Sdk {
        match path {
            Some(p) => Sdk::At(p),
            None if carry || !default_sdk().join("Cargo.toml").is_file() => Sdk::Carried,
            None => Sdk::At(default_sdk()),
        }
    }
}

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
    sdk: &Sdk,
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
    // The carried SDK as (path in the plugin's folder, text).
    let mut carried: Vec<(String, &str)> = Vec::new();
    let (files, wit, sdk): (_, &[_], _) = match (lang, sdk) {
        (Lang::Rust, Sdk::At(sdk)) => {
            let sdk = sdk
                .canonicalize()
                .ok()
                .filter(|p| p.join("Cargo.toml").is_file())
                .ok_or_else(|| ScaffoldError::NoSdk(sdk.to_path_buf()))?;
            (FILES, &[], sdk.display().to_string())
        }
        (Lang::Rust, Sdk::Carried) => {
            let at = format!("{CARRIED}/plugins/sdk");
            carried.push((format!("{at}/Cargo.toml"), SDK_MANIFEST));
            for (rel, text) in SDK_SOURCES {
                carried.push((format!("{at}/{rel}"), text));
            }
            for (rel, text) in WIT {
                carried.push((format!("{CARRIED}/{rel}"), text));
            }
            (FILES, &[], at)
        }
        (Lang::Python, _) => (PYTHON_FILES, WIT, String::new()),
        (Lang::Js, _) => (JS_FILES, WIT, String::new()),
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
            .replace("{{version}}", env!("CARGO_PKG_VERSION"))
    };
    let mut written = Vec::new();
    let carried = carried.iter().map(|(rel, text)| (rel.as_str(), *text));
    for (rel, text) in files
        .iter()
        .copied()
        .chain(wit.iter().copied())
        .chain(carried)
    {
        let path = dir.join(rel);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // The SDK's own sources are copied as they are.
            let text = if rel.starts_with(CARRIED) && !rel.ends_with("Cargo.toml") {
                text.to_string()
            } else {
                fill(text)
            };
            std::fs::write(path, text)?;
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
        let files = new_plugin("disk-check", Lang::Rust, &dir, &Sdk::At(default_sdk()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(files.len(), FILES.len());
        assert_filled(&files);
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
        assert!(lib.contains("\"disk_check_up\""));
    }

    #[test]
    fn refuses_bad_names_and_existing_folders() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sdk = Sdk::At(default_sdk());
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
            &Sdk::At(tmp.path().join("nope")),
        );
        assert!(matches!(nosdk, Err(ScaffoldError::NoSdk(_))));
        // Python plugins do not need the SDK.
        let python = new_plugin(
            "ok",
            Lang::Python,
            &tmp.path().join("d"),
            &Sdk::At(tmp.path().join("nope")),
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
            let written = new_plugin("disk-check", lang, &dir, &Sdk::Carried)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(written.len(), files.len() + WIT.len());
            check_contract_and_build(&dir, &written);
            let code = std::fs::read_to_string(dir.join(main)).unwrap_or_default();
            assert!(code.contains(quoted), "{lang:?}: {code}");
        }
    }

    /// The SDK a moved binary writes is the checkout's, file for file, with
    /// the workspace's versions written out, and the plugin points at it.
    #[test]
    fn the_carried_sdk_is_the_checkout_s_with_the_workspace_s_versions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |p: &Path| {
            std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let toml_of = |text: &str| {
            text.parse::<toml::Table>()
                .unwrap_or_else(|e| panic!("{e}"))
        };

        // Every source file of the SDK is carried.
        let mut on_disk: Vec<String> = std::fs::read_dir(root.join("plugins/sdk/src"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| format!("src/{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        on_disk.sort();
        let mut carried: Vec<String> = SDK_SOURCES.iter().map(|(p, _)| p.to_string()).collect();
        carried.sort();
        assert_eq!(carried, on_disk);

        // The manifest: the checkout's, with what it inherits filled in.
        let workspace = toml_of(&read(&root.join("Cargo.toml")));
        let checkout = toml_of(&read(&root.join("plugins/sdk/Cargo.toml")));
        let ours = toml_of(&SDK_MANIFEST.replace("{{version}}", env!("CARGO_PKG_VERSION")));
        let inherited = |table: &str, key: &str, value: &toml::Value| -> toml::Value {
            if value.get("workspace").and_then(toml::Value::as_bool) == Some(true) {
                workspace
                    .get("workspace")
                    .and_then(|w| w.get(table))
                    .and_then(|t| t.get(key))
                    .cloned()
                    .unwrap_or_else(|| panic!("workspace.{table}.{key}"))
            } else {
                value.clone()
            }
        };
        for (section, table) in [("package", "package"), ("dependencies", "dependencies")] {
            // `[package]` inherits from `[workspace.package]`, a dependency
            // from `[workspace.dependencies]`.
            let theirs = checkout
                .get(section)
                .and_then(toml::Value::as_table)
                .cloned()
                .unwrap_or_default();
            let mine = ours
                .get(section)
                .and_then(toml::Value::as_table)
                .cloned()
                .unwrap_or_default();
            let keys = |t: &toml::Table| {
                let mut k: Vec<String> = t.keys().cloned().collect();
                k.sort();
                k
            };
            assert_eq!(keys(&theirs), keys(&mine), "[{section}]");
            for (key, value) in &theirs {
                let want = inherited(table, key, value);
                assert_eq!(mine.get(key), Some(&want), "[{section}] {key}");
            }
        }

        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("moved");
        let written =
            new_plugin("moved", Lang::Rust, &dir, &Sdk::Carried).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            written.len(),
            FILES.len() + 1 + SDK_SOURCES.len() + WIT.len()
        );
        let manifest = read(&dir.join("Cargo.toml"));
        assert!(
            manifest.contains("wasmprobe-sdk = { path = \"vendor/wasmprobe/plugins/sdk\" }"),
            "{manifest}"
        );
        for (rel, text) in SDK_SOURCES {
            assert_eq!(
                &read(&dir.join(CARRIED).join("plugins/sdk").join(rel)),
                text
            );
        }
        assert!(dir.join(CARRIED).join("wit/world.wit").is_file());
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
