//! WebSockets: a ticket's realtime events, and the project-wide inbox feed for agents.
//!
//! Every check (rate limit, project, origin, ticket, token) happens before the upgrade, so a
//! refused client gets an ordinary `{"error"}` answer. After the upgrade a socket task relays
//! events; it never blocks the ticket's actor, which cuts it off if it falls behind.
//!
//! A client that stops reading is dropped within a second either way: when its ticket cuts it
//! off (the socket task hears it even while stuck in a write), or when one write to it has
//! waited `ws_write_timeout_ms`. It is sent the `error` event and close 1008 only if the socket
//! takes them at once, and otherwise reset, so nothing stays queued in the kernel for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleety_actors::domain::{Participant, Project, ProjectId, Slug};
use fleety_actors::events::{event_frame, slow_consumer_frame, ErrorPayload};
use fleety_actors::ticket::{CutOff, Event, Replay, Subscription, TicketError, TicketKey};
use fleety_actors::MessageId;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::task::task_tracker::TaskTrackerToken;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use warp::reply::Response;

use super::upgrade::{self, WebSocket, WsRequest};

use super::access::Visitor;
use super::error::respond;
use super::tickets::ticket_key;
use super::{ApiError, Ctx};

/// Close codes (RFC 6455): normal, going away, policy violation, try again later.
const NORMAL: u16 = 1000;
const GOING_AWAY: u16 = 1001;
/// How the frame of a ticket's last event starts.
const TICKET_DELETED: &[u8] = b"{\"type\":\"ticket_deleted\"";
const POLICY: u16 = 1008;
const TRY_AGAIN: u16 = 1013;

/// Where a reconnecting socket picks up.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketSocketQuery {
    /// The newest message the client has: the socket first sends every message after it.
    #[param(value_type = Option<MessageId>)]
    since: Option<String>,
}

/// The feed token, in the query: a browser cannot set headers on a WebSocket, and the admin
/// key must never appear in a URL.
#[derive(Deserialize)]
pub struct FeedQuery {
    /// From `POST /v1/projects/{projectId}/feed-token` (the `feedToken` security scheme).
    pub token: Option<String>,
}

/// A frame of a ticket's socket: `{"type": ..., "payload": ...}`.
pub struct TicketEvent;

/// A frame of the project feed: a ticket's event with the ticket's slug in `ticket`, or
/// `ticket_created` and the agents-only `note_added`.
pub struct FeedEvent;

/// The events a ticket's socket sends: (type, the payload's schema name, what it means).
const TICKET_EVENTS: &[(&str, &str, &str)] = &[
    (
        "subscribed",
        "SubscribedPayload",
        "First on every connection: where the ticket stands",
    ),
    ("new_message", "Message", "A message was posted"),
    (
        "status_change",
        "StatusChangePayload",
        "The ticket's status changed",
    ),
    (
        "ticket_update",
        "ReadReceiptPayload",
        "A reader marked the messages read",
    ),
    ("ticket_update", "TagsPayload", "The ticket's tags changed"),
    (
        "ticket_update",
        "RatedPayload",
        "The visitor rated the ticket",
    ),
    (
        "assigned",
        "AssignedPayload",
        "The ticket's assignee changed",
    ),
    ("typing", "TypingPayload", "Someone is typing; never stored"),
    (
        "ticket_deleted",
        "TicketDeletedPayload",
        "The ticket was erased: its own socket is closed after this event, and the feed drops it",
    ),
    (
        "error",
        "ErrorPayload",
        "Sent before the server closes the socket",
    ),
];

/// The events only the project feed sends.
const FEED_EVENTS: &[(&str, &str, &str)] = &[
    ("ticket_created", "TicketSummary", "A ticket was opened"),
    ("note_added", "Note", "An agent added an internal note"),
    (
        "timeline_entry",
        "TimelineEntry",
        "Someone changed the ticket's status, assignee or tags (the timeline entry)",
    ),
];

/// `{"type": kind, "payload": <schema>}`, and on the feed the ticket's slug.
fn frame_schema(kind: &str, payload: &str, meaning: &str, feed: bool) -> Schema {
    let mut frame = ObjectBuilder::new()
        .description(Some(meaning))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([kind])),
        )
        .required("type")
        .property("payload", Ref::from_schema_name(payload))
        .required("payload");
    if feed {
        frame = frame.property("ticket", Ref::from_schema_name("Slug"));
    }
    frame.into()
}

fn frames(out: &mut Vec<(String, RefOr<Schema>)>, feed: bool) -> RefOr<Schema> {
    use fleety_actors::events as e;
    out.push(("Slug".into(), Slug::schema()));
    out.push(("Message".into(), e::MessageView::schema()));
    e::MessageView::schemas(out);
    out.push(("SubscribedPayload".into(), e::SubscribedPayload::schema()));
    e::SubscribedPayload::schemas(out);
    out.push((
        "StatusChangePayload".into(),
        e::StatusChangePayload::schema(),
    ));
    e::StatusChangePayload::schemas(out);
    out.push(("ReadReceiptPayload".into(), e::ReadReceiptPayload::schema()));
    e::ReadReceiptPayload::schemas(out);
    out.push(("TagsPayload".into(), e::TagsPayload::schema()));
    e::TagsPayload::schemas(out);
    out.push(("RatedPayload".into(), e::RatedPayload::schema()));
    e::RatedPayload::schemas(out);
    out.push(("AssignedPayload".into(), e::AssignedPayload::schema()));
    out.push(("TypingPayload".into(), e::TypingPayload::schema()));
    out.push((
        "TicketDeletedPayload".into(),
        e::TicketDeletedPayload::schema(),
    ));
    out.push(("ErrorPayload".into(), e::ErrorPayload::schema()));
    out.push(("TicketSummary".into(), e::TicketSummary::schema()));
    e::TicketSummary::schemas(out);
    out.push(("Note".into(), e::NoteView::schema()));
    out.push(("TimelineEntry".into(), e::ActivityView::schema()));
    e::ActivityView::schemas(out);
    let mut one_of = OneOfBuilder::new();
    let all = TICKET_EVENTS
        .iter()
        .chain(if feed { FEED_EVENTS } else { &[] });
    for (kind, payload, meaning) in all {
        one_of = one_of.item(frame_schema(kind, payload, meaning, feed));
    }
    if feed {
        // The feed's own greeting carries no ticket.
        let greeting = ObjectBuilder::new()
            .description(Some("The project feed's greeting"))
            .property(
                "feed",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["project"])),
            )
            .required("feed");
        out.push(("FeedSubscribedPayload".into(), greeting.into()));
        one_of = one_of.item(frame_schema(
            "subscribed",
            "FeedSubscribedPayload",
            "First on every connection",
            false,
        ));
    }
    one_of.into()
}

impl PartialSchema for TicketEvent {
    fn schema() -> RefOr<Schema> {
        frames(&mut Vec::new(), false)
    }
}
impl ToSchema for TicketEvent {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        frames(out, false);
    }
}

impl PartialSchema for FeedEvent {
    fn schema() -> RefOr<Schema> {
        frames(&mut Vec::new(), true)
    }
}
impl ToSchema for FeedEvent {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        frames(out, true);
    }
}

/// GET /v1/tickets/{projectId}/{slug}/ws?since=<message id>
pub async fn ticket_socket(
    slug: String,
    ws: WsRequest,
    visitor: Visitor,
    ctx: Arc<Ctx>,
    language: Option<String>,
    query: TicketSocketQuery,
) -> Response {
    respond(
        async {
            let key = ticket_key(&visitor.project, &slug)?;
            let since = match query.since.as_deref() {
                Some(raw) => Some(
                    raw.parse::<MessageId>()
                        .map_err(|_| ApiError::bad_request("since: not a message id"))?,
                ),
                None => None,
            };
            super::ticket_access::admit(&ctx, &visitor, &key).await?;
            let subscription = ctx.system.tickets.subscribe(&key, since).await?;
            // A visitor with the ticket open is reading it: no email waits while they are.
            let watching = match (&ctx.visitor_mail, visitor.admin) {
                (Some(mail), false) => {
                    let lang = language.as_deref();
                    if let Err(e) = mail.read(&key.project, &key.slug, lang).await {
                        tracing::warn!(error = %e, "cancelling a visitor email failed");
                    }
                    Some(mail.watch(&key.project, &key.slug))
                }
                _ => None,
            };
            let token = ctx.sockets.token();
            let ctx3 = ctx.clone();
            let config = socket_config(&ctx.settings);
            // Straight to the async fn: an async block here would keep its own copy of every
            // argument beside the relay's for as long as the socket lives.
            Ok(ws.upgrade(config, move |socket| {
                relay_ticket(socket, ctx3, key, subscription, since, (token, watching))
            }))
        }
        .await,
    )
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

fn socket_config(settings: &crate::config::Settings) -> upgrade::SocketConfig {
    upgrade::config(settings.ws.max_message_bytes, settings.ws.send_buffer_bytes)
}

/// Why writing to a socket stopped.
enum Stop {
    /// The peer is gone, or the socket failed.
    Gone,
    /// One write waited longer than the write timeout: the peer is not reading.
    Blocked,
}

/// One step of writing (a frame queued, or the buffer flushed), given up on once it has
/// waited `limit`. A peer that reads at all lets each step through well within it.
async fn step(
    limit: Duration,
    write: impl std::future::Future<Output = Result<(), tokio_tungstenite::tungstenite::Error>>,
) -> Result<(), Stop> {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => Err(Stop::Blocked),
    }
}

fn text(frame: Bytes) -> Result<Message, Stop> {
    // Frames are JSON we produced, hence UTF-8; the check keeps that from being an assumption,
    // and the frame's bytes are shared, not copied, for every subscriber.
    Utf8Bytes::try_from(frame).map(Message::Text).map_err(|_| {
        tracing::error!("an event frame is not UTF-8; dropping the socket");
        Stop::Gone
    })
}

async fn send(socket: &mut WebSocket, limit: Duration, message: Message) -> Result<(), Stop> {
    step(limit, socket.send(message)).await
}

async fn send_frame(socket: &mut WebSocket, limit: Duration, frame: &Bytes) -> Result<(), Stop> {
    send(socket, limit, text(frame.clone())?).await
}

/// Frames written in one go at most, and bytes: more wait for the next round, so one busy
/// socket cannot hold a worker thread for long, and one flush never needs the peer to take
/// more than a buffer's worth.
const MAX_BATCH: usize = 64;
const MAX_BATCH_BYTES: usize = 16 * 1024;

/// Queues `first`, then whatever `more` yields (up to [`MAX_BATCH`] frames), in the socket's
/// write buffer and flushes once: one write for the lot while they fit in the buffer.
async fn send_frames(
    socket: &mut WebSocket,
    limit: Duration,
    first: Bytes,
    mut more: impl FnMut() -> Option<Bytes>,
) -> Result<(), Stop> {
    let mut next = Some(first);
    let (mut sent, mut bytes) = (0, 0);
    while let Some(frame) = next {
        bytes += frame.len();
        step(limit, socket.feed(text(frame)?)).await?;
        sent += 1;
        next = if sent < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            more()
        } else {
            None
        };
    }
    step(limit, socket.flush()).await
}

/// Writes with `write`, unless `cut_off` trips first: a socket stuck on a peer that does not
/// read must not wait out its write timeout once its ticket has dropped it.
async fn unless_cut<T>(
    cut_off: &CutOff,
    write: impl std::future::Future<Output = Result<T, Stop>>,
) -> Result<T, Stop> {
    tokio::select! {
        written = write => written,
        _ = cut_off.cut_off() => Err(Stop::Blocked),
    }
}

async fn close(socket: &mut WebSocket, limit: Duration, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = send(socket, limit, Message::Close(Some(frame))).await;
    let _ = step(limit, socket.close(None)).await;
}

/// Drops a consumer that fell behind. The `error` event and the 1008 close go out only if the
/// socket takes them without waiting; then the connection is closed, with a reset when they
/// did not fit, so nothing stays queued for a peer that is not reading.
fn drop_slow(mut socket: WebSocket) {
    metrics::counter!("fleety_slow_websockets_dropped_total").increment(1);
    let farewell = async {
        socket
            .feed(text(slow_consumer_frame())?)
            .await
            .map_err(|_| Stop::Gone)?;
        let frame = CloseFrame {
            code: CloseCode::from(POLICY),
            reason: Utf8Bytes::from_static("too slow"),
        };
        socket
            .feed(Message::Close(Some(frame)))
            .await
            .map_err(|_| Stop::Gone)?;
        socket.flush().await.map_err(|_| Stop::Gone)
    };
    match farewell.now_or_never() {
        // The kernel holds the farewell; it goes out before the FIN.
        Some(Ok(())) => drop(socket),
        _ => upgrade::reset(socket),
    }
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
    /// `{"type": "typing"}`, with the ticket's slug on the project feed.
    Typing(Option<String>),
    Gone,
}

/// Typing signals a socket may pass on at most: one every two seconds. More are dropped
/// silently; they carry nothing a later one would not.
const TYPING_EVERY: Duration = Duration::from_secs(2);

/// Handles one frame from a client: pongs, closes, and typing signals. Anything else is
/// ignored rather than treated as an error.
fn inbound(frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Inbound {
    #[derive(serde::Deserialize)]
    struct ClientEvent {
        #[serde(rename = "type")]
        kind: String,
        ticket: Option<String>,
    }
    match frame {
        Some(Ok(Message::Close(_))) => Inbound::Gone,
        Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientEvent>(&text) {
            Ok(event) if event.kind == "typing" => Inbound::Typing(event.ticket),
            _ => Inbound::Alive,
        },
        Some(Ok(_)) => Inbound::Alive,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "websocket read failed");
            Inbound::Gone
        }
        None => Inbound::Gone,
    }
}

/// `since` is the newest message the client already has; the replay starts after it.
/// `_token` keeps the server's shutdown waiting for this socket while it lives.
async fn relay_ticket(
    mut socket: WebSocket,
    ctx: Arc<Ctx>,
    key: TicketKey,
    subscription: Subscription,
    since: Option<MessageId>,
    // Held for as long as the socket lives.
    _held: (TaskTrackerToken, Option<crate::visitor_mail::Watching>),
) {
    let _open = OpenGauge::new("fleety_websockets_open", "ticket");
    // The client has everything up to `since`, or (without it) everything before it joined.
    let mut last_seen = since.or(subscription.last_message_id);
    match relay_ticket_events(&mut socket, &ctx, &key, subscription, &mut last_seen).await {
        Ok(()) | Err(Stop::Gone) => {}
        Err(Stop::Blocked) => drop_slow(socket),
    }
}

/// Relays until the socket or the ticket ends; `Stop::Blocked` means the client fell behind.
async fn relay_ticket_events(
    socket: &mut WebSocket,
    ctx: &Ctx,
    key: &TicketKey,
    subscription: Subscription,
    last_seen: &mut Option<MessageId>,
) -> Result<(), Stop> {
    let limit = ctx.settings.ws.write_timeout;
    let Subscription {
        subscribed,
        replay,
        mut events,
        mut cut_off,
        mut skip_through,
        ..
    } = subscription;
    unless_cut(&cut_off, send_frame(socket, limit, &subscribed)).await?;
    // Rare paths are boxed: every socket's future is as large as its largest state, and
    // these would make each idle socket carry their space.
    unless_cut(
        &cut_off,
        Box::pin(send_replay(socket, limit, replay, last_seen)),
    )
    .await?;
    let mut alive = Liveness::new(ctx.settings.ws.ping_interval);
    let mut last_typing: Option<Instant> = None;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                // With several nodes, events the replay already covered come through too.
                Some(event) if event.seq.is_some_and(|s| s <= skip_through) => {}
                Some(event) => {
                    // Everything already queued goes out in one write: under load a socket
                    // wakes to several events, and a syscall per frame is most of the cost.
                    let erased = &mut false;
                    let mut seen = |event: Arc<Event>| {
                        if event.message_id.is_some() {
                            *last_seen = event.message_id;
                        }
                        *erased |= event.frame.starts_with(TICKET_DELETED);
                        event.frame.clone()
                    };
                    let first = seen(event);
                    let fresh = |e: &Arc<Event>| e.seq.is_none_or(|s| s > skip_through);
                    let more = || events.try_recv().ok().filter(fresh).map(&mut seen);
                    unless_cut(&cut_off, send_frames(socket, limit, first, more)).await?;
                    if *erased {
                        // The ticket's last event: nothing comes after it.
                        close(socket, limit, NORMAL, "ticket deleted").await;
                        return Ok(());
                    }
                }
                None if cut_off.is_cut() => return Err(Stop::Blocked),
                None => {
                    // The ticket's actor stopped (it failed and is being restarted): join the
                    // new one and replay what this socket has not seen yet.
                    let since = last_seen.unwrap_or(MessageId::MIN);
                    let Some(next) = Box::pin(resubscribe(ctx, key, since)).await else {
                        return Box::pin(async {
                            let frame = event_frame("error", None, ErrorPayload { error: "ticket unavailable; reconnect shortly" });
                            send_frame(socket, limit, &frame).await?;
                            close(socket, limit, TRY_AGAIN, "ticket unavailable").await;
                            Ok(())
                        })
                        .await;
                    };
                    events = next.events;
                    cut_off = next.cut_off;
                    skip_through = next.skip_through;
                    // A fresh `subscribed` tells the client the ticket's current status,
                    // which may have changed while it was being restarted.
                    unless_cut(&cut_off, send_frame(socket, limit, &next.subscribed)).await?;
                    unless_cut(&cut_off, Box::pin(send_replay(socket, limit, next.replay, last_seen))).await?;
                }
            },
            _ = cut_off.cut_off() => return Err(Stop::Blocked),
            frame = socket.next() => match inbound(frame) {
                Inbound::Alive => alive.last_heard = Instant::now(),
                Inbound::Typing(_) => {
                    alive.last_heard = Instant::now();
                    if last_typing.is_none_or(|t| t.elapsed() >= TYPING_EVERY) {
                        last_typing = Some(Instant::now());
                        ctx.system.tickets.typing(key, Participant::User);
                    }
                }
                Inbound::Gone => return Ok(()),
            },
            _ = alive.ping.tick() => {
                if alive.silent_too_long() {
                    tracing::debug!(ticket = %key, "dropping a silent websocket");
                    return Ok(());
                }
                unless_cut(&cut_off, send(socket, limit, Message::Ping(Bytes::new()))).await?;
            }
            _ = ctx.shutdown.cancelled() => {
                Box::pin(close(socket, limit, GOING_AWAY, "server shutting down")).await;
                return Ok(());
            }
        }
    }
}

async fn send_replay(
    socket: &mut WebSocket,
    limit: Duration,
    replay: Replay,
    last_seen: &mut Option<MessageId>,
) -> Result<(), Stop> {
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
                send_frame(socket, limit, &frame).await?;
                close(socket, limit, TRY_AGAIN, "replay failed").await;
                return Err(Stop::Gone);
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
        send_frame(socket, limit, &event.frame).await?;
        if event.message_id.is_some() {
            *last_seen = event.message_id;
        }
    }
    Ok(())
}

/// Joins the ticket's new actor, replaying everything after `since`. A socket that has seen no
/// message passes [`MessageId::MIN`]: it must get every message, not none.
async fn resubscribe(ctx: &Ctx, key: &TicketKey, since: MessageId) -> Option<Subscription> {
    let since = Some(since);
    for attempt in 0..5u32 {
        // Give the supervisor a moment to bring the ticket back.
        tokio::time::sleep(Duration::from_millis(50 * (1 << attempt))).await;
        if let Ok(sub) = ctx.system.tickets.subscribe(key, since).await {
            return Some(sub);
        }
    }
    None
}

/// GET /v1/projects/{projectId}/feed?token=<feed token>: every event of every ticket of the
/// project, tagged with the ticket's slug, for an agent's inbox.
pub async fn feed_socket(
    ws: WsRequest,
    project: Arc<Project>,
    session: super::access::FeedSession,
    ctx: Arc<Ctx>,
) -> Response {
    let events = ctx.system.feeds.subscribe(&project.id);
    // Subscribed before the upgrade, so a session ended meanwhile is not missed.
    let ended = ctx.accounts.ended_sessions();
    let guard = ctx.sockets.token();
    let config = socket_config(&ctx.settings);
    // A member's feed is the inbox open: no visitor-reply email waits for them meanwhile.
    let in_inbox = match (&ctx.agent_mail, &session) {
        (Some(mail), Some((member, _))) => Some(mail.enter_inbox(&project.id, *member)),
        _ => None,
    };
    ws.upgrade(config, move |socket| {
        let watch = SessionWatch { session, ended };
        relay_feed(socket, ctx, project, events, watch, (guard, in_inbox))
    })
}

/// Close code of a member's feed socket whose session ended: the inbox shows its sign-in
/// page (4000 to 4999 are the application's own).
const SIGNED_OUT: u16 = 4401;

/// The session a member's feed socket stands on, and the news of sessions ending.
struct SessionWatch {
    session: super::access::FeedSession,
    ended: broadcast::Receiver<crate::accounts::SessionsEnded>,
}

impl SessionWatch {
    /// Resolves when the socket's session has ended on this node; never for the admin
    /// key's socket. Falling behind the news ends it too: the inbox reconnects and its
    /// session is checked afresh.
    async fn ended(&mut self, project: &ProjectId) {
        let Some((member, id)) = &self.session else {
            return std::future::pending().await;
        };
        loop {
            match self.ended.recv().await {
                Ok(e) if e.ends(project, *member, id) => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            }
        }
    }

    /// Whether the session still stands in the store: for sessions ended on another node.
    async fn still_alive(&self, ctx: &Ctx, project: &ProjectId) -> bool {
        match &self.session {
            None => true,
            // A store that does not answer is not a sign-out.
            Some((member, id)) => ctx
                .accounts
                .session_alive(project, *member, id)
                .await
                .unwrap_or(true),
        }
    }
}

async fn relay_feed(
    mut socket: WebSocket,
    ctx: Arc<Ctx>,
    project: Arc<Project>,
    events: broadcast::Receiver<Bytes>,
    watch: SessionWatch,
    // Held for as long as the socket lives.
    _held: (TaskTrackerToken, Option<crate::agent_mail::InInbox>),
) {
    let _open = OpenGauge::new("fleety_websockets_open", "feed");
    match relay_feed_events(&mut socket, &ctx, &project, events, watch).await {
        Ok(()) | Err(Stop::Gone) => {}
        Err(Stop::Blocked) => drop_slow(socket),
    }
    ctx.system.feeds.release(&project.id);
}

async fn relay_feed_events(
    socket: &mut WebSocket,
    ctx: &Ctx,
    project: &Project,
    mut events: broadcast::Receiver<Bytes>,
    mut watch: SessionWatch,
) -> Result<(), Stop> {
    let limit = ctx.settings.ws.write_timeout;
    let hello = event_frame("subscribed", None, serde_json::json!({ "feed": "project" }));
    send_frame(socket, limit, &hello).await?;
    let mut alive = Liveness::new(ctx.settings.ws.ping_interval);
    let mut last_typing: Option<Instant> = None;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                // Lagging and closing are left to the next `recv`.
                Ok(frame) => send_frames(socket, limit, frame, || events.try_recv().ok()).await?,
                Err(broadcast::error::RecvError::Lagged(_)) => return Err(Stop::Blocked),
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            frame = socket.next() => match inbound(frame) {
                Inbound::Alive => alive.last_heard = Instant::now(),
                Inbound::Typing(ticket) => {
                    alive.last_heard = Instant::now();
                    let slug = ticket.as_deref().and_then(|s| Slug::parse(s).ok());
                    if let Some(slug) = slug.filter(|_| last_typing.is_none_or(|t| t.elapsed() >= TYPING_EVERY)) {
                        last_typing = Some(Instant::now());
                        let key = TicketKey { project: project.id.clone(), slug };
                        ctx.system.tickets.typing(&key, Participant::Admin);
                    }
                }
                Inbound::Gone => return Ok(()),
            },
            _ = alive.ping.tick() => {
                if alive.silent_too_long() {
                    return Ok(());
                }
                if !watch.still_alive(ctx, &project.id).await {
                    close(socket, limit, SIGNED_OUT, "signed out").await;
                    return Ok(());
                }
                send(socket, limit, Message::Ping(Bytes::new())).await?;
            }
            _ = watch.ended(&project.id) => {
                close(socket, limit, SIGNED_OUT, "signed out").await;
                return Ok(());
            }
            _ = ctx.shutdown.cancelled() => {
                close(socket, limit, GOING_AWAY, "server shutting down").await;
                return Ok(());
            }
        }
    }
}
