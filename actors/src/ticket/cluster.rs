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

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::subscribers::{CutOff, Event, Queue, Subscribers};
use super::{TicketChange, TicketError, TicketKey};
use crate::domain::{
    AgentName, IdempotencyKey, Message, MessageBody, Note, Participant, ReadCursor, Ticket,
};
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
    async fn forward(
        &self,
        node: &str,
        key: &TicketKey,
        command: Command,
    ) -> Result<Answer, TicketError>;

    /// The ticket's log entries after position `after`, oldest first.
    async fn missed(&self, key: &TicketKey, after: u64) -> Result<Vec<Logged>, TicketError>;

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
pub struct Logged {
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

/// Encoded JSON as a raw value; what the event encoders produce is always valid JSON.
fn raw(json: Bytes) -> Box<RawValue> {
    let text = String::from_utf8(json.to_vec()).unwrap_or_else(|_| "null".into());
    RawValue::from_string(text).unwrap_or_else(|_| null())
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

fn bytes(raw: &RawValue) -> Bytes {
    Bytes::copy_from_slice(raw.get().as_bytes())
}

/// A request to a ticket, as it travels to the node that owns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    Post {
        author: Participant,
        content: MessageBody,
        idempotency_key: Option<IdempotencyKey>,
    },
    MarkRead {
        reader: Participant,
    },
    /// A new status, a new assignee, or both, as one change. On the wire:
    /// `{"op": "change", "status"?: ..., "assignee"?: name | null}`, where a missing field is
    /// left as it is and a null assignee means nobody.
    Change(TicketChange),
    AddNote {
        author: AgentName,
        content: MessageBody,
    },
    /// Where a new subscriber on any node starts: a [`Snapshot`].
    Position,
}

/// A ticket's answer to a [`Command`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", content = "value", rename_all = "snake_case")]
pub enum Answer {
    Message(Message),
    Read(Option<MessageId>),
    Ticket(Ticket),
    Note(Note),
    Replay(Snapshot),
}

impl Answer {
    pub fn into_message(self) -> Result<Message, TicketError> {
        match self {
            Answer::Message(m) => Ok(m),
            other => Err(other.mismatch()),
        }
    }

    pub fn into_read(self) -> Result<Option<MessageId>, TicketError> {
        match self {
            Answer::Read(r) => Ok(r),
            other => Err(other.mismatch()),
        }
    }

    pub fn into_ticket(self) -> Result<Ticket, TicketError> {
        match self {
            Answer::Ticket(t) => Ok(t),
            other => Err(other.mismatch()),
        }
    }

    pub fn into_note(self) -> Result<Note, TicketError> {
        match self {
            Answer::Note(n) => Ok(n),
            other => Err(other.mismatch()),
        }
    }

    pub fn into_snapshot(self) -> Result<Snapshot, TicketError> {
        match self {
            Answer::Replay(s) => Ok(s),
            other => Err(other.mismatch()),
        }
    }

    fn mismatch(&self) -> TicketError {
        TicketError::Internal(format!("a node answered with the wrong kind: {self:?}"))
    }
}

/// Where a new subscriber on any node starts: the ticket as its owner holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// The `subscribed` frame.
    pub subscribed: Box<RawValue>,
    pub last_message_id: Option<MessageId>,
    /// For the replayed messages' `read_by`.
    pub cursors: Vec<ReadCursor>,
    /// The position in the ticket's log that all this is complete up to: the store has every
    /// message up to `last_message_id`, and later events come from the log.
    pub through: u64,
}

impl Snapshot {
    pub fn new(position: super::actor::Position) -> Self {
        Snapshot {
            subscribed: raw(position.subscribed),
            last_message_id: position.last_message_id,
            cursors: position.cursors,
            through: position.through,
        }
    }

    pub fn subscribed(&self) -> Bytes {
        bytes(&self.subscribed)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ProjectId, Slug};

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
    fn commands_and_answers_cross_nodes_unchanged() {
        let command = Command::Post {
            author: Participant::Admin,
            content: MessageBody::parse("hello").unwrap(),
            idempotency_key: Some(IdempotencyKey::parse("k-1").unwrap()),
        };
        let wire = serde_json::to_string(&command).unwrap();
        let back: Command = serde_json::from_str(&wire).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), wire);

        let frame = Bytes::from_static(b"{\"type\":\"subscribed\",\"payload\":{\"slug\":\"x\"}}");
        let snapshot = Answer::Replay(Snapshot::new(super::super::Position {
            subscribed: frame.clone(),
            last_message_id: None,
            cursors: Vec::new(),
            through: 7,
        }));
        let wire = serde_json::to_vec(&snapshot).unwrap();
        let back: Answer = serde_json::from_slice(&wire).unwrap();
        let back = back.into_snapshot().unwrap();
        assert_eq!(
            back.subscribed(),
            frame,
            "a frame's bytes arrive as they were encoded"
        );
        assert_eq!(back.through, 7);
        let wrong: Answer =
            serde_json::from_slice(&serde_json::to_vec(&Answer::Read(None)).unwrap()).unwrap();
        assert!(matches!(
            wrong.into_message(),
            Err(TicketError::Internal(_))
        ));
    }

    #[test]
    fn a_change_crosses_nodes_with_its_missing_fields_and_its_null_assignee_kept_apart() {
        use crate::domain::TicketStatus;
        let sam = AgentName::parse("Sam").unwrap();
        for (change, wire) in [
            (
                TicketChange {
                    status: Some(TicketStatus::Pending),
                    assignee: Some(Some(sam.clone())),
                },
                r#"{"op":"change","status":"pending","assignee":"Sam"}"#,
            ),
            (
                TicketChange::assignee(None),
                r#"{"op":"change","assignee":null}"#,
            ),
            (
                TicketChange::status(TicketStatus::Closed),
                r#"{"op":"change","status":"closed"}"#,
            ),
        ] {
            let command = Command::Change(change.clone());
            assert_eq!(serde_json::to_string(&command).unwrap(), wire);
            let Command::Change(back) = serde_json::from_str(wire).unwrap() else {
                panic!("{wire} is not a change");
            };
            assert_eq!(back, change, "{wire}");
        }
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
