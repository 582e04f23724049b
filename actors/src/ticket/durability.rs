//! Where a ticket's batches become durable: the [`Durability`] its actor hands each batch to,
//! and [`Local`], the store of this node. With several nodes a batch goes to the ticket's log
//! first ([`Logged`](super::logged::Logged), chosen at activation by [`for_ticket`]); the actor
//! does not know which it has.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::logged::Logged;
use super::writes::Landing;
use super::{Placement, TicketDeps, TicketError, TicketKey};
use crate::domain::{ReadCursor, Ticket};
use crate::store::{Done, TicketStore, TicketWrite};

/// What became of a batch. Comes back to the actor in
/// [`TicketMsg::Persisted`](super::TicketMsg::Persisted).
pub type Outcome = Result<Stored, TicketError>;

/// A batch that became durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// In the store: its events are the actor's to tell.
    Here,
    /// In the ticket's log, at this position, and then in the store: the log told its events
    /// to every node.
    Logged(u64),
}

/// The ticket as the batches before this one left it: what the batch's events are rendered
/// against.
pub struct Before<'a> {
    pub ticket: &'a Ticket,
    pub cursors: &'a [ReadCursor],
    pub now: DateTime<Utc>,
}

/// Makes a ticket's batches durable, one at a time, in the order the actor sends them.
pub trait Durability: Send + Sync + 'static {
    /// Makes `writes` durable, in order, and reports the outcome on `landing`.
    fn persist(
        &self,
        key: &TicketKey,
        writes: Vec<TicketWrite>,
        before: Before<'_>,
        landing: Landing,
    );

    /// How much of a batch one write weighs, against [`budget`](Durability::budget).
    fn weigh(&self, _write: &TicketWrite) -> usize {
        0
    }

    /// The most one batch may weigh; a write heavier than that still goes, alone.
    fn budget(&self) -> usize {
        usize::MAX
    }

    /// Whether the actor's memory of the ticket is surely the newest: false once another node
    /// may have changed it, when reads are answered elsewhere.
    fn current(&self) -> bool {
        true
    }

    /// Whether another node has taken the ticket: the actor leaves.
    fn taken(&self) -> bool {
        false
    }

    /// What a request is answered whose writes the actor never sent because it stops.
    fn not_carried_out(&self) -> TicketError {
        TicketError::Unavailable("ticket is restarting".into())
    }

    /// The position of the ticket's log the actor's state starts at (0 without a log).
    fn start(&self) -> u64 {
        0
    }
}

/// One node: the store is the whole of it.
pub struct Local {
    pub store: Arc<dyn TicketStore>,
}

impl Durability for Local {
    fn persist(&self, key: &TicketKey, writes: Vec<TicketWrite>, _: Before<'_>, landing: Landing) {
        let done: Done = Box::new(move |result| {
            landing.land(result.map(|()| Stored::Here).map_err(TicketError::from))
        });
        let store = self.store.clone();
        store.submit(key.project.clone(), key.slug.clone(), writes, done);
    }
}

/// The durability of a ticket about to be activated on this node: the store, or with several
/// nodes the ticket's log once this node holds the ticket's lease ([`TicketError::Elsewhere`]
/// when another node does).
pub async fn for_ticket(
    deps: &TicketDeps,
    key: &TicketKey,
) -> Result<Arc<dyn Durability>, TicketError> {
    let store = deps.store.clone();
    let Some(cluster) = &deps.cluster else {
        return Ok(Arc::new(Local { store }));
    };
    match cluster.place(key).await? {
        Placement::Here(claim) => Ok(Arc::new(Logged::new(claim, store))),
        Placement::There(node) => Err(TicketError::Elsewhere(node)),
    }
}
