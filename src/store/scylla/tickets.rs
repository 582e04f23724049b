//! Tickets and what hangs off them: the ticket's row (`tickets`), its messages, its agents'
//! notes and its readers' cursors. The actor that owns a ticket writes them in batches
//! ([`TicketStore::submit`]); the listing's index is in [`super::listing`].

use std::sync::Arc;

use async_trait::async_trait;
use fleety_actors::domain::{
    Activity, Message, Note, Participant, ProjectId, ReadCursor, Slug, Ticket,
};
use fleety_actors::store::{
    timed, Done, MessageRange, StoreError, StoreResult, TicketPage, TicketQuery, TicketStore,
    TicketWrite,
};
use fleety_actors::webhook::Delivery;
use fleety_actors::MessageId;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlTimeuuid;

use super::rows::{
    CursorRow, CursorValues, MessageRow, MessageValues, NoteRow, NoteValues, TicketChange,
    TicketRow, TicketValues,
};
use super::{prepare, BoxedWrite, ScyllaStore, LIST_DEADLINE};

const TICKET_COLUMNS: &str =
    "project_id, slug, id, title, description, status, source, session_id, created_at, updated_at, assignee, tags, visitor_name, visitor_email, assignee_member_id, assignee_member_name, assignee_member_avatar_url, satisfaction_score, satisfaction_comment, satisfaction_at, contact, visitor_email_unverified";

pub(super) struct Statements {
    insert_ticket: PreparedStatement,
    update_ticket: PreparedStatement,
    select_ticket: PreparedStatement,
    insert_message: PreparedStatement,
    delete_message: PreparedStatement,
    select_messages_asc: PreparedStatement,
    select_messages_desc: PreparedStatement,
    insert_note: PreparedStatement,
    select_notes: PreparedStatement,
    insert_activity: PreparedStatement,
    select_activity: PreparedStatement,
    upsert_cursor: PreparedStatement,
    select_cursors: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String, idempotent| prepare(session, consistency, cql, idempotent);
        Ok(Self {
            insert_ticket: p(format!("INSERT INTO {ks}.tickets ({TICKET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            // Conditional on the stored version: equal writes again, older is refused. Retrying
            // it is harmless, hence idempotent.
            update_ticket: p(format!("UPDATE {ks}.tickets SET title = ?, description = ?, status = ?, source = ?, session_id = ?, updated_at = ?, assignee = ?, tags = ?, assignee_member_id = ?, assignee_member_name = ?, assignee_member_avatar_url = ?, satisfaction_score = ?, satisfaction_comment = ?, satisfaction_at = ?, visitor_name = ?, visitor_email = ?, visitor_email_unverified = ? WHERE project_id = ? AND slug = ? IF updated_at <= ?"), true).await?,
            select_ticket: p(format!("SELECT {TICKET_COLUMNS} FROM {ks}.tickets WHERE project_id = ? AND slug = ?"), true).await?,
            insert_message: p(format!("INSERT INTO {ks}.messages (project_id, slug, message_id, author, content, idempotency_key, agent_id, agent_name, agent_avatar_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"), true).await?,
            delete_message: p(format!("DELETE FROM {ks}.messages WHERE project_id = ? AND slug = ? AND message_id = ?"), true).await?,
            select_messages_asc: p(format!("SELECT message_id, author, content, idempotency_key, agent_id, agent_name, agent_avatar_url FROM {ks}.messages WHERE project_id = ? AND slug = ? AND message_id > ? AND message_id < ? LIMIT ?"), true).await?,
            select_messages_desc: p(format!("SELECT message_id, author, content, idempotency_key, agent_id, agent_name, agent_avatar_url FROM {ks}.messages WHERE project_id = ? AND slug = ? AND message_id > ? AND message_id < ? ORDER BY message_id DESC LIMIT ?"), true).await?,
            insert_note: p(format!("INSERT INTO {ks}.ticket_notes (project_id, slug, note_id, author, content, created_at) VALUES (?, ?, ?, ?, ?, ?)"), true).await?,
            select_notes: p(format!("SELECT note_id, author, content, created_at FROM {ks}.ticket_notes WHERE project_id = ? AND slug = ?"), true).await?,
            insert_activity: p(format!("INSERT INTO {ks}.ticket_activity (project_id, slug, activity_id, body) VALUES (?, ?, ?, ?)"), true).await?,
            select_activity: p(format!("SELECT activity_id, body FROM {ks}.ticket_activity WHERE project_id = ? AND slug = ?"), true).await?,
            upsert_cursor: p(format!("INSERT INTO {ks}.read_cursors (project_id, slug, reader, up_to) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            select_cursors: p(format!("SELECT reader, up_to FROM {ks}.read_cursors WHERE project_id = ? AND slug = ?"), true).await?,
        })
    }
}

impl ScyllaStore {
    async fn insert_message(
        &self,
        project: &ProjectId,
        slug: &Slug,
        m: &Message,
    ) -> StoreResult<()> {
        let values = MessageValues::new(project, slug, m);
        self.write(&self.tickets.insert_message, values).await
    }

    async fn insert_note(&self, project: &ProjectId, slug: &Slug, n: &Note) -> StoreResult<()> {
        let values = NoteValues::new(project, slug, n);
        self.write(&self.tickets.insert_note, values).await
    }

    async fn insert_activity(
        &self,
        project: &ProjectId,
        slug: &Slug,
        a: &Activity,
    ) -> StoreResult<()> {
        let body = serde_json::to_string(a).map_err(|e| StoreError::Internal(e.to_string()))?;
        let id = CqlTimeuuid::from(a.id.as_uuid());
        let values = (project.as_str(), slug.as_str(), id, body);
        self.write(&self.tickets.insert_activity, values).await
    }

    /// The write's own timestamp is the message's: the newest cursor wins by itself.
    async fn upsert_cursor(
        &self,
        project: &ProjectId,
        slug: &Slug,
        reader: Participant,
        up_to: MessageId,
    ) -> StoreResult<()> {
        let values = CursorValues::new(project, slug, reader, up_to);
        self.write(&self.tickets.upsert_cursor, values).await
    }

    /// A ticket row change, unless the stored row is newer (see [`TicketStore::submit`]): one
    /// lightweight transaction decides, so a late write from a node that lost the ticket
    /// cannot land between the check and the write. The ticket is created the same way, so
    /// its row only ever changes through Paxos.
    async fn update_ticket(&self, t: &Ticket) -> StoreResult<()> {
        if !self
            .claim(&self.tickets.update_ticket, TicketChange::from(t))
            .await?
        {
            // Refused: either there is no such ticket (an UPDATE never creates one) or a newer
            // version is stored, which this one must not undo; its listing entry stays too.
            return match self.get_ticket(&t.project_id, &t.slug).await? {
                None => Err(StoreError::NotFound),
                Some(stored) => {
                    // Expected of a node that lost the ticket; from its owner it would mean the
                    // owner started from a stale row, so it is worth a line either way.
                    tracing::warn!(
                        project = %t.project_id.as_str(),
                        slug = %t.slug.as_str(),
                        version = %t.updated_at,
                        stored = %stored.updated_at,
                        "a ticket change older than the stored row was not written"
                    );
                    Ok(())
                }
            };
        }
        self.index_rows(t).await
    }

    /// Messages, cursors and audit records of a batch are independent rows and go out
    /// concurrently; ticket updates follow, in order, so a status change never lands before
    /// its audit record. Everything is idempotent, so a failed batch may be retried.
    async fn apply(
        &self,
        project: &ProjectId,
        slug: &Slug,
        writes: &[TicketWrite],
    ) -> StoreResult<()> {
        let rows = writes.iter().filter_map(|w| -> Option<BoxedWrite<'_>> {
            match w {
                TicketWrite::Message(m) => Some(Box::pin(self.insert_message(project, slug, m))),
                TicketWrite::ReadCursor { reader, up_to } => {
                    Some(Box::pin(self.upsert_cursor(project, slug, *reader, *up_to)))
                }
                TicketWrite::Note(n) => Some(Box::pin(self.insert_note(project, slug, n))),
                TicketWrite::Activity(a) => Some(Box::pin(self.insert_activity(project, slug, a))),
                TicketWrite::Delivery(d) => Some(Box::pin(self.put_delivery_rows(d, None))),
                TicketWrite::Audit(r) => Some(Box::pin(self.insert_audit(r))),
                TicketWrite::Ticket(_) => None,
            }
        });
        for result in futures_util::future::join_all(rows).await {
            result?;
        }
        for w in writes {
            if let TicketWrite::Ticket(t) = w {
                self.update_ticket(t).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TicketStore for ScyllaStore {
    /// The rows of a new ticket live in several partitions (the ticket, its listing entry, its
    /// messages, the deliveries), which no CQL write makes atomic; a logged batch would only
    /// promise that all of them land eventually, not when, and it cannot hold the ticket's
    /// lightweight transaction. So the order makes it safe: everything that hangs off the
    /// ticket is written first, and the ticket row, claimed with `IF NOT EXISTS`, last. Until
    /// the claim the ticket cannot be read, and once it can, its whole history is there. A
    /// crash or a failure before the claim leaves rows that nothing serves: the listing skips
    /// an entry whose ticket is missing, the dispatcher drops an announcement of a ticket that
    /// never came, and no ticket holds the slug the history was written under (a later ticket
    /// would have to draw that very slug, one chance in about 2^30, to show it).
    async fn create_ticket_with_history(
        &self,
        t: &Ticket,
        messages: &[Message],
        deliveries: &[Delivery],
    ) -> StoreResult<()> {
        timed("scylla", "create_ticket", async {
            let (project, slug) = (&t.project_id, &t.slug);
            // A history must not land in the partition of a ticket that already has the slug.
            // The claim below still decides: two creations that draw one slug at once both
            // pass this look, and the loser takes its messages back.
            if !messages.is_empty() && self.get_ticket(project, slug).await?.is_some() {
                return Err(StoreError::Conflict);
            }
            self.index_rows(t).await?;
            self.contact_ticket_row(t).await?;
            let announce = deliveries
                .iter()
                .map(|d| -> BoxedWrite<'_> { Box::pin(self.put_delivery_rows(d, None)) });
            let history = messages
                .iter()
                .map(|m| -> BoxedWrite<'_> { Box::pin(self.insert_message(project, slug, m)) });
            for result in futures_util::future::join_all(announce.chain(history)).await {
                result?;
            }
            if !self
                .claim(&self.tickets.insert_ticket, TicketValues::from(t))
                .await?
            {
                // Best effort: the dispatcher's check covers an announcement left behind. A
                // message is left in the other ticket only if two creations drew one slug at
                // the same moment and its take-back failed too.
                for d in deliveries {
                    let _ = self.delete_new_delivery(d).await;
                }
                for m in messages {
                    let key = (
                        project.as_str(),
                        slug.as_str(),
                        CqlTimeuuid::from(m.id.as_uuid()),
                    );
                    let _ = self.write(&self.tickets.delete_message, key).await;
                }
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
        .await
    }

    async fn get_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Option<Ticket>> {
        timed("scylla", "get_ticket", async {
            let key = (project.as_str(), slug.as_str());
            self.one_row::<TicketRow>(&self.tickets.select_ticket, key)
                .await?
                .map(Ticket::try_from)
                .transpose()
        })
        .await
    }

    async fn list_tickets(
        &self,
        project: &ProjectId,
        query: &TicketQuery,
    ) -> StoreResult<TicketPage> {
        timed("scylla", "list_tickets", async {
            // A listing walks pages and does point reads; bound the whole of it, not each step.
            tokio::time::timeout(LIST_DEADLINE, self.list_tickets_within(project, query))
                .await
                .map_err(|_| StoreError::Unavailable("listing tickets took too long".into()))?
        })
        .await
    }

    async fn list_messages(
        &self,
        project: &ProjectId,
        slug: &Slug,
        range: MessageRange,
    ) -> StoreResult<Vec<Message>> {
        timed("scylla", "list_messages", async {
            if range.limit == 0 {
                return Ok(Vec::new());
            }
            let after = range.after.unwrap_or(MessageId::MIN);
            let before = range.before.unwrap_or(MessageId::MAX);
            let st = if range.newest {
                &self.tickets.select_messages_desc
            } else {
                &self.tickets.select_messages_asc
            };
            let limit = i32::try_from(range.limit).unwrap_or(i32::MAX);
            let values = (
                project.as_str(),
                slug.as_str(),
                CqlTimeuuid::from(after.as_uuid()),
                CqlTimeuuid::from(before.as_uuid()),
                limit,
            );
            let rows: Vec<MessageRow> = self.all_rows(st, values).await?;
            let mut out = rows
                .into_iter()
                .map(Message::try_from)
                .collect::<StoreResult<Vec<_>>>()?;
            if range.newest {
                out.reverse();
            }
            Ok(out)
        })
        .await
    }

    async fn list_notes(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Note>> {
        timed("scylla", "list_notes", async {
            let key = (project.as_str(), slug.as_str());
            let rows: Vec<NoteRow> = self.all_rows(&self.tickets.select_notes, key).await?;
            rows.into_iter().map(Note::try_from).collect()
        })
        .await
    }

    async fn list_activity(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Activity>> {
        timed("scylla", "list_activity", async {
            let key = (project.as_str(), slug.as_str());
            let rows: Vec<(CqlTimeuuid, String)> =
                self.all_rows(&self.tickets.select_activity, key).await?;
            rows.into_iter()
                .map(|(_, body)| {
                    serde_json::from_str(&body).map_err(|e| {
                        StoreError::Internal(format!("corrupt ticket_activity row: {e}"))
                    })
                })
                .collect()
        })
        .await
    }

    async fn read_cursors(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<ReadCursor>> {
        timed("scylla", "read_cursors", async {
            let key = (project.as_str(), slug.as_str());
            let rows: Vec<CursorRow> = self.all_rows(&self.tickets.select_cursors, key).await?;
            rows.into_iter().map(ReadCursor::try_from).collect()
        })
        .await
    }

    fn submit(
        self: Arc<Self>,
        project: ProjectId,
        slug: Slug,
        writes: Vec<TicketWrite>,
        done: Done,
    ) {
        tokio::spawn(async move {
            let apply = self.apply(&project, &slug, &writes);
            done(timed("scylla", "apply", apply).await);
        });
    }

    async fn erase_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<bool> {
        timed("scylla", "erase_ticket", self.erase(project, slug)).await
    }

    async fn put_erasure(&self, erasure: &fleety_actors::store::Erasure) -> StoreResult<()> {
        timed("scylla", "put_erasure", self.put_erasure_row(erasure)).await
    }

    async fn delete_erasure(&self, project: &ProjectId, slug: &Slug) -> StoreResult<()> {
        timed(
            "scylla",
            "delete_erasure",
            self.delete_erasure_row(project, slug),
        )
        .await
    }

    async fn pending_erasures(&self) -> StoreResult<Vec<fleety_actors::store::Erasure>> {
        timed("scylla", "pending_erasures", self.erasure_rows()).await
    }
}
