//! The host's ICMP sockets: which kind this process may open, and a pinger
//! per (family, source address) shared by every probe.
//!
//! One socket per pinger serves many concurrent requests. Each request
//! gets its own sequence number and a random token in its payload; a
//! receive task matches every reply to its request by sequence, token and
//! source address (and, on raw sockets, which see every ICMP packet of the
//! host, by identifier). Stray or forged replies match nothing and are
//! dropped.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrIn, SockaddrIn6, SockaddrStorage, sockopt,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::packet::{self, Reply};

/// The kind of ICMP socket the process got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketMode {
    /// Unprivileged `SOCK_DGRAM` ICMP (allowed by `net.ipv4.ping_group_range`).
    Datagram,
    /// `SOCK_RAW` (CAP_NET_RAW).
    Raw,
    /// Neither: ICMP host calls answer `unavailable`.
    Unavailable,
}

impl SocketMode {
    pub const ALL: [SocketMode; 3] = [
        SocketMode::Datagram,
        SocketMode::Raw,
        SocketMode::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SocketMode::Datagram => "datagram",
            SocketMode::Raw => "raw",
            SocketMode::Unavailable => "unavailable",
        }
    }
}

fn open_socket(v6: bool, mode: SocketMode) -> nix::Result<OwnedFd> {
    let (family, protocol) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    let ty = match mode {
        SocketMode::Raw => SockType::Raw,
        _ => SockType::Datagram,
    };
    socket::socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        protocol,
    )
}

/// The least privileged mode that works for a family: datagram, then raw.
pub(crate) fn detect(v6: bool) -> SocketMode {
    for mode in [SocketMode::Datagram, SocketMode::Raw] {
        if open_socket(v6, mode).is_ok() {
            return mode;
        }
    }
    SocketMode::Unavailable
}

/// A pseudo-random 64-bit value (tokens, identifiers): unpredictable enough
/// that a stray packet cannot match by chance.
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// When a reply arrived: the kernel's receive timestamp when the socket
/// gives one (as ping(8) uses), else when the receive task read it.
#[derive(Debug, Clone, Copy)]
enum Arrival {
    Kernel(SystemTime),
    Read(Instant),
}

struct Waiter {
    dest: IpAddr,
    token: u64,
    tx: oneshot::Sender<(Arrival, Option<u8>)>,
}

/// One ICMP socket and the requests in flight on it.
pub(crate) struct Pinger {
    fd: AsyncFd<OwnedFd>,
    v6: bool,
    mode: SocketMode,
    ident: u16,
    seq: AtomicU16,
    waiters: Mutex<HashMap<u16, Waiter>>,
    /// Serialises "set TTL, send" pairs; holds the TTL now set.
    send: tokio::sync::Mutex<Option<u8>>,
    default_ttl: i32,
}

/// How one echo request went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Echo {
    Reply {
        rtt: Duration,
        hop_limit: Option<u8>,
    },
    Lost,
}

impl Pinger {
    /// Opens a socket of `mode`, optionally bound to `source`, and starts
    /// its receive task on the current runtime.
    pub(crate) fn open(
        v6: bool,
        mode: SocketMode,
        source: Option<IpAddr>,
    ) -> io::Result<Arc<Pinger>> {
        let fd = open_socket(v6, mode)?;
        // One socket serves every probe: room for bursts of replies. The
        // kernel caps this at net.core.rmem_max; a smaller buffer only
        // means replies dropped under very heavy load.
        let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &(4 << 20));
        // Kernel receive timestamps keep scheduling delays out of the RTT.
        socket::setsockopt(&fd, sockopt::ReceiveTimestampns, &true)?;
        if v6 {
            socket::setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true)?;
        } else {
            socket::setsockopt(&fd, sockopt::Ipv4RecvTtl, &true)?;
        }
        let default_ttl = if v6 {
            socket::getsockopt(&fd, sockopt::Ipv6Ttl)?
        } else {
            socket::getsockopt(&fd, sockopt::Ipv4Ttl)?
        };
        if let Some(ip) = source {
            match ip {
                IpAddr::V4(a) if !v6 => {
                    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(a, 0)))?
                }
                IpAddr::V6(a) if v6 => socket::bind(
                    fd.as_raw_fd(),
                    &SockaddrIn6::from(SocketAddrV6::new(a, 0, 0, 0)),
                )?,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("source {ip} is not of the target's address family"),
                    ));
                }
            }
        }
        #[expect(
            deprecated,
            reason = "sound here: the OwnedFd is moved in and owned by the AsyncFd; register() is the unsafe spelling of the same"
        )]
        let fd = AsyncFd::new(fd)?;
        let pinger = Arc::new(Pinger {
            fd,
            v6,
            mode,
            ident: random() as u16,
            seq: AtomicU16::new(random() as u16),
            waiters: Mutex::new(HashMap::new()),
            send: tokio::sync::Mutex::new(None),
            default_ttl,
        });
        tokio::spawn(receive(pinger.clone()));
        Ok(pinger)
    }

    pub(crate) fn mode(&self) -> SocketMode {
        self.mode
    }

    /// Sends one echo request and waits up to `timeout` for its reply.
    pub(crate) async fn echo(
        &self,
        dest: IpAddr,
        ttl: Option<u8>,
        payload_size: usize,
        timeout: Duration,
    ) -> io::Result<Echo> {
        let token = random();
        let (tx, rx) = oneshot::channel();
        let seq = claim(
            &mut self.waiters.lock().unwrap_or_else(|e| e.into_inner()),
            &self.seq,
            Waiter { dest, token, tx },
        )
        .ok_or_else(|| io::Error::other("65,536 echo requests in flight on one socket"))?;
        let _cleanup = Cleanup(self, seq, token);
        let packet = packet::echo_request(self.v6, self.ident, seq, token, payload_size);
        let (sent_at, sent_wall) = {
            let mut current = self.send.lock().await;
            if *current != ttl {
                let value = ttl.map_or(self.default_ttl, i32::from);
                if self.v6 {
                    socket::setsockopt(self.fd.get_ref(), sockopt::Ipv6Ttl, &value)?;
                } else {
                    socket::setsockopt(self.fd.get_ref(), sockopt::Ipv4Ttl, &value)?;
                }
                *current = ttl;
            }
            let sent_at = Instant::now();
            let sent_wall = SystemTime::now();
            self.fd
                .async_io(Interest::WRITABLE, |fd| {
                    let r = match dest {
                        IpAddr::V4(a) => socket::sendto(
                            fd.as_raw_fd(),
                            &packet,
                            &SockaddrIn::from(SocketAddrV4::new(a, 0)),
                            MsgFlags::empty(),
                        ),
                        IpAddr::V6(a) => socket::sendto(
                            fd.as_raw_fd(),
                            &packet,
                            &SockaddrIn6::from(SocketAddrV6::new(a, 0, 0, 0)),
                            MsgFlags::empty(),
                        ),
                    };
                    r.map_err(io::Error::from)
                })
                .await?;
            (sent_at, sent_wall)
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok((arrival, hop_limit))) => {
                let rtt = match arrival {
                    Arrival::Kernel(at) => at.duration_since(sent_wall).unwrap_or_default(),
                    Arrival::Read(at) => at.saturating_duration_since(sent_at),
                };
                Ok(Echo::Reply { rtt, hop_limit })
            }
            _ => Ok(Echo::Lost),
        }
    }

    /// Hands a received reply to the request it answers, if any.
    fn dispatch(&self, reply: Reply, from: Option<IpAddr>, hop_limit: Option<u8>, at: Arrival) {
        // Datagram sockets get only their own replies, with an identifier
        // the kernel chose; raw sockets see everything and check ours.
        if self.mode == SocketMode::Raw && reply.id != self.ident {
            return;
        }
        let from = reply.source.or(from).map(|a| a.to_canonical());
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let matches = waiters
            .get(&reply.seq)
            .is_some_and(|w| w.token == reply.token && from == Some(w.dest.to_canonical()));
        if matches && let Some(w) = waiters.remove(&reply.seq) {
            let _ = w.tx.send((at, reply.ttl.or(hop_limit)));
        }
    }
}

/// Files `waiter` under the next sequence number no request in flight
/// holds, and returns it; `None` when every number is taken. A pending
/// request is never displaced, whoever else sends on the socket (another
/// probe, another package): its reply still finds it.
fn claim(waiters: &mut HashMap<u16, Waiter>, next: &AtomicU16, waiter: Waiter) -> Option<u16> {
    for _ in 0..=u16::MAX as usize {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if let std::collections::hash_map::Entry::Vacant(free) = waiters.entry(seq) {
            free.insert(waiter);
            return Some(seq);
        }
    }
    None
}

/// Forgets a request's waiter however its future ends (only its own: the
/// sequence number may be held by a later request by then).
struct Cleanup<'a>(&'a Pinger, u16, u64);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let mut waiters = self.0.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if waiters.get(&self.1).is_some_and(|w| w.token == self.2) {
            waiters.remove(&self.1);
        }
    }
}

/// One datagram as read.
struct Read {
    len: usize,
    from: Option<IpAddr>,
    hop_limit: Option<u8>,
    at: Arrival,
}

/// Reads one datagram: bytes, source, and the TTL / hop limit and
/// timestamp control messages.
fn read_one(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Read> {
    let mut cmsg = nix::cmsg_space!(nix::libc::c_int, nix::sys::time::TimeSpec);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrStorage>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let mut hop = None;
    let mut at = Arrival::Read(Instant::now());
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                    hop = u8::try_from(t).ok();
                }
                ControlMessageOwned::ScmTimestampns(ts) => {
                    let since_epoch = Duration::new(
                        u64::try_from(ts.tv_sec()).unwrap_or_default(),
                        u32::try_from(ts.tv_nsec()).unwrap_or_default(),
                    );
                    at = Arrival::Kernel(UNIX_EPOCH + since_epoch);
                }
                _ => {}
            }
        }
    }
    let from = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|s| IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
    });
    Ok(Read {
        len: msg.bytes,
        from,
        hop_limit: hop,
        at,
    })
}

async fn receive(pinger: Arc<Pinger>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok(mut ready) = pinger.fd.readable().await else {
            return;
        };
        match ready.try_io(|fd| read_one(fd.get_ref(), &mut buf)) {
            Ok(Ok(read)) => {
                let raw_v4 = pinger.mode == SocketMode::Raw && !pinger.v6;
                if let Some(reply) = packet::parse_reply(pinger.v6, raw_v4, &buf[..read.len]) {
                    pinger.dispatch(reply, read.from, read.hop_limit, read.at);
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "icmp receive failed"),
            Err(_would_block) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(token: u64) -> Waiter {
        let (tx, _rx) = oneshot::channel();
        Waiter {
            dest: IpAddr::from([127, 0, 0, 1]),
            token,
            tx,
        }
    }

    #[test]
    fn a_pending_request_keeps_its_sequence_number() {
        let next = AtomicU16::new(7);
        let mut waiters = HashMap::new();
        assert_eq!(claim(&mut waiters, &next, waiter(1)), Some(7));
        // Another tenant's burst wraps the counter round to 7 again.
        next.store(7, Ordering::Relaxed);
        assert_eq!(claim(&mut waiters, &next, waiter(2)), Some(8));
        assert_eq!(waiters.get(&7).map(|w| w.token), Some(1), "not displaced");
    }

    #[test]
    fn a_full_socket_refuses_instead_of_overwriting() {
        let next = AtomicU16::new(0);
        let mut waiters: HashMap<u16, Waiter> =
            (0..=u16::MAX).map(|s| (s, waiter(u64::from(s)))).collect();
        assert_eq!(claim(&mut waiters, &next, waiter(9)), None);
        assert_eq!(waiters.get(&0).map(|w| w.token), Some(0));
    }
}
