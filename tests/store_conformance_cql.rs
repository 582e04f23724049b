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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_article_written_before_languages_and_links_reads_as_english_without_a_link() {
    let keyspace = format!("fleety_conformance_{}", std::process::id());
    let store = support_cql::store(&keyspace).await;
    let session = fleety::store::scylla::connect(&support_cql::config(&keyspace))
        .await
        .unwrap();
    // The row as the columns before migration 0011 held it: no language, no url.
    let project = format!("old{}", std::process::id());
    let id = uuid::Uuid::new_v4();
    let now = chrono::Utc::now();
    session
        .query_unpaged(
            format!(
                "INSERT INTO {keyspace}.kb_articles (project_id, article_id, title, body, tags, \
                 created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                &project,
                id,
                "Refunds",
                "Five days.",
                vec!["billing"],
                now,
                now,
            ),
        )
        .await
        .unwrap();
    let project = fleety_actors::domain::ProjectId::parse(&project).unwrap();
    let articles = fleety_actors::store::KbStore::list_articles(&store, &project)
        .await
        .unwrap();
    assert_eq!(articles.len(), 1);
    assert_eq!(articles[0].id, id);
    assert_eq!(articles[0].language, fleety_actors::domain::Language::En);
    assert_eq!(articles[0].url, None);
}
