//! `wasmprobe new plugin NAME`: a plugin crate that builds to a component
//! with one command, so an author starts from something that runs.
//!
//! The files come from `templates/plugin/` (also readable on their own as
//! the template folder); `{{name}}`, `{{crate}}`, `{{prefix}}` and
//! `{{sdk}}` are filled in.

use std::path::{Path, PathBuf};

use crate::config::PluginName;

/// The template, as (relative path, text).
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/plugin/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/plugin/src/lib.rs"),
    ),
    (
        "probe.toml",
        include_str!("../../templates/plugin/probe.toml"),
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

/// Writes a new plugin crate named `name` into `dir` (which must not
/// exist) and returns the files written.
pub fn new_plugin(name: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    let name = PluginName::try_from(name.to_string()).map_err(ScaffoldError::Name)?;
    let name = name.as_str();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(ScaffoldError::NotACrateName(name.to_string()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let sdk = sdk
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| ScaffoldError::NoSdk(sdk.to_path_buf()))?;
    let snake = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &snake)
            .replace("{{prefix}}", &snake)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let mut written = Vec::new();
    for (rel, text) in FILES {
        let path = dir.join(rel);
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, fill(text))
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
        let files =
            new_plugin("disk-check", &dir, &default_sdk()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(files.len(), FILES.len());
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            assert!(!text.contains("{{"), "{}: {text}", f.display());
        }
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
        assert!(lib.contains("\"disk_check_up\""));
    }

    #[test]
    fn refuses_bad_names_and_existing_folders() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sdk = default_sdk();
        let bad = new_plugin("Disk Check", &tmp.path().join("a"), &sdk);
        assert!(matches!(bad, Err(ScaffoldError::Name(_))));
        let digit = new_plugin("9lives", &tmp.path().join("b"), &sdk);
        assert!(matches!(digit, Err(ScaffoldError::NotACrateName(_))));
        let exists = new_plugin("ok", tmp.path(), &sdk);
        assert!(matches!(exists, Err(ScaffoldError::Exists(_))));
        let nosdk = new_plugin("ok", &tmp.path().join("c"), &tmp.path().join("nope"));
        assert!(matches!(nosdk, Err(ScaffoldError::NoSdk(_))));
    }
}
