//! The embedded store's tables: their layout in redb, and the one place rows change.

use fleety_actors::store::{StoreError, StoreResult};
use fleety_actors::webhook::Delivery;
use fleety_actors::MessageId;
use redb::{ReadableTable, TableDefinition};

use super::wal::Op;

pub(super) mod emails;
use emails::{EMAILS_BY_PROJECT, EMAILS_BY_TICKET};

pub(super) const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("projects");
pub(super) const TICKETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tickets");
/// (project, created_at in ms, slug) -> status: the agent listing, newest first by reverse scan.
pub(super) const TICKETS_BY_TIME: TableDefinition<(&str, i64, &str), &str> =
    TableDefinition::new("tickets_by_time");
/// (project, slug, id ticks) -> message JSON. Ticks are unique and increasing within a ticket.
pub(super) const MESSAGES: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("messages");
/// (project, slug, reader) -> id bytes of the newest message read.
pub(super) const READ_CURSORS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("read_cursors");
/// (project, slug, note id ticks) -> note JSON: agents' internal notes, in order.
pub(super) const NOTES: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("notes");
/// (project, slug, entry id ticks) -> timeline entry JSON: who changed the ticket's fields.
pub(super) const ACTIVITY: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("ticket_activity");
/// (project, session, turn id ticks) -> turn JSON: a chat session's transcript in order.
pub(super) const CHAT_TURNS: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("chat_turns");
/// (project, started at in ms, session) -> conversation JSON: a session's conversation with
/// the assistant, found by when it started (the outcome counts read a range of them).
pub(super) const CHAT_CONVERSATIONS: TableDefinition<(&str, i64, &str), &[u8]> =
    TableDefinition::new("chat_conversations");
/// (project, article id) -> article JSON.
pub(super) const ARTICLES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("kb_articles");
/// (project, endpoint id) -> webhook endpoint JSON.
pub(super) const WEBHOOKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("webhooks");
/// (project, endpoint id, delivery id) -> delivery JSON. Ids grow with time, so a reverse scan
/// lists an endpoint's newest deliveries first.
pub(super) const DELIVERIES: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("webhook_deliveries");
/// (due in ms, project, endpoint id, delivery id): the deliveries waiting for an attempt, soonest
/// first. A delivery has an entry exactly while it has a due time.
pub(super) const DELIVERIES_DUE: TableDefinition<(i64, &str, &str, &str), ()> =
    TableDefinition::new("webhook_deliveries_due");
/// (project, question id) -> the question's JSON: what the assistant could not answer.
pub(super) const UNANSWERED: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("kb_unanswered");
/// (project, member id) -> member JSON.
pub(super) const MEMBERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("members");
/// (project, normalised email) -> member id: an email names one member per project.
pub(super) const MEMBER_EMAILS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("member_emails");
/// (project, token id) -> personal API token JSON (its secret's digest, never the secret).
pub(super) const API_TOKENS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("api_tokens");
/// (project, member id) -> the member's second factor JSON (its TOTP secret, the digests of
/// its recovery codes).
pub(super) const MEMBER_TOTP: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("member_totp");
/// (project, member id, session id) -> session JSON: a member's signed-in sessions.
pub(super) const MEMBER_SESSIONS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("member_sessions");
/// (project, link id) -> invitation or password-reset link JSON; the id is the digest of the
/// link's token.
pub(super) const MEMBER_LINKS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("member_links");
/// (project, reply id) -> canned reply JSON.
pub(super) const CANNED: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("canned_replies");
/// (project, time in ms, record id) -> audit record JSON: a project's trail, oldest first.
pub(super) const AUDIT: TableDefinition<(&str, i64, &str), &[u8]> = TableDefinition::new("audit");
/// email id -> outbox email JSON.
pub(super) const EMAILS: TableDefinition<&str, &[u8]> = TableDefinition::new("emails");
/// (due in ms, email id): the emails waiting for an attempt, soonest first. An email has an
/// entry exactly while it has a due time.
pub(super) const EMAILS_DUE: TableDefinition<(i64, &str), ()> = TableDefinition::new("emails_due");
/// (project, slug) -> the ticket's visitor-mail record JSON.
pub(super) const VISITOR_MAILS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("visitor_mails");
/// (due in ms, project, slug): the visitor-mail records whose email waits, soonest first. A
/// record has an entry exactly while it has a due time.
pub(super) const VISITOR_MAILS_DUE: TableDefinition<(i64, &str, &str), ()> =
    TableDefinition::new("visitor_mails_due");
/// (project, member id) -> the member's notification switches JSON ([`fleety_actors::agent_mail`]).
pub(super) const NOTIFICATION_PREFS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("notification_prefs");
/// (project, contact order key) -> contact JSON: a project's known visitors, in id order.
pub(super) const CONTACTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("contacts");
/// (project, contact order key, ticket created_at in ms, slug): the tickets a contact opened,
/// newest first by reverse scan.
pub(super) const CONTACT_TICKETS: TableDefinition<(&str, &str, i64, &str), ()> =
    TableDefinition::new("contact_tickets");
/// The store's own bookkeeping.
/// (project, slug, mail key) -> the record of a reply by email posted on the ticket.
pub(super) const INBOUND_MAIL: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("inbound_mail");
/// Ticket erasures begun and not finished: (project, slug) to the JSON `Erasure`.
pub(super) const ERASURES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("erasures");
/// Contact erasures begun and not finished: (project, contact order key) to the JSON
/// `ContactErasure`.
pub(super) const CONTACT_ERASURES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("contact_erasures");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The newest group a durable redb commit holds: replay starts after it.
pub(super) const CHECKPOINT_KEY: &str = "log_checkpoint";

/// A stored read cursor: the 16 bytes of a message id.
pub(super) fn cursor_id(bytes: &[u8]) -> Option<MessageId> {
    <[u8; 16]>::try_from(bytes)
        .ok()
        .and_then(MessageId::from_bytes)
}

/// A stored ticket's version: its `updated_at` (the ticket actor moves it forward with every
/// change), read without decoding the rest of the row.
fn ticket_version(json: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    #[derive(serde::Deserialize)]
    struct Version {
        updated_at: chrono::DateTime<chrono::Utc>,
    }
    serde_json::from_slice::<Version>(json)
        .ok()
        .map(|v| v.updated_at)
}

/// The new encoding of a turn with the stored one's rating, when the new one has none and the
/// stored one has; `None` when the new encoding stands as it is.
fn keep_feedback(stored: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    let rating = |json: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get("feedback").cloned())
    };
    if rating(new).is_some() {
        return None;
    }
    let kept = rating(stored)?;
    let mut turn: serde_json::Value = serde_json::from_slice(new).ok()?;
    turn.as_object_mut()?.insert("feedback".into(), kept);
    serde_json::to_vec(&turn).ok()
}

pub(super) fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(internal)
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Internal(format!("corrupt record: {e}")))
}

/// The open tables of one write transaction, and the one place rows change: live groups and
/// replay both go through [`Tables::apply`].
pub(super) struct Tables<'t> {
    projects: redb::Table<'t, &'static str, &'static [u8]>,
    tickets: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    by_time: redb::Table<'t, (&'static str, i64, &'static str), &'static str>,
    messages: redb::Table<'t, (&'static str, &'static str, u64), &'static [u8]>,
    notes: redb::Table<'t, (&'static str, &'static str, u64), &'static [u8]>,
    activity: redb::Table<'t, (&'static str, &'static str, u64), &'static [u8]>,
    cursors: redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>,
    chat: redb::Table<'t, (&'static str, &'static str, u64), &'static [u8]>,
    conversations: redb::Table<'t, (&'static str, i64, &'static str), &'static [u8]>,
    articles: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    webhooks: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    deliveries: redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>,
    due: redb::Table<'t, (i64, &'static str, &'static str, &'static str), ()>,
    unanswered: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    members: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    member_emails: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    member_sessions: redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>,
    member_links: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    canned: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    audit: redb::Table<'t, (&'static str, i64, &'static str), &'static [u8]>,
    contacts: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    contact_tickets: redb::Table<'t, (&'static str, &'static str, i64, &'static str), ()>,
    inbound_mail: redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>,
    api_tokens: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    emails: redb::Table<'t, &'static str, &'static [u8]>,
    emails_due: redb::Table<'t, (i64, &'static str), ()>,
    emails_by_project: redb::Table<'t, (&'static str, i64, &'static str), ()>,
    emails_by_ticket: redb::Table<'t, (&'static str, &'static str, i64, &'static str), ()>,
    visitor_mails: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    visitor_mails_due: redb::Table<'t, (i64, &'static str, &'static str), ()>,
    notification_prefs: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    member_totp: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    erasures: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    contact_erasures: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    pub(super) meta: redb::Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> StoreResult<Self> {
        Ok(Self {
            projects: txn.open_table(PROJECTS).map_err(internal)?,
            tickets: txn.open_table(TICKETS).map_err(internal)?,
            by_time: txn.open_table(TICKETS_BY_TIME).map_err(internal)?,
            messages: txn.open_table(MESSAGES).map_err(internal)?,
            notes: txn.open_table(NOTES).map_err(internal)?,
            activity: txn.open_table(ACTIVITY).map_err(internal)?,
            cursors: txn.open_table(READ_CURSORS).map_err(internal)?,
            chat: txn.open_table(CHAT_TURNS).map_err(internal)?,
            conversations: txn.open_table(CHAT_CONVERSATIONS).map_err(internal)?,
            articles: txn.open_table(ARTICLES).map_err(internal)?,
            webhooks: txn.open_table(WEBHOOKS).map_err(internal)?,
            deliveries: txn.open_table(DELIVERIES).map_err(internal)?,
            due: txn.open_table(DELIVERIES_DUE).map_err(internal)?,
            unanswered: txn.open_table(UNANSWERED).map_err(internal)?,
            members: txn.open_table(MEMBERS).map_err(internal)?,
            member_links: txn.open_table(MEMBER_LINKS).map_err(internal)?,
            member_emails: txn.open_table(MEMBER_EMAILS).map_err(internal)?,
            member_sessions: txn.open_table(MEMBER_SESSIONS).map_err(internal)?,
            canned: txn.open_table(CANNED).map_err(internal)?,
            audit: txn.open_table(AUDIT).map_err(internal)?,
            contacts: txn.open_table(CONTACTS).map_err(internal)?,
            contact_tickets: txn.open_table(CONTACT_TICKETS).map_err(internal)?,
            inbound_mail: txn.open_table(INBOUND_MAIL).map_err(internal)?,
            api_tokens: txn.open_table(API_TOKENS).map_err(internal)?,
            emails: txn.open_table(EMAILS).map_err(internal)?,
            emails_due: txn.open_table(EMAILS_DUE).map_err(internal)?,
            emails_by_project: txn.open_table(EMAILS_BY_PROJECT).map_err(internal)?,
            emails_by_ticket: txn.open_table(EMAILS_BY_TICKET).map_err(internal)?,
            visitor_mails: txn.open_table(VISITOR_MAILS).map_err(internal)?,
            visitor_mails_due: txn.open_table(VISITOR_MAILS_DUE).map_err(internal)?,
            notification_prefs: txn.open_table(NOTIFICATION_PREFS).map_err(internal)?,
            member_totp: txn.open_table(MEMBER_TOTP).map_err(internal)?,
            erasures: txn.open_table(ERASURES).map_err(internal)?,
            contact_erasures: txn.open_table(CONTACT_ERASURES).map_err(internal)?,
            meta: txn.open_table(META).map_err(internal)?,
        })
    }

    /// Applies one change; false if it changed nothing (a cursor that would move back, an
    /// article already gone).
    pub(super) fn apply(&mut self, op: &Op<'_>) -> StoreResult<bool> {
        match *op {
            Op::Project { id, json } => {
                self.projects.insert(id, json).map_err(internal)?;
            }
            Op::Ticket {
                project,
                slug,
                created_ms,
                status,
                json,
            } => {
                // `None` sorts first: an unreadable new version never wins over a stored one.
                let older = match self.tickets.get((project, slug)).map_err(internal)? {
                    Some(stored) => ticket_version(json) < ticket_version(stored.value()),
                    None => false,
                };
                if older {
                    return Ok(false);
                }
                self.tickets
                    .insert((project, slug), json)
                    .map_err(internal)?;
                self.by_time
                    .insert((project, created_ms, slug), status)
                    .map_err(internal)?;
            }
            Op::Message {
                project,
                slug,
                ticks,
                json,
            } => {
                self.messages
                    .insert((project, slug, ticks), json)
                    .map_err(internal)?;
            }
            Op::Note {
                project,
                slug,
                ticks,
                json,
            } => {
                self.notes
                    .insert((project, slug, ticks), json)
                    .map_err(internal)?;
            }
            Op::Activity {
                project,
                slug,
                ticks,
                json,
            } => {
                self.activity
                    .insert((project, slug, ticks), json)
                    .map_err(internal)?;
            }
            Op::Cursor {
                project,
                slug,
                reader,
                up_to,
            } => {
                let key = (project, slug, reader);
                let current = self
                    .cursors
                    .get(key)
                    .map_err(internal)?
                    .and_then(|v| cursor_id(v.value()));
                // `None` sorts first: an unreadable new id never wins.
                if cursor_id(up_to) <= current {
                    return Ok(false);
                }
                self.cursors.insert(key, up_to).map_err(internal)?;
            }
            Op::ChatTurn {
                project,
                session,
                ticks,
                json,
            } => {
                let key = (project, session, ticks);
                // A turn stored again without a rating (a retried write, or the answer's
                // transcript landing after the visitor rated it) keeps the rating it has.
                let kept = match self.chat.get(key).map_err(internal)? {
                    Some(stored) => keep_feedback(stored.value(), json),
                    None => None,
                };
                let json = kept.as_deref().unwrap_or(json);
                self.chat.insert(key, json).map_err(internal)?;
            }
            Op::ChatConversation {
                project,
                started_ms,
                session,
                json,
            } => {
                self.conversations
                    .insert((project, started_ms, session), json)
                    .map_err(internal)?;
            }
            Op::Article { project, id, json } => {
                self.articles
                    .insert((project, id), json)
                    .map_err(internal)?;
            }
            Op::DeleteArticle { project, id } => {
                return Ok(self
                    .articles
                    .remove((project, id))
                    .map_err(internal)?
                    .is_some());
            }
            Op::Unanswered { project, id, json } => {
                self.unanswered
                    .insert((project, id), json)
                    .map_err(internal)?;
            }
            Op::DeleteUnanswered { project, id } => {
                return Ok(self
                    .unanswered
                    .remove((project, id))
                    .map_err(internal)?
                    .is_some());
            }
            Op::Member {
                project,
                id,
                email,
                json,
            } => {
                self.members.insert((project, id), json).map_err(internal)?;
                self.member_emails
                    .insert((project, email), id.as_bytes())
                    .map_err(internal)?;
            }
            Op::MemberSession {
                project,
                member,
                id,
                json,
            } => {
                self.member_sessions
                    .insert((project, member, id), json)
                    .map_err(internal)?;
            }
            Op::DeleteMemberSession {
                project,
                member,
                id,
            } => {
                return Ok(self
                    .member_sessions
                    .remove((project, member, id))
                    .map_err(internal)?
                    .is_some());
            }
            Op::Canned { project, id, json } => {
                self.canned.insert((project, id), json).map_err(internal)?;
            }
            Op::ApiToken { project, id, json } => {
                self.api_tokens
                    .insert((project, id), json)
                    .map_err(internal)?;
            }
            Op::DeleteApiToken { project, id } => {
                return Ok(self
                    .api_tokens
                    .remove((project, id))
                    .map_err(internal)?
                    .is_some());
            }
            Op::MemberTotp {
                project,
                member,
                json,
            } => {
                self.member_totp
                    .insert((project, member), json)
                    .map_err(internal)?;
            }
            Op::DeleteMemberTotp { project, member } => {
                return Ok(self
                    .member_totp
                    .remove((project, member))
                    .map_err(internal)?
                    .is_some());
            }
            Op::MemberLink { project, id, json } => {
                self.member_links
                    .insert((project, id), json)
                    .map_err(internal)?;
            }
            Op::DeleteMemberLink { project, id } => {
                return Ok(self
                    .member_links
                    .remove((project, id))
                    .map_err(internal)?
                    .is_some());
            }
            Op::Audit {
                project,
                at_ms,
                id,
                json,
            } => {
                self.audit
                    .insert((project, at_ms, id), json)
                    .map_err(internal)?;
            }
            Op::DeleteAudit { project, at_ms, id } => {
                return Ok(self
                    .audit
                    .remove((project, at_ms, id))
                    .map_err(internal)?
                    .is_some());
            }
            Op::Contact { project, id, json } => {
                self.contacts
                    .insert((project, id), json)
                    .map_err(internal)?;
            }
            Op::ContactTicket {
                project,
                contact,
                created_ms,
                slug,
            } => {
                self.contact_tickets
                    .insert((project, contact, created_ms, slug), ())
                    .map_err(internal)?;
            }
            Op::NotificationPrefs {
                project,
                member,
                json,
            } => {
                self.notification_prefs
                    .insert((project, member), json)
                    .map_err(internal)?;
            }
            Op::InboundMail {
                project,
                slug,
                key,
                json,
            } => {
                self.inbound_mail
                    .insert((project, slug, key), json)
                    .map_err(internal)?;
            }
            Op::DeleteCanned { project, id } => {
                return Ok(self
                    .canned
                    .remove((project, id))
                    .map_err(internal)?
                    .is_some());
            }
            Op::Webhook { project, id, json } => {
                self.webhooks
                    .insert((project, id), json)
                    .map_err(internal)?;
            }
            Op::DeleteWebhook { project, id } => {
                return Ok(self
                    .webhooks
                    .remove((project, id))
                    .map_err(internal)?
                    .is_some());
            }
            Op::DeleteDelivery {
                project,
                endpoint,
                id,
            } => {
                let Some(old) = self
                    .deliveries
                    .remove((project, endpoint, id))
                    .map_err(internal)?
                else {
                    return Ok(false);
                };
                let old = from_json::<Delivery>(old.value())?;
                if let Some(at) = old.next_attempt_at {
                    let due = (at.timestamp_millis(), project, endpoint, id);
                    self.due.remove(due).map_err(internal)?;
                }
            }
            Op::Delivery {
                project,
                endpoint,
                id,
                due_ms,
                json,
            } => {
                let key = (project, endpoint, id);
                // The old due entry goes by the stored row, so replaying a record twice, or a
                // caller's stale idea of when it was due, leaves no stray entry.
                let old = self.deliveries.insert(key, json).map_err(internal)?;
                let was_due = match old {
                    Some(row) => from_json::<Delivery>(row.value())?
                        .next_attempt_at
                        .map(|at| at.timestamp_millis()),
                    None => None,
                };
                if let Some(was) = was_due {
                    self.due
                        .remove((was, project, endpoint, id))
                        .map_err(internal)?;
                }
                if let Some(due) = due_ms {
                    self.due
                        .insert((due, project, endpoint, id), ())
                        .map_err(internal)?;
                }
            }
            Op::EraseTicket { project, slug } => return self.erase_ticket(project, slug),
            Op::Erasure {
                project,
                slug,
                json,
            } => {
                self.erasures
                    .insert((project, slug), json)
                    .map_err(internal)?;
            }
            Op::DeleteErasure { project, slug } => {
                return Ok(self
                    .erasures
                    .remove((project, slug))
                    .map_err(internal)?
                    .is_some());
            }
            Op::EraseContact { project, contact } => return self.erase_contact(project, contact),
            Op::ContactErasure {
                project,
                contact,
                json,
            } => {
                self.contact_erasures
                    .insert((project, contact), json)
                    .map_err(internal)?;
            }
            Op::DeleteContactErasure { project, contact } => {
                return Ok(self
                    .contact_erasures
                    .remove((project, contact))
                    .map_err(internal)?
                    .is_some());
            }
            Op::Email { id, due_ms, json } => {
                // As a delivery: the old due entry goes by the stored row.
                let was_due = match self.emails.insert(id, json).map_err(internal)? {
                    Some(row) => from_json::<fleety_actors::email::Email>(row.value())?
                        .next_attempt_at
                        .map(|at| at.timestamp_millis()),
                    None => None,
                };
                if let Some(was) = was_due {
                    self.emails_due.remove((was, id)).map_err(internal)?;
                }
                if let Some(due) = due_ms {
                    self.emails_due.insert((due, id), ()).map_err(internal)?;
                }
                self.index_email(&from_json(json)?)?;
            }
            Op::VisitorMail {
                project,
                slug,
                due_ms,
                json,
            } => {
                let old = self
                    .visitor_mails
                    .insert((project, slug), json)
                    .map_err(internal)?;
                let was_due = match old {
                    Some(row) => {
                        from_json::<fleety_actors::visitor_mail::VisitorMail>(row.value())?
                            .due_at
                            .map(|at| at.timestamp_millis())
                    }
                    None => None,
                };
                if let Some(was) = was_due {
                    self.visitor_mails_due
                        .remove((was, project, slug))
                        .map_err(internal)?;
                }
                if let Some(due) = due_ms {
                    self.visitor_mails_due
                        .insert((due, project, slug), ())
                        .map_err(internal)?;
                }
            }
        }
        Ok(true)
    }

    /// Removes every row of the ticket and every row carrying its words; whether its row was
    /// there. Rows keyed by the slug go by their key whether or not the ticket's row is still
    /// there; the chat transcript is found through the row.
    fn erase_ticket(&mut self, project: &str, slug: &str) -> StoreResult<bool> {
        let ticket = match self.tickets.remove((project, slug)).map_err(internal)? {
            Some(row) => Some(from_json::<fleety_actors::domain::Ticket>(row.value())?),
            None => None,
        };
        if let Some(t) = &ticket {
            let created = t.created_at.timestamp_millis();
            self.by_time
                .remove((project, created, slug))
                .map_err(internal)?;
            if let Some(contact) = &t.contact {
                let contact = contact.id.to_string();
                self.contact_tickets
                    .remove((project, contact.as_str(), created, slug))
                    .map_err(internal)?;
            }
            if let Some(session) = &t.session_id {
                let s = session.as_str();
                let mut turns = Vec::new();
                for row in self
                    .chat
                    .range::<(&str, &str, u64)>((project, s, 0)..=(project, s, u64::MAX))
                    .map_err(internal)?
                {
                    turns.push(row.map_err(internal)?.0.value().2);
                }
                for ticks in turns {
                    self.chat.remove((project, s, ticks)).map_err(internal)?;
                }
                // The session's conversation row stays: it holds counts for reporting, no
                // words.
            }
        }
        for table in [&mut self.messages, &mut self.notes, &mut self.activity] {
            let mut ticks = Vec::new();
            for row in table
                .range::<(&str, &str, u64)>((project, slug, 0)..=(project, slug, u64::MAX))
                .map_err(internal)?
            {
                ticks.push(row.map_err(internal)?.0.value().2);
            }
            for t in ticks {
                table.remove((project, slug, t)).map_err(internal)?;
            }
        }
        let mut readers = Vec::new();
        for row in self
            .cursors
            .range::<(&str, &str, &str)>((project, slug, "")..=(project, slug, "~"))
            .map_err(internal)?
        {
            readers.push(row.map_err(internal)?.0.value().2.to_owned());
        }
        for reader in readers {
            self.cursors
                .remove((project, slug, reader.as_str()))
                .map_err(internal)?;
        }
        // Deliveries are keyed by endpoint, not ticket: the project's are read to find them.
        let mut deliveries = Vec::new();
        for row in self
            .deliveries
            .range::<(&str, &str, &str)>((project, "", "")..=(project, "~", "~"))
            .map_err(internal)?
        {
            let (k, v) = row.map_err(internal)?;
            let d = from_json::<Delivery>(v.value())?;
            if d.concerns_ticket(slug) {
                let (_, endpoint, id) = k.value();
                deliveries.push((endpoint.to_owned(), id.to_owned()));
            }
        }
        // The trail keeps its records of the ticket, without the title they name it by.
        let mut redacted = Vec::new();
        for row in self
            .audit
            .range::<(&str, i64, &str)>((project, i64::MIN, "")..=(project, i64::MAX, "~"))
            .map_err(internal)?
        {
            let (k, v) = row.map_err(internal)?;
            let mut record = from_json::<fleety_actors::audit::AuditRecord>(v.value())?;
            if fleety_actors::audit::redact_ticket(&mut record, slug) {
                let (_, at, id) = k.value();
                redacted.push((at, id.to_owned(), to_json(&record)?));
            }
        }
        for (at, id, json) in redacted {
            self.audit
                .insert((project, at, id.as_str()), json.as_slice())
                .map_err(internal)?;
        }
        for (endpoint, id) in deliveries {
            self.apply(&Op::DeleteDelivery {
                project,
                endpoint: &endpoint,
                id: &id,
            })?;
        }
        self.erase_emails(project, slug)?;
        Ok(ticket.is_some())
    }

    /// Removes the contact's row and every entry left in its ticket index (the tickets went
    /// before, each by its own erasure); whether the row was there.
    fn erase_contact(&mut self, project: &str, contact: &str) -> StoreResult<bool> {
        let existed = self
            .contacts
            .remove((project, contact))
            .map_err(internal)?
            .is_some();
        let mut entries = Vec::new();
        for row in self
            .contact_tickets
            .range::<(&str, &str, i64, &str)>(
                (project, contact, i64::MIN, "")..=(project, contact, i64::MAX, "~"),
            )
            .map_err(internal)?
        {
            let (k, _) = row.map_err(internal)?;
            let (_, _, created, slug) = k.value();
            entries.push((created, slug.to_owned()));
        }
        for (created, slug) in entries {
            self.contact_tickets
                .remove((project, contact, created, slug.as_str()))
                .map_err(internal)?;
        }
        Ok(existed)
    }
}
