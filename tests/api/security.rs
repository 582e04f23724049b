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

#[tokio::test]
async fn a_cookie_without_its_own_csrf_token_changes_nothing() {
    let app = spawn_app().await;
    add_member(&app, "olga@example.com", "owner").await;
    let agent = add_member(&app, "eli@example.com", "agent").await;
    let agent_path = format!(
        "/v1/projects/demo/members/{}",
        agent["id"].as_str().unwrap()
    );
    let (first, first_csrf) = sign_in(&app, "olga@example.com").await;
    let (_, second_csrf) = sign_in(&app, "olga@example.com").await;
    let cookie = format!("fleety_member={first}");
    let new =
        json!({"email": "new@example.com", "name": "New", "password": PASSWORD, "role": "admin"});

    // What a forged page could send: the cookie, no token, or the token of another session
    // (its own, say), in JSON or as a form; each is refused before anything happens.
    let send = |method: reqwest::Method, path: &str, csrf: Option<&str>| {
        let mut req = app
            .http
            .request(method, app.url(path))
            .header(COOKIE, &cookie);
        if let Some(csrf) = csrf {
            req = req.header("x-csrf-token", csrf);
        }
        req
    };
    for csrf in [None, Some(second_csrf.as_str()), Some("")] {
        let post = send(reqwest::Method::POST, "/v1/projects/demo/members", csrf);
        let resp = post.json(&new).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{csrf:?}");
        assert!(error_of(&resp.json().await.unwrap()).contains("X-CSRF-Token"));
        let patch = send(reqwest::Method::PATCH, &agent_path, csrf);
        let resp = patch.json(&json!({"role": "owner"})).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{csrf:?}");
        let delete = send(reqwest::Method::DELETE, &agent_path, csrf);
        assert_eq!(
            delete.send().await.unwrap().status(),
            StatusCode::FORBIDDEN,
            "{csrf:?}"
        );
    }
    let form = send(reqwest::Method::POST, "/v1/projects/demo/members", None)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=new%40example.com&name=New&password=correct+horse+battery&role=owner")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::FORBIDDEN);
    let members: Value = app
        .admin_get("/v1/projects/demo/members")
        .await
        .json()
        .await
        .unwrap();
    let members = members["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let eli = members.iter().find(|m| m["id"] == agent["id"]).unwrap();
    assert_eq!(
        (&eli["role"], &eli["state"]),
        (&json!("agent"), &json!("invited"))
    );

    // The session's own token does what the forgeries could not.
    let post = send(
        reqwest::Method::POST,
        "/v1/projects/demo/members",
        Some(&first_csrf),
    );
    assert_eq!(
        post.json(&new).send().await.unwrap().status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_session_cookie_replayed_after_sign_out_a_new_password_or_deactivation_is_refused() {
    let app = spawn_app().await;
    let eli = add_member(&app, "eli@example.com", "agent").await;
    let eli_path = format!("/v1/projects/demo/members/{}", eli["id"].as_str().unwrap());
    let slug = app.create_ticket("Replay").await;
    let note_path = format!("/v1/projects/demo/tickets/{slug}/notes");

    // What an attacker holding a copy of the cookie (and its token) would try: reading, and
    // changing something with the token.
    let replay = |token: String, csrf: String| {
        let app = &app;
        let note_path = note_path.clone();
        async move {
            let cookie = format!("fleety_member={token}");
            let me = app
                .http
                .get(app.url("/v1/projects/demo/me"))
                .header(COOKIE, &cookie)
                .send()
                .await
                .unwrap();
            let note = app
                .http
                .post(app.url(&note_path))
                .header(COOKIE, &cookie)
                .header("x-csrf-token", csrf)
                .json(&json!({"author": "Eli", "content": "replayed"}))
                .send()
                .await
                .unwrap();
            (me.status(), note.status())
        }
    };
    let ok = (StatusCode::OK, StatusCode::CREATED);
    let refused = (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED);

    let (token, csrf) = sign_in(&app, "eli@example.com").await;
    assert_eq!(replay(token.clone(), csrf.clone()).await, ok);
    let out = app
        .http
        .post(app.url("/v1/projects/demo/sign-out"))
        .header(COOKIE, format!("fleety_member={token}"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    assert_eq!(replay(token, csrf).await, refused);

    let (token, csrf) = sign_in(&app, "eli@example.com").await;
    assert_eq!(replay(token.clone(), csrf.clone()).await, ok);
    let changed = app
        .admin_patch(&eli_path, json!({"password": "another Password 2"}))
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(replay(token, csrf).await, refused);

    let resp = sign_in_from(&app, "eli@example.com", "another Password 2", "192.0.2.1").await;
    let body: Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(replay(token.clone(), csrf.clone()).await, ok);
    assert_eq!(app.admin_delete(&eli_path).await.status(), StatusCode::OK);
    assert_eq!(replay(token.clone(), csrf.clone()).await, refused);
    // Reactivated, the member signs in afresh; the old cookie stays dead.
    let back = app.admin_patch(&eli_path, json!({"state": "active"})).await;
    assert_eq!(back.status(), StatusCode::OK);
    assert_eq!(replay(token, csrf).await, refused);

    // Only the three notes written while signed in landed.
    let notes: Value = app.admin_get(&note_path).await.json().await.unwrap();
    let notes = notes["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("{notes}"));
    assert_eq!(notes.len(), 3);
}

#[tokio::test]
async fn an_agents_session_is_refused_every_admin_and_owner_route_by_cookie_and_by_bearer() {
    use fleety::http::route::Access;
    let app = spawn_app().await;
    add_member(&app, "eli@example.com", "agent").await;
    let slug = app.create_ticket("Agent walk").await;
    let (token, csrf) = sign_in(&app, "eli@example.com").await;
    let cookie = format!("fleety_member={token}");
    let routes: Vec<_> = fleety::http::routes::table()
        .iter()
        .filter(|r| matches!(r.access, Access::Admin | Access::Owner))
        .collect();
    assert!(routes.len() > 10, "{}", routes.len());
    for route in routes {
        let path = crate::members::concrete(route.path, &app.project, &slug);
        let by_cookie = app
            .http
            .request(route.method.clone(), app.url(&path))
            .header(COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .json(&json!({}));
        let by_bearer = app
            .http
            .request(route.method.clone(), app.url(&path))
            .bearer_auth(&token)
            .json(&json!({}));
        for (how, req) in [("cookie", by_cookie), ("bearer", by_bearer)] {
            let resp = req.send().await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::FORBIDDEN,
                "{how} {} {}",
                route.method,
                route.path
            );
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].is_string(), "{body}");
        }
    }
    // Refused, not signed out: the session still works where an agent may go.
    let me = app
        .http
        .get(app.url("/v1/projects/demo/me"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["role"], "agent");
}
