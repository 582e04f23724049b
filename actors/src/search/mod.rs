//! Search over a project's tickets, for the agents' listing: one in-memory index per project
//! ([`index::TicketIndex`]: titles, descriptions, messages and internal notes), built from the
//! store when the project is first searched, kept in step with every ticket write after that,
//! and forgotten when the project has not been searched for a while.
//!
//! Notes are searched too: only agents search (the listing is theirs), and a note is where an
//! agent writes down what was done ("refund issued"), which is what they look for later.
//!
//! Keeping in step: [`Indexed`] wraps the tickets' store, and every write the store has made
//! durable is queued for the indexes of its project (while the project has one) before the
//! writer hears it is done. A search first applies what is queued, so it finds everything
//! whose write returned before it started, and a background task applies the queue once it
//! holds [`APPLY_BATCH`] writes, so it does not grow while nobody searches. No timer is
//! involved: a quiet project's few queued writes wait for its next search, and a busy one's
//! are applied in batches, each paying for one commit of the index. With several nodes, the
//! writes made on other nodes arrive through the tickets' log ([`crate::ticket::Tickets::index_logged`]);
//! a ticket opened elsewhere is read from the store when its announcement arrives.
//!
//! An index is built with its project's entry already in place, so a write landing during the
//! build is queued and applied after it: indexing an item again replaces it, so one seen by
//! both the build and the queue is there once.

pub mod index;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::{mpsc, OnceCell, Semaphore};

use crate::domain::{Activity, Message, Note, ProjectId, ReadCursor, Slug, Ticket};
use crate::store::{
    Done, MessageRange, StoreError, StoreResult, TicketPage, TicketQuery, TicketStore, TicketWrite,
};
use index::{IndexError, Item, TicketIndex};

/// A poisoned lock still guards consistent data here: every critical section either completes
/// or leaves the index to be forgotten.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Projects whose index is built at the same time at most: a build reads every ticket.
const BUILDS: usize = 2;
/// Tickets a build reads at the same time.
const BUILD_READS: usize = 8;
/// Messages a build reads from the store at a time, per ticket.
const MESSAGE_PAGE: usize = 500;
/// Writes queued for one project's index at most; past that the index is dropped (and built
/// again by the next search), so a flood of writes cannot grow memory without bound.
const MAX_QUEUED: usize = 50_000;
/// Writes queued for a project's index when the background task is asked to apply them.
const APPLY_BATCH: usize = 256;
/// An index not searched for this long is forgotten.
const IDLE: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Index(String),
}

impl From<IndexError> for SearchError {
    fn from(e: IndexError) -> Self {
        SearchError::Index(e.to_string())
    }
}

fn joined(e: tokio::task::JoinError) -> SearchError {
    SearchError::Index(format!("indexing task failed: {e}"))
}

/// The writes waiting for a project's index.
#[derive(Default)]
struct Queued {
    items: Vec<Item>,
    /// Tickets to read again from the store (opened on another node).
    reload: Vec<Slug>,
}

struct ProjectIndex {
    queued: Mutex<Queued>,
    index: OnceCell<Mutex<TicketIndex>>,
    /// Held while the queue is applied, so a search never overtakes an application of writes
    /// that returned before it started.
    applying: tokio::sync::Mutex<()>,
    used: Mutex<Instant>,
}

struct Shared {
    /// The store the index reads (the undecorated one).
    store: Arc<dyn TicketStore>,
    projects: Mutex<HashMap<ProjectId, Arc<ProjectIndex>>>,
    builds: Semaphore,
    wake: mpsc::Sender<ProjectId>,
}

/// The ticket search indexes of this node, one per searched project. Cheap to clone.
#[derive(Clone)]
pub struct TicketSearch {
    shared: Arc<Shared>,
}

impl TicketSearch {
    /// Searches `store`'s tickets. Starts the task applying queued writes: call within a
    /// tokio runtime.
    pub fn new(store: Arc<dyn TicketStore>) -> Self {
        let (wake, woken) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            store,
            projects: Mutex::default(),
            builds: Semaphore::new(BUILDS),
            wake,
        });
        tokio::spawn(apply_queued(Arc::downgrade(&shared), woken));
        TicketSearch { shared }
    }

    /// Whether this node has an index of the project, built or being built.
    pub fn indexes(&self, project: &ProjectId) -> bool {
        lock(&self.shared.projects).contains_key(project)
    }

    /// Queues writes the store has made durable for the project's index, if it has one;
    /// `items` is called only then.
    pub fn took(&self, project: &ProjectId, items: impl FnOnce() -> Vec<Item>) {
        self.queue(project, |q| q.items.extend(items()));
    }

    /// Queues a ticket to be read again from the store: it was opened on another node.
    pub fn reload(&self, project: &ProjectId, slug: &Slug) {
        self.queue(project, |q| q.reload.push(slug.clone()));
    }

    /// Drops the project's index, if this node has one: after an erasure, so no entry of the
    /// erased ticket outlives it in memory. The next search builds the index afresh from the
    /// store, which no longer holds the ticket.
    pub fn drop_index(&self, project: &ProjectId) {
        lock(&self.shared.projects).remove(project);
    }

    fn queue(&self, project: &ProjectId, add: impl FnOnce(&mut Queued)) {
        let Some(entry) = lock(&self.shared.projects).get(project).cloned() else {
            return;
        };
        let (before, after) = {
            let mut q = lock(&entry.queued);
            let before = q.items.len() + q.reload.len();
            add(&mut q);
            (before, q.items.len() + q.reload.len())
        };
        if after > MAX_QUEUED {
            tracing::warn!(%project, "too many writes queued for the ticket search index; dropping it");
            self.forget(project, &entry);
        } else if before < APPLY_BATCH && after >= APPLY_BATCH {
            // A full channel means the task has plenty to do already; it comes back to this
            // project when the next write fills a batch again, or a search runs.
            let _ = self.shared.wake.try_send(project.clone());
        }
    }

    fn forget(&self, project: &ProjectId, entry: &Arc<ProjectIndex>) {
        let mut projects = lock(&self.shared.projects);
        if projects.get(project).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            projects.remove(project);
        }
    }

    /// The project's index entry, made if needed; forgets indexes left idle.
    fn entry(&self, project: &ProjectId) -> Arc<ProjectIndex> {
        let now = Instant::now();
        let mut projects = lock(&self.shared.projects);
        projects.retain(|_, e| now.duration_since(*lock(&e.used)) < IDLE);
        let entry = projects
            .entry(project.clone())
            .or_insert_with(|| {
                Arc::new(ProjectIndex {
                    queued: Mutex::default(),
                    index: OnceCell::new(),
                    applying: tokio::sync::Mutex::new(()),
                    used: Mutex::new(now),
                })
            })
            .clone();
        *lock(&entry.used) = now;
        entry
    }

    /// A page of the project's tickets holding every word of `text` (see [`index`]), with the
    /// status and tag `query` asks for, newest first, after `query.after`.
    pub async fn search(
        &self,
        project: &ProjectId,
        text: &str,
        query: &TicketQuery,
    ) -> Result<TicketPage, SearchError> {
        let entry = self.entry(project);
        let shared = &self.shared;
        let built = entry
            .index
            .get_or_try_init(|| async {
                let _build = shared.builds.acquire().await;
                build(&shared.store, project).await.map(Mutex::new)
            })
            .await;
        if let Err(e) = built {
            self.forget(project, &entry);
            return Err(e);
        }
        if let Err(e) = apply(&shared.store, project, &entry).await {
            // Whatever the queue held is lost: the index would miss it for good.
            self.forget(project, &entry);
            return Err(e);
        }
        let (text, query) = (text.to_owned(), query.clone());
        tokio::task::spawn_blocking(move || {
            let index = entry.index.get().expect("built above");
            Ok(lock(index).search(&text, &query)?)
        })
        .await
        .map_err(joined)?
    }
}

/// Applies the queued writes of the projects whose queue filled a batch.
async fn apply_queued(shared: Weak<Shared>, mut woken: mpsc::Receiver<ProjectId>) {
    while let Some(first) = woken.recv().await {
        let mut projects = vec![first];
        while let Ok(p) = woken.try_recv() {
            if !projects.contains(&p) {
                projects.push(p);
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for project in projects {
            let entry = lock(&shared.projects).get(&project).cloned();
            let Some(entry) = entry.filter(|e| e.index.initialized()) else {
                continue;
            };
            if let Err(e) = apply(&shared.store, &project, &entry).await {
                tracing::warn!(%project, error = %e, "applying writes to the ticket search index");
                let mut projects = lock(&shared.projects);
                if projects
                    .get(&project)
                    .is_some_and(|e| Arc::ptr_eq(e, &entry))
                {
                    projects.remove(&project);
                }
            }
        }
    }
}

/// Applies the project's queued writes to its built index. A few rounds at most: the first
/// holds everything queued when it started, the next the tickets found missing in it.
async fn apply(
    store: &Arc<dyn TicketStore>,
    project: &ProjectId,
    entry: &Arc<ProjectIndex>,
) -> Result<(), SearchError> {
    let _applying = entry.applying.lock().await;
    for _ in 0..3 {
        let Queued { mut items, reload } = std::mem::take(&mut *lock(&entry.queued));
        if items.is_empty() && reload.is_empty() {
            break;
        }
        // Each read owns what it uses: futures borrowing into a stream's closure are not `Send`
        // to the compiler (its higher-ranked lifetimes).
        let reads: Vec<_> = reload
            .iter()
            .map(|slug| {
                let (store, project, slug) = (store.clone(), project.clone(), slug.clone());
                async move { reread(&store, &project, &slug).await }
            })
            .collect();
        let reread: Vec<Vec<Item>> = stream::iter(reads)
            .buffered(BUILD_READS)
            .try_collect()
            .await?;
        items.extend(reread.into_iter().flatten());
        let applying = entry.clone();
        let unknown = tokio::task::spawn_blocking(move || {
            let mut index = lock(applying.index.get().expect("applied once built"));
            let unknown = index.apply(items)?;
            index.commit()?;
            Ok::<_, IndexError>(unknown)
        })
        .await
        .map_err(joined)??;
        // A ticket read again and still unknown is not in the store: nothing to index.
        let missing: Vec<Slug> = unknown
            .into_iter()
            .filter(|s| !reload.contains(s))
            .collect();
        lock(&entry.queued).reload.extend(missing);
    }
    Ok(())
}

/// Everything to index of one ticket, read from the store.
async fn load(
    store: &Arc<dyn TicketStore>,
    project: &ProjectId,
    ticket: Ticket,
) -> StoreResult<Vec<Item>> {
    let slug = ticket.slug.clone();
    let mut items = vec![Item::Ticket(ticket)];
    let mut after = None;
    loop {
        let range = MessageRange {
            after,
            limit: MESSAGE_PAGE,
            ..MessageRange::all()
        };
        let page = store.list_messages(project, &slug, range).await?;
        let full = page.len() == MESSAGE_PAGE;
        after = page.last().map(|m| m.id);
        items.extend(page.into_iter().map(|m| Item::Message(slug.clone(), m)));
        if !full {
            break;
        }
    }
    let notes = store.list_notes(project, &slug).await?;
    items.extend(notes.into_iter().map(|n| Item::Note(slug.clone(), n)));
    Ok(items)
}

async fn reread(
    store: &Arc<dyn TicketStore>,
    project: &ProjectId,
    slug: &Slug,
) -> StoreResult<Vec<Item>> {
    match store.get_ticket(project, slug).await? {
        Some(ticket) => load(store, project, ticket).await,
        None => Ok(Vec::new()),
    }
}

/// A project's index, from every ticket in the store: a page of tickets at a time, a few
/// tickets read at once, so a build holds one page's text besides the index.
async fn build(
    store: &Arc<dyn TicketStore>,
    project: &ProjectId,
) -> Result<TicketIndex, SearchError> {
    let started = Instant::now();
    let mut index = TicketIndex::new()?;
    let mut after = None;
    loop {
        let query = TicketQuery {
            after,
            limit: 100,
            ..TicketQuery::default()
        };
        let page = store.list_tickets(project, &query).await?;
        let reads: Vec<_> = page
            .tickets
            .into_iter()
            .map(|t| {
                let (store, project) = (store.clone(), project.clone());
                async move { load(&store, &project, t).await }
            })
            .collect();
        let items: Vec<Vec<Item>> = stream::iter(reads)
            .buffered(BUILD_READS)
            .try_collect()
            .await?;
        index = tokio::task::spawn_blocking(move || {
            index.apply(items.into_iter().flatten().collect())?;
            Ok::<_, IndexError>(index)
        })
        .await
        .map_err(joined)??;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let index = tokio::task::spawn_blocking(move || {
        index.commit()?;
        Ok::<_, IndexError>(index)
    })
    .await
    .map_err(joined)??;
    tracing::info!(%project, tickets = index.len(), took_ms = started.elapsed().as_millis() as u64, "ticket search index built");
    Ok(index)
}

/// Whether the index holds anything of a write.
fn indexable(write: &TicketWrite) -> bool {
    matches!(
        write,
        TicketWrite::Message(_) | TicketWrite::Ticket(_) | TicketWrite::Note(_)
    )
}

/// What of a batch of one ticket's writes the index holds.
pub fn items_of(slug: &Slug, writes: &[TicketWrite]) -> Vec<Item> {
    writes
        .iter()
        .filter_map(|w| match w {
            TicketWrite::Message(m) => Some(Item::Message(slug.clone(), m.clone())),
            TicketWrite::Ticket(t) => Some(Item::Ticket(t.clone())),
            TicketWrite::Note(n) => Some(Item::Note(slug.clone(), n.clone())),
            TicketWrite::ReadCursor { .. }
            | TicketWrite::Delivery(_)
            | TicketWrite::Activity(_)
            | TicketWrite::Audit(_) => None,
        })
        .collect()
}

/// The tickets' store, telling the search indexes of every write it made durable.
pub struct Indexed {
    store: Arc<dyn TicketStore>,
    search: TicketSearch,
}

impl Indexed {
    pub fn new(store: Arc<dyn TicketStore>, search: TicketSearch) -> Self {
        Indexed { store, search }
    }
}

#[async_trait]
impl TicketStore for Indexed {
    async fn create_ticket_with_history(
        &self,
        ticket: &Ticket,
        messages: &[Message],
        deliveries: &[crate::webhook::Delivery],
    ) -> StoreResult<()> {
        self.store
            .create_ticket_with_history(ticket, messages, deliveries)
            .await?;
        self.search.took(&ticket.project_id, || {
            let slug = &ticket.slug;
            std::iter::once(Item::Ticket(ticket.clone()))
                .chain(
                    messages
                        .iter()
                        .map(|m| Item::Message(slug.clone(), m.clone())),
                )
                .collect()
        });
        Ok(())
    }

    async fn get_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Option<Ticket>> {
        self.store.get_ticket(project, slug).await
    }

    async fn list_tickets(
        &self,
        project: &ProjectId,
        query: &TicketQuery,
    ) -> StoreResult<TicketPage> {
        self.store.list_tickets(project, query).await
    }

    async fn list_messages(
        &self,
        project: &ProjectId,
        slug: &Slug,
        range: MessageRange,
    ) -> StoreResult<Vec<Message>> {
        self.store.list_messages(project, slug, range).await
    }

    async fn read_cursors(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<ReadCursor>> {
        self.store.read_cursors(project, slug).await
    }

    async fn list_notes(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Note>> {
        self.store.list_notes(project, slug).await
    }

    async fn list_activity(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Activity>> {
        self.store.list_activity(project, slug).await
    }

    fn submit(
        self: Arc<Self>,
        project: ProjectId,
        slug: Slug,
        writes: Vec<TicketWrite>,
        done: Done,
    ) {
        // Copied only for a project indexed now. An index whose build starts before this write
        // is durable may have read the ticket without it: the ticket is then read again.
        let items = self
            .search
            .indexes(&project)
            .then(|| items_of(&slug, &writes));
        let reload = items.is_none() && writes.iter().any(indexable);
        let search = self.search.clone();
        let (at, inner, about) = (project.clone(), self.store.clone(), slug.clone());
        let done: Done = Box::new(move |result| {
            if result.is_ok() {
                match items {
                    Some(items) if !items.is_empty() => search.took(&at, || items),
                    _ if reload => search.reload(&at, &about),
                    _ => {}
                }
            }
            done(result)
        });
        inner.submit(project, slug, writes, done);
    }

    async fn erase_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<bool> {
        // Before and after: a search between the two would rebuild from a store still
        // holding part of the ticket.
        self.search.drop_index(project);
        let erased = self.store.erase_ticket(project, slug).await;
        self.search.drop_index(project);
        erased
    }

    async fn erase_tickets(&self, project: &ProjectId, slugs: &[Slug]) -> StoreResult<usize> {
        self.search.drop_index(project);
        let erased = self.store.erase_tickets(project, slugs).await;
        self.search.drop_index(project);
        erased
    }

    async fn put_erasure(&self, erasure: &crate::store::Erasure) -> StoreResult<()> {
        self.store.put_erasure(erasure).await
    }

    async fn delete_erasure(&self, project: &ProjectId, slug: &Slug) -> StoreResult<()> {
        self.store.delete_erasure(project, slug).await
    }

    async fn pending_erasures(&self) -> StoreResult<Vec<crate::store::Erasure>> {
        self.store.pending_erasures().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Description, Participant, TicketSource, Title};
    use crate::message_id::MessageId;
    use crate::store::memory::MemoryStore;

    fn opened(slug: &str, title: &str) -> Ticket {
        Ticket::opened(
            ProjectId::parse("p").unwrap(),
            Slug::parse(slug).unwrap(),
            Title::parse(title).unwrap(),
            Description::parse("").unwrap(),
            TicketSource::Api,
            None,
            chrono::Utc::now(),
        )
    }

    async fn submit(store: &Arc<Indexed>, t: &Ticket, writes: Vec<TicketWrite>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        store.clone().submit(
            t.project_id.clone(),
            t.slug.clone(),
            writes,
            Box::new(move |r| drop(tx.send(r))),
        );
        rx.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn writes_after_the_build_are_found_by_the_next_search() {
        let memory: Arc<dyn TicketStore> = MemoryStore::new();
        let search = TicketSearch::new(memory.clone());
        let store = Arc::new(Indexed::new(memory, search.clone()));
        let old = opened("old-fox-001", "Printer jammed");
        store.create_ticket(&old, &[]).await.unwrap();
        let project = old.project_id.clone();
        let all = TicketQuery {
            limit: 10,
            ..TicketQuery::default()
        };
        assert_eq!(
            search
                .search(&project, "printer", &all)
                .await
                .unwrap()
                .tickets
                .len(),
            1
        );
        assert!(search.indexes(&project));

        let new = opened("new-owl-002", "Another");
        store.create_ticket(&new, &[]).await.unwrap();
        let message = Message {
            id: MessageId::next(None, chrono::Utc::now()),
            author: Participant::Admin,
            content: crate::domain::MessageBody::parse("Toner replaced").unwrap(),
            timestamp: chrono::Utc::now(),
            idempotency_key: None,
            agent: None,
        };
        submit(&store, &new, vec![TicketWrite::Message(message)]).await;
        let found = search.search(&project, "toner", &all).await.unwrap();
        assert_eq!(found.tickets[0].slug, new.slug);
        // A ticket opened on another node is read from the store when its announcement
        // arrives.
        let elsewhere = opened("far-elk-003", "Printer again");
        memory_of(&store)
            .create_ticket(&elsewhere, &[])
            .await
            .unwrap();
        search.reload(&project, &elsewhere.slug);
        let found = search.search(&project, "printer", &all).await.unwrap();
        assert_eq!(found.tickets.len(), 2);
    }

    #[tokio::test]
    async fn a_write_made_durable_while_the_first_build_reads_is_found_by_the_next_search() {
        let memory = MemoryStore::new();
        let search = TicketSearch::new(memory.clone());
        let store = Arc::new(Indexed::new(memory.clone(), search.clone()));
        let ticket = opened("new-owl-002", "Another");
        store.create_ticket(&ticket, &[]).await.unwrap();
        let project = ticket.project_id.clone();
        let all = TicketQuery {
            limit: 10,
            ..TicketQuery::default()
        };

        // Submitted while the project has no index, so nothing of it is copied for one.
        memory.hold_batches();
        let message = Message {
            id: MessageId::next(None, chrono::Utc::now()),
            author: Participant::Admin,
            content: crate::domain::MessageBody::parse("Toner replaced").unwrap(),
            timestamp: chrono::Utc::now(),
            idempotency_key: None,
            agent: None,
        };
        let writing = tokio::spawn({
            let (store, ticket) = (store.clone(), ticket.clone());
            async move { submit(&store, &ticket, vec![TicketWrite::Message(message)]).await }
        });
        memory.holding(1).await;
        // The first search builds the index from a store that does not have the write yet.
        let before = search.search(&project, "toner", &all).await.unwrap();
        assert!(before.tickets.is_empty());

        memory.release();
        writing.await.unwrap();
        let after = search.search(&project, "toner", &all).await.unwrap();
        assert_eq!(
            after.tickets.len(),
            1,
            "the ticket is read again once its write lands"
        );
        assert_eq!(after.tickets[0].slug, ticket.slug);
    }

    fn memory_of(store: &Indexed) -> Arc<dyn TicketStore> {
        store.store.clone()
    }

    #[test]
    fn only_messages_tickets_and_notes_are_indexed() {
        let t = opened("old-fox-001", "x");
        let writes = vec![
            TicketWrite::Ticket(t.clone()),
            TicketWrite::ReadCursor {
                reader: Participant::Admin,
                up_to: MessageId::next(None, chrono::Utc::now()),
            },
        ];
        let items = items_of(&t.slug, &writes);
        assert!(matches!(items.as_slice(), [Item::Ticket(_)]));
    }
}
