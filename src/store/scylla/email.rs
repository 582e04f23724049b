//! The CQL store's email outbox (`cql/0026_email_outbox.cql`): the emails, and the sharded
//! index of those waiting for an attempt; and the tickets' visitor-mail records
//! (`cql/0027_visitor_mail.cql`) with their own sharded due index.
//!
//! A link and the email carrying it are one logged batch, so neither is stored without the
//! other. A sender claims an attempt with a lightweight transaction on the email's row; writing
//! the email puts `lease_until` back to the epoch, which ends the claim.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::email::{Email, RETENTION};
use fleety_actors::member::MemberLink;
use fleety_actors::store::{timed, EmailStore, StoreResult};
use fleety_actors::visitor_mail::VisitorMail;
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::{execution, internal, prepare, ScyllaStore, REQUEST_TIMEOUT};

/// Shards of the due index: an email's shard is fixed by its id.
const DUE_SHARDS: i32 = 8;

pub(super) struct Statements {
    upsert: PreparedStatement,
    /// The email of a visitor's burst, written by one composer only.
    create: PreparedStatement,
    select: PreparedStatement,
    claim: PreparedStatement,
    insert_due: PreparedStatement,
    delete_due: PreparedStatement,
    select_due: PreparedStatement,
    upsert_visitor: PreparedStatement,
    select_visitor: PreparedStatement,
    insert_visitor_due: PreparedStatement,
    delete_visitor_due: PreparedStatement,
    select_visitor_due: PreparedStatement,
    consistency: Consistency,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            // Writing the same values again is harmless, hence idempotent.
            upsert: p(format!("INSERT INTO {ks}.email_outbox (email_id, body, next_attempt_at, lease_until) VALUES (?, ?, ?, ?) USING TTL ?")).await?,
            create: prepare(session, consistency, format!("INSERT INTO {ks}.email_outbox (email_id, body, next_attempt_at, lease_until) VALUES (?, ?, ?, ?) IF NOT EXISTS USING TTL ?"), false).await?,
            select: p(format!("SELECT body FROM {ks}.email_outbox WHERE email_id = ?")).await?,
            claim: prepare(session, consistency, format!("UPDATE {ks}.email_outbox USING TTL ? SET lease_until = ? WHERE email_id = ? IF lease_until < ? AND next_attempt_at = ?"), false).await?,
            insert_due: p(format!("INSERT INTO {ks}.email_due (shard, due_at, email_id) VALUES (?, ?, ?)")).await?,
            delete_due: p(format!("DELETE FROM {ks}.email_due WHERE shard = ? AND due_at = ? AND email_id = ?")).await?,
            select_due: p(format!("SELECT due_at, email_id FROM {ks}.email_due WHERE shard = ? AND due_at <= ? LIMIT ?")).await?,
            upsert_visitor: p(format!("INSERT INTO {ks}.visitor_mail (project_id, slug, body, due_at) VALUES (?, ?, ?, ?)")).await?,
            select_visitor: p(format!("SELECT body FROM {ks}.visitor_mail WHERE project_id = ? AND slug = ?")).await?,
            insert_visitor_due: p(format!("INSERT INTO {ks}.visitor_mail_due (shard, due_at, project_id, slug) VALUES (?, ?, ?, ?)")).await?,
            delete_visitor_due: p(format!("DELETE FROM {ks}.visitor_mail_due WHERE shard = ? AND due_at = ? AND project_id = ? AND slug = ?")).await?,
            select_visitor_due: p(format!("SELECT due_at, project_id, slug FROM {ks}.visitor_mail_due WHERE shard = ? AND due_at <= ? LIMIT ?")).await?,
            consistency,
        })
    }
}

pub(super) fn shard(id: &str) -> i32 {
    (crc32fast::hash(id.as_bytes()) % DUE_SHARDS as u32) as i32
}

/// Timestamps round-trip through CQL in milliseconds; compare them there.
fn same_ms(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> bool {
    a.is_some_and(|a| a.timestamp_millis() == b.timestamp_millis())
}

/// The seconds an email's row has left: until [`RETENTION`] after it was made, at least one.
fn ttl(e: &Email) -> i32 {
    let left = (e.created_at + RETENTION - Utc::now()).num_seconds();
    i32::try_from(left.max(1)).unwrap_or(i32::MAX)
}

type RowValues<'a> = (&'a str, String, Option<DateTime<Utc>>, DateTime<Utc>, i32);

fn row_values(e: &Email) -> StoreResult<RowValues<'_>> {
    let body = serde_json::to_string(e).map_err(internal)?;
    Ok((
        e.id.as_str(),
        body,
        e.next_attempt_at,
        DateTime::UNIX_EPOCH,
        ttl(e),
    ))
}

fn visitor_shard(project: &ProjectId, slug: &Slug) -> i32 {
    let key = format!("{}/{}", project.as_str(), slug.as_str());
    shard(&key)
}

impl ScyllaStore {
    async fn visitor_row(&self, project: &str, slug: &str) -> StoreResult<Option<VisitorMail>> {
        let row = self
            .one_row::<(Option<String>,)>(&self.email.select_visitor, (project, slug))
            .await?;
        match row {
            Some((Some(body),)) => Ok(Some(serde_json::from_str(&body).map_err(internal)?)),
            _ => Ok(None),
        }
    }

    /// As [`Self::due_email_rows`], for the visitor-mail records.
    async fn due_visitor_rows(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<VisitorMail>> {
        let per_shard = i32::try_from(limit).unwrap_or(i32::MAX);
        let reads = (0..DUE_SHARDS).map(|s| {
            self.all_rows::<(DateTime<Utc>, String, String)>(
                &self.email.select_visitor_due,
                (s, now, per_shard),
            )
        });
        let mut entries = Vec::new();
        for rows in futures_util::future::join_all(reads).await {
            entries.extend(rows?);
        }
        entries.sort();
        entries.truncate(limit);
        let mut out = Vec::with_capacity(entries.len());
        for (due_at, project, slug) in entries {
            match self.visitor_row(&project, &slug).await? {
                Some(m) if same_ms(m.due_at, due_at) => out.push(m),
                _ => {
                    let s = shard(&format!("{project}/{slug}"));
                    let values = (s, due_at, project.as_str(), slug.as_str());
                    self.write(&self.email.delete_visitor_due, values).await?
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn email_row(&self, id: &str) -> StoreResult<Option<Email>> {
        let row = self
            .one_row::<(Option<String>,)>(&self.email.select, (id,))
            .await?;
        match row {
            Some((Some(body),)) => Ok(Some(serde_json::from_str(&body).map_err(internal)?)),
            _ => Ok(None),
        }
    }

    /// Reads every shard's soonest entries, keeps those whose email is still due then, and
    /// removes the entries that are not (left by a crash, or by an email that expired).
    async fn due_email_rows(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Email>> {
        let per_shard = i32::try_from(limit).unwrap_or(i32::MAX);
        let reads = (0..DUE_SHARDS).map(|s| {
            self.all_rows::<(DateTime<Utc>, String)>(&self.email.select_due, (s, now, per_shard))
        });
        let mut entries = Vec::new();
        for rows in futures_util::future::join_all(reads).await {
            entries.extend(rows?);
        }
        entries.sort();
        entries.truncate(limit);
        let mut out = Vec::with_capacity(entries.len());
        for (due_at, id) in entries {
            match self.email_row(&id).await? {
                Some(e) if same_ms(e.next_attempt_at, due_at) => out.push(e),
                _ => {
                    self.write(&self.email.delete_due, (shard(&id), due_at, id.as_str()))
                        .await?
                }
            }
        }
        Ok(out)
    }
}

impl ScyllaStore {
    /// Makes an email unless one with its id is stored (a lightweight transaction), its
    /// entries first and its due entry after; an email about a ticket only while the ticket
    /// is stored (see [`super::email_index`]). Whether it was made now.
    async fn create_email_row(&self, email: &Email) -> StoreResult<bool> {
        if !self.email_ticket_stored(email).await? {
            return Ok(false);
        }
        self.index_email(email).await?;
        if !self.claim(&self.email.create, row_values(email)?).await? {
            return Ok(false);
        }
        if !self.email_ticket_stored(email).await? {
            self.delete_email(email).await?;
            return Ok(false);
        }
        if let Some(at) = email.next_attempt_at {
            self.write(
                &self.email.insert_due,
                (shard(&email.id), at, email.id.as_str()),
            )
            .await?;
        }
        Ok(true)
    }
}

#[async_trait]
impl EmailStore for ScyllaStore {
    async fn put_member_link_with_email(
        &self,
        link: &MemberLink,
        email: &Email,
    ) -> StoreResult<()> {
        timed("scylla", "put_member_link_with_email", async {
            self.index_email(email).await?;
            let mut batch = Batch::new(BatchType::Logged);
            batch.append_statement(self.email.upsert.clone());
            batch.append_statement(self.members.insert_link.clone());
            batch.set_consistency(self.email.consistency);
            batch.set_request_timeout(Some(REQUEST_TIMEOUT));
            batch.set_is_idempotent(true);
            let (row, link) = (row_values(email)?, super::members::link_values(link));
            // The audit record of the link's making, if there is one, in the same batch.
            match fleety_actors::audit::take() {
                Some(record) => {
                    batch.append_statement(self.audit.insert.clone());
                    let audit = self.audit_values(&record)?;
                    self.session.batch(&batch, (row, link, audit)).await
                }
                None => self.session.batch(&batch, (row, link)).await,
            }
            .map_err(execution)?;
            // The due entry after the row: an entry without its row would be dropped when met,
            // a row without its entry would wait for the next write of it.
            if let Some(at) = email.next_attempt_at {
                self.write(
                    &self.email.insert_due,
                    (shard(&email.id), at, email.id.as_str()),
                )
                .await?;
            }
            Ok(())
        })
        .await
    }

    async fn put_email(&self, email: &Email, was_due: Option<DateTime<Utc>>) -> StoreResult<()> {
        timed("scylla", "put_email", async {
            if email.ticket.is_some() {
                // Only replaced, and only while stored: an erasure deletes the row with a
                // lightweight transaction too, so of the two the later one wins for good.
                if !self.update_email_row(row_values(email)?).await? {
                    return Err(fleety_actors::store::StoreError::NotFound);
                }
            } else {
                self.index_email(email).await?;
                self.write(&self.email.upsert, row_values(email)?).await?;
            }
            let id = email.id.as_str();
            if let Some(at) = email.next_attempt_at {
                self.write(&self.email.insert_due, (shard(id), at, id))
                    .await?;
            }
            if let Some(was) = was_due.filter(|was| !same_ms(email.next_attempt_at, *was)) {
                self.write(&self.email.delete_due, (shard(id), was, id))
                    .await?;
            }
            Ok(())
        })
        .await
    }

    async fn list_emails(
        &self,
        project: &ProjectId,
        query: &fleety_actors::email::EmailQuery,
    ) -> StoreResult<fleety_actors::email::EmailPage> {
        timed("scylla", "list_emails", self.email_page(project, query)).await
    }

    async fn due_emails(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Email>> {
        timed("scylla", "due_emails", self.due_email_rows(now, limit)).await
    }

    async fn get_email(&self, id: &str) -> StoreResult<Option<Email>> {
        timed("scylla", "get_email", self.email_row(id)).await
    }

    /// A lightweight transaction: the claim applies only if no claim holds the row now and the
    /// row is still due when the caller read it.
    async fn claim_email(
        &self,
        email: &Email,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        timed("scylla", "claim_email", async {
            let Some(due) = email.next_attempt_at else {
                return Ok(false);
            };
            let values = (ttl(email), until, email.id.as_str(), now, due);
            self.claim(&self.email.claim, values).await
        })
        .await
    }

    async fn get_visitor_mail(
        &self,
        project: &ProjectId,
        slug: &Slug,
    ) -> StoreResult<Option<VisitorMail>> {
        timed(
            "scylla",
            "get_visitor_mail",
            self.visitor_row(project.as_str(), slug.as_str()),
        )
        .await
    }

    /// With an email, the record and the email are one logged batch; the due entries follow,
    /// as for the outbox's emails.
    async fn put_visitor_mail(
        &self,
        mail: &VisitorMail,
        was_due: Option<DateTime<Utc>>,
        email: Option<&Email>,
    ) -> StoreResult<()> {
        timed("scylla", "put_visitor_mail", async {
            let (project, slug) = (mail.project_id.as_str(), mail.slug.as_str());
            let body = serde_json::to_string(mail).map_err(internal)?;
            let record = (project, slug, body, mail.due_at);
            // Every node composes the bursts that come due, so two may write one burst's
            // email: only the first goes in (a lightweight transaction), so an email already
            // sent is never put back in the queue. The record follows; a crash between the two
            // leaves the record due, and the next composer finds the email made and only moves
            // the record on.
            if let Some(e) = email {
                self.create_email_row(e).await?;
            }
            self.write(&self.email.upsert_visitor, record).await?;
            let s = visitor_shard(&mail.project_id, &mail.slug);
            if let Some(at) = mail.due_at {
                self.write(&self.email.insert_visitor_due, (s, at, project, slug))
                    .await?;
            }
            if let Some(was) = was_due.filter(|was| !same_ms(mail.due_at, *was)) {
                self.write(&self.email.delete_visitor_due, (s, was, project, slug))
                    .await?;
            }
            Ok(())
        })
        .await
    }

    async fn due_visitor_mails(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<VisitorMail>> {
        timed(
            "scylla",
            "due_visitor_mails",
            self.due_visitor_rows(now, limit),
        )
        .await
    }

    /// A lightweight transaction, so of two nodes creating one email only one queues it;
    /// the due entry follows the row, as for the visitors' emails.
    async fn create_email(&self, email: &Email) -> StoreResult<bool> {
        timed("scylla", "create_email", self.create_email_row(email)).await
    }

    async fn get_notification_prefs(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
    ) -> StoreResult<Option<fleety_actors::agent_mail::NotificationPrefs>> {
        self.notification_prefs(project, member).await
    }

    async fn put_notification_prefs(
        &self,
        prefs: &fleety_actors::agent_mail::NotificationPrefs,
    ) -> StoreResult<()> {
        self.put_prefs(prefs).await
    }

    async fn list_notification_prefs(
        &self,
        project: &ProjectId,
    ) -> StoreResult<Vec<fleety_actors::agent_mail::NotificationPrefs>> {
        self.project_prefs(project).await
    }
}
