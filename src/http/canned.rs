//! The canned-replies API (the project's admin key, like the other project settings): list,
//! create, read, change and delete the saved replies the inbox inserts with `/`.
//!
//! The server keeps bodies with their placeholders; the inbox fills them in when an agent
//! inserts a reply (see `docs/web.md`), because only it knows the agent's display name.

use fleety_actors::audit::{self, AuditBy, AuditTarget};
use std::sync::Arc;

use fleety_actors::canned::{
    CannedBody, CannedConflict, CannedName, CannedReply, Shortcut, MAX_PER_PROJECT,
};
use fleety_actors::domain::Project;
use fleety_actors::events::rfc3339;
use fleety_actors::store::StoreError;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::reply::Response;

use super::error::{json, respond};
use super::{ApiError, Ctx};

/// A saved reply.
#[derive(Serialize, ToSchema)]
#[schema(as = CannedReply)]
pub struct CannedReplyView<'a> {
    id: Uuid,
    #[schema(value_type = CannedName)]
    name: &'a str,
    /// What an agent types after `/` in the composer to pick it.
    #[schema(value_type = Shortcut)]
    shortcut: &'a str,
    /// The text, with `{{visitor.name}}` and `{{agent.name}}` where the inbox puts the
    /// visitor's and the agent's names.
    #[schema(value_type = CannedBody)]
    body: &'a str,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
    #[schema(value_type = String, format = DateTime)]
    updated_at: String,
}

impl<'a> CannedReplyView<'a> {
    pub(super) fn new(r: &'a CannedReply) -> Self {
        Self {
            id: r.id,
            name: r.name.as_str(),
            shortcut: r.shortcut.as_str(),
            body: r.body.as_str(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// The project's canned replies, by shortcut.
#[derive(Serialize, ToSchema)]
pub struct CannedReplyList<'a> {
    canned_replies: Vec<CannedReplyView<'a>>,
}

/// A new canned reply.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCannedReply {
    #[schema(value_type = CannedName)]
    name: String,
    /// Lowercase letters, digits, `-` and `_`; a leading `/` is dropped. Unique in the project.
    #[schema(value_type = Shortcut)]
    shortcut: String,
    /// Placeholders: `{{visitor.name}}` and `{{agent.name}}`; any other is refused.
    #[schema(value_type = CannedBody)]
    body: String,
}

/// What to change on a canned reply; what is left out stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CannedReplyChange {
    #[schema(value_type = Option<CannedName>)]
    name: Option<String>,
    #[schema(value_type = Option<Shortcut>)]
    shortcut: Option<String>,
    #[schema(value_type = Option<CannedBody>)]
    body: Option<String>,
}

fn bad(e: fleety_actors::domain::InvalidValue) -> ApiError {
    ApiError::bad_request(e.0)
}

fn refused(conflict: CannedConflict, shortcut: &Shortcut) -> ApiError {
    match conflict {
        CannedConflict::Full => ApiError::conflict(format!(
            "a project may have at most {MAX_PER_PROJECT} canned replies; delete one first"
        )),
        CannedConflict::ShortcutTaken => ApiError::conflict(format!(
            "another canned reply has the shortcut /{}; choose another",
            shortcut.as_str()
        )),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("canned reply not found")
}

/// The project's reply `id`, read from the store.
async fn find(ctx: &Ctx, project: &Project, id: &str) -> Result<CannedReply, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    let all = ctx.canned_store.list_canned_replies(&project.id).await?;
    all.into_iter().find(|r| r.id == id).ok_or_else(not_found)
}

/// GET /v1/projects/{projectId}/canned-replies
pub async fn list(project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let mut all = ctx.canned_store.list_canned_replies(&project.id).await?;
            all.sort_by(|a, b| a.shortcut.as_str().cmp(b.shortcut.as_str()));
            let canned_replies = all.iter().map(CannedReplyView::new).collect();
            Ok(json(StatusCode::OK, &CannedReplyList { canned_replies }))
        }
        .await,
    )
}

/// A reply as an audit record's target.
fn target(r: &CannedReply) -> AuditTarget {
    AuditTarget::new("canned_reply", r.id).named(r.name.as_str())
}

/// POST /v1/projects/{projectId}/canned-replies
pub async fn create(
    project: Arc<Project>,
    who: AuditBy,
    ctx: Arc<Ctx>,
    req: NewCannedReply,
) -> Response {
    respond(
        async {
            let now = ctx.clock.now();
            let reply = CannedReply {
                id: Uuid::new_v4(),
                project_id: project.id.clone(),
                name: CannedName::parse(&req.name).map_err(bad)?,
                shortcut: Shortcut::parse(&req.shortcut).map_err(bad)?,
                body: CannedBody::parse(&req.body).map_err(bad)?,
                created_at: now,
                updated_at: now,
            };
            // The store checks the cap and the shortcut and inserts in one step, so racing
            // creates never pass either.
            let record = who
                .record(&project.id, now, "canned_reply.created")
                .target(target(&reply))
                .with("shortcut", &reply.shortcut)
                .with("body", &reply.body);
            let create = ctx
                .canned_store
                .create_canned_reply(&reply, MAX_PER_PROJECT);
            audit::recorded(Some(record), create)
                .await?
                .map_err(|c| refused(c, &reply.shortcut))?;
            Ok(json(StatusCode::CREATED, &CannedReplyView::new(&reply)))
        }
        .await,
    )
}

/// GET /v1/projects/{projectId}/canned-replies/{replyId}
pub async fn get(id: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let r = find(&ctx, &project, &id).await?;
            Ok(json(StatusCode::OK, &CannedReplyView::new(&r)))
        }
        .await,
    )
}

/// PATCH /v1/projects/{projectId}/canned-replies/{replyId}
pub async fn update(
    id: String,
    project: Arc<Project>,
    who: AuditBy,
    ctx: Arc<Ctx>,
    req: CannedReplyChange,
) -> Response {
    respond(
        async {
            let mut r = find(&ctx, &project, &id).await?;
            let before = r.clone();
            if let Some(name) = &req.name {
                r.name = CannedName::parse(name).map_err(bad)?;
            }
            if let Some(shortcut) = &req.shortcut {
                r.shortcut = Shortcut::parse(shortcut).map_err(bad)?;
            }
            if let Some(body) = &req.body {
                r.body = CannedBody::parse(body).map_err(bad)?;
            }
            r.updated_at = ctx.clock.now().max(r.updated_at);
            let record = who
                .record(&project.id, ctx.clock.now(), "canned_reply.changed")
                .target(target(&r))
                .changed("name", &before.name, &r.name)
                .changed("shortcut", &before.shortcut, &r.shortcut)
                .changed("body", &before.body, &r.body);
            let record = record.has_changes().then_some(record);
            match audit::recorded(record, ctx.canned_store.update_canned_reply(&r)).await {
                // Deleted since it was read.
                Err(StoreError::NotFound) => return Err(not_found()),
                other => other?.map_err(|c| refused(c, &r.shortcut))?,
            }
            Ok(json(StatusCode::OK, &CannedReplyView::new(&r)))
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/canned-replies/{replyId}
pub async fn delete(id: String, project: Arc<Project>, who: AuditBy, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
            let record = who
                .record(&project.id, ctx.clock.now(), "canned_reply.deleted")
                .target(AuditTarget::new("canned_reply", id));
            let delete = ctx.canned_store.delete_canned_reply(&project.id, id);
            match audit::recorded(Some(record), delete).await {
                Err(StoreError::NotFound) => return Err(not_found()),
                other => other?,
            }
            Ok(json(
                StatusCode::OK,
                &super::Done::new("Canned reply deleted"),
            ))
        }
        .await,
    )
}
