//! Emails to an assignee about their visitor's messages while they are away from the inbox
//! (issue 28), and the new-ticket email of a hand-off, through the real SMTP server of
//! `email.rs`, on the manual clock: a burst's due time is reached by moving the clock, never
//! by waiting for it. That an email was not sent is read from the email that was: a burst
//! wrongly kept would have quoted the earlier messages, or arrived before it (a burst due
//! in the same round as another member's is composed with it, so that one's arrival tells
//! the round has run).

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::agent_email::{assign, emails, member, public_ticket, subject, switch};
use crate::helpers::*;

const SECRET: &str = "the-inbound-email-secret";
const DOMAIN: &str = "replies.fleety.test";
/// Past `FLEETY_AGENT_EMAIL_AFTER_SECS` (120 s here).
const PAST_THE_WAIT: i64 = 121;

async fn mailing(clock: &fleety_actors::clock::ManualClock, url: &str) -> TestApp {
    let url = url.to_owned();
    spawn_clocked(clock, move |s| {
        s.email.smtp_url = Some(url.parse().unwrap());
        s.email.from = Some("Fleety Support <support@fleety.test>".parse().unwrap());
        s.email.public_url = Some("https://help.fleety.test/".parse().unwrap());
        s.email.retry_schedule = "50ms".parse().unwrap();
        s.email.agent_after = std::time::Duration::from_secs(120);
        s.email.reply_domain = Some(DOMAIN.parse().unwrap());
        s.email.inbound_secret = fleety::config::Secret::new(SECRET);
    })
    .await
}

/// A member with a ticket assigned to them by the admin key (no assignment email: switched
/// off, so the only emails they get are the ones under test): their address, token, ticket.
async fn assignee(app: &TestApp, who: &str, title: &str) -> (String, String, String) {
    let addr = crate::email::address(who);
    let (id, token) = member(app, &addr).await;
    switch(app, &token, json!({"assigned": false})).await;
    let slug = public_ticket(app, title).await;
    assign(app, None, &slug, &id).await;
    (addr, token, slug)
}

/// The visitor's reply by email: the raw message a mail server hands the inbound endpoint.
async fn reply_by_email(app: &TestApp, slug: &str, body: &str) {
    let key = app.key(slug);
    let to = app.ctx.replies.reply_to(&key.project, &key.slug).unwrap();
    let raw = format!(
        "From: Ada <ada@example.com>\r\nTo: <{to}>\r\nSubject: Re: help\r\nMessage-ID: <{}@mail.example.com>\r\nDate: Mon, 7 Dec 2026 10:05:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        uuid::Uuid::new_v4().simple()
    );
    let resp = app
        .http
        .post(app.url("/v1/inbound/email"))
        .bearer_auth(SECRET)
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

/// The member's inbox: their own feed socket, open once it greeted.
async fn open_inbox(app: &TestApp, token: &str) -> Socket {
    let resp = app
        .http
        .post(app.url("/v1/projects/demo/feed-token"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let mut socket = app.connect(body["url"].as_str().unwrap()).await;
    assert_eq!(next_event(&mut socket).await["type"], "subscribed");
    socket
}

/// Closes the inbox and waits until the server has let the socket go.
async fn close_inbox(mut socket: Socket) {
    use futures_util::StreamExt;
    let _ = socket.close(None).await;
    while let Some(Ok(_)) = socket.next().await {}
}

fn header<'a>(p: &'a crate::email::Parsed, name: &str) -> &'a str {
    p.headers
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {}", p.headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_away_assignee_gets_one_email_per_burst_of_the_visitors_messages_threaded() {
    let Some((url, dir)) = crate::email::smtp() else {
        return;
    };
    let clock = manual_clock();
    let app = mailing(&clock, &url).await;
    let (addr, _, slug) = assignee(&app, "away", "Login <fails>").await;

    // Two messages in one burst, one of them a reply by email: one email with both.
    app.post_message(&slug, "It still <b>fails</b> & more")
        .await;
    clock.advance(Duration::seconds(60));
    reply_by_email(&app, &slug, "Here is the error: 500").await;
    clock.advance(Duration::seconds(PAST_THE_WAIT - 60));
    let got = emails(&dir, &addr, 1).await;
    let first = &got[0];
    assert_eq!(subject(first), "New message: Login <fails>");
    assert!(
        first.text.contains("It still <b>fails</b> & more"),
        "{}",
        first.text
    );
    assert!(first.text.contains("Here is the error: 500"));
    assert!(
        !first.text.contains("details"),
        "the description is not the visitor's reply"
    );
    assert!(first
        .html
        .contains("It still &lt;b&gt;fails&lt;/b&gt; &amp; more"));
    assert!(!first.html.contains("<b>fails"));
    assert!(first
        .text
        .contains("Open the ticket: https://help.fleety.test/inbox#/ticket?project="));
    assert!(first.text.contains(&format!("&slug={slug}")));
    // Threaded under the member's thread of the ticket, answerable by email.
    let root = header(first, "In-Reply-To").to_owned();
    assert!(
        root.starts_with("<eml_") && root.ends_with("@fleety.test>"),
        "{root}"
    );
    assert_eq!(header(first, "References"), root);
    assert!(header(first, "Reply-To").contains(&format!("@{DOMAIN}")));
    assert!(!first.headers.contains("List-Unsubscribe"));

    // The next burst is an email of its own, with only its own messages, in the same thread.
    app.post_message(&slug, "Any news?").await;
    clock.advance(Duration::seconds(PAST_THE_WAIT));
    let got = emails(&dir, &addr, 2).await;
    let second = got
        .iter()
        .find(|p| p.message_id != first.message_id)
        .unwrap();
    assert!(second.text.contains("Any news?"), "{}", second.text);
    assert!(
        !second.text.contains("Here is the error"),
        "{}",
        second.text
    );
    assert_eq!(header(second, "In-Reply-To"), root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_email_while_the_assignee_is_in_the_inbox_opens_it_in_time_or_switched_it_off() {
    let Some((url, dir)) = crate::email::smtp() else {
        return;
    };
    let clock = manual_clock();
    let app = mailing(&clock, &url).await;
    let (addr, token, slug) = assignee(&app, "present", "Slow page").await;

    let (witness, _, elsewhere) = assignee(&app, "witness", "Elsewhere").await;

    // In the inbox: the visitor's message is seen there, no email. An away colleague's burst
    // of the same moment is composed in the same round as this one would be: once theirs
    // arrived, a wrongly kept burst of this member's has been written and sent before anything
    // later is.
    let inbox = open_inbox(&app, &token).await;
    app.post_message(&slug, "seen live").await;
    app.post_message(&elsewhere, "for the witness").await;
    clock.advance(Duration::seconds(PAST_THE_WAIT));
    emails(&dir, &witness, 1).await;
    close_inbox(inbox).await;
    // Away, but back in the inbox before the wait ends: no email.
    app.post_message(&slug, "seen on coming back").await;
    clock.advance(Duration::seconds(60));
    close_inbox(open_inbox(&app, &token).await).await;
    clock.advance(Duration::seconds(PAST_THE_WAIT));
    // Away with the email switched off: none.
    switch(&app, &token, json!({"visitor_reply": false})).await;
    app.post_message(&slug, "while switched off").await;
    clock.advance(Duration::seconds(PAST_THE_WAIT));
    switch(&app, &token, json!({"visitor_reply": true})).await;

    // Away, switched on: this one is emailed, and it is the only one.
    app.post_message(&slug, "the one emailed").await;
    clock.advance(Duration::seconds(PAST_THE_WAIT));
    let got = emails(&dir, &addr, 1).await;
    assert!(got[0].text.contains("the one emailed"), "{}", got[0].text);
    for earlier in ["seen live", "seen on coming back", "while switched off"] {
        assert!(!got[0].text.contains(earlier), "{earlier}: {}", got[0].text);
    }

    // Read in the inbox (the ticket opened there marks it read) before the wait ends: none.
    app.post_message(&slug, "read in time").await;
    let resp = app
        .http
        .patch(app.url(&format!("/v1/tickets/demo/{slug}/messages/read")))
        .bearer_auth(&token)
        .json(&json!({"reader": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    clock.advance(Duration::seconds(PAST_THE_WAIT));
    app.post_message(&slug, "the last one").await;
    clock.advance(Duration::seconds(PAST_THE_WAIT));
    let got = emails(&dir, &addr, 2).await;
    let last = got
        .iter()
        .find(|p| p.text.contains("the last one"))
        .expect("the last burst's email");
    assert!(!last.text.contains("read in time"), "{}", last.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unassigned_ticket_emails_nobody_about_the_visitors_messages() {
    let Some((url, dir)) = crate::email::smtp() else {
        return;
    };
    let clock = manual_clock();
    let app = mailing(&clock, &url).await;
    let (addr, _, mine) = assignee(&app, "bystander", "Mine").await;
    let other = public_ticket(&app, "Nobody's").await;
    app.post_message(&other, "on nobody's ticket").await;
    clock.advance(Duration::seconds(PAST_THE_WAIT));
    app.post_message(&mine, "on mine").await;
    clock.advance(Duration::seconds(PAST_THE_WAIT));
    let got = emails(&dir, &addr, 1).await;
    assert!(got[0].text.contains("on mine"));
    assert!(!got[0].text.contains("nobody"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_the_assistant_hands_off_emails_the_members_who_want_new_tickets() {
    let Some((url, dir)) = crate::email::smtp() else {
        return;
    };
    let clock = manual_clock();
    let app = mailing(&clock, &url).await;
    let addr = crate::email::address("handoff");
    let (_, token) = member(&app, &addr).await;
    switch(&app, &token, json!({"new_ticket": true})).await;
    let session = app.session_token().await;
    let resp = app
        .chat(
            "/v1/chat/tools",
            &session,
            json!({"messages": [{"role": "user", "content": "I want to talk to a human"}],
                   "enable_tool_calling": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["type"], "tool_call", "{answer}");
    let slug = answer["ticket_slug"].as_str().unwrap();
    let got = emails(&dir, &addr, 1).await;
    assert!(
        subject(&got[0]).starts_with("New ticket: "),
        "{}",
        subject(&got[0])
    );
    assert!(
        got[0].text.contains(&format!("&slug={slug}")),
        "{}",
        got[0].text
    );
}
