//! Does the embedded store's write-ahead log still earn its place against redb's own group
//! commit? Both take the same durable message appends in the same run, alternating:
//!
//! - **log**: the embedded store as it ships. A group of writes is acknowledged once its log
//!   record is synced; redb is brought up to date behind it without syncing.
//! - **redb**: a writer thread that takes every queued write, inserts them in one redb
//!   transaction with redb's default (immediate) durability, commits, and acknowledges them.
//!   This is the least a store on redb alone has to do, with none of the embedded store's
//!   checks, so it can only flatter redb.
//!
//! Each of N writers appends 200-byte messages to its own ticket, one after another; every
//! append's latency goes into a histogram, and the process's CPU time is read before and after.
//!
//! Run: `cargo bench -p fleety-benches --bench group_commit [-- ROUNDS]` (default 2 rounds).

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use fleety::store::embedded::EmbeddedStore;
use fleety_actors::domain::*;
use fleety_actors::store::{write, ProjectStore, TicketStore, TicketWrite};
use fleety_actors::MessageId;
use hdrhistogram::Histogram;
use redb::{Database, TableDefinition};
use tokio::sync::oneshot;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The embedded store's message table, as `tables.rs` lays it out.
const MESSAGES: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("messages");

type Ack = oneshot::Sender<()>;
/// A message row (project, slug, id ticks, JSON) and who waits for it.
type Queued = ((String, String, u64, Vec<u8>), Ack);

/// redb alone: one thread commits whatever is queued as one durable transaction.
struct RedbGroupCommit {
    queue: Option<std_mpsc::Sender<Queued>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RedbGroupCommit {
    fn open(dir: &std::path::Path) -> Self {
        let db = Database::create(dir.join("alone.redb")).expect("redb");
        let (tx, rx) = std_mpsc::channel::<Queued>();
        let thread = std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                while group.len() < 4096 {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let txn = db.begin_write().expect("begin");
                {
                    let mut table = txn.open_table(MESSAGES).expect("table");
                    for ((project, slug, ticks, value), _) in &group {
                        let key = (project.as_str(), slug.as_str(), *ticks);
                        table.insert(key, value.as_slice()).expect("insert");
                    }
                }
                txn.commit().expect("commit");
                for (_, ack) in group {
                    let _ = ack.send(());
                }
            }
        });
        Self {
            queue: Some(tx),
            thread: Some(thread),
        }
    }

    async fn append(&self, project: &str, slug: &str, message: &Message) {
        let value = serde_json::to_vec(message).expect("json");
        let (ack, acked) = oneshot::channel();
        let row = (
            project.to_owned(),
            slug.to_owned(),
            message.id.ticks(),
            value,
        );
        self.queue
            .as_ref()
            .unwrap()
            .send((row, ack))
            .expect("queue");
        acked.await.expect("acknowledged");
    }
}

impl Drop for RedbGroupCommit {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Log,
    Redb,
}

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn message(previous: Option<MessageId>, content: &MessageBody) -> Message {
    let id = MessageId::next(previous, Utc::now());
    Message {
        id,
        author: Participant::User,
        content: content.clone(),
        timestamp: id.timestamp(),
        idempotency_key: None,
        agent: None,
    }
}

struct Outcome {
    per_sec: f64,
    latency: Histogram<u64>,
    cpu_per_append: Duration,
}

async fn run(variant: Variant, writers: usize, per_writer: usize) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let project = ProjectId::parse("bench").unwrap();
    let slugs: Vec<Slug> = (0..writers)
        .map(|i| Slug::parse(&format!("swift-bear-{i:03}")).unwrap())
        .collect();
    let (log, redb) = match variant {
        Variant::Log => {
            let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            let now = Utc::now();
            store
                .create_project(&Project {
                    id: project.clone(),
                    name: "Bench".into(),
                    allowed_origins: vec![],
                    admin_key_hash: String::new(),
                    assistant: Default::default(),
                    csat_disabled: false,
                    identity_secrets: Vec::new(),
                    ticket_access: Default::default(),
                    retention: Default::default(),
                    created_at: now,
                })
                .await
                .unwrap();
            for slug in &slugs {
                let ticket = Ticket {
                    id: uuid::Uuid::new_v4(),
                    slug: slug.clone(),
                    project_id: project.clone(),
                    title: Title::parse("Bench").unwrap(),
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
            }
            (Some(store), None)
        }
        Variant::Redb => (None, Some(Arc::new(RedbGroupCommit::open(dir.path())))),
    };
    let content = MessageBody::parse(&"x".repeat(200)).unwrap();
    let (cpu_before, started) = (cpu_time(), Instant::now());
    let tasks = slugs.iter().cloned().map(|slug| {
        let (log, redb, project, content) =
            (log.clone(), redb.clone(), project.clone(), content.clone());
        tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).unwrap();
            let mut last = None;
            for _ in 0..per_writer {
                let m = message(last, &content);
                last = Some(m.id);
                let t = Instant::now();
                if let Some(store) = &log {
                    let writes = vec![TicketWrite::Message(m)];
                    write(store.clone(), &project, &slug, writes).await.unwrap();
                } else if let Some(redb) = &redb {
                    redb.append(project.as_str(), slug.as_str(), &m).await;
                }
                h.record(t.elapsed().as_micros() as u64).unwrap();
            }
            h
        })
    });
    let histograms = futures_util::future::join_all(tasks).await;
    let elapsed = started.elapsed();
    // The log's applier finishes behind the acknowledgements; dropping the store waits for it,
    // so its CPU is counted too.
    drop((log, redb));
    let cpu = cpu_time() - cpu_before;
    let mut latency = Histogram::<u64>::new(3).unwrap();
    for h in histograms {
        latency.add(h.unwrap()).unwrap();
    }
    let appends = (writers * per_writer) as u32;
    Outcome {
        per_sec: f64::from(appends) / elapsed.as_secs_f64(),
        latency,
        cpu_per_append: cpu / appends,
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("durable appends: the write-ahead log against redb's own group commit");
    println!(
        "{:<6} {:>7} {:>5} {:>10} {:>9} {:>9} {:>10} {:>12}",
        "store", "writers", "round", "appends/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU µs/app"
    );
    for writers in [1usize, 16, 128, 512] {
        let per_writer = (8000 / writers).max(40);
        for round in 1..=rounds {
            for variant in [Variant::Log, Variant::Redb] {
                let o = rt.block_on(run(variant, writers, per_writer));
                let name = if variant == Variant::Log {
                    "log"
                } else {
                    "redb"
                };
                println!(
                    "{:<6} {:>7} {:>5} {:>10.0} {:>9} {:>9} {:>10} {:>12.1}",
                    name,
                    writers,
                    round,
                    o.per_sec,
                    o.latency.value_at_quantile(0.5),
                    o.latency.value_at_quantile(0.99),
                    o.latency.value_at_quantile(0.999),
                    o.cpu_per_append.as_secs_f64() * 1e6,
                );
            }
        }
    }
}
