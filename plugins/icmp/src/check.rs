//! The probe's config, the echo request it asks for, and how the replies
//! turn into metrics and a verdict. Nothing here calls the host.

use schemars::JsonSchema;
use serde::Deserialize;
use wasmprobe_sdk::family::{FamilyExt, counter, gauge, histogram};
use wasmprobe_sdk::icmp::{EchoRequest, EchoResult, IcmpError, IpProtocol};
use wasmprobe_sdk::{MetricFamily, Outcome, Report};

/// Buckets of the RTT histogram, seconds: loopback to intercontinental.
pub const RTT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Ip4,
    Ip6,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Echo requests per run (1 to 100).
    pub count: u32,
    /// Milliseconds between requests.
    pub interval_ms: u32,
    /// Milliseconds to wait for each reply.
    pub timeout_ms: u32,
    /// Payload bytes per request (8 to 65000).
    pub payload_size: u32,
    /// TTL / hop limit of the requests.
    pub ttl: Option<u8>,
    pub preferred_ip_protocol: Protocol,
    pub ip_protocol_fallback: bool,
    /// Send from this address.
    pub source_ip_address: Option<String>,
    /// The probe succeeds when the loss ratio is below this (1.0: any
    /// reply succeeds; 0.5: more than half must answer).
    pub success_if_loss_below: f64,
    /// And, when set, when the average RTT is at most this many seconds.
    pub max_rtt_avg_seconds: Option<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            count: 3,
            interval_ms: 200,
            timeout_ms: 1000,
            payload_size: 56,
            ttl: None,
            preferred_ip_protocol: Protocol::Ip6,
            ip_protocol_fallback: true,
            source_ip_address: None,
            success_if_loss_below: 1.0,
            max_rtt_avg_seconds: None,
        }
    }
}

/// Every family this plugin emits; blackbox_exporter's names where the
/// concept is the same.
pub fn families() -> Vec<MetricFamily> {
    vec![
        gauge(
            "probe_icmp_duration_seconds",
            "Duration of the icmp request by phase (rtt: average of the replies).",
        )
        .labels(&["phase"])
        .unit("seconds"),
        gauge(
            "probe_icmp_reply_hop_limit",
            "Replied packet hop limit (TTL for ipv4).",
        ),
        gauge(
            "probe_dns_lookup_time_seconds",
            "Returns the time taken for probe dns lookup in seconds.",
        )
        .unit("seconds"),
        gauge(
            "probe_ip_protocol",
            "Specifies whether probe ip protocol is IP4 or IP6.",
        ),
        gauge(
            "probe_ip_addr_hash",
            "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
        ),
        counter("probe_icmp_packets_sent_total", "Echo requests sent."),
        counter(
            "probe_icmp_packets_received_total",
            "Echo replies received.",
        ),
        gauge(
            "probe_icmp_packet_loss_ratio",
            "Share of the last run's requests without a reply (0 to 1).",
        ),
        gauge(
            "probe_icmp_rtt_min_seconds",
            "Shortest round trip of the last run.",
        )
        .unit("seconds"),
        gauge(
            "probe_icmp_rtt_avg_seconds",
            "Average round trip of the last run.",
        )
        .unit("seconds"),
        gauge(
            "probe_icmp_rtt_max_seconds",
            "Longest round trip of the last run.",
        )
        .unit("seconds"),
        gauge(
            "probe_icmp_rtt_stddev_seconds",
            "Standard deviation of the last run's round trips.",
        )
        .unit("seconds"),
        histogram(
            "probe_icmp_rtt_seconds",
            "Round trip of every reply.",
            RTT_BUCKETS,
        )
        .unit("seconds"),
    ]
}

/// RTT statistics of a run: min, avg, max, population standard deviation.
pub fn stats(rtts: &[f64]) -> Option<(f64, f64, f64, f64)> {
    if rtts.is_empty() {
        return None;
    }
    let n = rtts.len() as f64;
    let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().copied().fold(0.0, f64::max);
    let avg = rtts.iter().sum::<f64>() / n;
    let var = rtts.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / n;
    Some((min, avg, max, var.sqrt()))
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.count) {
            return Err(format!("count {} must be 1 to 100", self.count));
        }
        if !(8..=65_000).contains(&self.payload_size) {
            return Err(format!(
                "payload_size {} must be 8 to 65000",
                self.payload_size
            ));
        }
        if !(0.0..=1.0).contains(&self.success_if_loss_below) || self.success_if_loss_below == 0.0 {
            return Err("success_if_loss_below must be above 0 and at most 1".into());
        }
        Ok(())
    }

    pub fn request(&self, target: &str) -> EchoRequest {
        EchoRequest {
            target: target.to_string(),
            count: self.count,
            interval_ms: self.interval_ms,
            timeout_ms: self.timeout_ms,
            payload_size: self.payload_size,
            ttl: self.ttl,
            preferred_ip_protocol: Some(match self.preferred_ip_protocol {
                Protocol::Ip4 => IpProtocol::Ip4,
                Protocol::Ip6 => IpProtocol::Ip6,
            }),
            ip_protocol_fallback: self.ip_protocol_fallback,
            source: self.source_ip_address.clone(),
        }
    }

    pub fn evaluate(&self, result: Result<EchoResult, IcmpError>) -> Report {
        let mut out = Outcome::new();
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                out.push(
                    "probe_icmp_duration_seconds",
                    &[("phase", "resolve")],
                    e.resolve,
                )
                .set("probe_dns_lookup_time_seconds", e.resolve);
                return out.finish(false, Some(format!("{:?}: {}", e.kind, e.message)));
            }
        };
        let rtts: Vec<f64> = r.replies.iter().map(|x| x.rtt).collect();
        let received = r.replies.len() as f64;
        let sent = f64::from(r.sent);
        let loss = if r.sent == 0 {
            1.0
        } else {
            1.0 - received / sent
        };
        let protocol = match r.ip_protocol {
            IpProtocol::Ip4 => 4.0,
            IpProtocol::Ip6 => 6.0,
        };
        out.push(
            "probe_icmp_duration_seconds",
            &[("phase", "resolve")],
            r.resolve,
        )
        .push(
            "probe_icmp_duration_seconds",
            &[("phase", "setup")],
            r.setup,
        )
        .set("probe_dns_lookup_time_seconds", r.resolve)
        .set("probe_ip_protocol", protocol)
        .set(
            "probe_ip_addr_hash",
            f64::from(crc32fast::hash(r.address.as_bytes())),
        )
        .add("probe_icmp_packets_sent_total", sent)
        .add("probe_icmp_packets_received_total", received)
        .set("probe_icmp_packet_loss_ratio", loss);
        let stats = stats(&rtts);
        if let Some((min, avg, max, stddev)) = stats {
            out.push("probe_icmp_duration_seconds", &[("phase", "rtt")], avg)
                .set("probe_icmp_rtt_min_seconds", min)
                .set("probe_icmp_rtt_avg_seconds", avg)
                .set("probe_icmp_rtt_max_seconds", max)
                .set("probe_icmp_rtt_stddev_seconds", stddev);
            for rtt in &rtts {
                out.observe("probe_icmp_rtt_seconds", *rtt);
            }
        }
        if let Some(hop) = r.replies.last().and_then(|x| x.hop_limit) {
            out.set("probe_icmp_reply_hop_limit", f64::from(hop));
        }
        let mut failures = Vec::new();
        if loss >= self.success_if_loss_below {
            failures.push(format!(
                "{} of {} echo requests to {} got no reply",
                r.sent as usize - r.replies.len(),
                r.sent,
                r.address
            ));
        }
        if let (Some(limit), Some((_, avg, _, _))) = (self.max_rtt_avg_seconds, stats)
            && avg > limit
        {
            failures.push(format!("average RTT {avg:.6}s is above {limit}s"));
        }
        if let Some(e) = &r.send_error {
            failures.push(format!("sending failed: {e}"));
        }
        let success = loss < self.success_if_loss_below
            && !self
                .max_rtt_avg_seconds
                .is_some_and(|l| stats.is_some_and(|s| s.1 > l));
        out.finish(success, (!failures.is_empty()).then(|| failures.join("; ")))
    }
}

#[cfg(test)]
mod tests;
