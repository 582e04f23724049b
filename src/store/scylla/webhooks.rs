//! The CQL store's webhook tables: endpoints, the delivery log, and the sharded index of
//! deliveries waiting for an attempt (`cql/0005_webhooks.cql`).
//!
//! Endpoints change only through lightweight transactions on their project's partition, so
//! the cap on a project's endpoints holds across nodes: a create counts the partition's rows
//! and inserts with a condition on the partition's count of creates
//! (`cql/0006_webhook_endpoint_cap.cql`); a change or a deletion applies only to a row that
//! exists, so none brings a deleted endpoint back.

use chrono::{DateTime, Utc};
use fleety_actors::domain::ProjectId;
use fleety_actors::store::{StoreError, StoreResult};
use fleety_actors::webhook::{Delivery, DeliveryStatus, Endpoint, EventType, LOG_RETENTION};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::{execution, prepare, ScyllaStore, REQUEST_TIMEOUT};

/// Shards of the due index: a delivery's shard is fixed by its id.
const DUE_SHARDS: i32 = 8;
/// Rounds of count-and-insert one create tries when other creates of its project keep coming
/// first. Each round one racing create applies, so a create that runs out had that many
/// others land meanwhile.
const CREATE_ROUNDS: usize = 64;

pub(super) struct WebhookStatements {
    /// Inserts the endpoint and moves the partition's count of creates on, if it is what the
    /// creator read.
    create_endpoint: Batch,
    update_endpoint: PreparedStatement,
    delete_endpoint: PreparedStatement,
    /// The project's endpoint ids and its count of creates, read with a serial consistency so
    /// that every transaction on the partition before it is seen.
    census_endpoints: PreparedStatement,
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
        let insert_endpoint = p(format!("INSERT INTO {ks}.webhook_endpoints ({ENDPOINT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?;
        let count_create = p(format!("UPDATE {ks}.webhook_endpoints SET endpoints_created = ? WHERE project_id = ? IF endpoints_created = ?")).await?;
        let mut create_endpoint = Batch::new(BatchType::Logged);
        create_endpoint.append_statement(insert_endpoint);
        create_endpoint.append_statement(count_create);
        create_endpoint.set_consistency(consistency);
        create_endpoint.set_request_timeout(Some(REQUEST_TIMEOUT));
        create_endpoint.set_is_idempotent(false);
        let mut census_endpoints = p(format!("SELECT endpoint_id, endpoints_created FROM {ks}.webhook_endpoints WHERE project_id = ?")).await?;
        census_endpoints.set_consistency(Consistency::LocalSerial);
        Ok(Self {
            create_endpoint,
            // Writing the same values again is harmless, hence idempotent.
            update_endpoint: p(format!("UPDATE {ks}.webhook_endpoints SET url = ?, events = ?, secret = ?, enabled = ?, disabled_reason = ?, failing_since = ?, created_at = ? WHERE project_id = ? AND endpoint_id = ? IF EXISTS")).await?,
            delete_endpoint: prepare(session, consistency, format!("DELETE FROM {ks}.webhook_endpoints WHERE project_id = ? AND endpoint_id = ? IF EXISTS"), false).await?,
            census_endpoints,
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

/// Every column but the partition key optional: a partition whose endpoints were all deleted
/// keeps its static count of creates, which a read returns as a row with nothing else.
type EndpointRow = (
    String,
    Option<uuid::Uuid>,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
    Option<bool>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
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

/// The endpoint a row holds; `None` for the row of a partition without endpoints.
fn endpoint_from_row(r: EndpointRow) -> StoreResult<Option<Endpoint>> {
    let Some(id) = r.1 else {
        return Ok(None);
    };
    let events = r.3.unwrap_or_default();
    Ok(Some(Endpoint {
        project_id: ProjectId::parse(&r.0).map_err(|_| corrupt("project_id"))?,
        id,
        url: r.2.ok_or_else(|| corrupt("url"))?,
        events: events
            .iter()
            .map(|e| EventType::parse(e).ok_or_else(|| corrupt("events")))
            .collect::<StoreResult<_>>()?,
        secret: r.4.unwrap_or_default(),
        enabled: r.5.unwrap_or(false),
        disabled_reason: r.6,
        failing_since: r.7,
        created_at: r.8.ok_or_else(|| corrupt("created_at"))?,
    }))
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
    /// Counts the project's endpoints and inserts this one in one transaction, again as long
    /// as other creates of the project come first (each round, one of them applies).
    pub(super) async fn create_endpoint_row(&self, e: &Endpoint, max: usize) -> StoreResult<()> {
        let events: Vec<&str> = e.events.iter().map(|e| e.as_str()).collect();
        let project = e.project_id.as_str();
        for _ in 0..CREATE_ROUNDS {
            let (ids, created) = self.endpoint_census(project).await?;
            if ids.contains(&e.id) {
                // An earlier round's answer was lost (a timeout), but it applied.
                return Ok(());
            }
            if ids.len() >= max {
                return Err(StoreError::Conflict);
            }
            let row = (
                project,
                e.id,
                e.url.as_str(),
                &events,
                e.secret.as_str(),
                e.enabled,
                e.disabled_reason.as_deref(),
                e.failing_since,
                e.created_at,
            );
            let count = (created.unwrap_or(0).saturating_add(1), project, created);
            match self
                .session
                .batch(&self.wh.create_endpoint, (row, count))
                .await
            {
                Ok(result) => {
                    if super::applied(result)? {
                        return Ok(());
                    }
                }
                // A timeout leaves the outcome unknown: the next round's count tells.
                Err(err) => match execution(err) {
                    StoreError::Unavailable(_) => {}
                    other => return Err(other),
                },
            }
        }
        Err(StoreError::Unavailable(
            "too many webhook endpoints being created at once in the project".into(),
        ))
    }

    /// The project's endpoint ids and its count of creates (`None` before the first create
    /// since the count was added).
    async fn endpoint_census(&self, project: &str) -> StoreResult<(Vec<uuid::Uuid>, Option<i32>)> {
        // Unpaged: the cap keeps the partition to a handful of rows.
        let result = self
            .session
            .execute_unpaged(&self.wh.census_endpoints, (project,))
            .await
            .map_err(execution)?;
        let rows = result.into_rows_result().map_err(super::internal)?;
        let mut ids = Vec::new();
        let mut created = None;
        for row in rows
            .rows::<(Option<uuid::Uuid>, Option<i32>)>()
            .map_err(super::internal)?
        {
            let (id, count) = row.map_err(super::internal)?;
            ids.extend(id);
            created = created.or(count);
        }
        Ok((ids, created))
    }

    /// Replaces an endpoint that exists; [`StoreError::NotFound`] if it does not.
    pub(super) async fn update_endpoint_row(&self, e: &Endpoint) -> StoreResult<()> {
        let events: Vec<&str> = e.events.iter().map(|e| e.as_str()).collect();
        let values = (
            e.url.as_str(),
            events,
            e.secret.as_str(),
            e.enabled,
            e.disabled_reason.as_deref(),
            e.failing_since,
            e.created_at,
            e.project_id.as_str(),
            e.id,
        );
        match self.claim(&self.wh.update_endpoint, values).await? {
            true => Ok(()),
            false => Err(StoreError::NotFound),
        }
    }

    pub(super) async fn delete_endpoint_row(
        &self,
        project: &ProjectId,
        id: uuid::Uuid,
    ) -> StoreResult<()> {
        match self
            .claim(&self.wh.delete_endpoint, (project.as_str(), id))
            .await?
        {
            true => Ok(()),
            false => Err(StoreError::NotFound),
        }
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
        rows.into_iter()
            .filter_map(|r| endpoint_from_row(r).transpose())
            .collect()
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
