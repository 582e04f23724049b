//! `WriteQueue`: a ticket's writes on their way to durability, with what each caller is owed
//! once its write is durable.
//!
//! Writes go out in batches, one batch in flight at a time, so they become durable in the order
//! they were queued. A batch's outcome comes back through its [`Landing`], from whichever
//! thread learns it, as a message to the queue's owner that carries it. An owner that stops
//! no longer takes messages (ractor handles a stop before the messages queued ahead of it, and
//! refuses messages sent while it drains), so each batch's landing also keeps the outcome for
//! [`WriteQueue::land_in_flight`], which the stopping owner awaits instead.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::durability::Outcome;
use super::TicketError;
use crate::store::TicketWrite;

/// Writes in one batch at most.
pub const MAX_BATCH: usize = 256;

/// A batch that has its outcome: whether its writes are durable, what the callers whose
/// writes it completed are owed, and its writes that change the ticket's state (every write
/// but webhook deliveries), for the owner to apply.
pub struct Settled<E> {
    pub effects: Vec<E>,
    pub outcome: Outcome,
    pub changes: Vec<TicketWrite>,
}

/// What [`WriteQueue::abandon`] gives up on.
pub struct Abandoned<E> {
    /// Requests with a write in a batch whose outcome never came: they may have been made.
    pub in_doubt: Vec<E>,
    /// Requests none of whose writes was handed over: certainly not made.
    pub unsent: Vec<E>,
}

pub struct WriteQueue<E> {
    /// What each queued request's caller is owed, oldest first, with the numbers of the
    /// request's first and last writes.
    owed: VecDeque<(u64, u64, E)>,
    /// Queued writes not yet handed over, oldest first, with their numbers.
    unsent: VecDeque<(u64, TicketWrite)>,
    next: u64,
    /// Writes handed over so far: every write numbered below this one.
    sent: u64,
    in_flight: Option<InFlight>,
    /// A batch failed: nothing more is sent.
    broken: bool,
    back: Arc<Back>,
}

/// The batch in flight.
struct InFlight {
    /// The number of its last write: what its outcome names.
    through: u64,
    /// Its outcome, for an owner that no longer takes messages.
    outcome: oneshot::Receiver<Outcome>,
    changes: Vec<TicketWrite>,
}

/// Shared by the queue and its batch in flight.
struct Back {
    /// Sends a batch's outcome to the queue's owner, named by the number of its last write.
    send: Box<dyn Fn(u64, Outcome) + Send + Sync>,
    /// Dropped once the queue's owner and its last batch are both gone: for a ticket, the
    /// writer lease, which its next actor must take before it loads the ticket.
    _keep: Box<dyn Send + Sync>,
}

/// A batch's way back. Called once, from any thread. A durability that drops it without
/// calling it (a panicking store thread, a cancelled task) reports a failure through it
/// instead, so the queue never waits for an outcome that cannot come.
pub struct Landing {
    back: Option<Arc<Back>>,
    direct: Option<oneshot::Sender<Outcome>>,
    through: u64,
}

impl Landing {
    pub fn land(mut self, outcome: Outcome) {
        self.deliver(outcome);
    }

    fn deliver(&mut self, outcome: Outcome) {
        if let (Some(back), Some(direct)) = (self.back.take(), self.direct.take()) {
            let _ = direct.send(outcome.clone());
            (back.send)(self.through, outcome);
        }
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        let lost = "the store dropped a batch without an outcome";
        self.deliver(Err(TicketError::Unavailable(lost.into())));
    }
}

impl<E> WriteQueue<E> {
    /// `back` sends a batch's outcome to the queue's owner, which hands it to
    /// [`settle`](Self::settle). `keep` is held until both the queue and its last batch are
    /// gone.
    pub fn new(
        back: impl Fn(u64, Outcome) + Send + Sync + 'static,
        keep: impl Send + Sync + 'static,
    ) -> Self {
        Self {
            owed: VecDeque::new(),
            unsent: VecDeque::new(),
            next: 0,
            sent: 0,
            in_flight: None,
            broken: false,
            back: Arc::new(Back {
                send: Box::new(back),
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

    /// The next batch to hand over, with the landing that brings its outcome back: `None`
    /// while a batch is in flight, after a failure, or when nothing waits. The batch weighs
    /// no more than `budget` by `weigh` (one write heavier than that still goes, alone).
    pub fn next_batch_within(
        &mut self,
        budget: usize,
        weigh: impl Fn(&TicketWrite) -> usize,
    ) -> Option<(Vec<TicketWrite>, Landing)> {
        if self.in_flight.is_some() || self.broken || self.unsent.is_empty() {
            return None;
        }
        let mut used = 0;
        let fits = self
            .unsent
            .iter()
            .take(MAX_BATCH)
            .take_while(|(_, w)| {
                used += weigh(w);
                used <= budget
            })
            .count();
        let take = fits.max(1);
        let numbered: Vec<(u64, TicketWrite)> = self.unsent.drain(..take).collect();
        let through = numbered.last().map_or(0, |(n, _)| *n);
        self.sent = through + 1;
        let writes: Vec<TicketWrite> = numbered.into_iter().map(|(_, w)| w).collect();
        let (direct, outcome) = oneshot::channel();
        let changes = writes
            .iter()
            .filter(|w| !matches!(w, TicketWrite::Delivery(_) | TicketWrite::Audit(_)))
            .cloned()
            .collect();
        self.in_flight = Some(InFlight {
            through,
            outcome,
            changes,
        });
        let landing = Landing {
            back: Some(self.back.clone()),
            direct: Some(direct),
            through,
        };
        Some((writes, landing))
    }

    /// Settles the batch in flight with the outcome its landing sent (`through` names it).
    /// After a failure nothing more is sent; the writes queued behind the failed batch stay
    /// owed, for [`abandon`](Self::abandon).
    pub fn settle(&mut self, through: u64, outcome: Outcome) -> Option<Settled<E>> {
        if self.in_flight.as_ref()?.through != through {
            return None;
        }
        let in_flight = self.in_flight.take()?;
        self.broken |= outcome.is_err();
        let settled = self
            .owed
            .iter()
            .take_while(|(_, n, _)| *n <= through)
            .count();
        let effects = self.owed.drain(..settled).map(|(_, _, e)| e).collect();
        Some(Settled {
            effects,
            outcome,
            changes: in_flight.changes,
        })
    }

    /// Waits for the outcome of the batch in flight and settles it: for an owner that no
    /// longer takes the messages its landings send (it is stopping). `None` when no batch is
    /// in flight.
    pub async fn land_in_flight(&mut self) -> Option<Settled<E>> {
        let in_flight = self.in_flight.as_mut()?;
        let through = in_flight.through;
        let outcome = (&mut in_flight.outcome).await.unwrap_or_else(|_| {
            Err(TicketError::Unavailable(
                "a batch's outcome was lost".into(),
            ))
        });
        self.settle(through, outcome)
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Gives up on every write not yet settled: they are never sent, and their callers are
    /// owed a refusal; told apart by whether any of a request's writes was handed over.
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
    use super::super::durability::Stored;
    use super::super::logged::weight;
    use super::*;
    use crate::domain::Participant;
    use crate::MessageId;
    use std::sync::Mutex;

    fn cursor() -> TicketWrite {
        TicketWrite::ReadCursor {
            reader: Participant::User,
            up_to: MessageId::MIN,
        }
    }

    /// The outcomes the queue's landings sent its owner, oldest first.
    type Mailbox = Arc<Mutex<Vec<(u64, Outcome)>>>;

    fn queue() -> (WriteQueue<&'static str>, Mailbox) {
        let mailbox = Mailbox::default();
        let sent = mailbox.clone();
        let q = WriteQueue::new(
            move |through, outcome| sent.lock().unwrap().push((through, outcome)),
            (),
        );
        (q, mailbox)
    }

    fn next_batch<E>(q: &mut WriteQueue<E>) -> Option<(Vec<TicketWrite>, Landing)> {
        q.next_batch_within(usize::MAX, weight)
    }

    /// Hands the queue the outcome its owner got in the mailbox last, as the owner does.
    fn take_outcome<E>(q: &mut WriteQueue<E>, mailbox: &Mailbox) -> Option<Settled<E>> {
        let (through, outcome) = mailbox.lock().unwrap().pop()?;
        q.settle(through, outcome)
    }

    fn stored() -> Outcome {
        Ok(Stored::Here)
    }

    #[test]
    fn a_batch_stays_within_its_budget_and_a_request_split_over_two_is_settled_by_the_second() {
        let (mut q, mailbox) = queue();
        let per = weight(&cursor());
        q.push([cursor(), cursor()], "a");
        q.push([cursor()], "b");
        let (writes, landing) = q.next_batch_within(per, weight).unwrap();
        assert_eq!(writes.len(), 1, "one write fits");
        landing.land(stored());
        let landed = take_outcome(&mut q, &mailbox).unwrap();
        assert!(
            landed.effects.is_empty(),
            "half of a's writes is not a's answer"
        );
        let (writes, landing) = q.next_batch_within(2 * per, weight).unwrap();
        assert_eq!(writes.len(), 2);
        landing.land(stored());
        assert_eq!(take_outcome(&mut q, &mailbox).unwrap().effects, ["a", "b"]);
        q.push([cursor()], "c");
        let (writes, _) = q.next_batch_within(1, weight).unwrap();
        assert_eq!(
            writes.len(),
            1,
            "a write heavier than the budget still goes, alone"
        );
    }

    #[test]
    fn one_batch_is_in_flight_at_a_time_and_the_next_takes_what_queued_meanwhile() {
        let (mut q, mailbox) = queue();
        q.push([cursor()], "a");
        let (writes, landing) = next_batch(&mut q).unwrap();
        assert_eq!(writes.len(), 1);
        q.push([cursor()], "b");
        q.push([cursor()], "c");
        assert!(next_batch(&mut q).is_none(), "a batch is still in flight");
        assert!(
            take_outcome(&mut q, &mailbox).is_none(),
            "nothing reported yet"
        );

        landing.land(stored());
        assert_eq!(mailbox.lock().unwrap().len(), 1);
        let landed = take_outcome(&mut q, &mailbox).unwrap();
        assert!(landed.outcome.is_ok());
        assert_eq!(landed.effects, ["a"]);
        assert_eq!(q.queued().copied().collect::<Vec<_>>(), ["b", "c"]);

        let (writes, landing) = next_batch(&mut q).unwrap();
        assert_eq!(writes.len(), 2);
        landing.land(stored());
        assert_eq!(take_outcome(&mut q, &mailbox).unwrap().effects, ["b", "c"]);
        assert!(q.is_empty() && next_batch(&mut q).is_none());
    }

    #[test]
    fn batches_are_capped() {
        let (mut q, mailbox) = queue();
        for _ in 0..MAX_BATCH + 10 {
            q.push([cursor()], "w");
        }
        let (writes, landing) = next_batch(&mut q).unwrap();
        assert_eq!(writes.len(), MAX_BATCH);
        landing.land(stored());
        assert_eq!(
            take_outcome(&mut q, &mailbox).unwrap().effects.len(),
            MAX_BATCH
        );
        assert_eq!(next_batch(&mut q).unwrap().0.len(), 10);
    }

    #[test]
    fn a_failed_batch_stops_the_queue_and_leaves_the_writes_behind_it_owed() {
        let (mut q, mailbox) = queue();
        q.push([cursor()], "a");
        let (_, landing) = next_batch(&mut q).unwrap();
        q.push([cursor()], "b");
        landing.land(Err(TicketError::Unavailable("disk".into())));
        let landed = take_outcome(&mut q, &mailbox).unwrap();
        assert!(landed.outcome.is_err());
        assert_eq!(landed.effects, ["a"]);
        assert!(q.is_broken());
        assert!(
            next_batch(&mut q).is_none(),
            "nothing is sent after a failure"
        );
        let abandoned = q.abandon();
        assert_eq!(abandoned.unsent, ["b"], "b was never sent");
        assert!(abandoned.in_doubt.is_empty());
        assert!(q.is_empty());
    }

    #[test]
    fn what_is_abandoned_is_told_apart_by_whether_any_of_it_was_sent() {
        let (mut q, mailbox) = queue();
        let per = weight(&cursor());
        q.push([cursor()], "landed");
        q.push([cursor(), cursor()], "split");
        q.push([cursor()], "in flight");
        q.push([cursor()], "unsent");
        let (_, landing) = q.next_batch_within(2 * per, weight).unwrap();
        landing.land(stored());
        assert_eq!(take_outcome(&mut q, &mailbox).unwrap().effects, ["landed"]);
        // Half of "split" is durable; its other half goes out with "in flight", whose
        // outcome never comes.
        let (writes, _lost) = q.next_batch_within(2 * per, weight).unwrap();
        assert_eq!(writes.len(), 2);
        let abandoned = q.abandon();
        assert_eq!(abandoned.in_doubt, ["split", "in flight"]);
        assert_eq!(abandoned.unsent, ["unsent"]);
    }

    #[test]
    fn a_callback_dropped_unanswered_reports_a_failure() {
        let (mut q, mailbox) = queue();
        q.push([cursor()], "a");
        let (_, landing) = next_batch(&mut q).unwrap();
        drop(landing);
        assert_eq!(mailbox.lock().unwrap().len(), 1);
        let landed = take_outcome(&mut q, &mailbox).unwrap();
        assert!(matches!(landed.outcome, Err(TicketError::Unavailable(_))));
    }

    #[test]
    fn what_is_kept_goes_only_when_the_queue_and_its_batch_in_flight_are_both_gone() {
        let kept = Arc::new(());
        let mut q: WriteQueue<()> = WriteQueue::new(|_, _| {}, kept.clone());
        q.push([cursor()], ());
        let (_, landing) = next_batch(&mut q).unwrap();
        drop(q);
        assert_eq!(
            Arc::strong_count(&kept),
            2,
            "the batch in flight still holds it"
        );
        landing.land(stored());
        assert_eq!(Arc::strong_count(&kept), 1);
    }

    #[tokio::test]
    async fn an_owner_that_no_longer_takes_messages_can_wait_for_the_outcome() {
        let (mut q, _) = queue();
        q.push([cursor()], "a");
        let (_, landing) = next_batch(&mut q).unwrap();
        std::thread::spawn(move || landing.land(stored()));
        assert_eq!(q.land_in_flight().await.unwrap().effects, ["a"]);
        assert!(
            q.land_in_flight().await.is_none(),
            "nothing is in flight now"
        );
    }

    #[test]
    fn a_batch_keeps_the_writes_that_change_the_ticket_for_its_owner_to_apply() {
        let (mut q, mailbox) = queue();
        q.push([cursor()], "a");
        let (_, landing) = next_batch(&mut q).unwrap();
        landing.land(stored());
        let landed = take_outcome(&mut q, &mailbox).unwrap();
        assert!(matches!(
            landed.changes.as_slice(),
            [TicketWrite::ReadCursor { .. }]
        ));
        assert!(
            q.settle(0, stored()).is_none(),
            "an outcome already settled is not settled twice"
        );
    }
}
