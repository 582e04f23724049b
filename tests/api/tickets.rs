use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn creating_a_ticket_answers_201_with_the_ticket() {
    let app = spawn_app().await;
    let resp = app
        .post_json(
            "/v1/tickets/demo",
            json!({"title": "Login issue", "description": "I can't log in"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let t: Value = resp.json().await.unwrap();
    assert_eq!(t["title"], "Login issue");
    assert_eq!(t["description"], "I can't log in");
    assert_eq!(t["status"], "open");
    assert_eq!(t["project_id"], app.project.as_str());
    assert_eq!(t["messages"], json!([]));
    assert!(t["id"].as_str().is_some() && t["created_at"].as_str().is_some());
    let slug = t["slug"].as_str().unwrap();
    let parts: Vec<&str> = slug.split('-').collect();
    assert_eq!(parts.len(), 3, "{slug}");
    assert!(
        parts[2].len() == 3 && parts[2].chars().all(|c| c.is_ascii_digit()),
        "{slug}"
    );
}

#[tokio::test]
async fn bad_ticket_requests_get_clear_errors() {
    let app = spawn_app().await;
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            app.http
                .post(app.url("/v1/tickets/demo"))
                .json(&json!({"title": "  "})),
            400,
        ),
        (
            app.http
                .post(app.url("/v1/tickets/demo"))
                .json(&json!({"description": "no title"})),
            400,
        ),
        (
            app.http
                .post(app.url("/v1/tickets/demo"))
                .json(&json!({"title": "x".repeat(201)})),
            400,
        ),
        (
            app.http
                .post(app.url("/v1/tickets/demo"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (
            app.http
                .post(app.url("/v1/tickets/demo"))
                .header("content-type", "text/plain")
                .body("{}"),
            415,
        ),
        (
            app.http
                .post(app.url("/v1/tickets/demo"))
                .json(&json!({"title": "t", "description": "x".repeat(70_000)})),
            413,
        ),
        (
            app.http
                .post(app.url("/v1/tickets/nosuchproject"))
                .json(&json!({"title": "t"})),
            404,
        ),
        (
            app.http
                .post(app.url("/v1/tickets/bad%20id"))
                .json(&json!({"title": "t"})),
            404,
        ),
        (app.http.delete(app.url("/v1/tickets/demo")), 405),
        (app.http.get(app.url("/v1/nothing/here")), 404),
    ];
    for (request, status) in cases {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        assert!(!error_of(&body).is_empty());
    }
}

#[tokio::test]
async fn messages_are_listed_in_order_with_who_has_read_them() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Order").await;
    let posted = app.post_message(&slug, "first").await;
    assert_eq!(posted["message"], "Message added successfully");
    assert_eq!(posted["data"]["content"], "first");
    app.post_message(&slug, "second").await;
    let reply = app
        .http
        .post(app.url(&format!("/v1/tickets/demo/{slug}/messages")))
        .bearer_auth(&app.admin_key)
        .json(&json!({"author": "admin", "content": "an agent answers"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);

    let read = app
        .admin_patch(
            &format!("/v1/tickets/demo/{slug}/messages/read"),
            json!({"reader": "admin"}),
        )
        .await;
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["message"], "Messages marked as read");

    let user_read = app
        .patch_json(
            &format!("/v1/tickets/demo/{slug}/messages/read"),
            json!({"reader": "user"}),
        )
        .await;
    assert_eq!(user_read.status(), 200);

    let t = app.ticket(&slug).await;
    let msgs = t["messages"].as_array().unwrap();
    let contents: Vec<&str> = msgs
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["first", "second", "an agent answers"]);
    assert_eq!(msgs[2]["author"], "admin");
    for m in msgs {
        assert_eq!(m["read_by"], json!(["user", "admin"]));
        assert!(m["id"].as_str().is_some() && m["timestamp"].as_str().is_some());
    }

    // A later message is read by nobody yet.
    app.post_message(&slug, "third").await;
    let t = app.ticket(&slug).await;
    assert_eq!(t["messages"][3]["read_by"], json!([]));
    assert_eq!(t["messages"][0]["read_by"], json!(["user", "admin"]));
}

#[tokio::test]
async fn speaking_or_reading_as_admin_needs_the_admin_key() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Auth").await;
    let path = format!("/v1/tickets/demo/{slug}/messages");
    let resp = app
        .post_json(&path, json!({"author": "admin", "content": "fake agent"}))
        .await;
    assert_eq!(resp.status(), 403);
    let resp = app
        .http
        .post(app.url(&path))
        .bearer_auth("fk_wrong")
        .json(&json!({"author": "admin", "content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app
        .post_json(&path, json!({"author": "robot", "content": "x"}))
        .await;
    assert_eq!(resp.status(), 400);
    let resp = app
        .patch_json(&format!("{path}/read"), json!({"reader": "admin"}))
        .await;
    assert_eq!(resp.status(), 403);
    // Nothing was stored by the refused requests.
    assert_eq!(app.ticket(&slug).await["messages"], json!([]));
}

#[tokio::test]
async fn posting_to_unknown_tickets_or_with_bad_content_fails_cleanly() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Errors").await;
    let resp = app
        .post_json(
            "/v1/tickets/demo/quiet-otter-001/messages",
            json!({"content": "hi"}),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let resp = app
        .post_json(
            "/v1/tickets/demo/not-a-slug/messages",
            json!({"content": "hi"}),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let resp = app
        .post_json(
            &format!("/v1/tickets/demo/{slug}/messages"),
            json!({"content": ""}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = app
        .post_json(
            &format!("/v1/tickets/demo/{slug}/messages"),
            json!({"content": "x".repeat(10_001)}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = app.get("/v1/tickets/demo/quiet-otter-001").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(error_of(&resp.json().await.unwrap()), "ticket not found");
}

#[tokio::test]
async fn agents_change_status_and_a_visitor_reply_reopens_a_resolved_ticket() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Status").await;
    let path = format!("/v1/tickets/demo/{slug}");
    assert_eq!(
        app.patch_json(&path, json!({"status": "closed"}))
            .await
            .status(),
        401
    );
    let resp = app
        .http
        .patch(app.url(&path))
        .bearer_auth("fk_nope")
        .json(&json!({"status": "closed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        app.admin_patch(&path, json!({"status": "done"}))
            .await
            .status(),
        400
    );

    let resp = app.admin_patch(&path, json!({"status": "resolved"})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "resolved");
    app.post_message(&slug, "actually, not fixed").await;
    assert_eq!(app.ticket(&slug).await["status"], "open");

    app.admin_patch(&path, json!({"status": "closed"})).await;
    let resp = app
        .post_json(&format!("{path}/messages"), json!({"content": "hello?"}))
        .await;
    assert_eq!(resp.status(), 409);
    assert_eq!(error_of(&resp.json().await.unwrap()), "ticket is closed");
}

#[tokio::test]
async fn a_long_ticket_can_be_read_in_pages() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Pages").await;
    for i in 0..7 {
        app.post_message(&slug, &format!("m{i}")).await;
    }
    let page: Value = app
        .get(&format!("/v1/tickets/demo/{slug}?limit=3"))
        .await
        .json()
        .await
        .unwrap();
    let contents = |p: &Value| {
        p["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(contents(&page), ["m4", "m5", "m6"]);
    let before = page["next_before"].as_str().unwrap();
    let older: Value = app
        .get(&format!("/v1/tickets/demo/{slug}?limit=3&before={before}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(contents(&older), ["m1", "m2", "m3"]);
    assert_eq!(
        app.get(&format!("/v1/tickets/demo/{slug}?limit=0"))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get(&format!("/v1/tickets/demo/{slug}?before=nope"))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn concurrent_posts_are_all_stored_once_in_a_consistent_order() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Busy").await;
    let posts = (0..50).map(|i| {
        let (http, url) = (
            app.http.clone(),
            app.url(&format!("/v1/tickets/demo/{slug}/messages")),
        );
        async move {
            http.post(url)
                .json(&json!({"content": format!("p{i}")}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    for status in futures_util::future::join_all(posts).await {
        assert_eq!(status, 201);
    }
    let t = app.ticket(&slug).await;
    let msgs = t["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 50);
    let mut contents: Vec<&str> = msgs
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    contents.sort();
    contents.dedup();
    assert_eq!(contents.len(), 50);
}

#[tokio::test]
async fn a_retried_post_with_the_same_idempotency_key_is_stored_once() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Retries").await;
    let url = app.url(&format!("/v1/tickets/demo/{slug}/messages"));
    let post = |key: &str, content: &str| {
        app.http
            .post(&url)
            .header("Idempotency-Key", key)
            .json(&json!({ "content": content }))
            .send()
    };
    let first = post("retry-7f3a", "only once").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = post("retry-7f3a", "only once").await.unwrap();
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["data"]["id"], first["data"]["id"]);

    let reused = post("retry-7f3a", "something else").await.unwrap();
    assert_eq!(reused.status(), 422);
    assert_eq!(post("has space", "x").await.unwrap().status(), 400);

    let t = app.ticket(&slug).await;
    assert_eq!(t["messages"].as_array().unwrap().len(), 1);
}
