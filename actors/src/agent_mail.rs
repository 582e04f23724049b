//! Emails to agents (issue 28): each member's notification switches per project, and the rules
//! that say who is emailed about a ticket and under which id.
//!
//! The switches are the unsubscribe: an agent turns an email off in the inbox (or with
//! `PATCH /v1/projects/{projectId}/me/notifications`), so agents' emails carry no one-click
//! `List-Unsubscribe` link. `new_ticket` is off until a member turns it on, since on a busy
//! desk every member would get every ticket; `assigned` and `visitor_reply` are on.
//!
//! An email's id is fixed by what it is about (the event, the ticket, the member and, for an
//! assignment, the ticket's version; for a visitor's reply, the newest message it quotes), so
//! writing it again after a retry or on another node names the same email, which the outbox
//! then keeps once.
//!
//! A visitor's reply is emailed to the ticket's assignee only while they are away from the
//! inbox, once per burst of the visitor's messages: [`away_quote`] says which messages the
//! email carries and how much of them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Message, Participant, ProjectId, Slug, Ticket};
use crate::member::{Member, MemberState};
use crate::message_id::MessageId;

/// One member's email switches in one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationPrefs {
    pub project_id: ProjectId,
    pub member_id: Uuid,
    /// An email for every new ticket of the project.
    pub new_ticket: bool,
    /// An email when someone else assigns a ticket to the member.
    pub assigned: bool,
    /// An email when the visitor of a ticket assigned to the member writes while the member
    /// is away from the inbox.
    pub visitor_reply: bool,
    pub updated_at: DateTime<Utc>,
}

impl NotificationPrefs {
    /// The switches of a member who never changed them.
    pub fn defaults(project: &ProjectId, member: Uuid, now: DateTime<Utc>) -> Self {
        NotificationPrefs {
            project_id: project.clone(),
            member_id: member,
            new_ticket: false,
            assigned: true,
            visitor_reply: true,
            updated_at: now,
        }
    }
}

/// What an email to an agent is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    NewTicket,
    Assigned,
    VisitorReply,
}

impl Event {
    fn tag(self) -> &'static str {
        match self {
            Event::NewTicket => "new",
            Event::Assigned => "assigned",
            Event::VisitorReply => "visitor",
        }
    }

    /// Whether the member's switches let this email through.
    pub fn wanted(self, prefs: &NotificationPrefs) -> bool {
        match self {
            Event::NewTicket => prefs.new_ticket,
            Event::Assigned => prefs.assigned,
            Event::VisitorReply => prefs.visitor_reply,
        }
    }
}

/// The members to email about `event`: active, with an address, switched on (their stored
/// switches, else the defaults), and never `except` (who caused it).
pub fn recipients<'m>(
    event: Event,
    members: &'m [Member],
    prefs: &[NotificationPrefs],
    except: Option<Uuid>,
    now: DateTime<Utc>,
) -> Vec<&'m Member> {
    members
        .iter()
        .filter(|m| m.state == MemberState::Active && !m.email.is_empty())
        .filter(|m| Some(m.id) != except)
        .filter(|m| {
            let stored = prefs.iter().find(|p| p.member_id == m.id);
            let prefs = stored
                .cloned()
                .unwrap_or_else(|| NotificationPrefs::defaults(&m.project_id, m.id, now));
            event.wanted(&prefs)
        })
        .collect()
}

/// The outbox id of an email about `event` on a ticket to `member`; `version` tells apart two
/// emails of one kind (an assignment's ticket version, a burst's due time).
pub fn email_id(
    event: Event,
    project: &ProjectId,
    slug: &Slug,
    member: Uuid,
    version: i64,
) -> String {
    let key = format!(
        "agent\u{0}{}\u{0}{}\u{0}{}\u{0}{member}\u{0}{version}",
        event.tag(),
        project.as_str(),
        slug.as_str(),
    );
    crate::visitor_mail::hashed_id(&key)
}

/// The `Message-ID` local part every agent email about a ticket to a member follows (its
/// `In-Reply-To` and `References`): the new-ticket email's, so a member's emails about one
/// ticket thread together, under the first when it was sent.
pub fn thread_root(project: &ProjectId, slug: &Slug, member: Uuid) -> String {
    email_id(Event::NewTicket, project, slug, member, 0)
}

/// Told of every ticket opened, whoever opened it (the API, a visitor, the assistant's
/// hand-off), so the members who asked for new tickets hear of each one the same way.
#[async_trait::async_trait]
pub trait TicketOpened: Send + Sync {
    /// `by` is the member who opened it, who is not told of their own ticket.
    async fn ticket_opened(&self, ticket: &Ticket, by: Option<Uuid>);
}

/// The visitor's messages one away email quotes at most: the newest ones, so a long burst
/// still makes a short email.
pub const QUOTED_MESSAGES: usize = 10;
/// Characters of one quoted message at most.
pub const QUOTED_CHARS: usize = 1_000;

/// What an email to an away assignee quotes: the visitor's messages of the burst (from
/// `first` on) that the agents have not read (after `agents_read`), the newest
/// [`QUOTED_MESSAGES`] of them each clipped to [`QUOTED_CHARS`], oldest first, with a line
/// for those left out; and the newest message's id, which names the email. `None` when no
/// such message is left: someone read them, or they were erased.
pub fn away_quote(
    messages: &[Message],
    first: MessageId,
    agents_read: Option<MessageId>,
) -> Option<(String, MessageId)> {
    let unread: Vec<&Message> = messages
        .iter()
        .filter(|m| m.author == Participant::User && m.id >= first)
        .filter(|m| agents_read.is_none_or(|r| m.id > r))
        .collect();
    let newest = unread.last()?.id;
    let left_out = unread.len().saturating_sub(QUOTED_MESSAGES);
    let mut parts: Vec<String> = Vec::new();
    if left_out > 0 {
        parts.push(format!("({left_out} earlier messages not shown)"));
    }
    for m in &unread[left_out..] {
        let text = m.content.as_str();
        match text.char_indices().nth(QUOTED_CHARS) {
            Some((cut, _)) => parts.push(format!("{}…", &text[..cut])),
            None => parts.push(text.to_owned()),
        }
    }
    Some((parts.join("\n\n"), newest))
}

/// The version that names an away email: its newest quoted message's, unique in the ticket.
pub fn away_version(newest: MessageId) -> i64 {
    newest.ticks() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageBody;
    use crate::member::Role;

    fn msg(prev: Option<MessageId>, author: Participant, text: &str) -> Message {
        let now = Utc::now();
        Message {
            id: MessageId::next(prev, now),
            author,
            content: MessageBody::parse(text).unwrap(),
            timestamp: now,
            idempotency_key: None,
            agent: None,
        }
    }

    #[test]
    fn an_away_email_quotes_the_bursts_unread_visitor_messages_bounded() {
        let a = msg(None, Participant::User, "before the burst");
        let b = msg(Some(a.id), Participant::User, "first <of> burst");
        let c = msg(Some(b.id), Participant::Admin, "an agent's answer");
        let d = msg(Some(c.id), Participant::User, "second");
        let all = vec![a.clone(), b.clone(), c.clone(), d.clone()];
        let (quote, newest) = away_quote(&all, b.id, None).unwrap();
        assert_eq!(quote, "first <of> burst\n\nsecond");
        assert_eq!(newest, d.id);
        // What the agents read is not quoted; all of it read, nothing is sent.
        assert_eq!(away_quote(&all, b.id, Some(b.id)).unwrap().0, "second");
        assert_eq!(away_quote(&all, b.id, Some(d.id)), None);
        // A long burst: the newest ten, each clipped, and a line for the rest.
        let mut many = Vec::new();
        let mut prev = None;
        for i in 0..12 {
            let text = if i == 11 {
                "x".repeat(QUOTED_CHARS + 5)
            } else {
                format!("m{i}")
            };
            let m = msg(prev, Participant::User, &text);
            prev = Some(m.id);
            many.push(m);
        }
        let (quote, newest) = away_quote(&many, many[0].id, None).unwrap();
        assert!(
            quote.starts_with("(2 earlier messages not shown)\n\nm2\n\n"),
            "{quote}"
        );
        assert!(!quote.contains("m1\n"));
        assert!(quote.ends_with(&format!("{}…", "x".repeat(QUOTED_CHARS))));
        assert_eq!(newest, many[11].id);
        assert_ne!(away_version(many[10].id), away_version(many[11].id));
    }

    fn member(project: &ProjectId, email: &str, state: MemberState) -> Member {
        let now = Utc::now();
        Member {
            id: Uuid::new_v4(),
            project_id: project.clone(),
            email: email.to_owned(),
            name: email.to_owned(),
            avatar_url: None,
            role: Role::Agent,
            state,
            password_hash: String::new(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn recipients_follow_switches_defaults_state_and_skip_the_author() {
        let p = ProjectId::parse("acme").unwrap();
        let now = Utc::now();
        let a = member(&p, "a@example.com", MemberState::Active);
        let b = member(&p, "b@example.com", MemberState::Active);
        let c = member(&p, "c@example.com", MemberState::Invited);
        let members = vec![a.clone(), b.clone(), c];
        let mut on = NotificationPrefs::defaults(&p, b.id, now);
        on.new_ticket = true;
        let ids = |v: Vec<&Member>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        // New tickets: off by default, so only b, who switched it on.
        let prefs = vec![on.clone()];
        assert_eq!(
            ids(recipients(Event::NewTicket, &members, &prefs, None, now)),
            vec![b.id]
        );
        assert!(recipients(Event::NewTicket, &members, &prefs, Some(b.id), now).is_empty());
        // Assignment: on by default; b's stored switches keep it on, a's defaults too.
        assert_eq!(
            ids(recipients(Event::Assigned, &members, &prefs, None, now)),
            vec![a.id, b.id]
        );
        let mut off = on;
        off.assigned = false;
        assert_eq!(
            ids(recipients(Event::Assigned, &members, &[off], None, now)),
            vec![a.id]
        );
    }

    #[test]
    fn an_email_id_is_fixed_by_what_it_is_about() {
        let p = ProjectId::parse("acme").unwrap();
        let s = Slug::parse("brave-lynx-001").unwrap();
        let m = Uuid::from_u128(7);
        let id = email_id(Event::Assigned, &p, &s, m, 5);
        assert!(id.starts_with("eml_") && id.len() == 36);
        assert_eq!(id, email_id(Event::Assigned, &p, &s, m, 5));
        assert_ne!(id, email_id(Event::Assigned, &p, &s, m, 6));
        assert_ne!(id, email_id(Event::NewTicket, &p, &s, m, 5));
        assert_ne!(id, email_id(Event::Assigned, &p, &s, Uuid::from_u128(8), 5));
        assert_eq!(
            thread_root(&p, &s, m),
            email_id(Event::NewTicket, &p, &s, m, 0)
        );
    }
}
