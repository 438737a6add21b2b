//! A team's package.toml, as the loader reads it under an operator's cap
//! and grant: any bytes give a loaded package inside the cap or a refusal
//! with its file and line, never a panic or a hang. (The same properties,
//! with a mutation fuzzer, run in every test run:
//! host/src/config/fuzz_tests.rs.)
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A directory of its own per fuzzing process, with the operator's file.
fn setup() -> &'static (PathBuf, String) {
    static DIR: OnceLock<(PathBuf, String)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wasmprobe-fuzz-package-{}", std::process::id()));
        let package = dir.join("team-a");
        let _ = std::fs::create_dir_all(&package);
        let _ = std::fs::write(package.join("probe.wasm"), b"\0asm");
        let main = format!(
            "[engine]\ncache_dir = \"{cache}\"\n[packages]\ninclude = [\"{package}/package.toml\"]\n\
             [packages.cap]\nallow = [\"http://127.0.0.1:*\"]\nmemory = \"64MiB\"\nmax_body = \"256KiB\"\n\
             max_requests = 100\n[packages.grants.team-a]\npath = \"{package}\"\nenv = [\"TEAM_A_TOKEN\"]\n",
            cache = dir.join("cache").display(),
            package = package.display(),
        );
        (dir, main)
    })
}

fuzz_target!(|data: &[u8]| {
    let (dir, main) = setup();
    if std::fs::write(dir.join("team-a/package.toml"), data).is_err() {
        return;
    }
    let Ok(config) = wasmprobe::config::parse(&dir.join("probes.toml"), main.clone()) else {
        return;
    };
    for probe in config.probes.values() {
        assert!(probe.limits.max_body <= 256 << 10, "{} escaped the cap", probe.name);
        assert!(probe.limits.max_requests <= 100, "{} escaped the cap", probe.name);
        assert!(
            probe.allow.check_target("http://127.0.0.2/").is_err(),
            "{} reaches past the cap",
            probe.name
        );
    }
});
