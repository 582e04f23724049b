//! The embedded store: one redb file in the data directory, the default backend.
//!
//! All writes go through one writer thread that practises group commit: it takes every write
//! waiting in its queue, applies them in a single transaction and makes that durable with one
//! fsync, then answers each writer. Throughput therefore grows with concurrency instead of
//! being capped at one fsync per message. Reads run concurrently on the blocking pool.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use fleety_actors::domain::{
    Article, ChatTurn, ChatUsage, Message, Participant, Project, ProjectId, ReadCursor, Slug,
    Ticket,
};
use fleety_actors::store::{
    MessageRange, Store, StoreError, StoreResult, TicketPage, TicketQuery, TicketWrite,
};
use fleety_actors::MessageId;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

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

/// Writes applied in one group commit at most; bounds the latency a large queue adds.
const MAX_GROUP: usize = 4096;

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

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Option<mpsc::UnboundedSender<(Write, Reply)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Closing the queue lets the writer finish its last group and exit; joining it means the file
/// lock is released when the store is dropped, so a restart in the same process can reopen it.
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
    /// Opens (or creates) `fleety.redb` in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
        let path = dir.join("fleety.redb");
        let db = Database::create(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        // Create every table up front so readers never meet a missing one.
        let txn = db.begin_write()?;
        txn.open_table(PROJECTS)?;
        txn.open_table(TICKETS)?;
        txn.open_table(TICKETS_BY_TIME)?;
        txn.open_table(MESSAGES)?;
        txn.open_table(READ_CURSORS)?;
        txn.open_table(CHAT_TURNS)?;
        txn.open_table(ARTICLES)?;
        txn.commit()?;

        let db = Arc::new(db);
        let (writer, queue) = mpsc::unbounded_channel();
        let writer_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("fleety-store-writer".into())
            .spawn(move || write_loop(&writer_db, queue))?;
        Ok(Self {
            db,
            writer: Some(writer),
            thread: Some(thread),
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
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(internal)?;
            f(&txn)
        })
        .await
        .map_err(internal)?
    }
}

fn write_loop(db: &Database, mut queue: mpsc::UnboundedReceiver<(Write, Reply)>) {
    let mut group = Vec::with_capacity(256);
    while let Some(first) = queue.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let outcomes = commit_group(db, &group);
        metrics::histogram!("fleety_store_group_commit_writes").record(group.len() as f64);
        tracing::trace!(writes = group.len(), "group commit");
        match outcomes {
            Ok(results) => {
                for ((_, reply), result) in group.drain(..).zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = group.len(), "group commit failed");
                for (_, reply) in group.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Checks one ticket's writes and encodes them, without changing anything. A refusal fails only
/// this write; a storage error (the outer error) fails the whole group.
fn prepare_ticket_writes(
    tickets: &redb::Table<(&str, &str), &[u8]>,
    writes: &[TicketWrite],
) -> Result<Vec<Vec<u8>>, StoreError> {
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
                    return Err(StoreError::NotFound);
                }
                to_json(t)?
            }
            TicketWrite::ReadCursor { .. } => Vec::new(),
        });
    }
    Ok(encoded)
}

/// Applies a group in one transaction. The outer error fails the whole group (nothing was
/// committed); the inner results are per write (a conflict fails only its own write).
fn commit_group(db: &Database, group: &[(Write, Reply)]) -> StoreResult<Vec<StoreResult<()>>> {
    let txn = db.begin_write().map_err(internal)?;
    let mut results = Vec::with_capacity(group.len());
    {
        let mut projects = txn.open_table(PROJECTS).map_err(internal)?;
        let mut tickets = txn.open_table(TICKETS).map_err(internal)?;
        let mut by_time = txn.open_table(TICKETS_BY_TIME).map_err(internal)?;
        let mut messages = txn.open_table(MESSAGES).map_err(internal)?;
        let mut cursors = txn.open_table(READ_CURSORS).map_err(internal)?;
        let mut chat = txn.open_table(CHAT_TURNS).map_err(internal)?;
        let mut articles = txn.open_table(ARTICLES).map_err(internal)?;
        for (write, _) in group {
            let result = match write {
                Write::Project { project: p, create } => {
                    let exists = projects.get(p.id.as_str()).map_err(internal)?.is_some();
                    match (create, exists) {
                        (true, true) => Err(StoreError::Conflict),
                        (false, false) => Err(StoreError::NotFound),
                        _ => {
                            projects
                                .insert(p.id.as_str(), to_json(p)?.as_slice())
                                .map_err(internal)?;
                            Ok(())
                        }
                    }
                }
                Write::CreateTicket(t) => {
                    let key = (t.project_id.as_str(), t.slug.as_str());
                    if tickets.get(key).map_err(internal)?.is_some() {
                        Err(StoreError::Conflict)
                    } else {
                        tickets
                            .insert(key, to_json(t)?.as_slice())
                            .map_err(internal)?;
                        let time_key = (
                            t.project_id.as_str(),
                            t.created_at.timestamp_millis(),
                            t.slug.as_str(),
                        );
                        by_time
                            .insert(time_key, t.status.as_str())
                            .map_err(internal)?;
                        Ok(())
                    }
                }
                Write::Ticket {
                    project,
                    slug,
                    writes,
                } => {
                    // All or nothing: check and encode every part first, insert only if all pass.
                    match prepare_ticket_writes(&tickets, writes) {
                        Err(refused) => Err(refused),
                        Ok(encoded) => {
                            for (w, json) in writes.iter().zip(encoded) {
                                match w {
                                    TicketWrite::Message(m) => {
                                        let key = (project.as_str(), slug.as_str(), m.id.ticks());
                                        messages.insert(key, json.as_slice()).map_err(internal)?;
                                    }
                                    TicketWrite::Ticket(t) => {
                                        let key = (t.project_id.as_str(), t.slug.as_str());
                                        tickets.insert(key, json.as_slice()).map_err(internal)?;
                                        let time_key = (
                                            t.project_id.as_str(),
                                            t.created_at.timestamp_millis(),
                                            t.slug.as_str(),
                                        );
                                        by_time
                                            .insert(time_key, t.status.as_str())
                                            .map_err(internal)?;
                                    }
                                    TicketWrite::ReadCursor { reader, up_to } => {
                                        let key =
                                            (project.as_str(), slug.as_str(), reader.as_str());
                                        let current = cursors
                                            .get(key)
                                            .map_err(internal)?
                                            .and_then(|v| cursor_id(v.value()));
                                        if current.is_none_or(|c| c < *up_to) {
                                            cursors
                                                .insert(key, up_to.to_bytes().as_slice())
                                                .map_err(internal)?;
                                        }
                                    }
                                }
                            }
                            Ok(())
                        }
                    }
                }
                Write::ChatTurns {
                    project,
                    session,
                    turns,
                } => {
                    for t in turns {
                        let key = (project.as_str(), session.as_str(), t.id.ticks());
                        chat.insert(key, to_json(t)?.as_slice()).map_err(internal)?;
                    }
                    Ok(())
                }
                Write::PutArticle(a) => {
                    let id = a.id.to_string();
                    articles
                        .insert((a.project_id.as_str(), id.as_str()), to_json(a)?.as_slice())
                        .map_err(internal)?;
                    Ok(())
                }
                Write::DeleteArticle { project, id } => {
                    let id = id.to_string();
                    match articles
                        .remove((project.as_str(), id.as_str()))
                        .map_err(internal)?
                    {
                        Some(_) => Ok(()),
                        None => Err(StoreError::NotFound),
                    }
                }
                Write::Barrier => Ok(()),
            };
            results.push(result);
        }
    }
    txn.commit().map_err(internal)?;
    Ok(results)
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
