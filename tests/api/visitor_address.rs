//! The visitor's own address for replies (`PUT …/visitor-email`, the widget's "get replies by
//! email" field): stored on the ticket's visitor marked unverified, validated, held to the
//! project's ticket access, never over a verified contact's address, and used by the visitor
//! emails.

use chrono::Duration;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;

async fn put_email(app: &TestApp, slug: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app
        .http
        .put(app.url(&format!("/v1/tickets/demo/{slug}/visitor-email")))
        .json(&body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn visitor_of(app: &TestApp, slug: &str) -> Value {
    let resp = app.admin_get(&format!("/v1/tickets/demo/{slug}")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["visitor"].clone()
}

#[tokio::test]
async fn a_good_address_is_stored_unverified_and_a_bad_one_is_refused() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Where is my parcel").await;
    assert_eq!(visitor_of(&app, &slug).await, Value::Null);

    let (status, body) = put_email(&app, &slug, None, json!({"email": " ada@example.org "})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["visitor"]["email"], "ada@example.org");
    assert_eq!(body["visitor"]["email_unverified"], true);
    let stored = visitor_of(&app, &slug).await;
    assert_eq!(stored["email"], "ada@example.org");
    assert_eq!(stored["email_unverified"], true);
    assert_eq!(stored["name"], Value::Null);

    for bad in [
        json!({"email": "not an address"}),
        json!({"email": ""}),
        json!({"email": 7}),
        json!({}),
        json!({"email": "a@b.example", "extra": 1}),
    ] {
        let (status, body) = put_email(&app, &slug, None, bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(!error_of(&body).is_empty(), "{bad}: {body}");
    }
    assert_eq!(visitor_of(&app, &slug).await["email"], "ada@example.org");

    // Changed, then removed.
    let (status, _) = put_email(&app, &slug, None, json!({"email": "ada@example.com"})).await;
    assert_eq!(status, 200);
    assert_eq!(visitor_of(&app, &slug).await["email"], "ada@example.com");
    let (status, body) = put_email(&app, &slug, None, json!({"email": null})).await;
    assert_eq!(status, 200);
    assert_eq!(body["visitor"], Value::Null);
    assert_eq!(visitor_of(&app, &slug).await, Value::Null);

    // A name given at the opening stays; the address given at the opening is not marked.
    let resp = app
        .post_json(
            "/v1/tickets/demo",
            json!({"title": "Hello", "visitor": {"name": "Bo", "email": "bo@example.org"}}),
        )
        .await;
    let named: Value = resp.json().await.unwrap();
    let named = named["slug"].as_str().unwrap();
    assert_eq!(
        visitor_of(&app, named).await,
        json!({"name": "Bo", "email": "bo@example.org"})
    );
    let (status, body) = put_email(&app, named, None, json!({"email": "bo@example.net"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["visitor"],
        json!({"name": "Bo", "email": "bo@example.net", "email_unverified": true})
    );
    let (status, body) =
        put_email(&app, "quiet-otter-404", None, json!({"email": "x@y.org"})).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn in_session_mode_a_stranger_gets_404_and_changes_nothing() {
    let app = spawn_app().await;
    let resp = app
        .admin_patch("/v1/projects/demo", json!({"ticket_access": "session"}))
        .await;
    assert_eq!(resp.status(), 200);
    let owner = app.session_token().await;
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .bearer_auth(&owner)
        .json(&json!({"title": "My invoice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let slug = body["slug"].as_str().unwrap().to_owned();

    let stranger = app.session_token().await;
    let (status, body) = put_email(
        &app,
        &slug,
        Some(&stranger),
        json!({"email": "thief@example.org"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (unknown, unknown_body) = put_email(
        &app,
        "quiet-otter-404",
        Some(&stranger),
        json!({"email": "thief@example.org"}),
    )
    .await;
    assert_eq!(
        (status, &body),
        (unknown, &unknown_body),
        "the same as no ticket at all"
    );
    let (status, _) = put_email(&app, &slug, None, json!({"email": "thief@example.org"})).await;
    assert_eq!(status, 404);
    assert_eq!(visitor_of(&app, &slug).await, Value::Null);

    let (status, _) = put_email(
        &app,
        &slug,
        Some(&owner),
        json!({"email": "me@example.org"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(visitor_of(&app, &slug).await["email"], "me@example.org");
}

fn user_hash(secret: &str, user_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(user_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_verified_contacts_address_is_never_replaced() {
    let app = spawn_app().await;
    let secret: Value = app
        .admin_post("/v1/projects/demo/identity-secrets", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = secret["secret"].as_str().unwrap();
    let resp = app
        .post_json(
            "/v1/init-session",
            json!({"project_id": "demo", "identity": {"user_id": "u-9",
                   "user_hash": user_hash(secret, "u-9"), "email": "ada@example.com"}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let session: Value = resp.json().await.unwrap();
    let session = session["token"].as_str().unwrap();
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .bearer_auth(session)
        .json(&json!({"title": "Verified"}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let slug = body["slug"].as_str().unwrap();
    let (status, body) = put_email(
        &app,
        slug,
        Some(session),
        json!({"email": "other@example.org"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(error_of(&body).contains("verified"));
    assert_eq!(visitor_of(&app, slug).await, Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_visitor_email_goes_to_the_address_given() {
    let Some((url, dir)) = crate::email::smtp() else {
        return;
    };
    let clock = manual_clock();
    let app = crate::visitor_email::spawn_alone(&clock, &url).await;
    let slug = app.create_ticket("Refund").await;
    let to = crate::email::address("given");
    let (status, _) = put_email(&app, &slug, None, json!({"email": to})).await;
    assert_eq!(status, 200);
    let resp = app
        .admin_post(
            &format!("/v1/tickets/demo/{slug}/messages"),
            json!({"author": "admin", "content": "Your refund is on its way"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    clock.advance(Duration::seconds(121));
    let raw = crate::email::the_email(&dir, &to).await;
    assert!(crate::email::parse(&raw)
        .text
        .contains("Your refund is on its way"));
}
