//! Several nodes: [`Logged`], the durability of a ticket whose batches go to the ticket's log
//! before the store. A batch travels with the events it tells, rendered against the state
//! every earlier batch left (one batch is in flight at a time, so that state is the actor's),
//! and every node's subscribers hear them from the log. See [`super::cluster`] for the model.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::change::{self, Told};
use super::cluster::{Claim, LogBatch, LogEvent};
use super::durability::{Before, Durability, Stored};
use super::writes::Landing;
use super::{TicketError, TicketKey};
use crate::store::{StoreError, TicketStore, TicketWrite};

/// A ticket log entry's writes weigh this much at most (by [`weight`]), so an entry stays well
/// under NATS' default message size limit of 1 MiB.
pub const LOG_BATCH_BUDGET: usize = 256 * 1024;

/// Roughly how many bytes a write takes in a ticket's log entry, with the event it tells.
pub fn weight(write: &TicketWrite) -> usize {
    match write {
        TicketWrite::Message(m) => 256 + 2 * m.content.as_str().len(),
        TicketWrite::Note(n) => 256 + 2 * n.content.as_str().len(),
        TicketWrite::Activity(_) => 512,
        TicketWrite::Ticket(t) => 512 + t.text_len(),
        TicketWrite::Delivery(d) => 256 + d.payload.len(),
        TicketWrite::ReadCursor { .. } => 256,
        TicketWrite::Audit(r) => 512 + r.changes.to_string().len(),
    }
}

/// This node's hold on the ticket, through which every batch is appended to the ticket's log
/// before it goes to the store.
pub struct Logged {
    claim: Arc<dyn Claim>,
    store: Arc<dyn TicketStore>,
}

impl Logged {
    pub fn new(claim: Arc<dyn Claim>, store: Arc<dyn TicketStore>) -> Self {
        Logged { claim, store }
    }
}

impl Durability for Logged {
    fn persist(
        &self,
        key: &TicketKey,
        writes: Vec<TicketWrite>,
        before: Before<'_>,
        landing: Landing,
    ) {
        let events = change::told(&writes, before.ticket, before.cursors, before.now);
        let batch = LogBatch {
            writes,
            events: events.into_iter().map(into_log).collect(),
        };
        let (claim, store, key) = (self.claim.clone(), self.store.clone(), key.clone());
        tokio::spawn(async move {
            let outcome = match claim.append(&batch).await {
                Ok(seq) => store_committed(store, &key, batch.writes)
                    .await
                    .map(|()| Stored::Logged(seq)),
                Err(e) => Err(e),
            };
            // The claim goes before the writer lease that the landing may hold last.
            drop(claim);
            landing.land(outcome.map_err(|e| match e {
                // Refused by the ticket's log: another node owns the ticket now, and none of
                // these writes was made.
                StoreError::Conflict => TicketError::Moved,
                e => TicketError::from(e),
            }));
        });
    }

    fn weigh(&self, write: &TicketWrite) -> usize {
        weight(write)
    }

    fn budget(&self) -> usize {
        LOG_BATCH_BUDGET
    }

    fn current(&self) -> bool {
        !self.claim.lost()
    }

    /// A lease that only lapsed, unconfirmed while the leases' bucket did not answer, keeps
    /// its actor: nobody could take the lease then, and the log decides every write.
    fn taken(&self) -> bool {
        self.claim.taken()
    }

    /// Writes the actor never sent were certainly not made: their callers send them on, to
    /// the ticket's next actor, here or on its new owner.
    fn not_carried_out(&self) -> TicketError {
        TicketError::Moved
    }

    fn start(&self) -> u64 {
        self.claim.last()
    }
}

fn into_log(told: Told) -> LogEvent {
    if told.agents_only {
        LogEvent::for_agents(told.kind, told.payload)
    } else {
        LogEvent::new(told.kind, told.payload, told.message_id)
    }
}

/// Writes a batch the ticket's log already holds to the store. The log took it, so it will
/// reach the store whatever happens (the next owner writes the log's last entry again); a
/// failure is retried a few times before the callers hear of it, since an error answer for a
/// write that then lands invites a retry that doubles it.
async fn store_committed(
    store: Arc<dyn TicketStore>,
    key: &TicketKey,
    writes: Vec<TicketWrite>,
) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        let (tx, rx) = oneshot::channel();
        let done = Box::new(move |result| drop(tx.send(result)));
        let (project, slug) = (key.project.clone(), key.slug.clone());
        store.clone().submit(project, slug, writes.clone(), done);
        let result = rx
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the store lost a batch".into())));
        match result {
            Err(StoreError::Unavailable(_)) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            result => return result,
        }
    }
}
