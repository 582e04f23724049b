//! The storage port: everything the actors persist, behind one object-safe async trait.
//!
//! Backends live outside this crate (the embedded redb store and the CQL store in the `fleety`
//! crate). They are interchangeable because every one of them runs [`conformance`], the same
//! suite of behavioural tests.
//!
//! Contract common to all methods: a write has returned `Ok` only once it is durable, and a
//! read observes every write that returned before it started.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    Article, ChatTurn, ChatUsage, Message, Participant, Project, ProjectId, ReadCursor, Slug,
    Ticket, TicketStatus,
};
use crate::message_id::MessageId;

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

/// Receives the outcome of [`Store::submit`]. Called exactly once, on whichever thread learns
/// the outcome, so it must not block.
pub type Done = Box<dyn FnOnce(StoreResult<()>) + Send>;

/// Which tickets an agent's listing wants.
#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    pub status: Option<TicketStatus>,
    /// Continue after this position (exclusive), as returned in [`TicketPage::next`].
    pub after: Option<TicketCursor>,
    /// Page size; backends clamp it to 1..=100.
    pub limit: usize,
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

impl TicketPage {
    /// Backends read one ticket more than the page holds: if it is there, another page follows,
    /// and it starts after the page's last ticket.
    pub fn from_overfetch(mut tickets: Vec<Ticket>, limit: usize) -> TicketPage {
        let next = if tickets.len() > limit {
            tickets.truncate(limit);
            tickets.last().map(|t| TicketCursor {
                created_at: t.created_at,
                slug: t.slug.clone(),
            })
        } else {
            None
        };
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

/// One change to a ticket, as the ticket's actor batches them.
#[derive(Debug, Clone)]
pub enum TicketWrite {
    Message(Message),
    /// The ticket's fields after a status change.
    Ticket(Ticket),
    ReadCursor {
        reader: Participant,
        up_to: MessageId,
    },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and metrics: `embedded`, `scylla`.
    fn backend(&self) -> &'static str;

    /// Fails with [`StoreError::Conflict`] when the id is taken.
    async fn create_project(&self, project: &Project) -> StoreResult<()>;
    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>>;
    /// Replaces the project's settings; [`StoreError::NotFound`] if it does not exist.
    async fn update_project(&self, project: &Project) -> StoreResult<()>;
    async fn list_projects(&self) -> StoreResult<Vec<Project>>;

    /// Claims the ticket's slug within its project; [`StoreError::Conflict`] if it is taken.
    async fn create_ticket(&self, ticket: &Ticket) -> StoreResult<()>;
    async fn get_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Option<Ticket>>;
    /// Saves a changed status and `updated_at`; [`StoreError::NotFound`] if there is no such ticket.
    async fn update_ticket(&self, ticket: &Ticket) -> StoreResult<()>;
    /// Tickets newest first.
    async fn list_tickets(
        &self,
        project: &ProjectId,
        query: &TicketQuery,
    ) -> StoreResult<TicketPage>;

    /// Appends a message. Storing the same message (same id) twice keeps one copy.
    async fn append_message(
        &self,
        project: &ProjectId,
        slug: &Slug,
        message: &Message,
    ) -> StoreResult<()>;
    async fn list_messages(
        &self,
        project: &ProjectId,
        slug: &Slug,
        range: MessageRange,
    ) -> StoreResult<Vec<Message>>;

    /// Moves a reader's cursor. Cursors never move backwards: an older id is ignored.
    async fn set_read_cursor(
        &self,
        project: &ProjectId,
        slug: &Slug,
        reader: Participant,
        up_to: MessageId,
    ) -> StoreResult<()>;
    async fn read_cursors(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<ReadCursor>>;

    /// Applies one ticket's writes in order. Backends that can make them durable together
    /// (one transaction, one batch) should override this; the default applies them one by one.
    async fn apply(
        &self,
        project: &ProjectId,
        slug: &Slug,
        writes: &[TicketWrite],
    ) -> StoreResult<()> {
        for write in writes {
            match write {
                TicketWrite::Message(m) => self.append_message(project, slug, m).await?,
                TicketWrite::Ticket(t) => self.update_ticket(t).await?,
                TicketWrite::ReadCursor { reader, up_to } => {
                    self.set_read_cursor(project, slug, *reader, *up_to).await?
                }
            }
        }
        Ok(())
    }

    /// [`apply`](Store::apply) without a task waiting for it: `done` gets the outcome. A ticket
    /// actor hands its batches over this way, so a backend with its own writer thread can
    /// answer the actor straight from that thread, one task wake-up less per batch than a
    /// waiting task would cost. The default runs `apply` on a spawned task; call it from
    /// within the runtime.
    fn submit(
        self: Arc<Self>,
        project: ProjectId,
        slug: Slug,
        writes: Vec<TicketWrite>,
        done: Done,
    ) {
        tokio::spawn(async move { done(self.apply(&project, &slug, &writes).await) });
    }

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

    /// Creates or replaces a knowledge-base article.
    async fn put_article(&self, article: &Article) -> StoreResult<()>;
    /// [`StoreError::NotFound`] if there is no such article.
    async fn delete_article(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()>;
    /// Every article of a project, in no particular order.
    async fn list_articles(&self, project: &ProjectId) -> StoreResult<Vec<Article>>;

    /// Makes everything written so far durable, for a graceful shutdown.
    async fn flush(&self) -> StoreResult<()>;
}

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
