//! The ticket actor's write pipeline, driven through the in-memory store's gate: a test holds
//! each batch the actor submits and decides when it lands, fails, or is lost.

use std::time::Duration;

use ractor::RpcReplyPort;
use tokio::sync::oneshot;

use super::*;
use crate::domain::{Message, MessageBody, Participant, TicketStatus};
use crate::store::{MessageRange, TicketStore};
use crate::testkit::{eventually, kit, Kit};

struct Fixture {
    kit: Kit,
    tickets: Tickets,
    key: TicketKey,
}

/// A ticket whose batches wait at the store's gate.
async fn fixture() -> Fixture {
    let kit = kit().await;
    let key = kit.open_ticket().await;
    kit.store.hold_batches();
    let tickets = kit.system.tickets.clone();
    Fixture { kit, tickets, key }
}

type Answer = oneshot::Receiver<Result<Message, TicketError>>;

/// Puts a post in the actor's mailbox and returns where its answer will come.
async fn post(f: &Fixture, text: &str) -> Answer {
    let (tx, rx) = oneshot::channel();
    let actor = f.tickets.actor(&f.key).await.unwrap();
    actor
        .send_message(TicketMsg::Post {
            author: Participant::User,
            content: MessageBody::parse(text).unwrap(),
            idempotency_key: None,
            reply: RpcReplyPort::from(tx),
        })
        .unwrap();
    rx
}

/// Calls the ticket through `Tickets::call`, as the HTTP side does, from a task of its own.
fn spawn_call<T: Send + 'static>(
    f: &Fixture,
    make: impl Fn(RpcReplyPort<Result<T, TicketError>>) -> TicketMsg + Send + Sync + 'static,
) -> tokio::task::JoinHandle<Result<T, TicketError>> {
    let (tickets, key) = (f.tickets.clone(), f.key.clone());
    tokio::spawn(async move { tickets.call(&key, make).await })
}

/// Returns once the actor has handled everything put in its mailbox before.
async fn settled_mailbox(f: &Fixture) {
    f.tickets
        .call(&f.key, |reply| TicketMsg::Get { page: None, reply })
        .await
        .unwrap();
}

/// Posts "one", which the gate holds in flight, and "two", which the actor queues behind it.
async fn one_held_one_queued(f: &Fixture) -> (Answer, Answer) {
    let first = post(f, "one").await;
    f.kit.store.holding(1).await;
    let second = post(f, "two").await;
    settled_mailbox(f).await;
    (first, second)
}

async fn stored(f: &Fixture) -> Vec<String> {
    f.kit
        .store
        .list_messages(&f.key.project, &f.key.slug, MessageRange::all())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content.as_str().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_behind_a_batch_in_flight_go_together_in_order() {
    let f = fixture().await;
    let first = post(&f, "one").await;
    f.kit.store.holding(1).await;
    let second = post(&f, "two").await;
    let third = post(&f, "three").await;
    settled_mailbox(&f).await;
    // One batch per ticket at a time: the later posts wait for the first batch's outcome.
    assert_eq!(f.kit.store.held(), 1);

    f.kit.store.release();
    assert_eq!(first.await.unwrap().unwrap().content.as_str(), "one");
    f.kit.store.holding(1).await;
    f.kit.store.release();
    assert_eq!(second.await.unwrap().unwrap().content.as_str(), "two");
    assert_eq!(third.await.unwrap().unwrap().content.as_str(), "three");
    assert_eq!(f.kit.store.batch_sizes(), vec![1, 2]);
    assert_eq!(stored(&f).await, ["one", "two", "three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_refuses_the_writes_queued_behind_it_and_the_ticket_reloads() {
    let f = fixture().await;
    let (first, second) = one_held_one_queued(&f).await;

    f.kit.store.fail();
    assert!(matches!(
        first.await.unwrap(),
        Err(TicketError::Unavailable(_))
    ));
    assert!(matches!(
        second.await.unwrap(),
        Err(TicketError::Unavailable(_))
    ));
    // The write behind the failed batch was never sent.
    assert_eq!(f.kit.store.batch_sizes(), vec![1]);
    assert!(stored(&f).await.is_empty());

    // The next request finds a fresh actor, loaded from what the store holds. It goes through
    // `Tickets::call`, which steps past the stopping actor if the registry still names it.
    let third = spawn_call(&f, |reply| TicketMsg::Post {
        author: Participant::User,
        content: MessageBody::parse("three").unwrap(),
        idempotency_key: None,
        reply,
    });
    f.kit.store.holding(1).await;
    f.kit.store.release();
    assert_eq!(third.await.unwrap().unwrap().content.as_str(), "three");
    assert_eq!(stored(&f).await, ["three"]);
    let view = f
        .tickets
        .call(&f.key, |reply| TicketMsg::Get { page: None, reply })
        .await
        .unwrap();
    let view: serde_json::Value = serde_json::from_slice(&view).unwrap();
    assert_eq!(view["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_flight_when_its_actor_crashes_lands_before_its_successor_loads() {
    let f = fixture().await;
    let first = post(&f, "one").await;
    f.kit.store.holding(1).await;
    f.tickets.crash(&f.key).await.unwrap();
    // A crash drops the actor's state with its callers' reply ports: the HTTP side answers
    // 503 ("restarted while handling the request"), and a client retries with its
    // idempotency key.
    assert!(first.await.is_err());
    // The successor cannot load the ticket while its predecessor's batch is out.
    let next = spawn_call(&f, |reply| TicketMsg::Get { page: None, reply });
    eventually("the successor waits for the writer lease", async || {
        waiting_for_lease(&f)
    })
    .await;
    assert!(!next.is_finished());

    f.kit.store.release();
    let view: serde_json::Value = serde_json::from_slice(&next.await.unwrap().unwrap()).unwrap();
    assert_eq!(view["messages"][0]["content"], "one");
    assert_eq!(stored(&f).await, ["one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_store_loses_is_refused_instead_of_waited_for() {
    let f = fixture().await;
    let first = post(&f, "one").await;
    f.kit.store.holding(1).await;
    f.kit.store.lose();
    assert!(matches!(
        first.await.unwrap(),
        Err(TicketError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_tickets_sends_their_queued_writes_and_answers_every_caller() {
    let f = fixture().await;
    let (first, second) = one_held_one_queued(&f).await;

    // As at shutdown: the actor system stops, and with it every ticket actor.
    let system = f.kit.system.clone();
    let stopped = tokio::spawn(async move { system.stop().await });
    f.kit.store.release();
    // The stopping actor sends what it had queued, as one more batch.
    f.kit.store.holding(1).await;
    f.kit.store.release();
    assert_eq!(first.await.unwrap().unwrap().content.as_str(), "one");
    assert_eq!(second.await.unwrap().unwrap().content.as_str(), "two");
    stopped.await.unwrap();
    assert_eq!(stored(&f).await, ["one", "two"]);
}

/// Tickets the registry routes requests for, activated or not.
fn routes(f: &Fixture) -> usize {
    f.tickets.deps.registry.routes()
}

/// Whether an activation of the ticket waits for its writer lease. The lease's `Arc` is held
/// by the map of leases, by the guard of the writer that has it, and by each activation
/// waiting to take it (`WriterLease::drop` counts the same way).
fn waiting_for_lease(f: &Fixture) -> bool {
    let lease = f.tickets.deps.leases.get(&f.key);
    lease.is_some_and(|lease| std::sync::Arc::strong_count(&lease) > 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_abandoned_mid_way_leaves_no_route_behind() {
    let f = fixture().await;
    // Hold the ticket's writer lease, as a predecessor whose last batch is still with the
    // store does, so an activation waits part way through.
    let lease = f
        .tickets
        .deps
        .leases
        .entry(f.key.clone())
        .or_default()
        .clone();
    let held = lease.lock_owned().await;
    let waiting = {
        let (tickets, key) = (f.tickets.clone(), f.key.clone());
        tokio::spawn(async move { tickets.actor(&key).await.map(|_| ()) })
    };
    eventually("the activation waits for the lease", async || {
        waiting_for_lease(&f)
    })
    .await;
    assert!(!waiting.is_finished(), "the activation waits for the lease");
    assert_eq!(routes(&f), 1);
    // The caller goes away, as a client that disconnects does.
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert_eq!(
        routes(&f),
        0,
        "an abandoned activation leaves no route behind"
    );
    drop(held);
    f.tickets.actor(&f.key).await.unwrap();
    assert_eq!(routes(&f), 1, "one route, to the running actor");
}

mod behaviour {
    //! The ticket actor as its callers see it, on a whole actor system.

    use super::*;
    use crate::clock::ManualClock;
    use crate::testkit::{eventually, kit, kit_clocked, kit_with, Kit};
    use crate::MessageId;

    async fn say(k: &Kit, key: &TicketKey, author: Participant, text: &str) -> Message {
        let content = MessageBody::parse(text).unwrap();
        k.system
            .tickets
            .post(key, author, content, None)
            .await
            .unwrap()
    }

    async fn view(k: &Kit, key: &TicketKey) -> serde_json::Value {
        let bytes = k.system.tickets.view(key, None).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn frame(event: &Event) -> serde_json::Value {
        serde_json::from_slice(&event.frame).unwrap()
    }

    async fn subscribe(k: &Kit, key: &TicketKey, since: Option<MessageId>) -> Subscription {
        k.system.tickets.subscribe(key, since).await.unwrap()
    }

    #[tokio::test]
    async fn every_change_reaches_a_subscriber_in_order_and_shows_in_the_view() {
        let k = kit().await;
        let key = k.open_ticket().await;
        let mut sub = subscribe(&k, &key, None).await;
        let first: serde_json::Value = serde_json::from_slice(&sub.subscribed).unwrap();
        assert_eq!(first["type"], "subscribed");

        let hello = say(&k, &key, Participant::User, "Hello?").await;
        let read = |reply| TicketMsg::MarkRead {
            reader: Participant::Admin,
            reply,
        };
        assert_eq!(
            k.system.tickets.call(&key, read).await.unwrap(),
            Some(hello.id)
        );
        let pending = |reply| TicketMsg::Change {
            change: TicketChange::status(TicketStatus::Pending),
            reply,
        };
        k.system.tickets.call(&key, pending).await.unwrap();

        let mut kinds = Vec::new();
        for _ in 0..3 {
            kinds.push(frame(&sub.events.recv().await.unwrap())["type"].clone());
        }
        assert_eq!(kinds, ["new_message", "ticket_update", "status_change"]);
        let v = view(&k, &key).await;
        assert_eq!(v["status"], "pending");
        assert_eq!(v["messages"][0]["content"], "Hello?");
        assert_eq!(v["messages"][0]["read_by"], serde_json::json!(["admin"]));
    }

    #[tokio::test]
    async fn a_post_retried_with_its_idempotency_key_is_made_once() {
        let k = kit().await;
        let key = k.open_ticket().await;
        let post = |text: &str| {
            let content = MessageBody::parse(text).unwrap();
            let retry = crate::domain::IdempotencyKey::parse("retry-1").unwrap();
            k.system
                .tickets
                .post(&key, Participant::User, content, Some(retry))
        };
        let made = post("Once").await.unwrap();
        assert_eq!(post("Once").await.unwrap(), made);
        let other = post("Something else").await;
        assert!(matches!(other, Err(TicketError::KeyReused)));
        let messages = view(&k, &key).await["messages"].as_array().unwrap().len();
        assert_eq!(messages, 1);
    }

    #[tokio::test]
    async fn a_closed_ticket_takes_no_posts_and_a_visitor_reply_reopens_a_resolved_one() {
        let k = kit().await;
        let key = k.open_ticket().await;
        let tickets = &k.system.tickets;
        let resolved = TicketChange::status(TicketStatus::Resolved);
        tickets.change(&key, resolved).await.unwrap();
        say(&k, &key, Participant::User, "Still broken").await;
        assert_eq!(view(&k, &key).await["status"], "open");

        let closed = TicketChange::status(TicketStatus::Closed);
        tickets.change(&key, closed).await.unwrap();
        let content = MessageBody::parse("Hello?").unwrap();
        let posted = tickets.post(&key, Participant::User, content, None).await;
        assert!(matches!(posted, Err(TicketError::Closed)));
    }

    #[tokio::test]
    async fn missed_messages_are_replayed_from_memory_or_from_the_store() {
        let tickets = TicketConfig {
            recent_messages: 3,
            ..TicketConfig::default()
        };
        let k = kit_with(tickets, Default::default(), Default::default()).await;
        let key = k.open_ticket().await;
        let mut sent = Vec::new();
        for i in 0..6 {
            sent.push(say(&k, &key, Participant::User, &format!("m{i}")).await);
        }
        let contents = |events: Vec<Event>| -> Vec<String> {
            let payloads = events
                .iter()
                .map(|e| frame(e)["payload"]["content"].clone());
            payloads.map(|c| c.as_str().unwrap().to_owned()).collect()
        };

        let recent = subscribe(&k, &key, Some(sent[3].id)).await;
        let Replay::Ready(events) = recent.replay else {
            panic!("the newest messages are in memory");
        };
        assert_eq!(contents(events), ["m4", "m5"]);

        let older = subscribe(&k, &key, Some(sent[0].id)).await;
        let Replay::Loading(loading) = older.replay else {
            panic!("older messages come from the store");
        };
        let events = loading.await.unwrap().unwrap();
        assert_eq!(contents(events), ["m1", "m2", "m3", "m4", "m5"]);
        assert_eq!(older.last_message_id, Some(sent[5].id));
    }

    /// A kit whose tickets check for idleness often, on a clock that moves only when told.
    async fn clocked() -> (Kit, ManualClock) {
        let clock = ManualClock::new(crate::clock::now_millis());
        let tickets = TicketConfig {
            tick_interval: Duration::from_millis(20),
            ..TicketConfig::default()
        };
        let clocked = std::sync::Arc::new(clock.clone());
        let k = kit_clocked(tickets, Default::default(), Default::default(), clocked).await;
        (k, clock)
    }

    /// Time enough, by the ticket's clock, for an unused actor to passivate.
    fn idle_timeout(k: &Kit) -> chrono::Duration {
        let idle = k.system.tickets.config().idle_timeout;
        chrono::Duration::from_std(idle).unwrap() + chrono::Duration::seconds(1)
    }

    #[tokio::test]
    async fn an_idle_ticket_passivates_and_comes_back_with_everything_it_wrote() {
        let (k, clock) = clocked().await;
        let key = k.open_ticket().await;
        say(&k, &key, Participant::User, "Before the nap").await;
        assert_eq!(k.system.tickets.active(), 1);
        // Idle checks before the timeout has passed keep it.
        assert!(k.system.tickets.tick(&key).await.unwrap());
        clock.advance(idle_timeout(&k));
        // Its own ticker, not the test, finds it idle now.
        eventually("the idle ticket passivates", async || {
            k.system.tickets.active() == 0
        })
        .await;

        say(&k, &key, Participant::Admin, "After the nap").await;
        let v = view(&k, &key).await;
        let messages = v["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["content"], "Before the nap");
    }

    #[tokio::test]
    async fn a_watched_ticket_does_not_passivate() {
        let (k, clock) = clocked().await;
        let key = k.open_ticket().await;
        let watching = subscribe(&k, &key, None).await;
        clock.advance(idle_timeout(&k));
        // Idle by the clock, but the subscriber keeps the actor.
        assert!(k.system.tickets.tick(&key).await.unwrap());
        assert_eq!(k.system.tickets.active(), 1);
        // Unwatched and idle again (the probe `tick` waits with counts as a request), it goes.
        drop(watching);
        clock.advance(idle_timeout(&k));
        assert!(!k.system.tickets.tick(&key).await.unwrap());
    }
}

/// The stores keep a ticket row's newer version by its `updated_at`, so every change must move
/// it forward: with the clock standing still, and with the clock behind the ticket's last
/// version (a ticket that moved here from a node whose clock runs ahead).
#[tokio::test]
async fn every_ticket_change_has_a_later_version_than_the_one_before() {
    let start = crate::clock::now_millis();
    let clock = crate::clock::ManualClock::new(start);
    let (tickets, kb, chat) = Default::default();
    let k =
        crate::testkit::kit_clocked(tickets, kb, chat, std::sync::Arc::new(clock.clone())).await;
    let key = k.open_ticket().await;
    let tickets = &k.system.tickets;
    let opened = k.store.get_ticket(&key.project, &key.slug).await.unwrap();
    let mut versions = vec![opened.unwrap().updated_at];
    let mut last = None;
    for i in 0..30 {
        if i == 15 {
            clock.advance(-chrono::Duration::hours(1));
        }
        let changed = if i % 2 == 0 {
            let status = [TicketStatus::Pending, TicketStatus::Open][i / 2 % 2];
            let change = TicketChange::status(status);
            tickets.change(&key, change).await.unwrap()
        } else {
            let agent = crate::domain::AgentName::parse(&format!("Agent {i}")).unwrap();
            let change = TicketChange::assignee(Some(agent));
            tickets.change(&key, change).await.unwrap()
        };
        versions.push(changed.updated_at);
        last = Some(changed);
    }
    let steps: Vec<i64> = versions
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    assert_eq!(
        steps,
        vec![1; 30],
        "each change one millisecond past the one before"
    );
    let stored = k.store.get_ticket(&key.project, &key.slug).await.unwrap();
    assert_eq!(stored, last, "the store holds the last change");
}

/// A status and an assignee changed together are one change: the ticket's one new version and
/// both webhooks go to the store in one batch, and subscribers hear one event of each kind,
/// both of that version.
#[tokio::test]
async fn a_status_and_an_assignee_changed_together_are_one_batch() {
    use crate::store::WebhookStore;
    use crate::webhook::{Endpoint, EventType};
    let k = kit().await;
    let key = k.open_ticket().await;
    let hook = Endpoint {
        id: uuid::Uuid::new_v4(),
        project_id: k.project.clone(),
        url: "https://hooks.example.com/fleety".into(),
        events: vec![EventType::TicketStatusChanged, EventType::TicketAssigned],
        secret: "whsec_dGVzdA==".into(),
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        created_at: crate::clock::now_millis(),
    };
    k.system.hooks.set(&k.project, vec![hook.clone()]);
    let mut sub = k.system.tickets.subscribe(&key, None).await.unwrap();
    let batches_before = k.store.batch_sizes().len();

    let sam = crate::domain::AgentName::parse("Sam").unwrap();
    let change = TicketChange {
        status: Some(TicketStatus::Pending),
        assignee: Some(Some(sam.clone())),
    };
    let changed = k.system.tickets.change(&key, change).await.unwrap();
    assert_eq!(
        (changed.status, changed.assignee.as_ref()),
        (TicketStatus::Pending, Some(&sam))
    );

    assert_eq!(
        k.store.batch_sizes()[batches_before..],
        [3],
        "one batch: the ticket's new version and its two webhooks"
    );
    let stored = k.store.get_ticket(&key.project, &key.slug).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&changed));
    let deliveries = k.store.list_deliveries(&k.project, hook.id, 10).await;
    let mut events: Vec<EventType> = deliveries.unwrap().iter().map(|d| d.event).collect();
    events.sort_by_key(|e| e.as_str());
    assert_eq!(
        events,
        [EventType::TicketAssigned, EventType::TicketStatusChanged]
    );

    let version = crate::events::rfc3339(changed.updated_at);
    let mut heard = Vec::new();
    for _ in 0..2 {
        let event = sub.events.recv().await.unwrap();
        let event: serde_json::Value = serde_json::from_slice(&event.frame).unwrap();
        assert_eq!(event["payload"]["updated_at"], version.as_str(), "{event}");
        heard.push(event["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(heard, ["status_change", "assigned"]);
    // A later post is the next thing heard: nothing else came of the change.
    let content = MessageBody::parse("Thanks").unwrap();
    let posted = k
        .system
        .tickets
        .post(&key, Participant::User, content, None);
    posted.await.unwrap();
    let next = sub.events.recv().await.unwrap();
    let next: serde_json::Value = serde_json::from_slice(&next.frame).unwrap();
    assert_eq!(next["type"], "new_message");
}

mod several_nodes {
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
        ) -> Result<Answer, TicketError> {
            let Command::Post {
                author,
                content,
                idempotency_key,
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
            }))
        }

        async fn missed(&self, _key: &TicketKey, _after: u64) -> Result<Vec<Logged>, TicketError> {
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
        /// Posts through `Tickets::post`, as the HTTP side does, from a task of its own.
        fn post(&self, text: &str) -> tokio::task::JoinHandle<Result<Message, TicketError>> {
            let (tickets, key) = (self.kit.system.tickets.clone(), self.key.clone());
            let content = MessageBody::parse(text).unwrap();
            tokio::spawn(async move { tickets.post(&key, Participant::Admin, content, None).await })
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
}
