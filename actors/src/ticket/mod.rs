//! Tickets: one [`TicketActor`] per active ticket, activated on demand, supervised, and
//! passivated when idle. [`Tickets`] is the handle the HTTP front uses to reach them.

mod actor;
pub mod cluster;
mod idempotency;
mod subscribers;
#[cfg(test)]
mod tests;
mod writes;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ractor::{ActorCell, ActorRef, RpcReplyPort};

pub use actor::Position;
pub use actor::{
    MessagePage, Replay, Subscription, TicketActor, TicketMsg, MAX_REPLAY, MAX_UNPAGED,
};
pub use cluster::{
    Answer, Claim, Cluster, Command, LogBatch, LogEvent, Logged, Placement, Snapshot, Watchers,
};
pub use subscribers::{CutOff, Event, Queue};

use crate::clock::Clock;
use crate::domain::{
    IdempotencyKey, Message, MessageBody, Participant, ProjectId, Slug, TicketStatus,
};
use crate::feed::ProjectFeeds;
use crate::registry::{CallError, Family, Keeper, Registry};
use crate::store::{StoreError, TicketStore};
use crate::webhook::{EventType, Hooks};
use crate::FastMap;
use crate::MessageId;

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

/// What can go wrong when asking a ticket to do something. Shown to clients through the HTTP
/// front's error mapping; `Unavailable` and `Internal` details go to the log only.
/// Serializable because, with several nodes, it comes back from the node that owns the ticket.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum TicketError {
    #[error("ticket not found")]
    NotFound,
    #[error("ticket is closed")]
    Closed,
    #[error("ticket is busy, retry shortly")]
    Busy,
    /// A request with the same idempotency key is still being carried out.
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    /// The idempotency key was used before for a different message.
    #[error("this Idempotency-Key was used for a different message")]
    KeyReused,
    /// A subscriber asked to replay more messages than one socket may replay.
    #[error("too many missed messages to replay")]
    TooFarBehind,
    #[error("ticket unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// With several nodes: the ticket's actor runs on the named node.
    #[error("ticket is served by node {0}")]
    Elsewhere(String),
    /// With several nodes: the named node did not take the request (it is gone), so nothing
    /// was done.
    #[error("node {0} did not take the request")]
    Unreachable(String),
    /// With several nodes: another node took the ticket over before the request's write
    /// could be made, so nothing was done; the new owner can take it.
    #[error("the ticket moved to another node")]
    Moved,
}

impl From<CallError> for TicketError {
    fn from(e: CallError) -> Self {
        let cause = match e {
            CallError::Timeout => "ticket did not answer in time",
            CallError::Dropped => "ticket restarted while handling the request",
            CallError::KeptRestarting => "ticket kept restarting",
            CallError::Failed(e) => return TicketError::Internal(e),
        };
        TicketError::Unavailable(cause.into())
    }
}

impl From<StoreError> for TicketError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => TicketError::NotFound,
            StoreError::Unavailable(m) => TicketError::Unavailable(m),
            StoreError::Conflict => TicketError::Internal("unexpected conflict".into()),
            StoreError::Internal(m) => TicketError::Internal(m),
        }
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
}

/// Held by a ticket actor and by its batch in flight; released when both are done.
///
/// A ticket never has two writers: an activation must take the lease before it loads the
/// ticket, so a new actor always starts from everything its predecessor wrote, even when the
/// predecessor failed with a batch still in flight.
pub(crate) struct WriterLease {
    key: TicketKey,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// With several nodes: the ticket's lease, given back once the last batch is done.
    claim: Option<Arc<dyn Claim>>,
    leases: Arc<FastMap<TicketKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl Drop for WriterLease {
    fn drop(&mut self) {
        self.claim.take();
        self.guard.take();
        // Forget the lease once nobody holds or awaits it, so the map does not grow with every
        // ticket ever touched.
        self.leases
            .remove_if(&self.key, |_, lease| Arc::strong_count(lease) == 1);
    }
}

/// A ticket to open: what its opener decides.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub project: ProjectId,
    pub title: crate::domain::Title,
    pub description: crate::domain::Description,
    pub source: crate::domain::TicketSource,
    /// The anonymous chat session the ticket comes from, if any.
    pub session_id: Option<String>,
    /// The ticket's first messages, oldest first: the chat it was opened from. They are
    /// written with the ticket, in the same write, so nobody ever sees it without them.
    pub history: Vec<(Participant, MessageBody)>,
}

/// A change to a ticket's own fields: its status, its assignee, or both. Both at once make one
/// change: one version of the ticket, one set of events, one webhook delivery per event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TicketChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TicketStatus>,
    /// `None` leaves the assignee as it is; `Some(None)` assigns the ticket to nobody.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub assignee: Option<Option<crate::domain::AgentName>>,
}

impl TicketChange {
    pub fn status(status: TicketStatus) -> Self {
        TicketChange {
            status: Some(status),
            assignee: None,
        }
    }

    pub fn assignee(assignee: Option<crate::domain::AgentName>) -> Self {
        TicketChange {
            status: None,
            assignee: Some(assignee),
        }
    }
}

/// A field that is there, even as `null` (which serde would otherwise read as absent).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The handle to all tickets: finds or activates a ticket's actor and calls it with a timeout.
#[derive(Clone)]
pub struct Tickets {
    deps: TicketDeps,
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
        };
        let tickets = Tickets { deps };
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
        self.deps.registry.actor(key, || self.activate(key)).await
    }

    async fn activate(&self, key: &TicketKey) -> Result<ActorRef<TicketMsg>, TicketError> {
        // Wait until any previous actor of this ticket has finished writing: one writer at a time.
        let lease = self.deps.leases.entry(key.clone()).or_default().clone();
        let guard = tokio::time::timeout(self.deps.config.call_timeout, lease.lock_owned())
            .await
            .map_err(|_| {
                TicketError::Unavailable("previous writer of the ticket is still finishing".into())
            })?;
        let claim = match &self.deps.cluster {
            None => None,
            Some(cluster) => match cluster.place(key).await? {
                Placement::Here(claim) => Some(claim),
                Placement::There(node) => return Err(TicketError::Elsewhere(node)),
            },
        };
        let lease = WriterLease {
            key: key.clone(),
            guard: Some(guard),
            claim: claim.clone(),
            leases: self.deps.leases.clone(),
        };
        let ticket = self
            .deps
            .store
            .get_ticket(&key.project, &key.slug)
            .await?
            .ok_or(TicketError::NotFound)?;
        let args = actor::TicketArgs {
            key: key.clone(),
            ticket,
            deps: self.deps.clone(),
            lease,
            claim,
        };
        let actor = self.deps.registry.spawn(TicketActor, args).await;
        actor.map_err(|e| TicketError::Unavailable(format!("could not start ticket actor: {e}")))
    }

    /// The ticket as JSON, whole or one page: what `Get` answers. The whole view comes from
    /// the shared cache when the actor has it encoded and nothing changed since, without a
    /// trip through the actor's mailbox.
    pub async fn view(
        &self,
        key: &TicketKey,
        page: Option<MessagePage>,
    ) -> Result<Bytes, TicketError> {
        if self.deps.cluster.is_none() {
            if let Some(view) = page.is_none().then(|| self.deps.views.get(key)).flatten() {
                return Ok(view.value().clone());
            }
            return self.call(key, |reply| TicketMsg::Get { page, reply }).await;
        }
        // Several nodes: the actor here answers while it holds the ticket; otherwise the store,
        // which has every acknowledged write (and a view can be too large to forward).
        if self.deps.registry.running(key).is_some() {
            match self.call(key, |reply| TicketMsg::Get { page, reply }).await {
                Err(TicketError::Moved | TicketError::Elsewhere(_)) => {}
                answer => return answer,
            }
        }
        self.stored_view(key, page).await
    }

    /// The ticket as the store has it, whole or one page.
    async fn stored_view(
        &self,
        key: &TicketKey,
        page: Option<MessagePage>,
    ) -> Result<Bytes, TicketError> {
        let store = &self.deps.store;
        let limit = page.map_or(MAX_UNPAGED, |p| p.limit);
        let range = crate::store::MessageRange {
            after: None,
            before: page.and_then(|p| p.before),
            limit: limit + 1,
            newest: true,
        };
        let (ticket, cursors, messages) = tokio::try_join!(
            store.get_ticket(&key.project, &key.slug),
            store.read_cursors(&key.project, &key.slug),
            store.list_messages(&key.project, &key.slug, range),
        )?;
        let ticket = ticket.ok_or(TicketError::NotFound)?;
        Ok(actor::page_view(&ticket, &cursors, messages, limit))
    }

    /// Carries out a command on the ticket: here, or on the node that owns it. A command that
    /// meets a ticket on its way between nodes waits for it to settle, for up to one call
    /// timeout, and is sent again only when it certainly was not carried out.
    async fn run(&self, key: &TicketKey, command: Command) -> Result<Answer, TicketError> {
        let Some(cluster) = self.deps.cluster.clone() else {
            return self.here(key, command).await;
        };
        let deadline = tokio::time::Instant::now() + self.deps.config.call_timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let outcome = match self.here(key, command.clone()).await {
                Err(TicketError::Elsewhere(node)) => {
                    let _in_flight = crate::telemetry::InFlight::new("ticket_forward");
                    cluster.forward(&node, key, command.clone()).await
                }
                other => other,
            };
            match outcome {
                Err(
                    TicketError::Elsewhere(_) | TicketError::Unreachable(_) | TicketError::Moved,
                ) if tokio::time::Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                outcome => return outcome,
            }
        }
    }

    /// Carries out a command on this node, activating the ticket's actor here if needed; with
    /// several nodes, [`TicketError::Elsewhere`] when another node owns the ticket. What the
    /// cluster adapter calls for commands other nodes forward.
    pub async fn here(&self, key: &TicketKey, command: Command) -> Result<Answer, TicketError> {
        match command {
            Command::Post {
                author,
                content,
                idempotency_key,
            } => {
                let post = |reply| TicketMsg::Post {
                    author,
                    content: content.clone(),
                    idempotency_key: idempotency_key.clone(),
                    reply,
                };
                Ok(Answer::Message(self.call(key, post).await?))
            }
            Command::MarkRead { reader } => {
                let read = |reply| TicketMsg::MarkRead { reader, reply };
                Ok(Answer::Read(self.call(key, read).await?))
            }
            Command::Change(change) => {
                let make = |reply| TicketMsg::Change {
                    change: change.clone(),
                    reply,
                };
                Ok(Answer::Ticket(self.call(key, make).await?))
            }
            Command::AddNote { author, content } => {
                let add = |reply| TicketMsg::AddNote {
                    author: author.clone(),
                    content: content.clone(),
                    reply,
                };
                Ok(Answer::Note(self.call(key, add).await?))
            }
            Command::Position => {
                let position = self.call(key, |reply| TicketMsg::Position { reply });
                Ok(Answer::Replay(Snapshot::new(position.await?)))
            }
        }
    }

    /// Sends a request to the ticket's actor and waits for the answer.
    ///
    /// If the actor stopped before taking the request (it passivated), a fresh one is activated
    /// and the request is sent once more: nothing was processed, so repeating it is safe.
    pub async fn call<T: Send + 'static>(
        &self,
        key: &TicketKey,
        make: impl Fn(RpcReplyPort<Result<T, TicketError>>) -> TicketMsg,
    ) -> Result<T, TicketError> {
        let _in_flight = crate::telemetry::InFlight::new("ticket");
        let timeout = self.deps.config.call_timeout;
        let activate = || self.activate(key);
        self.deps.registry.call(key, timeout, activate, make).await
    }

    /// Opens a ticket with a fresh slug, with its history if it has one, and announces it on
    /// the project's agent feed. A rare slug collision draws again.
    ///
    /// The ticket, its history and every webhook announcing them are one store write: a crash
    /// never leaves a ticket with half its history, and the opener waits for one durable write
    /// however long the history. The feed hears of the ticket once, with `ticket_created`, and
    /// its history is there when an agent opens it; the webhooks are the ones the ticket and
    /// a post of each message would have made (`ticket.created`, then one `message.created`
    /// per message), so a receiver that mirrors conversations gets the whole of it.
    pub async fn open(&self, new: NewTicket) -> Result<crate::domain::Ticket, TicketError> {
        let now = self.deps.clock.now();
        let NewTicket {
            project,
            title,
            description,
            source,
            session_id,
            history,
        } = new;
        let mut ticket = crate::domain::Ticket {
            id: uuid::Uuid::new_v4(),
            slug: self.deps.slugs.generate(),
            project_id: project,
            title,
            description,
            status: crate::domain::TicketStatus::Open,
            created_at: now,
            updated_at: now,
            source,
            session_id,
            assignee: None,
        };
        // Ids minted as the ticket's actor mints them, one after the other; the actor that
        // starts later reads the newest and carries on after it.
        let mut last = None;
        let messages: Vec<Message> = history
            .into_iter()
            .map(|(author, content)| {
                let id = MessageId::next(last, now);
                last = Some(id);
                Message {
                    id,
                    author,
                    content,
                    timestamp: id.timestamp(),
                    idempotency_key: None,
                }
            })
            .collect();
        let mut attempts = 0;
        loop {
            // Built for each slug tried: the announcements name the ticket.
            let summary = || serde_json::to_value(crate::events::TicketSummary::new(&ticket));
            let data = || summary().unwrap_or_default();
            let hooks = &self.deps.hooks;
            let project = &ticket.project_id;
            let mut deliveries = hooks.deliveries(project, EventType::TicketCreated, data, now);
            for message in &messages {
                let data = || actor::message_created(project, &ticket.slug, message);
                deliveries.extend(hooks.deliveries(project, EventType::MessageCreated, data, now));
            }
            let created =
                self.deps
                    .store
                    .create_ticket_with_history(&ticket, &messages, &deliveries);
            match created.await {
                Ok(()) => break,
                Err(StoreError::Conflict) if attempts < 8 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
            ticket.slug = self.deps.slugs.generate();
        }
        tracing::info!(project = %ticket.project_id, ticket = %ticket.slug, source = ?ticket.source, messages = messages.len(), "ticket created");
        let summary = crate::events::encode(&crate::events::TicketSummary::new(&ticket));
        match &self.deps.cluster {
            None => self.deps.feeds.publish(
                &ticket.project_id,
                crate::events::envelope("ticket_created", Some(&ticket.slug), &summary),
            ),
            Some(cluster) => {
                let key = TicketKey {
                    project: ticket.project_id.clone(),
                    slug: ticket.slug.clone(),
                };
                cluster.broadcast(&key, LogEvent::for_agents("ticket_created", summary));
            }
        }
        Ok(ticket)
    }

    /// Posts a message; answered once it is durable. With an idempotency key used before for
    /// the same message, the original message is the answer.
    pub async fn post(
        &self,
        key: &TicketKey,
        author: Participant,
        content: MessageBody,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Message, TicketError> {
        let post = Command::Post {
            author,
            content,
            idempotency_key,
        };
        self.run(key, post).await?.into_message()
    }

    /// Marks everything so far read by `reader`; the id read up to (`None` on an empty ticket).
    pub async fn mark_read(
        &self,
        key: &TicketKey,
        reader: Participant,
    ) -> Result<Option<MessageId>, TicketError> {
        self.run(key, Command::MarkRead { reader })
            .await?
            .into_read()
    }

    /// Changes the status, the assignee, or both, as one change; the ticket after it.
    pub async fn change(
        &self,
        key: &TicketKey,
        change: TicketChange,
    ) -> Result<crate::domain::Ticket, TicketError> {
        self.run(key, Command::Change(change)).await?.into_ticket()
    }

    /// Adds an agent's internal note, once it is durable.
    pub async fn add_note(
        &self,
        key: &TicketKey,
        author: crate::domain::AgentName,
        content: MessageBody,
    ) -> Result<crate::domain::Note, TicketError> {
        self.run(key, Command::AddNote { author, content })
            .await?
            .into_note()
    }

    /// The ticket's internal notes, oldest first, from the store (they are for agents, and
    /// rarely read: the ticket's actor does not keep them).
    pub async fn notes(&self, key: &TicketKey) -> Result<Vec<crate::domain::Note>, TicketError> {
        self.find(key).await?;
        Ok(self.deps.store.list_notes(&key.project, &key.slug).await?)
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

    /// Joins the ticket's realtime events, replaying the messages after `since`.
    pub async fn subscribe(
        &self,
        key: &TicketKey,
        since: Option<MessageId>,
    ) -> Result<Subscription, TicketError> {
        let Some(cluster) = self.deps.cluster.clone() else {
            return self
                .call(key, |reply| TicketMsg::Subscribe { since, reply })
                .await;
        };
        // Listening first, then asking for the ticket: whatever the log gets from now on
        // reaches this subscriber, and the snapshot with the log entries after it (read from
        // the log itself, in case this node heard some before it listened) covers the rest.
        let (events, cut_off) = self.deps.watchers.add(key);
        let snapshot = self.run(key, Command::Position).await?.into_snapshot()?;
        let mut replay = match (since, snapshot.last_message_id) {
            (Some(since), Some(last)) if since < last => {
                // Read here rather than carried from the owner: a replay can be large, and the
                // store has every message up to the snapshot's newest.
                let range = crate::store::MessageRange {
                    after: Some(since),
                    before: Some(last.bound_after()),
                    limit: MAX_REPLAY + 1,
                    newest: false,
                };
                let missed = self
                    .deps
                    .store
                    .list_messages(&key.project, &key.slug, range)
                    .await?;
                if missed.len() > MAX_REPLAY {
                    return Err(TicketError::TooFarBehind);
                }
                let cursors = &snapshot.cursors;
                missed
                    .iter()
                    .map(|m| actor::message_event(m, cursors))
                    .collect()
            }
            _ => Vec::new(),
        };
        let missed = cluster.missed(key, snapshot.through).await?;
        let mut skip_through = snapshot.through;
        for entry in missed {
            skip_through = skip_through.max(entry.seq);
            replay.extend(
                entry
                    .events
                    .iter()
                    .filter(|e| !e.agents_only)
                    .map(|e| Event {
                        frame: crate::events::envelope(&e.kind, None, e.payload()),
                        message_id: e.message_id,
                        seq: Some(entry.seq),
                    }),
            );
        }
        Ok(Subscription {
            subscribed: snapshot.subscribed(),
            replay: Replay::Ready(replay),
            events,
            cut_off,
            last_message_id: snapshot.last_message_id,
            skip_through,
        })
    }

    /// Hands one entry of a ticket's log (or, without a position, an event never stored) to
    /// this node's subscribers of the ticket and its project's feed. What the cluster adapter
    /// calls for everything it reads from the log.
    pub fn deliver(&self, key: &TicketKey, seq: Option<u64>, events: &[LogEvent]) {
        let feed = self.deps.feeds.sender(&key.project);
        for event in events {
            if let Some(feed) = &feed {
                let _ = feed.send(crate::events::envelope(
                    &event.kind,
                    Some(&key.slug),
                    event.payload(),
                ));
            }
            if !event.agents_only {
                let frame = crate::events::envelope(&event.kind, None, event.payload());
                let event = Event {
                    frame,
                    message_id: event.message_id,
                    seq,
                };
                self.deps.watchers.offer(key, event);
            }
        }
    }

    /// Whether anyone on this node hears the ticket's events: a subscriber of it, or an agent
    /// on its project's feed. Log entries nobody hears need not be read.
    pub fn heard(&self, key: &TicketKey) -> bool {
        self.deps.watchers.watched(key) || self.deps.feeds.sender(&key.project).is_some()
    }

    /// This node's subscribers of tickets, with several nodes.
    pub fn watchers(&self) -> &Watchers {
        &self.deps.watchers
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

    /// The ticket's fields as stored, without activating its actor: for what never changes
    /// after creation (its source and chat session).
    pub async fn find(&self, key: &TicketKey) -> Result<crate::domain::Ticket, TicketError> {
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
        let asked = |reply| TicketMsg::Position { reply };
        let _ = actor.call(asked, Some(self.deps.config.call_timeout)).await;
        Ok(self
            .deps
            .registry
            .running(key)
            .is_some_and(|running| running.get_id() == actor.get_id()))
    }
}
