//! Slow consumers: peers that subscribe to a ticket and never read again, beside subscribers
//! that read, while posts arrive at a steady rate.
//!
//! Each never-reading peer is watched from the server's side of its connection, as the kernel
//! reports it (Linux only, IPv4): how many bytes are queued for the peer that it has not taken
//! (the `tx_queue` of `/proc/net/tcp`, asked of sock_diag for the one connection), and when the
//! connection leaves ESTABLISHED. A peer has *fallen behind* once at least the server's
//! `FLEETY_WS_SEND_BUFFER_BYTES` are queued for it (the kernel doubles the setting, so its
//! buffer is then about two thirds full); a peer that reads never stays there. Measured per
//! peer: from falling behind to the server letting go of the connection (a reset, or a close),
//! the most bytes the kernel ever held for it, and from when that most was first reached (the
//! server's write to it is stuck from then on) to the cut. Afterwards each peer reads what it
//! was sent, to see how it was ended: the `error` event and close 1008, or a reset.
//!
//! The readers run the same way with and without the peers, in alternating phases of one
//! invocation, each phase on a fresh ticket with fresh readers, so their delivery latency with
//! peers being cut can be set against the same host's without.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::report::Report;
use crate::server::Server;
use crate::worker::{self, Job, Outcome, Request};
use crate::Cli;

/// How often the kernel is asked about each peer: the resolution of every peer timing.
const POLL: Duration = Duration::from_millis(2);
/// How long the watch waits, once the posts have stopped, for peers that fell behind to be cut.
const AFTER_POSTS: Duration = Duration::from_secs(15);
/// The kernel's TCP state of an established connection.
const ESTABLISHED: u8 = 0x01;

/// The scenario's settings, from its command line.
#[derive(clap::Args, Clone, Debug)]
pub struct Shape {
    /// Subscribers that read.
    #[arg(long, default_value_t = 200)]
    pub readers: usize,
    /// Peers that never read, joining one after another over a phase's first 4/5.
    #[arg(long, default_value_t = 40)]
    pub peers: usize,
    /// Posts per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Each post's content, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub message_bytes: usize,
    /// Each phase's posting time.
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    /// Connections the posts go out on.
    #[arg(long, default_value_t = 32)]
    pub publishers: usize,
    /// The receive buffer a never-reading peer asks its kernel for.
    #[arg(long, default_value_t = 4096)]
    pub peer_recv_buffer: usize,
    /// The server's FLEETY_WS_SEND_BUFFER_BYTES (set on a server this run starts): a peer
    /// has fallen behind once this many bytes are queued for it.
    #[arg(long, default_value_t = 65_536)]
    pub send_buffer_bytes: usize,
    /// FLEETY_WS_SUBSCRIBER_QUEUE for the server this run starts (its default otherwise).
    #[arg(long)]
    pub subscriber_queue: Option<usize>,
    /// FLEETY_WS_WRITE_TIMEOUT_MS for the server this run starts (its default otherwise).
    #[arg(long)]
    pub write_timeout_ms: Option<u64>,
    /// Pairs of phases: the readers alone, then with the peers.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
}

impl Shape {
    /// The settings a server this run starts gets: the send buffer the watch measures against,
    /// and the two limits that cut a slow peer when they are given.
    pub fn server_env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "FLEETY_WS_SEND_BUFFER_BYTES".to_owned(),
            self.send_buffer_bytes.to_string(),
        )];
        if let Some(q) = self.subscriber_queue {
            env.push(("FLEETY_WS_SUBSCRIBER_QUEUE".into(), q.to_string()));
        }
        if let Some(ms) = self.write_timeout_ms {
            env.push(("FLEETY_WS_WRITE_TIMEOUT_MS".into(), ms.to_string()));
        }
        env
    }
}

/// One never-reading peer as the watch saw it.
#[derive(Clone)]
struct Peer {
    /// The peer's own address: the remote address of the server's side.
    client: SocketAddrV4,
    subscribed: Instant,
    behind: Option<Instant>,
    most_queued: u64,
    /// When `most_queued` was first reached.
    most_at: Option<Instant>,
    /// When the server's side left ESTABLISHED, and its state then (`None`: gone from the table,
    /// as after a reset).
    left: Option<(Instant, Option<u8>)>,
}

/// How a peer found its connection ended once it read.
#[derive(Debug, PartialEq)]
enum Ending {
    /// A close frame with this code, then the end of the stream.
    Closed(u16),
    /// The end of the stream without a close frame.
    Eof,
    Reset,
    /// Still open when the peer gave up reading.
    Open,
    Failed(String),
}

/// The peers of one phase and the watch over them.
#[derive(Clone)]
struct Watch {
    server: SocketAddrV4,
    threshold: u64,
    peers: Arc<Mutex<Vec<Peer>>>,
    posts_done: Arc<AtomicBool>,
}

impl Watch {
    fn add(&self, client: SocketAddrV4) {
        self.peers.lock().unwrap().push(Peer {
            client,
            subscribed: Instant::now(),
            behind: None,
            most_queued: 0,
            most_at: None,
            left: None,
        });
    }

    /// Asks the kernel about every peer still connected each [`POLL`], on a thread of its own,
    /// until the posts are done and every peer that fell behind has been let go (or
    /// [`AFTER_POSTS`] has passed).
    fn run(self) -> anyhow::Result<Vec<Peer>> {
        let mut diag = Diag::open()?;
        let mut until: Option<Instant> = None;
        loop {
            std::thread::sleep(POLL);
            if until.is_none() && self.posts_done.load(Ordering::Acquire) {
                until = Some(Instant::now() + AFTER_POSTS);
            }
            let mut peers = self.peers.lock().unwrap();
            for p in peers.iter_mut().filter(|p| p.left.is_none()) {
                let now = Instant::now();
                match diag.server_side(self.server, p.client)? {
                    Some((ESTABLISHED, queued)) => {
                        if queued > p.most_queued {
                            p.most_queued = queued;
                            p.most_at = Some(now);
                        }
                        if p.behind.is_none() && queued >= self.threshold {
                            p.behind = Some(now);
                        }
                    }
                    Some((state, _)) => p.left = Some((now, Some(state))),
                    None => p.left = Some((now, None)),
                }
            }
            let waiting = peers.iter().any(|p| p.left.is_none() && p.behind.is_some());
            if let Some(until) = until {
                if !waiting || Instant::now() >= until {
                    return Ok(peers.clone());
                }
            }
        }
    }
}

/// The kernel's socket diagnostics (`NETLINK_SOCK_DIAG`, Linux), asked about one TCP connection
/// at a time by its addresses. `/proc/net/tcp` has the same figures, but each read lists every
/// socket of the machine: with about a thousand (most of them other programs' and TIME_WAIT)
/// a read cost 6 ms of kernel time here, and a watch every few milliseconds took half a core
/// from the server it measures.
struct Diag {
    socket: socket2::Socket,
    seq: u32,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HEADER: usize = 16;
/// `struct inet_diag_msg`: family, state, timer, retransmits, the socket's id (ports, addresses,
/// interface, cookie: 48 bytes), expires, rqueue, wqueue, uid, inode.
const INET_DIAG_MSG: usize = 72;
const LISTEN: u8 = 0x0a;

impl Diag {
    fn open() -> anyhow::Result<Self> {
        let socket = socket2::Socket::new(
            socket2::Domain::from(libc::AF_NETLINK),
            socket2::Type::from(libc::SOCK_DGRAM),
            Some(socket2::Protocol::from(libc::NETLINK_SOCK_DIAG)),
        )
        .context("a sock_diag netlink socket (the slow scenario runs on Linux only)")?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        Ok(Diag { socket, seq: 0 })
    }

    /// The server's side of the connection between `server` and `client`: its TCP state and
    /// the bytes queued for the client that it has not acknowledged (`write_seq - snd_una`,
    /// the `tx_queue` of `/proc/net/tcp`); `None` once there is no such connection.
    fn server_side(
        &mut self,
        server: SocketAddrV4,
        client: SocketAddrV4,
    ) -> anyhow::Result<Option<(u8, u64)>> {
        use std::io::Read;
        self.seq = self.seq.wrapping_add(1);
        let mut req = Vec::with_capacity(NLMSG_HEADER + 56);
        req.extend_from_slice(&((NLMSG_HEADER + 56) as u32).to_ne_bytes());
        req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        // Without NLM_F_DUMP: one socket, looked up by its addresses.
        req.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req.extend_from_slice(&self.seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        // struct inet_diag_req_v2: family, protocol, extensions, pad, states, then the id.
        req.extend_from_slice(&[libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0]);
        req.extend_from_slice(&u32::MAX.to_ne_bytes());
        req.extend_from_slice(&server.port().to_be_bytes());
        req.extend_from_slice(&client.port().to_be_bytes());
        req.extend_from_slice(&server.ip().octets());
        req.extend_from_slice(&[0; 12]);
        req.extend_from_slice(&client.ip().octets());
        req.extend_from_slice(&[0; 12]);
        req.extend_from_slice(&0u32.to_ne_bytes());
        // INET_DIAG_NOCOOKIE: any socket with these addresses.
        req.extend_from_slice(&[0xff; 8]);
        self.socket.send(&req)?;
        let mut buf = [0u8; 8192];
        loop {
            let n = (&self.socket).read(&mut buf).context("sock_diag answer")?;
            let mut at = 0;
            while at + NLMSG_HEADER <= n {
                let word =
                    |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
                let len = word(at) as usize;
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                let seq = word(at + 8);
                if len < NLMSG_HEADER || at + len > n {
                    bail!("a malformed sock_diag answer");
                }
                let body = &buf[at + NLMSG_HEADER..at + len];
                at += (len + 3) & !3;
                if seq != self.seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR if body.len() >= 4 => {
                        let errno = -i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                        if errno == libc::ENOENT {
                            return Ok(None);
                        }
                        bail!("sock_diag: {}", std::io::Error::from_raw_os_error(errno));
                    }
                    SOCK_DIAG_BY_FAMILY if body.len() >= INET_DIAG_MSG => {
                        let state = body[1];
                        let port = u16::from_be_bytes([body[6], body[7]]);
                        let ip = Ipv4Addr::new(body[24], body[25], body[26], body[27]);
                        // Once the connection is gone, the lookup finds the listening socket.
                        if state == LISTEN || SocketAddrV4::new(ip, port) != client {
                            return Ok(None);
                        }
                        let queued = u32::from_ne_bytes([body[60], body[61], body[62], body[63]]);
                        return Ok(Some((state, u64::from(queued))));
                    }
                    _ => bail!("an unexpected sock_diag answer (type {kind})"),
                }
            }
        }
    }
}

/// A WebSocket subscriber on a bare socket that asks for a `recv_buffer`-byte receive buffer,
/// does the handshake, and never reads again: the frames after the answer's head stay unread.
async fn never_reading_peer(
    server: SocketAddrV4,
    path: &str,
    n: u64,
    recv_buffer: usize,
) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    // Before connecting: the window the peer offers is fixed by then.
    socket.set_recv_buffer_size(recv_buffer as u32)?;
    socket.bind(SocketAddr::new(crate::net::source(n), 0))?;
    let mut stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(server.into()))
        .await
        .context("connect timed out")??;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    // A byte at a time, so nothing after the head is taken from the kernel.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .context("handshake timed out")??;
        if read == 0 {
            bail!("the server closed during the handshake");
        }
        head.push(byte[0]);
        if head.len() > 4096 {
            bail!("a handshake answer without an end");
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        bail!("refused: {}", String::from_utf8_lossy(&head));
    }
    Ok(stream)
}

/// Reads everything the server sent a peer until its connection ends, to see how it ended.
async fn ending(mut stream: TcpStream) -> Ending {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut close = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Ending::Open,
            Ok(Ok(0)) => return close.map_or(Ending::Eof, Ending::Closed),
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ending::Reset,
            Ok(Err(e)) => return Ending::Failed(e.to_string()),
        }
        // Whole frames only; a server's frames are not masked.
        loop {
            let (header, len) = match bytes.get(1).map(|b| b & 0x7f) {
                None => break,
                Some(126) if bytes.len() >= 4 => {
                    (4, usize::from(u16::from_be_bytes([bytes[2], bytes[3]])))
                }
                Some(127) if bytes.len() >= 10 => {
                    let mut long = [0u8; 8];
                    long.copy_from_slice(&bytes[2..10]);
                    (
                        10,
                        usize::try_from(u64::from_be_bytes(long)).unwrap_or(usize::MAX),
                    )
                }
                Some(126 | 127) => break,
                Some(short) => (2, usize::from(short)),
            };
            if bytes.len().saturating_sub(header) < len {
                break;
            }
            if bytes[0] & 0x0f == 0x8 && len >= 2 {
                close = Some(u16::from_be_bytes([bytes[header], bytes[header + 1]]));
            }
            bytes.drain(..header + len);
        }
    }
}

/// What one phase left: the readers', the publisher's and the peers' results.
struct Phase {
    readers: Vec<Outcome>,
    publishers: Vec<Outcome>,
    peers: Vec<Peer>,
    endings: Vec<Ending>,
    peer_errors: Vec<String>,
    server_cpu: f64,
}

/// One phase on a fresh ticket: the readers subscribe, the posts run for the duration, and
/// `peers` never-reading peers join one after another over its first four fifths.
async fn phase(cli: &Cli, server: &Server, shape: &Shape, peers: usize) -> anyhow::Result<Phase> {
    let SocketAddr::V4(addr) = server.addr else {
        bail!("the slow scenario watches IPv4 connections only");
    };
    let slugs = crate::create_tickets(server, 1).await?;
    let paths = crate::ws_paths(server, &slugs);
    let (mut readers, _) = crate::subscribers(cli, server, &paths, shape.readers).await?;
    // `{stamp}` is about 120 characters; the rest pads the message to its size.
    let pad = "x".repeat(shape.message_bytes.saturating_sub(120));
    let publisher = Request {
        op: "publish".into(),
        method: "POST".into(),
        paths: crate::ticket_paths(server, &slugs, "/messages"),
        auth: None,
        body: Some(format!(r#"{{"author":"user","content":"{{stamp}}{pad}"}}"#)),
        weight: 1.0,
    };
    let watch = Watch {
        server: addr,
        threshold: shape.send_buffer_bytes as u64,
        peers: Arc::new(Mutex::new(Vec::new())),
        posts_done: Arc::new(AtomicBool::new(false)),
    };
    let watcher = {
        let watch = watch.clone();
        std::thread::spawn(move || watch.run())
    };
    let every = Duration::from_secs(shape.duration_secs).mul_f64(0.8) / peers.max(1) as u32;
    let opener = {
        let (watch, path, recv_buffer) = (watch.clone(), paths[0].clone(), shape.peer_recv_buffer);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut opened = Vec::new();
            let mut errors = Vec::new();
            for k in 0..peers {
                tokio::time::sleep_until(start + every * k as u32).await;
                match never_reading_peer(addr, &path, 50_000 + k as u64, recv_buffer).await {
                    Ok(stream) => match stream.local_addr() {
                        Ok(SocketAddr::V4(me)) => {
                            watch.add(me);
                            opened.push((me, stream));
                        }
                        other => errors.push(format!("peer {k}: its address: {other:?}")),
                    },
                    Err(e) => errors.push(format!("peer {k}: {e:#}")),
                }
            }
            (opened, errors)
        })
    };
    let what = if peers > 0 {
        "posting, with peers"
    } else {
        "posting, readers alone"
    };
    let bar = crate::bar((shape.rate * shape.duration_secs as f64) as u64, what);
    let cpu_before = server.cpu()?;
    let started = Instant::now();
    let publishers = crate::run_jobs(
        vec![Job::Http {
            server: server.addr,
            requests: vec![publisher],
            connections: shape.publishers,
            rate: shape.rate,
            duration_ms: shape.duration_secs * 1000,
            first: 1_000,
        }],
        &bar,
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    watch.posts_done.store(true, Ordering::Release);
    // Let the last deliveries land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let server_cpu = (server.cpu()? - cpu_before).as_secs_f64() / elapsed * 100.0;
    bar.finish();
    let readers = crate::finish(&mut readers).await?;
    let (opened, peer_errors) = opener.await?;
    let seen = tokio::task::spawn_blocking(move || watcher.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the watch panicked"))??;
    let left: Vec<SocketAddrV4> = seen
        .iter()
        .filter(|p| p.left.is_some())
        .map(|p| p.client)
        .collect();
    let mut endings = Vec::new();
    for (me, stream) in opened {
        if left.contains(&me) {
            endings.push(ending(stream));
        }
    }
    let endings = futures_util::future::join_all(endings).await;
    Ok(Phase {
        readers,
        publishers,
        peers: seen,
        endings,
        peer_errors,
        server_cpu,
    })
}

/// The scenario: `rounds` pairs of phases, the readers alone and then with the peers.
pub async fn run(cli: &Cli, server: &Server, shape: &Shape) -> anyhow::Result<Report> {
    let mut r = Report::new(
        "slow",
        json!({ "readers": shape.readers, "peers": shape.peers, "rate": shape.rate,
                "message_bytes": shape.message_bytes, "duration_secs": shape.duration_secs,
                "publishers": shape.publishers, "peer_recv_buffer": shape.peer_recv_buffer,
                "send_buffer_bytes": shape.send_buffer_bytes,
                "subscriber_queue": shape.subscriber_queue, "write_timeout_ms": shape.write_timeout_ms,
                "rounds": shape.rounds, "poll_ms": POLL.as_millis() as u64 }),
    );
    // Fail before any phase where the kernel cannot be asked.
    match server.addr {
        SocketAddr::V4(addr) => drop(Diag::open()?.server_side(addr, addr)?),
        SocketAddr::V6(_) => bail!("the slow scenario watches IPv4 connections only"),
    }
    let mut acks = [worker::histogram(), worker::histogram()];
    let mut all_peers = Vec::new();
    let mut all_endings = Vec::new();
    let mut errors: Vec<&[Outcome]> = Vec::new();
    let mut phases = Vec::new();
    for round in 1..=shape.rounds {
        for with in [false, true] {
            let p = phase(cli, server, shape, if with { shape.peers } else { 0 }).await?;
            phases.push((round, with, p));
        }
    }
    for (round, with, p) in &phases {
        let name = if *with {
            "readers+peers"
        } else {
            "readers alone"
        };
        let published = crate::total(&p.publishers, "publish");
        let connected = crate::total(&p.readers, "connected");
        let received = crate::total(&p.readers, "received");
        let missed = (published * connected).saturating_sub(received);
        r.figure(&format!("{name} {round}: posts"), "count", published as f64);
        r.figure(
            &format!("{name} {round}: deliveries"),
            "count",
            received as f64,
        );
        r.figure(&format!("{name} {round}: missed"), "count", missed as f64);
        r.figure(
            &format!("{name} {round}: readers cut"),
            "count",
            crate::total(&p.readers, "closed_by_server") as f64,
        );
        r.figure(
            &format!("{name} {round}: server CPU"),
            "% of one core",
            p.server_cpu,
        );
        r.latency(
            &format!("{name} {round}"),
            crate::merged(&p.readers, "delivery")?,
        );
        acks[usize::from(*with)].add(crate::merged(&p.publishers, "publish")?)?;
        all_peers.extend(p.peers.iter().cloned());
        all_endings.extend(p.endings.iter().map(|e| format!("{e:?}")));
        r.errors.extend(p.peer_errors.iter().cloned());
        errors.push(&p.readers);
        errors.push(&p.publishers);
    }
    peer_figures(&mut r, &all_peers, &all_endings, shape)?;
    r.latency("post ack alone", acks[0].clone());
    r.latency("post ack +peers", acks[1].clone());
    crate::errors(&mut r, &errors);
    Ok(r)
}

fn peer_figures(
    r: &mut Report,
    peers: &[Peer],
    endings: &[String],
    shape: &Shape,
) -> anyhow::Result<()> {
    let micros = |d: Duration| (d.as_micros() as u64).max(1);
    let (mut behind_to_cut, mut full_to_cut, mut joined_to_behind) = (
        worker::histogram(),
        worker::histogram(),
        worker::histogram(),
    );
    let mut queued: Vec<u64> = Vec::new();
    let (mut cut_before_behind, mut never_behind, mut open_at_end) = (0, 0, 0);
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    for p in peers {
        queued.push(p.most_queued);
        if let Some(b) = p.behind {
            joined_to_behind.record(micros(b - p.subscribed))?;
        }
        match (p.behind, p.left) {
            (Some(b), Some((l, state))) => {
                behind_to_cut.record(micros(l - b))?;
                if let Some(m) = p.most_at {
                    full_to_cut.record(micros(l - m))?;
                }
                let state = state.map_or("gone".to_owned(), |s| format!("state {s:02X}"));
                *states.entry(state).or_default() += 1;
            }
            (None, Some(_)) => cut_before_behind += 1,
            (Some(_), None) => open_at_end += 1,
            (None, None) => never_behind += 1,
        }
    }
    queued.sort_unstable();
    r.figure("peers", "count", peers.len() as f64);
    r.figure(
        "peers cut after falling behind",
        "count",
        behind_to_cut.len() as f64,
    );
    r.figure(
        "peers cut before falling behind",
        "count",
        cut_before_behind as f64,
    );
    r.figure("peers behind, still open", "count", open_at_end as f64);
    r.figure("peers never behind", "count", never_behind as f64);
    for (state, n) in states {
        // `gone`: the server's side vanished from the table at once, as after a reset.
        r.figure(
            &format!("server side after the cut: {state}"),
            "count",
            n as f64,
        );
    }
    let count = |what: &str| endings.iter().filter(|e| e.as_str() == what).count();
    r.figure("peers that read a reset", "count", count("Reset") as f64);
    r.figure(
        "peers that read close 1008",
        "count",
        count("Closed(1008)") as f64,
    );
    r.figure(
        "peers that read another end",
        "count",
        (endings.len() - count("Reset") - count("Closed(1008)")) as f64,
    );
    r.figure(
        "send buffer setting",
        "KiB",
        shape.send_buffer_bytes as f64 / 1024.0,
    );
    if let (Some(most), Some(median)) = (queued.last(), queued.get(queued.len() / 2)) {
        r.figure("most queued for a peer, max", "KiB", *most as f64 / 1024.0);
        r.figure(
            "most queued for a peer, median",
            "KiB",
            *median as f64 / 1024.0,
        );
    }
    r.latency("behind to cut", behind_to_cut);
    r.latency("full to cut", full_to_cut);
    r.latency("joined to behind", joined_to_behind);
    Ok(())
}
