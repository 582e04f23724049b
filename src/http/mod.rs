//! The HTTP, WebSocket and SSE front. `routes.rs` is the one table of routes: the router
//! (`router.rs`) dispatches by it, the metrics label requests by it, and the OpenAPI document
//! (`openapi.rs`) is built from it. Each route names the guard from `access.rs` that decides
//! who may call it; each handler parses its input into domain types, asks the owning actor (or
//! the project directory), and turns the answer or the error into a response. Nothing here
//! touches storage.

pub mod access;
pub mod assets;
pub mod assistant;
pub mod chat;
pub mod error;
pub mod kb;
pub mod openapi;
pub mod projects_api;
pub mod ratelimit;
pub mod route;
pub mod router;
pub mod routes;
pub mod session;
pub mod tickets;
pub mod upgrade;
pub mod webhooks;
pub mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use fleety_actors::clock::Clock;
use fleety_actors::domain::{Project, ProjectId};
use fleety_actors::root::System;
use http::header::{HeaderMap, HeaderValue};
use http::StatusCode;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::reply::Response;

use crate::auth::Tokens;
use crate::config::Settings;
use crate::projects::Projects;
pub use error::ApiError;
use ratelimit::RateLimiter;

/// Everything a handler may use. Cloned per request as one `Arc`.
pub struct Ctx {
    pub settings: Settings,
    pub system: System,
    pub projects: Projects,
    pub tokens: Tokens,
    pub public_limit: RateLimiter,
    pub session_limit: RateLimiter,
    pub clock: Arc<dyn Clock>,
    /// Webhook endpoints and their delivery logs.
    pub webhook_store: Arc<dyn fleety_actors::store::WebhookStore>,
    /// Cancelled when the server starts draining: sockets close with "going away".
    pub shutdown: CancellationToken,
    /// Long-lived sockets, so a drain can wait for them.
    pub sockets: TaskTracker,
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
    pub content_type: Option<String>,
    pub idempotency_key: Option<String>,
    /// The rate-limit and CORS headers the request's answer gets, whatever it turns out to be.
    pub seal: access::Seal,
}

impl RequestMeta {
    pub fn from_parts(
        peer: Option<PeerAddr>,
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
        let bearer = text(http::header::AUTHORIZATION).and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
        let host = text(http::header::HOST);
        let origin = text(http::header::ORIGIN).filter(|o| !same_origin(o, host.as_deref()));
        RequestMeta {
            ip: client_ip(peer_ip, headers, trusted_proxies),
            origin,
            bearer,
            content_type: text(http::header::CONTENT_TYPE),
            idempotency_key: text(http::header::HeaderName::from_static("idempotency-key")),
            seal: access::Seal::default(),
        }
    }

    /// Whether the caller holds this project's admin key.
    pub fn is_admin_of(&self, project: &Project) -> bool {
        self.bearer
            .as_deref()
            .is_some_and(|key| crate::auth::key_matches(key, &project.admin_key_hash))
    }
}

/// Whether a browser's `Origin` is the server's own: its host (and port) is the one the request
/// was sent to. Compared without the scheme, which a TLS-terminating proxy changes.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    authority.eq_ignore_ascii_case(host)
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

/// A JSON response from bytes that are already JSON.
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    json_bytes(status, fleety_actors::events::encode(value))
}

/// Parses a JSON request body, insisting on a JSON content type.
pub fn parse_body<T: DeserializeOwned>(meta: &RequestMeta, body: &Bytes) -> Result<T, ApiError> {
    let is_json = meta.content_type.as_deref().is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim();
        mime.eq_ignore_ascii_case("application/json")
    });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty; a JSON object is expected",
        ));
    }
    // Every body of the API is an object; serde would also read a struct from an array.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// An acknowledgement without anything else to say.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Done {
    message: &'static str,
}

impl Done {
    pub fn new(message: &'static str) -> Self {
        Done { message }
    }
}

/// The server's liveness.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// GET /healthz
pub fn health() -> Response {
    json(StatusCode::OK, &Health { status: "ok" })
}

/// GET /metrics on the main listener: served only when no separate metrics address is
/// configured.
pub async fn metrics_route(ctx: Arc<Ctx>) -> Response {
    if ctx.settings.server.metrics_listen.is_none() {
        metrics_response(&ctx.system.chats)
    } else {
        ApiError::not_found("no such endpoint").into_response()
    }
}

/// The Prometheus text exposition. Conversations that have ended are counted first, so a
/// scrape never lags a ticker behind.
pub fn metrics_response(chats: &fleety_actors::chat::Chats) -> Response {
    chats.settle_outcomes();
    let mut resp = Response::new(crate::metrics::render().into());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

pub fn parse_project_id(raw: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(raw).map_err(|_| ApiError::not_found("project not found"))
}

/// A handler's answer, or its error as the `{"error": ...}` answer.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
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
