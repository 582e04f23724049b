//! Erasing a contact (issue 29): every ticket the contact opened, through the tickets' own
//! erasure ([`Tickets::erase_all`]) so every place a ticket's words are kept is covered, then
//! the contact's record. The intent is stored first and removed last, so a server stopped
//! halfway finishes the erasure on start ([`finish`]).
//!
//! What is not linked to the contact is not found: a chat session with the assistant that
//! opened no ticket is kept by its session id alone (the contact is known only while the
//! session's requests are served), so its transcript stays (`docs/operations.md`, Data
//! protection).

use std::collections::HashSet;

use uuid::Uuid;

use crate::clock::Clock;
use crate::contact::ContactErasure;
use crate::domain::{ProjectId, Slug};
use crate::store::ContactStore;
use crate::ticket::{TicketError, Tickets};

/// Tickets erased per store call: each call holds every one of their writer leases.
const PAGE: usize = 100;

/// What a contact's erasure did: counts only, never content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactErased {
    /// The contact's tickets erased.
    pub tickets: usize,
}

/// Erases the contact and every ticket it opened; `None` when the project has no such
/// contact (never had, or it was erased already).
pub async fn erase(
    tickets: &Tickets,
    store: &dyn ContactStore,
    clock: &dyn Clock,
    project: &ProjectId,
    id: Uuid,
) -> Result<Option<ContactErased>, TicketError> {
    if store.get_contact(project, id).await?.is_none() {
        return Ok(None);
    }
    let intent = ContactErasure {
        project_id: project.clone(),
        contact_id: id,
        requested_at: clock.now(),
    };
    store.put_contact_erasure(&intent).await?;
    erase_noted(tickets, store, project, id).await.map(Some)
}

/// The erasure once its intent is stored: the tickets first, found through the contact's
/// ticket index, which the tickets' erasure empties; the record last, so a retry still
/// finds the contact.
async fn erase_noted(
    tickets: &Tickets,
    store: &dyn ContactStore,
    project: &ProjectId,
    id: Uuid,
) -> Result<ContactErased, TicketError> {
    let mut done: HashSet<Slug> = HashSet::new();
    let mut erased = 0;
    loop {
        let page = store.contact_tickets(project, id, PAGE).await?;
        // A ticket listed again after its erasure would loop forever; the index entries
        // left over go with the record.
        let slugs: Vec<Slug> = page
            .into_iter()
            .map(|t| t.slug)
            .filter(|s| done.insert(s.clone()))
            .collect();
        if slugs.is_empty() {
            break;
        }
        erased += tickets.erase_all(project, &slugs).await?;
    }
    store.erase_contact(project, id).await?;
    store.delete_contact_erasure(project, id).await?;
    tracing::info!(%project, contact = %id, tickets = erased, "contact erased");
    Ok(ContactErased { tickets: erased })
}

/// Finishes the contact erasures a stopped server left unfinished; called on start, after
/// the tickets' own ([`Tickets::finish_erasures`]) and before the server serves anything.
/// How many there were.
pub async fn finish(tickets: &Tickets, store: &dyn ContactStore) -> Result<usize, TicketError> {
    let pending = store.pending_contact_erasures().await?;
    for e in &pending {
        tracing::info!(project = %e.project_id, contact = %e.contact_id, "finishing a contact erasure begun before the restart");
        erase_noted(tickets, store, &e.project_id, e.contact_id).await?;
    }
    Ok(pending.len())
}
