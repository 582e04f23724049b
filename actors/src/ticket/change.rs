//! Changes to a ticket and what they tell, as pure functions with no actor around them.
//!
//! - [`TicketChange`]: what a caller asks to change on the ticket's own fields, and how it
//!   makes the ticket's next version.
//! - [`Change`]: what a durable write changes in the ticket's state (its fields, its read
//!   cursors), and the events ([`Told`]) it tells the ticket's subscribers and its project's
//!   agents, rendered against the state before it.
//!
//! The ticket's actor applies a batch's changes once the batch is durable, telling the events
//! itself on one node; with several nodes the same events are rendered before the batch is
//! sent, and travel with it in the ticket's log.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::subscribers::Event;
use crate::domain::{
    Activity, Actor, AgentName, Message, MessageAgent, Note, Participant, ReadCursor, Tags, Ticket,
    TicketStatus,
};
use crate::events::{self, event_frame, ReadReceiptPayload, StatusChangePayload};
use crate::message_id::MessageId;
use crate::store::TicketWrite;

/// A change to a ticket's own fields. Fields left `None` stay as they are; all those given
/// make one change: one version of the ticket, one set of events, one webhook delivery per
/// event.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TicketChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TicketStatus>,
    /// `None` leaves the assignee as it is; `Some(None)` assigns the ticket to nobody.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub assignee: Option<Option<AgentName>>,
    /// The member `assignee` names, when one was picked; ignored unless `assignee` names
    /// someone. Older nodes leave it out: a free-text assignee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_member: Option<MessageAgent>,
    /// `None` leaves the tags as they are; a list replaces them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Who asks, for the ticket's timeline; a change without one leaves no entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Actor>,
}

impl TicketChange {
    pub fn status(status: TicketStatus) -> Self {
        TicketChange {
            status: Some(status),
            ..TicketChange::default()
        }
    }

    pub fn assignee(assignee: Option<AgentName>) -> Self {
        TicketChange {
            assignee: Some(assignee),
            ..TicketChange::default()
        }
    }

    /// Assigns the ticket to a member, under their display name.
    pub fn member(member: MessageAgent, name: AgentName) -> Self {
        TicketChange {
            assignee: Some(Some(name)),
            assignee_member: Some(member),
            ..TicketChange::default()
        }
    }

    pub fn by(self, actor: Actor) -> Self {
        TicketChange {
            by: Some(actor),
            ..self
        }
    }

    /// Makes the change on `ticket`'s fields (its version is the caller's to set).
    pub fn apply_to(self, ticket: &mut Ticket) {
        if let Some(status) = self.status {
            ticket.status = status;
        }
        if let Some(assignee) = self.assignee {
            ticket.assignee_member = assignee.as_ref().and(self.assignee_member);
            ticket.assignee = assignee;
        }
        if let Some(tags) = self.tags {
            ticket.tags = tags;
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

/// A durable change to a ticket, as far as the ticket's state and watchers are concerned.
pub enum Change<'a> {
    Message(&'a Message),
    Read(Participant, MessageId),
    Ticket(&'a Ticket),
    Note(&'a Note),
    Activity(&'a Activity),
}

/// One event a change tells: to the ticket's subscribers and its project's feed, or (agents
/// only) to the feed alone.
#[derive(Debug)]
pub struct Told {
    pub kind: &'static str,
    pub payload: Bytes,
    pub message_id: Option<MessageId>,
    pub agents_only: bool,
}

impl Told {
    pub fn new(kind: &'static str, payload: Bytes) -> Told {
        Told {
            kind,
            payload,
            message_id: None,
            agents_only: false,
        }
    }
}

/// The ticket's state a change applies to: its fields and its read cursors.
pub struct State<'a> {
    pub ticket: &'a mut Ticket,
    pub cursors: &'a mut Vec<ReadCursor>,
}

impl<'a> Change<'a> {
    /// What `write` changes; `None` for a webhook delivery, which changes nothing the ticket
    /// shows.
    pub fn of(write: &'a TicketWrite) -> Option<Change<'a>> {
        match write {
            TicketWrite::Message(message) => Some(Change::Message(message)),
            TicketWrite::ReadCursor { reader, up_to } => Some(Change::Read(*reader, *up_to)),
            TicketWrite::Ticket(ticket) => Some(Change::Ticket(ticket)),
            TicketWrite::Note(note) => Some(Change::Note(note)),
            TicketWrite::Activity(entry) => Some(Change::Activity(entry)),
            TicketWrite::Delivery(_) | TicketWrite::Audit(_) => None,
        }
    }

    /// Applies the change to the ticket's fields and read cursors (a message is the caller's
    /// to keep); with `tell`, returns the events it tells, rendered against the state before
    /// it.
    pub fn apply(self, state: State<'_>, now: DateTime<Utc>, tell: bool) -> Vec<Told> {
        let State { ticket, cursors } = state;
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
                match tell {
                    true => ticket_told(&previous, next),
                    false => Vec::new(),
                }
            }
            // Agents only: the feed, never the ticket's subscribers (the visitor's tabs).
            Change::Note(note) if tell => vec![Told {
                agents_only: true,
                ..Told::new("note_added", events::encode(&events::NoteView::new(note)))
            }],
            Change::Note(_) => Vec::new(),
            Change::Activity(entry) if tell => vec![Told {
                agents_only: true,
                ..Told::new(
                    "timeline_entry",
                    events::encode(&events::ActivityView::new(entry)),
                )
            }],
            Change::Activity(_) => Vec::new(),
        }
    }
}

/// The events a new version of the ticket's fields tells: one per field that changed, each of
/// the whole new version.
fn ticket_told(previous: &Ticket, next: &Ticket) -> Vec<Told> {
    let mut told = Vec::new();
    let updated_at = events::rfc3339(next.updated_at);
    if previous.status != next.status {
        let payload = StatusChangePayload {
            status: next.status,
            previous: previous.status,
            updated_at: updated_at.clone(),
        };
        told.push(Told::new("status_change", events::encode(&payload)));
    }
    if !previous.same_assignee(next) {
        let payload = events::AssignedPayload {
            assignee: next.assignee.as_ref().map(AgentName::as_str),
            previous: previous.assignee.as_ref().map(AgentName::as_str),
            assignee_member: next.assignee_member.as_ref(),
            previous_member: previous.assignee_member.as_ref(),
            updated_at: updated_at.clone(),
        };
        told.push(Told::new("assigned", events::encode(&payload)));
    }
    if previous.tags != next.tags {
        let payload = events::TagsPayload {
            tags: &next.tags,
            previous: &previous.tags,
            updated_at: events::rfc3339(next.updated_at),
        };
        told.push(Told::new("ticket_update", events::encode(&payload)));
    }
    if let (None, Some(satisfaction)) = (&previous.satisfaction, &next.satisfaction) {
        let payload = events::RatedPayload {
            satisfaction,
            updated_at: events::rfc3339(next.updated_at),
        };
        told.push(Told::new("ticket_update", events::encode(&payload)));
    }
    told
}

/// Every event a batch of writes tells, rendered against `ticket` and `cursors` as the batches
/// before it left them, in order: what travels with a batch in the ticket's log.
pub fn told(
    writes: &[TicketWrite],
    ticket: &Ticket,
    cursors: &[ReadCursor],
    now: DateTime<Utc>,
) -> Vec<Told> {
    let (mut ticket, mut cursors) = (ticket.clone(), cursors.to_vec());
    writes
        .iter()
        .filter_map(Change::of)
        .flat_map(|change| {
            let state = State {
                ticket: &mut ticket,
                cursors: &mut cursors,
            };
            change.apply(state, now, true)
        })
        .collect()
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

/// A message as a replayed `new_message` event.
pub(crate) fn message_event(message: &Message, cursors: &[ReadCursor]) -> Event {
    let view = events::MessageView::new(message, cursors);
    Event {
        frame: event_frame("new_message", None, view),
        message_id: Some(message.id),
        seq: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Description, MessageBody, ProjectId, Slug, TicketSource, Title};

    fn ticket() -> Ticket {
        Ticket::opened(
            ProjectId::parse("acme").unwrap(),
            Slug::parse("brave-otter-123").unwrap(),
            Title::parse("Cannot log in").unwrap(),
            Description::parse("").unwrap(),
            TicketSource::Api,
            None,
            chrono::Utc::now(),
        )
    }

    fn message(text: &str) -> Message {
        super::super::commands::tests::message(text, None)
    }

    fn payload(told: &Told) -> serde_json::Value {
        serde_json::from_slice(&told.payload).unwrap()
    }

    #[test]
    fn a_change_of_status_and_assignee_is_one_version_that_tells_one_event_of_each() {
        let mut next = ticket();
        let previous = next.clone();
        let sam = AgentName::parse("Sam").unwrap();
        let mut change = TicketChange::status(TicketStatus::Pending);
        change.assignee = Some(Some(sam));
        change.apply_to(&mut next);
        let writes = [TicketWrite::Ticket(next.clone())];
        let told = told(&writes, &previous, &[], chrono::Utc::now());
        let kinds: Vec<&str> = told.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, ["status_change", "assigned"]);
        assert_eq!(payload(&told[0])["previous"], "open");
        assert_eq!(payload(&told[1])["assignee"], "Sam");
        assert_eq!(payload(&told[1])["previous"], serde_json::Value::Null);
        let mut unchanged = previous.clone();
        TicketChange::default().apply_to(&mut unchanged);
        assert_eq!(unchanged, previous, "a change of nothing changes nothing");
    }

    #[test]
    fn an_assignment_to_a_member_tells_the_member_and_moving_between_namesakes_is_told() {
        let previous = ticket();
        let sam = |id| MessageAgent {
            id,
            name: "Sam".into(),
            avatar_url: None,
        };
        let (first, second) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let name = AgentName::parse("Sam").unwrap();
        let mut next = previous.clone();
        TicketChange::member(sam(first), name.clone()).apply_to(&mut next);
        let writes = [TicketWrite::Ticket(next.clone())];
        let told_now = told(&writes, &previous, &[], chrono::Utc::now());
        let heard = payload(&told_now[0]);
        assert_eq!(heard["assignee"], "Sam");
        assert_eq!(heard["assignee_member"]["id"], first.to_string());
        assert_eq!(heard["previous_member"], serde_json::Value::Null);
        // Another member with the same name is another assignee.
        let mut other = next.clone();
        TicketChange::member(sam(second), name).apply_to(&mut other);
        let writes = [TicketWrite::Ticket(other.clone())];
        let told_then = told(&writes, &next, &[], chrono::Utc::now());
        assert_eq!(told_then.len(), 1);
        assert_eq!(
            payload(&told_then[0])["previous_member"]["id"],
            first.to_string()
        );
        // Nobody: the member goes with the name, even if a stray member came along.
        let mut cleared = other.clone();
        let change = TicketChange {
            assignee: Some(None),
            assignee_member: Some(sam(first)),
            ..TicketChange::default()
        };
        change.apply_to(&mut cleared);
        assert_eq!((cleared.assignee, cleared.assignee_member), (None, None));
    }

    #[test]
    fn new_tags_are_one_ticket_update_with_the_whole_set_and_the_one_before() {
        let previous = ticket();
        let mut next = previous.clone();
        let change = TicketChange {
            tags: Some(Tags::parse(&["vip", "billing"]).unwrap()),
            ..TicketChange::default()
        };
        change.apply_to(&mut next);
        let writes = [TicketWrite::Ticket(next.clone())];
        let told = told(&writes, &previous, &[], chrono::Utc::now());
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].kind, "ticket_update");
        assert_eq!(
            payload(&told[0])["tags"],
            serde_json::json!(["vip", "billing"])
        );
        assert_eq!(payload(&told[0])["previous"], serde_json::json!([]));
        let same = [TicketWrite::Ticket(next.clone())];
        assert!(
            told_of(&same, &next).is_empty(),
            "the same tags again tell nothing"
        );
    }

    fn told_of(writes: &[TicketWrite], before: &Ticket) -> Vec<Told> {
        told(writes, before, &[], chrono::Utc::now())
    }

    #[test]
    fn events_of_a_batch_are_rendered_against_the_state_each_write_leaves() {
        let base = ticket();
        let hello = message("Hello?");
        let writes = [
            TicketWrite::ReadCursor {
                reader: Participant::Admin,
                up_to: hello.id,
            },
            TicketWrite::Message(hello.clone()),
        ];
        let told = told(&writes, &base, &[], chrono::Utc::now());
        assert_eq!(told[0].kind, "ticket_update");
        assert_eq!(told[1].kind, "new_message");
        assert_eq!(told[1].message_id, Some(hello.id));
        // The cursor the batch moved before the message counts for its `read_by`.
        assert_eq!(payload(&told[1])["read_by"], serde_json::json!(["admin"]));
    }

    #[test]
    fn a_read_cursor_never_moves_back_and_a_note_is_told_to_agents_only() {
        let (mut ticket, mut cursors) = (ticket(), Vec::new());
        let (older, newer) = (message("one"), message("two"));
        let newer_id = MessageId::next(Some(older.id), chrono::Utc::now());
        let now = chrono::Utc::now();
        for up_to in [newer_id, older.id] {
            let state = State {
                ticket: &mut ticket,
                cursors: &mut cursors,
            };
            Change::Read(Participant::User, up_to).apply(state, now, false);
        }
        assert_eq!(cursors[0].up_to, newer_id);
        let note = Note {
            id: newer.id,
            author: AgentName::parse("Sam").unwrap(),
            content: MessageBody::parse("refund pending").unwrap(),
            created_at: now,
        };
        let state = State {
            ticket: &mut ticket,
            cursors: &mut cursors,
        };
        let told = Change::Note(&note).apply(state, now, true);
        assert!(told[0].agents_only);
        assert_eq!(told[0].kind, "note_added");
        let state = State {
            ticket: &mut ticket,
            cursors: &mut cursors,
        };
        assert!(
            Change::Message(&newer).apply(state, now, false).is_empty(),
            "nothing is rendered when nobody listens"
        );
    }
}
