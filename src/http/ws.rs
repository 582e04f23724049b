//! WebSockets: a ticket's realtime events, and the project-wide inbox feed for agents.
//!
//! Every check (rate limit, project, origin, ticket, token) happens before the upgrade, so a
//! refused client gets an ordinary `{"error"}` answer. After the upgrade a socket task relays
//! events; it never blocks the ticket's actor, which cuts it off if it falls behind.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleety_actors::domain::ProjectId;
use fleety_actors::events::{event_frame, slow_consumer_frame, ErrorPayload};
use fleety_actors::ticket::{Event, Replay, Subscription, TicketError, TicketKey, TicketMsg};
use fleety_actors::MessageId;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use warp::reply::Response;

use super::upgrade::{self, WebSocket, WsRequest};

use super::tickets::{public, ticket_key};
use super::{cors_origin, ApiError, Client, Ctx};

/// Close codes (RFC 6455): going away, policy violation, try again later.
const GOING_AWAY: u16 = 1001;
const POLICY: u16 = 1008;
const TRY_AGAIN: u16 = 1013;
/// How long a socket may take to accept one frame before it counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
pub struct TicketSocketQuery {
    since: Option<String>,
}

/// GET /v1/tickets/{projectId}/{slug}/ws?since=<message id>
pub async fn ticket_socket(
    ctx: Arc<Ctx>,
    project_id: String,
    slug: String,
    query: TicketSocketQuery,
    client: Client,
    ws: WsRequest,
) -> Result<Response, Infallible> {
    let ctx2 = ctx.clone();
    Ok(public(&ctx2, &project_id, &client, async |caller| {
        let key = ticket_key(&caller.project, &slug)?;
        let since = match query.since.as_deref() {
            Some(raw) => Some(
                raw.parse::<MessageId>()
                    .map_err(|_| ApiError::bad_request("since: not a message id"))?,
            ),
            None => None,
        };
        let subscription = ctx
            .system
            .tickets
            .call(&key, |reply| TicketMsg::Subscribe { since, reply })
            .await?;
        let token = ctx.sockets.token();
        let ctx3 = ctx.clone();
        let config = upgrade::config(ctx.settings.ws_max_message_bytes);
        Ok(ws.upgrade(config, move |socket| async move {
            let _open = OpenGauge::new("fleety_websockets_open", "ticket");
            relay_ticket(socket, ctx3, key, subscription, since).await;
            drop(token);
        }))
    })
    .await)
}

/// Counts an open connection in a gauge for as long as it lives.
pub struct OpenGauge(&'static str, &'static str);

impl OpenGauge {
    pub fn new(name: &'static str, kind: &'static str) -> Self {
        metrics::gauge!(name, "kind" => kind).increment(1.0);
        OpenGauge(name, kind)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!(self.0, "kind" => self.1).decrement(1.0);
    }
}

/// Sends one frame, giving up on a peer that does not take it in time.
async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

async fn send_frame(socket: &mut WebSocket, frame: &Bytes) -> bool {
    // Frames are JSON we produced, hence UTF-8; the check keeps that from being an assumption,
    // and the frame's bytes are shared, not copied, for every subscriber.
    match Utf8Bytes::try_from(frame.clone()) {
        Ok(text) => send(socket, Message::Text(text)).await,
        Err(_) => {
            tracing::error!("an event frame is not UTF-8; dropping the socket");
            false
        }
    }
}

/// Frames written in one go at most; more wait for the next round, so one busy socket cannot
/// hold a worker thread for long.
const MAX_BATCH: usize = 64;

/// Queues `first`, then whatever `more` yields (up to [`MAX_BATCH`] frames), in the socket's
/// write buffer and flushes once: one write for the lot while they fit in the buffer.
async fn send_frames(
    socket: &mut WebSocket,
    first: Bytes,
    mut more: impl FnMut() -> Option<Bytes>,
) -> bool {
    let all = async {
        let mut next = Some(first);
        let mut sent = 0;
        while let Some(frame) = next {
            let text = Utf8Bytes::try_from(frame).map_err(|_| {
                tracing::error!("an event frame is not UTF-8; dropping the socket");
            })?;
            socket.feed(Message::Text(text)).await.map_err(|_| ())?;
            sent += 1;
            next = if sent < MAX_BATCH { more() } else { None };
        }
        socket.flush().await.map_err(|_| ())
    };
    matches!(tokio::time::timeout(SEND_TIMEOUT, all).await, Ok(Ok(())))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = send(socket, Message::Close(Some(frame))).await;
    let _ = socket.close(None).await;
}

/// The peer side of the liveness check: any frame from the client counts as a sign of life.
struct Liveness {
    ping: tokio::time::Interval,
    last_heard: Instant,
    limit: Duration,
}

impl Liveness {
    fn new(every: Duration) -> Self {
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            ping,
            last_heard: Instant::now(),
            limit: every * 2,
        }
    }
    fn silent_too_long(&self) -> bool {
        self.last_heard.elapsed() > self.limit
    }
}

enum Inbound {
    Alive,
    Gone,
}

/// Handles one frame from a client: clients have nothing to say on these sockets but pongs and
/// closes; anything else is ignored rather than treated as an error.
fn inbound(frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Inbound {
    match frame {
        Some(Ok(Message::Close(_))) => Inbound::Gone,
        Some(Ok(_)) => Inbound::Alive,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "websocket read failed");
            Inbound::Gone
        }
        None => Inbound::Gone,
    }
}

/// `since` is the newest message the client already has; the replay starts after it.
async fn relay_ticket(
    mut socket: WebSocket,
    ctx: Arc<Ctx>,
    key: TicketKey,
    subscription: Subscription,
    since: Option<MessageId>,
) {
    let Subscription {
        subscribed,
        replay,
        mut events,
        mut cut_off,
        last_message_id,
    } = subscription;
    // The client has everything up to `since`, or (without it) everything before it joined.
    let mut last_seen = since.or(last_message_id);
    if !send_frame(&mut socket, &subscribed).await {
        return;
    }
    // Rare paths are boxed: every socket's future is as large as its largest state, and
    // these would make each idle socket carry their space.
    if !Box::pin(send_replay(&mut socket, replay, &mut last_seen)).await {
        return;
    }
    let mut alive = Liveness::new(ctx.settings.ws_ping_interval());
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    // Everything already queued goes out in one write: under load a socket
                    // wakes to several events, and a syscall per frame is most of the cost.
                    let mut seen = |event: Event| {
                        if event.message_id.is_some() {
                            last_seen = event.message_id;
                        }
                        event.frame
                    };
                    let first = seen(event);
                    if !send_frames(&mut socket, first, || events.try_recv().ok().map(&mut seen)).await {
                        return;
                    }
                }
                None if cut_off.load(Ordering::Acquire) => {
                    Box::pin(async {
                        let _ = send_frame(&mut socket, &slow_consumer_frame()).await;
                        close(&mut socket, POLICY, "too slow").await;
                    })
                    .await;
                    return;
                }
                None => {
                    // The ticket's actor stopped (it failed and is being restarted): join the
                    // new one and replay what this socket has not seen yet.
                    match Box::pin(resubscribe(&ctx, &key, last_seen.unwrap_or(MessageId::MIN))).await {
                        Some(next) => {
                            events = next.events;
                            cut_off = next.cut_off;
                            // A fresh `subscribed` tells the client the ticket's current status,
                            // which may have changed while it was being restarted.
                            if !send_frame(&mut socket, &next.subscribed).await {
                                return;
                            }
                            if !Box::pin(send_replay(&mut socket, next.replay, &mut last_seen)).await {
                                return;
                            }
                        }
                        None => {
                            Box::pin(async {
                                let frame = event_frame("error", None, ErrorPayload { error: "ticket unavailable; reconnect shortly" });
                                let _ = send_frame(&mut socket, &frame).await;
                                close(&mut socket, TRY_AGAIN, "ticket unavailable").await;
                            })
                            .await;
                            return;
                        }
                    }
                }
            },
            frame = socket.next() => match inbound(frame) {
                Inbound::Alive => alive.last_heard = Instant::now(),
                Inbound::Gone => return,
            },
            _ = alive.ping.tick() => {
                if alive.silent_too_long() {
                    tracing::debug!(ticket = %key, "dropping a silent websocket");
                    return;
                }
                if !send(&mut socket, Message::Ping(Bytes::new())).await {
                    return;
                }
            }
            _ = ctx.shutdown.cancelled() => {
                Box::pin(close(&mut socket, GOING_AWAY, "server shutting down")).await;
                return;
            }
        }
    }
}

async fn send_replay(
    socket: &mut WebSocket,
    replay: Replay,
    last_seen: &mut Option<MessageId>,
) -> bool {
    let events = match replay {
        Replay::Ready(events) => events,
        Replay::Loading(rx) => match rx.await {
            Ok(Ok(events)) => events,
            outcome => {
                let error = match outcome {
                    Ok(Err(TicketError::TooFarBehind)) => {
                        "too many missed messages to replay; reload the ticket with GET and reconnect"
                    }
                    _ => "could not replay missed messages; reconnect with ?since=",
                };
                let frame = event_frame("error", None, ErrorPayload { error });
                let _ = send_frame(socket, &frame).await;
                close(socket, TRY_AGAIN, "replay failed").await;
                return false;
            }
        },
    };
    for event in events {
        // A message seen before (live, ahead of a resubscription) is not sent twice.
        if event
            .message_id
            .is_some_and(|id| last_seen.is_some_and(|l| id <= l))
        {
            continue;
        }
        if !send_frame(socket, &event.frame).await {
            return false;
        }
        if event.message_id.is_some() {
            *last_seen = event.message_id;
        }
    }
    true
}

/// Joins the ticket's new actor, replaying everything after `since`. A socket that has seen no
/// message passes [`MessageId::MIN`]: it must get every message, not none.
async fn resubscribe(ctx: &Ctx, key: &TicketKey, since: MessageId) -> Option<Subscription> {
    let since = Some(since);
    for attempt in 0..5u32 {
        // Give the supervisor a moment to bring the ticket back.
        tokio::time::sleep(Duration::from_millis(50 * (1 << attempt))).await;
        if let Ok(sub) = ctx
            .system
            .tickets
            .call(key, |reply| TicketMsg::Subscribe { since, reply })
            .await
        {
            return Some(sub);
        }
    }
    None
}

#[derive(Deserialize)]
pub struct FeedQuery {
    token: Option<String>,
}

/// GET /v1/projects/{projectId}/feed?token=<feed token>: every event of every ticket of the
/// project, tagged with the ticket's slug, for an agent's inbox.
pub async fn feed_socket(
    ctx: Arc<Ctx>,
    project_id: String,
    query: FeedQuery,
    client: Client,
    ws: WsRequest,
) -> Result<Response, Infallible> {
    let result = async {
        let id =
            ProjectId::parse(&project_id).map_err(|_| ApiError::not_found("project not found"))?;
        let project = ctx
            .projects
            .get(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("project not found"))?;
        let token = query.token.as_deref().ok_or_else(|| {
            ApiError::unauthorized(
                "token is required; get one from POST /v1/projects/{projectId}/feed-token",
            )
        })?;
        ctx.tokens
            .verify_feed(token, &project.id)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        cors_origin(&project, &client)?;
        let events = ctx.system.feeds.subscribe(&project.id);
        let guard = ctx.sockets.token();
        let ctx2 = ctx.clone();
        let config = upgrade::config(ctx.settings.ws_max_message_bytes);
        Ok(ws.upgrade(config, move |socket| async move {
            let _open = OpenGauge::new("fleety_websockets_open", "feed");
            relay_feed(socket, &ctx2, events).await;
            ctx2.system.feeds.release(&project.id);
            drop(guard);
        }))
    }
    .await;
    Ok(result.unwrap_or_else(ApiError::into_response))
}

async fn relay_feed(mut socket: WebSocket, ctx: &Ctx, mut events: broadcast::Receiver<Bytes>) {
    let hello = event_frame("subscribed", None, serde_json::json!({ "feed": "project" }));
    if !send_frame(&mut socket, &hello).await {
        return;
    }
    let mut alive = Liveness::new(ctx.settings.ws_ping_interval());
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(frame) => {
                    // Lagging and closing are left to the next `recv`.
                    if !send_frames(&mut socket, frame, || events.try_recv().ok()).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = send_frame(&mut socket, &slow_consumer_frame()).await;
                    close(&mut socket, POLICY, "too slow").await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            frame = socket.next() => match inbound(frame) {
                Inbound::Alive => alive.last_heard = Instant::now(),
                Inbound::Gone => return,
            },
            _ = alive.ping.tick() => {
                if alive.silent_too_long() || !send(&mut socket, Message::Ping(Bytes::new())).await {
                    return;
                }
            }
            _ = ctx.shutdown.cancelled() => {
                close(&mut socket, GOING_AWAY, "server shutting down").await;
                return;
            }
        }
    }
}
