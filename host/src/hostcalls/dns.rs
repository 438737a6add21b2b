//! `dns`: one DNS query made by the host on a plugin's behalf, over UDP or
//! TCP, with the wire format read and written by `hickory-proto`.
//!
//! The server is a destination like any other: `dns://HOST:PORT` through
//! [`crate::egress::admit`] before any packet leaves, including the
//! system's resolver when the plugin names no server (so a plugin cannot
//! use the operator's resolver to carry data out unless a rule says so).
//! An answer must carry the query's id and question, else it is ignored
//! (UDP) or refused (TCP); a UDP answer from another address never reaches
//! the socket, which is connected to the server. Each query is one of the
//! run's requests; its bytes count in the transfer budget.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout_at;
use wasmtime::component::{HasSelf, Linker};

use super::tape::{Tape, TapedCall};
use super::{Budget, CallScope, Capability, LoadScope, RunScope, Usage};
use crate::bindings::wasmprobe::plugin::dns::{
    self as wit, Answer, DnsError, DnsTimings, ErrorKind, Host, Request, ResourceRecord, Transport,
};
use crate::config::ProbeConfig;
use crate::egress::{AllowList, Destination, Refusal, protocol_of};

/// Largest UDP answer accepted (the EDNS payload size offered).
const UDP_PAYLOAD: u16 = 4096;

/// What one probe may ask over DNS, built once per config load.
#[derive(Debug)]
pub struct DnsGrant {
    pub allow: AllowList,
}

/// The `dns` unit.
#[derive(Debug)]
pub struct Dns;

/// One run's `dns`.
#[derive(Debug)]
pub struct DnsContext {
    grant: Option<Arc<DnsGrant>>,
    run: CallScope,
}

impl Capability for Dns {
    const NAME: &'static str = "dns";
    type Grant = DnsGrant;
    type Context = DnsContext;

    fn grant(probe: &ProbeConfig, _: &mut LoadScope<'_>) -> Result<DnsGrant, String> {
        Ok(DnsGrant {
            allow: probe.allow.clone(),
        })
    }

    fn context(grant: Option<&Arc<DnsGrant>>, run: &RunScope) -> DnsContext {
        DnsContext {
            grant: grant.cloned(),
            run: run.calls(),
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut DnsContext,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<DnsContext>>(linker, get)
    }
}

/// `dns.query` on tape.
#[derive(Serialize)]
struct QueryCall {
    request: Request,
}

impl TapedCall for QueryCall {
    const NAME: &'static str = "dns-query";
    type Answer = Result<Answer, DnsError>;

    fn refused(&self, why: String) -> Self::Answer {
        Err(fail(ErrorKind::InvalidRequest, why, None, zero_timings()))
    }
}

impl Host for DnsContext {
    async fn query(&mut self, req: Request) -> wasmtime::Result<Result<Answer, DnsError>> {
        self.run.usage.call(Dns::NAME);
        let (grant, scope) = (self.grant.clone(), self.run.clone());
        let call = QueryCall { request: req };
        Ok(Tape::around(
            self.run.tape.as_deref(),
            &self.run.revealed,
            call,
            |c| async move {
                match grant {
                    Some(grant) => grant.query(&scope, c.request).await,
                    None => Err(fail(
                        ErrorKind::Denied,
                        "no network access outside run()",
                        None,
                        zero_timings(),
                    )),
                }
            },
        )
        .await)
    }
}

fn zero_timings() -> DnsTimings {
    DnsTimings {
        resolve: 0.0,
        connect: 0.0,
        exchange: 0.0,
    }
}

fn fail(
    kind: ErrorKind,
    message: impl Into<String>,
    server: Option<SocketAddr>,
    timings: DnsTimings,
) -> DnsError {
    DnsError {
        kind,
        message: message.into(),
        server: server.map(|s| s.to_string()),
        timings,
    }
}

/// The question of a request, as it goes on the wire.
fn question(req: &Request) -> Result<Query, String> {
    let name = Name::from_str_relaxed(req.name.trim())
        .map_err(|e| format!("name {:?} is not a domain name: {e}", req.name))?;
    let name = if name.is_fqdn() {
        name
    } else {
        let mut n = name;
        n.set_fqdn(true);
        n
    };
    let record_type = record_type(&req.record_type)?;
    let class = match req.class.as_deref() {
        None => DNSClass::IN,
        Some(c) => class(c)?,
    };
    let mut q = Query::query(name, record_type);
    q.set_query_class(class);
    Ok(q)
}

fn record_type(text: &str) -> Result<RecordType, String> {
    let upper = text.trim().to_ascii_uppercase();
    if let Some(n) = upper.strip_prefix("TYPE")
        && let Ok(n) = n.parse::<u16>()
    {
        return Ok(RecordType::from(n));
    }
    RecordType::from_str(&upper).map_err(|_| format!("{text:?} is not a record type"))
}

fn class(text: &str) -> Result<DNSClass, String> {
    let upper = text.trim().to_ascii_uppercase();
    if let Some(n) = upper.strip_prefix("CLASS")
        && let Ok(n) = n.parse::<u16>()
    {
        return Ok(DNSClass::from(n));
    }
    DNSClass::from_str(&upper).map_err(|_| format!("{text:?} is not a DNS class"))
}

/// `HOST`, `HOST:PORT`, `[V6]:PORT` or `V6` as a `dns://` destination.
fn server_destination(server: &str) -> Result<Destination, String> {
    let server = server.trim();
    let with_port = if server.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        format!("dns://[{server}]")
    } else {
        format!("dns://{server}")
    };
    let mut url = url::Url::parse(&with_port)
        .map_err(|e| format!("server {server:?} is not HOST[:PORT]: {e}"))?;
    if url.path() != "" || url.username() != "" {
        return Err(format!("server {server:?} is not HOST[:PORT]"));
    }
    if url.port().is_none() {
        let _ = url.set_port(Some(53));
    }
    Destination::from_url(&url)
}

/// The first nameserver of `/etc/resolv.conf`.
fn system_resolver() -> Result<String, String> {
    let text = crate::files::read_regular("/etc/resolv.conf".as_ref(), 64 << 10)
        .map_err(|e| e.to_string())?;
    let conf = resolv_conf::Config::parse(&text).map_err(|e| format!("/etc/resolv.conf: {e}"))?;
    let ip: IpAddr = conf
        .nameservers
        .first()
        .map(|ns| ns.into())
        .ok_or("/etc/resolv.conf names no nameserver")?;
    Ok(match ip {
        IpAddr::V6(v6) => format!("[{v6}]:53"),
        IpAddr::V4(v4) => format!("{v4}:53"),
    })
}

/// The message a request sends.
fn message(req: &Request, id: u16) -> Result<Message, String> {
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(req.recursion_desired)
        .add_query(question(req)?);
    if req.dnssec_ok {
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true).set_max_payload(UDP_PAYLOAD);
        msg.set_edns(edns);
    }
    Ok(msg)
}

impl DnsGrant {
    /// Admits the server, sends the query and reads its answer: the live
    /// half of `query`.
    async fn query(&self, run: &CallScope, req: Request) -> Result<Answer, DnsError> {
        let mut timings = zero_timings();
        let invalid = |m: String| fail(ErrorKind::InvalidRequest, m, None, zero_timings());
        let server = match &req.server {
            Some(s) => s.clone(),
            None => system_resolver().map_err(invalid)?,
        };
        let dest = server_destination(&server).map_err(invalid)?;
        let id = rand_id();
        let query = message(&req, id).map_err(invalid)?;
        let wire = query.to_vec().map_err(|e| invalid(e.to_string()))?;
        let port = dest.port.unwrap_or(53);
        let at = tokio::time::Instant::from_std(match req.timeout_ms {
            Some(ms) => run
                .deadline()
                .min(Instant::now() + Duration::from_millis(ms)),
            None => run.deadline(),
        });
        let preference = (req.preferred_ip_protocol, req.ip_protocol_fallback);
        let ip = match run.admit(&self.allow, &dest, port, preference, at).await {
            Ok(a) => {
                timings.resolve = a.resolve;
                a.ip
            }
            Err(refusal) => {
                timings.resolve = refusal.resolve_seconds();
                let kind = match refusal {
                    Refusal::Denied { .. } => ErrorKind::Denied,
                    Refusal::Dns { .. } => ErrorKind::Resolve,
                };
                return Err(fail(kind, refusal.message(), None, timings));
            }
        };
        let addr = SocketAddr::new(ip, port);
        take(&run.usage, wire.len())
            .map_err(|m| fail(ErrorKind::Denied, m, Some(addr), timings))?;
        let exchange = match req.transport {
            Transport::Udp => udp(addr, &wire, &query, at, &run.usage, &mut timings).await,
            Transport::Tcp => tcp(addr, &wire, &query, at, &run.usage, &mut timings).await,
        };
        let reply = exchange.map_err(|(kind, m)| fail(kind, m, Some(addr), timings))?;
        run.usage.bytes(wire.len() as u64, 0);
        Ok(answer(&reply, addr, timings))
    }
}

/// One query of the run's budgets: a request, and its bytes.
fn take(usage: &Usage, bytes: usize) -> Result<(), String> {
    usage
        .take(Budget::Requests, 1)
        .and_then(|()| usage.take(Budget::Transfer, bytes as u64))
        .map_err(|spent| spent.to_string())
}

/// A query id no one can guess from the outside, so an off-path answer is
/// unlikely to match.
fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u16
}

type ExchangeError = (ErrorKind, String);

/// Whether `reply` answers `query`: same id, a response, the same question.
fn answers(reply: &Message, query: &Message) -> bool {
    reply.id() == query.id()
        && reply.message_type() == MessageType::Response
        && reply.queries() == query.queries()
}

async fn udp(
    addr: SocketAddr,
    wire: &[u8],
    query: &Message,
    at: tokio::time::Instant,
    usage: &Usage,
    timings: &mut DnsTimings,
) -> Result<Message, ExchangeError> {
    let io = |e: std::io::Error| (ErrorKind::Io, format!("{addr}: {e}"));
    let local: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    // Connected: the kernel drops datagrams from any other address.
    socket.connect(addr).await.map_err(io)?;
    let started = Instant::now();
    socket.send(wire).await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(UDP_PAYLOAD)];
    loop {
        let n = match timeout_at(at, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(io(e)),
            Err(_) => {
                timings.exchange = started.elapsed().as_secs_f64();
                return Err((
                    ErrorKind::Timeout,
                    format!("no answer from {addr} before the deadline"),
                ));
            }
        };
        usage
            .take(Budget::Transfer, n as u64)
            .map_err(|spent| (ErrorKind::Denied, spent.to_string()))?;
        usage.bytes(0, n as u64);
        // Anything that is not the answer to this query is ignored, as a
        // stub resolver does; the deadline still ends the wait.
        if let Ok(reply) = Message::from_vec(&buf[..n])
            && answers(&reply, query)
        {
            timings.exchange = started.elapsed().as_secs_f64();
            return Ok(reply);
        }
    }
}

async fn tcp(
    addr: SocketAddr,
    wire: &[u8],
    query: &Message,
    at: tokio::time::Instant,
    usage: &Usage,
    timings: &mut DnsTimings,
) -> Result<Message, ExchangeError> {
    let io = |e: std::io::Error| (ErrorKind::Io, format!("{addr}: {e}"));
    let timeout = || {
        (
            ErrorKind::Timeout,
            format!("no answer from {addr} before the deadline"),
        )
    };
    let started = Instant::now();
    let mut stream = match timeout_at(at, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err((ErrorKind::Connect, format!("connect to {addr}: {e}"))),
        Err(_) => return Err(timeout()),
    };
    timings.connect = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let len = u16::try_from(wire.len())
        .map_err(|_| (ErrorKind::InvalidRequest, "query too long".to_string()))?;
    let exchange = async {
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(wire);
        stream.write_all(&framed).await.map_err(io)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(io)?;
        let len = usize::from(u16::from_be_bytes(len));
        usage
            .take(Budget::Transfer, len as u64 + 2)
            .map_err(|spent| (ErrorKind::Denied, spent.to_string()))?;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.map_err(io)?;
        usage.bytes(0, len as u64 + 2);
        Ok::<_, ExchangeError>(body)
    };
    let body = timeout_at(at, exchange).await.map_err(|_| timeout())??;
    timings.exchange = started.elapsed().as_secs_f64();
    let reply = Message::from_vec(&body)
        .map_err(|e| (ErrorKind::Protocol, format!("answer from {addr}: {e}")))?;
    if !answers(&reply, query) {
        return Err((
            ErrorKind::Protocol,
            format!("answer from {addr} does not match the query (id or question)"),
        ));
    }
    Ok(reply)
}

/// The rcode as the RFCs name it.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        ResponseCode::BADVERS => "BADVERS".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn record(r: &Record) -> ResourceRecord {
    ResourceRecord {
        name: r.name().to_string(),
        record_type: r.record_type().to_string(),
        class: r.dns_class().to_string(),
        ttl: r.ttl(),
        data: r.data().to_string(),
    }
}

fn answer(reply: &Message, server: SocketAddr, timings: DnsTimings) -> Answer {
    Answer {
        rcode: rcode_name(reply.response_code()),
        authoritative: reply.authoritative(),
        truncated: reply.truncated(),
        authentic_data: reply.authentic_data(),
        recursion_available: reply.recursion_available(),
        answers: reply.answers().iter().map(record).collect(),
        authority: reply.name_servers().iter().map(record).collect(),
        additional: reply.additionals().iter().map(record).collect(),
        server: server.to_string(),
        ip_protocol: protocol_of(server.ip()),
        timings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, rtype: &str) -> Request {
        Request {
            name: name.into(),
            record_type: rtype.into(),
            class: None,
            recursion_desired: true,
            dnssec_ok: false,
            transport: Transport::Udp,
            server: Some("127.0.0.1:53".into()),
            timeout_ms: Some(1000),
            preferred_ip_protocol: None,
            ip_protocol_fallback: true,
        }
    }

    #[test]
    fn questions_are_read_as_dig_reads_them() {
        let q = question(&request("example.org", "mx")).ok();
        assert_eq!(
            q.as_ref().map(|q| q.name().to_string()).as_deref(),
            Some("example.org.")
        );
        assert_eq!(q.map(|q| q.query_type()), Some(RecordType::MX));
        assert_eq!(record_type("TYPE65").ok(), Some(RecordType::from(65)));
        assert!(record_type("NOPE").is_err());
        assert_eq!(class("ch").ok(), Some(DNSClass::CH));
        assert!(question(&request("bad..name", "A")).is_err());
    }

    #[test]
    fn servers_are_dns_destinations_on_port_53_by_default() {
        let d = server_destination("127.0.0.1").ok();
        assert_eq!(
            d.map(|d| d.to_string()).as_deref(),
            Some("dns://127.0.0.1:53")
        );
        let d = server_destination("[::1]:5353").ok();
        assert_eq!(
            d.map(|d| d.to_string()).as_deref(),
            Some("dns://[::1]:5353")
        );
        let d = server_destination("::1").ok();
        assert_eq!(d.map(|d| d.to_string()).as_deref(), Some("dns://[::1]:53"));
        assert!(server_destination("127.0.0.1/x").is_err());
    }

    #[tokio::test]
    async fn a_server_outside_the_allow_list_is_denied_before_any_packet() {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let grant = DnsGrant {
            allow: AllowList::new(vec![
                crate::egress::AllowRule::try_from(format!(
                    "dns://127.0.0.1:{}",
                    port.wrapping_add(1)
                ))
                .unwrap_or_else(|e| panic!("{e}")),
            ]),
        };
        let run = CallScope {
            deadline: Some(Instant::now() + Duration::from_secs(2)),
            ..CallScope::default()
        };
        let mut req = request("example.org", "A");
        req.server = Some(format!("127.0.0.1:{port}"));
        let result = grant.query(&run, req).await;
        assert_eq!(
            result.as_ref().err().map(|e| e.kind),
            Some(ErrorKind::Denied),
            "{result:?}"
        );
        let mut buf = [0u8; 512];
        let got = tokio::time::timeout(Duration::from_millis(100), socket.recv(&mut buf)).await;
        assert!(got.is_err(), "a packet reached the server");
        assert_eq!(run.usage.counts(0, Duration::ZERO).refusals[0], 1);
    }

    fn grant_for(port: u16) -> DnsGrant {
        DnsGrant {
            allow: AllowList::new(vec![
                crate::egress::AllowRule::try_from(format!("dns://127.0.0.1:{port}"))
                    .unwrap_or_else(|e| panic!("{e}")),
            ]),
        }
    }

    fn run_scope() -> CallScope {
        CallScope {
            deadline: Some(Instant::now() + Duration::from_secs(2)),
            ..CallScope::default()
        }
    }

    /// A reply to `query` with `id` and one A record.
    fn reply_to(query: &Message, id: u16) -> Vec<u8> {
        let mut reply = Message::new();
        reply
            .set_id(id)
            .set_message_type(MessageType::Response)
            .add_queries(query.queries().to_vec())
            .add_answer(Record::from_rdata(
                query.queries()[0].name().clone(),
                60,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(127, 0, 0, 7)),
            ));
        reply.to_vec().unwrap_or_default()
    }

    /// A hostile or confused server answers first with garbage and with
    /// the wrong id: both are ignored, and only the answer to the query
    /// counts, as a stub resolver does.
    #[tokio::test]
    async fn garbage_and_answers_to_another_query_are_ignored() {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            if let Ok((n, from)) = socket.recv_from(&mut buf).await
                && let Ok(query) = Message::from_vec(&buf[..n])
            {
                let _ = socket.send_to(b"\xff\x00garbage", from).await;
                let _ = socket
                    .send_to(&reply_to(&query, query.id().wrapping_add(1)), from)
                    .await;
                let _ = socket.send_to(&reply_to(&query, query.id()), from).await;
            }
        });
        let mut req = request("ok.example", "A");
        req.server = Some(format!("127.0.0.1:{port}"));
        let answer = grant_for(port).query(&run_scope(), req).await;
        let answer = answer.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].data, "127.0.0.7");
    }

    /// Over TCP an answer to another question is refused as `protocol`.
    #[tokio::test]
    async fn a_tcp_answer_to_another_question_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        tokio::spawn(async move {
            if let Ok((mut conn, _)) = listener.accept().await {
                let mut len = [0u8; 2];
                let _ = conn.read_exact(&mut len).await;
                let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
                let _ = conn.read_exact(&mut body).await;
                let Ok(query) = Message::from_vec(&body) else {
                    return;
                };
                let mut other = query.clone();
                other.take_queries();
                other.add_query(Query::query(
                    Name::from_ascii("elsewhere.example.").unwrap_or_default(),
                    RecordType::A,
                ));
                let bytes = reply_to(&other, query.id());
                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                let _ = conn.write_all(&framed).await;
            }
        });
        let mut req = request("ok.example", "A");
        req.server = Some(format!("127.0.0.1:{port}"));
        req.transport = Transport::Tcp;
        let result = grant_for(port).query(&run_scope(), req).await;
        let err = result.err();
        assert_eq!(
            err.as_ref().map(|e| e.kind),
            Some(ErrorKind::Protocol),
            "{err:?}"
        );
    }
}
