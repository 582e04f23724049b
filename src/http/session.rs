//! `POST /v1/init-session`: anonymous session tokens for the public widget.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use fleety_actors::domain::ProjectId;
use fleety_actors::events::rfc3339;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use warp::reply::Response;

use super::{cors_origin, json, parse_body, with_cors, with_limit_headers, ApiError, Client, Ctx};

#[derive(Deserialize)]
pub struct InitSession {
    project_id: String,
}

#[derive(Serialize)]
struct Session {
    token: String,
    expires_at: String,
    project_id: String,
}

/// POST /v1/init-session
pub async fn init(ctx: Arc<Ctx>, client: Client, body: Bytes) -> Result<Response, Infallible> {
    let decision = ctx.session_limit.enabled().then(|| ctx.session_limit.check(client.ip));
    let mut cors = None;
    let result = async {
        if decision.is_some_and(|d| !d.allowed) {
            return Err(ApiError::rate_limited());
        }
        let req: InitSession = parse_body(&client, &body)?;
        let id = ProjectId::parse(&req.project_id).map_err(|_| ApiError::not_found("project not found"))?;
        let project = ctx.projects.get(&id).await?.ok_or_else(|| ApiError::not_found("project not found"))?;
        cors = cors_origin(&project, &client)?;
        let issued = ctx.tokens.issue_session(&project.id);
        tracing::debug!(project = %project.id, session = %issued.session_id, "session started");
        Ok(json(
            StatusCode::OK,
            &Session { token: issued.token, expires_at: rfc3339(issued.expires_at), project_id: project.id.to_string() },
        ))
    }
    .await;
    Ok(with_limit_headers(with_cors(result.unwrap_or_else(ApiError::into_response), cors), decision))
}
