//! Two-factor authentication (TOTP) over real sockets, on the embedded store or CQL: enrolment,
//! confirmation, sign-in's second step (wrong, replayed, out-of-window and right codes;
//! recovery codes once each; challenges once each and for five minutes), turning it off, new
//! recovery codes, and the audit trail. Codes are computed here from the secret, by this
//! file's own RFC 6238, on the server's manual clock.

use std::sync::atomic::{AtomicU32, Ordering};

use fleety_actors::clock::{Clock, ManualClock};
use reqwest::header::SET_COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

/// The code for `offset` steps from the clock's now.
fn code(secret: &str, clock: &ManualClock, offset: i64) -> String {
    totp_code(secret, clock.now(), offset)
}

/// A fresh client address for each request, so only the account's count of failures is in
/// play, as it would be for someone trying from many places.
fn next_ip() -> String {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff)
}

async fn post(app: &TestApp, path: &str, bearer: Option<&str>, body: Value) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(path))
        .header("x-forwarded-for", next_ip())
        .json(&body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

async fn get(app: &TestApp, path: &str, bearer: &str) -> Value {
    let resp = app.http.get(app.url(path)).bearer_auth(bearer).send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

async fn sign_in(app: &TestApp) -> reqwest::Response {
    let body = json!({"email": "dana@example.com", "password": PASSWORD});
    post(app, "/v1/projects/demo/sign-in", None, body).await
}

/// Signs in with the password and answers the challenge of the second step.
async fn challenge(app: &TestApp) -> String {
    let resp = sign_in(app).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["second_factor"], "totp");
    assert!(body.get("token").is_none() && body.get("member").is_none());
    body["challenge"].as_str().unwrap().to_owned()
}

async fn second(app: &TestApp, body: Value) -> reqwest::Response {
    post(app, "/v1/projects/demo/sign-in/second-factor", None, body).await
}

async fn refused(resp: reqwest::Response, why: &str) {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_of(&body), why);
}

const WRONG: &str = "wrong code";
const EXPIRED: &str = "this sign-in has expired or was used: sign in again";

#[tokio::test]
async fn a_member_turns_on_totp_and_signs_in_with_a_code_once_or_a_recovery_code_once() {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |s| s.limits.trusted_proxies = 1).await;
    let body =
        json!({"email": "dana@example.com", "name": "Dana", "password": PASSWORD, "role": "agent"});
    let resp = app.admin_post("/v1/projects/demo/members", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = sign_in(&app).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let session = resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = Some(session.as_str());
    let status = get(&app, "/v1/projects/demo/me/totp", &session).await;
    assert_eq!(
        status,
        json!({"enabled": false, "pending": false, "recovery_codes_left": 0})
    );

    // The admin key is no member; a personal token may not turn it on.
    let resp = post(
        &app,
        "/v1/projects/demo/me/totp",
        Some(&app.admin_key),
        json!({}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let made = post(
        &app,
        "/v1/projects/demo/me/tokens",
        me,
        json!({"name": "script", "scope": "write"}),
    )
    .await;
    let token = made.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = post(&app, "/v1/projects/demo/me/totp", Some(&token), json!({})).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Enrolment: the secret and its URI, once.
    let resp = post(&app, "/v1/projects/demo/me/totp", me, json!({})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let enrolment: Value = resp.json().await.unwrap();
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32);
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Fleety%20%28demo")
            && uri.contains("%29:dana%40example.com?"),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    let status = get(&app, "/v1/projects/demo/me/totp", &session).await;
    assert_eq!(status["pending"], true);
    assert_eq!(status["enabled"], false);
    assert!(!status.to_string().contains(&secret));
    // Not on until confirmed: the password alone still signs in.
    assert_eq!(sign_in(&app).await.status(), StatusCode::OK);

    let confirm = "/v1/projects/demo/me/totp/confirm";
    let wrong = post(&app, confirm, me, json!({"code": code(&secret, &clock, 5)})).await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let first = code(&secret, &clock, 0);
    let resp = post(&app, confirm, me, json!({"code": first})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let codes: Vec<String> = resp.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let again = post(&app, "/v1/projects/demo/me/totp", me, json!({})).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let status = get(&app, "/v1/projects/demo/me/totp", &session).await;
    assert_eq!(
        status,
        json!({"enabled": true, "pending": false, "recovery_codes_left": 10})
    );

    // The password alone no longer signs in; a wrong one is answered as before.
    let c = challenge(&app).await;
    let body = json!({"email": "dana@example.com", "password": "not the password"});
    let resp = post(&app, "/v1/projects/demo/sign-in", None, body).await;
    refused(resp, "wrong email or password").await;
    // The code used at confirmation is spent: its step is not after the last used.
    refused(
        second(&app, json!({"challenge": c, "code": first})).await,
        WRONG,
    )
    .await;
    // Two steps away is outside the window of one step either side.
    let far = code(&secret, &clock, 2);
    refused(
        second(&app, json!({"challenge": c, "code": far})).await,
        WRONG,
    )
    .await;
    // The next step's code (a clock one step ahead) opens a session.
    let next = code(&secret, &clock, 1);
    let resp = second(&app, json!({"challenge": c, "code": next})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .starts_with("fleety_member=fms_"));
    let signed: Value = resp.json().await.unwrap();
    assert_eq!(signed["member"]["email"], "dana@example.com");
    let fresh = signed["token"].as_str().unwrap();
    assert_eq!(
        get(&app, "/v1/projects/demo/me", fresh).await["role"],
        "agent"
    );
    // The challenge worked once.
    let later = code(&secret, &clock, 1);
    refused(
        second(&app, json!({"challenge": c, "code": later})).await,
        EXPIRED,
    )
    .await;

    // A code is accepted once: the same one with a new challenge is refused, even later in
    // its window; the next step's works.
    clock.advance(chrono::Duration::seconds(30));
    let c = challenge(&app).await;
    refused(
        second(&app, json!({"challenge": c, "code": next})).await,
        WRONG,
    )
    .await;
    let now = code(&secret, &clock, 1);
    let resp = second(&app, json!({"challenge": c, "code": now})).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // A recovery code works once, written as shown or not.
    let c = challenge(&app).await;
    let typed = codes[0].replace('-', "").to_uppercase();
    let resp = second(&app, json!({"challenge": c, "recovery_code": typed})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let c = challenge(&app).await;
    let resp = second(&app, json!({"challenge": c, "recovery_code": codes[0]})).await;
    refused(resp, WRONG).await;
    let status = get(&app, "/v1/projects/demo/me/totp", &session).await;
    assert_eq!(status["recovery_codes_left"], 9);

    // A challenge lasts five minutes.
    let c = challenge(&app).await;
    clock.advance(chrono::Duration::seconds(301));
    let now = code(&secret, &clock, 0);
    refused(
        second(&app, json!({"challenge": c, "code": now})).await,
        EXPIRED,
    )
    .await;
    // A made-up challenge, or none, is no way in.
    let made_up = format!("fmc_{}_{}", uuid::Uuid::new_v4().simple(), "a".repeat(43));
    refused(
        second(&app, json!({"challenge": made_up, "code": now})).await,
        EXPIRED,
    )
    .await;
    let both = json!({"challenge": made_up, "code": now, "recovery_code": codes[1]});
    assert_eq!(second(&app, both).await.status(), StatusCode::BAD_REQUEST);

    // Wrong codes count on the brake of sign-ins, and a challenge takes five at most.
    let c = challenge(&app).await;
    let mut wrong = 0;
    let mut waits = Vec::new();
    while wrong < 5 {
        let guess = format!(
            "{:06}",
            (code(&secret, &clock, 0).parse::<u32>().unwrap() + 500_000) % 1_000_000
        );
        let resp = second(&app, json!({"challenge": c, "code": guess})).await;
        match resp.status() {
            StatusCode::UNAUTHORIZED => wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let wait: i64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                waits.push(wait);
                clock.advance(chrono::Duration::seconds(wait));
            }
            other => panic!("guess {wrong}: {other}"),
        }
    }
    // One failure before (a spent recovery code), then five: the fourth and fifth waited.
    assert_eq!(waits, [1, 2]);
    clock.advance(chrono::Duration::seconds(5));
    let right = code(&secret, &clock, 0);
    refused(
        second(&app, json!({"challenge": c, "code": right})).await,
        EXPIRED,
    )
    .await;
    let c = challenge(&app).await;
    let right = code(&secret, &clock, 0);
    let resp = second(&app, json!({"challenge": c, "code": right})).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // New recovery codes need the password or a code, and void the old ones.
    let regenerate = "/v1/projects/demo/me/totp/recovery-codes";
    let resp = post(
        &app,
        regenerate,
        me,
        json!({"password": "not the password"}),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(&app, regenerate, me, json!({"password": PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let renewed = resp.json::<Value>().await.unwrap()["recovery_codes"].clone();
    assert_eq!(renewed.as_array().unwrap().len(), 10);
    let c = challenge(&app).await;
    let resp = second(&app, json!({"challenge": c, "recovery_code": codes[1]})).await;
    refused(resp, WRONG).await;
    let resp = second(&app, json!({"challenge": c, "recovery_code": renewed[3]})).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Turning it off: not with a token, not with a wrong or spent code; with a current one.
    let disable = "/v1/projects/demo/me/totp/disable";
    clock.advance(chrono::Duration::seconds(60));
    let now = code(&secret, &clock, 0);
    let resp = post(&app, disable, Some(&token), json!({"code": now})).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(&app, disable, me, json!({"code": right})).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(&app, disable, me, json!({})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = post(&app, disable, me, json!({"code": now})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let status = get(&app, "/v1/projects/demo/me/totp", &session).await;
    assert_eq!(
        status,
        json!({"enabled": false, "pending": false, "recovery_codes_left": 0})
    );
    assert_eq!(sign_in(&app).await.status(), StatusCode::OK);
    let resp = post(&app, disable, me, json!({"password": PASSWORD})).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    // The trail tells each event, and no secret.
    let resp = app
        .http
        .get(app.url("/v1/projects/demo/audit?limit=200"))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    let trail: Value = resp.json().await.unwrap();
    let actions: Vec<&str> = trail["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    let count = |a: &str| actions.iter().filter(|x| **x == a).count();
    assert_eq!(count("member.totp_enabled"), 1, "{actions:?}");
    assert_eq!(count("member.totp_disabled"), 1, "{actions:?}");
    assert_eq!(count("member.recovery_codes_regenerated"), 1, "{actions:?}");
    assert_eq!(count("member.recovery_code_used"), 2, "{actions:?}");
    // Spent, out of window, replayed, a used recovery code, five guesses, an old recovery code.
    assert_eq!(count("member.second_factor_failed"), 10, "{actions:?}");
    let failed = trail["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "member.second_factor_failed")
        .unwrap();
    assert_eq!(failed["actor"]["kind"], "anonymous");
    assert_eq!(failed["target"]["kind"], "member");
    let text = trail.to_string();
    assert!(!text.contains(&secret));
    assert!(!text.contains(renewed[0].as_str().unwrap()));
    for c in &codes {
        assert!(!text.contains(c.as_str()));
    }
}

#[tokio::test]
async fn two_uses_of_one_code_at_once_open_one_session() {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |s| s.limits.trusted_proxies = 1).await;
    let body =
        json!({"email": "dana@example.com", "name": "Dana", "password": PASSWORD, "role": "owner"});
    assert_eq!(
        app.admin_post("/v1/projects/demo/members", body)
            .await
            .status(),
        StatusCode::CREATED
    );
    let session = sign_in(&app).await.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = Some(session.as_str());
    let enrolment: Value = post(&app, "/v1/projects/demo/me/totp", me, json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let confirm = json!({"code": code(&secret, &clock, -1)});
    let resp = post(&app, "/v1/projects/demo/me/totp/confirm", me, confirm).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // One challenge, the same code sent twice at once: one opens a session, the other is
    // refused (or told to wait, its check overlapping the first).
    let c = challenge(&app).await;
    let now = code(&secret, &clock, 0);
    let body = json!({"challenge": c, "code": now});
    let (a, b) = tokio::join!(second(&app, body.clone()), second(&app, body));
    let statuses = [a.status(), b.status()];
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .any(|s| matches!(*s, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS)));
}
