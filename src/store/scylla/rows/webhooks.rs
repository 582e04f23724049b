//! The webhook tables' rows: endpoints, the delivery log and the due index.

use chrono::{DateTime, Utc};
use fleety_actors::domain::ProjectId;
use fleety_actors::store::{StoreError, StoreResult};
use fleety_actors::webhook::{Delivery, DeliveryStatus, Endpoint, EventType};
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;

use super::corrupt;

/// `webhook_endpoints`, as an endpoint is created and as it changes.
#[derive(SerializeRow)]
pub(in crate::store::scylla) struct EndpointValues<'a> {
    project_id: &'a str,
    endpoint_id: Uuid,
    url: &'a str,
    events: Vec<&'a str>,
    secret: &'a str,
    enabled: bool,
    disabled_reason: Option<&'a str>,
    failing_since: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl<'a> From<&'a Endpoint> for EndpointValues<'a> {
    fn from(e: &'a Endpoint) -> Self {
        Self {
            project_id: e.project_id.as_str(),
            endpoint_id: e.id,
            url: &e.url,
            events: e.events.iter().map(|e| e.as_str()).collect(),
            secret: &e.secret,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.as_deref(),
            failing_since: e.failing_since,
            created_at: e.created_at,
        }
    }
}

/// Every column but the partition key optional: a partition whose endpoints were all deleted
/// keeps its static count of creates, which a read returns as a row with nothing else.
#[derive(DeserializeRow)]
pub(in crate::store::scylla) struct EndpointRow {
    project_id: String,
    endpoint_id: Option<Uuid>,
    url: Option<String>,
    events: Option<Vec<String>>,
    secret: Option<String>,
    enabled: Option<bool>,
    disabled_reason: Option<String>,
    failing_since: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
}

impl EndpointRow {
    /// The endpoint the row holds; `None` for the row of a partition without endpoints.
    pub(in crate::store::scylla) fn into_endpoint(self) -> StoreResult<Option<Endpoint>> {
        let corrupt = |what: &str| corrupt("webhook row", what);
        let Some(id) = self.endpoint_id else {
            return Ok(None);
        };
        let events = self.events.unwrap_or_default();
        Ok(Some(Endpoint {
            project_id: ProjectId::parse(&self.project_id).map_err(|_| corrupt("project_id"))?,
            id,
            url: self.url.ok_or_else(|| corrupt("url"))?,
            events: events
                .iter()
                .map(|e| EventType::parse(e).ok_or_else(|| corrupt("events")))
                .collect::<StoreResult<_>>()?,
            secret: self.secret.unwrap_or_default(),
            enabled: self.enabled.unwrap_or(false),
            disabled_reason: self.disabled_reason,
            failing_since: self.failing_since,
            created_at: self.created_at.ok_or_else(|| corrupt("created_at"))?,
        }))
    }
}

/// A project's endpoints and its count of creates, as a create counts them.
#[derive(DeserializeRow)]
pub(in crate::store::scylla) struct CensusRow {
    pub(in crate::store::scylla) endpoint_id: Option<Uuid>,
    pub(in crate::store::scylla) endpoints_created: Option<i32>,
}

/// `webhook_deliveries`: writing a delivery ends any claim on it (`lease_until` goes back to
/// the epoch), and the row lives for `ttl` seconds.
#[derive(SerializeRow)]
pub(in crate::store::scylla) struct DeliveryValues<'a> {
    project_id: &'a str,
    endpoint_id: Uuid,
    delivery_id: &'a str,
    event: &'a str,
    payload: &'a str,
    status: &'a str,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_status: Option<i32>,
    last_error: Option<&'a str>,
    created_at: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

impl<'a> DeliveryValues<'a> {
    pub(in crate::store::scylla) fn new(d: &'a Delivery, ttl: i32) -> Self {
        Self {
            project_id: d.project_id.as_str(),
            endpoint_id: d.endpoint_id,
            delivery_id: d.id.as_str(),
            event: d.event.as_str(),
            payload: d.payload.as_str(),
            status: d.status.as_str(),
            attempts: i32::try_from(d.attempts).unwrap_or(i32::MAX),
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status.map(i32::from),
            last_error: d.last_error.as_deref(),
            created_at: d.created_at,
            lease_until: DateTime::<Utc>::UNIX_EPOCH,
            ttl,
        }
    }
}

#[derive(DeserializeRow)]
pub(in crate::store::scylla) struct DeliveryRow {
    project_id: String,
    endpoint_id: Uuid,
    delivery_id: String,
    event: String,
    payload: Option<String>,
    status: String,
    attempts: Option<i32>,
    next_attempt_at: Option<DateTime<Utc>>,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;

    fn try_from(r: DeliveryRow) -> StoreResult<Delivery> {
        let corrupt = |what: &str| corrupt("webhook row", what);
        Ok(Delivery {
            project_id: ProjectId::parse(&r.project_id).map_err(|_| corrupt("project_id"))?,
            endpoint_id: r.endpoint_id,
            id: r.delivery_id,
            event: EventType::parse(&r.event).ok_or_else(|| corrupt("event"))?,
            payload: r.payload.unwrap_or_default(),
            status: DeliveryStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            attempts: r.attempts.and_then(|a| u32::try_from(a).ok()).unwrap_or(0),
            next_attempt_at: r.next_attempt_at,
            last_status: r.last_status.and_then(|s| u16::try_from(s).ok()),
            last_error: r.last_error,
            created_at: r.created_at,
        })
    }
}

/// `webhook_due`: a delivery waiting for an attempt, under its shard and due time. The whole
/// row is its key, so the same values insert it and delete it.
#[derive(SerializeRow)]
pub(in crate::store::scylla) struct DueKey<'a> {
    pub(in crate::store::scylla) shard: i32,
    pub(in crate::store::scylla) due_at: DateTime<Utc>,
    pub(in crate::store::scylla) project_id: &'a str,
    pub(in crate::store::scylla) endpoint_id: Uuid,
    pub(in crate::store::scylla) delivery_id: &'a str,
}

/// An entry of `webhook_due` as a read of one shard finds it.
#[derive(DeserializeRow)]
pub(in crate::store::scylla) struct DueRow {
    pub(in crate::store::scylla) due_at: DateTime<Utc>,
    pub(in crate::store::scylla) project_id: String,
    pub(in crate::store::scylla) endpoint_id: Uuid,
    pub(in crate::store::scylla) delivery_id: String,
}
