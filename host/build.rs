//! Sets `WASMPROBE_REVISION`, the commit `wasmprobe_build_info` reports.
//!
//! Taken from `WASMPROBE_REVISION` in the environment when set (a build
//! from a source tarball or a container context without `.git`), else from
//! `git rev-parse --short=12 HEAD`, else "unknown": a checkout without git
//! still builds. The script reruns when HEAD or the branch it points to
//! moves, not on every build.
//!
//! Also sets the release binary's link layout: the functions an idle
//! engine runs first ([`text_order`]), relocations packed
//! ([`pack_relocations`]). Each is used only when a test link of an empty
//! program with the same compiler, linker and flags accepts it, so a
//! toolchain whose linker lacks an option builds as before. Only git and
//! that test link run here, never cargo.

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

/// Whether a link-layout option is wanted: release builds for Linux only
/// (debug and test builds keep the default layout and link faster), and
/// not when its `switch` variable is "0".
fn layout_wanted(switch: &str) -> bool {
    println!("cargo:rerun-if-env-changed={switch}");
    std::env::var("PROFILE").as_deref() == Ok("release")
        && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var(switch).as_deref() != Ok("0")
}

/// The compiler cargo builds this package with.
fn rustc() -> Command {
    Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
}

/// Whether an empty program links with `link_args` added, using the
/// compiler, target, linker and flags of this build; with `run`, whether
/// it also starts (a loader that does not know a format refuses it).
fn links_with(name: &str, link_args: &[String], run: bool) -> bool {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let out = Path::new(&var("OUT_DIR")).join(name);
    let source = out.with_extension("rs");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let mut rustc = rustc();
    rustc.arg("--target").arg(var("TARGET")).arg("-o").arg(&out);
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        rustc.arg("-C").arg(format!("linker={linker}"));
    }
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    rustc.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    for a in link_args {
        rustc.arg("-C").arg(format!("link-arg={a}"));
    }
    rustc.arg(&source);
    let linked = rustc
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    linked && (!run || (native && Command::new(&out).status().is_ok_and(|s| s.success())))
}

/// Release builds of the `wasmprobe` binary place the functions listed in
/// `text-order.txt` (those an engine running the default config calls,
/// written by `scripts/text-order`) first in the text, in that order. The
/// kernel maps a binary's code in 64 KiB runs around each page it faults
/// in, so code that runs at idle scattered among code that never does keeps
/// all of it resident: about 10 MiB of an idle engine's RSS
/// (bench/RESULTS.md, 2026-12-07 (afternoon)).
///
/// Names the build does not have are skipped by the linker, so a stale
/// list costs memory, never a build. Names go stale with a change to
/// Cargo.lock or the compiler (every name), and some (ThinLTO's `.llvm.`
/// suffixes, about one in eight) with a change to the code of the unit
/// they are in. `WASMPROBE_TEXT_ORDER=0` links in the default order.
fn text_order() {
    let list =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("text-order.txt");
    if !list.is_file() {
        return;
    }
    println!("cargo:rerun-if-changed=text-order.txt");
    if !layout_wanted("WASMPROBE_TEXT_ORDER") {
        return;
    }
    let args = [
        format!("-Wl,--symbol-ordering-file={}", list.display()),
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ];
    if !links_with("order-probe", &args, false) {
        return;
    }
    for a in &args {
        println!("cargo:rustc-link-arg-bin=wasmprobe={a}");
    }
    // The list's header names the compiler it was written with; another
    // one names every symbol differently.
    let written_by = std::fs::read_to_string(&list)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.split_once("(rustc ").map(|(_, r)| r.to_string()))
        })
        .and_then(|r| r.split([',', ')']).next().map(str::to_string));
    let rustc = rustc()
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if let (Some(written), Some(rustc)) = (written_by, rustc)
        && !rustc.starts_with(&format!("rustc {written} "))
    {
        println!(
            "cargo:warning=host/text-order.txt was written with rustc {written}, this build uses {}: run scripts/text-order for the idle RSS it is meant to save",
            rustc.trim()
        );
    }
}

/// Release builds pack the binary's relative relocations (`DT_RELR`, 32
/// KiB instead of `.rela.dyn`'s 2.2 MiB, which the loader reads whole at
/// every start and which then stays resident: 2 MiB of idle RSS). The
/// loader must know the format (glibc 2.36 or later), so relocations are
/// packed only where a packed test program starts on the building machine;
/// the binary needs glibc 2.34 without them. `WASMPROBE_PACK_RELOCS=0`
/// leaves them unpacked, for a binary that must run on an older glibc than
/// the one it is built on.
fn pack_relocations() {
    if !layout_wanted("WASMPROBE_PACK_RELOCS") {
        return;
    }
    let args = ["-Wl,-z,pack-relative-relocs".to_string()];
    if links_with("relr-probe", &args, true) {
        println!("cargo:rustc-link-arg-bin=wasmprobe={}", args[0]);
    }
}
