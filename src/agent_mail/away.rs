//! Emails to an assignee about their visitor's messages while they are away from the inbox:
//! owns who is in the inbox on this node, the bursts waiting, and composing them when due.
//!
//! - **In the inbox** means the member has at least one project feed socket open on this
//!   node (`GET /v1/projects/{projectId}/feed`, with a feed token from their own session):
//!   the live connection the inbox keeps while it is open in a browser tab. The admin key's
//!   feed is nobody's. With several nodes, a member's socket is known on its node only.
//! - A visitor's message (the public API, the widget, a reply by email) on a ticket assigned
//!   to a member who is not in the inbox and has `visitor_reply` on starts a burst for that
//!   ticket and member, due `FLEETY_AGENT_EMAIL_AFTER_SECS` later; the visitor's later
//!   messages join it. Unassigned tickets email nobody: the new-ticket email already tells
//!   those who asked of a ticket's arrival, and a message on it is for whoever picks it up.
//! - The member opening the inbox cancels their waiting bursts; an agent's reply on the
//!   ticket cancels the ticket's. When a burst comes due (the outbox sender's round, on the
//!   injected clock), it is emailed only if the ticket is still assigned to the member, their
//!   switch is still on, they are still away, and some of the burst's visitor messages are
//!   still unread by the agents (opening the ticket in the inbox marks them read).
//! - The email quotes those messages (bounded, [`rules::away_quote`]) and is named by the
//!   newest of them, so composing it again (a store error's retry, the same burst on another
//!   node) writes the same outbox email, kept once.
//!
//! A waiting burst lives in this node's memory: a restart within the wait loses that email
//! (the ticket stays unread in the inbox), as the trade for needing no stored state.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use chrono::{DateTime, Utc};
use fleety_actors::agent_mail::{self as rules, Event};
use fleety_actors::domain::{Participant, ProjectId, Slug};
use fleety_actors::message_id::MessageId;
use fleety_actors::store::{MessageRange, StoreResult};
use uuid::Uuid;

use super::AgentMailer;

/// Bursts waiting on one node at most: past it, a new burst is dropped (and logged) rather
/// than let visitors grow the node's memory without bound.
const MAX_WAITING: usize = 10_000;
/// Bursts composed per round.
const ROUND: usize = 64;
/// The newest messages read to find a burst's unread ones.
const READ_BACK: usize = 100;

type BurstKey = (ProjectId, Slug, Uuid);

/// The bursts waiting and the members in the inbox, on this node.
#[derive(Default)]
pub(super) struct Away {
    waiting: HashMap<BurstKey, Burst>,
    /// Open feed sockets per project and member.
    inbox: HashMap<(ProjectId, Uuid), usize>,
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    /// The visitor's message that started it: the email quotes from it on.
    first: MessageId,
    due_at: DateTime<Utc>,
}

/// A member's feed socket counted as their presence in the inbox while it lives.
pub struct InInbox {
    mailer: Arc<AgentMailer>,
    key: (ProjectId, Uuid),
}

impl Drop for InInbox {
    fn drop(&mut self) {
        let mut away = self.mailer.lock();
        if let Some(n) = away.inbox.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                away.inbox.remove(&self.key);
            }
        }
    }
}

impl AgentMailer {
    fn lock(&self) -> MutexGuard<'_, Away> {
        self.away.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The member opened the inbox: nothing waits for them, and nothing starts while the
    /// guard lives.
    pub fn enter_inbox(self: &Arc<Self>, project: &ProjectId, member: Uuid) -> InInbox {
        let key = (project.clone(), member);
        let mut away = self.lock();
        *away.inbox.entry(key.clone()).or_default() += 1;
        away.waiting
            .retain(|(p, _, m), _| !(p == project && *m == member));
        drop(away);
        InInbox {
            mailer: self.clone(),
            key,
        }
    }

    fn in_inbox(&self, project: &ProjectId, member: Uuid) -> bool {
        self.lock().inbox.contains_key(&(project.clone(), member))
    }

    /// After the visitor's message `message` was posted on the ticket: starts a burst for its
    /// assignee when they are away and want it, unless one waits.
    pub async fn visitor_wrote(&self, project: &ProjectId, slug: &Slug, message: MessageId) {
        let result = async {
            let Some(ticket) = self.store.get_ticket(project, slug).await? else {
                return Ok(());
            };
            let Some(member) = ticket.assignee_member.as_ref().map(|a| a.id) else {
                return Ok(());
            };
            if self.in_inbox(project, member) {
                return Ok(());
            }
            let prefs = self.store.get_notification_prefs(project, member).await?;
            if prefs.is_some_and(|p| !Event::VisitorReply.wanted(&p)) {
                return Ok(());
            }
            let due_at = self.clock.now() + self.wait;
            let key = (project.clone(), slug.clone(), member);
            let mut away = self.lock();
            if away.waiting.len() >= MAX_WAITING && !away.waiting.contains_key(&key) {
                tracing::warn!("too many agent emails waiting on this node; one is dropped");
                return Ok(());
            }
            away.waiting.entry(key).or_insert(Burst {
                first: message,
                due_at,
            });
            StoreResult::Ok(())
        };
        if let Err(e) = result.await {
            tracing::warn!(error = %e, "starting an agent's visitor-reply email failed");
        }
    }

    /// After a message by `author` was posted on the ticket: the visitor's starts a burst,
    /// an agent's answers it.
    pub async fn posted(
        &self,
        project: &ProjectId,
        slug: &Slug,
        author: Participant,
        message: MessageId,
    ) {
        match author {
            Participant::User => self.visitor_wrote(project, slug, message).await,
            Participant::Admin => self.agent_replied(project, slug),
            Participant::Assistant => {}
        }
    }

    /// An agent replied on the ticket: its visitor's messages are answered, nothing waits.
    pub fn agent_replied(&self, project: &ProjectId, slug: &Slug) {
        self.lock()
            .waiting
            .retain(|(p, s, _), _| !(p == project && s == slug));
    }

    /// Composes the emails of the bursts due now; the outbox sender calls it each round.
    pub async fn compose_due(&self) {
        let now = self.clock.now();
        let due: Vec<(BurstKey, Burst)> = {
            let mut away = self.lock();
            let keys: Vec<BurstKey> = away
                .waiting
                .iter()
                .filter(|(_, b)| b.due_at <= now)
                .map(|(k, _)| k.clone())
                .take(ROUND)
                .collect();
            keys.into_iter()
                .filter_map(|k| away.waiting.remove(&k).map(|b| (k, b)))
                .collect()
        };
        let mut wrote = false;
        for (key, burst) in due {
            match self.compose(&key, burst).await {
                Ok(w) => wrote |= w,
                Err(e) => {
                    tracing::warn!(error = %e, "composing an agent's visitor-reply email failed");
                    // Tried again later; the email's id keeps a repeat from being a second.
                    let later = Burst {
                        due_at: now + self.wait,
                        ..burst
                    };
                    self.lock().waiting.entry(key).or_insert(later);
                }
            }
        }
        if wrote {
            self.outbox.wake();
        }
    }

    /// One due burst; true when its email was written now.
    async fn compose(&self, key: &BurstKey, burst: Burst) -> StoreResult<bool> {
        let (project, slug, member) = key;
        if self.in_inbox(project, *member) {
            return Ok(false);
        }
        let Some(ticket) = self.store.get_ticket(project, slug).await? else {
            return Ok(false);
        };
        if ticket.assignee_member.as_ref().map(|a| a.id) != Some(*member) {
            return Ok(false);
        }
        let Some(m) = self.store.get_member(project, *member).await? else {
            return Ok(false);
        };
        let prefs: Vec<_> = self
            .store
            .get_notification_prefs(project, *member)
            .await?
            .into_iter()
            .collect();
        let members = [m];
        let now = self.clock.now();
        let Some(to) = rules::recipients(Event::VisitorReply, &members, &prefs, None, now).pop()
        else {
            return Ok(false);
        };
        let agents_read = self
            .store
            .read_cursors(project, slug)
            .await?
            .iter()
            .find(|c| c.reader == Participant::Admin)
            .map(|c| c.up_to);
        let range = MessageRange {
            after: agents_read,
            ..MessageRange::newest(READ_BACK)
        };
        let messages = self.store.list_messages(project, slug, range).await?;
        let Some((quote, newest)) = rules::away_quote(&messages, burst.first, agents_read) else {
            return Ok(false);
        };
        let version = rules::away_version(newest);
        self.write(Event::VisitorReply, &ticket, to, &quote, version)
            .await
    }
}
