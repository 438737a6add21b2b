//! probes.toml parsing and resolution: any text gives a config or located
//! errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Keep the fuzzer away from the file system: no includes, no files.
    if text.contains("include") || text.contains("_file") || text.contains("path") {
        return;
    }
    let dir = std::env::temp_dir().join("wasmprobe-fuzz-config");
    let _ = wasmprobe::config::parse(&dir.join("probes.toml"), text.to_string());
});
