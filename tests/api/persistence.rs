use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn tickets_messages_and_receipts_survive_a_restart() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Persist").await;
    app.post_message(&slug, "before restart").await;
    app.admin_patch(
        &format!("/v1/tickets/demo/{slug}/messages/read"),
        json!({"reader": "admin"}),
    )
    .await;
    app.admin_patch(
        &format!("/v1/tickets/demo/{slug}"),
        json!({"status": "pending"}),
    )
    .await;
    let keyed = app
        .http
        .post(app.url(&format!("/v1/tickets/demo/{slug}/messages")))
        .header("Idempotency-Key", "survives-restart")
        .json(&json!({"content": "keyed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 201);
    let keyed: Value = keyed.json().await.unwrap();
    let before = app.ticket(&slug).await;
    let admin_key = app.admin_key.clone();
    let restart = app.stop().await;

    let app = spawn_with(restart.options()).await;
    assert_eq!(app.admin_key, admin_key, "the demo project keeps its key");
    let after = app.ticket(&slug).await;
    assert_eq!(after, before);
    assert_eq!(after["status"], "pending");
    assert_eq!(after["messages"][0]["read_by"], json!(["admin"]));
    // The key is remembered across the restart: the retry finds the original message.
    let retried: Value = app
        .http
        .post(app.url(&format!("/v1/tickets/demo/{slug}/messages")))
        .header("Idempotency-Key", "survives-restart")
        .json(&json!({"content": "keyed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(retried["data"]["id"], keyed["data"]["id"]);
    app.post_message(&slug, "after restart").await;
    assert_eq!(
        app.ticket(&slug).await["messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}
