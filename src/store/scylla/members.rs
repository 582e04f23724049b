//! Members and their sessions (`cql/0012_members_and_sessions.cql`).
//!
//! A create claims the member's email in `member_emails` with a lightweight transaction, then
//! its id in `members` the same way, and gives the email back if the id was taken: two nodes
//! adding one email at once leave one member. A change applies only to a row that exists and
//! never touches the email. Sessions are plain writes with a TTL ending at their maximum age.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleety_actors::domain::ProjectId;
use fleety_actors::member::{Member, MemberSession, MemberState, Role};
use fleety_actors::store::{timed, MemberStore, StoreError, StoreResult};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;

use super::{prepare, ScyllaStore, LIST_DEADLINE};

const MEMBER_COLS: &str = "project_id, member_id, email, name, avatar_url, role, state, \
                           password_hash, created_at, updated_at";
const SESSION_COLS: &str =
    "project_id, member_id, session_id, created_at, last_seen_at, expires_at, user_agent, ip";

pub(super) struct Statements {
    claim_email: PreparedStatement,
    release_email: PreparedStatement,
    select_email: PreparedStatement,
    insert_member: PreparedStatement,
    update_member: PreparedStatement,
    select_member: PreparedStatement,
    select_members: PreparedStatement,
    upsert_session: PreparedStatement,
    select_session: PreparedStatement,
    select_sessions: PreparedStatement,
    delete_session: PreparedStatement,
    delete_sessions: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String, idempotent| prepare(session, consistency, cql, idempotent);
        Ok(Self {
            claim_email: p(format!("INSERT INTO {ks}.member_emails (project_id, email, member_id) VALUES (?, ?, ?) IF NOT EXISTS"), false).await?,
            release_email: p(format!("DELETE FROM {ks}.member_emails WHERE project_id = ? AND email = ? IF member_id = ?"), false).await?,
            select_email: p(format!("SELECT member_id FROM {ks}.member_emails WHERE project_id = ? AND email = ?"), true).await?,
            insert_member: p(format!("INSERT INTO {ks}.members ({MEMBER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            update_member: p(format!("UPDATE {ks}.members SET name = ?, avatar_url = ?, role = ?, state = ?, password_hash = ?, updated_at = ? WHERE project_id = ? AND member_id = ? IF EXISTS"), false).await?,
            select_member: p(format!("SELECT {MEMBER_COLS} FROM {ks}.members WHERE project_id = ? AND member_id = ?"), true).await?,
            select_members: p(format!("SELECT {MEMBER_COLS} FROM {ks}.members WHERE project_id = ?"), true).await?,
            upsert_session: p(format!("INSERT INTO {ks}.member_sessions ({SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"), true).await?,
            select_session: p(format!("SELECT {SESSION_COLS} FROM {ks}.member_sessions WHERE project_id = ? AND member_id = ? AND session_id = ?"), true).await?,
            select_sessions: p(format!("SELECT {SESSION_COLS} FROM {ks}.member_sessions WHERE project_id = ? AND member_id = ?"), true).await?,
            delete_session: p(format!("DELETE FROM {ks}.member_sessions WHERE project_id = ? AND member_id = ? AND session_id = ?"), true).await?,
            delete_sessions: p(format!("DELETE FROM {ks}.member_sessions WHERE project_id = ? AND member_id = ?"), true).await?,
        })
    }
}

#[derive(SerializeRow)]
struct MemberValues<'a> {
    project_id: &'a str,
    member_id: Uuid,
    email: &'a str,
    name: &'a str,
    avatar_url: Option<&'a str>,
    role: &'a str,
    state: &'a str,
    password_hash: &'a str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl<'a> From<&'a Member> for MemberValues<'a> {
    fn from(m: &'a Member) -> Self {
        Self {
            project_id: m.project_id.as_str(),
            member_id: m.id,
            email: &m.email,
            name: &m.name,
            avatar_url: m.avatar_url.as_deref(),
            role: m.role.as_str(),
            state: m.state.as_str(),
            password_hash: &m.password_hash,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(DeserializeRow)]
struct MemberRow {
    project_id: String,
    member_id: Uuid,
    email: Option<String>,
    name: Option<String>,
    avatar_url: Option<String>,
    role: Option<String>,
    state: Option<String>,
    password_hash: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt members row: {what}"))
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;

    fn try_from(r: MemberRow) -> StoreResult<Self> {
        Ok(Member {
            id: r.member_id,
            project_id: ProjectId::parse(&r.project_id).map_err(|_| corrupt("project id"))?,
            email: r.email.ok_or_else(|| corrupt("email"))?,
            name: r.name.unwrap_or_default(),
            avatar_url: r.avatar_url,
            role: r
                .role
                .as_deref()
                .and_then(Role::parse)
                .ok_or_else(|| corrupt("role"))?,
            state: r
                .state
                .as_deref()
                .and_then(MemberState::parse)
                .ok_or_else(|| corrupt("state"))?,
            password_hash: r.password_hash.unwrap_or_default(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(SerializeRow)]
struct SessionValues<'a> {
    project_id: &'a str,
    member_id: Uuid,
    session_id: &'a str,
    created_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    user_agent: Option<&'a str>,
    ip: Option<&'a str>,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

#[derive(DeserializeRow)]
struct SessionRow {
    project_id: String,
    member_id: Uuid,
    session_id: String,
    created_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    user_agent: Option<String>,
    ip: Option<String>,
}

impl TryFrom<SessionRow> for MemberSession {
    type Error = StoreError;

    fn try_from(r: SessionRow) -> StoreResult<Self> {
        Ok(MemberSession {
            id: r.session_id,
            project_id: ProjectId::parse(&r.project_id)
                .map_err(|_| StoreError::Internal("corrupt member_sessions row".into()))?,
            member_id: r.member_id,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
            user_agent: r.user_agent,
            ip: r.ip,
        })
    }
}

impl ScyllaStore {
    async fn email_owner(&self, project: &str, email: &str) -> StoreResult<Option<Uuid>> {
        let row = self
            .one_row::<(Option<Uuid>,)>(&self.members.select_email, (project, email))
            .await?;
        Ok(row.and_then(|(id,)| id))
    }
}

#[async_trait]
impl MemberStore for ScyllaStore {
    async fn create_member(&self, m: &Member) -> StoreResult<()> {
        let create = async {
            let (project, email) = (m.project_id.as_str(), m.email.as_str());
            let claimed = self
                .claim(&self.members.claim_email, (project, email, m.id))
                .await?;
            // A claim that reports not applied may be our own earlier attempt's, whose
            // answer was lost.
            if !claimed && self.email_owner(project, email).await? != Some(m.id) {
                return Err(StoreError::Conflict);
            }
            if !self
                .claim(&self.members.insert_member, MemberValues::from(m))
                .await?
            {
                // The id is another member's: give the email back.
                self.claim(&self.members.release_email, (project, email, m.id))
                    .await?;
                return Err(StoreError::Conflict);
            }
            Ok(())
        };
        let audited = self.transaction_audited(create, super::audit::refused);
        timed("scylla", "create_member", audited).await
    }

    async fn update_member(&self, m: &Member) -> StoreResult<()> {
        timed("scylla", "update_member", async {
            let values = (
                m.name.as_str(),
                m.avatar_url.as_deref(),
                m.role.as_str(),
                m.state.as_str(),
                m.password_hash.as_str(),
                m.updated_at,
                m.project_id.as_str(),
                m.id,
            );
            let update = async {
                match self.claim(&self.members.update_member, values).await? {
                    true => Ok(()),
                    false => Err(StoreError::NotFound),
                }
            };
            self.transaction_audited(update, super::audit::refused)
                .await
        })
        .await
    }

    async fn get_member(&self, project: &ProjectId, id: Uuid) -> StoreResult<Option<Member>> {
        timed("scylla", "get_member", async {
            self.one_row::<MemberRow>(&self.members.select_member, (project.as_str(), id))
                .await?
                .map(Member::try_from)
                .transpose()
        })
        .await
    }

    async fn member_by_email(
        &self,
        project: &ProjectId,
        email: &str,
    ) -> StoreResult<Option<Member>> {
        timed("scylla", "member_by_email", async {
            match self.email_owner(project.as_str(), email).await? {
                // A claimed email whose member row is not written yet (or whose create
                // failed) names nobody.
                Some(id) => Ok(self
                    .get_member(project, id)
                    .await?
                    .filter(|m| m.email == email)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_members(&self, project: &ProjectId) -> StoreResult<Vec<Member>> {
        timed("scylla", "list_members", async {
            let read =
                self.all_rows::<MemberRow>(&self.members.select_members, (project.as_str(),));
            let rows = tokio::time::timeout(LIST_DEADLINE, read)
                .await
                .map_err(|_| StoreError::Unavailable("listing members took too long".into()))??;
            rows.into_iter().map(Member::try_from).collect()
        })
        .await
    }

    async fn put_member_session(&self, s: &MemberSession) -> StoreResult<()> {
        timed("scylla", "put_member_session", async {
            let left = (s.expires_at - Utc::now()).num_seconds();
            let values = SessionValues {
                project_id: s.project_id.as_str(),
                member_id: s.member_id,
                session_id: &s.id,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.expires_at,
                user_agent: s.user_agent.as_deref(),
                ip: s.ip.as_deref(),
                // A TTL of 0 would mean forever; an ended session still gets a second.
                ttl: i32::try_from(left.max(1)).unwrap_or(i32::MAX),
            };
            self.write_audited(&self.members.upsert_session, values)
                .await
        })
        .await
    }

    async fn get_member_session(
        &self,
        project: &ProjectId,
        member: Uuid,
        id: &str,
    ) -> StoreResult<Option<MemberSession>> {
        timed("scylla", "get_member_session", async {
            let key = (project.as_str(), member, id);
            self.one_row::<SessionRow>(&self.members.select_session, key)
                .await?
                .map(MemberSession::try_from)
                .transpose()
        })
        .await
    }

    async fn list_member_sessions(
        &self,
        project: &ProjectId,
        member: Uuid,
    ) -> StoreResult<Vec<MemberSession>> {
        timed("scylla", "list_member_sessions", async {
            let key = (project.as_str(), member);
            let rows = self
                .all_rows::<SessionRow>(&self.members.select_sessions, key)
                .await?;
            rows.into_iter().map(MemberSession::try_from).collect()
        })
        .await
    }

    async fn delete_member_session(
        &self,
        project: &ProjectId,
        member: Uuid,
        id: &str,
    ) -> StoreResult<()> {
        timed("scylla", "delete_member_session", async {
            // Without a transaction a DELETE cannot tell whether the row was there; read first.
            if self
                .get_member_session(project, member, id)
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound);
            }
            let key = (project.as_str(), member, id);
            self.write_audited(&self.members.delete_session, key).await
        })
        .await
    }

    async fn delete_member_sessions(
        &self,
        project: &ProjectId,
        member: Uuid,
    ) -> StoreResult<usize> {
        timed("scylla", "delete_member_sessions", async {
            let n = self.list_member_sessions(project, member).await?.len();
            // The whole partition, so a session written since the count ends too.
            self.write_audited(&self.members.delete_sessions, (project.as_str(), member))
                .await?;
            Ok(n)
        })
        .await
    }
}
