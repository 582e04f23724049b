//! The accept loop: warp's routes served through hyper's HTTP/1 connection with a timer,
//! because warp's own `serve` has no header-read timeout. HTTP/1 only: WebSockets upgrade from
//! it, browsers speak HTTP/2 only over TLS (which a proxy in front terminates), and HTTP/2's
//! protocol sniffing would let a silent connection hold its slot with no timeout at all.
//!
//! It caps open connections, reads what the guards and handlers need from each request once
//! ([`RequestMeta`]), puts the headers its guard decided on every answer, and on shutdown stops
//! accepting, lets requests in flight finish, closes WebSockets with "going away", and gives up
//! after the grace period with a warning.
//!
//! Past the cap, a connection is answered 503 with `Retry-After` and closed ([`Refusals`]), so
//! a crowd larger than the server learns when to come back instead of retrying at once. Those
//! answers have an allowance of their own, and past it connections are closed unread: the
//! refusals can never cost more than a few hundred files and a few MiB.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderValue, CONNECTION, RETRY_AFTER, UPGRADE};
use http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use crate::config::ServerSettings;
use crate::http::access::Seal;
use crate::http::upgrade::UpgradeSlot;
use crate::http::{router, ApiError, Ctx};

pub async fn serve(listener: TcpListener, ctx: Arc<Ctx>) {
    let settings = ctx.settings.clone();
    let router = Arc::new(router::router(&ctx));
    let mut builder = http1::Builder::new();
    // The header timeout also runs while a connection waits for its next request, so an idle
    // keep-alive connection gives its slot back after the same time.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.server.header_read_timeout)
        .max_buf_size(64 * 1024);
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(settings.server.max_connections));
    let mut refusals = Refusals::new(&settings.server);
    check_open_files(&settings.server);
    let shutdown = ctx.shutdown.clone();

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refusals.refuse(stream, &connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        // Shared with a WebSocket the connection may become, so the slot stays taken while
        // the socket lives.
        let permit: crate::http::upgrade::Hold = Arc::new(permit);
        let slot = permit.clone();
        let trusted_proxies = settings.limits.trusted_proxies;
        let per_request = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // Read once here, where the headers can be borrowed; warp's header filters clone.
            let meta = Arc::new(RequestMeta::from_parts(
                Some(PeerAddr(peer)),
                req.method(),
                req.headers(),
                trusted_proxies,
            ));
            req.extensions_mut().insert(meta.clone());
            if req.headers().contains_key(UPGRADE) {
                UpgradeSlot::attach(&mut req, &slot);
            }
            let method = req.method().clone();
            let started = std::time::Instant::now();
            let (route, answer) = router.call(req);
            async move {
                // Every answer, refusals and errors included, gets the headers its guard
                // decided, so a browser can read a 429 or a 404 too.
                let resp = answer.await.map(|resp| meta.seal(resp));
                if let Ok(resp) = &resp {
                    crate::metrics::http_request(&method, route, resp.status().as_u16(), started);
                }
                resp
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), per_request)
            .with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.cancelled() => {
                    // Finish the request in flight, then close; an upgraded socket has left
                    // hyper already and is closed by its own task.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!("draining: no new connections; waiting for open requests and sockets");
    ctx.sockets.close();
    connections.close();
    let drained = async {
        connections.wait().await;
        ctx.sockets.wait().await;
    };
    if tokio::time::timeout(settings.server.shutdown_grace, drained)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?settings.server.shutdown_grace, "grace period ran out; closing the remaining connections");
    }
}

/// Connections past `FLEETY_MAX_CONNECTIONS`. While the allowance of its own lasts, each is
/// read for one request and answered 503 with `Retry-After` and `Connection: close`, within
/// [`ServerSettings::refusal_time`]; past the allowance it is closed unread, with a reset.
struct Refusals {
    allowance: Arc<Semaphore>,
    http: http1::Builder,
    within: Duration,
    /// When the last warning was logged, and what was refused since.
    logged: Option<Instant>,
    refused: u64,
    dropped: u64,
}

/// How often refusals are logged at most: a crowd over the cap would otherwise write a line
/// per connection.
const LOG_REFUSALS_EVERY: Duration = Duration::from_secs(10);

/// The seconds a refused client is told to wait, drawn for each refusal so a crowd turned away
/// together does not come back together.
const RETRY_AFTER_SECS: std::ops::RangeInclusive<u64> = 5..=15;

/// What of a refused request's body is read and thrown away at most.
const DRAIN_BYTES: usize = 64 * 1024;

impl Refusals {
    fn new(server: &ServerSettings) -> Self {
        let within = server.refusal_time();
        let mut http = http1::Builder::new();
        // The smallest buffer hyper takes; a refused client needs no more than its request line
        // and headers read.
        http.timer(TokioTimer::new())
            .header_read_timeout(within)
            .keep_alive(false)
            .max_buf_size(8 * 1024);
        Refusals {
            allowance: Arc::new(Semaphore::new(server.refusal_allowance())),
            http,
            within,
            logged: None,
            refused: 0,
            dropped: 0,
        }
    }

    fn refuse(&mut self, stream: TcpStream, tasks: &TaskTracker) {
        match self.allowance.clone().try_acquire_owned() {
            Ok(permit) => {
                self.refused += 1;
                tasks.spawn(answer_503(stream, self.http.clone(), self.within, permit));
            }
            Err(_) => {
                self.dropped += 1;
                crate::metrics::connection_refused("dropped");
                reset(stream);
            }
        }
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|at| now.duration_since(at) >= LOG_REFUSALS_EVERY)
        {
            tracing::warn!(
                refused_503 = self.refused,
                closed_unread = self.dropped,
                "connection limit reached (FLEETY_MAX_CONNECTIONS): connections turned away since \
                 the last such line (fleety_connections_refused_total counts them all)"
            );
            self.logged = Some(now);
            (self.refused, self.dropped) = (0, 0);
        }
    }
}

/// Reads one request from a connection past the cap and answers it 503. Everything, the
/// client's silence included, ends within `within`.
async fn answer_503(
    stream: TcpStream,
    http: http1::Builder,
    within: Duration,
    permit: OwnedSemaphorePermit,
) {
    let answered = Arc::new(AtomicU8::new(UNANSWERED));
    let told = answered.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let with_body = !hyper::body::Body::is_end_stream(req.body());
        told.store(
            if with_body {
                ANSWERED_BODY_UNREAD
            } else {
                ANSWERED
            },
            Ordering::Relaxed,
        );
        std::future::ready(Ok::<_, std::convert::Infallible>(over_capacity()))
    });
    let refusal = async {
        let conn = http.serve_connection(TokioIo::new(stream), service);
        // hyper gives the stream back instead of closing it, so a body can be drained below.
        let Ok(parts) = conn.without_shutdown().await else {
            return;
        };
        let mut stream = parts.io.into_inner();
        if answered.load(Ordering::Relaxed) != ANSWERED_BODY_UNREAD
            || stream.shutdown().await.is_err()
        {
            return;
        }
        // Closing with the body still unread would reset the connection, and some clients
        // report the reset instead of the answer before it (a client on Windows drops what it
        // has not read; one still writing its body sees the write fail): read on until the
        // client, told the connection ends, closes its side.
        let mut sink = [0u8; 1024];
        let mut left = DRAIN_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(within, refusal).await;
    let outcome = match answered.load(Ordering::Relaxed) {
        UNANSWERED => "unanswered",
        _ => "answered",
    };
    crate::metrics::connection_refused(outcome);
    // Given back only now, with the connection closed: the allowance counts open files.
    drop(permit);
}

/// What became of a refused connection's request.
const UNANSWERED: u8 = 0;
const ANSWERED: u8 = 1;
/// Answered while the client still had a body to send.
const ANSWERED_BODY_UNREAD: u8 = 2;

/// The answer past the cap: 503 with the usual error body, when to come back, and that this
/// connection ends here.
fn over_capacity() -> warp::reply::Response {
    let mut resp = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is at its connection limit; retry after the time in Retry-After",
    )
    .into_response();
    let headers = resp.headers_mut();
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from(rand::random_range(RETRY_AFTER_SECS)),
    );
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Closes a connection at once with a reset, so the kernel keeps nothing of it either.
fn reset(stream: TcpStream) {
    if let Err(e) = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "cannot set a refused connection to reset on close");
    }
    drop(stream);
}

/// Says what the connection cap is, and warns when the open-file limit cannot hold it: past the
/// limit, accepting fails and the kernel leaves the crowd waiting in the backlog, unanswered.
fn check_open_files(server: &ServerSettings) {
    let (cap, refusals) = (server.max_connections, server.refusal_allowance());
    let limit = crate::config::open_file_limit();
    tracing::info!(
        max_connections = cap,
        refusal_allowance = refusals,
        open_file_limit = limit,
        "connection cap"
    );
    let needed = (cap + refusals) as u64 + crate::config::FILES_RESERVED;
    if let Some(limit) = limit.filter(|&limit| needed > limit) {
        tracing::warn!(
            max_connections = cap,
            open_file_limit = limit,
            needed,
            "FLEETY_MAX_CONNECTIONS needs more open files than the process may have: raise the \
             limit (ulimit -n, systemd LimitNOFILE) or lower the cap; see docs/operations.md"
        );
    }
}

/// Serves `GET /metrics` (and a 404 for anything else) on a listener of its own, for scrapers
/// on a private network. Stops accepting when `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
    chats: fleety_actors::chat::Chats,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let chats = chats.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let chats = chats.clone();
                async move {
                    let resp =
                        if req.method() == hyper::Method::GET && req.uri().path() == "/metrics" {
                            crate::http::metrics_response(&chats)
                        } else {
                            crate::http::ApiError::not_found("no such endpoint").into_response()
                        };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            }),
        );
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// The TCP peer of a connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// What the server reads from a request's connection and headers, once, for the guards and
/// handlers: they share it as an `Arc`, never cloning the headers.
#[derive(Debug)]
pub struct RequestMeta {
    pub ip: IpAddr,
    /// The browser origin of a cross-origin request; `None` for requests without one and for
    /// the server's own pages (the inbox), which are not cross-origin.
    pub origin: Option<String>,
    pub bearer: Option<String>,
    /// The password of basic authentication (`Authorization: Basic`), its user name dropped.
    pub basic_password: Option<String>,
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
    /// A ticket key (`X-Ticket-Key`, or on a WebSocket the `fleety.key.` subprotocol): opens
    /// one ticket of a project whose tickets need the session that opened them.
    pub ticket_key: Option<String>,
    /// A member's session secret, from the session cookie.
    pub cookie: Option<String>,
    /// The `X-CSRF-Token` header.
    pub csrf: Option<String>,
    pub user_agent: Option<String>,
    /// The request came over HTTPS, as a trusted proxy says (`X-Forwarded-Proto`).
    pub https: bool,
    /// GET, HEAD or OPTIONS: a request that changes nothing, which needs no CSRF token.
    pub safe: bool,
    /// The rate-limit and CORS headers the request's answer gets, whatever it turns out to be.
    pub seal: Seal,
}

impl RequestMeta {
    pub fn from_parts(
        peer: Option<PeerAddr>,
        method: &http::Method,
        headers: &HeaderMap,
        trusted_proxies: usize,
    ) -> RequestMeta {
        let peer_ip = peer.map(|p| p.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let text = |name: http::header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let bearer = text(http::header::AUTHORIZATION)
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            })
            .or_else(|| crate::http::upgrade::protocol_bearer(headers));
        let basic_password = text(http::header::AUTHORIZATION).and_then(|v| {
            use base64::Engine;
            let (scheme, encoded) = v.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            decoded
                .split_once(':')
                .map(|(_, password)| password.to_owned())
        });
        let host = text(http::header::HOST);
        let origin = text(http::header::ORIGIN).filter(|o| !same_origin(o, host.as_deref()));
        RequestMeta {
            ip: client_ip(peer_ip, headers, trusted_proxies),
            origin,
            bearer,
            basic_password,
            content_type: text(http::header::CONTENT_TYPE),
            idempotency_key: text(http::header::HeaderName::from_static("idempotency-key")),
            ticket_key: text(http::header::HeaderName::from_static("x-ticket-key"))
                .or_else(|| crate::http::upgrade::protocol_ticket_key(headers)),
            cookie: session_cookie(headers),
            csrf: text(http::header::HeaderName::from_static("x-csrf-token")),
            user_agent: text(http::header::USER_AGENT),
            // The nearest proxy's word, and only when proxies are trusted at all.
            https: trusted_proxies > 0
                && text(http::header::HeaderName::from_static("x-forwarded-proto"))
                    .and_then(|v| {
                        v.rsplit(',')
                            .next()
                            .map(|p| p.trim().eq_ignore_ascii_case("https"))
                    })
                    .unwrap_or(false),
            safe: matches!(
                *method,
                http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
            ),
            seal: Seal::default(),
        }
    }

    /// Puts the request's rate-limit and CORS headers on its answer.
    pub fn seal(&self, mut resp: warp::reply::Response) -> warp::reply::Response {
        let h = resp.headers_mut();
        if let Some(d) = self.seal.rate.get().filter(|d| d.limit > 0) {
            h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
            h.insert("x-ratelimit-reset", HeaderValue::from(d.reset_secs));
            if !d.allowed {
                h.insert(http::header::RETRY_AFTER, HeaderValue::from(d.reset_secs));
            }
        }
        // On every project-scoped answer, allowed or not, so no cache serves one origin's
        // answer to another.
        if self.seal.scoped.load(Ordering::Relaxed) {
            h.insert(http::header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(origin) = self.seal.refused_origin.get() {
            if resp.status() == http::StatusCode::FORBIDDEN {
                resp.headers_mut()
                    .insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            }
        }
        let h = resp.headers_mut();
        if let Some(origin) = self.seal.allowed_origin.get() {
            h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(
                    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After",
                ),
            );
        }
        resp
    }
}

/// Whether a browser's `Origin` is the server's own: its host (and port) is the one the request
/// was sent to. Compared without the scheme, which a TLS-terminating proxy changes.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    authority.eq_ignore_ascii_case(host)
}

/// The member session cookie's value, if the request carries one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == crate::accounts::COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The client's IP: the TCP peer, or, behind `trusted` proxies, the address the outermost
/// trusted proxy saw (counted from the right of `X-Forwarded-For`, which proxies append to).
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: usize) -> IpAddr {
    if trusted == 0 {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    hops.len()
        .checked_sub(trusted)
        .and_then(|i| hops.get(i))
        .and_then(|hop| parse_hop(hop))
        .unwrap_or(peer)
}

/// An `X-Forwarded-For` entry: an address, possibly with a port or IPv6 brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    hop.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_own_pages_are_not_cross_origin() {
        assert!(same_origin("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(same_origin(
            "https://Support.Example.com",
            Some("support.example.com")
        ));
        assert!(!same_origin(
            "https://evil.example",
            Some("support.example.com")
        ));
        assert!(!same_origin(
            "http://127.0.0.1:3000",
            Some("127.0.0.1:8080")
        ));
        assert!(!same_origin("http://127.0.0.1:8080", None));
    }

    #[test]
    fn the_client_ip_is_the_peer_unless_proxies_are_trusted() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9"),
        );
        assert_eq!(client_ip(peer, &h, 0), peer);
        // One proxy appended the address it saw: trust that one, not what the client claimed.
        assert_eq!(
            client_ip(peer, &h, 1),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &h, 2), "6.6.6.6".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, &h, 3), peer);
        assert_eq!(client_ip(peer, &HeaderMap::new(), 1), peer);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9:4711"),
        );
        assert_eq!(
            client_ip(peer, &h, 1),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("[2001:db8::7]"));
        assert_eq!(
            client_ip(peer, &h, 1),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
    }
}
