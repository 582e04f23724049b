use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn agents_list_tickets_newest_first_filtered_and_paged() {
    // Each ticket is made a second after the one before, by the server's clock.
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    let mut slugs = Vec::new();
    for i in 0..5 {
        slugs.push(app.create_ticket(&format!("ticket {i}")).await);
        clock.advance(chrono::Duration::seconds(1));
    }
    app.admin_patch(
        &format!("/v1/tickets/demo/{}", slugs[1]),
        json!({"status": "closed"}),
    )
    .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/projects/demo/tickets?limit=2&cursor={c}"),
            None => "/v1/projects/demo/tickets?limit=2".to_owned(),
        };
        let page: Value = app.admin_get(&path).await.json().await.unwrap();
        for t in page["tickets"].as_array().unwrap() {
            seen.push(t["slug"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<String> = slugs.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let closed: Value = app
        .admin_get("/v1/projects/demo/tickets?status=closed")
        .await
        .json()
        .await
        .unwrap();
    let closed: Vec<&str> = closed["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(closed, [slugs[1].as_str()]);

    assert_eq!(
        app.admin_get("/v1/projects/demo/tickets?status=nope")
            .await
            .status(),
        400
    );
    assert_eq!(
        app.admin_get("/v1/projects/demo/tickets?cursor=garbage")
            .await
            .status(),
        400
    );
    assert_eq!(app.get("/v1/projects/demo/tickets").await.status(), 401);
}

#[tokio::test]
async fn agents_read_and_update_project_settings() {
    let app = spawn_app().await;
    let settings: Value = app
        .admin_get("/v1/projects/demo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(settings["project_id"], app.project.as_str());
    assert!(settings["allowed_origins"]
        .as_array()
        .unwrap()
        .contains(&json!("http://localhost:3000")));
    assert!(settings.get("admin_key").is_none() && settings.get("admin_key_hash").is_none());

    let resp = app
        .admin_patch(
            "/v1/projects/demo",
            json!({"name": "Acme", "allowed_origins": ["https://acme.example"]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let updated: Value = resp.json().await.unwrap();
    assert_eq!(updated["name"], "Acme");
    assert_eq!(updated["allowed_origins"], json!(["https://acme.example"]));

    // The new origin list takes effect at once.
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .header("origin", "http://localhost:3000")
        .json(&json!({"title": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .header("origin", "https://acme.example")
        .json(&json!({"title": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    assert_eq!(
        app.admin_patch("/v1/projects/demo", json!({"allowed_origins": ["*"]}))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.admin_patch("/v1/projects/demo", json!({"colour": "red"}))
            .await
            .status(),
        400
    );
    let wrong = app
        .http
        .get(app.url("/v1/projects/demo"))
        .bearer_auth("fk_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
}

#[tokio::test]
async fn operators_create_projects_with_the_operator_token() {
    let app = spawn_app().await;
    let body =
        json!({"name": "Acme", "project_id": "acme", "allowed_origins": ["https://acme.example"]});
    assert_eq!(
        app.post_json("/v1/admin/projects", body.clone())
            .await
            .status(),
        401
    );
    let wrong = app
        .http
        .post(app.url("/v1/admin/projects"))
        .bearer_auth("not-the-operator")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);

    let resp = app
        .http
        .post(app.url("/v1/admin/projects"))
        .bearer_auth(OPERATOR)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["project_id"], "acme");
    let key = created["admin_key"].as_str().unwrap();

    // The new project works at once, and its key is its own.
    let resp = app
        .http
        .get(app.url("/v1/projects/acme"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .http
        .get(app.url("/v1/projects/demo"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        app.post_json("/v1/tickets/acme", json!({"title": "t"}))
            .await
            .status(),
        201
    );

    let again = app
        .http
        .post(app.url("/v1/admin/projects"))
        .bearer_auth(OPERATOR)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn the_operator_api_is_off_without_a_token() {
    let app =
        spawn_with_settings(|s| s.auth.operator_token = fleety::config::Secret::default()).await;
    let resp = app
        .http
        .post(app.url("/v1/admin/projects"))
        .bearer_auth("anything-at-all")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn internal_notes_reach_agents_only() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Refund").await;
    app.post_message(&slug, "Where is my refund?").await;
    let mut feed = app.connect_feed().await;
    assert_eq!(next_event(&mut feed).await["type"], "subscribed");
    let mut visitor = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut visitor).await["type"], "subscribed");

    let notes = format!("/v1/projects/demo/tickets/{slug}/notes");
    let resp = app
        .admin_post(
            &notes,
            json!({"author": "Alex", "content": "Finance approved it"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let note: Value = resp.json().await.unwrap();
    assert_eq!(
        (note["author"].as_str(), note["content"].as_str()),
        (Some("Alex"), Some("Finance approved it"))
    );

    // The agents' feed hears of it; the visitor's socket, GET and the public view never do.
    let heard = next_event(&mut feed).await;
    assert_eq!(
        (heard["type"].as_str(), heard["ticket"].as_str()),
        (Some("note_added"), Some(slug.as_str()))
    );
    assert_eq!(heard["payload"]["id"], note["id"]);
    assert!(
        try_next_event(&mut visitor, std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
    let public = app.ticket(&slug).await;
    assert_eq!(public["messages"].as_array().unwrap().len(), 1);
    assert!(!public.to_string().contains("Finance approved"));

    let listed: Value = app.admin_get(&notes).await.json().await.unwrap();
    assert_eq!(listed["notes"], json!([note]));
    // Notes are for agents: no key, no notes.
    assert_eq!(app.get(&notes).await.status(), 401);
    let empty = app
        .admin_post(&notes, json!({"author": "Alex", "content": "  "}))
        .await;
    assert_eq!(empty.status(), 400);
    let ghost = app
        .admin_post(
            "/v1/projects/demo/tickets/brave-lynx-777/notes",
            json!({"author": "A", "content": "x"}),
        )
        .await;
    assert_eq!(ghost.status(), 404);
}

#[tokio::test]
async fn a_ticket_is_assigned_and_unassigned_and_everyone_hears_of_it() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Login").await;
    let mut visitor = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut visitor).await["type"], "subscribed");
    let path = format!("/v1/tickets/demo/{slug}");

    let resp = app.admin_patch(&path, json!({"assignee": "Alex"})).await;
    assert_eq!(resp.status(), 200);
    let ticket: Value = resp.json().await.unwrap();
    assert_eq!(
        (ticket["assignee"].as_str(), ticket["status"].as_str()),
        (Some("Alex"), Some("open"))
    );
    let event = next_event(&mut visitor).await;
    assert_eq!(event["type"], "assigned");
    assert_eq!(
        (
            event["payload"]["assignee"].as_str(),
            event["payload"]["previous"].clone()
        ),
        (Some("Alex"), Value::Null)
    );

    // Status and assignee in one request; then back to nobody.
    let both = app
        .admin_patch(&path, json!({"status": "pending", "assignee": "Sam"}))
        .await;
    let both: Value = both.json().await.unwrap();
    assert_eq!(
        (both["assignee"].as_str(), both["status"].as_str()),
        (Some("Sam"), Some("pending"))
    );
    let cleared = app.admin_patch(&path, json!({"assignee": null})).await;
    assert_eq!(cleared.status(), 200);
    let cleared: Value = cleared.json().await.unwrap();
    assert_eq!(cleared["assignee"], Value::Null);
    let listed: Value = app
        .admin_get("/v1/projects/demo/tickets")
        .await
        .json()
        .await
        .unwrap();
    let row = listed["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == slug.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (row["assignee"].clone(), row["status"].as_str()),
        (Value::Null, Some("pending"))
    );

    for bad in [
        json!({}),
        json!({"assignee": 7}),
        json!({"assignee": ""}),
        json!({"owner": "x"}),
    ] {
        assert_eq!(
            app.admin_patch(&path, bad.clone()).await.status(),
            400,
            "{bad}"
        );
    }
    // Assigning is for agents.
    assert_eq!(
        app.patch_json(&path, json!({"assignee": "Eve"}))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn agents_search_tickets_by_title() {
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    for title in [
        "Refund for order 12",
        "Cannot log in",
        "refund twice?",
        "Billing address",
    ] {
        app.create_ticket(title).await;
        clock.advance(chrono::Duration::seconds(1));
    }
    let found: Value = app
        .admin_get("/v1/projects/demo/tickets?q=REFUND&limit=10")
        .await
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = found["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["refund twice?", "Refund for order 12"]);
    let long = "x".repeat(201);
    let resp = app
        .admin_get(&format!("/v1/projects/demo/tickets?q={long}"))
        .await;
    assert_eq!(resp.status(), 400);
}

/// The listing's entry for `slug` on the demo project's first page.
async fn listed(app: &TestApp, slug: &str) -> Value {
    let page: Value = app
        .admin_get("/v1/projects/demo/tickets")
        .await
        .json()
        .await
        .unwrap();
    page["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == slug)
        .cloned()
        .unwrap_or_else(|| panic!("{slug} is not listed: {page}"))
}

#[tokio::test]
async fn agents_list_each_tickets_last_message_and_unread_count() {
    let app = spawn_app().await;
    let quiet = app.create_ticket("nothing said yet").await;
    let busy = app.create_ticket("a visitor writes").await;

    let empty = listed(&app, &quiet).await;
    assert_eq!(empty["last_message"], Value::Null);
    assert_eq!(empty["unread_count"], 0);
    assert_eq!(empty["title"], "nothing said yet");
    assert!(empty["tags"].as_array().unwrap().is_empty());

    app.post_message(&busy, "first").await;
    let second = app.post_message(&busy, "second\n\n  with   gaps").await;
    let t = listed(&app, &busy).await;
    assert_eq!(t["unread_count"], 2);
    assert_eq!(t["last_message"]["author"], "user");
    assert_eq!(t["last_message"]["preview"], "second with gaps");
    assert_eq!(t["last_message"]["id"], second["data"]["id"]);
    assert_eq!(t["last_message"]["timestamp"], second["data"]["timestamp"]);

    // An agent's reply is the newest message but not the visitor's: the count stays.
    let reply = app
        .admin_post(
            &format!("/v1/tickets/demo/{busy}/messages"),
            json!({"author": "admin", "content": "an agent answers"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    let t = listed(&app, &busy).await;
    assert_eq!(t["unread_count"], 2);
    assert_eq!(t["last_message"]["author"], "admin");
    assert_eq!(t["last_message"]["preview"], "an agent answers");

    // The visitor reading does not change what the agents have not read; the agents do.
    let read = |reader: &'static str| {
        let app = &app;
        let busy = busy.clone();
        async move {
            let path = format!("/v1/tickets/demo/{busy}/messages/read");
            let body = json!({ "reader": reader });
            let resp = if reader == "admin" {
                app.admin_patch(&path, body).await
            } else {
                app.patch_json(&path, body).await
            };
            assert_eq!(resp.status(), 200);
        }
    };
    read("user").await;
    assert_eq!(listed(&app, &busy).await["unread_count"], 2);
    read("admin").await;
    let t = listed(&app, &busy).await;
    assert_eq!(t["unread_count"], 0);
    assert_eq!(t["last_message"]["preview"], "an agent answers");

    // A long message is cut at 140 characters, and counted as unread.
    let long = "é".repeat(300);
    app.post_message(&busy, &long).await;
    let t = listed(&app, &busy).await;
    assert_eq!(t["unread_count"], 1);
    let preview = t["last_message"]["preview"].as_str().unwrap();
    assert_eq!(preview, format!("{}…", "é".repeat(140)));
    // The other ticket is untouched by all this.
    assert_eq!(listed(&app, &quiet).await["last_message"], Value::Null);
}

#[tokio::test]
async fn a_visitors_name_and_email_given_at_opening_are_listed() {
    let app = spawn_app().await;
    let open = |body: Value| app.post_json("/v1/tickets/demo", body);
    let both = open(json!({"title": "Refund", "visitor": {"name": " Ada Lovelace ", "email": "ada@example.org"}})).await;
    assert_eq!(both.status(), 201);
    let both: Value = both.json().await.unwrap();
    assert_eq!(
        both["visitor"],
        json!({"name": "Ada Lovelace", "email": "ada@example.org"})
    );
    let email_only =
        open(json!({"title": "Invoice", "visitor": {"email": "b.c+d@mail.example.com"}})).await;
    let email_only: Value = email_only.json().await.unwrap();
    let nobody = app.create_ticket("Anonymous").await;
    let empty = open(json!({"title": "Empty", "visitor": {"name": null}})).await;
    let empty: Value = empty.json().await.unwrap();

    let slug = |v: &Value| v["slug"].as_str().unwrap().to_owned();
    assert_eq!(
        listed(&app, &slug(&both)).await["visitor"],
        json!({"name": "Ada Lovelace", "email": "ada@example.org"})
    );
    assert_eq!(
        listed(&app, &slug(&email_only)).await["visitor"],
        json!({"name": null, "email": "b.c+d@mail.example.com"})
    );
    assert_eq!(listed(&app, &nobody).await["visitor"], Value::Null);
    assert_eq!(listed(&app, &slug(&empty)).await["visitor"], Value::Null);
    // The ticket itself shows it too, after a change to the ticket.
    let changed = app
        .admin_patch(
            &format!("/v1/tickets/demo/{}", slug(&both)),
            json!({"status": "pending"}),
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(
        app.ticket(&slug(&both)).await["visitor"]["name"],
        "Ada Lovelace"
    );

    for (visitor, error) in [
        (json!({"email": "not an address"}), "visitor.email"),
        (json!({"email": "a@localhost"}), "visitor.email"),
        (json!({"email": "ä@example.org"}), "visitor.email"),
        (json!({"name": "x".repeat(81)}), "visitor.name"),
        (json!({"name": "   "}), "visitor.name"),
        (json!([null, null]), "invalid JSON body"),
        (json!({"name": 7}), "invalid JSON body"),
    ] {
        let resp = open(json!({"title": "Bad", "visitor": visitor})).await;
        assert_eq!(resp.status(), 400, "{visitor}");
        let body: Value = resp.json().await.unwrap();
        assert!(error_of(&body).starts_with(error), "{visitor}: {body}");
    }
}
