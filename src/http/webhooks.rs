//! The webhook admin API (agents' admin key): endpoints, their delivery logs, and replay.
//!
//! The signing secret is returned once, when the endpoint is created; it is never shown
//! again. Turning an endpoint back on clears what the dispatcher recorded when it turned it off,
//! and checks its URL against the address rule again.

use std::sync::Arc;

use bytes::Bytes;
use fleety_actors::domain::Project;
use fleety_actors::events::rfc3339;
use fleety_actors::store::StoreError;
use fleety_actors::webhook::{Delivery, DeliveryStatus, Endpoint, EventType};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warp::reply::Response;

use super::{json, parse_body, respond, ApiError, Ctx, RequestMeta};

/// Endpoints one project may have.
pub const MAX_ENDPOINTS: usize = 20;
/// Deliveries a log page shows by default, and at most.
const LOG_DEFAULT: usize = 50;
const LOG_MAX: usize = 200;

#[derive(Serialize)]
struct EndpointView<'a> {
    id: Uuid,
    url: &'a str,
    events: Vec<&'static str>,
    enabled: bool,
    disabled_reason: Option<&'a str>,
    failing_since: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

impl<'a> EndpointView<'a> {
    fn new(e: &'a Endpoint) -> Self {
        Self {
            id: e.id,
            url: &e.url,
            events: e.events.iter().map(|e| e.as_str()).collect(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.as_deref(),
            failing_since: e.failing_since.map(rfc3339),
            created_at: rfc3339(e.created_at),
            secret: None,
        }
    }
}

#[derive(Serialize)]
struct DeliveryView<'a> {
    id: &'a str,
    event_type: &'static str,
    status: DeliveryStatus,
    attempts: u32,
    last_status: Option<u16>,
    last_error: Option<&'a str>,
    next_attempt_at: Option<String>,
    created_at: String,
    /// The body as sent.
    payload: serde_json::Value,
}

impl<'a> DeliveryView<'a> {
    fn new(d: &'a Delivery) -> Self {
        Self {
            id: &d.id,
            event_type: d.event.as_str(),
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error.as_deref(),
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
            payload: serde_json::from_str(&d.payload).unwrap_or_default(),
        }
    }
}

fn parse_events(raw: &[String]) -> Result<Vec<EventType>, ApiError> {
    let mut out = Vec::new();
    for name in raw {
        let event = EventType::parse(name).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
            ApiError::bad_request(format!(
                "events: unknown event {name:?}; known: {}",
                known.join(", ")
            ))
        })?;
        if !out.contains(&event) {
            out.push(event);
        }
    }
    if out.is_empty() {
        return Err(ApiError::bad_request("events: name at least one event"));
    }
    Ok(out)
}

fn check_url(ctx: &Ctx, raw: &str) -> Result<String, ApiError> {
    crate::webhooks::check_url(raw, ctx.settings.webhooks.allow_private)
        .map(|u| u.to_string())
        .map_err(ApiError::bad_request)
}

fn endpoint_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("webhook not found"))
}

/// The project's endpoint `id`, read from the store (the truth, whichever node changed it).
async fn find(ctx: &Ctx, project: &Project, id: &str) -> Result<Endpoint, ApiError> {
    let id = endpoint_id(id)?;
    let all = ctx.webhook_store.list_endpoints(&project.id).await?;
    all.into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ApiError::not_found("webhook not found"))
}

/// Tells this node's dispatcher and ticket actors what the project's endpoints are now.
async fn refresh(ctx: &Ctx, project: &Project) -> Result<(), ApiError> {
    let all = ctx.webhook_store.list_endpoints(&project.id).await?;
    ctx.system.hooks.set(&project.id, all);
    Ok(())
}

/// GET /v1/projects/{projectId}/webhooks
pub async fn list(project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let mut all = ctx.webhook_store.list_endpoints(&project.id).await?;
            all.sort_by_key(|e| e.created_at);
            let views: Vec<EndpointView> = all.iter().map(EndpointView::new).collect();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "webhooks": views }),
            ))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    url: String,
    events: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// POST /v1/projects/{projectId}/webhooks
pub async fn create(
    project: Arc<Project>,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let req: NewEndpoint = parse_body(&meta, &body)?;
            let url = check_url(&ctx, &req.url)?;
            let events = parse_events(&req.events)?;
            let endpoint = Endpoint {
                id: Uuid::new_v4(),
                project_id: project.id.clone(),
                url,
                events,
                secret: crate::webhooks::new_secret(),
                enabled: req.enabled,
                disabled_reason: None,
                failing_since: None,
                created_at: ctx.clock.now(),
            };
            // The store counts and inserts in one step, so racing creates stop at the cap.
            match ctx
                .webhook_store
                .create_endpoint(&endpoint, MAX_ENDPOINTS)
                .await
            {
                Err(StoreError::Conflict) => {
                    return Err(ApiError::conflict(format!(
                        "a project may have at most {MAX_ENDPOINTS} webhooks; delete one first"
                    )))
                }
                other => other?,
            }
            refresh(&ctx, &project).await?;
            let view = EndpointView {
                secret: Some(&endpoint.secret),
                ..EndpointView::new(&endpoint)
            };
            Ok(json(StatusCode::CREATED, &view))
        }
        .await,
    )
}

/// GET /v1/projects/{projectId}/webhooks/{webhookId}
pub async fn get(id: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let e = find(&ctx, &project, &id).await?;
            Ok(json(StatusCode::OK, &EndpointView::new(&e)))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    url: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
}

/// PATCH /v1/projects/{projectId}/webhooks/{webhookId}
pub async fn update(
    id: String,
    project: Arc<Project>,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let req: EndpointChange = parse_body(&meta, &body)?;
            let mut e = find(&ctx, &project, &id).await?;
            if let Some(url) = &req.url {
                e.url = check_url(&ctx, url)?;
            }
            if let Some(events) = &req.events {
                e.events = parse_events(events)?;
            }
            if let Some(enabled) = req.enabled {
                if enabled && !e.enabled {
                    // The address rule may have tightened since the URL was checked (it was
                    // registered while private addresses were allowed, or the rule grew).
                    let allow_private = ctx.settings.webhooks.allow_private;
                    if let Err(why) = crate::webhooks::check_url(&e.url, allow_private) {
                        return Err(ApiError::bad_request(format!(
                            "{why}; change the url to enable this webhook"
                        )));
                    }
                    // A fresh start: the failures that turned it off are history.
                    e.disabled_reason = None;
                    e.failing_since = None;
                }
                e.enabled = enabled;
            }
            match ctx.webhook_store.update_endpoint(&e).await {
                // Deleted since it was read.
                Err(StoreError::NotFound) => return Err(ApiError::not_found("webhook not found")),
                other => other?,
            }
            refresh(&ctx, &project).await?;
            Ok(json(StatusCode::OK, &EndpointView::new(&e)))
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/webhooks/{webhookId}
pub async fn delete(id: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let id = endpoint_id(&id)?;
            match ctx.webhook_store.delete_endpoint(&project.id, id).await {
                Err(StoreError::NotFound) => return Err(ApiError::not_found("webhook not found")),
                other => other?,
            }
            refresh(&ctx, &project).await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "message": "Webhook deleted" }),
            ))
        }
        .await,
    )
}

#[derive(Deserialize)]
pub struct LogQuery {
    limit: Option<usize>,
}

/// GET /v1/projects/{projectId}/webhooks/{webhookId}/deliveries
pub async fn deliveries(
    id: String,
    project: Arc<Project>,
    ctx: Arc<Ctx>,
    query: LogQuery,
) -> Response {
    respond(
        async {
            let e = find(&ctx, &project, &id).await?;
            let limit = query.limit.unwrap_or(LOG_DEFAULT).clamp(1, LOG_MAX);
            let log = ctx
                .webhook_store
                .list_deliveries(&project.id, e.id, limit)
                .await?;
            let views: Vec<DeliveryView> = log.iter().map(DeliveryView::new).collect();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "deliveries": views }),
            ))
        }
        .await,
    )
}

/// POST /v1/projects/{projectId}/webhooks/{webhookId}/deliveries/{deliveryId}/replay
///
/// Sends the delivery again, as it was (same `webhook-id`, same body), with a fresh set of
/// attempts. A delivery still waiting for its next attempt is simply tried now.
pub async fn replay(
    id: String,
    delivery: String,
    project: Arc<Project>,
    ctx: Arc<Ctx>,
) -> Response {
    respond(
        async {
            let e = find(&ctx, &project, &id).await?;
            if !e.enabled {
                return Err(ApiError::conflict(
                    "the webhook is disabled; enable it before replaying deliveries",
                ));
            }
            let found = ctx
                .webhook_store
                .get_delivery(&project.id, e.id, &delivery)
                .await?;
            let d = found.ok_or_else(|| ApiError::not_found("delivery not found"))?;
            let was_due = d.next_attempt_at;
            let again = Delivery {
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: Some(ctx.clock.now()),
                ..d
            };
            ctx.webhook_store.put_delivery(&again, was_due).await?;
            ctx.system.hooks.wake();
            Ok(json(StatusCode::ACCEPTED, &DeliveryView::new(&again)))
        }
        .await,
    )
}
