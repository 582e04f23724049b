//! `TicketActor`: the single writer for one ticket, and the hub of its realtime subscribers.
//!
//! A request is checked against the actor's state, given its message id, and queued in the
//! [`WriteQueue`], which hands the ticket's writes to the store a batch at a time. When the
//! store reports a batch, the actor applies it to its state, fans the events out to its
//! [`Subscribers`], answers the callers in the order their requests arrived, and sends the
//! writes queued meanwhile. The mailbox keeps turning while a batch is with the store.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{broadcast, oneshot};

use super::cluster::{Claim, LogBatch, LogEvent};
use super::idempotency::{self, Retry};
use super::subscribers::{CutOff, Event, Queue, Subscribers};
use super::writes::{Landed, WriteQueue};
use super::{TicketChange, TicketDeps, TicketError, TicketKey, WriterLease};
use crate::domain::{
    AgentName, IdempotencyKey, Message, MessageBody, Note, Participant, ReadCursor, Ticket,
    TicketStatus,
};
use crate::events::{
    self, event_frame, ReadReceiptPayload, StatusChangePayload, SubscribedPayload, TicketView,
};
use crate::message_id::MessageId;
use crate::store::{MessageRange, StoreError, TicketWrite};
use crate::webhook::EventType;

/// Every message a `TicketActor` understands.
pub enum TicketMsg {
    /// The ticket as JSON, with all its messages, or with a page of them.
    Get {
        page: Option<MessagePage>,
        reply: RpcReplyPort<Result<Bytes, TicketError>>,
    },
    /// Post a message; answered once it is durable.
    /// With an idempotency key seen before, the original message is the answer.
    Post {
        author: Participant,
        content: MessageBody,
        idempotency_key: Option<IdempotencyKey>,
        reply: RpcReplyPort<Result<Message, TicketError>>,
    },
    /// Mark every message so far as read by `reader`. Answers the id read up to (None on an empty ticket).
    MarkRead {
        reader: Participant,
        reply: RpcReplyPort<Result<Option<MessageId>, TicketError>>,
    },
    /// Change the status, the assignee, or both, in one write; answers the ticket after it.
    Change {
        change: TicketChange,
        reply: RpcReplyPort<Result<Ticket, TicketError>>,
    },
    /// Add an agent's internal note; told to the agents' feed only, never to the visitor.
    AddNote {
        author: AgentName,
        content: MessageBody,
        reply: RpcReplyPort<Result<Note, TicketError>>,
    },
    /// Where a subscriber on any node starts from (several nodes): the `subscribed` frame, the
    /// newest message, the read cursors, and the position in the ticket's log they are
    /// complete up to. The subscriber's node reads the messages it missed from the store.
    Position {
        reply: RpcReplyPort<Result<Position, TicketError>>,
    },
    /// Join the ticket's realtime events, optionally replaying messages after `since`.
    Subscribe {
        since: Option<MessageId>,
        reply: RpcReplyPort<Result<Subscription, TicketError>>,
    },
    /// Someone is typing a message on the ticket: told to its agents and subscribers at once,
    /// never stored.
    Typing { author: Participant },
    /// From the store: the batch in flight is durable or failed. The outcome itself waits in
    /// the write queue's slot, where no stop can lose it.
    Persisted,
    /// Periodic housekeeping: prune gone subscribers, passivate when idle.
    Tick,
    /// Fail on purpose, so tests can watch the supervisor restart the actor.
    #[cfg(any(test, feature = "testing"))]
    Crash,
}

impl TicketMsg {
    /// The message's type, as a metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            TicketMsg::Get { .. } => "get",
            TicketMsg::Post { .. } => "post",
            TicketMsg::MarkRead { .. } => "mark_read",
            TicketMsg::Change { .. } => "change",
            TicketMsg::AddNote { .. } => "add_note",
            TicketMsg::Subscribe { .. } => "subscribe",
            TicketMsg::Position { .. } => "position",
            TicketMsg::Typing { .. } => "typing",
            TicketMsg::Persisted => "persisted",
            TicketMsg::Tick => "tick",
            #[cfg(any(test, feature = "testing"))]
            TicketMsg::Crash => "crash",
        }
    }
}

/// A page of a ticket's messages: the newest `limit` before `before`.
#[derive(Debug, Clone, Copy)]
pub struct MessagePage {
    pub limit: usize,
    pub before: Option<MessageId>,
}

/// What [`TicketMsg::Position`] answers.
pub struct Position {
    pub subscribed: Bytes,
    pub last_message_id: Option<MessageId>,
    pub cursors: Vec<ReadCursor>,
    pub through: u64,
}

/// What a subscriber gets back from [`TicketMsg::Subscribe`].
pub struct Subscription {
    /// The `subscribed` frame to send first.
    pub subscribed: Bytes,
    /// Messages missed since `since`, to send before live events.
    pub replay: Replay,
    /// Live events. The channel closes when the actor stops or cuts this subscriber off.
    pub events: Queue,
    /// Tripped when the actor cuts this subscriber off for falling behind.
    pub cut_off: Arc<CutOff>,
    /// The newest durable message when the subscription began: live events come after it.
    pub last_message_id: Option<MessageId>,
    /// Live events from log entries up to this position are in the replay already (several
    /// nodes); 0 otherwise.
    pub skip_through: u64,
}

/// A ticket log entry's writes weigh this much at most (by [`super::writes::weight`]), so an
/// entry stays well under NATS' default message size limit of 1 MiB.
const LOG_BATCH_BUDGET: usize = 256 * 1024;

/// Messages replayed to one socket at most; a client further behind reloads with GET.
pub const MAX_REPLAY: usize = 1000;
/// Messages in a GET without paging at most: the newest ones, with `next_before` for the rest.
pub const MAX_UNPAGED: usize = 1000;

pub enum Replay {
    Ready(Vec<Event>),
    /// Older than the actor keeps in memory: read from the store by a spawned task.
    Loading(oneshot::Receiver<Result<Vec<Event>, TicketError>>),
}

/// What a queued write's caller is owed once the write is durable.
enum Effect {
    Message(Message, RpcReplyPort<Result<Message, TicketError>>),
    Read(
        Participant,
        MessageId,
        RpcReplyPort<Result<Option<MessageId>, TicketError>>,
    ),
    /// The ticket's fields after a change of status or assignee.
    Ticket(Ticket, RpcReplyPort<Result<Ticket, TicketError>>),
    Note(Note, RpcReplyPort<Result<Note, TicketError>>),
}

impl Effect {
    fn refuse(self, error: TicketError) {
        match self {
            Effect::Message(_, reply) => drop(reply.send(Err(error))),
            Effect::Read(_, _, reply) => drop(reply.send(Err(error))),
            Effect::Ticket(_, reply) => drop(reply.send(Err(error))),
            Effect::Note(_, reply) => drop(reply.send(Err(error))),
        }
    }
}

/// The newest durable messages, oldest first; every message of the ticket when `complete`.
struct Recent {
    messages: VecDeque<Message>,
    complete: bool,
    cap: usize,
}

impl Recent {
    fn push(&mut self, message: Message) {
        self.messages.push_back(message);
        if self.messages.len() > self.cap {
            self.messages.pop_front();
            self.complete = false;
        }
    }

    fn last_id(&self) -> Option<MessageId> {
        self.messages.back().map(|m| m.id)
    }

    /// Whether every message after `since` is in memory.
    fn holds_after(&self, since: MessageId) -> bool {
        self.complete || self.messages.front().is_some_and(|m| m.id <= since)
    }
}

pub struct TicketActor;

pub struct TicketArgs {
    pub key: TicketKey,
    pub ticket: Ticket,
    pub deps: TicketDeps,
    pub(crate) lease: WriterLease,
    /// With several nodes: this node's hold on the ticket.
    pub(crate) claim: Option<Arc<dyn Claim>>,
}

pub struct TicketState {
    key: TicketKey,
    deps: TicketDeps,
    /// The ticket as durably stored.
    ticket: Ticket,
    /// The status after every queued change, for checking new requests.
    tentative_status: TicketStatus,
    recent: Recent,
    /// The newest id handed out, durable or not: new ids must exceed it.
    last_assigned: Option<MessageId>,
    /// The newest note id this actor handed out.
    last_note: Option<MessageId>,
    cursors: Vec<ReadCursor>,
    subscribers: Subscribers,
    writes: WriteQueue<Effect>,
    /// The encoded full ticket, reused by every GET until something changes.
    view_cache: Option<Bytes>,
    /// From the ticket's clock, so a test can move time past the idle timeout.
    last_activity: chrono::DateTime<chrono::Utc>,
    /// With several nodes: this node's hold on the ticket, through which every batch is
    /// appended to the ticket's log before it goes to the store.
    claim: Option<Arc<dyn Claim>>,
    /// The position in the ticket's log of the last batch applied to this state.
    through: u64,
    /// With several nodes: the actor stopped taking requests and is draining its mailbox.
    leaving: bool,
}

impl Actor for TicketActor {
    type Msg = TicketMsg;
    type State = TicketState;
    type Arguments = TicketArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TicketMsg>,
        args: TicketArgs,
    ) -> Result<TicketState, ActorProcessingErr> {
        let TicketArgs {
            key,
            ticket,
            deps,
            lease,
            claim,
        } = args;
        let cap = deps.config.recent_messages;
        let store = &deps.store;
        let (mut newest, cursors) = tokio::try_join!(
            store.list_messages(&key.project, &key.slug, MessageRange::newest(cap + 1)),
            store.read_cursors(&key.project, &key.slug),
        )?;
        let complete = newest.len() <= cap;
        if !complete {
            newest.remove(0);
        }
        let nudge = myself.clone();
        // Refused while the actor drains or stops; `finish` waits on the queue then.
        let writes = WriteQueue::new(
            move || drop(nudge.send_message(TicketMsg::Persisted)),
            lease,
        );
        crate::registry::spawn_ticker(myself, deps.config.tick_interval, || TicketMsg::Tick);
        // A predecessor that failed may have left its view behind, and its last writes may
        // have landed after it.
        deps.views.remove(&key);
        tracing::debug!(ticket = %key, messages = newest.len(), "ticket actor started");
        crate::telemetry::actor_started("ticket");
        Ok(TicketState {
            last_assigned: newest.last().map(|m| m.id),
            last_note: None,
            tentative_status: ticket.status,
            recent: Recent {
                messages: newest.into(),
                complete,
                cap,
            },
            subscribers: Subscribers::new(deps.config.subscriber_queue),
            key,
            ticket,
            cursors,
            writes,
            view_cache: None,
            last_activity: deps.clock.now(),
            through: claim.as_ref().map_or(0, |c| c.last()),
            leaving: false,
            claim,
            deps,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TicketMsg>,
        message: TicketMsg,
        state: &mut TicketState,
    ) -> Result<(), ActorProcessingErr> {
        let (started, name) = (Instant::now(), message.name());
        if !matches!(
            message,
            TicketMsg::Tick | TicketMsg::Persisted | TicketMsg::Typing { .. }
        ) {
            state.last_activity = state.deps.clock.now();
        }
        match message {
            TicketMsg::Get { page, reply } => state.get(page, reply),
            TicketMsg::Post {
                author,
                content,
                idempotency_key,
                reply,
            } => state.post(author, content, idempotency_key, reply),
            TicketMsg::MarkRead { reader, reply } => state.mark_read(reader, reply),
            TicketMsg::Change { change, reply } => state.change(change, reply),
            TicketMsg::AddNote {
                author,
                content,
                reply,
            } => state.add_note(author, content, reply),
            TicketMsg::Subscribe { since, reply } => drop(reply.send(Ok(state.subscribe(since)))),
            TicketMsg::Position { reply } => drop(reply.send(state.position())),
            TicketMsg::Typing { author } => state.typing(author),
            TicketMsg::Persisted => state.persisted(&myself)?,
            TicketMsg::Tick => state.tick(&myself)?,
            #[cfg(any(test, feature = "testing"))]
            TicketMsg::Crash => return Err("crash requested by a test".into()),
        }
        crate::telemetry::message_handled("ticket", name, started);
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<TicketMsg>,
        state: &mut TicketState,
    ) -> Result<(), ActorProcessingErr> {
        crate::telemetry::actor_stopped("ticket");
        state.deps.views.remove(&state.key);
        state.finish().await;
        Ok(())
    }
}

impl TicketState {
    fn get(&mut self, page: Option<MessagePage>, reply: RpcReplyPort<Result<Bytes, TicketError>>) {
        if self.claim.as_ref().is_some_and(|c| c.lost()) {
            // Another node may have changed the ticket since: it answers now.
            return drop(reply.send(Err(TicketError::Moved)));
        }
        if page.is_none() && self.recent.complete {
            let _ = reply.send(Ok(self.full_view()));
        } else {
            self.read_page(page, reply);
        }
    }

    fn post(
        &mut self,
        author: Participant,
        content: MessageBody,
        idempotency_key: Option<IdempotencyKey>,
        reply: RpcReplyPort<Result<Message, TicketError>>,
    ) {
        if let Some(key) = &idempotency_key {
            let queued = self.writes.queued().filter_map(|e| match e {
                Effect::Message(m, _) => Some(m),
                _ => None,
            });
            let recent = self.recent.messages.iter();
            let refusal = match idempotency::check(key, author, &content, queued, recent) {
                Retry::New => None,
                Retry::Repeat(original) => return drop(reply.send(Ok(original))),
                Retry::InProgress => Some(TicketError::InProgress),
                Retry::KeyReused => Some(TicketError::KeyReused),
            };
            if let Some(refusal) = refusal {
                return drop(reply.send(Err(refusal)));
            }
        }
        if let Some(refusal) = self.refusal() {
            return drop(reply.send(Err(refusal)));
        }
        if self.tentative_status == TicketStatus::Closed {
            return drop(reply.send(Err(TicketError::Closed)));
        }
        // A visitor replying to a solved ticket reopens it.
        if author == Participant::User && self.tentative_status == TicketStatus::Resolved {
            let reopened = self.status_change(TicketStatus::Open);
            let (nobody, _) = oneshot::channel();
            self.change_ticket(reopened, nobody.into());
        }
        let id = MessageId::next(self.last_assigned, self.deps.clock.now());
        self.last_assigned = Some(id);
        let message = Message {
            id,
            author,
            content,
            timestamp: id.timestamp(),
            idempotency_key,
        };
        let mut writes = vec![TicketWrite::Message(message.clone())];
        writes.extend(self.announce(EventType::MessageCreated, || {
            message_created(&self.key.project, &self.key.slug, &message)
        }));
        self.queue(writes, Effect::Message(message, reply));
    }

    fn mark_read(
        &mut self,
        reader: Participant,
        reply: RpcReplyPort<Result<Option<MessageId>, TicketError>>,
    ) {
        let Some(up_to) = self.last_assigned else {
            return drop(reply.send(Ok(None)));
        };
        if let Some(refusal) = self.refusal() {
            return drop(reply.send(Err(refusal)));
        }
        let write = TicketWrite::ReadCursor { reader, up_to };
        self.queue(vec![write], Effect::Read(reader, up_to, reply));
    }

    /// A new status, a new assignee, or both: one version of the ticket, one write.
    fn change(&mut self, change: TicketChange, reply: RpcReplyPort<Result<Ticket, TicketError>>) {
        if let Some(refusal) = self.refusal() {
            return drop(reply.send(Err(refusal)));
        }
        // Built on the newest queued change, so a change never undoes another that is still
        // on its way to the store.
        let mut next = self.tentative_ticket();
        if let Some(status) = change.status {
            next.status = status;
        }
        if let Some(assignee) = change.assignee {
            next.assignee = assignee;
        }
        next.updated_at = self.next_version(&next);
        self.change_ticket(next, reply);
    }

    fn add_note(
        &mut self,
        author: AgentName,
        content: MessageBody,
        reply: RpcReplyPort<Result<Note, TicketError>>,
    ) {
        if let Some(refusal) = self.refusal() {
            return drop(reply.send(Err(refusal)));
        }
        let now = self.deps.clock.now();
        // After every id handed out so far, so notes keep their order; messages keep theirs.
        let id = MessageId::next(self.last_assigned.max(self.last_note), now);
        self.last_note = Some(id);
        let note = Note {
            id,
            author,
            content,
            created_at: id.timestamp(),
        };
        self.queue(
            vec![TicketWrite::Note(note.clone())],
            Effect::Note(note, reply),
        );
    }

    fn typing(&mut self, author: Participant) {
        let feed = self.deps.feeds.sender(&self.key.project);
        if feed.is_none() && self.subscribers.is_empty() {
            return;
        }
        let told = Told {
            kind: "typing",
            payload: events::encode(&events::TypingPayload { author }),
            message_id: None,
            agents_only: false,
        };
        self.tell(feed.as_ref(), vec![told]);
    }

    /// The store reported on the batch in flight.
    fn persisted(&mut self, myself: &ActorRef<TicketMsg>) -> Result<(), ActorProcessingErr> {
        let Some(landed) = self.writes.take_outcome() else {
            return Ok(());
        };
        match self.settle(landed) {
            Ok(()) => self.send_batch(),
            // With several nodes the requests behind the failed batch, queued or still in the
            // mailbox, were certainly not carried out: they are answered `Moved` as the actor
            // drains, and their callers send them on (to a fresh actor, here or on the new
            // owner) instead of failing with the batch.
            Err(e) if self.claim.is_some() => {
                tracing::warn!(ticket = %self.key, error = %e, "ticket write failed; reloading the ticket");
                self.leave(myself, "a write failed")?;
            }
            Err(e) => {
                // The batch may have landed in part, or after a timeout; rather than guess,
                // stop (the writes queued behind it are refused, never sent) and let the next
                // request reload the ticket.
                tracing::warn!(ticket = %self.key, error = %e, "ticket write failed; reloading the ticket");
                myself.stop(Some("a write failed".into()));
            }
        }
        Ok(())
    }

    /// With several nodes, when this node may no longer own the ticket (its lease was taken,
    /// or a write of it failed): requests stop coming here (the next one activates the ticket
    /// afresh, here or on its new owner), and the actor answers the requests it holds and
    /// stops. Writes it did not send are answered `Moved`, so they go on to the new owner.
    fn leave(
        &mut self,
        myself: &ActorRef<TicketMsg>,
        why: &'static str,
    ) -> Result<(), ActorProcessingErr> {
        if self.leaving {
            return Ok(());
        }
        self.leaving = true;
        tracing::info!(ticket = %self.key, why, "stopping the ticket's actor here");
        self.deps.registry.unroute(&self.key, &myself.get_cell());
        myself.drain()?;
        Ok(())
    }

    fn tick(&mut self, myself: &ActorRef<TicketMsg>) -> Result<(), ActorProcessingErr> {
        if self.claim.as_ref().is_some_and(|c| c.taken()) {
            // Another node owns the ticket now; its log refuses this node's writes anyway,
            // but requests should go to the new owner rather than fail here. (A lease that
            // only lapsed, unconfirmed while the leases' bucket did not answer, keeps its
            // actor: nobody could take the lease then, and the log decides every write.)
            return self.leave(myself, "the ticket's lease was taken");
        }
        self.subscribers.prune();
        let now = self.deps.clock.now();
        // A clock stepped back must not keep an idle actor until it catches up.
        self.last_activity = self.last_activity.min(now);
        let quiet = (now - self.last_activity).to_std().unwrap_or_default();
        let idle = quiet >= self.deps.config.idle_timeout;
        if idle && self.subscribers.is_empty() && self.writes.is_empty() {
            tracing::debug!(ticket = %self.key, "passivating idle ticket");
            crate::telemetry::actor_passivated("ticket");
            self.deps.registry.unroute(&self.key, &myself.get_cell());
            // Requests already in the mailbox are still answered; later sends fail and their
            // callers activate a fresh actor, which waits for this one's writer lease.
            myself.drain()?;
        }
        Ok(())
    }

    /// Why a write cannot be taken now, if it cannot: with several nodes, a write failed and
    /// the actor is leaving, so nothing is done here and the caller sends it on (to the
    /// ticket's next actor, here or on its new owner); or it must wait, with too many writes
    /// queued already. The lease is not asked: the ticket's log decides every write.
    fn refusal(&self) -> Option<TicketError> {
        if self.claim.is_some() && self.writes.is_broken() {
            return Some(TicketError::Moved);
        }
        (self.writes.len() >= self.deps.config.max_pending_writes).then_some(TicketError::Busy)
    }

    fn status_change(&self, status: TicketStatus) -> Ticket {
        let mut next = self.tentative_ticket();
        next.status = status;
        next.updated_at = self.next_version(&next);
        next
    }

    /// The `updated_at` of the change after `base`: now, but always past `base` by at least a
    /// millisecond (the precision stores keep), so that it orders the ticket's versions even when
    /// the clock stands still or the ticket moved here from a node whose clock runs ahead. The
    /// stores keep the newer version of a ticket row by it, which is what stops a late write
    /// from a node that lost the ticket from undoing a newer change.
    fn next_version(&self, base: &Ticket) -> chrono::DateTime<chrono::Utc> {
        self.deps
            .clock
            .now()
            .max(base.updated_at + chrono::Duration::milliseconds(1))
    }

    /// The ticket's fields after every change still queued.
    fn tentative_ticket(&self) -> Ticket {
        let queued = self.writes.queued().rev().find_map(|e| match e {
            Effect::Ticket(t, _) => Some(t),
            _ => None,
        });
        queued.unwrap_or(&self.ticket).clone()
    }

    fn queue(&mut self, writes: Vec<TicketWrite>, effect: Effect) {
        self.writes.push(writes, effect);
        self.send_batch();
    }

    /// The webhook deliveries announcing `event`, to go in the same batch as the change.
    fn announce(
        &self,
        event: EventType,
        data: impl FnOnce() -> serde_json::Value,
    ) -> Vec<TicketWrite> {
        let now = self.deps.clock.now();
        let deliveries = self
            .deps
            .hooks
            .deliveries(&self.key.project, event, data, now);
        deliveries.into_iter().map(TicketWrite::Delivery).collect()
    }

    /// A ticket change with its announcements: a new status, a new assignee, or both.
    fn change_ticket(&mut self, next: Ticket, reply: RpcReplyPort<Result<Ticket, TicketError>>) {
        let before = self.tentative_ticket();
        let mut writes = vec![TicketWrite::Ticket(next.clone())];
        let summary =
            || serde_json::to_value(events::TicketSummary::new(&next)).unwrap_or_default();
        if before.status != next.status {
            writes.extend(self.announce(
                EventType::TicketStatusChanged,
                || serde_json::json!({ "ticket": summary(), "previous": before.status }),
            ));
        }
        if before.assignee != next.assignee {
            writes.extend(self.announce(
                EventType::TicketAssigned,
                || serde_json::json!({ "ticket": summary(), "previous": before.assignee }),
            ));
        }
        self.tentative_status = next.status;
        self.queue(writes, Effect::Ticket(next, reply));
    }

    /// Hands the queued writes to the store as one batch, unless a batch is in flight.
    ///
    /// With several nodes the batch goes to the ticket's log first, with the events it tells,
    /// rendered from the state every earlier batch left (one batch is in flight at a time, so
    /// that state is this actor's): every node's subscribers get them from the log.
    fn send_batch(&mut self) {
        let budget = match self.claim {
            None => usize::MAX,
            Some(_) => LOG_BATCH_BUDGET,
        };
        let Some((writes, done)) = self.writes.next_batch_within(budget) else {
            return;
        };
        let (project, slug) = (self.key.project.clone(), self.key.slug.clone());
        let store = self.deps.store.clone();
        let Some(claim) = self.claim.clone() else {
            return store.submit(project, slug, writes, done);
        };
        let (mut ticket, mut cursors) = (self.ticket.clone(), self.cursors.clone());
        let now = self.deps.clock.now();
        let events = writes
            .iter()
            .filter_map(Change::of)
            .flat_map(|change| change.apply(&mut ticket, &mut cursors, now, true))
            .map(Told::into_log)
            .collect();
        let batch = LogBatch { writes, events };
        tokio::spawn(async move {
            match claim.append(&batch).await {
                Ok(_) => done(store_committed(store, project, slug, batch.writes).await),
                Err(e) => done(Err(e)),
            }
        });
    }

    /// Applies a batch's outcome: durable writes take effect and are fanned out, failed ones
    /// are refused. Returns the failure, if any.
    fn settle(&mut self, landed: Landed<Effect>) -> Result<(), StoreError> {
        match landed.result {
            Ok(()) => {
                for effect in landed.effects {
                    self.apply_durable(effect);
                }
                if let Some(claim) = &self.claim {
                    self.through = claim.last();
                }
                Ok(())
            }
            Err(e) => {
                // Refused by the ticket's log: another node owns the ticket now, and none of
                // these writes was made.
                let moved = self.claim.is_some() && matches!(e, StoreError::Conflict);
                for effect in landed.effects {
                    effect.refuse(match moved {
                        true => TicketError::Moved,
                        false => TicketError::from(e.clone()),
                    });
                }
                self.tentative_status = self.tentative_ticket().status;
                Err(e)
            }
        }
    }

    fn apply_durable(&mut self, effect: Effect) {
        self.forget_view();
        let now = self.deps.clock.now();
        // With several nodes the events went out through the ticket's log; here only the
        // state moves on. Alone, they are encoded only if someone listens: most posts have no
        // audience.
        let feed = match self.claim {
            Some(_) => None,
            None => self.deps.feeds.sender(&self.key.project),
        };
        let tell = self.claim.is_none() && (feed.is_some() || !self.subscribers.is_empty());
        let change = match &effect {
            Effect::Message(message, _) => Change::Message(message),
            Effect::Read(reader, up_to, _) => Change::Read(*reader, *up_to),
            Effect::Ticket(ticket, _) => Change::Ticket(ticket),
            Effect::Note(note, _) => Change::Note(note),
        };
        let told = change.apply(&mut self.ticket, &mut self.cursors, now, tell);
        self.tell(feed.as_ref(), told);
        match effect {
            Effect::Message(message, reply) => {
                self.recent.push(message.clone());
                let _ = reply.send(Ok(message));
            }
            Effect::Read(_, up_to, reply) => drop(reply.send(Ok(Some(up_to)))),
            Effect::Ticket(ticket, reply) => drop(reply.send(Ok(ticket))),
            Effect::Note(note, reply) => drop(reply.send(Ok(note))),
        }
    }

    /// Offers events to the project's feed and every subscriber here, without waiting.
    fn tell(&mut self, feed: Option<&broadcast::Sender<Bytes>>, told: Vec<Told>) {
        for told in told {
            if let Some(feed) = feed {
                let frame = events::envelope(told.kind, Some(&self.key.slug), &told.payload);
                let _ = feed.send(frame);
            }
            if told.agents_only || self.subscribers.is_empty() {
                continue;
            }
            let event = Event {
                frame: events::envelope(told.kind, None, &told.payload),
                message_id: told.message_id,
                seq: None,
            };
            let cut = self.subscribers.offer(event);
            if cut > 0 {
                tracing::info!(ticket = %self.key, cut, "cut off slow subscribers");
            }
        }
    }

    fn full_view(&mut self) -> Bytes {
        if let Some(cached) = &self.view_cache {
            return cached.clone();
        }
        let messages = self.recent.messages.iter();
        let bytes = TicketView::new(&self.ticket, messages, &self.cursors).to_bytes();
        self.view_cache = Some(bytes.clone());
        self.deps.views.insert(self.key.clone(), bytes.clone());
        bytes
    }

    /// Drops the encoded view, here and in the shared read cache; before any change is
    /// acknowledged.
    fn forget_view(&mut self) {
        if self.view_cache.take().is_some() {
            self.deps.views.remove(&self.key);
        }
    }

    fn subscribe(&mut self, since: Option<MessageId>) -> Subscription {
        let (events, cut_off) = self.subscribers.add();
        let last = self.recent.last_id();
        let subscribed = self.subscribed_frame(last);
        let replay = match since {
            Some(since) if last.is_some_and(|l| since < l) => self.replay(since, last),
            _ => Replay::Ready(Vec::new()),
        };
        Subscription {
            subscribed,
            replay,
            events,
            cut_off,
            last_message_id: last,
            skip_through: 0,
        }
    }

    fn subscribed_frame(&self, last: Option<MessageId>) -> Bytes {
        event_frame(
            "subscribed",
            None,
            SubscribedPayload {
                project_id: self.key.project.as_str(),
                slug: &self.key.slug,
                status: self.ticket.status,
                last_message_id: last,
            },
        )
    }

    fn position(&self) -> Result<Position, TicketError> {
        if self.claim.as_ref().is_some_and(|c| c.lost()) {
            return Err(TicketError::Moved);
        }
        let last = self.recent.last_id();
        Ok(Position {
            subscribed: self.subscribed_frame(last),
            last_message_id: last,
            cursors: self.cursors.clone(),
            through: self.through,
        })
    }

    /// The messages after `since` up to `last` (everything durable when the subscriber
    /// joined; what follows arrives live): from memory, or read by a spawned task.
    fn replay(&self, since: MessageId, last: Option<MessageId>) -> Replay {
        if self.recent.holds_after(since) {
            let missed = self.recent.messages.iter().filter(|m| m.id > since);
            return Replay::Ready(missed.map(|m| message_event(m, &self.cursors)).collect());
        }
        let (tx, rx) = oneshot::channel();
        let (deps, key, cursors) = (self.deps.clone(), self.key.clone(), self.cursors.clone());
        tokio::spawn(async move {
            let range = MessageRange {
                after: Some(since),
                before: last.map(MessageId::bound_after),
                limit: MAX_REPLAY + 1,
                newest: false,
            };
            let read = deps.store.list_messages(&key.project, &key.slug, range);
            let result = match read.await {
                Ok(msgs) if msgs.len() > MAX_REPLAY => Err(TicketError::TooFarBehind),
                Ok(msgs) => Ok(msgs
                    .iter()
                    .filter(|m| last.is_some_and(|l| m.id <= l))
                    .map(|m| message_event(m, &cursors))
                    .collect()),
                Err(e) => Err(TicketError::from(e)),
            };
            let _ = tx.send(result);
        });
        Replay::Loading(rx)
    }

    /// Answers a GET that the in-memory messages cannot: a page, or a ticket longer than the
    /// cache. The store is read by a spawned task, so the mailbox never waits on it.
    fn read_page(
        &self,
        page: Option<MessagePage>,
        reply: RpcReplyPort<Result<Bytes, TicketError>>,
    ) {
        let (deps, key) = (self.deps.clone(), self.key.clone());
        let (ticket, cursors) = (self.ticket.clone(), self.cursors.clone());
        // Only durable messages are visible: cap the read at the newest one the actor applied.
        let newest_durable = self.recent.last_id();
        tokio::spawn(async move {
            let limit = page.map_or(MAX_UNPAGED, |p| p.limit);
            // Read below the first id after the newest durable one, so a batch committed but
            // not yet applied by the actor can neither show nor shorten the page.
            let before = page
                .and_then(|p| p.before)
                .or(newest_durable.map(MessageId::bound_after));
            let result = match newest_durable {
                None => Ok(Vec::new()),
                Some(_) => {
                    let range = MessageRange {
                        after: None,
                        before,
                        limit: limit + 1,
                        newest: true,
                    };
                    deps.store
                        .list_messages(&key.project, &key.slug, range)
                        .await
                }
            };
            let view = result.map_err(TicketError::from).map(|mut msgs| {
                msgs.retain(|m| newest_durable.is_some_and(|n| m.id <= n));
                page_view(&ticket, &cursors, msgs, limit)
            });
            let _ = reply.send(view);
        });
    }

    /// Answers every caller still waiting as the actor stops. Writes taken in while draining
    /// are still made durable, batch after batch, for up to one call timeout; whatever is left
    /// after that, or after a failed batch, is refused.
    async fn finish(&mut self) {
        let deadline = tokio::time::Instant::now() + self.deps.config.call_timeout;
        loop {
            if let Some(landed) = self.writes.take_outcome() {
                let _ = self.settle(landed);
            }
            if !self.writes.in_flight() {
                if self.writes.is_broken() || self.writes.is_empty() {
                    break;
                }
                self.send_batch();
            }
            // The mailbox is closed now; the batch's outcome comes to the queue's slot.
            if tokio::time::timeout_at(deadline, self.writes.landed())
                .await
                .is_err()
            {
                break;
            }
        }
        // Those in a batch whose outcome never came may have been written: not `Moved`, which
        // promises nothing was, but a 503 after which the client retries with its
        // idempotency key. Those never sent were not written: with several nodes their
        // callers send them on.
        let abandoned = self.writes.abandon();
        for effect in abandoned.in_doubt {
            effect.refuse(TicketError::Unavailable("ticket is restarting".into()));
        }
        for effect in abandoned.unsent {
            effect.refuse(match self.claim {
                Some(_) => TicketError::Moved,
                None => TicketError::Unavailable("ticket is restarting".into()),
            });
        }
    }
}

/// A page of the ticket from the newest `limit + 1` messages read, oldest first: the newest
/// `limit`, with `next_before` when there are more.
pub(crate) fn page_view(
    ticket: &Ticket,
    cursors: &[ReadCursor],
    mut messages: Vec<Message>,
    limit: usize,
) -> Bytes {
    let more = messages.len() > limit;
    if more {
        messages.remove(0);
    }
    let mut view = TicketView::new(ticket, messages.iter(), cursors);
    if more {
        view.next_before = messages.first().map(|m| m.id);
    }
    view.to_bytes()
}

/// Writes a batch the ticket's log already holds to the store. The log took it, so it will
/// reach the store whatever happens (the next owner writes the log's last entry again); a
/// failure is retried a few times before the callers hear of it, since an error answer for a
/// write that then lands invites a retry that doubles it.
async fn store_committed(
    store: Arc<dyn crate::store::TicketStore>,
    project: crate::domain::ProjectId,
    slug: crate::domain::Slug,
    writes: Vec<TicketWrite>,
) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        let (tx, rx) = oneshot::channel();
        let done = Box::new(move |result| drop(tx.send(result)));
        store
            .clone()
            .submit(project.clone(), slug.clone(), writes.clone(), done);
        let result = rx
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the store lost a batch".into())));
        match result {
            Err(StoreError::Unavailable(_)) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
            }
            result => return result,
        }
    }
}

/// The `data` of a `message.created` webhook.
pub(crate) fn message_created(
    project: &crate::domain::ProjectId,
    slug: &crate::domain::Slug,
    message: &Message,
) -> serde_json::Value {
    serde_json::json!({
        "project_id": project.as_str(),
        "ticket_slug": slug.as_str(),
        "message": events::MessageView::new(message, &[]),
    })
}

pub(crate) fn message_event(message: &Message, cursors: &[ReadCursor]) -> Event {
    let view = events::MessageView::new(message, cursors);
    Event {
        frame: event_frame("new_message", None, view),
        message_id: Some(message.id),
        seq: None,
    }
}

/// A durable change to a ticket, as far as the ticket's watchers are concerned.
enum Change<'a> {
    Message(&'a Message),
    Read(Participant, MessageId),
    Ticket(&'a Ticket),
    Note(&'a Note),
}

/// One event a change tells: to the ticket's subscribers and its project's feed, or (agents
/// only) to the feed alone.
struct Told {
    kind: &'static str,
    payload: Bytes,
    message_id: Option<MessageId>,
    agents_only: bool,
}

impl Told {
    fn new(kind: &'static str, payload: Bytes) -> Told {
        Told {
            kind,
            payload,
            message_id: None,
            agents_only: false,
        }
    }

    fn into_log(self) -> LogEvent {
        if self.agents_only {
            LogEvent::for_agents(self.kind, self.payload)
        } else {
            LogEvent::new(self.kind, self.payload, self.message_id)
        }
    }
}

impl<'a> Change<'a> {
    fn of(write: &'a TicketWrite) -> Option<Change<'a>> {
        match write {
            TicketWrite::Message(message) => Some(Change::Message(message)),
            TicketWrite::ReadCursor { reader, up_to } => Some(Change::Read(*reader, *up_to)),
            TicketWrite::Ticket(ticket) => Some(Change::Ticket(ticket)),
            TicketWrite::Note(note) => Some(Change::Note(note)),
            TicketWrite::Delivery(_) => None,
        }
    }

    /// Applies the change to the ticket's fields and read cursors (a message goes to the
    /// caller's list); with `tell`, returns the events it tells, rendered against the state
    /// before it.
    fn apply(
        self,
        ticket: &mut Ticket,
        cursors: &mut Vec<ReadCursor>,
        now: chrono::DateTime<chrono::Utc>,
        tell: bool,
    ) -> Vec<Told> {
        match self {
            Change::Message(message) if tell => vec![Told {
                message_id: Some(message.id),
                ..Told::new(
                    "new_message",
                    events::encode(&events::MessageView::new(message, cursors)),
                )
            }],
            Change::Message(_) => Vec::new(),
            Change::Read(reader, up_to) => {
                match cursors.iter_mut().find(|c| c.reader == reader) {
                    Some(c) => c.up_to = c.up_to.max(up_to),
                    None => cursors.push(ReadCursor { reader, up_to }),
                }
                if !tell {
                    return Vec::new();
                }
                let payload = ReadReceiptPayload {
                    reader,
                    last_read_message_id: up_to,
                    read_at: events::rfc3339(now),
                };
                vec![Told::new("ticket_update", events::encode(&payload))]
            }
            Change::Ticket(next) => {
                let previous = std::mem::replace(ticket, next.clone());
                let mut told = Vec::new();
                if !tell {
                    return told;
                }
                let updated_at = events::rfc3339(next.updated_at);
                if previous.status != next.status {
                    let payload = StatusChangePayload {
                        status: next.status,
                        previous: previous.status,
                        updated_at: updated_at.clone(),
                    };
                    told.push(Told::new("status_change", events::encode(&payload)));
                }
                if previous.assignee != next.assignee {
                    let payload = events::AssignedPayload {
                        assignee: next.assignee.as_ref().map(AgentName::as_str),
                        previous: previous.assignee.as_ref().map(AgentName::as_str),
                        updated_at,
                    };
                    told.push(Told::new("assigned", events::encode(&payload)));
                }
                told
            }
            // Agents only: the feed, never the ticket's subscribers (the visitor's tabs).
            Change::Note(note) if tell => vec![Told {
                agents_only: true,
                ..Told::new("note_added", events::encode(&events::NoteView::new(note)))
            }],
            Change::Note(_) => Vec::new(),
        }
    }
}
