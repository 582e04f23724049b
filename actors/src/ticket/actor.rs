//! `TicketActor`: the single writer for one ticket, and the hub of its realtime subscribers.
//!
//! Writes are pipelined. A request is validated against the actor's state, given its message id,
//! and queued. Queued writes go to the store in batches, one batch in flight at a time, so the
//! store sees the ticket's writes in the order the actor made them; the mailbox keeps turning
//! meanwhile. The store reports each batch's outcome to the actor directly, from its own
//! writer thread when it has one: the outcome goes into a slot the two share, and `Persisted`
//! into the mailbox to say so. The actor then applies the batch to its state,
//! fans the events out, answers the callers in the order the requests arrived, and sends the
//! writes queued meanwhile as the next batch.
//!
//! An earlier design ran a *write lane* task per ticket between the actor and the store. It
//! cost two task wake-ups per batch (actor to lane, lane to actor) and a task per live ticket.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{mpsc, oneshot};

use super::{TicketDeps, TicketError, TicketKey, WriterLease};
use crate::domain::{
    IdempotencyKey, Message, MessageBody, Participant, ReadCursor, Ticket, TicketStatus,
};
use crate::events::{
    self, event_frame, ReadReceiptPayload, StatusChangePayload, SubscribedPayload, TicketView,
};
use crate::message_id::MessageId;
use crate::store::Done;
use crate::store::{MessageRange, StoreError, TicketWrite};

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
    /// Change the status; answers the ticket after the change.
    SetStatus {
        status: TicketStatus,
        reply: RpcReplyPort<Result<Ticket, TicketError>>,
    },
    /// Join the ticket's realtime events, optionally replaying messages after `since`.
    Subscribe {
        since: Option<MessageId>,
        reply: RpcReplyPort<Result<Subscription, TicketError>>,
    },
    /// From the store: the batch in flight is durable or failed. The outcome itself waits in
    /// the actor's return slot, where no stop can lose it.
    Persisted,
    /// Periodic housekeeping: prune gone subscribers, passivate when idle.
    Tick,
    /// Fail on purpose, so tests can watch the supervisor restart the actor.
    #[cfg(feature = "testing")]
    Crash,
}

impl TicketMsg {
    /// The message's type, as a metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            TicketMsg::Get { .. } => "get",
            TicketMsg::Post { .. } => "post",
            TicketMsg::MarkRead { .. } => "mark_read",
            TicketMsg::SetStatus { .. } => "set_status",
            TicketMsg::Subscribe { .. } => "subscribe",
            TicketMsg::Persisted => "persisted",
            TicketMsg::Tick => "tick",
            #[cfg(feature = "testing")]
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

/// One realtime event, encoded once and shared by all subscribers.
#[derive(Clone, Debug)]
pub struct Event {
    pub frame: Bytes,
    /// For `new_message` events: lets a subscriber resume with `since=` after a reconnect.
    pub message_id: Option<MessageId>,
}

/// What a subscriber gets back from [`TicketMsg::Subscribe`].
pub struct Subscription {
    /// The `subscribed` frame to send first.
    pub subscribed: Bytes,
    /// Messages missed since `since`, to send before live events.
    pub replay: Replay,
    /// Live events. The channel closes when the actor stops or cuts this subscriber off.
    pub events: mpsc::Receiver<Event>,
    /// Tripped when the actor cuts this subscriber off for falling behind.
    pub cut_off: Arc<CutOff>,
    /// The newest durable message when the subscription began: live events come after it.
    pub last_message_id: Option<MessageId>,
}

/// Messages replayed to one socket at most; a client further behind reloads with GET.
pub const MAX_REPLAY: usize = 1000;
/// Messages in a GET without paging at most: the newest ones, with `next_before` for the rest.
pub const MAX_UNPAGED: usize = 1000;

pub enum Replay {
    Ready(Vec<Event>),
    /// Older than the actor keeps in memory: read from the store by a spawned task.
    Loading(oneshot::Receiver<Result<Vec<Event>, TicketError>>),
}

struct Subscriber {
    tx: mpsc::Sender<Event>,
    cut_off: Arc<CutOff>,
}

/// The actor's word to one subscriber that it fell behind and was dropped. A socket task that
/// is stuck writing to a peer that does not read must hear it without first draining its
/// queue, so it can be awaited as well as read.
#[derive(Debug, Default)]
pub struct CutOff {
    cut: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CutOff {
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        // A permit is kept when nobody waits yet, so a later `cut_off()` returns at once.
        self.notify.notify_one();
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Returns once the subscriber has been cut off. One waiter at a time.
    pub async fn cut_off(&self) {
        if self.is_cut() {
            return;
        }
        self.notify.notified().await;
    }
}

enum Effect {
    Message(Message, RpcReplyPort<Result<Message, TicketError>>),
    Read(
        Participant,
        MessageId,
        RpcReplyPort<Result<Option<MessageId>, TicketError>>,
    ),
    Status(Ticket, RpcReplyPort<Result<Ticket, TicketError>>),
}

enum KeySeen {
    Durable(Message),
    InFlight,
    No,
}

struct Pending {
    seq: u64,
    effect: Effect,
}

pub struct TicketActor;

pub struct TicketArgs {
    pub key: TicketKey,
    pub ticket: Ticket,
    pub deps: TicketDeps,
    pub(crate) lease: WriterLease,
}

/// Writes in one batch at most.
const MAX_BATCH: usize = 256;

/// The way back from the store to the actor, shared by the actor and its batch in flight.
///
/// The outcome is left in a slot and the mailbox only gets a nudge: a stop is handled before
/// the messages queued ahead of it, and an outcome carried in such a message would be lost,
/// leaving `finish` to refuse callers whose writes did land.
struct Return {
    actor: ActorRef<TicketMsg>,
    /// The outcome of the batch in flight (there is at most one), with its last write.
    outcome: std::sync::Mutex<Option<(u64, Result<(), StoreError>)>>,
    landed: tokio::sync::Notify,
    /// Released when the actor has stopped and its last batch has landed, whichever is later:
    /// only then may the ticket's next actor load it.
    _lease: WriterLease,
}

impl Return {
    fn land(&self, through: u64, result: Result<(), StoreError>) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some((through, result));
        // Refused while the actor drains or stops; `finish` waits on `landed` then.
        let _ = self.actor.send_message(TicketMsg::Persisted);
        self.landed.notify_one();
    }

    fn take(&self) -> Option<(u64, Result<(), StoreError>)> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// What a batch's callback carries back. A store that drops the callback without calling it (a
/// panicking writer thread, a cancelled task) reports a failure through it instead, so the
/// actor never waits for an outcome that cannot come.
struct Landing {
    back: Option<Arc<Return>>,
    through: u64,
}

impl Landing {
    fn land(mut self, result: Result<(), StoreError>) {
        if let Some(back) = self.back.take() {
            back.land(self.through, result);
        }
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if let Some(back) = self.back.take() {
            back.land(
                self.through,
                Err(StoreError::Unavailable(
                    "the store dropped a batch without an outcome".into(),
                )),
            );
        }
    }
}

pub struct TicketState {
    key: TicketKey,
    deps: TicketDeps,
    /// The ticket as durably stored.
    ticket: Ticket,
    /// The status after every queued change, for validating new requests.
    tentative_status: TicketStatus,
    /// The newest messages, oldest first; every message when `complete`.
    recent: VecDeque<Message>,
    complete: bool,
    /// The newest id handed out, durable or not: new ids must exceed it.
    last_assigned: Option<MessageId>,
    cursors: Vec<ReadCursor>,
    subscribers: Vec<Subscriber>,
    pending: VecDeque<Pending>,
    next_seq: u64,
    /// Queued writes not yet handed to the store, oldest first, with their `seq`.
    unsent: VecDeque<(u64, TicketWrite)>,
    /// A batch is with the store; the next waits for its outcome.
    in_flight: bool,
    /// A batch failed: nothing more is sent, and the actor is stopping.
    broken: bool,
    back: Arc<Return>,
    /// The encoded full ticket, reused by every GET until something changes.
    view_cache: Option<Bytes>,
    last_activity: Instant,
}

impl TicketState {
    fn last_message_id(&self) -> Option<MessageId> {
        self.recent.back().map(|m| m.id)
    }

    fn queue(&mut self, write: TicketWrite, effect: Effect) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unsent.push_back((seq, write));
        self.pending.push_back(Pending { seq, effect });
        self.send_batch();
    }

    /// Hands the unsent writes to the store as one batch, unless a batch is in flight.
    fn send_batch(&mut self) {
        if self.in_flight || self.broken || self.unsent.is_empty() {
            return;
        }
        let take = self.unsent.len().min(MAX_BATCH);
        let mut through = 0;
        let writes: Vec<TicketWrite> = self
            .unsent
            .drain(..take)
            .map(|(seq, write)| {
                through = seq;
                write
            })
            .collect();
        self.in_flight = true;
        let landing = Landing {
            back: Some(self.back.clone()),
            through,
        };
        let done: Done = Box::new(move |result| landing.land(result));
        self.deps.store.clone().submit(
            self.key.project.clone(),
            self.key.slug.clone(),
            writes,
            done,
        );
    }

    /// Offers one event to the project's feed and every subscriber without waiting: a
    /// subscriber whose queue is full is cut off rather than allowed to slow the ticket down.
    /// The payload is encoded only if someone listens; most posts have no audience.
    fn fan_out(
        &mut self,
        kind: &'static str,
        payload: impl FnOnce(&Self) -> Bytes,
        message_id: Option<MessageId>,
    ) {
        let feed = self.deps.feeds.sender(&self.key.project);
        if feed.is_none() && self.subscribers.is_empty() {
            return;
        }
        let payload = payload(self);
        if let Some(feed) = feed {
            let _ = feed.send(events::envelope(kind, Some(&self.key.slug), &payload));
        }
        if self.subscribers.is_empty() {
            return;
        }
        let event = Event {
            frame: events::envelope(kind, None, &payload),
            message_id,
        };
        let offered = self.subscribers.len() as u64;
        self.subscribers
            .retain(|s| match s.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.cut_off.cut();
                    tracing::info!(ticket = %self.key, "cutting off a slow subscriber");
                    metrics::counter!("fleety_slow_subscribers_cut_total").increment(1);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        metrics::counter!("fleety_events_fanned_out_total").increment(offered);
    }

    fn remember(&mut self, message: Message) {
        self.recent.push_back(message);
        if self.recent.len() > self.deps.config.recent_messages {
            self.recent.pop_front();
            self.complete = false;
        }
    }

    fn full_view(&mut self) -> Bytes {
        if let Some(cached) = &self.view_cache {
            return cached.clone();
        }
        let bytes = TicketView::new(&self.ticket, self.recent.iter(), &self.cursors).to_bytes();
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

    /// Whether a request with this idempotency key has been made: among the messages the actor
    /// keeps in memory (the newest 500), or still on its way to the store.
    fn find_by_key(&self, key: &IdempotencyKey) -> KeySeen {
        let in_flight = self.pending.iter().any(|p| {
            matches!(&p.effect, Effect::Message(m, _) if m.idempotency_key.as_ref() == Some(key))
        });
        if in_flight {
            return KeySeen::InFlight;
        }
        match self
            .recent
            .iter()
            .rev()
            .find(|m| m.idempotency_key.as_ref() == Some(key))
        {
            Some(m) => KeySeen::Durable(m.clone()),
            None => KeySeen::No,
        }
    }

    fn message_event(&self, message: &Message) -> Event {
        message_event(message, &self.cursors)
    }

    /// Recomputes the tentative status from the durable one and the still-queued changes.
    fn recompute_tentative_status(&mut self) {
        self.tentative_status = self
            .pending
            .iter()
            .rev()
            .find_map(|p| match &p.effect {
                Effect::Status(t, _) => Some(t.status),
                _ => None,
            })
            .unwrap_or(self.ticket.status);
    }

    fn apply_durable(&mut self, pending: Pending) {
        self.forget_view();
        match pending.effect {
            Effect::Message(message, reply) => {
                let payload =
                    |s: &Self| events::encode(&events::MessageView::new(&message, &s.cursors));
                self.fan_out("new_message", payload, Some(message.id));
                self.remember(message.clone());
                let _ = reply.send(Ok(message));
            }
            Effect::Read(reader, up_to, reply) => {
                match self.cursors.iter_mut().find(|c| c.reader == reader) {
                    Some(c) if c.up_to >= up_to => {}
                    Some(c) => c.up_to = up_to,
                    None => self.cursors.push(ReadCursor { reader, up_to }),
                }
                let payload = ReadReceiptPayload {
                    reader,
                    last_read_message_id: up_to,
                    read_at: events::rfc3339(self.deps.clock.now()),
                };
                self.fan_out("ticket_update", |_| events::encode(&payload), None);
                let _ = reply.send(Ok(Some(up_to)));
            }
            Effect::Status(ticket, reply) => {
                let previous = self.ticket.status;
                self.ticket = ticket.clone();
                if previous != ticket.status {
                    let payload = StatusChangePayload {
                        status: ticket.status,
                        previous,
                        updated_at: events::rfc3339(ticket.updated_at),
                    };
                    self.fan_out("status_change", |_| events::encode(&payload), None);
                }
                let _ = reply.send(Ok(ticket));
            }
        }
    }

    /// Settles the batch in flight if the store has reported on it; `None` if not yet.
    fn take_outcome(&mut self) -> Option<Result<(), StoreError>> {
        let (through, result) = self.back.take()?;
        self.in_flight = false;
        Some(self.settle(through, result))
    }

    /// Applies the outcome of the batch ending with write `through`: durable writes take effect
    /// and are fanned out; failed ones are refused, and nothing more is sent. Returns the
    /// failure, if any.
    fn settle(&mut self, through: u64, result: Result<(), StoreError>) -> Result<(), StoreError> {
        while self.pending.front().is_some_and(|p| p.seq <= through) {
            let Some(pending) = self.pending.pop_front() else {
                break;
            };
            match &result {
                Ok(()) => self.apply_durable(pending),
                Err(e) => TicketState::fail(pending, TicketError::from(e.clone())),
            }
        }
        if result.is_err() {
            self.broken = true;
            self.recompute_tentative_status();
        }
        result
    }

    fn fail(pending: Pending, error: TicketError) {
        match pending.effect {
            Effect::Message(_, reply) => {
                let _ = reply.send(Err(error));
            }
            Effect::Read(_, _, reply) => {
                let _ = reply.send(Err(error));
            }
            Effect::Status(_, reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn too_busy(&self) -> bool {
        self.pending.len() >= self.deps.config.max_pending_writes
    }

    fn status_change(&mut self, status: TicketStatus) -> Ticket {
        let mut next = self.ticket.clone();
        next.status = status;
        next.updated_at = self.deps.clock.now();
        self.tentative_status = status;
        next
    }
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
        let back = Arc::new(Return {
            actor: myself.clone(),
            outcome: std::sync::Mutex::default(),
            landed: tokio::sync::Notify::new(),
            _lease: lease,
        });
        crate::supervision::spawn_ticker(myself, deps.config.tick_interval, || TicketMsg::Tick);
        // A predecessor that failed may have left its view behind, and its last writes may
        // have landed after it.
        deps.views.remove(&key);
        tracing::debug!(ticket = %key, messages = newest.len(), "ticket actor started");
        crate::telemetry::actor_started("ticket");
        Ok(TicketState {
            last_assigned: newest.last().map(|m| m.id),
            tentative_status: ticket.status,
            key,
            ticket,
            recent: newest.into(),
            complete,
            cursors,
            subscribers: Vec::new(),
            pending: VecDeque::new(),
            next_seq: 0,
            unsent: VecDeque::new(),
            in_flight: false,
            broken: false,
            back,
            view_cache: None,
            last_activity: Instant::now(),
            deps,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TicketMsg>,
        message: TicketMsg,
        state: &mut TicketState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(message, TicketMsg::Tick | TicketMsg::Persisted) {
            state.last_activity = Instant::now();
        }
        let started = Instant::now();
        let name = message.name();
        let result = self.handle_message(myself, message, state).await;
        crate::telemetry::message_handled("ticket", name, started);
        result
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<TicketMsg>,
        state: &mut TicketState,
    ) -> Result<(), ActorProcessingErr> {
        crate::telemetry::actor_stopped("ticket");
        state.deps.views.remove(&state.key);
        self.finish(state).await
    }
}

impl TicketActor {
    async fn handle_message(
        &self,
        myself: ActorRef<TicketMsg>,
        message: TicketMsg,
        state: &mut TicketState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TicketMsg::Get { page: None, reply } if state.complete => {
                let _ = reply.send(Ok(state.full_view()));
            }
            TicketMsg::Get { page, reply } => read_page(state, page, reply),
            TicketMsg::Post {
                author,
                content,
                idempotency_key,
                reply,
            } => {
                if let Some(key) = &idempotency_key {
                    match state.find_by_key(key) {
                        KeySeen::Durable(original) => {
                            let same = original.author == author && original.content == content;
                            let _ = reply.send(if same {
                                Ok(original)
                            } else {
                                Err(TicketError::KeyReused)
                            });
                            return Ok(());
                        }
                        KeySeen::InFlight => {
                            let _ = reply.send(Err(TicketError::InProgress));
                            return Ok(());
                        }
                        KeySeen::No => {}
                    }
                }
                if state.too_busy() {
                    let _ = reply.send(Err(TicketError::Busy));
                    return Ok(());
                }
                if state.tentative_status == TicketStatus::Closed {
                    let _ = reply.send(Err(TicketError::Closed));
                    return Ok(());
                }
                // A visitor replying to a solved ticket reopens it.
                if author == Participant::User && state.tentative_status == TicketStatus::Resolved {
                    let reopened = state.status_change(TicketStatus::Open);
                    let (tx, _rx) = oneshot::channel();
                    state.queue(
                        TicketWrite::Ticket(reopened.clone()),
                        Effect::Status(reopened, tx.into()),
                    );
                }
                let now = state.deps.clock.now();
                let id = MessageId::next(state.last_assigned, now);
                state.last_assigned = Some(id);
                let message = Message {
                    id,
                    author,
                    content,
                    timestamp: id.timestamp(),
                    idempotency_key,
                };
                state.queue(
                    TicketWrite::Message(message.clone()),
                    Effect::Message(message, reply),
                );
            }
            TicketMsg::MarkRead { reader, reply } => {
                let Some(up_to) = state.last_assigned else {
                    let _ = reply.send(Ok(None));
                    return Ok(());
                };
                if state.too_busy() {
                    let _ = reply.send(Err(TicketError::Busy));
                    return Ok(());
                }
                state.queue(
                    TicketWrite::ReadCursor { reader, up_to },
                    Effect::Read(reader, up_to, reply),
                );
            }
            TicketMsg::SetStatus { status, reply } => {
                if state.too_busy() {
                    let _ = reply.send(Err(TicketError::Busy));
                    return Ok(());
                }
                let next = state.status_change(status);
                state.queue(
                    TicketWrite::Ticket(next.clone()),
                    Effect::Status(next, reply),
                );
            }
            TicketMsg::Subscribe { since, reply } => {
                let _ = reply.send(Ok(subscribe(state, since)));
            }
            TicketMsg::Persisted => match state.take_outcome() {
                None => {}
                Some(Ok(())) => state.send_batch(),
                Some(Err(e)) => {
                    // The batch may have landed in part, or after a timeout; rather than
                    // guess, stop (the writes queued behind it are refused, never sent) and
                    // let the next request reload the ticket.
                    tracing::warn!(ticket = %state.key, error = %e, "ticket write failed; reloading the ticket");
                    myself.stop(Some("a write failed".into()));
                }
            },
            TicketMsg::Tick => {
                state.subscribers.retain(|s| !s.tx.is_closed());
                let idle = state.last_activity.elapsed() >= state.deps.config.idle_timeout;
                if idle && state.subscribers.is_empty() && state.pending.is_empty() {
                    tracing::debug!(ticket = %state.key, "passivating idle ticket");
                    crate::telemetry::actor_passivated("ticket");
                    state.deps.registry.unroute(&state.key, &myself.get_cell());
                    // Requests already in the mailbox are still answered; later sends fail
                    // and their callers activate a fresh actor, which waits for this one's
                    // writer lease.
                    myself.drain()?;
                }
            }
            #[cfg(feature = "testing")]
            TicketMsg::Crash => return Err("crash requested by a test".into()),
        }
        Ok(())
    }

    /// Answers every caller still waiting as the actor stops. Writes taken in while draining
    /// are still made durable, batch after batch, for up to one call timeout; whatever is
    /// left after that, or after a failed batch, is refused.
    async fn finish(&self, state: &mut TicketState) -> Result<(), ActorProcessingErr> {
        let deadline = tokio::time::Instant::now() + state.deps.config.call_timeout;
        loop {
            let _ = state.take_outcome();
            if !state.in_flight {
                if state.broken || state.unsent.is_empty() {
                    break;
                }
                state.send_batch();
            }
            // The mailbox is closed now; the batch's outcome comes to the return slot.
            let landed = state.back.landed.notified();
            if tokio::time::timeout_at(deadline, landed).await.is_err() {
                break;
            }
        }
        state.unsent.clear();
        for pending in state.pending.drain(..) {
            TicketState::fail(
                pending,
                TicketError::Unavailable("ticket is restarting".into()),
            );
        }
        Ok(())
    }
}

fn message_event(message: &Message, cursors: &[ReadCursor]) -> Event {
    let view = events::MessageView::new(message, cursors);
    Event {
        frame: event_frame("new_message", None, view),
        message_id: Some(message.id),
    }
}

fn subscribe(state: &mut TicketState, since: Option<MessageId>) -> Subscription {
    let (tx, events) = mpsc::channel(state.deps.config.subscriber_queue);
    let cut_off = Arc::new(CutOff::default());
    state.subscribers.push(Subscriber {
        tx,
        cut_off: cut_off.clone(),
    });
    let last = state.last_message_id();
    let subscribed = event_frame(
        "subscribed",
        None,
        SubscribedPayload {
            project_id: state.key.project.as_str(),
            slug: &state.key.slug,
            status: state.ticket.status,
            last_message_id: last,
        },
    );
    let replay = match since {
        None => Replay::Ready(Vec::new()),
        Some(since) if last.is_none_or(|l| since >= l) => Replay::Ready(Vec::new()),
        Some(since) if state.complete || state.recent.front().is_some_and(|m| m.id <= since) => {
            Replay::Ready(
                state
                    .recent
                    .iter()
                    .filter(|m| m.id > since)
                    .map(|m| state.message_event(m))
                    .collect(),
            )
        }
        Some(since) => {
            // Everything up to `last` is durable; what follows arrives live.
            let (tx, rx) = oneshot::channel();
            let (deps, key, cursors) =
                (state.deps.clone(), state.key.clone(), state.cursors.clone());
            tokio::spawn(async move {
                let range = MessageRange {
                    after: Some(since),
                    before: last.map(MessageId::bound_after),
                    limit: MAX_REPLAY + 1,
                    newest: false,
                };
                let result = match deps
                    .store
                    .list_messages(&key.project, &key.slug, range)
                    .await
                {
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
    };
    Subscription {
        subscribed,
        replay,
        events,
        cut_off,
        last_message_id: last,
    }
}

/// Answers a GET that the in-memory messages cannot: a page, or a ticket longer than the cache.
fn read_page(
    state: &mut TicketState,
    page: Option<MessagePage>,
    reply: RpcReplyPort<Result<Bytes, TicketError>>,
) {
    let (deps, key) = (state.deps.clone(), state.key.clone());
    let (ticket, cursors) = (state.ticket.clone(), state.cursors.clone());
    // Only durable messages are visible: cap the read at the newest one the actor has applied.
    let newest_durable = state.last_message_id();
    tokio::spawn(async move {
        let limit = page.map_or(MAX_UNPAGED, |p| p.limit);
        // Read below the first id after the newest durable one, so a batch committed but not yet
        // applied by the actor can neither show nor shorten the page.
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
        let reply_value = result.map_err(TicketError::from).map(|mut msgs| {
            msgs.retain(|m| newest_durable.is_some_and(|n| m.id <= n));
            let more = msgs.len() > limit;
            if more {
                msgs.remove(0);
            }
            let mut view = TicketView::new(&ticket, msgs.iter(), &cursors);
            if more {
                view.next_before = msgs.first().map(|m| m.id);
            }
            view.to_bytes()
        });
        let _ = reply.send(reply_value);
    });
}
