//! Several nodes serving the same tickets: the port a cluster adapter implements (who owns a
//! ticket, forwarding to the owner, the ticket's log), the commands that cross nodes, and
//! [`Watchers`], the realtime subscribers one node holds for tickets whose actor may live on
//! another node.
//!
//! The model: each ticket's actor runs on one node at a time, its owner, which holds the
//! ticket's lease. Every batch of the ticket's writes is appended to the ticket's log first,
//! on condition that nothing was appended since the owner last looked, and then written to the
//! store; callers are answered once both are durable. Every node reads every log entry and
//! hands its events to its own subscribers and project feeds, so a socket sees the same events
//! in the same order whichever node it is connected to. The lease only keeps two nodes from
//! competing for a ticket: the conditional append is what keeps a ticket's history from
//! forking when a node that lost its lease still writes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::subscribe::raw;
use super::subscribers::{CutOff, Event, Queue, Subscribers};
use super::{Answer, Command, TicketError, TicketKey, Tickets};
use crate::message_id::MessageId;
use crate::store::{StoreError, TicketWrite};

/// Where a ticket's actor runs.
pub enum Placement {
    /// On this node, which now holds the ticket's lease; the store has every entry of the
    /// ticket's log.
    Here(Arc<dyn Claim>),
    /// On the node with this name.
    There(String),
}

/// What a cluster adapter does for the tickets.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// This node's name, as other nodes forward to it.
    fn node(&self) -> &str;

    /// Takes the ticket's lease for this node and brings the store up to the ticket's log, or
    /// names the node that holds the lease.
    async fn place(&self, key: &TicketKey) -> Result<Placement, TicketError>;

    /// Carries out `command` on the node that owns the ticket. Fails with
    /// [`TicketError::Elsewhere`] when that node does not own it (any more), and with
    /// [`TicketError::Unreachable`] when the node is not there to take the request, so the
    /// command was certainly not carried out.
    /// `by` is who acts ([`crate::audit::AuditBy`]), for the change's audit record.
    async fn forward(
        &self,
        node: &str,
        key: &TicketKey,
        command: Command,
        by: Option<crate::audit::AuditBy>,
    ) -> Result<Answer, TicketError>;

    /// The ticket's log entries after position `after`, oldest first.
    async fn missed(&self, key: &TicketKey, after: u64) -> Result<Vec<LogEntry>, TicketError>;

    /// Tells every node's watchers of the ticket (and its project's feeds) an event that is
    /// never stored: someone typing, a ticket opened.
    fn broadcast(&self, key: &TicketKey, event: LogEvent);
}

/// One node's hold on one ticket, from [`Cluster::place`]. Dropping the last handle gives the
/// lease back.
#[async_trait]
pub trait Claim: Send + Sync + 'static {
    /// Appends a batch right after the last entry this claim knows of. Refused with
    /// [`StoreError::Conflict`] when another node appended since: this node no longer owns the
    /// ticket. Returns the entry's position.
    async fn append(&self, batch: &LogBatch) -> Result<u64, StoreError>;

    /// Position of the last entry appended through this claim, or found when it was taken.
    fn last(&self) -> u64;

    /// Whether the lease was lost: another node may own the ticket now.
    fn lost(&self) -> bool;

    /// Whether another node is known to own the ticket now (its lease was taken, or the log
    /// refused this node's write), rather than only may: then this node's actor stops.
    fn taken(&self) -> bool {
        self.lost()
    }
}

/// One entry of a ticket's log: a batch of writes and the events it tells subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogBatch {
    pub writes: Vec<TicketWrite>,
    pub events: Vec<LogEvent>,
}

/// An entry read back from a ticket's log, with its position.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub seq: u64,
    pub events: Vec<LogEvent>,
}

/// One realtime event, as the log carries it: each node wraps the payload for its ticket
/// subscribers and its project feeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEvent {
    pub kind: String,
    pub payload: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<MessageId>,
    /// For the agents' project feeds only (internal notes, ticket announcements), never for
    /// the ticket's subscribers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agents_only: bool,
}

impl LogEvent {
    pub fn new(kind: &str, payload: Bytes, message_id: Option<MessageId>) -> LogEvent {
        LogEvent {
            kind: kind.to_owned(),
            payload: raw(payload),
            message_id,
            agents_only: false,
        }
    }

    pub fn for_agents(kind: &str, payload: Bytes) -> LogEvent {
        LogEvent {
            agents_only: true,
            ..LogEvent::new(kind, payload, None)
        }
    }

    pub fn payload(&self) -> &[u8] {
        self.payload.get().as_bytes()
    }
}

/// The realtime subscribers this node holds, per ticket, wherever the ticket's actor runs. Fed
/// from the ticket log by the cluster adapter. Holds an entry only while a ticket has
/// subscribers here.
#[derive(Clone)]
pub struct Watchers {
    tickets: Arc<crate::FastMap<TicketKey, Subscribers>>,
    queue: usize,
}

impl Watchers {
    pub fn new(queue: usize) -> Self {
        Watchers {
            tickets: Arc::default(),
            queue,
        }
    }

    /// A new subscriber of the ticket: its queue of events, and the word it gets if it is cut
    /// off for falling behind.
    pub fn add(&self, key: &TicketKey) -> (Queue, Arc<CutOff>) {
        let mut subscribers = self
            .tickets
            .entry(key.clone())
            .or_insert_with(|| Subscribers::new(self.queue));
        subscribers.add()
    }

    /// Offers an event to the ticket's subscribers here; returns how many were cut off.
    pub fn offer(&self, key: &TicketKey, event: Event) -> usize {
        let Some(mut subscribers) = self.tickets.get_mut(key) else {
            return 0;
        };
        let cut = subscribers.offer(event);
        let empty = subscribers.is_empty();
        drop(subscribers);
        if empty {
            self.tickets.remove_if(key, |_, s| s.is_empty());
        }
        cut
    }

    /// Forgets subscribers whose socket has gone, and tickets left with none.
    pub fn prune(&self) {
        self.tickets.retain(|_, s| {
            s.prune();
            !s.is_empty()
        });
    }

    /// Whether the ticket has subscribers here.
    pub fn watched(&self, key: &TicketKey) -> bool {
        self.tickets.contains_key(key)
    }

    /// Tickets with subscribers here.
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }
}

impl Tickets {
    /// Carries out a command on the node that owns the ticket: here, or forwarded there. A
    /// command that meets a ticket on its way between nodes waits for it to settle, for up to
    /// one call timeout, and is sent again only when it certainly was not carried out.
    pub(super) async fn run_on_owner(
        &self,
        cluster: &Arc<dyn Cluster>,
        key: &TicketKey,
        cmd: Command,
        by: Option<crate::audit::AuditBy>,
    ) -> Result<Answer, TicketError> {
        let deadline = tokio::time::Instant::now() + self.deps.config.call_timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let here = |reply| super::TicketMsg::Run {
                cmd: cmd.clone(),
                by: by.clone().map(Box::new),
                reply,
            };
            let outcome = match self.call(key, here).await {
                Err(TicketError::Elsewhere(node)) => {
                    let _in_flight = crate::telemetry::InFlight::new("ticket_forward");
                    cluster.forward(&node, key, cmd.clone(), by.clone()).await
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Participant, ProjectId, Slug};

    fn key(slug: &str) -> TicketKey {
        TicketKey {
            project: ProjectId::parse("p").unwrap(),
            slug: Slug::parse(slug).unwrap(),
        }
    }

    fn event(seq: u64) -> Event {
        Event {
            frame: Bytes::from(format!("{{\"n\":{seq}}}")),
            message_id: None,
            seq: Some(seq),
        }
    }

    #[tokio::test]
    async fn watchers_hear_only_their_ticket_and_leave_no_entry_behind() {
        let watchers = Watchers::new(8);
        let (mut a, _) = watchers.add(&key("blue-fox-101"));
        let (b, _) = watchers.add(&key("red-owl-202"));
        watchers.offer(&key("blue-fox-101"), event(1));
        watchers.offer(&key("green-elk-303"), event(2));
        assert_eq!(a.recv().await.unwrap().seq, Some(1));
        assert!(a.try_recv().is_err(), "another ticket's event is not heard");
        drop(b);
        watchers.offer(&key("red-owl-202"), event(3));
        assert_eq!(
            watchers.len(),
            1,
            "a ticket whose sockets closed is forgotten"
        );
        drop(a);
        watchers.prune();
        assert!(watchers.is_empty());
    }

    #[test]
    fn a_log_entry_keeps_its_writes_and_events() {
        let batch = LogBatch {
            writes: vec![TicketWrite::ReadCursor {
                reader: Participant::User,
                up_to: MessageId::next(None, chrono::Utc::now()),
            }],
            events: vec![
                LogEvent::new("ticket_update", Bytes::from_static(b"{\"a\":1}"), None),
                LogEvent::for_agents("note_added", Bytes::from_static(b"{\"b\":2}")),
            ],
        };
        let back: LogBatch = serde_json::from_slice(&serde_json::to_vec(&batch).unwrap()).unwrap();
        assert!(matches!(
            back.writes.as_slice(),
            [TicketWrite::ReadCursor {
                reader: Participant::User,
                ..
            }]
        ));
        assert_eq!(back.events[0].payload(), b"{\"a\":1}");
        assert!(!back.events[0].agents_only && back.events[1].agents_only);
    }
}
