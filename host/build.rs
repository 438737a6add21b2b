//! Sets `WASMPROBE_REVISION`, the commit `wasmprobe_build_info` reports.
//!
//! Taken from `WASMPROBE_REVISION` in the environment when set (a build
//! from a source tarball or a container context without `.git`), else from
//! `git rev-parse --short=12 HEAD`, else "unknown": a checkout without git
//! still builds. Only git runs here, never cargo. The script reruns when
//! HEAD or the branch it points to moves, not on every build.
//!
//! Also sets the release binary's link layout: the functions an idle
//! engine runs first ([`text_order`]), relocations packed
//! ([`pack_relocations`]).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// A revision fit for a label value and a log line.
fn plausible(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WASMPROBE_REVISION");
    let from_env = std::env::var("WASMPROBE_REVISION")
        .ok()
        .filter(|s| plausible(s));
    let revision = from_env.unwrap_or_else(|| {
        // HEAD, the branch it names and packed-refs; `--git-path` finds
        // them in a worktree too. A path that does not exist is not
        // watched: cargo would rerun the script on every build.
        let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(git(&["rev-parse", "--git-path", &branch]));
        }
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        for path in watched.into_iter().flatten() {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
            .filter(|s| s.chars().all(|c| c.is_ascii_hexdigit()))
            .unwrap_or_else(|| "unknown".to_string())
    });
    println!("cargo:rustc-env=WASMPROBE_REVISION={revision}");
    text_order();
    pack_relocations();
}

/// Whether this is a release build linked by rust-lld, the toolchain's
/// own linker for x86_64-unknown-linux-gnu: the only linker the options
/// below are written for. A build that names another linker or linker
/// driver (`target.<triple>.linker`, `-C linker...`, `-fuse-ld=`) gets
/// none: GNU ld refuses `--symbol-ordering-file`.
fn release_with_rust_lld() -> bool {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    var("PROFILE") == "release"
        && var("TARGET") == "x86_64-unknown-linux-gnu"
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !flags.contains("linker")
        && !flags.contains("fuse-ld")
}

/// Release builds of the `wasmprobe` binary place the functions listed in
/// `text-order.txt` (those an idle engine calls, written by
/// `scripts/text-order`) first in the text, in that order. The kernel maps
/// a binary's code in 64 KiB runs around each page it faults in, so code
/// that runs at idle scattered among code that never does keeps all of it
/// resident: about 10 MiB of an idle engine's RSS (bench/RESULTS.md,
/// 2026-12-07 (afternoon)).
///
/// Names the current build does not have (after a dependency's version
/// changed) are skipped by the linker, so a stale list costs memory, never
/// a build. `WASMPROBE_TEXT_ORDER=0` links in the default order.
fn text_order() {
    println!("cargo:rerun-if-changed=text-order.txt");
    println!("cargo:rerun-if-env-changed=WASMPROBE_TEXT_ORDER");
    let list =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("text-order.txt");
    if release_with_rust_lld()
        && std::env::var("WASMPROBE_TEXT_ORDER").as_deref() != Ok("0")
        && list.is_file()
    {
        let list = list.display();
        println!("cargo:rustc-link-arg-bin=wasmprobe=-Wl,--symbol-ordering-file={list}");
        println!("cargo:rustc-link-arg-bin=wasmprobe=-Wl,--no-warn-symbol-ordering");
    }
}

/// Release builds pack the binary's relative relocations (`DT_RELR`, 32
/// KiB instead of `.rela.dyn`'s 2.2 MiB, which the loader reads whole at
/// every start and which then stays resident: 2 MiB of idle RSS). The
/// loader must know the format: glibc 2.36 or later, so only where the
/// building machine's glibc is that new (the binary needs glibc 2.34
/// without it). `WASMPROBE_PACK_RELOCS=0` leaves them unpacked, for a
/// binary that must run on an older glibc than the one it is built on.
fn pack_relocations() {
    println!("cargo:rerun-if-env-changed=WASMPROBE_PACK_RELOCS");
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    if release_with_rust_lld()
        && native
        && std::env::var("WASMPROBE_PACK_RELOCS").as_deref() != Ok("0")
        && glibc_at_least(2, 36)
    {
        println!("cargo:rustc-link-arg-bin=wasmprobe=-Wl,-z,pack-relative-relocs");
    }
}

/// The building machine's glibc, from `getconf GNU_LIBC_VERSION`
/// ("glibc 2.36"); false when it cannot be told.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .trim()
        .strip_prefix("glibc ")
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
