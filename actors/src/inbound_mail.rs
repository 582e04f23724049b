//! Replies by email that were posted (issue 28): which delivered mail became which message, so
//! the same mail delivered again (a mail server retrying, a forward sent twice) is answered
//! with the message it made instead of posting it twice. The storage port keeps them
//! ([`crate::store::InboundMailStore`]); the server's inbound endpoint reads and writes them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ProjectId, Slug};
use crate::message_id::MessageId;

/// A delivered mail, posted on a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMail {
    pub project_id: ProjectId,
    pub slug: Slug,
    /// Names the mail: a digest of its `Message-ID` (or of the whole message without one),
    /// made by the server's inbound endpoint.
    pub key: String,
    /// The message it was posted as.
    pub message_id: MessageId,
    pub received_at: DateTime<Utc>,
}
