//! The emails owed to a ticket's visitor after agents reply (issue 28): one record per ticket
//! that says whether an email waits and when it is due, which replies earlier emails already
//! carried, the first email's id (later ones thread under it), and whether the visitor
//! unsubscribed.
//!
//! The rules are pure functions here; the server's visitor mailer (`src/visitor_mail.rs`) reads
//! the record, applies one, and writes the result. A burst starts with the first agent reply
//! while no email waits and ends when the email is due: replies in between join it. A read
//! cancels it. When it comes due, the email and the record that no longer waits are one
//! durable write, and the email's id is fixed by the burst (ticket and due time), so a
//! composition repeated after a crash or on a second node writes the same outbox email again
//! instead of a second one.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Message, Participant, ProjectId, Slug};
use crate::message_id::MessageId;

/// One ticket's email state towards its visitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorMail {
    pub project_id: ProjectId,
    pub slug: Slug,
    /// When the email of the current burst is due; `None` while none waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// The newest agent reply an email carried: later emails start after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_through: Option<MessageId>,
    /// The outbox id of the first email sent about the ticket: later ones answer it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_email: Option<String>,
    /// The visitor asked for no more email about this ticket; final.
    #[serde(default)]
    pub unsubscribed: bool,
    /// The language the visitor's widget last read the ticket in (`en`, `de`, `ar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl VisitorMail {
    fn fresh(project: &ProjectId, slug: &Slug, now: DateTime<Utc>) -> VisitorMail {
        VisitorMail {
            project_id: project.clone(),
            slug: slug.clone(),
            due_at: None,
            sent_through: None,
            first_email: None,
            unsubscribed: false,
            lang: None,
            updated_at: now,
        }
    }
}

/// What to write after an agent's public reply: a burst starts, due `wait` from now. `None`
/// when nothing changes: an email already waits (the reply joins it) or the visitor
/// unsubscribed.
pub fn replied(
    current: Option<VisitorMail>,
    project: &ProjectId,
    slug: &Slug,
    now: DateTime<Utc>,
    wait: TimeDelta,
) -> Option<VisitorMail> {
    let mut mail = current.unwrap_or_else(|| VisitorMail::fresh(project, slug, now));
    if mail.unsubscribed || mail.due_at.is_some() {
        return None;
    }
    mail.due_at = Some(now + wait);
    mail.updated_at = now;
    Some(mail)
}

/// What to write when the visitor read the ticket (or opened its socket), in `lang` when
/// their request said: the waiting email is cancelled, and later ones speak their language.
/// `None` when nothing changes.
pub fn read(
    current: Option<VisitorMail>,
    project: &ProjectId,
    slug: &Slug,
    lang: Option<&str>,
    now: DateTime<Utc>,
) -> Option<VisitorMail> {
    let waits = current.as_ref().is_some_and(|m| m.due_at.is_some());
    let new_lang = lang.filter(|l| {
        current
            .as_ref()
            .is_none_or(|m| m.lang.as_deref() != Some(*l))
    });
    if !waits && new_lang.is_none() {
        return None;
    }
    let mut mail = current.unwrap_or_else(|| VisitorMail::fresh(project, slug, now));
    mail.due_at = None;
    if let Some(l) = new_lang {
        mail.lang = Some(l.to_owned());
    }
    mail.updated_at = now;
    Some(mail)
}

/// What to write when the visitor unsubscribes: nothing waits, nothing will.
pub fn unsubscribed(
    current: Option<VisitorMail>,
    project: &ProjectId,
    slug: &Slug,
    now: DateTime<Utc>,
) -> VisitorMail {
    let mut mail = current.unwrap_or_else(|| VisitorMail::fresh(project, slug, now));
    mail.unsubscribed = true;
    mail.due_at = None;
    mail.updated_at = now;
    mail
}

/// The agents' replies the visitor has not read and no email carried yet, oldest first.
/// Internal notes are not messages, so they never appear here.
pub fn unread_replies(
    messages: &[Message],
    visitor_read: Option<MessageId>,
    sent_through: Option<MessageId>,
) -> Vec<&Message> {
    let after = visitor_read.max(sent_through);
    messages
        .iter()
        .filter(|m| m.author == Participant::Admin && after.is_none_or(|a| m.id > a))
        .collect()
}

/// The record once the burst's email is written: nothing waits, and the next burst starts
/// after `through`.
pub fn sent(
    mut mail: VisitorMail,
    email_id: &str,
    through: MessageId,
    now: DateTime<Utc>,
) -> VisitorMail {
    mail.due_at = None;
    mail.sent_through = Some(through);
    mail.first_email.get_or_insert_with(|| email_id.to_owned());
    mail.updated_at = now;
    mail
}

/// The outbox id of the email of the burst due at `due_at`: the same wherever and however often
/// it is composed.
pub fn email_id(project: &ProjectId, slug: &Slug, due_at: DateTime<Utc>) -> String {
    let key = format!(
        "{}\u{0}{}\u{0}{}",
        project.as_str(),
        slug.as_str(),
        due_at.timestamp_millis()
    );
    hashed_id(&key)
}

/// An outbox id fixed by `key`: the same on every node and build.
pub fn hashed_id(key: &str) -> String {
    format!(
        "eml_{:016x}{:016x}",
        fnv1a(0xcbf2_9ce4_8422_2325, key.as_bytes()),
        fnv1a(0x8422_2325_cbf2_9ce4, key.as_bytes())
    )
}

/// FNV-1a: stable across builds and platforms, unlike the standard library's hasher.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageBody;

    fn msg(prev: Option<MessageId>, author: Participant, now: DateTime<Utc>) -> Message {
        Message {
            id: MessageId::next(prev, now),
            author,
            content: MessageBody::parse("hi").unwrap(),
            timestamp: now,
            idempotency_key: None,
            agent: None,
        }
    }

    #[test]
    fn a_burst_starts_once_joins_later_replies_and_a_read_cancels_it() {
        let p = ProjectId::parse("acme").unwrap();
        let s = Slug::parse("brave-lynx-001").unwrap();
        let now = Utc::now();
        let wait = TimeDelta::minutes(2);
        let first = replied(None, &p, &s, now, wait).unwrap();
        assert_eq!(first.due_at, Some(now + wait));
        // A second reply while it waits changes nothing: same email, same due time.
        assert_eq!(
            replied(Some(first.clone()), &p, &s, now + wait / 2, wait),
            None
        );
        let cancelled = read(Some(first.clone()), &p, &s, None, now).unwrap();
        assert_eq!(cancelled.due_at, None);
        assert_eq!(read(Some(cancelled.clone()), &p, &s, None, now), None);
        assert_eq!(read(None, &p, &s, None, now), None);
        // A language is kept once, and changes only when the visitor's does.
        let de = read(Some(cancelled), &p, &s, Some("de"), now).unwrap();
        assert_eq!(de.lang.as_deref(), Some("de"));
        assert_eq!(read(Some(de), &p, &s, Some("de"), now), None);
        // After an email, the next reply starts a new burst that threads under the first.
        let done = sent(first, "eml_a", MessageId::next(None, now), now);
        let again = replied(Some(done), &p, &s, now, wait).unwrap();
        assert_eq!(again.first_email.as_deref(), Some("eml_a"));
        let done = sent(again, "eml_b", MessageId::next(None, now), now);
        assert_eq!(done.first_email.as_deref(), Some("eml_a"));
        // Unsubscribed: nothing waits and nothing starts.
        let off = unsubscribed(Some(done), &p, &s, now);
        assert!(off.unsubscribed && off.due_at.is_none());
        assert_eq!(replied(Some(off), &p, &s, now, wait), None);
    }

    #[test]
    fn only_agent_replies_after_what_was_read_and_sent_are_unread() {
        let now = Utc::now();
        let a = msg(None, Participant::Admin, now);
        let b = msg(Some(a.id), Participant::User, now);
        let c = msg(Some(b.id), Participant::Admin, now);
        let d = msg(Some(c.id), Participant::Admin, now);
        let all = vec![a.clone(), b.clone(), c.clone(), d.clone()];
        let ids = |v: Vec<&Message>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(
            ids(unread_replies(&all, None, None)),
            vec![a.id, c.id, d.id]
        );
        assert_eq!(
            ids(unread_replies(&all, Some(b.id), None)),
            vec![c.id, d.id]
        );
        assert_eq!(
            ids(unread_replies(&all, Some(a.id), Some(c.id))),
            vec![d.id]
        );
        assert!(unread_replies(&all, Some(d.id), None).is_empty());
    }

    #[test]
    fn an_email_id_is_fixed_by_its_burst() {
        let p = ProjectId::parse("acme").unwrap();
        let s = Slug::parse("brave-lynx-001").unwrap();
        let at = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let id = email_id(&p, &s, at);
        assert!(id.starts_with("eml_") && id.len() == 36);
        assert_eq!(id, email_id(&p, &s, at));
        assert_ne!(id, email_id(&p, &s, at + TimeDelta::milliseconds(1)));
        let other = Slug::parse("brave-lynx-002").unwrap();
        assert_ne!(id, email_id(&p, &other, at));
    }
}
