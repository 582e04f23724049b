//! `fleety chat`: a terminal client for a running server's assistant, so a person can try the
//! chat without a website. It speaks the public API like a widget would: it starts an anonymous
//! session, keeps the conversation, and prints the streamed answer as it arrives.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Renews the session token a little before its five minutes run out.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

struct Session {
    token: String,
    renew_at: Instant,
}

async fn new_session(
    http: &reqwest::Client,
    server: &str,
    project: &str,
) -> anyhow::Result<Session> {
    let resp = http
        .post(format!("{server}/v1/init-session"))
        .json(&json!({ "project_id": project }))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {server}: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("starting a session failed ({status}): {}", body["error"]);
    }
    let token = body["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the server answered without a token"))?;
    let ttl = body["expires_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (t.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64)
        .unwrap_or(60);
    Ok(Session {
        token: token.to_owned(),
        renew_at: Instant::now() + Duration::from_secs(ttl).saturating_sub(TOKEN_MARGIN),
    })
}

/// Chats from standard input until it ends (Ctrl-D) or the user types `/quit`.
pub async fn run(server: &str, project: &str, tools: bool) -> anyhow::Result<()> {
    let server = server.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let mut session = new_session(&http, server, project).await?;
    let mut history: Vec<Value> = Vec::new();
    println!("Chatting with the assistant of project {project} at {server}. /quit or Ctrl-D ends.");
    let stdin = std::io::stdin();
    loop {
        print!("you> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            return Ok(());
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" {
            return Ok(());
        }
        if Instant::now() >= session.renew_at {
            // A new token is a new session: the server's quotas and transcript start afresh,
            // while the conversation we send keeps the context.
            session = new_session(&http, server, project).await?;
        }
        history.push(json!({ "role": "user", "content": line }));
        let resp = http
            .post(format!("{server}/v1/chat/tools"))
            .bearer_auth(&session.token)
            .json(&json!({ "messages": history, "enable_tool_calling": tools }))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {server}: {e}"))?;
        let status = resp.status();
        let kind = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        print!("assistant> ");
        if kind.starts_with("text/event-stream") {
            let mut answer = String::new();
            let mut events = resp.bytes_stream().eventsource();
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| anyhow::anyhow!("the stream broke off: {e}"))?;
                if event.data == "[DONE]" {
                    break;
                }
                let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
                if let Some(piece) = data["choices"][0]["delta"]["content"].as_str() {
                    print!("{piece}");
                    std::io::stdout().flush()?;
                    answer.push_str(piece);
                } else if let Some(error) = data["error"].as_str() {
                    print!("\n[error: {error}]");
                }
            }
            println!();
            history.push(json!({ "role": "assistant", "content": answer }));
        } else {
            let body: Value = resp.json().await.unwrap_or_default();
            if !status.is_success() {
                println!(
                    "[error {status}: {}]",
                    body["error"].as_str().unwrap_or("unknown")
                );
                history.pop();
                continue;
            }
            let message = body["message"].as_str().unwrap_or_default();
            println!("{message}");
            if let Some(slug) = body["ticket_slug"].as_str() {
                println!("  ticket: {server}/v1/tickets/{project}/{slug}");
            }
            history.push(json!({ "role": "assistant", "content": message }));
        }
    }
}
