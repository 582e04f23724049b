//! The project export: every ticket with what was written to it, the knowledge base and the
//! settings as JSON Lines, as of the export's start, resumable, and without a secret.

use fleety_actors::clock::Clock;
use serde_json::{json, Value};

use crate::helpers::*;

/// The export's lines, read whole.
async fn export(app: &TestApp, cursor: Option<&str>) -> Vec<Value> {
    let path = match cursor {
        Some(c) => format!("/v1/projects/demo/export?cursor={c}"),
        None => "/v1/projects/demo/export".to_owned(),
    };
    let resp = app.admin_get(&path).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/jsonl");
    let text = resp.text().await.unwrap();
    assert!(text.ends_with('\n'), "every line ends with a newline");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

#[tokio::test]
async fn an_export_holds_every_ticket_with_its_thread_and_the_settings_but_no_secret() {
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    let first = app.create_ticket("Printer jammed").await;
    app.post_message(&first, "It jams on page two").await;
    clock.advance(chrono::Duration::seconds(1));
    let second = app.create_ticket("Refund please").await;
    let reply = app
        .admin_post(
            &format!("/v1/tickets/demo/{second}/messages"),
            json!({"author": "admin", "content": "Refund issued"}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    let note = app
        .admin_post(
            &format!("/v1/projects/demo/tickets/{second}/notes"),
            json!({"author": "Dana", "content": "Checked the order"}),
        )
        .await;
    assert_eq!(note.status(), 201);
    let status = app
        .admin_patch(
            &format!("/v1/tickets/demo/{second}"),
            json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(status.status(), 200);

    // A known visitor, and the project's identity secret, which no export may hold.
    let created = app
        .admin_post("/v1/projects/demo/identity-secrets", json!({}))
        .await;
    assert_eq!(created.status(), 201);
    let identity_secret = created.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = clock.now();
    let project = fleety_actors::domain::ProjectId::parse(&app.project).unwrap();
    let contact = fleety_actors::contact::Contact {
        id: uuid::Uuid::new_v4(),
        project_id: project,
        external_id: "u_42".into(),
        email: Some("ada@example.com".into()),
        name: Some("Ada".into()),
        attributes: Default::default(),
        verified: true,
        first_seen_at: at,
        last_seen_at: at,
    };
    app.ctx.store.put_contact(&contact).await.unwrap();

    let lines = export(&app, None).await;
    assert_eq!(lines[0]["type"], "export");
    assert_eq!(lines[0]["project_id"], app.project.as_str());
    assert_eq!(lines[0]["resumed"], false);
    assert_eq!(lines[1]["type"], "project");
    assert_eq!(lines[1]["project"]["project_id"], app.project.as_str());
    assert_eq!(lines.last().unwrap()["type"], "end");
    assert_eq!(lines.last().unwrap()["tickets"], 2);

    // Newest first, each ticket followed by its thread and then its resume line.
    let tickets: Vec<&str> = of_type(&lines, "ticket")
        .iter()
        .map(|t| t["ticket"]["slug"].as_str().unwrap())
        .collect();
    assert_eq!(tickets, [second.as_str(), first.as_str()]);
    let kinds: Vec<&str> = lines
        .iter()
        .skip_while(|l| l["type"] != "ticket")
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ticket",
            "message",
            "note",
            "timeline_entry",
            "resume",
            "ticket",
            "message",
            "resume",
            "end"
        ]
    );
    let messages: Vec<(&str, &str)> = of_type(&lines, "message")
        .iter()
        .map(|m| {
            (
                m["ticket"].as_str().unwrap(),
                m["message"]["content"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            (second.as_str(), "Refund issued"),
            (first.as_str(), "It jams on page two"),
        ]
    );
    let note = of_type(&lines, "note")[0];
    assert_eq!(note["note"]["content"], "Checked the order");
    let entry = of_type(&lines, "timeline_entry")[0];
    assert_eq!(entry["entry"]["to"], "resolved");
    assert!(!of_type(&lines, "article").is_empty(), "the knowledge base");

    let whole = serde_json::to_string(&lines).unwrap();
    assert!(!whole.contains(&app.admin_key), "the admin key is a secret");
    assert!(!whole.contains("argon2"), "no password hash");
    assert!(
        !whole.contains(&identity_secret),
        "the identity secret is a secret"
    );
    let contacts = of_type(&lines, "contact");
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["contact"]["external_id"], "u_42");
}

#[tokio::test]
async fn a_resumed_export_continues_after_its_cursor_as_of_its_start() {
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    let old = app.create_ticket("Old question").await;
    app.post_message(&old, "Asked first").await;
    clock.advance(chrono::Duration::seconds(1));
    let newer = app.create_ticket("Newer question").await;
    clock.advance(chrono::Duration::seconds(1));

    let lines = export(&app, None).await;
    let resume: Vec<&str> = of_type(&lines, "resume")
        .iter()
        .map(|r| r["cursor"].as_str().unwrap())
        .collect();
    assert_eq!(resume.len(), 2);

    // Written after the export started: neither the new ticket nor the new message belongs
    // to it, also when it is resumed.
    clock.advance(chrono::Duration::seconds(1));
    app.create_ticket("Asked later").await;
    app.post_message(&old, "Written later").await;

    let rest = export(&app, Some(resume[0])).await;
    assert_eq!(rest[0]["type"], "export");
    assert_eq!(rest[0]["resumed"], true);
    assert_eq!(rest[0]["as_of"], lines[0]["as_of"], "the same export");
    assert!(
        of_type(&rest, "project").is_empty(),
        "the settings came first"
    );
    let tickets: Vec<&str> = of_type(&rest, "ticket")
        .iter()
        .map(|t| t["ticket"]["slug"].as_str().unwrap())
        .collect();
    assert_eq!(tickets, [old.as_str()], "after {newer}, and nothing newer");
    let contents: Vec<&str> = of_type(&rest, "message")
        .iter()
        .map(|m| m["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["Asked first"]);
    assert_eq!(rest.last().unwrap()["type"], "end");
    assert_eq!(rest.last().unwrap()["tickets"], 1);

    let fresh = export(&app, None).await;
    assert_eq!(
        of_type(&fresh, "ticket").len(),
        3,
        "a new export sees it all"
    );
}

#[tokio::test]
async fn a_bad_cursor_is_refused_with_a_clear_error() {
    let app = spawn_app().await;
    for cursor in ["", "nonsense", "1.2", "99999999999999999.1.brave-lynx-777"] {
        let resp = app
            .admin_get(&format!("/v1/projects/demo/export?cursor={cursor}"))
            .await;
        assert_eq!(resp.status(), 400, "{cursor}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("cursor"), "{body}");
    }
    let unknown = app.admin_get("/v1/projects/demo/export?format=csv").await;
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn a_large_project_is_exported_page_by_page_with_nothing_twice_or_missing() {
    let app = spawn_app().await;
    // More tickets than the export reads at a time, and one ticket with more messages.
    let mut slugs = std::collections::HashSet::new();
    for i in 0..60 {
        slugs.insert(app.create_ticket(&format!("Question {i}")).await);
    }
    let long = app.create_ticket("A long conversation").await;
    slugs.insert(long.clone());
    for i in 0..510 {
        let resp = app
            .admin_post(
                &format!("/v1/tickets/demo/{long}/messages"),
                json!({"author": "admin", "content": format!("Reply {i}")}),
            )
            .await;
        assert_eq!(resp.status(), 201);
    }

    let lines = export(&app, None).await;
    let exported: Vec<String> = of_type(&lines, "ticket")
        .iter()
        .map(|t| t["ticket"]["slug"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(exported.len(), slugs.len(), "each ticket once");
    assert_eq!(
        exported
            .iter()
            .cloned()
            .collect::<std::collections::HashSet<_>>(),
        slugs
    );
    let replies: Vec<&str> = of_type(&lines, "message")
        .iter()
        .filter(|m| m["ticket"] == long.as_str())
        .map(|m| m["message"]["content"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..510).map(|i| format!("Reply {i}")).collect();
    assert_eq!(replies, expected, "every message once, in order");
    assert_eq!(lines.last().unwrap()["tickets"], 61);
}

/// A ticket opened from the widget's form by the session `token` names; its slug.
async fn ticket_as(app: &TestApp, token: &str, title: &str) -> String {
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .bearer_auth(token)
        .json(&json!({"title": title}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["slug"].as_str().unwrap().to_owned()
}

/// An access request (issue 29): one person's data, and no one else's.
#[tokio::test]
async fn a_contact_export_holds_the_contact_and_their_tickets_and_nobody_elses() {
    use crate::identity::{identified, new_secret, user_hash};
    let app = spawn_app().await;
    let (_, secret) = new_secret(&app).await;
    let proof = |user: &str| {
        json!({
            "user_id": user,
            "user_hash": user_hash(&secret, user),
            "name": format!("Name {user}"),
            "email": format!("{user}@example.com"),
        })
    };
    let (ada, contact) = identified(&app, proof("ada")).await;
    let (bob, _) = identified(&app, proof("bob")).await;
    let first = ticket_as(&app, &ada, "Invoice question").await;
    let second = ticket_as(&app, &ada, "Login trouble").await;
    let other = ticket_as(&app, &bob, "Bob's own matter").await;
    app.post_message(&first, "my invoice number is 4711").await;
    app.post_message(&other, "bob's words").await;
    let resp = app
        .admin_post(
            &format!("/v1/projects/demo/tickets/{second}/notes"),
            json!({"author": "Dana", "content": "called her back"}),
        )
        .await;
    assert_eq!(resp.status(), 201);

    let id = contact["id"].as_str().unwrap();
    let resp = app
        .admin_get(&format!("/v1/projects/demo/contacts/{id}/export"))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/jsonl");
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines[0]["type"], "export");
    assert_eq!(lines[0]["contact_id"], id);
    assert_eq!(lines[1]["type"], "contact");
    assert_eq!(lines[1]["contact"]["id"], id);
    assert_eq!(lines[1]["contact"]["email"], "ada@example.com");
    let mut tickets: Vec<&str> = of_type(&lines, "ticket")
        .iter()
        .map(|l| l["ticket"]["slug"].as_str().unwrap())
        .collect();
    tickets.sort_unstable();
    let mut mine = vec![first.as_str(), second.as_str()];
    mine.sort_unstable();
    assert_eq!(tickets, mine);
    assert!(of_type(&lines, "message")
        .iter()
        .any(|l| l["message"]["content"] == "my invoice number is 4711"));
    assert_eq!(
        of_type(&lines, "note")[0]["note"]["content"],
        "called her back"
    );
    assert!(!text.contains(&other) && !text.contains("bob"), "{text}");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["tickets"], 2);
    assert_eq!(end["more_tickets"], false);

    for missing in [uuid::Uuid::new_v4().to_string(), "not-an-id".to_owned()] {
        let resp = app
            .admin_get(&format!("/v1/projects/demo/contacts/{missing}/export"))
            .await;
        assert_eq!(resp.status(), 404);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "contact not found");
    }
}
