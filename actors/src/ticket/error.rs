//! What can go wrong when asking a ticket to do something, and how the registry's and the
//! store's failures become it.

use crate::registry::CallError;
use crate::store::StoreError;

/// What can go wrong when asking a ticket to do something. Shown to clients through the HTTP
/// front's error mapping; `Unavailable` and `Internal` details go to the log only.
/// Serializable because, with several nodes, it comes back from the node that owns the ticket.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum TicketError {
    #[error("ticket not found")]
    NotFound,
    #[error("ticket is closed")]
    Closed,
    /// The visitor rated the ticket before: a rating is given once.
    #[error("this ticket was rated already")]
    AlreadyRated,
    /// A rating is asked for once the ticket is solved (resolved or closed), not before.
    #[error("a ticket is rated once it is resolved")]
    NotResolved,
    /// The ticket's verified contact has an address: the visitor cannot replace it.
    #[error("replies go to the ticket's verified email address")]
    VerifiedEmail,
    #[error("ticket is busy, retry shortly")]
    Busy,
    /// A request with the same idempotency key is still being carried out.
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    /// The idempotency key was used before for a different message.
    #[error("this Idempotency-Key was used for a different message")]
    KeyReused,
    /// A subscriber asked to replay more messages than one socket may replay.
    #[error("too many missed messages to replay")]
    TooFarBehind,
    #[error("ticket unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// With several nodes: the ticket's actor runs on the named node.
    #[error("ticket is served by node {0}")]
    Elsewhere(String),
    /// With several nodes: the named node did not take the request (it is gone), so nothing
    /// was done.
    #[error("node {0} did not take the request")]
    Unreachable(String),
    /// With several nodes: another node took the ticket over before the request's write
    /// could be made, so nothing was done; the new owner can take it.
    #[error("the ticket moved to another node")]
    Moved,
}

impl From<CallError> for TicketError {
    fn from(e: CallError) -> Self {
        let cause = match e {
            CallError::Timeout => "ticket did not answer in time",
            CallError::Dropped => "ticket restarted while handling the request",
            CallError::KeptRestarting => "ticket kept restarting",
            CallError::Failed(e) => return TicketError::Internal(e),
        };
        TicketError::Unavailable(cause.into())
    }
}

impl From<StoreError> for TicketError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => TicketError::NotFound,
            StoreError::Unavailable(m) => TicketError::Unavailable(m),
            StoreError::Conflict => TicketError::Internal("unexpected conflict".into()),
            StoreError::Internal(m) => TicketError::Internal(m),
        }
    }
}
