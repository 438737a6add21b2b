//! Plugin files that must never load: random bytes, a truncated
//! component, a core module, components of another world or with imports
//! the host does not provide, an oversized file, and a precompiled
//! artifact shipped in a package (never deserialized). Each is refused
//! with an error naming the file and what is wrong.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::harness::wasm;

/// `wasmprobe check` of a config whose one probe uses `bytes` as its
/// plugin; its exit code and stderr.
fn check_plugin(dir: &Path, bytes: &[u8]) -> (Option<i32>, String) {
    let file = dir.join("bad.wasm");
    std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("{e}"));
    check_config(
        dir,
        &format!(
            "[plugins.bad]\npath = {file:?}\n[probes.p]\nplugin = \"bad\"\nschedule = \"* * * * * *\"\n"
        ),
    )
}

fn check_config(dir: &Path, text: &str) -> (Option<i32>, String) {
    let config = dir.join("probes.toml");
    std::fs::write(
        &config,
        format!(
            "[engine]\nplugin_dirs = []\ncache_dir = {:?}\n{text}",
            dir.join("cache")
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("wat: {e}"))
}

#[test]
fn malformed_and_foreign_plugins_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = std::fs::read(wasm("fixtures", "misbehave")).unwrap_or_else(|e| panic!("{e}"));
    let mut random = vec![0u8; 4096];
    let mut x: u32 = 0x9e37_79b9;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("random bytes", random, "is not a WebAssembly component"),
        (
            "truncated component",
            good[..good.len() / 2].to_vec(),
            "cannot compile",
        ),
        (
            "core module",
            wat("(module (func (export \"run\")))"),
            "is a core WebAssembly module, not a component",
        ),
        (
            "component of another world",
            wat("(component)"),
            "does not fit the wasmprobe:plugin@0.1.0 world",
        ),
        (
            "component importing what the host lacks",
            wat(
                "(component (import \"evil:host/backdoor@1.0.0\" (instance (export \"open\" (func)))))",
            ),
            "does not fit the wasmprobe:plugin@0.1.0 world",
        ),
        ("empty file", Vec::new(), "is not a WebAssembly component"),
    ];
    for (what, bytes, expect) in cases {
        let (code, stderr) = check_plugin(dir.path(), &bytes);
        println!(
            "{what}: {}",
            stderr.lines().last().unwrap_or_default().trim()
        );
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert!(stderr.contains(expect), "{what}: {stderr}");
        assert!(stderr.contains("bad.wasm"), "{what}: {stderr}");
    }

    // Oversized: refused from its size, before reading it.
    let file = dir.path().join("bad.wasm");
    let f = std::fs::File::create(&file).unwrap_or_else(|e| panic!("{e}"));
    f.set_len((64 << 20) + 1).unwrap_or_else(|e| panic!("{e}"));
    let (code, stderr) = check_config(
        dir.path(),
        &format!(
            "[plugins.bad]\npath = {file:?}\n[probes.p]\nplugin = \"bad\"\nschedule = \"* * * * * *\"\n"
        ),
    );
    println!(
        "oversized: {}",
        stderr.lines().last().unwrap_or_default().trim()
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("above the 67108864-byte limit"), "{stderr}");
}

#[test]
fn a_package_cannot_ship_a_precompiled_artifact() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = std::fs::read(wasm("fixtures", "misbehave")).unwrap_or_else(|e| panic!("{e}"));
    // Native code for this very engine build: loading it would skip every
    // check wasmtime makes on a component.
    let engine = wasmtime::Engine::default();
    let compiled = engine
        .precompile_component(&good)
        .unwrap_or_else(|e| panic!("precompile: {e}"));
    let pkg = dir.path().join("native");
    std::fs::create_dir_all(&pkg).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(pkg.join("probe.wasm"), &compiled).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        pkg.join("package.toml"),
        format!(
            "name = \"native\"\n[plugins.probe]\npath = \"probe.wasm\"\nsha256 = \"{}\"\n[probes.p]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n",
            hex::encode(Sha256::digest(&compiled))
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (code, stderr) = check_config(
        dir.path(),
        &format!("[packages]\ninclude = [{:?}]\n", pkg.join("package.toml")),
    );
    println!(
        "precompiled artifact in a package: {}",
        stderr.lines().last().unwrap_or_default().trim()
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("is not a WebAssembly component"),
        "{stderr}"
    );
}

/// A hostile package puts FIFOs where the host reads files: its plugin and,
/// in another package, its `package.toml`. Reading either would block
/// `check`, start-up or a reload for ever; both are refused at once, named,
/// and a good package beside them still loads.
#[test]
fn fifos_in_a_package_are_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mode = nix::sys::stat::Mode::S_IRWXU;
    let plugin_fifo = dir.path().join("fifo-plugin");
    std::fs::create_dir_all(&plugin_fifo).unwrap_or_else(|e| panic!("{e}"));
    nix::unistd::mkfifo(&plugin_fifo.join("probe.wasm"), mode).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        plugin_fifo.join("package.toml"),
        format!(
            "name = \"fifo-plugin\"\n[plugins.probe]\npath = \"probe.wasm\"\nsha256 = \"{}\"\n\n[probes.p]\nplugin = \"probe\"\nschedule = \"* * * * * *\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let toml_fifo = dir.path().join("fifo-toml");
    std::fs::create_dir_all(&toml_fifo).unwrap_or_else(|e| panic!("{e}"));
    nix::unistd::mkfifo(&toml_fifo.join("package.toml"), mode).unwrap_or_else(|e| panic!("{e}"));

    let started = std::time::Instant::now();
    let (code, stderr) = check_config(
        dir.path(),
        &format!(
            "[packages]\ninclude = [\"{}/*/package.toml\"]\n",
            dir.path().display()
        ),
    );
    println!("refused in {:?}", started.elapsed());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("fifo-plugin/package.toml:3:8: plugins.probe.path:")
            && stderr.contains("probe.wasm is not a regular file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fifo-toml/package.toml is not a regular file"),
        "{stderr}"
    );
}
