//! How ticket actors hand their writes to the storage port, tested over the embedded store
//! with a gate in front of `submit` that holds batches until a test lets them through or
//! fails them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use fleety_actors::clock::SystemClock;
use fleety_actors::domain::{
    Article, ChatTurn, ChatUsage, Description, Message, MessageBody, Participant, Project,
    ProjectId, ReadCursor, Slug, Ticket, TicketSource, TicketStatus, Title,
};
use fleety_actors::feed::ProjectFeeds;
use fleety_actors::store::{
    Done, MessageRange, Store, StoreError, StoreResult, TicketPage, TicketQuery, TicketWrite,
};
use fleety_actors::ticket::{TicketConfig, TicketError, TicketKey, TicketMsg, Tickets};
use fleety_actors::MessageId;
use ractor::RpcReplyPort;
use tokio::sync::oneshot;

use super::embedded::EmbeddedStore;

type Held = (ProjectId, Slug, Vec<TicketWrite>, Done);

struct Gate {
    inner: Arc<dyn Store>,
    held: Mutex<Vec<Held>>,
    /// The size of every batch submitted, in order.
    batches: Mutex<Vec<usize>>,
}

impl Gate {
    fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// Waits until `n` batches are held; a condition, not a timing.
    async fn holding(&self, n: usize) {
        for _ in 0..2000 {
            if self.held() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the gate never held {n} batches");
    }

    /// Lets the oldest held batch through to the store, or fails it without writing anything.
    fn release(&self, fail: bool) {
        let (p, s, writes, done) = self.held.lock().unwrap().remove(0);
        if fail {
            done(Err(StoreError::Unavailable("injected by the test".into())));
        } else {
            self.inner.clone().submit(p, s, writes, done);
        }
    }

    /// Forgets the oldest held batch without a word, as a store whose writer died would.
    fn lose(&self) {
        drop(self.held.lock().unwrap().remove(0));
    }
}

#[async_trait]
impl Store for Gate {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn submit(self: Arc<Self>, p: ProjectId, s: Slug, writes: Vec<TicketWrite>, done: Done) {
        self.batches.lock().unwrap().push(writes.len());
        self.held.lock().unwrap().push((p, s, writes, done));
    }
    async fn create_project(&self, p: &Project) -> StoreResult<()> {
        self.inner.create_project(p).await
    }
    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        self.inner.get_project(id).await
    }
    async fn update_project(&self, p: &Project) -> StoreResult<()> {
        self.inner.update_project(p).await
    }
    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        self.inner.list_projects().await
    }
    async fn create_ticket(&self, t: &Ticket) -> StoreResult<()> {
        self.inner.create_ticket(t).await
    }
    async fn get_ticket(&self, p: &ProjectId, s: &Slug) -> StoreResult<Option<Ticket>> {
        self.inner.get_ticket(p, s).await
    }
    async fn update_ticket(&self, t: &Ticket) -> StoreResult<()> {
        self.inner.update_ticket(t).await
    }
    async fn list_tickets(&self, p: &ProjectId, q: &TicketQuery) -> StoreResult<TicketPage> {
        self.inner.list_tickets(p, q).await
    }
    async fn append_message(&self, p: &ProjectId, s: &Slug, m: &Message) -> StoreResult<()> {
        self.inner.append_message(p, s, m).await
    }
    async fn list_messages(
        &self,
        p: &ProjectId,
        s: &Slug,
        r: MessageRange,
    ) -> StoreResult<Vec<Message>> {
        self.inner.list_messages(p, s, r).await
    }
    async fn set_read_cursor(
        &self,
        p: &ProjectId,
        s: &Slug,
        reader: Participant,
        up_to: MessageId,
    ) -> StoreResult<()> {
        self.inner.set_read_cursor(p, s, reader, up_to).await
    }
    async fn read_cursors(&self, p: &ProjectId, s: &Slug) -> StoreResult<Vec<ReadCursor>> {
        self.inner.read_cursors(p, s).await
    }
    async fn apply(&self, p: &ProjectId, s: &Slug, writes: &[TicketWrite]) -> StoreResult<()> {
        self.inner.apply(p, s, writes).await
    }
    async fn append_chat_turns(
        &self,
        p: &ProjectId,
        session: &str,
        turns: &[ChatTurn],
    ) -> StoreResult<()> {
        self.inner.append_chat_turns(p, session, turns).await
    }
    async fn list_chat_turns(
        &self,
        p: &ProjectId,
        session: &str,
        limit: usize,
    ) -> StoreResult<Vec<ChatTurn>> {
        self.inner.list_chat_turns(p, session, limit).await
    }
    async fn chat_session_usage(&self, p: &ProjectId, session: &str) -> StoreResult<ChatUsage> {
        self.inner.chat_session_usage(p, session).await
    }
    async fn put_article(&self, a: &Article) -> StoreResult<()> {
        self.inner.put_article(a).await
    }
    async fn delete_article(&self, p: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        self.inner.delete_article(p, id).await
    }
    async fn list_articles(&self, p: &ProjectId) -> StoreResult<Vec<Article>> {
        self.inner.list_articles(p).await
    }
    async fn flush(&self) -> StoreResult<()> {
        self.inner.flush().await
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    gate: Arc<Gate>,
    tickets: Tickets,
    supervisor: ractor::ActorCell,
    key: TicketKey,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let project = ProjectId::parse("gated").unwrap();
    let now = Utc::now();
    inner
        .create_project(&Project {
            id: project.clone(),
            name: "Gated".into(),
            allowed_origins: vec![],
            admin_key_hash: "00".repeat(32),
            created_at: now,
        })
        .await
        .unwrap();
    let ticket = Ticket {
        id: uuid::Uuid::new_v4(),
        slug: Slug::parse("calm-heron-101").unwrap(),
        project_id: project.clone(),
        title: Title::parse("Gated writes").unwrap(),
        description: Description::parse("Batches wait at the gate").unwrap(),
        status: TicketStatus::Open,
        created_at: now,
        updated_at: now,
        source: TicketSource::Api,
        session_id: None,
    };
    inner.create_ticket(&ticket).await.unwrap();
    let gate = Arc::new(Gate {
        inner,
        held: Mutex::default(),
        batches: Mutex::default(),
    });
    let (tickets, supervisor) = Tickets::start(
        gate.clone(),
        Arc::new(SystemClock),
        ProjectFeeds::default(),
        TicketConfig::default(),
        None,
    )
    .await
    .unwrap();
    let key = TicketKey {
        project,
        slug: ticket.slug,
    };
    Fixture {
        _dir: dir,
        gate,
        tickets,
        supervisor: supervisor.get_cell(),
        key,
    }
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
    f.gate.holding(1).await;
    let second = post(f, "two").await;
    settled_mailbox(f).await;
    (first, second)
}

async fn stored(f: &Fixture) -> Vec<String> {
    f.gate
        .inner
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
    f.gate.holding(1).await;
    let second = post(&f, "two").await;
    let third = post(&f, "three").await;
    settled_mailbox(&f).await;
    // One batch per ticket at a time: the later posts wait for the first batch's outcome.
    assert_eq!(f.gate.held(), 1);

    f.gate.release(false);
    assert_eq!(first.await.unwrap().unwrap().content.as_str(), "one");
    f.gate.holding(1).await;
    f.gate.release(false);
    assert_eq!(second.await.unwrap().unwrap().content.as_str(), "two");
    assert_eq!(third.await.unwrap().unwrap().content.as_str(), "three");
    assert_eq!(*f.gate.batches.lock().unwrap(), vec![1, 2]);
    assert_eq!(stored(&f).await, ["one", "two", "three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_refuses_the_writes_queued_behind_it_and_the_ticket_reloads() {
    let f = fixture().await;
    let (first, second) = one_held_one_queued(&f).await;

    f.gate.release(true);
    assert!(matches!(
        first.await.unwrap(),
        Err(TicketError::Unavailable(_))
    ));
    assert!(matches!(
        second.await.unwrap(),
        Err(TicketError::Unavailable(_))
    ));
    // The write behind the failed batch was never sent.
    assert_eq!(*f.gate.batches.lock().unwrap(), vec![1]);
    assert!(stored(&f).await.is_empty());

    // The next request finds a fresh actor, loaded from what the store holds. It goes through
    // `Tickets::call`, which steps past the stopping actor if the registry still names it.
    let third = spawn_call(&f, |reply| TicketMsg::Post {
        author: Participant::User,
        content: MessageBody::parse("three").unwrap(),
        idempotency_key: None,
        reply,
    });
    f.gate.holding(1).await;
    f.gate.release(false);
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
    f.gate.holding(1).await;
    f.tickets.crash(&f.key).await.unwrap();
    // A crash drops the actor's state with its callers' reply ports: the HTTP side answers
    // 503 ("restarted while handling the request"), and a client retries with its
    // idempotency key.
    assert!(first.await.is_err());
    // The successor cannot load the ticket while its predecessor's batch is out.
    let next = spawn_call(&f, |reply| TicketMsg::Get { page: None, reply });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!next.is_finished());

    f.gate.release(false);
    let view: serde_json::Value = serde_json::from_slice(&next.await.unwrap().unwrap()).unwrap();
    assert_eq!(view["messages"][0]["content"], "one");
    assert_eq!(stored(&f).await, ["one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_store_loses_is_refused_instead_of_waited_for() {
    let f = fixture().await;
    let first = post(&f, "one").await;
    f.gate.holding(1).await;
    f.gate.lose();
    assert!(matches!(
        first.await.unwrap(),
        Err(TicketError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_tickets_sends_their_queued_writes_and_answers_every_caller() {
    let f = fixture().await;
    let (first, second) = one_held_one_queued(&f).await;

    // As at shutdown: the supervisor stops, and with it every ticket actor.
    let supervisor = f.supervisor.clone();
    let stopped = tokio::spawn(async move { supervisor.stop_and_wait(None, None).await.unwrap() });
    f.gate.release(false);
    // The stopping actor sends what it had queued, as one more batch.
    f.gate.holding(1).await;
    f.gate.release(false);
    assert_eq!(first.await.unwrap().unwrap().content.as_str(), "one");
    assert_eq!(second.await.unwrap().unwrap().content.as_str(), "two");
    stopped.await.unwrap();
    assert_eq!(stored(&f).await, ["one", "two"]);
}
