//! `TicketActor`: the single writer for one ticket, and the hub of its realtime subscribers.
//!
//! Its protocol is [`TicketMsg`]: a [`Command`] to carry out (`commands.rs`), the reads that
//! are not commands (`reads.rs`, `subscribe.rs`), and the word on its batch in flight. A
//! command's writes are queued in the [`WriteQueue`], which sends them to the ticket's
//! [`Durability`] a batch at a time. When a batch's outcome comes back (in a
//! [`TicketMsg::Persisted`]), the actor applies the batch to its state, tells its events
//! (`change.rs`), answers the callers in the order their requests arrived, and sends the writes
//! queued meanwhile. The mailbox keeps turning while a batch is out.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;

use super::change::{Change, State, Told};
use super::commands::{Owed, Reply};
use super::durability::{Before, Durability, Outcome, Stored};
use super::reads::{MessagePage, Recent};
use super::subscribe::{subscribed_frame, Joined, Snapshot};
use super::subscribers::{Event, Subscribers};
use super::writes::{Settled, WriteQueue};
use super::{Command, TicketDeps, TicketError, TicketKey, WriterLease};
use crate::audit::AuditBy;
use crate::domain::{Participant, ReadCursor, Ticket, TicketStatus};
use crate::events;
use crate::message_id::MessageId;
use crate::store::{MessageRange, TicketWrite};

/// Every message a `TicketActor` understands.
pub enum TicketMsg {
    /// Carry out a command; answered once its writes are durable (at once when it has none).
    /// `by`: who acts, when an agent does, so the change's batch holds its audit record.
    Run {
        cmd: Command,
        by: Option<Box<AuditBy>>,
        reply: Reply,
    },
    /// The ticket as JSON, with all its messages, or with a page of them.
    Get {
        page: Option<MessagePage>,
        reply: RpcReplyPort<Result<Bytes, TicketError>>,
    },
    /// Join the ticket's realtime events, with the messages after `since` if they are in
    /// memory (one node).
    Subscribe {
        since: Option<MessageId>,
        reply: RpcReplyPort<Result<Joined, TicketError>>,
    },
    /// Someone is typing a message on the ticket: told to its agents and subscribers at once,
    /// never stored.
    Typing { author: Participant },
    /// The outcome of the batch in flight, whose last write is numbered `through`.
    Persisted { through: u64, outcome: Outcome },
    /// Periodic housekeeping: prune gone subscribers, passivate when idle.
    Tick,
    /// The ticket is being erased ([`Tickets::erase`](super::Tickets::erase)): tell the
    /// subscribers `ticket_deleted`, take no more requests, and stop once the writes taken
    /// in are settled.
    Erase,
    /// Fail on purpose, so tests can watch the supervisor restart the actor.
    #[cfg(any(test, feature = "testing"))]
    Crash,
}

impl TicketMsg {
    /// The message's type, as a metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            TicketMsg::Run { cmd, .. } => cmd.name(),
            TicketMsg::Get { .. } => "get",
            TicketMsg::Subscribe { .. } => "subscribe",
            TicketMsg::Typing { .. } => "typing",
            TicketMsg::Persisted { .. } => "persisted",
            TicketMsg::Tick => "tick",
            TicketMsg::Erase => "erase",
            #[cfg(any(test, feature = "testing"))]
            TicketMsg::Crash => "crash",
        }
    }
}

pub struct TicketActor;

/// Starts the ticket's actor: once no other actor of the ticket is still writing (its writer
/// lease), and (several nodes) once this node holds the ticket, from the ticket as stored.
pub(super) async fn activate(
    deps: &TicketDeps,
    key: &TicketKey,
) -> Result<ActorRef<TicketMsg>, TicketError> {
    if deps.erasing.contains_key(key) {
        return Err(TicketError::NotFound);
    }
    let lease = WriterLease::take(deps, key).await?;
    if deps.erasing.contains_key(key) {
        return Err(TicketError::NotFound);
    }
    let durability = super::durability::for_ticket(deps, key).await?;
    let ticket = deps.store.get_ticket(&key.project, &key.slug).await?;
    let args = TicketArgs {
        key: key.clone(),
        ticket: ticket.ok_or(TicketError::NotFound)?,
        deps: deps.clone(),
        lease,
        durability,
    };
    let actor = deps.registry.spawn(TicketActor, args).await;
    actor.map_err(|e| TicketError::Unavailable(format!("could not start ticket actor: {e}")))
}

pub struct TicketArgs {
    key: TicketKey,
    ticket: Ticket,
    deps: TicketDeps,
    lease: WriterLease,
    durability: Arc<dyn Durability>,
}

pub struct TicketState {
    pub(super) key: TicketKey,
    pub(super) deps: TicketDeps,
    /// The ticket as durably stored.
    pub(super) ticket: Ticket,
    /// The status after every queued change, for checking new requests.
    pub(super) tentative_status: TicketStatus,
    pub(super) recent: Recent,
    /// The newest id handed out, durable or not: new ids must exceed it.
    pub(super) last_assigned: Option<MessageId>,
    /// The newest note id this actor handed out.
    pub(super) last_note: Option<MessageId>,
    pub(super) cursors: Vec<ReadCursor>,
    subscribers: Subscribers,
    /// Declared before `writes`, which holds the writer lease: with several nodes it holds the
    /// ticket's lease, given back before the writer lease.
    pub(super) durability: Arc<dyn Durability>,
    pub(super) writes: WriteQueue<Owed>,
    /// The encoded full ticket, reused by every GET until something changes.
    pub(super) view_cache: Option<Bytes>,
    /// From the ticket's clock, so a test can move time past the idle timeout.
    last_activity: chrono::DateTime<chrono::Utc>,
    /// The position in the ticket's log of the last batch applied to this state.
    through: u64,
    /// The actor stopped taking requests and is draining its mailbox.
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
            durability,
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
        let back = myself.clone();
        // Refused while the actor drains or stops; `finish` waits on the queue then.
        let writes = WriteQueue::new(
            move |through, outcome| {
                drop(back.send_message(TicketMsg::Persisted { through, outcome }))
            },
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
            through: durability.start(),
            durability,
            writes,
            view_cache: None,
            last_activity: deps.clock.now(),
            leaving: false,
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
            TicketMsg::Tick | TicketMsg::Persisted { .. } | TicketMsg::Typing { .. }
        ) {
            state.last_activity = state.deps.clock.now();
        }
        match message {
            TicketMsg::Run { cmd, by, reply } => state.run(cmd, by, reply),
            TicketMsg::Get { page, reply } => state.get(page, reply),
            TicketMsg::Subscribe { since, reply } => drop(reply.send(Ok(state.join(since)))),
            TicketMsg::Typing { author } => state.typing(author),
            TicketMsg::Persisted { through, outcome } => {
                state.persisted(&myself, through, outcome)?
            }
            TicketMsg::Tick => state.tick(&myself)?,
            TicketMsg::Erase => state.erase(&myself)?,
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
    /// A new subscriber here: listening and where it starts are one step.
    fn join(&mut self, since: Option<MessageId>) -> Joined {
        let (events, cut_off) = self.subscribers.add();
        Joined {
            events,
            cut_off,
            start: self.snapshot(),
            held: self.held_since(since),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let last = self.recent.last_id();
        Snapshot {
            subscribed: subscribed_frame(&self.key, self.ticket.status, last),
            last_message_id: last,
            cursors: self.cursors.clone(),
            through: self.through,
        }
    }

    /// Where a subscriber on any node starts ([`Command::Position`]).
    pub fn position(&self) -> Result<Snapshot, TicketError> {
        match self.durability.current() {
            true => Ok(self.snapshot()),
            false => Err(TicketError::Moved),
        }
    }

    fn typing(&mut self, author: Participant) {
        let feed = self.deps.feeds.sender(&self.key.project);
        if feed.is_none() && self.subscribers.is_empty() {
            return;
        }
        let payload = events::encode(&events::TypingPayload { author });
        self.tell(feed.as_ref(), vec![Told::new("typing", payload)]);
    }

    /// Hands the queued writes to the durability as one batch, unless a batch is out.
    pub fn send_batch(&mut self) {
        let durability = &self.durability;
        let budget = durability.budget();
        let next = self
            .writes
            .next_batch_within(budget, |w| durability.weigh(w));
        let Some((writes, landing)) = next else {
            return;
        };
        // One batch is out at a time, so the state is what every earlier batch left.
        let before = Before {
            ticket: &self.ticket,
            cursors: &self.cursors,
            now: self.deps.clock.now(),
        };
        durability.persist(&self.key, writes, before, landing);
    }

    /// The batch in flight came back.
    fn persisted(
        &mut self,
        myself: &ActorRef<TicketMsg>,
        through: u64,
        outcome: Outcome,
    ) -> Result<(), ActorProcessingErr> {
        let Some(settled) = self.writes.settle(through, outcome) else {
            return Ok(());
        };
        match self.settle(settled) {
            Ok(()) => self.send_batch(),
            // The batch may have landed in part, or after a timeout; rather than guess, the
            // actor stops (the writes queued behind it are refused, never sent) and the next
            // request reloads the ticket. With several nodes those writes were certainly not
            // carried out: they are answered `Moved`, and their callers send them on.
            Err(e) => {
                tracing::warn!(ticket = %self.key, error = %e, "ticket write failed; reloading the ticket");
                self.leave(myself, "a write failed")?;
            }
        }
        Ok(())
    }

    /// Applies a batch's outcome: durable writes take effect, are told, and their callers are
    /// answered; failed ones are refused. Returns the failure, if any.
    fn settle(&mut self, settled: Settled<Owed>) -> Result<(), TicketError> {
        let stored = match settled.outcome {
            Ok(stored) => stored,
            Err(e) => {
                for owed in settled.effects {
                    owed.refuse(e.clone());
                }
                self.tentative_status = self.tentative_ticket().status;
                return Err(e);
            }
        };
        self.forget_view();
        let told = match stored {
            Stored::Here => false,
            Stored::Logged(seq) => {
                self.through = seq;
                true
            }
        };
        self.apply(settled.changes, told);
        for owed in settled.effects {
            owed.pay();
        }
        Ok(())
    }

    /// Applies durable writes to the ticket's state, and tells their events unless the log
    /// told them already. Alone, they are encoded only if someone listens: most posts have no
    /// audience.
    fn apply(&mut self, changes: Vec<TicketWrite>, told: bool) {
        let now = self.deps.clock.now();
        let feed = (!told)
            .then(|| self.deps.feeds.sender(&self.key.project))
            .flatten();
        let tell = !told && (feed.is_some() || !self.subscribers.is_empty());
        for write in changes {
            if let Some(change) = Change::of(&write) {
                let state = State {
                    ticket: &mut self.ticket,
                    cursors: &mut self.cursors,
                };
                let told = change.apply(state, now, tell);
                self.tell(feed.as_ref(), told);
            }
            if let TicketWrite::Message(message) = write {
                self.recent.push(message);
            }
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

    /// When this actor should serve the ticket no longer (its write failed, or with several
    /// nodes its lease was taken): requests stop coming here (the next one activates the
    /// ticket afresh, here or on its new owner), and the actor answers the requests it holds
    /// and stops.
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

    /// The last event of the ticket's subscribers; its sockets close once they have sent it
    /// and their queue ends with the actor.
    fn erase(&mut self, myself: &ActorRef<TicketMsg>) -> Result<(), ActorProcessingErr> {
        let payload = events::encode(&events::TicketDeletedPayload {
            slug: &self.key.slug,
        });
        self.subscribers.offer(Event {
            frame: events::envelope("ticket_deleted", None, &payload),
            message_id: None,
            seq: None,
        });
        self.leave(myself, "the ticket is being erased")
    }

    fn tick(&mut self, myself: &ActorRef<TicketMsg>) -> Result<(), ActorProcessingErr> {
        if self.durability.taken() {
            // Another node owns the ticket now; its log refuses this node's writes anyway,
            // but requests should go to the new owner rather than fail here.
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

    /// Answers every caller still waiting as the actor stops. The mailbox takes no more
    /// messages, so the batch in flight is awaited directly. Writes taken in while draining
    /// are still made durable, batch after batch, for up to one call timeout; whatever is left
    /// after that, or after a failed batch, is refused.
    async fn finish(&mut self) {
        let deadline = tokio::time::Instant::now() + self.deps.config.call_timeout;
        loop {
            if self.writes.in_flight() {
                let landed = tokio::time::timeout_at(deadline, self.writes.land_in_flight());
                match landed.await {
                    Ok(Some(settled)) => drop(self.settle(settled)),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
            if self.writes.is_broken() || self.writes.is_empty() {
                break;
            }
            self.send_batch();
        }
        // Those in a batch whose outcome never came may have been written: not `Moved`, which
        // promises nothing was, but a 503 after which the client retries with its
        // idempotency key. Those never sent were not written.
        let abandoned = self.writes.abandon();
        for owed in abandoned.in_doubt {
            owed.refuse(TicketError::Unavailable("ticket is restarting".into()));
        }
        for owed in abandoned.unsent {
            owed.refuse(self.durability.not_carried_out());
        }
    }
}
