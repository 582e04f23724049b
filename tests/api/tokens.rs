//! Personal API tokens over real sockets: made from a session and shown once, used as a
//! bearer with the member's role and the token's scope, listed with their last use, revoked
//! by their member or by whoever manages them, and dead once revoked or deactivated.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

async fn add_member(app: &TestApp, email: &str, role: &str) -> Value {
    let body = json!({"email": email, "name": email.split('@').next(), "password": PASSWORD, "role": role});
    let resp = app
        .admin_post(&format!("/v1/projects/{}/members", app.project), body)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

/// Signs in and answers the session's bearer secret.
async fn sign_in(app: &TestApp, email: &str) -> String {
    let resp = app
        .http
        .post(app.url(&format!("/v1/projects/{}/sign-in", app.project)))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = app
        .http
        .request(
            method,
            app.url(&format!("/v1/projects/{}{path}", app.project)),
        )
        .bearer_auth(bearer);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

async fn make_token(app: &TestApp, session: &str, name: &str, scope: &str) -> Value {
    let (status, body) = call(
        app,
        Method::POST,
        "/me/tokens",
        session,
        Some(json!({"name": name, "scope": scope})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn tokens_act_as_their_member_within_their_scope_until_revoked_or_deactivated() {
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    let eli = add_member(&app, "eli@example.com", "agent").await;
    let session = sign_in(&app, "eli@example.com").await;
    let slug = app.create_ticket("Token test").await;

    let read = make_token(&app, &session, "dashboard", "read").await;
    let write = make_token(&app, &session, "  CRM sync ", "write").await;
    let read_secret = read["secret"].as_str().unwrap().to_owned();
    let write_secret = write["secret"].as_str().unwrap().to_owned();
    assert!(read_secret.starts_with("fpt_"));
    assert_eq!(write["name"], "CRM sync");
    assert_eq!(write["scope"], "write");
    assert_eq!(write["member_id"], eli["id"]);
    assert!(write["last_used_at"].is_null());

    // Both read, as the member.
    for secret in [&read_secret, &write_secret] {
        let (status, body) = call(&app, Method::GET, "/me", secret, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let me: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(me["member"]["id"], eli["id"]);
        assert_eq!(me["role"], "agent");
        assert!(me["csrf_token"].is_null());
        let (status, _) = call(&app, Method::GET, "/tickets", secret, None).await;
        assert_eq!(status, StatusCode::OK);
        let head = app
            .http
            .head(app.url(&format!("/v1/projects/{}/tickets", app.project)))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK);
    }

    // A read token changes nothing; a write one does, with the member's role and name.
    let note = json!({"author": "Eli", "content": "checked the logs"});
    let notes = format!("/tickets/{slug}/notes");
    let (status, body) = call(&app, Method::POST, &notes, &read_secret, Some(note.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("error"));
    let (status, body) = call(&app, Method::POST, &notes, &write_secret, Some(note)).await;
    assert!(status.is_success(), "{status} {body}");
    let reply = app
        .http
        .post(app.url(&format!("/v1/tickets/{}/{slug}/messages", app.project)))
        .bearer_auth(&write_secret)
        .json(&json!({"author": "admin", "content": "On it"}))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.status());
    let reply: Value = reply.json().await.unwrap();
    assert_eq!(reply["data"]["agent"]["id"], eli["id"]);
    // The member's role still bounds the token: an agent's write token is no admin.
    let (status, _) = call(
        &app,
        Method::PATCH,
        "",
        &write_secret,
        Some(json!({"name": "Taken over"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A token makes no tokens and revokes none.
    let (status, _) = call(
        &app,
        Method::POST,
        "/me/tokens",
        &write_secret,
        Some(json!({"name": "child", "scope": "write"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The list shows no secret, and the last use, written at most once a minute.
    let (status, body) = call(&app, Method::GET, "/me/tokens", &session, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains(&read_secret) && !body.contains(&write_secret));
    assert!(!body.contains("secret"));
    let listed: Value = serde_json::from_str(&body).unwrap();
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    let last_use = |body: &str| -> Value {
        let listed: Value = serde_json::from_str(body).unwrap();
        let tokens = listed["tokens"].as_array().unwrap().clone();
        tokens.into_iter().find(|t| t["id"] == write["id"]).unwrap()["last_used_at"].clone()
    };
    let first_use = last_use(&body);
    assert!(first_use.is_string());
    clock.advance(chrono::Duration::seconds(30));
    call(&app, Method::GET, "/me", &write_secret, None).await;
    let (_, body) = call(&app, Method::GET, "/me/tokens", &session, None).await;
    assert_eq!(last_use(&body), first_use);
    clock.advance(chrono::Duration::seconds(31));
    call(&app, Method::GET, "/me", &write_secret, None).await;
    let (_, body) = call(&app, Method::GET, "/me/tokens", &session, None).await;
    let second_use = last_use(&body);
    assert!(second_use.is_string() && second_use != first_use);

    // Revoked: 401, and gone from the list; revoking again finds nothing.
    let path = format!("/me/tokens/{}", read["id"].as_str().unwrap());
    let (status, _) = call(&app, Method::DELETE, &path, &session, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&app, Method::DELETE, &path, &session, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&app, Method::GET, "/me", &read_secret, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // A forged secret with a real token id is refused as well.
    let forged = format!("{}{}", &write_secret[..write_secret.len() - 1], "A");
    let forged = if forged == write_secret {
        format!("{}B", &write_secret[..write_secret.len() - 1])
    } else {
        forged
    };
    let (status, _) = call(&app, Method::GET, "/me", &forged, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Deactivated: the member's tokens stop working; reactivated, they work again.
    let member_path = format!(
        "/v1/projects/{}/members/{}",
        app.project,
        eli["id"].as_str().unwrap()
    );
    let resp = app
        .admin_patch(&member_path, json!({"state": "deactivated"}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _) = call(&app, Method::GET, "/tickets", &write_secret, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The admin key is unchanged meanwhile.
    let resp = app
        .admin_get(&format!("/v1/projects/{}/tickets", app.project))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn owners_and_admins_see_and_revoke_the_tokens_of_whom_they_manage() {
    let app = spawn_app().await;
    let eli = add_member(&app, "eli@example.com", "agent").await;
    let ada = add_member(&app, "ada@example.com", "admin").await;
    add_member(&app, "ola@example.com", "owner").await;
    let eli_session = sign_in(&app, "eli@example.com").await;
    let ada_session = sign_in(&app, "ada@example.com").await;
    let ola_session = sign_in(&app, "ola@example.com").await;
    let eli_token = make_token(&app, &eli_session, "eli's", "read").await;
    let ada_token = make_token(&app, &ada_session, "ada's", "write").await;
    let eli_tokens = format!("/members/{}/tokens", eli["id"].as_str().unwrap());
    let ada_tokens = format!("/members/{}/tokens", ada["id"].as_str().unwrap());

    // An admin sees an agent's tokens, not another admin's... but their own, yes.
    let (status, body) = call(&app, Method::GET, &eli_tokens, &ada_session, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(eli_token["id"].as_str().unwrap()));
    assert!(!body.contains(eli_token["secret"].as_str().unwrap()));
    let (status, _) = call(&app, Method::GET, &ada_tokens, &ada_session, None).await;
    assert_eq!(status, StatusCode::OK);
    // An agent sees nobody's.
    let (status, _) = call(&app, Method::GET, &eli_tokens, &eli_session, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Another member's token is not found under one's own.
    let path = format!("/me/tokens/{}", eli_token["id"].as_str().unwrap());
    let (status, _) = call(&app, Method::DELETE, &path, &ada_session, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The owner revokes the admin's token; the admin revokes the agent's.
    let path = format!("{ada_tokens}/{}", ada_token["id"].as_str().unwrap());
    let (status, _) = call(&app, Method::DELETE, &path, &ola_session, None).await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("{eli_tokens}/{}", eli_token["id"].as_str().unwrap());
    let (status, _) = call(&app, Method::DELETE, &path, &ada_session, None).await;
    assert_eq!(status, StatusCode::OK);
    for secret in [&eli_token["secret"], &ada_token["secret"]] {
        let (status, _) = call(&app, Method::GET, "/me", secret.as_str().unwrap(), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    // The admin key is no member: it lists no tokens and makes none.
    let (status, body) = call(&app, Method::GET, "/me/tokens", &app.admin_key, None).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"tokens":[]}"#)
    );
    let (status, _) = call(
        &app,
        Method::POST,
        "/me/tokens",
        &app.admin_key,
        Some(json!({"name": "x", "scope": "read"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Bad names and scopes are refused clearly.
    for body in [
        json!({"name": "   ", "scope": "read"}),
        json!({"name": "x".repeat(101), "scope": "read"}),
        json!({"name": "a\u{7}b", "scope": "read"}),
        json!({"name": "ok", "scope": "admin"}),
        json!({"name": "ok"}),
    ] {
        let (status, text) = call(&app, Method::POST, "/me/tokens", &eli_session, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("error"));
    }
}
