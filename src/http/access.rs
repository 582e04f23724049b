//! Who may call what. Each guard is a filter that `routes.rs` puts on a route after its path and
//! method: it checks the caller and yields what the handler may act on, or refuses with an
//! `{"error": ...}` answer.
//!
//! | guard | who passes | the handler gets |
//! |---|---|---|
//! | [`public`] | anyone, counted per client IP unless they hold the project's admin key or are its signed-in member; on a ticket's routes, a visitor with the project's session token is counted per session instead | [`Visitor`] |
//! | [`agent`] | the project's admin key, or a member of at least the route's role | the project |
//! | [`member`] | the same as [`agent`] | the project and the [`Principal`] |
//! | [`session`] | a visitor's session token, as a bearer token | [`Session`] |
//! | [`feed`] | a feed token, in the query | the project |
//! | [`operator`] | the operator token, as a bearer token | nothing |
//! | [`session_limit`] | anyone, counted per client IP by the session limiter | nothing |
//!
//! A member is signed in by a session secret as a bearer token, or by the session cookie; a
//! member's personal API token, as a bearer token, acts as them too, and a `read` token is
//! refused (403) on anything but GET and HEAD. A
//! request that changes something and is signed in by the cookie alone must carry the
//! session's CSRF token in `X-CSRF-Token`, or it is refused (403). On the public routes a
//! cookie without its CSRF token is simply not looked at: the widget is a visitor there, even
//! in a browser where an agent is signed in.
//!
//! Every guard that learns the project checks the browser origin against the project's allowed
//! origins. The rate-limit standing and the CORS verdict go into the request's [`Seal`], and
//! the server puts them on whatever answer the request gets, errors included, so a browser can
//! read a 429 or a 404 too.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use fleety_actors::chat::SessionKey;
use fleety_actors::domain::{Project, ProjectId};
use http::header::HeaderValue;
use warp::path::FullPath;
use warp::{Filter, Rejection};

use super::ratelimit::{Decision, RateLimiter};
use super::{ApiError, Ctx};
use crate::accounts::SignedIn;
use crate::api_tokens::TokenCaller;
use crate::server::RequestMeta;
use fleety_actors::member::{Member, Role, TokenScope};

/// A caller of a public endpoint, once counted and checked.
pub struct Visitor {
    pub project: Arc<Project>,
    /// Holds the project's admin key or is its signed-in member: may act as an agent, and is
    /// not counted.
    pub admin: bool,
    /// The member who calls (signed in, or by a personal token): an agent's message names
    /// them.
    pub member: Option<Box<Member>>,
    /// The personal API token the member calls by, if they do.
    pub token: Option<uuid::Uuid>,
    /// The visitor's session, when the bearer is a valid session token of the project.
    pub session: Option<Box<crate::auth::Claims>>,
    /// The ticket key the request carries, unchecked: [`super::ticket_access`] checks it
    /// against the ticket.
    pub ticket_key: Option<String>,
}

/// Who calls a project's agent routes.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The project's admin key: the owner's bootstrap credential, which may do everything.
    AdminKey,
    /// A signed-in member.
    Member(Box<SignedIn>),
    /// A member's personal API token.
    Token(Box<TokenCaller>),
}

impl Principal {
    /// The key acts as an owner.
    pub fn role(&self) -> Role {
        match self {
            Principal::AdminKey => Role::Owner,
            Principal::Member(m) => m.member.role,
            Principal::Token(t) => t.member.role,
        }
    }

    /// The signed-in member, with their session; `None` for the admin key and for a token,
    /// which have no session.
    pub fn member(&self) -> Option<&SignedIn> {
        match self {
            Principal::AdminKey | Principal::Token(_) => None,
            Principal::Member(m) => Some(m.as_ref()),
        }
    }

    /// The member who calls, signed in or by a token; `None` for the admin key.
    pub fn person(&self) -> Option<&Member> {
        match self {
            Principal::AdminKey => None,
            Principal::Member(m) => Some(&m.member),
            Principal::Token(t) => Some(&t.member),
        }
    }
}

/// The least role a route's callers need; `None` for routes that are not a project's agents'.
pub fn least_role(access: super::route::Access) -> Option<Role> {
    use super::route::Access;
    match access {
        Access::Agent => Some(Role::Agent),
        Access::Admin => Some(Role::Admin),
        Access::Owner => Some(Role::Owner),
        Access::Anyone
        | Access::Public
        | Access::SessionLimit
        | Access::Session
        | Access::CountedSession
        | Access::Feed
        | Access::Operator
        | Access::MailServer
        | Access::SignIn => None,
    }
}

/// A visitor's chat session, from a valid session token.
pub struct Session {
    pub key: SessionKey,
    pub project: Arc<Project>,
    /// The token's claims, checked.
    pub claims: crate::auth::Claims,
}

/// A guard's refusal; `recover` turns it into its answer.
#[derive(Debug)]
pub struct Refused(pub ApiError);

impl warp::reject::Reject for Refused {}

fn refuse(e: ApiError) -> Rejection {
    warp::reject::custom(Refused(e))
}

/// The headers a request's answer gets from its guard.
#[derive(Debug, Default)]
pub struct Seal {
    pub(crate) rate: OnceLock<Decision>,
    /// The request concerns a project: its answer varies with the browser origin.
    pub(crate) scoped: AtomicBool,
    /// The browser origin, allowed by the project, echoed in `Access-Control-Allow-Origin`.
    pub(crate) allowed_origin: OnceLock<HeaderValue>,
    /// The browser origin the project refused: its 403 (and only that answer) is made readable
    /// to the page, so a widget embedded on the wrong site can say why it cannot work.
    pub(crate) refused_origin: OnceLock<HeaderValue>,
}

impl RequestMeta {
    /// Whether the caller holds this project's admin key.
    pub fn is_admin_of(&self, project: &Project) -> bool {
        self.bearer
            .as_deref()
            .is_some_and(|key| crate::auth::key_matches(key, &project.admin_key_hash))
    }

    /// Counts the request against `limiter` (when it is on), and refuses it over the limit.
    fn count(&self, limiter: &RateLimiter, name: &'static str) -> Result<(), ApiError> {
        self.count_by(limiter, name, |l| l.check(self.ip))
    }

    fn count_by(
        &self,
        limiter: &RateLimiter,
        name: &'static str,
        check: impl FnOnce(&RateLimiter) -> Decision,
    ) -> Result<(), ApiError> {
        if !limiter.enabled() {
            return Ok(());
        }
        let decision = check(limiter);
        let _ = self.seal.rate.set(decision);
        if decision.allowed {
            Ok(())
        } else {
            metrics::counter!("fleety_rate_limited_total", "limiter" => name).increment(1);
            Err(ApiError::rate_limited())
        }
    }

    /// Notes that the request concerns `project`, and whether its browser origin may see the
    /// answer. Requests without `Origin` are not cross-origin browser requests and pass.
    fn note_origin(&self, project: &Project) -> bool {
        self.seal.scoped.store(true, Ordering::Relaxed);
        let Some(origin) = self.origin.as_deref() else {
            return true;
        };
        let allowed = crate::projects::allows(project, origin);
        if let Ok(value) = HeaderValue::from_str(origin) {
            let _ = match allowed {
                true => self.seal.allowed_origin.set(value),
                false => self.seal.refused_origin.set(value),
            };
        }
        if !allowed {
            warn_refused_origin(&project.id.to_string(), origin);
        }
        allowed
    }

    /// Refuses a browser origin the project does not allow.
    pub fn check_origin(&self, project: &Project) -> Result<(), ApiError> {
        if self.note_origin(project) {
            Ok(())
        } else {
            Err(ApiError::forbidden("origin not allowed for this project"))
        }
    }
}

/// Logs a warning that `project` refused a page on `origin`, at most once a minute for each
/// pair (and for at most a thousand pairs a minute), so an operator learns of a widget
/// embedded on a site that is not allowed without a flood of lines from its visitors. Whether
/// it logged.
pub fn warn_refused_origin(project: &str, origin: &str) -> bool {
    static SEEN: LazyLock<moka::sync::Cache<(String, String), ()>> = LazyLock::new(|| {
        moka::sync::Cache::builder()
            .max_capacity(1_000)
            .time_to_live(std::time::Duration::from_secs(60))
            .build()
    });
    // A page's origin is short; anything longer is not a real browser's and is cut.
    let origin: String = origin.chars().take(200).collect();
    let first = SEEN
        .entry((project.to_owned(), origin.clone()))
        .or_insert(())
        .is_fresh();
    if first {
        tracing::warn!(
            project,
            %origin,
            "a browser page on an origin the project does not allow was refused; add the origin to the project's allowed_origins if the widget belongs there"
        );
    }
    first
}

pub fn with_ctx(ctx: &Arc<Ctx>) -> impl Filter<Extract = (Arc<Ctx>,), Error = Infallible> + Clone {
    let ctx = ctx.clone();
    warp::any().map(move || ctx.clone())
}

/// The request's [`RequestMeta`], as the server read it. A request that did not come through
/// the server is refused.
pub fn meta() -> impl Filter<Extract = (Arc<RequestMeta>,), Error = Rejection> + Clone {
    warp::ext::get::<Arc<RequestMeta>>()
}

/// Matches the `{projectId}` segment of a route without extracting it: the route's guard reads
/// it, and hands the handler the project it names, checked.
pub fn project_id() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::param::<String>().map(|_| ()).untuple_one()
}

/// The project id in a path `/v1/{tickets,projects,kb}/{projectId}/...`.
fn path_project(path: &FullPath) -> &str {
    path.as_str().split('/').nth(3).unwrap_or("")
}

/// Runs a guard's check with the context and the request, turning a refusal into a rejection.
fn guard<T, F, Fut>(
    ctx: &Arc<Ctx>,
    check: F,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone
where
    T: Send,
    F: Fn(Arc<Ctx>, FullPath, Arc<RequestMeta>) -> Fut + Clone + Send + Sync,
    Fut: std::future::Future<Output = Result<T, ApiError>> + Send,
{
    with_ctx(ctx)
        .and(warp::path::full())
        .and(meta())
        .and_then(move |ctx, path, meta| {
            let checked = check.clone()(ctx, path, meta);
            async move { checked.await.map_err(refuse) }
        })
}

/// Anyone, for a widget's endpoints: counted against the client IP's limit unless they hold
/// the project's admin key, and from a browser only on one of the project's origins.
///
/// With `per_session` (a ticket's own routes), a caller holding a valid session token of the
/// project is counted per session by the visitor limiter instead: a widget's conversation
/// (reads, posts, read receipts for every agent reply, reconnects) then never spends the IP's
/// public budget, which colleagues behind one office address share.
pub fn public(
    ctx: &Arc<Ctx>,
    per_session: bool,
) -> impl Filter<Extract = (Visitor,), Error = Rejection> + Clone {
    guard(ctx, move |ctx, path, meta| async move {
        let project = match parse_project_id(path_project(&path)) {
            Ok(id) => ctx.projects.get(&id).await?,
            Err(_) => None,
        };
        // The origin's verdict first, so a refusal below is readable by an allowed page.
        let origin_allowed = project.as_ref().is_none_or(|p| meta.note_origin(p));
        // The admin key first: a request that holds it speaks for the project, not a member.
        let (admin, member, token) = match &project {
            Some(p) if meta.is_admin_of(p) => (true, None, None),
            Some(p) => match signed_in_quietly(&ctx, &meta, &p.id).await? {
                Some((m, token)) => (true, Some(Box::new(m)), token),
                None => (false, None, None),
            },
            None => (false, None, None),
        };
        let session = project.as_ref().and_then(|p| session_of(&ctx, &meta, p));
        if !admin {
            match session.as_ref().filter(|_| per_session) {
                Some(session) => meta.count_by(&ctx.visitor_limit, "visitor", |l| {
                    l.check_session(&session.sub)
                })?,
                None => meta.count(&ctx.public_limit, "public")?,
            }
        }
        let project = project.ok_or_else(|| ApiError::not_found("project not found"))?;
        if !origin_allowed {
            return Err(ApiError::forbidden("origin not allowed for this project"));
        }
        Ok(Visitor {
            project,
            admin,
            member,
            token,
            session: session.map(Box::new),
            ticket_key: meta.ticket_key.clone(),
        })
    })
}

/// The session of the request's bearer, when it is a valid session token of `project`. Any
/// other bearer (none, expired, forged, another project's) leaves the request counted per IP.
fn session_of(ctx: &Ctx, meta: &RequestMeta, project: &Project) -> Option<crate::auth::Claims> {
    let token = meta.bearer.as_deref()?;
    ctx.tokens.verify_session(token, &project.id).ok()
}

/// The public route's caller, when a member of `project`: by a session secret or a personal
/// token (a `read` one only to read) as the bearer, or by the cookie with its CSRF token.
/// Anything less is a visitor, not an error. With the token's id when a token it is.
async fn signed_in_quietly(
    ctx: &Ctx,
    meta: &RequestMeta,
    project: &ProjectId,
) -> Result<Option<(Member, Option<uuid::Uuid>)>, ApiError> {
    if let Some(bearer) = meta
        .bearer
        .as_deref()
        .filter(|b| crate::api_tokens::is_api_token(b))
    {
        let caller = ctx
            .accounts
            .token(project, bearer, Some(meta.ip.to_string()))
            .await?;
        let caller = caller.filter(|c| c.token.scope == TokenScope::Write || meta.safe);
        return Ok(caller.map(|c| (c.member, Some(c.token.id))));
    }
    let secret = match (&meta.bearer, &meta.cookie, &meta.csrf) {
        (Some(bearer), _, _) if crate::accounts::is_session_secret(bearer) => bearer,
        (None, Some(cookie), Some(csrf)) if crate::accounts::csrf_matches(cookie, csrf) => cookie,
        _ => return Ok(None),
    };
    Ok(ctx
        .accounts
        .session(project, secret)
        .await?
        .map(|s| (s.member, None)))
}

/// Who the request is, for `project`; `None` if it presents no credential at all.
pub async fn principal(
    ctx: &Ctx,
    meta: &RequestMeta,
    project: &Project,
) -> Result<Option<Principal>, ApiError> {
    let ended = || ApiError::unauthorized("not signed in: the session has ended or never was");
    if let Some(bearer) = meta.bearer.as_deref() {
        if crate::api_tokens::is_api_token(bearer) {
            let caller = ctx
                .accounts
                .token(&project.id, bearer, Some(meta.ip.to_string()))
                .await?;
            let caller = caller.ok_or_else(|| {
                ApiError::unauthorized(
                    "the token is revoked, its member deactivated, or it never was",
                )
            })?;
            if caller.token.scope == TokenScope::Read && !meta.safe {
                return Err(ApiError::forbidden(
                    "this token may only read (GET and HEAD); a write token may change things",
                ));
            }
            return Ok(Some(Principal::Token(Box::new(caller))));
        }
        if crate::accounts::is_session_secret(bearer) {
            let signed_in = ctx.accounts.session(&project.id, bearer).await?;
            let signed_in = signed_in.map(|s| Principal::Member(Box::new(s)));
            return signed_in.map(Some).ok_or_else(ended);
        }
        if !meta.is_admin_of(project) {
            return Err(ApiError::forbidden("not the admin key of this project"));
        }
        return Ok(Some(Principal::AdminKey));
    }
    let Some(cookie) = meta.cookie.as_deref() else {
        return Ok(None);
    };
    let signed_in = ctx
        .accounts
        .session(&project.id, cookie)
        .await?
        .ok_or_else(ended)?;
    // A browser sends the cookie with any request to this server, a forged one from another
    // site too; only our own page knows the token.
    let csrf_ok = meta
        .csrf
        .as_deref()
        .is_some_and(|t| crate::accounts::csrf_matches(cookie, t));
    if !meta.safe && !csrf_ok {
        return Err(ApiError::forbidden(
            "a request signed in by the session cookie must carry its X-CSRF-Token",
        ));
    }
    Ok(Some(Principal::Member(Box::new(signed_in))))
}

/// The project's agents: its admin key, or a signed-in member whose role is at least `least`.
pub fn agent(
    ctx: &Arc<Ctx>,
    least: Role,
) -> impl Filter<Extract = (Arc<Project>,), Error = Rejection> + Clone {
    member(ctx, least).map(|project, _principal: Principal| project)
}

/// [`agent`], handing the handler the caller too.
pub fn member(
    ctx: &Arc<Ctx>,
    least: Role,
) -> impl Filter<Extract = (Arc<Project>, Principal), Error = Rejection> + Clone {
    guard(ctx, move |ctx, path, meta| async move {
        meta.seal.scoped.store(true, Ordering::Relaxed);
        let id = parse_project_id(path_project(&path))?;
        let project = ctx.projects.get(&id).await?;
        let project = project.ok_or_else(|| ApiError::not_found("project not found"))?;
        // Origin first, so an agent dashboard on an allowed origin can read auth errors too.
        meta.check_origin(&project)?;
        let Some(principal) = principal(&ctx, &meta, &project).await? else {
            return Err(ApiError::unauthorized(
                "this endpoint needs the project's admin key or a member's session as a bearer token, or the session cookie",
            ));
        };
        if principal.role() < least {
            return Err(ApiError::forbidden(match least {
                Role::Owner => "only the project's owners may do this",
                _ => "only the project's owners and admins may do this",
            }));
        }
        Ok((project, principal))
    })
    .untuple_one()
}

/// A sign-in: anyone, on an allowed origin of an existing project. Guessing is braked by the
/// sign-in's own throttle, per account and per client.
pub fn sign_in(
    ctx: &Arc<Ctx>,
) -> impl Filter<Extract = (Arc<Project>,), Error = Rejection> + Clone {
    guard(ctx, |ctx, path, meta| async move {
        meta.seal.scoped.store(true, Ordering::Relaxed);
        let id = parse_project_id(path_project(&path))?;
        let project = ctx.projects.get(&id).await?;
        let project = project.ok_or_else(|| ApiError::not_found("project not found"))?;
        meta.check_origin(&project)?;
        Ok(project)
    })
}

/// A visitor with a valid session token, for the chat endpoints.
pub fn session(ctx: &Arc<Ctx>) -> impl Filter<Extract = (Session,), Error = Rejection> + Clone {
    guard(ctx, |ctx, _path, meta| async move {
        meta.seal.scoped.store(true, Ordering::Relaxed);
        let token = meta.bearer.as_deref().ok_or_else(|| {
            ApiError::unauthorized("missing bearer token; get one from POST /v1/init-session")
        })?;
        let claims = ctx
            .tokens
            .verify_session_token(token)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let id =
            ProjectId::parse(&claims.pid).map_err(|_| ApiError::unauthorized("invalid token"))?;
        let project = ctx.projects.get(&id).await?;
        let project = project
            .ok_or_else(|| ApiError::unauthorized("the token's project no longer exists"))?;
        meta.check_origin(&project)?;
        let key = SessionKey {
            project: project.id.clone(),
            session: claims.sub.clone(),
        };
        Ok(Session {
            key,
            project,
            claims,
        })
    })
}

/// An agent's inbox socket, with a short-lived feed token in the query (a browser cannot set
/// headers on a WebSocket, and the admin key must never appear in a URL).
/// The member session a feed socket was opened for: `None` for the admin key's.
pub type FeedSession = Option<(uuid::Uuid, String)>;

pub fn feed(
    ctx: &Arc<Ctx>,
) -> impl Filter<Extract = (Arc<Project>, FeedSession), Error = Rejection> + Clone {
    warp::query::<super::ws::FeedQuery>()
        .and(with_ctx(ctx))
        .and(warp::path::full())
        .and(meta())
        .and_then(
            |query: super::ws::FeedQuery, ctx: Arc<Ctx>, path: FullPath, meta: Arc<RequestMeta>| async move {
                let token = query.token.as_deref();
                check_feed(&ctx, &path, &meta, token).await.map_err(refuse)
            },
        )
        .untuple_one()
}

async fn check_feed(
    ctx: &Ctx,
    path: &FullPath,
    meta: &RequestMeta,
    token: Option<&str>,
) -> Result<(Arc<Project>, FeedSession), ApiError> {
    let id = parse_project_id(path_project(path))?;
    let project = ctx.projects.get(&id).await?;
    let project = project.ok_or_else(|| ApiError::not_found("project not found"))?;
    let token = token.ok_or_else(|| {
        ApiError::unauthorized(
            "token is required; get one from POST /v1/projects/{projectId}/feed-token",
        )
    })?;
    let claims = ctx
        .tokens
        .verify_feed(token, &project.id)
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    meta.check_origin(&project)?;
    let session = crate::auth::feed_session(&claims.sub);
    // A session that ended in the minute since its token was issued opens nothing.
    if let Some((member, id)) = &session {
        if !ctx.accounts.session_alive(&project.id, *member, id).await? {
            return Err(ApiError::unauthorized(
                "the session has ended; sign in again",
            ));
        }
    }
    Ok((project, session))
}

/// The operator, holding `FLEETY_OPERATOR_TOKEN`, for creating projects.
pub fn operator(ctx: &Arc<Ctx>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    guard(ctx, |ctx, _path, meta| async move {
        let expected = ctx.settings.auth.operator_token.expose();
        if expected.is_empty() {
            return Err(ApiError::forbidden(
                "the operator API is disabled; set FLEETY_OPERATOR_TOKEN to enable it",
            ));
        }
        let Some(presented) = meta.bearer.as_deref() else {
            return Err(ApiError::unauthorized(
                "this endpoint needs the operator token as a bearer token",
            ));
        };
        if !crate::auth::secret_matches(presented, expected) {
            return Err(ApiError::forbidden("invalid operator token"));
        }
        Ok(())
    })
    .untuple_one()
}

/// The mail server handing over a reply by email, holding `FLEETY_INBOUND_EMAIL_SECRET` as a
/// bearer token or as the password of basic authentication (any user name), which is what
/// mail servers' HTTP hooks and providers' forwards can send.
pub fn mail_server(ctx: &Arc<Ctx>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    guard(ctx, |ctx, _path, meta| async move {
        let expected = ctx.settings.email.inbound_secret.expose();
        if expected.is_empty() || !ctx.replies.enabled() {
            return Err(ApiError::forbidden(
                "reply by email is off; set FLEETY_REPLY_DOMAIN and FLEETY_INBOUND_EMAIL_SECRET to enable it",
            ));
        }
        let presented = meta.bearer.as_deref().or(meta.basic_password.as_deref());
        if !presented.is_some_and(|p| crate::auth::secret_matches(p, expected)) {
            return Err(ApiError::unauthorized(
                "this endpoint needs the inbound email secret, as a bearer token or a basic password",
            ));
        }
        Ok(())
    })
    .untuple_one()
}

/// Anyone, counted per client IP by the session limiter: for `POST /v1/init-session`, whose
/// project (and so its origin check) comes in the body.
pub fn session_limit(ctx: &Arc<Ctx>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    guard(ctx, |ctx, _path, meta| async move {
        meta.seal.scoped.store(true, Ordering::Relaxed);
        meta.count(&ctx.session_limit, "session")
    })
    .untuple_one()
}

pub fn parse_project_id(raw: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(raw).map_err(|_| ApiError::not_found("project not found"))
}

#[cfg(test)]
mod tests {
    use super::warn_refused_origin;

    #[test]
    fn a_refused_origin_is_logged_once_a_minute_per_project() {
        let project = "warn-test-project";
        assert!(warn_refused_origin(project, "https://a.example"));
        assert!(!warn_refused_origin(project, "https://a.example"));
        assert!(warn_refused_origin(project, "https://b.example"));
        assert!(warn_refused_origin("warn-test-other", "https://a.example"));
    }
}
