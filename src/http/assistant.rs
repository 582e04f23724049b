//! How the assistant does: the visitor's thumbs up or down on an answer
//! (`POST /v1/chat/turns/{turnId}/feedback`), and the project's conversation outcomes over a
//! time range (`GET /v1/projects/{projectId}/assistant/outcomes`). See docs/assistant.md.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fleety_actors::domain::{OutcomeCounts, Project, Rating};
use fleety_actors::events::rfc3339;
use fleety_actors::MessageId;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::reply::Response;

use super::access::Session;
use super::error::{json, respond};
use super::{ApiError, Ctx};

/// The longest time range one outcomes request may count.
pub const MAX_RANGE_DAYS: i64 = 366;
/// The range counted when the request names none: the last 30 days.
const DEFAULT_RANGE_DAYS: i64 = 30;

/// The visitor's verdict on an answer.
#[derive(Deserialize, ToSchema)]
pub struct NewFeedback {
    /// `up` or `down`; a later rating of the same answer replaces it.
    #[schema(value_type = Rating)]
    rating: serde_json::Value,
}

/// The rating as stored.
#[derive(Serialize, ToSchema)]
pub struct Feedback {
    /// The answer's turn id.
    turn_id: String,
    rating: Rating,
}

/// POST /v1/chat/turns/{turnId}/feedback (the visitor's session token)
pub async fn feedback(
    turn: String,
    session: Session,
    ctx: Arc<Ctx>,
    body: NewFeedback,
) -> Response {
    respond(
        async {
            let rating = body
                .rating
                .as_str()
                .and_then(|r| Rating::parse(r).ok())
                .ok_or_else(|| ApiError::bad_request("rating must be \"up\" or \"down\""))?;
            // An id that is not one of ours names no answer of this session.
            let id: MessageId = turn
                .parse()
                .map_err(|_| ApiError::not_found("this session has no such answer"))?;
            ctx.system.chats.rate(&session.key, id, rating).await?;
            let stored = Feedback {
                turn_id: id.to_string(),
                rating,
            };
            Ok(json(StatusCode::OK, &stored))
        }
        .await,
    )
}

/// The time range to count; RFC 3339 times.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutcomesQuery {
    /// Conversations that started at or after this (30 days before `to` by default).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Conversations that started before this (by default, up to now). At most 366 days
    /// after `from`.
    #[param(format = DateTime)]
    to: Option<String>,
}

/// Ratings given in the range's conversations, as they stand.
#[derive(Serialize, ToSchema)]
pub struct FeedbackCounts {
    up: u64,
    down: u64,
}

/// The project's conversations with the assistant that started in the range, by outcome.
#[derive(Serialize, ToSchema)]
pub struct AssistantOutcomes {
    #[schema(value_type = String, format = DateTime)]
    from: String,
    #[schema(value_type = String, format = DateTime)]
    to: String,
    /// Ended without a hand-off, with no answer left rated down, the last question answered.
    resolved: u64,
    /// The assistant opened a ticket.
    escalated: u64,
    /// Ended without a ticket after the offer of a person, without an answer to the last
    /// question, or with an answer rated down.
    abandoned: u64,
    /// Not ended yet: active in the last 30 minutes, without a hand-off.
    open: u64,
    feedback: FeedbackCounts,
}

fn instant(raw: Option<&str>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|r| {
        DateTime::parse_from_rfc3339(r)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "{name} must be an RFC 3339 time, like 2026-12-01T00:00:00Z"
                ))
            })
    })
    .transpose()
}

/// GET /v1/projects/{projectId}/assistant/outcomes?from=&to= (admin key)
pub async fn outcomes(project: Arc<Project>, ctx: Arc<Ctx>, query: OutcomesQuery) -> Response {
    respond(
        async {
            // By default up to now, this millisecond included.
            let to = instant(query.to.as_deref(), "to")?
                .unwrap_or_else(|| ctx.clock.now() + chrono::Duration::milliseconds(1));
            let from = instant(query.from.as_deref(), "from")?
                .unwrap_or(to - chrono::Duration::days(DEFAULT_RANGE_DAYS));
            if from >= to {
                return Err(ApiError::bad_request("from must be before to"));
            }
            if to - from > chrono::Duration::days(MAX_RANGE_DAYS) {
                return Err(ApiError::bad_request(format!(
                    "the range may span at most {MAX_RANGE_DAYS} days"
                )));
            }
            let counts: OutcomeCounts = ctx.system.chats.outcomes(&project.id, from, to).await?;
            let answer = AssistantOutcomes {
                from: rfc3339(from),
                to: rfc3339(to),
                resolved: counts.resolved,
                escalated: counts.escalated,
                abandoned: counts.abandoned,
                open: counts.open,
                feedback: FeedbackCounts {
                    up: counts.up,
                    down: counts.down,
                },
            };
            Ok(json(StatusCode::OK, &answer))
        }
        .await,
    )
}
