//! Ticket endpoints: the public ones a widget calls (create, read, post, mark read, rate) and the
//! agent's status change. Each parses its input, then asks the ticket's actor.

use std::sync::Arc;

use fleety_actors::audit::{self, AuditBy};
use fleety_actors::domain::{
    Actor, AgentName, Description, IdempotencyKey, MessageAgent, MessageBody, Participant, Project,
    Slug, Tags, TicketSource, TicketStatus, Title,
};
use fleety_actors::domain::{
    Email, Satisfaction, SatisfactionComment, VisitorContact, VisitorName,
};
use fleety_actors::events::{self, ActivityView, MessageView, NoteView, TicketSummary};
use fleety_actors::ticket::{Command, MessagePage, NewTicket, TicketChange, TicketKey};
use fleety_actors::MessageId;
use http::StatusCode;
use serde::Deserialize;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use warp::reply::Response;

use super::access::{Principal, Visitor};
use super::error::{json, json_bytes, respond};
use super::{ApiError, Ctx};
use crate::server::RequestMeta;

pub fn ticket_key(project: &Project, slug: &str) -> Result<TicketKey, ApiError> {
    let slug = Slug::parse(slug).map_err(|_| ApiError::not_found("ticket not found"))?;
    Ok(TicketKey {
        project: project.id.clone(),
        slug,
    })
}

fn field<T>(
    parsed: Result<T, fleety_actors::domain::InvalidValue>,
    name: &str,
) -> Result<T, ApiError> {
    parsed.map_err(|e| ApiError::bad_request(format!("{name}: {e}")))
}

/// A new ticket.
#[derive(Deserialize, ToSchema)]
pub struct CreateTicket {
    #[schema(value_type = Title)]
    title: String,
    #[serde(default)]
    #[schema(value_type = Description)]
    description: String,
    /// Who the visitor is, when the caller knows: shown to the agents beside the ticket.
    #[serde(default, deserialize_with = "object")]
    #[schema(value_type = Option<NewVisitor>)]
    visitor: Option<NewVisitor>,
}

/// An object only: serde would also take a struct written as an array of its fields, which the
/// API description does not allow.
pub(super) fn object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    match Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)? {
        Some(map) => T::deserialize(serde_json::Value::Object(map))
            .map(Some)
            .map_err(D::Error::custom),
        None => Ok(None),
    }
}

/// Who the visitor is: either or both, each may be null or left out.
#[derive(Deserialize, ToSchema)]
pub struct NewVisitor {
    #[serde(default)]
    #[schema(value_type = Option<fleety_actors::domain::VisitorName>)]
    name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<fleety_actors::domain::Email>)]
    email: Option<String>,
}

impl NewVisitor {
    /// The contact to store; none when neither part is given.
    pub(super) fn parse(self) -> Result<Option<VisitorContact>, ApiError> {
        let name = self.name.as_deref().map(VisitorName::parse).transpose();
        let email = self.email.as_deref().map(Email::parse).transpose();
        let contact = VisitorContact {
            name: name.map_err(|e| ApiError::bad_request(e.0))?,
            email: email.map_err(|e| ApiError::bad_request(e.0))?,
            email_unverified: false,
        };
        Ok((contact.name.is_some() || contact.email.is_some()).then_some(contact))
    }
}

/// A new ticket, and the key that opens it when the project's tickets need one.
#[derive(serde::Serialize, ToSchema)]
pub struct CreatedTicket<'a> {
    #[serde(flatten)]
    ticket: events::TicketView<'a>,
    /// Only when the project's `ticket_access` is `session` and no verified contact opened the
    /// ticket: the credential that opens it from now on, shown this once. Send it as
    /// `X-Ticket-Key` (on the socket, as the subprotocol `fleety.key.<key>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_key: Option<String>,
}

/// A ticket key, as the ticket's creation handed it out.
pub struct TicketKeyHeader;

impl PartialSchema for TicketKeyHeader {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^ftk_[0-9a-f]{16}\\.[A-Za-z0-9_-]{43}$"))
            .description(Some(
                "The `ticket_key` the ticket's creation answered with. Only looked at when the project's `ticket_access` is `session`; a wrong key is treated as none.",
            ))
            .into()
    }
}
impl ToSchema for TicketKeyHeader {}

/// How a ticket route documents the key.
pub const TICKET_KEY_DOC: &str = "Opens the ticket without its session when the project's `ticket_access` is `session` (from the ticket's creation). On the WebSocket, offer it as the subprotocol `fleety.key.<key>`.";

/// POST /v1/tickets/{projectId}
pub async fn create(visitor: Visitor, ctx: Arc<Ctx>, req: CreateTicket) -> Response {
    respond(
        async {
            let title = Title::parse(&req.title).map_err(|e| ApiError::bad_request(e.0))?;
            let description =
                Description::parse(&req.description).map_err(|e| ApiError::bad_request(e.0))?;
            let contact = match req.visitor {
                Some(v) => v.parse()?,
                None => None,
            };
            // A widget may send its session token: the ticket then remembers the session, and
            // the verified contact it is for.
            let session = visitor.session.as_deref();
            let session_id = session.map(|c| c.sub.clone());
            let session_contact = session.and_then(|c| c.ctc.clone());
            let ticket = ctx
                .system
                .tickets
                .open(NewTicket {
                    project: visitor.project.id.clone(),
                    title,
                    description,
                    source: TicketSource::Api,
                    session_id,
                    history: Vec::new(),
                    visitor: contact,
                    contact: session_contact,
                })
                .await?;
            if let Some(mail) = &ctx.agent_mail {
                let by = visitor.member.as_ref().map(|m| m.id);
                mail.ticket_created(&ticket, by).await;
            }
            let ticket_key =
                super::ticket_access::key_for_opener(&ctx, &visitor.project, &ticket, session);
            let view = CreatedTicket {
                ticket: events::TicketView::new(&ticket, [], &[]),
                ticket_key,
            };
            Ok(json(StatusCode::CREATED, &view))
        }
        .await,
    )
}

/// A page of a ticket's messages.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Messages in the page, newest last (100 when only `before` is given).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// Only messages older than this one.
    #[param(value_type = Option<MessageId>)]
    before: Option<String>,
}

/// GET /v1/tickets/{projectId}/{slug}
pub async fn get(slug: String, visitor: Visitor, ctx: Arc<Ctx>, query: GetQuery) -> Response {
    respond(
        async {
            let key = ticket_key(&visitor.project, &slug)?;
            let before = match query.before.as_deref() {
                Some(raw) => Some(
                    raw.parse::<MessageId>()
                        .map_err(|_| ApiError::bad_request("before: not a message id"))?,
                ),
                None => None,
            };
            let page = match (query.limit, before) {
                (None, None) => None,
                (limit, before) => {
                    let limit = limit.unwrap_or(100);
                    if !(1..=500).contains(&limit) {
                        return Err(ApiError::bad_request("limit must be between 1 and 500"));
                    }
                    Some(MessagePage { limit, before })
                }
            };
            super::ticket_access::admit(&ctx, &visitor, &key).await?;
            let body = ctx.system.tickets.view(&key, page).await?;
            let body = super::assignees::show_view(&ctx, &visitor.project.id, body).await?;
            Ok(json_bytes(StatusCode::OK, body))
        }
        .await,
    )
}

/// A message for a ticket.
#[derive(Deserialize, ToSchema)]
pub struct PostMessage {
    /// Who speaks: the visitor (`user`, the default) or an agent (`admin`, with the admin key or
    /// as a signed-in member).
    #[serde(default = "default_author")]
    #[schema(value_type = Speaker)]
    author: String,
    #[schema(value_type = MessageBody)]
    content: String,
}

fn default_author() -> String {
    "user".into()
}

/// Who may speak or read on a ticket through the API.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // A schema only: the value is parsed by `participant`.
pub enum Speaker {
    User,
    Admin,
}

/// Agents act with the project's admin key or as signed-in members; anyone else may only speak or
/// read as the visitor.
fn participant(raw: &str, field_name: &str, visitor: &Visitor) -> Result<Participant, ApiError> {
    let who = field(Participant::parse(raw), field_name)?;
    if who == Participant::Assistant {
        return Err(ApiError::bad_request(format!(
            "{field_name}: must be \"user\" or \"admin\""
        )));
    }
    if who == Participant::Admin && !visitor.admin {
        return Err(ApiError::forbidden(format!(
            "{field_name} \"admin\" requires the project's admin key"
        )));
    }
    Ok(who)
}

/// A message was stored.
#[derive(serde::Serialize, ToSchema)]
pub struct PostedMessage<'a> {
    /// "Message added successfully".
    message: &'static str,
    data: MessageView<'a>,
}

/// POST /v1/tickets/{projectId}/{slug}/messages
pub async fn post_message(
    slug: String,
    visitor: Visitor,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    req: PostMessage,
) -> Response {
    respond(
        async {
            let key = ticket_key(&visitor.project, &slug)?;
            let author = participant(&req.author, "author", &visitor)?;
            let content = field(MessageBody::parse(&req.content), "content")?;
            let idempotency_key = match meta.idempotency_key.as_deref() {
                Some(raw) => {
                    Some(IdempotencyKey::parse(raw).map_err(|e| ApiError::bad_request(e.0))?)
                }
                None => None,
            };
            let agent = visitor
                .member
                .as_deref()
                .filter(|_| author == Participant::Admin)
                .map(|member| MessageAgent {
                    id: member.id,
                    name: member.name.clone(),
                    avatar_url: member.avatar_url.clone(),
                });
            let post = Command::Post {
                author,
                content,
                idempotency_key,
                agent,
            };
            // An agent's reply is recorded in the audit trail; a visitor's message is not.
            super::ticket_access::admit(&ctx, &visitor, &key).await?;
            let by =
                super::audit::by_visitor(&visitor, &meta).filter(|_| author == Participant::Admin);
            // An agent's reply starts the visitor's email burst both before and after it is
            // written. Before: a crash between the reply's write and the burst's would lose
            // the email (issue 28), while a burst with no reply to carry just ends without one.
            // After: a burst that came due and ended while the reply was being written (only
            // with a wait shorter than the write) is started again; otherwise it is a no-op.
            let mail = ctx
                .visitor_mail
                .as_ref()
                .filter(|_| author == Participant::Admin);
            if let Some(mail) = mail {
                mail_replied(mail, &key).await;
            }
            let posted = audit::acting(by, ctx.system.tickets.run(&key, post));
            let message = posted.await?.into_message()?;
            if let Some(mail) = mail {
                mail_replied(mail, &key).await;
            }
            if let Some(agents) = &ctx.agent_mail {
                agents
                    .posted(&key.project, &key.slug, author, message.id)
                    .await;
            }
            let data = MessageView::new(&message, &[]);
            Ok(json(
                StatusCode::CREATED,
                &PostedMessage {
                    message: "Message added successfully",
                    data,
                },
            ))
        }
        .await,
    )
}

/// Starts the visitor's email burst after an agent's reply. The reply stands either way; a
/// burst not started only means no email.
async fn mail_replied(mail: &crate::visitor_mail::VisitorMailer, key: &TicketKey) {
    if let Err(e) = mail.replied(&key.project, &key.slug).await {
        tracing::warn!(error = %e, "starting a visitor email failed");
    }
}

/// Who read the ticket.
#[derive(Deserialize, ToSchema)]
pub struct MarkRead {
    /// The visitor (`user`, the default) or the agents (`admin`, with the admin key).
    #[serde(default = "default_author")]
    #[schema(value_type = Speaker)]
    reader: String,
}

impl Default for MarkRead {
    fn default() -> Self {
        MarkRead {
            reader: default_author(),
        }
    }
}

/// The messages were marked read.
#[derive(serde::Serialize, ToSchema)]
pub struct MarkedRead {
    /// "Messages marked as read".
    message: &'static str,
    /// The newest message read; null when the ticket has none.
    #[schema(required = true)]
    last_read_message_id: Option<MessageId>,
}

/// PATCH /v1/tickets/{projectId}/{slug}/messages/read
pub async fn mark_read(
    slug: String,
    visitor: Visitor,
    ctx: Arc<Ctx>,
    language: Option<String>,
    req: MarkRead,
) -> Response {
    respond(
        async {
            let key = ticket_key(&visitor.project, &slug)?;
            let reader = participant(&req.reader, "reader", &visitor)?;
            super::ticket_access::admit(&ctx, &visitor, &key).await?;
            let read = ctx.system.tickets.run(&key, Command::MarkRead { reader });
            let up_to = read.await?.into_read()?;
            if reader == Participant::User {
                if let Some(mail) = &ctx.visitor_mail {
                    let lang = language.as_deref();
                    if let Err(e) = mail.read(&key.project, &key.slug, lang).await {
                        tracing::warn!(error = %e, "cancelling a visitor email failed");
                    }
                }
            }
            Ok(json(
                StatusCode::OK,
                &MarkedRead {
                    message: "Messages marked as read",
                    last_read_message_id: up_to,
                },
            ))
        }
        .await,
    )
}

/// What to change on a ticket: its status, its assignee, its tags (at least one of them).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeTicket {
    /// Absent: unchanged. Never null.
    #[serde(default, deserialize_with = "some")]
    status: Option<String>,
    /// Absent: unchanged; `null`: nobody; a name: that agent.
    #[serde(default, deserialize_with = "present")]
    assignee: Option<serde_json::Value>,
    /// Absent: unchanged; `null`: nobody; a member's id: that member, under their name.
    #[serde(default, deserialize_with = "present")]
    assignee_id: Option<serde_json::Value>,
    /// Absent: unchanged; a list: the ticket's tags from now on (`[]` removes them all).
    #[serde(default, deserialize_with = "present")]
    tags: Option<serde_json::Value>,
}

// Written out rather than derived: utoipa-gen 5.5 writes `min_properties` as `maxProperties`.
impl PartialSchema for ChangeTicket {
    fn schema() -> RefOr<Schema> {
        let mut schema = ObjectBuilder::new()
            .description(Some(
                "What to change on a ticket: its status, its assignee, its tags (at least one of them).",
            ))
            .property("status", Ref::from_schema_name("TicketStatus"))
            .property(
                "assignee",
                OneOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .item(Ref::from_schema_name("AgentName"))
                    .description(Some(
                        "Absent: unchanged; `null`: nobody; a name: that agent, as free text (kept for existing clients; prefer `assignee_id`).",
                    )),
            )
            .property(
                "assignee_id",
                OneOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .item(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                                utoipa::openapi::KnownFormat::Uuid,
                            ))),
                    )
                    .description(Some(
                        "Absent: unchanged; `null`: nobody; a member's id: that member, who must not be deactivated. Not with `assignee`.",
                    )),
            )
            .property("tags", {
                let mut tags = Ref::from_schema_name("TicketTags");
                tags.description =
                    "Absent: unchanged; a list: the ticket's tags from now on (`[]` removes them all)."
                        .into();
                tags
            })
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .build();
        schema.min_properties = Some(1);
        schema.into()
    }
}

impl ToSchema for ChangeTicket {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push(("TicketStatus".into(), TicketStatus::schema()));
        out.push(("AgentName".into(), AgentName::schema()));
        out.push(("TicketTags".into(), Tags::schema()));
        Tags::schemas(out);
    }
}

/// A field that may be absent but, when there, is not `null`.
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// A field that is there, even as `null` (which serde would otherwise read as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// DELETE /v1/projects/{projectId}/tickets/{slug} (owner, admin or the admin key): erases the
/// ticket everywhere ([`fleety_actors::ticket::Tickets::erase`]). A ticket that is not there
/// (never was, or was erased already) is a 404, so a repeated DELETE answers 404.
pub async fn erase(slug: String, project: Arc<Project>, who: AuditBy, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let key = ticket_key(&project, &slug)?;
            if !ctx.system.tickets.erase(&key).await? {
                return Err(ApiError::not_found("ticket not found"));
            }
            // Named by its slug only: the title is the ticket's content.
            let record = who
                .record(&project.id, ctx.clock.now(), "ticket.deleted")
                .target(fleety_actors::audit::AuditTarget::new("ticket", &key.slug));
            if let Err(e) = ctx.audit_store.record_audit(&record).await {
                tracing::warn!(ticket = %key, error = %e, "recording a ticket's erasure failed");
            }
            Ok(json(StatusCode::OK, &super::Done::new("Ticket erased")))
        }
        .await,
    )
}

/// PATCH /v1/tickets/{projectId}/{slug} (admin key): change the ticket's status, its assignee,
/// or both.
pub async fn change(
    slug: String,
    project: Arc<Project>,
    principal: Principal,
    meta: Arc<RequestMeta>,
    ctx: Arc<Ctx>,
    req: ChangeTicket,
) -> Response {
    respond(
        async {
            let key = ticket_key(&project, &slug)?;
            let status = match req.status.as_deref() {
                Some(s) => Some(field(TicketStatus::parse(s), "status")?),
                None => None,
            };
            let mut assignee_member = None;
            let assignee = match (req.assignee, req.assignee_id) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::bad_request(
                        "give assignee_id or assignee, not both",
                    ))
                }
                (None, None) => None,
                (Some(serde_json::Value::Null), None) | (None, Some(serde_json::Value::Null)) => {
                    Some(None)
                }
                (Some(serde_json::Value::String(name)), None) => {
                    Some(Some(field(AgentName::parse(&name), "assignee")?))
                }
                (Some(_), None) => return Err(ApiError::bad_request("assignee: a name or null")),
                (None, Some(serde_json::Value::String(id))) => {
                    let id = uuid::Uuid::try_parse(&id)
                        .map_err(|_| ApiError::bad_request("assignee_id: a member's id or null"))?;
                    let member = super::assignees::pick(&ctx, &project.id, id).await?;
                    let name = super::assignees::display_name(&member.name);
                    assignee_member = Some(super::assignees::member_ref(&member));
                    Some(Some(name))
                }
                (None, Some(_)) => {
                    return Err(ApiError::bad_request("assignee_id: a member's id or null"))
                }
            };
            let tags = match req.tags {
                None => None,
                Some(serde_json::Value::Array(list)) => {
                    let names: Option<Vec<&str>> = list.iter().map(|t| t.as_str()).collect();
                    let names =
                        names.ok_or_else(|| ApiError::bad_request("tags: a list of tags"))?;
                    Some(field(Tags::parse(&names), "tags")?)
                }
                Some(_) => return Err(ApiError::bad_request("tags: a list of tags")),
            };
            if status.is_none() && assignee.is_none() && tags.is_none() {
                return Err(ApiError::bad_request(
                    "give a status, an assignee (assignee_id or assignee) or tags (at least one)",
                ));
            }
            // The fields are one change: one version of the ticket, one set of events.
            let by = match principal.person() {
                None => Actor::AdminKey,
                Some(member) => Actor::Member {
                    member: MessageAgent {
                        id: member.id,
                        name: member.name.clone(),
                        avatar_url: member.avatar_url.clone(),
                    },
                },
            };
            let change = TicketChange {
                status,
                assignee,
                assignee_member,
                tags,
                by: Some(by),
            };
            // The assignee before, to tell an assignment from a change that keeps it.
            let before = match (&ctx.agent_mail, &change.assignee) {
                (Some(_), Some(_)) => Some(ctx.system.tickets.find(&key).await?),
                _ => None,
            };
            let who = super::audit::by(&principal, &meta);
            let change = ctx.system.tickets.run(&key, Command::Change(change));
            let change = audit::acting(Some(who), change);
            let mut ticket = change.await?.into_ticket()?;
            if let (Some(mail), Some(before)) = (&ctx.agent_mail, before) {
                let id =
                    |t: &fleety_actors::domain::Ticket| t.assignee_member.as_ref().map(|m| m.id);
                if id(&before) != id(&ticket) {
                    mail.ticket_assigned(&ticket, principal.person().map(|m| m.id))
                        .await;
                }
            }
            if ticket.assignee_member.is_some() {
                super::assignees::Roster::load(&ctx, &project.id)
                    .await?
                    .show(&mut ticket);
            }
            Ok(json(StatusCode::OK, &TicketSummary::new(&ticket)))
        }
        .await,
    )
}

/// A ticket's timeline entries, oldest first.
#[derive(serde::Serialize, ToSchema)]
pub struct Timeline<'a> {
    entries: Vec<ActivityView<'a>>,
}

/// GET /v1/projects/{projectId}/tickets/{slug}/timeline: who changed the ticket's status,
/// assignee and tags, and when.
pub async fn timeline(slug: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let key = ticket_key(&project, &slug)?;
            let stored = ctx.system.tickets.timeline(&key).await?;
            let entries = stored.iter().map(ActivityView::new).collect();
            Ok(json(StatusCode::OK, &Timeline { entries }))
        }
        .await,
    )
}

/// An internal note: which agent writes it, and what.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    #[schema(value_type = AgentName)]
    author: String,
    #[schema(value_type = MessageBody)]
    content: String,
}

/// A ticket's internal notes, oldest first.
#[derive(serde::Serialize, ToSchema)]
pub struct NoteList<'a> {
    notes: Vec<NoteView<'a>>,
}

/// GET /v1/projects/{projectId}/tickets/{slug}/notes (admin key): the agents' internal notes.
pub async fn notes(slug: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let key = ticket_key(&project, &slug)?;
            let notes = ctx.system.tickets.notes(&key).await?;
            let notes = notes.iter().map(NoteView::new).collect();
            Ok(json(StatusCode::OK, &NoteList { notes }))
        }
        .await,
    )
}

/// POST /v1/projects/{projectId}/tickets/{slug}/notes (admin key): an internal note, seen by
/// agents only; it never reaches the visitor's sockets or the ticket's public view.
pub async fn add_note(
    slug: String,
    project: Arc<Project>,
    who: AuditBy,
    ctx: Arc<Ctx>,
    req: NewNote,
) -> Response {
    respond(
        async {
            let key = ticket_key(&project, &slug)?;
            let author = field(AgentName::parse(&req.author), "author")?;
            let content = field(MessageBody::parse(&req.content), "content")?;
            let add = Command::AddNote { author, content };
            let note = audit::acting(Some(who), ctx.system.tickets.run(&key, add));
            let note = note.await?.into_note()?;
            Ok(json(StatusCode::CREATED, &NoteView::new(&note)))
        }
        .await,
    )
}

/// The visitor's satisfaction rating of a resolved ticket.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateTicket {
    /// 1 (very unhappy) to 5 (very happy), a whole number.
    #[schema(value_type = u8, minimum = 1, maximum = 5)]
    score: serde_json::Value,
    /// Anything the visitor adds; absent or empty for nothing.
    #[schema(value_type = Option<fleety_actors::domain::SatisfactionComment>)]
    #[serde(default)]
    comment: Option<String>,
}

/// POST /v1/tickets/{projectId}/{slug}/satisfaction: the visitor rates a resolved ticket, once.
pub async fn rate(slug: String, visitor: Visitor, ctx: Arc<Ctx>, req: RateTicket) -> Response {
    respond(
        async {
            let key = ticket_key(&visitor.project, &slug)?;
            // A whole number, however JSON writes it: `3.0` is the integer 3, as JSON Schema says.
            let whole = |n: &serde_json::Number| {
                n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() <= 1e9)
                        .map(|f| f as i64)
                })
            };
            let score = req
                .score
                .as_number()
                .and_then(whole)
                .ok_or_else(|| ApiError::bad_request("score must be a whole number from 1 to 5"))
                .and_then(|n| Satisfaction::score(n).map_err(|e| ApiError::bad_request(e.0)))?;
            let comment = SatisfactionComment::parse(req.comment.as_deref().unwrap_or(""))
                .map_err(|e| ApiError::bad_request(e.0))?;
            if visitor.project.csat_disabled {
                return Err(ApiError::conflict(
                    "this project does not ask for satisfaction ratings",
                ));
            }
            super::ticket_access::admit(&ctx, &visitor, &key).await?;
            let rate = ctx
                .system
                .tickets
                .run(&key, Command::Rate { score, comment });
            let ticket = rate.await?.into_ticket()?;
            metrics::counter!(
                "fleety_csat_ratings_total",
                "project" => ticket.project_id.as_str().to_owned(),
                "score" => score.to_string(),
            )
            .increment(1);
            Ok(json(StatusCode::CREATED, &TicketSummary::new(&ticket)))
        }
        .await,
    )
}
