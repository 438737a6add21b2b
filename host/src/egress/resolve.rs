//! Resolving a destination's host and choosing the one address a host call
//! connects to, shared by the capabilities that reach the network.

use std::net::IpAddr;
use std::time::Instant;

use super::rules::DestHost;
use crate::bindings::wasmprobe::plugin::types::IpProtocol;

/// The protocol of an address (IPv4-mapped IPv6 counts as IPv4).
pub fn protocol_of(ip: IpAddr) -> IpProtocol {
    if ip.to_canonical().is_ipv4() {
        IpProtocol::Ip4
    } else {
        IpProtocol::Ip6
    }
}

/// The addresses of a host, in the resolver's order without duplicates,
/// and the seconds resolving took (0 for an address).
pub(crate) async fn resolve(host: &DestHost, port: u16) -> (Result<Vec<IpAddr>, String>, f64) {
    match host {
        DestHost::Ip(ip) => (Ok(vec![*ip]), 0.0),
        DestHost::Name(name) => {
            let started = Instant::now();
            let found = tokio::net::lookup_host((name.as_str(), port)).await;
            let took = started.elapsed().as_secs_f64();
            let found = match found {
                Ok(f) => f,
                Err(e) => return (Err(format!("cannot resolve {name:?}: {e}")), took),
            };
            let mut ips: Vec<IpAddr> = Vec::new();
            for a in found {
                let ip = a.ip().to_canonical();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            (Ok(ips), took)
        }
    }
}

/// The first admitted address of the preferred protocol, or of any
/// protocol when falling back is allowed.
pub fn choose(addrs: &[IpAddr], preferred: Option<IpProtocol>, fallback: bool) -> Option<IpAddr> {
    let Some(pref) = preferred else {
        return addrs.first().copied();
    };
    addrs
        .iter()
        .find(|a| protocol_of(**a) == pref)
        .or_else(|| if fallback { addrs.first() } else { None })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_and_fallback() {
        let v4: IpAddr = [127, 0, 0, 1].into();
        let v6: IpAddr = [0u16, 0, 0, 0, 0, 0, 0, 1].into();
        assert_eq!(choose(&[v4, v6], Some(IpProtocol::Ip6), true), Some(v6));
        assert_eq!(choose(&[v4], Some(IpProtocol::Ip6), true), Some(v4));
        assert_eq!(choose(&[v4], Some(IpProtocol::Ip6), false), None);
        assert_eq!(choose(&[v6, v4], None, false), Some(v6));
    }
}
