//! The outbox over HTTP (issues 28 and 29): `GET /v1/projects/{projectId}/emails`, for owners
//! and admins, lists the emails the server owes or sent, newest first, with what became of
//! them. It never shows an email's body or headers (they carry signed links), and shows why an
//! attempt failed only as [`crate::mailer::public_error`] words it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fleety_actors::domain::{Project, Slug};
use fleety_actors::email::{Email, EmailCursor, EmailKind, EmailQuery, EmailStatus, MAX_PAGE};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::reply::Response;

use super::error::{json, respond};
use super::{ApiError, Ctx};

/// Which emails to list, and which page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EmailListQuery {
    /// Only the emails about this ticket (its slug).
    #[param(pattern = "^([a-z]{1,16}-[a-z]{1,16}-[0-9]{3})?$")]
    ticket: Option<String>,
    /// Emails per page, 50 by default.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// Where to continue: the `next` of the page before.
    #[param(pattern = "^(-?[0-9]{1,18}_eml_[A-Za-z0-9]{1,60})?$")]
    cursor: Option<String>,
}

/// One email, without its body.
#[derive(Serialize, ToSchema)]
pub struct EmailView {
    /// `eml_` and hex; also the local part of its `Message-ID`.
    pub id: String,
    pub kind: EmailKind,
    /// The recipient's address.
    pub to: String,
    pub subject: String,
    /// The slug of the ticket it is about, if any.
    pub ticket: Option<String>,
    /// `pending` (waiting for its first or next attempt), `sent` (the mail server accepted
    /// it), `failed` (the mail server refused it for good) or `given_up` (every retry failed).
    pub status: EmailStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due; null once settled.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed, in general words with the SMTP code when there is one.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<Email> for EmailView {
    fn from(e: Email) -> Self {
        EmailView {
            id: e.id,
            kind: e.kind,
            to: e.to,
            subject: e.subject,
            ticket: e.ticket.map(|s| s.as_str().to_owned()),
            status: e.status,
            attempts: e.attempts,
            next_attempt_at: e.next_attempt_at,
            last_error: e.last_error.as_deref().map(crate::mailer::public_error),
            created_at: e.created_at,
            sent_at: e.sent_at,
        }
    }
}

/// A page of the outbox, newest first.
#[derive(Serialize, ToSchema)]
pub struct EmailList {
    /// Whether this server sends email (SMTP is configured). When it does not, nothing is
    /// written to the outbox, and an email left from a time it did stays `pending`.
    pub email_enabled: bool,
    pub emails: Vec<EmailView>,
    /// Pass as `cursor` for the next page; null when there is none.
    pub next: Option<String>,
}

fn parse(q: EmailListQuery) -> Result<EmailQuery, ApiError> {
    // A filter left empty (`?ticket=`, as a form sends it) filters nothing.
    let given = |v: Option<String>| v.filter(|v| !v.is_empty());
    let ticket = match given(q.ticket) {
        Some(raw) => Some(
            Slug::parse(&raw).map_err(|_| ApiError::bad_request("ticket is not a ticket slug"))?,
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = match given(q.cursor) {
        Some(raw) => Some(
            EmailCursor::decode(&raw)
                .ok_or_else(|| ApiError::bad_request("cursor is not valid"))?,
        ),
        None => None,
    };
    Ok(EmailQuery {
        ticket,
        after,
        limit,
    })
}

/// GET /v1/projects/{projectId}/emails
pub async fn list(project: Arc<Project>, ctx: Arc<Ctx>, query: EmailListQuery) -> Response {
    respond(
        async {
            let query = parse(query)?;
            let page = ctx.store.list_emails(&project.id, &query).await?;
            let list = EmailList {
                email_enabled: crate::mailer::enabled_for(&ctx.settings.email, &project.id),
                emails: page.emails.into_iter().map(EmailView::from).collect(),
                next: page.next.map(|c| c.encode()),
            };
            Ok(json(StatusCode::OK, &list))
        }
        .await,
    )
}
