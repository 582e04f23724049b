//! Emails to agents (issue 28), through the real SMTP server of `email.rs` (see there for
//! `FLEETY_TEST_SMTP`): each member's switches (`/me/notifications`), a new ticket to those
//! who asked for it, an assignment made by someone else to the assignee. That an email was not
//! sent is read after a later email to the same address arrived: the outbox sends them
//! soonest first, and each is written before the request that causes it is answered.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

fn smtp() -> Option<(String, PathBuf)> {
    crate::email::smtp()
}

async fn mailing(url: &str) -> TestApp {
    let url = url.to_owned();
    spawn_with_settings(move |s| {
        s.email.smtp_url = Some(url.parse().unwrap());
        s.email.from = Some("Fleety Support <support@fleety.test>".parse().unwrap());
        s.email.public_url = Some("https://help.fleety.test/".parse().unwrap());
        s.email.retry_schedule = "50ms".parse().unwrap();
    })
    .await
}

/// A member of `demo` who signed in: their id and bearer token.
pub(crate) async fn member(app: &TestApp, email: &str) -> (String, String) {
    let body = json!({"email": email, "name": "Dana", "password": PASSWORD, "role": "agent"});
    let resp = app.admin_post("/v1/projects/demo/members", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .http
        .post(app.url("/v1/projects/demo/sign-in"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let token = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, token)
}

pub(crate) async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn switch(app: &TestApp, token: &str, body: Value) -> Value {
    let path = "/v1/projects/demo/me/notifications";
    let (status, answer) = call(app, token, Method::PATCH, path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

pub(crate) async fn public_ticket(app: &TestApp, title: &str) -> String {
    let resp = app
        .post_json(
            "/v1/tickets/demo",
            json!({"title": title, "description": "It <i>broke</i> & more"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json::<Value>().await.unwrap()["slug"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) async fn assign(app: &TestApp, token: Option<&str>, slug: &str, to: &str) {
    let path = format!("/v1/tickets/demo/{slug}");
    let body = json!({"assignee_id": to});
    let status = match token {
        Some(t) => call(app, t, Method::PATCH, &path, Some(body)).await.0,
        None => app.admin_patch(&path, body).await.status(),
    };
    assert_eq!(status, StatusCode::OK);
}

/// Waits until `to` has received `n` emails, and answers them parsed.
pub(crate) async fn emails(dir: &PathBuf, to: &str, n: usize) -> Vec<crate::email::Parsed> {
    eventually(&format!("{n} emails to {to}"), async || {
        crate::email::received(dir, to).len() >= n
    })
    .await;
    let all = crate::email::received(dir, to);
    assert_eq!(all.len(), n, "no more than {n} emails to {to}");
    all.iter().map(|raw| crate::email::parse(raw)).collect()
}

/// The subject after its `[project] ` (on CQL each test's `demo` has an id of its own).
pub(crate) fn subject(p: &crate::email::Parsed) -> String {
    let whole = p
        .headers
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default();
    assert!(whole.starts_with("[demo"), "{whole}");
    whole
        .split_once("] ")
        .map(|(_, s)| s)
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn switches_default_change_and_are_refused_when_wrong() {
    let app = spawn_app().await;
    let (_, token) = member(&app, &crate::email::address("prefs")).await;
    let path = "/v1/projects/demo/me/notifications";
    let (status, got) = call(&app, &token, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        got,
        json!({"new_ticket": false, "assigned": true, "visitor_reply": true, "email_enabled": false})
    );
    let got = switch(&app, &token, json!({"new_ticket": true, "assigned": false})).await;
    assert_eq!(
        (got["new_ticket"].as_bool(), got["assigned"].as_bool()),
        (Some(true), Some(false))
    );
    let (_, again) = call(&app, &token, Method::GET, path, None).await;
    assert_eq!(again, got, "kept");
    for bad in [
        json!({}),
        json!({"sound": true}),
        json!({"new_ticket": "yes"}),
    ] {
        let (status, body) = call(&app, &token, Method::PATCH, path, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
    // The admin key is no member.
    assert_eq!(app.admin_get(path).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ticket_emails_the_members_who_switched_it_on_but_never_its_author() {
    let Some((url, dir)) = smtp() else { return };
    let app = mailing(&url).await;
    let (a_addr, b_addr) = (
        crate::email::address("eager"),
        crate::email::address("quiet"),
    );
    let (a, a_token) = member(&app, &a_addr).await;
    let (b, _) = member(&app, &b_addr).await;
    switch(&app, &a_token, json!({"new_ticket": true})).await;

    let one = public_ticket(&app, "First <b>one</b>").await;
    let first = emails(&dir, &a_addr, 1).await;
    assert_eq!(subject(&first[0]), "New ticket: First <b>one</b>");
    assert!(first[0].text.contains("It <i>broke</i> & more"));
    assert!(first[0].html.contains("First &lt;b&gt;one&lt;/b&gt;"));
    assert!(first[0]
        .html
        .contains("It &lt;i&gt;broke&lt;/i&gt; &amp; more"));
    assert!(!first[0].html.contains("<b>one"));
    let link = format!("&slug={one}");
    assert!(first[0]
        .text
        .contains("Open the ticket: https://help.fleety.test/inbox#/ticket?project=demo"));
    assert!(first[0].text.contains(&link), "{}", first[0].text);
    assert!(!first[0].headers.contains("List-Unsubscribe"));

    // A ticket the member opens themselves is not news to them.
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .bearer_auth(&a_token)
        .json(&json!({"title": "Mine", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Switched off: no more.
    switch(&app, &a_token, json!({"new_ticket": false})).await;
    let off = public_ticket(&app, "While off").await;
    // B never switched new tickets on: the only email B gets is the assignment, which is
    // written after both tickets.
    assign(&app, None, &off, &b).await;
    let b_got = emails(&dir, &b_addr, 1).await;
    assert_eq!(subject(&b_got[0]), "Assigned to you: While off");
    assign(&app, None, &off, &a).await;
    let a_got = emails(&dir, &a_addr, 2).await;
    let mut subjects: Vec<_> = a_got.iter().map(subject).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        vec!["Assigned to you: While off", "New ticket: First <b>one</b>"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_emails_the_assignee_threaded_but_not_when_they_take_it() {
    let Some((url, dir)) = smtp() else { return };
    let app = mailing(&url).await;
    let (d_addr, s_addr) = (crate::email::address("dana"), crate::email::address("sam"));
    let (dana, dana_token) = member(&app, &d_addr).await;
    let (_, sam_token) = member(&app, &s_addr).await;
    let slug = public_ticket(&app, "Login <fails>").await;

    // Dana takes it herself: no email. Sam hands it back to her: one, threaded.
    assign(&app, Some(&dana_token), &slug, &dana).await;
    let path = format!("/v1/tickets/demo/{slug}");
    let (status, _) = call(
        &app,
        &sam_token,
        Method::PATCH,
        &path,
        Some(json!({"assignee_id": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assign(&app, Some(&sam_token), &slug, &dana).await;
    let got = emails(&dir, &d_addr, 1).await;
    let e = &got[0];
    assert_eq!(subject(e), "Assigned to you: Login <fails>");
    assert!(e.html.contains("Login &lt;fails&gt;") && !e.html.contains("<fails>"));
    assert!(e.headers.contains("In-Reply-To: <eml_"), "{}", e.headers);
    assert!(e.headers.contains("References: <eml_"));
    // A status change keeps the assignee: no second email. Turned off: none for the next.
    let (status, _) = call(
        &app,
        &sam_token,
        Method::PATCH,
        &path,
        Some(json!({"status": "pending"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    switch(&app, &dana_token, json!({"assigned": false})).await;
    let (status, _) = call(
        &app,
        &sam_token,
        Method::PATCH,
        &path,
        Some(json!({"assignee_id": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assign(&app, Some(&sam_token), &slug, &dana).await;
    switch(&app, &dana_token, json!({"assigned": true})).await;
    let other = public_ticket(&app, "Second").await;
    assign(&app, Some(&sam_token), &other, &dana).await;
    let got = emails(&dir, &d_addr, 2).await;
    let second = got.iter().find(|p| p.message_id != e.message_id).unwrap();
    assert_eq!(subject(second), "Assigned to you: Second");
    // Each ticket threads apart.
    let root = |p: &crate::email::Parsed| {
        p.headers
            .lines()
            .find_map(|l| l.strip_prefix("In-Reply-To: "))
            .unwrap()
            .to_owned()
    };
    assert_ne!(root(e), root(second));
}
