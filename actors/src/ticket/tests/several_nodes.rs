//! With several nodes, what the callers of a node that loses a ticket get: a request the
//! node certainly did not carry out goes on to the new owner; one it may have carried out
//! is answered `Unavailable` (503), for the client to retry with its idempotency key.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::*;
use crate::store::StoreError;
use crate::testkit::{kit_clustered, Kit};
use crate::ticket::Answer;
use crate::MessageId;

type Appending = (LogBatch, oneshot::Sender<Result<u64, StoreError>>);

/// This node's hold on the ticket: each append waits for the test's verdict.
struct HeldClaim {
    appends: mpsc::UnboundedSender<Appending>,
    /// The lease lapsed: another node may have it.
    lapsed: AtomicBool,
    /// Another node has it.
    taken: AtomicBool,
    last: AtomicU64,
}

#[async_trait]
impl Claim for HeldClaim {
    async fn append(&self, batch: &LogBatch) -> Result<u64, StoreError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.appends.send((batch.clone(), tx));
        let verdict = rx
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("no verdict".into())));
        match &verdict {
            Ok(seq) => self.last.store(*seq, Ordering::SeqCst),
            // As the log does: a refused append means another node owns the ticket now.
            Err(StoreError::Conflict) => self.taken.store(true, Ordering::SeqCst),
            Err(_) => {}
        }
        verdict
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::SeqCst)
    }

    fn lost(&self) -> bool {
        self.lapsed.load(Ordering::SeqCst) || self.taken()
    }

    fn taken(&self) -> bool {
        self.taken.load(Ordering::SeqCst)
    }
}

/// The ticket's lease is this node's until `moved_to` names another node, which carries
/// out every command forwarded to it.
struct TwoNodes {
    claim: Arc<HeldClaim>,
    moved_to: Mutex<Option<String>>,
    forwarded: Mutex<Vec<String>>,
}

#[async_trait]
impl Cluster for TwoNodes {
    fn node(&self) -> &str {
        "a"
    }

    async fn place(&self, _key: &TicketKey) -> Result<Placement, TicketError> {
        match self.moved_to.lock().unwrap().clone() {
            Some(node) => Ok(Placement::There(node)),
            None => Ok(Placement::Here(self.claim.clone())),
        }
    }

    async fn forward(
        &self,
        _node: &str,
        _key: &TicketKey,
        command: Command,
        _by: Option<crate::audit::AuditBy>,
    ) -> Result<Answer, TicketError> {
        let Command::Post {
            author,
            content,
            idempotency_key,
            agent,
        } = command
        else {
            return Err(TicketError::Internal(
                "only posts are forwarded here".into(),
            ));
        };
        self.forwarded
            .lock()
            .unwrap()
            .push(content.as_str().to_owned());
        let id = MessageId::next(None, chrono::Utc::now());
        Ok(Answer::Message(Message {
            id,
            author,
            content,
            timestamp: id.timestamp(),
            idempotency_key,
            agent,
        }))
    }

    async fn missed(&self, _key: &TicketKey, _after: u64) -> Result<Vec<LogEntry>, TicketError> {
        Ok(Vec::new())
    }

    fn broadcast(&self, _key: &TicketKey, _event: LogEvent) {}
}

struct Nodes {
    kit: Kit,
    cluster: Arc<TwoNodes>,
    appends: mpsc::UnboundedReceiver<Appending>,
    key: TicketKey,
}

async fn nodes() -> Nodes {
    let (tx, appends) = mpsc::unbounded_channel();
    let cluster = Arc::new(TwoNodes {
        claim: Arc::new(HeldClaim {
            appends: tx,
            lapsed: AtomicBool::new(false),
            taken: AtomicBool::new(false),
            last: AtomicU64::new(0),
        }),
        moved_to: Mutex::new(None),
        forwarded: Mutex::new(Vec::new()),
    });
    let kit = kit_clustered(cluster.clone()).await;
    let key = kit.open_ticket().await;
    Nodes {
        kit,
        cluster,
        appends,
        key,
    }
}

impl Nodes {
    /// Posts through `Tickets::run`, as the HTTP side does, from a task of its own.
    fn post(&self, text: &str) -> tokio::task::JoinHandle<Result<Message, TicketError>> {
        let (tickets, key) = (self.kit.system.tickets.clone(), self.key.clone());
        let content = MessageBody::parse(text).unwrap();
        tokio::spawn(async move {
            post_message(&tickets, &key, Participant::Admin, content, None).await
        })
    }

    /// Returns once the actor has handled everything put in its mailbox before.
    async fn settled_mailbox(&self) {
        let get = |reply| TicketMsg::Get { page: None, reply };
        self.kit.system.tickets.call(&self.key, get).await.unwrap();
    }

    /// Another node takes the ticket over, as after this node paused past its lease.
    fn move_to_b(&self) {
        *self.cluster.moved_to.lock().unwrap() = Some("b".into());
    }

    fn forwarded(&self) -> Vec<String> {
        self.cluster.forwarded.lock().unwrap().clone()
    }

    async fn stored(&self) -> usize {
        let range = MessageRange::all();
        let stored = self
            .kit
            .store
            .list_messages(&self.key.project, &self.key.slug, range);
        stored.await.unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_behind_a_refused_append_go_to_the_new_owner() {
    let mut n = nodes().await;
    let one = n.post("one");
    let (batch, verdict) = n.appends.recv().await.unwrap();
    assert_eq!(batch.writes.len(), 1);
    // Two more wait: one in the write queue behind the batch in flight, one in the mailbox
    // as the verdict comes.
    let two = n.post("two");
    n.settled_mailbox().await;
    n.move_to_b();
    verdict.send(Err(StoreError::Conflict)).unwrap();
    let three = n.post("three");
    for (post, text) in [(one, "one"), (two, "two"), (three, "three")] {
        let message = post.await.unwrap();
        let message = message.unwrap_or_else(|e| panic!("{text} went to the new owner: {e}"));
        assert_eq!(message.content.as_str(), text);
    }
    let mut forwarded = n.forwarded();
    forwarded.sort();
    assert_eq!(forwarded, ["one", "three", "two"]);
    assert!(
        n.appends.try_recv().is_err(),
        "nothing more was appended here"
    );
    assert_eq!(n.stored().await, 0, "nothing was written here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_append_may_have_landed_is_not_sent_on() {
    let mut n = nodes().await;
    let one = n.post("one");
    let (_, verdict) = n.appends.recv().await.unwrap();
    let two = n.post("two");
    n.settled_mailbox().await;
    n.move_to_b();
    // No answer from the log in time: the append may have landed.
    verdict
        .send(Err(StoreError::Unavailable("timed out".into())))
        .unwrap();
    assert!(
        matches!(one.await.unwrap(), Err(TicketError::Unavailable(_))),
        "a write that may have landed is answered 503, for a retry with its key"
    );
    let two = two.await.unwrap().expect("two was never sent: it goes on");
    assert_eq!(two.content.as_str(), "two");
    assert_eq!(n.forwarded(), ["two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_only_lapsed_does_not_stop_writes_the_log_decides() {
    let mut n = nodes().await;
    // The leases' bucket had no leader for a lease's lifetime: this node's lease lapsed,
    // though nobody could take it.
    n.cluster.claim.lapsed.store(true, Ordering::SeqCst);
    let one = n.post("one");
    let (_, verdict) = n.appends.recv().await.unwrap();
    verdict.send(Ok(1)).unwrap();
    let one = one.await.unwrap().expect("the log took the write");
    assert_eq!(one.content.as_str(), "one");
    assert!(n.forwarded().is_empty());
    assert_eq!(n.stored().await, 1, "written here");
}

/// The outcome of a batch comes back as a message, but an actor that is leaving takes no more
/// messages: it awaits its batch in flight directly, and answers its callers with what became
/// of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_flight_as_its_actor_leaves_is_answered_with_its_outcome() {
    let mut n = nodes().await;
    let one = n.post("one");
    let (_, verdict) = n.appends.recv().await.unwrap();
    // Another node takes the lease: at its next idle check the actor stops taking requests
    // and leaves, with "one" still out.
    n.cluster.claim.taken.store(true, Ordering::SeqCst);
    n.move_to_b();
    let still_here = n.kit.system.tickets.tick(&n.key).await.unwrap();
    assert!(!still_here, "the actor left");
    verdict.send(Ok(1)).unwrap();
    let one = one
        .await
        .unwrap()
        .expect("a write that landed is answered as done");
    assert_eq!(one.content.as_str(), "one");
    assert_eq!(n.stored().await, 1, "written here");
    assert!(n.forwarded().is_empty(), "and not sent on");
}
