//! Every route of the server, in one place. Read a route here, then follow its handler.
//!
//! | method | path | guard (who may call) | handler |
//! |---|---|---|---|
//! | POST | /v1/init-session | [`session_limit`] | [`session::init`](super::session::init) |
//! | GET | /v1/session | [`session`] | [`session::describe`](super::session::describe) |
//! | POST | /v1/session/renew | [`session_limit`], [`session`] | [`session::renew`](super::session::renew) |
//! | POST | /v1/tickets/{projectId} | [`public`] | [`tickets::create`] |
//! | GET | /v1/tickets/{projectId}/{slug} | [`public`] | [`tickets::get`] |
//! | PATCH | /v1/tickets/{projectId}/{slug} | [`agent`] | [`tickets::change`] (status, assignee) |
//! | POST | /v1/tickets/{projectId}/{slug}/messages | [`public`] (`author: admin` needs the admin key) | [`tickets::post_message`] |
//! | PATCH | /v1/tickets/{projectId}/{slug}/messages/read | [`public`] (`reader: admin` needs the admin key) | [`tickets::mark_read`] |
//! | GET (WS) | /v1/tickets/{projectId}/{slug}/ws | [`public`] | [`ws::ticket_socket`] |
//! | GET | /v1/projects/{projectId} | [`agent`] | [`projects_api::get`] |
//! | PATCH | /v1/projects/{projectId} | [`agent`] | [`projects_api::update`] |
//! | GET | /v1/projects/{projectId}/tickets | [`agent`] | [`projects_api::list_tickets`] |
//! | POST | /v1/projects/{projectId}/feed-token | [`agent`] | [`projects_api::feed_token`] |
//! | GET (WS) | /v1/projects/{projectId}/feed | [`feed`] | [`ws::feed_socket`] |
//! | GET | /v1/projects/{projectId}/tickets/{slug}/chat | [`agent`] | [`kb::ticket_chat`] |
//! | GET, POST | /v1/projects/{projectId}/tickets/{slug}/notes | [`agent`] | [`tickets::notes`], [`tickets::add_note`] |
//! | GET, POST | /v1/projects/{projectId}/kb/articles | [`agent`] | [`kb::list`], [`kb::create`] |
//! | GET, PATCH, DELETE | /v1/projects/{projectId}/kb/articles/{articleId} | [`agent`] | [`kb::get`], [`kb::update`], [`kb::delete`] |
//! | GET | /v1/projects/{projectId}/kb/search | [`agent`] | [`kb::agent_search`] |
//! | GET, POST | /v1/projects/{projectId}/webhooks | [`agent`] | [`webhooks::list`], [`webhooks::create`] |
//! | GET, PATCH, DELETE | /v1/projects/{projectId}/webhooks/{webhookId} | [`agent`] | [`webhooks::get`], [`webhooks::update`], [`webhooks::delete`] |
//! | GET | /v1/projects/{projectId}/webhooks/{webhookId}/deliveries | [`agent`] | [`webhooks::deliveries`] |
//! | POST | /v1/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}/replay | [`agent`] | [`webhooks::replay`] |
//! | GET | /v1/kb/{projectId}/search | [`public`] | [`kb::public_search`] |
//! | POST | /v1/chat | [`session`] | [`chat::prompt`] (SSE) |
//! | POST | /v1/chat/tools | [`session`] | [`chat::tools`] (SSE or JSON) |
//! | POST | /v1/admin/projects | [`operator`] | [`projects_api::create`] |
//! | GET | /v1/openapi.json | none | [`openapi::document`] |
//! | GET | /metrics | none, or only on `FLEETY_METRICS_LISTEN` | [`metrics_response`] (Prometheus) |
//! | GET | /healthz | none | liveness |
//! | GET | /widget.js, /widget/ui.js | none | the embeddable widget ([`assets`]) |
//! | GET | /inbox, /inbox/app.js | none (the page signs in with the admin key) | the agents' inbox ([`assets`]) |
//! | OPTIONS | any | none | [`preflight`] (CORS) |

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use http::header::HeaderValue;
use http::StatusCode;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Buf, Filter, Rejection, Reply};

use super::access::{
    agent, feed, meta, operator, project_id, public, session, session_limit, with_ctx,
};
use super::error::recover;
use super::{
    assets, chat, json, kb, openapi, projects_api, tickets, webhooks, ws, ApiError, Ctx,
    RequestMeta,
};

/// Bodies of the chat and knowledge-base endpoints may be this large (or `max_body_bytes`, if larger).
const LARGE_BODY_BYTES: u64 = 256 * 1024;

/// A body over the configured size.
#[derive(Debug)]
pub struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

/// The request body, refused with 413 once it passes `limit` bytes, whether or not the client
/// declared its length.
fn body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(move |declared: Option<u64>| async move {
            if declared.is_some_and(|n| n > limit) {
                Err(warp::reject::custom(BodyTooLarge))
            } else {
                Ok(())
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(move |stream| collect_body(stream, limit))
}

async fn collect_body<S, B>(stream: S, limit: u64) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut out = BytesMut::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(mut chunk) = stream
        .try_next()
        .await
        .map_err(|_| warp::reject::custom(BodyTooLarge))?
    {
        if out.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// All routes, with errors recovered into `{"error": ...}` bodies. Each route is its path and
/// method, then its guard (who may call it, see `access.rs`), then what else it reads.
pub fn routes(ctx: Arc<Ctx>) -> BoxedFilter<(Response,)> {
    use warp::path;
    let c = || with_ctx(&ctx);
    // The project-scoped prefixes; the rest of each path follows.
    let under_tickets = || path!("v1" / "tickets" / ..).and(project_id());
    let under_projects = || path!("v1" / "projects" / ..).and(project_id());
    let under_kb = || path!("v1" / "kb" / ..).and(project_id());
    let limit = ctx.settings.server.max_body_bytes;
    // Conversations (32,000 characters) and articles (50,000) need more room than a ticket
    // message, in bytes, with JSON escapes.
    let large = limit.max(LARGE_BODY_BYTES);

    let init_session = path!("v1" / "init-session")
        .and(warp::post())
        .and(session_limit(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(super::session::init)
        .boxed();
    let renew_session = path!("v1" / "session" / "renew")
        .and(warp::post())
        .and(session_limit(&ctx))
        .and(session(&ctx))
        .and(c())
        .then(super::session::renew)
        .boxed();
    let describe_session = path!("v1" / "session")
        .and(warp::get())
        .and(session(&ctx))
        .then(super::session::describe)
        .boxed();
    let create_ticket = under_tickets()
        .and(warp::path::end())
        .and(warp::post())
        .and(public(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(tickets::create)
        .boxed();
    let get_ticket = under_tickets()
        .and(path!(String))
        .and(warp::get())
        .and(public(&ctx))
        .and(c())
        .and(warp::query::<tickets::GetQuery>())
        .then(tickets::get)
        .boxed();
    let change_status = under_tickets()
        .and(path!(String))
        .and(warp::patch())
        .and(agent(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(tickets::change)
        .boxed();
    let post_message = under_tickets()
        .and(path!(String / "messages"))
        .and(warp::post())
        .and(public(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(tickets::post_message)
        .boxed();
    let mark_read = under_tickets()
        .and(path!(String / "messages" / "read"))
        .and(warp::patch())
        .and(public(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(tickets::mark_read)
        .boxed();
    let ticket_socket = under_tickets()
        .and(path!(String / "ws"))
        .and(warp::get())
        .and(super::upgrade::websocket())
        .and(public(&ctx))
        .and(c())
        .and(warp::query::<ws::TicketSocketQuery>())
        .then(ws::ticket_socket)
        .boxed();
    let get_project = under_projects()
        .and(warp::path::end())
        .and(warp::get())
        .and(agent(&ctx))
        .then(projects_api::get)
        .boxed();
    let update_project = under_projects()
        .and(warp::path::end())
        .and(warp::patch())
        .and(agent(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(projects_api::update)
        .boxed();
    let list_tickets = under_projects()
        .and(path!("tickets"))
        .and(warp::get())
        .and(agent(&ctx))
        .and(c())
        .and(warp::query::<projects_api::ListQuery>())
        .then(projects_api::list_tickets)
        .boxed();
    let feed_token = under_projects()
        .and(path!("feed-token"))
        .and(warp::post())
        .and(agent(&ctx))
        .and(c())
        .then(projects_api::feed_token)
        .boxed();
    let feed_socket = under_projects()
        .and(path!("feed"))
        .and(warp::get())
        .and(super::upgrade::websocket())
        .and(feed(&ctx))
        .and(c())
        .then(ws::feed_socket)
        .boxed();
    let ticket_chat = under_projects()
        .and(path!("tickets" / String / "chat"))
        .and(warp::get())
        .and(agent(&ctx))
        .and(c())
        .then(kb::ticket_chat)
        .boxed();
    let notes = under_projects()
        .and(path!("tickets" / String / "notes"))
        .and(warp::get())
        .and(agent(&ctx))
        .and(c())
        .then(tickets::notes)
        .boxed();
    let add_note = under_projects()
        .and(path!("tickets" / String / "notes"))
        .and(warp::post())
        .and(agent(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(tickets::add_note)
        .boxed();
    let list_articles = under_projects()
        .and(path!("kb" / "articles"))
        .and(warp::get())
        .and(agent(&ctx))
        .and(c())
        .then(kb::list)
        .boxed();
    let create_article = under_projects()
        .and(path!("kb" / "articles"))
        .and(warp::post())
        .and(agent(&ctx))
        .and(c())
        .and(meta())
        .and(body(large))
        .then(kb::create)
        .boxed();
    let get_article = under_projects()
        .and(path!("kb" / "articles" / String))
        .and(warp::get())
        .and(agent(&ctx))
        .and(c())
        .then(kb::get)
        .boxed();
    let update_article = under_projects()
        .and(path!("kb" / "articles" / String))
        .and(warp::patch())
        .and(agent(&ctx))
        .and(c())
        .and(meta())
        .and(body(large))
        .then(kb::update)
        .boxed();
    let delete_article = under_projects()
        .and(path!("kb" / "articles" / String))
        .and(warp::delete())
        .and(agent(&ctx))
        .and(c())
        .then(kb::delete)
        .boxed();
    let agent_search = under_projects()
        .and(path!("kb" / "search"))
        .and(warp::get())
        .and(agent(&ctx))
        .and(c())
        .and(warp::query::<kb::SearchQuery>())
        .then(kb::agent_search)
        .boxed();
    let list_webhooks = under_projects()
        .and(path!("webhooks"))
        .and(warp::get())
        .and(agent(&ctx))
        .and(c())
        .then(webhooks::list)
        .boxed();
    let create_webhook = under_projects()
        .and(path!("webhooks"))
        .and(warp::post())
        .and(agent(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(webhooks::create)
        .boxed();
    let get_webhook = under_projects()
        .and(path!("webhooks" / String))
        .and(warp::get())
        .and(agent(&ctx))
        .and(c())
        .then(webhooks::get)
        .boxed();
    let update_webhook = under_projects()
        .and(path!("webhooks" / String))
        .and(warp::patch())
        .and(agent(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(webhooks::update)
        .boxed();
    let delete_webhook = under_projects()
        .and(path!("webhooks" / String))
        .and(warp::delete())
        .and(agent(&ctx))
        .and(c())
        .then(webhooks::delete)
        .boxed();
    let webhook_log = under_projects()
        .and(path!("webhooks" / String / "deliveries"))
        .and(warp::get())
        .and(agent(&ctx))
        .and(c())
        .and(warp::query::<webhooks::LogQuery>())
        .then(webhooks::deliveries)
        .boxed();
    let replay = under_projects()
        .and(path!(
            "webhooks" / String / "deliveries" / String / "replay"
        ))
        .and(warp::post())
        .and(agent(&ctx))
        .and(c())
        .then(webhooks::replay)
        .boxed();
    let webhook_routes = list_webhooks
        .or(create_webhook)
        .unify()
        .or(get_webhook)
        .unify()
        .or(update_webhook)
        .unify()
        .or(delete_webhook)
        .unify()
        .or(webhook_log)
        .unify()
        .or(replay)
        .unify()
        .boxed();
    let public_search = under_kb()
        .and(path!("search"))
        .and(warp::get())
        .and(public(&ctx))
        .and(c())
        .and(warp::query::<kb::SearchQuery>())
        .then(kb::public_search)
        .boxed();
    let chat_prompt = path!("v1" / "chat")
        .and(warp::post())
        .and(session(&ctx))
        .and(c())
        .and(meta())
        .and(body(large))
        .then(chat::prompt)
        .boxed();
    let chat_tools = path!("v1" / "chat" / "tools")
        .and(warp::post())
        .and(session(&ctx))
        .and(c())
        .and(meta())
        .and(body(large))
        .then(chat::tools)
        .boxed();
    let create_project = path!("v1" / "admin" / "projects")
        .and(warp::post())
        .and(operator(&ctx))
        .and(c())
        .and(meta())
        .and(body(limit))
        .then(projects_api::create)
        .boxed();
    let openapi = path!("v1" / "openapi.json")
        .and(warp::get())
        .map(openapi::document_response)
        .boxed();
    let widget = path!("widget.js")
        .and(warp::get())
        .and(asset_request())
        .map(|(encoding, etag, _): AssetRequest| {
            assets::LOADER.answer(encoding.as_deref(), etag.as_deref(), None)
        });
    let widget_ui = path!("widget" / "ui.js")
        .and(warp::get())
        .and(asset_request())
        .map(|(encoding, etag, version): AssetRequest| {
            assets::WIDGET_UI.answer(encoding.as_deref(), etag.as_deref(), version.as_deref())
        });
    let inbox = path!("inbox").and(warp::get()).and(asset_request()).map(
        |(encoding, etag, _): AssetRequest| {
            assets::INBOX_PAGE.answer(encoding.as_deref(), etag.as_deref(), None)
        },
    );
    let inbox_app = path!("inbox" / "app.js")
        .and(warp::get())
        .and(asset_request())
        .map(|(encoding, etag, _): AssetRequest| {
            assets::INBOX_JS.answer(encoding.as_deref(), etag.as_deref(), None)
        });
    let web = widget
        .or(widget_ui)
        .unify()
        .or(inbox)
        .unify()
        .or(inbox_app)
        .unify()
        .boxed();
    let health = path!("healthz")
        .and(warp::get())
        .map(|| json(StatusCode::OK, &serde_json::json!({ "status": "ok" })))
        .boxed();
    // On the main listener only when no separate metrics address is configured.
    let on_main = ctx.settings.server.metrics_listen.is_empty();
    let metrics = path!("metrics")
        .and(warp::get())
        .and_then(move || async move {
            if on_main {
                Ok(metrics_response())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .boxed();
    let preflight = only_options()
        .and(c())
        .and(warp::path::full())
        .and(meta())
        .then(preflight)
        .boxed();

    // The hottest routes first: warp tries them in order, and each miss costs a filter run.
    // The rest are boxed as one filter: every poll of a request's future walks down the nested
    // `or`s to the route that matched, so a hot route under thirty levels paid for all of them.
    let cold = init_session
        .or(describe_session)
        .unify()
        .or(renew_session)
        .unify()
        .or(create_ticket)
        .unify()
        .or(change_status)
        .unify()
        .or(mark_read)
        .unify()
        .or(ticket_socket)
        .unify()
        .or(get_project)
        .unify()
        .or(update_project)
        .unify()
        .or(list_tickets)
        .unify()
        .or(feed_token)
        .unify()
        .or(feed_socket)
        .unify()
        .or(ticket_chat)
        .unify()
        .or(notes)
        .unify()
        .or(add_note)
        .unify()
        .or(list_articles)
        .unify()
        .or(create_article)
        .unify()
        .or(get_article)
        .unify()
        .or(update_article)
        .unify()
        .or(delete_article)
        .unify()
        .or(agent_search)
        .unify()
        .or(webhook_routes)
        .unify()
        .or(public_search)
        .unify()
        .or(chat_prompt)
        .unify()
        .or(chat_tools)
        .unify()
        .or(create_project)
        .unify()
        .or(openapi)
        .unify()
        .or(web)
        .unify()
        .or(health)
        .unify()
        .or(metrics)
        .unify()
        .boxed();
    get_ticket
        .or(post_message)
        .unify()
        .or(preflight)
        .unify()
        .or(cold)
        .unify()
        .recover(recover)
        .unify()
        // Whatever the answer, it gets the headers its guard decided.
        .and(warp::ext::optional::<Arc<RequestMeta>>())
        .map(
            |resp: Response, meta: Option<Arc<RequestMeta>>| match meta {
                Some(meta) => meta.seal(resp),
                None => resp,
            },
        )
        .with(warp::trace(
            |info| tracing::info_span!("request", method = %info.method(), path = %info.path()),
        ))
        .map(Reply::into_response)
        .boxed()
}

/// What an asset's answer depends on: the accepted encodings, the client's cached `ETag`, and
/// the version asked for (`?v=`).
type AssetRequest = (Option<String>, Option<String>, Option<String>);

fn asset_request() -> impl Filter<Extract = (AssetRequest,), Error = Rejection> + Clone {
    #[derive(serde::Deserialize)]
    struct Version {
        v: Option<String>,
    }
    warp::header::optional::<String>("accept-encoding")
        .and(warp::header::optional::<String>("if-none-match"))
        .and(
            warp::query::<Version>()
                .or(warp::any().map(|| Version { v: None }))
                .unify(),
        )
        .map(|encoding, etag, version: Version| (encoding, etag, version.v))
}

/// The Prometheus text exposition.
pub fn metrics_response() -> Response {
    let mut resp = Response::new(crate::metrics::render().into());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

/// Matches OPTIONS. Other methods are passed over as "not found" rather than "method not
/// allowed", so they do not mask the 404 of an unknown path.
fn only_options() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and_then(|m: http::Method| async move {
            if m == http::Method::OPTIONS {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// OPTIONS: the CORS preflight. The project comes from the path where there is one; for
/// endpoints whose project is in the body or token, any project's allowed origin passes here
/// and the real request is checked against its own project.
async fn preflight(ctx: Arc<Ctx>, path: warp::path::FullPath, meta: Arc<RequestMeta>) -> Response {
    let Some(origin) = meta.origin.clone() else {
        let mut resp = Response::new(Bytes::new().into());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp.headers_mut().insert(
            http::header::ALLOW,
            HeaderValue::from_static("GET, POST, PATCH, DELETE, OPTIONS"),
        );
        return resp;
    };
    let segments: Vec<&str> = path.as_str().trim_matches('/').split('/').collect();
    let allowed = match segments.as_slice() {
        ["v1", "tickets" | "projects" | "kb", project, ..] => {
            match super::parse_project_id(project) {
                Ok(id) => {
                    matches!(ctx.projects.get(&id).await, Ok(Some(p)) if crate::projects::allows(&p, &origin))
                }
                Err(_) => false,
            }
        }
        _ => ctx.projects.any_allows(&origin),
    };
    if !allowed {
        let mut refused = ApiError::forbidden("origin not allowed").into_response();
        refused
            .headers_mut()
            .insert(http::header::VARY, HeaderValue::from_static("Origin"));
        return refused;
    }
    let mut resp = Response::new(Bytes::new().into());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&origin) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(http::header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization, Idempotency-Key"),
    );
    h.insert(
        http::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    resp
}
