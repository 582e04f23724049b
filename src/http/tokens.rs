//! Personal API tokens' endpoints: a member makes, lists and revokes their own
//! (`/me/tokens`); owners and admins list and revoke a member's (`/members/{id}/tokens`), as
//! far as they may manage that member.
//!
//! Tokens are managed only from a signed-in session: a token cannot make or revoke tokens, so
//! a leaked one cannot mint itself successors. A token's secret is in the answer that makes
//! it and in no other.

use std::sync::Arc;

use fleety_actors::audit::{self, AuditBy, AuditTarget};
use fleety_actors::domain::{Project, ProjectId};
use fleety_actors::events::rfc3339;
use fleety_actors::member::{ApiToken, Member, TokenScope};
use fleety_actors::store::StoreError;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::reply::Response;

use super::access::Principal;
use super::error::{json, respond};
use super::{ApiError, Ctx, Done};
use crate::api_tokens::TokenError;
use crate::server::RequestMeta;

/// A personal API token, as listed: never its secret.
#[derive(Serialize, ToSchema)]
#[schema(as = ApiToken)]
pub struct TokenView {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    #[schema(value_type = String, format = Uuid)]
    pub member_id: String,
    pub name: String,
    pub scope: TokenScope,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// Written at most once a minute; null if never used.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<String>,
}

impl From<&ApiToken> for TokenView {
    fn from(t: &ApiToken) -> Self {
        Self {
            id: t.id.to_string(),
            member_id: t.member_id.to_string(),
            name: t.name.clone(),
            scope: t.scope,
            created_at: rfc3339(t.created_at),
            last_used_at: t.last_used_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    /// Newest first.
    pub tokens: Vec<TokenView>,
}

/// A token to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for, to recognise it in the list.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `read`: GET and HEAD only; `write`: whatever the member's role allows.
    pub scope: TokenScope,
}

/// A new token, with its secret: shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// Send it as `Authorization: Bearer <secret>`. It cannot be shown again.
    pub secret: String,
}

fn signed_in(principal: &Principal) -> Result<&Member, ApiError> {
    match principal {
        Principal::Member(m) => Ok(&m.member),
        Principal::Token(_) => Err(ApiError::forbidden(
            "tokens are managed from a signed-in session, not with a token",
        )),
        Principal::AdminKey => Err(ApiError::bad_request(
            "the admin key is no member and holds no personal tokens; sign in as a member",
        )),
    }
}

async fn tokens_of(
    ctx: &Ctx,
    project: &ProjectId,
    member: uuid::Uuid,
) -> Result<Response, ApiError> {
    let mut tokens: Vec<_> = ctx
        .accounts
        .store()
        .list_api_tokens(project)
        .await?
        .into_iter()
        .filter(|t| t.member_id == member)
        .collect();
    tokens.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    let tokens = tokens.iter().map(TokenView::from).collect();
    Ok(json(StatusCode::OK, &TokenList { tokens }))
}

fn parse_token_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(raw).map_err(|_| ApiError::not_found("no such token"))
}

/// Revokes `member`'s token `id`, recorded as done by `who`; another member's token is not
/// found.
async fn revoke(
    ctx: &Ctx,
    project: &ProjectId,
    member: uuid::Uuid,
    id: &str,
    who: AuditBy,
) -> Result<Response, ApiError> {
    let gone = || ApiError::not_found("no such token");
    let id = parse_token_id(id)?;
    let token = ctx.accounts.store().get_api_token(project, id).await?;
    let Some(token) = token.filter(|t| t.member_id == member) else {
        return Err(gone());
    };
    let record = who
        .record(project, ctx.clock.now(), "token.revoked")
        .target(AuditTarget::new("token", id).named(&token.name))
        .with("member", member);
    let delete = ctx.accounts.store().delete_api_token(project, id);
    match audit::recorded(Some(record), delete).await {
        Ok(()) => Ok(json(StatusCode::OK, &Done::new("token revoked"))),
        Err(StoreError::NotFound) => Err(gone()),
        Err(e) => Err(e.into()),
    }
}

/// GET /v1/projects/{projectId}/me/tokens
pub async fn list_mine(project: Arc<Project>, principal: Principal, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            match principal.person() {
                Some(me) => tokens_of(&ctx, &project.id, me.id).await,
                // The admin key is no member and has no tokens.
                None => Ok(json(StatusCode::OK, &TokenList { tokens: Vec::new() })),
            }
        }
        .await,
    )
}

/// POST /v1/projects/{projectId}/me/tokens
pub async fn create(
    _project: Arc<Project>,
    principal: Principal,
    meta: Arc<RequestMeta>,
    ctx: Arc<Ctx>,
    body: NewToken,
) -> Response {
    respond(
        async {
            let me = signed_in(&principal)?;
            let who = super::audit::by(&principal, &meta);
            let made = ctx
                .accounts
                .create_token(me, &body.name, body.scope, &who)
                .await;
            let (token, secret) = match made {
                Ok(made) => made,
                Err(TokenError::Invalid(why)) => return Err(ApiError::bad_request(why)),
                Err(TokenError::Full) => {
                    return Err(ApiError::conflict(
                        "a member holds 20 tokens at most; revoke one first",
                    ))
                }
                Err(TokenError::Store(e)) => return Err(e.into()),
            };
            let created = CreatedToken {
                token: TokenView::from(&token),
                secret,
            };
            Ok(json(StatusCode::CREATED, &created))
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/me/tokens/{tokenId}
pub async fn revoke_mine(
    id: String,
    project: Arc<Project>,
    principal: Principal,
    meta: Arc<RequestMeta>,
    ctx: Arc<Ctx>,
) -> Response {
    respond(
        async {
            let me = match &principal {
                // The admin key has no tokens to revoke.
                Principal::AdminKey => return Err(ApiError::not_found("no such token")),
                _ => signed_in(&principal)?,
            };
            let who = super::audit::by(&principal, &meta);
            revoke(&ctx, &project.id, me.id, &id, who).await
        }
        .await,
    )
}

/// The member `id`, if the caller may manage them (owners anyone, admins agents).
async fn managed(
    ctx: &Ctx,
    project: &ProjectId,
    id: &str,
    principal: &Principal,
) -> Result<Member, ApiError> {
    let member = super::members::member_of(ctx, project, id).await?;
    let by_member = principal.person().map(|p| p.id);
    if !crate::members::may_manage_member(principal.role(), by_member, &member) {
        return Err(ApiError::forbidden(
            "only owners see and revoke the tokens of owners and admins",
        ));
    }
    Ok(member)
}

/// GET /v1/projects/{projectId}/members/{memberId}/tokens
pub async fn list_members(
    id: String,
    project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
) -> Response {
    respond(
        async {
            let member = managed(&ctx, &project.id, &id, &principal).await?;
            tokens_of(&ctx, &project.id, member.id).await
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/members/{memberId}/tokens/{tokenId}
pub async fn revoke_members(
    id: String,
    token: String,
    project: Arc<Project>,
    principal: Principal,
    meta: Arc<RequestMeta>,
    ctx: Arc<Ctx>,
) -> Response {
    respond(
        async {
            let member = managed(&ctx, &project.id, &id, &principal).await?;
            let who = super::audit::by(&principal, &meta);
            revoke(&ctx, &project.id, member.id, &token, who).await
        }
        .await,
    )
}
