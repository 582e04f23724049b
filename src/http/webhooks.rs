//! The webhook admin API (agents' admin key): endpoints, their delivery logs, and replay.
//!
//! The signing secret is returned once, when the endpoint is created; it is never shown
//! again. Turning an endpoint back on clears what the dispatcher recorded when it turned it off,
//! and checks its URL against the address rule again.

use fleety_actors::audit::{self, AuditBy, AuditTarget};
use std::sync::Arc;

use fleety_actors::domain::Project;
use fleety_actors::events::rfc3339;
use fleety_actors::store::StoreError;
use fleety_actors::webhook::{Delivery, DeliveryStatus, Endpoint, EventType};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;
use warp::reply::Response;

use super::error::{json, respond};
use super::{ApiError, Ctx};

/// Endpoints one project may have.
pub const MAX_ENDPOINTS: usize = 20;
/// Deliveries a log page shows by default, and at most.
const LOG_DEFAULT: usize = 50;
const LOG_MAX: usize = 200;

/// A webhook endpoint.
#[derive(Serialize, ToSchema)]
#[schema(as = Webhook)]
pub struct EndpointView<'a> {
    id: Uuid,
    url: &'a str,
    #[schema(value_type = Vec<EventType>)]
    events: Vec<&'static str>,
    enabled: bool,
    /// Why the server turned the endpoint off.
    #[schema(required = true)]
    disabled_reason: Option<&'a str>,
    /// Since when every delivery to it has failed.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    failing_since: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
    /// The signing secret: only in the answer that created the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

/// The project's webhook endpoints.
#[derive(Serialize, ToSchema)]
pub struct WebhookList<'a> {
    webhooks: Vec<EndpointView<'a>>,
}

/// A delivery's id, its `webhook-id` header: `msg_` and 24 hex digits.
pub struct DeliveryId;

impl PartialSchema for DeliveryId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^msg_[0-9a-f]{24}$"))
            .into()
    }
}
impl ToSchema for DeliveryId {}

/// The events an endpoint is sent: at least one.
pub struct EventTypes;

impl PartialSchema for EventTypes {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name("EventType"))
            .min_items(Some(1))
            .into()
    }
}
impl ToSchema for EventTypes {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push(("EventType".into(), EventType::schema()));
    }
}

/// An http or https URL of at most 2,048 characters, naming no internal address.
pub struct WebhookUrl;

impl PartialSchema for WebhookUrl {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(crate::webhooks::MAX_URL))
            .pattern(Some("^[hH][tT][tT][pP][sS]?://"))
            .into()
    }
}
impl ToSchema for WebhookUrl {}

impl<'a> EndpointView<'a> {
    pub(super) fn new(e: &'a Endpoint) -> Self {
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

/// One delivery of an event to an endpoint, and how its attempts went.
#[derive(Serialize, ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryView<'a> {
    #[schema(value_type = DeliveryId)]
    id: &'a str,
    #[schema(value_type = EventType)]
    event_type: &'static str,
    status: DeliveryStatus,
    attempts: u32,
    /// The HTTP status of the last attempt.
    #[schema(required = true)]
    last_status: Option<u16>,
    #[schema(required = true)]
    last_error: Option<&'a str>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    next_attempt_at: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
    /// The body as sent.
    #[schema(value_type = HashMap<String, serde_json::Value>)]
    payload: serde_json::Value,
}

/// An endpoint's deliveries, newest first.
#[derive(Serialize, ToSchema)]
pub struct DeliveryList<'a> {
    deliveries: Vec<DeliveryView<'a>>,
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
            let webhooks = all.iter().map(EndpointView::new).collect();
            Ok(json(StatusCode::OK, &WebhookList { webhooks }))
        }
        .await,
    )
}

/// A new webhook endpoint: where to send which events.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    #[schema(value_type = WebhookUrl)]
    url: String,
    #[schema(value_type = EventTypes)]
    events: Vec<String>,
    /// Whether to send it events now (true by default).
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// POST /v1/projects/{projectId}/webhooks
pub async fn create(
    project: Arc<Project>,
    who: AuditBy,
    ctx: Arc<Ctx>,
    req: NewEndpoint,
) -> Response {
    respond(
        async {
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
            // Never the signing secret.
            let record = who
                .record(&project.id, ctx.clock.now(), "webhook.created")
                .target(AuditTarget::new("webhook", endpoint.id))
                .with("url", &endpoint.url)
                .with("events", &endpoint.events)
                .with("enabled", endpoint.enabled);
            // The store counts and inserts in one step, so racing creates stop at the cap.
            let create = ctx.webhook_store.create_endpoint(&endpoint, MAX_ENDPOINTS);
            match audit::recorded(Some(record), create).await {
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

/// What to change on an endpoint; what is left out stays as it is. Turning an endpoint back on
/// clears what the server recorded when it turned it off.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    #[schema(value_type = Option<WebhookUrl>)]
    url: Option<String>,
    #[schema(value_type = Option<EventTypes>)]
    events: Option<Vec<String>>,
    enabled: Option<bool>,
}

/// PATCH /v1/projects/{projectId}/webhooks/{webhookId}
pub async fn update(
    id: String,
    project: Arc<Project>,
    who: AuditBy,
    ctx: Arc<Ctx>,
    req: EndpointChange,
) -> Response {
    respond(
        async {
            let mut e = find(&ctx, &project, &id).await?;
            let before = e.clone();
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
            let record = who
                .record(&project.id, ctx.clock.now(), "webhook.changed")
                .target(AuditTarget::new("webhook", e.id))
                .changed("url", &before.url, &e.url)
                .changed("events", &before.events, &e.events)
                .changed("enabled", before.enabled, e.enabled);
            let record = record.has_changes().then_some(record);
            match audit::recorded(record, ctx.webhook_store.update_endpoint(&e)).await {
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
pub async fn delete(id: String, project: Arc<Project>, who: AuditBy, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let id = endpoint_id(&id)?;
            let record = who
                .record(&project.id, ctx.clock.now(), "webhook.deleted")
                .target(AuditTarget::new("webhook", id));
            let delete = ctx.webhook_store.delete_endpoint(&project.id, id);
            match audit::recorded(Some(record), delete).await {
                Err(StoreError::NotFound) => return Err(ApiError::not_found("webhook not found")),
                other => other?,
            }
            refresh(&ctx, &project).await?;
            Ok(json(StatusCode::OK, &super::Done::new("Webhook deleted")))
        }
        .await,
    )
}

/// How much of the delivery log to read.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Deliveries to return (50 by default).
    #[param(minimum = 1, maximum = 200)]
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
            let limit = query.limit.unwrap_or(LOG_DEFAULT);
            if !(1..=LOG_MAX).contains(&limit) {
                return Err(ApiError::bad_request(format!(
                    "limit must be between 1 and {LOG_MAX}"
                )));
            }
            let log = ctx
                .webhook_store
                .list_deliveries(&project.id, e.id, limit)
                .await?;
            let deliveries = log.iter().map(DeliveryView::new).collect();
            Ok(json(StatusCode::OK, &DeliveryList { deliveries }))
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
    who: AuditBy,
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
            let record = who
                .record(&project.id, ctx.clock.now(), "webhook.delivery_replayed")
                .target(AuditTarget::new("webhook", e.id))
                .with("delivery", &again.id)
                .with("event", again.event.as_str());
            let put = ctx.webhook_store.put_delivery(&again, was_due);
            audit::recorded(Some(record), put).await?;
            ctx.system.hooks.wake();
            Ok(json(StatusCode::ACCEPTED, &DeliveryView::new(&again)))
        }
        .await,
    )
}
