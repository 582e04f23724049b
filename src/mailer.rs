//! Sending email: the SMTP transport built from the settings, the emails the server writes
//! (invitations, password resets), and the sender that delivers what the outbox holds.
//!
//! The outbox is the store (see `fleety_actors::email`): a change that owes an email was
//! written with it, so the sender only reads what is due, claims it (so that of several nodes
//! one sends it), sends it and writes the outcome: sent, retried later with backoff after a
//! temporary failure (a 4xx answer, a connection that failed), or failed for good after a
//! permanent one (5xx) or the last retry. An email is sent at least once: a crash after the
//! SMTP server accepted it and before the mark was written sends it again, with the same
//! `Message-ID`, which receiving servers and clients use to drop the copy.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fleety_actors::clock::Clock;
use fleety_actors::domain::ProjectId;
use fleety_actors::email::{escape_html, Email, EmailKind, EmailStatus, Outbox};
use fleety_actors::member::MemberLink;
use fleety_actors::store::{EmailStore, StoreResult};
use fleety_actors::webhook::RetrySchedule;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio_util::sync::CancellationToken;

use crate::config::{EmailSettings, HttpUrl, SmtpTls, SmtpUrl};

/// Emails read from the store per round.
const ROUND: usize = 32;
/// The longest the sender goes without looking at the store: it is woken at once for the
/// emails this node writes, so this bounds only how late it finds a retry that came due, or
/// an email another node (or this one before a restart) left.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The SMTP transport the settings describe.
pub fn transport(
    url: &SmtpUrl,
    timeout: Duration,
) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let params = || {
        TlsParameters::new(url.host.clone())
            .map_err(|e| anyhow::anyhow!("cannot set up TLS for {}: {e}", url.host))
    };
    let tls = match url.tls {
        SmtpTls::StartTls => Tls::Required(params()?),
        SmtpTls::Tls => Tls::Wrapper(params()?),
        SmtpTls::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.as_str())
        .port(url.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some((user, password)) = &url.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(builder.build())
}

/// Writes the emails that carry links, when email is on: the link and its email are one
/// durable write.
#[derive(Clone)]
pub struct Composer {
    store: Arc<dyn EmailStore>,
    public_url: String,
    outbox: Outbox,
}

impl Composer {
    /// `None` when email is off (no `smtp_url`).
    pub fn new(
        settings: &EmailSettings,
        store: Arc<dyn EmailStore>,
        outbox: Outbox,
    ) -> Option<Composer> {
        let public_url = settings
            .public_url
            .as_ref()
            .filter(|_| settings.enabled())?;
        Some(Composer {
            store,
            public_url: base(public_url),
            outbox,
        })
    }

    /// The absolute address of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// The email carrying an invitation or reset link to `link.email`.
    pub fn link_email(&self, link: &MemberLink, path: &str, now: DateTime<Utc>) -> Email {
        use fleety_actors::member::LinkKind;
        let url = self.url(path);
        let project = link.project_id.as_str();
        let hours = (link.expires_at - link.created_at).num_hours().max(1);
        let (kind, subject, lead, action) = match link.kind {
            LinkKind::Invitation => (
                EmailKind::Invitation,
                format!("You are invited to join {project} on Fleety"),
                format!(
                    "You have been invited to answer customers of {project} as {}.",
                    link.role.as_str()
                ),
                "Accept the invitation",
            ),
            LinkKind::PasswordReset => (
                EmailKind::PasswordReset,
                format!("Reset your Fleety password for {project}"),
                format!("Someone asked to reset the password of your account on {project}. If it was not you, ignore this email: nothing changes."),
                "Choose a new password",
            ),
        };
        let text =
            format!("{lead}\n\n{action}: {url}\n\nThe link works once, within {hours} hours.\n");
        let html = format!(
            "<!doctype html><html><body><p>{}</p><p><a href=\"{}\">{}</a></p><p>The link works once, within {hours} hours.</p></body></html>",
            escape_html(&lead),
            escape_html(&url),
            escape_html(action),
        );
        Email::new(
            &link.project_id,
            kind,
            &link.email,
            subject,
            text,
            html,
            now,
        )
    }

    /// Stores `link` with `email`, and wakes the sender.
    pub async fn put_link(&self, link: &MemberLink, email: &Email) -> StoreResult<()> {
        self.store.put_member_link_with_email(link, email).await?;
        self.outbox.wake();
        Ok(())
    }
}

/// The public URL without its trailing `/`, so paths join it as they are.
fn base(url: &HttpUrl) -> String {
    url.to_string().trim_end_matches('/').to_owned()
}

/// What one attempt came to.
enum Outcome {
    Sent,
    /// Worth trying again later.
    Temporary(String),
    /// Never worth trying again: the server refused it for good, or it cannot be built.
    Permanent(String),
}

/// Sends what the outbox holds, with retries.
pub struct Mailer {
    store: Arc<dyn EmailStore>,
    clock: Arc<dyn Clock>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Where the `Message-ID`s live: the `From` address's domain.
    domain: String,
    schedule: RetrySchedule,
    outbox: Outbox,
    /// How long a claim on an attempt lasts: the SMTP conversation and room to record it.
    claim_for: chrono::TimeDelta,
    /// Composes the visitors' due emails at the start of each round, once set.
    visitor: std::sync::OnceLock<Arc<crate::visitor_mail::VisitorMailer>>,
    /// Composes the agents' due visitor-reply emails at the start of each round, once set.
    agents: std::sync::OnceLock<Arc<crate::agent_mail::AgentMailer>>,
}

impl Mailer {
    /// `None` when email is off.
    pub fn new(
        settings: &EmailSettings,
        store: Arc<dyn EmailStore>,
        clock: Arc<dyn Clock>,
        outbox: Outbox,
    ) -> anyhow::Result<Option<Arc<Mailer>>> {
        let (Some(url), Some(from)) = (&settings.smtp_url, &settings.from) else {
            return Ok(None);
        };
        let claim_for = settings.timeout.saturating_add(Duration::from_secs(30));
        Ok(Some(Arc::new(Mailer {
            store,
            clock,
            transport: transport(url, settings.timeout)?,
            domain: from.domain().to_owned(),
            from: from.0.clone(),
            schedule: settings.retry_schedule.clone(),
            outbox,
            claim_for: chrono::TimeDelta::from_std(claim_for)
                .unwrap_or(chrono::TimeDelta::minutes(5)),
            visitor: std::sync::OnceLock::new(),
            agents: std::sync::OnceLock::new(),
        })))
    }

    /// The `Message-ID` of an email: its id at the `From` domain, the same on every attempt.
    pub fn message_id(&self, id: &str) -> String {
        format!("<{id}@{}>", self.domain)
    }

    /// The message as sent: both parts, its `Message-ID`, and the headers that thread it.
    pub fn message(&self, e: &Email) -> Result<Message, String> {
        let to: Mailbox =
            e.to.parse()
                .map_err(|_| "the recipient is not an email address".to_owned())?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(e.subject.clone())
            .date(e.created_at.into())
            .message_id(Some(self.message_id(&e.id)));
        if let Some(thread) = &e.thread {
            builder = builder
                .in_reply_to(thread.clone())
                .references(thread.clone());
        }
        // Every other header is the email's own list, so a new one (a `Reply-To`, say) is
        // added where the email is composed.
        for (name, value) in &e.headers {
            let name = HeaderName::new_from_ascii(name.clone())
                .map_err(|_| format!("not a header name: {name}"))?;
            builder = builder.raw_header(HeaderValue::new(name, value.clone()));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                e.text.clone(),
                e.html.clone(),
            ))
            .map_err(|e| format!("cannot build the message: {e}"))
    }

    /// Sends due emails until `shutdown`. An attempt under way then is abandoned: its claim
    /// runs out and it is sent again (with the same `Message-ID`).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!("email sender started");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = self.round() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = self.outbox.made() => {}
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    }

    /// Has each round compose the visitors' due emails first.
    pub fn compose_for_visitors(&self, visitor: Arc<crate::visitor_mail::VisitorMailer>) {
        let _ = self.visitor.set(visitor);
    }

    /// Has each round compose the agents' due visitor-reply emails first.
    pub fn compose_for_agents(&self, agents: Arc<crate::agent_mail::AgentMailer>) {
        let _ = self.agents.set(agents);
    }

    /// Sends what is due now, one email at a time.
    async fn round(&self) {
        if let Some(visitor) = self.visitor.get() {
            visitor.compose_due().await;
        }
        if let Some(agents) = self.agents.get() {
            agents.compose_due().await;
        }
        loop {
            let due = match self.store.due_emails(self.clock.now(), ROUND).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "reading due emails failed");
                    return;
                }
            };
            let full = due.len() == ROUND;
            for e in due {
                self.attempt(e).await;
            }
            if !full {
                return;
            }
        }
    }

    async fn attempt(&self, e: Email) {
        let now = self.clock.now();
        match self.store.claim_email(&e, now, now + self.claim_for).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(error = %err, "claiming an email failed");
                return;
            }
        }
        let outcome = match self.message(&e) {
            Err(why) => Outcome::Permanent(why),
            Ok(message) => match self.transport.send(message).await {
                Ok(_) => Outcome::Sent,
                Err(err) => {
                    // The whole error goes to the log; the email keeps only what owners and
                    // admins may read of it in the outbox's listing.
                    tracing::info!(email = %e.id, error = %err, "an email attempt failed");
                    if err.is_permanent() {
                        Outcome::Permanent(reason(&err))
                    } else {
                        Outcome::Temporary(reason(&err))
                    }
                }
            },
        };
        let was_due = e.next_attempt_at;
        let mut next = e;
        next.attempts = next.attempts.saturating_add(1);
        let now = self.clock.now();
        let label = match &outcome {
            Outcome::Sent => "sent",
            Outcome::Temporary(_) => "retry",
            Outcome::Permanent(_) => "failed",
        };
        metrics::counter!("fleety_email_attempts_total", "outcome" => label).increment(1);
        let next = match outcome {
            Outcome::Sent => next.settled(EmailStatus::Sent, now),
            Outcome::Permanent(why) => {
                tracing::warn!(email = %next.id, error = %why, "an email was refused for good");
                next.last_error = Some(why);
                next.settled(EmailStatus::Failed, now)
            }
            Outcome::Temporary(why) => {
                tracing::info!(email = %next.id, error = %why, "an email will be tried again");
                next.last_error = Some(why);
                match self.schedule.next(next.attempts, None, rand::random()) {
                    Some(wait) => {
                        let wait = chrono::TimeDelta::from_std(wait)
                            .unwrap_or(chrono::TimeDelta::hours(1));
                        next.next_attempt_at = Some(now + wait);
                        next
                    }
                    None => next.settled(EmailStatus::GivenUp, now),
                }
            }
        };
        match self.store.put_email(&next, was_due).await {
            // What the crash tests (tests/api/crash_email.rs) wait for before they kill: from
            // here on, a restart never sends this attempt again.
            Ok(()) => {
                tracing::debug!(email = %next.id, status = ?next.status, "email attempt recorded")
            }
            // Its ticket was erased while it was sent: it stays erased.
            Err(fleety_actors::store::StoreError::NotFound) => {
                tracing::debug!(email = %next.id, "an email's ticket was erased during its attempt")
            }
            // The claim runs out and the email is tried again.
            Err(err) => tracing::warn!(error = %err, "recording an email's attempt failed"),
        }
    }
}

/// Why an attempt failed, as the outbox's listing shows it: what kind of failure and the
/// SMTP code, never the server's own words (which may name hosts or internal addresses).
fn reason(err: &lettre::transport::smtp::Error) -> String {
    match err.status() {
        Some(code) if err.is_permanent() => {
            format!("the mail server refused the email for good (SMTP {code})")
        }
        Some(code) => format!("the mail server asked to try again later (SMTP {code})"),
        None if err.is_timeout() => "the mail server did not answer in time".to_owned(),
        None if err.is_tls() => "the TLS connection to the mail server failed".to_owned(),
        None => "the mail server could not be reached".to_owned(),
    }
}

/// What of a stored `last_error` the outbox's listing shows: the reasons [`reason`] writes,
/// and the one for an email that cannot be built; anything else (an email stored by an
/// earlier version, which kept the server's words) as a plain failure.
pub fn public_error(stored: &str) -> String {
    const SHOWN: [&str; 6] = [
        "the mail server refused the email for good (SMTP ",
        "the mail server asked to try again later (SMTP ",
        "the mail server did not answer in time",
        "the TLS connection to the mail server failed",
        "the mail server could not be reached",
        "the recipient is not an email address",
    ];
    let safe = stored.len() <= 120
        && SHOWN.iter().any(|s| stored.starts_with(s))
        && stored.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if safe {
        stored.to_owned()
    } else {
        "the attempt failed".to_owned()
    }
}

/// Whether emails can be sent for `project`: the same for every project today, a project
/// setting later.
pub fn enabled_for(settings: &EmailSettings, _project: &ProjectId) -> bool {
    settings.enabled()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleety_actors::member::{LinkKind, Role};

    fn settings() -> EmailSettings {
        let mut s = crate::config::Settings::default().email;
        s.smtp_url = Some("smtp://127.0.0.1:2525?tls=none".parse().unwrap());
        s.from = Some("Fleety <help@example.org>".parse().unwrap());
        s.public_url = Some("https://help.example.org/".parse().unwrap());
        s
    }

    #[test]
    fn the_listing_shows_a_failure_in_general_words_only() {
        let refused = "the mail server refused the email for good (SMTP 550)";
        assert_eq!(public_error(refused), refused);
        assert_eq!(
            public_error("the mail server could not be reached"),
            "the mail server could not be reached"
        );
        // What an earlier version stored: the server's own words, which may name hosts.
        for raw in [
            "permanent error (550): 5.1.1 <x@mx.internal.example> unknown",
            "Connection error: Connection refused (os error 111)",
            "the mail server refused the email for good (SMTP 550)\nsecret",
        ] {
            assert_eq!(public_error(raw), "the attempt failed", "{raw}");
        }
    }

    #[tokio::test]
    async fn a_link_email_has_both_parts_escaped_and_an_id_that_threads() {
        let store = fleety_actors::store::memory::MemoryStore::new();
        let clock: Arc<dyn Clock> = Arc::new(fleety_actors::clock::SystemClock);
        let settings = settings();
        let composer = Composer::new(&settings, store.clone(), Outbox::default()).unwrap();
        let mailer = Mailer::new(&settings, store, clock, Outbox::default())
            .unwrap()
            .unwrap();
        let now = Utc::now();
        let link = MemberLink {
            id: "ab".repeat(32),
            project_id: ProjectId::parse("acme").unwrap(),
            kind: LinkKind::Invitation,
            email: "new@example.com".into(),
            role: Role::Agent,
            member_id: None,
            created_by: None,
            created_at: now,
            expires_at: now + chrono::TimeDelta::days(7),
        };
        let mut email = composer.link_email(&link, "/inbox#/accept?project=acme&token=<x>", now);
        assert_eq!(email.kind, EmailKind::Invitation);
        assert!(email
            .text
            .contains("https://help.example.org/inbox#/accept?project=acme&token=<x>"));
        assert!(email.html.contains("token=&lt;x&gt;") && !email.html.contains("<x>"));
        email.thread = Some("<eml_first@example.org>".into());
        let raw = String::from_utf8(mailer.message(&email).unwrap().formatted()).unwrap();
        assert!(
            raw.contains(&format!("Message-ID: <{}@example.org>", email.id)),
            "{raw}"
        );
        assert!(
            raw.contains("In-Reply-To: <eml_first@example.org>"),
            "{raw}"
        );
        assert!(raw.contains("References: <eml_first@example.org>"), "{raw}");
        assert!(raw.contains("multipart/alternative") && raw.contains("text/html"));
        let bad = Email {
            to: "nobody".into(),
            ..email
        };
        assert!(mailer.message(&bad).is_err());
    }
}
