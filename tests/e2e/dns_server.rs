//! A small authoritative DNS server on 127.0.0.1 (UDP and TCP on one
//! port), with a fixed zone the tests know the truth of:
//!
//! - `ok.example.` A 127.0.0.1 and 127.0.0.2 (TTL 300), authority NS
//!   `ns.example.`, additional A 127.0.0.53 for it;
//! - `mx.example.` MX 10 `mail.example.`; `example.` SOA;
//! - `big.example.` 40 TXT records: over UDP the answer is cut (TC set, no
//!   records), over TCP it is whole;
//! - `slow.example.` is never answered;
//! - anything else NXDOMAIN, with the zone's SOA (serial 2026120301) in
//!   the authority section.
//!
//! It counts the queries it received, for "nothing reached it" checks.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, MX, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::targets::rt;

/// The zone's SOA serial.
pub const SERIAL: u32 = 2026120301;

pub struct DnsServer {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
}

impl DnsServer {
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

fn name(text: &str) -> Name {
    Name::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), 300, RData::A(A(Ipv4Addr::from(ip))))
}

fn soa() -> Record {
    Record::from_rdata(
        name("example."),
        300,
        RData::SOA(SOA::new(
            name("ns.example."),
            name("hostmaster.example."),
            SERIAL,
            3600,
            600,
            86400,
            300,
        )),
    )
}

/// The answer to `query` as this server gives it over `tcp` or UDP;
/// `None` for a query it leaves unanswered.
fn respond(query: &Message, tcp: bool) -> Option<Message> {
    let q = query.queries().first()?.clone();
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_authoritative(true)
        .add_query(q.clone());
    let owner = q.name().to_ascii().to_ascii_lowercase();
    match (owner.as_str(), q.query_type()) {
        ("slow.example.", _) => return None,
        ("ok.example.", RecordType::A | RecordType::ANY) => {
            reply.add_answer(a("ok.example.", [127, 0, 0, 1]));
            reply.add_answer(a("ok.example.", [127, 0, 0, 2]));
            reply.add_name_server(Record::from_rdata(
                name("example."),
                300,
                RData::NS(NS(name("ns.example."))),
            ));
            reply.add_additional(a("ns.example.", [127, 0, 0, 53]));
        }
        ("example.", RecordType::SOA) => {
            reply.add_answer(soa());
        }
        ("mx.example.", RecordType::MX) => {
            reply.add_answer(Record::from_rdata(
                name("mx.example."),
                300,
                RData::MX(MX::new(10, name("mail.example."))),
            ));
        }
        ("big.example.", _) if !tcp => {
            reply.set_truncated(true);
        }
        ("big.example.", _) => {
            for i in 0..40 {
                let text = format!("record {i:02} {}", "x".repeat(60));
                reply.add_answer(Record::from_rdata(
                    name("big.example."),
                    300,
                    RData::TXT(TXT::new(vec![text])),
                ));
            }
        }
        ("ok.example." | "mx.example.", _) => {}
        _ => {
            reply.set_response_code(ResponseCode::NXDomain);
            reply.add_name_server(soa());
        }
    }
    Some(reply)
}

/// Starts the server on a free port of 127.0.0.1.
pub fn start() -> DnsServer {
    let queries = Arc::new(AtomicUsize::new(0));
    // UDP first on a free port, then TCP on the same one (retried when
    // the port is taken on the TCP side).
    let (udp, tcp) = rt().block_on(async {
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let port = udp.local_addr().map(|a| a.port()).unwrap_or_default();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                return (udp, tcp);
            }
        }
        panic!("no port free for UDP and TCP together")
    });
    let addr = udp.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let count = queries.clone();
    rt().spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            count.fetch_add(1, Ordering::SeqCst);
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if let Some(reply) = respond(&query, false)
                && let Ok(bytes) = reply.to_vec()
            {
                let _ = udp.send_to(&bytes, from).await;
            }
        }
    });
    let count = queries.clone();
    rt().spawn(async move {
        while let Ok((mut conn, _)) = tcp.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                while conn.read_exact(&mut len).await.is_ok() {
                    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let Ok(query) = Message::from_vec(&body) else {
                        return;
                    };
                    let Some(reply) = respond(&query, true) else {
                        continue;
                    };
                    let Ok(bytes) = reply.to_vec() else {
                        return;
                    };
                    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&bytes);
                    if conn.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    DnsServer { addr, queries }
}
