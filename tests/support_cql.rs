//! Shared by the CQL test binaries: where the test node is, and a migrated keyspace per run.
//!
//! The CQL tests never skip: without `FLEETY_TEST_CQL` they fail and say how to start the node,
//! so a run without Cassandra cannot pass silently.

#![allow(dead_code)]

use fleety::store::scylla::{migrate, ScyllaConfig, ScyllaStore};

pub fn cql_node() -> String {
    std::env::var("FLEETY_TEST_CQL").unwrap_or_else(|_| {
        panic!(
            "FLEETY_TEST_CQL is not set: the CQL tests need a node. Run the whole suite with \
             scripts/test.sh, or start one with scripts/cassandra.sh start and set FLEETY_TEST_CQL=127.0.0.1:9042"
        )
    })
}

pub fn config(keyspace: &str) -> ScyllaConfig {
    ScyllaConfig {
        nodes: vec![cql_node()],
        keyspace: keyspace.to_owned(),
        ..ScyllaConfig::default()
    }
}

/// Migrations are serialised across the test process: concurrent schema changes on one node
/// only slow each other down.
static MIGRATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A store on `keyspace`, migrating it first if this process has not yet.
pub async fn store(keyspace: &str) -> ScyllaStore {
    let config = config(keyspace);
    {
        let _one_at_a_time = MIGRATING.lock().await;
        let session = fleety::store::scylla::connect(&config)
            .await
            .expect("connect to the CQL node");
        migrate(&session, &config)
            .await
            .expect("migrate the test keyspace");
    }
    ScyllaStore::open(&config)
        .await
        .expect("open the CQL store")
}
