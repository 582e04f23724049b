//! The storage port: everything the actors persist, one trait per aggregate (projects,
//! tickets, chat transcripts, knowledge bases, webhooks, the email outbox, canned replies,
//! members and their sessions, contacts, replies by email), and [`Store`], a backend that has them all.
//!
//! Backends live outside this crate (the embedded redb store and the CQL store in the `fleety`
//! crate), beside [`memory`], the in-memory store that tests use. They are interchangeable
//! because every one of them runs [`conformance`], the same suite of behavioural tests.
//!
//! Contract common to all methods: a write has returned `Ok` only once it is durable, and a
//! read observes every write that returned before it started.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::agent_mail::NotificationPrefs;
use crate::audit::{AuditPage, AuditQuery, AuditRecord};
use crate::canned::{CannedConflict, CannedReply};
use crate::contact::{Contact, ContactErasure, ContactPage, ContactQuery};
use crate::domain::{
    Activity, Article, ChatConversation, ChatTurn, ChatUsage, Message, Note, OutcomeCounts,
    Participant, Project, ProjectId, ReadCursor, Slug, Tag, Ticket, TicketStatus,
};
use crate::email::Email;
use crate::inbound_mail::InboundMail;
use crate::member::{ApiToken, Member, MemberLink, MemberSession, MemberTotp};
use crate::message_id::MessageId;
use crate::unanswered::{Asked, UnansweredQuestion};
use crate::visitor_mail::VisitorMail;
use crate::webhook::{Delivery, Endpoint};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The row to create exists already (a project id or a ticket slug).
    #[error("already exists")]
    Conflict,
    /// The row to update does not exist.
    #[error("not found")]
    NotFound,
    /// The backend cannot be reached or did not answer in time; the caller may retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else: corrupt data, a bug. Logged in full, never shown to clients.
    #[error("storage failure: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Receives the outcome of [`TicketStore::submit`]. Called exactly once, on whichever thread learns
/// the outcome, so it must not block.
pub type Done = Box<dyn FnOnce(StoreResult<()>) + Send>;

/// Which tickets an agent's listing wants.
#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    pub status: Option<TicketStatus>,
    /// Only titles containing this, lower-cased. A search examines a bounded number of tickets
    /// per page ([`TicketQuery::scan_limit`]); a page that comes back short with a `next`
    /// cursor has more to look at. The agents' `q` does not come here: it is answered by the
    /// ticket search index ([`crate::search`]), which also searches messages.
    pub title: Option<String>,
    /// Only tickets with this tag. Searched like a title: a bounded number per page.
    pub tag: Option<Tag>,
    /// Only tickets with this assignee. Searched like a title: a bounded number per page.
    pub assignee: Option<AssigneeFilter>,
    /// How many tickets a title search examines per page; `None`: [`SEARCH_SCAN`].
    pub search_scan: Option<usize>,
    /// Continue after this position (exclusive), as returned in [`TicketPage::next`].
    pub after: Option<TicketCursor>,
    /// Page size; backends clamp it to 1..=100.
    pub limit: usize,
}

/// Whose tickets a listing wants. Members' states are not the store's business: the caller
/// names the members whose tickets count as nobody's (the deactivated ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssigneeFilter {
    /// Tickets nobody is assigned to, counting those of the members in `hidden` as such.
    Nobody { hidden: Vec<uuid::Uuid> },
    /// Tickets assigned to this member.
    Member(uuid::Uuid),
}

impl AssigneeFilter {
    pub fn matches(&self, ticket: &Ticket) -> bool {
        let member = ticket.assignee_member.as_ref().map(|m| m.id);
        match self {
            AssigneeFilter::Nobody { hidden } => {
                ticket.assignee.is_none() || member.is_some_and(|id| hidden.contains(&id))
            }
            AssigneeFilter::Member(id) => member == Some(*id),
        }
    }
}

/// A position in a project's tickets, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketCursor {
    pub created_at: DateTime<Utc>,
    pub slug: Slug,
}

#[derive(Debug, Clone)]
pub struct TicketPage {
    pub tickets: Vec<Ticket>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<TicketCursor>,
}

/// Tickets a title search examines per page at most, so one request stays bounded however
/// many tickets a project has.
pub const SEARCH_SCAN: usize = 2_000;

impl TicketQuery {
    /// Tickets one page may examine: all of them for a plain listing, a bounded number for a
    /// search.
    pub fn scan_limit(&self) -> usize {
        match self.title.is_some() || self.tag.is_some() || self.assignee.is_some() {
            true => self.search_scan.unwrap_or(SEARCH_SCAN).max(1),
            false => usize::MAX,
        }
    }

    /// Whether `ticket` belongs in the listing.
    pub fn matches(&self, ticket: &Ticket) -> bool {
        self.matches_fields(ticket)
            && self
                .title
                .as_deref()
                .is_none_or(|needle| ticket.title.as_str().to_lowercase().contains(needle))
    }

    /// Whether `ticket` has the status and the tag the listing wants, whatever its title.
    pub fn matches_fields(&self, ticket: &Ticket) -> bool {
        self.status.is_none_or(|s| s == ticket.status)
            && self
                .tag
                .as_ref()
                .is_none_or(|tag| ticket.tags.contains(tag))
            && self.assignee.as_ref().is_none_or(|a| a.matches(ticket))
    }
}

impl TicketPage {
    /// Backends read one ticket more than the page holds: if it is there, another page follows,
    /// and it starts after the page's last ticket.
    pub fn from_overfetch(tickets: Vec<Ticket>, limit: usize) -> TicketPage {
        Self::scanned(tickets, limit, None)
    }

    /// [`from_overfetch`](Self::from_overfetch) for a search that may have stopped at its scan
    /// limit: the next page then continues after `stopped_at`, the last ticket examined.
    pub fn scanned(
        mut tickets: Vec<Ticket>,
        limit: usize,
        stopped_at: Option<TicketCursor>,
    ) -> TicketPage {
        if tickets.len() <= limit {
            return TicketPage {
                tickets,
                next: stopped_at,
            };
        }
        tickets.truncate(limit);
        let next = tickets.last().map(|t| TicketCursor {
            created_at: t.created_at,
            slug: t.slug.clone(),
        });
        TicketPage { tickets, next }
    }
}

/// A slice of one ticket's messages, always returned oldest first.
#[derive(Debug, Clone, Copy)]
pub struct MessageRange {
    /// Only messages with a greater id.
    pub after: Option<MessageId>,
    /// Only messages with a smaller id.
    pub before: Option<MessageId>,
    /// At most this many: the oldest ones of the range, or with `newest` the newest ones.
    pub limit: usize,
    pub newest: bool,
}

impl MessageRange {
    pub fn all() -> Self {
        Self {
            after: None,
            before: None,
            limit: usize::MAX,
            newest: false,
        }
    }

    pub fn after(id: Option<MessageId>) -> Self {
        Self {
            after: id,
            ..Self::all()
        }
    }

    pub fn newest(limit: usize) -> Self {
        Self {
            limit,
            newest: true,
            ..Self::all()
        }
    }
}

/// One change to a ticket, as the ticket's actor batches them. Serializable because, with
/// several nodes, a batch travels in the ticket's log before it reaches the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TicketWrite {
    Message(Message),
    /// The ticket's fields after a status change.
    Ticket(Ticket),
    ReadCursor {
        reader: Participant,
        up_to: MessageId,
    },
    /// An agent's internal note. Storing the same note (same id) twice keeps one copy.
    Note(Note),
    /// A timeline entry: who changed the ticket's fields, and how. Storing the same entry (same
    /// id) twice keeps one copy.
    Activity(Activity),
    /// A webhook delivery announcing a change of the batch: written with it, so the change is
    /// never acknowledged without its webhook (the outbox).
    Delivery(Delivery),
    /// The audit record of the batch's change ([`crate::audit`]): written with it, so the
    /// change never happens without its record.
    Audit(AuditRecord),
}

/// Projects: the tenants, with their settings.
#[async_trait]
pub trait ProjectStore: Send + Sync + 'static {
    /// Fails with [`StoreError::Conflict`] when the id is taken.
    async fn create_project(&self, project: &Project) -> StoreResult<()>;
    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>>;
    /// Replaces the project's settings; [`StoreError::NotFound`] if it does not exist.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn update_project(&self, project: &Project) -> StoreResult<()>;
    async fn list_projects(&self) -> StoreResult<Vec<Project>>;
}

/// Tickets, their messages and read cursors. A ticket is created here; every later change to
/// it goes through [`submit`](TicketStore::submit), from the ticket's actor, its only writer.
#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// Claims the ticket's slug within its project; [`StoreError::Conflict`] if it is taken.
    /// `messages` are its first messages, oldest first (the chat it was opened from), and
    /// `deliveries` the webhooks announcing it and them. All of it is one write: once the
    /// ticket can be read, so can every one of its messages, and a failed or refused creation
    /// leaves no ticket.
    async fn create_ticket_with_history(
        &self,
        ticket: &Ticket,
        messages: &[Message],
        deliveries: &[Delivery],
    ) -> StoreResult<()>;
    /// [`create_ticket_with_history`](TicketStore::create_ticket_with_history) of a ticket
    /// without messages.
    async fn create_ticket(&self, ticket: &Ticket, deliveries: &[Delivery]) -> StoreResult<()> {
        self.create_ticket_with_history(ticket, &[], deliveries)
            .await
    }
    async fn get_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Option<Ticket>>;
    /// Tickets newest first, those whose title contains `query.title` (ignoring case) when
    /// it is set.
    async fn list_tickets(
        &self,
        project: &ProjectId,
        query: &TicketQuery,
    ) -> StoreResult<TicketPage>;
    async fn list_messages(
        &self,
        project: &ProjectId,
        slug: &Slug,
        range: MessageRange,
    ) -> StoreResult<Vec<Message>>;
    async fn read_cursors(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<ReadCursor>>;
    /// The ticket's internal notes, oldest first.
    async fn list_notes(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Note>>;
    /// The ticket's timeline entries, oldest first.
    async fn list_activity(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Activity>>;

    /// Makes one ticket's writes durable, in order, and calls `done` with the outcome; no task
    /// waits for it, so a backend with a writer thread answers the actor from that thread.
    ///
    /// - A message stored twice (same id) keeps one copy.
    /// - A read cursor never moves backwards: an older id is ignored.
    /// - A [`TicketWrite::Ticket`] of a ticket that does not exist fails with
    ///   [`StoreError::NotFound`].
    /// - A [`TicketWrite::Ticket`] older than the stored row (an earlier `updated_at`) is
    ///   ignored, with the ticket's listing entry: a node that lost the ticket and wakes to
    ///   write a batch late cannot undo a newer change. The same `updated_at` writes again.
    fn submit(
        self: Arc<Self>,
        project: ProjectId,
        slug: Slug,
        writes: Vec<TicketWrite>,
        done: Done,
    );

    /// Erases the ticket and everything that carries its words ([`crate::ticket::Tickets::erase`]): its row
    /// and listing entries, messages, notes, timeline, read cursors, the transcript of the chat
    /// session that opened it, the webhook deliveries about it, and the outbox's emails about
    /// it ([`Email::ticket`]), sent or not. Whether the ticket's row was
    /// there. Idempotent, and complete even after an earlier call stopped halfway: what is
    /// left of the ticket is found by its slug, not through its row. Returns once the rows are
    /// gone from every read and, where the backend can, from its files (see
    /// `docs/operations.md`, Data protection). The caller has stopped every writer of the
    /// ticket first.
    async fn erase_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<bool>;
    /// Erases several tickets of the project as [`erase_ticket`](TicketStore::erase_ticket)
    /// does each, so that a backend which removes erased words from its files does that once
    /// for all of them (a contact's erasure). How many of the tickets' rows were there.
    async fn erase_tickets(&self, project: &ProjectId, slugs: &[Slug]) -> StoreResult<usize> {
        let mut erased = 0;
        for slug in slugs {
            erased += usize::from(self.erase_ticket(project, slug).await?);
        }
        Ok(erased)
    }
    /// Notes that the ticket is being erased, before any of it is, so that a restart finishes
    /// the erasure ([`pending_erasures`](TicketStore::pending_erasures)). Writing it again
    /// keeps one.
    async fn put_erasure(&self, erasure: &Erasure) -> StoreResult<()>;
    /// Forgets an erasure once done; nothing happens if there is none.
    async fn delete_erasure(&self, project: &ProjectId, slug: &Slug) -> StoreResult<()>;
    /// Erasures begun and not finished, of every project, in no particular order.
    async fn pending_erasures(&self) -> StoreResult<Vec<Erasure>>;
}

/// A ticket erasure that has begun: the intent written before any of the ticket is erased.
/// Names the ticket only, never its content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Erasure {
    pub project_id: ProjectId,
    pub slug: Slug,
    pub requested_at: DateTime<Utc>,
}

/// Chat transcripts: the turns of each anonymous session with the assistant.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Appends turns to a chat session's transcript. Storing a turn again (same id) keeps one copy.
    async fn append_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        turns: &[ChatTurn],
    ) -> StoreResult<()>;
    /// The newest `limit` turns of a session's transcript, oldest first.
    async fn list_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        limit: usize,
    ) -> StoreResult<Vec<ChatTurn>>;
    /// Tokens and tickets of a session's whole transcript.
    async fn chat_session_usage(
        &self,
        project: &ProjectId,
        session: &str,
    ) -> StoreResult<ChatUsage>;
    /// One turn of a session's transcript, `None` if that session has no such turn.
    async fn chat_turn(
        &self,
        project: &ProjectId,
        session: &str,
        id: MessageId,
    ) -> StoreResult<Option<ChatTurn>>;
    /// Creates or replaces a session's conversation row, found by its `started_at` (which
    /// never changes for a session) and its session.
    async fn put_chat_conversation(
        &self,
        project: &ProjectId,
        conversation: &ChatConversation,
    ) -> StoreResult<()>;
    /// Counts the project's conversations that started in `[from, to)` by their outcome at
    /// `now` (see [`ChatConversation::outcome`]), reading the rows one page at a time rather
    /// than all at once.
    async fn count_chat_outcomes(
        &self,
        project: &ProjectId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        ends_after: chrono::Duration,
    ) -> StoreResult<OutcomeCounts>;
}

/// Knowledge-base articles.
#[async_trait]
pub trait KbStore: Send + Sync + 'static {
    /// Creates or replaces a knowledge-base article.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn put_article(&self, article: &Article) -> StoreResult<()>;
    /// [`StoreError::NotFound`] if there is no such article.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn delete_article(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()>;
    /// Every article of a project, in no particular order.
    async fn list_articles(&self, project: &ProjectId) -> StoreResult<Vec<Article>>;
}

/// The questions the assistant could not answer, per project ([`crate::unanswered`]).
#[async_trait]
pub trait UnansweredStore: Send + Sync + 'static {
    /// Counts one more asking of a question: a new entry, or one more on the entry with its
    /// id. A project keeps [`MAX_PER_PROJECT`](crate::unanswered::MAX_PER_PROJECT) entries at
    /// most: a new one beyond that drops those asked least recently. Askings of one question
    /// recorded at the same moment through different nodes may count as one.
    async fn record_unanswered(&self, project: &ProjectId, asked: &Asked) -> StoreResult<()>;
    /// The project's entries, most asked first ([`crate::unanswered::sort`]), `limit` at most.
    async fn list_unanswered(
        &self,
        project: &ProjectId,
        limit: usize,
    ) -> StoreResult<Vec<UnansweredQuestion>>;
    /// Removes an entry (an article now answers it); [`StoreError::NotFound`] if there is none.
    /// Asked again later, the question starts a new entry.
    async fn dismiss_unanswered(&self, project: &ProjectId, id: &str) -> StoreResult<()>;
}

/// Webhook endpoints, and the deliveries owed to them.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Creates an endpoint, unless its project has `max` endpoints already:
    /// [`StoreError::Conflict`] then. Counting and inserting are one step, so creates racing on
    /// one node or several never leave a project more than `max`.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn create_endpoint(&self, endpoint: &Endpoint, max: usize) -> StoreResult<()>;
    /// Replaces an endpoint; [`StoreError::NotFound`] if there is no such endpoint (it was
    /// deleted meanwhile: a change never brings one back, which would also pass the cap).
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn update_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()>;
    /// [`StoreError::NotFound`] if there is no such endpoint. Its deliveries stay, as a log.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn delete_endpoint(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()>;
    async fn list_endpoints(&self, project: &ProjectId) -> StoreResult<Vec<Endpoint>>;
    /// Every project's endpoints.
    async fn all_endpoints(&self) -> StoreResult<Vec<Endpoint>>;
    /// Creates or replaces a delivery. `was_due` is when it was due before this write (`None`
    /// for a new one), so the store can find it by its new due time instead. An update
    /// (`was_due` given) of a delivery that announces a ticket ([`Delivery::ticket`]) no
    /// longer stored removes the delivery instead: an attempt under way while the ticket was
    /// erased writes nothing back (issue 29), and an announcement of a ticket that never came
    /// leaves the log.
    async fn put_delivery(
        &self,
        delivery: &Delivery,
        was_due: Option<DateTime<Utc>>,
    ) -> StoreResult<()>;
    /// Deliveries due at `now`, soonest first, `limit` at most.
    async fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Delivery>>;
    /// An endpoint's deliveries, newest first, `limit` at most.
    async fn list_deliveries(
        &self,
        project: &ProjectId,
        endpoint: uuid::Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>>;
    async fn get_delivery(
        &self,
        project: &ProjectId,
        endpoint: uuid::Uuid,
        id: &str,
    ) -> StoreResult<Option<Delivery>>;
    /// Deletes up to `limit` deliveries made before `before` (long settled: the log keeps
    /// [`crate::webhook::LOG_RETENTION`]), with their due entries; how many it deleted. A
    /// backend whose rows expire on their own (CQL, by TTL from `created_at`) deletes none and
    /// never returns such a row.
    async fn prune_deliveries(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<usize>;
    /// Claims the attempt of `delivery` that is due at its `next_attempt_at`, until `until`, so
    /// that of several dispatchers on one store only one sends it. False if another claim holds
    /// it, or if the delivery has moved on since it was read (another dispatcher tried it).
    /// Writing the delivery ([`WebhookStore::put_delivery`]) ends the claim.
    async fn claim_delivery(
        &self,
        delivery: &Delivery,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;
}

/// The email outbox ([`crate::email`]).
#[async_trait]
pub trait EmailStore: Send + Sync + 'static {
    /// Stores an invitation or reset link ([`MemberStore::put_member_link`]) with the email
    /// that carries it, in one durable write: neither is stored without the other. Audited:
    /// the pending record goes in the same write.
    async fn put_member_link_with_email(&self, link: &MemberLink, email: &Email)
        -> StoreResult<()>;
    /// Creates or replaces an email. `was_due` is when it was due before this write (`None`
    /// for a new one), so the store can find it by its new due time instead. Writing it ends
    /// any claim on it.
    ///
    /// An email about a ticket ([`Email::ticket`]) is made by
    /// [`create_email`](EmailStore::create_email) or
    /// [`put_visitor_mail`](EmailStore::put_visitor_mail) and only replaced here: if it is no
    /// longer stored (its ticket was erased, by [`TicketStore::erase_ticket`]), nothing is
    /// written and this fails with [`StoreError::NotFound`], so an attempt under way during
    /// the erasure never writes the email back.
    async fn put_email(&self, email: &Email, was_due: Option<DateTime<Utc>>) -> StoreResult<()>;
    /// The project's emails newest first (by when they were made, then id), as
    /// [`EmailPage::of`](crate::email::EmailPage::of) pages them.
    async fn list_emails(
        &self,
        project: &ProjectId,
        query: &crate::email::EmailQuery,
    ) -> StoreResult<crate::email::EmailPage>;
    /// Emails due at `now`, soonest first, `limit` at most.
    async fn due_emails(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Email>>;
    async fn get_email(&self, id: &str) -> StoreResult<Option<Email>>;
    /// Claims the attempt of `email` due at its `next_attempt_at`, until `until`, so that of
    /// several senders on one store only one sends it. False if another claim holds it, or if
    /// the email has moved on since it was read.
    async fn claim_email(
        &self,
        email: &Email,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// A ticket's email state towards its visitor ([`crate::visitor_mail`]).
    async fn get_visitor_mail(
        &self,
        project: &ProjectId,
        slug: &Slug,
    ) -> StoreResult<Option<VisitorMail>>;
    /// Creates or replaces a ticket's visitor-mail record, with `email` (the burst's email) in
    /// the same durable write when there is one: neither is stored without the other. The
    /// email is left out if its ticket is no longer stored (erased while it was composed).
    /// `was_due` is when the record was due before this write, so the store finds it by its
    /// new due time instead.
    async fn put_visitor_mail(
        &self,
        mail: &VisitorMail,
        was_due: Option<DateTime<Utc>>,
        email: Option<&Email>,
    ) -> StoreResult<()>;
    /// Visitor-mail records due at `now`, soonest first, `limit` at most.
    async fn due_visitor_mails(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<VisitorMail>>;

    /// Stores an email whose id is fixed by what it is about ([`crate::agent_mail`]) unless
    /// one with its id is stored already: false then, and the stored one is left as it is, so
    /// an email already sent is never queued again. Checking and inserting are one step,
    /// across nodes too. False as well, storing nothing, for an email about a ticket that is
    /// no longer stored (erased while the email was composed).
    async fn create_email(&self, email: &Email) -> StoreResult<bool>;

    /// A member's email switches in a project ([`crate::agent_mail`]); `None` until the member
    /// first changes them.
    async fn get_notification_prefs(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
    ) -> StoreResult<Option<NotificationPrefs>>;
    /// Creates or replaces a member's switches.
    async fn put_notification_prefs(&self, prefs: &NotificationPrefs) -> StoreResult<()>;
    /// Every stored member's switches in a project, in no particular order.
    async fn list_notification_prefs(
        &self,
        project: &ProjectId,
    ) -> StoreResult<Vec<NotificationPrefs>>;
}

/// A project's members and their signed-in sessions ([`crate::member`]).
#[async_trait]
pub trait MemberStore: Send + Sync + 'static {
    /// Adds a member; [`StoreError::Conflict`] if the project has a member with this id or
    /// this email already. Checking and inserting are one step, across nodes too.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn create_member(&self, member: &Member) -> StoreResult<()>;
    /// Replaces a member's row; [`StoreError::NotFound`] if there is none. The email never
    /// changes: the stored one is kept.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn update_member(&self, member: &Member) -> StoreResult<()>;
    async fn get_member(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<Option<Member>>;
    /// Stores a new invitation or reset link. Its id is the digest of 256 random bits, so it
    /// is new; a backend whose rows expire on their own (CQL) keeps it until its `expires_at`.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn put_member_link(&self, link: &MemberLink) -> StoreResult<()>;
    async fn get_member_link(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> StoreResult<Option<MemberLink>>;
    /// Every link of the project, both kinds, in no particular order (expired ones included
    /// until removed).
    async fn list_member_links(&self, project: &ProjectId) -> StoreResult<Vec<MemberLink>>;
    /// Removes a link; [`StoreError::NotFound`] if there is none. Of two deletes of one link,
    /// on one node or several, exactly one succeeds: using a link is deleting it, so a link
    /// is used once.
    /// Audited: carries the pending record, kept only if the link was there.
    async fn delete_member_link(&self, project: &ProjectId, id: &str) -> StoreResult<()>;
    /// The member with this normalised email.
    async fn member_by_email(
        &self,
        project: &ProjectId,
        email: &str,
    ) -> StoreResult<Option<Member>>;
    /// Every member of the project, in no particular order.
    async fn list_members(&self, project: &ProjectId) -> StoreResult<Vec<Member>>;
    /// Creates or replaces a session (a new one at sign-in; its `last_seen_at` moved on later).
    /// A backend whose rows expire on their own (CQL) keeps it until its `expires_at`.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn put_member_session(&self, session: &MemberSession) -> StoreResult<()>;
    async fn get_member_session(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
        id: &str,
    ) -> StoreResult<Option<MemberSession>>;
    /// A member's sessions, in no particular order (expired ones included until removed).
    async fn list_member_sessions(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
    ) -> StoreResult<Vec<MemberSession>>;
    /// Ends one session; [`StoreError::NotFound`] if the member has no such session.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn delete_member_session(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
        id: &str,
    ) -> StoreResult<()>;
    /// Ends every session of a member (deactivation, a new password); how many there were.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn delete_member_sessions(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
    ) -> StoreResult<usize>;
    /// Stores a new personal API token (its id is fresh); [`StoreError::Conflict`] if the
    /// project has a token with this id.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn create_api_token(&self, token: &ApiToken) -> StoreResult<()>;
    async fn get_api_token(
        &self,
        project: &ProjectId,
        id: uuid::Uuid,
    ) -> StoreResult<Option<ApiToken>>;
    /// Every token of the project (every member's), in no particular order.
    async fn list_api_tokens(&self, project: &ProjectId) -> StoreResult<Vec<ApiToken>>;
    /// Notes a token's use; [`StoreError::NotFound`] if it is gone. Never brings back a
    /// revoked token, even racing its revocation.
    async fn touch_api_token(
        &self,
        project: &ProjectId,
        id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Revokes a token; [`StoreError::NotFound`] if there is none.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn delete_api_token(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()>;
    /// A member's second factor, if they have one (on, or waiting for its first code).
    async fn get_member_totp(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
    ) -> StoreResult<Option<MemberTotp>>;
    /// Writes a member's second factor if the stored one is still the version `expected`
    /// names (`None`: the member has none); [`StoreError::Conflict`] otherwise. Checking and
    /// writing are one step, across nodes too: of two writes that read one version, one lands.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn put_member_totp(
        &self,
        totp: &MemberTotp,
        expected: Option<uuid::Uuid>,
    ) -> StoreResult<()>;
    /// Removes a member's second factor if it is still version `expected`;
    /// [`StoreError::NotFound`] if there is none, [`StoreError::Conflict`] if it changed.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn delete_member_totp(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
        expected: uuid::Uuid,
    ) -> StoreResult<()>;
}

/// Canned replies ([`crate::canned`]), per project.
#[async_trait]
pub trait CannedStore: Send + Sync + 'static {
    /// Creates a reply, unless its project has `max` already ([`CannedConflict::Full`]) or
    /// another of its replies has the same shortcut ([`CannedConflict::ShortcutTaken`]).
    /// Checking and inserting are one step, so creates racing on one node or several never
    /// pass the cap or share a shortcut.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn create_canned_reply(
        &self,
        reply: &CannedReply,
        max: usize,
    ) -> StoreResult<Result<(), CannedConflict>>;
    /// Replaces a reply; [`StoreError::NotFound`] if there is no such reply (deleted
    /// meanwhile: a change never brings one back), [`CannedConflict::ShortcutTaken`] if
    /// another of the project's replies has its new shortcut.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn update_canned_reply(
        &self,
        reply: &CannedReply,
    ) -> StoreResult<Result<(), CannedConflict>>;
    /// [`StoreError::NotFound`] if there is no such reply.
    /// Audited: carries the pending record ([`crate::audit::recorded`]).
    async fn delete_canned_reply(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()>;
    /// The project's replies, in no particular order.
    async fn list_canned_replies(&self, project: &ProjectId) -> StoreResult<Vec<CannedReply>>;
}

/// A project's contacts, its known visitors ([`crate::contact`]).
#[async_trait]
pub trait ContactStore: Send + Sync + 'static {
    /// Creates or replaces a contact (found by its project and id). Of two nodes writing one
    /// contact at once, the later write stands whole.
    async fn put_contact(&self, contact: &Contact) -> StoreResult<()>;
    async fn get_contact(
        &self,
        project: &ProjectId,
        id: uuid::Uuid,
    ) -> StoreResult<Option<Contact>>;
    /// The project's contacts in id order ([`crate::contact::order_key`]), as
    /// [`ContactQuery::page`] pages them.
    async fn list_contacts(
        &self,
        project: &ProjectId,
        query: &ContactQuery,
    ) -> StoreResult<ContactPage>;
    /// The tickets opened by a contact (those whose
    /// [`contact`](crate::domain::Ticket::contact) names it), newest first, `limit` at most.
    /// A ticket is among them as soon as it can be read.
    async fn contact_tickets(
        &self,
        project: &ProjectId,
        contact: uuid::Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Ticket>>;
    /// Erases the contact's row and what is left of its ticket index
    /// ([`contact_tickets`](ContactStore::contact_tickets)); the tickets themselves are erased
    /// before, through [`TicketStore::erase_tickets`]. Whether the contact's row was there.
    /// Idempotent. Returns once the row is gone from every read and, where the backend can,
    /// from its files (`docs/operations.md`, Data protection).
    async fn erase_contact(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<bool>;
    /// Notes that the contact is being erased, before any of it is, so that a restart
    /// finishes the erasure. Writing it again keeps one.
    async fn put_contact_erasure(&self, erasure: &ContactErasure) -> StoreResult<()>;
    /// Forgets a contact erasure once done; nothing happens if there is none.
    async fn delete_contact_erasure(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()>;
    /// Contact erasures begun and not finished, of every project, in no particular order.
    async fn pending_contact_erasures(&self) -> StoreResult<Vec<ContactErasure>>;
}

/// Replies by email that were posted ([`crate::inbound_mail`]).
#[async_trait]
pub trait InboundMailStore: Send + Sync + 'static {
    /// Records that a mail was posted; a mail with the same project, ticket and key is
    /// replaced (a second record of one mail names the same message).
    async fn put_inbound_mail(&self, mail: &InboundMail) -> StoreResult<()>;
    /// The record of the mail `key` on the ticket, if it was posted there.
    async fn get_inbound_mail(
        &self,
        project: &ProjectId,
        slug: &Slug,
        key: &str,
    ) -> StoreResult<Option<InboundMail>>;
}

/// The audit trail ([`crate::audit`]). Records of changes are written by the change's own
/// write (see [`crate::audit::recorded`]): the write methods of the other stores marked
/// "audited" take the pending record and make it part of the same durable write.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Writes a record of an event that changes nothing else (a failed sign-in).
    async fn record_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// The project's records newest first, as [`AuditPage::scan`] pages them.
    async fn list_audit(&self, project: &ProjectId, query: &AuditQuery) -> StoreResult<AuditPage>;
    /// Deletes up to `limit` records older than `before`, how many it deleted. A backend
    /// whose rows expire on their own (CQL, by TTL) deletes none and never returns such a row.
    async fn prune_audit(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<usize>;
}

/// What refuses saving `reply` beside the replies stored now (`stored`, of any project, the
/// reply's own earlier version among them or not): another of its project's replies with its
/// shortcut, or, for a new reply (`max` given), a project already at `max`.
pub fn canned_conflict(
    reply: &CannedReply,
    stored: &[CannedReply],
    max: Option<usize>,
) -> Option<CannedConflict> {
    let mine: Vec<&CannedReply> = stored
        .iter()
        .filter(|o| o.project_id == reply.project_id && o.id != reply.id)
        .collect();
    if max.is_some_and(|max| mine.len() >= max) {
        return Some(CannedConflict::Full);
    }
    mine.iter()
        .any(|o| o.shortcut == reply.shortcut)
        .then_some(CannedConflict::ShortcutTaken)
}

/// Claims of deliveries in one process (the embedded and memory stores): the delivery's id and
/// when its claim ends. Claims need not outlive the process, whose attempts end with it.
#[derive(Default)]
pub struct Claims(Mutex<HashMap<String, DateTime<Utc>>>);

impl Claims {
    /// Claims `delivery` until `until` if no claim holds it at `now` and `current` (the stored
    /// delivery) is still due when `delivery` says.
    pub fn claim(
        &self,
        delivery: &Delivery,
        current: Option<&Delivery>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> bool {
        let still_due = current.is_some_and(|c| c.next_attempt_at == delivery.next_attempt_at);
        self.claim_id(&delivery.id, still_due, now, until)
    }

    /// Claims the row `id` until `until` if no claim holds it at `now` and it is `still_due`.
    pub fn claim_id(
        &self,
        id: &str,
        still_due: bool,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> bool {
        let mut claims = self.0.lock().unwrap_or_else(|p| p.into_inner());
        claims.retain(|_, ends| *ends > now);
        if !still_due || claims.contains_key(id) {
            return false;
        }
        claims.insert(id.to_owned(), until);
        true
    }

    pub fn release(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// A whole backend: every aggregate's store in one. Each part of the system is handed only the
/// part it uses (an `Arc<dyn Store>` converts to an `Arc<dyn TicketStore>`, and so on).
#[async_trait]
pub trait Store:
    ProjectStore
    + TicketStore
    + ChatStore
    + KbStore
    + WebhookStore
    + UnansweredStore
    + MemberStore
    + CannedStore
    + AuditStore
    + EmailStore
    + ContactStore
    + InboundMailStore
{
    /// A short name for logs and metrics: `embedded`, `scylla`, `memory`.
    fn backend(&self) -> &'static str;
    /// Makes everything written so far durable, for a graceful shutdown.
    async fn flush(&self) -> StoreResult<()>;
}

/// Submits a ticket's writes and waits for their outcome: for callers that have a task to
/// wait in anyway (tests, tools). Ticket actors use [`TicketStore::submit`] directly.
pub async fn write(
    store: Arc<dyn TicketStore>,
    project: &ProjectId,
    slug: &Slug,
    writes: Vec<TicketWrite>,
) -> StoreResult<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    store.submit(
        project.clone(),
        slug.clone(),
        writes,
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    rx.await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("the store dropped a write".into())))
}

/// Times one storage call for `/metrics`; backends wrap their calls in it.
pub async fn timed<T>(
    backend: &'static str,
    operation: &'static str,
    call: impl std::future::Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    let started = std::time::Instant::now();
    let result = call.await;
    crate::telemetry::store_call(backend, operation, started, result.is_ok());
    result
}

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
