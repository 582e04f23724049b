//! The language-model port: what the chat actors ask of a model, and the stream of events a
//! model answers with. Adapters implement [`LlmProvider`]: the `openai` one in the `fleety`
//! crate speaks HTTP to any OpenAI-compatible server; [`offline::OfflineProvider`] here needs
//! no network and answers from the knowledge base.

pub mod offline;

use std::pin::Pin;

use async_trait::async_trait;
use futures_util::Stream;
use serde::Serialize;
use uuid::Uuid;

/// Who says a message in a model's conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmRole {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LlmMessage {
    pub role: LlmRole,
    pub content: String,
}

impl LlmMessage {
    pub fn new(role: LlmRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A function the model may call, described by a JSON schema of its arguments.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: serde_json::Value,
}

/// A passage of the knowledge base retrieved for the current question.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub article_id: Uuid,
    pub title: String,
    pub text: String,
    /// Where the article is published, when it says.
    pub url: Option<String>,
    /// BM25 relevance; higher is better. Only comparable within one search.
    pub score: f32,
    /// How much of the question the passage covers, from 0 to 1: the share of the question's
    /// words (weighted by how rare they are in the knowledge base, filler words left out) that
    /// occur in the passage, its title or its tags. Comparable across searches, so a passage
    /// that shares one common word with the question is told from one that answers it.
    pub coverage: f32,
}

/// One request to a model.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    /// The conversation, starting with the server's system prompt.
    pub messages: Vec<LlmMessage>,
    /// Functions the model may call; empty when tool calling is off.
    pub tools: Vec<ToolSpec>,
    /// The passages the system prompt quotes. Remote models read them in the prompt; the
    /// offline provider answers from them directly.
    pub passages: Vec<Passage>,
    /// Upper bound on the tokens the model may generate.
    pub max_tokens: u32,
    /// Who the assistant is, for a provider that writes its own words (the offline one); a
    /// remote model reads the same in the system prompt.
    pub persona: Persona,
}

/// How the assistant introduces itself, from the project's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persona {
    /// The project's display name.
    pub project: String,
    /// The assistant's name, on one line.
    pub name: Option<String>,
    /// The assistant's first words to a visitor.
    pub greeting: Option<String>,
}

impl LlmRequest {
    /// The text of the newest user message: the question being answered.
    pub fn question(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == LlmRole::User)
            .map(|m| m.content.as_str())
            .unwrap_or("")
    }
}

/// A complete function call: the model has finished writing its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not yet trusted or even parsed.
    pub arguments: String,
}

/// What a model's stream yields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmEvent {
    /// A piece of the answer's text.
    Text(String),
    /// A tool call, complete with its arguments.
    ToolCall(ToolCall),
    /// What the request cost, when the provider reports it.
    Usage {
        prompt_tokens: u32,
        completion_tokens: u32,
    },
}

/// Why a model request failed. The message is for logs and for the client's error event; it
/// never carries the API key or the upstream's body beyond a short excerpt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The model server could not be reached.
    #[error("the language model is unreachable: {0}")]
    Unreachable(String),
    /// No first token, or no next token, in time.
    #[error("the language model did not answer in time")]
    Timeout,
    /// The model server answered with an error status.
    #[error("the language model refused the request (status {status}): {message}")]
    Upstream { status: u16, message: String },
    /// The answer broke off or could not be understood.
    #[error("the language model's answer was malformed: {0}")]
    Protocol(String),
}

pub type LlmStream = Pin<Box<dyn Stream<Item = Result<LlmEvent, LlmError>> + Send>>;

/// A language model behind some transport.
#[async_trait]
pub trait LlmProvider: Send + Sync + 'static {
    /// A short name for logs and metrics: `openai`, `offline`.
    fn name(&self) -> &'static str;

    /// Starts a streamed completion. Errors before the first event come back here; later ones
    /// come through the stream, which ends after an error. Dropping the stream cancels the
    /// request upstream.
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, LlmError>;
}
