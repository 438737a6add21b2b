//! Running wasmprobe as an operator does: replicas sharing the probes, and
//! a graceful stop with runs in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::harness::{Engine, Running, get};
use crate::targets;

const WAIT: Duration = Duration::from_secs(90);
const PROBES: usize = 60;

fn replicas(count: u32) -> Vec<Running> {
    (0..count)
        .map(|i| {
            let mut e = Engine::new().arg("--shard").arg(&format!("{i}/{count}"));
            for p in 0..PROBES {
                e = e.probe(
                    &format!("job-{p:02}"),
                    "plugin = \"misbehave\"\nschedule = \"*/2 * * * * *\"",
                );
            }
            // An on-demand module stays on every replica.
            e.probe("module", "plugin = \"misbehave\"").start()
        })
        .collect()
}

/// The scheduled probes each replica reports, once each has run them all.
fn owned(replicas: &[Running]) -> Vec<BTreeSet<String>> {
    replicas
        .iter()
        .map(|r| {
            let s = r.wait_for("every owned probe has run", WAIT, |s| {
                let scheduled = s
                    .all("wasmprobe_probes")
                    .iter()
                    .find(|x| x.labels.get("scheduled").map(String::as_str) == Some("true"))
                    .map(|x| x.value);
                let ran = s
                    .all("probe_success")
                    .iter()
                    .filter(|x| x.labels.contains_key("probe"))
                    .count();
                scheduled.is_some_and(|n| n as usize == ran)
            });
            let shard = s
                .all("wasmprobe_build_info")
                .first()
                .and_then(|x| x.labels.get("shard").cloned())
                .unwrap_or_default();
            assert!(shard.ends_with(&format!("/{}", replicas.len())), "{shard}");
            assert_eq!(
                s.value(
                    "wasmprobe_probes",
                    &[("scheduled", "false"), ("shard", &shard)]
                ),
                1.0,
                "the on-demand module is on every replica"
            );
            s.all("probe_success")
                .iter()
                .filter_map(|x| x.labels.get("probe").cloned())
                .collect()
        })
        .collect()
}

#[test]
fn replicas_cover_every_probe_exactly_once_and_a_new_one_takes_a_share() {
    let three = replicas(3);
    let by_three = owned(&three);
    drop(three);
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for (i, set) in by_three.iter().enumerate() {
        for p in set {
            assert!(owner.insert(p.clone(), i).is_none(), "{p} runs twice");
        }
    }
    assert_eq!(owner.len(), PROBES, "every probe runs somewhere");
    println!(
        "3 replicas: {:?} probes each",
        by_three.iter().map(BTreeSet::len).collect::<Vec<_>>()
    );

    let four = replicas(4);
    let by_four = owned(&four);
    let mut moved = 0;
    for (i, set) in by_four.iter().enumerate() {
        for p in set {
            if owner.get(p) != Some(&i) {
                moved += 1;
                assert_eq!(i, 3, "{p} moved between old replicas");
            }
        }
    }
    assert_eq!(by_four.iter().map(BTreeSet::len).sum::<usize>(), PROBES);
    let share = moved as f64 / PROBES as f64;
    println!("4th replica took {moved} of {PROBES} probes ({share:.2})");
    assert!((0.1..=0.4).contains(&share), "{share}");
}

#[test]
fn sigterm_turns_readiness_off_drains_runs_and_exits_zero() {
    let slow = targets::http();
    let hanging = targets::hanging();
    let mut e = Engine::new()
        .probe(
            "finishing",
            &format!(
                "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntimeout = \"20s\"\nallow = [{:?}]\n[probes.finishing.config]\nbehaviour = \"http\"\nurl = {:?}",
                slow.origin("http"),
                slow.url("/slow/1500")
            ),
        )
        .probe(
            "stuck",
            &format!(
                "plugin = \"misbehave\"\nschedule = \"* * * * * *\"\ntimeout = \"20s\"\nallow = [{:?}]\n[probes.stuck.config]\nbehaviour = \"http\"\nurl = {:?}",
                hanging.origin("http"),
                hanging.url("/")
            ),
        )
        .start();
    e.wait_for("runs in flight", WAIT, |s| {
        s.get("wasmprobe_runs_in_flight", &[]).unwrap_or(0.0) >= 2.0
    });
    assert_eq!(get(&e.url("/readyz"), None).status, 200);
    let sent = Instant::now();
    e.signal("TERM");
    // While runs drain, the endpoint still answers and says not ready.
    let mut saw_not_ready = false;
    while sent.elapsed() < Duration::from_secs(2) {
        let r = get(&e.url("/readyz"), None);
        if r.status == 503 {
            saw_not_ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_not_ready, "readiness did not go false\n{}", e.log());
    // The harness gives `--drain 3s`: the stuck run is cancelled then.
    let status = e.wait_exit(Duration::from_secs(15));
    let took = sent.elapsed();
    println!("SIGTERM to exit: {:.2} s (drain 3 s)", took.as_secs_f64());
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", e.log());
    let log = e.log();
    assert!(log.contains("draining runs"), "{log}");
    assert!(log.contains("cancelling runs still in flight"), "{log}");
}

/// `--log.format=json` writes one JSON object per line, and `logfmt`
/// `key=value` pairs, as log pipelines of Prometheus exporters expect.
#[test]
fn log_lines_come_as_json_or_logfmt_on_request() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("probes.toml");
    std::fs::write(&config, "").unwrap_or_else(|e| panic!("{e}"));
    let first_lines = |format: &str| -> Vec<String> {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmprobe"))
            .arg(format!("--log.format={format}"))
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env_remove("WASMPROBE_LOG")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let done = line.contains("listening");
            lines.push(line);
            if done || lines.len() > 20 {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        lines
    };
    let json = first_lines("json");
    let listening = json
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"))
        })
        .find(|v| v["fields"]["message"] == "listening")
        .unwrap_or_else(|| panic!("{json:?}"));
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["fields"]["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );

    let logfmt = first_lines("logfmt");
    let line = logfmt
        .iter()
        .find(|l| l.contains("message=listening"))
        .unwrap_or_else(|| panic!("{logfmt:?}"));
    for key in [
        "ts=",
        "level=info",
        "target=wasmprobe::run",
        "addr=127.0.0.1:",
    ] {
        assert!(line.contains(key), "{key} not in {line}");
    }
}
