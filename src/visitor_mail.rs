//! Emails to visitors after agents reply (issue 28): owns when a visitor is emailed, what the
//! email says, and the signed links it carries. The rules of a burst live in
//! `fleety_actors::visitor_mail`; this applies them to the store and composes the emails.
//!
//! - An agent's public reply (member session, API token or admin key) starts a burst, due
//!   `FLEETY_VISITOR_EMAIL_AFTER_SECS` later, written right after the reply; replies before it
//!   is due join it.
//! - The visitor reading the ticket (`PATCH …/messages/read` as the visitor) or opening its
//!   socket cancels it. A burst that comes due while a visitor socket of the ticket is open on
//!   this node waits another while instead.
//! - When it comes due (the outbox sender's round, on the injected clock), the replies the
//!   visitor has not read and no email carried become one email, written to the outbox in the
//!   same durable write that ends the burst. Its id is fixed by the burst, so a composition
//!   repeated after a crash writes the same email again, never a second one.
//! - Nothing is sent without an address (the ticket's verified contact's email, else the one
//!   the visitor gave), without SMTP, or after the visitor unsubscribed from the ticket.

use crate::reply_address::ReplyAddresses;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use fleety_actors::clock::Clock;
use fleety_actors::domain::{Message, Participant, ProjectId, Slug, Ticket};
use fleety_actors::email::{escape_html, Email, EmailKind, Outbox};
use fleety_actors::store::{MessageRange, Store, StoreResult};
use fleety_actors::visitor_mail::{self as rules, VisitorMail};

use crate::auth::Tokens;
use crate::config::EmailSettings;

/// Records composed per round.
const ROUND: usize = 32;

/// The widget's languages (see `web/src/widget/i18n.ts`); English is the fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
    Ar,
}

impl Lang {
    /// The first language of an `Accept-Language` header the widget speaks, else English.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        for part in header.unwrap_or("").split(',') {
            let tag = part.split(';').next().unwrap_or("").trim();
            let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
            match primary.as_str() {
                "en" => return Lang::En,
                "de" => return Lang::De,
                "ar" => return Lang::Ar,
                _ => {}
            }
        }
        Lang::En
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
            Lang::Ar => "ar",
        }
    }

    fn words(self) -> Words {
        match self {
            Lang::En => Words {
                subject: "New reply about “{title}”",
                lead: "We replied to your conversation “{title}”:",
                agent: "Support team",
                action: "Continue the conversation",
                expires: "The link works for 7 days.",
                unsubscribe: "Stop emails about this conversation",
                dir: "ltr",
            },
            Lang::De => Words {
                subject: "Neue Antwort zu „{title}“",
                lead: "Wir haben in Ihrer Unterhaltung „{title}“ geantwortet:",
                agent: "Support-Team",
                action: "Unterhaltung fortsetzen",
                expires: "Der Link gilt 7 Tage.",
                unsubscribe: "Keine E-Mails mehr zu dieser Unterhaltung",
                dir: "ltr",
            },
            Lang::Ar => Words {
                subject: "رد جديد بخصوص «{title}»",
                lead: "رددنا على محادثتك «{title}»:",
                agent: "فريق الدعم",
                action: "متابعة المحادثة",
                expires: "يعمل الرابط لمدة 7 أيام.",
                unsubscribe: "إيقاف الرسائل حول هذه المحادثة",
                dir: "rtl",
            },
        }
    }
}

struct Words {
    subject: &'static str,
    lead: &'static str,
    agent: &'static str,
    action: &'static str,
    expires: &'static str,
    unsubscribe: &'static str,
    dir: &'static str,
}

/// What an email to a visitor says, before it is an [`Email`].
pub struct Letter {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The email of a burst: the replies, a link back to the conversation and one to
/// unsubscribe, in both parts, every value escaped in the HTML one.
pub fn letter(lang: Lang, title: &str, replies: &[&Message], link: &str, unsub: &str) -> Letter {
    let w = lang.words();
    let subject = w.subject.replace("{title}", title);
    let lead = w.lead.replace("{title}", title);
    let who = |m: &Message| {
        m.agent
            .as_ref()
            .map(|a| a.name.clone())
            .unwrap_or_else(|| w.agent.to_owned())
    };
    let mut text = format!("{lead}\n\n");
    let mut html = format!(
        "<!doctype html><html lang=\"{}\" dir=\"{}\"><body><p>{}</p>",
        lang.code(),
        w.dir,
        escape_html(&lead)
    );
    for m in replies {
        let (name, body) = (who(m), m.content.as_str());
        text.push_str(&format!("{name}:\n{body}\n\n"));
        html.push_str(&format!(
            "<p><strong>{}</strong></p><blockquote style=\"white-space:pre-wrap\">{}</blockquote>",
            escape_html(&name),
            escape_html(body)
        ));
    }
    text.push_str(&format!(
        "{}: {link}\n{}\n\n-- \n{}: {unsub}\n",
        w.action, w.expires, w.unsubscribe
    ));
    html.push_str(&format!(
        "<p><a href=\"{}\">{}</a></p><p>{}</p><hr><p><a href=\"{}\">{}</a></p></body></html>",
        escape_html(link),
        escape_html(w.action),
        escape_html(w.expires),
        escape_html(unsub),
        escape_html(w.unsubscribe)
    ));
    Letter {
        subject,
        text,
        html,
    }
}

/// Where a ticket's emails to its visitor go: its verified contact's address, else the one
/// the visitor gave.
pub fn address(ticket: &Ticket) -> Option<String> {
    let contact = ticket
        .contact
        .as_ref()
        .filter(|c| c.verified)
        .and_then(|c| c.email.clone());
    contact.or_else(|| {
        ticket
            .visitor
            .as_ref()
            .and_then(|v| v.email.as_ref())
            .map(|e| e.as_str().to_owned())
    })
}

/// Schedules, cancels and composes the emails to visitors; present only while email is on.
pub struct VisitorMailer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    tokens: Tokens,
    wait: TimeDelta,
    public_url: String,
    /// Where the `Message-ID`s live: the `From` address's domain (as the sender names them).
    domain: String,
    outbox: Outbox,
    /// The tickets' reply addresses, for the emails' `Reply-To` when reply by email is on.
    replies: ReplyAddresses,
    /// Visitor sockets open on this node, per ticket: a burst due while one is open waits.
    watching: Mutex<HashMap<(ProjectId, Slug), usize>>,
}

/// A visitor socket counted while it lives.
pub struct Watching {
    mailer: Arc<VisitorMailer>,
    key: (ProjectId, Slug),
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut open = self
            .mailer
            .watching
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl VisitorMailer {
    /// `None` when email is off.
    pub fn new(
        settings: &EmailSettings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        tokens: Tokens,
        outbox: Outbox,
        replies: ReplyAddresses,
    ) -> Option<Arc<VisitorMailer>> {
        let (Some(public_url), Some(from), true) =
            (&settings.public_url, &settings.from, settings.enabled())
        else {
            return None;
        };
        Some(Arc::new(VisitorMailer {
            store,
            clock,
            tokens,
            wait: TimeDelta::from_std(settings.visitor_after).unwrap_or(TimeDelta::minutes(2)),
            public_url: public_url.to_string().trim_end_matches('/').to_owned(),
            domain: from.domain().to_owned(),
            outbox,
            replies,
            watching: Mutex::new(HashMap::new()),
        }))
    }

    /// After an agent's public reply on the ticket: starts a burst unless one waits.
    pub async fn replied(&self, project: &ProjectId, slug: &Slug) -> StoreResult<()> {
        let current = self.store.get_visitor_mail(project, slug).await?;
        let now = self.clock.now();
        if let Some(next) = rules::replied(current, project, slug, now, self.wait) {
            self.store.put_visitor_mail(&next, None, None).await?;
        }
        Ok(())
    }

    /// The visitor read the ticket or opened its socket, with their request's
    /// `Accept-Language`: the waiting email is cancelled.
    pub async fn read(
        &self,
        project: &ProjectId,
        slug: &Slug,
        accept_language: Option<&str>,
    ) -> StoreResult<()> {
        let current = self.store.get_visitor_mail(project, slug).await?;
        let was = current.as_ref().and_then(|m| m.due_at);
        let lang = accept_language.map(|h| Lang::from_accept_language(Some(h)).code());
        if let Some(next) = rules::read(current, project, slug, lang, self.clock.now()) {
            self.store.put_visitor_mail(&next, was, None).await?;
        }
        Ok(())
    }

    /// No more email about the ticket.
    pub async fn unsubscribe(&self, project: &ProjectId, slug: &Slug) -> StoreResult<()> {
        let current = self.store.get_visitor_mail(project, slug).await?;
        let was = current.as_ref().and_then(|m| m.due_at);
        let next = rules::unsubscribed(current, project, slug, self.clock.now());
        self.store.put_visitor_mail(&next, was, None).await
    }

    /// Counts a visitor socket on the ticket until the guard drops.
    pub fn watch(self: &Arc<Self>, project: &ProjectId, slug: &Slug) -> Watching {
        let key = (project.clone(), slug.clone());
        *self
            .watching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default() += 1;
        Watching {
            mailer: self.clone(),
            key,
        }
    }

    fn watched(&self, project: &ProjectId, slug: &Slug) -> bool {
        self.watching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&(project.clone(), slug.clone()))
    }

    /// The link back to the conversation, and the one-click unsubscribe.
    pub fn links(&self, project: &ProjectId, slug: &Slug) -> (String, String) {
        let open = self.tokens.issue_visitor_link(project, slug.as_str()).token;
        let unsub = self.tokens.issue_unsubscribe(project, slug.as_str()).token;
        (
            format!("{}/v1/email/conversation?token={open}", self.public_url),
            format!("{}/v1/email/unsubscribe?token={unsub}", self.public_url),
        )
    }

    /// Composes the emails of the bursts due now; the outbox sender calls it each round.
    pub async fn compose_due(&self) {
        let due = match self.store.due_visitor_mails(self.clock.now(), ROUND).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reading due visitor emails failed");
                return;
            }
        };
        let mut wrote = false;
        for mail in due {
            match self.compose(mail).await {
                Ok(sent) => wrote |= sent,
                Err(e) => tracing::warn!(error = %e, "composing a visitor email failed"),
            }
        }
        if wrote {
            self.outbox.wake();
        }
    }

    /// One due burst: its email with the record that no longer waits, or the record alone
    /// when there is nothing to send. True when an email was written.
    async fn compose(&self, mail: VisitorMail) -> StoreResult<bool> {
        let now = self.clock.now();
        let Some(due_at) = mail.due_at else {
            return Ok(false);
        };
        let (project, slug) = (mail.project_id.clone(), mail.slug.clone());
        if self.watched(&project, &slug) {
            let mut later = mail;
            later.due_at = Some(now + self.wait);
            later.updated_at = now;
            self.store
                .put_visitor_mail(&later, Some(due_at), None)
                .await?;
            return Ok(false);
        }
        let mut nothing = mail.clone();
        nothing.due_at = None;
        nothing.updated_at = now;
        let ticket = self.store.get_ticket(&project, &slug).await?;
        let Some((ticket, to)) = ticket.and_then(|t| address(&t).map(|a| (t, a))) else {
            self.store
                .put_visitor_mail(&nothing, Some(due_at), None)
                .await?;
            return Ok(false);
        };
        let cursors = self.store.read_cursors(&project, &slug).await?;
        let read = cursors
            .iter()
            .find(|c| c.reader == Participant::User)
            .map(|c| c.up_to);
        let after = read.max(mail.sent_through);
        let messages = self
            .store
            .list_messages(&project, &slug, MessageRange::after(after))
            .await?;
        let replies = rules::unread_replies(&messages, read, mail.sent_through);
        let Some(last) = replies.last().map(|m| m.id) else {
            self.store
                .put_visitor_mail(&nothing, Some(due_at), None)
                .await?;
            return Ok(false);
        };
        let (link, unsub) = self.links(&project, &slug);
        let lang = mail
            .lang
            .as_deref()
            .map(|l| Lang::from_accept_language(Some(l)))
            .unwrap_or(Lang::En);
        let l = letter(lang, ticket.title.as_str(), &replies, &link, &unsub);
        let mut email = Email::new(
            &project,
            EmailKind::VisitorReply,
            &to,
            l.subject,
            l.text,
            l.html,
            now,
        );
        email.id = rules::email_id(&project, &slug, due_at);
        email.ticket = Some(slug.clone());
        // Every node's sender composes the bursts that come due, so another may have written
        // this one (its id is fixed by the burst) and even sent it already: writing it again
        // would put a sent email back in the queue. Only the record is moved on then. Two
        // nodes composing the same burst in the same moment can still both write it; it is
        // then sent twice with one Message-ID, which mail clients drop.
        if self.store.get_email(&email.id).await?.is_some() {
            let done = rules::sent(mail, &email.id, last, now);
            self.store
                .put_visitor_mail(&done, Some(due_at), None)
                .await?;
            return Ok(false);
        }
        email.thread = mail
            .first_email
            .as_ref()
            .map(|id| format!("<{id}@{}>", self.domain));
        email.headers = list_unsubscribe(&unsub);
        // A reply to the email lands on the ticket (`POST /v1/inbound/email`).
        if let Some(reply_to) = self.replies.reply_to(&project, &slug) {
            email.headers.push(("Reply-To".to_owned(), reply_to));
        }
        let done = rules::sent(mail, &email.id, last, now);
        self.store
            .put_visitor_mail(&done, Some(due_at), Some(&email))
            .await?;
        metrics::counter!("fleety_visitor_emails_total").increment(1);
        Ok(true)
    }
}

/// The headers of one-click unsubscribe (RFC 8058): the mail client POSTs
/// `List-Unsubscribe=One-Click` to the URL.
pub fn list_unsubscribe(url: &str) -> Vec<(String, String)> {
    vec![
        ("List-Unsubscribe".to_owned(), format!("<{url}>")),
        (
            "List-Unsubscribe-Post".to_owned(),
            "List-Unsubscribe=One-Click".to_owned(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleety_actors::domain::MessageBody;
    use fleety_actors::message_id::MessageId;

    #[test]
    fn a_language_is_the_first_the_widget_speaks_else_english() {
        let l = |h| Lang::from_accept_language(Some(h));
        assert_eq!(l("de-AT,de;q=0.9,en;q=0.5"), Lang::De);
        assert_eq!(l("fr-FR, ar;q=0.8"), Lang::Ar);
        assert_eq!(l("fr"), Lang::En);
        assert_eq!(Lang::from_accept_language(None), Lang::En);
    }

    #[test]
    fn a_letter_carries_every_reply_escaped_in_html_and_both_links() {
        let now = chrono::Utc::now();
        let m = Message {
            id: MessageId::next(None, now),
            author: Participant::Admin,
            content: MessageBody::parse("Try <b>this</b> & that").unwrap(),
            timestamp: now,
            idempotency_key: None,
            agent: None,
        };
        let l = letter(
            Lang::De,
            "Login <fails>",
            &[&m],
            "https://h/open?token=a&b",
            "https://h/unsub?token=c",
        );
        assert_eq!(l.subject, "Neue Antwort zu „Login <fails>“");
        assert!(l.text.contains("Try <b>this</b> & that"));
        assert!(l.text.contains("https://h/open?token=a&b"));
        assert!(l.html.contains("Try &lt;b&gt;this&lt;/b&gt; &amp; that"));
        assert!(l.html.contains("Login &lt;fails&gt;") && !l.html.contains("<fails>"));
        assert!(l.html.contains("href=\"https://h/open?token=a&amp;b\""));
        assert!(l.html.contains("Support-Team") && l.html.contains("lang=\"de\""));
        let ar = letter(Lang::Ar, "x", &[&m], "l", "u");
        assert!(ar.html.contains("dir=\"rtl\""));
        let headers = list_unsubscribe("https://h/u?t=1");
        assert_eq!(headers[0].1, "<https://h/u?t=1>");
        assert_eq!(headers[1].1, "List-Unsubscribe=One-Click");
    }
}
