//! Agent and operator endpoints: project settings, the ticket listing, the inbox feed token
//! (agents' admin key) and project creation (the operator token).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use fleety_actors::domain::{Project, ProjectId, ProjectName, Slug, TicketStatus};
use fleety_actors::events::{rfc3339, TicketSummary};
use fleety_actors::store::{StoreError, TicketCursor, TicketQuery};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use warp::reply::Response;

use super::{cors_origin, json, parse_body, parse_project_id, with_cors, ApiError, Client, Ctx};
use crate::projects::parse_origins;

/// Runs a request that needs the project's admin key (sent as a bearer token).
pub async fn agent<F>(ctx: &Ctx, project_id: &str, client: &Client, handle: F) -> Response
where
    F: AsyncFnOnce(Arc<Project>) -> Result<Response, ApiError>,
{
    let mut cors = None;
    let result = async {
        let id = parse_project_id(project_id)?;
        let project = ctx
            .projects
            .get(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("project not found"))?;
        // Settle CORS first, so an agent dashboard on an allowed origin can read auth errors too.
        cors = cors_origin(&project, client)?;
        if client.bearer.is_none() {
            return Err(ApiError::unauthorized(
                "this endpoint needs the project's admin key as a bearer token",
            ));
        }
        if !client.is_admin_of(&project) {
            return Err(ApiError::forbidden("not the admin key of this project"));
        }
        handle(project).await
    }
    .await;
    with_cors(result.unwrap_or_else(ApiError::into_response), cors)
}

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
pub async fn get(
    ctx: Arc<Ctx>,
    project_id: String,
    client: Client,
) -> Result<Response, Infallible> {
    Ok(agent(&ctx, &project_id, &client, async |project| {
        Ok(json(StatusCode::OK, &ProjectView::new(&project)))
    })
    .await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    name: Option<String>,
    allowed_origins: Option<Vec<String>>,
}

/// PATCH /v1/projects/{projectId}
pub async fn update(
    ctx: Arc<Ctx>,
    project_id: String,
    client: Client,
    body: Bytes,
) -> Result<Response, Infallible> {
    Ok(agent(&ctx, &project_id, &client, async |project| {
        let req: UpdateProject = parse_body(&client, &body)?;
        let mut next = (*project).clone();
        if let Some(name) = req.name {
            next.name = ProjectName::parse(&name)
                .map_err(|e| ApiError::bad_request(e.0))?
                .as_str()
                .to_owned();
        }
        if let Some(origins) = req.allowed_origins {
            next.allowed_origins =
                parse_origins(origins.iter().map(String::as_str)).map_err(ApiError::bad_request)?;
        }
        let saved = ctx.projects.update(next).await?;
        Ok(json(StatusCode::OK, &ProjectView::new(&saved)))
    })
    .await)
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
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

/// GET /v1/projects/{projectId}/tickets?status=&limit=&cursor=
pub async fn list_tickets(
    ctx: Arc<Ctx>,
    project_id: String,
    query: ListQuery,
    client: Client,
) -> Result<Response, Infallible> {
    Ok(agent(&ctx, &project_id, &client, async |project| {
        let status = match query.status.as_deref() {
            Some(s) => Some(TicketStatus::parse(s).map_err(|e| ApiError::bad_request(e.0))?),
            None => None,
        };
        let limit = query.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::bad_request("limit must be between 1 and 100"));
        }
        let after = match query.cursor.as_deref() {
            Some(raw) => Some(
                decode_cursor(raw)
                    .ok_or_else(|| ApiError::bad_request("cursor: not a cursor from this API"))?,
            ),
            None => None,
        };
        let query = TicketQuery {
            status,
            after,
            limit,
        };
        let page = ctx.system.tickets.list(&project.id, &query).await?;
        let body = TicketList {
            tickets: page.tickets.iter().map(TicketSummary::new).collect(),
            next_cursor: page.next.as_ref().map(encode_cursor),
        };
        Ok(json(StatusCode::OK, &body))
    })
    .await)
}

#[derive(Serialize)]
struct FeedToken {
    token: String,
    expires_at: String,
    url: String,
}

/// POST /v1/projects/{projectId}/feed-token: a one-minute token for the inbox socket, so the
/// long-lived admin key never appears in a URL.
pub async fn feed_token(
    ctx: Arc<Ctx>,
    project_id: String,
    client: Client,
) -> Result<Response, Infallible> {
    Ok(agent(&ctx, &project_id, &client, async |project| {
        let issued = ctx.tokens.issue_feed(&project.id);
        let url = format!("/v1/projects/{}/feed?token={}", project.id, issued.token);
        Ok(json(
            StatusCode::OK,
            &FeedToken {
                token: issued.token,
                expires_at: rfc3339(issued.expires_at),
                url,
            },
        ))
    })
    .await)
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
pub async fn create(ctx: Arc<Ctx>, client: Client, body: Bytes) -> Result<Response, Infallible> {
    let result = async {
        let expected = ctx.settings.operator_token.expose();
        if expected.is_empty() {
            return Err(ApiError::forbidden(
                "the operator API is disabled; set FLEETY_OPERATOR_TOKEN to enable it",
            ));
        }
        let Some(presented) = client.bearer.as_deref() else {
            return Err(ApiError::unauthorized(
                "this endpoint needs the operator token as a bearer token",
            ));
        };
        if !crate::auth::secret_matches(presented, expected) {
            return Err(ApiError::forbidden("invalid operator token"));
        }
        let req: CreateProject = parse_body(&client, &body)?;
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
    .await;
    Ok(result.unwrap_or_else(ApiError::into_response))
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
