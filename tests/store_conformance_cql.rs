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
