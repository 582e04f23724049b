//! Assignment to members: `assignee_id` on a ticket's change, the member on the ticket, its
//! events and its listing, the listing's assignee filter, the members one may pick, and a
//! deactivated member's tickets reading as unassigned.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

async fn add_member(app: &TestApp, email: &str, name: &str) -> String {
    let body = json!({"email": email, "name": name, "password": PASSWORD, "role": "agent"});
    let resp = app.admin_post("/v1/projects/demo/members", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let member: Value = resp.json().await.unwrap();
    member["id"].as_str().unwrap().to_owned()
}

/// A member's bearer token.
async fn sign_in(app: &TestApp, email: &str) -> String {
    let resp = app
        .http
        .post(app.url("/v1/projects/demo/sign-in"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn as_member(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn listed(app: &TestApp, token: Option<&str>, filter: &str) -> (StatusCode, Vec<String>) {
    let path = format!("/v1/projects/demo/tickets?assignee={filter}");
    let (status, body) = match token {
        Some(token) => as_member(app, token, reqwest::Method::GET, &path, None).await,
        None => {
            let resp = app.admin_get(&path).await;
            (resp.status(), resp.json().await.unwrap_or(Value::Null))
        }
    };
    let slugs = body["tickets"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| t["slug"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (status, slugs)
}

#[tokio::test]
async fn a_ticket_assigned_to_a_member_carries_them_in_its_answer_events_view_and_listing() {
    let app = spawn_app().await;
    let dana = add_member(&app, "dana@example.com", "Dana").await;
    let sam = add_member(&app, "sam@example.com", "Sam").await;
    let token = sign_in(&app, "dana@example.com").await;
    let mine = app.create_ticket("Mine").await;
    let other = app.create_ticket("Nobody's").await;
    let typed = app.create_ticket("Typed").await;
    let mut feed = app.connect_feed().await;
    let mut visitor = app.connect(&format!("/v1/tickets/demo/{mine}/ws")).await;
    assert_eq!(next_event(&mut visitor).await["type"], "subscribed");

    // "Assign to me", as the inbox does it.
    let path = format!("/v1/tickets/demo/{mine}");
    let body = json!({"assignee_id": dana});
    let (status, ticket) = as_member(&app, &token, reqwest::Method::PATCH, &path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{ticket}");
    let member = json!({"id": dana, "name": "Dana", "avatar_url": null});
    assert_eq!(
        (&ticket["assignee"], &ticket["assignee_member"]),
        (&json!("Dana"), &member)
    );
    for socket in [&mut visitor, &mut feed] {
        let event = loop {
            let event = next_event(socket).await;
            if event["type"] == "assigned" {
                break event;
            }
        };
        let p = &event["payload"];
        assert_eq!(
            (&p["assignee"], &p["assignee_member"]),
            (&json!("Dana"), &member)
        );
        assert_eq!(
            (&p["previous"], &p["previous_member"]),
            (&Value::Null, &Value::Null)
        );
    }
    let view = app.ticket(&mine).await;
    assert_eq!(view["assignee_member"], member);
    assert_eq!(view["assignee"], "Dana");

    // A free-text assignee still works, and is nobody's member.
    let path = format!("/v1/tickets/demo/{typed}");
    let resp = app.admin_patch(&path, json!({"assignee": "Alex"})).await;
    let typed_ticket: Value = resp.json().await.unwrap();
    assert_eq!(typed_ticket["assignee_member"], Value::Null);

    assert_eq!(
        listed(&app, Some(&token), "me").await,
        (StatusCode::OK, vec![mine.clone()])
    );
    assert_eq!(
        listed(&app, None, &dana).await,
        (StatusCode::OK, vec![mine.clone()])
    );
    assert_eq!(listed(&app, None, &sam).await, (StatusCode::OK, vec![]));
    assert_eq!(
        listed(&app, None, "none").await,
        (StatusCode::OK, vec![other.clone()])
    );
    let all: Value = app
        .admin_get("/v1/projects/demo/tickets")
        .await
        .json()
        .await
        .unwrap();
    let row = all["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == mine.as_str());
    assert_eq!(row.unwrap()["assignee_member"], member);
    // The admin key is nobody: "me" means nothing for it; other bad filters are refused too.
    let unknown = uuid::Uuid::new_v4().to_string();
    for bad in ["me", "someone", unknown.as_str(), ""] {
        assert_eq!(
            listed(&app, None, bad).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }

    // Unknown members, malformed ids, both fields at once: a clear 400, nothing changes.
    let path = format!("/v1/tickets/demo/{other}");
    for bad in [
        json!({"assignee_id": unknown}),
        json!({"assignee_id": "dana"}),
        json!({"assignee_id": 7}),
        json!({"assignee_id": dana, "assignee": "Dana"}),
    ] {
        let resp = app.admin_patch(&path, bad.clone()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(error_of(&body).contains("assignee"), "{bad}: {body}");
    }
    assert_eq!(app.ticket(&other).await["assignee"], Value::Null);

    // Anyone may pick from the members; moving a ticket to Sam, then to nobody.
    let (status, picks) = as_member(
        &app,
        &token,
        reqwest::Method::GET,
        "/v1/projects/demo/assignees",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = picks["assignees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Dana", "Sam"]);
    let path = format!("/v1/tickets/demo/{mine}");
    let moved = app.admin_patch(&path, json!({"assignee_id": sam})).await;
    let moved: Value = moved.json().await.unwrap();
    assert_eq!(moved["assignee_member"]["id"], sam.as_str());
    let event = loop {
        let event = next_event(&mut visitor).await;
        if event["type"] == "assigned" {
            break event;
        }
    };
    assert_eq!(event["payload"]["previous_member"]["id"], dana.as_str());
    let cleared = app.admin_patch(&path, json!({"assignee_id": null})).await;
    let cleared: Value = cleared.json().await.unwrap();
    assert_eq!(
        (&cleared["assignee"], &cleared["assignee_member"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        listed(&app, Some(&token), "me").await,
        (StatusCode::OK, vec![])
    );
}

#[tokio::test]
async fn a_deactivated_members_tickets_read_as_unassigned_until_they_are_reactivated() {
    let app = spawn_app().await;
    let sam = add_member(&app, "sam@example.com", "Sam").await;
    let slug = app.create_ticket("Sam's").await;
    let path = format!("/v1/tickets/demo/{slug}");
    let resp = app.admin_patch(&path, json!({"assignee_id": sam})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(listed(&app, None, "none").await, (StatusCode::OK, vec![]));

    let member = format!("/v1/projects/demo/members/{sam}");
    let resp = app
        .admin_patch(&member, json!({"state": "deactivated"}))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let view = app.ticket(&slug).await;
    assert_eq!(
        (&view["assignee"], &view["assignee_member"]),
        (&Value::Null, &Value::Null)
    );
    let all: Value = app
        .admin_get("/v1/projects/demo/tickets")
        .await
        .json()
        .await
        .unwrap();
    let row = &all["tickets"][0];
    assert_eq!(
        (&row["assignee"], &row["assignee_member"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        listed(&app, None, "none").await,
        (StatusCode::OK, vec![slug.clone()])
    );
    assert_eq!(listed(&app, None, &sam).await, (StatusCode::OK, vec![]));
    // Nobody picks them any more.
    let resp = app.admin_patch(&path, json!({"assignee_id": sam})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(error_of(&body).contains("deactivated"), "{body}");
    let picks: Value = app
        .admin_get("/v1/projects/demo/assignees")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(picks["assignees"], json!([]));

    // Reactivated (and renamed meanwhile): their ticket is theirs again, under the new name.
    let back = json!({"state": "active", "name": "Samantha"});
    assert_eq!(
        app.admin_patch(&member, back).await.status(),
        StatusCode::OK
    );
    let view = app.ticket(&slug).await;
    assert_eq!(view["assignee"], "Samantha");
    assert_eq!(view["assignee_member"]["id"], sam.as_str());
    assert_eq!(
        listed(&app, None, &sam).await,
        (StatusCode::OK, vec![slug.clone()])
    );
    assert_eq!(listed(&app, None, "none").await, (StatusCode::OK, vec![]));
}
