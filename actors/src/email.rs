//! The email outbox: emails the server owes someone (an invitation, a password reset), each
//! stored in the same durable write as the change that causes it, then sent by the server's
//! sender (`src/email.rs`) with retries, and marked sent.
//!
//! An email's id is fixed when it is made and becomes its `Message-ID`, so an attempt repeated
//! after a crash between the SMTP server's acceptance and the mark (the one case where an
//! email can go out twice) carries the same `Message-ID`, which mail clients and servers use to
//! drop the copy. A stored email holds its body only until it is settled: once sent or given up
//! the body is cleared, so the links it carried do not stay at rest.
//!
//! An email about a ticket names it ([`Email::ticket`]): the ticket's erasure erases its emails,
//! sent or not, as their subjects and bodies quote it. Owners and admins list the outbox
//! (`GET /v1/projects/{projectId}/emails`) newest first, as [`EmailPage`]s.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ProjectId, Slug};

/// How long a settled email stays stored (CQL rows expire then; the others keep it).
pub const RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Why an email is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The SMTP server accepted it.
    Sent,
    /// The mail server refused it for good, or it could not be built.
    Failed,
    /// Every retry failed: no attempt is left.
    GivenUp,
}

/// One email owed to one address, with what became of its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    /// `eml_` and hex: the same on every attempt, and the local part of its `Message-ID`.
    pub id: String,
    pub project_id: ProjectId,
    /// The ticket it is about, erased with it; `None` for an email about no ticket (and for
    /// emails stored before emails named their ticket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Slug>,
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
            ticket: None,
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

/// A position in a project's outbox, newest first: an email's making and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EmailCursor {
    /// Milliseconds, as every backend orders by.
    pub at_ms: i64,
    pub id: String,
}

impl EmailCursor {
    pub fn of(e: &Email) -> EmailCursor {
        EmailCursor {
            at_ms: e.created_at.timestamp_millis(),
            id: e.id.clone(),
        }
    }

    /// `<millis>_<id>`, as the API hands it out.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at_ms, self.id)
    }

    pub fn decode(raw: &str) -> Option<EmailCursor> {
        let (ms, id) = raw.split_once('_')?;
        let valid = id.len() <= 64
            && id.starts_with("eml_")
            && id[4..].bytes().all(|b| b.is_ascii_alphanumeric());
        let at_ms = ms.parse().ok()?;
        valid.then(|| EmailCursor {
            at_ms,
            id: id.to_owned(),
        })
    }
}

/// The most emails one page holds.
pub const MAX_PAGE: usize = 100;

/// Which of a project's emails to list.
#[derive(Debug, Clone, Default)]
pub struct EmailQuery {
    /// Only the emails about this ticket.
    pub ticket: Option<Slug>,
    /// Continue after this position (exclusive), as returned in [`EmailPage::next`].
    pub after: Option<EmailCursor>,
    /// Page size; backends clamp it to 1..=[`MAX_PAGE`].
    pub limit: usize,
}

impl EmailQuery {
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }

    /// Whether `e` belongs in the listing, wherever the page starts.
    pub fn matches(&self, project: &ProjectId, e: &Email) -> bool {
        &e.project_id == project
            && self
                .ticket
                .as_ref()
                .is_none_or(|t| e.ticket.as_ref() == Some(t))
            && self.after.as_ref().is_none_or(|c| EmailCursor::of(e) < *c)
    }
}

/// A page of a project's emails, newest first.
#[derive(Debug, Clone, Default)]
pub struct EmailPage {
    pub emails: Vec<Email>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<EmailCursor>,
}

impl EmailPage {
    /// The page of `query` from emails of the listing, newest first, already after its cursor:
    /// one more than a page tells there is a next.
    pub fn of(mut emails: Vec<Email>, query: &EmailQuery) -> EmailPage {
        let size = query.page_size();
        let more = emails.len() > size;
        emails.truncate(size);
        EmailPage {
            next: more.then(|| emails.last().map(EmailCursor::of)).flatten(),
            emails,
        }
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
    fn an_email_stored_before_emails_named_their_ticket_reads_back_without_one() {
        let stored = r#"{"id":"eml_1","project_id":"acme","kind":"visitor_reply","to":"a@example.com","subject":"s","text":"","html":"","status":"failed","attempts":3,"last_error":"x","created_at":"2026-12-01T10:00:00Z"}"#;
        let e: Email = serde_json::from_str(stored).unwrap();
        assert_eq!(e.ticket, None);
        assert_eq!(e.status, EmailStatus::Failed);
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("ticket"), "{json}");
        let mut about = e;
        about.ticket = Some(Slug::parse("brave-lynx-001").unwrap());
        about.status = EmailStatus::GivenUp;
        let json = serde_json::to_string(&about).unwrap();
        assert!(
            json.contains(r#""ticket":"brave-lynx-001""#)
                && json.contains(r#""status":"given_up""#)
        );
        assert_eq!(serde_json::from_str::<Email>(&json).unwrap(), about);
    }

    #[test]
    fn a_cursor_reads_back_and_refuses_what_is_not_one() {
        let c = EmailCursor {
            at_ms: 1_796_000_000_000,
            id: "eml_00ab".into(),
        };
        assert_eq!(EmailCursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "12",
            "x_eml_1",
            "12_eml_!",
            "12_other",
            "99999999999999999999_eml_1",
        ] {
            assert_eq!(EmailCursor::decode(bad), None, "{bad}");
        }
    }

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
