//! The questions the assistant could not answer, for the inbox's knowledge-base page: agents
//! read them, most asked first, and dismiss one once an article answers it.

use std::sync::Arc;

use fleety_actors::domain::Project;
use fleety_actors::events::rfc3339;
use fleety_actors::store::StoreError;
use fleety_actors::unanswered::{self, UnansweredQuestion, MAX_PER_PROJECT};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use warp::reply::Response;

use super::error::{json, respond};
use super::{ApiError, Ctx};

/// A question's id: 16 hexadecimal digits naming its normalised wording.
pub struct QuestionId;

impl PartialSchema for QuestionId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9a-f]{16}$"))
            .description(Some("An unanswered question's id."))
            .into()
    }
}
impl ToSchema for QuestionId {
    fn name() -> std::borrow::Cow<'static, str> {
        "UnansweredQuestionId".into()
    }
}

/// How many questions to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Questions to return at most (50 by default).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// A question the assistant could not answer, with how often it was asked.
#[derive(Serialize, ToSchema)]
pub struct UnansweredView<'a> {
    #[schema(value_type = QuestionId)]
    id: &'a str,
    /// The question as grouped: lower case, without punctuation.
    question: &'a str,
    /// The newest wording a visitor used.
    example: &'a str,
    /// How many times it was asked.
    count: u64,
    #[schema(value_type = String, format = DateTime)]
    first_seen: String,
    #[schema(value_type = String, format = DateTime)]
    last_seen: String,
}

impl<'a> UnansweredView<'a> {
    fn new(q: &'a UnansweredQuestion) -> Self {
        Self {
            id: &q.id,
            question: &q.question,
            example: &q.example,
            count: q.count,
            first_seen: rfc3339(q.first_seen),
            last_seen: rfc3339(q.last_seen),
        }
    }
}

/// The questions, most asked first.
#[derive(Serialize, ToSchema)]
pub struct UnansweredList<'a> {
    questions: Vec<UnansweredView<'a>>,
}

/// GET /v1/projects/{projectId}/kb/unanswered?limit=
pub async fn list(project: Arc<Project>, ctx: Arc<Ctx>, query: ListQuery) -> Response {
    respond(
        async {
            let limit = query.limit.unwrap_or(50);
            if !(1..=MAX_PER_PROJECT).contains(&limit) {
                return Err(ApiError::bad_request(format!(
                    "limit must be between 1 and {MAX_PER_PROJECT}"
                )));
            }
            let questions = ctx.system.chats.unanswered(&project.id, limit).await?;
            let questions = questions.iter().map(UnansweredView::new).collect();
            Ok(json(StatusCode::OK, &UnansweredList { questions }))
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/kb/unanswered/{questionId}
pub async fn dismiss(id: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let missing = || ApiError::not_found("no such unanswered question");
            if !unanswered::is_id(&id) {
                return Err(missing());
            }
            match ctx.system.chats.dismiss_unanswered(&project.id, &id).await {
                Err(StoreError::NotFound) => return Err(missing()),
                other => other?,
            }
            Ok(json(
                StatusCode::OK,
                &super::Done::new("Question dismissed"),
            ))
        }
        .await,
    )
}
