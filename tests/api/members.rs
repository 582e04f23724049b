//! Members: signing in and out, sessions and their end, CSRF on cookie-signed requests, the
//! brake on guessing passwords, the members API, and each role's routes over the route table.

use fleety::http::route::Access;
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

/// Adds a member with the admin key and returns them.
async fn add_member(app: &TestApp, email: &str, role: &str) -> Value {
    let body = json!({"email": email, "name": email.split('@').next(), "password": PASSWORD, "role": role});
    let resp = app.admin_post("/v1/projects/demo/members", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

/// A signed-in member's credentials.
struct Signed {
    token: String,
    csrf: String,
    member: Value,
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

async fn sign_in(app: &TestApp, email: &str) -> Signed {
    let resp = sign_in_from(app, email, PASSWORD, "192.0.2.1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    Signed {
        token: body["token"].as_str().unwrap().to_owned(),
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        member: body["member"].clone(),
    }
}

fn cookie(s: &Signed) -> String {
    format!("fleety_member={}", s.token)
}

async fn bearer(app: &TestApp, method: reqwest::Method, path: &str, token: &str) -> StatusCode {
    let mut req = app
        .http
        .request(method.clone(), app.url(path))
        .bearer_auth(token);
    if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
        req = req.json(&json!({}));
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn a_member_signs_in_with_the_right_password_and_wrong_ones_all_answer_alike() {
    let app = spawn_app().await;
    let owner = add_member(&app, "Dana@Example.com", "owner").await;
    assert_eq!(owner["email"], "dana@example.com");
    assert_eq!(owner["state"], "invited");
    assert!(owner.get("password_hash").is_none());

    let wrong = sign_in_from(&app, "dana@example.com", "not the password", "192.0.2.1").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let wrong: Value = wrong.json().await.unwrap();
    let unknown = sign_in_from(&app, "nobody@example.com", PASSWORD, "192.0.2.1").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.json::<Value>().await.unwrap(), wrong);

    let resp = sign_in_from(&app, " DANA@example.com", PASSWORD, "192.0.2.1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert!(set.starts_with(&format!("fleety_member={token};")), "{set}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    // Plain HTTP, no proxy saying otherwise: not Secure.
    assert!(!set.contains("Secure"), "{set}");
    assert_eq!(body["member"]["state"], "active");

    let me: Value = app
        .http
        .get(app.url("/v1/projects/demo/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "owner");
    assert_eq!(me["member"]["email"], "dana@example.com");
    assert_eq!(me["csrf_token"], body["csrf_token"]);
    // The admin key is still the owner's, exactly as before.
    let me: Value = app
        .admin_get("/v1/projects/demo/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me,
        json!({"role": "owner", "member": null, "csrf_token": null, "email_enabled": false})
    );
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_an_https_proxy() {
    let app = spawn_with_settings(|s| s.limits.trusted_proxies = 1).await;
    add_member(&app, "dana@example.com", "agent").await;
    let resp = app
        .http
        .post(app.url("/v1/projects/demo/sign-in"))
        .header("x-forwarded-for", "192.0.2.1")
        .header("x-forwarded-proto", "https")
        .json(&json!({"email": "dana@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let set = resp.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.ends_with("; Secure"), "{set}");
}

#[tokio::test]
async fn cookie_signed_requests_that_change_something_need_the_csrf_token() {
    let app = spawn_app().await;
    add_member(&app, "eli@example.com", "agent").await;
    let eli = sign_in(&app, "eli@example.com").await;
    let slug = app.create_ticket("Printer on fire").await;

    // Reading needs no token.
    let me = app
        .http
        .get(app.url("/v1/projects/demo/me"))
        .header(COOKIE, cookie(&eli))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        me.json::<Value>().await.unwrap()["csrf_token"],
        eli.csrf.as_str()
    );

    let note = |csrf: Option<&str>| {
        let mut req = app
            .http
            .post(app.url(&format!("/v1/projects/demo/tickets/{slug}/notes")))
            .header(COOKIE, cookie(&eli))
            .json(&json!({"author": "Eli", "content": "Checking the toner"}));
        if let Some(csrf) = csrf {
            req = req.header("x-csrf-token", csrf);
        }
        req.send()
    };
    assert_eq!(note(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        note(Some("0123456789abcdef0123456789abcdef"))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        note(Some(&eli.csrf)).await.unwrap().status(),
        StatusCode::CREATED
    );

    // On the public routes, the cookie with its token replies as the team; without the token
    // the request is a visitor's, who may not.
    let reply = |csrf: Option<&str>| {
        let mut req = app
            .http
            .post(app.url(&format!("/v1/tickets/demo/{slug}/messages")))
            .header(COOKIE, cookie(&eli))
            .json(&json!({"author": "admin", "content": "On my way"}));
        if let Some(csrf) = csrf {
            req = req.header("x-csrf-token", csrf);
        }
        req.send()
    };
    assert_eq!(reply(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        reply(Some(&eli.csrf)).await.unwrap().status(),
        StatusCode::CREATED
    );
    // A bearer secret is no cookie: a browser never sends it by itself.
    let resp = app
        .http
        .post(app.url(&format!("/v1/tickets/demo/{slug}/messages")))
        .bearer_auth(&eli.token)
        .json(&json!({"author": "admin", "content": "Fixed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn sessions_are_listed_revoked_and_end_on_sign_out_deactivation_and_a_new_password() {
    let app = spawn_app().await;
    let eli_row = add_member(&app, "eli@example.com", "agent").await;
    let eli_id = eli_row["id"].as_str().unwrap().to_owned();
    let first = sign_in(&app, "eli@example.com").await;
    let second = sign_in(&app, "eli@example.com").await;
    assert_eq!(first.member["id"], eli_id.as_str());

    let list: Value = app
        .http
        .get(app.url("/v1/projects/demo/me/sessions"))
        .bearer_auth(&first.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(!list.to_string().contains(&first.token));
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    let other_id = other["id"].as_str().unwrap();
    let path = format!("/v1/projects/demo/me/sessions/{other_id}");
    assert_eq!(
        bearer(&app, reqwest::Method::DELETE, &path, &first.token).await,
        StatusCode::OK
    );
    assert_eq!(
        bearer(&app, reqwest::Method::DELETE, &path, &first.token).await,
        StatusCode::NOT_FOUND
    );
    let me = "/v1/projects/demo/me";
    assert_eq!(
        bearer(&app, reqwest::Method::GET, me, &second.token).await,
        StatusCode::UNAUTHORIZED
    );

    // Signing out ends the session: its cookie replayed afterwards is refused.
    let out = app
        .http
        .post(app.url("/v1/projects/demo/sign-out"))
        .header(COOKIE, cookie(&first))
        .header("x-csrf-token", &first.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    assert!(out.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let replay = app
        .http
        .get(app.url(me))
        .header(COOKIE, cookie(&first))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);

    // A new password ends every session; the new password opens a new one.
    let third = sign_in(&app, "eli@example.com").await;
    let member_path = format!("/v1/projects/demo/members/{eli_id}");
    let changed = app
        .admin_patch(&member_path, json!({"password": "another Password 2"}))
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(
        bearer(&app, reqwest::Method::GET, me, &third.token).await,
        StatusCode::UNAUTHORIZED
    );
    let old = sign_in_from(&app, "eli@example.com", PASSWORD, "192.0.2.1").await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let new = sign_in_from(&app, "eli@example.com", "another Password 2", "192.0.2.1").await;
    assert_eq!(new.status(), StatusCode::OK);
    let fourth: Value = new.json().await.unwrap();
    let fourth = fourth["token"].as_str().unwrap();

    // Deactivation ends them too, and the member cannot sign in again.
    let gone = app
        .admin_patch(&member_path, json!({"state": "deactivated"}))
        .await;
    assert_eq!(gone.status(), StatusCode::OK);
    assert_eq!(gone.json::<Value>().await.unwrap()["state"], "deactivated");
    assert_eq!(
        bearer(&app, reqwest::Method::GET, me, fourth).await,
        StatusCode::UNAUTHORIZED
    );
    let again = sign_in_from(&app, "eli@example.com", "another Password 2", "192.0.2.1").await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_ends_when_left_idle_and_at_its_maximum_age_however_used() {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |s| {
        s.auth.member_idle_timeout = std::time::Duration::from_secs(30 * 60);
        s.auth.member_session_max_age = std::time::Duration::from_secs(2 * 3600);
    })
    .await;
    add_member(&app, "dana@example.com", "owner").await;
    let me = "/v1/projects/demo/me";
    let minutes = chrono::Duration::minutes;

    // Each use within the idle timeout moves it on; a longer silence ends the session.
    let idle = sign_in(&app, "dana@example.com").await;
    for _ in 0..2 {
        clock.advance(minutes(29));
        assert_eq!(
            bearer(&app, reqwest::Method::GET, me, &idle.token).await,
            StatusCode::OK
        );
    }
    clock.advance(minutes(31));
    assert_eq!(
        bearer(&app, reqwest::Method::GET, me, &idle.token).await,
        StatusCode::UNAUTHORIZED
    );

    // Used every 20 minutes, a session still ends two hours after sign-in.
    let busy = sign_in(&app, "dana@example.com").await;
    for _ in 0..5 {
        clock.advance(minutes(20));
        assert_eq!(
            bearer(&app, reqwest::Method::GET, me, &busy.token).await,
            StatusCode::OK
        );
    }
    clock.advance(minutes(20));
    assert_eq!(
        bearer(&app, reqwest::Method::GET, me, &busy.token).await,
        StatusCode::UNAUTHORIZED
    );
    // Signing in again is the way back.
    let again = sign_in(&app, "dana@example.com").await;
    assert_eq!(
        bearer(&app, reqwest::Method::GET, me, &again.token).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn failed_sign_ins_make_the_account_and_the_client_wait_longer() {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |s| s.limits.trusted_proxies = 1).await;
    add_member(&app, "dana@example.com", "owner").await;
    let attacker = "198.51.100.66";
    let mut waits = Vec::new();
    let mut failures = 0;
    while waits.len() < 4 {
        let resp = sign_in_from(&app, "dana@example.com", "guess Number 1", attacker).await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait: i64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            waits.push(wait);
            clock.advance(chrono::Duration::seconds(wait));
        } else {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            failures += 1;
        }
    }
    // Free tries first, then each failure doubles the wait.
    assert_eq!(failures, 7);
    assert_eq!(waits, [1, 2, 4, 8]);

    let failed = sign_in_from(&app, "dana@example.com", "guess Number 3", attacker).await;
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    // The attacker's client waits for any account now, and the account waits for any client,
    // but not long: its owner, elsewhere, gets in within half a minute.
    let other = sign_in_from(&app, "eli@example.com", PASSWORD, attacker).await;
    assert_eq!(other.status(), StatusCode::TOO_MANY_REQUESTS);
    let owner = sign_in_from(&app, "dana@example.com", PASSWORD, "203.0.113.5").await;
    assert_eq!(owner.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: i64 = owner.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait <= 30, "{wait}");
    clock.advance(chrono::Duration::seconds(wait));
    let owner = sign_in_from(&app, "dana@example.com", PASSWORD, "203.0.113.5").await;
    assert_eq!(owner.status(), StatusCode::OK);
}

#[tokio::test]
async fn admins_manage_agents_only_and_owners_and_the_admin_key_manage_everyone() {
    let app = spawn_app().await;
    add_member(&app, "olga@example.com", "owner").await;
    add_member(&app, "ada@example.com", "admin").await;
    let agent = add_member(&app, "eli@example.com", "agent").await;
    let agent_path = format!(
        "/v1/projects/demo/members/{}",
        agent["id"].as_str().unwrap()
    );
    let ada = sign_in(&app, "ada@example.com").await;
    let olga = sign_in(&app, "olga@example.com").await;
    let eli = sign_in(&app, "eli@example.com").await;

    let post = |token: &str, body: Value| {
        app.http
            .post(app.url("/v1/projects/demo/members"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let new = |email: &str, role: &str| json!({"email": email, "name": "New", "password": PASSWORD, "role": role});
    // Who may add whom: an admin adds agents but not admins, an agent adds nobody, an owner
    // adds admins.
    for (who, email, role, expected) in [
        (&ada, "a2@example.com", "admin", StatusCode::FORBIDDEN),
        (&ada, "a3@example.com", "agent", StatusCode::CREATED),
        (&eli, "a4@example.com", "agent", StatusCode::FORBIDDEN),
        (&olga, "a5@example.com", "admin", StatusCode::CREATED),
    ] {
        let resp = post(&who.token, new(email, role)).await.unwrap();
        assert_eq!(resp.status(), expected, "{email} as {role}");
    }
    // Validation: one clear error each.
    for (body, expected) in [
        (new("a3@EXAMPLE.com", "agent"), StatusCode::CONFLICT),
        (new("not-an-email", "agent"), StatusCode::BAD_REQUEST),
        (
            json!({"email": "w@example.com", "name": "W", "password": "tooshort"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"email": "w@example.com", "name": "W", "password": "onlylowercaseletters"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"email": "w@example.com", "name": " ", "password": PASSWORD}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"email": "w@example.com", "name": "W", "password": PASSWORD, "avatar_url": "javascript:alert(1)"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"email": "w@example.com", "name": "W", "password": PASSWORD, "role": "god"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let resp = post(&olga.token, body.clone()).await.unwrap();
        assert_eq!(resp.status(), expected, "{body}");
        assert!(resp.json::<Value>().await.unwrap()["error"].is_string());
    }

    let patch = |token: &str, path: &str, body: Value| {
        app.http
            .patch(app.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    assert_eq!(
        patch(&ada.token, &agent_path, json!({"role": "admin"}))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let renamed = patch(
        &ada.token,
        &agent_path,
        json!({"name": "Eli K.", "avatar_url": "https://example.com/eli.png"}),
    )
    .await
    .unwrap();
    assert_eq!(renamed.status(), StatusCode::OK);
    assert_eq!(renamed.json::<Value>().await.unwrap()["name"], "Eli K.");
    let ada_path = format!(
        "/v1/projects/demo/members/{}",
        ada.member["id"].as_str().unwrap()
    );
    assert_eq!(
        patch(&ada.token, &ada_path, json!({"role": "owner"}))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        patch(&olga.token, &agent_path, json!({"role": "admin"}))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // The agent, now an admin, lists the members; the admin key does too.
    let list: Value = app
        .admin_get("/v1/projects/demo/members")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.contains(&"Eli K."));
    let missing = app
        .admin_get(&format!(
            "/v1/projects/demo/members/{}",
            uuid::Uuid::new_v4()
        ))
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_operator_adds_a_projects_first_owner() {
    let app = spawn_app().await;
    let path = format!("/v1/admin/projects/{}/members", app.project);
    let body = json!({"email": "first@example.com", "name": "First", "password": PASSWORD, "role": "owner"});
    let resp = app
        .http
        .post(app.url(&path))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .http
        .post(app.url(&path))
        .bearer_auth(OPERATOR)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let list: Value = app
        .http
        .get(app.url(&path))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["members"][0]["role"], "owner");
    let nowhere = app
        .http
        .get(app.url("/v1/admin/projects/no_such_project/members"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        sign_in(&app, "first@example.com").await.member["role"],
        "owner"
    );
}

/// A path of the table with every parameter filled in: the project, a real ticket, and ids
/// that name nothing (the role is decided before anything is looked up).
pub(crate) fn concrete(path: &str, project: &str, slug: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{projectId}" => project.to_owned(),
            "{slug}" => slug.to_owned(),
            "{sessionId}" => "0".repeat(64),
            "{questionId}" => "0123456789abcdef".to_owned(),
            "{deliveryId}" => "msg_0".to_owned(),
            s if s.starts_with('{') => uuid::Uuid::new_v4().to_string(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn each_role_is_refused_exactly_the_routes_above_it_over_the_whole_table() {
    let app = spawn_app().await;
    add_member(&app, "ada@example.com", "admin").await;
    add_member(&app, "eli@example.com", "agent").await;
    let slug = app.create_ticket("Table test").await;
    let ada = sign_in(&app, "ada@example.com").await;
    let eli = sign_in(&app, "eli@example.com").await;
    let mut routes: Vec<_> = fleety::http::routes::table()
        .iter()
        .filter(|r| matches!(r.access, Access::Agent | Access::Admin | Access::Owner))
        .collect();
    // Signing out ends the session the rest of the walk uses: last.
    routes.sort_by_key(|r| r.id == "signOut");
    assert!(routes.len() > 30);
    for route in routes {
        let path = concrete(route.path, &app.project, &slug);
        for (who, token, role) in [("agent", &eli.token, 0), ("admin", &ada.token, 1)] {
            let least = match route.access {
                Access::Agent => 0,
                Access::Admin => 1,
                _ => 2,
            };
            let status = bearer(&app, route.method.clone(), &path, token).await;
            if role < least {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{who} {} {}",
                    route.method,
                    route.path
                );
            } else {
                assert!(
                    !matches!(status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
                    "{who} {} {}: {status}",
                    route.method,
                    route.path
                );
            }
        }
        // The admin key passes everywhere, as it always has.
        let status = bearer(&app, route.method.clone(), &path, &app.admin_key).await;
        assert!(
            !matches!(status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
            "admin key {} {}: {status}",
            route.method,
            route.path
        );
    }
}

#[tokio::test]
async fn the_timeline_names_the_member_who_changed_a_ticket_and_the_admin_key() {
    let app = spawn_app().await;
    add_member(&app, "dana@example.com", "agent").await;
    let dana = sign_in(&app, "dana@example.com").await;
    let slug = app.create_ticket("Parcel lost").await;
    let path = format!("/v1/tickets/demo/{slug}");
    let resp = app
        .http
        .patch(app.url(&path))
        .bearer_auth(&dana.token)
        .json(&json!({"status": "pending", "tags": ["shipping", "vip"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .admin_patch(&path, json!({"assignee": "Dana", "tags": ["vip"]}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let timeline = format!("/v1/projects/demo/tickets/{slug}/timeline");
    let resp = app
        .http
        .get(app.url(&timeline))
        .bearer_auth(&dana.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let entries = body["entries"].as_array().unwrap();
    let brief: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!([
                e["field"],
                e["actor"]["kind"],
                e["actor"]["name"],
                e["from"],
                e["to"],
                e["added"],
                e["removed"]
            ])
        })
        .collect();
    assert_eq!(
        brief,
        vec![
            json!(["status", "member", "dana", "open", "pending", [], []]),
            json!([
                "tags",
                "member",
                "dana",
                null,
                null,
                ["shipping", "vip"],
                []
            ]),
            json!(["assignee", "admin_key", "admin key", null, "Dana", [], []]),
            json!([
                "tags",
                "admin_key",
                "admin key",
                null,
                null,
                [],
                ["shipping"]
            ]),
        ]
    );
    assert_eq!(entries[0]["actor"]["member"]["id"], dana.member["id"]);
    assert!(entries[2]["actor"]["member"].is_null());
    assert!(entries.iter().all(|e| e["created_at"].as_str().is_some()));

    // Agents only: the visitor cannot read it, and an unknown ticket is a 404.
    let anonymous = app.http.get(app.url(&timeline)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let missing = app
        .admin_get("/v1/projects/demo/tickets/brave-lynx-777/timeline")
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
