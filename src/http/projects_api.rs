//! Agent and operator endpoints: project settings, the ticket listing, the inbox feed token
//! (agents' admin key) and project creation (the operator token).

use fleety_actors::audit::{self, AuditBy, AuditTarget};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fleety_actors::domain::{
    AssistantGreeting, AssistantGuidance, AssistantName, InvalidValue, Message, Participant,
    Project, ProjectId, ProjectName, Retention, Slug, Tag, TicketAccess, TicketStatus,
};
use fleety_actors::events::{rfc3339, TicketSummary};
use fleety_actors::store::{AssigneeFilter, StoreError, TicketCursor, TicketQuery};
use fleety_actors::MessageId;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::reply::Response;

use super::access::Principal;
use super::assignees::{assignable, Roster};
use super::error::{json, respond};
use super::{ApiError, Ctx};
use crate::projects::parse_origins;

/// A project's settings.
#[derive(Serialize, ToSchema)]
#[schema(as = Project)]
pub struct ProjectView<'a> {
    #[schema(value_type = ProjectId)]
    pub project_id: &'a str,
    pub name: &'a str,
    /// Browser origins allowed to call the public API.
    pub allowed_origins: &'a [String],
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// The assistant's name, shown to visitors; empty for none.
    #[schema(value_type = AssistantName)]
    pub assistant_name: &'a str,
    /// The assistant's first words to a visitor; empty for the widget's default.
    #[schema(value_type = AssistantGreeting)]
    pub assistant_greeting: &'a str,
    /// The admins' instructions to the assistant (tone, what never to promise); empty for
    /// none. Never shown to visitors.
    #[schema(value_type = AssistantGuidance)]
    pub assistant_guidance: &'a str,
    /// Whether the widget asks visitors to rate a resolved ticket (1 to 5).
    pub csat_enabled: bool,
    /// Who may read and write a ticket on the public endpoints: `slug`, whoever knows its
    /// slug; `session`, only the session that opened it, its verified contact's sessions,
    /// the holder of its ticket key and the agents.
    pub ticket_access: TicketAccess,
    /// What the server erases by itself once it is old enough.
    pub retention: Retention,
}

impl<'a> ProjectView<'a> {
    pub fn new(p: &'a Project) -> Self {
        Self {
            project_id: p.id.as_str(),
            name: &p.name,
            allowed_origins: &p.allowed_origins,
            created_at: rfc3339(p.created_at),
            assistant_name: &p.assistant.name,
            assistant_greeting: &p.assistant.greeting,
            assistant_guidance: &p.assistant.guidance,
            csat_enabled: !p.csat_disabled,
            ticket_access: p.ticket_access,
            retention: p.retention,
        }
    }
}

/// GET /v1/projects/{projectId}
pub async fn get(project: Arc<Project>) -> Response {
    json(StatusCode::OK, &ProjectView::new(&project))
}

/// The settings to change; those left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[schema(value_type = Option<ProjectName>)]
    name: Option<String>,
    #[schema(value_type = Option<fleety_actors::schema::Origins>)]
    allowed_origins: Option<Vec<String>>,
    /// An empty text clears it.
    #[schema(value_type = Option<AssistantName>)]
    assistant_name: Option<String>,
    /// An empty text restores the widget's default.
    #[schema(value_type = Option<AssistantGreeting>)]
    assistant_greeting: Option<String>,
    /// An empty text clears it.
    #[schema(value_type = Option<AssistantGuidance>)]
    assistant_guidance: Option<String>,
    /// Whether the widget asks visitors to rate a resolved ticket.
    csat_enabled: Option<bool>,
    /// `slug` or `session` (see the project's `ticket_access`).
    #[schema(value_type = Option<TicketAccess>)]
    ticket_access: Option<String>,
    /// The parts of the retention setting to change.
    retention: Option<RetentionChange>,
}

/// A change to the retention setting; what is left out stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionChange {
    /// Days (1 to 3650) a ticket stays resolved or closed before it is erased; null keeps
    /// tickets for good.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<u32>, nullable = true, minimum = 1, maximum = 3650)]
    tickets_after_days: Option<Option<i64>>,
}

/// A field that is there, even as `null`: `Some(None)`; left out, `None` (by `default`). A
/// whole number written with a fraction (`30.0`) is that number, as JSON Schema counts it an
/// integer.
fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(Some(None));
    };
    let whole = n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    });
    match whole {
        Some(days) => Ok(Some(Some(days))),
        None => Err(serde::de::Error::custom("a whole number of days")),
    }
}

/// PATCH /v1/projects/{projectId}
pub async fn update(
    project: Arc<Project>,
    who: AuditBy,
    ctx: Arc<Ctx>,
    req: UpdateProject,
) -> Response {
    respond(
        async {
            let mut next = (*project).clone();
            if let Some(name) = req.name {
                next.name = ProjectName::parse(&name)
                    .map_err(|e| ApiError::bad_request(e.0))?
                    .as_str()
                    .to_owned();
            }
            if let Some(origins) = req.allowed_origins {
                next.allowed_origins = parse_origins(origins.iter().map(String::as_str))
                    .map_err(ApiError::bad_request)?;
            }
            let bad = |e: InvalidValue| ApiError::bad_request(e.0);
            if let Some(name) = req.assistant_name {
                next.assistant.name = AssistantName::parse(&name).map_err(bad)?.as_str().into();
            }
            if let Some(greeting) = req.assistant_greeting {
                next.assistant.greeting = AssistantGreeting::parse(&greeting)
                    .map_err(bad)?
                    .as_str()
                    .into();
            }
            if let Some(guidance) = req.assistant_guidance {
                next.assistant.guidance = AssistantGuidance::parse(&guidance)
                    .map_err(bad)?
                    .as_str()
                    .into();
            }
            if let Some(enabled) = req.csat_enabled {
                next.csat_disabled = !enabled;
            }
            if let Some(access) = req.ticket_access.as_deref() {
                next.ticket_access = TicketAccess::parse(access).map_err(bad)?;
            }
            if let Some(Some(days)) = req.retention.map(|r| r.tickets_after_days) {
                next.retention.tickets_after_days =
                    days.map(Retention::days).transpose().map_err(|e| {
                        ApiError::bad_request(format!("retention.tickets_after_{}", e.0))
                    })?;
            }
            let (before, after) = (&project.assistant, &next.assistant);
            let record = who
                .record(&project.id, ctx.clock.now(), "project.changed")
                .target(AuditTarget::new("project", &project.id).named(&next.name))
                .changed("name", &project.name, &next.name)
                .changed(
                    "allowed_origins",
                    &project.allowed_origins,
                    &next.allowed_origins,
                )
                .changed("assistant_name", &before.name, &after.name)
                .changed("assistant_greeting", &before.greeting, &after.greeting)
                .changed("assistant_guidance", &before.guidance, &after.guidance)
                .changed(
                    "ticket_access",
                    project.ticket_access.as_str(),
                    next.ticket_access.as_str(),
                )
                .changed(
                    "retention.tickets_after_days",
                    project.retention.tickets_after_days,
                    next.retention.tickets_after_days,
                );
            let record = record.has_changes().then_some(record);
            let saved = audit::recorded(record, ctx.projects.update(next)).await?;
            Ok(json(StatusCode::OK, &ProjectView::new(&saved)))
        }
        .await,
    )
}

/// Which tickets to list, and which page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tickets with this status.
    #[param(value_type = Option<TicketStatus>)]
    status: Option<String>,
    /// Only tickets holding every word of this in their title, description, messages (the
    /// visitor's, the agents' and the assistant's) or the agents' internal notes, ignoring
    /// case; the last word also matches the start of a longer one (from three characters).
    /// Text without any word matches no ticket. The order stays newest first, so `cursor`
    /// pages through the matches as through the listing.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Only tickets with this tag (compared exactly).
    #[param(value_type = Option<Tag>)]
    tag: Option<String>,
    /// Only tickets assigned to: `me` (the signed-in member), `none` (nobody, or a deactivated
    /// member), or a member's id.
    #[param(
        pattern = "^(me|none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    assignee: Option<String>,
    /// Tickets in the page (50 by default).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// The `next_cursor` of the page before.
    #[param(pattern = "^[0-9]{1,15}\\.[a-z]{1,16}-[a-z]{1,16}-[0-9]{3}$")]
    cursor: Option<String>,
}

/// A page of tickets, newest first.
#[derive(Serialize, ToSchema)]
pub struct TicketList<'a> {
    tickets: Vec<ListedTicket<'a>>,
    /// Pass it as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A ticket in the agents' listing: its fields, and what triage needs of its messages.
#[derive(Serialize, ToSchema)]
pub struct ListedTicket<'a> {
    #[serde(flatten)]
    ticket: TicketSummary<'a>,
    /// The newest message; null when the ticket has none.
    #[schema(required = true)]
    last_message: Option<LastMessage>,
    /// The visitor's messages the agents have not read (past the agents' read cursor), counted
    /// among the ticket's newest 100 messages: 100 means "100 or more".
    #[schema(minimum = 0, maximum = 100)]
    unread_count: usize,
}

/// The start of a ticket's newest message, for a listing.
#[derive(Serialize, ToSchema)]
pub struct LastMessage {
    id: MessageId,
    author: Participant,
    /// The message's first characters as plain text: its Markdown marks (bold, italics, code,
    /// list bullets, links' addresses) left out, whitespace runs folded to one space.
    #[schema(max_length = 141)]
    preview: String,
    #[schema(value_type = String, format = DateTime)]
    timestamp: String,
}

/// Characters of a message a listing shows; a longer one ends with an ellipsis.
const PREVIEW_CHARS: usize = 140;

impl LastMessage {
    fn new(m: &Message) -> Self {
        let plain = plain_text(m.content.as_str());
        let folded = plain.split_whitespace().collect::<Vec<_>>().join(" ");
        let preview = match folded.char_indices().nth(PREVIEW_CHARS) {
            Some((cut, _)) => format!("{}…", &folded[..cut]),
            None => folded,
        };
        Self {
            id: m.id,
            author: m.author,
            preview,
            timestamp: rfc3339(m.timestamp),
        }
    }
}

/// A message's text without the marks of the Markdown subset messages render (the inbox's and
/// widget's `shared/markdown.tsx`): a list item's bullet or number, `**bold**`, `*italics*`,
/// `_italics_`, `` `code` `` and `[label](address)`, which keeps its label. Anything else
/// stays as written.
pub fn plain_text(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|line| inline_plain(without_bullet(line)))
        .collect();
    lines.join("\n")
}

fn without_bullet(line: &str) -> &str {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return line;
    }
    let rest = &line[indent..];
    let after = if let Some(r) = rest.strip_prefix(['-', '*']) {
        r
    } else {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match (1..=9).contains(&digits) {
            true => match rest[digits..].strip_prefix(['.', ')']) {
                Some(r) => r,
                None => return line,
            },
            false => return line,
        }
    };
    match after.starts_with(char::is_whitespace) {
        true => after.trim_start(),
        false => line,
    }
}

/// The text between `open` and the next `close` in `s` (past `open`), when there is some
/// that is not blank at either end, and the rest after `close`.
fn enclosed<'a>(s: &'a str, open: &str, close: &str) -> Option<(&'a str, &'a str)> {
    let body = s.strip_prefix(open)?;
    let end = body.find(close)?;
    let inner = &body[..end];
    let tight = !inner.is_empty()
        && !inner.starts_with(char::is_whitespace)
        && !inner.ends_with(char::is_whitespace);
    tight.then(|| (inner, &body[end + close.len()..]))
}

fn inline_plain(line: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        let before = out.chars().next_back();
        let found = match c {
            '`' => enclosed(rest, "`", "`").map(|(inner, after)| (inner.to_owned(), after)),
            '*' if rest.starts_with("**") => {
                enclosed(rest, "**", "**").map(|(inner, after)| (inline_plain(inner), after))
            }
            '*' => enclosed(rest, "*", "*").map(|(inner, after)| (inline_plain(inner), after)),
            '_' if !word(before) => enclosed(rest, "_", "_")
                .filter(|(_, after)| !word(after.chars().next()))
                .map(|(inner, after)| (inline_plain(inner), after)),
            '[' => rest[1..].find("](").and_then(|mid| {
                let label = &rest[1..1 + mid];
                let target = &rest[1 + mid + 2..];
                let end = target.find(')')?;
                let address = &target[..end];
                let ok = !label.is_empty()
                    && !address.is_empty()
                    && !address.contains(char::is_whitespace);
                ok.then(|| (inline_plain(label), &target[end + 1..]))
            }),
            _ => None,
        };
        match found {
            Some((text, after)) => {
                out.push_str(&text);
                rest = after;
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// Cursors are opaque to clients: `<created_at ms>.<slug>`.
pub(super) fn encode_cursor(c: &TicketCursor) -> String {
    format!("{}.{}", c.created_at.timestamp_millis(), c.slug)
}

pub(super) fn decode_cursor(raw: &str) -> Option<TicketCursor> {
    let (ms, slug) = raw.split_once('.')?;
    // Digits only, as the description's pattern says (`parse` would take a sign too), and at
    // most 15 of them: every such time is one chrono can hold, where 16 digits can pass its
    // last day (year 262,143) and be refused although the pattern allowed them.
    if ms.is_empty() || ms.len() > 15 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let created_at = DateTime::<Utc>::from_timestamp_millis(ms.parse().ok()?)?;
    Some(TicketCursor {
        created_at,
        slug: Slug::parse(slug).ok()?,
    })
}

/// GET /v1/projects/{projectId}/tickets?status=&q=&tag=&limit=&cursor=
pub async fn list_tickets(
    project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
    query: ListQuery,
) -> Response {
    respond(
        async {
            let status = match query.status.as_deref() {
                Some(s) => Some(TicketStatus::parse(s).map_err(|e| ApiError::bad_request(e.0))?),
                None => None,
            };
            let limit = query.limit.unwrap_or(50);
            if !(1..=100).contains(&limit) {
                return Err(ApiError::bad_request("limit must be between 1 and 100"));
            }
            let after =
                match query.cursor.as_deref() {
                    Some(raw) => Some(decode_cursor(raw).ok_or_else(|| {
                        ApiError::bad_request("cursor: not a cursor from this API")
                    })?),
                    None => None,
                };
            if query.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
                return Err(ApiError::bad_request("q: at most 200 characters"));
            }
            let text = match query.q.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(q) => Some(q),
            };
            let tag = match query.tag.as_deref() {
                Some(t) => {
                    Some(Tag::parse(t).map_err(|e| ApiError::bad_request(format!("tag: {e}")))?)
                }
                None => None,
            };
            let roster = Roster::load(&ctx, &project.id).await?;
            let assignee = match query.assignee.as_deref() {
                None => None,
                Some("none") => Some(AssigneeFilter::Nobody {
                    hidden: roster.hidden(),
                }),
                Some("me") => match principal.person() {
                    Some(member) => Some(AssigneeFilter::Member(member.id)),
                    None => {
                        return Err(ApiError::bad_request(
                            "assignee: `me` needs a member (signed in or by a token); the admin key is nobody",
                        ))
                    }
                },
                Some(raw) => {
                    let id = uuid::Uuid::try_parse(raw).map_err(|_| {
                        ApiError::bad_request("assignee: `me`, `none` or a member's id")
                    })?;
                    if roster.get(id).is_none() {
                        return Err(ApiError::bad_request(
                            "assignee: the project has no member with this id",
                        ));
                    }
                    Some(AssigneeFilter::Member(id))
                }
            };
            // A deactivated member's tickets count as nobody's, so asking for theirs finds none.
            let nobody_has = match &assignee {
                Some(AssigneeFilter::Member(id)) => roster.get(*id).is_some_and(|m| !assignable(m)),
                _ => false,
            };
            if nobody_has {
                let body = TicketList {
                    tickets: Vec::new(),
                    next_cursor: None,
                };
                return Ok(json(StatusCode::OK, &body));
            }
            let query = TicketQuery {
                status,
                title: None,
                tag,
                assignee,
                search_scan: None,
                after,
                limit,
            };
            let tickets = &ctx.system.tickets;
            let mut page = match text {
                Some(text) => tickets.search(&project.id, text, &query).await?,
                None => tickets.list(&project.id, &query).await?,
            };
            page.tickets.iter_mut().for_each(|t| roster.show(t));
            let slugs: Vec<Slug> = page.tickets.iter().map(|t| t.slug.clone()).collect();
            let activity = ctx.system.tickets.activity(&project.id, &slugs).await?;
            let body = TicketList {
                tickets: page
                    .tickets
                    .iter()
                    .zip(&activity)
                    .map(|(t, a)| ListedTicket {
                        ticket: TicketSummary::new(t),
                        last_message: a.last.as_ref().map(LastMessage::new),
                        unread_count: a.unread,
                    })
                    .collect(),
                next_cursor: page.next.as_ref().map(encode_cursor),
            };
            Ok(json(StatusCode::OK, &body))
        }
        .await,
    )
}

/// A token for the inbox socket, and the socket's URL with it.
#[derive(Serialize, ToSchema)]
pub struct FeedToken {
    token: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: String,
    url: String,
}

/// POST /v1/projects/{projectId}/feed-token: a one-minute token for the inbox socket, so the
/// long-lived admin key never appears in a URL.
pub async fn feed_token(
    project: Arc<Project>,
    principal: super::access::Principal,
    ctx: Arc<Ctx>,
) -> Response {
    // A member's socket names its session, so it closes when the session ends.
    let session = principal
        .member()
        .map(|m| (m.member.id, m.session.id.as_str()));
    let sub = crate::auth::feed_subject(session);
    let issued = ctx.tokens.issue_feed(&project.id, sub);
    let url = format!("/v1/projects/{}/feed?token={}", project.id, issued.token);
    json(
        StatusCode::OK,
        &FeedToken {
            token: issued.token,
            expires_at: rfc3339(issued.expires_at),
            url,
        },
    )
}

/// A new project; without `project_id` one is made up.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    #[schema(value_type = ProjectName)]
    name: String,
    #[schema(value_type = Option<ProjectId>)]
    project_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = fleety_actors::schema::Origins)]
    allowed_origins: Vec<String>,
}

/// A new project, with its admin key.
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedProject)]
pub struct CreatedProjectView<'a> {
    #[serde(flatten)]
    pub project: ProjectView<'a>,
    /// Shown once: only its hash is stored.
    pub admin_key: &'a str,
}

/// POST /v1/admin/projects (operator token)
pub async fn create(ctx: Arc<Ctx>, req: CreateProject) -> Response {
    respond(
        async {
            let name = ProjectName::parse(&req.name).map_err(|e| ApiError::bad_request(e.0))?;
            let id = match req.project_id.as_deref() {
                Some(raw) => Some(ProjectId::parse(raw).map_err(|e| ApiError::bad_request(e.0))?),
                None => None,
            };
            let origins = parse_origins(req.allowed_origins.iter().map(String::as_str))
                .map_err(ApiError::bad_request)?;
            let created = match ctx.projects.create(id, name, origins).await {
                Err(StoreError::Conflict) => {
                    return Err(ApiError::conflict("a project with this id exists"))
                }
                other => other?,
            };
            tracing::info!(project = %created.project.id, "project created");
            Ok(json(
                StatusCode::CREATED,
                &CreatedProjectView {
                    project: ProjectView::new(&created.project),
                    admin_key: &created.admin_key,
                },
            ))
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cursors_round_trip_and_reject_garbage() {
        let c = TicketCursor {
            created_at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            slug: Slug::parse("swift-bear-053").unwrap(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("garbage"), None);
        // Every cursor the pattern allows decodes; schemathesis found a 16-digit one that
        // the pattern allowed and the decoder refused.
        assert!(decode_cursor("999999999999999.wna-ogowapdfhfzkgsuj-240").is_some());
        assert_eq!(
            decode_cursor("8395903498977420.wna-ogowapdfhfzkgsuj-240"),
            None
        );
        assert_eq!(decode_cursor("12.not a slug"), None);
    }

    #[test]
    fn a_preview_leaves_the_markdown_marks_out() {
        for (text, plain) in [
            ("**Refund** please", "Refund please"),
            ("it is *really* _urgent_ now", "it is really urgent now"),
            ("run `make test` first", "run make test first"),
            (
                "see [the guide](https://example.com/a) now",
                "see the guide now",
            ),
            ("- one\n- two\n1. three", "one\ntwo\nthree"),
            ("**[bold link](https://x.io)**", "bold link"),
            (
                "snake_case_name and 2 * 3 * 4",
                "snake_case_name and 2 * 3 * 4",
            ),
            ("** not bold ** and *", "** not bold ** and *"),
            ("-5 degrees, 10.5 km", "-5 degrees, 10.5 km"),
            ("[no address]() [x](a b)", "[no address]() [x](a b)"),
            ("Ünïcödé **fëtt**", "Ünïcödé fëtt"),
        ] {
            assert_eq!(plain_text(text), plain, "{text}");
        }
    }
}
