//! The storage conformance suite against the CQL backend, on a real node (Apache Cassandra in
//! the test script; ScyllaDB speaks the same protocol). All cases share one keyspace per run;
//! the suite's cases use fresh random project ids, so they do not see each other.

#[path = "support_cql.rs"]
mod support_cql;

use std::sync::Arc;

use fleety_actors::store::Store;

async fn cql() -> Arc<dyn Store> {
    let keyspace = format!("fleety_conformance_{}", std::process::id());
    Arc::new(support_cql::store(&keyspace).await)
}

fleety_actors::store_conformance_tests!(cql());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_twice_applies_nothing_the_second_time() {
    let keyspace = format!("fleety_migrate_{}", std::process::id());
    let config = support_cql::config(&keyspace);
    let session = fleety::store::scylla::connect(&config).await.unwrap();
    let first = fleety::store::scylla::migrate(&session, &config)
        .await
        .unwrap();
    let names: Vec<&str> = fleety::store::scylla::MIGRATIONS
        .iter()
        .map(|(_, n, _)| *n)
        .collect();
    assert_eq!(first, names);
    let second = fleety::store::scylla::migrate(&session, &config)
        .await
        .unwrap();
    assert!(second.is_empty(), "applied again: {second:?}");
}
