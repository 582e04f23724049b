//! The rows of the CQL tables as the store writes and reads them (`cql/` has the tables).
//!
//! A `…Values` struct is what a statement binds, matched to its markers by column name; a
//! `…Row` struct is what a read decodes, matched to the selected columns by name. A read row
//! becomes a domain value through `TryFrom`, which refuses a row that a valid value could not
//! have written (a corrupt row is an internal error, not a panic).

use chrono::{DateTime, Utc};
use fleety_actors::domain::{
    AgentName, Article, ArticleBody, ArticleTitle, ArticleUrl, AssistantProfile, ChatConversation,
    ChatRole, ChatTurn, Description, Email, IdempotencyKey, Language, Message, MessageAgent,
    MessageBody, Note, Participant, Project, ProjectId, Rating, ReadCursor, Satisfaction,
    SatisfactionComment, Slug, Tag, Tags, Ticket, TicketAccess, TicketSource, TicketStatus, Title,
    VisitorContact, VisitorName,
};
use fleety_actors::store::{StoreError, StoreResult};
use fleety_actors::MessageId;
use scylla::value::{CqlTimeuuid, MaybeUnset};
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;

mod webhooks;

pub(super) use webhooks::{
    CensusRow, DeliveryRow, DeliveryValues, DueKey, DueRow, EndpointRow, EndpointValues,
};

fn corrupt(row: &str, what: &str) -> StoreError {
    StoreError::Internal(format!("corrupt {row}: {what}"))
}

/// `projects`, as created and as changed.
#[derive(SerializeRow)]
pub(super) struct ProjectValues<'a> {
    project_id: &'a str,
    name: &'a str,
    allowed_origins: &'a [String],
    admin_key_hash: &'a str,
    created_at: DateTime<Utc>,
    assistant_name: &'a str,
    assistant_greeting: &'a str,
    assistant_guidance: &'a str,
    csat_disabled: bool,
    /// JSON: the secrets are read and written whole, with the project.
    identity_secrets: Option<String>,
    ticket_access: &'static str,
    retention: Option<String>,
}

impl<'a> From<&'a Project> for ProjectValues<'a> {
    fn from(p: &'a Project) -> Self {
        Self {
            project_id: p.id.as_str(),
            name: &p.name,
            allowed_origins: &p.allowed_origins,
            admin_key_hash: &p.admin_key_hash,
            created_at: p.created_at,
            assistant_name: &p.assistant.name,
            assistant_greeting: &p.assistant.greeting,
            assistant_guidance: &p.assistant.guidance,
            csat_disabled: p.csat_disabled,
            identity_secrets: (!p.identity_secrets.is_empty())
                .then(|| serde_json::to_string(&p.identity_secrets).ok())
                .flatten(),
            ticket_access: p.ticket_access.as_str(),
            retention: (!p.retention.keeps_all())
                .then(|| serde_json::to_string(&p.retention).ok())
                .flatten(),
        }
    }
}

#[derive(DeserializeRow)]
pub(super) struct ProjectRow {
    project_id: String,
    name: Option<String>,
    allowed_origins: Option<Vec<String>>,
    admin_key_hash: Option<String>,
    created_at: DateTime<Utc>,
    // Null in rows written before migration 0008: the defaults.
    assistant_name: Option<String>,
    assistant_greeting: Option<String>,
    assistant_guidance: Option<String>,
    // Null in rows written before migration 0020: the project asks for ratings.
    csat_disabled: Option<bool>,
    // Null in rows written before migration 0025, and while the project has none.
    identity_secrets: Option<String>,
    // Null in rows written before migration 0029: the slug rule.
    ticket_access: Option<String>,
    // Null in rows written before migration 0034, and while the project keeps everything.
    retention: Option<String>,
}

impl TryFrom<ProjectRow> for Project {
    type Error = StoreError;

    fn try_from(r: ProjectRow) -> StoreResult<Project> {
        Ok(Project {
            id: ProjectId::parse(&r.project_id)
                .map_err(|_| StoreError::Internal("corrupt project id".into()))?,
            name: r.name.unwrap_or_default(),
            allowed_origins: r.allowed_origins.unwrap_or_default(),
            admin_key_hash: r.admin_key_hash.unwrap_or_default(),
            created_at: r.created_at,
            assistant: AssistantProfile {
                name: r.assistant_name.unwrap_or_default(),
                greeting: r.assistant_greeting.unwrap_or_default(),
                guidance: r.assistant_guidance.unwrap_or_default(),
            },
            csat_disabled: r.csat_disabled.unwrap_or(false),
            identity_secrets: match r.identity_secrets.as_deref() {
                Some(json) => serde_json::from_str(json)
                    .map_err(|e| StoreError::Internal(format!("corrupt identity secrets: {e}")))?,
                None => Vec::new(),
            },
            ticket_access: match r.ticket_access.as_deref() {
                None => TicketAccess::Slug,
                Some(raw) => {
                    TicketAccess::parse(raw).map_err(|_| corrupt("project", "ticket_access"))?
                }
            },
            retention: match r.retention.as_deref() {
                None => Default::default(),
                Some(json) => {
                    serde_json::from_str(json).map_err(|_| corrupt("project", "retention"))?
                }
            },
        })
    }
}

fn source_name(s: TicketSource) -> &'static str {
    match s {
        TicketSource::Api => "api",
        TicketSource::Chat => "chat",
    }
}

/// `tickets`, as a ticket is created.
#[derive(SerializeRow)]
pub(super) struct TicketValues<'a> {
    project_id: &'a str,
    slug: &'a str,
    id: Uuid,
    title: &'a str,
    description: &'a str,
    status: &'a str,
    source: &'a str,
    session_id: Option<&'a str>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    assignee: Option<&'a str>,
    tags: Vec<&'a str>,
    visitor_name: Option<&'a str>,
    visitor_email: Option<&'a str>,
    assignee_member_id: Option<Uuid>,
    assignee_member_name: Option<&'a str>,
    assignee_member_avatar_url: Option<&'a str>,
    satisfaction_score: Option<i32>,
    satisfaction_comment: Option<&'a str>,
    satisfaction_at: Option<DateTime<Utc>>,
    /// JSON: the contact as the ticket keeps it, written once and read whole.
    contact: Option<String>,
    visitor_email_unverified: bool,
}

impl<'a> From<&'a Ticket> for TicketValues<'a> {
    fn from(t: &'a Ticket) -> Self {
        Self {
            project_id: t.project_id.as_str(),
            slug: t.slug.as_str(),
            id: t.id,
            title: t.title.as_str(),
            description: t.description.as_str(),
            status: t.status.as_str(),
            source: source_name(t.source),
            session_id: t.session_id.as_deref(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            assignee: t.assignee.as_ref().map(AgentName::as_str),
            tags: tag_names(&t.tags),
            visitor_name: t
                .visitor
                .as_ref()
                .and_then(|v| v.name.as_ref())
                .map(|n| n.as_str()),
            visitor_email: t
                .visitor
                .as_ref()
                .and_then(|v| v.email.as_ref())
                .map(|e| e.as_str()),
            assignee_member_id: t.assignee_member.as_ref().map(|m| m.id),
            assignee_member_name: t.assignee_member.as_ref().map(|m| m.name.as_str()),
            assignee_member_avatar_url: t
                .assignee_member
                .as_ref()
                .and_then(|m| m.avatar_url.as_deref()),
            satisfaction_score: t.satisfaction.as_ref().map(|s| i32::from(s.score)),
            satisfaction_comment: t.satisfaction.as_ref().map(|s| s.comment.as_str()),
            satisfaction_at: t.satisfaction.as_ref().map(|s| s.rated_at),
            contact: t
                .contact
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
            visitor_email_unverified: email_unverified(t),
        }
    }
}

fn email_unverified(t: &Ticket) -> bool {
    t.visitor.as_ref().is_some_and(|v| v.email_unverified)
}

/// A ticket's tags as the `tags` column holds them.
fn tag_names(tags: &Tags) -> Vec<&str> {
    tags.iter().map(Tag::as_str).collect()
}

/// `tickets`, as a ticket changes: everything but its id and creation time. `updated_at` is
/// both the new version and the condition's (`IF updated_at <= ?`).
#[derive(SerializeRow)]
pub(super) struct TicketChange<'a> {
    title: &'a str,
    description: &'a str,
    status: &'a str,
    source: &'a str,
    session_id: Option<&'a str>,
    updated_at: DateTime<Utc>,
    assignee: Option<&'a str>,
    tags: Vec<&'a str>,
    assignee_member_id: Option<Uuid>,
    assignee_member_name: Option<&'a str>,
    assignee_member_avatar_url: Option<&'a str>,
    satisfaction_score: Option<i32>,
    satisfaction_comment: Option<&'a str>,
    satisfaction_at: Option<DateTime<Utc>>,
    /// The visitor's address may change after the opening (`PUT …/visitor-email`).
    visitor_name: Option<&'a str>,
    visitor_email: Option<&'a str>,
    visitor_email_unverified: bool,
    project_id: &'a str,
    slug: &'a str,
}

impl<'a> From<&'a Ticket> for TicketChange<'a> {
    fn from(t: &'a Ticket) -> Self {
        Self {
            title: t.title.as_str(),
            description: t.description.as_str(),
            status: t.status.as_str(),
            source: source_name(t.source),
            session_id: t.session_id.as_deref(),
            updated_at: t.updated_at,
            assignee: t.assignee.as_ref().map(AgentName::as_str),
            tags: tag_names(&t.tags),
            assignee_member_id: t.assignee_member.as_ref().map(|m| m.id),
            assignee_member_name: t.assignee_member.as_ref().map(|m| m.name.as_str()),
            assignee_member_avatar_url: t
                .assignee_member
                .as_ref()
                .and_then(|m| m.avatar_url.as_deref()),
            satisfaction_score: t.satisfaction.as_ref().map(|s| i32::from(s.score)),
            satisfaction_comment: t.satisfaction.as_ref().map(|s| s.comment.as_str()),
            satisfaction_at: t.satisfaction.as_ref().map(|s| s.rated_at),
            visitor_name: t
                .visitor
                .as_ref()
                .and_then(|v| v.name.as_ref())
                .map(|n| n.as_str()),
            visitor_email: t
                .visitor
                .as_ref()
                .and_then(|v| v.email.as_ref())
                .map(|e| e.as_str()),
            visitor_email_unverified: email_unverified(t),
            project_id: t.project_id.as_str(),
            slug: t.slug.as_str(),
        }
    }
}

#[derive(DeserializeRow)]
pub(super) struct TicketRow {
    project_id: String,
    slug: String,
    id: Uuid,
    title: String,
    description: Option<String>,
    status: String,
    source: String,
    session_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    assignee: Option<String>,
    /// Null in rows written before migration 0007 and for tickets without tags.
    tags: Option<Vec<String>>,
    /// Null in rows written before migration 0014, and when the visitor's name is not known.
    visitor_name: Option<String>,
    visitor_email: Option<String>,
    /// Null in rows written before migration 0018, and unless a member is assigned.
    assignee_member_id: Option<Uuid>,
    assignee_member_name: Option<String>,
    assignee_member_avatar_url: Option<String>,
    /// Null in rows written before migration 0020, and until the visitor rates.
    satisfaction_score: Option<i32>,
    satisfaction_comment: Option<String>,
    satisfaction_at: Option<DateTime<Utc>>,
    /// Null in rows written before migration 0025, and for tickets opened without a verified
    /// session.
    contact: Option<String>,
    /// Null in rows written before migration 0032.
    visitor_email_unverified: Option<bool>,
}

impl TryFrom<TicketRow> for Ticket {
    type Error = StoreError;

    fn try_from(r: TicketRow) -> StoreResult<Ticket> {
        let corrupt = |what: &str| corrupt("ticket row", what);
        Ok(Ticket {
            project_id: ProjectId::parse(&r.project_id).map_err(|_| corrupt("project_id"))?,
            slug: Slug::parse(&r.slug).map_err(|_| corrupt("slug"))?,
            id: r.id,
            title: Title::parse(&r.title).map_err(|_| corrupt("title"))?,
            description: Description::parse(r.description.as_deref().unwrap_or(""))
                .map_err(|_| corrupt("description"))?,
            status: TicketStatus::parse(&r.status).map_err(|_| corrupt("status"))?,
            source: match r.source.as_str() {
                "chat" => TicketSource::Chat,
                _ => TicketSource::Api,
            },
            session_id: r.session_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            assignee: match r.assignee {
                Some(name) => Some(AgentName::parse(&name).map_err(|_| corrupt("assignee"))?),
                None => None,
            },
            assignee_member: match (r.assignee_member_id, r.assignee_member_name) {
                (Some(id), Some(name)) => Some(MessageAgent {
                    id,
                    name,
                    avatar_url: r.assignee_member_avatar_url,
                }),
                _ => None,
            },
            tags: Tags::parse(&r.tags.unwrap_or_default()).map_err(|_| corrupt("tags"))?,
            visitor: match (r.visitor_name, r.visitor_email) {
                (None, None) => None,
                (name, email) => Some(VisitorContact {
                    name: match name {
                        Some(n) => {
                            Some(VisitorName::parse(&n).map_err(|_| corrupt("visitor_name"))?)
                        }
                        None => None,
                    },
                    email: match email {
                        Some(e) => Some(Email::parse(&e).map_err(|_| corrupt("visitor_email"))?),
                        None => None,
                    },
                    email_unverified: r.visitor_email_unverified.unwrap_or(false),
                }),
            },
            satisfaction: match (r.satisfaction_score, r.satisfaction_at) {
                (Some(score), Some(rated_at)) => Some(Box::new(Satisfaction {
                    score: Satisfaction::score(i64::from(score))
                        .map_err(|_| corrupt("satisfaction_score"))?,
                    comment: SatisfactionComment::parse(
                        r.satisfaction_comment.as_deref().unwrap_or(""),
                    )
                    .map_err(|_| corrupt("satisfaction_comment"))?,
                    rated_at,
                })),
                (None, None) => None,
                _ => return Err(corrupt("satisfaction")),
            },
            contact: match r.contact.as_deref() {
                Some(json) => Some(serde_json::from_str(json).map_err(|_| corrupt("contact"))?),
                None => None,
            },
        })
    }
}

/// `tickets_by_time`: a ticket's entry in its month, written at the ticket's version.
#[derive(SerializeRow)]
pub(super) struct ListingValues<'a> {
    project_id: &'a str,
    bucket: &'a str,
    created_at: DateTime<Utc>,
    slug: &'a str,
    status: &'a str,
    /// The write's timestamp: of two versions' entries, the newer one's status stays.
    #[scylla(rename = "[timestamp]")]
    version: i64,
}

impl<'a> ListingValues<'a> {
    pub(super) fn new(t: &'a Ticket, bucket: &'a str) -> Self {
        Self {
            project_id: t.project_id.as_str(),
            bucket,
            created_at: t.created_at,
            slug: t.slug.as_str(),
            status: t.status.as_str(),
            version: t.updated_at.timestamp_micros(),
        }
    }
}

/// An entry of `tickets_by_time` as a listing reads it; the ticket's row is the truth.
#[derive(DeserializeRow)]
pub(super) struct ListingRow {
    pub(super) created_at: DateTime<Utc>,
    pub(super) slug: String,
    pub(super) status: String,
}

/// `messages`: one message of a ticket.
#[derive(SerializeRow)]
pub(super) struct MessageValues<'a> {
    project_id: &'a str,
    slug: &'a str,
    message_id: CqlTimeuuid,
    author: &'a str,
    content: &'a str,
    idempotency_key: Option<&'a str>,
    agent_id: Option<Uuid>,
    agent_name: Option<&'a str>,
    agent_avatar_url: Option<&'a str>,
}

impl<'a> MessageValues<'a> {
    pub(super) fn new(project: &'a ProjectId, slug: &'a Slug, m: &'a Message) -> Self {
        Self {
            project_id: project.as_str(),
            slug: slug.as_str(),
            message_id: CqlTimeuuid::from(m.id.as_uuid()),
            author: m.author.as_str(),
            content: m.content.as_str(),
            idempotency_key: m.idempotency_key.as_ref().map(IdempotencyKey::as_str),
            agent_id: m.agent.as_ref().map(|a| a.id),
            agent_name: m.agent.as_ref().map(|a| a.name.as_str()),
            agent_avatar_url: m.agent.as_ref().and_then(|a| a.avatar_url.as_deref()),
        }
    }
}

#[derive(DeserializeRow)]
pub(super) struct MessageRow {
    message_id: CqlTimeuuid,
    author: String,
    content: String,
    idempotency_key: Option<String>,
    agent_id: Option<Uuid>,
    agent_name: Option<String>,
    agent_avatar_url: Option<String>,
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;

    fn try_from(r: MessageRow) -> StoreResult<Message> {
        let corrupt = |what: &str| corrupt("message row", what);
        let id = MessageId::from_uuid(r.message_id.into()).ok_or_else(|| corrupt("id"))?;
        Ok(Message {
            id,
            author: Participant::parse(&r.author).map_err(|_| corrupt("author"))?,
            content: MessageBody::parse(&r.content).map_err(|_| corrupt("content"))?,
            timestamp: id.timestamp(),
            idempotency_key: r
                .idempotency_key
                .map(|k| IdempotencyKey::parse(&k))
                .transpose()
                .map_err(|_| corrupt("idempotency_key"))?,
            // The id and the name are written together; a row with one and not the other
            // was never written by us.
            agent: match (r.agent_id, r.agent_name) {
                (Some(id), Some(name)) => Some(MessageAgent {
                    id,
                    name,
                    avatar_url: r.agent_avatar_url,
                }),
                (None, None) => None,
                _ => return Err(corrupt("agent")),
            },
        })
    }
}

/// `ticket_notes`: one note agents left on a ticket.
#[derive(SerializeRow)]
pub(super) struct NoteValues<'a> {
    project_id: &'a str,
    slug: &'a str,
    note_id: CqlTimeuuid,
    author: &'a str,
    content: &'a str,
    created_at: DateTime<Utc>,
}

impl<'a> NoteValues<'a> {
    pub(super) fn new(project: &'a ProjectId, slug: &'a Slug, n: &'a Note) -> Self {
        Self {
            project_id: project.as_str(),
            slug: slug.as_str(),
            note_id: CqlTimeuuid::from(n.id.as_uuid()),
            author: n.author.as_str(),
            content: n.content.as_str(),
            created_at: n.created_at,
        }
    }
}

#[derive(DeserializeRow)]
pub(super) struct NoteRow {
    note_id: CqlTimeuuid,
    author: String,
    content: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<NoteRow> for Note {
    type Error = StoreError;

    fn try_from(r: NoteRow) -> StoreResult<Note> {
        let corrupt = |what: &str| corrupt("note row", what);
        Ok(Note {
            id: MessageId::from_uuid(r.note_id.into()).ok_or_else(|| corrupt("id"))?,
            author: AgentName::parse(&r.author).map_err(|_| corrupt("author"))?,
            content: MessageBody::parse(&r.content).map_err(|_| corrupt("content"))?,
            created_at: r.created_at,
        })
    }
}

/// `read_cursors`: how far one reader has read, written at the time of the message read so
/// the newest cursor wins by itself.
#[derive(SerializeRow)]
pub(super) struct CursorValues<'a> {
    project_id: &'a str,
    slug: &'a str,
    reader: &'a str,
    up_to: CqlTimeuuid,
    #[scylla(rename = "[timestamp]")]
    read_at: i64,
}

impl<'a> CursorValues<'a> {
    pub(super) fn new(
        project: &'a ProjectId,
        slug: &'a Slug,
        reader: Participant,
        up_to: MessageId,
    ) -> Self {
        Self {
            project_id: project.as_str(),
            slug: slug.as_str(),
            reader: reader.as_str(),
            up_to: CqlTimeuuid::from(up_to.as_uuid()),
            read_at: up_to.timestamp().timestamp_micros(),
        }
    }
}

#[derive(DeserializeRow)]
pub(super) struct CursorRow {
    reader: String,
    up_to: CqlTimeuuid,
}

impl TryFrom<CursorRow> for ReadCursor {
    type Error = StoreError;

    fn try_from(r: CursorRow) -> StoreResult<ReadCursor> {
        Ok(ReadCursor {
            reader: Participant::parse(&r.reader)
                .map_err(|_| StoreError::Internal("corrupt cursor reader".into()))?,
            up_to: MessageId::from_uuid(r.up_to.into())
                .ok_or_else(|| StoreError::Internal("corrupt cursor id".into()))?,
        })
    }
}

/// `chat_turns`: one turn of a chat session.
#[derive(SerializeRow)]
pub(super) struct TurnValues<'a> {
    project_id: &'a str,
    session_id: &'a str,
    turn_id: CqlTimeuuid,
    role: &'a str,
    content: &'a str,
    at: DateTime<Utc>,
    ticket_slug: Option<&'a str>,
    citations: &'a [Uuid],
    tokens: i64,
    /// Unset without a rating: a turn written again keeps the rating it has.
    feedback: MaybeUnset<&'a str>,
}

impl<'a> TurnValues<'a> {
    pub(super) fn new(project: &'a ProjectId, session: &'a str, t: &'a ChatTurn) -> Self {
        Self {
            project_id: project.as_str(),
            session_id: session,
            turn_id: CqlTimeuuid::from(t.id.as_uuid()),
            role: t.role.as_str(),
            content: t.content.as_str(),
            at: t.at,
            ticket_slug: t.ticket_slug.as_ref().map(Slug::as_str),
            citations: &t.citations,
            tokens: i64::try_from(t.tokens).unwrap_or(i64::MAX),
            feedback: match t.feedback {
                Some(r) => MaybeUnset::Set(r.as_str()),
                None => MaybeUnset::Unset,
            },
        }
    }
}

#[derive(DeserializeRow)]
pub(super) struct TurnRow {
    turn_id: CqlTimeuuid,
    role: String,
    content: String,
    at: DateTime<Utc>,
    ticket_slug: Option<String>,
    citations: Option<Vec<Uuid>>,
    tokens: Option<i64>,
    feedback: Option<String>,
}

impl TryFrom<TurnRow> for ChatTurn {
    type Error = StoreError;

    fn try_from(r: TurnRow) -> StoreResult<ChatTurn> {
        let corrupt = |what: &str| corrupt("chat turn", what);
        Ok(ChatTurn {
            id: MessageId::from_uuid(r.turn_id.into()).ok_or_else(|| corrupt("id"))?,
            role: match r.role.as_str() {
                "user" => ChatRole::User,
                "assistant" => ChatRole::Assistant,
                _ => return Err(corrupt("role")),
            },
            content: r.content,
            at: r.at,
            ticket_slug: r
                .ticket_slug
                .map(|s| Slug::parse(&s))
                .transpose()
                .map_err(|_| corrupt("ticket_slug"))?,
            citations: r.citations.unwrap_or_default(),
            tokens: r.tokens.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
            feedback: r
                .feedback
                .map(|f| Rating::parse(&f))
                .transpose()
                .map_err(|_| corrupt("feedback"))?,
        })
    }
}

/// What a chat session has used: the tokens, the ticket and the rating of each turn.
#[derive(DeserializeRow)]
pub(super) struct UsageRow {
    pub(super) at: DateTime<Utc>,
    pub(super) tokens: Option<i64>,
    pub(super) ticket_slug: Option<String>,
    pub(super) feedback: Option<String>,
}

/// `chat_conversations`: a session's conversation, in its project's partition for the day it
/// started.
#[derive(SerializeRow)]
pub(super) struct ConversationValues<'a> {
    project_id: &'a str,
    day: i32,
    started_at: DateTime<Utc>,
    session_id: &'a str,
    last_at: DateTime<Utc>,
    escalated: bool,
    unanswered: bool,
    up: i32,
    down: i32,
}

/// The UTC day a time falls on, counted from 1970-01-01: the partition of `chat_conversations`.
pub(super) fn day_of(t: DateTime<Utc>) -> i32 {
    i32::try_from(t.timestamp().div_euclid(86_400)).unwrap_or(i32::MAX)
}

impl<'a> ConversationValues<'a> {
    pub(super) fn new(project: &'a ProjectId, c: &'a ChatConversation) -> Self {
        Self {
            project_id: project.as_str(),
            day: day_of(c.started_at),
            started_at: c.started_at,
            session_id: &c.session,
            last_at: c.last_at,
            escalated: c.escalated,
            unanswered: c.unanswered,
            up: i32::try_from(c.up).unwrap_or(i32::MAX),
            down: i32::try_from(c.down).unwrap_or(i32::MAX),
        }
    }
}

#[derive(DeserializeRow)]
pub(super) struct ConversationRow {
    started_at: DateTime<Utc>,
    session_id: String,
    last_at: Option<DateTime<Utc>>,
    escalated: Option<bool>,
    unanswered: Option<bool>,
    up: Option<i32>,
    down: Option<i32>,
}

impl From<ConversationRow> for ChatConversation {
    fn from(r: ConversationRow) -> Self {
        let count = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
        ChatConversation {
            last_at: r.last_at.unwrap_or(r.started_at),
            session: r.session_id,
            started_at: r.started_at,
            escalated: r.escalated.unwrap_or(false),
            unanswered: r.unanswered.unwrap_or(false),
            up: count(r.up),
            down: count(r.down),
        }
    }
}

/// `kb_articles`: one article of a project's knowledge base.
#[derive(SerializeRow)]
pub(super) struct ArticleValues<'a> {
    project_id: &'a str,
    article_id: Uuid,
    title: &'a str,
    body: &'a str,
    tags: &'a [String],
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    language: &'static str,
    url: Option<&'a str>,
}

impl<'a> From<&'a Article> for ArticleValues<'a> {
    fn from(a: &'a Article) -> Self {
        Self {
            project_id: a.project_id.as_str(),
            article_id: a.id,
            title: a.title.as_str(),
            body: a.body.as_str(),
            tags: &a.tags,
            created_at: a.created_at,
            updated_at: a.updated_at,
            language: a.language.as_str(),
            url: a.url.as_ref().map(|u| u.as_str()),
        }
    }
}

#[derive(DeserializeRow)]
pub(super) struct ArticleRow {
    project_id: String,
    article_id: Uuid,
    title: String,
    body: String,
    tags: Option<Vec<String>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Null in a row written before languages existed: English.
    language: Option<String>,
    url: Option<String>,
}

impl TryFrom<ArticleRow> for Article {
    type Error = StoreError;

    fn try_from(r: ArticleRow) -> StoreResult<Article> {
        let corrupt = |what: &str| corrupt("article", what);
        Ok(Article {
            project_id: ProjectId::parse(&r.project_id).map_err(|_| corrupt("project id"))?,
            id: r.article_id,
            title: ArticleTitle::parse(&r.title).map_err(|_| corrupt("title"))?,
            body: ArticleBody::parse(&r.body).map_err(|_| corrupt("body"))?,
            tags: r.tags.unwrap_or_default(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            language: r
                .language
                .as_deref()
                .map(Language::parse)
                .transpose()
                .map_err(|_| corrupt("language"))?
                .unwrap_or_default(),
            url: r
                .url
                .as_deref()
                .map(ArticleUrl::parse)
                .transpose()
                .map_err(|_| corrupt("url"))?,
        })
    }
}
