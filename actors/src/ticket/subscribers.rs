//! A ticket's realtime subscribers (its open WebSockets) and how an event reaches them.
//!
//! Each subscriber has a bounded queue of shared events. An event is offered to every queue
//! without waiting: a subscriber whose queue is full is not reading, and it is dropped on the
//! spot and told so through its [`CutOff`], rather than allowed to slow the ticket or the other
//! subscribers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::message_id::MessageId;

/// One realtime event, encoded once and shared by all subscribers.
#[derive(Clone, Debug)]
pub struct Event {
    pub frame: Bytes,
    /// For `new_message` events: lets a subscriber resume with `since=` after a reconnect.
    pub message_id: Option<MessageId>,
    /// With several nodes: the position in the ticket's log of the entry the event came from,
    /// so a subscriber can skip what its replay already covered.
    pub seq: Option<u64>,
}

/// The ticket's word to one subscriber that it fell behind and was dropped. A socket task that
/// is stuck writing to a peer that does not read must hear it without first draining its
/// queue, so it can be awaited as well as read.
#[derive(Debug, Default)]
pub struct CutOff {
    cut: AtomicBool,
    notify: tokio::sync::Notify,
}

impl CutOff {
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        // A permit is kept when nobody waits yet, so a later `cut_off()` returns at once.
        self.notify.notify_one();
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Returns once the subscriber has been cut off. One waiter at a time.
    pub async fn cut_off(&self) {
        if self.is_cut() {
            return;
        }
        self.notify.notified().await;
    }
}

/// A subscriber's end of its queue. The queue holds pointers, not events: a tokio channel
/// allocates its first block of 32 slots when it is made, and at an event's 72 bytes that block
/// was the largest part of an idle socket's memory after its task.
pub type Queue = mpsc::Receiver<Arc<Event>>;

struct Subscriber {
    tx: mpsc::Sender<Arc<Event>>,
    cut_off: Arc<CutOff>,
}

pub struct Subscribers {
    list: Vec<Subscriber>,
    /// Events buffered per subscriber before it counts as too slow.
    queue: usize,
}

impl Subscribers {
    pub fn new(queue: usize) -> Self {
        Self {
            list: Vec::new(),
            queue,
        }
    }

    /// A new subscriber: its queue of events, and the word it gets if it is cut off.
    pub fn add(&mut self) -> (Queue, Arc<CutOff>) {
        let (tx, rx) = mpsc::channel(self.queue);
        let cut_off = Arc::new(CutOff::default());
        self.list.push(Subscriber {
            tx,
            cut_off: cut_off.clone(),
        });
        (rx, cut_off)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.list.len()
    }

    /// Forgets subscribers whose socket has gone.
    pub fn prune(&mut self) {
        self.list.retain(|s| !s.tx.is_closed());
    }

    /// Offers `event` to every subscriber, cutting off those that are not keeping up. Returns
    /// how many were cut off.
    pub fn offer(&mut self, event: Event) -> usize {
        let before = self.list.len();
        if before == 0 {
            return 0;
        }
        let event = Arc::new(event);
        let mut cut = 0;
        self.list.retain(|s| match s.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                s.cut_off.cut();
                cut += 1;
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        metrics::counter!("fleety_events_fanned_out_total").increment(before as u64);
        if cut > 0 {
            metrics::counter!("fleety_slow_subscribers_cut_total").increment(cut as u64);
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u8) -> Event {
        Event {
            frame: Bytes::from(vec![n]),
            message_id: None,
            seq: None,
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_does_not_read_is_cut_off_and_the_others_keep_everything() {
        let mut subs = Subscribers::new(2);
        let (mut reader, _) = subs.add();
        let (_idle, idle_cut) = subs.add();
        let mut got = Vec::new();
        for n in 0..5 {
            let cut = subs.offer(event(n));
            assert_eq!(
                cut,
                usize::from(n == 2),
                "the idle one is cut once its queue is full"
            );
            got.push(reader.recv().await.unwrap().frame[0]);
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(subs.len(), 1);
        assert!(idle_cut.is_cut());
        // The cut is heard even by a task that starts waiting afterwards.
        idle_cut.cut_off().await;
    }

    #[test]
    fn subscribers_whose_socket_closed_are_forgotten() {
        let mut subs = Subscribers::new(4);
        let (gone, cut) = subs.add();
        let (_kept, _) = subs.add();
        drop(gone);
        subs.prune();
        assert_eq!(subs.len(), 1);
        assert!(!cut.is_cut(), "leaving is not being cut off");
    }
}
