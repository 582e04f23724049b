//! Canned replies over the API: create, list, read, change and delete with the admin key, the
//! validation of each field, the shortcut unique in a project, the cap, and the guard.

use serde_json::{json, Value};

use crate::helpers::*;

const REPLIES: &str = "/v1/projects/demo/canned-replies";

async fn create(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app.admin_post(REPLIES, body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn canned_replies_are_created_listed_changed_and_deleted() {
    let app = spawn_app().await;
    let (status, hello) = create(
        &app,
        json!({"name": "Greeting", "shortcut": "/hello", "body": "Hi {{visitor.name}}, {{ agent.name }} here."}),
    )
    .await;
    assert_eq!(status, 201, "{hello}");
    assert_eq!(hello["shortcut"], "hello", "the leading slash is dropped");
    assert_eq!(hello["body"], "Hi {{visitor.name}}, {{ agent.name }} here.");
    let id = hello["id"].as_str().unwrap().to_owned();
    let (status, _) = create(
        &app,
        json!({"name": "Refunds", "shortcut": "refund", "body": "Refunds take five days."}),
    )
    .await;
    assert_eq!(status, 201);

    let list: Value = app.admin_get(REPLIES).await.json().await.unwrap();
    let shortcuts: Vec<&str> = list["canned_replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["shortcut"].as_str().unwrap())
        .collect();
    assert_eq!(shortcuts, ["hello", "refund"]);

    let one: Value = app
        .admin_get(&format!("{REPLIES}/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one, hello);

    let resp = app
        .admin_patch(
            &format!("{REPLIES}/{id}"),
            json!({"body": "Hello {{visitor.name}}!", "shortcut": "hi"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let changed: Value = resp.json().await.unwrap();
    assert_eq!(changed["name"], "Greeting", "what is left out stays");
    assert_eq!(changed["shortcut"], "hi");
    assert_eq!(changed["body"], "Hello {{visitor.name}}!");
    assert_eq!(changed["created_at"], hello["created_at"]);

    // The shortcut another reply has is refused, on a create and on a change.
    let (status, body) = create(
        &app,
        json!({"name": "Other", "shortcut": "refund", "body": "x"}),
    )
    .await;
    assert_eq!(status, 409);
    assert!(error_of(&body).contains("/refund"), "{body}");
    let resp = app
        .admin_patch(&format!("{REPLIES}/{id}"), json!({"shortcut": "refund"}))
        .await;
    assert_eq!(resp.status(), 409);

    let resp = app.admin_delete(&format!("{REPLIES}/{id}")).await;
    assert_eq!(resp.status(), 200);
    for resp in [
        app.admin_delete(&format!("{REPLIES}/{id}")).await,
        app.admin_get(&format!("{REPLIES}/{id}")).await,
        app.admin_patch(&format!("{REPLIES}/{id}"), json!({"name": "x"}))
            .await,
        app.admin_get(&format!("{REPLIES}/not-a-uuid")).await,
    ] {
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(error_of(&body), "canned reply not found");
    }
    let list: Value = app.admin_get(REPLIES).await.json().await.unwrap();
    assert_eq!(list["canned_replies"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn each_field_is_checked_with_a_clear_reason() {
    let app = spawn_app().await;
    let long_body = "x".repeat(5_001);
    let long_name = "n".repeat(81);
    let cases = [
        (
            json!({"name": "", "shortcut": "a", "body": "b"}),
            "name must not be empty",
        ),
        (
            json!({"name": long_name, "shortcut": "a", "body": "b"}),
            "name must be at most 80",
        ),
        (
            json!({"name": "a", "shortcut": "Two Words", "body": "b"}),
            "shortcut must be",
        ),
        (
            json!({"name": "a", "shortcut": "", "body": "b"}),
            "shortcut must be",
        ),
        (
            json!({"name": "a", "shortcut": "a", "body": "  "}),
            "body must not be empty",
        ),
        (
            json!({"name": "a", "shortcut": "a", "body": long_body}),
            "body must be at most 5000",
        ),
        (
            json!({"name": "a", "shortcut": "a", "body": "Hi {{visitor.email}}"}),
            "unknown placeholder {{visitor.email}}",
        ),
        (
            json!({"name": "a", "shortcut": "a", "body": "Hi {{agent.name"}),
            "without its '}}'",
        ),
        (json!({"name": "a", "shortcut": "a"}), "body"),
        (
            json!({"name": "a", "shortcut": "a", "body": "b", "extra": 1}),
            "extra",
        ),
    ];
    for (body, reason) in cases {
        let (status, answer) = create(&app, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert!(error_of(&answer).contains(reason), "{body} -> {answer}");
    }
    let list: Value = app.admin_get(REPLIES).await.json().await.unwrap();
    assert_eq!(list["canned_replies"], json!([]));
}

#[tokio::test]
async fn a_project_has_at_most_its_cap_of_canned_replies() {
    let app = spawn_app().await;
    let cap = fleety_actors::canned::MAX_PER_PROJECT;
    for i in 0..cap {
        let (status, body) = create(
            &app,
            json!({"name": format!("Reply {i}"), "shortcut": format!("r{i}"), "body": "text"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = create(
        &app,
        json!({"name": "One more", "shortcut": "more", "body": "text"}),
    )
    .await;
    assert_eq!(status, 409);
    assert!(error_of(&body).contains(&format!("at most {cap} canned replies")));
}

#[tokio::test]
async fn canned_replies_need_the_projects_admin_key() {
    let app = spawn_app().await;
    let resp = app
        .post_json(REPLIES, json!({"name": "a", "shortcut": "a", "body": "b"}))
        .await;
    assert_eq!(resp.status(), 401);
    let resp = app
        .http
        .get(app.url(REPLIES))
        .bearer_auth("fk_not_the_key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}
