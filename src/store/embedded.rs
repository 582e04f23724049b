//! The embedded store: one redb file plus a write-ahead log in the data directory; the default
//! backend.
//!
//! Writes go through two threads. The writer takes every write waiting in its queue, decides and
//! applies them in one redb transaction that is not made durable by itself, and hands the group's
//! effects to the logger. The logger appends every group waiting for it to the log, calls
//! `fdatasync` once, and only then answers the writers. A commit therefore costs one sequential
//! append instead of redb rewriting every page it changed, and while the logger waits for the
//! disk the writer is already applying the next group. Every couple of seconds the writer makes
//! redb durable (a checkpoint) and the log starts a new segment; on open, the records newer than
//! the last checkpoint are replayed (see [`wal`](super::wal)).
//!
//! Reads run concurrently on the blocking pool. A read can see a group whose log record is not
//! durable yet, so it waits for that group's `fdatasync` before it answers: a reader is never
//! shown something a crash could take back.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fleety_actors::domain::{
    Article, ChatTurn, ChatUsage, Message, Participant, Project, ProjectId, ReadCursor, Slug,
    Ticket,
};
use fleety_actors::store::{
    MessageRange, Store, StoreError, StoreResult, TicketPage, TicketQuery, TicketWrite,
};
use fleety_actors::MessageId;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{oneshot, watch};

use super::wal::{self, Op, RecordBuf};

const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("projects");
const TICKETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tickets");
/// (project, created_at in ms, slug) -> status: the agent listing, newest first by reverse scan.
const TICKETS_BY_TIME: TableDefinition<(&str, i64, &str), &str> =
    TableDefinition::new("tickets_by_time");
/// (project, slug, id ticks) -> message JSON. Ticks are unique and increasing within a ticket.
const MESSAGES: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("messages");
/// (project, slug, reader) -> id bytes of the newest message read.
const READ_CURSORS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("read_cursors");
/// (project, session, turn id ticks) -> turn JSON: a chat session's transcript in order.
const CHAT_TURNS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("chat_turns");
/// (project, article id) -> article JSON.
const ARTICLES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("kb_articles");
/// The store's own bookkeeping.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The newest group a durable redb commit holds: replay starts after it.
const CHECKPOINT_KEY: &str = "log_checkpoint";

/// Writes applied in one group commit at most; bounds the latency a large queue adds.
const MAX_GROUP: usize = 4096;
/// How long redb may hold commits that only the log makes durable. Longer means fewer, larger
/// checkpoints and more log to replay after a crash.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// A checkpoint comes sooner when this much log has been written since the last one.
const CHECKPOINT_LOG_BYTES: usize = 64 << 20;

type Reply = oneshot::Sender<StoreResult<()>>;

enum Write {
    /// Creates the project (`create`) or replaces an existing one.
    Project {
        project: Project,
        create: bool,
    },
    CreateTicket(Ticket),
    Ticket {
        project: ProjectId,
        slug: Slug,
        writes: Vec<TicketWrite>,
    },
    ChatTurns {
        project: ProjectId,
        session: String,
        turns: Vec<ChatTurn>,
    },
    PutArticle(Article),
    DeleteArticle {
        project: ProjectId,
        id: uuid::Uuid,
    },
    /// Nothing to write: answered once everything queued before it is durable.
    Barrier,
}

/// What the writer hands the logger, in group order.
enum ToLog {
    /// A group applied to redb: its record (empty if it changed nothing or a checkpoint already
    /// made it durable) and the answers to send once the record is durable.
    Group {
        seq: u64,
        record: Vec<u8>,
        replies: Vec<(Reply, StoreResult<()>)>,
    },
    /// redb is durable up to and including this group: the log can start over.
    Checkpoint(u64),
}

/// State the writer, the logger and readers share.
struct Shared {
    /// The newest group whose redb commit has begun. Loaded after a read transaction begins, it
    /// is at least the newest group that read can see.
    visible: AtomicU64,
    /// The log could not be written: nothing more can be made durable until a restart.
    failed: AtomicBool,
}

fn log_failed() -> StoreError {
    StoreError::Unavailable("the store's write-ahead log could not be written".into())
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Option<std_mpsc::Sender<(Write, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    /// The newest group whose log record is durable.
    durable: watch::Receiver<u64>,
}

/// Closing the queue lets the writer finish its last group, checkpoint and exit; joining it means
/// the file lock is released when the store is dropped, so a restart in the same process can
/// reopen it.
impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A stored read cursor: the 16 bytes of a message id.
fn cursor_id(bytes: &[u8]) -> Option<MessageId> {
    <[u8; 16]>::try_from(bytes)
        .ok()
        .and_then(MessageId::from_bytes)
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(internal)
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("corrupt record: {e}")))
}

impl EmbeddedStore {
    /// Opens (or creates) `fleety.redb` and the log directory `wal/` in `dir`, replaying what
    /// the log holds beyond redb's last checkpoint.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Self::open_with(dir, CHECKPOINT_EVERY)
    }

    fn open_with(dir: &Path, checkpoint_every: Duration) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
        let path = dir.join("fleety.redb");
        let db = Database::create(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        // Create every table up front so readers never meet a missing one.
        let txn = db.begin_write()?;
        Tables::open(&txn).map_err(anyhow::Error::msg)?;
        txn.commit()?;

        let wal_dir = dir.join("wal");
        let last = recover(&db, &wal_dir)?;
        let log = wal::Log::start(&wal_dir, last + 1)
            .map_err(|e| anyhow::anyhow!("cannot start the log in {}: {e}", wal_dir.display()))?;

        let db = Arc::new(db);
        let shared = Arc::new(Shared {
            visible: AtomicU64::new(last),
            failed: AtomicBool::new(false),
        });
        let (durable_tx, durable) = watch::channel(last);
        // A rendezvous: the writer hands a group over only when the logger starts its next sync,
        // and meanwhile gathers the writes that arrive into the group after it. Running further
        // ahead would only split the same writes into more, smaller redb commits.
        let (to_log, log_queue) = std_mpsc::sync_channel(0);
        let logger_shared = shared.clone();
        let logger = std::thread::Builder::new()
            .name("fleety-store-log".into())
            .spawn(move || log_loop(log, &log_queue, &durable_tx, &logger_shared))?;
        let (writer, queue) = std_mpsc::channel();
        let mut state = Writer {
            db: db.clone(),
            shared: shared.clone(),
            to_log,
            seq: last,
            checkpoint_every,
            dirty_since: None,
            logged: 0,
        };
        let thread = std::thread::Builder::new()
            .name("fleety-store-writer".into())
            .spawn(move || {
                state.run(&queue);
                // The logger ends once the writer's handle to it is gone.
                drop(state);
                let _ = logger.join();
            })?;
        Ok(Self {
            db,
            writer: Some(writer),
            thread: Some(thread),
            shared,
            durable,
        })
    }

    async fn write(&self, write: Write) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("store is closed".into()))?
            .send((write, tx))
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> StoreResult<T> + Send + 'static,
    {
        let db = self.db.clone();
        let shared = self.shared.clone();
        let (value, seen) = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(internal)?;
            let seen = shared.visible.load(Ordering::Acquire);
            f(&txn).map(|value| (value, seen))
        })
        .await
        .map_err(internal)??;
        if *self.durable.borrow() < seen {
            self.durable
                .clone()
                .wait_for(|durable| *durable >= seen)
                .await
                .map_err(|_| log_failed())?;
        }
        Ok(value)
    }
}

/// The open tables of one write transaction, and the one place rows change: live groups and
/// replay both go through [`Tables::apply`].
struct Tables<'t> {
    projects: redb::Table<'t, &'static str, &'static [u8]>,
    tickets: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    by_time: redb::Table<'t, (&'static str, i64, &'static str), &'static str>,
    messages: redb::Table<'t, (&'static str, &'static str, u64), &'static [u8]>,
    cursors: redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>,
    chat: redb::Table<'t, (&'static str, &'static str, u64), &'static [u8]>,
    articles: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    meta: redb::Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> StoreResult<Self> {
        Ok(Self {
            projects: txn.open_table(PROJECTS).map_err(internal)?,
            tickets: txn.open_table(TICKETS).map_err(internal)?,
            by_time: txn.open_table(TICKETS_BY_TIME).map_err(internal)?,
            messages: txn.open_table(MESSAGES).map_err(internal)?,
            cursors: txn.open_table(READ_CURSORS).map_err(internal)?,
            chat: txn.open_table(CHAT_TURNS).map_err(internal)?,
            articles: txn.open_table(ARTICLES).map_err(internal)?,
            meta: txn.open_table(META).map_err(internal)?,
        })
    }

    /// Applies one change; false if it changed nothing (a cursor that would move back, an
    /// article already gone).
    fn apply(&mut self, op: &Op<'_>) -> StoreResult<bool> {
        match *op {
            Op::Project { id, json } => {
                self.projects.insert(id, json).map_err(internal)?;
            }
            Op::Ticket {
                project,
                slug,
                created_ms,
                status,
                json,
            } => {
                self.tickets
                    .insert((project, slug), json)
                    .map_err(internal)?;
                self.by_time
                    .insert((project, created_ms, slug), status)
                    .map_err(internal)?;
            }
            Op::Message {
                project,
                slug,
                ticks,
                json,
            } => {
                self.messages
                    .insert((project, slug, ticks), json)
                    .map_err(internal)?;
            }
            Op::Cursor {
                project,
                slug,
                reader,
                up_to,
            } => {
                let key = (project, slug, reader);
                let current = self
                    .cursors
                    .get(key)
                    .map_err(internal)?
                    .and_then(|v| cursor_id(v.value()));
                // `None` sorts first: an unreadable new id never wins.
                if cursor_id(up_to) <= current {
                    return Ok(false);
                }
                self.cursors.insert(key, up_to).map_err(internal)?;
            }
            Op::ChatTurn {
                project,
                session,
                ticks,
                json,
            } => {
                self.chat
                    .insert((project, session, ticks), json)
                    .map_err(internal)?;
            }
            Op::Article { project, id, json } => {
                self.articles
                    .insert((project, id), json)
                    .map_err(internal)?;
            }
            Op::DeleteArticle { project, id } => {
                return Ok(self
                    .articles
                    .remove((project, id))
                    .map_err(internal)?
                    .is_some());
            }
        }
        Ok(true)
    }

    /// Applies a change and adds it to the group's log record if it changed anything.
    fn change(&mut self, op: &Op<'_>, record: &mut RecordBuf) -> StoreResult<bool> {
        let changed = self.apply(op)?;
        if changed {
            record.push(op);
        }
        Ok(changed)
    }

    /// Decides one write against the rows as they stand. The outer error is a storage failure
    /// and fails the whole group; the inner result is this write's own (a conflict, a missing
    /// row), and a refused write changes nothing.
    fn decide(&mut self, write: &Write, record: &mut RecordBuf) -> StoreResult<StoreResult<()>> {
        match write {
            Write::Project { project: p, create } => {
                let exists = self
                    .projects
                    .get(p.id.as_str())
                    .map_err(internal)?
                    .is_some();
                match (create, exists) {
                    (true, true) => return Ok(Err(StoreError::Conflict)),
                    (false, false) => return Ok(Err(StoreError::NotFound)),
                    _ => {}
                }
                let json = to_json(p)?;
                self.change(
                    &Op::Project {
                        id: p.id.as_str(),
                        json: &json,
                    },
                    record,
                )?;
            }
            Write::CreateTicket(t) => {
                let key = (t.project_id.as_str(), t.slug.as_str());
                if self.tickets.get(key).map_err(internal)?.is_some() {
                    return Ok(Err(StoreError::Conflict));
                }
                let json = to_json(t)?;
                self.change(&ticket_op(t, &json), record)?;
            }
            Write::Ticket {
                project,
                slug,
                writes,
            } => {
                // All or nothing: check and encode every part first, change rows only if all pass.
                let encoded = match prepare_ticket_writes(&self.tickets, writes)? {
                    Ok(encoded) => encoded,
                    Err(refused) => return Ok(Err(refused)),
                };
                let (project, slug) = (project.as_str(), slug.as_str());
                for (w, json) in writes.iter().zip(&encoded) {
                    let op = match w {
                        TicketWrite::Message(m) => Op::Message {
                            project,
                            slug,
                            ticks: m.id.ticks(),
                            json,
                        },
                        TicketWrite::Ticket(t) => ticket_op(t, json),
                        TicketWrite::ReadCursor { reader, .. } => Op::Cursor {
                            project,
                            slug,
                            reader: reader.as_str(),
                            up_to: json,
                        },
                    };
                    self.change(&op, record)?;
                }
            }
            Write::ChatTurns {
                project,
                session,
                turns,
            } => {
                for t in turns {
                    let json = to_json(t)?;
                    let op = Op::ChatTurn {
                        project: project.as_str(),
                        session,
                        ticks: t.id.ticks(),
                        json: &json,
                    };
                    self.change(&op, record)?;
                }
            }
            Write::PutArticle(a) => {
                let (id, json) = (a.id.to_string(), to_json(a)?);
                let op = Op::Article {
                    project: a.project_id.as_str(),
                    id: &id,
                    json: &json,
                };
                self.change(&op, record)?;
            }
            Write::DeleteArticle { project, id } => {
                let id = id.to_string();
                let op = Op::DeleteArticle {
                    project: project.as_str(),
                    id: &id,
                };
                if !self.change(&op, record)? {
                    return Ok(Err(StoreError::NotFound));
                }
            }
            Write::Barrier => {}
        }
        Ok(Ok(()))
    }
}

fn ticket_op<'a>(t: &'a Ticket, json: &'a [u8]) -> Op<'a> {
    Op::Ticket {
        project: t.project_id.as_str(),
        slug: t.slug.as_str(),
        created_ms: t.created_at.timestamp_millis(),
        status: t.status.as_str(),
        json,
    }
}

/// Checks one ticket's writes and encodes them (a read cursor as its id's bytes), without
/// changing anything. The inner error refuses only this write; the outer one is a storage error.
fn prepare_ticket_writes(
    tickets: &redb::Table<(&str, &str), &[u8]>,
    writes: &[TicketWrite],
) -> StoreResult<StoreResult<Vec<Vec<u8>>>> {
    let mut encoded = Vec::with_capacity(writes.len());
    for w in writes {
        encoded.push(match w {
            TicketWrite::Message(m) => to_json(m)?,
            TicketWrite::Ticket(t) => {
                let exists = tickets
                    .get((t.project_id.as_str(), t.slug.as_str()))
                    .map_err(internal)?
                    .is_some();
                if !exists {
                    return Ok(Err(StoreError::NotFound));
                }
                to_json(t)?
            }
            TicketWrite::ReadCursor { up_to, .. } => up_to.to_bytes().to_vec(),
        });
    }
    Ok(Ok(encoded))
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
        for (_, path) in &segments {
            let bytes = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let mut records = wal::records(&bytes);
            for record in records.by_ref() {
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

/// The writer thread's state.
struct Writer {
    db: Arc<Database>,
    shared: Arc<Shared>,
    to_log: std_mpsc::SyncSender<ToLog>,
    /// The newest group number handed out.
    seq: u64,
    checkpoint_every: Duration,
    /// When redb first held a commit only the log makes durable, since the last checkpoint.
    dirty_since: Option<Instant>,
    /// Log bytes written since the last checkpoint.
    logged: usize,
}

impl Writer {
    fn run(&mut self, queue: &std_mpsc::Receiver<(Write, Reply)>) {
        let mut group = Vec::with_capacity(256);
        loop {
            let first = match self.dirty_since {
                // Quiet, with commits only the log holds: checkpoint when they are due.
                Some(since) => {
                    match queue.recv_timeout(self.checkpoint_every.saturating_sub(since.elapsed()))
                    {
                        Ok(first) => first,
                        Err(std_mpsc::RecvTimeoutError::Timeout) => {
                            self.checkpoint_alone();
                            continue;
                        }
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match queue.recv() {
                    Ok(first) => first,
                    Err(_) => break,
                },
            };
            group.push(first);
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
        }
        if self.dirty_since.is_some() {
            // A clean stop leaves nothing to replay.
            self.checkpoint_alone();
        }
    }

    fn checkpoint_due(&self) -> bool {
        self.dirty_since
            .is_some_and(|since| since.elapsed() >= self.checkpoint_every)
            || self.logged >= CHECKPOINT_LOG_BYTES
    }

    fn commit(&mut self, group: &mut Vec<(Write, Reply)>) {
        metrics::histogram!("fleety_store_group_commit_writes").record(group.len() as f64);
        if self.shared.failed.load(Ordering::Acquire) {
            for (_, reply) in group.drain(..) {
                let _ = reply.send(Err(log_failed()));
            }
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let checkpoint = self.checkpoint_due();
        // Before the commit, so a read that sees this group waits for its record.
        self.shared.visible.store(seq, Ordering::Release);
        let started = Instant::now();
        let mut record = RecordBuf::new(seq);
        let outcome = commit_group(&self.db, group, &mut record, seq, checkpoint);
        let committed = outcome.is_ok();
        let (record, results) = match outcome {
            // A checkpoint made the group durable in redb itself: nothing to log.
            Ok(results) => (
                if checkpoint {
                    Vec::new()
                } else {
                    record.finish()
                },
                results,
            ),
            Err(e) => {
                tracing::error!(error = %e, writes = group.len(), "group commit failed");
                (Vec::new(), vec![Err(e); group.len()])
            }
        };
        if checkpoint && committed {
            metrics::histogram!("fleety_store_checkpoint_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        if !record.is_empty() {
            self.logged += record.len();
            self.dirty_since.get_or_insert_with(Instant::now);
        }
        let replies = group
            .drain(..)
            .map(|(_, reply)| reply)
            .zip(results)
            .collect();
        self.send(ToLog::Group {
            seq,
            record,
            replies,
        });
        if checkpoint && committed {
            self.checkpointed(seq);
        }
    }

    /// A durable commit with nothing in it but the checkpoint mark.
    fn checkpoint_alone(&mut self) {
        let started = Instant::now();
        let result = (|| -> StoreResult<()> {
            let txn = self.db.begin_write().map_err(internal)?;
            {
                let mut meta = txn.open_table(META).map_err(internal)?;
                meta.insert(CHECKPOINT_KEY, self.seq).map_err(internal)?;
            }
            txn.commit().map_err(internal)
        })();
        match result {
            Ok(()) => {
                metrics::histogram!("fleety_store_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
                self.checkpointed(self.seq);
            }
            Err(e) => {
                // The log still holds everything; try again after another interval.
                tracing::error!(error = %e, "checkpoint failed");
                self.dirty_since = Some(Instant::now());
            }
        }
    }

    fn checkpointed(&mut self, seq: u64) {
        self.dirty_since = None;
        self.logged = 0;
        self.send(ToLog::Checkpoint(seq));
    }

    fn send(&self, item: ToLog) {
        if let Err(std_mpsc::SendError(ToLog::Group { replies, .. })) = self.to_log.send(item) {
            for (reply, _) in replies {
                let _ = reply.send(Err(log_failed()));
            }
        }
    }
}

/// Applies a group in one redb transaction, durable only for a checkpoint. The outer error fails
/// the whole group (nothing was committed); the inner results are per write.
fn commit_group(
    db: &Database,
    group: &[(Write, Reply)],
    record: &mut RecordBuf,
    seq: u64,
    checkpoint: bool,
) -> StoreResult<Vec<StoreResult<()>>> {
    let mut txn = db.begin_write().map_err(internal)?;
    if !checkpoint {
        txn.set_durability(Durability::None).map_err(internal)?;
    }
    let mut results = Vec::with_capacity(group.len());
    {
        let mut tables = Tables::open(&txn)?;
        for (write, _) in group {
            results.push(tables.decide(write, record)?);
        }
        if checkpoint {
            tables.meta.insert(CHECKPOINT_KEY, seq).map_err(internal)?;
        }
    }
    txn.commit().map_err(internal)?;
    Ok(results)
}

/// The logger thread: appends each batch of waiting groups with one `fdatasync`, then answers
/// their writers and publishes the newest durable group.
fn log_loop(
    mut log: wal::Log,
    queue: &std_mpsc::Receiver<ToLog>,
    durable: &watch::Sender<u64>,
    shared: &Shared,
) {
    let mut batch = Vec::new();
    let mut bytes = Vec::new();
    while let Ok(first) = queue.recv() {
        batch.push(first);
        batch.extend(queue.try_iter());
        let mut newest = None;
        for item in &batch {
            match item {
                ToLog::Group { seq, record, .. } => {
                    bytes.extend_from_slice(record);
                    newest = Some(*seq);
                }
                ToLog::Checkpoint(upto) => {
                    // Every group before the mark is durable in redb: drop its records unwritten.
                    bytes.clear();
                    if let Err(e) = log.rotate(*upto) {
                        // The current segment still works; replay skips what redb holds.
                        tracing::warn!(error = %e, "cannot start a new log segment");
                    }
                }
            }
        }
        let written = if bytes.is_empty() {
            Ok(())
        } else {
            let started = Instant::now();
            let result = log.append(&bytes).and_then(|()| log.sync());
            metrics::histogram!("fleety_store_log_sync_seconds")
                .record(started.elapsed().as_secs_f64());
            result
        };
        bytes.clear();
        if let Err(e) = written {
            // After a failed fsync the kernel may have dropped the pages: nothing written since
            // the last checkpoint can be trusted, so stop taking writes until a restart replays.
            tracing::error!(error = %e, "cannot write the store's log; refusing writes until restart");
            shared.failed.store(true, Ordering::Release);
            for item in batch.drain(..) {
                if let ToLog::Group { replies, .. } = item {
                    for (reply, _) in replies {
                        let _ = reply.send(Err(log_failed()));
                    }
                }
            }
            return;
        }
        for item in batch.drain(..) {
            if let ToLog::Group { replies, .. } = item {
                for (reply, result) in replies {
                    let _ = reply.send(result);
                }
            }
        }
        if let Some(newest) = newest {
            durable.send_replace(newest);
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn create_project(&self, project: &Project) -> StoreResult<()> {
        self.write(Write::Project {
            project: project.clone(),
            create: true,
        })
        .await
    }

    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        let id = id.clone();
        self.read(move |txn| {
            let table = txn.open_table(PROJECTS).map_err(internal)?;
            let row = table.get(id.as_str()).map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn update_project(&self, project: &Project) -> StoreResult<()> {
        self.write(Write::Project {
            project: project.clone(),
            create: false,
        })
        .await
    }

    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        self.read(|txn| {
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

    async fn create_ticket(&self, ticket: &Ticket) -> StoreResult<()> {
        self.write(Write::CreateTicket(ticket.clone())).await
    }

    async fn get_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Option<Ticket>> {
        let (project, slug) = (project.clone(), slug.clone());
        self.read(move |txn| {
            let table = txn.open_table(TICKETS).map_err(internal)?;
            let row = table
                .get((project.as_str(), slug.as_str()))
                .map_err(internal)?;
            row.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn update_ticket(&self, ticket: &Ticket) -> StoreResult<()> {
        self.write(Write::Ticket {
            project: ticket.project_id.clone(),
            slug: ticket.slug.clone(),
            writes: vec![TicketWrite::Ticket(ticket.clone())],
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
        self.read(move |txn| {
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
            let mut out = Vec::with_capacity(limit + 1);
            for row in by_time
                .range::<(&str, i64, &str)>((lower, upper))
                .map_err(internal)?
                .rev()
            {
                let (key, status) = row.map_err(internal)?;
                let (_, _, slug) = key.value();
                if let Some(wanted) = query.status {
                    if status.value() != wanted.as_str() {
                        continue;
                    }
                }
                let Some(raw) = tickets.get((p, slug)).map_err(internal)? else {
                    continue;
                };
                out.push(from_json::<Ticket>(raw.value())?);
                if out.len() > limit {
                    break;
                }
            }
            Ok(TicketPage::from_overfetch(out, limit))
        })
        .await
    }

    async fn append_message(
        &self,
        project: &ProjectId,
        slug: &Slug,
        message: &Message,
    ) -> StoreResult<()> {
        self.apply(project, slug, &[TicketWrite::Message(message.clone())])
            .await
    }

    async fn list_messages(
        &self,
        project: &ProjectId,
        slug: &Slug,
        range: MessageRange,
    ) -> StoreResult<Vec<Message>> {
        let (project, slug) = (project.clone(), slug.clone());
        self.read(move |txn| {
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

    async fn set_read_cursor(
        &self,
        project: &ProjectId,
        slug: &Slug,
        reader: Participant,
        up_to: MessageId,
    ) -> StoreResult<()> {
        self.apply(project, slug, &[TicketWrite::ReadCursor { reader, up_to }])
            .await
    }

    async fn read_cursors(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<ReadCursor>> {
        let (project, slug) = (project.clone(), slug.clone());
        self.read(move |txn| {
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

    async fn apply(
        &self,
        project: &ProjectId,
        slug: &Slug,
        writes: &[TicketWrite],
    ) -> StoreResult<()> {
        self.write(Write::Ticket {
            project: project.clone(),
            slug: slug.clone(),
            writes: writes.to_vec(),
        })
        .await
    }

    async fn append_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        turns: &[ChatTurn],
    ) -> StoreResult<()> {
        self.write(Write::ChatTurns {
            project: project.clone(),
            session: session.to_owned(),
            turns: turns.to_vec(),
        })
        .await
    }

    async fn list_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        limit: usize,
    ) -> StoreResult<Vec<ChatTurn>> {
        let (project, session) = (project.clone(), session.to_owned());
        self.read(move |txn| {
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
        self.read(move |txn| {
            let table = txn.open_table(CHAT_TURNS).map_err(internal)?;
            let (p, s) = (project.as_str(), session.as_str());
            let mut usage = ChatUsage::default();
            for row in table
                .range::<(&str, &str, u64)>((p, s, 0)..=(p, s, u64::MAX))
                .map_err(internal)?
            {
                let (_, v) = row.map_err(internal)?;
                let turn = from_json::<ChatTurn>(v.value())?;
                usage.tokens = usage.tokens.saturating_add(turn.tokens);
                usage.tickets += u32::from(turn.ticket_slug.is_some());
            }
            Ok(usage)
        })
        .await
    }

    async fn put_article(&self, article: &Article) -> StoreResult<()> {
        self.write(Write::PutArticle(article.clone())).await
    }

    async fn delete_article(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        self.write(Write::DeleteArticle {
            project: project.clone(),
            id,
        })
        .await
    }

    async fn list_articles(&self, project: &ProjectId) -> StoreResult<Vec<Article>> {
        let project = project.clone();
        self.read(move |txn| {
            let table = txn.open_table(ARTICLES).map_err(internal)?;
            let p = project.as_str();
            // Article ids are UUIDs in hex-and-dash form, which sort between "" and "~".
            let mut out = Vec::new();
            for row in table
                .range::<(&str, &str)>((p, "")..(p, "~"))
                .map_err(internal)?
            {
                let (_, v) = row.map_err(internal)?;
                out.push(from_json::<Article>(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.write(Write::Barrier).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleety_actors::clock::now_millis;
    use fleety_actors::domain::*;

    /// Long enough that no checkpoint happens while a test runs, so redb's file holds only the
    /// state as of opening and everything after it lives in the log.
    const NEVER: Duration = Duration::from_secs(3600);

    fn project() -> Project {
        Project {
            id: ProjectId::parse("p1").unwrap(),
            name: "P".into(),
            allowed_origins: vec![],
            admin_key_hash: String::new(),
            created_at: now_millis(),
        }
    }

    fn ticket(project: &Project) -> Ticket {
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
        wal::records(&bytes).filter(|r| r.seq > checkpoint).count()
    }

    fn stored_messages(dir: &Path) -> u64 {
        let db = Database::open(dir.join("fleety.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        redb::ReadableTableMetadata::len(&txn.open_table(MESSAGES).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn acknowledged_writes_come_back_from_the_log_after_a_crash() {
        let (live, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = EmbeddedStore::open_with(live.path(), NEVER).unwrap();
        let p = project();
        let mut t = ticket(&p);
        let ms = messages(3);
        let (kept, dropped) = (article(&p, "Kept"), article(&p, "Dropped"));
        store.create_project(&p).await.unwrap();
        store.create_ticket(&t).await.unwrap();
        for m in &ms {
            store.append_message(&p.id, &t.slug, m).await.unwrap();
        }
        store
            .set_read_cursor(&p.id, &t.slug, Participant::Admin, ms[2].id)
            .await
            .unwrap();
        // An older receipt arriving late must not win on replay either.
        store
            .set_read_cursor(&p.id, &t.slug, Participant::Admin, ms[0].id)
            .await
            .unwrap();
        t.status = TicketStatus::Resolved;
        store.update_ticket(&t).await.unwrap();
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
        let store = EmbeddedStore::open_with(live.path(), NEVER).unwrap();
        let p = project();
        let t = ticket(&p);
        store.create_project(&p).await.unwrap();
        store.create_ticket(&t).await.unwrap();
        let ms = messages(5);
        for m in &ms {
            store.append_message(&p.id, &t.slug, m).await.unwrap();
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
        store.append_message(&p.id, &t.slug, &m).await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(crashed.path()).unwrap();
        let stored = store
            .list_messages(&p.id, &t.slug, MessageRange::all())
            .await
            .unwrap();
        assert_eq!(stored.len(), 6);
    }

    #[tokio::test]
    async fn a_checkpoint_empties_the_log_and_a_clean_stop_leaves_nothing_to_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with(dir.path(), Duration::ZERO).unwrap();
        let p = project();
        store.create_project(&p).await.unwrap();
        let t = ticket(&p);
        // With a zero interval every group after the first is a checkpoint.
        store.create_ticket(&t).await.unwrap();
        store
            .append_message(&p.id, &t.slug, &messages(1)[0])
            .await
            .unwrap();
        drop(store);
        assert_eq!(stored_messages(dir.path()), 1);
        assert_eq!(unreplayed(dir.path()), 0);
    }
}
