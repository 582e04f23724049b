//! A scripted OpenAI-compatible model server, so the API tests can run Fleety against a
//! model whose every answer they choose.
//!
//! It speaks just enough HTTP/1.1 by hand over tokio TCP to serve `POST …/chat/completions`:
//! one [`Script`] per request, in the order pushed, streamed as `chat.completion.chunk`
//! server-sent events over a chunked body, a few milliseconds apart so the client really sees
//! a stream. Every connection is answered with `Connection: close`. It records each request's
//! JSON body and counts the streams a client abandoned before the script was over.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The pause between two streamed events: long enough that they arrive as separate reads.
const PIECE_DELAY: Duration = Duration::from_millis(5);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How the fake model answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Streams these content pieces as chat.completion.chunk events, then a finish_reason "stop" chunk, a usage chunk, and [DONE].
    Text(Vec<String>),
    /// Streams one tool call: name in the first fragment, `arguments` split into the given pieces, finish_reason "tool_calls", [DONE].
    ToolCall {
        name: String,
        argument_pieces: Vec<String>,
    },
    /// Several tool calls in one reply (indexes 0..n), each with complete arguments.
    ToolCalls(Vec<(String, String)>),
    /// Text pieces first, then a tool call (to test a model that talks then calls).
    TextThenTool {
        text: Vec<String>,
        name: String,
        arguments: String,
    },
    /// Answers this status with an OpenAI-style error body.
    Error { status: u16, message: String },
    /// Accepts the request and never answers (until the client gives up).
    Stall,
    /// Streams these pieces and then closes the connection without finish_reason or [DONE].
    DropAfter(Vec<String>),
}

impl Script {
    /// `Script::Text` from string slices.
    pub fn text(pieces: &[&str]) -> Script {
        Script::Text(pieces.iter().map(|p| p.to_string()).collect())
    }

    /// `Script::ToolCall` from string slices.
    pub fn tool_call(name: &str, argument_pieces: &[&str]) -> Script {
        Script::ToolCall {
            name: name.to_owned(),
            argument_pieces: argument_pieces.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// A running fake model server; it stops when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_loop: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    scripts: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<Value>>,
    cancelled: AtomicUsize,
    /// Fixed usage numbers for every later reply, instead of the computed ones.
    usage: Mutex<Option<(u64, u64)>>,
}

impl FakeLlm {
    /// Listens on 127.0.0.1 on a free port.
    pub async fn start() -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake model binds a port");
        let addr = listener
            .local_addr()
            .expect("the fake model has an address");
        let shared = Arc::new(Shared::default());
        let accept_loop = tokio::spawn(accept_loop(listener, shared.clone()));
        FakeLlm {
            addr,
            shared,
            accept_loop,
        }
    }

    /// What Fleety's `llm_base_url` should be, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues the answer to a later request. Scripts are served in order, one per request;
    /// with the queue empty the answer is `Text(vec!["ok"])`.
    pub fn push(&self, script: Script) {
        lock(&self.shared.scripts).push_back(script);
    }

    /// Scripts pushed but not yet served.
    pub fn pending(&self) -> usize {
        lock(&self.shared.scripts).len()
    }

    /// The JSON bodies of the chat completion requests received, in order. A body that is not
    /// JSON is recorded as a JSON string.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.requests).clone()
    }

    /// How many streams (or stalls) ended because the client went away before the script
    /// was over.
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Makes every later streamed reply report exactly these token counts.
    pub fn set_usage(&self, prompt_tokens: u64, completion_tokens: u64) {
        *lock(&self.shared.usage) = Some((prompt_tokens, completion_tokens));
    }

    /// Waits until at least `count` streams were cancelled; false if `within` passed first.
    /// The fake only notices a client leaving a moment after it left.
    pub async fn wait_cancelled(&self, count: usize, within: Duration) -> bool {
        wait_until(within, || self.cancelled() >= count).await
    }

    /// Waits until at least `count` requests arrived; false if `within` passed first.
    pub async fn wait_requests(&self, count: usize, within: Duration) -> bool {
        wait_until(within, || lock(&self.shared.requests).len() >= count).await
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        // The accept loop owns the connection tasks, so this ends those too.
        self.accept_loop.abort();
    }
}

async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock should not hide behind a poison error.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let _ = socket.set_nodelay(true);
                    connections.spawn(serve_connection(socket, shared.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn serve_connection(mut socket: TcpStream, shared: Arc<Shared>) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    if request.method != "POST" || !request.path.ends_with("/chat/completions") {
        let body = error_body(
            404,
            &format!("no route for {} {}", request.method, request.path),
        );
        let _ = write_json_response(&mut socket, 404, &body).await;
        return;
    }
    let body: Value = serde_json::from_slice(&request.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()));
    let number = {
        let mut requests = lock(&shared.requests);
        requests.push(body.clone());
        requests.len()
    };
    let script = lock(&shared.scripts)
        .pop_front()
        .unwrap_or_else(|| Script::Text(vec!["ok".into()]));
    let usage = *lock(&shared.usage);
    let reply = Reply::new(number, &body, usage);

    let finished = match script {
        Script::Error { status, message } => {
            let body = error_body(status, &message);
            let _ = write_json_response(&mut socket, status, &body).await;
            true
        }
        Script::Stall => {
            wait_for_close(&mut socket).await;
            false
        }
        Script::DropAfter(pieces) => {
            let mut events = vec![reply.role_chunk()];
            events.extend(pieces.iter().map(|p| reply.content_chunk(p)));
            stream(&mut socket, &events, None).await
        }
        script => {
            let (events, finish_reason, completion_pieces) = reply.events_for(&script);
            let tail = vec![
                reply.finish_chunk(finish_reason),
                reply.usage_chunk(completion_pieces),
                "[DONE]".to_owned(),
            ];
            stream(&mut socket, &events, Some(&tail)).await
        }
    };
    if !finished {
        shared.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

/// Reads one request head and its `Content-Length` body; `None` if the client left first.
async fn read_request(socket: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut scratch = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        match socket.read(&mut scratch).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut request_line = head.lines().next().unwrap_or("").split_whitespace();
    let method = request_line.next().unwrap_or("").to_owned();
    let path = request_line.next().unwrap_or("").to_owned();
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_BODY);
    // The whole body is read even though only JSON is wanted: closing a socket with unread
    // input makes the kernel send a reset, which the client could see before our answer.
    while buf.len() < head_end + length {
        match socket.read(&mut scratch).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&scratch[..n]),
        }
    }
    Some(Request {
        method,
        path,
        body: buf[head_end..head_end + length].to_vec(),
    })
}

/// Writes the stream. Returns whether the script got to its end, i.e. the client did not go
/// away first. `tail` (finish, usage, `[DONE]`) goes out in one write with the terminating
/// chunk, so a client that stops reading at `[DONE]` never counts as having cancelled;
/// without a tail the connection is cut without the terminating chunk.
async fn stream(socket: &mut TcpStream, events: &[String], tail: Option<&[String]>) -> bool {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if write(socket, head.as_bytes()).await.is_err() {
        return false;
    }
    for (i, event) in events.iter().enumerate() {
        if i > 0 && client_left_during(socket, PIECE_DELAY).await {
            return false;
        }
        if write(socket, sse_chunk(event).as_bytes()).await.is_err() {
            return false;
        }
    }
    if !events.is_empty() && client_left_during(socket, PIECE_DELAY).await {
        return false;
    }
    // Without a tail the socket is dropped mid-body on purpose: the client sees a broken
    // stream.
    if let Some(tail) = tail {
        let mut bytes: String = tail.iter().map(|event| sse_chunk(event)).collect();
        bytes.push_str("0\r\n\r\n");
        if write(socket, bytes.as_bytes()).await.is_err() {
            return false;
        }
        let _ = socket.shutdown().await;
    }
    true
}

async fn write(socket: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    socket.write_all(bytes).await?;
    socket.flush().await
}

/// One SSE event in one HTTP chunk.
fn sse_chunk(payload: &str) -> String {
    let event = format!("data: {payload}\n\n");
    format!("{:x}\r\n{event}\r\n", event.len())
}

/// Sleeps for `pause`, noticing meanwhile whether the client closed the connection. The
/// request has been read in full, so a readable socket can only mean the client left.
async fn client_left_during(socket: &mut TcpStream, pause: Duration) -> bool {
    let mut buf = [0u8; 256];
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        read = socket.read(&mut buf) => matches!(read, Ok(0) | Err(_)),
    }
}

async fn wait_for_close(socket: &mut TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn write_json_response(
    socket: &mut TcpStream,
    status: u16,
    body: &Value,
) -> std::io::Result<()> {
    let body = body.to_string();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    write(socket, response.as_bytes()).await?;
    socket.shutdown().await
}

/// OpenAI's error body shape.
fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        401 => "authentication_error",
        429 => "rate_limit_exceeded",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })
}

/// Builds the chunk payloads of one reply.
struct Reply {
    id: String,
    number: usize,
    model: String,
    prompt_tokens: u64,
    fixed_usage: Option<(u64, u64)>,
}

impl Reply {
    fn new(number: usize, request: &Value, fixed_usage: Option<(u64, u64)>) -> Reply {
        let prompt_tokens = request["messages"]
            .as_array()
            .map(|messages| {
                messages
                    .iter()
                    .filter_map(|m| m["content"].as_str())
                    .map(|content| content.split_whitespace().count() as u64)
                    .sum()
            })
            .unwrap_or(0);
        Reply {
            id: format!("chatcmpl-fake-{number}"),
            number,
            model: request["model"].as_str().unwrap_or("fake-model").to_owned(),
            prompt_tokens,
            fixed_usage,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> String {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        })
        .to_string()
    }

    fn role_chunk(&self) -> String {
        self.chunk(json!({ "role": "assistant", "content": "" }), None)
    }

    fn content_chunk(&self, piece: &str) -> String {
        self.chunk(json!({ "content": piece }), None)
    }

    fn call_id(&self, index: usize) -> String {
        format!("call_fake_{}_{index}", self.number)
    }

    /// A fragment that opens call `index`, with its name and the given start of its
    /// arguments.
    fn call_start_chunk(
        &self,
        index: usize,
        name: &str,
        arguments: &str,
        with_role: bool,
    ) -> String {
        let mut delta = json!({
            "tool_calls": [{
                "index": index,
                "id": self.call_id(index),
                "type": "function",
                "function": { "name": name, "arguments": arguments },
            }],
        });
        if with_role {
            delta["role"] = json!("assistant");
            delta["content"] = Value::Null;
        }
        self.chunk(delta, None)
    }

    fn arguments_chunk(&self, index: usize, piece: &str) -> String {
        self.chunk(
            json!({ "tool_calls": [{ "index": index, "function": { "arguments": piece } }] }),
            None,
        )
    }

    fn finish_chunk(&self, finish_reason: &str) -> String {
        self.chunk(json!({}), Some(finish_reason))
    }

    fn usage_chunk(&self, completion_pieces: usize) -> String {
        let (prompt, completion) = self
            .fixed_usage
            .unwrap_or((self.prompt_tokens, completion_pieces.max(1) as u64));
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": self.model,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        })
        .to_string()
    }

    /// The streamed events before the tail, the finish_reason, and how many pieces the model
    /// "generated" (the computed completion_tokens).
    fn events_for(&self, script: &Script) -> (Vec<String>, &'static str, usize) {
        match script {
            Script::Text(pieces) => {
                let mut events = vec![self.role_chunk()];
                events.extend(pieces.iter().map(|p| self.content_chunk(p)));
                (events, "stop", pieces.len())
            }
            Script::ToolCall {
                name,
                argument_pieces,
            } => {
                let mut events = vec![self.call_start_chunk(0, name, "", true)];
                events.extend(argument_pieces.iter().map(|p| self.arguments_chunk(0, p)));
                (events, "tool_calls", argument_pieces.len() + 1)
            }
            Script::ToolCalls(calls) => {
                let events = calls
                    .iter()
                    .enumerate()
                    .map(|(i, (name, arguments))| self.call_start_chunk(i, name, arguments, i == 0))
                    .collect();
                (events, "tool_calls", calls.len())
            }
            Script::TextThenTool {
                text,
                name,
                arguments,
            } => {
                let mut events = vec![self.role_chunk()];
                events.extend(text.iter().map(|p| self.content_chunk(p)));
                events.push(self.call_start_chunk(0, name, arguments, false));
                (events, "tool_calls", text.len() + 1)
            }
            // Answered before streaming starts.
            Script::Error { .. } | Script::Stall | Script::DropAfter(_) => (Vec::new(), "stop", 0),
        }
    }
}
