//! The WebSocket handshake, done here instead of by warp's `ws()` filter, because warp cannot
//! set tungstenite's read buffer: its default (128 KiB, zero-filled on the first read) made
//! each idle socket cost about 135 KiB of server memory. Our sockets only ever receive pongs,
//! closes and the odd small frame, so a small read buffer costs nothing in speed.
//!
//! The accept loop takes hyper's upgrade handle out of each upgrade request and leaves it in
//! an [`UpgradeSlot`]; [`websocket`] checks the handshake headers and finds the slot, and
//! [`WsRequest::upgrade`] answers 101 and hands the socket to its task.
//!
//! The socket task gets the TCP stream itself back from hyper, not a boxed stream, so it can
//! cap the kernel's send buffer for the socket (a peer that stops reading pins at most that
//! much) and, for a peer cut off as too slow, close with a reset that frees whatever is still
//! queued at once ([`reset`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::reply::Response;
use warp::Filter;

/// A server-side WebSocket.
pub type WebSocket = WebSocketStream<TcpStream>;

/// Something the socket keeps until it closes: the connection's slot under
/// `FLEETY_MAX_CONNECTIONS`, which hyper's connection task gives up when the connection
/// leaves it at the upgrade.
pub type Hold = Arc<dyn std::any::Any + Send + Sync>;

/// hyper's upgrade handle for one request, shareable so a warp filter can take it.
#[derive(Clone)]
pub struct UpgradeSlot {
    on_upgrade: Arc<Mutex<Option<OnUpgrade>>>,
    hold: Hold,
}

impl UpgradeSlot {
    /// Moves the upgrade handle of an upgrade request into a slot in its extensions. The
    /// server calls it only for requests with `Upgrade` (taking the handle costs an
    /// allocation).
    pub fn attach<B>(req: &mut http::Request<B>, hold: &Hold) {
        let on_upgrade = hyper::upgrade::on(&mut *req);
        req.extensions_mut().insert(UpgradeSlot {
            on_upgrade: Arc::new(Mutex::new(Some(on_upgrade))),
            hold: hold.clone(),
        });
    }

    fn take(&self) -> Option<OnUpgrade> {
        self.on_upgrade.lock().ok()?.take()
    }
}

/// The request is not a WebSocket handshake.
#[derive(Debug)]
pub struct NotWebSocket;

impl warp::reject::Reject for NotWebSocket {}

/// A checked WebSocket handshake, ready to be accepted.
pub struct WsRequest {
    key: HeaderValue,
    slot: UpgradeSlot,
    /// The client offered the [`PROTOCOL`] subprotocol, which the answer then selects.
    protocol: bool,
}

/// The subprotocol a browser offers to pass a bearer token on a WebSocket, which cannot carry
/// an `Authorization` header: `new WebSocket(url, ["fleety", "fleety.bearer." + token])`. The
/// token stays out of the URL (and so out of access logs); the answer selects `fleety`, as a
/// browser requires of a server when it offers subprotocols.
pub const PROTOCOL: &str = "fleety";
const BEARER_PROTOCOL: &str = "fleety.bearer.";
/// A ticket key, offered the same way: `fleety.key.{key}`.
const KEY_PROTOCOL: &str = "fleety.key.";

/// The bearer token offered as a `fleety.bearer.{token}` subprotocol, if any.
pub fn protocol_bearer(headers: &HeaderMap) -> Option<String> {
    offered(headers, BEARER_PROTOCOL)
}

/// The ticket key offered as a `fleety.key.{key}` subprotocol, if any.
pub fn protocol_ticket_key(headers: &HeaderMap) -> Option<String> {
    offered(headers, KEY_PROTOCOL)
}

fn offered(headers: &HeaderMap, prefix: &str) -> Option<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(prefix))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// Matches a WebSocket handshake (RFC 6455 §4.2.1); anything else is rejected with
/// [`NotWebSocket`].
pub fn websocket() -> impl Filter<Extract = (WsRequest,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::ext::optional::<UpgradeSlot>())
        .and_then(|headers: HeaderMap, slot: Option<UpgradeSlot>| async move {
            let handshake = has_token(&headers, header::CONNECTION, "upgrade")
                && has_token(&headers, header::UPGRADE, "websocket");
            match (handshake, headers.get(header::SEC_WEBSOCKET_KEY), slot) {
                (true, Some(key), Some(slot)) => Ok(WsRequest {
                    key: key.clone(),
                    slot,
                    protocol: has_token(&headers, header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL),
                }),
                _ => Err(warp::reject::custom(NotWebSocket)),
            }
        })
}

/// How an accepted socket is set up.
#[derive(Clone, Copy)]
pub struct SocketConfig {
    pub ws: WebSocketConfig,
    /// The kernel's send buffer for the socket, in bytes (Linux doubles it for bookkeeping).
    pub send_buffer: usize,
}

/// The socket settings: client frames and messages up to `max_message`, a small read buffer
/// that grows only for a frame that needs it, a cap on what may queue for a slow peer, and
/// the kernel send buffer.
pub fn config(max_message: usize, send_buffer: usize) -> SocketConfig {
    SocketConfig {
        ws: WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_write_buffer_size(MAX_WRITE_BUFFER)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message)),
        send_buffer,
    }
}

/// What tungstenite may hold for one socket beyond the kernel's buffer: a frame larger than
/// the write buffer still fits, and a peer that takes nothing fills it soon.
const MAX_WRITE_BUFFER: usize = 256 * 1024;

/// Frames queued for one write before tungstenite writes without waiting for a flush. The
/// buffer grows only when a socket has several frames waiting, so idle sockets do not pay.
const WRITE_BUFFER: usize = 16 * 1024;

/// Bytes tungstenite reads at a time. Enough for a control frame or a typical small text
/// frame in one read; larger frames grow the buffer to their size.
const READ_BUFFER: usize = 512;

impl WsRequest {
    /// Answers 101 Switching Protocols and runs `on_socket` with the socket once hyper hands
    /// the connection over.
    pub fn upgrade<F, Fut>(self, config: SocketConfig, on_socket: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let hold = self.slot.hold.clone();
        let Some(on_upgrade) = self.slot.take() else {
            return super::ApiError::bad_request("this endpoint expects a WebSocket upgrade")
                .into_response();
        };
        // Two tasks, so the long-lived one holds only the socket's own future: an async
        // block keeps its captures for its whole life, and this one would keep the closure's
        // captures beside the future made from them.
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => return tracing::debug!(error = %e, "websocket upgrade failed"),
            };
            // Our accept loop serves every connection as `TokioIo<TcpStream>`.
            let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => parts,
                Err(_) => return tracing::error!("an upgraded connection is not a TCP stream"),
            };
            let stream = parts.io.into_inner();
            if let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(config.send_buffer)
            {
                tracing::warn!(error = %e, "cannot cap a websocket's send buffer");
            }
            // Bytes the client sent right behind its handshake belong to the socket.
            let socket = WebSocketStream::from_partially_read(
                stream,
                parts.read_buf.to_vec(),
                Role::Server,
                Some(config.ws),
            )
            .await;
            // `map`, not `async move { relay.await; drop(hold) }`: an async block keeps a
            // captured future and the awaited one as two fields, so each socket's task carried
            // its relay twice (6.6 KB instead of 3.3 KB).
            let relay = on_socket(socket).map(move |()| drop(hold));
            relays().spawn(relay);
        });
        let accept = derive_accept_key(self.key.as_bytes());
        let mut resp = Response::default();
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if self.protocol {
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(PROTOCOL),
            );
        }
        resp
    }
}

/// Closes a socket at once with a TCP reset, dropping whatever is still queued for the peer
/// in the kernel, instead of leaving the kernel to keep trying to deliver it.
pub fn reset(socket: WebSocket) {
    if let Err(e) = socket2::SockRef::from(socket.get_ref()).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "cannot set a websocket to reset on close");
    }
    drop(socket);
}

/// The runtime that runs the sockets' relay tasks. A fan-out to a thousand sockets wakes a
/// thousand tasks, each paying a send syscall; on the request runtime every request and actor
/// message behind them would wait its turn in the same run queues. On their own threads they
/// get the CPU by turns with request handling instead, so a post's round trip stays short
/// while its fan-out runs.
fn relays() -> tokio::runtime::Handle {
    static RELAYS: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    let runtime = RELAYS.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("fleety-ws")
            .enable_all()
            .build()
            .inspect_err(|e| {
                tracing::error!(error = %e, "cannot start the socket runtime; sockets share the request runtime");
            })
            .ok()
    });
    match runtime {
        Some(rt) => rt.handle().clone(),
        None => tokio::runtime::Handle::current(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_are_matched_case_blind_in_lists() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(has_token(&h, header::CONNECTION, "upgrade"));
        assert!(!has_token(&h, header::CONNECTION, "close"));
        assert!(!has_token(&h, header::UPGRADE, "websocket"));
    }

    #[test]
    fn a_bearer_token_may_come_as_a_subprotocol() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("fleety, fleety.bearer.abc.def-g_h"),
        );
        assert_eq!(protocol_bearer(&h).as_deref(), Some("abc.def-g_h"));
        assert!(has_token(&h, header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("fleety.bearer."),
        );
        assert_eq!(protocol_bearer(&h), None);
    }

    #[test]
    fn the_config_keeps_the_read_buffer_small() {
        let c = config(4096, 65536);
        assert_eq!(c.ws.read_buffer_size, READ_BUFFER);
        assert_eq!(c.ws.max_message_size, Some(4096));
        assert_eq!(c.send_buffer, 65536);
    }
}
