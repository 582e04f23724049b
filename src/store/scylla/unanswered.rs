//! Unanswered questions (`kb_unanswered`): a project's entries in one partition, at most
//! [`MAX_PER_PROJECT`](fleety_actors::unanswered::MAX_PER_PROJECT) of them.
//!
//! Counting reads the entry and writes it back. Without a lightweight transaction, two nodes
//! counting one question at the same moment may count it once: a tally for admins, where that
//! costs less than a Paxos round per asking. A new entry reads the partition's ids and ages to
//! drop the least recently asked beyond the cap.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleety_actors::domain::ProjectId;
use fleety_actors::store::{timed, StoreError, StoreResult, UnansweredStore};
use fleety_actors::unanswered::{self, Asked, UnansweredQuestion};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::{DeserializeRow, SerializeRow};

use super::{prepare, ScyllaStore, LIST_DEADLINE};

const COLUMNS: &str = "project_id, id, question, example, asked, first_seen, last_seen";

pub(super) struct Statements {
    upsert: PreparedStatement,
    select_one: PreparedStatement,
    select_all: PreparedStatement,
    delete: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            upsert: p(format!(
                "INSERT INTO {ks}.kb_unanswered ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            select_one: p(format!(
                "SELECT {COLUMNS} FROM {ks}.kb_unanswered WHERE project_id = ? AND id = ?"
            ))
            .await?,
            select_all: p(format!(
                "SELECT {COLUMNS} FROM {ks}.kb_unanswered WHERE project_id = ?"
            ))
            .await?,
            delete: p(format!(
                "DELETE FROM {ks}.kb_unanswered WHERE project_id = ? AND id = ?"
            ))
            .await?,
        })
    }
}

#[derive(SerializeRow)]
struct QuestionValues<'a> {
    project_id: &'a str,
    id: &'a str,
    question: &'a str,
    example: &'a str,
    asked: i64,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

impl<'a> From<&'a UnansweredQuestion> for QuestionValues<'a> {
    fn from(q: &'a UnansweredQuestion) -> Self {
        Self {
            project_id: q.project_id.as_str(),
            id: &q.id,
            question: &q.question,
            example: &q.example,
            asked: i64::try_from(q.count).unwrap_or(i64::MAX),
            first_seen: q.first_seen,
            last_seen: q.last_seen,
        }
    }
}

#[derive(DeserializeRow)]
struct QuestionRow {
    project_id: String,
    id: String,
    question: Option<String>,
    example: Option<String>,
    asked: Option<i64>,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

impl TryFrom<QuestionRow> for UnansweredQuestion {
    type Error = StoreError;

    fn try_from(r: QuestionRow) -> StoreResult<Self> {
        Ok(UnansweredQuestion {
            project_id: ProjectId::parse(&r.project_id)
                .map_err(|_| StoreError::Internal("corrupt kb_unanswered: project id".into()))?,
            id: r.id,
            question: r.question.unwrap_or_default(),
            example: r.example.unwrap_or_default(),
            count: r.asked.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            first_seen: r.first_seen,
            last_seen: r.last_seen,
        })
    }
}

impl ScyllaStore {
    async fn unanswered_of(&self, project: &ProjectId) -> StoreResult<Vec<UnansweredQuestion>> {
        let read = self.all_rows::<QuestionRow>(&self.unanswered.select_all, (project.as_str(),));
        let rows = tokio::time::timeout(LIST_DEADLINE, read)
            .await
            .map_err(|_| {
                StoreError::Unavailable("reading the unanswered questions took too long".into())
            })??;
        rows.into_iter().map(UnansweredQuestion::try_from).collect()
    }

    async fn unanswered_one(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> StoreResult<Option<UnansweredQuestion>> {
        self.one_row::<QuestionRow>(&self.unanswered.select_one, (project.as_str(), id))
            .await?
            .map(UnansweredQuestion::try_from)
            .transpose()
    }
}

#[async_trait]
impl UnansweredStore for ScyllaStore {
    async fn record_unanswered(&self, project: &ProjectId, asked: &Asked) -> StoreResult<()> {
        timed("scylla", "record_unanswered", async {
            let before = self.unanswered_one(project, &asked.id).await?;
            let is_new = before.is_none();
            let entry = asked.apply(project, before);
            self.write(&self.unanswered.upsert, QuestionValues::from(&entry))
                .await?;
            if is_new {
                let all = self.unanswered_of(project).await?;
                for id in unanswered::overflow(&all) {
                    self.write(&self.unanswered.delete, (project.as_str(), id.as_str()))
                        .await?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn list_unanswered(
        &self,
        project: &ProjectId,
        limit: usize,
    ) -> StoreResult<Vec<UnansweredQuestion>> {
        timed("scylla", "list_unanswered", async {
            let mut all = self.unanswered_of(project).await?;
            unanswered::sort(&mut all);
            all.truncate(limit);
            Ok(all)
        })
        .await
    }

    async fn dismiss_unanswered(&self, project: &ProjectId, id: &str) -> StoreResult<()> {
        timed("scylla", "dismiss_unanswered", async {
            // Without LWT a DELETE cannot tell whether the row was there; read first.
            if self.unanswered_one(project, id).await?.is_none() {
                return Err(StoreError::NotFound);
            }
            self.write(&self.unanswered.delete, (project.as_str(), id))
                .await
        })
        .await
    }
}
