//! Chat sessions' transcripts (`chat_turns`): one row per turn, in a partition per session.

use async_trait::async_trait;
use fleety_actors::domain::{ChatTurn, ChatUsage, ProjectId};
use fleety_actors::store::{timed, ChatStore, StoreResult};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::rows::{TurnRow, TurnValues, UsageRow};
use super::{prepare, ScyllaStore};

pub(super) struct Statements {
    insert_turn: PreparedStatement,
    select_usage: PreparedStatement,
    select_turns: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            insert_turn: p(format!("INSERT INTO {ks}.chat_turns (project_id, session_id, turn_id, role, content, at, ticket_slug, citations, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")).await?,
            select_usage: p(format!("SELECT tokens, ticket_slug FROM {ks}.chat_turns WHERE project_id = ? AND session_id = ?")).await?,
            select_turns: p(format!("SELECT turn_id, role, content, at, ticket_slug, citations, tokens FROM {ks}.chat_turns WHERE project_id = ? AND session_id = ? ORDER BY turn_id DESC LIMIT ?")).await?,
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
            }
            Ok(usage)
        })
        .await
    }
}
