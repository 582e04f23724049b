//! The email outbox: emails the server owes someone (an invitation, a password reset), each
//! stored in the same durable write as the change that causes it, then sent by the server's
//! sender (`src/email.rs`) with retries, and marked sent.
//!
//! An email's id is fixed when it is made and becomes its `Message-ID`, so an attempt repeated
//! after a crash between the SMTP server's acceptance and the mark (the one case where an
//! email can go out twice) carries the same `Message-ID`, which mail clients and servers use to
//! drop the copy. A stored email holds its body only until it is settled: once sent or given up
//! the body is cleared, so the links it carried do not stay at rest.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ProjectId;

/// How long a settled email stays stored (CQL rows expire then; the others keep it).
pub const RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Why an email is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    Invitation,
    PasswordReset,
    /// Agents' replies the visitor has not read ([`crate::visitor_mail`]).
    VisitorReply,
    /// A new ticket, to a member who asked for them ([`crate::agent_mail`]).
    AgentNewTicket,
    /// A ticket someone else assigned to the member.
    AgentAssigned,
    /// The visitor wrote on a ticket assigned to the member while they were away.
    AgentVisitorReply,
}

/// Where an email stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The SMTP server accepted it.
    Sent,
    /// Every attempt failed, or the server refused it for good.
    Failed,
}

/// One email owed to one address, with what became of its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// `eml_` and hex: the same on every attempt, and the local part of its `Message-ID`.
    pub id: String,
    pub project_id: ProjectId,
    pub kind: EmailKind,
    pub to: String,
    pub subject: String,
    /// The plain-text part; empty once settled.
    pub text: String,
    /// The HTML part, every value in it escaped; empty once settled.
    pub html: String,
    /// The `Message-ID` of the email this one follows (`In-Reply-To` and `References`), so
    /// clients thread them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// Headers of its own beyond the standard ones, as name and value (`List-Unsubscribe`);
    /// cleared once settled, as they may carry a signed link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    pub status: EmailStatus,
    pub attempts: u32,
    /// When it is due; `None` once settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

impl Email {
    /// A new email, due at once.
    pub fn new(
        project: &ProjectId,
        kind: EmailKind,
        to: &str,
        subject: String,
        text: String,
        html: String,
        now: DateTime<Utc>,
    ) -> Self {
        let micros = u64::try_from(now.timestamp_micros()).unwrap_or(0);
        Email {
            id: format!("eml_{micros:016x}{:016x}", rand::random::<u64>()),
            project_id: project.clone(),
            kind,
            to: to.to_owned(),
            subject,
            text,
            html,
            thread: None,
            headers: Vec::new(),
            status: EmailStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            last_error: None,
            created_at: now,
            sent_at: None,
        }
    }

    /// The email as settled: its body cleared, no longer due.
    pub fn settled(mut self, status: EmailStatus, at: DateTime<Utc>) -> Self {
        self.status = status;
        self.next_attempt_at = None;
        self.text.clear();
        self.html.clear();
        self.headers.clear();
        if status == EmailStatus::Sent {
            self.sent_at = Some(at);
        }
        self
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Rung when emails are written, so the sender looks for them without waiting for its next
/// round.
#[derive(Clone, Default)]
pub struct Outbox {
    made: Arc<tokio::sync::Notify>,
}

impl Outbox {
    pub fn wake(&self) {
        self.made.notify_one();
    }

    pub async fn made(&self) {
        self.made.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_email_keeps_no_body_and_is_not_due() {
        let p = ProjectId::parse("acme").unwrap();
        let now = Utc::now();
        let e = Email::new(
            &p,
            EmailKind::Invitation,
            "a@example.com",
            "s".into(),
            "t".into(),
            "<p>h</p>".into(),
            now,
        );
        assert!(e.id.starts_with("eml_") && e.id.len() == 36);
        assert_eq!(e.next_attempt_at, Some(now));
        let sent = e.settled(EmailStatus::Sent, now);
        assert!(sent.text.is_empty() && sent.html.is_empty());
        assert_eq!(sent.next_attempt_at, None);
        assert_eq!(sent.sent_at, Some(now));
        assert_eq!(
            escape_html("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
