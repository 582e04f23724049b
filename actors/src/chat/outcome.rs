//! How conversations with the assistant end, counted on `/metrics`.
//!
//! The store keeps each session's conversation row, and the API counts outcomes from it (see
//! `docs/assistant.md`). The counter `fleety_assistant_conversations_total` counts each
//! conversation of this process once it ends: an escalated one at its hand-off, any other once
//! it has been quiet for the end time. Ended ones are found by [`Outcomes::settle`], which runs
//! on a ticker and before every scrape, so the counter never waits for a ticker to be current.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use super::SessionKey;
use crate::domain::{ChatConversation, ChatOutcome, ProjectId};

/// The conversations of this process that have not ended yet.
pub struct Outcomes {
    pending: DashMap<SessionKey, Pending>,
    ends_after: chrono::Duration,
    /// Conversations waiting at most: one per session in memory would do, and a flood of
    /// sessions cannot grow this without bound.
    max: usize,
}

struct Pending {
    conversation: ChatConversation,
    /// Its hand-off is counted already.
    escalation_counted: bool,
}

impl Outcomes {
    pub fn new(ends_after: chrono::Duration, max: usize) -> Arc<Outcomes> {
        Arc::new(Outcomes {
            pending: DashMap::new(),
            ends_after,
            max,
        })
    }

    /// How long a conversation without a hand-off stays open after its last activity.
    pub fn ends_after(&self) -> chrono::Duration {
        self.ends_after
    }

    /// A conversation changed: counts its hand-off now, and waits for its end otherwise.
    pub fn touch(&self, key: &SessionKey, conversation: &ChatConversation) {
        if !self.pending.contains_key(key) && self.pending.len() >= self.max {
            tracing::warn!(project = %key.project, "too many open conversations to track; this one is counted by the API only");
            return;
        }
        let mut entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            conversation: conversation.clone(),
            escalation_counted: false,
        });
        entry.conversation = conversation.clone();
        if conversation.escalated && !entry.escalation_counted {
            entry.escalation_counted = true;
            count(&key.project, ChatOutcome::Escalated);
        }
    }

    /// Counts the conversations that have ended by `now` and forgets them.
    pub fn settle(&self, now: DateTime<Utc>) {
        self.pending.retain(|key, p| {
            let Some(outcome) = p.conversation.outcome(now, self.ends_after) else {
                return true;
            };
            // An escalated conversation was counted at its hand-off; it is kept until it has
            // been quiet for the end time too, so that more activity does not count it again.
            if outcome == ChatOutcome::Escalated {
                return now - p.conversation.last_at < self.ends_after;
            }
            count(&key.project, outcome);
            false
        });
    }

    /// Conversations waiting for their end.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

fn count(project: &ProjectId, outcome: ChatOutcome) {
    metrics::counter!(
        "fleety_assistant_conversations_total",
        "project" => project.to_string(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_millis;

    fn key(session: &str) -> SessionKey {
        SessionKey {
            project: ProjectId::parse("p").unwrap(),
            session: session.into(),
        }
    }

    fn conversation(at: DateTime<Utc>) -> ChatConversation {
        ChatConversation {
            session: "s".into(),
            started_at: at,
            last_at: at,
            escalated: false,
            unanswered: false,
            up: 0,
            down: 0,
        }
    }

    #[test]
    fn a_conversation_waits_for_its_end_and_an_escalated_one_for_its_quiet_time() {
        let ends = chrono::Duration::minutes(30);
        let outcomes = Outcomes::new(ends, 10);
        let t0 = now_millis();
        outcomes.touch(&key("a"), &conversation(t0));
        let mut handed = conversation(t0);
        handed.escalated = true;
        outcomes.touch(&key("b"), &handed);
        outcomes.settle(t0 + chrono::Duration::minutes(29));
        assert_eq!(outcomes.pending(), 2);
        outcomes.settle(t0 + ends);
        assert_eq!(outcomes.pending(), 0);
    }

    #[test]
    fn the_tracked_conversations_are_bounded() {
        let outcomes = Outcomes::new(chrono::Duration::minutes(30), 2);
        let t0 = now_millis();
        for s in ["a", "b", "c"] {
            outcomes.touch(&key(s), &conversation(t0));
        }
        assert_eq!(outcomes.pending(), 2);
        // One already tracked is still updated.
        outcomes.touch(&key("a"), &conversation(t0));
        assert_eq!(outcomes.pending(), 2);
    }
}
