//! Known visitors (issue 28): identity secrets, verified sessions, contacts, and an identified
//! visitor's tickets from any session.

use hmac::{Hmac, Mac};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;

/// What the customer's backend computes: hex(HMAC-SHA256(secret, user id)).
pub(crate) fn user_hash(secret: &str, user_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(user_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn token(secret: &str, claims: Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

fn in_minutes(n: i64) -> i64 {
    chrono::Utc::now().timestamp() + n * 60
}

/// Creates an identity secret for the demo project: (its id, the secret).
pub(crate) async fn new_secret(app: &TestApp) -> (String, String) {
    let resp = app
        .admin_post("/v1/projects/demo/identity-secrets", json!({}))
        .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

pub(crate) async fn start(app: &TestApp, identity: Value) -> reqwest::Response {
    app.post_json(
        "/v1/init-session",
        json!({"project_id": "demo", "identity": identity}),
    )
    .await
}

/// A verified session's token and the contact it names.
pub(crate) async fn identified(app: &TestApp, identity: Value) -> (String, Value) {
    let resp = start(app, identity).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    (
        body["token"].as_str().unwrap().to_owned(),
        body["contact"].clone(),
    )
}

async fn session_tickets(app: &TestApp, token: &str) -> Value {
    let resp = app
        .http
        .get(app.url("/v1/session/tickets"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn slugs(list: &Value) -> Vec<&str> {
    list["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_good_user_hash_and_a_good_token_name_one_verified_contact() {
    let app = spawn_app().await;
    let (_, secret) = new_secret(&app).await;
    let (by_hash, contact) = identified(
        &app,
        json!({"user_id": "u-42", "user_hash": user_hash(&secret, "u-42"),
               "email": "ada@example.com", "name": "Ada", "attributes": {"plan": "pro"}}),
    )
    .await;
    assert_eq!(contact["external_id"], "u-42");
    assert_eq!(contact["email"], "ada@example.com");
    assert_eq!(contact["verified"], true);
    let me: Value = app
        .http
        .get(app.url("/v1/session"))
        .bearer_auth(&by_hash)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["contact"]["id"], contact["id"]);

    let jwt = token(
        &secret,
        json!({"sub": "u-42", "email": "ada@example.org", "name": "Ada L.", "exp": in_minutes(5)}),
    );
    let (_, again) = identified(&app, json!({"token": jwt})).await;
    assert_eq!(again["id"], contact["id"]);
    assert_eq!(again["email"], "ada@example.org");

    // Agents find the contact, as the token last described them, with the page's attributes.
    let id = contact["id"].as_str().unwrap();
    let resp = app
        .admin_get(&format!("/v1/projects/demo/contacts/{id}"))
        .await;
    assert_eq!(resp.status(), 200);
    let detail: Value = resp.json().await.unwrap();
    assert_eq!(detail["name"], "Ada L.");
    assert_eq!(detail["attributes"], json!({"plan": "pro"}));
    let found: Value = app
        .admin_get("/v1/projects/demo/contacts?q=ADA@EXAMPLE.ORG")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["contacts"][0]["id"], contact["id"]);
    let none: Value = app
        .admin_get("/v1/projects/demo/contacts?q=nobody-like-this")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["contacts"], json!([]));
    // An anonymous session names nobody.
    let anonymous = app.session_token().await;
    let list = session_tickets(&app, &anonymous).await;
    assert_eq!(list, json!({"contact": null, "tickets": []}));
}

#[tokio::test]
async fn a_wrong_hash_an_expired_or_foreign_token_is_refused() {
    let app = spawn_app().await;
    let no_secret = start(
        &app,
        json!({"user_id": "u-1", "user_hash": user_hash("anything", "u-1")}),
    )
    .await;
    assert_eq!(no_secret.status(), 400);
    let (_, secret) = new_secret(&app).await;

    let refused = |resp: reqwest::Response| async move {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        (status.as_u16(), body["error"].as_str().unwrap().to_owned())
    };
    // A hash of another user, a hash with another key.
    for hash in [
        user_hash(&secret, "u-2"),
        user_hash("not-the-secret", "u-1"),
    ] {
        let (status, error) =
            refused(start(&app, json!({"user_id": "u-1", "user_hash": hash})).await).await;
        assert_eq!(status, 401);
        assert!(error.contains("user_hash"), "{error}");
    }
    let expired = token(&secret, json!({"sub": "u-1", "exp": in_minutes(-5)}));
    let (status, error) = refused(start(&app, json!({"token": expired})).await).await;
    assert_eq!((status, error.contains("expired")), (401, true), "{error}");
    let for_another = token(
        &secret,
        json!({"sub": "u-1", "aud": "another-project", "exp": in_minutes(5)}),
    );
    assert_eq!(
        refused(start(&app, json!({"token": for_another})).await)
            .await
            .0,
        401
    );
    let forged = token(
        "not-the-secret",
        json!({"sub": "u-1", "exp": in_minutes(5)}),
    );
    assert_eq!(
        refused(start(&app, json!({"token": forged})).await).await.0,
        401
    );
    // Signed with another project's identity secret.
    let other: Value = app
        .http
        .post(app.url("/v1/admin/projects"))
        .bearer_auth(OPERATOR)
        .json(&json!({"name": "Other", "allowed_origins": ["https://other.example"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other_secret: Value = app
        .http
        .post(app.url(&format!(
            "/v1/projects/{}/identity-secrets",
            other["project_id"].as_str().unwrap()
        )))
        .bearer_auth(other["admin_key"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let theirs = token(
        other_secret["secret"].as_str().unwrap(),
        json!({"sub": "u-1", "exp": in_minutes(5)}),
    );
    assert_eq!(
        refused(start(&app, json!({"token": theirs})).await).await.0,
        401
    );
    let theirs = user_hash(other_secret["secret"].as_str().unwrap(), "u-1");
    assert_eq!(
        refused(start(&app, json!({"user_id": "u-1", "user_hash": theirs})).await)
            .await
            .0,
        401
    );
    // Malformed identities are 400: neither proof, both, a token with its own email beside.
    let good = token(&secret, json!({"sub": "u-1", "exp": in_minutes(5)}));
    for bad in [
        json!({"user_id": "u-1"}),
        json!({"token": good, "user_id": "u-1", "user_hash": user_hash(&secret, "u-1")}),
        json!({"token": good, "email": "a@example.com"}),
        json!({"user_id": "", "user_hash": user_hash(&secret, "")}),
        json!({"user_id": "u-1", "user_hash": user_hash(&secret, "u-1"), "attributes": {"bad key": "x"}}),
        json!("u-1"),
    ] {
        assert_eq!(start(&app, bad.clone()).await.status(), 400, "{bad}");
    }
    // Nothing refused made a contact.
    let all: Value = app
        .admin_get("/v1/projects/demo/contacts")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["contacts"], json!([]));
}

#[tokio::test]
async fn a_contacts_tickets_are_seen_from_a_second_session_and_carry_the_contact() {
    let app = spawn_app().await;
    let (_, secret) = new_secret(&app).await;
    let proof = json!({"user_id": "u-7", "user_hash": user_hash(&secret, "u-7"), "name": "Bo"});
    let (first, contact) = identified(&app, proof.clone()).await;
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .bearer_auth(&first)
        .json(&json!({"title": "My parcel is late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["contact"]["id"], contact["id"]);
    assert_eq!(created["contact"]["external_id"], "u-7");
    assert_eq!(created["contact"]["verified"], true);
    let slug = created["slug"].as_str().unwrap().to_owned();
    // Tickets of nobody and of someone else stay out of the list.
    app.create_ticket("Anonymous").await;
    let (someone, _) = identified(
        &app,
        json!({"user_id": "u-8", "user_hash": user_hash(&secret, "u-8")}),
    )
    .await;
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .bearer_auth(&someone)
        .json(&json!({"title": "Someone else's"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // Another device: a JWT this time.
    let jwt = token(&secret, json!({"sub": "u-7", "exp": in_minutes(5)}));
    let (second, _) = identified(&app, json!({"token": jwt})).await;
    let list = session_tickets(&app, &second).await;
    assert_eq!(slugs(&list), [slug.as_str()]);
    assert_eq!(list["contact"]["id"], contact["id"]);
    // The ticket itself shows its contact, and so does the contact's page.
    assert_eq!(app.ticket(&slug).await["contact"]["id"], contact["id"]);
    let id = contact["id"].as_str().unwrap();
    let detail: Value = app
        .admin_get(&format!("/v1/projects/demo/contacts/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(slugs(&detail), [slug.as_str()]);
    // A renewed token keeps its contact.
    let renewed: Value = app
        .http
        .post(app.url("/v1/session/renew"))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(renewed["contact"]["id"], contact["id"]);
    let list = session_tickets(&app, renewed["token"].as_str().unwrap()).await;
    assert_eq!(slugs(&list), [slug.as_str()]);
    // No such contact: 404.
    let missing = app
        .admin_get(&format!(
            "/v1/projects/demo/contacts/{}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_rotated_out_secret_verifies_until_it_is_removed() {
    let app = spawn_app().await;
    let (old_id, old) = new_secret(&app).await;
    let by = |secret: &str| json!({"user_id": "u-1", "user_hash": user_hash(secret, "u-1")});
    assert_eq!(start(&app, by(&old)).await.status(), 200);
    let (new_id, new) = new_secret(&app).await;
    assert_ne!(old, new);
    assert_eq!(start(&app, by(&old)).await.status(), 200);
    assert_eq!(start(&app, by(&new)).await.status(), 200);
    // The list names them, never shows them.
    let listed = app
        .admin_get("/v1/projects/demo/identity-secrets")
        .await
        .text()
        .await
        .unwrap();
    assert!(listed.contains(&old_id) && listed.contains(&new_id));
    assert!(!listed.contains(&old) && !listed.contains(&new));

    let resp = app
        .admin_delete(&format!("/v1/projects/demo/identity-secrets/{old_id}"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(start(&app, by(&old)).await.status(), 401);
    assert_eq!(start(&app, by(&new)).await.status(), 200);
    let jwt = token(&old, json!({"sub": "u-1", "exp": in_minutes(5)}));
    assert_eq!(start(&app, json!({"token": jwt})).await.status(), 401);
    let again = app
        .admin_delete(&format!("/v1/projects/demo/identity-secrets/{old_id}"))
        .await;
    assert_eq!(again.status(), 404);
    // At most three at once.
    new_secret(&app).await;
    new_secret(&app).await;
    let full = app
        .admin_post("/v1/projects/demo/identity-secrets", json!({}))
        .await;
    assert_eq!(full.status(), 409);
}

#[tokio::test]
async fn a_contact_seen_again_soon_is_not_written_again() {
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    let (_, secret) = new_secret(&app).await;
    let proof = json!({"user_id": "u-3", "user_hash": user_hash(&secret, "u-3")});
    let (_, contact) = identified(&app, proof.clone()).await;
    let id = contact["id"].as_str().unwrap().to_owned();
    let seen = || async {
        let body: Value = app
            .admin_get(&format!("/v1/projects/demo/contacts/{id}"))
            .await
            .json()
            .await
            .unwrap();
        body["last_seen_at"].as_str().unwrap().to_owned()
    };
    let first = seen().await;
    clock.advance(chrono::Duration::minutes(10));
    identified(&app, proof.clone()).await;
    assert_eq!(seen().await, first);
    clock.advance(chrono::Duration::minutes(60));
    identified(&app, proof).await;
    assert_ne!(seen().await, first);
}
