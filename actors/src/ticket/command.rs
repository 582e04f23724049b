//! What can be asked of a ticket: one [`Command`] per operation, and its [`Answer`]. The same
//! two types serve one node and several: a command goes into the ticket's actor as
//! [`TicketMsg::Run`](super::TicketMsg::Run), and with several nodes it travels to the node
//! that owns the ticket as JSON, its answer coming back the same way.
//!
//! Adding an operation: a variant here (and an answer, unless an existing one fits), its handler
//! in `commands.rs`, and, if it writes something new, what that write changes and tells in
//! `change.rs`.

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};

use super::change::TicketChange;
use super::subscribe::Snapshot;
use super::{actor, TicketError, TicketKey, TicketMsg, Tickets};
use crate::domain::{
    AgentName, IdempotencyKey, Message, MessageAgent, MessageBody, Note, Participant, Ticket,
};
use crate::message_id::MessageId;

/// An operation on a ticket. On the wire between nodes: `{"op": "<name>", ...fields}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Post a message; answered once it is durable ([`Answer::Message`]). With an idempotency
    /// key seen before for the same message, the original message is the answer.
    Post {
        author: Participant,
        content: MessageBody,
        idempotency_key: Option<IdempotencyKey>,
        /// The member posting as an agent; absent for anyone else (and from older nodes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<MessageAgent>,
    },
    /// Mark every message so far read by `reader` ([`Answer::Read`]: the id read up to, `None`
    /// on an empty ticket).
    MarkRead { reader: Participant },
    /// Change the ticket's own fields, all of them as one change ([`Answer::Ticket`]: the
    /// ticket after it). On the wire: `{"op": "change", "status"?: ..., "assignee"?: name |
    /// null}`, where a missing field is left as it is and a null assignee means nobody.
    Change(TicketChange),
    /// Add an agent's internal note ([`Answer::Note`]); told to the agents' feed only, never to
    /// the visitor.
    AddNote {
        author: AgentName,
        content: MessageBody,
    },
    /// The visitor's satisfaction rating ([`Answer::Ticket`]: the ticket after it), taken once
    /// and only on a resolved or closed ticket; `rated_at` is the ticket's to set.
    Rate {
        score: u8,
        comment: crate::domain::SatisfactionComment,
    },
    /// The address the visitor wants replies emailed to, from the widget's "get replies by
    /// email" field; `None` removes it ([`Answer::Ticket`]: the ticket after it). Stored on
    /// the ticket's visitor marked unverified; refused when the ticket's verified contact has
    /// an address.
    SetVisitorEmail { email: Option<crate::domain::Email> },
    /// Where a new subscriber, on any node, starts ([`Answer::Replay`]).
    Position,
}

impl Command {
    /// The command's name, as a metrics label.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Post { .. } => "post",
            Command::MarkRead { .. } => "mark_read",
            Command::Change(_) => "change",
            Command::AddNote { .. } => "add_note",
            Command::Rate { .. } => "rate",
            Command::SetVisitorEmail { .. } => "set_visitor_email",
            Command::Position => "position",
        }
    }
}

/// A ticket's answer to a [`Command`]. On the wire: `{"answer": "<kind>", "value": ...}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", content = "value", rename_all = "snake_case")]
pub enum Answer {
    Message(Message),
    Read(Option<MessageId>),
    /// Boxed: a ticket is several times the size of the other answers.
    Ticket(Box<Ticket>),
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
            Answer::Ticket(t) => Ok(*t),
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
        TicketError::Internal(format!("a ticket answered with the wrong kind: {self:?}"))
    }
}

/// How a command reaches the ticket's actor.
impl Tickets {
    /// Carries out a command on the ticket: here, or with several nodes on the node that owns
    /// it. Who acts comes from the request ([`crate::audit::acting`]) and goes with the
    /// command, so the change's batch holds its audit record.
    pub async fn run(&self, key: &TicketKey, cmd: Command) -> Result<Answer, TicketError> {
        let by = crate::audit::acting_now();
        match &self.deps.cluster {
            None => {
                self.call(key, |reply| TicketMsg::Run {
                    cmd: cmd.clone(),
                    by: by.clone().map(Box::new),
                    reply,
                })
                .await
            }
            Some(cluster) => self.run_on_owner(cluster, key, cmd, by).await,
        }
    }

    /// Sends a request to the ticket's actor here and waits for the answer; with several
    /// nodes, [`TicketError::Elsewhere`] when another node owns the ticket. What the cluster
    /// adapter calls for the commands other nodes forward.
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
        let activate = || actor::activate(&self.deps, key);
        self.deps.registry.call(key, timeout, activate, make).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TicketStatus;
    use bytes::Bytes;

    #[test]
    fn commands_and_answers_cross_nodes_unchanged() {
        let command = Command::Post {
            author: Participant::Admin,
            content: MessageBody::parse("hello").unwrap(),
            idempotency_key: Some(IdempotencyKey::parse("k-1").unwrap()),
            agent: Some(MessageAgent {
                id: uuid::Uuid::from_u128(7),
                name: "Dana".into(),
                avatar_url: None,
            }),
        };
        let wire = serde_json::to_string(&command).unwrap();
        let back: Command = serde_json::from_str(&wire).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), wire);

        // A node from before members sends a post without an agent.
        let older = r#"{"op":"post","author":"admin","content":"hi","idempotency_key":null}"#;
        let older: Command = serde_json::from_str(older).unwrap();
        assert!(matches!(older, Command::Post { agent: None, .. }));

        let frame = Bytes::from_static(b"{\"type\":\"subscribed\",\"payload\":{\"slug\":\"x\"}}");
        let snapshot = Answer::Replay(Snapshot {
            subscribed: frame.clone(),
            last_message_id: None,
            cursors: Vec::new(),
            through: 7,
        });
        let wire = serde_json::to_vec(&snapshot).unwrap();
        let back: Answer = serde_json::from_slice(&wire).unwrap();
        let back = back.into_snapshot().unwrap();
        assert_eq!(
            back.subscribed, frame,
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
        let sam = AgentName::parse("Sam").unwrap();
        let mut both = TicketChange::status(TicketStatus::Pending);
        both.assignee = Some(Some(sam.clone()));
        for (change, wire) in [
            (
                both,
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
            // The member picked travels with the change, so the owning node stores it.
            (
                TicketChange::member(
                    crate::domain::MessageAgent {
                        id: uuid::Uuid::nil(),
                        name: "Sam".into(),
                        avatar_url: None,
                    },
                    sam.clone(),
                ),
                r#"{"op":"change","assignee":"Sam","assignee_member":{"id":"00000000-0000-0000-0000-000000000000","name":"Sam","avatar_url":null}}"#,
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
}
