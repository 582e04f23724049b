//! Replies by email: a mail server hands `POST /v1/inbound/email` the raw message sent to a
//! ticket's reply address, and what the sender wrote lands on the ticket.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "the-inbound-email-secret";
const DOMAIN: &str = "replies.fleety.test";

async fn spawn_receiving() -> TestApp {
    spawn_with_settings(|s| {
        s.email.reply_domain = Some(DOMAIN.parse().unwrap());
        s.email.inbound_secret = fleety::config::Secret::new(SECRET);
    })
    .await
}

/// The reply address of the demo project's ticket `slug`.
fn reply_address(app: &TestApp, slug: &str) -> String {
    let key = app.key(slug);
    app.ctx
        .replies
        .reply_to(&key.project, &key.slug)
        .expect("reply by email is on")
}

/// A plain-text mail, as a mail server receives it.
fn mail(from: &str, to: &str, message_id: &str, body: &str) -> String {
    format!(
        "Return-Path: <{from}>\r\nDelivered-To: {to}\r\nFrom: Sam <{from}>\r\nTo: Acme Support <{to}>\r\nSubject: Re: The app crashes\r\nMessage-ID: <{message_id}>\r\nDate: Mon, 7 Dec 2026 10:05:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}",
        body.replace('\n', "\r\n")
    )
}

fn message_id() -> String {
    format!("{}@mail.example.com", uuid::Uuid::new_v4().simple())
}

async fn deliver(app: &TestApp, raw: impl Into<reqwest::Body>) -> reqwest::Response {
    app.http
        .post(app.url("/v1/inbound/email"))
        .bearer_auth(SECRET)
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap()
}

async fn messages(app: &TestApp, slug: &str) -> Vec<Value> {
    app.ticket(slug).await["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

const GMAIL_REPLY: &str = "Yes, restarting fixed it, thank you!\n\nOn Mon, Dec 7, 2026 at 10:04 AM Acme Support <\nsupport@acme.example> wrote:\n\n> Could you try restarting the app?\n>\n> Dana\n";

#[tokio::test]
async fn a_reply_by_email_lands_on_the_ticket_as_the_visitors_message_live() {
    let app = spawn_receiving().await;
    let slug = app.create_ticket("The app crashes").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut ws).await["type"], "subscribed");

    let to = reply_address(&app, &slug);
    let raw = mail("sam@example.com", &to, &message_id(), GMAIL_REPLY);
    let resp = deliver(&app, raw).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["slug"], slug.as_str());
    assert_eq!(body["duplicate"], false);

    // Live on the ticket's socket, as any message, without the quoted history.
    let event = next_event(&mut ws).await;
    assert_eq!(event["type"], "new_message");
    assert_eq!(event["payload"]["author"], "user");
    assert_eq!(
        event["payload"]["content"],
        "Yes, restarting fixed it, thank you!"
    );
    assert_eq!(event["payload"]["id"], body["message_id"]);
    let stored = messages(&app, &slug).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], body["message_id"]);
}

#[tokio::test]
async fn a_members_reply_by_email_lands_as_the_agents_message() {
    let app = spawn_receiving().await;
    let body = json!({"email": "dana@example.com", "name": "Dana", "password": "correct horse battery", "role": "agent"});
    let resp = app.admin_post("/v1/projects/demo/members", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let dana: Value = resp.json().await.unwrap();
    let slug = app.create_ticket("Parcel lost").await;
    let mut feed = app.connect_feed().await;

    let to = reply_address(&app, &slug);
    let reply = "It left our warehouse this morning.\n\n-- \nDana, Acme Support\n";
    // The sender's address in another case is still hers.
    let resp = deliver(&app, mail("Dana@Example.com", &to, &message_id(), reply)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    let stored = messages(&app, &slug).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["author"], "admin");
    assert_eq!(stored[0]["content"], "It left our warehouse this morning.");
    assert_eq!(stored[0]["agent"]["id"], dana["id"]);
    // The inbox sees it as it happens.
    loop {
        let event = next_event(&mut feed).await;
        if event["type"] == "new_message" {
            assert_eq!(event["payload"]["id"], stored[0]["id"]);
            break;
        }
    }
}

#[tokio::test]
async fn a_forged_or_foreign_reply_address_creates_nothing() {
    let app = spawn_receiving().await;
    let slug = app.create_ticket("Forgery").await;
    let other = app.create_ticket("Another ticket").await;
    let to = reply_address(&app, &slug);
    let (local, domain) = to.split_once('@').unwrap();
    // One character of the signature changed.
    let last = local.chars().last().unwrap();
    let flipped = if last == 'a' { 'b' } else { 'a' };
    let forged = format!("{}{flipped}@{domain}", &local[..local.len() - 1]);
    // The signature of one ticket on another's slug.
    let moved = to.replace(&slug, &other);
    // A server's address that is not a reply address, and another domain's.
    let plain = format!("support@{DOMAIN}");
    let foreign = to.replace(DOMAIN, "elsewhere.example");
    for address in [forged, moved, plain, foreign] {
        let raw = mail("sam@example.com", &address, &message_id(), "Let me in");
        let resp = deliver(&app, raw).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{address}");
        let body: Value = resp.json().await.unwrap();
        assert!(!error_of(&body).is_empty());
    }
    assert!(messages(&app, &slug).await.is_empty());
    assert!(messages(&app, &other).await.is_empty());
}

#[tokio::test]
async fn the_same_mail_delivered_twice_is_posted_once() {
    let app = spawn_receiving().await;
    let slug = app.create_ticket("Twice").await;
    let raw = mail(
        "sam@example.com",
        &reply_address(&app, &slug),
        &message_id(),
        "Only once, please.",
    );
    let first = deliver(&app, raw.clone()).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    // The mail server retries, having added a header of its own on the way.
    let again = format!("Received: from relay.example.com\r\n{raw}");
    let second = deliver(&app, again).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["message_id"], first["message_id"]);
    assert_eq!(messages(&app, &slug).await.len(), 1);
}

#[tokio::test]
async fn mail_without_text_or_too_large_is_refused_and_creates_nothing() {
    let app = spawn_receiving().await;
    let slug = app.create_ticket("Refusals").await;
    let to = reply_address(&app, &slug);
    let image = format!(
        "From: sam@example.com\r\nTo: {to}\r\nMessage-ID: <{}>\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n",
        message_id()
    );
    let resp = deliver(&app, image).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    assert!(error_of(&body).contains("text part"), "{body}");

    let only_history = "\nOn Mon, Dec 7, 2026 at 10:04 AM Acme <a@b.example> wrote:\n> hi\n";
    let resp = deliver(
        &app,
        mail("sam@example.com", &to, &message_id(), only_history),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let huge = mail(
        "sam@example.com",
        &to,
        &message_id(),
        &"x".repeat(fleety::inbound_mail::MAX_MESSAGE_BYTES as usize),
    );
    let resp = deliver(&app, huge).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert!(!error_of(&body).is_empty());

    let resp = deliver(&app, "this is not an email").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(messages(&app, &slug).await.is_empty());
}

#[tokio::test]
async fn only_the_mail_server_with_the_inbound_secret_may_deliver() {
    let app = spawn_receiving().await;
    let slug = app.create_ticket("Who delivers").await;
    let raw = mail(
        "sam@example.com",
        &reply_address(&app, &slug),
        &message_id(),
        "Hello",
    );
    let send = |auth: Option<(&str, &str)>, content_type: &str| {
        let mut req = app
            .http
            .post(app.url("/v1/inbound/email"))
            .header("content-type", content_type)
            .body(raw.clone());
        req = match auth {
            Some(("bearer", secret)) => req.bearer_auth(secret),
            Some((user, secret)) => req.basic_auth(user, Some(secret)),
            None => req,
        };
        req.send()
    };
    let none = send(None, "message/rfc822").await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let wrong = send(Some(("bearer", "not-the-inbound-secret")), "message/rfc822");
    assert_eq!(wrong.await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let wrong_basic = send(
        Some(("postfix", "not-the-inbound-secret")),
        "message/rfc822",
    );
    assert_eq!(
        wrong_basic.await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let not_mail = send(Some(("bearer", SECRET)), "application/json");
    assert_eq!(
        not_mail.await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert!(messages(&app, &slug).await.is_empty());
    // Basic authentication, as a provider's forward sends it, with the raw bytes.
    let basic = send(Some(("postfix", SECRET)), "application/octet-stream");
    assert_eq!(basic.await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(messages(&app, &slug).await.len(), 1);
}

#[tokio::test]
async fn without_a_reply_domain_there_is_no_reply_address_and_nothing_is_received() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Off").await;
    let key = app.key(&slug);
    assert_eq!(app.ctx.replies.reply_to(&key.project, &key.slug), None);
    let resp = deliver(
        &app,
        mail("s@example.com", "x@y.example", &message_id(), "hi"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert!(error_of(&body).contains("FLEETY_REPLY_DOMAIN"), "{body}");
}
