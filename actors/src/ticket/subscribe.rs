//! Subscribing to a ticket's realtime events, in one body on one node and on several.
//!
//! A subscriber listens first and then learns where the ticket stands (a [`Snapshot`]), so
//! whatever is told from then on reaches it, and its replay covers what came before: the
//! messages after the client's `since`, and (several nodes) the entries of the ticket's log
//! that this node may have told before it listened. On one node the actor itself is what the
//! subscriber listens to, and joining it and the snapshot are one step, so that last source
//! is empty.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::change::message_event;
use super::subscribers::{CutOff, Event, Queue};
use super::{Command, TicketError, TicketKey, TicketMsg, Tickets};
use crate::domain::ReadCursor;
use crate::message_id::MessageId;
use crate::store::MessageRange;

/// Messages replayed to one socket at most; a client further behind reloads with GET.
pub const MAX_REPLAY: usize = 1000;

/// What a subscriber gets back from [`Tickets::subscribe`].
pub struct Subscription {
    /// The `subscribed` frame to send first.
    pub subscribed: Bytes,
    /// Messages missed since `since`, to send before live events.
    pub replay: Replay,
    /// Live events. The channel closes when the actor stops or cuts this subscriber off.
    pub events: Queue,
    /// Tripped when the actor cuts this subscriber off for falling behind.
    pub cut_off: Arc<CutOff>,
    /// The newest durable message when the subscription began: live events come after it.
    pub last_message_id: Option<MessageId>,
    /// Live events from log entries up to this position are in the replay already (several
    /// nodes); 0 otherwise.
    pub skip_through: u64,
}

pub enum Replay {
    Ready(Vec<Event>),
    /// Older than the actor keeps in memory: read from the store by a spawned task.
    Loading(oneshot::Receiver<Result<Vec<Event>, TicketError>>),
}

/// Where a new subscriber starts: the ticket as its owner holds it. With several nodes it is
/// the answer to [`Command::Position`], from whichever node owns the ticket.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// The `subscribed` frame. Between nodes, the frame's JSON as it is.
    #[serde(with = "json_bytes")]
    pub subscribed: Bytes,
    pub last_message_id: Option<MessageId>,
    /// For the replayed messages' `read_by`.
    pub cursors: Vec<ReadCursor>,
    /// The position in the ticket's log that all this is complete up to: the store has every
    /// message up to `last_message_id`, and later events come from the log (0 on one node).
    pub through: u64,
}

/// What a new subscriber gets from the ticket's actor on one node, where listening and the
/// snapshot are one step.
pub struct Joined {
    pub events: Queue,
    pub cut_off: Arc<CutOff>,
    pub start: Snapshot,
    /// The messages missed since `since`, when the actor holds them all in memory.
    pub held: Option<Vec<Event>>,
}

impl Tickets {
    /// Joins the ticket's realtime events, replaying the messages after `since`.
    pub async fn subscribe(
        &self,
        key: &TicketKey,
        since: Option<MessageId>,
    ) -> Result<Subscription, TicketError> {
        let Joined {
            events,
            cut_off,
            start,
            held,
        } = match self.deps.cluster {
            None => {
                let join = |reply| TicketMsg::Subscribe { since, reply };
                self.call(key, join).await?
            }
            // This node's watchers of the ticket hear its log, wherever its actor runs.
            Some(_) => {
                let (events, cut_off) = self.deps.watchers.add(key);
                let start = self.run(key, Command::Position).await?.into_snapshot()?;
                Joined {
                    events,
                    cut_off,
                    start,
                    held: None,
                }
            }
        };
        let replay = match held {
            Some(missed) => Replay::Ready(missed),
            None => self.missed_messages(key, since, &start),
        };
        let (caught_up, skip_through) = self.catch_up(key, start.through).await?;
        let replay = match (replay, caught_up.is_empty()) {
            (replay, true) => replay,
            (Replay::Ready(mut missed), false) => {
                missed.extend(caught_up);
                Replay::Ready(missed)
            }
            (Replay::Loading(loading), false) => {
                let (tx, rx) = oneshot::channel();
                tokio::spawn(async move {
                    let missed = loading.await.unwrap_or_else(|_| {
                        Err(TicketError::Unavailable("the replay was lost".into()))
                    });
                    let _ = tx.send(missed.map(|mut missed| {
                        missed.extend(caught_up);
                        missed
                    }));
                });
                Replay::Loading(rx)
            }
        };
        Ok(Subscription {
            subscribed: start.subscribed,
            replay,
            events,
            cut_off,
            last_message_id: start.last_message_id,
            skip_through,
        })
    }

    /// The events of the ticket's log entries after position `through`, which this node may
    /// have told before the subscriber listened, and the position they reach: live events up
    /// to there are in the replay. None on one node, where nothing is told between joining and
    /// the snapshot.
    async fn catch_up(
        &self,
        key: &TicketKey,
        through: u64,
    ) -> Result<(Vec<Event>, u64), TicketError> {
        let Some(cluster) = &self.deps.cluster else {
            return Ok((Vec::new(), through));
        };
        let (mut events, mut skip_through) = (Vec::new(), through);
        for entry in cluster.missed(key, through).await? {
            skip_through = skip_through.max(entry.seq);
            let told = entry.events.iter().filter(|e| !e.agents_only);
            events.extend(told.map(|e| Event {
                frame: crate::events::envelope(&e.kind, None, e.payload()),
                message_id: e.message_id,
                seq: Some(entry.seq),
            }));
        }
        Ok((events, skip_through))
    }

    /// The messages after `since` up to the start's newest (everything durable when the
    /// subscriber joined; what follows arrives live), read from the store by a spawned task, so
    /// neither the actor's mailbox nor the subscriber's answer waits on it.
    fn missed_messages(
        &self,
        key: &TicketKey,
        since: Option<MessageId>,
        start: &Snapshot,
    ) -> Replay {
        let last = start.last_message_id;
        let Some(since) = since.filter(|since| last.is_some_and(|l| *since < l)) else {
            return Replay::Ready(Vec::new());
        };
        let (tx, rx) = oneshot::channel();
        let (store, key, cursors) = (self.deps.store.clone(), key.clone(), start.cursors.clone());
        tokio::spawn(async move {
            let range = MessageRange {
                after: Some(since),
                before: last.map(MessageId::bound_after),
                limit: MAX_REPLAY + 1,
                newest: false,
            };
            let read = store.list_messages(&key.project, &key.slug, range);
            let result = match read.await {
                Ok(msgs) if msgs.len() > MAX_REPLAY => Err(TicketError::TooFarBehind),
                Ok(msgs) => Ok(msgs
                    .iter()
                    .filter(|m| last.is_some_and(|l| m.id <= l))
                    .map(|m| message_event(m, &cursors))
                    .collect()),
                Err(e) => Err(TicketError::from(e)),
            };
            let _ = tx.send(result);
        });
        Replay::Loading(rx)
    }
}

/// The ticket's `subscribed` frame for a subscriber that starts at the newest message `last`.
pub(super) fn subscribed_frame(
    key: &TicketKey,
    status: crate::domain::TicketStatus,
    last: Option<MessageId>,
) -> Bytes {
    crate::events::event_frame(
        "subscribed",
        None,
        crate::events::SubscribedPayload {
            project_id: key.project.as_str(),
            slug: &key.slug,
            status,
            last_message_id: last,
        },
    )
}

/// Encoded JSON as a raw value; what the event encoders produce is always valid JSON.
pub(super) fn raw(json: Bytes) -> Box<RawValue> {
    let text = String::from_utf8(json.to_vec()).unwrap_or_else(|_| "null".into());
    RawValue::from_string(text).unwrap_or_else(|_| null())
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// Encoded JSON carried between nodes as the JSON it is, not as a string.
mod json_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(json: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        super::raw(json.clone()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(Bytes::copy_from_slice(raw.get().as_bytes()))
    }
}
