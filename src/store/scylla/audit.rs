//! The audit trail (`cql/0019_audit_log.cql`), and how a change carries its record.
//!
//! A change made by a plain write goes in one LOGGED BATCH with its record
//! ([`ScyllaStore::write_audited`]): both land or neither. A change made by a lightweight
//! transaction cannot share a batch with another table, so its record is written first and
//! removed again only if the transaction certainly did not apply
//! ([`ScyllaStore::transaction_audited`]): a change never lands without its record. Rows
//! expire by TTL at the end of the retention.

use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleety_actors::audit::{self, AuditPage, AuditQuery, AuditRecord, SCAN};
use fleety_actors::domain::ProjectId;
use fleety_actors::store::{timed, AuditStore, StoreError, StoreResult};
use futures_util::StreamExt;
use scylla::client::session::Session;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::SerializeRow;

use super::{execution, internal, paging, prepare, ScyllaStore, LIST_DEADLINE, REQUEST_TIMEOUT};

pub(super) struct Statements {
    pub(super) insert: PreparedStatement,
    delete: PreparedStatement,
    select: PreparedStatement,
    consistency: Consistency,
    /// Days a record is kept: its rows' TTL.
    pub(super) retention_days: AtomicU32,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            insert: p(format!("INSERT INTO {ks}.audit_log (project_id, at, record_id, body) VALUES (?, ?, ?, ?) USING TTL ?")).await?,
            delete: p(format!("DELETE FROM {ks}.audit_log WHERE project_id = ? AND at = ? AND record_id = ?")).await?,
            select: p(format!("SELECT body FROM {ks}.audit_log WHERE project_id = ? AND at >= ? AND at <= ?")).await?,
            consistency,
            retention_days: AtomicU32::new(audit::DEFAULT_RETENTION_DAYS),
        })
    }
}

#[derive(SerializeRow)]
pub(super) struct AuditValues {
    project_id: String,
    at: DateTime<Utc>,
    record_id: String,
    body: String,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

impl ScyllaStore {
    /// Keeps audit records this many days (`FLEETY_AUDIT_RETENTION_DAYS`).
    pub fn set_audit_retention_days(&self, days: u32) {
        self.audit
            .retention_days
            .store(days.max(1), Ordering::Relaxed);
    }

    pub(super) fn audit_values(&self, r: &AuditRecord) -> StoreResult<AuditValues> {
        let days = i64::from(self.audit.retention_days.load(Ordering::Relaxed));
        let left = (r.at + chrono::Duration::days(days) - Utc::now()).num_seconds();
        Ok(AuditValues {
            project_id: r.project_id.as_str().to_owned(),
            at: r.at,
            record_id: r.id.to_string(),
            body: serde_json::to_string(r).map_err(internal)?,
            // A TTL of 0 would mean forever: a record already past retention keeps a second.
            ttl: i32::try_from(left.max(1)).unwrap_or(i32::MAX),
        })
    }

    /// Writes a record alone (a ticket batch's, which goes beside its other rows).
    pub(super) async fn insert_audit(&self, r: &AuditRecord) -> StoreResult<()> {
        self.write(&self.audit.insert, self.audit_values(r)?).await
    }

    /// Runs a plain write, in one logged batch with the pending audit record if there is one.
    pub(super) async fn write_audited(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StoreResult<()> {
        let Some(record) = audit::take() else {
            return self.write(st, values).await;
        };
        let mut batch = Batch::new(BatchType::Logged);
        batch.append_statement(st.clone());
        batch.append_statement(self.audit.insert.clone());
        batch.set_consistency(self.audit.consistency);
        batch.set_request_timeout(Some(REQUEST_TIMEOUT));
        batch.set_is_idempotent(st.get_is_idempotent());
        let audit = self.audit_values(&record)?;
        self.session
            .batch(&batch, (values, audit))
            .await
            .map_err(execution)?;
        Ok(())
    }

    /// Runs a change made by lightweight transactions with the pending audit record: the
    /// record first, then the change; the record is removed if the change was certainly
    /// refused (`refused` says so of its outcome). An outcome left unknown (a timeout) keeps
    /// the record, which may then tell of a change that did not land, never the reverse.
    pub(super) async fn transaction_audited<T>(
        &self,
        change: impl std::future::Future<Output = StoreResult<T>>,
        refused: impl FnOnce(&StoreResult<T>) -> bool,
    ) -> StoreResult<T> {
        let Some(record) = audit::take() else {
            return change.await;
        };
        let audit = self.audit_values(&record)?;
        let key = (audit.project_id.clone(), audit.at, audit.record_id.clone());
        self.write(&self.audit.insert, audit).await?;
        let outcome = change.await;
        if refused(&outcome) {
            if let Err(e) = self.write(&self.audit.delete, key).await {
                tracing::warn!(error = %e, "removing the audit record of a refused change failed");
            }
        }
        outcome
    }
}

/// Refusals every transaction reports: the row was there, or was not.
pub(super) fn refused<T>(outcome: &StoreResult<T>) -> bool {
    matches!(outcome, Err(StoreError::Conflict | StoreError::NotFound))
}

#[async_trait]
impl AuditStore for ScyllaStore {
    async fn record_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        timed("scylla", "record_audit", async {
            self.insert_audit(record).await
        })
        .await
    }

    async fn list_audit(&self, project: &ProjectId, query: &AuditQuery) -> StoreResult<AuditPage> {
        timed("scylla", "list_audit", async {
            let read = async {
                let from = query
                    .since
                    .unwrap_or(DateTime::<Utc>::UNIX_EPOCH - chrono::Duration::days(1));
                let to = query.after.map_or(DateTime::<Utc>::MAX_UTC, |c| c.at);
                let mut rows = self
                    .session
                    .execute_iter(self.audit.select.clone(), (project.as_str(), from, to))
                    .await
                    .map_err(paging)?
                    .rows_stream::<(String,)>()
                    .map_err(internal)?;
                let mut records = Vec::new();
                while let Some(row) = rows.next().await {
                    let (body,) = row.map_err(paging)?;
                    let r: AuditRecord = serde_json::from_str(&body).map_err(internal)?;
                    // The cursor's own millisecond holds records on both sides of it.
                    if query.after.is_some_and(|c| r.cursor() >= c) {
                        continue;
                    }
                    records.push(r);
                    if records.len() > SCAN {
                        break;
                    }
                }
                Ok(AuditPage::scan(records, query))
            };
            tokio::time::timeout(LIST_DEADLINE, read)
                .await
                .map_err(|_| {
                    StoreError::Unavailable("reading the audit trail took too long".into())
                })?
        })
        .await
    }

    /// Rows expire by TTL.
    async fn prune_audit(&self, _before: DateTime<Utc>, _limit: usize) -> StoreResult<usize> {
        Ok(0)
    }
}
