//! The actor core's costs:
//!
//! - `round_trip`: one request and its answer through a ractor actor, against the same through a
//!   plain tokio mpsc channel with a oneshot reply (the floor an actor runtime adds to). A
//!   timed pass after criterion prints the ratio.
//! - `encode`: JSON encoding of realtime events: one `new_message` frame, and a ticket of 100
//!   messages as `GET` answers it.
//! - `fanout`: one durable message on a ticket with N subscribers, until every subscriber has
//!   received it: the real `TicketActor`, embedded store, and subscriber queues.
//!
//! Run: `cargo bench -p fleety-benches --bench actors`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use fleety::store::embedded::EmbeddedStore;
use fleety_actors::clock::{now_millis, SystemClock};
use fleety_actors::domain::*;
use fleety_actors::events::{self, MessageView, TicketView};
use fleety_actors::feed::ProjectFeeds;
use fleety_actors::store::Store;
use fleety_actors::ticket::{Command, Subscription, TicketConfig, TicketKey, TicketSetup, Tickets};
use fleety_actors::MessageId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{mpsc, oneshot};

struct Echo;

impl Actor for Echo {
    type Msg = RpcReplyPort<u64>;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        reply: Self::Msg,
        count: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        *count += 1;
        let _ = reply.send(*count);
        Ok(())
    }
}

/// The same service as [`Echo`] on a bare channel: a task owning the state, answering on a
/// oneshot.
fn spawn_channel_echo() -> mpsc::Sender<oneshot::Sender<u64>> {
    let (tx, mut rx) = mpsc::channel::<oneshot::Sender<u64>>(1024);
    tokio::spawn(async move {
        let mut count = 0u64;
        while let Some(reply) = rx.recv().await {
            count += 1;
            let _ = reply.send(count);
        }
    });
    tx
}

async fn actor_call(actor: &ActorRef<RpcReplyPort<u64>>) -> u64 {
    match actor.call(|reply| reply, None).await {
        Ok(ractor::rpc::CallResult::Success(n)) => n,
        other => panic!("echo failed: {other:?}"),
    }
}

async fn channel_call(tx: &mpsc::Sender<oneshot::Sender<u64>>) -> u64 {
    let (reply, answer) = oneshot::channel();
    tx.send(reply).await.expect("echo task alive");
    answer.await.expect("echo answered")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let (actor, _) = rt
        .block_on(Actor::spawn(None, Echo, ()))
        .expect("spawn echo");
    let tx = rt.block_on(async { spawn_channel_echo() });
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ractor", |b| b.to_async(&rt).iter(|| actor_call(&actor)));
    group.bench_function("mpsc", |b| b.to_async(&rt).iter(|| channel_call(&tx)));
    group.finish();

    // The ratio the performance goal is stated in, from long interleaved runs so that both
    // see the same machine state.
    let rounds = 5;
    let per_round = 200_000;
    let (mut actor_total, mut channel_total) = (Duration::ZERO, Duration::ZERO);
    rt.block_on(async {
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..per_round {
                std::hint::black_box(actor_call(&actor).await);
            }
            actor_total += start.elapsed();
            let start = Instant::now();
            for _ in 0..per_round {
                std::hint::black_box(channel_call(&tx).await);
            }
            channel_total += start.elapsed();
        }
    });
    let n = (rounds * per_round) as f64;
    let actor_ns = actor_total.as_nanos() as f64 / n;
    let channel_ns = channel_total.as_nanos() as f64 / n;
    println!(
        "round trip: ractor {actor_ns:.0} ns, mpsc+oneshot {channel_ns:.0} ns, ratio {:.2}",
        actor_ns / channel_ns
    );
    actor.stop(None);
}

fn sample_message(i: usize, previous: Option<MessageId>) -> Message {
    let id = MessageId::next(previous, now_millis());
    Message {
        id,
        author: if i.is_multiple_of(2) {
            Participant::User
        } else {
            Participant::Admin
        },
        content: MessageBody::parse(&format!(
            "Message number {i}: I still cannot log in after resetting my password twice."
        ))
        .expect("valid body"),
        timestamp: id.timestamp(),
        idempotency_key: None,
        agent: None,
    }
}

fn encode(c: &mut Criterion) {
    let ticket = Ticket::opened(
        ProjectId::parse("bench").expect("project"),
        Slug::parse("swift-bear-053").expect("slug"),
        Title::parse("Login issue").expect("title"),
        Description::parse("I can't log in").expect("description"),
        TicketSource::Api,
        None,
        now_millis(),
    );
    let mut messages: Vec<Message> = Vec::new();
    for i in 0..100 {
        let previous = messages.last().map(|m| m.id);
        messages.push(sample_message(i, previous));
    }
    let cursors = [ReadCursor {
        reader: Participant::Admin,
        up_to: messages[50].id,
    }];
    let mut group = c.benchmark_group("encode");
    group.bench_function("new_message_frame", |b| {
        b.iter(|| {
            events::event_frame(
                "new_message",
                None,
                MessageView::new(std::hint::black_box(&messages[99]), &cursors),
            )
        })
    });
    group.bench_function("ticket_view_100_messages", |b| {
        b.iter(|| TicketView::new(&ticket, messages.iter(), &cursors).to_bytes())
    });
    group.finish();
}

async fn ticket_with_subscribers(
    tickets: &Tickets,
    store: &Arc<dyn Store>,
    subscribers: usize,
) -> (TicketKey, Vec<Subscription>) {
    let project =
        ProjectId::parse(&format!("bench_{}", uuid::Uuid::new_v4().simple())).expect("project id");
    store
        .create_project(&Project {
            id: project.clone(),
            name: "bench".into(),
            allowed_origins: vec![],
            admin_key_hash: "00".repeat(32),
            assistant: Default::default(),
            csat_disabled: false,
            identity_secrets: Vec::new(),
            ticket_access: Default::default(),
            retention: Default::default(),
            created_at: now_millis(),
        })
        .await
        .expect("project");
    let now = now_millis();
    let ticket = Ticket::opened(
        project.clone(),
        Slug::parse("bench-fanout-001").expect("slug"),
        Title::parse("fan-out").expect("title"),
        Description::parse("").expect("description"),
        TicketSource::Api,
        None,
        now,
    );
    store.create_ticket(&ticket, &[]).await.expect("ticket");
    let key = TicketKey {
        project,
        slug: ticket.slug,
    };
    let mut subs = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        subs.push(tickets.subscribe(&key, None).await.expect("subscribe"));
    }
    (key, subs)
}

fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let config = TicketConfig {
        subscriber_queue: 1024,
        ..TicketConfig::default()
    };
    let tickets = rt
        .block_on(Tickets::start(
            TicketSetup {
                store: store.clone(),
                clock: Arc::new(SystemClock),
                feeds: ProjectFeeds::default(),
                hooks: Default::default(),
                config,
                cluster: None,
            },
            None,
        ))
        .expect("tickets")
        .0;
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20);
    for n in [10usize, 100, 1000] {
        let (key, subs) = rt.block_on(ticket_with_subscribers(&tickets, &store, n));
        let subs = tokio::sync::Mutex::new(subs);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.to_async(&rt).iter(|| async {
                let post = Command::Post {
                    author: Participant::Admin,
                    content: MessageBody::parse("fan-out").expect("body"),
                    idempotency_key: None,
                    agent: None,
                };
                tickets.run(&key, post).await.expect("post");
                let mut subs = subs.lock().await;
                for sub in subs.iter_mut() {
                    sub.events.recv().await.expect("delivered");
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, round_trip, encode, fanout);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
