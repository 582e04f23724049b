//! Members and their sessions (`cql/0012_members_and_sessions.cql`), their invitation and
//! password-reset links (`cql/0016_member_links.cql`), and their personal API tokens
//! (`cql/0017_api_tokens.cql`), and their second factor (`cql/0022_member_totp.cql`).
//!
//! A create claims the member's email in `member_emails` with a lightweight transaction, then
//! its id in `members` the same way, and gives the email back if the id was taken: two nodes
//! adding one email at once leave one member. A change applies only to a row that exists and
//! never touches the email. Sessions are plain writes with a TTL ending at their maximum age;
//! links too, with a TTL ending at their expiry, and deleting one is a lightweight transaction
//! so a link is used once. A token's last use and its revocation are lightweight transactions on a row that must
//! exist, so a use noted while the token is revoked cannot write it back. Every write of a
//! second factor is a lightweight transaction on the version it read.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleety_actors::domain::ProjectId;
use fleety_actors::member::{
    ApiToken, LinkKind, Member, MemberLink, MemberSession, MemberState, MemberTotp, Role,
    TokenScope, TotpChallenge,
};
use fleety_actors::store::{timed, MemberStore, StoreError, StoreResult};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;

use super::{prepare, ScyllaStore, LIST_DEADLINE};
const LINK_COLS: &str =
    "project_id, link_id, kind, email, role, member_id, created_by, created_at, expires_at";

const MEMBER_COLS: &str = "project_id, member_id, email, name, avatar_url, role, state, \
                           password_hash, created_at, updated_at";
const TOKEN_COLS: &str =
    "project_id, token_id, member_id, name, scope, secret_hash, created_at, last_used_at";
const TOTP_COLS: &str = "project_id, member_id, version, secret, enabled, last_step, \
                         recovery_hashes, challenge_hash, challenge_expires_at, \
                         challenge_failures, created_at, updated_at";
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
    pub(super) insert_link: PreparedStatement,
    select_link: PreparedStatement,
    select_links: PreparedStatement,
    delete_link: PreparedStatement,
    upsert_session: PreparedStatement,
    select_session: PreparedStatement,
    select_sessions: PreparedStatement,
    delete_session: PreparedStatement,
    delete_sessions: PreparedStatement,
    insert_token: PreparedStatement,
    select_token: PreparedStatement,
    select_tokens: PreparedStatement,
    touch_token: PreparedStatement,
    delete_token: PreparedStatement,
    insert_totp: PreparedStatement,
    update_totp: PreparedStatement,
    select_totp: PreparedStatement,
    delete_totp: PreparedStatement,
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
            insert_link: p(format!("INSERT INTO {ks}.member_links ({LINK_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"), true).await?,
            select_link: p(format!("SELECT {LINK_COLS} FROM {ks}.member_links WHERE project_id = ? AND link_id = ?"), true).await?,
            select_links: p(format!("SELECT {LINK_COLS} FROM {ks}.member_links WHERE project_id = ?"), true).await?,
            delete_link: p(format!("DELETE FROM {ks}.member_links WHERE project_id = ? AND link_id = ? IF EXISTS"), false).await?,
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
            insert_token: p(format!("INSERT INTO {ks}.api_tokens ({TOKEN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            select_token: p(format!("SELECT {TOKEN_COLS} FROM {ks}.api_tokens WHERE project_id = ? AND token_id = ?"), true).await?,
            select_tokens: p(format!("SELECT {TOKEN_COLS} FROM {ks}.api_tokens WHERE project_id = ?"), true).await?,
            touch_token: p(format!("UPDATE {ks}.api_tokens SET last_used_at = ? WHERE project_id = ? AND token_id = ? IF EXISTS"), false).await?,
            delete_token: p(format!("DELETE FROM {ks}.api_tokens WHERE project_id = ? AND token_id = ? IF EXISTS"), false).await?,
            insert_totp: p(format!("INSERT INTO {ks}.member_totp ({TOTP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            update_totp: p(format!("UPDATE {ks}.member_totp SET version = ?, secret = ?, enabled = ?, last_step = ?, recovery_hashes = ?, challenge_hash = ?, challenge_expires_at = ?, challenge_failures = ?, created_at = ?, updated_at = ? WHERE project_id = ? AND member_id = ? IF version = ?"), false).await?,
            select_totp: p(format!("SELECT {TOTP_COLS} FROM {ks}.member_totp WHERE project_id = ? AND member_id = ?"), true).await?,
            delete_totp: p(format!("DELETE FROM {ks}.member_totp WHERE project_id = ? AND member_id = ? IF version = ?"), false).await?,
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

#[derive(SerializeRow)]
struct TokenValues<'a> {
    project_id: &'a str,
    token_id: Uuid,
    member_id: Uuid,
    name: &'a str,
    scope: &'a str,
    secret_hash: &'a str,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
}

#[derive(DeserializeRow)]
struct TokenRow {
    project_id: String,
    token_id: Uuid,
    member_id: Option<Uuid>,
    name: Option<String>,
    scope: Option<String>,
    secret_hash: Option<String>,
    created_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;

    fn try_from(r: TokenRow) -> StoreResult<Self> {
        let corrupt = |what: &str| StoreError::Internal(format!("corrupt api_tokens row: {what}"));
        Ok(ApiToken {
            id: r.token_id,
            project_id: ProjectId::parse(&r.project_id).map_err(|_| corrupt("project id"))?,
            member_id: r.member_id.ok_or_else(|| corrupt("member"))?,
            name: r.name.unwrap_or_default(),
            scope: r
                .scope
                .as_deref()
                .and_then(TokenScope::parse)
                .ok_or_else(|| corrupt("scope"))?,
            secret_hash: r.secret_hash.ok_or_else(|| corrupt("secret hash"))?,
            created_at: r.created_at.ok_or_else(|| corrupt("created_at"))?,
            last_used_at: r.last_used_at,
        })
    }
}

/// A link's row, living until the link expires.
pub(super) fn link_values(l: &MemberLink) -> LinkValues<'_> {
    let left = (l.expires_at - Utc::now()).num_seconds();
    LinkValues {
        project_id: l.project_id.as_str(),
        link_id: &l.id,
        kind: l.kind.as_str(),
        email: &l.email,
        role: l.role.as_str(),
        member_id: l.member_id,
        created_by: l.created_by,
        created_at: l.created_at,
        expires_at: l.expires_at,
        // A TTL of 0 would mean forever; an expired link still gets a second.
        ttl: i32::try_from(left.max(1)).unwrap_or(i32::MAX),
    }
}

#[derive(SerializeRow)]
struct TotpValues<'a> {
    project_id: &'a str,
    member_id: Uuid,
    version: Uuid,
    secret: &'a str,
    enabled: bool,
    last_step: i64,
    recovery_hashes: &'a [String],
    challenge_hash: Option<&'a str>,
    challenge_expires_at: Option<DateTime<Utc>>,
    challenge_failures: Option<i32>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl<'a> From<&'a MemberTotp> for TotpValues<'a> {
    fn from(t: &'a MemberTotp) -> Self {
        let c = t.challenge.as_ref();
        Self {
            project_id: t.project_id.as_str(),
            member_id: t.member_id,
            version: t.version,
            secret: &t.secret,
            enabled: t.enabled,
            last_step: t.last_step,
            recovery_hashes: &t.recovery_hashes,
            challenge_hash: c.map(|c| c.hash.as_str()),
            challenge_expires_at: c.map(|c| c.expires_at),
            challenge_failures: c.map(|c| i32::try_from(c.failures).unwrap_or(i32::MAX)),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(DeserializeRow)]
struct TotpRow {
    project_id: String,
    member_id: Uuid,
    version: Option<Uuid>,
    secret: Option<String>,
    enabled: Option<bool>,
    last_step: Option<i64>,
    recovery_hashes: Option<Vec<String>>,
    challenge_hash: Option<String>,
    challenge_expires_at: Option<DateTime<Utc>>,
    challenge_failures: Option<i32>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

impl TryFrom<TotpRow> for MemberTotp {
    type Error = StoreError;

    fn try_from(r: TotpRow) -> StoreResult<Self> {
        let corrupt = |what: &str| StoreError::Internal(format!("corrupt member_totp row: {what}"));
        let challenge = match (r.challenge_hash, r.challenge_expires_at) {
            (Some(hash), Some(expires_at)) => Some(TotpChallenge {
                hash,
                expires_at,
                failures: r.challenge_failures.unwrap_or(0).max(0) as u32,
            }),
            _ => None,
        };
        Ok(MemberTotp {
            project_id: ProjectId::parse(&r.project_id).map_err(|_| corrupt("project id"))?,
            member_id: r.member_id,
            version: r.version.ok_or_else(|| corrupt("version"))?,
            secret: r.secret.ok_or_else(|| corrupt("secret"))?,
            enabled: r.enabled.unwrap_or(false),
            last_step: r.last_step.unwrap_or(0),
            recovery_hashes: r.recovery_hashes.unwrap_or_default(),
            challenge,
            created_at: r.created_at.ok_or_else(|| corrupt("created_at"))?,
            updated_at: r.updated_at.ok_or_else(|| corrupt("updated_at"))?,
        })
    }
}

#[derive(SerializeRow)]
pub(super) struct LinkValues<'a> {
    project_id: &'a str,
    link_id: &'a str,
    kind: &'a str,
    email: &'a str,
    role: &'a str,
    member_id: Option<Uuid>,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    #[scylla(rename = "[ttl]")]
    ttl: i32,
}

#[derive(DeserializeRow)]
struct LinkRow {
    project_id: String,
    link_id: String,
    kind: Option<String>,
    email: Option<String>,
    role: Option<String>,
    member_id: Option<Uuid>,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl TryFrom<LinkRow> for MemberLink {
    type Error = StoreError;

    fn try_from(r: LinkRow) -> StoreResult<Self> {
        let bad = |what: &str| StoreError::Internal(format!("corrupt member_links row: {what}"));
        Ok(MemberLink {
            id: r.link_id,
            project_id: ProjectId::parse(&r.project_id).map_err(|_| bad("project id"))?,
            kind: r
                .kind
                .as_deref()
                .and_then(LinkKind::parse)
                .ok_or_else(|| bad("kind"))?,
            email: r.email.ok_or_else(|| bad("email"))?,
            role: r
                .role
                .as_deref()
                .and_then(Role::parse)
                .ok_or_else(|| bad("role"))?,
            member_id: r.member_id,
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
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

    async fn create_api_token(&self, t: &ApiToken) -> StoreResult<()> {
        timed("scylla", "create_api_token", async {
            let values = TokenValues {
                project_id: t.project_id.as_str(),
                token_id: t.id,
                member_id: t.member_id,
                name: &t.name,
                scope: t.scope.as_str(),
                secret_hash: &t.secret_hash,
                created_at: t.created_at,
                last_used_at: t.last_used_at,
            };
            let create = async {
                match self.claim(&self.members.insert_token, values).await? {
                    true => Ok(()),
                    false => Err(StoreError::Conflict),
                }
            };
            self.transaction_audited(create, super::audit::refused)
                .await
        })
        .await
    }

    async fn get_api_token(&self, project: &ProjectId, id: Uuid) -> StoreResult<Option<ApiToken>> {
        timed("scylla", "get_api_token", async {
            self.one_row::<TokenRow>(&self.members.select_token, (project.as_str(), id))
                .await?
                .map(ApiToken::try_from)
                .transpose()
        })
        .await
    }

    async fn list_api_tokens(&self, project: &ProjectId) -> StoreResult<Vec<ApiToken>> {
        timed("scylla", "list_api_tokens", async {
            let read = self.all_rows::<TokenRow>(&self.members.select_tokens, (project.as_str(),));
            let rows = tokio::time::timeout(LIST_DEADLINE, read)
                .await
                .map_err(|_| StoreError::Unavailable("listing tokens took too long".into()))??;
            rows.into_iter().map(ApiToken::try_from).collect()
        })
        .await
    }

    async fn touch_api_token(
        &self,
        project: &ProjectId,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        timed("scylla", "touch_api_token", async {
            let values = (at, project.as_str(), id);
            // The first use in an hour carries its `token.used` record.
            let touch = async {
                match self.claim(&self.members.touch_token, values).await? {
                    true => Ok(()),
                    false => Err(StoreError::NotFound),
                }
            };
            self.transaction_audited(touch, super::audit::refused).await
        })
        .await
    }

    async fn delete_api_token(&self, project: &ProjectId, id: Uuid) -> StoreResult<()> {
        timed("scylla", "delete_api_token", async {
            let delete = async {
                match self
                    .claim(&self.members.delete_token, (project.as_str(), id))
                    .await?
                {
                    true => Ok(()),
                    false => Err(StoreError::NotFound),
                }
            };
            self.transaction_audited(delete, super::audit::refused)
                .await
        })
        .await
    }

    async fn get_member_totp(
        &self,
        project: &ProjectId,
        member: Uuid,
    ) -> StoreResult<Option<MemberTotp>> {
        timed("scylla", "get_member_totp", async {
            self.one_row::<TotpRow>(&self.members.select_totp, (project.as_str(), member))
                .await?
                .map(MemberTotp::try_from)
                .transpose()
        })
        .await
    }

    async fn put_member_totp(&self, t: &MemberTotp, expected: Option<Uuid>) -> StoreResult<()> {
        timed("scylla", "put_member_totp", async {
            let change = async {
                let v = TotpValues::from(t);
                let applied = match expected {
                    None => self.claim(&self.members.insert_totp, v).await?,
                    Some(expected) => {
                        let values = (
                            v.version,
                            v.secret,
                            v.enabled,
                            v.last_step,
                            v.recovery_hashes,
                            v.challenge_hash,
                            v.challenge_expires_at,
                            v.challenge_failures,
                            v.created_at,
                            v.updated_at,
                            v.project_id,
                            v.member_id,
                            expected,
                        );
                        self.claim(&self.members.update_totp, values).await?
                    }
                };
                match applied {
                    true => Ok(()),
                    false => Err(StoreError::Conflict),
                }
            };
            self.transaction_audited(change, super::audit::refused)
                .await
        })
        .await
    }

    async fn delete_member_totp(
        &self,
        project: &ProjectId,
        member: Uuid,
        expected: Uuid,
    ) -> StoreResult<()> {
        timed("scylla", "delete_member_totp", async {
            let change = async {
                let values = (project.as_str(), member, expected);
                if self.claim(&self.members.delete_totp, values).await? {
                    return Ok(());
                }
                match self.get_member_totp(project, member).await? {
                    None => Err(StoreError::NotFound),
                    Some(_) => Err(StoreError::Conflict),
                }
            };
            self.transaction_audited(change, super::audit::refused)
                .await
        })
        .await
    }

    async fn put_member_link(&self, l: &MemberLink) -> StoreResult<()> {
        timed("scylla", "put_member_link", async {
            self.write_audited(&self.members.insert_link, link_values(l))
                .await
        })
        .await
    }

    async fn get_member_link(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> StoreResult<Option<MemberLink>> {
        timed("scylla", "get_member_link", async {
            self.one_row::<LinkRow>(&self.members.select_link, (project.as_str(), id))
                .await?
                .map(MemberLink::try_from)
                .transpose()
        })
        .await
    }

    async fn list_member_links(&self, project: &ProjectId) -> StoreResult<Vec<MemberLink>> {
        timed("scylla", "list_member_links", async {
            let read = self.all_rows::<LinkRow>(&self.members.select_links, (project.as_str(),));
            let rows = tokio::time::timeout(LIST_DEADLINE, read)
                .await
                .map_err(|_| StoreError::Unavailable("listing links took too long".into()))??;
            rows.into_iter().map(MemberLink::try_from).collect()
        })
        .await
    }

    async fn delete_member_link(&self, project: &ProjectId, id: &str) -> StoreResult<()> {
        timed("scylla", "delete_member_link", async {
            let delete = async {
                match self
                    .claim(&self.members.delete_link, (project.as_str(), id))
                    .await?
                {
                    true => Ok(()),
                    false => Err(StoreError::NotFound),
                }
            };
            self.transaction_audited(delete, super::audit::refused)
                .await
        })
        .await
    }
}
