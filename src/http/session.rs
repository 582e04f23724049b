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
    let decision = ctx
        .session_limit
        .enabled()
        .then(|| ctx.session_limit.check(client.ip));
    let mut cors = None;
    let result = async {
        if decision.is_some_and(|d| !d.allowed) {
            metrics::counter!("fleety_rate_limited_total", "limiter" => "session").increment(1);
            return Err(ApiError::rate_limited());
        }
        let req: InitSession = parse_body(&client, &body)?;
        let id = ProjectId::parse(&req.project_id)
            .map_err(|_| ApiError::not_found("project not found"))?;
        let project = ctx
            .projects
            .get(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("project not found"))?;
        cors = cors_origin(&project, &client)?;
        let issued = ctx.tokens.issue_session(&project.id);
        tracing::debug!(project = %project.id, session = %issued.session_id, "session started");
        Ok(json(
            StatusCode::OK,
            &Session {
                token: issued.token,
                expires_at: rfc3339(issued.expires_at),
                project_id: project.id.to_string(),
            },
        ))
    }
    .await;
    Ok(with_limit_headers(
        with_cors(result.unwrap_or_else(ApiError::into_response), cors),
        decision,
    ))
}

#[derive(Serialize)]
struct SessionInfo {
    session_id: String,
    project_id: String,
    expires_at: String,
}

/// GET /v1/session: describes the bearer's own session token, so a widget can tell whether it
/// still holds a valid one (401 when it is missing, expired, tampered with or foreign).
pub async fn describe(ctx: Arc<Ctx>, client: Client) -> Result<Response, Infallible> {
    let mut cors = None;
    let result = async {
        let token = client.bearer.as_deref().ok_or_else(|| {
            ApiError::unauthorized("a session token is required as a bearer token")
        })?;
        let claims = ctx
            .tokens
            .verify_session_token(token)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let id =
            ProjectId::parse(&claims.pid).map_err(|_| ApiError::unauthorized("invalid token"))?;
        let project = ctx
            .projects
            .get(&id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid token"))?;
        cors = cors_origin(&project, &client)?;
        let expires_at = chrono::DateTime::from_timestamp(claims.exp, 0)
            .map(rfc3339)
            .unwrap_or_default();
        Ok(json(
            StatusCode::OK,
            &SessionInfo {
                session_id: claims.sub,
                project_id: claims.pid,
                expires_at,
            },
        ))
    }
    .await;
    Ok(with_cors(
        result.unwrap_or_else(ApiError::into_response),
        cors,
    ))
}
