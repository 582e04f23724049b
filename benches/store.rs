//! Durable message appends through each store, by number of concurrent writers, and ticket
//! status changes (a new version of the ticket's row) set against them.
//!
//! Every append is acknowledged only once it is durable. On the embedded store one writer pays
//! one fsync per message, and many writers share each fsync through group commit. On the CQL
//! store each append is one prepared INSERT at LOCAL_QUORUM.
//! Run: `cargo bench -p fleety-benches --bench store` (embedded), with `FLEETY_TEST_CQL=host:port` also CQL.

use std::sync::Arc;

use chrono::Utc;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use fleety::store::embedded::EmbeddedStore;
use fleety::store::scylla::{ScyllaConfig, ScyllaStore};
use fleety_actors::domain::*;
use fleety_actors::store::{write, Store, TicketWrite};
use fleety_actors::MessageId;

fn open(rt: &tokio::runtime::Runtime, backend: &str, dir: &std::path::Path) -> Arc<dyn Store> {
    if backend == "embedded" {
        return Arc::new(EmbeddedStore::open(dir).expect("open store"));
    }
    rt.block_on(async {
        let node = std::env::var("FLEETY_TEST_CQL").expect("FLEETY_TEST_CQL");
        let config = ScyllaConfig {
            nodes: vec![node],
            keyspace: format!("fleety_bench_{}", std::process::id()),
            ..ScyllaConfig::default()
        };
        let session = fleety::store::scylla::connect(&config)
            .await
            .expect("connect");
        fleety::store::scylla::migrate(&session, &config)
            .await
            .expect("migrate");
        Arc::new(ScyllaStore::open(&config).await.expect("open CQL store")) as Arc<dyn Store>
    })
}

fn setup(
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    tickets: usize,
) -> (Arc<dyn Store>, ProjectId, Vec<Ticket>) {
    let project = ProjectId::parse(&format!("bench_{}", uuid::Uuid::new_v4().simple())).unwrap();
    let slugs: Vec<Slug> = (0..tickets)
        .map(|i| Slug::parse(&format!("bench-ticket-{:03}", i % 1000)).unwrap())
        .collect();
    rt.block_on(async move {
        store
            .create_project(&Project {
                id: project.clone(),
                name: "bench".into(),
                allowed_origins: vec![],
                admin_key_hash: String::new(),
                assistant: Default::default(),
                csat_disabled: false,
                identity_secrets: Vec::new(),
                ticket_access: Default::default(),
                retention: Default::default(),
                created_at: fleety_actors::clock::now_millis(),
            })
            .await
            .unwrap();
        let mut created = Vec::with_capacity(slugs.len());
        for slug in slugs {
            let now = fleety_actors::clock::now_millis();
            let ticket = Ticket {
                id: uuid::Uuid::new_v4(),
                slug,
                project_id: project.clone(),
                title: Title::parse("bench").unwrap(),
                description: Description::parse("").unwrap(),
                status: TicketStatus::Open,
                created_at: now,
                updated_at: now,
                source: TicketSource::Api,
                session_id: None,
                assignee: None,
                assignee_member: None,
                tags: Default::default(),
                visitor: None,
                satisfaction: None,
                contact: None,
            };
            store.create_ticket(&ticket, &[]).await.unwrap();
            created.push(ticket);
        }
        (store, project, created)
    })
}

fn appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for backend in backends() {
        let mut group = c.benchmark_group(format!("{backend}_append_durable"));
        group.sample_size(10);
        let dir = tempfile::tempdir().unwrap();
        let opened = open(&rt, backend, dir.path());
        for writers in [1usize, 16, 128] {
            let (store, project, tickets) = setup(&rt, opened.clone(), writers);
            let slugs: Vec<Slug> = tickets.into_iter().map(|t| t.slug).collect();
            let content = MessageBody::parse(&"x".repeat(200)).unwrap();
            group.throughput(Throughput::Elements(writers as u64));
            group.bench_with_input(BenchmarkId::from_parameter(writers), &writers, |b, _| {
                b.to_async(&rt).iter(|| {
                    let writes = slugs.iter().map(|slug| {
                        let id = MessageId::next(None, Utc::now());
                        let message = Message {
                            id,
                            author: Participant::User,
                            content: content.clone(),
                            timestamp: id.timestamp(),
                            idempotency_key: None,
                            agent: None,
                        };
                        let (store, project, slug) = (store.clone(), project.clone(), slug.clone());
                        async move {
                            let writes = vec![TicketWrite::Message(message)];
                            write(store, &project, &slug, writes).await.unwrap()
                        }
                    });
                    futures_util::future::join_all(writes)
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, appends);
/// What a latency run writes on each step of a writer.
#[derive(Clone, Copy)]
enum Kind {
    /// A new message: an insert of a new row.
    Message,
    /// A ticket's status change: a new version of the ticket's row, which must never undo a
    /// newer one (on CQL a lightweight transaction, so it is timed against the message).
    Ticket,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Ticket => "ticket",
        }
    }

    /// The writes of step `i` on `ticket`, after `last` (the previous step's message id).
    fn writes(self, ticket: &Ticket, last: &mut Option<MessageId>, i: usize) -> Vec<TicketWrite> {
        match self {
            Kind::Message => {
                let id = MessageId::next(*last, Utc::now());
                *last = Some(id);
                vec![TicketWrite::Message(Message {
                    id,
                    author: Participant::User,
                    content: MessageBody::parse(&"x".repeat(200)).unwrap(),
                    timestamp: id.timestamp(),
                    idempotency_key: None,
                    agent: None,
                })]
            }
            Kind::Ticket => {
                // Each version a millisecond past the one before, as the ticket actor makes them.
                let mut next = ticket.clone();
                next.status = [TicketStatus::Pending, TicketStatus::Open][i % 2];
                next.updated_at = ticket.updated_at + chrono::Duration::milliseconds(i as i64 + 1);
                vec![TicketWrite::Ticket(next)]
            }
        }
    }
}

/// Per-write latency, which criterion's per-round times do not show: a fixed number of writes
/// per writer, each timed into an HDR histogram, then one line per backend, kind and concurrency.
/// A status change is set against a message append of the same store in the same run.
fn latencies() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("\nper-write latency (each write acknowledged durable)");
    println!(
        "{:<9} {:<8} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "store", "write", "writers", "writes/s", "p50 µs", "p99 µs", "p99.9 µs"
    );
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(&rt, backend, dir.path());
        for kind in [Kind::Message, Kind::Ticket] {
            for writers in [1usize, 16, 128] {
                let (store, project, tickets) = setup(&rt, opened.clone(), writers);
                let per_writer = (4000 / writers).max(50);
                let started = std::time::Instant::now();
                let histograms = rt.block_on(async {
                    let tasks = tickets.iter().cloned().map(|ticket| {
                        let (store, project) = (store.clone(), project.clone());
                        tokio::spawn(async move {
                            let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                            let mut last = None;
                            for i in 0..per_writer {
                                let writes = kind.writes(&ticket, &mut last, i);
                                let t = std::time::Instant::now();
                                let slug = &ticket.slug;
                                write(store.clone(), &project, slug, writes).await.unwrap();
                                h.record(t.elapsed().as_micros() as u64).unwrap();
                            }
                            h
                        })
                    });
                    futures_util::future::join_all(tasks).await
                });
                let elapsed = started.elapsed();
                if let Kind::Ticket = kind {
                    // Timed writes the store refused as older would measure the wrong thing.
                    let first = &tickets[0];
                    let stored = rt
                        .block_on(store.get_ticket(&project, &first.slug))
                        .unwrap()
                        .unwrap();
                    let newest = chrono::Duration::milliseconds(per_writer as i64);
                    assert_eq!(stored.updated_at, first.updated_at + newest);
                }
                let mut all = hdrhistogram::Histogram::<u64>::new(3).unwrap();
                for h in histograms {
                    all.add(h.unwrap()).unwrap();
                }
                println!(
                    "{:<9} {:<8} {:>7} {:>10.0} {:>9} {:>9} {:>9}",
                    backend,
                    kind.name(),
                    writers,
                    all.len() as f64 / elapsed.as_secs_f64(),
                    all.value_at_quantile(0.5),
                    all.value_at_quantile(0.99),
                    all.value_at_quantile(0.999)
                );
            }
        }
    }
}

fn backends() -> Vec<&'static str> {
    let mut backends = vec!["embedded"];
    if std::env::var("FLEETY_TEST_CQL").is_ok() {
        backends.push("cql");
    }
    backends
}

fn main() {
    benches();
    latencies();
    Criterion::default().configure_from_args().final_summary();
}
