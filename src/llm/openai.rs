//! The OpenAI-compatible adapter of the [`LlmProvider`] port: one streamed
//! `POST {base_url}/chat/completions` per request, read as server-sent events and turned into
//! [`LlmEvent`]s.
//!
//! This module owns the HTTP client and its pool, the request's JSON shape, the one retry of a
//! connection that could not be made, the first-token and idle deadlines, the mapping of every
//! failure onto [`LlmError`], and the [`ChunkDecoder`] that reassembles text and tool calls
//! from `chat.completion.chunk` payloads. It is written against what real servers send, not
//! only what OpenAI documents: llama.cpp, vLLM, Ollama and proxies differ in how they split
//! tool calls, whether they send `[DONE]`, and how they report errors.

use std::collections::VecDeque;
use std::error::Error as _;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use fleety_actors::llm::{LlmError, LlmEvent, LlmProvider, LlmRequest, LlmStream, ToolCall};
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::{timeout_at, Instant};

use super::OpenAiConfig;

/// Upstream error text is for logs and the client's error event, so only its start is kept.
const EXCERPT_CHARS: usize = 200;
/// An error body larger than this is not read further: the excerpt needs only its start.
const ERROR_BODY_LIMIT: usize = 16 * 1024;
/// A refused or reset connection is often a server restarting or a stale pooled socket; a
/// short pause before the single retry gives the former a chance without delaying the latter
/// much.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

type SseStream =
    Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// Streams completions from an OpenAI-compatible server.
pub struct OpenAiProvider {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    /// Built once so a key that cannot be a header value fails at start-up, not per request.
    authorization: Option<HeaderValue>,
    config: OpenAiConfig,
}

impl OpenAiProvider {
    pub fn new(config: OpenAiConfig) -> anyhow::Result<Self> {
        let endpoint = config.base_url.join_path(&["chat", "completions"]);
        let authorization = if config.api_key.is_empty() {
            None
        } else {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", config.api_key.expose()))
                .map_err(|_| {
                anyhow::anyhow!("the language model's API key contains characters not allowed in an HTTP header")
            })?;
            value.set_sensitive(true);
            Some(value)
        };
        // No overall timeout: an answer may stream for minutes. The first-token and idle
        // deadlines bound the waits that matter instead.
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(16)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("fleety/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the language model's HTTP client: {e}"))?;
        Ok(Self {
            client,
            endpoint,
            authorization,
            config,
        })
    }

    fn request_body(&self, request: &LlmRequest) -> Value {
        let mut body = json!({
            "model": self.config.model,
            "messages": request.messages,
            "stream": true,
            "max_tokens": request.max_tokens,
            "stream_options": { "include_usage": true },
        });
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|tool| {
                    json!({
                        "type": "function",
                        "function": {
                            "name": tool.name,
                            "description": tool.description,
                            "parameters": tool.parameters,
                        },
                    })
                })
                .collect();
            body["tools"] = Value::Array(tools);
            body["tool_choice"] = json!("auto");
        }
        body
    }

    /// Sends the request, retrying once when no response arrived at all. Once a status line
    /// has come back the server has seen the request, so it is never sent again.
    async fn send(&self, body: Bytes) -> Result<reqwest::Response, LlmError> {
        let mut retried = false;
        loop {
            let mut builder = self
                .client
                .post(self.endpoint.clone())
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "text/event-stream")
                .body(body.clone());
            if let Some(authorization) = &self.authorization {
                builder = builder.header(AUTHORIZATION, authorization.clone());
            }
            match builder.send().await {
                Ok(response) => return Ok(response),
                Err(e) if !retried && !e.is_builder() => {
                    tracing::warn!(
                        error = %self.redact(describe(e)),
                        "the language model could not be reached; retrying once"
                    );
                    retried = true;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(LlmError::Unreachable(self.redact(describe(e)))),
            }
        }
    }

    /// Keeps the key out of messages even when an upstream echoes it back.
    fn redact(&self, text: String) -> String {
        redact_key(text, self.config.api_key.expose())
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, LlmError> {
        let body = match serde_json::to_vec(&self.request_body(&request)) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                return Err(LlmError::Protocol(format!(
                    "cannot encode the request: {e}"
                )))
            }
        };
        tracing::debug!(
            model = %self.config.model,
            messages = request.messages.len(),
            tools = request.tools.len(),
            "streaming a completion"
        );
        // One deadline covers connecting, the response head and the first event, so a slow
        // connect cannot stretch the wait for the first token.
        let deadline = Instant::now() + self.config.first_token_timeout;
        let response = match timeout_at(deadline, self.send(body)).await {
            Ok(response) => response?,
            Err(_) => return Err(LlmError::Timeout),
        };
        let status = response.status();
        if !status.is_success() {
            let fallback = status.canonical_reason().unwrap_or("no details").to_owned();
            let message = timeout_at(deadline, error_excerpt(response))
                .await
                .ok()
                .filter(|m| !m.is_empty())
                .unwrap_or(fallback);
            return Err(LlmError::Upstream {
                status: status.as_u16(),
                message: self.redact(message),
            });
        }
        let mut reader = Reader {
            events: Some(Box::pin(bounded_body(response).eventsource())),
            decoder: ChunkDecoder::default(),
            queue: VecDeque::new(),
            idle_timeout: self.config.idle_timeout,
            api_key: self.config.api_key.expose().to_owned(),
        };
        if let Some(err) = reader.step(deadline).await {
            return Err(err);
        }
        Ok(Box::pin(futures_util::stream::unfold(
            reader,
            |mut reader| async move { reader.next_item().await.map(|item| (item, reader)) },
        )))
    }
}

/// Bytes of one answer read at most: a runaway upstream ends with "the stream ended early"
/// instead of filling memory (the SSE parser buffers a line of any length).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Tool calls kept per answer; the assistant uses one, extra ones only cost memory.
const MAX_TOOL_CALLS: usize = 8;
/// Bytes of one tool call's arguments kept; longer ones are cut (and then fail to parse).
const MAX_ARGUMENT_BYTES: usize = 16 * 1024;

/// The response body, ended after [`MAX_BODY_BYTES`] and without a leading byte-order mark
/// (which the SSE parser does not expect).
fn bounded_body(
    response: reqwest::Response,
) -> impl futures_util::Stream<Item = Result<Bytes, reqwest::Error>> {
    response.bytes_stream().scan(0usize, |seen, chunk| {
        let item = match chunk {
            Err(e) => Some(Err(e)),
            Ok(mut chunk) => {
                if *seen == 0 && chunk.starts_with(b"\xEF\xBB\xBF") {
                    chunk = chunk.slice(3..);
                }
                *seen = seen.saturating_add(chunk.len());
                (*seen <= MAX_BODY_BYTES).then_some(Ok(chunk))
            }
        };
        std::future::ready(item)
    })
}

/// The state behind a returned stream. It owns the response body, so dropping the stream
/// drops the connection and the upstream stops generating.
struct Reader {
    /// `None` once the stream has ended, which releases the connection before the caller
    /// drops the stream.
    events: Option<SseStream>,
    decoder: ChunkDecoder,
    queue: VecDeque<LlmEvent>,
    idle_timeout: Duration,
    api_key: String,
}

impl Reader {
    async fn next_item(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(Ok(event));
            }
            self.events.as_ref()?;
            if let Some(err) = self.step(Instant::now() + self.idle_timeout).await {
                return Some(Err(err));
            }
        }
    }

    /// Reads one server-sent event, queueing what it decodes to. Returns the error that ends
    /// the stream, if any.
    async fn step(&mut self, deadline: Instant) -> Option<LlmError> {
        let events = self.events.as_mut()?;
        let (outcome, ended) = match timeout_at(deadline, events.next()).await {
            // After a finish_reason only the usage chunk and [DONE] are still due; a server
            // that never sends them has still given a complete answer.
            Err(_) if self.decoder.finished() => (Ok(Vec::new()), true),
            Err(_) => (Err(LlmError::Timeout), true),
            Ok(None) => (self.decoder.finish(), true),
            Ok(Some(Err(e))) => (Err(stream_error(e)), true),
            Ok(Some(Ok(event))) => {
                let outcome = self.decoder.feed(&event.data);
                let ended = outcome.is_err() || self.decoder.is_done();
                (outcome, ended)
            }
        };
        if ended {
            self.events = None;
        }
        match outcome {
            Ok(decoded) => {
                self.queue.extend(decoded);
                None
            }
            Err(LlmError::Upstream { status, message }) => Some(LlmError::Upstream {
                status,
                message: redact_key(message, &self.api_key),
            }),
            Err(err) => Some(err),
        }
    }
}

fn stream_error(err: EventStreamError<reqwest::Error>) -> LlmError {
    match err {
        EventStreamError::Transport(e) => {
            LlmError::Protocol(format!("the answer broke off: {}", describe(e)))
        }
        EventStreamError::Utf8(_) => LlmError::Protocol("the answer is not valid UTF-8".into()),
        EventStreamError::Parser(_) => {
            LlmError::Protocol("the answer is not a valid event stream".into())
        }
    }
}

/// Reads the start of an error response and picks out its message.
async fn error_excerpt(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    excerpt_of_body(&body)
}

fn excerpt_of_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(value) = serde_json::from_str::<Value>(text.trim()) {
        if let Some(message) = error_message(&value) {
            return shorten(message);
        }
    }
    shorten(&text)
}

/// The human-readable message of the error shapes servers use: OpenAI's
/// `{"error":{"message"}}`, `{"error":"..."}`, vLLM's `{"message"}`, FastAPI's `{"detail"}`.
fn error_message(value: &Value) -> Option<&str> {
    match value.get("error") {
        Some(Value::String(message)) => return Some(message),
        Some(error) => {
            if let Some(message) = error.get("message").and_then(Value::as_str) {
                return Some(message);
            }
        }
        None => {}
    }
    value
        .get("message")
        .or_else(|| value.get("detail"))
        .and_then(Value::as_str)
}

/// One line of at most [`EXCERPT_CHARS`] characters.
fn shorten(text: &str) -> String {
    let mut out = String::new();
    for (count, word) in text.split_whitespace().enumerate() {
        if count > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > EXCERPT_CHARS {
            break;
        }
    }
    if out.chars().count() > EXCERPT_CHARS {
        out = out.chars().take(EXCERPT_CHARS).collect();
        out.push('…');
    }
    out
}

fn redact_key(text: String, key: &str) -> String {
    if key.is_empty() || !text.contains(key) {
        text
    } else {
        text.replace(key, "[redacted]")
    }
}

/// A reqwest error with its causes, which hold the useful part ("connection refused"), but
/// without the URL, which may carry credentials.
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    shorten(&text)
}

/// Turns `data:` payloads of a chat completion stream into [`LlmEvent`]s. Text passes through
/// as it comes; tool calls are held until complete, because their arguments arrive in pieces
/// and a half-written call is of no use to anyone.
#[derive(Debug, Default)]
struct ChunkDecoder {
    /// Calls being assembled, in order of first appearance.
    calls: Vec<PartialCall>,
    /// A finish_reason arrived: the answer is complete even if `[DONE]` never comes.
    finished: bool,
    /// `[DONE]` arrived: nothing more will be read.
    done: bool,
}

#[derive(Debug)]
struct PartialCall {
    index: u64,
    id: Option<String>,
    name: String,
    arguments: String,
}

// Every field is optional and most are loosely typed: servers send `null`, omit fields, or
// (Ollama) send arguments as an object, and none of that should fail an answer.
#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    index: Option<u64>,
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<Value>,
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: Option<u64>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

impl ChunkDecoder {
    /// Decodes one `data:` payload. An error ends the stream.
    fn feed(&mut self, data: &str) -> Result<Vec<LlmEvent>, LlmError> {
        let data = data.trim();
        if self.done || data.is_empty() {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            self.done = true;
            return self.take_calls();
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| LlmError::Protocol(format!("a streamed chunk is not valid JSON: {e}")))?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            return Err(upstream_error_in_stream(&error));
        }
        let mut events = Vec::new();
        let choice = chunk
            .choices
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.index.unwrap_or(0) == 0);
        if let Some(choice) = choice {
            if let Some(delta) = choice.delta {
                if let Some(Value::String(text)) = delta.content {
                    if !text.is_empty() {
                        events.push(LlmEvent::Text(text));
                    }
                }
                for (position, fragment) in
                    delta.tool_calls.unwrap_or_default().into_iter().enumerate()
                {
                    self.merge(position, fragment);
                }
            }
            if choice.finish_reason.is_some_and(|r| !r.is_empty()) {
                self.finished = true;
                events.extend(self.take_calls()?);
            }
        }
        if let Some(usage) = chunk.usage {
            let tokens = |n: Option<u64>| u32::try_from(n.unwrap_or(0)).unwrap_or(u32::MAX);
            events.push(LlmEvent::Usage {
                prompt_tokens: tokens(usage.prompt_tokens),
                completion_tokens: tokens(usage.completion_tokens),
            });
        }
        Ok(events)
    }

    /// The body ended. Without a finish_reason or `[DONE]` the connection dropped mid-answer.
    fn finish(&mut self) -> Result<Vec<LlmEvent>, LlmError> {
        if self.done || self.finished {
            self.take_calls()
        } else {
            Err(LlmError::Protocol("the stream ended early".into()))
        }
    }

    fn finished(&self) -> bool {
        self.finished || self.done
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn merge(&mut self, position: usize, fragment: ToolCallDelta) {
        // Servers that stream a single call sometimes leave out `index`; its position in the
        // array is then the best guess.
        let index = fragment.index.unwrap_or(position as u64);
        let existing = self.calls.iter().rposition(|c| c.index == index);
        // A different id at a known index means a server reused the index for a new call.
        let slot = match (existing, &fragment.id) {
            (Some(at), Some(id)) if self.calls[at].id.as_ref().is_some_and(|old| old != id) => None,
            (found, _) => found,
        };
        let at = match slot {
            Some(at) => at,
            None if self.calls.len() >= MAX_TOOL_CALLS => return,
            None => {
                self.calls.push(PartialCall {
                    index,
                    id: None,
                    name: String::new(),
                    arguments: String::new(),
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[at];
        if call.id.is_none() {
            call.id = fragment.id;
        }
        let Some(function) = fragment.function else {
            return;
        };
        if let Some(name) = function.name.filter(|n| !n.is_empty()) {
            // The name comes whole in the first fragment; servers that repeat it later
            // repeat the same name.
            if call.name.is_empty() {
                call.name = name;
            }
        }
        let piece = match function.arguments {
            Some(Value::String(piece)) => piece,
            Some(Value::Null) | None => return,
            Some(whole) => whole.to_string(),
        };
        if call.arguments.len() + piece.len() <= MAX_ARGUMENT_BYTES {
            call.arguments.push_str(&piece);
        }
    }

    fn take_calls(&mut self) -> Result<Vec<LlmEvent>, LlmError> {
        let mut calls = std::mem::take(&mut self.calls);
        calls.sort_by_key(|c| c.index);
        calls
            .into_iter()
            .map(|call| {
                if call.name.is_empty() {
                    return Err(LlmError::Protocol(
                        "the model called a tool without naming it".into(),
                    ));
                }
                Ok(LlmEvent::ToolCall(ToolCall {
                    name: call.name,
                    arguments: call.arguments,
                }))
            })
            .collect()
    }
}

fn upstream_error_in_stream(error: &Value) -> LlmError {
    let wrapped = json!({ "error": error });
    let message = error_message(&wrapped)
        .map(shorten)
        .unwrap_or_else(|| shorten(&error.to_string()));
    let status = error
        .get("code")
        .and_then(|code| match code {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| (400..=599).contains(code))
        .unwrap_or(502);
    LlmError::Upstream { status, message }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use fleety_actors::llm::{LlmMessage, LlmRole, ToolSpec};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::config::{HttpUrl, Secret};

    fn text(s: &str) -> LlmEvent {
        LlmEvent::Text(s.to_owned())
    }

    fn call(name: &str, arguments: &str) -> LlmEvent {
        LlmEvent::ToolCall(ToolCall {
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        })
    }

    fn content_chunk(piece: &str) -> String {
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}],
        })
        .to_string()
    }

    fn feed_all(decoder: &mut ChunkDecoder, payloads: &[&str]) -> Vec<LlmEvent> {
        let mut events = Vec::new();
        for payload in payloads {
            events.extend(decoder.feed(payload).expect("payload decodes"));
        }
        events
    }

    #[test]
    fn text_deltas_become_text_events() {
        let mut decoder = ChunkDecoder::default();
        let events = feed_all(
            &mut decoder,
            &[
                &content_chunk("Hel"),
                &content_chunk("lo"),
                &content_chunk(""),
            ],
        );
        assert_eq!(events, vec![text("Hel"), text("lo")]);
        assert!(!decoder.finished());
        assert!(
            decoder.finish().is_err(),
            "no finish_reason means the stream broke off"
        );
    }

    #[test]
    fn role_only_first_chunk_is_ignored() {
        let mut decoder = ChunkDecoder::default();
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"system_fingerprint":"x"}"#;
        let null_content =
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}"#;
        assert_eq!(feed_all(&mut decoder, &[role, null_content]), vec![]);
        assert_eq!(
            feed_all(&mut decoder, &[&content_chunk("Hi")]),
            vec![text("Hi")]
        );
    }

    #[test]
    fn tool_call_arguments_split_across_fragments_are_assembled() {
        let mut decoder = ChunkDecoder::default();
        let first = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"create_ticket","arguments":""}}]},"finish_reason":null}]}"#;
        let piece = |p: &str| {
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":p}}]},"finish_reason":null}]}).to_string()
        };
        let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#;
        let pieces = [
            r#"{"subj"#,
            r#"ect": "Br"#,
            r#"oken login", "#,
            r#""priority": 2}"#,
        ];
        let mut events = feed_all(&mut decoder, &[first]);
        for p in pieces {
            events.extend(decoder.feed(&piece(p)).expect("fragment decodes"));
        }
        assert_eq!(
            events,
            vec![],
            "nothing is emitted before the call is complete"
        );
        let events = feed_all(&mut decoder, &[finish, "[DONE]"]);
        assert_eq!(
            events,
            vec![call(
                "create_ticket",
                r#"{"subject": "Broken login", "priority": 2}"#
            )]
        );
        assert!(decoder.is_done());
        assert_eq!(decoder.finish(), Ok(vec![]));
    }

    #[test]
    fn two_tool_calls_are_emitted_in_index_order() {
        let mut decoder = ChunkDecoder::default();
        let frag = |index: u64, name: Option<&str>, args: &str| {
            let mut function = json!({ "arguments": args });
            if let Some(name) = name {
                function["name"] = json!(name);
            }
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":index,"function":function}]}}]})
                .to_string()
        };
        let events = feed_all(
            &mut decoder,
            &[
                &frag(1, Some("second"), "{\"b\":"),
                &frag(0, Some("first"), "{\"a\":1}"),
                &frag(1, None, "2}"),
            ],
        );
        assert_eq!(events, vec![]);
        // Some servers omit [DONE] after the finish_reason; the end of the body then ends it.
        let events = feed_all(
            &mut decoder,
            &[r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#],
        );
        assert_eq!(
            events,
            vec![call("first", "{\"a\":1}"), call("second", "{\"b\":2}")]
        );
        assert_eq!(decoder.finish(), Ok(vec![]));
    }

    #[test]
    fn whole_tool_call_in_one_fragment_is_flushed_by_done() {
        let mut decoder = ChunkDecoder::default();
        let whole = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"c","type":"function","function":{"name":"lookup","arguments":{"q":"vpn"}}}]}}]}"#;
        let events = feed_all(&mut decoder, &[whole, "[DONE]"]);
        assert_eq!(events, vec![call("lookup", r#"{"q":"vpn"}"#)]);
    }

    #[test]
    fn text_then_tool_call() {
        let mut decoder = ChunkDecoder::default();
        let tool = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"escalate","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#;
        let events = feed_all(&mut decoder, &[&content_chunk("Let me check."), tool]);
        assert_eq!(events, vec![text("Let me check."), call("escalate", "{}")]);
    }

    #[test]
    fn usage_chunk_becomes_usage_event() {
        let mut decoder = ChunkDecoder::default();
        let usage = r#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}"#;
        let null_usage = r#"{"choices":[{"index":0,"delta":{"content":"a"}}],"usage":null}"#;
        let events = feed_all(&mut decoder, &[null_usage, usage]);
        assert_eq!(
            events,
            vec![
                text("a"),
                LlmEvent::Usage {
                    prompt_tokens: 12,
                    completion_tokens: 34
                }
            ]
        );
    }

    #[test]
    fn error_payload_becomes_upstream_error() {
        let mut decoder = ChunkDecoder::default();
        let err = decoder
            .feed(r#"{"error":{"message":"model overloaded","type":"server_error","code":null}}"#)
            .unwrap_err();
        assert_eq!(
            err,
            LlmError::Upstream {
                status: 502,
                message: "model overloaded".into()
            }
        );
        let mut decoder = ChunkDecoder::default();
        let err = decoder
            .feed(r#"{"error":{"message":"slow down","code":429}}"#)
            .unwrap_err();
        assert_eq!(
            err,
            LlmError::Upstream {
                status: 429,
                message: "slow down".into()
            }
        );
    }

    #[test]
    fn malformed_json_is_a_protocol_error() {
        let mut decoder = ChunkDecoder::default();
        let err = decoder.feed(r#"{"choices":[{"delta":"#).unwrap_err();
        assert!(matches!(err, LlmError::Protocol(_)), "{err:?}");
        let err = ChunkDecoder::default().feed("42").unwrap_err();
        assert!(matches!(err, LlmError::Protocol(_)), "{err:?}");
    }

    #[test]
    fn nameless_tool_call_is_a_protocol_error() {
        let mut decoder = ChunkDecoder::default();
        let frag = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#;
        feed_all(&mut decoder, &[frag]);
        assert!(matches!(decoder.feed("[DONE]"), Err(LlmError::Protocol(_))));
    }

    #[test]
    fn error_bodies_are_shortened_to_their_message() {
        assert_eq!(
            excerpt_of_body(
                br#"{"error":{"message":"Invalid model","type":"invalid_request_error"}}"#
            ),
            "Invalid model"
        );
        assert_eq!(excerpt_of_body(br#"{"detail":"Not Found"}"#), "Not Found");
        let long = "x ".repeat(500);
        let excerpt = excerpt_of_body(long.as_bytes());
        assert!(excerpt.chars().count() <= EXCERPT_CHARS + 1, "{excerpt}");
        assert!(excerpt.ends_with('…'));
        assert_eq!(
            excerpt_of_body(b"<html>\n  bad\n gateway</html>"),
            "<html> bad gateway</html>"
        );
    }

    // ---- against a scripted HTTP server ----

    /// What the scripted server does with one connection.
    enum Reply {
        /// Accepts and drops the connection at once, before reading anything.
        Close,
        /// Writes these byte pieces (headers included) a few milliseconds apart, then closes.
        Send(Vec<String>),
        /// Writes these pieces, then keeps the connection open until the client closes it.
        SendThenHold(Vec<String>),
    }

    struct Scripted {
        addr: SocketAddr,
        accepts: Arc<AtomicUsize>,
        /// Connections the client closed while the server was holding them open.
        hangups: Arc<AtomicUsize>,
        /// Raw request heads and bodies, in order.
        requests: Arc<Mutex<Vec<(String, String)>>>,
    }

    const SSE_HEAD: &str =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
    const SSE_CHUNKED_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

    fn data(payload: &str) -> String {
        format!("data: {payload}\n\n")
    }

    fn chunked(piece: &str) -> String {
        format!("{:x}\r\n{piece}\r\n", piece.len())
    }

    async fn serve(replies: Vec<Reply>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let scripted = Scripted {
            addr: listener.local_addr().expect("local addr"),
            accepts: Arc::default(),
            hangups: Arc::default(),
            requests: Arc::default(),
        };
        let (accepts, hangups, requests) = (
            scripted.accepts.clone(),
            scripted.hangups.clone(),
            scripted.requests.clone(),
        );
        tokio::spawn(async move {
            let mut replies = replies.into_iter();
            while let Ok((socket, _)) = listener.accept().await {
                accepts.fetch_add(1, Ordering::SeqCst);
                let Some(reply) = replies.next() else {
                    return;
                };
                let (hangups, requests) = (hangups.clone(), requests.clone());
                tokio::spawn(async move { answer(socket, reply, hangups, requests).await });
            }
        });
        scripted
    }

    async fn answer(
        mut socket: TcpStream,
        reply: Reply,
        hangups: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<(String, String)>>>,
    ) {
        let (pieces, hold) = match reply {
            Reply::Close => return,
            Reply::Send(pieces) => (pieces, false),
            Reply::SendThenHold(pieces) => (pieces, true),
        };
        let Some(request) = read_request(&mut socket).await else {
            return;
        };
        requests.lock().expect("requests lock").push(request);
        for piece in pieces {
            if socket.write_all(piece.as_bytes()).await.is_err() {
                return;
            }
            let _ = socket.flush().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if hold {
            let mut buf = [0u8; 256];
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            hangups.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn read_request(socket: &mut TcpStream) -> Option<(String, String)> {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = socket.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let n = socket.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        Some((head, body))
    }

    fn config(addr: SocketAddr) -> OpenAiConfig {
        OpenAiConfig {
            base_url: format!("http://{addr}/v1").parse().expect("a URL"),
            api_key: Secret::new("sk-test-secret"),
            model: "test-model".into(),
            connect_timeout: Duration::from_secs(5),
            first_token_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(20),
        }
    }

    fn request(tools: Vec<ToolSpec>) -> LlmRequest {
        LlmRequest {
            messages: vec![
                LlmMessage::new(LlmRole::System, "You are helpful."),
                LlmMessage::new(LlmRole::User, "Hi"),
            ],
            tools,
            passages: vec![],
            max_tokens: 256,
            persona: Default::default(),
        }
    }

    async fn collect(stream: LlmStream) -> Vec<Result<LlmEvent, LlmError>> {
        tokio::time::timeout(Duration::from_secs(30), stream.collect::<Vec<_>>())
            .await
            .expect("the stream ends")
    }

    #[tokio::test]
    async fn streams_text_then_done() {
        let server = serve(vec![Reply::Send(vec![
            SSE_HEAD.into(),
            data(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#),
            data(&content_chunk("Hel")),
            data(&content_chunk("lo")),
            data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#),
            data(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#),
            data("[DONE]"),
        ])])
        .await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let stream = provider
            .stream(request(vec![]))
            .await
            .expect("stream starts");
        let events = collect(stream).await;
        assert_eq!(
            events,
            vec![
                Ok(text("Hel")),
                Ok(text("lo")),
                Ok(LlmEvent::Usage {
                    prompt_tokens: 5,
                    completion_tokens: 2
                })
            ]
        );

        let requests = server.requests.lock().expect("lock").clone();
        assert_eq!(requests.len(), 1);
        let (head, body) = &requests[0];
        assert!(
            head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer sk-test-secret"),
            "{head}"
        );
        let body: Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["stream"], true);
        assert_eq!(body["max_tokens"], 256);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(
            body["messages"],
            json!([{"role":"system","content":"You are helpful."},{"role":"user","content":"Hi"}])
        );
        assert!(body.get("tools").is_none() && body.get("tool_choice").is_none());
    }

    #[tokio::test]
    async fn sends_tools_and_assembles_a_chunked_tool_call() {
        let first = r#"{"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"lookup","arguments":""}}]}}]}"#;
        let piece = |p: &str| {
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":p}}]}}]}).to_string()
        };
        let server = serve(vec![Reply::Send(vec![
            SSE_CHUNKED_HEAD.into(),
            chunked(&data(first)),
            chunked(&data(&piece("{\"query\":"))),
            // An event split across two HTTP chunks must still parse as one.
            chunked("data: "),
            chunked(&format!("{}\n\n", piece("\"vpn\"}"))),
            chunked(&data(
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            )),
            chunked(&data("[DONE]")),
            "0\r\n\r\n".into(),
        ])])
        .await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let tools = vec![ToolSpec {
            name: "lookup",
            description: "Searches the knowledge base.",
            parameters: json!({"type":"object","properties":{"query":{"type":"string"}}}),
        }];
        let stream = provider
            .stream(request(tools))
            .await
            .expect("stream starts");
        assert_eq!(
            collect(stream).await,
            vec![Ok(call("lookup", r#"{"query":"vpn"}"#))]
        );
        let body: Value =
            serde_json::from_str(&server.requests.lock().expect("lock")[0].1).expect("JSON");
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(
            body["tools"],
            json!([{"type":"function","function":{
                "name":"lookup",
                "description":"Searches the knowledge base.",
                "parameters":{"type":"object","properties":{"query":{"type":"string"}}}
            }}])
        );
    }

    #[tokio::test]
    async fn error_status_becomes_upstream_error_without_retry_or_key() {
        let body = r#"{"error":{"message":"Incorrect API key provided: sk-test-secret","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let response = format!(
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let server = serve(vec![
            Reply::Send(vec![response.clone()]),
            Reply::Send(vec![response]),
        ])
        .await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let err = provider.stream(request(vec![])).await.err().expect("fails");
        assert_eq!(
            err,
            LlmError::Upstream {
                status: 401,
                message: "Incorrect API key provided: [redacted]".into()
            }
        );
        assert!(!err.to_string().contains("sk-test-secret"));
        assert_eq!(
            server.accepts.load(Ordering::SeqCst),
            1,
            "no retry after a status"
        );
    }

    #[tokio::test]
    async fn stall_before_first_event_times_out() {
        let server = serve(vec![Reply::SendThenHold(vec![])]).await;
        let mut config = config(server.addr);
        config.first_token_timeout = Duration::from_millis(300);
        let provider = OpenAiProvider::new(config).expect("provider");
        let started = std::time::Instant::now();
        let err = provider.stream(request(vec![])).await.err().expect("fails");
        let elapsed = started.elapsed();
        assert_eq!(err, LlmError::Timeout);
        assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    }

    #[tokio::test]
    async fn headers_without_events_also_count_against_the_first_token() {
        let server = serve(vec![Reply::SendThenHold(vec![SSE_HEAD.into()])]).await;
        let mut config = config(server.addr);
        config.first_token_timeout = Duration::from_millis(300);
        let provider = OpenAiProvider::new(config).expect("provider");
        let err = provider.stream(request(vec![])).await.err().expect("fails");
        assert_eq!(err, LlmError::Timeout);
    }

    #[tokio::test]
    async fn silence_mid_stream_times_out_and_ends_the_stream() {
        let server = serve(vec![Reply::SendThenHold(vec![
            SSE_HEAD.into(),
            data(&content_chunk("partial")),
        ])])
        .await;
        let mut config = config(server.addr);
        config.idle_timeout = Duration::from_millis(300);
        let provider = OpenAiProvider::new(config).expect("provider");
        let stream = provider
            .stream(request(vec![]))
            .await
            .expect("stream starts");
        assert_eq!(
            collect(stream).await,
            vec![Ok(text("partial")), Err(LlmError::Timeout)]
        );
    }

    #[tokio::test]
    async fn missing_done_after_finish_reason_is_a_normal_end() {
        let server = serve(vec![Reply::Send(vec![
            SSE_HEAD.into(),
            data(&content_chunk("done")),
            data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#),
        ])])
        .await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let stream = provider
            .stream(request(vec![]))
            .await
            .expect("stream starts");
        assert_eq!(collect(stream).await, vec![Ok(text("done"))]);
    }

    #[tokio::test]
    async fn half_a_stream_then_close_is_a_protocol_error() {
        let server = serve(vec![Reply::Send(vec![
            SSE_HEAD.into(),
            data(&content_chunk("one")),
            data(&content_chunk("two")),
        ])])
        .await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let stream = provider
            .stream(request(vec![]))
            .await
            .expect("stream starts");
        let events = collect(stream).await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[..2], [Ok(text("one")), Ok(text("two"))]);
        assert!(
            matches!(events[2], Err(LlmError::Protocol(_))),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn chunked_body_cut_off_is_a_protocol_error() {
        let server = serve(vec![Reply::Send(vec![
            SSE_CHUNKED_HEAD.into(),
            chunked(&data(&content_chunk("one"))),
            // Half a chunk, then the connection closes without the terminating chunk.
            "40\r\ndata: {\"cho".into(),
        ])])
        .await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let stream = provider
            .stream(request(vec![]))
            .await
            .expect("stream starts");
        let events = collect(stream).await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0], Ok(text("one")));
        assert!(
            matches!(events[1], Err(LlmError::Protocol(_))),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn error_event_mid_stream_ends_the_stream() {
        let server = serve(vec![Reply::SendThenHold(vec![
            SSE_HEAD.into(),
            data(&content_chunk("a")),
            data(r#"{"error":{"message":"context length exceeded","code":400}}"#),
        ])])
        .await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let stream = provider
            .stream(request(vec![]))
            .await
            .expect("stream starts");
        assert_eq!(
            collect(stream).await,
            vec![
                Ok(text("a")),
                Err(LlmError::Upstream {
                    status: 400,
                    message: "context length exceeded".into()
                })
            ]
        );
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let provider = OpenAiProvider::new(config(addr)).expect("provider");
        let err = provider.stream(request(vec![])).await.err().expect("fails");
        assert!(matches!(err, LlmError::Unreachable(_)), "{err:?}");
        assert!(!err.to_string().contains("sk-test-secret"));
    }

    #[tokio::test]
    async fn a_dropped_connection_is_retried_once() {
        let server = serve(vec![
            Reply::Close,
            Reply::Send(vec![
                SSE_HEAD.into(),
                data(&content_chunk("second try")),
                data("[DONE]"),
            ]),
        ])
        .await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let stream = provider
            .stream(request(vec![]))
            .await
            .expect("the retry succeeds");
        assert_eq!(collect(stream).await, vec![Ok(text("second try"))]);
        assert_eq!(server.accepts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn only_one_retry() {
        let server = serve(vec![Reply::Close, Reply::Close, Reply::Close]).await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let err = provider.stream(request(vec![])).await.err().expect("fails");
        assert!(matches!(err, LlmError::Unreachable(_)), "{err:?}");
        // Give a third attempt, were there one, time to arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(server.accepts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn dropping_the_stream_closes_the_upstream_connection() {
        let server = serve(vec![Reply::SendThenHold(vec![
            SSE_HEAD.into(),
            data(&content_chunk("first")),
        ])])
        .await;
        let provider = OpenAiProvider::new(config(server.addr)).expect("provider");
        let mut stream = provider
            .stream(request(vec![]))
            .await
            .expect("stream starts");
        assert_eq!(stream.next().await, Some(Ok(text("first"))));
        drop(stream);
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while server.hangups.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the server never saw the connection close");
    }

    #[test]
    fn invalid_configuration_is_rejected() {
        // A base URL that is not one cannot reach the provider: its type refuses it.
        assert!("not a url".parse::<HttpUrl>().is_err());
        let mut bad = config("127.0.0.1:1".parse().expect("addr"));
        bad.api_key = Secret::new("sk-line\nbreak");
        let err = OpenAiProvider::new(bad).err().expect("rejected");
        assert!(!err.to_string().contains("sk-line"));
    }
}
