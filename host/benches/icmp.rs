//! ICMP through the host capability on loopback: RTT beside the system's
//! `ping` measured in the same run, and the most echo replies per second
//! the engine sustains. Prints numbers; asserts nothing. Needs CAP_NET_RAW
//! or a ping_group_range covering this process.
//!
//! `cargo bench --bench icmp`

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmprobe::bindings::wasmprobe::plugin::icmp::EchoRequest;
use wasmprobe::bindings::wasmprobe::plugin::types::IpProtocol;
use wasmprobe::egress::{AllowList, AllowRule};
use wasmprobe::hostcalls::Usage;
use wasmprobe::hostcalls::icmp::{IcmpGrant, IcmpService, SocketMode};

fn request(count: u32, interval_ms: u32) -> EchoRequest {
    EchoRequest {
        target: "127.0.0.1".into(),
        count,
        interval_ms,
        timeout_ms: 1000,
        payload_size: 56,
        ttl: None,
        preferred_ip_protocol: Some(IpProtocol::Ip4),
        ip_protocol_fallback: false,
        source: None,
    }
}

fn system_ping_avg_us(count: u32) -> Option<f64> {
    let out = Command::new("ping")
        .args([
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.01",
            "127.0.0.1",
        ])
        .output()
        .ok()?;
    // rtt min/avg/max/mdev = 0.020/0.031/0.060/0.008 ms
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("min/avg/max"))?;
    let values = line.split('=').nth(1)?.trim();
    let avg: f64 = values.split('/').nth(1)?.parse().ok()?;
    Some(avg * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let service = Arc::new(IcmpService::detect());
    anyhow::ensure!(
        service.v4 != SocketMode::Unavailable,
        "no ICMP socket: run as root or widen ping_group_range"
    );
    let rule = AllowRule::try_from("icmp://127.0.0.1".to_string()).map_err(anyhow::Error::msg)?;
    let grant = Arc::new(IcmpGrant {
        allow: AllowList::new(vec![rule]),
        service: service.clone(),
        sources: Arc::from(Vec::new()),
    });
    println!("ICMP socket mode: ipv4={}", service.v4.as_str());

    rt.block_on(async {
        let deadline = || Instant::now() + Duration::from_secs(60);
        let _ = grant
            .echo(request(20, 1), deadline(), &Usage::default())
            .await;
        let r = grant
            .echo(request(100, 10), deadline(), &Usage::default())
            .await;
        let engine = r.ok().map(|r| {
            r.replies.iter().map(|x| x.rtt).sum::<f64>() / r.replies.len().max(1) as f64 * 1e6
        });
        let system = system_ping_avg_us(100);
        println!("loopback RTT, 100 echoes 10 ms apart:");
        println!("  engine  avg {:.1} us", engine.unwrap_or(f64::NAN));
        match system {
            Some(s) => println!(
                "  ping(8) avg {:.1} us  (engine/ping = {:.2})",
                s,
                engine.unwrap_or(f64::NAN) / s
            ),
            None => println!("  ping(8) not available (Debian: iputils-ping)"),
        }

        for concurrency in [1usize, 8, 32, 128, 512] {
            let started = Instant::now();
            let window = Duration::from_secs(5);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let grant = grant.clone();
                tasks.spawn(async move {
                    let mut replies = 0usize;
                    let mut sent = 0usize;
                    while started.elapsed() < window {
                        if let Ok(r) = grant
                            .echo(
                                request(100, 1),
                                Instant::now() + Duration::from_secs(10),
                                &Usage::default(),
                            )
                            .await
                        {
                            replies += r.replies.len();
                            sent += r.sent as usize;
                        }
                    }
                    (sent, replies)
                });
            }
            let (mut sent, mut replies) = (0, 0);
            while let Some(Ok((s, r))) = tasks.join_next().await {
                sent += s;
                replies += r;
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "  {concurrency:>4} concurrent callers: {:.0} replies/s ({} sent, {} lost)",
                replies as f64 / secs,
                sent,
                sent - replies
            );
        }
    });
    Ok(())
}
