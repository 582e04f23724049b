//! Emails to visitors after agents reply, through the real SMTP server of `email.rs` (see
//! there for `FLEETY_TEST_SMTP`), on the manual clock: the burst's due time is reached by
//! moving the clock, never by waiting for it.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;

use crate::helpers::*;

fn smtp() -> Option<(String, PathBuf)> {
    crate::email::smtp()
}

fn settings(url: &str) -> impl FnOnce(&mut fleety::config::Settings) {
    let url = url.to_owned();
    move |s| {
        s.email.smtp_url = Some(url.parse().unwrap());
        s.email.from = Some("Fleety Support <support@fleety.test>".parse().unwrap());
        s.email.public_url = Some("https://help.fleety.test/".parse().unwrap());
        s.email.retry_schedule = "50ms".parse().unwrap();
        s.email.visitor_after = std::time::Duration::from_secs(120);
    }
}

async fn ticket_for(app: &TestApp, to: &str) -> String {
    let resp = app
        .post_json(
            "/v1/tickets/demo",
            json!({ "title": "Login <fails>", "description": "details",
                    "visitor": { "name": "Ada", "email": to } }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["slug"].as_str().unwrap().to_owned()
}

async fn agent_says(app: &TestApp, slug: &str, content: &str) {
    let resp = app
        .admin_post(
            &format!("/v1/tickets/demo/{slug}/messages"),
            json!({ "author": "admin", "content": content }),
        )
        .await;
    assert_eq!(resp.status(), 201);
}

/// The line of the text part holding `https://help.fleety.test{path}?token=`, as a URL.
fn link_in(text: &str, path: &str) -> String {
    text.lines()
        .find_map(|l| {
            let at = l.find(&format!("https://help.fleety.test{path}?token="))?;
            Some(l[at..].trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {path} link in {text}"))
}

/// A mailing server on `clock`, on CQL in a keyspace of its own. Every server that mails
/// composes the bursts due by its own clock, and each test's server has a clock of its own: on
/// the run's shared keyspace, a server whose clock a test moved far ahead would compose this
/// test's email and date it by that clock, past what this test's server will ever reach. The
/// nodes of one deployment share one clock, so this is the tests' own hazard.
pub(crate) async fn spawn_alone(clock: &fleety_actors::clock::ManualClock, url: &str) -> TestApp {
    static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut options = Options {
        clock: std::sync::Arc::new(clock.clone()),
        keyspace: Some(format!("fleety_vmail_{}_{n}", std::process::id())),
        ..Options::default()
    };
    settings(url)(&mut options.settings);
    spawn_with(options).await
}

/// The same link, on the server under test.
fn local(app: &TestApp, link: &str) -> String {
    app.url(link.trim_start_matches("https://help.fleety.test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_who_left_gets_one_email_per_burst_threaded_with_a_link_and_an_unsubscribe() {
    let Some((url, dir)) = smtp() else { return };
    let clock = manual_clock();
    let app = spawn_alone(&clock, &url).await;
    let to = crate::email::address("visitor");
    let slug = ticket_for(&app, &to).await;

    // Two replies and an internal note in one burst: one email, with both replies only.
    agent_says(&app, &slug, "First <b>answer</b>").await;
    clock.advance(Duration::seconds(60));
    let note = app
        .admin_post(
            &format!("/v1/projects/demo/tickets/{slug}/notes"),
            json!({ "author": "Sam", "content": "secret internal note" }),
        )
        .await;
    assert!(note.status().is_success(), "{}", note.status());
    agent_says(&app, &slug, "Second answer").await;
    clock.advance(Duration::seconds(61));
    let first = crate::email::the_email(&dir, &to).await;
    let first = crate::email::parse(&first);
    assert!(first.text.contains("First <b>answer</b>") && first.text.contains("Second answer"));
    assert!(!first.text.contains("secret") && !first.html.contains("secret"));
    assert!(first.html.contains("First &lt;b&gt;answer&lt;/b&gt;"));
    assert!(first
        .headers
        .contains("List-Unsubscribe: <https://help.fleety.test/v1/email/unsubscribe?token="));
    assert!(first
        .headers
        .contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert!(!first.headers.contains("In-Reply-To"));

    // The next burst threads under the first email.
    agent_says(&app, &slug, "Third answer").await;
    clock.advance(Duration::seconds(121));
    eventually("a second email", async || {
        crate::email::received(&dir, &to).len() == 2
    })
    .await;
    // The message directory's order is not the order of arrival: the second is the other one.
    let second = crate::email::received(&dir, &to)
        .iter()
        .map(|raw| crate::email::parse(raw))
        .find(|p| p.message_id != first.message_id)
        .unwrap();
    assert!(second.text.contains("Third answer") && !second.text.contains("First"));
    let root = format!("<{}>", first.message_id);
    assert!(
        second.headers.contains(&format!("In-Reply-To: {root}")),
        "{}",
        second.headers
    );
    assert!(second.headers.contains(&format!("References: {root}")));

    // The link opens the conversation: a page loading the widget on that ticket.
    let page = reqwest::get(local(
        &app,
        &link_in(&second.text, "/v1/email/conversation"),
    ))
    .await
    .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    // A script element decodes no HTML entities: the command is plain JSON there.
    let command = format!("window.Fleety=[[\"openTicket\",\"{slug}\"]]");
    assert!(body.contains(&command), "{body}");
    assert!(body.contains("/widget.js"));
    let forged = reqwest::get(app.url("/v1/email/conversation?token=forged"))
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // One click unsubscribes (RFC 8058), and nothing more is sent about the ticket.
    let unsub = local(&app, &link_in(&second.text, "/v1/email/unsubscribe"));
    // Its page, in the browser's language, only shows the button.
    let page = reqwest::Client::new()
        .get(&unsub)
        .header("accept-language", "de-AT, en;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("lang=\"de\"") && html.contains("Keine E-Mails mehr zu dieser"));
    assert!(html.contains("method=\"post\" action=\"/v1/email/unsubscribe?token="));
    let resp = reqwest::Client::new()
        .post(&unsub)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    agent_says(&app, &slug, "Fourth answer").await;
    clock.advance(Duration::seconds(300));
    // A later ticket's email, sent after the fourth answer would have been, shows the sender
    // went past it.
    let other = crate::email::address("other");
    let later = ticket_for(&app, &other).await;
    agent_says(&app, &later, "Hello").await;
    clock.advance(Duration::seconds(121));
    crate::email::the_email(&dir, &other).await;
    assert_eq!(crate::email::received(&dir, &to).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_read_before_its_email_is_due_sends_nothing() {
    let Some((url, dir)) = smtp() else { return };
    let clock = manual_clock();
    let app = spawn_alone(&clock, &url).await;
    let to = crate::email::address("reader");
    let slug = ticket_for(&app, &to).await;
    agent_says(&app, &slug, "An answer").await;
    clock.advance(Duration::seconds(60));
    let read = app
        .patch_json(&format!("/v1/tickets/demo/{slug}/messages/read"), json!({}))
        .await;
    assert_eq!(read.status(), StatusCode::OK);
    clock.advance(Duration::seconds(300));
    let other = crate::email::address("witness");
    let later = ticket_for(&app, &other).await;
    agent_says(&app, &later, "Hello").await;
    clock.advance(Duration::seconds(121));
    crate::email::the_email(&dir, &other).await;
    assert!(crate::email::received(&dir, &to).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_due_across_a_restart_is_sent_once() {
    let Some((url, dir)) = smtp() else { return };
    let clock = manual_clock();
    let app = spawn_alone(&clock, &url).await;
    let to = crate::email::address("restart");
    let slug = ticket_for(&app, &to).await;
    agent_says(&app, &slug, "Before the restart").await;
    let restart = app.stop().await;
    let mut options = restart.options();
    options.clock = std::sync::Arc::new(clock.clone());
    settings(&url)(&mut options.settings);
    let app = spawn_with(options).await;
    clock.advance(Duration::seconds(121));
    let raw = crate::email::the_email(&dir, &to).await;
    assert!(crate::email::parse(&raw)
        .text
        .contains("Before the restart"));
    // Rounds after it find nothing more to send.
    let other = crate::email::address("after");
    let later = ticket_for(&app, &other).await;
    agent_says(&app, &later, "Hello").await;
    clock.advance(Duration::seconds(121));
    crate::email::the_email(&dir, &other).await;
    assert_eq!(crate::email::received(&dir, &to).len(), 1);
}
