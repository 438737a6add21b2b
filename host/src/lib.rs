//! wasmprobe: a probe engine whose probes are sandboxed WebAssembly
//! components.
//!
//! One process loads plugins ([`runtime`]), runs each configured probe on
//! its cron schedule ([`schedule`]) with the capabilities its config grants
//! ([`hostcalls`]), and serves every result on one Prometheus/OpenMetrics
//! endpoint ([`exposition`], [`server`]). [`config`] parses and validates
//! `probes.toml`; [`import`] writes one from another prober's config;
//! [`app`] ties a loaded config to the running pieces.

pub mod app;
pub mod bindings;
pub mod config;
pub mod demo;
pub mod egress;
pub mod expectation;
pub mod exposition;
pub mod files;
pub mod heap;
pub mod history;
pub mod hostcalls;
pub mod import;
pub mod lifecycle;
pub mod names;
pub mod runtime;
pub mod scaffold;
pub mod schedule;
pub mod server;
pub mod shard;
pub(crate) mod tls_files;

/// The modules from the bottom up: each may use only the ones before it.
/// `layering_holds` reads every `crate::` path in the sources to keep it so
/// (no import cycles; config knows no capability, runtime no exposition).
#[cfg(test)]
const LAYERS: &[&str] = &[
    "names",
    "bindings",
    "shard",
    "files",
    "heap",
    "tls_files",
    "egress",
    "config",
    "import",
    "hostcalls",
    "runtime",
    "history",
    "expectation",
    "exposition",
    "app",
    "schedule",
    "lifecycle",
    "server",
    "demo",
    "scaffold",
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn layering_holds() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let rank = |m: &str| super::LAYERS.iter().position(|l| *l == m);
        let mut wrong = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap_or(&file);
            let top = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or_default()
                .trim_end_matches(".rs");
            let Some(from) = rank(top) else { continue };
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for used in code.split("crate::").skip(1) {
                    let target: String = used
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if let Some(to) = rank(&target)
                        && to > from
                    {
                        wrong.push(format!("{}:{}: {top} uses {target}", rel.display(), n + 1));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    }
}
