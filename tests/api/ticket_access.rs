//! The `ticket_access` project setting (issue 28): in `session` mode a ticket answers only the
//! session that opened it, its verified contact's sessions, its ticket key and the agents;
//! anyone else gets exactly what an unknown slug gets. `slug` mode is the seed's rule.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;

/// A slug that names no ticket of the project, in the shape a guesser would try.
const GUESSED: &str = "brave-lynx-404";

async fn set_access(app: &TestApp, mode: &str) {
    let resp = app
        .admin_patch("/v1/projects/demo", json!({"ticket_access": mode}))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["ticket_access"], mode);
}

/// What a visitor holds: a session token, a ticket key, or nothing.
#[derive(Clone, Copy)]
enum Holds<'a> {
    Nothing,
    Session(&'a str),
    Key(&'a str),
}

fn with(req: reqwest::RequestBuilder, holds: Holds) -> reqwest::RequestBuilder {
    match holds {
        Holds::Nothing => req,
        Holds::Session(token) => req.bearer_auth(token),
        Holds::Key(key) => req.header("X-Ticket-Key", key),
    }
}

/// Status and body of a GET, a POST of a message, and a mark-read on `slug`.
async fn knock(app: &TestApp, slug: &str, holds: Holds<'_>) -> Vec<(u16, String)> {
    let base = format!("/v1/tickets/demo/{slug}");
    let get = with(app.http.get(app.url(&base)), holds);
    let post = with(app.http.post(app.url(&format!("{base}/messages"))), holds)
        .json(&json!({"author": "user", "content": "let me in"}));
    let read = with(
        app.http.patch(app.url(&format!("{base}/messages/read"))),
        holds,
    );
    let mut out = Vec::new();
    for req in [get, post, read] {
        let resp = req.send().await.unwrap();
        out.push((resp.status().as_u16(), resp.text().await.unwrap()));
    }
    out
}

/// The socket's answer: 101 when it opens (then its first frame is `subscribed`), or the refused
/// upgrade's status and body.
async fn knock_socket(app: &TestApp, slug: &str, holds: Holds<'_>) -> (u16, String) {
    let url = format!(
        "{}{}",
        app.ws_base,
        app.at(&format!("/v1/tickets/demo/{slug}/ws"))
    );
    let mut request = url.into_client_request().unwrap();
    let offered = match holds {
        Holds::Nothing => None,
        Holds::Session(token) => Some(format!("fleety, fleety.bearer.{token}")),
        Holds::Key(key) => Some(format!("fleety, fleety.key.{key}")),
    };
    if let Some(offered) = offered {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", offered.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, _)) => {
            let first = next_event(&mut socket).await;
            assert_eq!(first["type"], "subscribed");
            (101, String::new())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            (resp.status().as_u16(), String::from_utf8(body).unwrap())
        }
        Err(e) => panic!("websocket failed: {e}"),
    }
}

/// Opens a ticket as `holds` says; its slug and the answer's ticket key, if any.
async fn open(app: &TestApp, holds: Holds<'_>) -> (String, Option<String>) {
    let req = with(app.http.post(app.url("/v1/tickets/demo")), holds)
        .json(&json!({"title": "My invoice", "description": "is wrong"}));
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let key = body["ticket_key"].as_str().map(str::to_owned);
    (body["slug"].as_str().unwrap().to_owned(), key)
}

/// The ticket's messages, as the agents see them.
async fn messages(app: &TestApp, slug: &str) -> Vec<Value> {
    let resp = app.admin_get(&format!("/v1/tickets/demo/{slug}")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["messages"].as_array().unwrap().clone()
}

fn user_hash(secret: &str, user_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(user_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new session of the verified contact `user_id`.
async fn contact_session(app: &TestApp, secret: &str, user_id: &str) -> String {
    let resp = app
        .post_json(
            "/v1/init-session",
            json!({"project_id": "demo",
                   "identity": {"user_id": user_id, "user_hash": user_hash(secret, user_id)}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_setting_is_slug_by_default_and_refuses_anything_but_slug_or_session() {
    let app = spawn_app().await;
    let project: Value = app
        .admin_get("/v1/projects/demo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(project["ticket_access"], "slug");
    for bad in [json!("public"), json!(""), json!(1), json!("SESSION")] {
        let resp = app
            .admin_patch("/v1/projects/demo", json!({"ticket_access": bad}))
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(!error_of(&body).is_empty());
    }
    let project: Value = app
        .admin_get("/v1/projects/demo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        project["ticket_access"], "slug",
        "a refused change changes nothing"
    );
    set_access(&app, "session").await;
    let project: Value = app
        .admin_get("/v1/projects/demo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(project["ticket_access"], "session");
    // A visitor cannot change it.
    let resp = app
        .patch_json("/v1/projects/demo", json!({"ticket_access": "slug"}))
        .await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn in_session_mode_a_guessed_slug_or_a_stranger_gets_what_an_unknown_slug_gets() {
    let app = spawn_app().await;
    set_access(&app, "session").await;
    let owner = app.session_token().await;
    let (slug, key) = open(&app, Holds::Session(&owner)).await;
    assert!(key.is_some(), "an anonymous session is given a key too");
    let before = messages(&app, &slug).await;

    // What a slug that names nothing answers, with nothing and with a session.
    let unknown = knock(&app, GUESSED, Holds::Nothing).await;
    assert!(
        unknown.iter().all(|(status, _)| *status == 404),
        "{unknown:?}"
    );
    let stranger = app.session_token().await;
    let forged = "ftk_0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for holds in [
        Holds::Nothing,
        Holds::Session(&stranger),
        Holds::Key(forged),
    ] {
        assert_eq!(knock(&app, &slug, holds).await, unknown);
        assert_eq!(
            knock_socket(&app, &slug, holds).await,
            knock_socket(&app, GUESSED, Holds::Nothing).await
        );
    }
    // Another ticket's key opens only that one.
    let (_, other_key) = open(&app, Holds::Nothing).await;
    assert_eq!(
        knock(&app, &slug, Holds::Key(other_key.as_deref().unwrap())).await,
        unknown
    );
    // Rating is refused the same way.
    let rate = app
        .post_json(
            &format!("/v1/tickets/demo/{slug}/satisfaction"),
            json!({"score": 5}),
        )
        .await;
    let rate_unknown = app
        .post_json(
            &format!("/v1/tickets/demo/{GUESSED}/satisfaction"),
            json!({"score": 5}),
        )
        .await;
    assert_eq!(rate.status(), rate_unknown.status());
    assert_eq!(
        rate.text().await.unwrap(),
        rate_unknown.text().await.unwrap()
    );

    // Nothing was posted, nothing was created.
    assert_eq!(messages(&app, &slug).await, before);
    assert_eq!(
        app.admin_get(&format!("/v1/tickets/demo/{GUESSED}"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn in_session_mode_the_opener_its_contact_its_key_and_the_agents_get_in() {
    let app = spawn_app().await;
    set_access(&app, "session").await;
    // The session that opened it.
    let owner = app.session_token().await;
    let (slug, _) = open(&app, Holds::Session(&owner)).await;
    let ok = knock(&app, &slug, Holds::Session(&owner)).await;
    assert_eq!(
        ok.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [200, 201, 200],
        "{ok:?}"
    );
    assert_eq!(
        knock_socket(&app, &slug, Holds::Session(&owner)).await.0,
        101
    );

    // Opened without a session: the key, shown once, stands in for it.
    let (keyed, key) = open(&app, Holds::Nothing).await;
    let key = key.expect("a ticket key");
    assert!(key.starts_with("ftk_"), "{key}");
    let ok = knock(&app, &keyed, Holds::Key(&key)).await;
    assert_eq!(
        ok.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [200, 201, 200]
    );
    assert_eq!(knock_socket(&app, &keyed, Holds::Key(&key)).await.0, 101);
    let view: Value = app
        .admin_get(&format!("/v1/tickets/demo/{keyed}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        view.get("ticket_key").is_none(),
        "the key is never shown again"
    );

    // A verified contact: a second session of the same contact gets in, another contact not.
    let secret: Value = app
        .admin_post("/v1/projects/demo/identity-secrets", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = secret["secret"].as_str().unwrap();
    let first = contact_session(&app, secret, "u-7").await;
    let (theirs, key) = open(&app, Holds::Session(&first)).await;
    assert_eq!(key, None, "a verified contact needs no key");
    let second = contact_session(&app, secret, "u-7").await;
    assert_ne!(first, second);
    let ok = knock(&app, &theirs, Holds::Session(&second)).await;
    assert_eq!(
        ok.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [200, 201, 200]
    );
    assert_eq!(
        knock_socket(&app, &theirs, Holds::Session(&second)).await.0,
        101
    );
    let someone_else = contact_session(&app, secret, "u-8").await;
    let refused = knock(&app, &theirs, Holds::Session(&someone_else)).await;
    assert_eq!(refused, knock(&app, GUESSED, Holds::Nothing).await);

    // The agents: the admin key reads, replies and subscribes.
    assert_eq!(
        app.admin_get(&format!("/v1/tickets/demo/{theirs}"))
            .await
            .status(),
        200
    );
    let reply = app
        .admin_post(
            &format!("/v1/tickets/demo/{theirs}/messages"),
            json!({"author": "admin", "content": "On it"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    let (status, _) = knock_socket(&app, &theirs, Holds::Session(&app.admin_key)).await;
    assert_eq!(status, 101);
    let authors: Vec<Value> = messages(&app, &theirs)
        .await
        .iter()
        .map(|m| m["author"].clone())
        .collect();
    assert_eq!(authors, [json!("user"), json!("admin")]);
}

#[tokio::test]
async fn in_slug_mode_anyone_with_the_slug_gets_in_as_before() {
    let app = spawn_app().await;
    let (slug, key) = open(&app, Holds::Nothing).await;
    assert_eq!(key, None, "slug mode hands out no key");
    let stranger = app.session_token().await;
    for holds in [Holds::Nothing, Holds::Session(&stranger)] {
        let ok = knock(&app, &slug, holds).await;
        assert_eq!(
            ok.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [200, 201, 200]
        );
        assert_eq!(knock_socket(&app, &slug, holds).await.0, 101);
    }
    // Switching back from session mode opens the tickets to their slugs again.
    set_access(&app, "session").await;
    assert_eq!(knock(&app, &slug, Holds::Nothing).await[0].0, 404);
    set_access(&app, "slug").await;
    assert_eq!(knock(&app, &slug, Holds::Nothing).await[0].0, 200);
}

#[tokio::test]
async fn in_session_mode_the_assistants_hand_off_gives_an_anonymous_visitor_the_tickets_key() {
    let app = spawn_app().await;
    set_access(&app, "session").await;
    let owner = app.session_token().await;
    let resp = app
        .chat(
            "/v1/chat/tools",
            &owner,
            json!({"messages": [{"role": "user", "content": "I want to talk to a human"}],
                   "enable_tool_calling": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["type"], "tool_call", "{answer}");
    let slug = answer["ticket_slug"].as_str().unwrap();
    let key = answer["ticket_key"].as_str().expect("a ticket key");

    let unknown = knock(&app, GUESSED, Holds::Nothing).await;
    assert_eq!(knock(&app, slug, Holds::Nothing).await, unknown);
    for holds in [Holds::Session(&owner), Holds::Key(key)] {
        let ok = knock(&app, slug, holds).await;
        assert_eq!(
            ok.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [200, 201, 200]
        );
    }

    // In slug mode the hand-off keeps the seed's answer, without a key.
    set_access(&app, "slug").await;
    let resp = app
        .chat(
            "/v1/chat/tools",
            &app.session_token().await,
            json!({"messages": [{"role": "user", "content": "I want to talk to a human"}],
                   "enable_tool_calling": true}),
        )
        .await;
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["type"], "tool_call", "{answer}");
    assert!(answer.get("ticket_key").is_none(), "{answer}");
}
