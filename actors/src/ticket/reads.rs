//! Reading a ticket: its view (the whole ticket as JSON, or a page of its messages), from the
//! actor's memory where it can, from the store where it cannot.
//!
//! A live ticket's actor keeps its newest messages ([`Recent`]) and the encoded JSON of the
//! whole ticket, which it also leaves in a shared map that [`Tickets::view`] reads without a
//! trip through the mailbox; the actor removes it before it acknowledges any change. Store
//! reads run in spawned tasks that answer directly, so the mailbox never waits on I/O.

use std::collections::VecDeque;

use bytes::Bytes;
use ractor::RpcReplyPort;

use super::actor::TicketState;
use super::change::message_event;
use super::subscribers::Event;
use super::{TicketError, TicketKey, TicketMsg, Tickets};
use crate::domain::{Message, ReadCursor, Ticket};
use crate::events::TicketView;
use crate::message_id::MessageId;
use crate::store::MessageRange;

/// Messages in a GET without paging at most: the newest ones, with `next_before` for the rest.
pub const MAX_UNPAGED: usize = 1000;

/// A page of a ticket's messages: the newest `limit` before `before`.
#[derive(Debug, Clone, Copy)]
pub struct MessagePage {
    pub limit: usize,
    pub before: Option<MessageId>,
}

/// The newest durable messages, oldest first; every message of the ticket when `complete`.
pub struct Recent {
    pub messages: VecDeque<Message>,
    pub complete: bool,
    pub cap: usize,
}

impl Recent {
    pub fn push(&mut self, message: Message) {
        self.messages.push_back(message);
        if self.messages.len() > self.cap {
            self.messages.pop_front();
            self.complete = false;
        }
    }

    pub fn last_id(&self) -> Option<MessageId> {
        self.messages.back().map(|m| m.id)
    }

    /// Whether every message after `since` is in memory.
    fn holds_after(&self, since: MessageId) -> bool {
        self.complete || self.messages.front().is_some_and(|m| m.id <= since)
    }
}

impl Tickets {
    /// The ticket as JSON, whole or one page. The whole view comes from the shared cache when
    /// the actor has it encoded and nothing changed since, without a trip through the actor's
    /// mailbox.
    pub async fn view(
        &self,
        key: &TicketKey,
        page: Option<MessagePage>,
    ) -> Result<Bytes, TicketError> {
        if self.erasing(key) {
            return Err(TicketError::NotFound);
        }
        if self.deps.cluster.is_none() {
            if let Some(view) = page.is_none().then(|| self.deps.views.get(key)).flatten() {
                return Ok(view.value().clone());
            }
            return self.call(key, |reply| TicketMsg::Get { page, reply }).await;
        }
        // Several nodes: the actor here answers while it holds the ticket; otherwise the store,
        // which has every acknowledged write (and a view can be too large to forward).
        if self.deps.registry.running(key).is_some() {
            match self.call(key, |reply| TicketMsg::Get { page, reply }).await {
                Err(TicketError::Moved | TicketError::Elsewhere(_)) => {}
                answer => return answer,
            }
        }
        self.stored_view(key, page).await
    }

    /// The ticket as the store has it, whole or one page.
    async fn stored_view(
        &self,
        key: &TicketKey,
        page: Option<MessagePage>,
    ) -> Result<Bytes, TicketError> {
        let store = &self.deps.store;
        let limit = page.map_or(MAX_UNPAGED, |p| p.limit);
        let range = MessageRange {
            after: None,
            before: page.and_then(|p| p.before),
            limit: limit + 1,
            newest: true,
        };
        let (ticket, cursors, messages) = tokio::try_join!(
            store.get_ticket(&key.project, &key.slug),
            store.read_cursors(&key.project, &key.slug),
            store.list_messages(&key.project, &key.slug, range),
        )?;
        let ticket = ticket.ok_or(TicketError::NotFound)?;
        Ok(page_view(&ticket, &cursors, messages, limit))
    }
}

impl TicketState {
    /// Answers [`TicketMsg::Get`].
    pub fn get(
        &mut self,
        page: Option<MessagePage>,
        reply: RpcReplyPort<Result<Bytes, TicketError>>,
    ) {
        if !self.durability.current() {
            // Another node may have changed the ticket since: it answers now.
            return drop(reply.send(Err(TicketError::Moved)));
        }
        if page.is_none() && self.recent.complete {
            let _ = reply.send(Ok(self.full_view()));
        } else {
            self.read_page(page, reply);
        }
    }

    fn full_view(&mut self) -> Bytes {
        if let Some(cached) = &self.view_cache {
            return cached.clone();
        }
        let messages = self.recent.messages.iter();
        let bytes = TicketView::new(&self.ticket, messages, &self.cursors).to_bytes();
        self.view_cache = Some(bytes.clone());
        self.deps.views.insert(self.key.clone(), bytes.clone());
        bytes
    }

    /// Drops the encoded view, here and in the shared read cache; before any change is
    /// acknowledged.
    pub fn forget_view(&mut self) {
        if self.view_cache.take().is_some() {
            self.deps.views.remove(&self.key);
        }
    }

    /// The messages after `since`, when every one of them is in memory (`Some` of none when
    /// nothing was missed); `None` when some must be read from the store.
    pub fn held_since(&self, since: Option<MessageId>) -> Option<Vec<Event>> {
        let last = self.recent.last_id();
        let Some(since) = since.filter(|s| last.is_some_and(|l| *s < l)) else {
            return Some(Vec::new());
        };
        self.recent.holds_after(since).then(|| {
            let missed = self.recent.messages.iter().filter(|m| m.id > since);
            missed.map(|m| message_event(m, &self.cursors)).collect()
        })
    }

    /// Answers a GET that the in-memory messages cannot: a page, or a ticket longer than the
    /// cache. The store is read by a spawned task, so the mailbox never waits on it.
    fn read_page(
        &self,
        page: Option<MessagePage>,
        reply: RpcReplyPort<Result<Bytes, TicketError>>,
    ) {
        let (deps, key) = (self.deps.clone(), self.key.clone());
        let (ticket, cursors) = (self.ticket.clone(), self.cursors.clone());
        // Only durable messages are visible: cap the read at the newest one the actor applied.
        let newest_durable = self.recent.last_id();
        tokio::spawn(async move {
            let limit = page.map_or(MAX_UNPAGED, |p| p.limit);
            // Read below the first id after the newest durable one, so a batch committed but
            // not yet applied by the actor can neither show nor shorten the page.
            let before = page
                .and_then(|p| p.before)
                .or(newest_durable.map(MessageId::bound_after));
            let result = match newest_durable {
                None => Ok(Vec::new()),
                Some(_) => {
                    let range = MessageRange {
                        after: None,
                        before,
                        limit: limit + 1,
                        newest: true,
                    };
                    deps.store
                        .list_messages(&key.project, &key.slug, range)
                        .await
                }
            };
            let view = result.map_err(TicketError::from).map(|mut msgs| {
                msgs.retain(|m| newest_durable.is_some_and(|n| m.id <= n));
                page_view(&ticket, &cursors, msgs, limit)
            });
            let _ = reply.send(view);
        });
    }
}

/// A page of the ticket from the newest `limit + 1` messages read, oldest first: the newest
/// `limit`, with `next_before` when there are more.
pub(crate) fn page_view(
    ticket: &Ticket,
    cursors: &[ReadCursor],
    mut messages: Vec<Message>,
    limit: usize,
) -> Bytes {
    let more = messages.len() > limit;
    if more {
        messages.remove(0);
    }
    let mut view = TicketView::new(ticket, messages.iter(), cursors);
    if more {
        view.next_before = messages.first().map(|m| m.id);
    }
    view.to_bytes()
}
