//! Erasing a ticket on this node: the mark that makes it unknown to every request from the
//! first step, the stored intent that a restart finishes, the actor's last event to its
//! subscribers, and the store's erasure of every row carrying its words.

use super::{TicketError, TicketKey, TicketMsg, Tickets, WriterLease};

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
        self.deps.erasing.insert(key.clone(), ());
        let erased = self.erase_marked(key).await;
        self.deps.erasing.remove(key);
        erased
    }

    async fn erase_marked(&self, key: &TicketKey) -> Result<bool, TicketError> {
        let store = &self.deps.store;
        let intent = crate::store::Erasure {
            project_id: key.project.clone(),
            slug: key.slug.clone(),
            requested_at: self.deps.clock.now(),
        };
        store.put_erasure(&intent).await?;
        // This and the next are the moments the crash tests (tests/api/crash_erasure.rs) kill at.
        tracing::debug!(ticket = %key, "erasure intent stored");
        self.deps.views.remove(key);
        if let Some(actor) = self.deps.registry.running(key) {
            let _ = actor.send_message(TicketMsg::Erase);
        }
        // The actor holds the writer lease until the writes it took in are settled: once it
        // is free, nothing more is written to the ticket.
        let lease = WriterLease::take(&self.deps, key).await?;
        let existed = store.erase_ticket(&key.project, &key.slug).await?;
        tracing::debug!(ticket = %key, "ticket rows erased");
        store.delete_erasure(&key.project, &key.slug).await?;
        drop(lease);
        if let Some(feed) = self.deps.feeds.sender(&key.project) {
            let payload =
                crate::events::encode(&crate::events::TicketDeletedPayload { slug: &key.slug });
            let _ = feed.send(crate::events::envelope(
                "ticket_deleted",
                Some(&key.slug),
                &payload,
            ));
        }
        tracing::info!(ticket = %key, existed, "ticket erased");
        Ok(existed)
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
