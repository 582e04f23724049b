//! Erasing a ticket on this node: the mark that makes it unknown to every request from the
//! first step, the stored intent that a restart finishes, the actor's last event to its
//! subscribers, and the store's erasure of every row carrying its words.

use super::{TicketError, TicketKey, TicketMsg, Tickets, WriterLease};
use crate::domain::{ProjectId, Slug};

impl Tickets {
    /// Whether the ticket is being erased now: it is then served as unknown.
    pub(crate) fn erasing(&self, key: &TicketKey) -> bool {
        self.deps.erasing.contains_key(key)
    }

    /// Erases the ticket everywhere this node keeps it: its subscribers are told
    /// `ticket_deleted` and closed, its actor stops, and the store erases its rows and every
    /// row carrying its words ([`crate::store::TicketStore::erase_ticket`]), its search index
    /// entries with them. Whether there was such a ticket; a ticket being erased, or erased,
    /// is unknown to every request from the start of the call.
    ///
    /// The erasure's intent is stored first and removed last, so a server stopped halfway
    /// finishes it on start ([`Tickets::finish_erasures`]) before serving anything.
    /// Single node only: with several nodes the actor of another node is not reached.
    pub async fn erase(&self, key: &TicketKey) -> Result<bool, TicketError> {
        let store = &self.deps.store;
        if store.get_ticket(&key.project, &key.slug).await?.is_none() {
            return Ok(false);
        }
        self.erase_now(key).await
    }

    /// Erases with the ticket marked as being erased from the first step to the last, so no
    /// new actor starts and no cached view is served meanwhile.
    async fn erase_now(&self, key: &TicketKey) -> Result<bool, TicketError> {
        let erased = self
            .erase_all(&key.project, std::slice::from_ref(&key.slug))
            .await?;
        Ok(erased > 0)
    }

    /// Erases several tickets of the project as [`Tickets::erase`] erases one, with one store
    /// call for all of them, so the embedded store takes the words out of its files once (a
    /// contact's erasure: [`crate::contact_erasure`]). Each ticket's intent is stored first
    /// and removed last, as for one ticket. How many of the tickets were there.
    pub async fn erase_all(
        &self,
        project: &ProjectId,
        slugs: &[Slug],
    ) -> Result<usize, TicketError> {
        let keys: Vec<TicketKey> = slugs
            .iter()
            .map(|slug| TicketKey {
                project: project.clone(),
                slug: slug.clone(),
            })
            .collect();
        for key in &keys {
            self.deps.erasing.insert(key.clone(), ());
        }
        let erased = self.erase_marked(project, &keys).await;
        for key in &keys {
            self.deps.erasing.remove(key);
        }
        erased
    }

    async fn erase_marked(
        &self,
        project: &ProjectId,
        keys: &[TicketKey],
    ) -> Result<usize, TicketError> {
        let store = &self.deps.store;
        let mut leases = Vec::with_capacity(keys.len());
        for key in keys {
            let intent = crate::store::Erasure {
                project_id: key.project.clone(),
                slug: key.slug.clone(),
                requested_at: self.deps.clock.now(),
            };
            store.put_erasure(&intent).await?;
            // This and "ticket rows erased" are moments the crash tests
            // (tests/api/crash_erasure.rs) kill at.
            tracing::debug!(ticket = %key, "erasure intent stored");
            self.deps.views.remove(key);
            if let Some(actor) = self.deps.registry.running(key) {
                let _ = actor.send_message(TicketMsg::Erase);
            }
            // The actor holds the writer lease until the writes it took in are settled: once
            // it is free, nothing more is written to the ticket.
            leases.push(WriterLease::take(&self.deps, key).await?);
        }
        let slugs: Vec<Slug> = keys.iter().map(|k| k.slug.clone()).collect();
        let erased = store.erase_tickets(project, &slugs).await?;
        for key in keys {
            tracing::debug!(ticket = %key, "ticket rows erased");
        }
        for key in keys {
            store.delete_erasure(&key.project, &key.slug).await?;
        }
        drop(leases);
        for key in keys {
            if let Some(feed) = self.deps.feeds.sender(&key.project) {
                let payload =
                    crate::events::encode(&crate::events::TicketDeletedPayload { slug: &key.slug });
                let _ = feed.send(crate::events::envelope(
                    "ticket_deleted",
                    Some(&key.slug),
                    &payload,
                ));
            }
            tracing::info!(ticket = %key, "ticket erased");
        }
        Ok(erased)
    }

    /// Finishes the erasures a stopped server left unfinished; called on start, before the
    /// server serves anything. How many there were.
    pub async fn finish_erasures(&self) -> Result<usize, TicketError> {
        let pending = self.deps.store.pending_erasures().await?;
        for erasure in &pending {
            let key = TicketKey {
                project: erasure.project_id.clone(),
                slug: erasure.slug.clone(),
            };
            tracing::info!(ticket = %key, "finishing an erasure begun before the restart");
            self.erase_now(&key).await?;
        }
        Ok(pending.len())
    }
}
