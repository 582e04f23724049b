//! Tickets: one [`TicketActor`] per active ticket, activated on demand, supervised, and
//! passivated when idle. [`Tickets`] is the handle the HTTP front uses to reach them: every
//! operation is a [`Command`], carried out by [`Tickets::run`] on the ticket's actor here, or
//! with several nodes on the node that owns the ticket.
//!
//! The files, in the order a request meets them: `command.rs` (what can be asked),
//! `actor.rs` (the actor's protocol, its mailbox and its batches), `commands.rs` (what each
//! command does), `writes.rs` (the queue of writes and their batches), `durability.rs` (where a
//! batch becomes durable), `change.rs` (what a durable write changes and tells), `reads.rs`
//! and `subscribe.rs` (the view of a ticket and its realtime events). `open.rs` opens a
//! ticket; `error.rs` says what can go wrong. With several nodes: `cluster.rs` (the port an
//! adapter implements) and `logged.rs` (batches through the ticket's log).

mod actor;
mod change;
pub mod cluster;
mod command;
mod commands;
mod durability;
mod erase;
mod error;
mod logged;
mod open;
mod reads;
mod subscribe;
mod subscribers;
#[cfg(test)]
mod tests;
mod writes;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{ActorCell, ActorRef};

pub use actor::{TicketActor, TicketMsg};
pub use change::TicketChange;
pub use cluster::{Claim, Cluster, LogBatch, LogEntry, LogEvent, Placement, Watchers};
pub use command::{Answer, Command};
pub use error::TicketError;
pub use open::NewTicket;
pub use reads::{MessagePage, MAX_UNPAGED};
pub use subscribe::{Joined, Replay, Snapshot, Subscription, MAX_REPLAY};
pub use subscribers::{CutOff, Event, Queue};

use crate::clock::Clock;
use crate::domain::{Participant, ProjectId, Slug};
use crate::feed::ProjectFeeds;
use crate::registry::{Family, Keeper, Registry};
use crate::store::TicketStore;
use crate::webhook::Hooks;
use crate::FastMap;

/// The newest messages past the agents' read cursor that the listing looks at: an unread count
/// stops there (the inbox shows it as "99+").
pub const UNREAD_WINDOW: usize = 100;

/// Tickets whose activity is read at once: enough to hide the store's latency, few enough that
/// one listing does not crowd out the other requests.
const ACTIVITY_READS: usize = 8;

/// A ticket's messages as the agents' listing shows them.
#[derive(Debug, Clone, Default)]
pub struct TicketActivity {
    /// The newest message; `None` when the ticket has none.
    pub last: Option<crate::domain::Message>,
    /// The visitor's messages past the agents' read cursor, among the newest [`UNREAD_WINDOW`].
    pub unread: usize,
}

/// Identifies a ticket across projects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TicketKey {
    pub project: ProjectId,
    pub slug: Slug,
}

impl fmt::Display for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.slug)
    }
}

/// Tunables of ticket actors.
#[derive(Debug, Clone)]
pub struct TicketConfig {
    /// Newest messages kept in memory per active ticket; a GET of a longer ticket reads the store.
    pub recent_messages: usize,
    /// An actor with no subscribers and no requests for this long passivates.
    pub idle_timeout: Duration,
    /// How often an actor checks whether it is idle.
    pub tick_interval: Duration,
    /// Events buffered per subscriber before it counts as too slow and is cut off.
    pub subscriber_queue: usize,
    /// Writes queued for the store per ticket before new ones are refused as busy.
    pub max_pending_writes: usize,
    /// How long a caller waits for a ticket's answer.
    pub call_timeout: Duration,
}

impl Default for TicketConfig {
    fn default() -> Self {
        Self {
            recent_messages: 500,
            idle_timeout: Duration::from_secs(120),
            tick_interval: Duration::from_secs(15),
            subscriber_queue: 256,
            max_pending_writes: 10_000,
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// What the tickets are started with.
pub struct TicketSetup {
    pub store: Arc<dyn TicketStore>,
    pub clock: Arc<dyn Clock>,
    pub feeds: ProjectFeeds,
    /// Which changes the project's webhooks want to hear of.
    pub hooks: Hooks,
    pub config: TicketConfig,
    /// Set when several nodes serve the same tickets.
    pub cluster: Option<Arc<dyn Cluster>>,
}

/// What every ticket actor is built with.
#[derive(Clone)]
pub struct TicketDeps {
    pub store: Arc<dyn TicketStore>,
    pub clock: Arc<dyn Clock>,
    pub feeds: ProjectFeeds,
    pub hooks: Hooks,
    pub config: Arc<TicketConfig>,
    pub cluster: Option<Arc<dyn Cluster>>,
    /// With several nodes: this node's subscribers of every ticket, fed from the tickets' log.
    pub watchers: Watchers,
    /// Draws new tickets' slugs.
    slugs: Arc<crate::slug::SlugGenerator>,
    registry: Arc<Registry<TicketKey, TicketMsg>>,
    /// Each ticket's writer lease, while an actor holds or awaits it.
    leases: Arc<FastMap<TicketKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Each live ticket actor's encoded full view, for reads that need not queue in its
    /// mailbox. The actor fills it when it encodes the view and removes it before it
    /// acknowledges any change, so a client that was told its write is done never reads the
    /// state from before it. Holds entries only for live actors.
    views: Arc<FastMap<TicketKey, Bytes>>,
    /// Tickets being erased: nothing activates or serves them meanwhile.
    erasing: Arc<FastMap<TicketKey, ()>>,
}

/// Held by a ticket actor and by its batch in flight; released when both are done.
///
/// A ticket never has two writers: an activation must take the lease before it loads the
/// ticket, so a new actor always starts from everything its predecessor wrote, even when the
/// predecessor failed with a batch still in flight.
pub(crate) struct WriterLease {
    key: TicketKey,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    leases: Arc<FastMap<TicketKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl WriterLease {
    /// Waits until any previous actor of the ticket has finished writing, for up to one call
    /// timeout.
    async fn take(deps: &TicketDeps, key: &TicketKey) -> Result<WriterLease, TicketError> {
        let lease = deps.leases.entry(key.clone()).or_default().clone();
        let guard = tokio::time::timeout(deps.config.call_timeout, lease.lock_owned())
            .await
            .map_err(|_| {
                TicketError::Unavailable("previous writer of the ticket is still finishing".into())
            })?;
        Ok(WriterLease {
            key: key.clone(),
            guard: Some(guard),
            leases: deps.leases.clone(),
        })
    }
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        self.guard.take();
        // Forget the lease once nobody holds or awaits it, so the map does not grow with every
        // ticket ever touched.
        self.leases
            .remove_if(&self.key, |_, lease| Arc::strong_count(lease) == 1);
    }
}

/// The handle to all tickets: finds or activates a ticket's actor and calls it with a timeout.
#[derive(Clone)]
pub struct Tickets {
    deps: TicketDeps,
    search: crate::search::TicketSearch,
}

impl Tickets {
    /// Starts the tickets' supervisor under `parent` (or unsupervised when `None`). A ticket
    /// whose actor fails is restarted from the store.
    pub async fn start(
        setup: TicketSetup,
        parent: Option<ActorCell>,
    ) -> Result<(Tickets, ActorRef<()>), ractor::SpawnErr> {
        let TicketSetup {
            store,
            clock,
            feeds,
            hooks,
            config,
            cluster,
        } = setup;
        // Every ticket write goes through the search indexes on its way to the store.
        let search = crate::search::TicketSearch::new(store.clone());
        let store: Arc<dyn TicketStore> =
            Arc::new(crate::search::Indexed::new(store, search.clone()));
        let deps = TicketDeps {
            store,
            clock,
            feeds,
            hooks,
            watchers: Watchers::new(config.subscriber_queue),
            config: Arc::new(config),
            cluster,
            slugs: Arc::default(),
            registry: Arc::default(),
            leases: Arc::default(),
            views: Arc::default(),
            erasing: Arc::default(),
        };
        let tickets = Tickets { deps, search };
        let restarter = tickets.clone();
        let family = Family {
            kind: "ticket",
            registry: tickets.deps.registry.clone(),
            restart: Some(Box::new(move |key: TicketKey| {
                // Reloading reads the store: not on the supervisor's mailbox.
                let tickets = restarter.clone();
                tokio::spawn(async move {
                    if let Err(e) = tickets.actor(&key).await {
                        tracing::warn!(ticket = %key, error = %e, "restarting ticket actor failed");
                    }
                });
            })),
        };
        let keeper = Keeper::start(family, parent).await?;
        Ok((tickets, keeper))
    }

    pub fn config(&self) -> &TicketConfig {
        &self.deps.config
    }

    /// How many ticket actors are running now.
    pub fn active(&self) -> usize {
        self.deps.registry.len()
    }

    /// The running actor for a ticket, activating it from the store if needed.
    pub async fn actor(&self, key: &TicketKey) -> Result<ActorRef<TicketMsg>, TicketError> {
        self.deps
            .registry
            .actor(key, || actor::activate(&self.deps, key))
            .await
    }

    /// The ticket's internal notes, oldest first, from the store (they are for agents, and
    /// rarely read: the ticket's actor does not keep them).
    pub async fn notes(&self, key: &TicketKey) -> Result<Vec<crate::domain::Note>, TicketError> {
        self.find(key).await?;
        Ok(self.deps.store.list_notes(&key.project, &key.slug).await?)
    }

    /// The ticket's timeline entries, oldest first, from the store (like notes, for agents
    /// only and not kept by the actor).
    pub async fn timeline(
        &self,
        key: &TicketKey,
    ) -> Result<Vec<crate::domain::Activity>, TicketError> {
        self.find(key).await?;
        Ok(self
            .deps
            .store
            .list_activity(&key.project, &key.slug)
            .await?)
    }

    /// Tells the ticket's agents and subscribers that `author` is typing. Only a ticket whose
    /// actor is running hears it (someone is watching it, or just wrote): typing never
    /// activates a ticket, and is never stored.
    pub fn typing(&self, key: &TicketKey, author: Participant) {
        if let Some(cluster) = &self.deps.cluster {
            let payload = crate::events::encode(&crate::events::TypingPayload { author });
            return cluster.broadcast(key, LogEvent::new("typing", payload, None));
        }
        if let Some(actor) = self.deps.registry.running(key) {
            let _ = actor.send_message(TicketMsg::Typing { author });
        }
    }

    /// A project's tickets, newest first, a page at a time: for the agents' listing, from the
    /// store (no ticket actor holds a project's tickets).
    pub async fn list(
        &self,
        project: &ProjectId,
        query: &crate::store::TicketQuery,
    ) -> Result<crate::store::TicketPage, TicketError> {
        Ok(self.deps.store.list_tickets(project, query).await?)
    }

    /// [`list`](Self::list) of the tickets holding every word of `text` in their title,
    /// description, messages or notes, from the project's search index ([`crate::search`]).
    pub async fn search(
        &self,
        project: &ProjectId,
        text: &str,
        query: &crate::store::TicketQuery,
    ) -> Result<crate::store::TicketPage, TicketError> {
        use crate::search::SearchError;
        self.search
            .search(project, text, query)
            .await
            .map_err(|e| match e {
                SearchError::Store(e) => e.into(),
                SearchError::Index(e) => TicketError::Internal(e),
            })
    }

    /// Hands the writes of a ticket's log entry, made on any node, to this node's search index
    /// of the ticket's project, if it has one. What the cluster adapter calls for the entries
    /// it reads when [`indexes`](Self::indexes) says so.
    pub fn index_logged(&self, key: &TicketKey, writes: &[crate::store::TicketWrite]) {
        self.search
            .took(&key.project, || crate::search::items_of(&key.slug, writes));
    }

    /// Whether this node keeps a search index of the project, so the writes of its tickets'
    /// log entries must reach it ([`index_logged`](Self::index_logged)).
    pub fn indexes(&self, project: &ProjectId) -> bool {
        self.search.indexes(project)
    }

    /// A ticket was opened on another node: this node's search index of its project (if any)
    /// reads it from the store.
    pub fn opened_elsewhere(&self, key: &TicketKey) {
        self.search.reload(&key.project, &key.slug);
    }

    /// What the agents' listing shows of each ticket's messages: the newest message and how
    /// many of the visitor's the agents have not read, in the order of `slugs`.
    ///
    /// Read from the store rather than kept on the ticket's row: keeping it there would mean
    /// rewriting the row (a conditional write on the CQL store) with every message, and a
    /// migration of both stores. Instead each ticket costs two or three small reads on its
    /// own partition, each bounded ([`UNREAD_WINDOW`] messages at most), never the whole
    /// thread; a page holds at most 100 tickets and a few are read at a time.
    pub async fn activity(
        &self,
        project: &ProjectId,
        slugs: &[Slug],
    ) -> Result<Vec<TicketActivity>, TicketError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};

        // Each read owns what it uses: futures borrowing into a stream's closure are not `Send`
        // to the compiler (its higher-ranked lifetimes), and warp's handlers must be.
        let reads: Vec<_> = slugs
            .iter()
            .map(|slug| {
                let (store, project, slug) =
                    (self.deps.store.clone(), project.clone(), slug.clone());
                async move {
                    let (store, project, slug) = (&store, &project, &slug);
                    let cursors = store.read_cursors(project, slug).await?;
                    let seen = cursors
                        .iter()
                        .find(|c| c.reader == Participant::Admin)
                        .map(|c| c.up_to);
                    let range = crate::store::MessageRange {
                        after: seen,
                        ..crate::store::MessageRange::newest(UNREAD_WINDOW)
                    };
                    let mut unseen = store.list_messages(project, slug, range).await?;
                    let unread = unseen
                        .iter()
                        .filter(|m| m.author == Participant::User)
                        .count();
                    // The newest message past the cursor is the ticket's newest; with nothing past
                    // it, one more read finds the newest.
                    let last = match unseen.pop() {
                        Some(m) => Some(m),
                        None => store
                            .list_messages(project, slug, crate::store::MessageRange::newest(1))
                            .await?
                            .pop(),
                    };
                    Ok::<_, TicketError>(TicketActivity { last, unread })
                }
            })
            .collect();
        stream::iter(reads)
            .buffered(ACTIVITY_READS)
            .try_collect()
            .await
    }

    /// The ticket's fields as stored, without activating its actor: for what never changes
    /// after creation (its source and chat session).
    pub async fn find(&self, key: &TicketKey) -> Result<crate::domain::Ticket, TicketError> {
        if self.erasing(key) {
            return Err(TicketError::NotFound);
        }
        let stored = self.deps.store.get_ticket(&key.project, &key.slug).await?;
        stored.ok_or(TicketError::NotFound)
    }

    /// For tests: make the ticket's actor fail as if it had hit a bug.
    #[cfg(any(test, feature = "testing"))]
    pub async fn crash(&self, key: &TicketKey) -> Result<(), TicketError> {
        let actor = self.actor(key).await?;
        actor
            .send_message(TicketMsg::Crash)
            .map_err(|e| TicketError::Internal(e.to_string()))
    }

    /// For tests: runs the running actor's idle check now, as its ticker does, and answers
    /// once the actor has handled it: whether the ticket still routes requests to that actor
    /// (`false`: it passivated). A test moves an injected clock instead of waiting for ticks.
    /// The request that waits for the check counts as activity, as any request does.
    #[cfg(any(test, feature = "testing"))]
    pub async fn tick(&self, key: &TicketKey) -> Result<bool, TicketError> {
        let actor = self
            .deps
            .registry
            .running(key)
            .ok_or(TicketError::NotFound)?;
        actor
            .send_message(TicketMsg::Tick)
            .map_err(|e| TicketError::Internal(e.to_string()))?;
        // The mailbox keeps order, so this is answered after the tick; an actor that drained
        // on it answers what was queued before, and refuses what came after.
        let asked = |reply| TicketMsg::Run {
            cmd: Command::Position,
            by: None,
            reply,
        };
        let _ = actor.call(asked, Some(self.deps.config.call_timeout)).await;
        Ok(self
            .deps
            .registry
            .running(key)
            .is_some_and(|running| running.get_id() == actor.get_id()))
    }
}
