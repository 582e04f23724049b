use std::time::Duration;

use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::ticket::TicketKey;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test]
async fn a_subscriber_sees_subscribed_then_every_change_in_order() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Live").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    let hello = next_event(&mut ws).await;
    assert_eq!(hello["type"], "subscribed");
    assert_eq!(hello["payload"]["slug"], slug.as_str());
    assert_eq!(hello["payload"]["status"], "open");

    let posted = app.post_message(&slug, "hello agent").await;
    app.admin_patch(
        &format!("/v1/tickets/demo/{slug}"),
        json!({"status": "pending"}),
    )
    .await;
    app.admin_patch(
        &format!("/v1/tickets/demo/{slug}/messages/read"),
        json!({"reader": "admin"}),
    )
    .await;

    let msg = next_event(&mut ws).await;
    assert_eq!(msg["type"], "new_message");
    // The payload is the message exactly as GET lists it.
    assert_eq!(msg["payload"], posted["data"]);
    assert_eq!(msg["payload"]["content"], "hello agent");
    let status = next_event(&mut ws).await;
    assert_eq!(status["type"], "status_change");
    assert_eq!(status["payload"]["status"], "pending");
    assert_eq!(status["payload"]["previous"], "open");
    let receipt = next_event(&mut ws).await;
    assert_eq!(receipt["type"], "ticket_update");
    assert_eq!(receipt["payload"]["reader"], "admin");
    assert_eq!(
        receipt["payload"]["last_read_message_id"],
        posted["data"]["id"]
    );
}

#[tokio::test]
async fn since_replays_exactly_the_messages_a_client_missed() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Replay").await;
    let first = app.post_message(&slug, "one").await;
    app.post_message(&slug, "two").await;
    app.post_message(&slug, "three").await;
    let since = first["data"]["id"].as_str().unwrap();
    let mut ws = app
        .connect(&format!("/v1/tickets/demo/{slug}/ws?since={since}"))
        .await;
    assert_eq!(next_event(&mut ws).await["type"], "subscribed");
    assert_eq!(next_event(&mut ws).await["payload"]["content"], "two");
    assert_eq!(next_event(&mut ws).await["payload"]["content"], "three");
    app.post_message(&slug, "four").await;
    assert_eq!(next_event(&mut ws).await["payload"]["content"], "four");

    let resp = app
        .get(&format!("/v1/tickets/demo/{slug}/ws?since=garbage"))
        .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn sockets_are_refused_before_upgrade_for_unknown_tickets_and_foreign_origins() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Guarded").await;
    assert_eq!(
        app.connect_with("/v1/tickets/demo/quiet-otter-001/ws", None)
            .await
            .err(),
        Some(404)
    );
    assert_eq!(
        app.connect_with("/v1/tickets/nope/quiet-otter-001/ws", None)
            .await
            .err(),
        Some(404)
    );
    let path = format!("/v1/tickets/demo/{slug}/ws");
    assert_eq!(
        app.connect_with(&path, Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    assert!(app
        .connect_with(&path, Some("http://localhost:3000"))
        .await
        .is_ok());
    // A plain GET on the socket path is a clear error, not a hang.
    assert_eq!(app.get(&path).await.status(), 400);
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_while_others_keep_receiving() {
    let app = spawn_with_settings(|s| s.ws.subscriber_queue = 64).await;
    let slug = app.create_ticket("Firehose").await;
    let path = format!("/v1/tickets/demo/{slug}/ws");

    // The slow client has a tiny receive buffer and never reads.
    let slow_tcp = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket
            .connect(app.base.trim_start_matches("http://").parse().unwrap())
            .await
            .unwrap()
    };
    let (mut slow, _) =
        tokio_tungstenite::client_async(format!("{}{}", app.ws_base, app.at(&path)), slow_tcp)
            .await
            .unwrap();
    let mut fast = app.connect(&path).await;
    assert_eq!(next_event(&mut fast).await["type"], "subscribed");

    let total = 800;
    let big = "x".repeat(9000);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < total {
            let e = next_event(&mut fast).await;
            assert_eq!(e["type"], "new_message");
            got.push(e["payload"]["content"].as_str().unwrap()[..8].to_owned());
        }
        got
    });
    for batch in 0..(total / 20) {
        let posts = (0..20).map(|i| {
            let (http, url, content) = (
                app.http.clone(),
                app.url(&format!("/v1/tickets/demo/{slug}/messages")),
                format!("{:08}{big}", batch * 20 + i),
            );
            async move {
                assert_eq!(
                    http.post(url)
                        .json(&json!({"content": content}))
                        .send()
                        .await
                        .unwrap()
                        .status(),
                    201
                )
            }
        });
        futures_util::future::join_all(posts).await;
    }
    let got = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("fast subscriber kept up")
        .unwrap();
    assert_eq!(got.len(), total);

    // The slow one, when it finally reads, finds its stream cut short and its connection
    // ended: by the `error` event and close code 1008 if they fitted in its socket, else by a
    // reset (docs/architecture.md, "Fan-out").
    let mut seen = 0;
    let mut told = None;
    let end = loop {
        let frame = tokio::time::timeout(Duration::from_secs(15), slow.next())
            .await
            .expect("the slow subscriber's connection is ended, not left open");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let e: Value = serde_json::from_str(&text).expect("events are JSON");
                assert!(told.is_none(), "an event after the error event: {e}");
                match e["type"].as_str() {
                    Some("new_message") => seen += 1,
                    Some("error") => told = Some(e),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => break Ok(frame),
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(Some(e)),
            None => break Err(None),
        }
    };
    assert!(
        seen < total,
        "the slow subscriber should have been cut off (saw {seen})"
    );
    if let Some(error) = &told {
        let text = error["payload"]["error"].as_str().unwrap_or_default();
        assert!(text.contains("not reading events fast enough"), "{error}");
    }
    match end {
        Ok(close) => {
            assert_eq!(close.map(|c| c.code), Some(CloseCode::Policy));
            assert!(told.is_some(), "the 1008 close comes after the error event");
        }
        Err(e) => {
            use tokio_tungstenite::tungstenite::Error;
            let reset = matches!(&e, Some(Error::Io(io)) if io.kind() == std::io::ErrorKind::ConnectionReset);
            assert!(reset, "ended by a reset, not by {e:?}");
        }
    }
}

/// The opcodes of the WebSocket frames a server sends on `stream` (unmasked, as a server's
/// are), read until the server ends the connection.
async fn frames_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let (mut bytes, mut opcodes) = (Vec::new(), Vec::new());
    let mut chunk = [0u8; 4096];
    // A read that fails is a reset: ended as surely as an end of stream.
    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
        bytes.extend_from_slice(&chunk[..n]);
        // Take every whole frame: the header's 7-bit length, or 16 or 64 bits after it.
        loop {
            let (header, len) = match bytes.get(1).map(|b| b & 0x7f) {
                None => break,
                Some(126) if bytes.len() >= 4 => {
                    (4, u16::from_be_bytes([bytes[2], bytes[3]]) as usize)
                }
                Some(127) if bytes.len() >= 10 => {
                    let mut long = [0u8; 8];
                    long.copy_from_slice(&bytes[2..10]);
                    (10, u64::from_be_bytes(long) as usize)
                }
                Some(126 | 127) => break,
                Some(short) => (2, short as usize),
            };
            if bytes.len() < header + len {
                break;
            }
            opcodes.push(bytes[0] & 0x0f);
            bytes.drain(..header + len);
        }
    }
    opcodes
}

const TEXT: u8 = 0x1;
const PING: u8 = 0x9;

#[tokio::test]
async fn a_silent_client_is_dropped_after_missing_pings() {
    let app = spawn_with_settings(|s| s.ws.ping_interval = std::time::Duration::from_secs(1)).await;
    let slug = app.create_ticket("Ping").await;
    // A client that reads but never answers a ping.
    let mut silent = raw_subscriber(&app, &format!("/v1/tickets/demo/{slug}/ws")).await;
    let opcodes = tokio::time::timeout(Duration::from_secs(20), frames_until_closed(&mut silent))
        .await
        .expect("the server should have closed the silent socket");
    assert_eq!(
        opcodes.first(),
        Some(&TEXT),
        "subscribed first: {opcodes:?}"
    );
    assert!(
        opcodes.contains(&PING),
        "pinged before being dropped: {opcodes:?}"
    );
}

#[tokio::test]
async fn a_responsive_client_stays_connected_across_pings() {
    let app = spawn_with_settings(|s| s.ws.ping_interval = std::time::Duration::from_secs(1)).await;
    let slug = app.create_ticket("Pong").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut ws).await["type"], "subscribed");
    // Reading answers each ping. A client silent for two intervals is dropped before the
    // third ping, so a fourth shows the answers kept this one.
    let mut pings = 0;
    while pings < 4 {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server pings");
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("only pings while nothing happens, got {other:?}"),
        }
    }
    app.post_message(&slug, "still there?").await;
    assert_eq!(
        next_event(&mut ws).await["payload"]["content"],
        "still there?"
    );
    ws.send(Message::Close(None)).await.unwrap();
}

#[tokio::test]
async fn a_crashed_ticket_restarts_from_the_store_and_subscribers_keep_receiving() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Crash").await;
    app.post_message(&slug, "before the crash").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut ws).await["type"], "subscribed");

    let key = TicketKey {
        project: ProjectId::parse(&app.project).unwrap(),
        slug: Slug::parse(&slug).unwrap(),
    };
    app.ctx.system.tickets.crash(&key).await.unwrap();

    // The socket joined the restarted ticket and says so with a fresh `subscribed`.
    let again = next_event(&mut ws).await;
    assert_eq!(again["type"], "subscribed");
    assert_eq!(again["payload"]["status"], "open");
    app.post_message(&slug, "after the crash").await;
    let e = next_event(&mut ws).await;
    assert_eq!(e["type"], "new_message");
    assert_eq!(e["payload"]["content"], "after the crash");
    let t = app.ticket(&slug).await;
    let contents: Vec<&str> = t["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["before the crash", "after the crash"]);
}

#[tokio::test]
async fn a_crash_during_concurrent_posts_loses_and_duplicates_nothing_acknowledged() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Crash under load").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut ws).await["type"], "subscribed");
    let key = TicketKey {
        project: ProjectId::parse(&app.project).unwrap(),
        slug: Slug::parse(&slug).unwrap(),
    };

    let post = |i: usize| {
        let (http, url) = (
            app.http.clone(),
            app.url(&format!("/v1/tickets/demo/{slug}/messages")),
        );
        async move {
            let resp = http
                .post(url)
                .json(&json!({"content": format!("m{i:02}")}))
                .send()
                .await
                .unwrap();
            (format!("m{i:02}"), resp.status().as_u16())
        }
    };
    // The crash comes once a post of the first wave has landed, with the rest of that wave
    // still being answered; a second wave is sent as the crash is asked for.
    let (crashing, crash_asked) = tokio::sync::oneshot::channel::<()>();
    let first_wave = futures_util::future::join_all((0..20).map(post));
    let second_wave = async {
        let _ = crash_asked.await;
        futures_util::future::join_all((20..40).map(post)).await
    };
    let crash = async {
        let landed = next_event(&mut ws).await;
        assert_eq!(landed["type"], "new_message");
        let _ = crashing.send(());
        let _ = app.ctx.system.tickets.crash(&key).await;
        landed["payload"]["content"].as_str().unwrap().to_owned()
    };
    let (mut results, second, landed) = tokio::join!(first_wave, second_wave, crash);
    results.extend(second);
    let acknowledged: Vec<&String> = results
        .iter()
        .filter(|(_, s)| *s == 201)
        .map(|(c, _)| c)
        .collect();
    for (_, status) in &results {
        assert!(
            *status == 201 || *status == 503,
            "unexpected status {status}"
        );
    }

    let t = app.ticket(&slug).await;
    let stored: Vec<String> = t["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    let mut unique = stored.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        stored.len(),
        "a message was stored twice: {stored:?}"
    );
    for c in &acknowledged {
        assert!(stored.contains(c), "acknowledged {c} is missing");
    }

    // The subscriber sees what was stored, in the stored order, once each.
    let mut seen = vec![landed];
    while seen.len() < stored.len() {
        match try_next_event(&mut ws, Duration::from_secs(10)).await {
            Some(e) if e["type"] == "new_message" => {
                seen.push(e["payload"]["content"].as_str().unwrap().to_owned())
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(seen, stored);
}

#[tokio::test]
async fn the_agent_inbox_feed_carries_every_tickets_events() {
    let app = spawn_app().await;
    let token_resp = app
        .admin_post("/v1/projects/demo/feed-token", json!({}))
        .await;
    assert_eq!(token_resp.status(), 200);
    let token: Value = token_resp.json().await.unwrap();
    let url = token["url"].as_str().unwrap();
    let mut feed = app.connect(url).await;
    assert_eq!(next_event(&mut feed).await["type"], "subscribed");

    let slug = app.create_ticket("Inbox").await;
    let created = next_event(&mut feed).await;
    assert_eq!(created["type"], "ticket_created");
    assert_eq!(created["ticket"], slug.as_str());
    app.post_message(&slug, "for the inbox").await;
    let msg = next_event(&mut feed).await;
    assert_eq!(msg["type"], "new_message");
    assert_eq!(msg["ticket"], slug.as_str());
    assert_eq!(msg["payload"]["content"], "for the inbox");

    assert_eq!(
        app.connect_with("/v1/projects/demo/feed", None).await.err(),
        Some(401)
    );
    assert_eq!(
        app.connect_with("/v1/projects/demo/feed?token=forged", None)
            .await
            .err(),
        Some(401)
    );
    // A widget's session token does not open the agent feed.
    let session: Value = app
        .post_json("/v1/init-session", json!({"project_id": "demo"}))
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/v1/projects/demo/feed?token={}",
        session["token"].as_str().unwrap()
    );
    assert_eq!(app.connect_with(&path, None).await.err(), Some(401));
}

/// The server's side of a loopback connection as the kernel reports it: its TCP state and the
/// bytes queued for the peer that the peer has not taken.
fn server_side(server_port: u16, client_port: u16) -> Option<(u8, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (port(f[1]) == Some(server_port) && port(f[2]) == Some(client_port)).then(|| {
            let state = u8::from_str_radix(f[3], 16).unwrap();
            let queued = u64::from_str_radix(f[4].split(':').next().unwrap(), 16).unwrap();
            (state, queued)
        })
    })
}

const ESTABLISHED: u8 = 0x01;

/// A WebSocket subscriber on a bare TCP socket with a 4 KiB receive buffer: it does the
/// handshake, then never reads again.
async fn raw_subscriber(app: &TestApp, path: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        app.at(path)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // A byte at a time, so the frames after the answer's head stay unread in the socket.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = stream.read(&mut byte).await.unwrap();
        assert!(n > 0, "the server closed during the handshake");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Posts `total` messages of 1 KiB to a ticket watched by a subscriber that never reads and
/// by one that does. Checks that the kernel never queues much more than the send buffer for
/// the one that does not read, that its connection leaves ESTABLISHED once it has fallen
/// behind, and that the reader receives every message exactly once. How soon it leaves is a
/// matter of speed, not for a test; the settings leave one way out for each test.
async fn a_peer_that_never_reads(app: TestApp) {
    let slug = app.create_ticket("Firehose").await;
    let path = format!("/v1/tickets/demo/{slug}/ws");
    let slow = raw_subscriber(&app, &path).await;
    let (server_port, client_port) = (
        slow.peer_addr().unwrap().port(),
        slow.local_addr().unwrap().port(),
    );
    let mut fast = app.connect(&path).await;
    assert_eq!(next_event(&mut fast).await["type"], "subscribed");

    // Behind: as much is queued that the peer has not taken as the send buffer setting names
    // (the kernel doubles it, so the buffer is then about two thirds full), which a peer that
    // reads never leaves for long.
    let send_buffer = app.ctx.settings.ws.send_buffer_bytes as u64;
    let watch = tokio::spawn(async move {
        let (mut behind, mut most_queued) = (false, 0);
        let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            match server_side(server_port, client_port) {
                Some((ESTABLISHED, queued)) => {
                    most_queued = most_queued.max(queued);
                    behind |= queued >= send_buffer;
                }
                _ => return (behind, most_queued),
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "still established after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    let total = 1000;
    let body = "x".repeat(1024);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < total {
            let e = next_event(&mut fast).await;
            assert_eq!(e["type"], "new_message");
            got.push(e["payload"]["content"].as_str().unwrap()[..8].to_owned());
        }
        got
    });
    for batch in 0..(total / 20) {
        let posts = (0..20).map(|i| {
            let (http, url, content) = (
                app.http.clone(),
                app.url(&format!("/v1/tickets/demo/{slug}/messages")),
                format!("{:08}{body}", batch * 20 + i),
            );
            async move {
                let resp = http
                    .post(url)
                    .json(&json!({ "content": content }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
            }
        });
        futures_util::future::join_all(posts).await;
    }

    let (behind, most_queued) = tokio::time::timeout(Duration::from_secs(130), watch)
        .await
        .expect("the watch ends")
        .unwrap();
    assert!(behind, "the peer that never reads fell behind");
    assert!(
        most_queued <= 2 * send_buffer,
        "the kernel queued {most_queued} bytes for a peer that does not read (send buffer {send_buffer})"
    );
    drop(slow);

    let mut got = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reading subscriber kept up")
        .unwrap();
    got.sort();
    let expected: Vec<String> = (0..total).map(|i| format!("{i:08}")).collect();
    assert_eq!(got, expected, "every message exactly once");
}

#[tokio::test]
async fn a_subscriber_its_ticket_cuts_off_is_disconnected_at_once_though_a_write_to_it_is_stuck() {
    // Writes may wait an hour, so only the ticket's cut can end this connection.
    let app = spawn_with_settings(|s| {
        s.ws.subscriber_queue = 64;
        s.ws.write_timeout = std::time::Duration::from_millis(3_600_000);
    })
    .await;
    a_peer_that_never_reads(app).await;
}

#[tokio::test]
async fn a_subscriber_whose_write_is_stuck_for_a_second_is_disconnected() {
    // The queue holds every event, so the ticket never cuts it: only the write timeout can.
    let app = spawn_with_settings(|s| {
        s.ws.subscriber_queue = 100_000;
        s.ws.write_timeout = std::time::Duration::from_millis(1000);
    })
    .await;
    a_peer_that_never_reads(app).await;
}

#[tokio::test]
async fn typing_reaches_the_other_side_at_once_is_rate_limited_and_never_stored() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Typing").await;
    let mut feed = app.connect_feed().await;
    assert_eq!(next_event(&mut feed).await["type"], "subscribed");
    let mut visitor = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut visitor).await["type"], "subscribed");

    // The visitor types: the agents' feed hears it once, though the widget sent it twice.
    let typing = || Message::Text(r#"{"type":"typing"}"#.into());
    visitor.send(typing()).await.unwrap();
    visitor.send(typing()).await.unwrap();
    let heard = next_event(&mut feed).await;
    assert_eq!(
        (heard["type"].as_str(), heard["ticket"].as_str()),
        (Some("typing"), Some(slug.as_str()))
    );
    assert_eq!(heard["payload"]["author"], "user");
    assert!(try_next_event(&mut feed, Duration::from_millis(300))
        .await
        .is_none());

    // An agent types in the inbox: the visitor's socket hears it.
    let agent = format!(r#"{{"type":"typing","ticket":"{slug}"}}"#);
    feed.send(Message::Text(agent.into())).await.unwrap();
    let mut heard = next_event(&mut visitor).await;
    // The visitor's own signal comes back to its sockets too; the widget ignores it.
    while heard["payload"]["author"] == "user" {
        heard = next_event(&mut visitor).await;
    }
    assert_eq!(heard["type"], "typing");
    assert_eq!(heard["payload"]["author"], "admin");

    // Nothing of it is stored.
    assert_eq!(app.ticket(&slug).await["messages"], json!([]));
}
