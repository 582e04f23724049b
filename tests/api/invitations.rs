//! Invitations and password resets by single-use link, and inboxes signed out the moment their
//! session ends.

use futures_util::StreamExt;
use reqwest::header::SET_COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

async fn invite(app: &TestApp, email: &str, role: &str) -> Value {
    let resp = app
        .admin_post(
            "/v1/projects/demo/invitations",
            json!({"email": email, "role": role}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

async fn accept(app: &TestApp, token: &str, name: &str, password: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/projects/demo/join"))
        .json(&json!({"token": token, "name": name, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn with_bearer(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    post(
        app,
        "/v1/projects/demo/sign-in",
        json!({"email": email, "password": password}),
    )
    .await
}

/// A member added with the admin key and signed in: their session's bearer token.
async fn member(app: &TestApp, email: &str, role: &str) -> (Value, String) {
    let body = json!({"email": email, "name": email.split('@').next(), "password": PASSWORD, "role": role});
    let resp = app.admin_post("/v1/projects/demo/members", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let member: Value = resp.json().await.unwrap();
    let signed: Value = sign_in(app, email, PASSWORD).await.json().await.unwrap();
    (member, signed["token"].as_str().unwrap().to_owned())
}

fn token_of(issued: &Value) -> &str {
    issued["token"].as_str().unwrap()
}

async fn pending(app: &TestApp) -> Vec<Value> {
    let list: Value = app
        .admin_get("/v1/projects/demo/invitations")
        .await
        .json()
        .await
        .unwrap();
    list["invitations"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_invitation_is_accepted_once_and_signs_the_invitee_in() {
    let app = spawn_app().await;
    let issued = invite(&app, " Eli@Example.com", "agent").await;
    let token = token_of(&issued).to_owned();
    assert!(token.starts_with("fmi_") && token.len() == 47, "{token}");
    assert_eq!(issued["invitation"]["email"], "eli@example.com");
    assert_eq!(issued["invitation"]["role"], "agent");
    let path = issued["path"].as_str().unwrap();
    assert!(
        path.starts_with("/inbox#/accept?project=") && path.ends_with(&format!("&token={token}")),
        "{path}"
    );
    // Listed without its token.
    let listed = pending(&app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], issued["invitation"]["id"]);
    assert!(!listed[0].to_string().contains(&token));

    // A refused password leaves the link working.
    let weak = accept(&app, &token, "Eli", "short").await;
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
    let resp = accept(&app, &token, "Eli Vance", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .starts_with("fleety_member=fms_"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["member"]["name"], "Eli Vance");
    assert_eq!(body["member"]["role"], "agent");
    assert_eq!(body["member"]["state"], "active");
    let me: Value = with_bearer(
        &app,
        reqwest::Method::GET,
        "/v1/projects/demo/me",
        body["token"].as_str().unwrap(),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(me["member"]["email"], "eli@example.com");

    // Used: gone, and no longer pending.
    let again = accept(&app, &token, "Someone Else", PASSWORD).await;
    assert_eq!(again.status(), StatusCode::GONE);
    let again: Value = again.json().await.unwrap();
    assert!(error_of(&again).contains("used or revoked"), "{again}");
    assert!(pending(&app).await.is_empty());
    assert_eq!(
        sign_in(&app, "eli@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
    // A member's address cannot be invited.
    let taken = app
        .admin_post(
            "/v1/projects/demo/invitations",
            json!({"email": "eli@example.com"}),
        )
        .await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    // A token that was never made, or is not shaped like one, is gone too.
    for bogus in [format!("fmi_{}", "A".repeat(43)), "nonsense".into()] {
        let resp = accept(&app, &bogus, "X", PASSWORD).await;
        assert_eq!(resp.status(), StatusCode::GONE, "{bogus}");
    }
}

#[tokio::test]
async fn expired_revoked_and_replaced_invitations_are_gone() {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |_| {}).await;
    let expiring = invite(&app, "late@example.com", "agent").await;
    clock.advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    let resp = accept(&app, token_of(&expiring), "Late", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::GONE);
    let body: Value = resp.json().await.unwrap();
    assert!(error_of(&body).contains("expired"), "{body}");
    assert!(pending(&app).await.is_empty());

    let revoked = invite(&app, "gone@example.com", "agent").await;
    let id = revoked["invitation"]["id"].as_str().unwrap();
    let path = format!("/v1/projects/demo/invitations/{id}");
    assert_eq!(app.admin_delete(&path).await.status(), StatusCode::OK);
    assert_eq!(
        app.admin_delete(&path).await.status(),
        StatusCode::NOT_FOUND
    );
    let resp = accept(&app, token_of(&revoked), "Gone", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::GONE);

    // Inviting an address again replaces its invitation: the first link stops working.
    let first = invite(&app, "twice@example.com", "agent").await;
    let second = invite(&app, "twice@example.com", "admin").await;
    let listed = pending(&app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["role"], "admin");
    let resp = accept(&app, token_of(&first), "Twice", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::GONE);
    let resp = accept(&app, token_of(&second), "Twice", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["member"]["role"], "admin");
}

#[tokio::test]
async fn admins_invite_and_revoke_agents_only_and_agents_neither() {
    let app = spawn_app().await;
    let (_, ada) = member(&app, "ada@example.com", "admin").await;
    let (eli, eli_token) = member(&app, "eli@example.com", "agent").await;
    let invitations = "/v1/projects/demo/invitations";
    let post = reqwest::Method::POST;
    for role in ["admin", "owner"] {
        let body = json!({"email": "new@example.com", "role": role});
        let resp = with_bearer(&app, post.clone(), invitations, &ada, Some(body)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{role}");
    }
    let body = json!({"email": "new@example.com"});
    let resp = with_bearer(&app, post.clone(), invitations, &ada, Some(body.clone())).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let made: Value = resp.json().await.unwrap();
    assert_eq!(made["invitation"]["role"], "agent");
    let resp = with_bearer(&app, post.clone(), invitations, &eli_token, Some(body)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = with_bearer(&app, reqwest::Method::GET, invitations, &eli_token, None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // An owner's invitation to an admin is not an admin's to revoke.
    let owners = invite(&app, "boss@example.com", "admin").await;
    let path = format!(
        "{invitations}/{}",
        owners["invitation"]["id"].as_str().unwrap()
    );
    let resp = with_bearer(&app, reqwest::Method::DELETE, &path, &ada, None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let path = format!(
        "{invitations}/{}",
        made["invitation"]["id"].as_str().unwrap()
    );
    let resp = with_bearer(&app, reqwest::Method::DELETE, &path, &eli_token, None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = with_bearer(&app, reqwest::Method::DELETE, &path, &ada, None).await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Reset links follow the same rules: an admin makes one for an agent, not for an owner.
    let reset = format!(
        "/v1/projects/demo/members/{}/password-reset",
        eli["id"].as_str().unwrap()
    );
    let resp = with_bearer(&app, post.clone(), &reset, &eli_token, None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = with_bearer(&app, post.clone(), &reset, &ada, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let owner = app
        .admin_post(
            "/v1/projects/demo/members",
            json!({"email": "own@example.com", "name": "Own", "password": PASSWORD, "role": "owner"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let reset = format!(
        "/v1/projects/demo/members/{}/password-reset",
        owner["id"].as_str().unwrap()
    );
    let resp = with_bearer(&app, post.clone(), &reset, &ada, None).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // A deactivated member gets no link until reactivated: a conflict with their state, not a
    // bad request (schemathesis sent a valid request and was refused with 400).
    let eli_path = format!("/v1/projects/demo/members/{}", eli["id"].as_str().unwrap());
    let eli_reset = format!("{eli_path}/password-reset");
    let resp = app
        .admin_patch(&eli_path, json!({"state": "deactivated"}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = with_bearer(&app, post.clone(), &eli_reset, &ada, None).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("reactivate"),
        "{body}"
    );
    let resp = app.admin_patch(&eli_path, json!({"state": "active"})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = with_bearer(&app, post, &eli_reset, &ada, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_reset_request_answers_the_same_whoever_asks() {
    let app = spawn_app().await;
    member(&app, "dana@example.com", "owner").await;
    let mut answers = Vec::new();
    for email in ["dana@example.com", "nobody@example.com", "not an address"] {
        let resp = post(
            &app,
            "/v1/projects/demo/password-reset",
            json!({"email": email}),
        )
        .await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    // Asking signs nobody out and changes no password.
    assert_eq!(
        sign_in(&app, "dana@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
}

/// The close code of a member's feed socket, waiting for it.
async fn closed_with(socket: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

async fn member_feed(app: &TestApp, token: &str) -> Socket {
    let resp = with_bearer(
        app,
        reqwest::Method::POST,
        "/v1/projects/demo/feed-token",
        token,
        Some(json!({})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let mut socket = app.connect(body["url"].as_str().unwrap()).await;
    assert_eq!(next_event(&mut socket).await["type"], "subscribed");
    socket
}

#[tokio::test]
async fn a_completed_reset_ends_every_session_and_closes_the_open_inbox() {
    let app = spawn_app().await;
    let (eli, old) = member(&app, "eli@example.com", "agent").await;
    let mut feed = member_feed(&app, &old).await;
    let mut admin_feed = app.connect_feed().await;
    assert_eq!(next_event(&mut admin_feed).await["type"], "subscribed");
    let reset = format!(
        "/v1/projects/demo/members/{}/password-reset",
        eli["id"].as_str().unwrap()
    );
    let resp = app.admin_post(&reset, json!({})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let link: Value = resp.json().await.unwrap();
    let token = link["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("fmr_"));
    assert!(link["path"]
        .as_str()
        .unwrap()
        .starts_with("/inbox#/reset?project="));
    // Making the link alone ends nothing.
    let me = with_bearer(
        &app,
        reqwest::Method::GET,
        "/v1/projects/demo/me",
        &old,
        None,
    )
    .await;
    assert_eq!(me.status(), StatusCode::OK);

    let complete = "/v1/projects/demo/password-reset/complete";
    let weak = post(&app, complete, json!({"token": token, "password": "weak"})).await;
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
    let new_password = "a brand new passphrase";
    let done = post(
        &app,
        complete,
        json!({"token": token, "password": new_password}),
    )
    .await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(closed_with(&mut feed).await, Some(4401));
    let me = with_bearer(
        &app,
        reqwest::Method::GET,
        "/v1/projects/demo/me",
        &old,
        None,
    )
    .await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        sign_in(&app, "eli@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let resp = sign_in(&app, "eli@example.com", new_password).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Used once.
    let again = post(
        &app,
        complete,
        json!({"token": token, "password": "yet another one 2"}),
    )
    .await;
    assert_eq!(again.status(), StatusCode::GONE);

    // The admin key's socket never was a session's: it stays open.
    app.create_ticket("Still live").await;
    assert_eq!(next_event(&mut admin_feed).await["type"], "ticket_created");
}

#[tokio::test]
async fn an_inbox_is_closed_when_its_member_is_deactivated_or_signs_out() {
    let app = spawn_app().await;
    let (eli, token) = member(&app, "eli@example.com", "agent").await;
    let mut feed = member_feed(&app, &token).await;
    let path = format!("/v1/projects/demo/members/{}", eli["id"].as_str().unwrap());
    let resp = app
        .admin_patch(&path, json!({"state": "deactivated"}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(closed_with(&mut feed).await, Some(4401));
    // Its feed token cannot open another either.
    let resp = with_bearer(
        &app,
        reqwest::Method::POST,
        "/v1/projects/demo/feed-token",
        &token,
        Some(json!({})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = app.admin_patch(&path, json!({"state": "active"})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let signed: Value = sign_in(&app, "eli@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let token = signed["token"].as_str().unwrap();
    let (mut one, mut other) = (
        member_feed(&app, token).await,
        member_feed(&app, token).await,
    );
    let second: Value = sign_in(&app, "eli@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let mut elsewhere = member_feed(&app, second["token"].as_str().unwrap()).await;
    let resp = with_bearer(
        &app,
        reqwest::Method::POST,
        "/v1/projects/demo/sign-out",
        token,
        Some(json!({})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(closed_with(&mut one).await, Some(4401));
    assert_eq!(closed_with(&mut other).await, Some(4401));
    // The member's other session, on another device, stays signed in.
    app.create_ticket("Still here").await;
    assert_eq!(next_event(&mut elsewhere).await["type"], "ticket_created");
}
