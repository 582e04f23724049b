//! The CQL store's webhook tables: endpoints, the delivery log, and the sharded index of
//! deliveries waiting for an attempt (`cql/0005_webhooks.cql`).

use chrono::{DateTime, Utc};
use fleety_actors::domain::ProjectId;
use fleety_actors::store::{StoreError, StoreResult};
use fleety_actors::webhook::{Delivery, DeliveryStatus, Endpoint, EventType, LOG_RETENTION};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::{execution, prepare, ScyllaStore};

/// Shards of the due index: a delivery's shard is fixed by its id.
const DUE_SHARDS: i32 = 8;

pub(super) struct WebhookStatements {
    upsert_endpoint: PreparedStatement,
    select_endpoint_id: PreparedStatement,
    delete_endpoint: PreparedStatement,
    select_endpoints: PreparedStatement,
    select_all_endpoints: PreparedStatement,
    upsert_delivery: PreparedStatement,
    select_delivery: PreparedStatement,
    select_deliveries: PreparedStatement,
    delete_delivery: PreparedStatement,
    claim_delivery: PreparedStatement,
    insert_due: PreparedStatement,
    delete_due: PreparedStatement,
    select_due: PreparedStatement,
}

const ENDPOINT_COLS: &str =
    "project_id, endpoint_id, url, events, secret, enabled, disabled_reason, failing_since, created_at";
const DELIVERY_COLS: &str = "project_id, endpoint_id, delivery_id, event, payload, status, attempts, next_attempt_at, last_status, last_error, created_at";
/// Writing a delivery ends any claim on it: `lease_until` goes back to the epoch.
const DELIVERY_WRITE_COLS: &str = "project_id, endpoint_id, delivery_id, event, payload, status, attempts, next_attempt_at, last_status, last_error, created_at, lease_until";

impl WebhookStatements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            upsert_endpoint: p(format!("INSERT INTO {ks}.webhook_endpoints ({ENDPOINT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            select_endpoint_id: p(format!("SELECT endpoint_id FROM {ks}.webhook_endpoints WHERE project_id = ? AND endpoint_id = ?")).await?,
            delete_endpoint: p(format!("DELETE FROM {ks}.webhook_endpoints WHERE project_id = ? AND endpoint_id = ?")).await?,
            select_endpoints: p(format!("SELECT {ENDPOINT_COLS} FROM {ks}.webhook_endpoints WHERE project_id = ?")).await?,
            select_all_endpoints: p(format!("SELECT {ENDPOINT_COLS} FROM {ks}.webhook_endpoints")).await?,
            upsert_delivery: p(format!("INSERT INTO {ks}.webhook_deliveries ({DELIVERY_WRITE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?")).await?,
            select_delivery: p(format!("SELECT {DELIVERY_COLS} FROM {ks}.webhook_deliveries WHERE project_id = ? AND endpoint_id = ? AND delivery_id = ?")).await?,
            select_deliveries: p(format!("SELECT {DELIVERY_COLS} FROM {ks}.webhook_deliveries WHERE project_id = ? AND endpoint_id = ? LIMIT ?")).await?,
            delete_delivery: p(format!("DELETE FROM {ks}.webhook_deliveries WHERE project_id = ? AND endpoint_id = ? AND delivery_id = ?")).await?,
            claim_delivery: prepare(session, consistency, format!("UPDATE {ks}.webhook_deliveries SET lease_until = ? WHERE project_id = ? AND endpoint_id = ? AND delivery_id = ? IF lease_until < ? AND next_attempt_at = ?"), false).await?,
            insert_due: p(format!("INSERT INTO {ks}.webhook_due (shard, due_at, project_id, endpoint_id, delivery_id) VALUES (?, ?, ?, ?, ?)")).await?,
            delete_due: p(format!("DELETE FROM {ks}.webhook_due WHERE shard = ? AND due_at = ? AND project_id = ? AND endpoint_id = ? AND delivery_id = ?")).await?,
            select_due: p(format!("SELECT due_at, project_id, endpoint_id, delivery_id FROM {ks}.webhook_due WHERE shard = ? AND due_at <= ? LIMIT ?")).await?,
        })
    }
}

type EndpointRow = (
    String,
    uuid::Uuid,
    String,
    Option<Vec<String>>,
    Option<String>,
    Option<bool>,
    Option<String>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

type DeliveryRow = (
    String,
    uuid::Uuid,
    String,
    String,
    Option<String>,
    String,
    Option<i32>,
    Option<DateTime<Utc>>,
    Option<i32>,
    Option<String>,
    DateTime<Utc>,
);

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt webhook row: {what}"))
}

fn endpoint_from_row(r: EndpointRow) -> StoreResult<Endpoint> {
    let events = r.3.unwrap_or_default();
    Ok(Endpoint {
        project_id: ProjectId::parse(&r.0).map_err(|_| corrupt("project_id"))?,
        id: r.1,
        url: r.2,
        events: events
            .iter()
            .map(|e| EventType::parse(e).ok_or_else(|| corrupt("events")))
            .collect::<StoreResult<_>>()?,
        secret: r.4.unwrap_or_default(),
        enabled: r.5.unwrap_or(false),
        disabled_reason: r.6,
        failing_since: r.7,
        created_at: r.8,
    })
}

fn delivery_from_row(r: DeliveryRow) -> StoreResult<Delivery> {
    Ok(Delivery {
        project_id: ProjectId::parse(&r.0).map_err(|_| corrupt("project_id"))?,
        endpoint_id: r.1,
        id: r.2,
        event: EventType::parse(&r.3).ok_or_else(|| corrupt("event"))?,
        payload: r.4.unwrap_or_default(),
        status: DeliveryStatus::parse(&r.5).ok_or_else(|| corrupt("status"))?,
        attempts: r.6.and_then(|a| u32::try_from(a).ok()).unwrap_or(0),
        next_attempt_at: r.7,
        last_status: r.8.and_then(|s| u16::try_from(s).ok()),
        last_error: r.9,
        created_at: r.10,
    })
}

fn shard(delivery_id: &str) -> i32 {
    (crc32fast::hash(delivery_id.as_bytes()) % DUE_SHARDS as u32) as i32
}

/// Timestamps round-trip through CQL in milliseconds; compare them there.
fn same_ms(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> bool {
    a.is_some_and(|a| a.timestamp_millis() == b.timestamp_millis())
}

impl ScyllaStore {
    pub(super) async fn put_endpoint_row(&self, e: &Endpoint) -> StoreResult<()> {
        let events: Vec<&str> = e.events.iter().map(|e| e.as_str()).collect();
        let values = (
            e.project_id.as_str(),
            e.id,
            e.url.as_str(),
            events,
            e.secret.as_str(),
            e.enabled,
            e.disabled_reason.as_deref(),
            e.failing_since,
            e.created_at,
        );
        self.session
            .execute_unpaged(&self.wh.upsert_endpoint, values)
            .await
            .map_err(execution)?;
        Ok(())
    }

    pub(super) async fn delete_endpoint_row(
        &self,
        project: &ProjectId,
        id: uuid::Uuid,
    ) -> StoreResult<()> {
        // Without LWT a DELETE cannot tell whether the row was there; read first.
        let values = (project.as_str(), id);
        if self
            .one_row::<(uuid::Uuid,)>(&self.wh.select_endpoint_id, values)
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        self.session
            .execute_unpaged(&self.wh.delete_endpoint, values)
            .await
            .map_err(execution)?;
        Ok(())
    }

    pub(super) async fn endpoint_rows(
        &self,
        project: Option<&ProjectId>,
    ) -> StoreResult<Vec<Endpoint>> {
        let rows: Vec<EndpointRow> = match project {
            Some(p) => {
                self.all_rows(&self.wh.select_endpoints, (p.as_str(),))
                    .await?
            }
            None => self.all_rows(&self.wh.select_all_endpoints, ()).await?,
        };
        rows.into_iter().map(endpoint_from_row).collect()
    }

    /// The row first, then its new due entry, then the old one's removal: a crash in between
    /// leaves at worst an entry naming a delivery no longer due then, which reads skip. The
    /// row expires [`LOG_RETENTION`] after the delivery was made; one already past it is not
    /// written.
    pub(super) async fn put_delivery_rows(
        &self,
        d: &Delivery,
        was_due: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let left = (d.created_at + LOG_RETENTION - Utc::now()).num_seconds();
        let Ok(ttl @ 1..) = i32::try_from(left) else {
            return Ok(());
        };
        let values = (
            d.project_id.as_str(),
            d.endpoint_id,
            d.id.as_str(),
            d.event.as_str(),
            d.payload.as_str(),
            d.status.as_str(),
            i32::try_from(d.attempts).unwrap_or(i32::MAX),
            d.next_attempt_at,
            d.last_status.map(i32::from),
            d.last_error.as_deref(),
            d.created_at,
            DateTime::<Utc>::UNIX_EPOCH,
            ttl,
        );
        self.session
            .execute_unpaged(&self.wh.upsert_delivery, values)
            .await
            .map_err(execution)?;
        let key = |at: DateTime<Utc>| {
            (
                shard(&d.id),
                at,
                d.project_id.as_str(),
                d.endpoint_id,
                d.id.as_str(),
            )
        };
        if let Some(at) = d.next_attempt_at {
            self.session
                .execute_unpaged(&self.wh.insert_due, key(at))
                .await
                .map_err(execution)?;
        }
        if let Some(was) = was_due.filter(|was| !same_ms(d.next_attempt_at, *was)) {
            self.session
                .execute_unpaged(&self.wh.delete_due, key(was))
                .await
                .map_err(execution)?;
        }
        Ok(())
    }

    /// A lightweight transaction: the claim applies only if no claim holds the row now and the
    /// row is still due when the caller read it.
    pub(super) async fn claim_delivery_row(
        &self,
        d: &Delivery,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let Some(due) = d.next_attempt_at else {
            return Ok(false);
        };
        let values = (
            until,
            d.project_id.as_str(),
            d.endpoint_id,
            d.id.as_str(),
            now,
            due,
        );
        self.claim(&self.wh.claim_delivery, values).await
    }

    /// Takes back a new delivery (the announcement of a ticket whose slug turned out taken).
    pub(super) async fn delete_new_delivery(&self, d: &Delivery) -> StoreResult<()> {
        if let Some(at) = d.next_attempt_at {
            let key = (
                shard(&d.id),
                at,
                d.project_id.as_str(),
                d.endpoint_id,
                d.id.as_str(),
            );
            self.session
                .execute_unpaged(&self.wh.delete_due, key)
                .await
                .map_err(execution)?;
        }
        let values = (d.project_id.as_str(), d.endpoint_id, d.id.as_str());
        self.session
            .execute_unpaged(&self.wh.delete_delivery, values)
            .await
            .map_err(execution)?;
        Ok(())
    }

    pub(super) async fn delivery_row(
        &self,
        project: &str,
        endpoint: uuid::Uuid,
        id: &str,
    ) -> StoreResult<Option<Delivery>> {
        self.one_row::<DeliveryRow>(&self.wh.select_delivery, (project, endpoint, id))
            .await?
            .map(delivery_from_row)
            .transpose()
    }

    pub(super) async fn delivery_rows(
        &self,
        project: &ProjectId,
        endpoint: uuid::Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows: Vec<DeliveryRow> = self
            .all_rows(
                &self.wh.select_deliveries,
                (project.as_str(), endpoint, limit),
            )
            .await?;
        rows.into_iter().map(delivery_from_row).collect()
    }

    /// Reads every shard's soonest entries, keeps those whose delivery is still due then, and
    /// removes the entries that are not (left by a crash, or by a delivery that expired).
    pub(super) async fn due_rows(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        type DueRow = (DateTime<Utc>, String, uuid::Uuid, String);
        let per_shard = i32::try_from(limit).unwrap_or(i32::MAX);
        let reads = (0..DUE_SHARDS)
            .map(|s| self.all_rows::<DueRow>(&self.wh.select_due, (s, now, per_shard)));
        let mut entries = Vec::new();
        for rows in futures_util::future::join_all(reads).await {
            entries.extend(rows?);
        }
        entries.sort_by(|a, b| (a.0, &a.3).cmp(&(b.0, &b.3)));
        entries.truncate(limit);
        let mut out = Vec::with_capacity(entries.len());
        for (due_at, project, endpoint, id) in entries {
            match self.delivery_row(&project, endpoint, &id).await? {
                Some(d) if same_ms(d.next_attempt_at, due_at) => out.push(d),
                _ => {
                    let key = (shard(&id), due_at, project.as_str(), endpoint, id.as_str());
                    self.session
                        .execute_unpaged(&self.wh.delete_due, key)
                        .await
                        .map_err(execution)?;
                }
            }
        }
        Ok(out)
    }
}
