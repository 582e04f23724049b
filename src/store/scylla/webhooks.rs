//! The CQL store's webhook tables: endpoints, the delivery log, and the sharded index of
//! deliveries waiting for an attempt (`cql/0005_webhooks.cql`).
//!
//! Endpoints change only through lightweight transactions on their project's partition, so
//! the cap on a project's endpoints holds across nodes: a create counts the partition's rows
//! and inserts with a condition on the partition's count of creates
//! (`cql/0006_webhook_endpoint_cap.cql`); a change or a deletion applies only to a row that
//! exists, so none brings a deleted endpoint back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleety_actors::domain::ProjectId;
use fleety_actors::store::{timed, StoreError, StoreResult, WebhookStore};
use fleety_actors::webhook::{Delivery, Endpoint, LOG_RETENTION};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::rows::{
    CensusRow, DeliveryRow, DeliveryValues, DueKey, DueRow, EndpointRow, EndpointValues,
};
use super::{execution, prepare, ScyllaStore, REQUEST_TIMEOUT};

/// Shards of the due index: a delivery's shard is fixed by its id.
const DUE_SHARDS: i32 = 8;
/// Rounds of count-and-insert one create tries when other creates of its project keep coming
/// first. Each round one racing create applies, so a create that runs out had that many
/// others land meanwhile.
const CREATE_ROUNDS: usize = 64;

pub(super) struct Statements {
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

impl Statements {
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

pub(super) fn shard(delivery_id: &str) -> i32 {
    (crc32fast::hash(delivery_id.as_bytes()) % DUE_SHARDS as u32) as i32
}

/// Timestamps round-trip through CQL in milliseconds; compare them there.
fn same_ms(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> bool {
    a.is_some_and(|a| a.timestamp_millis() == b.timestamp_millis())
}

impl ScyllaStore {
    /// Counts the project's endpoints and inserts this one in one transaction, again as long
    /// as other creates of the project come first (each round, one of them applies).
    async fn create_endpoint_row(&self, e: &Endpoint, max: usize) -> StoreResult<()> {
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
            let count = (created.unwrap_or(0).saturating_add(1), project, created);
            let values = (EndpointValues::from(e), count);
            match self
                .session
                .batch(&self.webhooks.create_endpoint, values)
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
            .execute_unpaged(&self.webhooks.census_endpoints, (project,))
            .await
            .map_err(execution)?;
        let rows = result.into_rows_result().map_err(super::internal)?;
        let mut ids = Vec::new();
        let mut created = None;
        for row in rows.rows::<CensusRow>().map_err(super::internal)? {
            let row = row.map_err(super::internal)?;
            ids.extend(row.endpoint_id);
            created = created.or(row.endpoints_created);
        }
        Ok((ids, created))
    }

    async fn endpoint_rows(&self, project: Option<&ProjectId>) -> StoreResult<Vec<Endpoint>> {
        let rows: Vec<EndpointRow> = match project {
            Some(p) => {
                self.all_rows(&self.webhooks.select_endpoints, (p.as_str(),))
                    .await?
            }
            None => {
                self.all_rows(&self.webhooks.select_all_endpoints, ())
                    .await?
            }
        };
        rows.into_iter()
            .filter_map(|r| r.into_endpoint().transpose())
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
        self.write(&self.webhooks.upsert_delivery, DeliveryValues::new(d, ttl))
            .await?;
        if let Some(at) = d.next_attempt_at {
            self.write(&self.webhooks.insert_due, due_key(d, at))
                .await?;
        }
        if let Some(was) = was_due.filter(|was| !same_ms(d.next_attempt_at, *was)) {
            self.write(&self.webhooks.delete_due, due_key(d, was))
                .await?;
        }
        Ok(())
    }

    /// Checked after the write of an attempt's outcome: an erasure deletes the ticket's row
    /// and then sweeps its deliveries once more, so a write it did not sweep finds the ticket
    /// gone here, and is taken back (issue 29: an attempt under way during the erasure).
    async fn taken_back_if_erased(&self, d: &Delivery) -> StoreResult<()> {
        let Some(slug) = d.ticket() else {
            return Ok(());
        };
        let gone = match fleety_actors::domain::Slug::parse(&slug) {
            Ok(slug) => {
                use fleety_actors::store::TicketStore;
                self.get_ticket(&d.project_id, &slug).await?.is_none()
            }
            Err(_) => true,
        };
        if gone {
            self.delete_new_delivery(d).await?;
        }
        Ok(())
    }

    /// Takes back a new delivery (the announcement of a ticket whose slug turned out taken).
    pub(super) async fn delete_new_delivery(&self, d: &Delivery) -> StoreResult<()> {
        if let Some(at) = d.next_attempt_at {
            self.write(&self.webhooks.delete_due, due_key(d, at))
                .await?;
        }
        let key = (d.project_id.as_str(), d.endpoint_id, d.id.as_str());
        self.write(&self.webhooks.delete_delivery, key).await
    }

    async fn delivery_row(
        &self,
        project: &str,
        endpoint: uuid::Uuid,
        id: &str,
    ) -> StoreResult<Option<Delivery>> {
        self.one_row::<DeliveryRow>(&self.webhooks.select_delivery, (project, endpoint, id))
            .await?
            .map(Delivery::try_from)
            .transpose()
    }

    /// Reads every shard's soonest entries, keeps those whose delivery is still due then, and
    /// removes the entries that are not (left by a crash, or by a delivery that expired).
    async fn due_rows(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Delivery>> {
        let per_shard = i32::try_from(limit).unwrap_or(i32::MAX);
        let reads = (0..DUE_SHARDS)
            .map(|s| self.all_rows::<DueRow>(&self.webhooks.select_due, (s, now, per_shard)));
        let mut entries = Vec::new();
        for rows in futures_util::future::join_all(reads).await {
            entries.extend(rows?);
        }
        entries.sort_by(|a, b| (a.due_at, &a.delivery_id).cmp(&(b.due_at, &b.delivery_id)));
        entries.truncate(limit);
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            match self
                .delivery_row(&e.project_id, e.endpoint_id, &e.delivery_id)
                .await?
            {
                Some(d) if same_ms(d.next_attempt_at, e.due_at) => out.push(d),
                _ => {
                    let key = DueKey {
                        shard: shard(&e.delivery_id),
                        due_at: e.due_at,
                        project_id: &e.project_id,
                        endpoint_id: e.endpoint_id,
                        delivery_id: &e.delivery_id,
                    };
                    self.write(&self.webhooks.delete_due, key).await?;
                }
            }
        }
        Ok(out)
    }
}

/// A delivery's entry in the due index for an attempt at `at`.
fn due_key(d: &Delivery, at: DateTime<Utc>) -> DueKey<'_> {
    DueKey {
        shard: shard(&d.id),
        due_at: at,
        project_id: d.project_id.as_str(),
        endpoint_id: d.endpoint_id,
        delivery_id: &d.id,
    }
}

#[async_trait]
impl WebhookStore for ScyllaStore {
    async fn create_endpoint(&self, endpoint: &Endpoint, max: usize) -> StoreResult<()> {
        let create = self.create_endpoint_row(endpoint, max);
        let create = self.transaction_audited(create, super::audit::refused);
        timed("scylla", "create_endpoint", create).await
    }

    /// Replaces an endpoint that exists; [`StoreError::NotFound`] if it does not.
    async fn update_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()> {
        timed("scylla", "update_endpoint", async {
            let values = EndpointValues::from(endpoint);
            let update = async {
                match self.claim(&self.webhooks.update_endpoint, values).await? {
                    true => Ok(()),
                    false => Err(StoreError::NotFound),
                }
            };
            self.transaction_audited(update, super::audit::refused)
                .await
        })
        .await
    }

    async fn delete_endpoint(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        timed("scylla", "delete_endpoint", async {
            let key = (project.as_str(), id);
            let delete = async {
                match self.claim(&self.webhooks.delete_endpoint, key).await? {
                    true => Ok(()),
                    false => Err(StoreError::NotFound),
                }
            };
            self.transaction_audited(delete, super::audit::refused)
                .await
        })
        .await
    }

    async fn list_endpoints(&self, project: &ProjectId) -> StoreResult<Vec<Endpoint>> {
        timed(
            "scylla",
            "list_endpoints",
            self.endpoint_rows(Some(project)),
        )
        .await
    }

    async fn all_endpoints(&self) -> StoreResult<Vec<Endpoint>> {
        timed("scylla", "all_endpoints", self.endpoint_rows(None)).await
    }

    async fn put_delivery(
        &self,
        delivery: &Delivery,
        was_due: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        timed(
            "scylla",
            "put_delivery",
            // A replay carries its audit record; the sender's own writes carry none.
            self.transaction_audited(
                async {
                    self.put_delivery_rows(delivery, was_due).await?;
                    if was_due.is_some() {
                        self.taken_back_if_erased(delivery).await?;
                    }
                    Ok(())
                },
                super::audit::refused,
            ),
        )
        .await
    }

    async fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Delivery>> {
        timed("scylla", "due_deliveries", self.due_rows(now, limit)).await
    }

    async fn list_deliveries(
        &self,
        project: &ProjectId,
        endpoint: uuid::Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        timed("scylla", "list_deliveries", async {
            let limit = i32::try_from(limit).unwrap_or(i32::MAX);
            let values = (project.as_str(), endpoint, limit);
            let rows: Vec<DeliveryRow> = self
                .all_rows(&self.webhooks.select_deliveries, values)
                .await?;
            rows.into_iter().map(Delivery::try_from).collect()
        })
        .await
    }

    async fn get_delivery(
        &self,
        project: &ProjectId,
        endpoint: uuid::Uuid,
        id: &str,
    ) -> StoreResult<Option<Delivery>> {
        let row = self.delivery_row(project.as_str(), endpoint, id);
        timed("scylla", "get_delivery", row).await
    }

    /// Rows expire by TTL, counted from the delivery's `created_at` (see `put_delivery_rows`).
    async fn prune_deliveries(&self, _before: DateTime<Utc>, _limit: usize) -> StoreResult<usize> {
        Ok(0)
    }

    /// A lightweight transaction: the claim applies only if no claim holds the row now and the
    /// row is still due when the caller read it.
    async fn claim_delivery(
        &self,
        d: &Delivery,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        timed("scylla", "claim_delivery", async {
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
            self.claim(&self.webhooks.claim_delivery, values).await
        })
        .await
    }
}
