//! The server's own defences: timeouts, caps, limits, graceful drain, passivation.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(out)
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app =
        spawn_with_settings(|s| s.server.header_read_timeout = std::time::Duration::from_secs(1))
            .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        answer.is_some(),
        "the server should close a connection stuck in its headers"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_gives_its_slot_back() {
    let app =
        spawn_with_settings(|s| s.server.header_read_timeout = std::time::Duration::from_secs(1))
            .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        answer.is_some(),
        "the server should close a connection that never speaks"
    );
}

/// An HTTP/1.1 answer as it came over the wire.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> Option<Answer> {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()?
            .strip_prefix("HTTP/1.1 ")?
            .get(..3)?
            .parse()
            .ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Answer {
            status,
            headers,
            body: body.to_owned(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// What the server answers past its connection cap: 503, the error body, when to come
    /// back, and the end of the connection.
    fn assert_over_capacity(&self) {
        assert_eq!(self.status, 503, "{}", self.body);
        let retry: u64 = self
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.header("connection"), Some("close"));
        let body: serde_json::Value = serde_json::from_str(&self.body).expect("a JSON body");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
}

/// Sends one request on a new connection and reads until the server closes it.
async fn one_shot(app: &TestApp, request: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr(app)).await.unwrap();
    // A write can fail when the server resets the connection first; the answer tells.
    let _ = s.write_all(request.as_bytes()).await;
    read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("the server closes the connection")
}

/// Reads one answer (with a Content-Length) from a keep-alive connection.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed before a whole answer");
        raw.extend_from_slice(&buf[..n]);
        if let Some(answer) = Answer::parse(&raw) {
            let length: usize = answer
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .expect("a Content-Length");
            if answer.body.len() >= length {
                return answer;
            }
        }
    }
}

/// A keep-alive connection that has been served, and so holds a connection slot.
async fn held_connection(app: &TestApp) -> TcpStream {
    let mut s = TcpStream::connect(addr(app)).await.unwrap();
    s.write_all(HEALTHZ.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut s).await.status, 200);
    s
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// A new connection's `GET /healthz`, once a slot is free. Slots are given back by the
/// connection's task right after it closes the socket, so a request that reaches the server in
/// between is still refused; the first answer that is not a refusal must be the healthz one.
async fn healthz_once_served(app: &TestApp) -> Answer {
    for _ in 0..100 {
        let raw = one_shot(
            app,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let answer = Answer::parse(&raw).expect("an HTTP answer");
        if answer.status != 503 {
            return answer;
        }
        tokio::task::yield_now().await;
    }
    panic!("no connection slot came free");
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_with_retry_after_while_held_ones_go_on() {
    // Three slots: the test client's pooled HTTP connection (kept open by the long header
    // timeout), a WebSocket and a plain keep-alive connection.
    let app = spawn_with_settings(|s| {
        s.server.max_connections = 3;
        s.server.header_read_timeout = std::time::Duration::from_secs(600);
    })
    .await;
    let slug = app.create_ticket("Crowded").await;
    let ws_path = format!("/v1/tickets/demo/{slug}/ws");
    let mut socket = app.connect(&ws_path).await;
    assert_eq!(next_event(&mut socket).await["type"], "subscribed");
    let mut held = held_connection(&app).await;

    let get = format!(
        "GET /v1/tickets/{}/{slug} HTTP/1.1\r\nHost: x\r\n\r\n",
        app.project
    );
    Answer::parse(&one_shot(&app, &get).await)
        .expect("an HTTP answer, not a reset")
        .assert_over_capacity();
    // A request with a body larger than the server reads with the headers is answered too.
    let body = json!({ "author": "user", "content": "x".repeat(32 * 1024) }).to_string();
    let post = format!(
        "POST /v1/tickets/{}/{slug}/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        app.project,
        body.len()
    );
    Answer::parse(&one_shot(&app, &post).await)
        .expect("an HTTP answer to a request with a body")
        .assert_over_capacity();
    // A WebSocket handshake gets the same answer, never a 101.
    let handshake = format!(
        "GET /v1/tickets/{}/{slug}/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        app.project
    );
    Answer::parse(&one_shot(&app, &handshake).await)
        .expect("an HTTP answer to a handshake")
        .assert_over_capacity();
    assert_eq!(app.connect_with(&ws_path, None).await.err(), Some(503));

    // The connections that were in keep working: the pooled one posts, the socket hears it,
    // and the plain one is answered.
    app.post_message(&slug, "still here").await;
    let mut heard = None;
    while let Some(e) = try_next_event(&mut socket, Duration::from_secs(10)).await {
        if e["type"] == "new_message" {
            heard = Some(e);
            break;
        }
    }
    assert_eq!(heard.expect("an event")["payload"]["content"], "still here");
    held.write_all(HEALTHZ.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut held).await.status, 200);

    // Once one of them closes, a new connection is served: here the WebSocket, whose place
    // its socket's task holds until the socket is closed.
    socket.close(None).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    assert!(closed.is_ok(), "the server closes the socket");
    assert_eq!(healthz_once_served(&app).await.status, 200);
}

/// Connections past the cap refused so far with `outcome`, by the metrics: every server of the
/// test binary counts there, so only growth tells.
fn refused(outcome: &str) -> u64 {
    let line = format!("fleety_connections_refused_total{{outcome=\"{outcome}\"}} ");
    fleety::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

#[tokio::test]
async fn past_the_refusal_allowance_connections_are_closed_unread() {
    // With a 600 s header timeout a refused connection has 120 s to send its request, so the
    // silent ones below keep their places in the allowance for the whole test.
    let app = spawn_with_settings(|s| {
        s.server.max_connections = 1;
        s.server.header_read_timeout = std::time::Duration::from_secs(600);
    })
    .await;
    let allowance = app.ctx.settings.server.refusal_allowance();
    let mut held = held_connection(&app).await;
    let mut silent = Vec::new();
    for _ in 0..allowance {
        let mut s = TcpStream::connect(addr(&app)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        silent.push(s);
    }
    let dropped = refused("dropped");
    // The kernel hands connections to the accept loop in the order they came, so this one
    // finds every place in the allowance taken.
    let answer = one_shot(&app, HEALTHZ).await;
    assert!(
        answer.is_empty(),
        "closed without an answer, not {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(refused("dropped") > dropped, "the drop is counted");

    // A silent one leaving makes room for a refusal that is answered.
    drop(silent.pop());
    let mut answered = None;
    for _ in 0..100 {
        let raw = one_shot(&app, HEALTHZ).await;
        if !raw.is_empty() {
            answered = Answer::parse(&raw);
            break;
        }
        tokio::task::yield_now().await;
    }
    answered.expect("an answer").assert_over_capacity();
    // The served connection never noticed.
    held.write_all(HEALTHZ.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut held).await.status, 200);
}

#[tokio::test]
async fn an_oversized_websocket_message_closes_the_socket() {
    let app = spawn_with_settings(|s| s.ws.max_message_bytes = 1024).await;
    let slug = app.create_ticket("Frames").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut ws).await["type"], "subscribed");
    let _ = ws.send(Message::text("x".repeat(64 * 1024))).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = ws.next().await {
            if matches!(frame, Ok(Message::Close(_)) | Err(_)) {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(closed, Ok(true));
    // The server itself is fine.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn stopping_the_server_closes_sockets_with_going_away() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Drain").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut ws).await["type"], "subscribed");
    let stopping = tokio::spawn(app.stop());
    let code = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(frame) = ws.next().await {
            if let Ok(Message::Close(Some(close))) = frame {
                return Some(close.code);
            }
        }
        None
    })
    .await
    .expect("socket closed in time");
    assert_eq!(code, Some(CloseCode::Away));
    stopping.await.unwrap();
}

/// Time enough, by a test's clock, for a ticket that waits a second to passivate.
const IDLE: chrono::Duration = chrono::Duration::seconds(2);

#[tokio::test]
async fn idle_tickets_passivate_and_come_back_on_the_next_request() {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |s| {
        s.tickets.idle = std::time::Duration::from_secs(1)
    })
    .await;
    let slug = app.create_ticket("Sleepy").await;
    app.post_message(&slug, "remember me").await;
    assert_eq!(app.ctx.system.tickets.active(), 1);
    // Until its clock has moved past the idle time, an idle check keeps it.
    assert!(app.ctx.system.tickets.tick(&app.key(&slug)).await.unwrap());
    clock.advance(IDLE);
    eventually("an idle, unwatched ticket stops", async || {
        app.ctx.system.tickets.active() == 0
    })
    .await;
    let t = app.ticket(&slug).await;
    assert_eq!(t["messages"][0]["content"], "remember me");
    assert_eq!(app.ctx.system.tickets.active(), 1);
}

#[tokio::test]
async fn a_watched_ticket_does_not_passivate() {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |s| {
        s.tickets.idle = std::time::Duration::from_secs(1)
    })
    .await;
    let slug = app.create_ticket("Watched").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut ws).await["type"], "subscribed");
    clock.advance(IDLE);
    // Idle by its clock, but watched: the idle check keeps it.
    assert!(app.ctx.system.tickets.tick(&app.key(&slug)).await.unwrap());
    assert_eq!(app.ctx.system.tickets.active(), 1);
    app.post_message(&slug, "still live").await;
    let mut got = None;
    while let Some(e) = try_next_event(&mut ws, Duration::from_secs(5)).await {
        if e["type"] == "new_message" {
            got = Some(e);
            break;
        }
    }
    assert_eq!(got.expect("event")["payload"]["content"], "still live");
    // Once nobody watches, the same idle time lets it go.
    ws.close(None).await.unwrap();
    clock.advance(IDLE);
    eventually("the unwatched ticket stops", async || {
        app.ctx.system.tickets.active() == 0
    })
    .await;
}

/// The accept backlog is the configured one: with the server not yet accepting, the kernel
/// completes the handshakes of about that many connections and holds the rest back. The
/// standard library's 128 once dropped the handshakes of a crowd reconnecting at once.
#[tokio::test]
async fn the_listen_backlog_is_the_configured_one() {
    async fn completed(backlog: u32, tries: usize) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = fleety::config::Settings::default();
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        settings.server.listen_backlog = backlog;
        settings.store.data_dir = dir.path().to_path_buf();
        let store: std::sync::Arc<dyn fleety_actors::store::Store> =
            std::sync::Arc::new(open_store(dir.path()).await);
        let clock = std::sync::Arc::new(fleety_actors::clock::SystemClock);
        let app = fleety::app::Application::build_with(settings, store, clock)
            .await
            .unwrap();
        // Built, not run: nothing accepts, so only the kernel's queue takes connections.
        let addr = app.local_addr();
        let mut held = Vec::new();
        for _ in 0..tries {
            let connect = TcpStream::connect(addr);
            if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(300), connect).await
            {
                held.push(stream);
            }
        }
        held.len()
    }
    let small = completed(4, 12).await;
    assert!(
        (4..=6).contains(&small),
        "a backlog of 4 holds about 4 connections, not {small}"
    );
    assert_eq!(
        completed(64, 12).await,
        12,
        "a larger backlog holds them all"
    );
}
