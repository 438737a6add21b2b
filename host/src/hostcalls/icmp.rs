//! `icmp`: echo requests made by the host, which owns the sockets.
//!
//! At start-up [`IcmpService::detect`] finds the least privileged socket
//! each family allows (datagram where `net.ipv4.ping_group_range` covers
//! the process's group, raw with CAP_NET_RAW) and the engine reports it;
//! with neither, calls answer `unavailable` and everything else runs on.
//! Each call checks its target against the probe's allow-list (`icmp://`
//! rules: names, addresses or networks) before resolution and every
//! resolved address after, then sends from a shared per-family socket
//! where each reply is matched to its own request.

mod packet;
mod socket;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket::Pinger;
pub use socket::SocketMode;

use serde::Serialize;
use wasmtime::component::{HasSelf, Linker};

use super::tape::{Tape, TapedCall};
use super::{Budget, CallScope, Capability, LoadScope, RefusalReason, RunScope, Usage};
use crate::bindings::wasmprobe::plugin::icmp::{
    self as wit, EchoReply, EchoRequest, EchoResult, ErrorKind, Host, IcmpError,
    SocketMode as WitMode,
};
use crate::config::ProbeConfig;
use crate::egress::{self, AllowList, DestHost, Destination, Refusal, protocol_of};

/// Most echo requests one call may send.
pub const MAX_COUNT: u32 = 100;
/// Largest payload of one request.
pub const MAX_PAYLOAD: u32 = 65_000;

/// Pingers by (IPv6?, source address).
type Pingers = HashMap<(bool, Option<IpAddr>), Arc<Pinger>>;

/// The process's ICMP sockets.
pub struct IcmpService {
    pub v4: SocketMode,
    pub v6: SocketMode,
    pingers: tokio::sync::Mutex<Pingers>,
}

impl std::fmt::Debug for IcmpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcmpService")
            .field("v4", &self.v4)
            .field("v6", &self.v6)
            .finish_non_exhaustive()
    }
}

impl IcmpService {
    /// A service that opens no socket: every echo is `unavailable`.
    pub fn unavailable() -> IcmpService {
        IcmpService {
            v4: SocketMode::Unavailable,
            v6: SocketMode::Unavailable,
            pingers: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Finds which sockets this process may open.
    pub fn detect() -> IcmpService {
        IcmpService {
            v4: socket::detect(false),
            v6: socket::detect(true),
            pingers: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn pinger(&self, v6: bool, source: Option<IpAddr>) -> Result<Arc<Pinger>, String> {
        let mode = if v6 { self.v6 } else { self.v4 };
        if mode == SocketMode::Unavailable {
            return Err(format!(
                "no ICMP socket for IPv{}: allow this group in net.ipv4.ping_group_range or grant CAP_NET_RAW",
                if v6 { 6 } else { 4 }
            ));
        }
        let mut pingers = self.pingers.lock().await;
        if let Some(p) = pingers.get(&(v6, source)) {
            return Ok(p.clone());
        }
        let p =
            Pinger::open(v6, mode, source).map_err(|e| format!("cannot open ICMP socket: {e}"))?;
        pingers.insert((v6, source), p.clone());
        Ok(p)
    }
}

/// What one probe may ping, built once per config load.
#[derive(Debug)]
pub struct IcmpGrant {
    pub allow: AllowList,
    pub service: Arc<IcmpService>,
    /// The only addresses an echo may be sent from (`[engine]
    /// icmp_sources`): each opens and keeps a socket of its own.
    pub sources: Arc<[IpAddr]>,
}

fn fail(kind: ErrorKind, message: impl Into<String>, resolve: f64) -> IcmpError {
    IcmpError {
        kind,
        message: message.into(),
        resolve,
    }
}

impl IcmpGrant {
    /// Sends the requests of one call and gathers their replies; never
    /// waits past `deadline`. The packets (and their payloads, out and
    /// back) are taken from the run's budgets in `usage` before the first
    /// is sent: a call that would pass one sends nothing.
    pub async fn echo(
        &self,
        req: EchoRequest,
        deadline: Instant,
        usage: &Usage,
    ) -> Result<EchoResult, IcmpError> {
        if req.count == 0 || req.count > MAX_COUNT {
            return Err(fail(
                ErrorKind::InvalidRequest,
                format!("count must be 1 to {MAX_COUNT}"),
                0.0,
            ));
        }
        if req.payload_size < packet::TOKEN_LEN as u32 || req.payload_size > MAX_PAYLOAD {
            return Err(fail(
                ErrorKind::InvalidRequest,
                format!(
                    "payload-size must be {} to {MAX_PAYLOAD}",
                    packet::TOKEN_LEN
                ),
                0.0,
            ));
        }
        let source = match req.source.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<IpAddr>()
                    .map_err(|_| {
                        fail(
                            ErrorKind::InvalidRequest,
                            format!("source {s:?} is not an address"),
                            0.0,
                        )
                    })?
                    .to_canonical(),
            ),
        };
        if let Some(s) = source
            && !self.sources.contains(&s)
        {
            usage.refused(RefusalReason::AllowList);
            return Err(fail(
                ErrorKind::Denied,
                format!(
                    "source {s} is not an address the operator allows ([engine] icmp_sources = {:?})",
                    self.sources
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ),
                0.0,
            ));
        }
        let dest = Destination {
            scheme: "icmp".into(),
            host: DestHost::parse(req.target.trim()),
            port: None,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let admitted = egress::admit(
            &self.allow,
            &dest,
            0,
            req.preferred_ip_protocol,
            req.ip_protocol_fallback,
        );
        let (ip, resolve) = match tokio::time::timeout(left, admitted).await {
            Ok(Ok(a)) => (a.ip, a.resolve),
            Ok(Err(Refusal::Denied { message, resolve })) => {
                usage.refused(RefusalReason::AllowList);
                return Err(fail(ErrorKind::Denied, message, resolve));
            }
            Ok(Err(Refusal::Dns { message, resolve })) => {
                return Err(fail(ErrorKind::Dns, message, resolve));
            }
            Err(_) => {
                return Err(fail(
                    ErrorKind::Dns,
                    "deadline passed while resolving",
                    left.as_secs_f64(),
                ));
            }
        };
        let (count, size) = (u64::from(req.count), u64::from(req.payload_size));
        usage
            .take(Budget::Packets, count)
            .and_then(|()| usage.take(Budget::Transfer, 2 * count * size))
            .map_err(|spent| fail(ErrorKind::Denied, spent.to_string(), resolve))?;
        let v6 = ip.is_ipv6();

        let started = Instant::now();
        let pinger = self.service.pinger(v6, source).await.map_err(|e| {
            let kind = if self.service_mode(v6) == SocketMode::Unavailable {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Io
            };
            fail(kind, e, resolve)
        })?;
        let setup = started.elapsed().as_secs_f64();

        let per_packet = Duration::from_millis(u64::from(req.timeout_ms.max(1)));
        let interval = Duration::from_millis(u64::from(req.interval_ms.max(1)));
        let mut in_flight = tokio::task::JoinSet::new();
        let mut sent = 0u32;
        for i in 0..req.count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let p = pinger.clone();
            let (ttl, size) = (req.ttl, req.payload_size as usize);
            let timeout = per_packet.min(left);
            in_flight.spawn(async move { (p.echo(ip, ttl, size, timeout).await, i) });
            sent += 1;
            if i + 1 < req.count {
                tokio::time::sleep(
                    interval.min(deadline.saturating_duration_since(Instant::now())),
                )
                .await;
            }
        }
        let mut replies = Vec::new();
        let mut send_error = None;
        while let Some(done) = in_flight.join_next().await {
            match done {
                Ok((Ok(socket::Echo::Reply { rtt, hop_limit }), i)) => replies.push(EchoReply {
                    sequence: i as u16,
                    rtt: rtt.as_secs_f64(),
                    hop_limit,
                }),
                Ok((Ok(socket::Echo::Lost), _)) => {}
                Ok((Err(e), _)) => send_error = Some(e.to_string()),
                Err(e) => send_error = Some(e.to_string()),
            }
        }
        Ok(EchoResult {
            address: ip.to_string(),
            ip_protocol: protocol_of(ip),
            resolve,
            setup,
            sent,
            replies,
            mode: match pinger.mode() {
                SocketMode::Raw => WitMode::Raw,
                _ => WitMode::Datagram,
            },
            send_error,
        })
    }

    fn service_mode(&self, v6: bool) -> SocketMode {
        if v6 { self.service.v6 } else { self.service.v4 }
    }
}

/// The `icmp` unit. Its grants need the process's [`IcmpService`]
/// (registered in [`super::Services`] when the engine starts); without it
/// every echo is `unavailable`.
#[derive(Debug)]
pub struct Icmp;

/// One run's `icmp`.
#[derive(Debug)]
pub struct IcmpContext {
    grant: Option<Arc<IcmpGrant>>,
    run: CallScope,
}

impl Capability for Icmp {
    const NAME: &'static str = "icmp";
    type Grant = IcmpGrant;
    type Context = IcmpContext;

    fn grant(probe: &ProbeConfig, load: &mut LoadScope<'_>) -> Result<IcmpGrant, String> {
        Ok(IcmpGrant {
            allow: probe.allow.clone(),
            service: load
                .services
                .get::<IcmpService>()
                .unwrap_or_else(|| Arc::new(IcmpService::unavailable())),
            sources: probe.icmp_sources.clone(),
        })
    }

    fn context(grant: Option<&Arc<IcmpGrant>>, run: &RunScope) -> IcmpContext {
        IcmpContext {
            grant: grant.cloned(),
            run: run.calls(),
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut IcmpContext,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<IcmpContext>>(linker, get)
    }
}

/// `icmp.echo` on tape.
#[derive(Serialize)]
struct EchoCall {
    request: EchoRequest,
}

impl TapedCall for EchoCall {
    const NAME: &'static str = "icmp-echo";
    type Answer = Result<EchoResult, IcmpError>;

    fn refused(&self, why: String) -> Self::Answer {
        Err(fail(ErrorKind::InvalidRequest, why, 0.0))
    }
}

impl Host for IcmpContext {
    async fn echo(&mut self, req: EchoRequest) -> wasmtime::Result<Result<EchoResult, IcmpError>> {
        self.run.usage.call(Icmp::NAME);
        let (grant, deadline, usage) = (
            self.grant.clone(),
            self.run.deadline(),
            self.run.usage.clone(),
        );
        let call = EchoCall { request: req };
        Ok(Tape::around(
            self.run.tape.as_deref(),
            &self.run.revealed,
            call,
            |c| async move {
                match grant {
                    Some(grant) => {
                        let size = u64::from(c.request.payload_size);
                        let result = grant.echo(c.request, deadline, &usage).await;
                        if let Ok(r) = &result {
                            let (sent, received) = (u64::from(r.sent), r.replies.len() as u64);
                            usage.packets(sent, received);
                            usage.bytes(sent * size, received * size);
                        }
                        result
                    }
                    None => Err(fail(
                        ErrorKind::Denied,
                        format!(
                            "target {:?} is not allowed: no network access outside run()",
                            c.request.target
                        ),
                        0.0,
                    )),
                }
            },
        )
        .await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::AllowRule;

    fn echo(target: &str) -> EchoRequest {
        EchoRequest {
            target: target.into(),
            count: 1,
            interval_ms: 10,
            timeout_ms: 100,
            payload_size: 56,
            ttl: None,
            preferred_ip_protocol: None,
            ip_protocol_fallback: true,
            source: None,
        }
    }

    fn context(grant: Option<IcmpGrant>) -> IcmpContext {
        IcmpContext {
            grant: grant.map(Arc::new),
            run: CallScope {
                deadline: Some(Instant::now() + Duration::from_secs(2)),
                ..CallScope::default()
            },
        }
    }

    fn grant(rule: &str) -> IcmpGrant {
        IcmpGrant {
            allow: AllowList::new(vec![
                AllowRule::try_from(rule.to_string()).unwrap_or_else(|e| panic!("{e}")),
            ]),
            service: Arc::new(IcmpService::unavailable()),
            sources: Arc::from(vec![IpAddr::from([127, 0, 0, 1])]),
        }
    }

    #[tokio::test]
    async fn echoes_past_the_packet_budget_are_refused_before_a_socket() {
        let mut ctx = context(Some(grant("icmp://127.0.0.1")));
        ctx.run.usage = Arc::new(Usage::new(&crate::config::Limits {
            max_packets: 4,
            ..crate::config::Limits::default()
        }));
        let mut req = echo("127.0.0.1");
        req.count = 5;
        let result = ctx.echo(req).await;
        let err = result.ok().and_then(Result::err);
        assert_eq!(err.as_ref().map(|e| e.kind), Some(ErrorKind::Denied));
        let message = err.map(|e| e.message).unwrap_or_default();
        assert!(message.contains("limits.max_packets = 4"), "{message}");
        let counts = ctx.run.usage.counts(0, Duration::ZERO);
        assert_eq!(counts.refusals, [0, 0, 0, 1]);
        assert_eq!(counts.packets_sent, 0);
        // Within the budget the call goes on (to the missing socket here).
        let result = ctx.echo(echo("127.0.0.1")).await;
        let kind = result.ok().and_then(Result::err).map(|e| e.kind);
        assert_eq!(kind, Some(ErrorKind::Unavailable));
    }

    #[tokio::test]
    async fn without_a_grant_an_echo_is_denied() {
        let result = context(None).echo(echo("127.0.0.1")).await;
        assert!(matches!(
            result,
            Ok(Err(IcmpError {
                kind: ErrorKind::Denied,
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn a_target_outside_the_allow_list_is_denied_before_the_socket() {
        let result = context(Some(grant("icmp://127.0.0.2")))
            .echo(echo("127.0.0.1"))
            .await;
        assert!(
            matches!(
                result,
                Ok(Err(IcmpError {
                    kind: ErrorKind::Denied,
                    ..
                }))
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn an_admitted_target_without_a_socket_is_unavailable() {
        let result = context(Some(grant("icmp://127.0.0.1")))
            .echo(echo("127.0.0.1"))
            .await;
        assert!(
            matches!(
                result,
                Ok(Err(IcmpError {
                    kind: ErrorKind::Unavailable,
                    ..
                }))
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_source_the_operator_did_not_list_is_denied_before_any_socket() {
        let mut req = echo("127.0.0.1");
        req.source = Some("127.0.0.2".into());
        let result = context(Some(grant("icmp://127.0.0.1"))).echo(req).await;
        assert!(
            matches!(&result, Ok(Err(IcmpError { kind: ErrorKind::Denied, message, .. })) if message.contains("icmp_sources")),
            "{result:?}"
        );
        let mut listed = echo("127.0.0.1");
        listed.source = Some("127.0.0.1".into());
        let result = context(Some(grant("icmp://127.0.0.1"))).echo(listed).await;
        assert!(
            matches!(
                result,
                Ok(Err(IcmpError {
                    kind: ErrorKind::Unavailable,
                    ..
                }))
            ),
            "a listed source goes on to the socket: {result:?}"
        );
    }

    #[tokio::test]
    async fn requests_out_of_range_are_invalid() {
        let mut req = echo("127.0.0.1");
        req.count = MAX_COUNT + 1;
        let result = context(Some(grant("icmp://127.0.0.1"))).echo(req).await;
        assert!(matches!(
            result,
            Ok(Err(IcmpError {
                kind: ErrorKind::InvalidRequest,
                ..
            }))
        ));
    }
}
