//! `/metrics`: the Prometheus exposition after real traffic, bounded labels, and the optional
//! listener of its own.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn metrics_cover_http_actors_sockets_store_and_the_assistant() {
    let app = spawn_with_settings(|s| s.limits.public_per_minute = 1000).await;
    let slug = app.create_ticket("Metrics").await;
    let mut socket = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    next_event(&mut socket).await; // subscribed
    app.post_message(&slug, "hello").await;
    next_event(&mut socket).await; // new_message
    let token = app.session_token().await;
    sse_json(
        app.chat(
            "/v1/chat",
            &token,
            json!({"prompt": "How do I reset my password?"}),
        )
        .await,
    )
    .await;

    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    for expected in [
        "# HELP fleety_http_requests_total",
        r#"fleety_http_requests_total{route="/v1/tickets/{projectId}",method="POST",status="201"}"#,
        r#"fleety_http_request_duration_seconds_bucket{route="/v1/tickets/{projectId}/{slug}/messages",method="POST",le="#,
        r#"fleety_actors_live{kind="ticket"}"#,
        r#"fleety_actors_spawned_total{kind="chat_session"}"#,
        r#"fleety_actors_spawned_total{kind="knowledge_base"}"#,
        r#"fleety_actor_message_duration_seconds_bucket{kind="ticket",message="post",le="#,
        r#"fleety_actor_calls_in_flight{kind="ticket"}"#,
        r#"fleety_websockets_open{kind="ticket"}"#,
        r#"fleety_sse_streams_open{kind="chat"}"#,
        "fleety_events_fanned_out_total",
        r#"fleety_store_operation_duration_seconds_bucket{backend="#,
        r#"fleety_llm_time_to_first_token_seconds_bucket{provider="offline",le="#,
        r#"fleety_llm_tokens_total{provider="offline",kind="completion"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected}");
    }
    if !cql_backend() {
        // Group commit is the embedded store's.
        assert!(text.contains("fleety_store_group_commit_writes_bucket"));
    }
    // Labels never carry ids, slugs or tokens.
    assert!(!text.contains(&slug), "a slug leaked into a label");
    assert!(!text.contains(&token));
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let app =
        spawn_with_settings(|s| s.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap()))
            .await;
    // Not on the public listener then.
    assert_eq!(app.get("/metrics").await.status(), 404);
    let addr = app.metrics_addr.expect("a metrics listener");
    let resp = app
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("fleety_"));
    let other = app
        .http
        .get(format!("http://{addr}/v1/tickets/demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
