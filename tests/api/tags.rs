//! Ticket tags: agents set them with `PATCH`, everyone sees them on the ticket, the listing
//! filters by one, and the change is told on the ticket's socket and the project feed.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn agents_tag_a_ticket_and_everyone_sees_and_hears_the_tags() {
    let app = spawn_app().await;
    let tagged = app.create_ticket("Refund please").await;
    let plain = app.create_ticket("Cannot log in").await;
    assert_eq!(app.ticket(&plain).await["tags"], json!([]), "no tags yet");
    let mut visitor = app.connect(&format!("/v1/tickets/demo/{tagged}/ws")).await;
    assert_eq!(next_event(&mut visitor).await["type"], "subscribed");
    let mut feed = app.connect_feed().await;
    assert_eq!(next_event(&mut feed).await["type"], "subscribed");
    let path = format!("/v1/tickets/demo/{tagged}");

    let resp = app
        .admin_patch(&path, json!({"tags": ["vip", "billing", "vip"]}))
        .await;
    assert_eq!(resp.status(), 200);
    let ticket: Value = resp.json().await.unwrap();
    assert_eq!(
        ticket["tags"],
        json!(["vip", "billing"]),
        "a repeat is kept once"
    );
    assert_eq!(
        ticket["status"], "open",
        "the rest of the ticket is unchanged"
    );

    let event = next_event(&mut visitor).await;
    assert_eq!(event["type"], "ticket_update");
    assert_eq!(event["payload"]["tags"], json!(["vip", "billing"]));
    assert_eq!(event["payload"]["previous"], json!([]));
    assert_eq!(event["payload"]["updated_at"], ticket["updated_at"]);
    let on_feed = next_event(&mut feed).await;
    assert_eq!(on_feed["type"], "ticket_update");
    assert_eq!(on_feed["ticket"], tagged.as_str());
    assert_eq!(on_feed["payload"], event["payload"]);

    assert_eq!(app.ticket(&tagged).await["tags"], json!(["vip", "billing"]));
    let listed: Value = app
        .admin_get("/v1/projects/demo/tickets?tag=billing")
        .await
        .json()
        .await
        .unwrap();
    let slugs: Vec<&str> = listed["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, [tagged.as_str()]);
    assert_eq!(listed["tickets"][0]["tags"], json!(["vip", "billing"]));

    // Tags and status in one request are one change; an empty list removes every tag.
    let both = app
        .admin_patch(&path, json!({"status": "pending", "tags": ["vip"]}))
        .await;
    let both: Value = both.json().await.unwrap();
    assert_eq!(
        (both["status"].as_str(), both["tags"].clone()),
        (Some("pending"), json!(["vip"]))
    );
    let kinds = [
        next_event(&mut visitor).await,
        next_event(&mut visitor).await,
    ];
    let kinds: Vec<&str> = kinds.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["status_change", "ticket_update"]);
    let cleared = app.admin_patch(&path, json!({"tags": []})).await;
    assert_eq!(cleared.status(), 200);
    assert_eq!(app.ticket(&tagged).await["tags"], json!([]));
    let none: Value = app
        .admin_get("/v1/projects/demo/tickets?tag=vip")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["tickets"], json!([]));
}

#[tokio::test]
async fn bad_tags_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Printer").await;
    let path = format!("/v1/tickets/demo/{slug}");
    assert_eq!(
        app.admin_patch(&path, json!({"tags": ["keep"]}))
            .await
            .status(),
        200
    );
    let too_many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    for bad in [
        json!({"tags": too_many}),
        json!({"tags": ["two words"]}),
        json!({"tags": [""]}),
        json!({"tags": ["x".repeat(33)]}),
        json!({"tags": ["ünïcode"]}),
        json!({"tags": "vip"}),
        json!({"tags": [7]}),
        json!({"tags": null}),
    ] {
        let resp = app.admin_patch(&path, bad.clone()).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(error_of(&body).contains("tags"), "{bad}: {body}");
    }
    assert_eq!(app.ticket(&slug).await["tags"], json!(["keep"]));
    let twenty: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    assert_eq!(
        app.admin_patch(&path, json!({"tags": twenty}))
            .await
            .status(),
        200
    );
    for bad in ["two%20words", "", "a%2Fb"] {
        let resp = app
            .admin_get(&format!("/v1/projects/demo/tickets?tag={bad}"))
            .await;
        assert_eq!(resp.status(), 400, "tag={bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(error_of(&body).starts_with("tag:"), "{body}");
    }
    // Tagging is for agents.
    assert_eq!(
        app.patch_json(&path, json!({"tags": ["mine"]}))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn tags_survive_a_restart() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Tagged").await;
    let path = format!("/v1/tickets/demo/{slug}");
    let resp = app.admin_patch(&path, json!({"tags": ["vip"]})).await;
    assert_eq!(resp.status(), 200);
    let restart = app.stop().await;
    let app = spawn_with(restart.options()).await;
    assert_eq!(app.ticket(&slug).await["tags"], json!(["vip"]));
    let listed: Value = app
        .admin_get("/v1/projects/demo/tickets?tag=vip")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["tickets"][0]["slug"], slug.as_str());
}
