//! The outbox in the inbox (issue 28): `GET /v1/projects/{projectId}/emails` lists what the
//! server emails and what became of it, newest first, page by page, by ticket, for owners and
//! admins, never with a body; and says when the server sends no email at all.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

async fn emails(app: &TestApp, bearer: Option<&str>, query: &str) -> (StatusCode, Value) {
    let url = app.url(&format!("/v1/projects/demo/emails{query}"));
    let req = match bearer {
        Some(token) => app.http.get(url).bearer_auth(token),
        None => app.http.get(url).bearer_auth(&app.admin_key),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn ticket_for(app: &TestApp, to: &str) -> String {
    let resp = app
        .post_json(
            "/v1/tickets/demo",
            json!({"title": "Parcel <late>", "visitor": {"name": "Ada", "email": to}}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["slug"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn agent_says(app: &TestApp, slug: &str, content: &str) {
    let resp = app
        .admin_post(
            &format!("/v1/tickets/demo/{slug}/messages"),
            json!({"author": "admin", "content": content}),
        )
        .await;
    assert_eq!(resp.status(), 201);
}

/// A member of `role`'s bearer session token.
async fn member(app: &TestApp, role: &str) -> String {
    let email = format!("{role}-{}@example.com", uuid::Uuid::new_v4().simple());
    let body = json!({"email": email, "name": role, "password": PASSWORD, "role": role});
    let resp = app.admin_post("/v1/projects/demo/members", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = app
        .http
        .post(app.url("/v1/projects/demo/sign-in"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_lists_newest_first_by_page_and_ticket_for_owners_and_admins_only() {
    let Some((url, dir)) = crate::email::smtp() else {
        return;
    };
    let app = spawn_with_settings(move |s| {
        s.email.smtp_url = Some(url.parse().unwrap());
        s.email.from = Some("Fleety Support <support@fleety.test>".parse().unwrap());
        s.email.public_url = Some("https://help.fleety.test/".parse().unwrap());
        s.email.retry_schedule = "50ms".parse().unwrap();
        s.email.visitor_after = std::time::Duration::ZERO;
    })
    .await;
    // An invitation, then a visitor's email on each of two tickets.
    let invited = crate::email::address("invited");
    let resp = app
        .admin_post("/v1/projects/demo/invitations", json!({"email": invited}))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (ada, bob) = (crate::email::address("ada"), crate::email::address("bob"));
    let first = ticket_for(&app, &ada).await;
    agent_says(&app, &first, "Your parcel left today").await;
    crate::email::the_email(&dir, &ada).await;
    let second = ticket_for(&app, &bob).await;
    agent_says(&app, &second, "Your parcel is lost").await;
    crate::email::the_email(&dir, &bob).await;
    crate::email::the_email(&dir, &invited).await;

    let mut all = Value::Null;
    eventually("three emails, all marked sent", async || {
        let (status, body) = emails(&app, None, "").await;
        assert_eq!(status, StatusCode::OK);
        all = body;
        let list = all["emails"].as_array().unwrap();
        list.len() == 3 && list.iter().all(|e| e["status"] == "sent")
    })
    .await;
    assert_eq!(all["email_enabled"], true);
    assert_eq!(all["next"], Value::Null);
    let list = all["emails"].as_array().unwrap();
    let to: Vec<&str> = list.iter().map(|e| e["to"].as_str().unwrap()).collect();
    assert_eq!(
        to,
        [bob.as_str(), ada.as_str(), invited.as_str()],
        "newest first"
    );
    let kinds: Vec<&str> = list.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["visitor_reply", "visitor_reply", "invitation"]);
    assert_eq!(list[0]["ticket"], second.as_str());
    assert_eq!(list[2]["ticket"], Value::Null);
    for e in list {
        assert_eq!(e["attempts"], 1, "{e}");
        assert!(
            e["sent_at"].is_string() && e["next_attempt_at"].is_null(),
            "{e}"
        );
        assert!(e["last_error"].is_null(), "{e}");
        // Never the body, nor the signed links it carried.
        assert!(e.get("text").is_none() && e.get("html").is_none(), "{e}");
        assert!(!e.to_string().contains("token="), "{e}");
    }

    // Pages of one, without a repeat or a gap.
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_owned();
    loop {
        let (status, page) = emails(&app, None, &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page["emails"].as_array().unwrap().len() <= 1);
        seen.extend(
            page["emails"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=1&cursor={next}"),
            None => break,
        }
    }
    let ids: Vec<Value> = list.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(seen, ids);

    // By ticket.
    let (_, mine) = emails(&app, None, &format!("?ticket={first}")).await;
    let mine = mine["emails"].as_array().unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["to"], ada.as_str());
    let (_, none) = emails(&app, None, "?ticket=quiet-otter-404").await;
    assert_eq!(none["emails"], json!([]));

    // Owners and admins only.
    let agent = member(&app, "agent").await;
    let (status, _) = emails(&app, Some(&agent), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let admin = member(&app, "admin").await;
    let (status, body) = emails(&app, Some(&admin), "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["emails"].as_array().unwrap().len() >= 3);
    let resp = app
        .http
        .get(app.url("/v1/projects/demo/emails"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Bad input: a clear 400.
    for query in [
        "?limit=0",
        "?limit=101",
        "?cursor=nonsense",
        "?cursor=12_eml_!!",
        "?ticket=Not%20A%20Slug",
        "?colour=blue",
    ] {
        let (status, body) = emails(&app, None, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["error"].is_string(), "{query}: {body}");
    }
}

#[tokio::test]
async fn without_smtp_nothing_is_queued_and_the_outbox_says_so() {
    let app = spawn_app().await;
    let slug = ticket_for(&app, "ada@example.com").await;
    agent_says(&app, &slug, "We are on it").await;
    let (status, body) = emails(&app, None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["email_enabled"], false);
    assert_eq!(body["emails"], json!([]));
    assert_eq!(body["next"], Value::Null);

    // An email left from a time the server sent email stays pending, never tried.
    let project = fleety_actors::domain::ProjectId::parse(&app.project).unwrap();
    let mut left = fleety_actors::email::Email::new(
        &project,
        fleety_actors::email::EmailKind::VisitorReply,
        "ada@example.com",
        "New reply".into(),
        "We are on it".into(),
        "<p>We are on it</p>".into(),
        chrono::Utc::now(),
    );
    left.ticket = Some(fleety_actors::domain::Slug::parse(&slug).unwrap());
    assert!(app.ctx.store.create_email(&left).await.unwrap());
    let (_, body) = emails(&app, None, &format!("?ticket={slug}")).await;
    assert_eq!(body["email_enabled"], false);
    let listed = &body["emails"][0];
    assert_eq!(listed["id"], left.id.as_str(), "{body}");
    assert_eq!(listed["status"], "pending");
    assert_eq!(listed["attempts"], 0);
    assert!(listed["next_attempt_at"].is_string() && listed["sent_at"].is_null());
}
