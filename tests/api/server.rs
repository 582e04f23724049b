//! The server's own defences: timeouts, caps, limits, graceful drain, passivation.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
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
    let app = spawn_with_settings(|s| s.server.header_read_timeout_secs = 1).await;
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
    let app = spawn_with_settings(|s| s.server.header_read_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        answer.is_some(),
        "the server should close a connection that never speaks"
    );
}

#[tokio::test]
async fn websockets_hold_their_connection_slot() {
    // Three slots: the test client's pooled HTTP connection (kept open by the long header
    // timeout) and two sockets.
    let app = spawn_with_settings(|s| {
        s.server.max_connections = 3;
        s.server.header_read_timeout_secs = 600;
    })
    .await;
    let slug = app.create_ticket("Capped").await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        sockets.push(app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await);
    }
    let healthz = || async {
        let mut s = TcpStream::connect(addr(&app)).await.unwrap();
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        read_until_closed(&mut s, Duration::from_secs(10))
            .await
            .expect("closed")
    };
    assert!(
        healthz().await.is_empty(),
        "with every slot taken by the client and two sockets, a new connection is refused"
    );
    drop(sockets);
    let mut ok = false;
    for _ in 0..50 {
        if String::from_utf8_lossy(&healthz().await).starts_with("HTTP/1.1 200") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "closed sockets give their slots back");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_until_one_closes() {
    let app = spawn_with_settings(|s| s.server.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr(&app)).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(addr(&app)).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(
        answer.is_empty(),
        "the third connection should be closed without an answer"
    );

    drop(held);
    // Freed slots are reusable.
    let mut ok = false;
    for _ in 0..50 {
        if app
            .http
            .get(app.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok);
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
    let app = spawn_clocked(&clock, |s| s.tickets.idle_secs = 1).await;
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
    let app = spawn_clocked(&clock, |s| s.tickets.idle_secs = 1).await;
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
