//! The CQL outbox's indexes (`cql/0036_email_listing.cql`): a project's emails newest first
//! for the listing, and a ticket's for its listing and its erasure; and the writes that keep
//! an email of an erased ticket from coming back.
//!
//! An entry is written before the row it points to, so a row is never stored without its
//! entries: a crash between them leaves an entry that the listing skips and that expires.
//! Emails about a ticket are made with a check of the ticket before and after: an email made
//! while its ticket was erased is either found by the erasure (which reads the index after
//! deleting the ticket's row) or finds the ticket gone and deletes itself.

use chrono::{DateTime, Utc};
use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::email::{Email, EmailCursor, EmailPage, EmailQuery, RETENTION};
use fleety_actors::store::{StoreResult, TicketStore};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::{prepare, ScyllaStore};

pub(super) struct Statements {
    insert_project: PreparedStatement,
    insert_ticket: PreparedStatement,
    project_first: PreparedStatement,
    project_after: PreparedStatement,
    ticket_first: PreparedStatement,
    ticket_after: PreparedStatement,
    ticket_all: PreparedStatement,
    delete_project_entry: PreparedStatement,
    delete_ticket_entries: PreparedStatement,
    /// Lightweight transactions, so a row deleted by an erasure and the sender's conditional
    /// write of it are ordered.
    delete_row: PreparedStatement,
    update_if_exists: PreparedStatement,
    delete_due: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        let lwt = |cql: String| prepare(session, consistency, cql, false);
        Ok(Self {
            insert_project: p(format!("INSERT INTO {ks}.emails_by_project (project_id, created_at, email_id) VALUES (?, ?, ?) USING TTL ?")).await?,
            insert_ticket: p(format!("INSERT INTO {ks}.emails_by_ticket (project_id, slug, created_at, email_id) VALUES (?, ?, ?, ?) USING TTL ?")).await?,
            project_first: p(format!("SELECT created_at, email_id FROM {ks}.emails_by_project WHERE project_id = ? LIMIT ?")).await?,
            project_after: p(format!("SELECT created_at, email_id FROM {ks}.emails_by_project WHERE project_id = ? AND (created_at, email_id) < (?, ?) LIMIT ?")).await?,
            ticket_first: p(format!("SELECT created_at, email_id FROM {ks}.emails_by_ticket WHERE project_id = ? AND slug = ? LIMIT ?")).await?,
            ticket_after: p(format!("SELECT created_at, email_id FROM {ks}.emails_by_ticket WHERE project_id = ? AND slug = ? AND (created_at, email_id) < (?, ?) LIMIT ?")).await?,
            ticket_all: p(format!("SELECT created_at, email_id FROM {ks}.emails_by_ticket WHERE project_id = ? AND slug = ?")).await?,
            delete_project_entry: p(format!("DELETE FROM {ks}.emails_by_project WHERE project_id = ? AND created_at = ? AND email_id = ?")).await?,
            delete_ticket_entries: p(format!("DELETE FROM {ks}.emails_by_ticket WHERE project_id = ? AND slug = ?")).await?,
            delete_row: lwt(format!("DELETE FROM {ks}.email_outbox WHERE email_id = ? IF EXISTS")).await?,
            update_if_exists: lwt(format!("UPDATE {ks}.email_outbox USING TTL ? SET body = ?, next_attempt_at = ?, lease_until = ? WHERE email_id = ? IF EXISTS")).await?,
            delete_due: p(format!("DELETE FROM {ks}.email_due WHERE shard = ? AND due_at = ? AND email_id = ?")).await?,
        })
    }
}

/// Seconds an entry has left: as its email's row.
fn ttl(e: &Email) -> i32 {
    let left = (e.created_at + RETENTION - Utc::now()).num_seconds();
    i32::try_from(left.max(1)).unwrap_or(i32::MAX)
}

fn millis(at_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at_ms).unwrap_or(DateTime::UNIX_EPOCH)
}

impl ScyllaStore {
    /// Writes the email's index entries; before its row.
    pub(super) async fn index_email(&self, e: &Email) -> StoreResult<()> {
        let (p, at, id) = (e.project_id.as_str(), e.created_at, e.id.as_str());
        let st = &self.email_index;
        self.write(&st.insert_project, (p, at, id, ttl(e))).await?;
        if let Some(slug) = &e.ticket {
            self.write(&st.insert_ticket, (p, slug.as_str(), at, id, ttl(e)))
                .await?;
        }
        Ok(())
    }

    /// Whether the ticket an email is about is stored.
    pub(super) async fn email_ticket_stored(&self, e: &Email) -> StoreResult<bool> {
        match &e.ticket {
            Some(slug) => Ok(self.get_ticket(&e.project_id, slug).await?.is_some()),
            None => Ok(true),
        }
    }

    /// Replaces an email's row only if it is still stored; whether it was.
    pub(super) async fn update_email_row(
        &self,
        values: (&str, String, Option<DateTime<Utc>>, DateTime<Utc>, i32),
    ) -> StoreResult<bool> {
        let (id, body, next, lease, ttl) = values;
        let st = &self.email_index.update_if_exists;
        self.claim(st, (ttl, body, next, lease, id)).await
    }

    /// Deletes one email: its due entry, its row, its project entry. Its ticket entry goes
    /// with the ticket's ([`Self::erase_emails`]) or is left to expire.
    pub(super) async fn delete_email(&self, e: &Email) -> StoreResult<()> {
        let st = &self.email_index;
        let id = e.id.as_str();
        if let Some(due) = e.next_attempt_at {
            let values = (super::email::shard(id), due, id);
            self.write(&st.delete_due, values).await?;
        }
        self.claim(&st.delete_row, (id,)).await?;
        let values = (e.project_id.as_str(), e.created_at, id);
        self.write(&st.delete_project_entry, values).await
    }

    /// Deletes every email about the ticket, sent or not, and the ticket's index entries.
    pub(super) async fn erase_emails(&self, project: &ProjectId, slug: &Slug) -> StoreResult<()> {
        let (p, s) = (project.as_str(), slug.as_str());
        let st = &self.email_index;
        let entries: Vec<(DateTime<Utc>, String)> = self.all_rows(&st.ticket_all, (p, s)).await?;
        for (at, id) in entries {
            match self.email_row(&id).await? {
                Some(e) => self.delete_email(&e).await?,
                None => {
                    self.write(&st.delete_project_entry, (p, at, id.as_str()))
                        .await?
                }
            }
        }
        self.write(&st.delete_ticket_entries, (p, s)).await
    }

    /// A page of the listing: a page and one of entries, then their rows.
    pub(super) async fn email_page(
        &self,
        project: &ProjectId,
        query: &EmailQuery,
    ) -> StoreResult<EmailPage> {
        let p = project.as_str();
        let st = &self.email_index;
        let size = query.page_size();
        let want = i32::try_from(size + 1).unwrap_or(i32::MAX);
        type Entry = (DateTime<Utc>, String);
        let entries: Vec<Entry> = match (&query.ticket, &query.after) {
            (None, None) => self.all_rows(&st.project_first, (p, want)).await?,
            (None, Some(c)) => {
                let values = (p, millis(c.at_ms), c.id.as_str(), want);
                self.all_rows(&st.project_after, values).await?
            }
            (Some(s), None) => {
                self.all_rows(&st.ticket_first, (p, s.as_str(), want))
                    .await?
            }
            (Some(s), Some(c)) => {
                let values = (p, s.as_str(), millis(c.at_ms), c.id.as_str(), want);
                self.all_rows(&st.ticket_after, values).await?
            }
        };
        // The next page starts after the last entry of this one, whether or not its row was
        // still there.
        let more = entries.len() > size;
        let next = more.then(|| EmailCursor {
            at_ms: entries[size - 1].0.timestamp_millis(),
            id: entries[size - 1].1.clone(),
        });
        let mut emails = Vec::with_capacity(size);
        for (_, id) in entries.iter().take(size) {
            if let Some(e) = self.email_row(id).await? {
                emails.push(e);
            }
        }
        Ok(EmailPage { emails, next })
    }
}
