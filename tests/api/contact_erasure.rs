//! Erasing a contact (issue 29): a contact whose identity (external id, name, email,
//! attributes) and two tickets (one opened from a chat, one from the widget's form) carry a
//! unique marker is erased, and then the marker is nowhere: in no API answer, in no file of
//! the data directory (embedded) or in no table of the keyspace (CQL). Another contact and
//! an anonymous ticket keep everything.

use fleety_actors::contact::ContactErasure;
use fleety_actors::domain::ProjectId;
use fleety_actors::store::ContactStore;
use serde_json::{json, Value};

use crate::erasure::{answers, app, drop_keyspace, emails_of, marked_ticket_as, marker, stored};
use crate::helpers::*;
use crate::identity::{identified, new_secret, user_hash};

/// A verified contact carrying `marker` everywhere a contact may: its session token and id.
async fn marked_contact(app: &TestApp, secret: &str, marker: &str) -> (String, String) {
    let user = format!("u-{marker}");
    let proof = json!({
        "user_id": user,
        "user_hash": user_hash(secret, &user),
        "name": format!("Name {marker}"),
        "email": format!("{marker}@example.com"),
        "attributes": {"plan": marker},
    });
    let (token, contact) = identified(app, proof).await;
    (token, contact["id"].as_str().unwrap().to_owned())
}

/// A ticket opened by the contact from the widget's form, with `marker` in its title and a
/// message; its slug.
async fn form_ticket(app: &TestApp, token: &str, marker: &str) -> String {
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .bearer_auth(token)
        .json(&json!({"title": format!("Refund {marker}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let slug = resp.json::<Value>().await.unwrap()["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post_message(&slug, &format!("about {marker} again"))
        .await;
    slug
}

/// Every answer about the contact and its tickets, concatenated.
async fn contact_answers(
    app: &TestApp,
    contact: &str,
    slugs: &[&str],
    hook: &str,
    marker: &str,
) -> String {
    let mut all = String::new();
    for slug in slugs {
        all.push_str(&answers(app, slug, hook, marker).await);
    }
    for path in [
        "/v1/projects/demo/contacts".to_owned(),
        format!("/v1/projects/demo/contacts?q={marker}"),
        format!("/v1/projects/demo/contacts/{contact}"),
    ] {
        let body = app.admin_get(&path).await.text().await.unwrap();
        let label = path.replace(marker, "MARKER");
        all.push_str(&format!("{label}: {}\n", body.replace('\n', " ")));
    }
    all
}

#[tokio::test]
async fn an_erased_contact_leaves_its_words_in_no_answer_file_or_table_and_others_keep_theirs() {
    let app = app().await;
    let marker = marker();
    let (_, secret) = new_secret(&app).await;
    let (token, contact) = marked_contact(&app, &secret, &marker).await;
    let (chat_slug, hook) = marked_ticket_as(&app, &marker, &token).await;
    let form_slug = form_ticket(&app, &token, &marker).await;
    // Another contact's ticket and an anonymous one, kept.
    let other = "u-kept";
    let proof =
        json!({"user_id": other, "user_hash": user_hash(&secret, other), "name": "Kept Person"});
    let (other_token, other_contact) = identified(&app, proof).await;
    let other_slug = form_ticket(&app, &other_token, "kept words").await;
    let anonymous = app.create_ticket("Anonymous ticket").await;
    app.post_message(&anonymous, "anonymous words").await;

    let slugs = [chat_slug.as_str(), form_slug.as_str()];
    let before = contact_answers(&app, &contact, &slugs, &hook, &marker).await;
    for place in [
        "/notes:",
        "/chat:",
        "/deliveries:",
        "/contacts:",
        "/contacts?q=MARKER:",
    ] {
        let line = before.lines().find(|l| l.contains(place)).unwrap();
        assert!(line.contains(&marker), "before: {line}");
    }
    // The visitor's email went to the contact's verified address, which holds the marker.
    let emails = emails_of(&app, &chat_slug).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0]["to"].as_str().unwrap().contains(&marker));
    let detail = format!("/contacts/{contact}:");
    let line = before.lines().find(|l| l.contains(&detail)).unwrap();
    assert!(
        line.contains(&form_slug) && line.contains(&chat_slug),
        "{line}"
    );

    // A delivery's first attempt, begun before the erasure and written back after it, would
    // bring its row back (a known race of the ticket erasure, docs/operations.md): the
    // attempts are over first (the next is an hour away).
    let path = format!("/v1/projects/demo/webhooks/{hook}/deliveries");
    eventually("every delivery was attempted once", async || {
        let log: Value = app.admin_get(&path).await.json().await.unwrap();
        let log = log["deliveries"].as_array().unwrap();
        !log.is_empty() && log.iter().all(|d| d["attempts"].as_u64() >= Some(1))
    })
    .await;
    let mut feed = app.connect_feed().await;
    assert_eq!(next_event(&mut feed).await["type"], "subscribed");
    let resp = app
        .admin_delete(&format!("/v1/projects/demo/contacts/{contact}"))
        .await;
    assert_eq!(resp.status(), 200);
    // The feed hears each ticket go.
    let mut gone = Vec::new();
    while gone.len() < 2 {
        let event = next_event(&mut feed).await;
        if event["type"] == "ticket_deleted" {
            gone.push(event["ticket"].as_str().unwrap().to_owned());
        }
    }
    gone.sort();
    let mut want = vec![chat_slug.clone(), form_slug.clone()];
    want.sort();
    assert_eq!(gone, want);

    for slug in slugs {
        let status = app.get(&format!("/v1/tickets/demo/{slug}")).await.status();
        assert_eq!(status, 404, "{slug}");
    }
    let path = format!("/v1/projects/demo/contacts/{contact}");
    assert_eq!(app.admin_get(&path).await.status(), 404);
    assert_eq!(app.admin_delete(&path).await.status(), 404);
    let stranger = format!("/v1/projects/demo/contacts/{}", uuid::Uuid::new_v4());
    assert_eq!(app.admin_delete(&stranger).await.status(), 404);
    assert_eq!(
        app.admin_delete("/v1/projects/demo/contacts/not-an-id")
            .await
            .status(),
        404
    );

    let after = contact_answers(&app, &contact, &slugs, &hook, &marker).await;
    assert!(!after.contains(&marker), "{after}");
    assert!(emails_of(&app, &chat_slug).await.is_empty());
    assert!(
        after.contains(&other_slug) && after.contains("Kept Person"),
        "{after}"
    );
    let export = app
        .admin_get("/v1/projects/demo/export")
        .await
        .text()
        .await
        .unwrap();
    assert!(export.contains("kept words") && export.contains("anonymous words"));
    let other_detail: Value = app
        .admin_get(&format!(
            "/v1/projects/demo/contacts/{}",
            other_contact["id"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        other_detail["tickets"][0]["slug"],
        other_slug.as_str(),
        "{other_detail}"
    );

    // The trail has the erasure by the contact's id, with counts and nothing else.
    let audit: Value = app
        .admin_get("/v1/projects/demo/audit")
        .await
        .json()
        .await
        .unwrap();
    let erased = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "contact.erased")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(erased["target"]["kind"], "contact");
    assert_eq!(erased["target"]["id"], contact.as_str());
    assert_eq!(erased["changes"], json!({"tickets": 2}));

    let left = stored(app.dir.path(), &app.keyspace, &marker).await;
    assert!(left.is_empty(), "the marker is still stored in {left:?}");
    let restart = app.stop().await;
    let left = stored(restart.dir.path(), &restart.keyspace, &marker).await;
    assert!(left.is_empty(), "after a stop, the marker is in {left:?}");
    drop_keyspace(&restart.keyspace).await;
}

#[tokio::test]
async fn a_contact_erasure_cut_short_by_a_stop_is_finished_on_start() {
    let app = app().await;
    let marker = marker();
    let (_, secret) = new_secret(&app).await;
    let (token, contact) = marked_contact(&app, &secret, &marker).await;
    let form_slug = form_ticket(&app, &token, &marker).await;
    let project = ProjectId::parse(&app.project).unwrap();
    let restart = app.stop().await;

    // What a server killed right after noting the erasure leaves: the intent, and all else
    // whole.
    let intent = ContactErasure {
        project_id: project.clone(),
        contact_id: uuid::Uuid::parse_str(&contact).unwrap(),
        requested_at: chrono::Utc::now(),
    };
    if cql_backend() {
        let store = crate::support_cql::store(&restart.keyspace).await;
        store.put_contact_erasure(&intent).await.unwrap();
    } else {
        let store = open_store(restart.dir.path()).await;
        store.put_contact_erasure(&intent).await.unwrap();
    }

    let app = spawn_with(restart.options()).await;
    let status = app
        .get(&format!("/v1/tickets/demo/{form_slug}"))
        .await
        .status();
    assert_eq!(status, 404);
    let path = format!("/v1/projects/demo/contacts/{contact}");
    assert_eq!(app.admin_get(&path).await.status(), 404);
    let pending = app.ctx.store.pending_contact_erasures().await.unwrap();
    assert!(
        !pending.iter().any(|e| e.project_id == project),
        "{pending:?}"
    );
    let left = stored(app.dir.path(), &app.keyspace, &marker).await;
    assert!(left.is_empty(), "the marker is still stored in {left:?}");
    drop_keyspace(&app.stop().await.keyspace).await;
}
