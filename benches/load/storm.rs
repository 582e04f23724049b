//! The connect storm: a crowd of visitors reconnecting at once (after a deploy or a network
//! blip), each opening a WebSocket and subscribing to its conversation, with a fixed number of
//! connects in flight. Every socket is timed from the start of its TCP connect to the server's
//! confirmation of its subscription, so a SYN the kernel dropped (a full accept queue) shows up
//! as the one-second retransmission it costs the visitor.
//!
//! The same crowd runs against Fleety and against a peer, Centrifugo, in one run. Centrifugo's
//! clients speak its JSON protocol: one frame carrying the connect command (with an HS256
//! connection token) and the subscribe command, the fastest way in that its protocol allows.
//!
//! The standing subscribers of the other scenarios are the same sockets: [`run`] also times
//! every stamped message they receive.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use crate::net::{self, Socket};
use crate::worker::{
    encode, histogram, now_micros, stamp_of, wait_for_stop, Errors, Outcome, Progress,
};

/// What the crowd connects to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Target {
    /// Fleety's ticket WebSockets at `paths`; subscribed once the `subscribed` frame arrives.
    Fleety { paths: Vec<String> },
    /// Centrifugo's WebSocket endpoint; subscribed once the subscribe command's reply arrives.
    Centrifugo {
        token: String,
        channels: Vec<String>,
    },
}

/// Opens one socket and waits for its subscription; the socket, ready to hold.
async fn connect_and_subscribe(
    server: SocketAddr,
    target: &Target,
    i: usize,
    n: u64,
) -> anyhow::Result<Socket> {
    match target {
        Target::Fleety { paths } => {
            let mut socket = net::websocket(server, &paths[i % paths.len()], n).await?;
            match next_text(&mut socket).await? {
                t if t.contains("\"subscribed\"") => Ok(socket),
                t => bail!("expected a subscribed frame, got {t:.200}"),
            }
        }
        Target::Centrifugo { token, channels } => {
            let mut socket = net::websocket(server, "/connection/websocket", n).await?;
            let channel = &channels[i % channels.len()];
            let commands = format!(
                "{{\"id\":1,\"connect\":{{\"token\":\"{token}\"}}}}\n\
                 {{\"id\":2,\"subscribe\":{{\"channel\":\"{channel}\"}}}}"
            );
            socket.send(Message::Text(commands.into())).await?;
            // Replies come as newline-separated JSON, one or several to a frame.
            loop {
                let frame = next_text(&mut socket).await?;
                for reply in frame.lines() {
                    if reply.contains("\"error\"") {
                        bail!("centrifugo refused: {reply:.200}");
                    }
                    if reply.starts_with("{\"id\":2,") {
                        return Ok(socket);
                    }
                }
            }
        }
    }
}

/// The next text frame, within the time a visitor's client would wait before reconnecting.
async fn next_text(socket: &mut Socket) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, socket.next())
            .await
            .context("no answer in 30 s")?
        {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(c))) => bail!("closed by the server: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("socket: {e}"),
            None => bail!("closed by the server"),
        }
    }
}

/// A worker's share of the crowd: `count` sockets, at most `in_flight` connecting at once;
/// reports `READY` when every socket is subscribed or has failed, and holds the subscribed ones
/// until told to stop, recording the delay of every stamped message they receive.
pub async fn run(
    server: SocketAddr,
    target: Target,
    count: usize,
    in_flight: usize,
    first: u64,
) -> anyhow::Result<Outcome> {
    let progress = Progress::spawn();
    let errors = Arc::new(Errors::default());
    // One histogram of each kind per process, not per socket: each is about 150 KB.
    let latency = Arc::new(Mutex::new(histogram()));
    let delivery = Arc::new(Mutex::new(histogram()));
    let received = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let target = Arc::new(target);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(count.max(1));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let (gate, progress, errors, latency, stop, ready, target) = (
            gate.clone(),
            progress.clone(),
            errors.clone(),
            latency.clone(),
            stop.clone(),
            ready_tx.clone(),
            target.clone(),
        );
        let held = Held {
            errors: errors.clone(),
            delivery: delivery.clone(),
            received: received.clone(),
            closed: closed.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let Ok(permit) = gate.acquire_owned().await else {
                return;
            };
            let began = Instant::now();
            let socket = connect_and_subscribe(server, &target, i, first + i as u64).await;
            let took = began.elapsed();
            drop(permit);
            let mut socket = match socket {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("{e:#}"));
                    let _ = ready.send(false).await;
                    return;
                }
            };
            let _ = latency
                .lock()
                .unwrap()
                .record((took.as_micros() as u64).max(1));
            progress.add(1);
            let _ = ready.send(true).await;
            drop(ready);
            held.hold(&mut socket, &stop).await;
        }));
    }
    drop(ready_tx);
    let mut connected = 0u64;
    while let Some(ok) = ready_rx.recv().await {
        connected += u64::from(ok);
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    println!("READY");
    wait_for_stop().await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let mut out = Outcome {
        elapsed_ms,
        ..Outcome::default()
    };
    out.count("connected", connected);
    out.count("closed_by_server", closed.load(Ordering::Relaxed));
    out.count("received", received.load(Ordering::Relaxed));
    out.histograms
        .push(("connect".into(), encode(&latency.lock().unwrap())));
    out.histograms
        .push(("delivery".into(), encode(&delivery.lock().unwrap())));
    errors.report(&mut out);
    Ok(out)
}

/// What the held sockets of one process share.
struct Held {
    errors: Arc<Errors>,
    delivery: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    received: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
}

impl Held {
    /// Keeps a subscribed socket open until `stop`: records each stamped message's delay and
    /// answers Centrifugo's pings (an empty JSON object) with a pong of the same form;
    /// WebSocket pings are answered by the library as frames are read.
    async fn hold(&self, socket: &mut Socket, stop: &tokio_util::sync::CancellationToken) {
        let mut n = 0u64;
        loop {
            tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(t))) if t.as_str() == "{}" => {
                        if socket.send(Message::Text("{}".into())).await.is_err() {
                            self.closed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    Some(Ok(Message::Text(t))) => {
                        if let Some(stamp) = stamp_of(&t) {
                            let us = now_micros().saturating_sub(stamp).max(1);
                            let _ = self.delivery.lock().unwrap().record(us);
                            n += 1;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.errors.push(format!("socket: {e}"));
                        self.closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    None => {
                        self.closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                },
                _ = stop.cancelled() => {
                    let _ = socket.close(None).await;
                    break;
                }
            }
        }
        self.received.fetch_add(n, Ordering::Relaxed);
    }
}

/// An HS256 connection token for Centrifugo, valid for a day, for user `load`.
pub fn centrifugo_token(secret: &str) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct Claims {
        sub: &'static str,
        exp: u64,
    }
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub: "load", exp },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}
