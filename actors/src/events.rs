//! The JSON shapes clients see: tickets, messages with their `read_by`, and realtime events.
//!
//! Events are encoded here exactly once per change; every subscriber then receives the same
//! reference-counted bytes.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::domain::{Message, Participant, ReadCursor, Slug, Ticket, TicketStatus};
use crate::message_id::MessageId;

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A message as the API shows it: who has read it is derived from the read cursors.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView<'a> {
    pub id: MessageId,
    pub author: Participant,
    pub content: &'a str,
    pub timestamp: String,
    pub read_by: Vec<Participant>,
}

impl<'a> MessageView<'a> {
    pub fn new(message: &'a Message, cursors: &[ReadCursor]) -> Self {
        let mut read_by: Vec<Participant> = cursors
            .iter()
            .filter(|c| c.up_to >= message.id)
            .map(|c| c.reader)
            .collect();
        read_by.sort();
        Self {
            id: message.id,
            author: message.author,
            content: message.content.as_str(),
            timestamp: rfc3339(message.timestamp),
            read_by,
        }
    }
}

/// A ticket's own fields without its messages: for listings and status changes.
#[derive(Debug, Serialize)]
pub struct TicketSummary<'a> {
    pub id: uuid::Uuid,
    pub slug: &'a Slug,
    pub project_id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub status: TicketStatus,
    pub source: crate::domain::TicketSource,
    pub created_at: String,
    pub updated_at: String,
}

impl<'a> TicketSummary<'a> {
    pub fn new(ticket: &'a Ticket) -> Self {
        Self {
            id: ticket.id,
            slug: &ticket.slug,
            project_id: ticket.project_id.as_str(),
            title: ticket.title.as_str(),
            description: ticket.description.as_str(),
            status: ticket.status,
            source: ticket.source,
            created_at: rfc3339(ticket.created_at),
            updated_at: rfc3339(ticket.updated_at),
        }
    }
}

/// A ticket with (a page of) its messages, as `GET /v1/tickets/{project}/{slug}` answers.
#[derive(Debug, Serialize)]
pub struct TicketView<'a> {
    #[serde(flatten)]
    pub ticket: TicketSummary<'a>,
    pub messages: Vec<MessageView<'a>>,
    /// Set when the messages are a page and older ones exist: pass it as `before` to get them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<MessageId>,
}

impl<'a> TicketView<'a> {
    pub fn new(
        ticket: &'a Ticket,
        messages: impl IntoIterator<Item = &'a Message>,
        cursors: &[ReadCursor],
    ) -> Self {
        Self {
            ticket: TicketSummary::new(ticket),
            messages: messages
                .into_iter()
                .map(|m| MessageView::new(m, cursors))
                .collect(),
            next_before: None,
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        encode(self)
    }
}

/// Serialising our own plain structs cannot fail; should it ever, clients get `{}` and the
/// failure is logged rather than crashing an actor.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Bytes {
    match serde_json::to_vec(value) {
        Ok(v) => Bytes::from(v),
        Err(e) => {
            tracing::error!(error = %e, "serialising a response failed");
            Bytes::from_static(b"{}")
        }
    }
}

/// Wraps an encoded payload in the `{"type": ..., "payload": ...}` envelope of every WebSocket
/// event. On the project-wide feed, `ticket` names the ticket the event belongs to. Kinds and
/// slugs never need JSON escaping, so the envelope is built around the payload bytes as they are.
pub fn envelope(kind: &str, ticket: Option<&Slug>, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + kind.len() + 48);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    if let Some(slug) = ticket {
        out.extend_from_slice(b"\",\"ticket\":\"");
        out.extend_from_slice(slug.as_str().as_bytes());
    }
    out.extend_from_slice(b"\",\"payload\":");
    out.extend_from_slice(payload);
    out.push(b'}');
    Bytes::from(out)
}

pub fn event_frame<P: Serialize>(kind: &str, ticket: Option<&Slug>, payload: P) -> Bytes {
    envelope(kind, ticket, &encode(&payload))
}

#[derive(Serialize)]
pub struct SubscribedPayload<'a> {
    pub project_id: &'a str,
    pub slug: &'a Slug,
    pub status: TicketStatus,
    pub last_message_id: Option<MessageId>,
}

#[derive(Serialize)]
pub struct StatusChangePayload {
    pub status: TicketStatus,
    pub previous: TicketStatus,
    pub updated_at: String,
}

#[derive(Serialize)]
pub struct ReadReceiptPayload {
    pub reader: Participant,
    pub last_read_message_id: MessageId,
    pub read_at: String,
}

#[derive(Serialize)]
pub struct ErrorPayload<'a> {
    pub error: &'a str,
}

/// The frame sent to a subscriber that could not keep up, just before it is disconnected.
pub fn slow_consumer_frame() -> Bytes {
    event_frame(
        "error",
        None,
        ErrorPayload { error: "you were not reading events fast enough and have been disconnected; reconnect with ?since=<last message id>" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageBody;

    #[test]
    fn read_by_lists_every_reader_whose_cursor_is_at_or_past_the_message() {
        let now = Utc::now();
        let a = MessageId::next(None, now);
        let b = MessageId::next(Some(a), now);
        let msg = |id| Message {
            id,
            author: Participant::User,
            content: MessageBody::parse("hi").unwrap(),
            timestamp: now,
            idempotency_key: None,
        };
        let cursors = [
            ReadCursor {
                reader: Participant::Admin,
                up_to: b,
            },
            ReadCursor {
                reader: Participant::User,
                up_to: a,
            },
        ];
        let (ma, mb) = (msg(a), msg(b));
        assert_eq!(
            MessageView::new(&ma, &cursors).read_by,
            vec![Participant::User, Participant::Admin]
        );
        assert_eq!(
            MessageView::new(&mb, &cursors).read_by,
            vec![Participant::Admin]
        );
    }

    #[test]
    fn events_have_a_type_and_a_payload() {
        let frame = event_frame("error", None, ErrorPayload { error: "boom" });
        let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "error", "payload": {"error": "boom"}})
        );
    }
}
