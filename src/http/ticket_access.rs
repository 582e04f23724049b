//! The `ticket_access` project setting on the public ticket endpoints: who may read, post to,
//! mark read, rate and subscribe to a ticket, and the ticket keys that stand in for a session.
//!
//! - `slug`: whoever knows the slug (the seed's rule).
//! - `session`: the session that opened the ticket, a session of its verified contact, the
//!   holder of its ticket key, or an agent (admin key, member session, API token). Anyone else
//!   gets the very answer an unknown slug gets, so a refusal tells nothing about the ticket.
//!
//! A ticket key is handed out when a ticket is opened in `session` mode by a visitor whom no
//! verified contact names: without a session, or with an anonymous session, which ends within
//! a day. It is signed ([`crate::auth::Tokens::ticket_key`]), so nothing is stored for it.

use fleety_actors::domain::{Project, Ticket, TicketAccess};
use fleety_actors::ticket::{TicketError, TicketKey};

use super::access::Visitor;
use super::{ApiError, Ctx};
use crate::auth::Claims;

/// Lets the visitor at the ticket, or answers as if it did not exist. Called where the ticket
/// would be looked up, after the request's own checks, so a hidden ticket and a missing one
/// answer alike whatever else the request holds.
pub async fn admit(ctx: &Ctx, visitor: &Visitor, key: &TicketKey) -> Result<(), ApiError> {
    if visitor.project.ticket_access == TicketAccess::Slug || visitor.admin {
        return Ok(());
    }
    let ticket = match ctx.system.tickets.find(key).await {
        Ok(ticket) => ticket,
        Err(TicketError::NotFound) => return Err(hidden()),
        Err(e) => return Err(e.into()),
    };
    let by_session = visitor
        .session
        .as_deref()
        .is_some_and(|s| opened_by(&ticket, s));
    let by_key = visitor.ticket_key.as_deref().is_some_and(|k| {
        ctx.tokens
            .ticket_key_matches(k, &ticket.project_id, ticket.slug.as_str(), ticket.id)
    });
    if by_session || by_key {
        Ok(())
    } else {
        Err(hidden())
    }
}

/// What an unknown slug answers.
fn hidden() -> ApiError {
    TicketError::NotFound.into()
}

/// Whether `session` opened the ticket, or names the verified contact who did.
fn opened_by(ticket: &Ticket, session: &Claims) -> bool {
    let same_session = ticket.session_id.as_deref() == Some(session.sub.as_str());
    let same_contact = match (&ticket.contact, &session.ctc) {
        (Some(opener), Some(caller)) => opener.verified && opener.id == caller.id,
        _ => false,
    };
    same_session || same_contact
}

/// The ticket key to hand whoever just opened `ticket`: in `session` mode, to a visitor whom
/// no verified contact names (a contact's later sessions open the ticket anyway).
pub fn key_for_opener(
    ctx: &Ctx,
    project: &Project,
    ticket: &Ticket,
    session: Option<&Claims>,
) -> Option<String> {
    let contact = session.is_some_and(|s| s.ctc.as_ref().is_some_and(|c| c.verified));
    (project.ticket_access == TicketAccess::Session && !contact).then(|| {
        ctx.tokens
            .ticket_key(&project.id, ticket.slug.as_str(), ticket.id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleety_actors::contact::TicketContact;
    use fleety_actors::domain::{Description, ProjectId, Slug, TicketSource, Title};

    fn claims(sub: &str, contact: Option<TicketContact>) -> Claims {
        Claims {
            sub: sub.into(),
            pid: "acme".into(),
            iat: 0,
            nbf: None,
            exp: 0,
            iss: String::new(),
            aud: String::new(),
            sat: None,
            ctc: contact,
        }
    }

    fn contact(id: uuid::Uuid) -> TicketContact {
        TicketContact {
            id,
            external_id: "user-1".into(),
            name: None,
            email: None,
            verified: true,
        }
    }

    #[test]
    fn the_opening_session_and_the_same_contact_open_a_ticket_and_nobody_else() {
        let mut ticket = Ticket::opened(
            ProjectId::parse("acme").unwrap(),
            Slug::parse("swift-bear-053").unwrap(),
            Title::parse("Help").unwrap(),
            Description::parse("").unwrap(),
            TicketSource::Api,
            Some("s-1".into()),
            chrono::Utc::now(),
        );
        assert!(opened_by(&ticket, &claims("s-1", None)));
        assert!(!opened_by(&ticket, &claims("s-2", None)));
        let ada = uuid::Uuid::new_v4();
        ticket.contact = Some(Box::new(contact(ada)));
        assert!(opened_by(&ticket, &claims("s-9", Some(contact(ada)))));
        let other = contact(uuid::Uuid::new_v4());
        assert!(!opened_by(&ticket, &claims("s-9", Some(other))));
        // A contact the ticket keeps unverified vouches for nobody.
        ticket.contact.as_mut().unwrap().verified = false;
        assert!(!opened_by(&ticket, &claims("s-9", Some(contact(ada)))));
    }
}
