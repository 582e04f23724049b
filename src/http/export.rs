//! A project's export: `GET /v1/projects/{projectId}/export`, every ticket with its messages,
//! internal notes, timeline and assistant chat, the knowledge base and the settings (never a
//! secret), streamed as JSON Lines.
//!
//! The export is as of its start: tickets opened later, and messages, notes, timeline entries
//! and chat turns written later, are left out. A ticket's own fields (status, tags, assignee)
//! are as they are when the export reaches it. Tickets come newest first, each followed by a
//! `resume` line whose cursor continues the same export after it, with the same start, so a
//! client that loses the connection asks again with the last cursor it read. The last line is
//! `end`: a stream without it was cut short.
//!
//! Memory stays bounded whatever the project's size: a producer task reads the store a page at
//! a time and hands lines to the answer through a small channel, so it waits while the client
//! reads slowly, and stops when the client goes.
//!
//! One person's data (the answer to an access request) has its own export,
//! `GET /v1/projects/{projectId}/contacts/{contactId}/export`: the contact and every ticket
//! they opened, each as in the project's export, with no resume cursor.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use fleety_actors::domain::{Project, Ticket};
use fleety_actors::events::{ActivityView, MessageView, NoteView, TicketSummary};
use fleety_actors::store::{MessageRange, Store, StoreResult, TicketCursor, TicketQuery};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use utoipa::IntoParams;
use warp::reply::{Reply, Response};

use super::error::respond;
use super::{ApiError, Ctx};

/// Lines the producer may be ahead of the client.
const BUFFERED_LINES: usize = 64;
/// Tickets read from the store at a time.
const TICKET_PAGE: usize = 50;
/// Contacts read from the store at a time.
const CONTACT_PAGE: usize = 100;
/// Messages read from the store at a time.
const MESSAGE_PAGE: usize = 500;
/// A contact's tickets exported at most; the `end` line says when there were more.
const CONTACT_TICKETS: usize = 10_000;
/// Chat turns exported per ticket at most: the assistant's chats are short by design.
const CHAT_TURNS: usize = 500;
/// The version of the line format, in the first line.
const FORMAT: u32 = 1;

/// Where an export starts or continues.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// The `cursor` of the last `resume` line read: continues that export after its ticket.
    #[param(pattern = "^[0-9]{1,15}\\.[0-9]{1,15}\\.[a-z]{1,16}-[a-z]{1,16}-[0-9]{3}$")]
    cursor: Option<String>,
}

/// An export's position: when it started and the last ticket it finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    as_of: DateTime<Utc>,
    after: Option<TicketCursor>,
}

impl Position {
    /// A fresh export starting `now` without a cursor, else the one the cursor continues;
    /// `None` for a cursor that is not one.
    pub fn of(cursor: Option<&str>, now: DateTime<Utc>) -> Option<Position> {
        // An empty cursor is no cursor of a resume line, as the description's pattern says.
        match cursor {
            Some(raw) => Position::decode(raw),
            None => Some(Position {
                as_of: now,
                after: None,
            }),
        }
    }

    /// `<as_of ms>.<the listing's cursor of the ticket done>`.
    fn encode(as_of: DateTime<Utc>, done: &TicketCursor) -> String {
        format!(
            "{}.{}",
            as_of.timestamp_millis(),
            super::projects_api::encode_cursor(done)
        )
    }

    fn decode(raw: &str) -> Option<Position> {
        let (start, done) = raw.split_once('.')?;
        // Digits only and at most 15 of them, as the pattern says: every such time is one
        // chrono holds.
        if start.is_empty() || start.len() > 15 || !start.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Position {
            as_of: DateTime::<Utc>::from_timestamp_millis(start.parse().ok()?)?,
            after: Some(super::projects_api::decode_cursor(done)?),
        })
    }
}

/// GET /v1/projects/{projectId}/export?cursor=
pub async fn export(project: Arc<Project>, ctx: Arc<Ctx>, query: ExportQuery) -> Response {
    let position = match Position::of(query.cursor.as_deref(), ctx.clock.now()) {
        Some(p) => p,
        None => {
            return respond(Err(ApiError::bad_request(
                "cursor is not the cursor of a resume line",
            )))
        }
    };
    streamed(start(ctx.store.clone(), project, position))
}

/// GET /v1/projects/{projectId}/contacts/{contactId}/export
pub async fn export_contact(id: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    let not_found = || respond(Err(ApiError::not_found("contact not found")));
    let Ok(id) = uuid::Uuid::try_parse(&id) else {
        return not_found();
    };
    let contact = match ctx.contact_store.get_contact(&project.id, id).await {
        Ok(Some(contact)) => contact,
        Ok(None) => return not_found(),
        Err(e) => return respond(Err(e.into())),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFERED_LINES);
    let (store, as_of) = (ctx.store.clone(), ctx.clock.now());
    tokio::spawn(async move {
        let lines = Lines { tx };
        let outcome = contact_lines(&lines, store.as_ref(), &project, &contact, as_of).await;
        if let Err(Stopped::Store(e)) = outcome {
            tracing::warn!(project = %project.id, error = %e, "contact export stopped");
            let line = json!({"type": "error", "error": "the export stopped: ask again"});
            lines.send(&line).await;
        }
    });
    streamed(rx)
}

/// The contact and each ticket they opened up to `as_of`, newest first.
async fn contact_lines(
    lines: &Lines,
    store: &dyn Store,
    project: &Project,
    contact: &fleety_actors::contact::Contact,
    as_of: DateTime<Utc>,
) -> Result<(), Stopped> {
    lines
        .line(&json!({
            "type": "export",
            "format": FORMAT,
            "project_id": project.id.as_str(),
            "contact_id": contact.id,
            "as_of": fleety_actors::events::rfc3339(as_of),
            "resumed": false,
        }))
        .await?;
    let view = super::contacts::ContactView::new(contact);
    lines
        .line(&json!({"type": "contact", "contact": view}))
        .await?;
    // One more than exported, to tell whether there were more.
    let mut tickets = store
        .contact_tickets(&project.id, contact.id, CONTACT_TICKETS + 1)
        .await?;
    let more = tickets.len() > CONTACT_TICKETS;
    tickets.truncate(CONTACT_TICKETS);
    let mut exported = 0u64;
    for ticket in tickets.iter().filter(|t| written_by(t.created_at, as_of)) {
        one_ticket(lines, store, ticket, as_of).await?;
        exported += 1;
    }
    lines
        .line(&json!({"type": "end", "tickets": exported, "more_tickets": more}))
        .await
}

/// A streamed JSON Lines answer of the lines `rx` yields.
fn streamed(mut rx: mpsc::Receiver<Bytes>) -> Response {
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|l| l.map(Ok::<_, std::convert::Infallible>))
    });
    let mut resp = warp::reply::stream(body).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/jsonl"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// Starts exporting the project from `position`: its lines, each ending with a newline, as
/// the reader takes them. Dropping the receiver stops the export.
pub fn start(
    store: Arc<dyn Store>,
    project: Arc<Project>,
    position: Position,
) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFERED_LINES);
    tokio::spawn(async move {
        let lines = Lines { tx };
        if let Err(e) = produce(&lines, store.as_ref(), &project, position).await {
            // The answer has begun: all that is left is to say so in the stream, whose
            // missing `end` line tells the reader it is incomplete.
            tracing::warn!(project = %project.id, error = %e, "export stopped");
            let line = json!({"type": "error", "error": "the export stopped: ask again with the last resume cursor"});
            lines.send(&line).await;
        }
    });
    rx
}

/// The lines of one export, on their way to the client.
struct Lines {
    tx: mpsc::Sender<Bytes>,
}

/// Why the producer stops early.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error("the client went away")]
    Gone,
    #[error(transparent)]
    Store(#[from] fleety_actors::store::StoreError),
}

impl Lines {
    /// Sends one line; false when the client has gone.
    async fn send<T: Serialize + ?Sized>(&self, line: &T) -> bool {
        let mut bytes = match serde_json::to_vec(line) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "serialising an export line failed");
                return true;
            }
        };
        bytes.push(b'\n');
        self.tx.send(Bytes::from(bytes)).await.is_ok()
    }

    async fn line<T: Serialize + ?Sized>(&self, line: &T) -> Result<(), Stopped> {
        if self.send(line).await {
            Ok(())
        } else {
            Err(Stopped::Gone)
        }
    }
}

async fn produce(
    lines: &Lines,
    store: &dyn Store,
    project: &Project,
    position: Position,
) -> Result<(), Stopped> {
    let outcome = export_all(lines, store, project, position).await;
    match outcome {
        Err(Stopped::Gone) => Ok(()),
        other => other,
    }
}

async fn export_all(
    lines: &Lines,
    store: &dyn Store,
    project: &Project,
    Position { as_of, mut after }: Position,
) -> Result<(), Stopped> {
    let id = &project.id;
    lines
        .line(&json!({
            "type": "export",
            "format": FORMAT,
            "project_id": id.as_str(),
            "as_of": fleety_actors::events::rfc3339(as_of),
            "resumed": after.is_some(),
        }))
        .await?;
    if after.is_none() {
        settings(lines, store, project).await?;
    }
    let mut tickets = 0u64;
    loop {
        let page = store
            .list_tickets(
                id,
                &TicketQuery {
                    after: after.clone(),
                    limit: TICKET_PAGE,
                    ..TicketQuery::default()
                },
            )
            .await?;
        for ticket in page
            .tickets
            .iter()
            .filter(|t| written_by(t.created_at, as_of))
        {
            one_ticket(lines, store, ticket, as_of).await?;
            tickets += 1;
            let done = TicketCursor {
                created_at: ticket.created_at,
                slug: ticket.slug.clone(),
            };
            lines
                .line(&json!({"type": "resume", "cursor": Position::encode(as_of, &done)}))
                .await?;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    lines
        .line(&json!({"type": "end", "tickets": tickets}))
        .await
}

/// The project's settings, members, webhook endpoints, canned replies, articles and contacts
/// (its known visitors): the views the API shows, which hold no secret.
async fn settings(lines: &Lines, store: &dyn Store, project: &Project) -> Result<(), Stopped> {
    let id = &project.id;
    lines
        .line(
            &json!({"type": "project", "project": super::projects_api::ProjectView::new(project)}),
        )
        .await?;
    for m in store.list_members(id).await? {
        let member = super::members::MemberView::from(&m);
        lines
            .line(&json!({"type": "member", "member": member}))
            .await?;
    }
    for e in store.list_endpoints(id).await? {
        let webhook = super::webhooks::EndpointView::new(&e);
        lines
            .line(&json!({"type": "webhook", "webhook": webhook}))
            .await?;
    }
    for r in store.list_canned_replies(id).await? {
        let reply = super::canned::CannedReplyView::new(&r);
        lines
            .line(&json!({"type": "canned_reply", "canned_reply": reply}))
            .await?;
    }
    for a in store.list_articles(id).await? {
        let article = super::kb::ArticleView::new(&a);
        lines
            .line(&json!({"type": "article", "article": article}))
            .await?;
    }
    let mut after = None;
    loop {
        let query = fleety_actors::contact::ContactQuery {
            after,
            limit: CONTACT_PAGE,
            ..Default::default()
        };
        let page = store.list_contacts(id, &query).await?;
        for c in &page.contacts {
            let contact = super::contacts::ContactView::new(c);
            lines
                .line(&json!({"type": "contact", "contact": contact}))
                .await?;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(())
}

/// Whether something written at `at` belongs to an export as of `as_of`. To the millisecond,
/// the precision the start is given in: ids made in a burst run a little ahead of the clock
/// (each is after the one before), and a note's time is its id's.
fn written_by(at: DateTime<Utc>, as_of: DateTime<Utc>) -> bool {
    at.timestamp_millis() <= as_of.timestamp_millis()
}

/// One ticket and what was written to it up to `as_of`.
async fn one_ticket(
    lines: &Lines,
    store: &dyn Store,
    ticket: &Ticket,
    as_of: DateTime<Utc>,
) -> Result<(), Stopped> {
    let (id, slug) = (&ticket.project_id, &ticket.slug);
    lines
        .line(&json!({"type": "ticket", "ticket": TicketSummary::new(ticket)}))
        .await?;
    let cursors = store.read_cursors(id, slug).await?;
    let mut range = MessageRange {
        limit: MESSAGE_PAGE,
        ..MessageRange::all()
    };
    loop {
        let page = store.list_messages(id, slug, range).await?;
        let full = page.len() == MESSAGE_PAGE;
        for m in page.iter().filter(|m| written_by(m.timestamp, as_of)) {
            let message = MessageView::new(m, &cursors);
            lines
                .line(&json!({"type": "message", "ticket": slug, "message": message}))
                .await?;
        }
        match page.last() {
            Some(last) if full => range.after = Some(last.id),
            _ => break,
        }
    }
    for n in store.list_notes(id, slug).await? {
        if written_by(n.created_at, as_of) {
            let note = NoteView::new(&n);
            lines
                .line(&json!({"type": "note", "ticket": slug, "note": note}))
                .await?;
        }
    }
    for a in store.list_activity(id, slug).await? {
        if written_by(a.created_at, as_of) {
            let entry = ActivityView::new(&a);
            lines
                .line(&json!({"type": "timeline_entry", "ticket": slug, "entry": entry}))
                .await?;
        }
    }
    if let Some(session) = &ticket.session_id {
        for t in chat_turns(store, ticket, session).await? {
            if written_by(t.at, as_of) {
                let turn = super::kb::TurnView::new(&t);
                lines
                    .line(&json!({"type": "chat_turn", "ticket": slug, "turn": turn}))
                    .await?;
            }
        }
    }
    Ok(())
}

async fn chat_turns(
    store: &dyn Store,
    ticket: &Ticket,
    session: &str,
) -> StoreResult<Vec<fleety_actors::domain::ChatTurn>> {
    store
        .list_chat_turns(&ticket.project_id, session, CHAT_TURNS)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_cursor_reads_back_as_the_same_position() {
        let as_of = DateTime::<Utc>::from_timestamp_millis(1_765_000_000_123).unwrap();
        let done = TicketCursor {
            created_at: DateTime::<Utc>::from_timestamp_millis(1_764_000_000_456).unwrap(),
            slug: fleety_actors::domain::Slug::parse("brave-lynx-777").unwrap(),
        };
        let raw = Position::encode(as_of, &done);
        assert_eq!(
            Position::decode(&raw),
            Some(Position {
                as_of,
                after: Some(done)
            })
        );
        for bad in [
            "",
            "1.2",
            "x.2.brave-lynx-777",
            "1.2.Not A Slug",
            "1234567890123456.2.a-b-1",
        ] {
            assert_eq!(Position::decode(bad), None, "{bad}");
        }
    }
}
