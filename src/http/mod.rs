//! The HTTP, WebSocket and SSE front. `routes.rs` is the one table of routes: the router
//! (`router.rs`) dispatches by it, the metrics label requests by it, and the OpenAPI document
//! (`openapi.rs`) is built from it. Each route names the guard from `access.rs` that decides
//! who may call it; each handler parses its input into domain types, asks the owning actor (or
//! the project directory), and turns the answer or the error into a response. Nothing here
//! touches storage.

pub mod access;
pub mod assets;
pub mod assignees;
pub mod assistant;
pub mod audit;
pub mod canned;
pub mod chat;
pub mod contacts;
pub mod emails;
pub mod error;
pub mod export;
pub mod home;
pub mod inbound;
pub mod kb;
pub mod members;
pub mod notifications;
pub mod openapi;
pub mod projects_api;
pub mod ratelimit;
pub mod route;
pub mod router;
pub mod routes;
pub mod session;
pub mod ticket_access;
pub mod tickets;
pub mod tokens;
pub mod totp;
pub mod unanswered;
pub mod upgrade;
pub mod visitor_address;
pub mod visitor_email;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use fleety_actors::clock::Clock;
use fleety_actors::root::System;
use http::header::HeaderValue;
use http::StatusCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::reply::Response;

use crate::auth::Tokens;
use crate::config::Settings;
use crate::projects::Projects;
use error::json;
pub use error::ApiError;
use ratelimit::RateLimiter;

/// Everything a handler may use. Cloned per request as one `Arc`.
pub struct Ctx {
    pub settings: Settings,
    pub system: System,
    pub projects: Projects,
    pub tokens: Tokens,
    /// Members' sign-in and sessions.
    pub accounts: crate::accounts::Accounts,
    pub public_limit: RateLimiter,
    pub session_limit: RateLimiter,
    /// A visitor's requests on their ticket, per session token.
    pub visitor_limit: RateLimiter,
    pub clock: Arc<dyn Clock>,
    /// Webhook endpoints and their delivery logs.
    pub webhook_store: Arc<dyn fleety_actors::store::WebhookStore>,
    /// The projects' canned replies.
    pub canned_store: Arc<dyn fleety_actors::store::CannedStore>,
    pub audit_store: Arc<dyn fleety_actors::store::AuditStore>,
    /// Every kind of record, for the reads that span them all (the export).
    pub store: Arc<dyn fleety_actors::store::Store>,
    /// The projects' known visitors.
    pub contact_store: Arc<dyn fleety_actors::store::ContactStore>,
    /// The tickets' reply-by-email addresses.
    pub replies: crate::reply_address::ReplyAddresses,
    /// Emails to visitors after agents reply; `None` while email is off.
    pub visitor_mail: Option<Arc<crate::visitor_mail::VisitorMailer>>,
    /// Writes the emails to agents; `None` while email is off.
    pub agent_mail: Option<Arc<crate::agent_mail::AgentMailer>>,
    /// Cancelled when the server starts draining: sockets close with "going away".
    pub shutdown: CancellationToken,
    /// Long-lived sockets, so a drain can wait for them.
    pub sockets: TaskTracker,
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
