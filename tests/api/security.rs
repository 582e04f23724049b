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
async fn a_burst_of_guesses_sent_at_once_is_braked_like_guesses_sent_one_by_one() {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |s| s.limits.trusted_proxies = 1).await;
    add_member(&app, "dana@example.com", "owner").await;
    // 200 guesses in flight together from 20 addresses, on a clock that does not move: were
    // the brake consulted only before each password check, all of them would be checked.
    let guesses = (0..200).map(|i| {
        let ip = format!("198.51.100.{}", i % 20 + 1);
        let guess = format!("guess Number {i}");
        let app = &app;
        async move {
            sign_in_from(app, "dana@example.com", &guess, &ip)
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let braked = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + braked, 200, "{statuses:?}");
    // The free failures and the one that starts the first wait, no more.
    assert!((1..=4).contains(&checked), "{checked} guesses were checked");

    // The owner, elsewhere, still gets in once the account's wait is over.
    let owner = sign_in_from(&app, "dana@example.com", PASSWORD, "203.0.113.7").await;
    if owner.status() == StatusCode::TOO_MANY_REQUESTS {
        let wait = retry_after(&owner);
        assert!(wait <= 30, "{wait}");
        clock.advance(chrono::Duration::seconds(wait));
    }
    let owner = sign_in_from(&app, "dana@example.com", PASSWORD, "203.0.113.7").await;
    assert_eq!(owner.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_forged_forwarded_for_does_not_make_a_new_client_without_a_trusted_proxy() {
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |_| {}).await;
    // A different account and a different claimed address for each guess: with no proxy
    // trusted, the header is the client's say-so, and all of them are one client.
    let mut statuses = Vec::new();
    for i in 1..=5 {
        let email = format!("user{i}@example.com");
        let claimed = format!("198.51.100.{i}");
        statuses.push(
            sign_in_from(&app, &email, "guess Number 1", &claimed)
                .await
                .status(),
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
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
        let deactivate = send(reqwest::Method::PATCH, &agent_path, csrf);
        let resp = deactivate
            .json(&json!({"state": "deactivated"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{csrf:?}");
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
    let gone = app
        .admin_patch(&eli_path, json!({"state": "deactivated"}))
        .await;
    assert_eq!(gone.status(), StatusCode::OK);
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

/// The real binary with every log line at trace level written to a file; killed when dropped.
struct LoggedServer {
    child: std::process::Child,
    base: String,
    admin_key: String,
    log: std::path::PathBuf,
}

const LOGGED_OPERATOR: &str = "operator-token-that-must-not-be-logged";
const LOGGED_JWT_SECRET: &str = "jwt-secret-that-must-not-be-logged-anywhere";

impl LoggedServer {
    fn start(dir: &std::path::Path) -> LoggedServer {
        use std::io::BufRead;
        let log = dir.join("server.log");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fleety"));
        // The binary refuses unknown FLEETY_* settings; give it none of the test run's own.
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("FLEETY_")) {
            cmd.env_remove(name);
        }
        let mut child = cmd
            .env("FLEETY_DATA_DIR", dir.join("data"))
            .env("FLEETY_LOG", "trace")
            .env("FLEETY_LOG_FORMAT", "json")
            .env("FLEETY_LISTEN", "127.0.0.1:0")
            .env("FLEETY_PUBLIC_RATE_LIMIT", "0")
            .env("FLEETY_OPERATOR_TOKEN", LOGGED_OPERATOR)
            .env("FLEETY_JWT_SECRET", LOGGED_JWT_SECRET)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // The banner on standard output is where the admin key is handed over, not a log.
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut next = || lines.next().expect("a banner line").unwrap();
        let base = next().rsplit(' ').next().unwrap().to_owned();
        assert!(next().trim().ends_with("demo"));
        let admin_key = next().rsplit(' ').next().unwrap().to_owned();
        assert!(admin_key.starts_with("fk_"), "{admin_key}");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        LoggedServer {
            child,
            base,
            admin_key,
            log,
        }
    }
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every answer of the run, by what was asked.
struct Answers {
    http: reqwest::Client,
    base: String,
    seen: Vec<(String, String)>,
}

impl Answers {
    /// Sends `req`, keeps its status, headers and body, and returns the status and body.
    async fn send(&mut self, what: &str, req: reqwest::RequestBuilder) -> (StatusCode, String) {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = format!("{:?}", resp.headers());
        let body = resp.text().await.unwrap();
        self.seen
            .push((what.to_owned(), format!("{status}\n{headers}\n{body}")));
        (status, body)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs_the_metrics_or_an_answer_that_does_not_issue_it() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let server = LoggedServer::start(dir.path());
    let key = server.admin_key.clone();
    let mut api = Answers {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        seen: Vec::new(),
    };
    let owner_password = "owner Password 1";
    let agent_password = "agent Password 2";
    let agent_new_password = "agent Password 3";
    let wrong_password = "wrong Password 4";

    let owner = json!({"email": "olga@example.com", "name": "Olga", "password": owner_password, "role": "owner"});
    let req = api
        .req(Method::POST, "/v1/projects/demo/members")
        .bearer_auth(&key)
        .json(&owner);
    assert_eq!(api.send("add owner", req).await.0, StatusCode::CREATED);
    let wrong = json!({"email": "olga@example.com", "password": wrong_password});
    let req = api
        .req(Method::POST, "/v1/projects/demo/sign-in")
        .json(&wrong);
    assert_eq!(
        api.send("wrong sign-in", req).await.0,
        StatusCode::UNAUTHORIZED
    );
    let right = json!({"email": "olga@example.com", "password": owner_password});
    let req = api
        .req(Method::POST, "/v1/projects/demo/sign-in")
        .json(&right);
    let (status, body) = api.send("sign-in", req).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&body).unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let cookie = format!("fleety_member={token}");

    // The bearer reads; the cookie with its token writes.
    let req = api
        .req(Method::GET, "/v1/projects/demo/me")
        .bearer_auth(&token);
    assert_eq!(api.send("me", req).await.0, StatusCode::OK);
    let agent = json!({"email": "eli@example.com", "name": "Eli", "password": agent_password, "role": "agent"});
    let req = api
        .req(Method::POST, "/v1/projects/demo/members")
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .json(&agent);
    let (status, body) = api.send("add agent", req).await;
    assert_eq!(status, StatusCode::CREATED);
    let agent_id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent_path = format!("/v1/projects/demo/members/{agent_id}");
    let req = api
        .req(Method::PATCH, &agent_path)
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"password": agent_new_password}));
    assert_eq!(api.send("new password", req).await.0, StatusCode::OK);
    let agent_in = json!({"email": "eli@example.com", "password": agent_new_password});
    let req = api
        .req(Method::POST, "/v1/projects/demo/sign-in")
        .json(&agent_in);
    let (status, body) = api.send("agent sign-in", req).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&body).unwrap();
    let agent_token = body["token"].as_str().unwrap().to_owned();
    let agent_csrf = body["csrf_token"].as_str().unwrap().to_owned();
    // The agent turns on a second factor: its secret and recovery codes are issued once.
    let req = api
        .req(Method::POST, "/v1/projects/demo/me/totp")
        .bearer_auth(&agent_token)
        .json(&json!({}));
    let (status, body) = api.send("totp begin", req).await;
    assert_eq!(status, StatusCode::CREATED);
    let totp_secret = serde_json::from_str::<Value>(&body).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = totp_code(&totp_secret, chrono::Utc::now(), 0);
    let req = api
        .req(Method::POST, "/v1/projects/demo/me/totp/confirm")
        .bearer_auth(&agent_token)
        .json(&json!({"code": code}));
    let (status, body) = api.send("totp confirm", req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let recovery_codes: Vec<String> = serde_json::from_str::<Value>(&body).unwrap()
        ["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery_codes.len(), 10);
    // An agent refused somewhere, and a forged cookie request: errors must not echo anything.
    let req = api
        .req(Method::GET, "/v1/projects/demo/members")
        .bearer_auth(&agent_token);
    assert_eq!(
        api.send("agent refused", req).await.0,
        StatusCode::FORBIDDEN
    );
    let req = api
        .req(Method::PATCH, &agent_path)
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &agent_csrf)
        .json(&json!({"state": "deactivated"}));
    assert_eq!(api.send("forged", req).await.0, StatusCode::FORBIDDEN);

    // Bodies that fail to parse or validate: their errors (answered, and logged) must not
    // quote the password they carried.
    let truncated = format!(r#"{{"email":"olga@example.com","password":"{owner_password}""#);
    let req = api
        .req(Method::POST, "/v1/projects/demo/sign-in")
        .header("content-type", "application/json")
        .body(truncated);
    assert_eq!(api.send("truncated", req).await.0, StatusCode::BAD_REQUEST);
    let unknown =
        json!({"email": "olga@example.com", "password": owner_password, "otp": owner_password});
    let req = api
        .req(Method::POST, "/v1/projects/demo/sign-in")
        .json(&unknown);
    let status = api.send("unknown field", req).await.0;
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED,
        "{status}"
    );
    let long =
        json!({"email": "w@example.com", "name": "W", "password": agent_password.repeat(20)});
    let req = api
        .req(Method::POST, "/v1/projects/demo/members")
        .bearer_auth(&key)
        .json(&long);
    assert_eq!(
        api.send("long password", req).await.0,
        StatusCode::BAD_REQUEST
    );
    let weak = json!({"name": "Eli", "password": "weakpasswordonly"});
    let req = api
        .req(Method::PATCH, &agent_path)
        .bearer_auth(&key)
        .json(&weak);
    assert_eq!(
        api.send("weak password", req).await.0,
        StatusCode::BAD_REQUEST
    );

    for (what, path) in [
        ("members", "/v1/projects/demo/members".to_owned()),
        ("member", agent_path.clone()),
        ("sessions", "/v1/projects/demo/me/sessions".to_owned()),
        ("project", "/v1/projects/demo".to_owned()),
    ] {
        let req = api.req(Method::GET, &path).header(COOKIE, &cookie);
        assert_eq!(api.send(what, req).await.0, StatusCode::OK, "{what}");
    }
    // A personal API token: made, used to read and to write, listed, refused, revoked.
    let req = api
        .req(Method::POST, "/v1/projects/demo/me/tokens")
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "crm", "scope": "write"}));
    let (status, body) = api.send("make token", req).await;
    assert_eq!(status, StatusCode::CREATED);
    let made: Value = serde_json::from_str(&body).unwrap();
    let api_token = made["secret"].as_str().unwrap().to_owned();
    let req = api
        .req(Method::GET, "/v1/projects/demo/me")
        .bearer_auth(&api_token);
    assert_eq!(api.send("token reads", req).await.0, StatusCode::OK);
    let req = api
        .req(Method::PATCH, "/v1/projects/demo")
        .bearer_auth(&api_token)
        .json(&json!({"name": "Demo by token"}));
    assert_eq!(api.send("token writes", req).await.0, StatusCode::OK);
    let req = api
        .req(Method::GET, "/v1/projects/demo/me/tokens")
        .header(COOKIE, &cookie);
    assert_eq!(api.send("list tokens", req).await.0, StatusCode::OK);
    let req = api
        .req(Method::POST, "/v1/projects/demo/me/tokens")
        .bearer_auth(&api_token)
        .json(&json!({"name": "child", "scope": "write"}));
    assert_eq!(
        api.send("token refused", req).await.0,
        StatusCode::FORBIDDEN
    );
    let req = api
        .req(
            Method::DELETE,
            &format!(
                "/v1/projects/demo/me/tokens/{}",
                made["id"].as_str().unwrap()
            ),
        )
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf);
    assert_eq!(api.send("revoke token", req).await.0, StatusCode::OK);
    let req = api
        .req(Method::GET, "/v1/projects/demo/me")
        .bearer_auth(&api_token);
    assert_eq!(
        api.send("revoked token", req).await.0,
        StatusCode::UNAUTHORIZED
    );
    let req = api
        .req(Method::GET, "/v1/admin/projects/demo/members")
        .bearer_auth(LOGGED_OPERATOR);
    assert_eq!(api.send("operator members", req).await.0, StatusCode::OK);
    let req = api
        .req(Method::POST, "/v1/projects/demo/sign-out")
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf);
    assert_eq!(api.send("sign-out", req).await.0, StatusCode::OK);
    let req = api.req(Method::GET, "/metrics");
    let (status, metrics) = api.send("metrics", req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("sign-in") || metrics.contains("signIn"),
        "{metrics}"
    );
    let log_path = server.log.clone();
    // Stopped first, so every line it wrote is in the file.
    drop(server);
    let log = std::fs::read_to_string(log_path).unwrap();

    // The log did capture the run: requests, at levels below info too.
    assert!(log.contains("/sign-in"), "{log}");
    assert!(
        log.contains("\"DEBUG\"") || log.contains("\"TRACE\""),
        "{log}"
    );

    let always_secret = [
        ("the owner's password", owner_password),
        ("the agent's password", agent_password),
        ("the agent's new password", agent_new_password),
        ("a wrong password", wrong_password),
        ("a weak password", "weakpasswordonly"),
        ("the operator token", LOGGED_OPERATOR),
        ("the JWT secret", LOGGED_JWT_SECRET),
        ("a password hash", "$argon2"),
    ];
    let issued = [
        ("the admin key", key.as_str(), &[][..]),
        ("the owner's session", &token, &["sign-in"][..]),
        ("the owner's CSRF token", &csrf, &["sign-in", "me"][..]),
        ("the agent's session", &agent_token, &["agent sign-in"][..]),
        ("the personal API token", &api_token, &["make token"][..]),
        (
            "the agent's CSRF token",
            &agent_csrf,
            &["agent sign-in"][..],
        ),
    ];
    for (name, secret) in always_secret {
        assert!(!log.contains(secret), "{name} is in the log");
        for (what, answer) in &api.seen {
            assert!(
                !answer.contains(secret),
                "{name} is in the answer to {what}"
            );
        }
    }
    let totp = [("the TOTP secret", totp_secret.as_str(), &["totp begin"][..])];
    let recovery = recovery_codes
        .iter()
        .map(|c| ("a recovery code", c.as_str(), &["totp confirm"][..]));
    for (name, secret, issuers) in issued.into_iter().chain(totp).chain(recovery) {
        assert!(!log.contains(secret), "{name} is in the log");
        for (what, answer) in &api.seen {
            if !issuers.contains(&what.as_str()) {
                assert!(
                    !answer.contains(secret),
                    "{name} is in the answer to {what}"
                );
            }
        }
    }
    // The issuing answers really do carry them, so the checks above are looking for the
    // right strings.
    let answer = |what: &str| &api.seen.iter().find(|(w, _)| w == what).unwrap().1;
    assert!(answer("sign-in").contains(&token) && answer("sign-in").contains(&csrf));
}
