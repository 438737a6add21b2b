//! `wasmprobe push` and `wasmprobe pull`: plugins and probe packages in an
//! OCI registry, so a team installs them by a pinned reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use wasmprobe::config::registry::{self, RegistryConfig};
use wasmprobe::config::{self, SecretSource};
use wasmprobe_oci::{Kind, Reference};

use crate::{Exit, Status, exit};

/// Environment variables a CI job pushes with when no config names the
/// registry.
const USERNAME_ENV: &str = "WASMPROBE_REGISTRY_USERNAME";
const PASSWORD_ENV: &str = "WASMPROBE_REGISTRY_PASSWORD";

/// The registries of `config` (when given or `probes.toml` is here), else
/// credentials from the environment for `reference`'s registry.
fn registries(
    config: Option<&Path>,
    reference: &Reference,
) -> Result<BTreeMap<String, RegistryConfig>, Exit> {
    let path = config.map(Path::to_path_buf).or_else(|| {
        let here = PathBuf::from("probes.toml");
        here.is_file().then_some(here)
    });
    let mut out = match &path {
        Some(p) => {
            let (cfg, _) = config::load_partial(p).map_err(|e| Exit(Status::BadInput, e.into()))?;
            cfg.registries
        }
        None => BTreeMap::new(),
    };
    if !out.contains_key(reference.registry())
        && let Ok(username) = std::env::var(USERNAME_ENV)
    {
        out.insert(
            reference.registry().to_string(),
            RegistryConfig {
                username: Some(username),
                password: Some(SecretSource::Env(PASSWORD_ENV.to_string())),
                ..RegistryConfig::default()
            },
        );
    }
    Ok(out)
}

fn parse(reference: &str) -> Result<Reference, Exit> {
    reference
        .parse()
        .map_err(|e: wasmprobe_oci::OciError| Exit(Status::BadInput, e.into()))
}

/// What a file holds, by its name: a component or a package archive.
fn kind_of(file: &Path) -> Result<Kind, Exit> {
    let name = file.to_string_lossy();
    if name.ends_with(".wasm") {
        Ok(Kind::Plugin)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Ok(Kind::Package)
    } else {
        Err(Exit(
            Status::BadInput,
            anyhow::anyhow!(
                "{name}: push a plugin (.wasm) or a probe package (.tar.gz of its folder: `tar czf team.tar.gz -C team .`)"
            ),
        ))
    }
}

pub(crate) fn push(file: &Path, reference: &str, config: Option<&Path>) -> Result<ExitCode, Exit> {
    let reference = parse(reference)?;
    let kind = kind_of(file)?;
    let bytes = wasmprobe::files::read_regular(file, 256 << 20)
        .with_context(|| format!("cannot read {}", file.display()))
        .map_err(exit(Status::BadInput))?;
    if kind == Kind::Plugin {
        // A registry is no place to find out a plugin does not load.
        component_check(&bytes, file)?;
    }
    let client = registry::client_for(&reference, &registries(config, &reference)?)
        .map_err(|e| Exit(Status::BadInput, anyhow::anyhow!(e)))?;
    let digest = client
        .push(&reference, kind, &bytes)
        .map_err(|e| Exit(Status::Environment, e.into()))?;
    eprintln!("pushed {kind} {} ({} bytes)", file.display(), bytes.len());
    // The line to paste into probes.toml.
    println!("{}", reference.with_digest(digest));
    Ok(Status::Ok.into())
}

/// A component starts with the component-model preamble; a core module or
/// anything else is refused before it reaches the registry.
fn component_check(bytes: &[u8], file: &Path) -> Result<(), Exit> {
    const COMPONENT: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    if bytes.starts_with(&COMPONENT) {
        Ok(())
    } else {
        Err(Exit(
            Status::BadInput,
            anyhow::anyhow!(
                "{} is not a WebAssembly component (build for wasm32-wasip2)",
                file.display()
            ),
        ))
    }
}

pub(crate) fn pull(
    reference: &str,
    config: Option<&Path>,
    output: Option<&Path>,
    package: bool,
) -> Result<ExitCode, Exit> {
    let reference = parse(reference)?;
    let registries = registries(config, &reference)?;
    let kind = if package { Kind::Package } else { Kind::Plugin };
    let client = registry::client_for(&reference, &registries)
        .map_err(|e| Exit(Status::BadInput, anyhow::anyhow!(e)))?;
    // Resolve a tag to the digest to pin, then pull by it.
    let pinned = match reference.pinned() {
        Some(_) => reference.clone(),
        None => reference.with_digest(
            client
                .resolve(&reference)
                .map_err(|e| Exit(Status::Environment, e.into()))?,
        ),
    };
    let root =
        config::default_cache_dir().unwrap_or_else(|| std::env::temp_dir().join("wasmprobe"));
    let fetched = registry::fetch(&pinned.to_string(), kind, &registries, &root)
        .map_err(|e| Exit(Status::Environment, anyhow::anyhow!(e)))?;
    if let Some(out) = output {
        std::fs::copy(&fetched.file, out)
            .with_context(|| format!("cannot write {}", out.display()))
            .map_err(exit(Status::Environment))?;
        eprintln!("wrote {}", out.display());
    }
    eprintln!("pulled {kind} into {}", fetched.file.display());
    println!("{pinned}");
    Ok(Status::Ok.into())
}
