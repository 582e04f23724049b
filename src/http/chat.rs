//! The chat endpoints: `POST /v1/chat` and `POST /v1/chat/tools`. Each checks the visitor's
//! session token, validates the conversation, asks the session's actor for a turn, and turns
//! the turn's events into an SSE stream, or into one JSON answer when the assistant opened a
//! ticket before saying anything.

use std::convert::Infallible;
use std::sync::Arc;

use fleety_actors::chat::{ChatError, ChatMode, Citation, Turn, TurnEvent, TurnRequest};
use fleety_actors::domain::{Language, Project};
use fleety_actors::llm::{LlmError, LlmMessage, LlmRole};
use http::header::HeaderValue;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use warp::reply::Response;
use warp::Reply;

use super::access::Session;
use super::error::{json, respond};
use super::{ApiError, Ctx};

/// Messages one request may carry.
pub const MAX_MESSAGES: usize = 50;
/// Characters per message.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Characters of the whole conversation.
pub const MAX_CONVERSATION_CHARS: usize = 32_000;

/// One question for the assistant.
#[derive(Deserialize, ToSchema)]
pub struct PromptRequest {
    #[schema(value_type = ChatText)]
    prompt: String,
    #[schema(value_type = Option<String>, max_length = 35, pattern = "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")]
    /// The language the visitor writes in (a BCP-47 tag such as `de` or `pt-BR`): the help
    /// center's articles in it are searched first.
    language: Option<String>,
}

/// A conversation for the assistant: user and assistant turns, ending with the user's.
#[derive(Deserialize, ToSchema)]
pub struct ToolsRequest {
    #[schema(value_type = Conversation)]
    messages: Vec<ChatMessageIn>,
    /// Whether the assistant may open a ticket (true by default).
    #[serde(default = "yes")]
    enable_tool_calling: bool,
    /// The language the visitor writes in (a BCP-47 tag such as `de` or `pt-BR`): the help
    /// center's articles in it are searched first.
    #[schema(value_type = Option<String>, max_length = 35, pattern = "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")]
    language: Option<String>,
    /// Who the visitor is, when the page knows (the widget's `setVisitor`): kept on a ticket
    /// the assistant opens, shown to the agents. Unverified: the page's word.
    #[serde(default, deserialize_with = "super::tickets::object")]
    #[schema(value_type = Option<super::tickets::NewVisitor>)]
    visitor: Option<super::tickets::NewVisitor>,
}

/// The visitor's language, if the client gave one: a malformed tag is refused, a language the
/// search has no analyser for is as good as none.
fn visitor_language(raw: Option<&str>) -> Result<Option<Language>, ApiError> {
    raw.map(Language::from_tag)
        .transpose()
        .map(Option::flatten)
        .map_err(|e| ApiError::bad_request(e.0))
}

fn yes() -> bool {
    true
}

/// One turn of a conversation.
#[derive(Deserialize, ToSchema)]
pub struct ChatMessageIn {
    #[schema(value_type = ChatSpeaker)]
    role: String,
    #[schema(value_type = ChatText)]
    content: serde_json::Value,
}

/// Who speaks in a conversation a client sends. The assistant's instructions are the
/// server's: `system` is refused.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // A schema only: `conversation` reads the role.
pub enum ChatSpeaker {
    User,
    Assistant,
}

/// The text of one chat message: up to 4,000 characters, not only whitespace.
pub struct ChatText;

impl PartialSchema for ChatText {
    fn schema() -> RefOr<Schema> {
        fleety_actors::schema::text(1, MAX_MESSAGE_CHARS).into()
    }
}
impl ToSchema for ChatText {}

/// A conversation: 1 to 50 messages of at most 32,000 characters in all, the last of them the
/// user's.
pub struct Conversation;

impl PartialSchema for Conversation {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name("ChatMessageIn"))
            .min_items(Some(1))
            .max_items(Some(MAX_MESSAGES))
            .into()
    }
}
impl ToSchema for Conversation {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push(("ChatMessageIn".into(), ChatMessageIn::schema()));
        ChatMessageIn::schemas(out);
    }
}

/// The answer `/v1/chat/tools` gives when the assistant opened a ticket.
#[derive(Serialize, ToSchema)]
#[schema(as = ToolCall)]
pub struct ToolCallAnswer<'a> {
    /// Always `tool_call`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// What to tell the visitor.
    message: &'a str,
    #[schema(value_type = fleety_actors::domain::Slug)]
    ticket_slug: &'a str,
    /// The id of this answer, to rate it by (`POST /v1/chat/turns/{turnId}/feedback`).
    turn_id: String,
    /// Only when the project's `ticket_access` is `session` and the session names no verified
    /// contact: the ticket's key, shown this once, which opens the ticket after this session
    /// has ended (see `createTicket`).
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_key: Option<String>,
}

/// One server-sent event of a chat answer: `data` is a JSON frame (its schema given by
/// `contentSchema`) or, last, `[DONE]`.
fn event_schema(frame: RefOr<Schema>) -> RefOr<Schema> {
    let mut json = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("A JSON frame"))
        .build();
    json.content_media_type = "application/json".into();
    let frame = serde_json::to_value(frame).unwrap_or_default();
    // Written `x-contentSchema` by utoipa; `openapi.rs` names it `contentSchema`.
    json.extensions = Some(ExtensionsBuilder::new().add("contentSchema", frame).build());
    json.pattern = Some("^[{]".into());
    let done = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["[DONE]"]))
        .description(Some("The end of the answer"));
    ObjectBuilder::new()
        .property("data", OneOfBuilder::new().item(done).item(json))
        .required("data")
        .property("event", ObjectBuilder::new().schema_type(Type::String))
        .into()
}

/// The articles an answer cites, on the frame of its closing "Sources" piece only.
fn citations() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("Citation"))
        .description(Some(
            "The articles the answer cites, each with its link when it has one; only on the \
             frame that carries the answer's closing \"Sources\" line",
        ))
}

/// A piece of `/v1/chat`'s answer: `{"content": "...", "turn_id": "..."}`, or
/// `{"error": "..."}` when the answer broke off after it began.
pub struct PromptEvent;

impl PartialSchema for PromptEvent {
    fn schema() -> RefOr<Schema> {
        let content = ObjectBuilder::new()
            .property("content", ObjectBuilder::new().schema_type(Type::String))
            .required("content")
            .property("turn_id", turn_id_schema())
            .property("citations", citations());
        event_schema(
            OneOfBuilder::new()
                .item(content)
                .item(Ref::from_schema_name("Error"))
                .into(),
        )
    }
}
impl ToSchema for PromptEvent {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push(("Citation".into(), Citation::schema()));
    }
}

/// A piece of `/v1/chat/tools`' answer: an OpenAI-style delta
/// `{"choices": [{"delta": {"content": "..."}}], "turn_id": "..."}`, or `{"error": "..."}`.
pub struct ToolsEvent;

impl PartialSchema for ToolsEvent {
    fn schema() -> RefOr<Schema> {
        let delta = ObjectBuilder::new()
            .property(
                "delta",
                ObjectBuilder::new()
                    .property("content", ObjectBuilder::new().schema_type(Type::String))
                    .required("content"),
            )
            .required("delta");
        let choices = ObjectBuilder::new()
            .property(
                "choices",
                ArrayBuilder::new().items(delta).min_items(Some(1)),
            )
            .required("choices")
            .property("turn_id", turn_id_schema())
            .property("citations", citations());
        event_schema(
            OneOfBuilder::new()
                .item(choices)
                .item(Ref::from_schema_name("Error"))
                .into(),
        )
    }
}
impl ToSchema for ToolsEvent {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push(("Citation".into(), Citation::schema()));
    }
}

/// The answer's id, the same in each of its frames: what the visitor rates it by
/// (`POST /v1/chat/turns/{turnId}/feedback`).
fn turn_id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("The answer's id, to rate it by"))
}

/// A chat text: at most `MAX_MESSAGE_CHARS` characters (counted before trimming), not only
/// whitespace, without control characters but tabs and line breaks; the rule `ChatText`
/// states.
fn checked_text(text: &str, what: &str) -> Result<String, ApiError> {
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::bad_request(format!(
            "{what} is longer than {MAX_MESSAGE_CHARS} characters"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(ApiError::bad_request(format!(
            "{what} must not contain control characters"
        )));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ApiError::bad_request(format!("{what} must not be empty")));
    }
    Ok(trimmed.to_owned())
}

/// Validates a client's conversation: user and assistant turns only, within the limits, ending
/// with the user's question.
pub fn conversation(messages: &[ChatMessageIn]) -> Result<Vec<LlmMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_request("messages must not be empty"));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_MESSAGES} messages per request"
        )));
    }
    let mut out = Vec::with_capacity(messages.len());
    let mut total = 0;
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => LlmRole::User,
            "assistant" => LlmRole::Assistant,
            "system" | "developer" => {
                return Err(ApiError::bad_request(
                    "system messages are not accepted: the assistant's instructions are set by the server",
                ))
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}].role: \"{}\" is not allowed; use \"user\" or \"assistant\"",
                    other.chars().take(20).collect::<String>()
                )))
            }
        };
        let serde_json::Value::String(content) = &m.content else {
            return Err(ApiError::bad_request(format!(
                "messages[{i}].content must be a string"
            )));
        };
        let content = checked_text(content, &format!("messages[{i}].content"))?;
        total += content.chars().count();
        out.push(LlmMessage::new(role, content));
    }
    if total > MAX_CONVERSATION_CHARS {
        return Err(ApiError::bad_request(format!(
            "the conversation is longer than {MAX_CONVERSATION_CHARS} characters"
        )));
    }
    if out.last().is_none_or(|m| m.role != LlmRole::User) {
        return Err(ApiError::bad_request("the last message must be the user's"));
    }
    Ok(out)
}

/// Hosts that links in the project's answers may point at: those of its allowed origins.
fn allowed_hosts(project: &Project) -> Vec<String> {
    project
        .allowed_origins
        .iter()
        .filter_map(|o| {
            o.split_once("://")
                .map(|(_, host)| host.to_ascii_lowercase())
        })
        .collect()
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Quota { what, .. } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, what),
            ChatError::Busy => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "another answer is still streaming for this session; wait for it to finish",
            ),
            ChatError::Llm(e) => {
                tracing::warn!(error = %e, "language model request failed");
                match e {
                    LlmError::Timeout => ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the assistant did not answer in time; please try again",
                    ),
                    LlmError::Upstream { status, .. } => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "the assistant's language model refused the request (status {status})"
                        ),
                    ),
                    LlmError::Unreachable(_) => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "the assistant's language model is unreachable; please try again",
                    ),
                    LlmError::Protocol(_) => ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "the assistant's answer broke off; please try again",
                    ),
                }
            }
            ChatError::Unavailable(cause) => {
                tracing::warn!(%cause, "chat unavailable");
                ApiError::unavailable()
            }
            ChatError::Internal(cause) => ApiError::internal(cause),
            ChatError::UnknownTurn => ApiError::not_found("this session has no such answer"),
        }
    }
}

fn retry_after(e: &ChatError) -> Option<u64> {
    match e {
        ChatError::Quota {
            retry_after: Some(d),
            ..
        } => Some(d.as_secs().max(1)),
        ChatError::Busy => Some(1),
        _ => None,
    }
}

fn error_response(e: ChatError) -> Response {
    let retry = retry_after(&e);
    let mut resp = ApiError::from(e).into_response();
    if let Some(secs) = retry {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// How one streamed piece of text is framed for the endpoint. Each frame names the answer's
/// turn (a field the seed's format lacks: clients that do not know it ignore it).
fn text_frame(mode: ChatMode, text: &str, turn: &str) -> String {
    let value = match mode {
        ChatMode::Prompt => serde_json::json!({ "content": text, "turn_id": turn }),
        ChatMode::Conversation { .. } => {
            serde_json::json!({ "choices": [{ "delta": { "content": text } }], "turn_id": turn })
        }
    };
    value.to_string()
}

/// The answer's closing "Sources" piece, framed like any text with the cited articles beside
/// it: `citations` is an addition to the seed's frames, which clients that do not know it skip.
fn sources_frame(mode: ChatMode, text: &str, citations: &[Citation], turn: &str) -> String {
    let mut frame: serde_json::Value =
        serde_json::from_str(&text_frame(mode, text, turn)).unwrap_or_default();
    if let Some(object) = frame.as_object_mut() {
        object.insert("citations".into(), serde_json::json!(citations));
    }
    frame.to_string()
}

/// Runs a chat request for either endpoint.
async fn run(
    session: Session,
    ctx: &Ctx,
    parsed: Result<(ChatMode, Vec<LlmMessage>), ApiError>,
    language: Option<&str>,
    visitor: Option<super::tickets::NewVisitor>,
) -> Response {
    respond(
        async {
            let Session {
                key,
                project,
                claims,
            } = session;
            let (mode, messages) = parsed?;
            let visitor = match visitor {
                Some(v) => v.parse()?,
                None => None,
            };
            let request = TurnRequest {
                mode,
                messages,
                project_name: project.name.clone(),
                allowed_hosts: allowed_hosts(&project),
                assistant: project.assistant.clone(),
                language: visitor_language(language)?,
                visitor,
                contact: claims.ctc.clone(),
            };
            let opener = Opener {
                ctx,
                project: &project,
                claims: &claims,
            };
            match ctx.system.chats.turn(&key, request).await {
                Ok(turn) => Ok(answer(mode, turn, opener).await),
                Err(e) => Ok(error_response(e)),
            }
        }
        .await,
    )
}

/// Waits for the turn's first event, then answers: text starts an SSE stream; a ticket opened
/// before any text is a JSON `tool_call` answer; an error before anything is an error answer.
/// Who a ticket the assistant opens is for: what its ticket key needs.
struct Opener<'a> {
    ctx: &'a Ctx,
    project: &'a fleety_actors::domain::Project,
    claims: &'a crate::auth::Claims,
}

impl Opener<'_> {
    async fn ticket_key(&self, slug: &fleety_actors::domain::Slug) -> Option<String> {
        if self.project.ticket_access.is_slug() {
            return None;
        }
        let key = fleety_actors::ticket::TicketKey {
            project: self.project.id.clone(),
            slug: slug.clone(),
        };
        // The ticket was stored before the assistant said so; a failed read leaves the visitor
        // with its session, which opens the ticket for as long as it lasts.
        let ticket = self.ctx.system.tickets.find(&key).await.ok()?;
        super::ticket_access::key_for_opener(self.ctx, self.project, &ticket, Some(self.claims))
    }
}

async fn answer(mode: ChatMode, mut turn: Turn, opener: Opener<'_>) -> Response {
    let first = loop {
        match turn.events.recv().await {
            // Nothing meaningful yet: keep waiting (the turn holds back leading whitespace).
            Some(TurnEvent::Text(t)) if t.is_empty() => continue,
            other => break other,
        }
    };
    let first = match first {
        Some(TurnEvent::TicketOpened { slug, message })
            if matches!(mode, ChatMode::Conversation { .. }) =>
        {
            // The visitor has the answer: dropping the turn ends the model's stream.
            let ticket_key = opener.ticket_key(&slug).await;
            return json(
                StatusCode::OK,
                &ToolCallAnswer {
                    kind: "tool_call",
                    message: &message,
                    ticket_slug: slug.as_str(),
                    turn_id: turn.answer.to_string(),
                    ticket_key,
                },
            );
        }
        Some(TurnEvent::Error(e)) => return error_response(e),
        None => return ApiError::internal("a chat turn ended without an answer").into_response(),
        Some(event) => event,
    };
    sse(mode, first, turn)
}

/// The SSE answer: `first`, then every later event, then `[DONE]`.
fn sse(mode: ChatMode, first: TurnEvent, turn: Turn) -> Response {
    struct State {
        pending: Option<TurnEvent>,
        turn: Turn,
        done: bool,
        _open: super::ws::OpenGauge,
    }
    let id = turn.answer.to_string();
    let state = State {
        pending: Some(first),
        turn,
        done: false,
        _open: super::ws::OpenGauge::new("fleety_sse_streams_open", "chat"),
    };
    let events = futures_util::stream::unfold(state, move |mut s| {
        let id = id.clone();
        async move {
            if s.done {
                return None;
            }
            let event = match s.pending.take() {
                Some(e) => Some(e),
                None => s.turn.events.recv().await,
            };
            // `data:` is followed by a space, as OpenAI-style clients expect.
            let data = match event {
                Some(TurnEvent::Text(t)) => format!(" {}", text_frame(mode, &t, &id)),
                Some(TurnEvent::Sources { text, citations }) => {
                    format!(" {}", sources_frame(mode, &text, &citations, &id))
                }
                Some(TurnEvent::TicketOpened { message, .. }) => {
                    format!(" {}", text_frame(mode, &format!("\n\n{message}"), &id))
                }
                Some(TurnEvent::Error(e)) => {
                    s.pending = Some(TurnEvent::Done);
                    let message = ApiError::from(e).message;
                    format!(" {}", serde_json::json!({ "error": message }))
                }
                Some(TurnEvent::Done) => {
                    s.done = true;
                    " [DONE]".to_owned()
                }
                None => {
                    s.pending = Some(TurnEvent::Done);
                    format!(
                        " {}",
                        serde_json::json!({ "error": "the answer ended unexpectedly" })
                    )
                }
            };
            Some((
                Ok::<_, Infallible>(warp::sse::Event::default().data(data)),
                s,
            ))
        }
    });
    let mut resp = warp::sse::reply(events).into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// POST /v1/chat
pub async fn prompt(session: Session, ctx: Arc<Ctx>, req: PromptRequest) -> Response {
    let parsed = checked_text(&req.prompt, "prompt").map(|prompt| {
        (
            ChatMode::Prompt,
            vec![LlmMessage::new(LlmRole::User, prompt)],
        )
    });
    run(session, &ctx, parsed, req.language.as_deref(), None).await
}

/// POST /v1/chat/tools
pub async fn tools(session: Session, ctx: Arc<Ctx>, req: ToolsRequest) -> Response {
    let parsed = conversation(&req.messages).map(|messages| {
        let mode = ChatMode::Conversation {
            tools: req.enable_tool_calling,
        };
        (mode, messages)
    });
    run(session, &ctx, parsed, req.language.as_deref(), req.visitor).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: serde_json::Value) -> ChatMessageIn {
        ChatMessageIn {
            role: role.into(),
            content,
        }
    }

    #[test]
    fn conversations_are_checked() {
        let ok = conversation(&[
            msg("user", "hi".into()),
            msg("assistant", "hello".into()),
            msg("user", "  help  ".into()),
        ])
        .unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[2].content, "help");
        let refused = |messages: &[ChatMessageIn]| conversation(messages).unwrap_err().message;
        assert!(
            refused(&[msg("system", "obey".into()), msg("user", "x".into())]).contains("system")
        );
        assert!(refused(&[msg("tool", "x".into())]).contains("not allowed"));
        assert!(refused(&[msg("user", serde_json::json!([{"type": "text"}]))]).contains("string"));
        assert!(refused(&[msg("user", "   ".into())]).contains("empty"));
        assert!(refused(&[msg("user", "x".into()), msg("assistant", "y".into())]).contains("last"));
        assert!(refused(&[]).contains("empty"));
        let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        assert!(refused(&[msg("user", long.into())]).contains("longer"));
        let many: Vec<_> = (0..=MAX_MESSAGES)
            .map(|_| msg("user", "x".into()))
            .collect();
        assert!(refused(&many).contains("at most"));
    }

    #[test]
    fn frames_follow_each_endpoint() {
        assert_eq!(
            text_frame(ChatMode::Prompt, "Hi", "t1"),
            r#"{"content":"Hi","turn_id":"t1"}"#
        );
        assert_eq!(
            text_frame(ChatMode::Conversation { tools: true }, "Hi", "t1"),
            r#"{"choices":[{"delta":{"content":"Hi"}}],"turn_id":"t1"}"#
        );
    }
}
