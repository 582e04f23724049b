//! `POST /v1/init-session`: anonymous session tokens for the public widget.

use std::sync::Arc;

use fleety_actors::domain::{Project, ProjectId};
use fleety_actors::events::rfc3339;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::reply::Response;

use super::access::Session;
use super::contacts::IdentityProof;
use super::error::{json, respond};
use super::{ApiError, Ctx};
use crate::server::RequestMeta;
use fleety_actors::contact::TicketContact;

/// The project a visitor's session belongs to, and who the visitor is when the customer's
/// backend vouches for them.
#[derive(Deserialize, ToSchema)]
pub struct InitSession {
    #[schema(value_type = ProjectId)]
    project_id: String,
    /// A known visitor: the session then names their verified contact. Left out, the session
    /// is anonymous.
    #[serde(default, deserialize_with = "super::tickets::object")]
    #[schema(value_type = Option<IdentityProof>)]
    identity: Option<IdentityProof>,
}

/// A session token: a bearer token for the chat endpoints, valid until `expires_at`.
#[derive(Serialize, ToSchema)]
pub struct IssuedSession {
    token: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: String,
    #[schema(value_type = ProjectId)]
    project_id: String,
    assistant: AssistantIntro,
    /// Whether the widget asks the visitor to rate a resolved ticket (the project's setting).
    csat_enabled: bool,
    /// The verified contact the session is for; null for an anonymous session.
    #[schema(required = true)]
    contact: Option<TicketContact>,
}

/// How the project's assistant introduces itself in the widget. Public: the guidance is not
/// here.
#[derive(Serialize, ToSchema)]
pub struct AssistantIntro {
    /// The assistant's name; null when the project gave none.
    #[schema(required = true)]
    name: Option<String>,
    /// Its first words to a visitor; null for the widget's own.
    #[schema(required = true)]
    greeting: Option<String>,
}

impl AssistantIntro {
    fn of(project: &Project) -> Self {
        Self {
            name: project.assistant.name(),
            greeting: project.assistant.greeting().map(str::to_owned),
        }
    }
}

/// POST /v1/init-session
pub async fn init(ctx: Arc<Ctx>, meta: Arc<RequestMeta>, req: InitSession) -> Response {
    respond(
        async {
            let id = ProjectId::parse(&req.project_id)
                .map_err(|_| ApiError::not_found("project not found"))?;
            let project = ctx
                .projects
                .get(&id)
                .await?
                .ok_or_else(|| ApiError::not_found("project not found"))?;
            meta.check_origin(&project)?;
            let contact = match req.identity {
                Some(proof) => Some(super::contacts::identify(&ctx, &project, proof).await?),
                None => None,
            };
            let issued = ctx
                .tokens
                .issue_contact_session(&project.id, contact.clone());
            tracing::debug!(project = %project.id, session = %issued.session_id, "session started");
            Ok(json(
                StatusCode::OK,
                &IssuedSession {
                    token: issued.token,
                    expires_at: rfc3339(issued.expires_at),
                    project_id: project.id.to_string(),
                    assistant: AssistantIntro::of(&project),
                    csat_enabled: !project.csat_disabled,
                    contact,
                },
            ))
        }
        .await,
    )
}

/// The session a token names.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    session_id: String,
    #[schema(value_type = ProjectId)]
    project_id: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: String,
    /// The verified contact the session is for; null for an anonymous session.
    #[schema(required = true)]
    contact: Option<TicketContact>,
}

/// GET /v1/session: describes the bearer's own session token, so a widget can tell whether it
/// still holds a valid one (401 when it is missing, expired, tampered with or foreign).
pub async fn describe(session: Session) -> Response {
    let expires_at = chrono::DateTime::from_timestamp(session.claims.exp, 0)
        .map(rfc3339)
        .unwrap_or_default();
    json(
        StatusCode::OK,
        &SessionInfo {
            session_id: session.key.session,
            project_id: session.project.id.to_string(),
            expires_at,
            contact: session.claims.ctc.clone(),
        },
    )
}

/// POST /v1/session/renew: a fresh token for the bearer's session, before its token expires, so
/// a visitor keeps one session (its quotas and transcript) for as long as it chats. A session
/// older than a day is refused (401): the widget then starts a new one.
pub async fn renew(session: Session, ctx: Arc<Ctx>) -> Response {
    let Some(issued) = ctx
        .tokens
        .renew_session(&session.project.id, &session.claims)
    else {
        let refusal = ApiError::unauthorized("this session is too old to renew; start a new one");
        return refusal.into_response();
    };
    json(
        StatusCode::OK,
        &IssuedSession {
            token: issued.token,
            expires_at: rfc3339(issued.expires_at),
            project_id: session.project.id.to_string(),
            assistant: AssistantIntro::of(&session.project),
            csat_enabled: !session.project.csat_disabled,
            contact: session.claims.ctc.clone(),
        },
    )
}
