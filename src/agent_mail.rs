//! Emails to agents (issue 28): owns which member is emailed about a new ticket, an
//! assignment or a visitor's reply while they are away, and what the email says. The switches and the rules of who and under which id
//! live in `fleety_actors::agent_mail`; this reads the members and their switches, composes
//! the emails and puts them in the outbox.
//!
//! - A new ticket (opened by a visitor, by the API, or by a hand-off from the assistant,
//!   which tells of it through [`rules::TicketOpened`]): one email to each active member with `new_ticket` on, never to the member who opened it.
//! - An assignment made by someone else (not a member taking the ticket themselves): one
//!   email to the assignee while their `assigned` switch is on.
//!
//! Each email's id is fixed by what it is about, and it goes in with the outbox's create-once
//! ([`fleety_actors::store::EmailStore::create_email`]): a retry, or a second node composing
//! the same email, never queues a second one nor queues a sent one again. The email is
//! written right after the change is durable, as the visitors' bursts are: a crash in
//! between (a few milliseconds) loses that one email; it never sends one twice.
//!
//! - A visitor's message on a ticket assigned to a member who is away from the inbox: one
//!   email per burst of the visitor's messages, due `FLEETY_AGENT_EMAIL_AFTER_SECS` after the
//!   first (see `src/agent_mail/away.rs`).
//!
//! Agents' emails are in English. Each carries a link to the ticket in the inbox, threads
//! with the member's other emails about the ticket, and, when reply by email is on, the
//! ticket's `Reply-To`: answering from the mail client posts the reply as the member. They
//! carry no `List-Unsubscribe`: the member's switches in the inbox are the way to stop them.

mod away;

pub use away::InInbox;

use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use fleety_actors::agent_mail::{self as rules, Event};
use fleety_actors::clock::Clock;
use fleety_actors::domain::{ProjectId, Slug, Ticket};
use fleety_actors::email::{escape_html, Email, EmailKind, Outbox};
use fleety_actors::member::{Member, MemberState};
use fleety_actors::store::{Store, StoreResult};
use uuid::Uuid;

use crate::config::EmailSettings;
use crate::reply_address::ReplyAddresses;

/// What an email to an agent says, before it is an [`Email`].
#[derive(Debug)]
pub struct Letter {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The email about `event` on the ticket titled `title`: a lead, the ticket's first words
/// when there are some, a link to it in the inbox and one to the switches; both parts, every
/// value escaped in the HTML one.
pub fn letter(
    event: Event,
    project: &str,
    title: &str,
    body: &str,
    link: &str,
    prefs: &str,
) -> Letter {
    let (subject, lead, why) = match event {
        Event::NewTicket => (
            format!("[{project}] New ticket: {title}"),
            format!("A new ticket was opened in {project}: “{title}”."),
            "You receive this because new-ticket emails are on for you.",
        ),
        Event::Assigned => (
            format!("[{project}] Assigned to you: {title}"),
            format!("The ticket “{title}” in {project} was assigned to you."),
            "You receive this because assignment emails are on for you.",
        ),
        Event::VisitorReply => (
            format!("[{project}] New message: {title}"),
            format!("The visitor wrote on “{title}” in {project}:"),
            "You receive this because visitor-reply emails are on for you.",
        ),
    };
    let mut text = format!("{lead}\n\n");
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><body><p>{}</p>",
        escape_html(&lead)
    );
    if !body.is_empty() {
        text.push_str(&format!("{body}\n\n"));
        html.push_str(&format!(
            "<blockquote style=\"white-space:pre-wrap\">{}</blockquote>",
            escape_html(body)
        ));
    }
    text.push_str(&format!(
        "Open the ticket: {link}\n\n-- \n{why}\nChange your email settings: {prefs}\n"
    ));
    html.push_str(&format!(
        "<p><a href=\"{}\">Open the ticket</a></p><hr><p>{}</p><p><a href=\"{}\">Change your email settings</a></p></body></html>",
        escape_html(link),
        escape_html(why),
        escape_html(prefs),
    ));
    Letter {
        subject,
        text,
        html,
    }
}

/// Composes the emails to agents; present only while email is on.
pub struct AgentMailer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    public_url: String,
    /// Where the `Message-ID`s live: the `From` address's domain (as the sender names them).
    domain: String,
    outbox: Outbox,
    replies: ReplyAddresses,
    /// How long a visitor's burst waits for its assignee before it is emailed.
    wait: TimeDelta,
    /// The bursts waiting and the members in the inbox, on this node.
    away: Mutex<away::Away>,
}

impl AgentMailer {
    /// `None` when email is off.
    pub fn new(
        settings: &EmailSettings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        outbox: Outbox,
        replies: ReplyAddresses,
    ) -> Option<Arc<AgentMailer>> {
        let (Some(public_url), Some(from), true) =
            (&settings.public_url, &settings.from, settings.enabled())
        else {
            return None;
        };
        Some(Arc::new(AgentMailer {
            store,
            clock,
            public_url: public_url.to_string().trim_end_matches('/').to_owned(),
            domain: from.domain().to_owned(),
            outbox,
            replies,
            wait: TimeDelta::from_std(settings.agent_after).unwrap_or(TimeDelta::minutes(2)),
            away: Mutex::default(),
        }))
    }

    /// The ticket in the inbox, and the inbox's email switches.
    pub fn links(&self, project: &ProjectId, slug: &Slug) -> (String, String) {
        let p = project.as_str();
        (
            format!(
                "{}/inbox#/ticket?project={p}&slug={}",
                self.public_url,
                slug.as_str()
            ),
            format!("{}/inbox#/account?project={p}", self.public_url),
        )
    }

    /// After a ticket was created: each member who asked for new tickets, but `by`, is emailed.
    pub async fn ticket_created(&self, ticket: &Ticket, by: Option<Uuid>) {
        let result = async {
            let project = &ticket.project_id;
            let members = self.store.list_members(project).await?;
            let prefs = self.store.list_notification_prefs(project).await?;
            let now = self.clock.now();
            let mut wrote = false;
            for m in rules::recipients(Event::NewTicket, &members, &prefs, by, now) {
                let body = ticket.description.as_str();
                wrote |= self.write(Event::NewTicket, ticket, m, body, 0).await?;
            }
            StoreResult::Ok(wrote)
        };
        self.settle(result.await, "new-ticket");
    }

    /// After a ticket's assignee changed to `ticket.assignee_member`, by `by`: the assignee is
    /// emailed unless they took it themselves or turned the email off.
    pub async fn ticket_assigned(&self, ticket: &Ticket, by: Option<Uuid>) {
        let Some(assignee) = ticket.assignee_member.as_ref().map(|a| a.id) else {
            return;
        };
        if by == Some(assignee) {
            return;
        }
        let result = async {
            let project = &ticket.project_id;
            let Some(member) = self.store.get_member(project, assignee).await? else {
                return Ok(false);
            };
            let prefs = self.store.get_notification_prefs(project, assignee).await?;
            let now = self.clock.now();
            let members = [member];
            let prefs: Vec<_> = prefs.into_iter().collect();
            let Some(m) = rules::recipients(Event::Assigned, &members, &prefs, by, now).pop()
            else {
                return Ok(false);
            };
            let version = ticket.updated_at.timestamp_millis();
            self.write(Event::Assigned, ticket, m, "", version).await
        };
        self.settle(result.await, "assignment");
    }

    fn settle(&self, result: StoreResult<bool>, what: &str) {
        match result {
            Ok(true) => self.outbox.wake(),
            Ok(false) => {}
            // The change stands either way; an email not written only means no email.
            Err(e) => tracing::warn!(error = %e, "writing a {what} email to agents failed"),
        }
    }

    /// One email to one member; true when it was written now (not by an earlier attempt).
    async fn write(
        &self,
        event: Event,
        ticket: &Ticket,
        member: &Member,
        body: &str,
        version: i64,
    ) -> StoreResult<bool> {
        if member.state != MemberState::Active {
            return Ok(false);
        }
        let (project, slug) = (&ticket.project_id, &ticket.slug);
        let (link, prefs) = self.links(project, slug);
        let l = letter(
            event,
            project.as_str(),
            ticket.title.as_str(),
            body,
            &link,
            &prefs,
        );
        let kind = match event {
            Event::NewTicket => EmailKind::AgentNewTicket,
            Event::Assigned => EmailKind::AgentAssigned,
            Event::VisitorReply => EmailKind::AgentVisitorReply,
        };
        let now = self.clock.now();
        let mut email = Email::new(project, kind, &member.email, l.subject, l.text, l.html, now);
        email.id = rules::email_id(event, project, slug, member.id, version);
        email.ticket = Some(slug.clone());
        let root = rules::thread_root(project, slug, member.id);
        if email.id != root {
            email.thread = Some(format!("<{root}@{}>", self.domain));
        }
        if let Some(reply_to) = self.replies.reply_to(project, slug) {
            email.headers.push(("Reply-To".to_owned(), reply_to));
        }
        let created = self.store.create_email(&email).await?;
        if created {
            let kind = match event {
                Event::NewTicket => "new_ticket",
                Event::Assigned => "assigned",
                Event::VisitorReply => "visitor_reply",
            };
            metrics::counter!("fleety_agent_emails_total", "kind" => kind).increment(1);
        }
        Ok(created)
    }
}

#[async_trait::async_trait]
impl rules::TicketOpened for AgentMailer {
    async fn ticket_opened(&self, ticket: &Ticket, by: Option<Uuid>) {
        self.ticket_created(ticket, by).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_escapes_every_value_in_html_and_keeps_text_plain() {
        let l = letter(
            Event::NewTicket,
            "acme",
            "Login <fails> & \"more\"",
            "I tried <script>x</script>",
            "https://h/inbox#/ticket?project=acme&slug=a",
            "https://h/inbox#/account?project=acme",
        );
        assert_eq!(l.subject, "[acme] New ticket: Login <fails> & \"more\"");
        assert!(l.text.contains("I tried <script>x</script>"));
        assert!(l
            .text
            .contains("https://h/inbox#/ticket?project=acme&slug=a"));
        assert!(!l.html.contains("<script>") && !l.html.contains("<fails>"));
        assert!(l.html.contains("I tried &lt;script&gt;x&lt;/script&gt;"));
        assert!(l
            .html
            .contains("Login &lt;fails&gt; &amp; &quot;more&quot;"));
        assert!(l
            .html
            .contains("href=\"https://h/inbox#/ticket?project=acme&amp;slug=a\""));
        let a = letter(Event::Assigned, "acme", "T", "", "l", "p");
        assert_eq!(a.subject, "[acme] Assigned to you: T");
        assert!(!a.html.contains("<blockquote"));
    }
}
