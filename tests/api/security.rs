//! The security tests of members and their sessions: guessing passwords from many addresses,
//! CSRF, replayed session cookies, an agent on the admin routes, and no secret in the logs, the
//! metrics or an answer that does not issue it.

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

async fn add_member(app: &TestApp, email: &str, role: &str) -> Value {
    let body = json!({"email": email, "name": "Someone", "password": PASSWORD, "role": role});
    let resp = app.admin_post("/v1/projects/demo/members", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

async fn sign_in_from(app: &TestApp, email: &str, password: &str, ip: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/projects/demo/sign-in"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// A session: its secret and its CSRF token.
async fn sign_in(app: &TestApp, email: &str) -> (String, String) {
    let resp = sign_in_from(app, email, PASSWORD, "192.0.2.1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    (
        body["token"].as_str().unwrap().to_owned(),
        body["csrf_token"].as_str().unwrap().to_owned(),
    )
}

fn retry_after(resp: &reqwest::Response) -> i64 {
    resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn two_hundred_wrong_passwords_from_twenty_addresses_open_nothing_and_the_owner_still_gets_in(
) {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |s| s.limits.trusted_proxies = 1).await;
    add_member(&app, "dana@example.com", "owner").await;
    let attackers: Vec<String> = (1..=20).map(|i| format!("198.51.100.{i}")).collect();
    let mut wrong = 0;
    let mut waits = Vec::new();
    while wrong < 200 {
        // Each guess from the next address: ten from each.
        let ip = &attackers[wrong % attackers.len()];
        let guess = format!("guess Number {wrong}");
        let resp = sign_in_from(&app, "dana@example.com", &guess, ip).await;
        match resp.status() {
            StatusCode::UNAUTHORIZED => wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                // The attacker waits as told, on the server's clock.
                let wait = retry_after(&resp);
                waits.push(wait);
                clock.advance(chrono::Duration::seconds(wait));
            }
            other => panic!("guess {wrong} from {ip}: {other}"),
        }
    }
    // Three free failures, then each one doubles the account's wait up to its ceiling, however
    // many addresses the guesses come from: the 200 guesses took the attacker over an hour and
    // a half of waiting instead of a second.
    assert_eq!(&waits[..6], [1, 2, 4, 8, 16, 30]);
    assert!(waits[6..].iter().all(|w| *w == 30), "{waits:?}");
    assert_eq!(waits.len(), 200 - 4);
    assert!(waits.iter().sum::<i64>() > 90 * 60);
    // The right password from an attacker's address during a wait counts for nothing: the
    // answer is a wait, not a session.
    let right = sign_in_from(&app, "dana@example.com", PASSWORD, &attackers[0]).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    // Each address's own wait grew too, past the account's ceiling: turning to another
    // account, an attacker's address fails once more and then waits two minutes.
    let other = sign_in_from(&app, "eli@example.com", "guess Number 1", &attackers[0]).await;
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    let other = sign_in_from(&app, "eli@example.com", "guess Number 2", &attackers[0]).await;
    assert_eq!(other.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&other), 128);

    // The owner, from another address, gets in within a minute.
    let owner_ip = "203.0.113.7";
    let first = sign_in_from(&app, "dana@example.com", PASSWORD, owner_ip).await;
    let mut waited = 0;
    if first.status() == StatusCode::TOO_MANY_REQUESTS {
        waited = retry_after(&first);
        clock.advance(chrono::Duration::seconds(waited));
    } else {
        assert_eq!(first.status(), StatusCode::OK);
    }
    assert!(waited <= 30, "{waited}");
    let owner = sign_in_from(&app, "dana@example.com", PASSWORD, owner_ip).await;
    assert_eq!(owner.status(), StatusCode::OK);
    let body: Value = owner.json().await.unwrap();
    assert_eq!(body["member"]["email"], "dana@example.com");
}
