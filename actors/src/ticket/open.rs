//! Opening a ticket: [`Tickets::open`]. There is no actor yet: the ticket, its first messages
//! and their webhooks are one store write, and the agents' feed hears of it once.

use super::change::message_created;
use super::{LogEvent, TicketError, TicketKey, Tickets};
use crate::domain::{Description, Message, MessageBody, Participant, ProjectId, Ticket};
use crate::domain::{TicketSource, Title};
use crate::message_id::MessageId;
use crate::store::StoreError;
use crate::webhook::EventType;

/// A ticket to open: what its opener decides.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub project: ProjectId,
    pub title: Title,
    pub description: Description,
    pub source: TicketSource,
    /// The anonymous chat session the ticket comes from, if any.
    pub session_id: Option<String>,
    /// The ticket's first messages, oldest first: the chat it was opened from. They are
    /// written with the ticket, in the same write, so nobody ever sees it without them.
    pub history: Vec<(Participant, MessageBody)>,
    /// Who the visitor is, when the site said.
    pub visitor: Option<crate::domain::VisitorContact>,
    /// The verified contact whose session opens the ticket, if any.
    pub contact: Option<crate::contact::TicketContact>,
}

impl Tickets {
    /// Opens a ticket with a fresh slug, with its history if it has one, and announces it on
    /// the project's agent feed. A rare slug collision draws again.
    ///
    /// The ticket, its history and every webhook announcing them are one store write: a crash
    /// never leaves a ticket with half its history, and the opener waits for one durable write
    /// however long the history. The feed hears of the ticket once, with `ticket_created`, and
    /// its history is there when an agent opens it; the webhooks are the ones the ticket and
    /// a post of each message would have made (`ticket.created`, then one `message.created`
    /// per message), so a receiver that mirrors conversations gets the whole of it.
    pub async fn open(&self, new: NewTicket) -> Result<Ticket, TicketError> {
        let now = self.deps.clock.now();
        let NewTicket {
            project,
            title,
            description,
            source,
            session_id,
            history,
            visitor,
            contact,
        } = new;
        let slug = self.deps.slugs.generate();
        let mut ticket = Ticket::opened(project, slug, title, description, source, session_id, now);
        ticket.visitor = visitor;
        ticket.contact = contact.map(Box::new);
        // Ids minted as the ticket's actor mints them, one after the other; the actor that
        // starts later reads the newest and carries on after it.
        let mut last = None;
        let messages: Vec<Message> = history
            .into_iter()
            .map(|(author, content)| {
                let id = MessageId::next(last, now);
                last = Some(id);
                Message {
                    id,
                    author,
                    content,
                    timestamp: id.timestamp(),
                    idempotency_key: None,
                    agent: None,
                }
            })
            .collect();
        let mut attempts = 0;
        loop {
            // Built for each slug tried: the announcements name the ticket.
            let summary = || serde_json::to_value(crate::events::TicketSummary::new(&ticket));
            let data = || summary().unwrap_or_default();
            let hooks = &self.deps.hooks;
            let project = &ticket.project_id;
            let mut deliveries = hooks.deliveries(project, EventType::TicketCreated, data, now);
            for message in &messages {
                let data = || message_created(project, &ticket.slug, message);
                deliveries.extend(hooks.deliveries(project, EventType::MessageCreated, data, now));
            }
            let created =
                self.deps
                    .store
                    .create_ticket_with_history(&ticket, &messages, &deliveries);
            match created.await {
                Ok(()) => break,
                Err(StoreError::Conflict) if attempts < 8 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
            ticket.slug = self.deps.slugs.generate();
        }
        tracing::info!(project = %ticket.project_id, ticket = %ticket.slug, source = ?ticket.source, messages = messages.len(), "ticket created");
        let summary = crate::events::encode(&crate::events::TicketSummary::new(&ticket));
        match &self.deps.cluster {
            None => self.deps.feeds.publish(
                &ticket.project_id,
                crate::events::envelope("ticket_created", Some(&ticket.slug), &summary),
            ),
            Some(cluster) => {
                let key = TicketKey {
                    project: ticket.project_id.clone(),
                    slug: ticket.slug.clone(),
                };
                cluster.broadcast(&key, LogEvent::for_agents("ticket_created", summary));
            }
        }
        Ok(ticket)
    }
}
