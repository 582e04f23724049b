//! Knowledge-base endpoints: agents manage articles with the admin key; the widget's help-center
//! box searches them publicly (rate-limited and CORS-checked like the public ticket endpoints).
//! Also the agents' view of the chat that led to a ticket.

use std::sync::Arc;

use fleety_actors::audit::{self, AuditBy};
use fleety_actors::domain::{
    parse_tags, Article, ArticleBody, ArticleTitle, ArticleUrl, ChatRole, ChatTurn, Language,
    Project, Rating, MAX_ARTICLE_TAGS, MAX_ARTICLE_TAG_CHARS,
};
use fleety_actors::events::rfc3339;
use fleety_actors::kb::{ArticleChange, KbError};
use fleety_actors::llm::Passage;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::ArrayBuilder;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;
use warp::reply::Response;

use super::access::Visitor;
use super::error::{json, respond};
use super::tickets::ticket_key;
use super::{ApiError, Ctx};

/// Results a search returns at most.
const MAX_RESULTS: usize = 20;
/// Characters of a query at most.
const MAX_QUERY_CHARS: usize = 500;

impl From<KbError> for ApiError {
    fn from(e: KbError) -> Self {
        match e {
            KbError::NotFound => ApiError::not_found("article not found"),
            KbError::Full(max) => ApiError::conflict(format!(
                "the knowledge base is full ({max} articles at most); delete some first"
            )),
            KbError::Unavailable(cause) => {
                tracing::warn!(%cause, "knowledge base unavailable");
                ApiError::unavailable()
            }
            KbError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// A knowledge-base article.
#[derive(Serialize, ToSchema)]
#[schema(as = Article)]
pub struct ArticleView<'a> {
    id: Uuid,
    #[schema(value_type = fleety_actors::domain::ProjectId)]
    project_id: &'a str,
    title: &'a str,
    body: &'a str,
    tags: &'a [String],
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
    #[schema(value_type = String, format = DateTime)]
    updated_at: String,
    /// The language it is written in; it is searched with that language's analyser.
    language: Language,
    /// Where it is published; the assistant links to it when it cites the article.
    #[schema(value_type = Option<ArticleUrl>, required = true)]
    url: Option<&'a str>,
}

/// The knowledge base's articles, most recently changed first.
#[derive(Serialize, ToSchema)]
pub struct ArticleList<'a> {
    articles: Vec<ArticleView<'a>>,
}

/// An article's tags: at most 20, each 1 to 40 characters; repeats are dropped.
pub struct Tags;

impl PartialSchema for Tags {
    fn schema() -> RefOr<Schema> {
        let tag = fleety_actors::schema::text(1, MAX_ARTICLE_TAG_CHARS);
        ArrayBuilder::new()
            .items(tag)
            .max_items(Some(MAX_ARTICLE_TAGS))
            .into()
    }
}
impl ToSchema for Tags {}

impl<'a> ArticleView<'a> {
    pub(super) fn new(a: &'a Article) -> Self {
        Self {
            id: a.id,
            project_id: a.project_id.as_str(),
            title: a.title.as_str(),
            body: a.body.as_str(),
            tags: &a.tags,
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
            language: a.language,
            url: a.url.as_ref().map(|u| u.as_str()),
        }
    }
}

/// A new article. Blank lines cut its body into the passages the assistant quotes.
#[derive(Deserialize, ToSchema)]
pub struct NewArticle {
    #[schema(value_type = ArticleTitle)]
    title: String,
    #[schema(value_type = ArticleBody)]
    body: String,
    #[serde(default)]
    #[schema(value_type = Tags)]
    tags: Vec<String>,
    /// The language it is written in (a BCP-47 tag whose primary language is supported;
    /// `en` when left out).
    #[schema(value_type = Option<Language>)]
    language: Option<String>,
    /// Where it is published: an http or https URL.
    #[schema(value_type = Option<ArticleUrl>)]
    url: Option<String>,
}

/// The fields of an article to change; those left out stay as they are.
#[derive(Deserialize, ToSchema)]
pub struct ArticlePatch {
    #[schema(value_type = Option<ArticleTitle>)]
    title: Option<String>,
    #[schema(value_type = Option<ArticleBody>)]
    body: Option<String>,
    #[schema(value_type = Option<Tags>)]
    tags: Option<Vec<String>>,
    #[schema(value_type = Option<Language>)]
    language: Option<String>,
    /// A new link, or `null` to remove it.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<ArticleUrl>, nullable)]
    url: Option<Option<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn language(raw: &str) -> Result<Language, ApiError> {
    Language::parse(raw).map_err(bad)
}

fn url(raw: &str) -> Result<ArticleUrl, ApiError> {
    ArticleUrl::parse(raw).map_err(bad)
}

fn bad(e: fleety_actors::domain::InvalidValue) -> ApiError {
    ApiError::bad_request(e.0)
}

fn article_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found("article not found"))
}

/// POST /v1/projects/{projectId}/kb/articles
pub async fn create(
    project: Arc<Project>,
    who: AuditBy,
    ctx: Arc<Ctx>,
    req: NewArticle,
) -> Response {
    respond(
        async {
            let now = ctx.clock.now();
            let article = Article {
                id: Uuid::new_v4(),
                project_id: project.id.clone(),
                title: ArticleTitle::parse(&req.title).map_err(bad)?,
                body: ArticleBody::parse(&req.body).map_err(bad)?,
                tags: parse_tags(&req.tags).map_err(bad)?,
                created_at: now,
                updated_at: now,
                language: req
                    .language
                    .as_deref()
                    .map(language)
                    .transpose()?
                    .unwrap_or_default(),
                url: req.url.as_deref().map(url).transpose()?,
            };
            let article = audit::acting(Some(who), ctx.system.kb.put(article)).await?;
            Ok(json(StatusCode::CREATED, &ArticleView::new(&article)))
        }
        .await,
    )
}

/// GET /v1/projects/{projectId}/kb/articles
pub async fn list(project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let articles = ctx.system.kb.list(&project.id).await?;
            let articles = articles.iter().map(ArticleView::new).collect();
            Ok(json(StatusCode::OK, &ArticleList { articles }))
        }
        .await,
    )
}

/// GET /v1/projects/{projectId}/kb/articles/{articleId}
pub async fn get(id: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let article = ctx.system.kb.get(&project.id, article_id(&id)?).await?;
            Ok(json(StatusCode::OK, &ArticleView::new(&article)))
        }
        .await,
    )
}

/// PATCH /v1/projects/{projectId}/kb/articles/{articleId}: changes the fields given.
pub async fn update(
    id: String,
    project: Arc<Project>,
    who: AuditBy,
    ctx: Arc<Ctx>,
    req: ArticlePatch,
) -> Response {
    respond(
        async {
            let id = article_id(&id)?;
            let change = ArticleChange {
                title: req
                    .title
                    .as_deref()
                    .map(ArticleTitle::parse)
                    .transpose()
                    .map_err(bad)?,
                body: req
                    .body
                    .as_deref()
                    .map(ArticleBody::parse)
                    .transpose()
                    .map_err(bad)?,
                tags: req
                    .tags
                    .as_deref()
                    .map(parse_tags)
                    .transpose()
                    .map_err(bad)?,
                language: req.language.as_deref().map(language).transpose()?,
                url: req
                    .url
                    .map(|u| u.as_deref().map(url).transpose())
                    .transpose()?,
                at: ctx.clock.now(),
            };
            let patch = ctx.system.kb.patch(&project.id, id, change);
            let article = audit::acting(Some(who), patch).await?;
            Ok(json(StatusCode::OK, &ArticleView::new(&article)))
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/kb/articles/{articleId}
pub async fn delete(id: String, project: Arc<Project>, who: AuditBy, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let delete = ctx
                .system
                .kb
                .delete(&project.id, article_id(&id)?, ctx.clock.now());
            audit::acting(Some(who), delete).await?;
            Ok(json(StatusCode::OK, &super::Done::new("Article deleted")))
        }
        .await,
    )
}

/// A search of the knowledge base.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// What to look for.
    #[param(required = true, value_type = String, min_length = 1, max_length = 500, pattern = "\\S")]
    q: Option<String>,
    /// Articles to return at most (5 by default).
    #[param(minimum = 1, maximum = 20)]
    limit: Option<usize>,
    /// The language the query is written in (a BCP-47 tag such as `de` or `pt-BR`): articles
    /// in it are searched first. Left out, or a language without an analyser: every language
    /// the knowledge base has.
    #[param(value_type = Option<String>, max_length = 35, pattern = "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")]
    language: Option<String>,
}

/// One matching article.
#[derive(Serialize, ToSchema)]
pub struct SearchHit<'a> {
    article_id: Uuid,
    title: &'a str,
    /// The passage that matched best.
    snippet: &'a str,
    score: f32,
    /// Where the article is published, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ArticleUrl>)]
    url: Option<&'a str>,
}

/// Matching articles, best first.
#[derive(Serialize, ToSchema)]
pub struct SearchResults<'a> {
    results: Vec<SearchHit<'a>>,
}

/// Runs a search and keeps the best passage of each article.
async fn search(
    ctx: &Ctx,
    project: &fleety_actors::domain::ProjectId,
    query: &SearchQuery,
) -> Result<Vec<Passage>, ApiError> {
    let raw = query.q.as_deref().unwrap_or("");
    if raw.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(format!(
            "q: at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let q = raw.trim();
    if q.is_empty() {
        return Err(ApiError::bad_request("q: a search text is required"));
    }
    let limit = query.limit.unwrap_or(5);
    if !(1..=MAX_RESULTS).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_RESULTS}"
        )));
    }
    let language = query
        .language
        .as_deref()
        .map(Language::from_tag)
        .transpose()
        .map_err(bad)?
        .flatten();
    // Ask for more passages than articles wanted: several may come from one article.
    let passages = ctx
        .system
        .kb
        .search_in(project, q, language, limit * 4)
        .await?;
    let mut best: Vec<Passage> = Vec::with_capacity(limit);
    for p in passages {
        if best.len() == limit {
            break;
        }
        if !best.iter().any(|b| b.article_id == p.article_id) {
            best.push(p);
        }
    }
    Ok(best)
}

/// A passage cut to about 300 characters at a word, for a result list.
fn snippet(text: &str) -> &str {
    const MAX: usize = 300;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &text[..end];
    cut.rfind(char::is_whitespace).map_or(cut, |i| &cut[..i])
}

fn hits(passages: &[Passage]) -> SearchResults<'_> {
    let results = passages
        .iter()
        .map(|p| SearchHit {
            article_id: p.article_id,
            title: &p.title,
            snippet: snippet(&p.text),
            // The order's own measure: BM25 weighted by how much of the query it covers.
            score: p.score * p.coverage,
            url: p.url.as_deref(),
        })
        .collect();
    SearchResults { results }
}

/// GET /v1/kb/{projectId}/search?q=&limit= (public)
pub async fn public_search(visitor: Visitor, ctx: Arc<Ctx>, query: SearchQuery) -> Response {
    respond(
        async {
            let found = search(&ctx, &visitor.project.id, &query).await?;
            Ok(json(StatusCode::OK, &hits(&found)))
        }
        .await,
    )
}

/// GET /v1/kb/{projectId}/articles/{articleId} (public): an article as the help center shows
/// it. Every article is searchable by anyone, so reading one whole shows nothing more.
pub async fn public_get(id: String, visitor: Visitor, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let article = ctx
                .system
                .kb
                .get(&visitor.project.id, article_id(&id)?)
                .await?;
            Ok(json(StatusCode::OK, &ArticleView::new(&article)))
        }
        .await,
    )
}

/// One turn of a chat with the assistant.
#[derive(Serialize, ToSchema)]
#[schema(as = ChatTurn)]
pub struct TurnView<'a> {
    id: String,
    role: ChatRole,
    content: &'a str,
    #[schema(value_type = String, format = DateTime)]
    at: String,
    /// The ticket the assistant opened in this turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<fleety_actors::domain::Slug>)]
    ticket_slug: Option<&'a str>,
    /// The articles the answer quoted.
    #[serde(skip_serializing_if = "<[Uuid]>::is_empty")]
    citations: &'a [Uuid],
    /// The visitor's thumbs up or down on this answer, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<Rating>,
}

/// The chat that led to a ticket.
#[derive(Serialize, ToSchema)]
pub struct TicketChat<'a> {
    #[schema(value_type = fleety_actors::domain::Slug)]
    ticket_slug: &'a str,
    /// The visitor's session; null when the ticket was not opened from a chat.
    #[schema(required = true)]
    session_id: Option<&'a str>,
    /// The turns, oldest first.
    turns: Vec<TurnView<'a>>,
}

impl<'a> TurnView<'a> {
    pub(super) fn new(t: &'a ChatTurn) -> Self {
        Self {
            id: t.id.to_string(),
            role: t.role,
            content: &t.content,
            at: rfc3339(t.at),
            ticket_slug: t.ticket_slug.as_ref().map(|s| s.as_str()),
            citations: &t.citations,
            feedback: t.feedback,
        }
    }
}

/// GET /v1/projects/{projectId}/tickets/{slug}/chat (admin key): the chat with the assistant
/// that led to the ticket, for the agent who picks it up.
pub async fn ticket_chat(slug: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let key = ticket_key(&project, &slug)?;
            let ticket = ctx.system.tickets.find(&key).await?;
            let turns = match &ticket.session_id {
                Some(session) => {
                    ctx.system
                        .chats
                        .transcript(&project.id, session, 500)
                        .await?
                }
                None => Vec::new(),
            };
            let chat = TicketChat {
                ticket_slug: ticket.slug.as_str(),
                session_id: ticket.session_id.as_deref(),
                turns: turns.iter().map(TurnView::new).collect(),
            };
            Ok(json(StatusCode::OK, &chat))
        }
        .await,
    )
}

/// GET /v1/projects/{projectId}/kb/search?q=&limit= (admin key): the same search, for agents
/// checking what the assistant would find.
pub async fn agent_search(project: Arc<Project>, ctx: Arc<Ctx>, query: SearchQuery) -> Response {
    respond(
        async {
            let found = search(&ctx, &project.id, &query).await?;
            Ok(json(StatusCode::OK, &hits(&found)))
        }
        .await,
    )
}
