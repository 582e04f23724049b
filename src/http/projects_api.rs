//! Agent and operator endpoints: project settings, the ticket listing, the inbox feed token
//! (agents' admin key) and project creation (the operator token).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use fleety_actors::domain::{Project, ProjectId, ProjectName, Slug, TicketStatus};
use fleety_actors::events::{rfc3339, TicketSummary};
use fleety_actors::store::{StoreError, TicketCursor, TicketQuery};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use warp::reply::Response;

use super::{json, parse_body, respond, ApiError, Ctx, RequestMeta};
use crate::projects::parse_origins;

#[derive(Serialize)]
pub struct ProjectView<'a> {
    pub project_id: &'a str,
    pub name: &'a str,
    pub allowed_origins: &'a [String],
    pub created_at: String,
}

impl<'a> ProjectView<'a> {
    pub fn new(p: &'a Project) -> Self {
        Self {
            project_id: p.id.as_str(),
            name: &p.name,
            allowed_origins: &p.allowed_origins,
            created_at: rfc3339(p.created_at),
        }
    }
}

/// GET /v1/projects/{projectId}
pub async fn get(project: Arc<Project>) -> Response {
    json(StatusCode::OK, &ProjectView::new(&project))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    name: Option<String>,
    allowed_origins: Option<Vec<String>>,
}

/// PATCH /v1/projects/{projectId}
pub async fn update(
    project: Arc<Project>,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let req: UpdateProject = parse_body(&meta, &body)?;
            let mut next = (*project).clone();
            if let Some(name) = req.name {
                next.name = ProjectName::parse(&name)
                    .map_err(|e| ApiError::bad_request(e.0))?
                    .as_str()
                    .to_owned();
            }
            if let Some(origins) = req.allowed_origins {
                next.allowed_origins = parse_origins(origins.iter().map(String::as_str))
                    .map_err(ApiError::bad_request)?;
            }
            let saved = ctx.projects.update(next).await?;
            Ok(json(StatusCode::OK, &ProjectView::new(&saved)))
        }
        .await,
    )
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    /// Only tickets whose title contains this, ignoring case.
    q: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct TicketList<'a> {
    tickets: Vec<TicketSummary<'a>>,
    next_cursor: Option<String>,
}

/// Cursors are opaque to clients: `<created_at ms>.<slug>`.
fn encode_cursor(c: &TicketCursor) -> String {
    format!("{}.{}", c.created_at.timestamp_millis(), c.slug)
}

fn decode_cursor(raw: &str) -> Option<TicketCursor> {
    let (ms, slug) = raw.split_once('.')?;
    let created_at = DateTime::<Utc>::from_timestamp_millis(ms.parse().ok()?)?;
    Some(TicketCursor {
        created_at,
        slug: Slug::parse(slug).ok()?,
    })
}

/// GET /v1/projects/{projectId}/tickets?status=&q=&limit=&cursor=
pub async fn list_tickets(project: Arc<Project>, ctx: Arc<Ctx>, query: ListQuery) -> Response {
    respond(
        async {
            let status = match query.status.as_deref() {
                Some(s) => Some(TicketStatus::parse(s).map_err(|e| ApiError::bad_request(e.0))?),
                None => None,
            };
            let limit = query.limit.unwrap_or(50);
            if !(1..=100).contains(&limit) {
                return Err(ApiError::bad_request("limit must be between 1 and 100"));
            }
            let after =
                match query.cursor.as_deref() {
                    Some(raw) => Some(decode_cursor(raw).ok_or_else(|| {
                        ApiError::bad_request("cursor: not a cursor from this API")
                    })?),
                    None => None,
                };
            let title = match query.q.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(q) if q.chars().count() > 200 => {
                    return Err(ApiError::bad_request("q: at most 200 characters"))
                }
                Some(q) => Some(q.to_lowercase()),
            };
            let query = TicketQuery {
                status,
                title,
                search_scan: None,
                after,
                limit,
            };
            let page = ctx.system.tickets.list(&project.id, &query).await?;
            let body = TicketList {
                tickets: page.tickets.iter().map(TicketSummary::new).collect(),
                next_cursor: page.next.as_ref().map(encode_cursor),
            };
            Ok(json(StatusCode::OK, &body))
        }
        .await,
    )
}

#[derive(Serialize)]
struct FeedToken {
    token: String,
    expires_at: String,
    url: String,
}

/// POST /v1/projects/{projectId}/feed-token: a one-minute token for the inbox socket, so the
/// long-lived admin key never appears in a URL.
pub async fn feed_token(project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    let issued = ctx.tokens.issue_feed(&project.id);
    let url = format!("/v1/projects/{}/feed?token={}", project.id, issued.token);
    json(
        StatusCode::OK,
        &FeedToken {
            token: issued.token,
            expires_at: rfc3339(issued.expires_at),
            url,
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    name: String,
    project_id: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
}

#[derive(Serialize)]
pub struct CreatedProjectView<'a> {
    #[serde(flatten)]
    pub project: ProjectView<'a>,
    /// Shown once: only its hash is stored.
    pub admin_key: &'a str,
}

/// POST /v1/admin/projects (operator token)
pub async fn create(ctx: Arc<Ctx>, meta: Arc<RequestMeta>, body: Bytes) -> Response {
    respond(
        async {
            let req: CreateProject = parse_body(&meta, &body)?;
            let name = ProjectName::parse(&req.name).map_err(|e| ApiError::bad_request(e.0))?;
            let id = match req.project_id.as_deref() {
                Some(raw) => Some(ProjectId::parse(raw).map_err(|e| ApiError::bad_request(e.0))?),
                None => None,
            };
            let origins = parse_origins(req.allowed_origins.iter().map(String::as_str))
                .map_err(ApiError::bad_request)?;
            let created = match ctx.projects.create(id, name, origins).await {
                Err(StoreError::Conflict) => {
                    return Err(ApiError::conflict("a project with this id exists"))
                }
                other => other?,
            };
            tracing::info!(project = %created.project.id, "project created");
            Ok(json(
                StatusCode::CREATED,
                &CreatedProjectView {
                    project: ProjectView::new(&created.project),
                    admin_key: &created.admin_key,
                },
            ))
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cursors_round_trip_and_reject_garbage() {
        let c = TicketCursor {
            created_at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            slug: Slug::parse("swift-bear-053").unwrap(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("garbage"), None);
        assert_eq!(decode_cursor("12.not a slug"), None);
    }
}
