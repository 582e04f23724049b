//! Email through a real SMTP server: scripts/smtp.sh runs aiosmtpd, which writes every message
//! it accepts to a directory, and these tests read what it received there (headers, both
//! parts, the link) and use the link. `FLEETY_TEST_SMTP` is the server's `smtp://` URL and
//! `FLEETY_TEST_SMTP_DIR` the directory; scripts/test.sh starts the server and sets both.
//! Without them the tests fail, as the CQL tests do without a node, unless
//! `FLEETY_TEST_SMTP=none` says on purpose that no SMTP server is at hand (never in CI).

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

/// The SMTP server's URL and where its messages land, or `None` to skip (said on purpose).
pub fn smtp() -> Option<(String, PathBuf)> {
    let url = std::env::var("FLEETY_TEST_SMTP").unwrap_or_else(|_| {
        panic!(
            "FLEETY_TEST_SMTP is not set: the email tests need an SMTP server. Run the whole \
             suite with scripts/test.sh, or start one with scripts/smtp.sh start and set the \
             variables `scripts/smtp.sh env` prints (FLEETY_TEST_SMTP=none skips them locally)"
        )
    });
    if url == "none" {
        assert!(
            std::env::var("CI").is_err(),
            "FLEETY_TEST_SMTP=none in CI: the email tests must run there"
        );
        eprintln!("FLEETY_TEST_SMTP=none: skipping an email test (no SMTP server configured)");
        return None;
    }
    let dir = std::env::var("FLEETY_TEST_SMTP_DIR")
        .expect("FLEETY_TEST_SMTP_DIR must name the SMTP server's message directory");
    Some((url, PathBuf::from(dir)))
}

async fn spawn_mailing(url: &str) -> TestApp {
    let url = url.to_owned();
    spawn_with_settings(move |s| {
        s.email.smtp_url = Some(url.parse().unwrap());
        s.email.from = Some("Fleety Support <support@fleety.test>".parse().unwrap());
        s.email.public_url = Some("https://help.fleety.test/".parse().unwrap());
        s.email.retry_schedule = "50ms".parse().unwrap();
    })
    .await
}

/// A unique address, so a test finds its own messages among every test's.
pub fn address(who: &str) -> String {
    format!("{who}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// The raw messages received for `to` so far.
pub fn received(dir: &PathBuf, to: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    for envelope in names {
        let Ok(text) = std::fs::read_to_string(&envelope) else {
            continue;
        };
        let Ok(env) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if env["to"]
            .as_array()
            .is_some_and(|t| t.iter().any(|a| a == to))
        {
            if let Ok(raw) = std::fs::read(envelope.with_extension("eml")) {
                out.push(raw);
            }
        }
    }
    out
}

/// Waits for the first message to `to`.
pub async fn the_email(dir: &PathBuf, to: &str) -> Vec<u8> {
    eventually(&format!("an email to {to}"), async || {
        !received(dir, to).is_empty()
    })
    .await;
    received(dir, to).remove(0)
}

pub struct Parsed {
    pub headers: String,
    pub text: String,
    pub html: String,
    pub message_id: String,
}

pub fn parse(raw: &[u8]) -> Parsed {
    let m = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("a well-formed message");
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    Parsed {
        headers: String::from_utf8_lossy(&raw[..head_end]).into_owned(),
        text: m.body_text(0).expect("a text part").into_owned(),
        html: m.body_html(0).expect("an HTML part").into_owned(),
        message_id: m.message_id().expect("a Message-ID").to_owned(),
    }
}

/// The token in a link of the text part: `token=` up to the end of the line.
fn token_in(text: &str, page: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains(&format!("https://help.fleety.test/inbox#/{page}?")))
        .unwrap_or_else(|| panic!("no {page} link in {text}"));
    line.split("token=").nth(1).unwrap().trim().to_owned()
}

#[tokio::test]
async fn without_smtp_nothing_is_emailed_and_the_link_is_shown_to_copy() {
    let app = spawn_app().await;
    let me: Value = app
        .admin_get("/v1/projects/demo/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_enabled"], false);
    let resp = app
        .admin_post(
            "/v1/projects/demo/invitations",
            json!({"email": address("copy")}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let made: Value = resp.json().await.unwrap();
    assert_eq!(made["emailed"], false);
    assert!(made["path"]
        .as_str()
        .unwrap()
        .contains(made["token"].as_str().unwrap()));
}

#[tokio::test]
async fn an_invitation_is_emailed_and_its_link_lets_the_invitee_join() {
    let Some((url, dir)) = smtp() else { return };
    let app = spawn_mailing(&url).await;
    let me: Value = app
        .admin_get("/v1/projects/demo/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_enabled"], true);
    let to = address("invitee");
    let resp = app
        .admin_post(
            "/v1/projects/demo/invitations",
            json!({"email": to, "role": "agent"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let made: Value = resp.json().await.unwrap();
    assert_eq!(made["emailed"], true);

    let email = parse(&the_email(&dir, &to).await);
    assert!(
        email
            .headers
            .contains("From: \"Fleety Support\" <support@fleety.test>")
            || email
                .headers
                .contains("From: Fleety Support <support@fleety.test>"),
        "{}",
        email.headers
    );
    assert!(
        email.headers.contains(&format!("To: {to}")),
        "{}",
        email.headers
    );
    assert!(
        email.headers.contains("Subject: You are invited to join"),
        "{}",
        email.headers
    );
    assert!(email.message_id.starts_with("eml_") && email.message_id.ends_with("@fleety.test"));
    // Both parts carry the same link; the HTML one escaped.
    let token = token_in(&email.text, "accept");
    assert_eq!(token, made["token"].as_str().unwrap());
    let project = app.project.clone();
    let link =
        format!("https://help.fleety.test/inbox#/accept?project={project}&amp;token={token}");
    assert!(email.html.contains(&link), "{}", email.html);

    // The emailed link works.
    let resp = app
        .http
        .post(app.url("/v1/projects/demo/join"))
        .json(&json!({"token": token, "name": "Ines", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.text().await);
}

#[tokio::test]
async fn a_reset_is_emailed_to_members_only_and_its_link_sets_the_password() {
    let Some((url, dir)) = smtp() else { return };
    let app = spawn_mailing(&url).await;
    let member = address("member");
    let resp = app
        .admin_post(
            "/v1/projects/demo/members",
            json!({"email": member, "name": "Mo", "password": PASSWORD, "role": "agent"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let stranger = address("stranger");
    let mut answers = Vec::new();
    for who in [&stranger, &member] {
        let resp = app
            .http
            .post(app.url("/v1/projects/demo/password-reset"))
            .json(&json!({"email": who}))
            .send()
            .await
            .unwrap();
        answers.push((resp.status(), resp.text().await.unwrap()));
    }
    // The same answer whoever asks.
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);

    let email = parse(&the_email(&dir, &member).await);
    assert!(
        email
            .headers
            .contains("Subject: Reset your Fleety password"),
        "{}",
        email.headers
    );
    let token = token_in(&email.text, "reset");
    let resp = app
        .http
        .post(app.url("/v1/projects/demo/password-reset/complete"))
        .json(&json!({"token": token, "password": "a brand new passw0rd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .http
        .post(app.url("/v1/projects/demo/sign-in"))
        .json(&json!({"email": member, "password": "a brand new passw0rd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Nothing went to the address without an account.
    assert!(received(&dir, &stranger).is_empty());
}

#[tokio::test]
async fn an_email_the_smtp_server_could_not_take_is_sent_after_a_restart() {
    let Some((url, dir)) = smtp() else { return };
    // A port nobody listens on: every attempt fails, and the email waits in the outbox.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "smtp://127.0.0.1:{}?tls=none",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let app = spawn_with_settings(move |s| {
        s.email.smtp_url = Some(dead.parse().unwrap());
        s.email.from = Some("support@fleety.test".parse().unwrap());
        s.email.public_url = Some("https://help.fleety.test".parse().unwrap());
        // Retried for a while, so it is still waiting when the server restarts.
        s.email.retry_schedule = vec!["1s"; 30].join(",").parse().unwrap();
    })
    .await;
    let to = address("patient");
    let resp = app
        .admin_post("/v1/projects/demo/invitations", json!({"email": to}))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let made: Value = resp.json().await.unwrap();
    assert_eq!(made["emailed"], true);
    let restart = app.stop().await;
    assert!(received(&dir, &to).is_empty());

    let mut options = restart.options();
    options.settings.email.smtp_url = Some(url.parse().unwrap());
    options.settings.email.from = Some("support@fleety.test".parse().unwrap());
    options.settings.email.public_url = Some("https://help.fleety.test".parse().unwrap());
    options.settings.email.retry_schedule = "50ms".parse().unwrap();
    let app = spawn_with(options).await;
    let email = parse(&the_email(&dir, &to).await);
    assert_eq!(
        token_in(&email.text, "accept"),
        made["token"].as_str().unwrap()
    );
    // Sent once: an email made later goes out after any second sending of the first would
    // have (the sender takes what is due soonest first), and there is none.
    let marker = address("marker");
    let resp = app
        .admin_post("/v1/projects/demo/invitations", json!({"email": marker}))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    the_email(&dir, &marker).await;
    assert_eq!(received(&dir, &to).len(), 1, "the email was sent twice");
}
