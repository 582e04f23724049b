//! The JSON shapes clients see: tickets, messages with their `read_by`, and realtime events.
//!
//! Events are encoded here exactly once per change; every subscriber then receives the same
//! reference-counted bytes.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{Message, Participant, ReadCursor, Slug, Tags, Ticket, TicketStatus};
use crate::message_id::MessageId;

/// `2026-11-26T22:01:53.775Z`. Written digit by digit: every message view carries one, and
/// chrono's formatter goes through `fmt` machinery that cost more than the rest of the view.
/// Years outside 0000–9999 and leap seconds are left to chrono.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) || t.nanosecond() >= 1_000_000_000 {
        return t.to_rfc3339_opts(SecondsFormat::Millis, true);
    }
    let mut out = [0u8; 24];
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 3, t.nanosecond() / 1_000_000);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = sep;
    }
    out.iter().map(|&b| b as char).collect()
}

/// A message as the API shows it: who has read it is derived from the read cursors.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageView<'a> {
    pub id: MessageId,
    pub author: Participant,
    pub content: &'a str,
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: String,
    /// Who has read the message: every reader whose read cursor is at or past it.
    pub read_by: Vec<Participant>,
    /// The member who wrote an agent's message; absent on the visitor's and the assistant's
    /// messages, and on those the project's admin key posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<&'a crate::domain::MessageAgent>,
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
            agent: message.agent.as_ref(),
        }
    }
}

/// A ticket's own fields without its messages: for listings and status changes.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketSummary<'a> {
    pub id: uuid::Uuid,
    pub slug: &'a Slug,
    #[schema(value_type = crate::domain::ProjectId)]
    pub project_id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub status: TicketStatus,
    pub source: crate::domain::TicketSource,
    /// The agent the ticket is assigned to; null when nobody is.
    #[schema(required = true)]
    pub assignee: Option<&'a str>,
    /// The member the ticket is assigned to; null when nobody is, when the assignee was typed
    /// as free text, and when the member has been deactivated (the ticket is then unassigned).
    #[schema(required = true)]
    pub assignee_member: Option<&'a crate::domain::MessageAgent>,
    /// The agents' labels on the ticket; empty when it has none.
    pub tags: &'a Tags,
    /// Who the visitor is, when whoever opened the ticket said; null when nobody did.
    #[schema(required = true)]
    pub visitor: Option<&'a crate::domain::VisitorContact>,
    /// The visitor's satisfaction rating; null until they give one.
    #[schema(required = true)]
    pub satisfaction: Option<&'a crate::domain::Satisfaction>,
    /// The verified contact who opened the ticket, as they were then; null when it was opened
    /// without a verified session.
    #[schema(required = true)]
    pub contact: Option<&'a crate::contact::TicketContact>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// The ticket's version: it moves forward with every change.
    #[schema(value_type = String, format = DateTime)]
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
            assignee: ticket.assignee.as_ref().map(|a| a.as_str()),
            assignee_member: ticket.assignee_member.as_ref(),
            tags: &ticket.tags,
            visitor: ticket.visitor.as_ref(),
            satisfaction: ticket.satisfaction.as_deref(),
            contact: ticket.contact.as_deref(),
            created_at: rfc3339(ticket.created_at),
            updated_at: rfc3339(ticket.updated_at),
        }
    }
}

/// A ticket with (a page of) its messages, as `GET /v1/tickets/{project}/{slug}` answers.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Ticket)]
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

/// The first event on a ticket's socket: where the ticket stands.
#[derive(Serialize, ToSchema)]
pub struct SubscribedPayload<'a> {
    #[schema(value_type = crate::domain::ProjectId)]
    pub project_id: &'a str,
    pub slug: &'a Slug,
    pub status: TicketStatus,
    /// The newest message; null when the ticket has none.
    #[schema(required = true)]
    pub last_message_id: Option<MessageId>,
}

/// A ticket's status changed.
#[derive(Serialize, ToSchema)]
pub struct StatusChangePayload {
    pub status: TicketStatus,
    pub previous: TicketStatus,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

/// A reader marked the ticket's messages read, up to `last_read_message_id`.
#[derive(Serialize, ToSchema)]
pub struct ReadReceiptPayload {
    pub reader: Participant,
    pub last_read_message_id: MessageId,
    #[schema(value_type = String, format = DateTime)]
    pub read_at: String,
}

/// A ticket's assignee changed (to nobody, when `assignee` is null).
#[derive(Debug, Serialize, ToSchema)]
pub struct AssignedPayload<'a> {
    #[schema(required = true)]
    pub assignee: Option<&'a str>,
    #[schema(required = true)]
    pub previous: Option<&'a str>,
    /// The member now assigned; null for nobody or a free-text assignee.
    #[schema(required = true)]
    pub assignee_member: Option<&'a crate::domain::MessageAgent>,
    /// The member assigned before; null for nobody or a free-text assignee.
    #[schema(required = true)]
    pub previous_member: Option<&'a crate::domain::MessageAgent>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

/// A ticket's tags changed (a `ticket_update`): the whole set after the change, and before.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagsPayload<'a> {
    pub tags: &'a Tags,
    pub previous: &'a Tags,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

/// The visitor rated the ticket (a `ticket_update`): the rating, once given.
#[derive(Debug, Serialize, ToSchema)]
pub struct RatedPayload<'a> {
    pub satisfaction: &'a crate::domain::Satisfaction,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

/// An agent's internal note, as agents see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Note)]
pub struct NoteView<'a> {
    pub id: MessageId,
    pub author: &'a str,
    pub content: &'a str,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
}

impl<'a> NoteView<'a> {
    pub fn new(note: &'a crate::domain::Note) -> Self {
        Self {
            id: note.id,
            author: note.author.as_str(),
            content: note.content.as_str(),
            created_at: rfc3339(note.created_at),
        }
    }
}

/// One entry of a ticket's timeline: who changed its status, assignee or tags, and when.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TimelineEntry)]
pub struct ActivityView<'a> {
    /// Ordered with the ticket's message and note ids.
    pub id: MessageId,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    pub actor: ActorView<'a>,
    /// Which field changed.
    pub field: ActivityField,
    /// The status or assignee before: null for tags, and for a ticket that was unassigned.
    #[schema(required = true)]
    pub from: Option<&'a str>,
    /// The status or assignee after: null for tags, and for a ticket now unassigned.
    #[schema(required = true)]
    pub to: Option<&'a str>,
    /// The tags added; empty unless `field` is `tags`.
    pub added: Vec<&'a str>,
    /// The tags removed; empty unless `field` is `tags`.
    pub removed: Vec<&'a str>,
}

/// A ticket field a timeline entry records a change of.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityField {
    Status,
    Assignee,
    Tags,
}

/// Who changed a ticket.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TimelineActor)]
pub struct ActorView<'a> {
    pub kind: ActorKind,
    /// What the thread shows: the member's name, "admin key" or "visitor".
    pub name: &'a str,
    /// The member, as they were when they acted; null for the admin key and the visitor.
    #[schema(required = true)]
    pub member: Option<&'a crate::domain::MessageAgent>,
}

/// Whether a member, the project's admin key or the visitor acted.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Member,
    AdminKey,
    Visitor,
}

impl<'a> ActivityView<'a> {
    pub fn new(entry: &'a crate::domain::Activity) -> Self {
        use crate::domain::{ActivityChange, Actor};
        let actor = match &entry.actor {
            Actor::Member { member } => ActorView {
                kind: ActorKind::Member,
                name: &member.name,
                member: Some(member),
            },
            Actor::AdminKey => ActorView {
                kind: ActorKind::AdminKey,
                name: "admin key",
                member: None,
            },
            Actor::Visitor => ActorView {
                kind: ActorKind::Visitor,
                name: "visitor",
                member: None,
            },
        };
        let (field, from, to, added, removed) = match &entry.change {
            ActivityChange::Status { from, to } => (
                ActivityField::Status,
                Some(from.as_str()),
                Some(to.as_str()),
                Vec::new(),
                Vec::new(),
            ),
            ActivityChange::Assignee { from, to } => (
                ActivityField::Assignee,
                from.as_deref(),
                to.as_deref(),
                Vec::new(),
                Vec::new(),
            ),
            ActivityChange::Tags { added, removed } => (
                ActivityField::Tags,
                None,
                None,
                added.iter().map(String::as_str).collect(),
                removed.iter().map(String::as_str).collect(),
            ),
        };
        Self {
            id: entry.id,
            created_at: rfc3339(entry.created_at),
            actor,
            field,
            from,
            to,
            added,
            removed,
        }
    }
}

/// Someone is typing on the ticket; sent as it happens, never stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct TypingPayload {
    pub author: Participant,
}

/// The ticket was erased: the last event of its sockets, which the server then closes, and on
/// the project feed the word to drop it from the inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketDeletedPayload<'a> {
    #[schema(value_type = crate::domain::Slug)]
    pub slug: &'a Slug,
}

/// Why the server is about to close the socket.
#[derive(Serialize, ToSchema)]
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
    fn timestamps_are_written_as_chrono_writes_them() {
        use chrono::{SecondsFormat, TimeZone, Utc};
        let chrono = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        // A spread of instants from year 0 to 9999, with every millisecond value mixed in.
        let first = Utc
            .with_ymd_and_hms(0, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        let last = Utc
            .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
            .unwrap()
            .timestamp_millis()
            + 999;
        let step = (last - first) / 200_003;
        let mut ms = first;
        while ms <= last {
            let t = Utc.timestamp_millis_opt(ms).unwrap();
            assert_eq!(super::rfc3339(t), chrono(t));
            ms += step;
        }
        for t in [
            Utc.timestamp_millis_opt(last).unwrap(),
            Utc.timestamp_millis_opt(first).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 12, 31, 23, 59, 59).unwrap(),
            Utc.timestamp_opt(1_483_228_799, 1_500_000_000).unwrap(),
            Utc.timestamp_opt(1_700_000_000, 123_999_999).unwrap(),
        ] {
            assert_eq!(super::rfc3339(t), chrono(t));
        }
    }

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
            agent: None,
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
