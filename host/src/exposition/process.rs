//! The `process_*` families every Go exporter writes, read from `/proc` at
//! scrape time, so dashboards and alerts built for them work unchanged.
//!
//! Invariant: a value that cannot be read or parsed is `None` and its family
//! is left out of the scrape; a wrong number (a zero, a stale value) is
//! worse than a gap. On systems without `/proc` every value is `None`.
//!
//! Out of scope: other processes, threads, network and I/O counters.

use std::sync::OnceLock;

/// Clock ticks per second of the times in `/proc/self/stat`. The kernel
/// reports them in `USER_HZ`, which is 100 on every architecture Linux
/// exposes to userspace (Go's procfs assumes the same); reading it through
/// `sysconf(_SC_CLK_TCK)` would need unsafe code or another nix feature.
const USER_HZ: f64 = 100.0;

/// One scrape's reading of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub(super) cpu_seconds: Option<f64>,
    pub(super) resident_bytes: Option<f64>,
    pub(super) virtual_bytes: Option<f64>,
    pub(super) open_fds: Option<f64>,
    /// The soft `RLIMIT_NOFILE`.
    pub(super) max_fds: Option<f64>,
    /// Unix seconds.
    pub(super) start_time: Option<f64>,
}

impl ProcessStats {
    /// Reads `/proc` for this process. Never fails: what cannot be read is
    /// `None`.
    pub(super) fn read() -> ProcessStats {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let stat = read("/proc/self/stat");
        let times = stat.as_deref().and_then(StatTimes::parse);
        let status = read("/proc/self/status");
        let status_kb = |key| status.as_deref().and_then(|s| status_kib(s, key));
        ProcessStats {
            cpu_seconds: times.map(|t| (t.utime + t.stime) as f64 / USER_HZ),
            resident_bytes: status_kb("VmRSS:").map(|kb| kb as f64 * 1024.0),
            virtual_bytes: status_kb("VmSize:").map(|kb| kb as f64 * 1024.0),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.filter(Result::is_ok).count() as f64),
            max_fds: read("/proc/self/limits")
                .as_deref()
                .and_then(soft_open_files_limit),
            start_time: times.and_then(|t| start_time(t.starttime)),
        }
    }
}

/// The fields of `/proc/self/stat` we use, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatTimes {
    utime: u64,
    stime: u64,
    /// Since boot.
    starttime: u64,
}

impl StatTimes {
    /// Parses `pid (comm) state ppid ...`. `comm` may hold spaces and
    /// parentheses, so fields are counted from the last `)`.
    fn parse(stat: &str) -> Option<StatTimes> {
        let (_, rest) = stat.rsplit_once(')')?;
        // Field 3 (state) is the first after `)`; utime, stime and
        // starttime are fields 14, 15 and 22.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(StatTimes {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
        })
    }
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let mut words = line[key.len()..].split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(n)
}

/// The soft limit of `Max open files` in `/proc/self/limits`; "unlimited"
/// is the largest u64, as the Go collector reports it.
fn soft_open_files_limit(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    match line["Max open files".len()..].split_whitespace().next()? {
        "unlimited" => Some(u64::MAX as f64),
        n => n.parse::<u64>().ok().map(|n| n as f64),
    }
}

/// `btime` of `/proc/stat`: boot time in Unix seconds.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The process start time in Unix seconds. It never changes, so the
/// (possibly long) `/proc/stat` is read once; a failed read is retried on
/// the next scrape.
fn start_time(starttime_ticks: u64) -> Option<f64> {
    static BOOT: OnceLock<u64> = OnceLock::new();
    let boot = match BOOT.get() {
        Some(b) => *b,
        None => {
            let b = boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
            *BOOT.get_or_init(|| b)
        }
    };
    Some(boot as f64 + starttime_ticks as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "4242 (we ird) (name) S 1 4242 4242 0 -1 4194560 1530 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1049374720 5236 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17610 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            StatTimes::parse(stat),
            Some(StatTimes {
                utime: 250,
                stime: 75,
                starttime: 123456,
            })
        );
        assert_eq!(StatTimes::parse("4242 (x) S 1 2"), None);
        assert_eq!(StatTimes::parse("garbage"), None);
    }

    #[test]
    fn status_sizes_are_read_in_kib() {
        let status =
            "Name:\twasmprobe\nVmPeak:\t  100 kB\nVmSize:\t   2048 kB\nVmRSS:\t    512 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(512));
        assert_eq!(status_kib(status, "VmSize:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert_eq!(status_kib("VmRSS:\t12 pages\n", "VmRSS:"), None);
    }

    #[test]
    fn soft_limit_of_open_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63560                63560                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files_limit(limits), Some(1024.0));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_open_files_limit(unlimited), Some(u64::MAX as f64));
        assert_eq!(soft_open_files_limit("Max processes 1 1\n"), None);
        assert_eq!(
            soft_open_files_limit("Max open files  lots  lots files\n"),
            None
        );
    }

    #[test]
    fn boot_time_from_proc_stat() {
        let s = "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 9\n";
        assert_eq!(boot_time(s), Some(1_700_000_000));
        assert_eq!(boot_time("cpu 1 2\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_plausibly() {
        let p = ProcessStats::read();
        let now = super::super::unix_seconds(std::time::SystemTime::now());
        assert!(p.cpu_seconds.is_some_and(|s| s >= 0.0), "{p:?}");
        assert!(p.resident_bytes.is_some_and(|b| b > 0.0), "{p:?}");
        assert!(
            p.virtual_bytes
                .zip(p.resident_bytes)
                .is_some_and(|(v, r)| v >= r),
            "{p:?}"
        );
        assert!(p.open_fds.is_some_and(|n| n >= 3.0), "{p:?}");
        assert!(
            p.max_fds.zip(p.open_fds).is_some_and(|(m, o)| m >= o),
            "{p:?}"
        );
        // Started in the last day, not in the future (ticks round down).
        assert!(
            p.start_time
                .is_some_and(|t| t <= now + 1.0 && t > now - 86_400.0),
            "{p:?}"
        );
    }
}
