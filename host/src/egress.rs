//! Egress policy: the one gate every networked capability goes through
//! before a packet leaves the host.
//!
//! A capability builds a [`Destination`] from what the plugin asked for and
//! calls [`admit`]: the destination is checked against the probe's
//! [`AllowList`] as written, its host is resolved, every address is checked
//! again, and one admitted address of the preferred protocol comes back.
//! The caller connects to that address and never resolves again, so a DNS
//! answer that changes between the check and the connect cannot move the
//! connection. A refusal is a value ([`Refusal`]) the capability turns into
//! its own WIT error, never a trap.
//!
//! Out of scope: which schemes a capability speaks (its own business) and
//! any I/O after the address is chosen.

mod resolve;
mod rules;

use std::net::IpAddr;

pub use resolve::{choose, protocol_of};
pub use rules::{AllowList, AllowRule, Denied, DestHost, Destination};

use crate::bindings::wasmprobe::plugin::types::IpProtocol;

/// An address a capability may connect to, and what resolving it cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admitted {
    pub ip: IpAddr,
    /// Seconds spent resolving (0 for an address literal).
    pub resolve: f64,
}

/// Why no address was admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The allow-list refused the destination or every address it has.
    Denied { message: String, resolve: f64 },
    /// The name did not resolve, or not to the preferred protocol.
    Dns { message: String, resolve: f64 },
}

impl Refusal {
    /// Seconds spent resolving before the refusal.
    pub fn resolve_seconds(&self) -> f64 {
        match self {
            Refusal::Denied { resolve, .. } | Refusal::Dns { resolve, .. } => *resolve,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::Denied { message, .. } | Refusal::Dns { message, .. } => message,
        }
    }
}

/// Checks `dest`, resolves it (`port` is only a resolver hint) and returns
/// the address to use: the first admitted one of `preferred`, or of any
/// protocol when `fallback` allows.
pub async fn admit(
    allow: &AllowList,
    dest: &Destination,
    port: u16,
    preferred: Option<IpProtocol>,
    fallback: bool,
) -> Result<Admitted, Refusal> {
    allow.check(dest).map_err(|d| Refusal::Denied {
        message: d.to_string(),
        resolve: 0.0,
    })?;
    let (addrs, resolve) = resolve::resolve(&dest.host, port).await;
    let addrs = addrs.map_err(|message| Refusal::Dns { message, resolve })?;
    let admitted = allow
        .filter_resolved(dest, addrs)
        .map_err(|d| Refusal::Denied {
            message: d.to_string(),
            resolve,
        })?;
    // A per-address run reaches its own address of the name, and only
    // while the name still has it.
    if let Some(ip) = allow.pin_for(&dest.host) {
        return if admitted.contains(&ip) {
            Ok(Admitted { ip, resolve })
        } else {
            Err(Refusal::Dns {
                message: format!(
                    "{} no longer resolves to {ip} (this run checks that address)",
                    dest.host
                ),
                resolve,
            })
        };
    }
    let ip = choose(&admitted, preferred, fallback).ok_or_else(|| Refusal::Dns {
        message: format!("{} has no address of the preferred protocol", dest.host),
        resolve,
    })?;
    Ok(Admitted { ip, resolve })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> AllowList {
        AllowList::new(
            list.iter()
                .filter_map(|r| AllowRule::try_from(r.to_string()).ok())
                .collect(),
        )
    }

    fn dest(scheme: &str, host: &str, port: Option<u16>) -> Destination {
        Destination {
            scheme: scheme.into(),
            host: DestHost::parse(host),
            port,
        }
    }

    #[tokio::test]
    async fn an_empty_list_admits_nothing() {
        let refused = admit(
            &AllowList::default(),
            &dest("http", "127.0.0.1", Some(80)),
            80,
            None,
            true,
        )
        .await;
        assert!(
            matches!(refused, Err(Refusal::Denied { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn an_admitted_literal_needs_no_resolution() {
        let allow = rules(&["http://127.0.0.1:8080"]);
        let ok = admit(
            &allow,
            &dest("http", "127.0.0.1", Some(8080)),
            8080,
            None,
            true,
        )
        .await;
        assert_eq!(
            ok,
            Ok(Admitted {
                ip: [127, 0, 0, 1].into(),
                resolve: 0.0
            })
        );
        let other_port = admit(
            &allow,
            &dest("http", "127.0.0.1", Some(8081)),
            8081,
            None,
            true,
        )
        .await;
        assert!(matches!(other_port, Err(Refusal::Denied { .. })));
    }

    #[tokio::test]
    async fn the_preferred_protocol_without_fallback_is_a_dns_refusal() {
        let allow = rules(&["icmp://127.0.0.1"]);
        let refused = admit(
            &allow,
            &dest("icmp", "127.0.0.1", None),
            0,
            Some(IpProtocol::Ip6),
            false,
        )
        .await;
        assert!(matches!(refused, Err(Refusal::Dns { .. })), "{refused:?}");
    }
}
