//! A 100k-line exposition is read within a small, constant memory
//! footprint: the reader keeps one line's sample and 16 bytes per series,
//! never the parsed exposition. Peak heap is measured by counting every
//! allocation of this test binary, the only test in it, so nothing else
//! runs alongside.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use scrape_compare::exposition::scan;
use scrape_compare::selector::Selector;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[expect(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only counts and defers to System"
)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on unchanged.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap above what was live before `f`, and its duration.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, f64) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = Instant::now();
    let out = f();
    let seconds = start.elapsed().as_secs_f64();
    (out, PEAK.load(Ordering::Relaxed) - before, seconds)
}

/// 1000 families of 100 series (HELP and TYPE each): 102,000 lines, the
/// shape of a large exporter.
fn many_families() -> String {
    let mut s = String::new();
    for f in 0..1000 {
        s += &format!("# HELP psi_field_m{f} Simulated gauge {f}.\n# TYPE psi_field_m{f} gauge\n");
        for i in 0..100 {
            s += &format!(
                "psi_field_m{f}{{pod=\"pod-{i}\",namespace=\"field\"}} {}.25\n",
                i * f
            );
        }
    }
    s
}

/// One family of 100,000 series: the worst case for a parser that
/// materialises a family before handing it over.
fn one_family() -> String {
    let mut s = String::from(
        "# HELP psi_field_prediction_error One big family.\n# TYPE psi_field_prediction_error gauge\n",
    );
    for i in 0..100_000 {
        s += &format!(
            "psi_field_prediction_error{{pod=\"pod-{i}\",model=\"m{}\"}} 0.{i}\n",
            i % 7
        );
    }
    s
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn a_100k_line_exposition_in_a_small_footprint() {
    let selectors: Vec<Selector> = [
        r#"psi_field_m999{pod="pod-99"}"#,
        r#"psi_field_prediction_error{pod="pod-99999"}"#,
        r#"psi_field_m5{pod=~"pod-1.*"}"#,
    ]
    .iter()
    .map(|s| Selector::parse(s).unwrap_or_else(|e| panic!("{e}")))
    .collect();
    for (shape, text) in [
        ("1000 families x 100", many_families()),
        ("1 family x 100000", one_family()),
    ] {
        let lines = text.lines().count();
        let (result, peak, seconds) = measure(|| scan(&text, &selectors));
        let s = result.unwrap_or_else(|e| panic!("{shape}: {e}"));
        println!(
            "{shape}: {lines} lines, {:.1} MiB body, {} samples, {seconds:.3} s, peak heap {:.2} MiB above the body",
            text.len() as f64 / MIB,
            s.samples,
            peak as f64 / MIB
        );
        assert!(lines >= 100_000);
        assert_eq!(s.samples, 100_000);
        // 16 bytes per series in a hash set (with its growth slack), a few
        // line buffers: well under the 64 MiB a plugin gets by default.
        assert!(peak < 8 << 20, "{shape}: peak {peak} bytes");
        // An unoptimised test build on a shared two-core machine: a bound
        // against pathological slowness, not a benchmark.
        assert!(seconds < 30.0, "{shape}: {seconds} s");
    }
}
