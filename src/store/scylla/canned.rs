//! Canned replies (`canned_replies`, `cql/0013_canned_replies.cql`): a project's replies in one
//! partition.
//!
//! Every change is a lightweight transaction on the partition's static `replies_version`: the
//! writer reads the project's replies and the version at a serial consistency (so every
//! transaction before it is seen), decides against them (the cap, a shortcut in use, a reply
//! that is gone), and writes with the condition that the version is still what it read. Of
//! writers racing on one node or several, one applies per round; the others read again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleety_actors::canned::{CannedBody, CannedConflict, CannedName, CannedReply, Shortcut};
use fleety_actors::domain::ProjectId;
use fleety_actors::store::{canned_conflict, timed, CannedStore, StoreError, StoreResult};
use futures_util::TryFutureExt;
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;

use super::{execution, prepare, ScyllaStore, REQUEST_TIMEOUT};

/// Rounds of read-decide-write one change tries while other changes of its project keep
/// coming first (each round, one of them applies).
const ROUNDS: usize = 64;
const COLUMNS: &str = "project_id, reply_id, name, shortcut, body, created_at, updated_at";

pub(super) struct Statements {
    /// Inserts or replaces a reply and moves the version on, if it is what the writer read.
    put: Batch,
    /// Deletes a reply and moves the version on, if it is what the writer read.
    delete: Batch,
    /// The project's replies and version, at a serial consistency.
    census: PreparedStatement,
    select: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        let bump = || {
            p(format!(
                "UPDATE {ks}.canned_replies SET replies_version = ? WHERE project_id = ? IF replies_version = ?"
            ))
        };
        let batch = |first: PreparedStatement, bump: PreparedStatement| {
            let mut b = Batch::new(BatchType::Logged);
            b.append_statement(first);
            b.append_statement(bump);
            b.set_consistency(consistency);
            b.set_request_timeout(Some(REQUEST_TIMEOUT));
            b.set_is_idempotent(false);
            b
        };
        let insert = p(format!(
            "INSERT INTO {ks}.canned_replies ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .await?;
        let delete = p(format!(
            "DELETE FROM {ks}.canned_replies WHERE project_id = ? AND reply_id = ?"
        ))
        .await?;
        let mut census = p(format!(
            "SELECT {COLUMNS}, replies_version FROM {ks}.canned_replies WHERE project_id = ?"
        ))
        .await?;
        census.set_consistency(Consistency::LocalSerial);
        Ok(Self {
            put: batch(insert, bump().await?),
            delete: batch(delete, bump().await?),
            census,
            select: p(format!(
                "SELECT {COLUMNS}, replies_version FROM {ks}.canned_replies WHERE project_id = ?"
            ))
            .await?,
        })
    }
}

#[derive(SerializeRow)]
struct ReplyValues<'a> {
    project_id: &'a str,
    reply_id: Uuid,
    name: &'a str,
    shortcut: &'a str,
    body: &'a str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl<'a> From<&'a CannedReply> for ReplyValues<'a> {
    fn from(r: &'a CannedReply) -> Self {
        Self {
            project_id: r.project_id.as_str(),
            reply_id: r.id,
            name: r.name.as_str(),
            shortcut: r.shortcut.as_str(),
            body: r.body.as_str(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A row of the partition; only the static version when the project has no reply.
#[derive(DeserializeRow)]
struct ReplyRow {
    project_id: String,
    reply_id: Option<Uuid>,
    name: Option<String>,
    shortcut: Option<String>,
    body: Option<String>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    replies_version: Option<i32>,
}

impl ReplyRow {
    fn into_reply(self) -> StoreResult<Option<CannedReply>> {
        let corrupt = |what: &str| StoreError::Internal(format!("corrupt canned reply: {what}"));
        let Some(id) = self.reply_id else {
            return Ok(None);
        };
        let text = |v: Option<String>, what: &str| v.ok_or_else(|| corrupt(what));
        Ok(Some(CannedReply {
            id,
            project_id: ProjectId::parse(&self.project_id).map_err(|_| corrupt("project_id"))?,
            name: CannedName::parse(&text(self.name, "name")?).map_err(|_| corrupt("name"))?,
            shortcut: Shortcut::parse(&text(self.shortcut, "shortcut")?)
                .map_err(|_| corrupt("shortcut"))?,
            body: CannedBody::parse(&text(self.body, "body")?).map_err(|_| corrupt("body"))?,
            created_at: self.created_at.ok_or_else(|| corrupt("created_at"))?,
            updated_at: self.updated_at.ok_or_else(|| corrupt("updated_at"))?,
        }))
    }
}

/// What one round decided.
enum Decision {
    Put,
    Delete(Uuid),
}

impl ScyllaStore {
    /// The project's replies and version, read with `st`.
    async fn canned_census(
        &self,
        st: &PreparedStatement,
        project: &str,
    ) -> StoreResult<(Vec<CannedReply>, Option<i32>)> {
        // Unpaged: the cap keeps the partition to a few hundred small rows.
        let result = self
            .session
            .execute_unpaged(st, (project,))
            .await
            .map_err(execution)?;
        let rows = result.into_rows_result().map_err(super::internal)?;
        let mut replies = Vec::new();
        let mut version = None;
        for row in rows.rows::<ReplyRow>().map_err(super::internal)? {
            let row = row.map_err(super::internal)?;
            version = version.or(row.replies_version);
            replies.extend(row.into_reply()?);
        }
        Ok((replies, version))
    }

    /// Reads the project's replies, lets `decide` choose, and writes what it chose if no other
    /// change came first; again while others do.
    async fn change_canned<T>(
        &self,
        project: &ProjectId,
        reply: Option<&CannedReply>,
        mut decide: impl FnMut(&[CannedReply]) -> StoreResult<Result<Decision, T>>,
    ) -> StoreResult<Result<(), T>> {
        for _ in 0..ROUNDS {
            let (replies, version) = self
                .canned_census(&self.canned.census, project.as_str())
                .await?;
            let decision = match decide(&replies)? {
                Ok(d) => d,
                Err(refused) => return Ok(Err(refused)),
            };
            let bump = (
                version.unwrap_or(0).wrapping_add(1),
                project.as_str(),
                version,
            );
            let sent = match (decision, reply) {
                (Decision::Put, Some(r)) => {
                    let values = (ReplyValues::from(r), bump);
                    self.session.batch(&self.canned.put, values).await
                }
                (Decision::Delete(id), _) => {
                    let values = ((project.as_str(), id), bump);
                    self.session.batch(&self.canned.delete, values).await
                }
                (Decision::Put, None) => {
                    return Err(StoreError::Internal("a put without a reply".into()))
                }
            };
            match sent {
                Ok(result) => {
                    if super::applied(result)? {
                        return Ok(Ok(()));
                    }
                }
                // A timeout leaves the outcome unknown: the next round's read tells.
                Err(err) => match execution(err) {
                    StoreError::Unavailable(_) => {}
                    other => return Err(other),
                },
            }
        }
        Err(StoreError::Unavailable(
            "too many canned replies being changed at once in the project".into(),
        ))
    }
}

/// A change of a reply refused by the store or by the project's other replies.
fn refused_reply<T, E>(outcome: &StoreResult<Result<T, E>>) -> bool {
    super::audit::refused(outcome) || matches!(outcome, Ok(Err(_)))
}

#[async_trait]
impl CannedStore for ScyllaStore {
    async fn create_canned_reply(
        &self,
        reply: &CannedReply,
        max: usize,
    ) -> StoreResult<Result<(), CannedConflict>> {
        timed("scylla", "create_canned_reply", async {
            let mut first = true;
            let create = self
                .change_canned(&reply.project_id, Some(reply), |all| {
                    let again = !std::mem::replace(&mut first, false);
                    match all.iter().find(|r| r.id == reply.id) {
                        // An earlier round's answer was lost (a timeout), but it applied.
                        Some(stored) if again && stored == reply => Ok(Err(None)),
                        Some(_) => Err(StoreError::Conflict),
                        None => Ok(match canned_conflict(reply, all, Some(max)) {
                            Some(conflict) => Err(Some(conflict)),
                            None => Ok(Decision::Put),
                        }),
                    }
                })
                .map_ok(|outcome| match outcome {
                    Ok(()) | Err(None) => Ok(()),
                    Err(Some(conflict)) => Err(conflict),
                });
            self.transaction_audited(create, refused_reply).await
        })
        .await
    }

    async fn update_canned_reply(
        &self,
        reply: &CannedReply,
    ) -> StoreResult<Result<(), CannedConflict>> {
        timed("scylla", "update_canned_reply", async {
            let update = self.change_canned(&reply.project_id, Some(reply), |all| {
                if !all.iter().any(|r| r.id == reply.id) {
                    return Err(StoreError::NotFound);
                }
                Ok(match canned_conflict(reply, all, None) {
                    Some(conflict) => Err(conflict),
                    None => Ok(Decision::Put),
                })
            });
            self.transaction_audited(update, refused_reply).await
        })
        .await
    }

    async fn delete_canned_reply(&self, project: &ProjectId, id: Uuid) -> StoreResult<()> {
        timed("scylla", "delete_canned_reply", async {
            let mut first = true;
            // Either way the reply is gone: deleted now, or by a round whose answer was lost.
            let delete = self
                .change_canned(project, None, |all| {
                    let again = !std::mem::replace(&mut first, false);
                    match all.iter().any(|r| r.id == id) {
                        true => Ok(Ok(Decision::Delete(id))),
                        false if again => Ok(Err(())),
                        false => Err(StoreError::NotFound),
                    }
                })
                .map_ok(|_deleted| ());
            self.transaction_audited(delete, super::audit::refused)
                .await
        })
        .await
    }

    async fn list_canned_replies(&self, project: &ProjectId) -> StoreResult<Vec<CannedReply>> {
        timed("scylla", "list_canned_replies", async {
            let (replies, _) = self
                .canned_census(&self.canned.select, project.as_str())
                .await?;
            Ok(replies)
        })
        .await
    }
}
