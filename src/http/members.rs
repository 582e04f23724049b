//! Members' endpoints: signing in and out, the caller's own identity and sessions, the
//! members of a project (owners and admins manage them; the operator may add them too), and
//! invitations and password resets (`crate::links`).
//!
//! Sign-in sets the session cookie (HttpOnly, SameSite=Strict, and Secure over HTTPS) and
//! answers the session's secret, for API clients that send it as a bearer token instead, and
//! its CSRF token, which the inbox sends with each request that changes something.

use std::sync::Arc;

use fleety_actors::domain::{Project, ProjectId};
use fleety_actors::events::rfc3339;
use fleety_actors::member::{Member, MemberLink, MemberSession, MemberState, Role};
use fleety_actors::store::StoreError;
use http::header::{HeaderValue, SET_COOKIE};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::reply::Response;

use fleety_actors::audit::{self, AuditActor, AuditBy, AuditRecord, AuditTarget};

use super::access::Principal;
use super::error::{json, respond};
use super::{ApiError, Ctx, Done};
use crate::accounts::{SignInError, COOKIE};
use crate::config::SecureCookies;
use crate::links::LinkError;
use crate::members::{MemberChange, MemberError, NewMember};
use crate::server::RequestMeta;
use crate::totp::{SecondFactor, SignedInStep};

impl From<MemberError> for ApiError {
    fn from(e: MemberError) -> Self {
        match e {
            MemberError::Invalid(why) => ApiError::bad_request(why),
            MemberError::Forbidden(why) => ApiError::forbidden(why),
            MemberError::NotFound => ApiError::not_found("no such member"),
            MemberError::Taken => ApiError::conflict("the project has a member with this email"),
            MemberError::Deactivated(why) => ApiError::conflict(why),
            MemberError::Store(e) => e.into(),
            MemberError::Internal(e) => ApiError::internal(e),
        }
    }
}

/// A member, as the API shows them: never their password hash.
#[derive(Serialize, ToSchema)]
#[schema(as = Member)]
pub struct MemberView {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub email: String,
    pub name: String,
    pub avatar_url: Option<String>,
    pub role: Role,
    pub state: MemberState,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        Self {
            id: m.id.to_string(),
            email: m.email.clone(),
            name: m.name.clone(),
            avatar_url: m.avatar_url.clone(),
            role: m.role,
            state: m.state,
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

/// An email and a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub email: String,
    pub password: String,
}

/// A new session.
#[derive(Serialize, ToSchema)]
pub struct SignedInView {
    pub member: MemberView,
    /// The session's secret: a bearer token for API clients. The inbox need not keep it; the
    /// cookie carries it.
    pub token: String,
    /// Send it in `X-CSRF-Token` with every request signed in by the cookie that changes
    /// something.
    pub csrf_token: String,
    /// When the session ends at the latest; unused for the idle timeout, it ends sooner.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
}

fn cookie(ctx: &Ctx, meta: &RequestMeta, value: &str, max_age: u64) -> HeaderValue {
    let secure = match ctx.settings.auth.secure_cookies {
        SecureCookies::Always => true,
        SecureCookies::Never => false,
        SecureCookies::Auto => meta.https,
    };
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    // The secret is base64url and the rest is ours: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

/// POST /v1/projects/{projectId}/sign-in
pub async fn sign_in(
    project: Arc<Project>,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: SignIn,
) -> Response {
    let signed = ctx
        .accounts
        .sign_in(
            &project.id,
            &body.email,
            &body.password,
            meta.ip,
            meta.user_agent.clone(),
        )
        .await;
    let new = match signed {
        Ok(SignedInStep::Session(new)) => new,
        Ok(SignedInStep::SecondFactor(challenge)) => {
            let view = SecondFactorNeeded {
                second_factor: "totp",
                challenge: challenge.token,
                expires_at: rfc3339(challenge.expires_at),
            };
            return json(StatusCode::ACCEPTED, &view);
        }
        Err(SignInError::Refused) => {
            // Written alone: a refusal changes nothing. Who was tried is the target; the
            // password never is.
            let email = fleety_actors::member::normalise_email(&body.email);
            let record = AuditRecord::new(
                &project.id,
                ctx.accounts.now(),
                AuditActor::Anonymous,
                Some(meta.ip.to_string()),
                "member.sign_in_failed",
            );
            let record = match email {
                Some(email) => record.target(AuditTarget::new("email", email)),
                None => record,
            };
            if let Err(e) = ctx.audit_store.record_audit(&record).await {
                tracing::warn!(error = %e, "recording a failed sign-in failed");
            }
            return ApiError::unauthorized("wrong email or password").into_response();
        }
        Err(e) => return sign_in_refusal(&ctx, &meta, e).await,
    };
    signed_in(&ctx, &meta, &new)
}

/// The answer to a sign-in step that opened no session.
async fn sign_in_refusal(ctx: &Ctx, meta: &RequestMeta, e: SignInError) -> Response {
    match e {
        // The password step records its own refusal, which names the email tried.
        SignInError::Refused => ApiError::unauthorized("wrong email or password").into_response(),
        SignInError::WrongCode(member) => {
            let record = AuditRecord::new(
                &member.project_id,
                ctx.accounts.now(),
                AuditActor::Anonymous,
                Some(meta.ip.to_string()),
                "member.second_factor_failed",
            )
            .target(crate::members::target(&member));
            if let Err(e) = ctx.audit_store.record_audit(&record).await {
                tracing::warn!(error = %e, "recording a failed second factor failed");
            }
            ApiError::unauthorized("wrong code").into_response()
        }
        SignInError::Expired => {
            ApiError::unauthorized("this sign-in has expired or was used: sign in again")
                .into_response()
        }
        SignInError::Throttled(wait) => {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many sign-in attempts; retry after the time in Retry-After",
            )
            .into_response();
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            resp
        }
        SignInError::Store(e) => ApiError::from(e).into_response(),
        SignInError::Internal(e) => ApiError::internal(e).into_response(),
    }
}

/// The password was right and the member has a second factor: finish with
/// `signInSecondFactor`.
#[derive(Serialize, ToSchema)]
pub struct SecondFactorNeeded {
    /// What to send next: `totp`, a code from the member's authenticator app (or one of their
    /// recovery codes).
    pub second_factor: &'static str,
    /// Single use; send it with the code.
    pub challenge: String,
    /// The code must come before this.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
}

/// The second step of a sign-in: the challenge and either a code or a recovery code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInSecondFactor {
    /// From the answer to `signIn`.
    #[schema(max_length = 100)]
    pub challenge: String,
    /// Six digits from the authenticator app.
    #[schema(max_length = 16)]
    pub code: Option<String>,
    /// One of the recovery codes; it works once.
    #[schema(max_length = 64)]
    pub recovery_code: Option<String>,
}

/// POST /v1/projects/{projectId}/sign-in/second-factor
pub async fn sign_in_second_factor(
    project: Arc<Project>,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: SignInSecondFactor,
) -> Response {
    if body.challenge.chars().count() > 100 {
        return ApiError::bad_request("challenge: at most 100 characters").into_response();
    }
    let factor = match (body.code, body.recovery_code) {
        (Some(code), None) if code.chars().count() <= 16 => SecondFactor::Code(code),
        (None, Some(code)) if code.chars().count() <= 64 => SecondFactor::RecoveryCode(code),
        (Some(_), None) => {
            return ApiError::bad_request("code: at most 16 characters").into_response()
        }
        (None, Some(_)) => {
            return ApiError::bad_request("recovery_code: at most 64 characters").into_response()
        }
        _ => return ApiError::bad_request("give either code or recovery_code").into_response(),
    };
    let signed = ctx
        .accounts
        .sign_in_second_factor(
            &project.id,
            &body.challenge,
            factor,
            meta.ip,
            meta.user_agent.clone(),
        )
        .await;
    match signed {
        Ok(new) => signed_in(&ctx, &meta, &new),
        Err(e) => sign_in_refusal(&ctx, &meta, e).await,
    }
}

/// The answer that opens a session: the member, the secret and its CSRF token, and the
/// cookie.
fn signed_in(ctx: &Ctx, meta: &RequestMeta, new: &crate::accounts::NewSession) -> Response {
    let view = SignedInView {
        member: MemberView::from(&new.member),
        csrf_token: crate::accounts::csrf_token(&new.secret),
        expires_at: rfc3339(new.session.expires_at),
        token: new.secret.clone(),
    };
    let mut resp = json(StatusCode::OK, &view);
    let max_age = ctx.settings.auth.member_session_max_age.as_secs();
    let set = cookie(ctx, meta, &new.secret, max_age);
    resp.headers_mut().insert(SET_COOKIE, set);
    resp
}

/// POST /v1/projects/{projectId}/sign-out
pub async fn sign_out(
    project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
) -> Response {
    if let Some(m) = principal.member() {
        let record = super::audit::by(&principal, &meta)
            .record(&project.id, ctx.accounts.now(), "member.signed_out")
            .target(crate::members::target(&m.member));
        let end = ctx
            .accounts
            .end_session(&project.id, m.member.id, &m.session.id);
        let ended = audit::recorded(Some(record), end).await;
        match ended {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    let mut resp = json(StatusCode::OK, &Done::new("signed out"));
    resp.headers_mut()
        .insert(SET_COOKIE, cookie(&ctx, &meta, "", 0));
    resp
}

/// Who the caller is.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// What the caller may do; the admin key acts as an owner.
    pub role: Role,
    /// The member who calls (signed in, or by a personal token); null for the admin key.
    pub member: Option<MemberView>,
    /// The session's CSRF token, for a signed-in member; null for the admin key and a token.
    pub csrf_token: Option<String>,
    /// Whether this server sends email (invitations, password resets). When false, the
    /// links those would carry are shown to copy and hand on.
    pub email_enabled: bool,
}

/// GET /v1/projects/{projectId}/me
pub async fn me(project: Arc<Project>, principal: Principal, ctx: Arc<Ctx>) -> Response {
    let me = Me {
        email_enabled: crate::mailer::enabled_for(&ctx.settings.email, &project.id),
        role: principal.role(),
        member: principal.person().map(MemberView::from),
        csrf_token: principal
            .member()
            .map(|m| crate::accounts::csrf_token(&m.secret)),
    };
    json(StatusCode::OK, &me)
}

/// One of the caller's sessions.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// The session's id (a digest of its secret, which cannot be recovered from it).
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The session this request is signed in with.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionView>,
}

fn session_view(s: &MemberSession, current: &str) -> SessionView {
    SessionView {
        id: s.id.clone(),
        created_at: rfc3339(s.created_at),
        last_seen_at: rfc3339(s.last_seen_at),
        expires_at: rfc3339(s.expires_at),
        user_agent: s.user_agent.clone(),
        ip: s.ip.clone(),
        current: s.id == current,
    }
}

/// GET /v1/projects/{projectId}/me/sessions
pub async fn sessions(project: Arc<Project>, principal: Principal, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            // The admin key is no member and has no sessions.
            let Some(me) = principal.member() else {
                return Ok(json(
                    StatusCode::OK,
                    &SessionList {
                        sessions: Vec::new(),
                    },
                ));
            };
            let now = ctx.accounts.now();
            let mut sessions = ctx
                .accounts
                .store()
                .list_member_sessions(&project.id, me.member.id)
                .await?;
            let idle = chrono::Duration::from_std(ctx.accounts.policy.idle).unwrap_or_default();
            sessions.retain(|s| now < s.expires_at && now - s.last_seen_at < idle);
            sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at));
            let sessions = sessions
                .iter()
                .map(|s| session_view(s, &me.session.id))
                .collect();
            Ok(json(StatusCode::OK, &SessionList { sessions }))
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/me/sessions/{sessionId}
pub async fn revoke_session(
    id: String,
    project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
) -> Response {
    respond(
        async {
            let gone = || ApiError::not_found("no such session");
            let well_formed = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
            let Some(me) = principal.member().filter(|_| well_formed) else {
                return Err(gone());
            };
            // The session's id is a digest of its secret: the record names the member only.
            let record = super::audit::by(&principal, &meta)
                .record(&project.id, ctx.accounts.now(), "member.session_ended")
                .target(crate::members::target(&me.member));
            let id = id.to_ascii_lowercase();
            let end = ctx.accounts.end_session(&project.id, me.member.id, &id);
            let deleted = audit::recorded(Some(record), end).await;
            match deleted {
                Ok(()) => Ok(json(StatusCode::OK, &Done::new("session ended"))),
                Err(StoreError::NotFound) => Err(gone()),
                Err(e) => Err(e.into()),
            }
        }
        .await,
    )
}

/// A member to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// Unique within the project; compared without regard to case.
    #[schema(format = "email", max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// At least 10 characters, of at least two kinds (lower case, upper case, digits,
    /// others); at most 256 bytes.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
    /// `agent` when left out. Only owners add owners and admins.
    pub role: Option<Role>,
    /// An http or https URL.
    #[schema(format = "uri", max_length = 2048)]
    pub avatar_url: Option<String>,
}

/// A change to a member; fields left out stay as they are.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ChangeMember {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// An http or https URL; an empty text removes the avatar.
    #[schema(max_length = 2048)]
    pub avatar_url: Option<String>,
    /// Only owners give or change the owner and admin roles.
    pub role: Option<Role>,
    /// `active` or `deactivated`; deactivating ends the member's sessions.
    pub state: Option<MemberState>,
    /// A new password, which ends the member's sessions: the same rule as a new member's.
    #[schema(min_length = 10, max_length = 256)]
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberList {
    /// By name.
    pub members: Vec<MemberView>,
}

fn parse_member_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(raw).map_err(|_| ApiError::not_found("no such member"))
}

/// The project's member `raw` (an id), or 404.
pub(super) async fn member_of(
    ctx: &Ctx,
    project: &ProjectId,
    raw: &str,
) -> Result<Member, ApiError> {
    let id = parse_member_id(raw)?;
    let member = ctx.accounts.store().get_member(project, id).await?;
    member.ok_or_else(|| ApiError::not_found("no such member"))
}

async fn list_of(ctx: &Ctx, project: &ProjectId) -> Result<Response, ApiError> {
    let mut members = ctx.accounts.store().list_members(project).await?;
    members.sort_by(|a, b| a.name.cmp(&b.name).then(a.email.cmp(&b.email)));
    let members = members.iter().map(MemberView::from).collect();
    Ok(json(StatusCode::OK, &MemberList { members }))
}

/// GET /v1/projects/{projectId}/members
pub async fn list(project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(list_of(&ctx, &project.id).await)
}

async fn add_to(
    ctx: &Ctx,
    project: &ProjectId,
    body: AddMember,
    by: Role,
    who: &AuditBy,
) -> Result<Response, ApiError> {
    let new = NewMember {
        email: body.email,
        name: body.name,
        password: body.password,
        role: body.role.unwrap_or(Role::Agent),
        avatar_url: body.avatar_url,
    };
    let member = crate::members::add(
        ctx.accounts.store().as_ref(),
        project,
        new,
        by,
        who,
        ctx.accounts.now(),
    )
    .await?;
    Ok(json(StatusCode::CREATED, &MemberView::from(&member)))
}

/// POST /v1/projects/{projectId}/members
pub async fn add(
    project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: AddMember,
) -> Response {
    let who = super::audit::by(&principal, &meta);
    respond(add_to(&ctx, &project.id, body, principal.role(), &who).await)
}

/// GET /v1/projects/{projectId}/members/{memberId}
pub async fn get(id: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let member = member_of(&ctx, &project.id, &id).await?;
            Ok(json(StatusCode::OK, &MemberView::from(&member)))
        }
        .await,
    )
}

async fn apply(
    ctx: &Ctx,
    project: &ProjectId,
    id: &str,
    change: MemberChange,
    principal: &Principal,
    who: &AuditBy,
) -> Result<Response, ApiError> {
    let id = parse_member_id(id)?;
    // A token acts as its member: nobody changes their own role or state, by token either.
    let by_member = principal.person().map(|m| m.id);
    let member = crate::members::change(
        &ctx.accounts,
        project,
        id,
        change,
        principal.role(),
        by_member,
        who,
    )
    .await?;
    Ok(json(StatusCode::OK, &MemberView::from(&member)))
}

/// PATCH /v1/projects/{projectId}/members/{memberId}
pub async fn update(
    id: String,
    project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: ChangeMember,
) -> Response {
    let change = MemberChange {
        name: body.name,
        avatar_url: body
            .avatar_url
            .map(|url| Some(url).filter(|u| !u.is_empty())),
        role: body.role,
        state: body.state,
        password: body.password,
    };
    let who = super::audit::by(&principal, &meta);
    respond(apply(&ctx, &project.id, &id, change, &principal, &who).await)
}

async fn operator_project(ctx: &Ctx, raw: &str) -> Result<Arc<Project>, ApiError> {
    let id = super::access::parse_project_id(raw)?;
    ctx.projects
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("project not found"))
}

/// GET /v1/admin/projects/{projectId}/members
pub async fn operator_list(project: String, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let project = operator_project(&ctx, &project).await?;
            list_of(&ctx, &project.id).await
        }
        .await,
    )
}

/// POST /v1/admin/projects/{projectId}/members: the operator adds anyone, an owner first of
/// all.
pub async fn operator_add(
    project: String,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: AddMember,
) -> Response {
    respond(
        async {
            let project = operator_project(&ctx, &project).await?;
            let who = AuditBy {
                actor: AuditActor::Operator,
                ip: Some(meta.ip.to_string()),
            };
            add_to(&ctx, &project.id, body, Role::Owner, &who).await
        }
        .await,
    )
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Member(e) => e.into(),
            LinkError::Gone(why) => ApiError::new(StatusCode::GONE, why),
            LinkError::Full => ApiError::conflict(
                "the project has as many pending invitations as it may: revoke some first",
            ),
        }
    }
}

/// Someone to invite.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    /// Compared without regard to case. Inviting an address again replaces its earlier
    /// invitation.
    #[schema(format = "email", max_length = 254)]
    pub email: String,
    /// `agent` when left out. Only owners invite owners and admins.
    pub role: Option<Role>,
}

/// A pending invitation, as listed: never its token.
#[derive(Serialize, ToSchema)]
#[schema(as = Invitation)]
pub struct InvitationView {
    /// The invitation's id (a digest of its token, which cannot be recovered from it).
    pub id: String,
    pub email: String,
    pub role: Role,
    /// The member who invited, or null for the admin key.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub invited_by: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
}

impl From<&MemberLink> for InvitationView {
    fn from(l: &MemberLink) -> Self {
        Self {
            id: l.id.clone(),
            email: l.email.clone(),
            role: l.role,
            invited_by: l.created_by.map(|id| id.to_string()),
            created_at: rfc3339(l.created_at),
            expires_at: rfc3339(l.expires_at),
        }
    }
}

/// A new invitation and its link, shown this once.
#[derive(Serialize, ToSchema)]
pub struct IssuedInvitation {
    pub invitation: InvitationView,
    /// The single-use token; only its digest is stored.
    pub token: String,
    /// The inbox page that accepts it, relative to the server: hand it to the invitee.
    pub path: String,
    /// Whether the link was also emailed to the invitee (the server sends email).
    pub emailed: bool,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationList {
    /// Newest first; expired ones are left out.
    pub invitations: Vec<InvitationView>,
}

/// POST /v1/projects/{projectId}/invitations
pub async fn invite(
    project: Arc<Project>,
    principal: Principal,
    meta: Arc<RequestMeta>,
    ctx: Arc<Ctx>,
    body: NewInvitation,
) -> Response {
    respond(
        async {
            let by_member = principal.member().map(|m| m.member.id);
            let issued = crate::links::invite(
                &ctx.accounts,
                &project.id,
                &body.email,
                body.role.unwrap_or(Role::Agent),
                principal.role(),
                by_member,
                &super::audit::by(&principal, &meta),
            )
            .await?;
            let view = IssuedInvitation {
                invitation: InvitationView::from(&issued.link),
                path: issued.path(),
                emailed: issued.emailed,
                token: issued.token,
            };
            Ok(json(StatusCode::CREATED, &view))
        }
        .await,
    )
}

/// GET /v1/projects/{projectId}/invitations
pub async fn invitations(project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let links = crate::links::pending_invitations(&ctx.accounts, &project.id).await?;
            let invitations = links.iter().map(InvitationView::from).collect();
            Ok(json(StatusCode::OK, &InvitationList { invitations }))
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/invitations/{invitationId}
pub async fn revoke_invitation(
    id: String,
    project: Arc<Project>,
    principal: Principal,
    meta: Arc<RequestMeta>,
    ctx: Arc<Ctx>,
) -> Response {
    respond(
        async {
            let who = super::audit::by(&principal, &meta);
            crate::links::revoke_invitation(
                &ctx.accounts,
                &project.id,
                &id,
                principal.role(),
                &who,
            )
            .await
            .map_err(|e| match e {
                LinkError::Member(MemberError::NotFound) => {
                    ApiError::not_found("no such invitation")
                }
                e => e.into(),
            })?;
            Ok(json(StatusCode::OK, &Done::new("invitation revoked")))
        }
        .await,
    )
}

/// A link's token longer than the description allows is refused as such (400), not looked up.
fn link_token(token: &str) -> Result<(), ApiError> {
    if token.chars().count() > 100 {
        return Err(ApiError::bad_request("token: at most 100 characters"));
    }
    Ok(())
}

/// The password's length as the description states it, checked before the link is looked up,
/// so a body the description refuses is answered 400 whatever its token; its strength is
/// checked where it is set.
fn link_password(password: &str) -> Result<(), ApiError> {
    if !(10..=256).contains(&password.chars().count()) {
        return Err(ApiError::bad_request("password: 10 to 256 characters"));
    }
    Ok(())
}

/// An invitation accepted.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The token from the invitation's link.
    #[schema(max_length = 100)]
    pub token: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// The same rule as any member's: at least 10 characters, of at least two kinds.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
}

/// POST /v1/projects/{projectId}/join
pub async fn accept_invitation(
    project: Arc<Project>,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: AcceptInvitation,
) -> Response {
    let shape = link_token(&body.token)
        .and(link_password(&body.password))
        .and(match body.name.chars().count() {
            1..=100 => Ok(()),
            _ => Err(ApiError::bad_request("name: 1 to 100 characters")),
        });
    if let Err(e) = shape {
        return e.into_response();
    }
    let accepted = crate::links::accept(
        &ctx.accounts,
        &project.id,
        &body.token,
        &body.name,
        body.password,
        meta.ip,
        meta.user_agent.clone(),
    )
    .await;
    match accepted {
        Ok(new) => signed_in(&ctx, &meta, &new),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A reset asked for by address.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    #[schema(max_length = 254)]
    pub email: String,
}

/// POST /v1/projects/{projectId}/password-reset
pub async fn request_reset(
    project: Arc<Project>,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: ResetRequest,
) -> Response {
    // The shape is checked as the schema says; that tells nothing about accounts.
    if body.email.len() > fleety_actors::member::MAX_EMAIL {
        return ApiError::bad_request("email must be at most 254 bytes").into_response();
    }
    // Looked up after answering, so neither the answer nor its time tells whether the
    // address has an account. A bounded number at a time: beyond it a request is answered
    // and dropped, so a flood of them cannot pile up work.
    static IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);
    if let Ok(permit) = IN_FLIGHT.try_acquire() {
        tokio::spawn(async move {
            let made =
                crate::links::request_reset(&ctx.accounts, &project.id, &body.email, meta.ip).await;
            if let Err(e) = made {
                tracing::warn!(project = %project.id, error = ?e, "a password reset request failed");
            }
            drop(permit);
        });
    }
    json(
        StatusCode::ACCEPTED,
        &Done::new("if the address is a member's, a reset link is on its way"),
    )
}

/// A reset completed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteReset {
    /// The token from the reset link.
    #[schema(max_length = 100)]
    pub token: String,
    /// The same rule as any member's: at least 10 characters, of at least two kinds.
    #[schema(min_length = 10, max_length = 256)]
    pub password: String,
}

/// POST /v1/projects/{projectId}/password-reset/complete
pub async fn complete_reset(
    project: Arc<Project>,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: CompleteReset,
) -> Response {
    respond(
        async {
            link_token(&body.token)?;
            link_password(&body.password)?;
            let (token, password) = (&body.token, body.password);
            crate::links::complete_reset(&ctx.accounts, &project.id, token, password, meta.ip)
                .await?;
            Ok(json(
                StatusCode::OK,
                &Done::new("password changed; every session has ended: sign in again"),
            ))
        }
        .await,
    )
}

/// A reset link made for a member, shown this once.
#[derive(Serialize, ToSchema)]
pub struct IssuedReset {
    /// The single-use token; only its digest is stored.
    pub token: String,
    /// The inbox page that completes it, relative to the server: hand it to the member.
    pub path: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: String,
    /// Whether the link was also emailed to the member (the server sends email).
    pub emailed: bool,
}

/// POST /v1/projects/{projectId}/members/{memberId}/password-reset
pub async fn reset_member(
    id: String,
    project: Arc<Project>,
    principal: Principal,
    meta: Arc<RequestMeta>,
    ctx: Arc<Ctx>,
) -> Response {
    respond(
        async {
            let member = member_of(&ctx, &project.id, &id).await?;
            let by = (principal.role(), principal.member().map(|m| m.member.id));
            let who = super::audit::by(&principal, &meta);
            let issued = crate::links::reset_for(&ctx.accounts, &member, Some(by), &who).await?;
            let view = IssuedReset {
                path: issued.path(),
                expires_at: rfc3339(issued.link.expires_at),
                emailed: issued.emailed,
                token: issued.token,
            };
            Ok(json(StatusCode::CREATED, &view))
        }
        .await,
    )
}
