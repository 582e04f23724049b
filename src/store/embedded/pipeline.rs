//! The embedded store's write path: two threads, each owning one stage.
//!
//! - The **writer** takes every write waiting in the queue as one group, decides each against
//!   the rows as they stand (a conflict, a missing row), encodes the group's effects as a log
//!   record, appends it to the write-ahead log and calls `fdatasync`, and only then answers the
//!   writers: a write is acknowledged once it is in the log. Writes that arrive during a sync
//!   wait in the queue and make the next group. It never touches redb's write transaction, so
//!   the applier's commits and checkpoints do not stall it; it waits only when the applier has
//!   fallen far behind (see `APPLY_QUEUE`). Its thread is named `fleety-store-log`.
//! - The **applier** applies logged records to redb in non-durable commits, and every 100 ms
//!   makes redb durable (a checkpoint), after which the log's older segment can be reused. A
//!   checkpoint takes milliseconds of disk time; it delays only the applier. It gathers the
//!   groups of a few milliseconds into each commit, unless a reader is waiting for them.
//!
//! Why a log in front of redb at all, and the figures behind these choices, are in
//! `docs/architecture.md` (The embedded store).
//!
//! Between the writer and the applier, rows that a decision depends on (projects, tickets,
//! articles) and that are logged but not yet applied are remembered in the [`Overlay`]. Readers
//! wait until the applier has caught up with every acknowledged group before they read, so a read
//! always sees every write acknowledged before it started.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use fleety_actors::audit::AuditRecord;
use fleety_actors::canned::CannedReply;
use fleety_actors::contact::{order_key, Contact};
use fleety_actors::domain::{
    Article, ChatConversation, ChatTurn, Message, Project, ProjectId, Slug, Ticket,
};
use fleety_actors::member::{ApiToken, Member, MemberLink, MemberSession, MemberTotp};
use fleety_actors::store::{StoreError, StoreResult, TicketWrite};
use fleety_actors::unanswered::UnansweredQuestion;
use fleety_actors::webhook::{Delivery, Endpoint};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use tokio::sync::watch;

use super::rewrite::DbCell;
use super::tables::{
    internal, to_json, Tables, API_TOKENS, ARTICLES, CHECKPOINT_KEY, EMAILS, MEMBERS,
    MEMBER_EMAILS, MEMBER_LINKS, MEMBER_SESSIONS, MEMBER_TOTP, PROJECTS, TICKETS, WEBHOOKS,
};
use super::wal::{self, Op, RecordBuf};

/// Writes decided as one group at most; bounds the latency a large queue adds.
const MAX_GROUP: usize = 4096;
/// Logged groups waiting for the applier at most, and their record bytes at most. When redb
/// falls this far behind, the writer waits, so acknowledgements slow down instead of memory
/// growing.
const APPLY_QUEUE: usize = 4096;
const APPLY_QUEUE_BYTES: usize = 64 << 20;
/// How long redb may hold commits that only the log makes durable. Short, because a checkpoint
/// writes everything since the last one in a burst on the disk the log shares, and the log's
/// syncs (so acknowledgements) wait behind that burst. Longer would also mean more log to
/// replay after a crash.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// A checkpoint comes sooner when this many log bytes have been applied since the last one (a
/// backlog after a stall).
const CHECKPOINT_LOG_BYTES: usize = 8 << 20;
/// How long the applier gathers groups into one redb commit when no reader waits for them.
/// Each commit costs a fixed amount (twelve tables opened, branch pages copied, checksums), so
/// fewer, larger commits save CPU under load. Reads do not wait for it: a reader that needs a
/// group tells the applier, which commits as soon as it holds that group.
pub(super) const APPLY_GATHER: Duration = Duration::from_millis(5);
/// The applier stops gathering once a batch holds this many record bytes. Bytes are released
/// to the writer only after the commit, so a batch near the queue's byte budget would leave the
/// writer waiting for the rest of the window; a quarter keeps it well clear.
const GATHER_BYTES: usize = APPLY_QUEUE_BYTES / 4;
/// A gathering applier looks at its queue at least this often, so a batch that has grown past
/// `GATHER_BYTES`, or a writer that has stopped, is seen within this long even in a long window.
const GATHER_LOOK_EVERY: Duration = Duration::from_millis(10);

/// What the writer and readers hand the applier.
enum ToApply {
    /// A group's log record, in log order; empty if the group changed nothing.
    Group(u64, Vec<u8>),
    /// A reader waits for a group (`Shared::wanted`): wake up and commit once it is gathered.
    Nudge,
}

/// How a write's outcome reaches its writer; called on the writer thread.
pub(super) type Reply = fleety_actors::store::Done;

pub(super) enum Write {
    /// Creates the project (`create`) or replaces an existing one.
    Project {
        project: Project,
        create: bool,
    },
    /// A new ticket with its first messages, and the webhook deliveries announcing them.
    CreateTicket {
        ticket: Ticket,
        messages: Vec<Message>,
        deliveries: Vec<Delivery>,
    },
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
    ChatConversation {
        project: ProjectId,
        conversation: ChatConversation,
    },
    PutArticle(Article),
    DeleteArticle {
        project: ProjectId,
        id: uuid::Uuid,
    },
    /// A new endpoint, unless its project has `max` already.
    CreateWebhook {
        endpoint: Endpoint,
        max: usize,
    },
    /// Replaces an existing endpoint.
    PutWebhook(Endpoint),
    DeleteWebhook {
        project: ProjectId,
        id: uuid::Uuid,
    },
    /// A delivery, and whether it replaces one read before (an attempt's outcome).
    PutDelivery(Delivery, bool),
    /// Deliveries past the log's retention: (project, endpoint, delivery id).
    DeleteDeliveries(Vec<(String, String, String)>),
    /// Questions the assistant could not answer: entries to put, then (project, id) of
    /// entries to remove.
    Unanswered {
        put: Vec<UnansweredQuestion>,
        delete: Vec<(String, String)>,
    },
    /// A new member, unless the project has one with its id or email.
    CreateMember(Member),
    /// Replaces an existing member; the caller puts the stored email in it.
    UpdateMember(Member),
    PutMemberSession(MemberSession),
    /// Ends sessions (project, member id, session id); with `one`, refused with NotFound
    /// unless the session exists.
    DeleteMemberSessions {
        keys: Vec<(String, String, String)>,
        one: bool,
    },
    /// A canned reply to put, or (project, id) of one to remove: decided by the caller, which
    /// writes a project's replies one at a time (`EmbeddedStore::canned`).
    PutCanned(CannedReply),
    DeleteCanned {
        project: String,
        id: String,
    },
    /// A personal API token: new (refused if its id is taken), or a change to one that must
    /// still exist (its last use), so a revoked token never comes back.
    PutApiToken {
        token: ApiToken,
        create: bool,
    },
    DeleteApiToken {
        project: String,
        id: String,
    },
    /// A member's second factor, if the stored one is still the version `expected` names
    /// (`None`: there is none).
    PutMemberTotp {
        totp: MemberTotp,
        expected: Option<uuid::Uuid>,
    },
    /// Removes a member's second factor if it is still version `expected`.
    DeleteMemberTotp {
        project: String,
        member: String,
        expected: uuid::Uuid,
    },
    PutMemberLink(MemberLink),
    /// A link with the outbox email that carries it, in one record.
    PutMemberLinkWithEmail(MemberLink, fleety_actors::email::Email),
    PutEmail(fleety_actors::email::Email),
    /// A ticket's visitor-mail record, with the email of its burst when there is one, in one
    /// record.
    PutVisitorMail(
        fleety_actors::visitor_mail::VisitorMail,
        Option<fleety_actors::email::Email>,
    ),
    /// Refused with NotFound unless the link exists: of two deletes, one wins.
    DeleteMemberLink {
        project: String,
        id: String,
    },
    /// An audit record of an event that changes nothing else (a failed sign-in).
    Audit(AuditRecord),
    /// Audit records past their retention: (project, time in ms, id).
    DeleteAudit(Vec<(String, i64, String)>),
    /// Creates or replaces a contact.
    PutContact(Contact),
    /// Records a reply by email that was posted.
    PutInboundMail(fleety_actors::inbound_mail::InboundMail),
    /// An email, unless one with its id is stored: refused with Conflict then.
    CreateEmail(fleety_actors::email::Email),
    /// Creates or replaces a member's notification switches.
    PutNotificationPrefs(fleety_actors::agent_mail::NotificationPrefs),
    /// Nothing to write: answered once everything queued before it is durable.
    Barrier,
    /// Erases a ticket and every row carrying its words, in one record.
    EraseTicket {
        project: ProjectId,
        slug: Slug,
    },
    /// An erasure begun.
    PutErasure(fleety_actors::store::Erasure),
    /// An erasure finished.
    DeleteErasure {
        project: ProjectId,
        slug: Slug,
    },
    /// Erases a contact's row and its ticket index, in one record.
    EraseContact {
        project: ProjectId,
        contact: uuid::Uuid,
    },
    /// A contact erasure begun.
    PutContactErasure(fleety_actors::contact::ContactErasure),
    /// A contact erasure finished.
    DeleteContactErasure {
        project: ProjectId,
        contact: uuid::Uuid,
    },
    /// Removes the words of everything erased so far from the files: answered once redb's
    /// file and the log hold none of them (see `Writer::scrub`).
    Scrub,
}

/// A write as queued: with the audit record of its change, if it has one, which goes in the
/// same log record when the write is decided and is dropped with it when it is refused.
pub(super) type Queued = (Write, Option<AuditRecord>, Reply);

/// A row whose existence a decision depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Row {
    Project(String),
    Ticket(String, String),
    Article(String, String),
    Webhook(String, String),
    Member(String, String),
    MemberEmail(String, String),
    MemberSession(String, String, String),
    MemberLink(String, String),
    ApiToken(String, String),
    /// (project, member, version): whether the member's second factor is at this version
    /// (`None`: the member has none). Every write of it names the version it replaces, so
    /// it marks that version gone and its own there, and the overlay stays exact.
    MemberTotp(String, String, Option<uuid::Uuid>),
    /// An outbox email, by id.
    Email(String),
}

/// Rows changed by groups the applier has not committed yet: whether each exists after the
/// newest such group, and that group's number.
type Overlay = HashMap<Row, (bool, u64)>;

/// State the stages and readers share.
pub(super) struct Shared {
    overlay: Mutex<Overlay>,
    /// The newest group whose log record is durable. Stored before its writers are answered.
    durable: AtomicU64,
    /// The newest group a durable redb commit holds; older log segments can be reused.
    checkpointed: AtomicU64,
    /// A stage failed: nothing more can be made durable until a restart replays the log.
    failed: AtomicBool,
    /// Record bytes handed to the applier and not yet applied.
    queued_bytes: Mutex<usize>,
    applied_some: Condvar,
    /// Told when `checkpointed` moves (under `queued_bytes`' lock, so no waiter misses it).
    checkpoint_made: Condvar,
    /// The newest group a reader waits for the applier to commit.
    wanted: AtomicU64,
    /// A nudge is on its way to the applier; readers need not send another.
    nudged: AtomicBool,
    /// The thread gathering groups, which a nudge unparks (see `Applier::gather`).
    gatherer: OnceLock<std::thread::Thread>,
}

impl Shared {
    pub(super) fn new(last: u64) -> Self {
        Self {
            overlay: Mutex::new(HashMap::new()),
            durable: AtomicU64::new(last),
            checkpointed: AtomicU64::new(last),
            failed: AtomicBool::new(false),
            queued_bytes: Mutex::new(0),
            applied_some: Condvar::new(),
            checkpoint_made: Condvar::new(),
            wanted: AtomicU64::new(last),
            nudged: AtomicBool::new(false),
            gatherer: OnceLock::new(),
        }
    }

    /// Waits until `bytes` more fit in the applier's queue (a lone record always fits). False
    /// if a stage failed meanwhile.
    fn reserve(&self, bytes: usize) -> bool {
        let mut queued = self.queued_bytes.lock().unwrap_or_else(|e| e.into_inner());
        while *queued > 0 && *queued + bytes > APPLY_QUEUE_BYTES {
            if self.failed.load(Ordering::Acquire) {
                return false;
            }
            // Timed, so a failure that frees nothing is still noticed.
            queued = self
                .applied_some
                .wait_timeout(queued, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *queued += bytes;
        true
    }

    fn release(&self, bytes: usize) {
        let mut queued = self.queued_bytes.lock().unwrap_or_else(|e| e.into_inner());
        *queued = queued.saturating_sub(bytes);
        self.applied_some.notify_all();
    }

    /// Notes that a durable redb commit holds every group up to `newest`.
    fn checkpointed(&self, newest: u64) {
        self.checkpointed.store(newest, Ordering::Release);
        let _held = self.queued_bytes.lock().unwrap_or_else(|e| e.into_inner());
        self.checkpoint_made.notify_all();
    }

    /// Waits until a durable redb commit holds group `seq`. False if `deadline` passes or a
    /// stage fails first.
    fn wait_checkpointed(&self, seq: u64, deadline: Instant) -> bool {
        let mut held = self.queued_bytes.lock().unwrap_or_else(|e| e.into_inner());
        while self.checkpointed.load(Ordering::Acquire) < seq {
            let now = Instant::now();
            if self.failed.load(Ordering::Acquire) || now >= deadline {
                return false;
            }
            // Timed, so a failure that makes no checkpoint is still noticed.
            let wait = (deadline - now).min(Duration::from_millis(100));
            held = self
                .checkpoint_made
                .wait_timeout(held, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// The newest acknowledged group: a read that starts now must see it.
    /// Ends a gathering applier's park early (see `Applier::gather`).
    fn wake_gatherer(&self) {
        if let Some(gatherer) = self.gatherer.get() {
            gatherer.unpark();
        }
    }

    pub(super) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    fn overlay(&self) -> MutexGuard<'_, Overlay> {
        // The map stays consistent even if a holder panicked: every update is one insert.
        self.overlay.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) fn store_failed() -> StoreError {
    StoreError::Unavailable("the store cannot make writes durable; restart the server".into())
}

/// Wakes the applier for a reader. Must be dropped before the store's threads are joined:
/// the applier stops only once every sender of its queue is gone.
pub(super) struct Nudger {
    queue: std_mpsc::SyncSender<ToApply>,
    shared: Arc<Shared>,
}

impl Nudger {
    /// Asks the applier to commit group `seq` as soon as it has it, instead of at the end of
    /// its gather window. If its queue is full it is already busy applying, so nothing is sent.
    pub(super) fn nudge(&self, seq: u64) {
        self.shared.wanted.fetch_max(seq, Ordering::AcqRel);
        if !self.shared.nudged.swap(true, Ordering::AcqRel) {
            if self.queue.try_send(ToApply::Nudge).is_err() {
                self.shared.nudged.store(false, Ordering::Release);
            }
            // The queue wakes an applier waiting for its first group; a gathering one is parked.
            self.shared.wake_gatherer();
        }
    }
}

/// The running stages, as the store holds them.
pub(super) struct Pipeline {
    /// Where writes are queued for the writer stage.
    pub writer: std_mpsc::Sender<Queued>,
    pub nudger: Nudger,
    /// The writer's thread, which joins the applier once the queue closes and both finish.
    pub thread: std::thread::JoinHandle<()>,
    pub shared: Arc<Shared>,
    /// The newest group redb holds.
    pub applied: watch::Receiver<u64>,
}

/// How often the applier checkpoints, and how long it gathers groups into one commit.
/// Both are settings (`store_checkpoint_ms`, `store_apply_gather_ms`).
#[derive(Debug, Clone, Copy)]
pub struct ApplyTiming {
    pub checkpoint_every: Duration,
    /// Zero: no waiting; each commit takes what is already queued.
    pub gather: Duration,
}

impl Default for ApplyTiming {
    fn default() -> Self {
        Self {
            checkpoint_every: CHECKPOINT_EVERY,
            gather: APPLY_GATHER,
        }
    }
}

/// Starts the two stages after group `last`.
pub(super) fn start(
    db: Arc<DbCell>,
    path: std::path::PathBuf,
    log: wal::Log,
    last: u64,
    timing: ApplyTiming,
) -> std::io::Result<Pipeline> {
    let shared = Arc::new(Shared::new(last));
    let (applied_tx, applied) = watch::channel(last);
    let (to_apply, apply_queue) = std_mpsc::sync_channel(APPLY_QUEUE);
    let mut applier = Applier {
        db: db.clone(),
        shared: shared.clone(),
        applied: applied_tx,
        timing,
        last_applied: last,
        dirty_since: None,
        applied_bytes: 0,
    };
    let applier = std::thread::Builder::new()
        .name("fleety-store-apply".into())
        .spawn(move || applier.run(&apply_queue))?;
    let nudger = Nudger {
        queue: to_apply.clone(),
        shared: shared.clone(),
    };
    let (writer, queue) = std_mpsc::channel();
    let mut stage = Writer {
        db,
        path,
        log,
        shared: shared.clone(),
        seq: last,
    };
    let thread = std::thread::Builder::new()
        .name("fleety-store-log".into())
        .spawn(move || {
            stage.run(&queue, &to_apply);
            // The applier finishes (and checkpoints) once its queue closes, which is when the
            // store has also dropped its `Nudger`.
            drop(to_apply);
            let _ = applier.join();
        })?;
    Ok(Pipeline {
        writer,
        nudger,
        thread,
        shared,
        applied,
    })
}

/// The writer stage: decides the writes waiting in the queue as one group, appends the group's
/// record to the log with one `fdatasync`, answers the group's writers, and hands the record
/// to the applier. Writes that arrive during a sync wait in the queue and form the next group,
/// so groups grow with the load.
struct Writer {
    db: Arc<DbCell>,
    /// redb's file, rewritten by a scrub.
    path: std::path::PathBuf,
    log: wal::Log,
    shared: Arc<Shared>,
    /// The newest group number handed out.
    seq: u64,
}

impl Writer {
    fn run(
        &mut self,
        queue: &std_mpsc::Receiver<Queued>,
        to_apply: &std_mpsc::SyncSender<ToApply>,
    ) {
        let mut group = Vec::with_capacity(256);
        while let Ok(first) = queue.recv() {
            group.push(first);
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            metrics::histogram!("fleety_store_group_commit_writes").record(group.len() as f64);
            if self.shared.failed.load(Ordering::Acquire) {
                for (_, _, reply) in group.drain(..) {
                    reply(Err(store_failed()));
                }
                continue;
            }
            self.seq += 1;
            // A scrub is answered after its group, once the files hold none of what was
            // erased before it.
            let mut scrubs = Vec::new();
            group.retain_mut(|(write, _, reply)| {
                if !matches!(write, Write::Scrub) {
                    return true;
                }
                scrubs.push(std::mem::replace(reply, Box::new(|_| {})));
                false
            });
            let mut record = RecordBuf::new(self.seq);
            let db = self.db.get();
            let mut rows = Rows {
                overlay: self.shared.overlay(),
                db: &db,
                txn: None,
                seq: self.seq,
            };
            let replies: Vec<_> = group
                .drain(..)
                .map(|(write, audit, reply)| {
                    // Encoded before the change is decided, so that once the change is in
                    // the record its audit record surely follows it.
                    let audit = match audit.as_ref().map(AuditRow::new).transpose() {
                        Ok(audit) => audit,
                        Err(e) => return (reply, Err(e)),
                    };
                    let decided = rows.decide(&write, &mut record);
                    if let (Ok(()), Some(audit)) = (&decided, audit) {
                        record.push(&audit.op());
                    }
                    (reply, decided)
                })
                .collect();
            // A scrub after this group replaces the database, and waits for every holder of
            // the old one to let go.
            drop(rows);
            drop(db);
            let mut record = record.finish();
            if let Err(e) = self.append(&mut record) {
                // After a failed fsync the kernel may have dropped the pages: nothing since the
                // last checkpoint can be trusted, so refuse writes until a restart replays what
                // is there.
                tracing::error!(error = %e, "cannot write the store's log; refusing writes until restart");
                self.shared.failed.store(true, Ordering::Release);
                for (reply, _) in replies {
                    reply(Err(store_failed()));
                }
                // Later writes are answered with the same error at the top of the loop.
                continue;
            }
            self.shared.durable.store(self.seq, Ordering::Release);
            for (reply, result) in replies {
                reply(result);
            }
            // Every group goes on, even an empty one: readers wait for the applier to reach the
            // newest durable group.
            if !self.shared.reserve(record.len())
                || to_apply.send(ToApply::Group(self.seq, record)).is_err()
            {
                // The applier has stopped: redb cannot catch up until a restart replays.
                self.shared.failed.store(true, Ordering::Release);
            } else if self.shared.wanted.load(Ordering::Acquire) >= self.seq {
                // A reader nudged for this group before it was handed over; the parked
                // applier would otherwise find it only at its next look.
                self.shared.wake_gatherer();
            }
            if !scrubs.is_empty() {
                let scrubbed = self.scrub();
                if let Err(e) = &scrubbed {
                    tracing::error!(error = %e, "cannot scrub the store's files after an erasure");
                }
                for reply in scrubs {
                    reply(scrubbed.clone());
                }
            }
        }
    }

    /// Leaves nothing of the rows erased so far in the files. Once a checkpoint holds every
    /// group up to this one, redb's file is rewritten with only its live rows (its free pages
    /// are where erased rows linger; see `rewrite`), and every log segment is overwritten with
    /// zeros and the log begun afresh. Writes wait meanwhile: erasures are rare, and a write
    /// logged during the scrub would be zeroed with the rest.
    fn scrub(&mut self) -> StoreResult<()> {
        let started = Instant::now();
        // The applier checkpoints at least every `checkpoint_every` while it holds commits the
        // log alone makes durable, so this wait is short.
        if !self
            .shared
            .wait_checkpointed(self.seq, started + Duration::from_secs(60))
        {
            if self.shared.failed.load(Ordering::Acquire) {
                return Err(store_failed());
            }
            return Err(StoreError::Unavailable(
                "no checkpoint came to scrub the store's files".into(),
            ));
        }
        super::rewrite::rewrite(&self.db, &self.path)?;
        self.log.scrub(self.seq + 1).map_err(|e| {
            // The log's files are in an unknown state: refuse writes until a restart.
            self.shared.failed.store(true, Ordering::Release);
            internal(e)
        })?;
        metrics::histogram!("fleety_store_scrub_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Makes `record` durable in the log; nothing to do for a group that changed nothing.
    fn append(&mut self, record: &mut [u8]) -> std::io::Result<()> {
        if record.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        self.log
            .make_room(self.shared.checkpointed.load(Ordering::Acquire), self.seq)?;
        self.log.seal(record);
        let written = self.log.append(record).and_then(|()| self.log.sync());
        metrics::histogram!("fleety_store_log_sync_seconds")
            .record(started.elapsed().as_secs_f64());
        written
    }
}

/// The rows as a decision sees them: the overlay first, then redb. The overlay stays locked for
/// the whole group, so the applier cannot commit a group and forget its rows between a miss in
/// the overlay and the redb read that follows it: any row missing from the overlay is either
/// untouched since the last commit or committed before the lock was taken, and the read
/// transaction is begun after that.
struct Rows<'a> {
    overlay: MutexGuard<'a, Overlay>,
    db: &'a Database,
    txn: Option<redb::ReadTransaction>,
    seq: u64,
}

impl Rows<'_> {
    fn exists(&mut self, row: &Row) -> StoreResult<bool> {
        if let Some((exists, _)) = self.overlay.get(row) {
            return Ok(*exists);
        }
        let txn = match &mut self.txn {
            Some(txn) => txn,
            slot => slot.insert(self.db.begin_read().map_err(internal)?),
        };
        fn found<'k, K: redb::Key + 'static>(
            txn: &redb::ReadTransaction,
            table: TableDefinition<K, &'static [u8]>,
            key: impl std::borrow::Borrow<K::SelfType<'k>>,
        ) -> StoreResult<bool> {
            let table = txn.open_table(table).map_err(internal)?;
            let row = redb::ReadableTable::get(&table, key).map_err(internal)?;
            Ok(row.is_some())
        }
        match row {
            Row::Project(id) => found(txn, PROJECTS, id.as_str()),
            Row::Ticket(p, s) => found(txn, TICKETS, (p.as_str(), s.as_str())),
            Row::Article(p, id) => found(txn, ARTICLES, (p.as_str(), id.as_str())),
            Row::Webhook(p, id) => found(txn, WEBHOOKS, (p.as_str(), id.as_str())),
            Row::Member(p, id) => found(txn, MEMBERS, (p.as_str(), id.as_str())),
            Row::MemberEmail(p, e) => found(txn, MEMBER_EMAILS, (p.as_str(), e.as_str())),
            Row::MemberSession(p, m, id) => {
                found(txn, MEMBER_SESSIONS, (p.as_str(), m.as_str(), id.as_str()))
            }
            Row::ApiToken(p, id) => found(txn, API_TOKENS, (p.as_str(), id.as_str())),
            Row::MemberLink(p, id) => found(txn, MEMBER_LINKS, (p.as_str(), id.as_str())),
            Row::Email(id) => found(txn, EMAILS, id.as_str()),
            Row::MemberTotp(p, m, version) => {
                let table = txn.open_table(MEMBER_TOTP).map_err(internal)?;
                let row =
                    redb::ReadableTable::get(&table, (p.as_str(), m.as_str())).map_err(internal)?;
                let stored = match row {
                    Some(v) => Some(super::tables::from_json::<MemberTotp>(v.value())?.version),
                    None => None,
                };
                Ok(stored == *version)
            }
        }
    }

    /// How many endpoints `project` has: those in redb, as the overlay has changed them since.
    fn webhooks_of(&mut self, project: &str) -> StoreResult<usize> {
        let txn = match &mut self.txn {
            Some(txn) => txn,
            slot => slot.insert(self.db.begin_read().map_err(internal)?),
        };
        let table = txn.open_table(WEBHOOKS).map_err(internal)?;
        let mut ids = std::collections::HashSet::new();
        // Endpoint ids are UUIDs in hex-and-dash form, which sort between "" and "~".
        let stored =
            redb::ReadableTable::range::<(&str, &str)>(&table, (project, "")..(project, "~"))
                .map_err(internal)?;
        for row in stored {
            let (key, _) = row.map_err(internal)?;
            ids.insert(key.value().1.to_owned());
        }
        for (row, (exists, _)) in self.overlay.iter() {
            match row {
                Row::Webhook(p, id) if p == project && *exists => ids.insert(id.clone()),
                Row::Webhook(p, id) if p == project => ids.remove(id),
                _ => false,
            };
        }
        Ok(ids.len())
    }

    fn set(&mut self, row: Row, exists: bool) {
        self.overlay.insert(row, (exists, self.seq));
    }

    /// Whether the ticket an email is about is stored (as of the writes decided so far).
    fn ticket_stored(&mut self, e: &fleety_actors::email::Email) -> StoreResult<bool> {
        match &e.ticket {
            Some(slug) => self.exists(&Self::ticket_row(&e.project_id, slug)),
            None => Ok(true),
        }
    }

    fn ticket_row(project: &ProjectId, slug: &Slug) -> Row {
        Row::Ticket(project.as_str().to_owned(), slug.as_str().to_owned())
    }

    /// Decides one write and adds its effects to the group's record. A refused write adds
    /// nothing.
    fn decide(&mut self, write: &Write, record: &mut RecordBuf) -> StoreResult<()> {
        match write {
            Write::Project { project: p, create } => {
                let row = Row::Project(p.id.as_str().to_owned());
                match (create, self.exists(&row)?) {
                    (true, true) => return Err(StoreError::Conflict),
                    (false, false) => return Err(StoreError::NotFound),
                    _ => {}
                }
                let json = to_json(p)?;
                record.push(&Op::Project {
                    id: p.id.as_str(),
                    json: &json,
                });
                self.set(row, true);
            }
            Write::CreateTicket {
                ticket: t,
                messages,
                deliveries,
            } => {
                let row = Self::ticket_row(&t.project_id, &t.slug);
                if self.exists(&row)? {
                    return Err(StoreError::Conflict);
                }
                // All or nothing: encode every part before recording any. The whole creation
                // is in this one record, so a replay restores the ticket with all its history
                // or, from a torn record, none of it.
                let json = to_json(t)?;
                let texts = messages
                    .iter()
                    .map(to_json)
                    .collect::<StoreResult<Vec<_>>>()?;
                let encoded = deliveries
                    .iter()
                    .map(DeliveryRow::new)
                    .collect::<StoreResult<Vec<_>>>()?;
                record.push(&ticket_op(t, &json));
                let (project, slug) = (t.project_id.as_str(), t.slug.as_str());
                let contact = t.contact.as_ref().map(|c| order_key(c.id));
                if let Some(contact) = &contact {
                    record.push(&Op::ContactTicket {
                        project,
                        contact,
                        created_ms: t.created_at.timestamp_millis(),
                        slug,
                    });
                }
                for (m, json) in messages.iter().zip(&texts) {
                    record.push(&Op::Message {
                        project,
                        slug,
                        ticks: m.id.ticks(),
                        json,
                    });
                }
                for d in &encoded {
                    record.push(&d.op());
                }
                self.set(row, true);
            }
            Write::Ticket {
                project,
                slug,
                writes,
            } => {
                // All or nothing: check and encode every part before recording any.
                let mut encoded = Vec::with_capacity(writes.len());
                for w in writes {
                    let (json, endpoint) = match w {
                        TicketWrite::Message(m) => (to_json(m)?, String::new()),
                        TicketWrite::Ticket(t) => {
                            if !self.exists(&Self::ticket_row(&t.project_id, &t.slug))? {
                                return Err(StoreError::NotFound);
                            }
                            (to_json(t)?, String::new())
                        }
                        TicketWrite::ReadCursor { up_to, .. } => {
                            (up_to.to_bytes().to_vec(), String::new())
                        }
                        TicketWrite::Note(n) => (to_json(n)?, String::new()),
                        TicketWrite::Activity(a) => (to_json(a)?, String::new()),
                        TicketWrite::Delivery(d) => (to_json(d)?, d.endpoint_id.to_string()),
                        TicketWrite::Audit(r) => (to_json(r)?, r.id.to_string()),
                    };
                    encoded.push((json, endpoint));
                }
                let (project, slug) = (project.as_str(), slug.as_str());
                for (w, (json, endpoint)) in writes.iter().zip(&encoded) {
                    record.push(&match w {
                        TicketWrite::Message(m) => Op::Message {
                            project,
                            slug,
                            ticks: m.id.ticks(),
                            json,
                        },
                        TicketWrite::Ticket(t) => ticket_op(t, json),
                        // Applying keeps the newer cursor, so this one may change nothing.
                        TicketWrite::ReadCursor { reader, .. } => Op::Cursor {
                            project,
                            slug,
                            reader: reader.as_str(),
                            up_to: json,
                        },
                        TicketWrite::Note(n) => Op::Note {
                            project,
                            slug,
                            ticks: n.id.ticks(),
                            json,
                        },
                        TicketWrite::Activity(a) => Op::Activity {
                            project,
                            slug,
                            ticks: a.id.ticks(),
                            json,
                        },
                        TicketWrite::Delivery(d) => delivery_op(d, endpoint, json),
                        TicketWrite::Audit(r) => Op::Audit {
                            project: r.project_id.as_str(),
                            at_ms: r.at.timestamp_millis(),
                            id: endpoint,
                            json,
                        },
                    });
                }
            }
            Write::ChatTurns {
                project,
                session,
                turns,
            } => {
                // All or nothing: encode every turn before recording any.
                let encoded = turns.iter().map(to_json).collect::<StoreResult<Vec<_>>>()?;
                for (t, json) in turns.iter().zip(&encoded) {
                    record.push(&Op::ChatTurn {
                        project: project.as_str(),
                        session,
                        ticks: t.id.ticks(),
                        json,
                    });
                }
            }
            Write::ChatConversation {
                project,
                conversation: c,
            } => {
                record.push(&Op::ChatConversation {
                    project: project.as_str(),
                    started_ms: c.started_at.timestamp_millis(),
                    session: &c.session,
                    json: &to_json(c)?,
                });
            }
            Write::PutContact(c) => {
                record.push(&Op::Contact {
                    project: c.project_id.as_str(),
                    id: &order_key(c.id),
                    json: &to_json(c)?,
                });
            }
            Write::PutInboundMail(m) => {
                record.push(&Op::InboundMail {
                    project: m.project_id.as_str(),
                    slug: m.slug.as_str(),
                    key: &m.key,
                    json: &to_json(m)?,
                });
            }
            Write::PutArticle(a) => {
                let (id, json) = (a.id.to_string(), to_json(a)?);
                record.push(&Op::Article {
                    project: a.project_id.as_str(),
                    id: &id,
                    json: &json,
                });
                self.set(Row::Article(a.project_id.as_str().to_owned(), id), true);
            }
            Write::Unanswered { put, delete } => {
                let encoded = put.iter().map(to_json).collect::<StoreResult<Vec<_>>>()?;
                for (q, json) in put.iter().zip(&encoded) {
                    record.push(&Op::Unanswered {
                        project: q.project_id.as_str(),
                        id: &q.id,
                        json,
                    });
                }
                for (project, id) in delete {
                    record.push(&Op::DeleteUnanswered { project, id });
                }
            }
            Write::DeleteArticle { project, id } => {
                let id = id.to_string();
                let row = Row::Article(project.as_str().to_owned(), id.clone());
                if !self.exists(&row)? {
                    return Err(StoreError::NotFound);
                }
                record.push(&Op::DeleteArticle {
                    project: project.as_str(),
                    id: &id,
                });
                self.set(row, false);
            }
            Write::CreateWebhook { endpoint: e, max } => {
                let (id, json) = (e.id.to_string(), to_json(e)?);
                let project = e.project_id.as_str();
                let row = Row::Webhook(project.to_owned(), id.clone());
                // Decided on the writer thread, one write at a time: no other create can come
                // between the count and the insert.
                if self.exists(&row)? || self.webhooks_of(project)? >= *max {
                    return Err(StoreError::Conflict);
                }
                record.push(&Op::Webhook {
                    project,
                    id: &id,
                    json: &json,
                });
                self.set(row, true);
            }
            Write::PutWebhook(e) => {
                let (id, json) = (e.id.to_string(), to_json(e)?);
                let row = Row::Webhook(e.project_id.as_str().to_owned(), id.clone());
                if !self.exists(&row)? {
                    return Err(StoreError::NotFound);
                }
                record.push(&Op::Webhook {
                    project: e.project_id.as_str(),
                    id: &id,
                    json: &json,
                });
                self.set(row, true);
            }
            Write::DeleteWebhook { project, id } => {
                let id = id.to_string();
                let row = Row::Webhook(project.as_str().to_owned(), id.clone());
                if !self.exists(&row)? {
                    return Err(StoreError::NotFound);
                }
                record.push(&Op::DeleteWebhook {
                    project: project.as_str(),
                    id: &id,
                });
                self.set(row, false);
            }
            Write::PutDelivery(d, update) => {
                // An erasure sets its ticket's row gone when it is decided: an attempt that
                // was under way then finds it gone here, and the delivery is removed instead
                // of written back (as is the announcement of a ticket that never came).
                if let Some(slug) = update.then(|| d.ticket()).flatten() {
                    let ticket = Row::Ticket(d.project_id.as_str().to_owned(), slug);
                    if !self.exists(&ticket)? {
                        let endpoint = d.endpoint_id.to_string();
                        record.push(&Op::DeleteDelivery {
                            project: d.project_id.as_str(),
                            endpoint: &endpoint,
                            id: &d.id,
                        });
                        return Ok(());
                    }
                }
                record.push(&DeliveryRow::new(d)?.op())
            }
            Write::DeleteDeliveries(keys) => {
                for (project, endpoint, id) in keys {
                    record.push(&Op::DeleteDelivery {
                        project,
                        endpoint,
                        id,
                    });
                }
            }
            Write::CreateMember(m) | Write::UpdateMember(m) => {
                let create = matches!(write, Write::CreateMember(_));
                let (project, id) = (m.project_id.as_str(), m.id.to_string());
                let row = Row::Member(project.to_owned(), id.clone());
                let email = Row::MemberEmail(project.to_owned(), m.email.clone());
                // Decided on the writer thread, one write at a time: two creates with one
                // email cannot both find it free.
                match (create, self.exists(&row)?) {
                    (true, true) => return Err(StoreError::Conflict),
                    (true, false) if self.exists(&email)? => return Err(StoreError::Conflict),
                    (false, false) => return Err(StoreError::NotFound),
                    _ => {}
                }
                record.push(&Op::Member {
                    project,
                    id: &id,
                    email: &m.email,
                    json: &to_json(m)?,
                });
                self.set(row, true);
                self.set(email, true);
            }
            Write::PutMemberSession(s) => {
                let (project, member) = (s.project_id.as_str(), s.member_id.to_string());
                record.push(&Op::MemberSession {
                    project,
                    member: &member,
                    id: &s.id,
                    json: &to_json(s)?,
                });
                let row = Row::MemberSession(project.to_owned(), member, s.id.clone());
                self.set(row, true);
            }
            Write::DeleteMemberSessions { keys, one } => {
                for (project, member, id) in keys {
                    let row = Row::MemberSession(project.clone(), member.clone(), id.clone());
                    if *one && !self.exists(&row)? {
                        return Err(StoreError::NotFound);
                    }
                    record.push(&Op::DeleteMemberSession {
                        project,
                        member,
                        id,
                    });
                    self.set(row, false);
                }
            }
            Write::PutCanned(r) => {
                let (id, json) = (r.id.to_string(), to_json(r)?);
                record.push(&Op::Canned {
                    project: r.project_id.as_str(),
                    id: &id,
                    json: &json,
                });
            }
            Write::DeleteCanned { project, id } => {
                record.push(&Op::DeleteCanned { project, id });
            }
            Write::PutApiToken { token, create } => {
                let (project, id) = (token.project_id.as_str(), token.id.to_string());
                let row = Row::ApiToken(project.to_owned(), id.clone());
                if self.exists(&row)? == *create {
                    return Err(match create {
                        true => StoreError::Conflict,
                        false => StoreError::NotFound,
                    });
                }
                record.push(&Op::ApiToken {
                    project,
                    id: &id,
                    json: &to_json(token)?,
                });
                self.set(row, true);
            }
            Write::DeleteApiToken { project, id } => {
                let row = Row::ApiToken(project.clone(), id.clone());
                if !self.exists(&row)? {
                    return Err(StoreError::NotFound);
                }
                record.push(&Op::DeleteApiToken { project, id });
                self.set(row, false);
            }
            Write::PutMemberTotp { totp, expected } => {
                let (project, member) = (totp.project_id.as_str(), totp.member_id.to_string());
                let row = |v| Row::MemberTotp(project.to_owned(), member.clone(), v);
                // Decided on the writer thread, one write at a time: of two writes that read
                // one version, the second finds it gone.
                if !self.exists(&row(*expected))? {
                    return Err(StoreError::Conflict);
                }
                record.push(&Op::MemberTotp {
                    project,
                    member: &member,
                    json: &to_json(totp)?,
                });
                self.set(row(*expected), false);
                self.set(row(None), false);
                self.set(row(Some(totp.version)), true);
            }
            Write::DeleteMemberTotp {
                project,
                member,
                expected,
            } => {
                let row = |v| Row::MemberTotp(project.clone(), member.clone(), v);
                if !self.exists(&row(Some(*expected)))? {
                    return Err(match self.exists(&row(None))? {
                        true => StoreError::NotFound,
                        false => StoreError::Conflict,
                    });
                }
                record.push(&Op::DeleteMemberTotp { project, member });
                self.set(row(Some(*expected)), false);
                self.set(row(None), true);
            }
            Write::PutMemberLink(l) => {
                let project = l.project_id.as_str();
                record.push(&Op::MemberLink {
                    project,
                    id: &l.id,
                    json: &to_json(l)?,
                });
                self.set(Row::MemberLink(project.to_owned(), l.id.clone()), true);
            }
            Write::PutMemberLinkWithEmail(l, e) => {
                let project = l.project_id.as_str();
                let (link_json, email_json) = (to_json(l)?, to_json(e)?);
                record.push(&Op::MemberLink {
                    project,
                    id: &l.id,
                    json: &link_json,
                });
                record.push(&email_op(e, &email_json));
                self.set(Row::MemberLink(project.to_owned(), l.id.clone()), true);
            }
            Write::PutEmail(e) => {
                // An email about a ticket is only replaced, while its ticket is stored: the
                // erasure's write sets the ticket's row gone before its emails' removal is
                // applied, so an attempt recorded after it finds the ticket gone here.
                if e.ticket.is_some()
                    && !(self.exists(&Row::Email(e.id.clone()))? && self.ticket_stored(e)?)
                {
                    return Err(StoreError::NotFound);
                }
                record.push(&email_op(e, &to_json(e)?));
                self.set(Row::Email(e.id.clone()), true);
            }
            Write::CreateEmail(e) => {
                // Decided on the writer thread, one write at a time: of two creations of one
                // email, the second finds it there; an email composed while its ticket was
                // erased finds the ticket gone.
                let row = Row::Email(e.id.clone());
                if self.exists(&row)? || !self.ticket_stored(e)? {
                    return Err(StoreError::Conflict);
                }
                record.push(&email_op(e, &to_json(e)?));
                self.set(row, true);
            }
            Write::PutNotificationPrefs(n) => {
                record.push(&Op::NotificationPrefs {
                    project: n.project_id.as_str(),
                    member: &n.member_id.to_string(),
                    json: &to_json(n)?,
                });
            }
            Write::PutVisitorMail(m, e) => {
                let json = to_json(m)?;
                record.push(&Op::VisitorMail {
                    project: m.project_id.as_str(),
                    slug: m.slug.as_str(),
                    due_ms: m.due_at.map(|at| at.timestamp_millis()),
                    json: &json,
                });
                if let Some(e) = e {
                    if self.ticket_stored(e)? {
                        record.push(&email_op(e, &to_json(e)?));
                        self.set(Row::Email(e.id.clone()), true);
                    }
                }
            }
            Write::DeleteMemberLink { project, id } => {
                let row = Row::MemberLink(project.clone(), id.clone());
                // Decided on the writer thread, one write at a time: of two uses of a link,
                // the second finds it gone.
                if !self.exists(&row)? {
                    return Err(StoreError::NotFound);
                }
                record.push(&Op::DeleteMemberLink { project, id });
                self.set(row, false);
            }
            Write::Audit(r) => record.push(&AuditRow::new(r)?.op()),
            Write::DeleteAudit(keys) => {
                for (project, at_ms, id) in keys {
                    record.push(&Op::DeleteAudit {
                        project,
                        at_ms: *at_ms,
                        id,
                    });
                }
            }
            Write::Barrier | Write::Scrub => {}
            Write::EraseTicket { project, slug } => {
                record.push(&Op::EraseTicket {
                    project: project.as_str(),
                    slug: slug.as_str(),
                });
                self.set(Self::ticket_row(project, slug), false);
            }
            Write::PutErasure(e) => {
                record.push(&Op::Erasure {
                    project: e.project_id.as_str(),
                    slug: e.slug.as_str(),
                    json: &to_json(e)?,
                });
            }
            Write::DeleteErasure { project, slug } => {
                record.push(&Op::DeleteErasure {
                    project: project.as_str(),
                    slug: slug.as_str(),
                });
            }
            Write::EraseContact { project, contact } => {
                record.push(&Op::EraseContact {
                    project: project.as_str(),
                    contact: &order_key(*contact),
                });
            }
            Write::PutContactErasure(e) => {
                record.push(&Op::ContactErasure {
                    project: e.project_id.as_str(),
                    contact: &order_key(e.contact_id),
                    json: &to_json(e)?,
                });
            }
            Write::DeleteContactErasure { project, contact } => {
                record.push(&Op::DeleteContactErasure {
                    project: project.as_str(),
                    contact: &order_key(*contact),
                });
            }
        }
        Ok(())
    }
}

/// A delivery encoded for the log.
struct DeliveryRow<'a> {
    delivery: &'a Delivery,
    endpoint: String,
    json: Vec<u8>,
}

impl<'a> DeliveryRow<'a> {
    fn new(delivery: &'a Delivery) -> StoreResult<Self> {
        Ok(Self {
            delivery,
            endpoint: delivery.endpoint_id.to_string(),
            json: to_json(delivery)?,
        })
    }

    fn op(&self) -> Op<'_> {
        delivery_op(self.delivery, &self.endpoint, &self.json)
    }
}

fn delivery_op<'a>(d: &'a Delivery, endpoint: &'a str, json: &'a [u8]) -> Op<'a> {
    Op::Delivery {
        project: d.project_id.as_str(),
        endpoint,
        id: &d.id,
        due_ms: d.next_attempt_at.map(|at| at.timestamp_millis()),
        json,
    }
}

/// An audit record, encoded for the log.
struct AuditRow<'a> {
    record: &'a AuditRecord,
    id: String,
    json: Vec<u8>,
}

impl<'a> AuditRow<'a> {
    fn new(record: &'a AuditRecord) -> StoreResult<Self> {
        Ok(Self {
            record,
            id: record.id.to_string(),
            json: to_json(record)?,
        })
    }

    fn op(&self) -> Op<'_> {
        Op::Audit {
            project: self.record.project_id.as_str(),
            at_ms: self.record.at.timestamp_millis(),
            id: &self.id,
            json: &self.json,
        }
    }
}

fn email_op<'a>(e: &'a fleety_actors::email::Email, json: &'a [u8]) -> Op<'a> {
    Op::Email {
        id: &e.id,
        due_ms: e.next_attempt_at.map(|at| at.timestamp_millis()),
        json,
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

struct Applier {
    db: Arc<DbCell>,
    shared: Arc<Shared>,
    applied: watch::Sender<u64>,
    timing: ApplyTiming,
    last_applied: u64,
    /// When redb first held a commit only the log makes durable, since the last checkpoint.
    dirty_since: Option<Instant>,
    /// Log bytes applied since the last checkpoint.
    applied_bytes: usize,
}

impl Applier {
    fn run(&mut self, queue: &std_mpsc::Receiver<ToApply>) {
        let mut batch = Vec::with_capacity(256);
        loop {
            let first = match self.dirty_since {
                // Quiet, with commits only the log holds: checkpoint when they are due.
                Some(since) => {
                    match queue
                        .recv_timeout(self.timing.checkpoint_every.saturating_sub(since.elapsed()))
                    {
                        Ok(first) => first,
                        Err(std_mpsc::RecvTimeoutError::Timeout) => {
                            if let Err(e) = self.checkpoint(&[]) {
                                // The log still holds it all; try again after an interval.
                                tracing::error!(error = %e, "checkpoint failed");
                                self.dirty_since = Some(Instant::now());
                            }
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
            match first {
                ToApply::Group(seq, record) => batch.push((seq, record)),
                ToApply::Nudge => {
                    // Nothing gathered: the group the reader needs is still on its way, and
                    // is committed as soon as it comes (see `gather`).
                    self.shared.nudged.swap(false, Ordering::AcqRel);
                    continue;
                }
            }
            let open = self.gather(queue, &mut batch);
            let due = self
                .dirty_since
                .is_some_and(|since| since.elapsed() >= self.timing.checkpoint_every)
                || self.applied_bytes >= CHECKPOINT_LOG_BYTES;
            let applied = if due {
                self.checkpoint(&batch)
            } else {
                self.commit(&batch, false).map(|()| {
                    self.dirty_since.get_or_insert_with(Instant::now);
                })
            };
            if let Err(e) = applied {
                // A record that is durable cannot be applied: stop, so readers and writers get
                // errors instead of a store that silently lacks acknowledged writes. A restart
                // replays the log.
                tracing::error!(error = %e, "cannot apply the store's log to redb; refusing writes until restart");
                self.shared.failed.store(true, Ordering::Release);
                return;
            }
            let newest = batch.last().map_or(self.last_applied, |(seq, _)| *seq);
            let bytes = batch.iter().map(|(_, r)| r.len()).sum::<usize>();
            self.applied_bytes += bytes;
            self.shared.release(bytes);
            batch.clear();
            self.last_applied = newest;
            // Forget overlay rows only once redb has them.
            self.shared.overlay().retain(|_, (_, seq)| *seq > newest);
            self.applied.send_replace(newest);
            metrics::gauge!("fleety_store_apply_lag_groups")
                .set(self.shared.durable().saturating_sub(newest) as f64);
            if !open {
                break;
            }
        }
        if self.dirty_since.is_some() {
            // A clean stop leaves nothing to replay.
            if let Err(e) = self.checkpoint(&[]) {
                tracing::error!(error = %e, "final checkpoint failed; the log will be replayed on start");
            }
        }
    }

    /// Adds to `batch` the groups that come within the gather window, and stops early once a
    /// waiting reader's group is in it or the batch is large. False once the queue has closed.
    ///
    /// `wanted` is one number for all readers, so a reader may be held until the group a later
    /// reader wants comes as well; that group is already durable and on its way from the
    /// writer, so the wait is short.
    fn gather(&self, queue: &std_mpsc::Receiver<ToApply>, batch: &mut Vec<(u64, Vec<u8>)>) -> bool {
        // `None` (a window too long to represent) gathers until a reader or a full batch ends it.
        let until = Instant::now().checked_add(self.timing.gather);
        let mut bytes: usize = batch.iter().map(|(_, r)| r.len()).sum();
        self.shared.gatherer.get_or_init(std::thread::current);
        loop {
            let newest = batch.last().map_or(self.last_applied, |(seq, _)| *seq);
            let wanted = self.shared.wanted.load(Ordering::Acquire);
            if (wanted > self.last_applied && newest >= wanted)
                || batch.len() >= MAX_GROUP
                || bytes >= GATHER_BYTES
            {
                return true;
            }
            // The applier parks instead of waiting on the queue: a sender wakes a receiver
            // blocked on the channel, so waiting there would cost the writer a wake-up and the
            // applier a context switch for every group, thousands a second under load, for a
            // window that only needs to end on time or when a reader nudges.
            match queue.try_recv() {
                Ok(ToApply::Group(seq, record)) => {
                    bytes += record.len();
                    batch.push((seq, record));
                }
                Ok(ToApply::Nudge) => {
                    // Acquire the nudging reader's `wanted` before the check above reads it.
                    self.shared.nudged.swap(false, Ordering::AcqRel);
                }
                Err(std_mpsc::TryRecvError::Disconnected) => return false,
                // Past the deadline this still took whatever was already waiting.
                Err(std_mpsc::TryRecvError::Empty) => {
                    let now = Instant::now();
                    let left = match until {
                        Some(until) if until <= now => return true,
                        Some(until) => until - now,
                        None => GATHER_LOOK_EVERY,
                    };
                    // A nudge between the look and the park leaves a token: no wake is lost.
                    std::thread::park_timeout(left.min(GATHER_LOOK_EVERY));
                }
            }
        }
    }

    /// Applies `batch` in one redb commit, durable for a checkpoint.
    fn commit(&self, batch: &[(u64, Vec<u8>)], durable: bool) -> StoreResult<()> {
        let _commits = self.db.commits();
        let mut txn = self.db.get().begin_write().map_err(internal)?;
        if !durable {
            txn.set_durability(Durability::None).map_err(internal)?;
        }
        {
            let mut tables = Tables::open(&txn)?;
            for (_, bytes) in batch {
                // Empty for a group that changed nothing.
                if let Some(record) = wal::unsealed(bytes) {
                    for op in record.ops().map_err(internal)? {
                        tables.apply(&op)?;
                    }
                }
            }
            if durable {
                let newest = batch.last().map_or(self.last_applied, |(seq, _)| *seq);
                tables
                    .meta
                    .insert(CHECKPOINT_KEY, newest)
                    .map_err(internal)?;
            }
        }
        txn.commit().map_err(internal)
    }

    /// Applies `batch` (possibly nothing) and makes redb durable with it. Nothing is lost if
    /// this fails: the log still holds every group since the last checkpoint.
    fn checkpoint(&mut self, batch: &[(u64, Vec<u8>)]) -> StoreResult<()> {
        let started = Instant::now();
        match self.commit(batch, true) {
            Ok(()) => {
                metrics::histogram!("fleety_store_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
                let newest = batch.last().map_or(self.last_applied, |(seq, _)| *seq);
                self.shared.checkpointed(newest);
                self.dirty_since = None;
                self.applied_bytes = 0;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::tests::{project, ticket};

    /// An applier whose window never ends on its own, after group `last`, with its queue.
    fn gathering_applier(
        dir: &std::path::Path,
        last: u64,
    ) -> (Applier, Nudger, std_mpsc::Receiver<ToApply>) {
        let db = DbCell::new(Database::create(dir.join("t.redb")).unwrap());
        let shared = Arc::new(Shared::new(last));
        let (tx, queue) = std_mpsc::sync_channel(16);
        let never = Duration::from_secs(3600);
        let applier = Applier {
            db,
            shared: shared.clone(),
            applied: watch::channel(last).0,
            timing: ApplyTiming {
                checkpoint_every: never,
                gather: never,
            },
            last_applied: last,
            dirty_since: None,
            applied_bytes: 0,
        };
        (applier, Nudger { queue: tx, shared }, queue)
    }

    /// A reader's nudge can come before the group it wants (the writer stores `durable` before
    /// it hands the group on): gathering ends when that group arrives.
    #[test]
    fn gathering_ends_when_a_nudged_for_group_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let (applier, nudger, queue) = gathering_applier(dir.path(), 0);
        nudger.nudge(2);
        nudger.queue.send(ToApply::Group(2, Vec::new())).unwrap();
        nudger.queue.send(ToApply::Group(3, Vec::new())).unwrap();
        let mut batch = vec![(1, Vec::new())];
        assert!(applier.gather(&queue, &mut batch));
        // It stopped at the wanted group, leaving the later one for the next commit.
        let seqs: Vec<u64> = batch.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert!(!applier.shared.nudged.load(Ordering::Acquire));
        assert!(matches!(queue.try_recv(), Ok(ToApply::Group(3, _))));
    }

    /// A reader that needs a group the applier already holds wakes it from its window.
    #[test]
    fn a_nudge_wakes_an_applier_holding_the_wanted_group() {
        let dir = tempfile::tempdir().unwrap();
        let (applier, nudger, queue) = gathering_applier(dir.path(), 2);
        let (done_tx, done) = std_mpsc::channel();
        let (started_tx, started) = std_mpsc::channel();
        let gathering = std::thread::spawn(move || {
            let mut batch = vec![(3, Vec::new())];
            let _ = started_tx.send(());
            let open = applier.gather(&queue, &mut batch);
            let _ = done_tx.send((open, batch.len()));
        });
        started.recv().unwrap();
        // Lets the applier reach its wait first, so the nudge is what wakes it; if the nudge
        // still came first, the applier would find it waiting and the test holds all the same.
        std::thread::sleep(Duration::from_millis(100));
        nudger.nudge(3);
        // Generous: without the nudge it would wait an hour.
        let (open, gathered) = done
            .recv_timeout(Duration::from_secs(30))
            .expect("the nudge did not end the gather window");
        assert!(open);
        assert_eq!(gathered, 1);
        gathering.join().unwrap();
    }

    /// When the writer stops, gathering ends and says so, keeping what it has.
    #[test]
    fn gathering_ends_when_the_queue_closes() {
        let dir = tempfile::tempdir().unwrap();
        let (applier, nudger, queue) = gathering_applier(dir.path(), 0);
        nudger.queue.send(ToApply::Group(2, Vec::new())).unwrap();
        drop(nudger);
        let mut batch = vec![(1, Vec::new())];
        assert!(!applier.gather(&queue, &mut batch));
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn the_applier_queue_is_bounded_in_bytes() {
        let shared = Arc::new(Shared::new(0));
        // A lone record always fits, however large.
        assert!(shared.reserve(APPLY_QUEUE_BYTES + 1));
        let waiter = {
            let shared = shared.clone();
            std::thread::spawn(move || shared.reserve(10))
        };
        // The waiter can only finish once the applier has freed room.
        shared.release(APPLY_QUEUE_BYTES + 1);
        assert!(waiter.join().unwrap());
        assert_eq!(*shared.queued_bytes.lock().unwrap(), 10);
        // With a stage failed, a reservation that must wait gives up instead.
        shared.failed.store(true, Ordering::Release);
        assert!(!shared.reserve(APPLY_QUEUE_BYTES));
    }

    /// Decisions read the overlay before redb: redb here says the opposite of the overlay.
    #[test]
    fn decisions_see_logged_rows_redb_does_not_have_yet() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let t = ticket(&project());
        let article = uuid::Uuid::new_v4();
        let txn = db.begin_write().unwrap();
        {
            let mut tables = Tables::open(&txn).unwrap();
            tables
                .apply(&Op::Article {
                    project: "p1",
                    id: &article.to_string(),
                    json: b"{}",
                })
                .unwrap();
        }
        txn.commit().unwrap();

        let overlay = Mutex::new(Overlay::new());
        let mut rows = Rows {
            overlay: overlay.lock().unwrap(),
            db: &db,
            txn: None,
            seq: 7,
        };
        let mut record = RecordBuf::new(7);
        let create = Write::CreateTicket {
            ticket: t.clone(),
            messages: Vec::new(),
            deliveries: Vec::new(),
        };
        assert!(rows.decide(&create, &mut record).is_ok());
        // The ticket is only in the overlay, yet a second create conflicts and an update finds it.
        assert!(matches!(
            rows.decide(&create, &mut record),
            Err(StoreError::Conflict)
        ));
        let update = Write::Ticket {
            project: t.project_id.clone(),
            slug: t.slug.clone(),
            writes: vec![TicketWrite::Ticket(t.clone())],
        };
        assert!(rows.decide(&update, &mut record).is_ok());
        // The article is in redb, but a logged delete has removed it.
        let delete = Write::DeleteArticle {
            project: t.project_id.clone(),
            id: article,
        };
        assert!(rows.decide(&delete, &mut record).is_ok());
        assert!(matches!(
            rows.decide(&delete, &mut record),
            Err(StoreError::NotFound)
        ));
        drop(rows);
        assert_eq!(overlay.lock().unwrap().len(), 2);
        let bytes = record.finish();
        let ops = wal::unsealed(&bytes).unwrap().ops().unwrap();
        // Refused writes left nothing in the record.
        assert_eq!(ops.len(), 3);
    }
}
