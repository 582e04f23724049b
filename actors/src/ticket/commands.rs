//! What the ticket's actor does with each [`Command`]: checks it against the ticket, decides
//! its writes (with the webhook deliveries that announce them) and what its caller is owed, and
//! queues them. A command that writes nothing is answered at once.
//! A post with an idempotency key seen before is answered with the message it made ([`check`]).
//!
//! An agent's action (a reply, a note, a change of the ticket's fields) carries who acts
//! ([`AuditBy`]), and its writes include its audit records ([`TicketWrite::Audit`]): the record
//! goes in the same durable batch as the change, so a change cannot land without it. A record
//! names the ticket and what changed, never a message's or a note's text (the message's or
//! note's id instead).

use ractor::RpcReplyPort;

use super::actor::TicketState;
use super::change::{message_created, TicketChange};
use super::{Answer, Command, TicketError};
use crate::audit::{AuditBy, AuditRecord, AuditTarget};
use crate::domain::{Activity, ActivityChange, Actor, TicketStatus};
use crate::domain::{
    AgentName, IdempotencyKey, Message, MessageAgent, MessageBody, Note, Participant, Ticket,
};
use crate::message_id::MessageId;
use crate::store::TicketWrite;
use crate::webhook::EventType;

/// Where a command's answer goes.
pub type Reply = RpcReplyPort<Result<Answer, TicketError>>;

/// What a queued command's caller is owed once its writes are durable.
pub struct Owed {
    pub answer: Answer,
    /// `None` for a change the actor makes of its own accord (a visitor's reply reopening a
    /// resolved ticket).
    pub reply: Option<Reply>,
}

impl Owed {
    pub fn pay(self) {
        if let Some(reply) = self.reply {
            let _ = reply.send(Ok(self.answer));
        }
    }

    pub fn refuse(self, error: TicketError) {
        if let Some(reply) = self.reply {
            let _ = reply.send(Err(error));
        }
    }
}

/// What a command comes to, unless it is refused.
enum Decided {
    /// An answer at once: the command writes nothing.
    Answer(Answer),
    /// Writes to make durable, and what the caller is owed once they are.
    Write(Vec<TicketWrite>, Answer),
}

impl TicketState {
    /// Carries out a command, or refuses it. `by`: who acts, when an agent does.
    pub fn run(&mut self, command: Command, by: Option<Box<AuditBy>>, reply: Reply) {
        let by = by.as_deref();
        let decided = match command {
            Command::Post {
                author,
                content,
                idempotency_key,
                agent,
            } => self.post(author, content, idempotency_key, agent, by),
            Command::MarkRead { reader } => self.mark_read(reader),
            Command::Change(change) => self.change(change, by),
            Command::AddNote { author, content } => self.add_note(author, content, by),
            Command::Rate { score, comment } => self.rate(score, comment),
            Command::SetVisitorEmail { email } => self.set_visitor_email(email),
            Command::Position => self
                .position()
                .map(|start| Decided::Answer(Answer::Replay(start))),
        };
        match decided {
            Ok(Decided::Answer(answer)) => drop(reply.send(Ok(answer))),
            Ok(Decided::Write(writes, answer)) => {
                let reply = Some(reply);
                self.writes.push(writes, Owed { answer, reply });
                self.send_batch();
            }
            Err(refusal) => drop(reply.send(Err(refusal))),
        }
    }

    fn post(
        &mut self,
        author: Participant,
        content: MessageBody,
        idempotency_key: Option<IdempotencyKey>,
        agent: Option<MessageAgent>,
        by: Option<&AuditBy>,
    ) -> Result<Decided, TicketError> {
        if let Some(key) = &idempotency_key {
            let queued = self.writes.queued().filter_map(|owed| match &owed.answer {
                Answer::Message(m) => Some(m),
                _ => None,
            });
            let recent = self.recent.messages.iter();
            match check(key, author, &content, queued, recent) {
                Retry::New => {}
                Retry::Repeat(original) => return Ok(Decided::Answer(Answer::Message(original))),
                Retry::InProgress => return Err(TicketError::InProgress),
                Retry::KeyReused => return Err(TicketError::KeyReused),
            }
        }
        self.refusal()?;
        if self.tentative_status == TicketStatus::Closed {
            return Err(TicketError::Closed);
        }
        // A visitor replying to a solved ticket reopens it, owing nobody an answer.
        if author == Participant::User && self.tentative_status == TicketStatus::Resolved {
            if let Decided::Write(writes, answer) = self.change(
                TicketChange::status(TicketStatus::Open).by(Actor::Visitor),
                None,
            )? {
                self.writes.push(
                    writes,
                    Owed {
                        answer,
                        reply: None,
                    },
                );
            }
        }
        // After the timeline entry of a reopening just made, too, so the thread shows the
        // ticket reopened before the reply that reopened it.
        let id = MessageId::next(
            self.last_assigned.max(self.last_note),
            self.deps.clock.now(),
        );
        self.last_assigned = Some(id);
        let message = Message {
            id,
            author,
            content,
            timestamp: id.timestamp(),
            idempotency_key,
            // Only an agent's message says which member wrote it.
            agent: agent.filter(|_| author == Participant::Admin),
        };
        let mut writes = vec![TicketWrite::Message(message.clone())];
        if author == Participant::Admin {
            writes.extend(self.audited(by, "ticket.replied", id.timestamp(), |r| {
                r.with("message", id)
            }));
        }
        writes.extend(self.announce(EventType::MessageCreated, || {
            message_created(&self.key.project, &self.key.slug, &message)
        }));
        Ok(Decided::Write(writes, Answer::Message(message)))
    }

    fn mark_read(&mut self, reader: Participant) -> Result<Decided, TicketError> {
        let Some(up_to) = self.last_assigned else {
            return Ok(Decided::Answer(Answer::Read(None)));
        };
        self.refusal()?;
        let write = TicketWrite::ReadCursor { reader, up_to };
        Ok(Decided::Write(vec![write], Answer::Read(Some(up_to))))
    }

    /// A change of the ticket's own fields, with its announcements: one version of the ticket,
    /// one write.
    fn change(
        &mut self,
        change: TicketChange,
        audit: Option<&AuditBy>,
    ) -> Result<Decided, TicketError> {
        self.refusal()?;
        // Built on the newest queued change, so a change never undoes another that is still
        // on its way to the store.
        let before = self.tentative_ticket();
        let mut next = before.clone();
        let by = change.by.clone();
        change.apply_to(&mut next);
        next.updated_at = self.next_version(&before);
        let mut writes = vec![TicketWrite::Ticket(next.clone())];
        if let Some(actor) = by {
            for field in ActivityChange::between(&before, &next) {
                // After every id handed out so far, like a note, so the thread shows each
                // entry where it happened among the messages and notes.
                let now = self.deps.clock.now();
                let id = MessageId::next(self.last_assigned.max(self.last_note), now);
                self.last_note = Some(id);
                writes.push(TicketWrite::Activity(Activity {
                    id,
                    created_at: id.timestamp(),
                    actor: actor.clone(),
                    change: field,
                }));
            }
        }
        // One record per field that changed, as the timeline has one entry per field, so
        // each kind of change is found by its action.
        if before.status != next.status {
            writes.extend(
                self.audited(audit, "ticket.status_changed", next.updated_at, |r| {
                    r.changed("status", before.status, next.status)
                }),
            );
        }
        if !before.same_assignee(&next) {
            let member = |t: &Ticket| t.assignee_member.as_ref().map(|m| m.id);
            writes.extend(
                self.audited(audit, "ticket.assigned", next.updated_at, |r| {
                    r.changed("assignee", &before.assignee, &next.assignee)
                        .changed("assignee_id", member(&before), member(&next))
                }),
            );
        }
        if before.tags != next.tags {
            writes.extend(
                self.audited(audit, "ticket.tags_changed", next.updated_at, |r| {
                    r.changed("tags", &before.tags, &next.tags)
                }),
            );
        }
        let summary =
            || serde_json::to_value(crate::events::TicketSummary::new(&next)).unwrap_or_default();
        if before.status != next.status {
            writes.extend(self.announce(
                EventType::TicketStatusChanged,
                || serde_json::json!({ "ticket": summary(), "previous": before.status }),
            ));
        }
        if !before.same_assignee(&next) {
            writes.extend(self.announce(EventType::TicketAssigned, || {
                serde_json::json!({
                    "ticket": summary(),
                    "previous": before.assignee,
                    "previous_member": before.assignee_member,
                })
            }));
        }
        self.tentative_status = next.status;
        Ok(Decided::Write(writes, Answer::Ticket(Box::new(next))))
    }

    /// The visitor's rating: once, on a solved ticket. Checked against the newest queued
    /// version, so two ratings racing each other cannot both be taken.
    fn rate(
        &mut self,
        score: u8,
        comment: crate::domain::SatisfactionComment,
    ) -> Result<Decided, TicketError> {
        self.refusal()?;
        let before = self.tentative_ticket();
        if before.satisfaction.is_some() {
            return Err(TicketError::AlreadyRated);
        }
        if !matches!(before.status, TicketStatus::Resolved | TicketStatus::Closed) {
            return Err(TicketError::NotResolved);
        }
        let mut next = before.clone();
        next.updated_at = self.next_version(&before);
        next.satisfaction = Some(Box::new(crate::domain::Satisfaction {
            score,
            comment,
            rated_at: next.updated_at,
        }));
        let mut writes = vec![TicketWrite::Ticket(next.clone())];
        writes.extend(self.announce(EventType::TicketRated, || {
            let summary = crate::events::TicketSummary::new(&next);
            serde_json::json!({ "ticket": summary, "satisfaction": next.satisfaction })
        }));
        Ok(Decided::Write(writes, Answer::Ticket(Box::new(next))))
    }

    /// The visitor's own address for replies, unverified. The same address again changes
    /// nothing; a verified contact's address is never replaced.
    fn set_visitor_email(
        &mut self,
        email: Option<crate::domain::Email>,
    ) -> Result<Decided, TicketError> {
        self.refusal()?;
        let before = self.tentative_ticket();
        if before
            .contact
            .as_ref()
            .is_some_and(|c| c.verified && c.email.is_some())
        {
            return Err(TicketError::VerifiedEmail);
        }
        let name = before.visitor.as_ref().and_then(|v| v.name.clone());
        let visitor = (name.is_some() || email.is_some()).then(|| crate::domain::VisitorContact {
            name,
            email_unverified: email.is_some(),
            email,
        });
        if visitor == before.visitor {
            return Ok(Decided::Answer(Answer::Ticket(Box::new(before))));
        }
        let mut next = before.clone();
        next.updated_at = self.next_version(&before);
        next.visitor = visitor;
        let writes = vec![TicketWrite::Ticket(next.clone())];
        Ok(Decided::Write(writes, Answer::Ticket(Box::new(next))))
    }

    fn add_note(
        &mut self,
        author: AgentName,
        content: MessageBody,
        by: Option<&AuditBy>,
    ) -> Result<Decided, TicketError> {
        self.refusal()?;
        let now = self.deps.clock.now();
        // After every id handed out so far, so notes keep their order; messages keep theirs.
        let id = MessageId::next(self.last_assigned.max(self.last_note), now);
        self.last_note = Some(id);
        let note = Note {
            id,
            author,
            content,
            created_at: id.timestamp(),
        };
        let mut writes = vec![TicketWrite::Note(note.clone())];
        writes.extend(self.audited(by, "ticket.note_added", note.created_at, |r| {
            r.with("note", id)
        }));
        Ok(Decided::Write(writes, Answer::Note(note)))
    }

    /// The audit record of `action` on this ticket by `by` at `at` (the change's own time, so
    /// the records of one change share it), with what `changes` adds; none when nobody is
    /// recorded as acting (a visitor, the assistant).
    fn audited(
        &self,
        by: Option<&AuditBy>,
        action: &str,
        at: chrono::DateTime<chrono::Utc>,
        changes: impl FnOnce(AuditRecord) -> AuditRecord,
    ) -> Option<TicketWrite> {
        let record = by?.record(&self.key.project, at, action);
        let ticket = &self.ticket;
        let target = AuditTarget::new("ticket", &self.key.slug).named(ticket.title.as_str());
        Some(TicketWrite::Audit(changes(record.target(target))))
    }

    /// Why a write cannot be taken now, if it cannot: a write failed and the actor is leaving
    /// (with several nodes the caller sends it on, to the ticket's next actor, here or on its
    /// new owner); or it must wait, with too many writes queued already.
    fn refusal(&self) -> Result<(), TicketError> {
        if self.writes.is_broken() {
            return Err(self.durability.not_carried_out());
        }
        match self.writes.len() >= self.deps.config.max_pending_writes {
            true => Err(TicketError::Busy),
            false => Ok(()),
        }
    }

    /// The `updated_at` of the change after `base`: now, but always past `base` by at least a
    /// millisecond (the precision stores keep), so that it orders the ticket's versions even when
    /// the clock stands still or the ticket moved here from a node whose clock runs ahead. The
    /// stores keep the newer version of a ticket row by it, which is what stops a late write
    /// from a node that lost the ticket from undoing a newer change.
    fn next_version(&self, base: &Ticket) -> chrono::DateTime<chrono::Utc> {
        self.deps
            .clock
            .now()
            .max(base.updated_at + chrono::Duration::milliseconds(1))
    }

    /// The ticket's fields after every change still queued.
    pub(super) fn tentative_ticket(&self) -> Ticket {
        let queued = self
            .writes
            .queued()
            .rev()
            .find_map(|owed| match &owed.answer {
                Answer::Ticket(t) => Some(&**t),
                _ => None,
            });
        queued.unwrap_or(&self.ticket).clone()
    }

    /// The webhook deliveries announcing `event`, to go in the same batch as the change.
    fn announce(
        &self,
        event: EventType,
        data: impl FnOnce() -> serde_json::Value,
    ) -> Vec<TicketWrite> {
        let now = self.deps.clock.now();
        let deliveries = self
            .deps
            .hooks
            .deliveries(&self.key.project, event, data, now);
        deliveries.into_iter().map(TicketWrite::Delivery).collect()
    }
}

// Idempotency keys: a client that retries a post with the key it used before gets the
// message it already made instead of a second copy. A ticket remembers keys as far back as the
// messages it keeps in memory (the newest 500), which covers any retry a client makes after a
// dropped connection.

/// What a post's idempotency key says about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    /// The key is new: make the message.
    New,
    /// The same post was made before: answer with the message it made.
    Repeat(Message),
    /// The key's first post is still on its way to the store: the client retries shortly.
    InProgress,
    /// The key was used for a different message.
    KeyReused,
}

/// Looks `key` up among the posts still on their way to the store and among the durable
/// messages kept in memory.
pub fn check<'a>(
    key: &IdempotencyKey,
    author: Participant,
    content: &MessageBody,
    queued: impl IntoIterator<Item = &'a Message>,
    recent: impl DoubleEndedIterator<Item = &'a Message>,
) -> Retry {
    let same_key = |m: &&Message| m.idempotency_key.as_ref() == Some(key);
    if queued.into_iter().any(|m| same_key(&m)) {
        return Retry::InProgress;
    }
    match recent.rev().find(same_key) {
        Some(m) if m.author == author && &m.content == content => Retry::Repeat(m.clone()),
        Some(_) => Retry::KeyReused,
        None => Retry::New,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::MessageId;

    /// A message by the visitor, with its idempotency key if it has one.
    pub(crate) fn message(text: &str, key: Option<&str>) -> Message {
        let id = MessageId::next(None, chrono::Utc::now());
        Message {
            id,
            author: Participant::User,
            content: MessageBody::parse(text).unwrap(),
            timestamp: id.timestamp(),
            idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
            agent: None,
        }
    }

    #[test]
    fn a_key_decides_between_new_repeat_in_progress_and_reused() {
        let key = IdempotencyKey::parse("k1").unwrap();
        let hello = MessageBody::parse("hello").unwrap();
        let stored = [message("hi", None), message("hello", Some("k1"))];
        let verdict = |key: &IdempotencyKey, queued: &[Message], author, content| {
            check(key, author, content, queued, stored.iter())
        };
        assert_eq!(
            verdict(&key, &[], Participant::User, &hello),
            Retry::Repeat(stored[1].clone())
        );
        let other = MessageBody::parse("something else").unwrap();
        assert_eq!(
            verdict(&key, &[], Participant::User, &other),
            Retry::KeyReused
        );
        assert_eq!(
            verdict(&key, &[], Participant::Admin, &hello),
            Retry::KeyReused
        );
        let queued = [message("hello", Some("k1"))];
        assert_eq!(
            verdict(&key, &queued, Participant::User, &hello),
            Retry::InProgress
        );
        let fresh = IdempotencyKey::parse("k2").unwrap();
        assert_eq!(verdict(&fresh, &[], Participant::User, &hello), Retry::New);
    }
}
