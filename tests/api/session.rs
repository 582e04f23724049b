use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn init_session_returns_a_five_minute_token_for_the_project() {
    let app = spawn_app().await;
    let resp = app
        .post_json("/v1/init-session", json!({"project_id": "demo"}))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["project_id"], app.project.as_str());
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((295..=300).contains(&ttl), "ttl {ttl}");

    let me = app
        .http
        .get(app.url("/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["project_id"], app.project.as_str());
    assert!(me["session_id"].as_str().is_some_and(|s| !s.is_empty()));

    // Every session gets its own id.
    let other: Value = app
        .post_json("/v1/init-session", json!({"project_id": "demo"}))
        .await
        .json()
        .await
        .unwrap();
    let other_me: Value = app
        .http
        .get(app.url("/v1/session"))
        .bearer_auth(other["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(other_me["session_id"], me["session_id"]);
}

#[tokio::test]
async fn init_session_refuses_unknown_projects_and_bad_bodies() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_json("/v1/init-session", json!({"project_id": "nope"}))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.post_json("/v1/init-session", json!({})).await.status(),
        400
    );
    let resp = app
        .http
        .post(app.url("/v1/init-session"))
        .body("project_id=demo")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    let body: Value = app
        .post_json("/v1/init-session", json!({"project_id": "demo"}))
        .await
        .json()
        .await
        .unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let me = |t: String| {
        let (http, url) = (app.http.clone(), app.url("/v1/session"));
        async move { http.get(url).bearer_auth(t).send().await.unwrap() }
    };
    assert_eq!(me(token.clone()).await.status(), 200);
    clock.advance(chrono::Duration::seconds(299));
    assert_eq!(me(token.clone()).await.status(), 200);
    clock.advance(chrono::Duration::seconds(10));
    let resp = me(token).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(error_of(&resp.json().await.unwrap()), "token expired");
}

#[tokio::test]
async fn a_tampered_or_missing_token_is_refused() {
    let app = spawn_app().await;
    let body: Value = app
        .post_json("/v1/init-session", json!({"project_id": "demo"}))
        .await
        .json()
        .await
        .unwrap();
    let token = body["token"].as_str().unwrap();
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    // Claim another project in the payload, keeping the old signature.
    let forged = base64_url(&serde_json::to_vec(&json!({"sub": "x", "pid": "demo", "iat": 0, "exp": 9_999_999_999i64, "iss": "fleety", "aud": "fleety-session"})).unwrap());
    parts[1] = forged;
    let tampered = parts.join(".");
    for bad in [tampered.as_str(), "not.a.token", "eyJhbGciOiJub25lIn0.e30."] {
        let resp = app
            .http
            .get(app.url("/v1/session"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
    }
    assert_eq!(app.get("/v1/session").await.status(), 401);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A session token for the demo project signed with `secret`, naming key `kid`, not valid
/// before `nbf`.
fn sign(app: &TestApp, secret: &str, kid: Option<&str>, nbf: Option<i64>) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": uuid::Uuid::new_v4().to_string(),
        "pid": app.project,
        "iat": now,
        "exp": now + 300,
        "iss": "fleety",
        "aud": "fleety-session",
    });
    if let Some(nbf) = nbf {
        claims["nbf"] = json!(nbf);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

const HUMAN: &str = "I want to talk to a human";

/// The three endpoints a session token opens, each asked something that would open a ticket
/// (or describe the session) if the token were good.
async fn use_token(app: &TestApp, token: &str) -> [(&'static str, reqwest::Response); 3] {
    let session = app
        .http
        .get(app.url("/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let chat = app
        .chat("/v1/chat", token, json!({ "prompt": HUMAN }))
        .await;
    let tools = app
        .chat(
            "/v1/chat/tools",
            token,
            json!({"messages": [{"role": "user", "content": HUMAN}], "enable_tool_calling": true}),
        )
        .await;
    [
        ("/v1/session", session),
        ("/v1/chat", chat),
        ("/v1/chat/tools", tools),
    ]
}

async fn ticket_count(app: &TestApp) -> usize {
    let page: Value = app
        .admin_get("/v1/projects/demo/tickets")
        .await
        .json()
        .await
        .unwrap();
    page["tickets"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_well_signed_token_that_is_not_valid_yet_or_names_an_unknown_key_is_refused_and_opens_nothing(
) {
    let app = spawn_app().await;
    let kid = fleety::auth::key_id(JWT_SECRET.as_bytes());
    let in_two_minutes = chrono::Utc::now().timestamp() + 120;
    let refused = [
        (
            "nbf two minutes ahead",
            sign(&app, JWT_SECRET, Some(&kid), Some(in_two_minutes)),
        ),
        (
            "unknown kid",
            sign(&app, JWT_SECRET, Some("0123456789abcdef"), None),
        ),
        (
            "path-like kid",
            sign(&app, JWT_SECRET, Some("../../etc/passwd"), None),
        ),
        ("no kid", sign(&app, JWT_SECRET, None, None)),
    ];
    for (case, token) in &refused {
        for (endpoint, resp) in use_token(&app, token).await {
            assert_eq!(resp.status(), 401, "{case} on {endpoint}");
            let body: Value = resp.json().await.unwrap();
            assert!(!error_of(&body).is_empty(), "{case} on {endpoint}");
        }
    }
    assert_eq!(
        ticket_count(&app).await,
        0,
        "a refused token opened a ticket"
    );

    // The same request with a good token does open one: the refusals above were the tokens'.
    let good = sign(&app, JWT_SECRET, Some(&kid), None);
    let [(_, session), (_, chat), (_, tools)] = use_token(&app, &good).await;
    assert_eq!(session.status(), 200);
    assert_eq!(chat.status(), 200);
    assert_eq!(tools.status(), 200);
    let answer: Value = tools.json().await.unwrap();
    assert_eq!(answer["type"], "tool_call", "{answer}");
    assert!(ticket_count(&app).await >= 1);
}

async fn describe(app: &TestApp, token: &str) -> u16 {
    app.http
        .get(app.url("/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_rotated_secret_keeps_verifying_its_tokens_until_it_is_removed() {
    const OLD: &str = "the-secret-before-rotation-0123456789";
    const NEW: &str = "the-secret-after-rotation-9876543210";
    let mut options = Options::default();
    options.settings.auth.jwt_secret = fleety::config::Secret::new(OLD);
    let before = spawn_with(options).await;
    let old_token = before.session_token().await;
    assert_eq!(describe(&before, &old_token).await, 200);

    // Rotated: the new secret signs, the old one still verifies.
    let mut options = before.stop().await.options();
    options.settings.auth.jwt_secret = fleety::config::Secret::new(NEW);
    options.settings.auth.jwt_previous_secrets =
        fleety::config::Secrets::new([fleety::config::Secret::new(OLD)]);
    let rotated = spawn_with(options).await;
    assert_eq!(describe(&rotated, &old_token).await, 200);
    let new_token = rotated.session_token().await;
    let header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(
        header.kid,
        Some(fleety::auth::key_id(NEW.as_bytes())),
        "new tokens are signed with the new secret"
    );
    assert_eq!(describe(&rotated, &new_token).await, 200);

    // Once the old secret is removed, only its tokens stop working.
    let mut options = rotated.stop().await.options();
    options.settings.auth.jwt_secret = fleety::config::Secret::new(NEW);
    let after = spawn_with(options).await;
    assert_eq!(describe(&after, &old_token).await, 401);
    assert_eq!(describe(&after, &new_token).await, 200);
}

#[tokio::test]
async fn a_session_is_renewed_before_its_token_expires_and_keeps_its_id() {
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    let first: Value = app
        .post_json("/v1/init-session", json!({"project_id": "demo"}))
        .await
        .json()
        .await
        .unwrap();
    let session_of = |token: String| {
        let (http, url) = (app.http.clone(), app.url("/v1/session"));
        async move {
            let resp = http.get(url).bearer_auth(token).send().await.unwrap();
            resp.json::<Value>().await.unwrap()
        }
    };
    let renew = |token: String| {
        let (http, url) = (app.http.clone(), app.url("/v1/session/renew"));
        async move { http.post(url).bearer_auth(token).send().await.unwrap() }
    };
    let token = first["token"].as_str().unwrap().to_owned();
    clock.advance(chrono::Duration::seconds(250));
    let resp = renew(token.clone()).await;
    assert_eq!(resp.status(), 200);
    let renewed: Value = resp.json().await.unwrap();
    assert!(renewed["expires_at"].as_str() > first["expires_at"].as_str());
    let (before, after) = (
        session_of(token.clone()).await,
        session_of(renewed["token"].as_str().unwrap().to_owned()).await,
    );
    assert_eq!(after["session_id"], before["session_id"]);

    // An expired token cannot be renewed: the widget starts a new session instead.
    clock.advance(chrono::Duration::seconds(400));
    let late = renew(token).await;
    assert_eq!(late.status(), 401);
    assert!(error_of(&late.json().await.unwrap()).contains("expired"));
    let anonymous = app
        .http
        .post(app.url("/v1/session/renew"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
