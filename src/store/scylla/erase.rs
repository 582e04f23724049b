//! Ticket erasure (`cql/0030_ticket_erasure.cql`): deleting a ticket and every row carrying
//! its words, and the erasures begun and not finished.
//!
//! No CQL write spans the partitions involved, so the order makes a crash safe: everything
//! found through the ticket's slug goes first, then what is found through its row (the chat
//! transcript, the listing and contact entries), then the row, and the emails about the ticket
//! (found through the slug again) after it. Until then a retry finds all it needs; the
//! erasure's intent, written before, makes the server retry on start.

use chrono::{DateTime, Utc};
use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::store::{Erasure, StoreError, StoreResult, TicketStore, WebhookStore};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::{prepare, ScyllaStore};

pub(super) struct Statements {
    by_slug: Vec<PreparedStatement>,
    delete_chat: PreparedStatement,
    delete_by_time: PreparedStatement,
    delete_contact_ticket: PreparedStatement,
    delete_ticket: PreparedStatement,
    select_deliveries: PreparedStatement,
    delete_delivery: PreparedStatement,
    delete_due: PreparedStatement,
    select_audit: PreparedStatement,
    update_audit: PreparedStatement,
    insert_erasure: PreparedStatement,
    delete_erasure: PreparedStatement,
    select_erasures: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        let mut by_slug = Vec::new();
        for table in [
            "messages",
            "ticket_notes",
            "ticket_activity",
            "read_cursors",
        ] {
            by_slug.push(
                p(format!(
                    "DELETE FROM {ks}.{table} WHERE project_id = ? AND slug = ?"
                ))
                .await?,
            );
        }
        Ok(Self {
            by_slug,
            delete_chat: p(format!(
                "DELETE FROM {ks}.chat_turns WHERE project_id = ? AND session_id = ?"
            ))
            .await?,
            delete_by_time: p(format!(
                "DELETE FROM {ks}.tickets_by_time WHERE project_id = ? AND bucket = ? AND created_at = ? AND slug = ?"
            ))
            .await?,
            delete_contact_ticket: p(format!(
                "DELETE FROM {ks}.contact_tickets WHERE project_id = ? AND contact_id = ? AND created_at = ? AND slug = ?"
            ))
            .await?,
            delete_ticket: p(format!(
                "DELETE FROM {ks}.tickets WHERE project_id = ? AND slug = ?"
            ))
            .await?,
            select_deliveries: p(format!(
                "SELECT delivery_id, payload, next_attempt_at FROM {ks}.webhook_deliveries WHERE project_id = ? AND endpoint_id = ?"
            ))
            .await?,
            delete_delivery: p(format!(
                "DELETE FROM {ks}.webhook_deliveries WHERE project_id = ? AND endpoint_id = ? AND delivery_id = ?"
            ))
            .await?,
            delete_due: p(format!(
                "DELETE FROM {ks}.webhook_due WHERE shard = ? AND due_at = ? AND project_id = ? AND endpoint_id = ? AND delivery_id = ?"
            ))
            .await?,
            select_audit: p(format!(
                "SELECT at, record_id, body, TTL(body) FROM {ks}.audit_log WHERE project_id = ?"
            ))
            .await?,
            update_audit: p(format!(
                "UPDATE {ks}.audit_log USING TTL ? SET body = ? WHERE project_id = ? AND at = ? AND record_id = ?"
            ))
            .await?,
            insert_erasure: p(format!(
                "INSERT INTO {ks}.erasures (shard, project_id, slug, body) VALUES (0, ?, ?, ?)"
            ))
            .await?,
            delete_erasure: p(format!(
                "DELETE FROM {ks}.erasures WHERE shard = 0 AND project_id = ? AND slug = ?"
            ))
            .await?,
            select_erasures: p(format!("SELECT body FROM {ks}.erasures WHERE shard = 0")).await?,
        })
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("corrupt erasure: {e}"))
}

impl ScyllaStore {
    pub(super) async fn erase(&self, project: &ProjectId, slug: &Slug) -> StoreResult<bool> {
        let (p, s) = (project.as_str(), slug.as_str());
        let ticket = self.get_ticket(project, slug).await?;
        self.erase_deliveries(project, slug).await?;
        // The trail keeps its records of the ticket, without the title they name it by, for
        // the rest of their time to live.
        type AuditRow = (DateTime<Utc>, String, Option<String>, Option<i32>);
        let rows: Vec<AuditRow> = self.all_rows(&self.erase.select_audit, (p,)).await?;
        for (at, id, body, ttl) in rows {
            let Some(body) = body else { continue };
            let mut record: fleety_actors::audit::AuditRecord =
                serde_json::from_str(&body).map_err(corrupt)?;
            if !fleety_actors::audit::redact_ticket(&mut record, s) {
                continue;
            }
            let body = serde_json::to_string(&record).map_err(corrupt)?;
            let values = (ttl.unwrap_or(0), body, p, at, id);
            self.write(&self.erase.update_audit, values).await?;
        }
        for st in &self.erase.by_slug {
            self.write(st, (p, s)).await?;
        }
        let Some(t) = ticket else {
            self.erase_emails(project, slug).await?;
            return Ok(false);
        };
        if let Some(session) = &t.session_id {
            self.write(&self.erase.delete_chat, (p, session.as_str()))
                .await?;
        }
        let bucket = super::listing::bucket(t.created_at);
        self.write(&self.erase.delete_by_time, (p, bucket, t.created_at, s))
            .await?;
        if let Some(c) = &t.contact {
            let contact = fleety_actors::contact::order_key(c.id);
            self.write(
                &self.erase.delete_contact_ticket,
                (p, contact, t.created_at, s),
            )
            .await?;
        }
        self.write(&self.erase.delete_ticket, (p, s)).await?;
        // Once more after the ticket's row: a delivery whose attempt was under way wrote it
        // back after the first sweep, or finds the ticket gone and takes it back itself.
        self.erase_deliveries(project, slug).await?;
        // The emails after the row: one made while this ran checks the row after it is
        // stored, and deletes itself if the row is gone (see `email_index`); one that found
        // the row is in the index read now.
        self.erase_emails(project, slug).await?;
        Ok(true)
    }

    /// Deliveries of the project's endpoints that announce the ticket. Those of endpoints
    /// deleted before cannot be listed; their rows expire with the log (30 days).
    async fn erase_deliveries(&self, project: &ProjectId, slug: &Slug) -> StoreResult<()> {
        let (p, s) = (project.as_str(), slug.as_str());
        for endpoint in self.list_endpoints(project).await? {
            let rows: Vec<(String, Option<String>, Option<DateTime<Utc>>)> = self
                .all_rows(&self.erase.select_deliveries, (p, endpoint.id))
                .await?;
            for (id, payload, due) in rows {
                let payload = payload.unwrap_or_default();
                if !fleety_actors::webhook::payload_concerns_ticket(&payload, s) {
                    continue;
                }
                if let Some(due) = due {
                    let shard = super::webhooks::shard(&id);
                    self.write(&self.erase.delete_due, (shard, due, p, endpoint.id, &id))
                        .await?;
                }
                self.write(&self.erase.delete_delivery, (p, endpoint.id, &id))
                    .await?;
            }
        }
        Ok(())
    }

    pub(super) async fn put_erasure_row(&self, e: &Erasure) -> StoreResult<()> {
        let body = serde_json::to_string(e).map_err(corrupt)?;
        let values = (e.project_id.as_str(), e.slug.as_str(), body);
        self.write(&self.erase.insert_erasure, values).await
    }

    pub(super) async fn delete_erasure_row(
        &self,
        project: &ProjectId,
        slug: &Slug,
    ) -> StoreResult<()> {
        let values = (project.as_str(), slug.as_str());
        self.write(&self.erase.delete_erasure, values).await
    }

    pub(super) async fn erasure_rows(&self) -> StoreResult<Vec<Erasure>> {
        let rows: Vec<(Option<String>,)> = self.all_rows(&self.erase.select_erasures, ()).await?;
        rows.into_iter()
            .filter_map(|(body,)| body)
            .map(|b| serde_json::from_str(&b).map_err(corrupt))
            .collect()
    }
}
