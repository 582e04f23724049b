//! Durable message appends through the embedded store, by number of concurrent writers.
//!
//! Every append is acknowledged only once it is on disk, so with one writer the rate is one
//! fsync per message; with many, group commit shares each fsync among all waiting writers.
//! Run: `cargo bench --bench store`.

use std::sync::Arc;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fleety::store::embedded::EmbeddedStore;
use fleety_actors::domain::*;
use fleety_actors::store::Store;
use fleety_actors::MessageId;

fn setup(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    tickets: usize,
) -> (Arc<dyn Store>, ProjectId, Vec<Slug>) {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir).expect("open store"));
    let project = ProjectId::parse("bench").unwrap();
    let slugs: Vec<Slug> = (0..tickets)
        .map(|i| Slug::parse(&format!("bench-ticket-{:03}", i % 1000)).unwrap())
        .collect();
    rt.block_on(async {
        store
            .create_project(&Project {
                id: project.clone(),
                name: "bench".into(),
                allowed_origins: vec![],
                admin_key_hash: String::new(),
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        for slug in &slugs {
            let now = Utc::now();
            store
                .create_ticket(&Ticket {
                    id: uuid::Uuid::new_v4(),
                    slug: slug.clone(),
                    project_id: project.clone(),
                    title: Title::parse("bench").unwrap(),
                    description: Description::parse("").unwrap(),
                    status: TicketStatus::Open,
                    created_at: now,
                    updated_at: now,
                    source: TicketSource::Api,
                    session_id: None,
                })
                .await
                .unwrap();
        }
    });
    (store, project, slugs)
}

fn appends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("embedded_append_durable");
    group.sample_size(10);
    for writers in [1usize, 16, 128] {
        let dir = tempfile::tempdir().unwrap();
        let (store, project, slugs) = setup(&rt, dir.path(), writers);
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
                    };
                    let (store, project, slug) = (store.clone(), project.clone(), slug.clone());
                    async move {
                        store
                            .append_message(&project, &slug, &message)
                            .await
                            .unwrap()
                    }
                });
                futures_util::future::join_all(writes)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, appends);
criterion_main!(benches);
