//! Chat sessions' transcripts (`chat_turns`): one row per turn, in a partition per session.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleety_actors::domain::{
    ChatConversation, ChatTurn, ChatUsage, OutcomeCounts, ProjectId, Rating,
};
use fleety_actors::store::{timed, ChatStore, StoreResult};
use fleety_actors::MessageId;
use futures_util::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlTimeuuid;

use super::rows::{day_of, ConversationRow, ConversationValues, TurnRow, TurnValues, UsageRow};
use super::{internal, paging, prepare, ScyllaStore};

pub(super) struct Statements {
    insert_turn: PreparedStatement,
    select_usage: PreparedStatement,
    select_turns: PreparedStatement,
    select_turn: PreparedStatement,
    insert_conversation: PreparedStatement,
    select_conversations: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            insert_turn: p(format!("INSERT INTO {ks}.chat_turns (project_id, session_id, turn_id, role, content, at, ticket_slug, citations, tokens, feedback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            select_usage: p(format!("SELECT at, tokens, ticket_slug, feedback FROM {ks}.chat_turns WHERE project_id = ? AND session_id = ?")).await?,
            select_turns: p(format!("SELECT turn_id, role, content, at, ticket_slug, citations, tokens, feedback FROM {ks}.chat_turns WHERE project_id = ? AND session_id = ? ORDER BY turn_id DESC LIMIT ?")).await?,
            select_turn: p(format!("SELECT turn_id, role, content, at, ticket_slug, citations, tokens, feedback FROM {ks}.chat_turns WHERE project_id = ? AND session_id = ? AND turn_id = ?")).await?,
            insert_conversation: p(format!("INSERT INTO {ks}.chat_conversations (project_id, day, started_at, session_id, last_at, escalated, unanswered, up, down) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            select_conversations: p(format!("SELECT started_at, session_id, last_at, escalated, unanswered, up, down FROM {ks}.chat_conversations WHERE project_id = ? AND day = ? AND started_at >= ? AND started_at < ?")).await?,
        })
    }
}

#[async_trait]
impl ChatStore for ScyllaStore {
    /// Turns are independent rows keyed by their id: written concurrently, and a repeat
    /// overwrites the same row.
    async fn append_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        turns: &[ChatTurn],
    ) -> StoreResult<()> {
        timed("scylla", "append_chat_turns", async {
            let writes = turns
                .iter()
                .map(|t| self.write(&self.chat.insert_turn, TurnValues::new(project, session, t)));
            for result in futures_util::future::join_all(writes).await {
                result?;
            }
            Ok(())
        })
        .await
    }

    async fn list_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        limit: usize,
    ) -> StoreResult<Vec<ChatTurn>> {
        timed("scylla", "list_chat_turns", async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let limit = i32::try_from(limit).unwrap_or(i32::MAX);
            let rows: Vec<TurnRow> = self
                .all_rows(&self.chat.select_turns, (project.as_str(), session, limit))
                .await?;
            let mut out = rows
                .into_iter()
                .map(ChatTurn::try_from)
                .collect::<StoreResult<Vec<_>>>()?;
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn chat_session_usage(
        &self,
        project: &ProjectId,
        session: &str,
    ) -> StoreResult<ChatUsage> {
        timed("scylla", "chat_session_usage", async {
            let rows: Vec<UsageRow> = self
                .all_rows(&self.chat.select_usage, (project.as_str(), session))
                .await?;
            let mut usage = ChatUsage::default();
            for row in rows {
                let tokens = row.tokens.and_then(|t| u64::try_from(t).ok()).unwrap_or(0);
                usage.tokens = usage.tokens.saturating_add(tokens);
                usage.tickets += u32::from(row.ticket_slug.is_some());
                usage.started_at = Some(usage.started_at.map_or(row.at, |s| s.min(row.at)));
                match row.feedback.as_deref().map(Rating::parse) {
                    Some(Ok(Rating::Up)) => usage.up += 1,
                    Some(Ok(Rating::Down)) => usage.down += 1,
                    _ => {}
                }
            }
            Ok(usage)
        })
        .await
    }

    async fn chat_turn(
        &self,
        project: &ProjectId,
        session: &str,
        id: MessageId,
    ) -> StoreResult<Option<ChatTurn>> {
        timed("scylla", "chat_turn", async {
            let id = CqlTimeuuid::from(id.as_uuid());
            let row: Option<TurnRow> = self
                .one_row(&self.chat.select_turn, (project.as_str(), session, id))
                .await?;
            row.map(ChatTurn::try_from).transpose()
        })
        .await
    }

    async fn put_chat_conversation(
        &self,
        project: &ProjectId,
        conversation: &ChatConversation,
    ) -> StoreResult<()> {
        timed("scylla", "put_chat_conversation", async {
            let values = ConversationValues::new(project, conversation);
            self.write(&self.chat.insert_conversation, values).await
        })
        .await
    }

    /// One partition a day of the range, each read page by page and counted as it streams.
    async fn count_chat_outcomes(
        &self,
        project: &ProjectId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        ends_after: chrono::Duration,
    ) -> StoreResult<OutcomeCounts> {
        timed("scylla", "count_chat_outcomes", async {
            let mut counts = OutcomeCounts::default();
            if from >= to {
                return Ok(counts);
            }
            // `to` is excluded: its own day is read only when the range reaches into it.
            let last = day_of(to - chrono::Duration::milliseconds(1));
            for day in day_of(from)..=last {
                let values = (project.as_str(), day, from, to);
                let mut rows = self
                    .session
                    .execute_iter(self.chat.select_conversations.clone(), values)
                    .await
                    .map_err(paging)?
                    .rows_stream::<ConversationRow>()
                    .map_err(internal)?;
                while let Some(row) = rows.try_next().await.map_err(paging)? {
                    counts.add(&ChatConversation::from(row), now, ends_after);
                }
            }
            Ok(counts)
        })
        .await
    }
}
