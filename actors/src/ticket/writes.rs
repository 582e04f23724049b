//! `WriteQueue`: a ticket's writes on their way to the store, with what each caller is owed
//! once its write is durable.
//!
//! Writes go to the store in batches, one batch in flight at a time, so the store sees them in
//! the order they were queued. The store reports a batch's outcome from whichever thread learns
//! it; the outcome waits in a slot shared with the batch until the owner takes it, and a nudge
//! tells the owner to look. The outcome stays out of the nudge because an actor that is
//! stopping handles its stop before the messages queued ahead of it, and an outcome lost that
//! way would have it refuse callers whose writes landed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::store::{Done, StoreError, TicketWrite};

/// Writes in one batch at most.
pub const MAX_BATCH: usize = 256;

/// Roughly how many bytes a write takes in a ticket's log entry, with the event it tells.
pub fn weight(write: &TicketWrite) -> usize {
    match write {
        TicketWrite::Message(m) => 256 + 2 * m.content.as_str().len(),
        TicketWrite::Note(n) => 256 + 2 * n.content.as_str().len(),
        TicketWrite::Ticket(t) => 512 + t.title.as_str().len() + t.description.as_str().len(),
        TicketWrite::Delivery(d) => 256 + d.payload.len(),
        TicketWrite::ReadCursor { .. } => 256,
    }
}

/// The outcome of a batch: whether its writes are durable, and what their callers are owed.
pub struct Landed<E> {
    pub effects: Vec<E>,
    pub result: Result<(), StoreError>,
}

/// What [`WriteQueue::abandon`] gives up on.
pub struct Abandoned<E> {
    /// Requests with a write in a batch whose outcome never came: they may have been made.
    pub in_doubt: Vec<E>,
    /// Requests none of whose writes was handed to the store: certainly not made.
    pub unsent: Vec<E>,
}

pub struct WriteQueue<E> {
    /// What each queued request's caller is owed, oldest first, with the numbers of the
    /// request's first and last writes.
    owed: VecDeque<(u64, u64, E)>,
    /// Queued writes not yet handed to the store, oldest first, with their numbers.
    unsent: VecDeque<(u64, TicketWrite)>,
    next: u64,
    /// Writes handed to the store so far: every write numbered below this one.
    sent: u64,
    in_flight: bool,
    /// A batch failed: nothing more is sent.
    broken: bool,
    slot: Arc<Slot>,
}

/// Shared by the queue and its batch in flight.
struct Slot {
    /// The outcome of the batch in flight, with the number of its last write.
    outcome: Mutex<Option<(u64, Result<(), StoreError>)>>,
    nudge: Box<dyn Fn() + Send + Sync>,
    landed: tokio::sync::Notify,
    /// Dropped once the queue's owner and its last batch are both gone: for a ticket, the
    /// writer lease, which its next actor must take before it loads the ticket.
    _keep: Box<dyn Send + Sync>,
}

impl Slot {
    fn land(&self, through: u64, result: Result<(), StoreError>) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some((through, result));
        (self.nudge)();
        self.landed.notify_one();
    }
}

/// A batch's way back. A store that drops the callback without calling it (a panicking writer
/// thread, a cancelled task) reports a failure through it instead, so the queue never waits for
/// an outcome that cannot come.
struct Landing {
    slot: Option<Arc<Slot>>,
    through: u64,
}

impl Landing {
    fn land(mut self, result: Result<(), StoreError>) {
        if let Some(slot) = self.slot.take() {
            slot.land(self.through, result);
        }
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let lost =
                StoreError::Unavailable("the store dropped a batch without an outcome".into());
            slot.land(self.through, Err(lost));
        }
    }
}

impl<E> WriteQueue<E> {
    /// `nudge` is called, on the store's thread, whenever a batch's outcome is ready. `keep`
    /// is held until both the queue and its last batch are gone.
    pub fn new(nudge: impl Fn() + Send + Sync + 'static, keep: impl Send + Sync + 'static) -> Self {
        Self {
            owed: VecDeque::new(),
            unsent: VecDeque::new(),
            next: 0,
            sent: 0,
            in_flight: false,
            broken: false,
            slot: Arc::new(Slot {
                outcome: Mutex::default(),
                nudge: Box::new(nudge),
                landed: tokio::sync::Notify::new(),
                _keep: Box::new(keep),
            }),
        }
    }

    /// Queues `writes`, which land together or not at all as far as their caller is concerned:
    /// it is owed `effect` once the last of them is durable.
    pub fn push(&mut self, writes: impl IntoIterator<Item = TicketWrite>, effect: E) {
        let first = self.next;
        for write in writes {
            self.unsent.push_back((self.next, write));
            self.next += 1;
        }
        self.owed
            .push_back((first, self.next.saturating_sub(1), effect));
    }

    /// Writes queued and not yet settled.
    pub fn len(&self) -> usize {
        self.owed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owed.is_empty()
    }

    /// What the callers of the unsettled writes are owed, oldest first.
    pub fn queued(&self) -> impl DoubleEndedIterator<Item = &E> {
        self.owed.iter().map(|(_, _, e)| e)
    }

    /// The next batch to hand to the store, with the callback that reports its outcome:
    /// `None` while a batch is in flight, after a failure, or when nothing waits.
    #[cfg(test)]
    pub fn next_batch(&mut self) -> Option<(Vec<TicketWrite>, Done)> {
        self.next_batch_within(usize::MAX)
    }

    /// [`next_batch`](Self::next_batch), but no heavier than `budget` bytes by
    /// [`weight`] (always at least one write): a batch that travels in one NATS message must
    /// fit its size limit.
    pub fn next_batch_within(&mut self, budget: usize) -> Option<(Vec<TicketWrite>, Done)> {
        if self.in_flight || self.broken || self.unsent.is_empty() {
            return None;
        }
        let mut used = 0;
        let fits = self
            .unsent
            .iter()
            .take(MAX_BATCH)
            .take_while(|(_, w)| {
                used += weight(w);
                used <= budget
            })
            .count();
        let take = fits.max(1);
        let writes: Vec<(u64, TicketWrite)> = self.unsent.drain(..take).collect();
        let through = writes.last().map_or(0, |(n, _)| *n);
        self.sent = through + 1;
        self.in_flight = true;
        let landing = Landing {
            slot: Some(self.slot.clone()),
            through,
        };
        let done: Done = Box::new(move |result| landing.land(result));
        Some((writes.into_iter().map(|(_, w)| w).collect(), done))
    }

    /// The outcome of the batch in flight, once the store has reported it. After a failure
    /// nothing more is sent; the writes queued behind the failed batch stay owed, for
    /// [`abandon`](Self::abandon).
    pub fn take_outcome(&mut self) -> Option<Landed<E>> {
        let (through, result) = self
            .slot
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        self.in_flight = false;
        self.broken |= result.is_err();
        let settled = self
            .owed
            .iter()
            .take_while(|(_, n, _)| *n <= through)
            .count();
        let effects = self.owed.drain(..settled).map(|(_, _, e)| e).collect();
        Some(Landed { effects, result })
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Waits until a batch's outcome is in the slot, for an owner whose mailbox no longer
    /// takes the nudges (it is stopping).
    pub async fn landed(&self) {
        self.slot.landed.notified().await;
    }

    /// Gives up on every write not yet settled: they are never sent, and their callers are
    /// owed a refusal; told apart by whether any of a request's writes went to the store.
    pub fn abandon(&mut self) -> Abandoned<E> {
        self.unsent.clear();
        let (mut in_doubt, mut unsent) = (Vec::new(), Vec::new());
        for (first, _, effect) in self.owed.drain(..) {
            match first < self.sent {
                true => in_doubt.push(effect),
                false => unsent.push(effect),
            }
        }
        Abandoned { in_doubt, unsent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Participant;
    use crate::MessageId;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cursor() -> TicketWrite {
        TicketWrite::ReadCursor {
            reader: Participant::User,
            up_to: MessageId::MIN,
        }
    }

    fn queue() -> (WriteQueue<&'static str>, Arc<AtomicUsize>) {
        let nudges = Arc::new(AtomicUsize::new(0));
        let counted = nudges.clone();
        let q = WriteQueue::new(
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
            },
            (),
        );
        (q, nudges)
    }

    #[test]
    fn a_batch_stays_within_its_budget_and_a_request_split_over_two_is_settled_by_the_second() {
        let (mut q, _) = queue();
        let per = weight(&cursor());
        q.push([cursor(), cursor()], "a");
        q.push([cursor()], "b");
        let (writes, done) = q.next_batch_within(per).unwrap();
        assert_eq!(writes.len(), 1, "one write fits");
        done(Ok(()));
        let landed = q.take_outcome().unwrap();
        assert!(
            landed.effects.is_empty(),
            "half of a's writes is not a's answer"
        );
        let (writes, done) = q.next_batch_within(2 * per).unwrap();
        assert_eq!(writes.len(), 2);
        done(Ok(()));
        assert_eq!(q.take_outcome().unwrap().effects, ["a", "b"]);
        q.push([cursor()], "c");
        let (writes, _) = q.next_batch_within(1).unwrap();
        assert_eq!(
            writes.len(),
            1,
            "a write heavier than the budget still goes, alone"
        );
    }

    #[test]
    fn one_batch_is_in_flight_at_a_time_and_the_next_takes_what_queued_meanwhile() {
        let (mut q, nudges) = queue();
        q.push([cursor()], "a");
        let (writes, done) = q.next_batch().unwrap();
        assert_eq!(writes.len(), 1);
        q.push([cursor()], "b");
        q.push([cursor()], "c");
        assert!(q.next_batch().is_none(), "a batch is still in flight");
        assert!(q.take_outcome().is_none(), "nothing reported yet");

        done(Ok(()));
        assert_eq!(nudges.load(Ordering::SeqCst), 1);
        let landed = q.take_outcome().unwrap();
        assert!(landed.result.is_ok());
        assert_eq!(landed.effects, ["a"]);
        assert_eq!(q.queued().copied().collect::<Vec<_>>(), ["b", "c"]);

        let (writes, done) = q.next_batch().unwrap();
        assert_eq!(writes.len(), 2);
        done(Ok(()));
        assert_eq!(q.take_outcome().unwrap().effects, ["b", "c"]);
        assert!(q.is_empty() && q.next_batch().is_none());
    }

    #[test]
    fn batches_are_capped() {
        let (mut q, _) = queue();
        for _ in 0..MAX_BATCH + 10 {
            q.push([cursor()], "w");
        }
        let (writes, done) = q.next_batch().unwrap();
        assert_eq!(writes.len(), MAX_BATCH);
        done(Ok(()));
        assert_eq!(q.take_outcome().unwrap().effects.len(), MAX_BATCH);
        assert_eq!(q.next_batch().unwrap().0.len(), 10);
    }

    #[test]
    fn a_failed_batch_stops_the_queue_and_leaves_the_writes_behind_it_owed() {
        let (mut q, _) = queue();
        q.push([cursor()], "a");
        let (_, done) = q.next_batch().unwrap();
        q.push([cursor()], "b");
        done(Err(StoreError::Unavailable("disk".into())));
        let landed = q.take_outcome().unwrap();
        assert!(landed.result.is_err());
        assert_eq!(landed.effects, ["a"]);
        assert!(q.is_broken());
        assert!(q.next_batch().is_none(), "nothing is sent after a failure");
        let abandoned = q.abandon();
        assert_eq!(abandoned.unsent, ["b"], "b was never sent");
        assert!(abandoned.in_doubt.is_empty());
        assert!(q.is_empty());
    }

    #[test]
    fn what_is_abandoned_is_told_apart_by_whether_any_of_it_was_sent() {
        let (mut q, _) = queue();
        let per = weight(&cursor());
        q.push([cursor()], "landed");
        q.push([cursor(), cursor()], "split");
        q.push([cursor()], "in flight");
        q.push([cursor()], "unsent");
        let (_, done) = q.next_batch_within(2 * per).unwrap();
        done(Ok(()));
        assert_eq!(q.take_outcome().unwrap().effects, ["landed"]);
        // Half of "split" is durable; its other half goes out with "in flight", whose
        // outcome never comes.
        let (writes, _lost) = q.next_batch_within(2 * per).unwrap();
        assert_eq!(writes.len(), 2);
        let abandoned = q.abandon();
        assert_eq!(abandoned.in_doubt, ["split", "in flight"]);
        assert_eq!(abandoned.unsent, ["unsent"]);
    }

    #[test]
    fn a_callback_dropped_unanswered_reports_a_failure() {
        let (mut q, nudges) = queue();
        q.push([cursor()], "a");
        let (_, done) = q.next_batch().unwrap();
        drop(done);
        assert_eq!(nudges.load(Ordering::SeqCst), 1);
        let landed = q.take_outcome().unwrap();
        assert!(matches!(landed.result, Err(StoreError::Unavailable(_))));
    }

    #[test]
    fn what_is_kept_goes_only_when_the_queue_and_its_batch_in_flight_are_both_gone() {
        let kept = Arc::new(());
        let mut q: WriteQueue<()> = WriteQueue::new(|| {}, kept.clone());
        q.push([cursor()], ());
        let (_, done) = q.next_batch().unwrap();
        drop(q);
        assert_eq!(
            Arc::strong_count(&kept),
            2,
            "the batch in flight still holds it"
        );
        done(Ok(()));
        assert_eq!(Arc::strong_count(&kept), 1);
    }

    #[tokio::test]
    async fn an_owner_that_no_longer_takes_nudges_can_wait_for_the_outcome() {
        let (mut q, _) = queue();
        q.push([cursor()], "a");
        let (_, done) = q.next_batch().unwrap();
        std::thread::spawn(move || done(Ok(())));
        q.landed().await;
        assert_eq!(q.take_outcome().unwrap().effects, ["a"]);
    }
}
