//! The embedded store: one redb file plus a write-ahead log in the data directory; the default
//! backend.
//!
//! A write is acknowledged once its group's record is in the log and synced; redb is brought up
//! to date behind it and made durable every 100 ms or so (a checkpoint). Opening the store
//! replays the log records newer than redb's last checkpoint. [`pipeline`] owns the write path,
//! [`wal`] the log format and files, [`tables`] the row layout.
//!
//! Reads run concurrently on the blocking pool, once redb holds every write acknowledged before
//! the read began.

mod notifications;
mod pipeline;
mod rewrite;
mod tables;
mod wal;

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleety_actors::audit::{AuditPage, AuditQuery, AuditRecord};
use fleety_actors::canned::{CannedConflict, CannedReply};
use fleety_actors::contact::{order_key, Contact, ContactPage, ContactQuery};
use fleety_actors::domain::{
    Activity, Article, ChatConversation, ChatTurn, ChatUsage, Message, Note, OutcomeCounts,
    Participant, Project, ProjectId, ReadCursor, Slug, Ticket,
};
use fleety_actors::email::Email;
use fleety_actors::member::{ApiToken, Member, MemberLink, MemberSession, MemberTotp};
use fleety_actors::store::{
    canned_conflict, timed, AuditStore, CannedStore, ChatStore, Claims, ContactStore, Done,
    EmailStore, InboundMailStore, KbStore, MemberStore, MessageRange, ProjectStore, Store,
    StoreError, StoreResult, TicketCursor, TicketPage, TicketQuery, TicketStore, TicketWrite,
    UnansweredStore, WebhookStore,
};
use fleety_actors::telemetry;
use fleety_actors::unanswered::{self, Asked, UnansweredQuestion};
use fleety_actors::visitor_mail::VisitorMail;
use fleety_actors::webhook::{Delivery, Endpoint};
use fleety_actors::MessageId;
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{oneshot, watch};

pub use pipeline::ApplyTiming;
use pipeline::{Nudger, Reply, Shared, Write};
use tables::{
    cursor_id, from_json, internal, Tables, ACTIVITY, API_TOKENS, ARTICLES, AUDIT, CANNED,
    CHAT_CONVERSATIONS, CHAT_TURNS, CHECKPOINT_KEY, CONTACTS, CONTACT_TICKETS, DELIVERIES,
    DELIVERIES_DUE, EMAILS, EMAILS_DUE, INBOUND_MAIL, MEMBERS, MEMBER_EMAILS, MEMBER_LINKS,
    MEMBER_SESSIONS, MEMBER_TOTP, MESSAGES, META, NOTES, PROJECTS, READ_CURSORS, TICKETS,
    TICKETS_BY_TIME, UNANSWERED, VISITOR_MAILS, VISITOR_MAILS_DUE, WEBHOOKS,
};

pub struct EmbeddedStore {
    db: Arc<rewrite::DbCell>,
    writer: Option<std_mpsc::Sender<pipeline::Queued>>,
    /// Wakes the applier for a reader; `None` only while dropping.
    nudger: Option<Nudger>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    /// The newest group redb holds.
    applied: watch::Receiver<u64>,
    claims: Claims,
    /// Counting an unanswered question reads its entry and writes it back: one at a time, so
    /// no asking is lost between the read and the write.
    unanswered: tokio::sync::Mutex<()>,
    /// Saving a canned reply checks the project's others (the cap, the shortcut) and then
    /// writes: one at a time, so no two saves decide on the same state.
    canned: tokio::sync::Mutex<()>,
}

/// Closing the queue lets the stages finish their last groups, checkpoint and exit; joining
/// them means the file lock is released when the store is dropped, so a restart in the same
/// process can reopen it.
impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.nudger.take();
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) `fleety.redb` and the log directory `wal/` in `dir`, replaying what
    /// the log holds beyond redb's last checkpoint.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Self::open_with(dir, ApplyTiming::default())
    }

    /// [`open`](Self::open) with the applier's timing given.
    pub fn open_with(dir: &Path, timing: ApplyTiming) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
        let path = dir.join("fleety.redb");
        rewrite::recover_files(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot finish an interrupted rewrite of {}: {e}",
                path.display()
            )
        })?;
        let db = Database::create(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        // Create every table up front so readers never meet a missing one.
        let txn = db.begin_write()?;
        Tables::open(&txn)
            .and_then(|mut t| t.index_stored_emails())
            .map_err(anyhow::Error::msg)?;
        txn.commit()?;

        let wal_dir = dir.join("wal");
        let last = recover(&db, &wal_dir)?;
        let log = wal::Log::start(&wal_dir, last + 1)
            .map_err(|e| anyhow::anyhow!("cannot start the log in {}: {e}", wal_dir.display()))?;
        let db = rewrite::DbCell::new(db);
        let pipeline = pipeline::start(db.clone(), path, log, last, timing)?;
        Ok(Self {
            db,
            writer: Some(pipeline.writer),
            nudger: Some(pipeline.nudger),
            thread: Some(pipeline.thread),
            shared: pipeline.shared,
            applied: pipeline.applied,
            claims: Claims::default(),
            unanswered: tokio::sync::Mutex::new(()),
            canned: tokio::sync::Mutex::new(()),
        })
    }

    /// Queues `write` for the writer thread, which calls `reply` with the outcome.
    fn send(&self, write: Write, reply: Reply) {
        self.send_audited(write, None, reply)
    }

    /// Queues `write` with the audit record of its change: both go in one log record.
    fn send_audited(&self, write: Write, audit: Option<AuditRecord>, reply: Reply) {
        let Some(writer) = &self.writer else {
            return reply(Err(StoreError::Unavailable("store is closed".into())));
        };
        if let Err(std_mpsc::SendError((_, _, reply))) = writer.send((write, audit, reply)) {
            reply(Err(StoreError::Unavailable(
                "store writer has stopped".into(),
            )));
        }
    }

    async fn write(&self, operation: &'static str, write: Write) -> StoreResult<()> {
        timed("embedded", operation, self.write_untimed(write)).await
    }

    /// [`write`](Self::write) of a change that carries the pending audit record
    /// ([`fleety_actors::audit::recorded`]).
    async fn audited(&self, operation: &'static str, write: Write) -> StoreResult<()> {
        let audit = fleety_actors::audit::take();
        timed("embedded", operation, self.write_with(write, audit)).await
    }

    async fn write_untimed(&self, write: Write) -> StoreResult<()> {
        self.write_with(write, None).await
    }

    async fn write_with(&self, write: Write, audit: Option<AuditRecord>) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.send_audited(
            write,
            audit,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    /// Every row of one ticket in a table keyed by (project, slug, sequence), in order, decoded
    /// from JSON: its notes, its timeline.
    async fn ticket_rows<T>(
        &self,
        operation: &'static str,
        table: redb::TableDefinition<'static, (&'static str, &'static str, u64), &'static [u8]>,
        project: &ProjectId,
        slug: &Slug,
    ) -> StoreResult<Vec<T>>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let (project, slug) = (project.clone(), slug.clone());
        self.read(operation, move |txn| {
            let table = txn.open_table(table).map_err(internal)?;
            let (p, s) = (project.as_str(), slug.as_str());
            let mut out = Vec::new();
            for row in table
                .range::<(&str, &str, u64)>((p, s, 0)..=(p, s, u64::MAX))
                .map_err(internal)?
            {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json::<T>(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// Every row of `project` in a table keyed by (project, id), decoded from JSON. The ids
    /// (UUIDs in hex-and-dash form, or lowercase hex) sort between "" and "~".
    /// One row of a table keyed by project and id.
    async fn project_row<T>(
        &self,
        operation: &'static str,
        table: redb::TableDefinition<'static, (&'static str, &'static str), &'static [u8]>,
        project: &ProjectId,
        id: String,
    ) -> StoreResult<Option<T>>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let project = project.clone();
        self.read(operation, move |txn| {
            let table = txn.open_table(table).map_err(internal)?;
            let row = table
                .get((project.as_str(), id.as_str()))
                .map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    /// One row of a table keyed by project, owner (a webhook endpoint, a member) and id.
    async fn owned_row<T>(
        &self,
        operation: &'static str,
        table: redb::TableDefinition<
            'static,
            (&'static str, &'static str, &'static str),
            &'static [u8],
        >,
        [project, owner, id]: [String; 3],
    ) -> StoreResult<Option<T>>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        self.read(operation, move |txn| {
            let table = txn.open_table(table).map_err(internal)?;
            let row = table
                .get((project.as_str(), owner.as_str(), id.as_str()))
                .map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn project_rows<T>(
        &self,
        operation: &'static str,
        table: redb::TableDefinition<'static, (&'static str, &'static str), &'static [u8]>,
        project: &ProjectId,
    ) -> StoreResult<Vec<T>>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let project = project.clone();
        self.read(operation, move |txn| {
            let table = txn.open_table(table).map_err(internal)?;
            let p = project.as_str();
            let mut out = Vec::new();
            for row in table
                .range::<(&str, &str)>((p, "")..(p, "~"))
                .map_err(internal)?
            {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json::<T>(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn read<T, F>(&self, operation: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        timed("embedded", operation, self.read_untimed(f)).await
    }

    async fn read_untimed<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        // Every write acknowledged before this read began must be in what it reads.
        let acknowledged = self.shared.durable();
        if *self.applied.borrow() < acknowledged {
            if let Some(nudger) = &self.nudger {
                nudger.nudge(acknowledged);
            }
            self.applied
                .clone()
                .wait_for(|applied| *applied >= acknowledged)
                .await
                .map_err(|_| pipeline::store_failed())?;
        }
        let db = self.db.get();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(internal)?;
            f(&txn)
        })
        .await
        .map_err(internal)?
    }
}

/// Replays the log records newer than redb's checkpoint, makes the result durable, and returns
/// the newest group now held.
fn recover(db: &Database, wal_dir: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(wal_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", wal_dir.display()))?;
    let checkpoint = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let value = meta.get(CHECKPOINT_KEY)?.map(|v| v.value());
        value.unwrap_or(0)
    };
    let segments = wal::segments(wal_dir)?;
    let (mut last, mut replayed) = (checkpoint, 0usize);
    let txn = db.begin_write()?;
    {
        let mut tables = Tables::open(&txn).map_err(anyhow::Error::msg)?;
        let mut files = Vec::with_capacity(segments.len());
        for (first, path) in &segments {
            let bytes = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            files.push((*first, path, bytes));
        }
        // The first group each segment holds, which an older segment's records must reach, and
        // the length its header gives the segment before it.
        let heads: Vec<(Option<u64>, Option<u64>)> = files
            .iter()
            .map(|(first, _, bytes)| {
                let mut records = wal::segment(bytes, *first);
                (records.next().map(|r| r.seq), records.previous())
            })
            .collect();
        for (i, (first, path, bytes)) in files.iter().enumerate() {
            let mut records = wal::segment(bytes, *first);
            let mut newest_here = None;
            for record in records.by_ref() {
                newest_here = Some(record.seq);
                if record.seq <= checkpoint {
                    continue;
                }
                if record.seq <= last {
                    // Sequence numbers only grow; anything after this is not ours to trust.
                    tracing::warn!(segment = %path.display(), seq = record.seq, "log sequence went back; ignoring the rest of the segment");
                    break;
                }
                for op in record.ops()? {
                    tables.apply(&op).map_err(anyhow::Error::msg)?;
                }
                (last, replayed) = (record.seq, replayed + 1);
            }
            // After the newest record come older groups' records (the file is reused) or the
            // tail a crash tore mid-append, which was never acknowledged.
            tracing::debug!(segment = %path.display(), bytes = records.rest(), "end of the log");
            // A later segment that holds no record (a file just renamed for rotation, or one
            // never written) cannot show that anything is missing here, and only the header of
            // the segment right after this one, written when this one was left, gives its end.
            let next = heads[i + 1..].iter().find_map(|(first, _)| *first);
            if let Some(next) = next {
                let end = match heads.get(i + 1) {
                    Some((Some(_), Some(end))) => *end,
                    _ => wal::SEGMENT_BYTES,
                };
                if wal::ends_early(records.read(), end, newest_here, next, checkpoint) {
                    anyhow::bail!(
                        "write-ahead log segment {} is damaged at byte {}: groups after it \
                         were acknowledged but cannot be read, and replaying past them would \
                         lose them silently. Restore the data directory from a backup, or move \
                         this file out of {} to start without them.",
                        path.display(),
                        records.offset(),
                        wal_dir.display()
                    );
                }
            }
        }
        tables
            .meta
            .insert(CHECKPOINT_KEY, last)
            .map_err(anyhow::Error::msg)?;
    }
    txn.commit()?;
    if replayed > 0 {
        tracing::info!(
            groups = replayed,
            "replayed the write-ahead log after an unclean stop"
        );
    }
    Ok(last)
}

#[async_trait]
impl ProjectStore for EmbeddedStore {
    async fn create_project(&self, project: &Project) -> StoreResult<()> {
        let create = Write::Project {
            project: project.clone(),
            create: true,
        };
        self.write("create_project", create).await
    }

    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        let id = id.clone();
        self.read("get_project", move |txn| {
            let table = txn.open_table(PROJECTS).map_err(internal)?;
            let row = table.get(id.as_str()).map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn update_project(&self, project: &Project) -> StoreResult<()> {
        let update = Write::Project {
            project: project.clone(),
            create: false,
        };
        self.audited("update_project", update).await
    }

    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        self.read("list_projects", |txn| {
            let table = txn.open_table(PROJECTS).map_err(internal)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(internal)? {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl TicketStore for EmbeddedStore {
    async fn create_ticket_with_history(
        &self,
        ticket: &Ticket,
        messages: &[Message],
        deliveries: &[Delivery],
    ) -> StoreResult<()> {
        let write = Write::CreateTicket {
            ticket: ticket.clone(),
            messages: messages.to_vec(),
            deliveries: deliveries.to_vec(),
        };
        self.write("create_ticket", write).await
    }

    async fn get_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Option<Ticket>> {
        let (project, slug) = (project.clone(), slug.clone());
        self.read("get_ticket", move |txn| {
            let table = txn.open_table(TICKETS).map_err(internal)?;
            let row = table
                .get((project.as_str(), slug.as_str()))
                .map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn list_tickets(
        &self,
        project: &ProjectId,
        query: &TicketQuery,
    ) -> StoreResult<TicketPage> {
        let project = project.clone();
        let query = query.clone();
        self.read("list_tickets", move |txn| {
            let limit = query.limit.clamp(1, 100);
            let by_time = txn.open_table(TICKETS_BY_TIME).map_err(internal)?;
            let tickets = txn.open_table(TICKETS).map_err(internal)?;
            let p = project.as_str();
            let upper = match &query.after {
                Some(c) => {
                    std::ops::Bound::Excluded((p, c.created_at.timestamp_millis(), c.slug.as_str()))
                }
                None => std::ops::Bound::Included((p, i64::MAX, "")),
            };
            let lower = std::ops::Bound::Included((p, i64::MIN, ""));
            let (scan, mut stopped_at) = (query.scan_limit(), None);
            let mut out = Vec::with_capacity(limit + 1);
            let rows = by_time
                .range::<(&str, i64, &str)>((lower, upper))
                .map_err(internal)?
                .rev();
            for (examined, row) in rows.enumerate() {
                if examined == scan {
                    break;
                }
                let (key, status) = row.map_err(internal)?;
                let (_, created_ms, slug) = key.value();
                if examined + 1 == scan {
                    stopped_at = Slug::parse(slug).ok().and_then(|slug| {
                        let created_at = chrono::DateTime::from_timestamp_millis(created_ms)?;
                        Some(TicketCursor { created_at, slug })
                    });
                }
                if query.status.is_some_and(|s| status.value() != s.as_str()) {
                    continue;
                }
                let Some(raw) = tickets.get((p, slug)).map_err(internal)? else {
                    continue;
                };
                let ticket = from_json::<Ticket>(raw.value())?;
                if query.matches(&ticket) {
                    out.push(ticket);
                    if out.len() > limit {
                        break;
                    }
                }
            }
            Ok(TicketPage::scanned(out, limit, stopped_at))
        })
        .await
    }

    async fn list_messages(
        &self,
        project: &ProjectId,
        slug: &Slug,
        range: MessageRange,
    ) -> StoreResult<Vec<Message>> {
        let (project, slug) = (project.clone(), slug.clone());
        self.read("list_messages", move |txn| {
            let table = txn.open_table(MESSAGES).map_err(internal)?;
            let (p, s) = (project.as_str(), slug.as_str());
            let lower = match range.after {
                Some(id) => std::ops::Bound::Excluded((p, s, id.ticks())),
                None => std::ops::Bound::Included((p, s, 0)),
            };
            let upper = match range.before {
                Some(id) => std::ops::Bound::Excluded((p, s, id.ticks())),
                None => std::ops::Bound::Included((p, s, u64::MAX)),
            };
            let rows = table
                .range::<(&str, &str, u64)>((lower, upper))
                .map_err(internal)?;
            let mut out = Vec::new();
            let mut push = |row: Result<
                (
                    redb::AccessGuard<'_, (&str, &str, u64)>,
                    redb::AccessGuard<'_, &[u8]>,
                ),
                redb::StorageError,
            >|
             -> StoreResult<()> {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json::<Message>(v.value())?);
                Ok(())
            };
            if range.newest {
                for row in rows.rev().take(range.limit) {
                    push(row)?;
                }
                out.reverse();
            } else {
                for row in rows.take(range.limit) {
                    push(row)?;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn read_cursors(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<ReadCursor>> {
        let (project, slug) = (project.clone(), slug.clone());
        self.read("read_cursors", move |txn| {
            let table = txn.open_table(READ_CURSORS).map_err(internal)?;
            let mut out = Vec::new();
            for reader in Participant::ALL {
                let row = table
                    .get((project.as_str(), slug.as_str(), reader.as_str()))
                    .map_err(internal)?;
                if let Some(id) = row.and_then(|v| cursor_id(v.value())) {
                    out.push(ReadCursor { reader, up_to: id });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_notes(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Note>> {
        self.ticket_rows("list_notes", NOTES, project, slug).await
    }

    async fn list_activity(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Activity>> {
        self.ticket_rows("list_activity", ACTIVITY, project, slug)
            .await
    }

    /// Straight to the writer thread, which calls `done` itself once the batch is in the log.
    fn submit(
        self: Arc<Self>,
        project: ProjectId,
        slug: Slug,
        writes: Vec<TicketWrite>,
        done: Done,
    ) {
        let started = std::time::Instant::now();
        let write = Write::Ticket {
            project,
            slug,
            writes,
        };
        self.send(
            write,
            Box::new(move |result| {
                telemetry::store_call("embedded", "apply", started, result.is_ok());
                done(result);
            }),
        );
    }

    async fn erase_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<bool> {
        let existed = self.get_ticket(project, slug).await?.is_some();
        let erase = Write::EraseTicket {
            project: project.clone(),
            slug: slug.clone(),
        };
        self.write("erase_ticket", erase).await?;
        // Every read after this misses the ticket; the scrub then takes its words out of the
        // files. Done for an erasure that found nothing too: a retry after a crash between the
        // two must still scrub.
        self.write("scrub", Write::Scrub).await?;
        Ok(existed)
    }

    async fn erase_tickets(&self, project: &ProjectId, slugs: &[Slug]) -> StoreResult<usize> {
        let mut existed = 0;
        for slug in slugs {
            existed += usize::from(self.get_ticket(project, slug).await?.is_some());
            let erase = Write::EraseTicket {
                project: project.clone(),
                slug: slug.clone(),
            };
            self.write("erase_ticket", erase).await?;
        }
        // One scrub for all of them: it takes out of the files everything erased so far.
        self.write("scrub", Write::Scrub).await?;
        Ok(existed)
    }

    async fn put_erasure(&self, erasure: &fleety_actors::store::Erasure) -> StoreResult<()> {
        self.write("put_erasure", Write::PutErasure(erasure.clone()))
            .await
    }

    async fn delete_erasure(&self, project: &ProjectId, slug: &Slug) -> StoreResult<()> {
        let delete = Write::DeleteErasure {
            project: project.clone(),
            slug: slug.clone(),
        };
        self.write("delete_erasure", delete).await
    }

    async fn pending_erasures(&self) -> StoreResult<Vec<fleety_actors::store::Erasure>> {
        self.read("pending_erasures", move |txn| {
            let table = txn.open_table(tables::ERASURES).map_err(internal)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(internal)? {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl ChatStore for EmbeddedStore {
    async fn append_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        turns: &[ChatTurn],
    ) -> StoreResult<()> {
        self.write(
            "append_chat_turns",
            Write::ChatTurns {
                project: project.clone(),
                session: session.to_owned(),
                turns: turns.to_vec(),
            },
        )
        .await
    }

    async fn list_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        limit: usize,
    ) -> StoreResult<Vec<ChatTurn>> {
        let (project, session) = (project.clone(), session.to_owned());
        self.read("list_chat_turns", move |txn| {
            let table = txn.open_table(CHAT_TURNS).map_err(internal)?;
            let (p, s) = (project.as_str(), session.as_str());
            let rows = table
                .range::<(&str, &str, u64)>((p, s, 0)..=(p, s, u64::MAX))
                .map_err(internal)?;
            let mut out = Vec::new();
            for row in rows.rev().take(limit) {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json::<ChatTurn>(v.value())?);
            }
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn chat_session_usage(
        &self,
        project: &ProjectId,
        session: &str,
    ) -> StoreResult<ChatUsage> {
        let (project, session) = (project.clone(), session.to_owned());
        self.read("chat_session_usage", move |txn| {
            let table = txn.open_table(CHAT_TURNS).map_err(internal)?;
            let (p, s) = (project.as_str(), session.as_str());
            let mut usage = ChatUsage::default();
            for row in table
                .range::<(&str, &str, u64)>((p, s, 0)..=(p, s, u64::MAX))
                .map_err(internal)?
            {
                let (_, v) = row.map_err(internal)?;
                usage.add(&from_json::<ChatTurn>(v.value())?);
            }
            Ok(usage)
        })
        .await
    }

    async fn chat_turn(
        &self,
        project: &ProjectId,
        session: &str,
        id: MessageId,
    ) -> StoreResult<Option<ChatTurn>> {
        let (project, session) = (project.clone(), session.to_owned());
        self.read("chat_turn", move |txn| {
            let table = txn.open_table(CHAT_TURNS).map_err(internal)?;
            let key = (project.as_str(), session.as_str(), id.ticks());
            match table.get(key).map_err(internal)? {
                Some(v) => Ok(Some(from_json::<ChatTurn>(v.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put_chat_conversation(
        &self,
        project: &ProjectId,
        conversation: &ChatConversation,
    ) -> StoreResult<()> {
        self.write(
            "put_chat_conversation",
            Write::ChatConversation {
                project: project.clone(),
                conversation: conversation.clone(),
            },
        )
        .await
    }

    async fn count_chat_outcomes(
        &self,
        project: &ProjectId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        ends_after: chrono::Duration,
    ) -> StoreResult<OutcomeCounts> {
        let project = project.clone();
        self.read("count_chat_outcomes", move |txn| {
            let mut counts = OutcomeCounts::default();
            if from >= to {
                return Ok(counts);
            }
            let table = txn.open_table(CHAT_CONVERSATIONS).map_err(internal)?;
            let p = project.as_str();
            let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
            // One row decoded at a time: the range may hold many conversations.
            for row in table
                .range::<(&str, i64, &str)>((p, from, "")..(p, to, ""))
                .map_err(internal)?
            {
                let (_, v) = row.map_err(internal)?;
                counts.add(&from_json::<ChatConversation>(v.value())?, now, ends_after);
            }
            Ok(counts)
        })
        .await
    }
}

#[async_trait]
impl KbStore for EmbeddedStore {
    async fn put_article(&self, article: &Article) -> StoreResult<()> {
        self.audited("put_article", Write::PutArticle(article.clone()))
            .await
    }

    async fn delete_article(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        self.audited(
            "delete_article",
            Write::DeleteArticle {
                project: project.clone(),
                id,
            },
        )
        .await
    }

    async fn list_articles(&self, project: &ProjectId) -> StoreResult<Vec<Article>> {
        self.project_rows("list_articles", ARTICLES, project).await
    }
}

impl EmbeddedStore {
    /// Every entry of a project's unanswered questions, in no particular order.
    async fn unanswered_of(&self, project: &ProjectId) -> StoreResult<Vec<UnansweredQuestion>> {
        self.project_rows("list_unanswered", UNANSWERED, project)
            .await
    }
}

#[async_trait]
impl UnansweredStore for EmbeddedStore {
    async fn record_unanswered(&self, project: &ProjectId, asked: &Asked) -> StoreResult<()> {
        let _one_at_a_time = self.unanswered.lock().await;
        let mut all = self.unanswered_of(project).await?;
        let before = all
            .iter()
            .position(|q| q.id == asked.id)
            .map(|i| all.swap_remove(i));
        let is_new = before.is_none();
        let entry = asked.apply(project, before);
        all.push(entry.clone());
        let delete = match is_new {
            true => unanswered::overflow(&all)
                .into_iter()
                .map(|id| (project.as_str().to_owned(), id))
                .collect(),
            false => Vec::new(),
        };
        let write = Write::Unanswered {
            put: vec![entry],
            delete,
        };
        self.write("record_unanswered", write).await
    }

    async fn list_unanswered(
        &self,
        project: &ProjectId,
        limit: usize,
    ) -> StoreResult<Vec<UnansweredQuestion>> {
        let mut all = self.unanswered_of(project).await?;
        unanswered::sort(&mut all);
        all.truncate(limit);
        Ok(all)
    }

    async fn dismiss_unanswered(&self, project: &ProjectId, id: &str) -> StoreResult<()> {
        let _one_at_a_time = self.unanswered.lock().await;
        if !self
            .unanswered_of(project)
            .await?
            .iter()
            .any(|q| q.id == id)
        {
            return Err(StoreError::NotFound);
        }
        let write = Write::Unanswered {
            put: Vec::new(),
            delete: vec![(project.as_str().to_owned(), id.to_owned())],
        };
        self.write("dismiss_unanswered", write).await
    }
}

#[async_trait]
impl CannedStore for EmbeddedStore {
    async fn create_canned_reply(
        &self,
        reply: &CannedReply,
        max: usize,
    ) -> StoreResult<Result<(), CannedConflict>> {
        let _one_at_a_time = self.canned.lock().await;
        let all = self.list_canned_replies(&reply.project_id).await?;
        if all.iter().any(|r| r.id == reply.id) {
            return Err(StoreError::Conflict);
        }
        if let Some(conflict) = canned_conflict(reply, &all, Some(max)) {
            return Ok(Err(conflict));
        }
        self.audited("create_canned_reply", Write::PutCanned(reply.clone()))
            .await
            .map(Ok)
    }

    async fn update_canned_reply(
        &self,
        reply: &CannedReply,
    ) -> StoreResult<Result<(), CannedConflict>> {
        let _one_at_a_time = self.canned.lock().await;
        let all = self.list_canned_replies(&reply.project_id).await?;
        if !all.iter().any(|r| r.id == reply.id) {
            return Err(StoreError::NotFound);
        }
        if let Some(conflict) = canned_conflict(reply, &all, None) {
            return Ok(Err(conflict));
        }
        self.audited("update_canned_reply", Write::PutCanned(reply.clone()))
            .await
            .map(Ok)
    }

    async fn delete_canned_reply(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        let _one_at_a_time = self.canned.lock().await;
        let all = self.list_canned_replies(project).await?;
        if !all.iter().any(|r| r.id == id) {
            return Err(StoreError::NotFound);
        }
        let write = Write::DeleteCanned {
            project: project.as_str().to_owned(),
            id: id.to_string(),
        };
        self.audited("delete_canned_reply", write).await
    }

    async fn list_canned_replies(&self, project: &ProjectId) -> StoreResult<Vec<CannedReply>> {
        self.project_rows("list_canned_replies", CANNED, project)
            .await
    }
}

#[async_trait]
impl WebhookStore for EmbeddedStore {
    async fn create_endpoint(&self, endpoint: &Endpoint, max: usize) -> StoreResult<()> {
        let write = Write::CreateWebhook {
            endpoint: endpoint.clone(),
            max,
        };
        self.audited("create_endpoint", write).await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()> {
        self.audited("update_endpoint", Write::PutWebhook(endpoint.clone()))
            .await
    }

    async fn delete_endpoint(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        let write = Write::DeleteWebhook {
            project: project.clone(),
            id,
        };
        self.audited("delete_endpoint", write).await
    }

    async fn list_endpoints(&self, project: &ProjectId) -> StoreResult<Vec<Endpoint>> {
        self.project_rows("list_endpoints", WEBHOOKS, project).await
    }

    async fn all_endpoints(&self) -> StoreResult<Vec<Endpoint>> {
        self.read("all_endpoints", |txn| {
            let table = txn.open_table(WEBHOOKS).map_err(internal)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(internal)? {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json::<Endpoint>(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// The old due entry is found from the stored row ([`tables`]); `was_due` only tells an
    /// attempt's outcome from a new delivery.
    async fn put_delivery(
        &self,
        delivery: &Delivery,
        was_due: Option<chrono::DateTime<chrono::Utc>>,
    ) -> StoreResult<()> {
        // A replay carries its audit record; the sender's own writes carry none.
        let write = Write::PutDelivery(delivery.clone(), was_due.is_some());
        self.audited("put_delivery", write).await?;
        self.claims.release(&delivery.id);
        Ok(())
    }

    /// Ids grow with time, so each endpoint's old deliveries are the first rows of its range;
    /// the scan still reads every key once, which is why it runs in batches, rarely.
    async fn prune_deliveries(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreResult<usize> {
        let cutoff = fleety_actors::webhook::first_id_at(before);
        let keys = self
            .read("prune_deliveries", move |txn| {
                let table = txn.open_table(DELIVERIES).map_err(internal)?;
                let mut out = Vec::new();
                for row in table.iter().map_err(internal)? {
                    let (k, _) = row.map_err(internal)?;
                    let (p, e, id) = k.value();
                    if id < cutoff.as_str() {
                        out.push((p.to_owned(), e.to_owned(), id.to_owned()));
                        if out.len() == limit {
                            break;
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        let n = keys.len();
        if n > 0 {
            self.write("prune_deliveries", Write::DeleteDeliveries(keys))
                .await?;
        }
        Ok(n)
    }

    async fn claim_delivery(
        &self,
        delivery: &Delivery,
        now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool> {
        let current = self
            .get_delivery(&delivery.project_id, delivery.endpoint_id, &delivery.id)
            .await?;
        Ok(self.claims.claim(delivery, current.as_ref(), now, until))
    }

    async fn due_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let now = now.timestamp_millis();
        self.read("due_deliveries", move |txn| {
            let due = txn.open_table(DELIVERIES_DUE).map_err(internal)?;
            let rows = txn.open_table(DELIVERIES).map_err(internal)?;
            let mut out = Vec::new();
            for entry in due
                .range::<(i64, &str, &str, &str)>(..(now.saturating_add(1), "", "", ""))
                .map_err(internal)?
                .take(limit)
            {
                let (key, _) = entry.map_err(internal)?;
                let (_, p, e, id) = key.value();
                if let Some(row) = rows.get((p, e, id)).map_err(internal)? {
                    out.push(from_json::<Delivery>(row.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_deliveries(
        &self,
        project: &ProjectId,
        endpoint: uuid::Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let (project, endpoint) = (project.clone(), endpoint.to_string());
        self.read("list_deliveries", move |txn| {
            let table = txn.open_table(DELIVERIES).map_err(internal)?;
            let (p, e) = (project.as_str(), endpoint.as_str());
            let mut out = Vec::new();
            // Delivery ids are `msg_` and hex digits, which sort between "" and "~".
            for row in table
                .range::<(&str, &str, &str)>((p, e, "")..(p, e, "~"))
                .map_err(internal)?
                .rev()
                .take(limit)
            {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json::<Delivery>(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_delivery(
        &self,
        project: &ProjectId,
        endpoint: uuid::Uuid,
        id: &str,
    ) -> StoreResult<Option<Delivery>> {
        let key = [
            project.as_str().to_owned(),
            endpoint.to_string(),
            id.to_owned(),
        ];
        self.owned_row("get_delivery", DELIVERIES, key).await
    }
}

#[async_trait]
impl MemberStore for EmbeddedStore {
    async fn create_member(&self, member: &Member) -> StoreResult<()> {
        self.audited("create_member", Write::CreateMember(member.clone()))
            .await
    }

    async fn update_member(&self, member: &Member) -> StoreResult<()> {
        // The email never changes, and members are never removed: the stored one stays right
        // between this read and the write.
        let stored = self
            .get_member(&member.project_id, member.id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let member = Member {
            email: stored.email,
            ..member.clone()
        };
        self.audited("update_member", Write::UpdateMember(member))
            .await
    }

    async fn get_member(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<Option<Member>> {
        self.project_row("get_member", MEMBERS, project, id.to_string())
            .await
    }

    async fn member_by_email(
        &self,
        project: &ProjectId,
        email: &str,
    ) -> StoreResult<Option<Member>> {
        let (project, email) = (project.clone(), email.to_owned());
        self.read("member_by_email", move |txn| {
            let emails = txn.open_table(MEMBER_EMAILS).map_err(internal)?;
            let p = project.as_str();
            let Some(id) = emails.get((p, email.as_str())).map_err(internal)? else {
                return Ok(None);
            };
            let id = String::from_utf8(id.value().to_vec()).map_err(internal)?;
            let members = txn.open_table(MEMBERS).map_err(internal)?;
            let row = members.get((p, id.as_str())).map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn list_members(&self, project: &ProjectId) -> StoreResult<Vec<Member>> {
        self.project_rows("list_members", MEMBERS, project).await
    }

    async fn put_member_session(&self, session: &MemberSession) -> StoreResult<()> {
        self.audited(
            "put_member_session",
            Write::PutMemberSession(session.clone()),
        )
        .await
    }

    async fn get_member_session(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
        id: &str,
    ) -> StoreResult<Option<MemberSession>> {
        let key = [
            project.as_str().to_owned(),
            member.to_string(),
            id.to_owned(),
        ];
        self.owned_row("get_member_session", MEMBER_SESSIONS, key)
            .await
    }

    async fn list_member_sessions(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
    ) -> StoreResult<Vec<MemberSession>> {
        let (project, member) = (project.clone(), member.to_string());
        self.read("list_member_sessions", move |txn| {
            let table = txn.open_table(MEMBER_SESSIONS).map_err(internal)?;
            let (p, m) = (project.as_str(), member.as_str());
            // Session ids are hex digests, which sort between "" and "~".
            let mut out = Vec::new();
            for row in table
                .range::<(&str, &str, &str)>((p, m, "")..(p, m, "~"))
                .map_err(internal)?
            {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json::<MemberSession>(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_member_session(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
        id: &str,
    ) -> StoreResult<()> {
        let key = (
            project.as_str().to_owned(),
            member.to_string(),
            id.to_owned(),
        );
        let write = Write::DeleteMemberSessions {
            keys: vec![key],
            one: true,
        };
        self.audited("delete_member_session", write).await
    }

    async fn delete_member_sessions(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
    ) -> StoreResult<usize> {
        let sessions = self.list_member_sessions(project, member).await?;
        let keys: Vec<_> = sessions
            .into_iter()
            .map(|s| (project.as_str().to_owned(), member.to_string(), s.id))
            .collect();
        let n = keys.len();
        if n > 0 {
            let write = Write::DeleteMemberSessions { keys, one: false };
            self.audited("delete_member_sessions", write).await?;
        }
        Ok(n)
    }

    async fn create_api_token(&self, token: &ApiToken) -> StoreResult<()> {
        let write = Write::PutApiToken {
            token: token.clone(),
            create: true,
        };
        self.audited("create_api_token", write).await
    }

    async fn get_api_token(
        &self,
        project: &ProjectId,
        id: uuid::Uuid,
    ) -> StoreResult<Option<ApiToken>> {
        self.project_row("get_api_token", API_TOKENS, project, id.to_string())
            .await
    }

    async fn list_api_tokens(&self, project: &ProjectId) -> StoreResult<Vec<ApiToken>> {
        self.project_rows("list_api_tokens", API_TOKENS, project)
            .await
    }

    async fn touch_api_token(
        &self,
        project: &ProjectId,
        id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let token = self
            .get_api_token(project, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        // Only the last use changes; the writer refuses it if the token went meanwhile.
        let write = Write::PutApiToken {
            token: ApiToken {
                last_used_at: Some(at),
                ..token
            },
            create: false,
        };
        // The first use in an hour carries its `token.used` record.
        self.audited("touch_api_token", write).await
    }

    async fn delete_api_token(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        let write = Write::DeleteApiToken {
            project: project.as_str().to_owned(),
            id: id.to_string(),
        };
        self.audited("delete_api_token", write).await
    }

    async fn get_member_totp(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
    ) -> StoreResult<Option<MemberTotp>> {
        let (project, member) = (project.clone(), member.to_string());
        self.read("get_member_totp", move |txn| {
            let table = txn.open_table(MEMBER_TOTP).map_err(internal)?;
            let row = table
                .get((project.as_str(), member.as_str()))
                .map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn put_member_totp(
        &self,
        totp: &MemberTotp,
        expected: Option<uuid::Uuid>,
    ) -> StoreResult<()> {
        let write = Write::PutMemberTotp {
            totp: totp.clone(),
            expected,
        };
        self.audited("put_member_totp", write).await
    }

    async fn delete_member_totp(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
        expected: uuid::Uuid,
    ) -> StoreResult<()> {
        let write = Write::DeleteMemberTotp {
            project: project.as_str().to_owned(),
            member: member.to_string(),
            expected,
        };
        self.audited("delete_member_totp", write).await
    }

    async fn put_member_link(&self, link: &MemberLink) -> StoreResult<()> {
        self.audited("put_member_link", Write::PutMemberLink(link.clone()))
            .await
    }

    async fn get_member_link(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> StoreResult<Option<MemberLink>> {
        self.project_row("get_member_link", MEMBER_LINKS, project, id.to_owned())
            .await
    }

    async fn list_member_links(&self, project: &ProjectId) -> StoreResult<Vec<MemberLink>> {
        self.project_rows("list_member_links", MEMBER_LINKS, project)
            .await
    }

    async fn delete_member_link(&self, project: &ProjectId, id: &str) -> StoreResult<()> {
        let write = Write::DeleteMemberLink {
            project: project.as_str().to_owned(),
            id: id.to_owned(),
        };
        self.audited("delete_member_link", write).await
    }
}

#[async_trait]
impl AuditStore for EmbeddedStore {
    async fn record_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        self.write("record_audit", Write::Audit(record.clone()))
            .await
    }

    async fn list_audit(&self, project: &ProjectId, query: &AuditQuery) -> StoreResult<AuditPage> {
        let (project, query) = (project.clone(), query.clone());
        self.read("list_audit", move |txn| {
            let table = txn.open_table(AUDIT).map_err(internal)?;
            let p = project.as_str();
            let from = query.since.map_or(i64::MIN, |s| s.timestamp_millis());
            let (to_ms, to_id) = match &query.after {
                Some(c) => (c.at.timestamp_millis(), c.id.to_string()),
                None => (i64::MAX, String::new()),
            };
            let rows = table
                .range::<(&str, i64, &str)>((p, from, "")..(p, to_ms, to_id.as_str()))
                .map_err(internal)?;
            // Read one more than a page can examine, so the page knows whether more follow.
            let mut records = Vec::new();
            for row in rows.rev().take(fleety_actors::audit::SCAN + 1) {
                let (_, v) = row.map_err(internal)?;
                records.push(from_json::<AuditRecord>(v.value())?);
            }
            Ok(AuditPage::scan(records, &query))
        })
        .await
    }

    /// Scans every record's key (a project's trail is ordered by time, the table by project),
    /// so it runs in batches, rarely.
    async fn prune_audit(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<usize> {
        let cutoff = before.timestamp_millis();
        let keys = self
            .read("prune_audit", move |txn| {
                let table = txn.open_table(AUDIT).map_err(internal)?;
                let mut out = Vec::new();
                for row in table.iter().map_err(internal)? {
                    let (k, _) = row.map_err(internal)?;
                    let (p, at, id) = k.value();
                    if at < cutoff {
                        out.push((p.to_owned(), at, id.to_owned()));
                        if out.len() == limit {
                            break;
                        }
                    }
                }
                Ok(out)
            })
            .await?;
        let n = keys.len();
        if n > 0 {
            self.write("prune_audit", Write::DeleteAudit(keys)).await?;
        }
        Ok(n)
    }
}

#[async_trait]
impl EmailStore for EmbeddedStore {
    async fn put_member_link_with_email(
        &self,
        link: &MemberLink,
        email: &Email,
    ) -> StoreResult<()> {
        let write = Write::PutMemberLinkWithEmail(link.clone(), email.clone());
        self.audited("put_member_link_with_email", write).await
    }

    async fn put_email(
        &self,
        email: &Email,
        _was_due: Option<chrono::DateTime<chrono::Utc>>,
    ) -> StoreResult<()> {
        let result = self
            .write("put_email", Write::PutEmail(email.clone()))
            .await;
        self.claims.release(&email.id);
        result
    }

    async fn list_emails(
        &self,
        project: &ProjectId,
        query: &fleety_actors::email::EmailQuery,
    ) -> StoreResult<fleety_actors::email::EmailPage> {
        let (project, query) = (project.clone(), query.clone());
        self.read("list_emails", move |txn| {
            tables::emails::list(txn, project.as_str(), &query)
        })
        .await
    }

    async fn due_emails(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreResult<Vec<Email>> {
        let now = now.timestamp_millis();
        self.read("due_emails", move |txn| {
            let due = txn.open_table(EMAILS_DUE).map_err(internal)?;
            let rows = txn.open_table(EMAILS).map_err(internal)?;
            let mut out = Vec::new();
            for entry in due
                .range::<(i64, &str)>(..(now.saturating_add(1), ""))
                .map_err(internal)?
                .take(limit)
            {
                let (key, _) = entry.map_err(internal)?;
                let (_, id) = key.value();
                if let Some(row) = rows.get(id).map_err(internal)? {
                    out.push(from_json::<Email>(row.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get_email(&self, id: &str) -> StoreResult<Option<Email>> {
        let id = id.to_owned();
        self.read("get_email", move |txn| {
            let rows = txn.open_table(EMAILS).map_err(internal)?;
            rows.get(id.as_str())
                .map_err(internal)?
                .map(|row| from_json::<Email>(row.value()))
                .transpose()
        })
        .await
    }

    async fn claim_email(
        &self,
        email: &Email,
        now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool> {
        let current = self.get_email(&email.id).await?;
        let still_due = email.next_attempt_at.is_some()
            && current.is_some_and(|c| c.next_attempt_at == email.next_attempt_at);
        Ok(self.claims.claim_id(&email.id, still_due, now, until))
    }

    async fn get_visitor_mail(
        &self,
        project: &ProjectId,
        slug: &Slug,
    ) -> StoreResult<Option<VisitorMail>> {
        let (project, slug) = (project.clone(), slug.clone());
        self.read("get_visitor_mail", move |txn| {
            let rows = txn.open_table(VISITOR_MAILS).map_err(internal)?;
            rows.get((project.as_str(), slug.as_str()))
                .map_err(internal)?
                .map(|row| from_json::<VisitorMail>(row.value()))
                .transpose()
        })
        .await
    }

    async fn put_visitor_mail(
        &self,
        mail: &VisitorMail,
        _was_due: Option<chrono::DateTime<chrono::Utc>>,
        email: Option<&Email>,
    ) -> StoreResult<()> {
        let write = Write::PutVisitorMail(mail.clone(), email.cloned());
        self.write("put_visitor_mail", write).await
    }

    async fn due_visitor_mails(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> StoreResult<Vec<VisitorMail>> {
        let now = now.timestamp_millis();
        self.read("due_visitor_mails", move |txn| {
            let due = txn.open_table(VISITOR_MAILS_DUE).map_err(internal)?;
            let rows = txn.open_table(VISITOR_MAILS).map_err(internal)?;
            let mut out = Vec::new();
            for entry in due
                .range::<(i64, &str, &str)>(..(now.saturating_add(1), "", ""))
                .map_err(internal)?
                .take(limit)
            {
                let (key, _) = entry.map_err(internal)?;
                let (_, project, slug) = key.value();
                if let Some(row) = rows.get((project, slug)).map_err(internal)? {
                    out.push(from_json::<VisitorMail>(row.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn create_email(&self, email: &Email) -> StoreResult<bool> {
        self.create_email_row(email).await
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

#[async_trait]
impl InboundMailStore for EmbeddedStore {
    async fn put_inbound_mail(
        &self,
        mail: &fleety_actors::inbound_mail::InboundMail,
    ) -> StoreResult<()> {
        self.write("put_inbound_mail", Write::PutInboundMail(mail.clone()))
            .await
    }

    async fn get_inbound_mail(
        &self,
        project: &ProjectId,
        slug: &Slug,
        key: &str,
    ) -> StoreResult<Option<fleety_actors::inbound_mail::InboundMail>> {
        let (project, slug, key) = (project.clone(), slug.clone(), key.to_owned());
        self.read("get_inbound_mail", move |txn| {
            let table = txn.open_table(INBOUND_MAIL).map_err(internal)?;
            let row = table
                .get((project.as_str(), slug.as_str(), key.as_str()))
                .map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }
}

#[async_trait]
impl ContactStore for EmbeddedStore {
    async fn put_contact(&self, contact: &Contact) -> StoreResult<()> {
        self.write("put_contact", Write::PutContact(contact.clone()))
            .await
    }

    async fn get_contact(
        &self,
        project: &ProjectId,
        id: uuid::Uuid,
    ) -> StoreResult<Option<Contact>> {
        let project = project.clone();
        self.read("get_contact", move |txn| {
            let table = txn.open_table(CONTACTS).map_err(internal)?;
            let row = table
                .get((project.as_str(), order_key(id).as_str()))
                .map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn list_contacts(
        &self,
        project: &ProjectId,
        query: &ContactQuery,
    ) -> StoreResult<ContactPage> {
        let (project, query) = (project.clone(), query.clone());
        self.read("list_contacts", move |txn| {
            let table = txn.open_table(CONTACTS).map_err(internal)?;
            let p = project.as_str();
            let after = query.after.map(order_key).unwrap_or_default();
            let lower = match query.after {
                Some(_) => std::ops::Bound::Excluded((p, after.as_str())),
                None => std::ops::Bound::Included((p, "")),
            };
            let upper = std::ops::Bound::Excluded((p, "~"));
            let rows = table
                .range::<(&str, &str)>((lower, upper))
                .map_err(internal)?
                .map(|row| {
                    let (_, v) = row.map_err(internal)?;
                    from_json::<Contact>(v.value())
                });
            query.page(rows)
        })
        .await
    }

    async fn contact_tickets(
        &self,
        project: &ProjectId,
        contact: uuid::Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Ticket>> {
        let project = project.clone();
        self.read("contact_tickets", move |txn| {
            let index = txn.open_table(CONTACT_TICKETS).map_err(internal)?;
            let tickets = txn.open_table(TICKETS).map_err(internal)?;
            let (p, c) = (project.as_str(), order_key(contact));
            let mut out = Vec::new();
            let rows = index
                .range::<(&str, &str, i64, &str)>(
                    (p, c.as_str(), i64::MIN, "")..=(p, c.as_str(), i64::MAX, "~"),
                )
                .map_err(internal)?
                .rev();
            for row in rows {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = row.map_err(internal)?;
                let (_, _, _, slug) = key.value();
                if let Some(raw) = tickets.get((p, slug)).map_err(internal)? {
                    out.push(from_json::<Ticket>(raw.value())?);
                }
            }
            Ok(out)
        })
        .await
    }
    async fn erase_contact(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<bool> {
        let existed = self.get_contact(project, id).await?.is_some();
        let erase = Write::EraseContact {
            project: project.clone(),
            contact: id,
        };
        self.write("erase_contact", erase).await?;
        // As for a ticket: scrubbed even when nothing was found, for a retry after a crash.
        self.write("scrub", Write::Scrub).await?;
        Ok(existed)
    }

    async fn put_contact_erasure(
        &self,
        erasure: &fleety_actors::contact::ContactErasure,
    ) -> StoreResult<()> {
        let put = Write::PutContactErasure(erasure.clone());
        self.write("put_contact_erasure", put).await
    }

    async fn delete_contact_erasure(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        let delete = Write::DeleteContactErasure {
            project: project.clone(),
            contact: id,
        };
        self.write("delete_contact_erasure", delete).await
    }

    async fn pending_contact_erasures(
        &self,
    ) -> StoreResult<Vec<fleety_actors::contact::ContactErasure>> {
        self.read("pending_contact_erasures", move |txn| {
            let table = txn.open_table(tables::CONTACT_ERASURES).map_err(internal)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(internal)? {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn flush(&self) -> StoreResult<()> {
        self.write("flush", Write::Barrier).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleety_actors::clock::now_millis;
    use fleety_actors::domain::*;
    use fleety_actors::MessageId;
    use std::time::Duration;

    /// One ticket write, handed to the writer thread as a ticket actor's batch is.
    async fn put(store: &EmbeddedStore, t: &Ticket, write: TicketWrite) -> StoreResult<()> {
        let writes = vec![write];
        let (project, slug) = (t.project_id.clone(), t.slug.clone());
        let batch = Write::Ticket {
            project,
            slug,
            writes,
        };
        store.write_untimed(batch).await
    }

    /// Long enough that no checkpoint happens while a test runs, so redb's file holds only the
    /// state as of opening and everything after it lives in the log.
    const NEVER: Duration = Duration::from_secs(3600);

    fn checkpoint_every(checkpoint_every: Duration) -> ApplyTiming {
        ApplyTiming {
            checkpoint_every,
            ..ApplyTiming::default()
        }
    }

    pub(super) fn project() -> Project {
        Project {
            id: ProjectId::parse("p1").unwrap(),
            name: "P".into(),
            allowed_origins: vec![],
            admin_key_hash: String::new(),
            assistant: Default::default(),
            csat_disabled: false,
            identity_secrets: Vec::new(),
            ticket_access: Default::default(),
            retention: Default::default(),
            created_at: now_millis(),
        }
    }

    pub(super) fn ticket(project: &Project) -> Ticket {
        Ticket {
            id: uuid::Uuid::new_v4(),
            slug: Slug::parse("swift-bear-053").unwrap(),
            project_id: project.id.clone(),
            title: Title::parse("t").unwrap(),
            description: Description::parse("").unwrap(),
            status: TicketStatus::Open,
            created_at: now_millis(),
            updated_at: now_millis(),
            source: TicketSource::Api,
            session_id: None,
            assignee: None,
            assignee_member: None,
            tags: Default::default(),
            visitor: None,
            satisfaction: None,
            contact: None,
        }
    }

    fn messages(n: usize) -> Vec<Message> {
        let mut out: Vec<Message> = Vec::new();
        for i in 0..n {
            let id = MessageId::next(out.last().map(|m| m.id), now_millis());
            out.push(Message {
                id,
                author: Participant::User,
                content: MessageBody::parse(&format!("m{i}")).unwrap(),
                timestamp: id.timestamp(),
                idempotency_key: None,
                agent: None,
            });
        }
        out
    }

    fn article(project: &Project, title: &str) -> Article {
        Article {
            id: uuid::Uuid::new_v4(),
            project_id: project.id.clone(),
            title: ArticleTitle::parse(title).unwrap(),
            body: ArticleBody::parse("body").unwrap(),
            tags: vec![],
            created_at: now_millis(),
            updated_at: now_millis(),
            language: Default::default(),
            url: None,
        }
    }

    /// What a power cut would leave of a running store: redb's file as of its last durable
    /// commit, and the log as far as it was synced. (Non-durable redb commits live only in the
    /// process's memory.)
    fn crash_copy(from: &Path, to: &Path) {
        std::fs::copy(from.join("fleety.redb"), to.join("fleety.redb")).unwrap();
        std::fs::create_dir_all(to.join("wal")).unwrap();
        for (_, segment) in wal::segments(&from.join("wal")).unwrap() {
            std::fs::copy(&segment, to.join("wal").join(segment.file_name().unwrap())).unwrap();
        }
    }

    /// Log records a reopening would replay: those newer than redb's checkpoint.
    fn unreplayed(dir: &Path) -> usize {
        let checkpoint = {
            let db = Database::open(dir.join("fleety.redb")).unwrap();
            let txn = db.begin_read().unwrap();
            let meta = txn.open_table(META).unwrap();
            let value = meta.get(CHECKPOINT_KEY).unwrap().unwrap().value();
            value
        };
        let segments = wal::segments(&dir.join("wal")).unwrap();
        assert_eq!(segments.len(), 1, "one segment file, reused");
        let bytes = std::fs::read(&segments[0].1).unwrap();
        wal::segment(&bytes, segments[0].0)
            .filter(|r| r.seq > checkpoint)
            .count()
    }

    fn stored_messages(dir: &Path) -> u64 {
        let db = Database::open(dir.join("fleety.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        redb::ReadableTableMetadata::len(&txn.open_table(MESSAGES).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn emails_stored_before_the_outbox_was_listed_are_indexed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = project();
        let email = fleety_actors::email::Email::new(
            &p.id,
            fleety_actors::email::EmailKind::Invitation,
            "a@example.com",
            "Join".into(),
            "t".into(),
            "h".into(),
            now_millis(),
        );
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.put_email(&email, None).await.unwrap();
        }
        // What a store of an earlier version holds: the email, no listing entry, and no log
        // to replay (it stopped cleanly).
        {
            let db = Database::open(dir.path().join("fleety.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(tables::emails::EMAILS_BY_PROJECT).unwrap();
            txn.commit().unwrap();
        }
        std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let query = fleety_actors::email::EmailQuery {
            limit: 10,
            ..Default::default()
        };
        let page = store.list_emails(&p.id, &query).await.unwrap();
        assert_eq!(page.emails, vec![email]);
    }

    #[tokio::test]
    async fn acknowledged_writes_come_back_from_the_log_after_a_crash() {
        let (live, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = EmbeddedStore::open_with(live.path(), checkpoint_every(NEVER)).unwrap();
        let p = project();
        let mut t = ticket(&p);
        let ms = messages(3);
        let (kept, dropped) = (article(&p, "Kept"), article(&p, "Dropped"));
        store.create_project(&p).await.unwrap();
        store.create_ticket(&t, &[]).await.unwrap();
        let mut writes: Vec<TicketWrite> = ms.iter().cloned().map(TicketWrite::Message).collect();
        // An older receipt arriving late must not win on replay either.
        for up_to in [ms[2].id, ms[0].id] {
            let reader = Participant::Admin;
            writes.push(TicketWrite::ReadCursor { reader, up_to });
        }
        for write in writes {
            put(&store, &t, write).await.unwrap();
        }
        t.status = TicketStatus::Resolved;
        t.updated_at += chrono::Duration::seconds(1);
        put(&store, &t, TicketWrite::Ticket(t.clone()))
            .await
            .unwrap();
        store.put_article(&kept).await.unwrap();
        store.put_article(&dropped).await.unwrap();
        store.delete_article(&p.id, dropped.id).await.unwrap();
        let turn = ChatTurn {
            id: MessageId::next(None, now_millis()),
            role: ChatRole::User,
            content: "hello".into(),
            at: now_millis(),
            ticket_slug: None,
            citations: vec![],
            tokens: 7,
            feedback: None,
        };
        store
            .append_chat_turns(&p.id, "s1", std::slice::from_ref(&turn))
            .await
            .unwrap();

        crash_copy(live.path(), crashed.path());
        drop(store);
        assert_eq!(
            stored_messages(crashed.path()),
            0,
            "redb alone must not have them, or this test proves nothing"
        );

        for reopen in ["replaying the log", "from the checkpoint the replay made"] {
            let store = EmbeddedStore::open(crashed.path()).unwrap();
            assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p.clone()));
            assert_eq!(
                store.get_ticket(&p.id, &t.slug).await.unwrap(),
                Some(t.clone()),
                "{reopen}"
            );
            let page = store
                .list_tickets(&p.id, &TicketQuery::default())
                .await
                .unwrap();
            assert_eq!(page.tickets, vec![t.clone()], "{reopen}");
            assert_eq!(
                store
                    .list_messages(&p.id, &t.slug, MessageRange::all())
                    .await
                    .unwrap(),
                ms,
                "{reopen}"
            );
            assert_eq!(
                store.read_cursors(&p.id, &t.slug).await.unwrap(),
                vec![ReadCursor {
                    reader: Participant::Admin,
                    up_to: ms[2].id
                }],
                "{reopen}"
            );
            assert_eq!(
                store.list_articles(&p.id).await.unwrap(),
                vec![kept.clone()]
            );
            assert_eq!(
                store.list_chat_turns(&p.id, "s1", 10).await.unwrap(),
                vec![turn.clone()]
            );
        }
        // The replay was checkpointed: the log holds nothing newer.
        assert_eq!(unreplayed(crashed.path()), 0);
    }

    #[tokio::test]
    async fn a_torn_log_tail_is_ignored_and_everything_before_it_kept() {
        let (live, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = EmbeddedStore::open_with(live.path(), checkpoint_every(NEVER)).unwrap();
        let p = project();
        let t = ticket(&p);
        store.create_project(&p).await.unwrap();
        store.create_ticket(&t, &[]).await.unwrap();
        let ms = messages(5);
        for m in &ms {
            put(&store, &t, TicketWrite::Message(m.clone()))
                .await
                .unwrap();
        }
        crash_copy(live.path(), crashed.path());
        drop(store);
        // Half a record, as a crash during an append leaves it.
        let (_, segment) = wal::segments(&crashed.path().join("wal")).unwrap()[0].clone();
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        std::io::Write::write_all(&mut log, &[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
        drop(log);

        let store = EmbeddedStore::open(crashed.path()).unwrap();
        assert_eq!(
            store
                .list_messages(&p.id, &t.slug, MessageRange::all())
                .await
                .unwrap(),
            ms
        );
        // New writes carry on after the replayed ones.
        let more = MessageId::next(Some(ms[4].id), now_millis());
        let m = Message {
            id: more,
            ..ms[0].clone()
        };
        put(&store, &t, TicketWrite::Message(m.clone()))
            .await
            .unwrap();
        drop(store);
        let store = EmbeddedStore::open(crashed.path()).unwrap();
        let stored = store
            .list_messages(&p.id, &t.slug, MessageRange::all())
            .await
            .unwrap();
        assert_eq!(stored.len(), 6);
    }

    /// Appends one project record as group `seq`, after letting the log move on if it would.
    fn log_project(log: &mut wal::Log, checkpointed: u64, seq: u64, id: &str, json: &[u8]) {
        log.make_room(checkpointed, seq).unwrap();
        let mut record = wal::RecordBuf::new(seq);
        record.push(&wal::Op::Project { id, json });
        let mut bytes = record.finish();
        log.seal(&mut bytes);
        log.append(&bytes).unwrap();
        log.sync().unwrap();
    }

    /// Project `id`, as the log stores it.
    fn project_json(id: &str) -> Vec<u8> {
        serde_json::to_vec(&Project {
            id: ProjectId::parse(id).unwrap(),
            ..project()
        })
        .unwrap()
    }

    /// A log of two segments: group 1 fills the first, group 2 starts the second.
    fn two_segment_log(dir: &Path) -> std::path::PathBuf {
        let wal_dir = dir.join("wal");
        let mut log = wal::Log::start(&wal_dir, 1).unwrap();
        let big = vec![b'x'; wal::SEGMENT_BYTES as usize];
        log_project(&mut log, 0, 1, "p1", &big);
        log_project(&mut log, 0, 2, "p2", &project_json("p2"));
        let segments = wal::segments(&wal_dir).unwrap();
        assert_eq!(segments.len(), 2);
        segments[0].1.clone()
    }

    #[tokio::test]
    async fn a_damaged_older_log_segment_stops_the_store_from_opening() {
        let (intact, damaged) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        two_segment_log(intact.path());
        let store = EmbeddedStore::open(intact.path()).unwrap();
        let p2 = ProjectId::parse("p2").unwrap();
        assert!(store.get_project(&p2).await.unwrap().is_some());
        drop(store);

        // One flipped bit in the first segment's only record: the group after it, in the next
        // segment, was acknowledged later, so replaying it alone would skip group 1 silently.
        let older = two_segment_log(damaged.path());
        let mut bytes = std::fs::read(&older).unwrap();
        bytes[4096] ^= 1;
        std::fs::write(&older, &bytes).unwrap();
        let error = format!("{:#}", EmbeddedStore::open(damaged.path()).err().unwrap());
        assert!(error.contains("is damaged at byte 32"), "{error}");
        assert!(error.contains("00000000000000000001.wal"), "{error}");
        // Nothing was replayed or deleted: the operator still has every file to recover from.
        assert_eq!(wal::segments(&damaged.path().join("wal")).unwrap().len(), 2);
        assert_eq!(std::fs::read(&older).unwrap(), bytes);
    }

    /// A segment grows past 32 MiB while the one before it awaits a checkpoint; the header of
    /// the segment after it records where it ends, so damage past 32 MiB is caught too.
    #[tokio::test]
    async fn damage_beyond_32_mib_in_a_grown_segment_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let mut log = wal::Log::start(&wal_dir, 1).unwrap();
        let big = vec![b'x'; wal::SEGMENT_BYTES as usize];
        log_project(&mut log, 0, 1, "p1", &big);
        log_project(&mut log, 0, 2, "p2", &big);
        // Segment 1 is not checkpointed, so segment 2 grows past its size with group 3.
        log_project(&mut log, 0, 3, "p3", &project_json("p3"));
        // Now it is: its file is reused for group 4 on.
        log_project(&mut log, 2, 4, "p4", &project_json("p4"));
        drop(log);
        let segments = wal::segments(&wal_dir).unwrap();
        assert_eq!(segments.iter().map(|(f, _)| *f).collect::<Vec<_>>(), [2, 4]);

        // Flip a bit in group 3, past the first 32 MiB of segment 2.
        let grown = &segments[0].1;
        let mut bytes = std::fs::read(grown).unwrap();
        let at = bytes.len() - 40;
        assert!(at > wal::SEGMENT_BYTES as usize);
        bytes[at] ^= 1;
        std::fs::write(grown, &bytes).unwrap();
        let error = format!("{:#}", EmbeddedStore::open(dir.path()).err().unwrap());
        assert!(
            error.contains("00000000000000000002.wal is damaged"),
            "{error}"
        );
    }

    /// A short older segment is no sign of damage when no later segment holds a record: the
    /// state two crashes in a row can leave (the second during the restart after the first).
    #[tokio::test]
    async fn a_short_segment_before_segments_without_records_is_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let mut log = wal::Log::start(&wal_dir, 1).unwrap();
        log_project(&mut log, 0, 1, "p1", &project_json("p1"));
        drop(log);
        // A segment named for group 5 that holds nothing readable.
        let other = tempfile::tempdir().unwrap();
        drop(wal::Log::start(other.path(), 5).unwrap());
        let (_, empty) = wal::segments(other.path()).unwrap().remove(0);
        std::fs::copy(&empty, wal_dir.join(empty.file_name().unwrap())).unwrap();
        assert_eq!(wal::segments(&wal_dir).unwrap().len(), 2);

        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(store.get_project(&project().id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_checkpoint_empties_the_log_and_a_clean_stop_leaves_nothing_to_replay() {
        let dir = tempfile::tempdir().unwrap();
        // Nor does the applier gather: each group is its own commit.
        let timing = ApplyTiming {
            checkpoint_every: Duration::ZERO,
            gather: Duration::ZERO,
        };
        let store = EmbeddedStore::open_with(dir.path(), timing).unwrap();
        let p = project();
        store.create_project(&p).await.unwrap();
        let t = ticket(&p);
        // With a zero interval every group after the first is a checkpoint.
        store.create_ticket(&t, &[]).await.unwrap();
        put(&store, &t, TicketWrite::Message(messages(1)[0].clone()))
            .await
            .unwrap();
        drop(store);
        assert_eq!(stored_messages(dir.path()), 1);
        assert_eq!(unreplayed(dir.path()), 0);
    }

    /// The applier gathers groups for its whole window unless a reader needs them: with a
    /// window of an hour, reads after writes must still be answered, by nudging it.
    #[tokio::test]
    async fn a_reader_does_not_wait_for_the_applier_to_gather() {
        let dir = tempfile::tempdir().unwrap();
        let timing = ApplyTiming {
            checkpoint_every: NEVER,
            gather: NEVER,
        };
        let store = EmbeddedStore::open_with(dir.path(), timing).unwrap();
        let p = project();
        let t = ticket(&p);
        let read_back = async {
            store.create_project(&p).await.unwrap();
            assert!(store.get_project(&p.id).await.unwrap().is_some());
            store.create_ticket(&t, &[]).await.unwrap();
            for (i, m) in messages(3).iter().enumerate() {
                put(&store, &t, TicketWrite::Message(m.clone()))
                    .await
                    .unwrap();
                let stored = store
                    .list_messages(&p.id, &t.slug, MessageRange::all())
                    .await
                    .unwrap();
                assert_eq!(stored.len(), i + 1);
            }
        };
        // Generous: the point is that it finishes at all rather than after an hour.
        tokio::time::timeout(Duration::from_secs(30), read_back)
            .await
            .expect("a read waited for the applier's gather window");
    }
}
