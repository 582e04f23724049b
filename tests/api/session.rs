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
