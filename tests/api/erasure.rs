//! Erasing a ticket (issue 29): a ticket whose messages, note, chat transcript and webhook
//! payloads carry a unique marker is erased, and then the marker is nowhere: in no API answer,
//! in no file of the data directory (embedded) or in no table of the keyspace (CQL).

use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::store::{Erasure, TicketStore};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

pub(crate) fn marker() -> String {
    format!("zqxmark{}", uuid::Uuid::new_v4().simple())
}

/// A server whose webhooks may call 127.0.0.1 (the endpoint below is a closed port, so every
/// delivery stays in the outbox with its payload) and retry only after an hour; and whose
/// emails go to a closed port too, at once after an agent's reply, so a visitor's email
/// stays in the outbox with its body, retried only after an hour. On CQL in a keyspace of
/// its own: a server that sends email sends every project's in its keyspace, and would
/// fail other tests' emails.
pub(crate) async fn app() -> TestApp {
    static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut options = Options {
        keyspace: Some(format!("fleety_erase_{}_{n}", std::process::id())),
        ..Options::default()
    };
    options.settings.webhooks.allow_private = true;
    options.settings.webhooks.retry_schedule = "1h".parse().expect("a retry schedule");
    let email = &mut options.settings.email;
    email.smtp_url = Some("smtp://127.0.0.1:9?tls=none".parse().expect("an SMTP URL"));
    email.from = Some("Fleety <support@fleety.test>".parse().expect("an address"));
    email.public_url = Some("https://help.fleety.test/".parse().expect("a URL"));
    email.retry_schedule = "1h".parse().expect("a retry schedule");
    email.visitor_after = std::time::Duration::ZERO;
    spawn_with(options).await
}

/// Drops the keyspace of its own an [`app`] had on CQL, once its server stopped, so the test
/// node does not fill with them.
pub(crate) async fn drop_keyspace(keyspace: &str) {
    if cql_backend() {
        let session = fleety::store::scylla::connect(&crate::support_cql::config(keyspace))
            .await
            .expect("connect to the CQL node");
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
            .await
            .expect("drop the test keyspace");
    }
}

/// The ticket's emails as the outbox lists them.
pub(crate) async fn emails_of(app: &TestApp, slug: &str) -> Vec<Value> {
    let resp = app
        .admin_get(&format!("/v1/projects/demo/emails?ticket={slug}"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["emails"].as_array().unwrap().clone()
}

/// Has the visitor of `slug` given an address (when no verified contact has one) and an agent
/// reply with `marker`, and waits for the email carrying it: its first attempt failed (the
/// port is closed), so it is pending, its body stored, for an hour. Its id.
pub(crate) async fn marked_email(app: &TestApp, slug: &str, marker: &str, token: &str) -> String {
    let resp = app
        .http
        .put(app.url(&format!("/v1/tickets/demo/{slug}/visitor-email")))
        .bearer_auth(token)
        .json(&json!({"email": "visitor@example.com"}))
        .send()
        .await
        .unwrap();
    assert!(
        [200, 409].contains(&resp.status().as_u16()),
        "{}",
        resp.status()
    );
    let resp = app
        .admin_post(
            &format!("/v1/tickets/demo/{slug}/messages"),
            json!({"author": "admin", "content": format!("agent reply about {marker}")}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let mut id = String::new();
    eventually("the visitor's email is tried once", async || {
        let emails = emails_of(app, slug).await;
        match emails.iter().find(|e| e["kind"] == "visitor_reply") {
            Some(e) if e["attempts"].as_u64() >= Some(1) => {
                assert_eq!(e["status"], "pending", "{e}");
                id = e["id"].as_str().unwrap().to_owned();
                true
            }
            _ => false,
        }
    })
    .await;
    let stored = app.ctx.store.get_email(&id).await.unwrap().unwrap();
    assert!(stored.text.contains(marker), "{stored:?}");
    id
}

/// A ticket opened from a chat, carrying `marker` in its chat, its messages, its note and the
/// webhook deliveries announcing them; its slug and the webhook's id.
async fn marked_ticket(app: &TestApp, marker: &str) -> (String, String) {
    let token = app.session_token().await;
    marked_ticket_as(app, marker, &token).await
}

/// As [`marked_ticket`], with the chat in the session `token` (a contact's, say).
pub(crate) async fn marked_ticket_as(app: &TestApp, marker: &str, token: &str) -> (String, String) {
    let resp = app
        .admin_post(
            "/v1/projects/demo/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "events": ["ticket.created", "message.created"]}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let hook = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let conversation = json!([
        {"role": "user", "content": format!("My invoice {marker} is wrong")},
        {"role": "assistant", "content": "Invoices are under Billing."},
        {"role": "user", "content": format!("I want to talk to a human about {marker}")}
    ]);
    let resp = app
        .chat(
            "/v1/chat/tools",
            token,
            json!({"messages": conversation, "enable_tool_calling": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let slug = resp.json::<Value>().await.unwrap()["ticket_slug"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post_message(&slug, &format!("still {marker}")).await;
    marked_email(app, &slug, marker, token).await;
    let resp = app
        .admin_post(
            &format!("/v1/projects/demo/tickets/{slug}/notes"),
            json!({"author": "Dana", "content": format!("note about {marker}")}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    // The transcript is written after the chat's answer.
    eventually("the chat transcript is written", async || {
        let chat = app
            .admin_get(&format!("/v1/projects/demo/tickets/{slug}/chat"))
            .await
            .text()
            .await
            .unwrap();
        chat.contains(marker)
    })
    .await;
    (slug, hook)
}

/// Every API answer an agent could find the marker in, concatenated.
pub(crate) async fn answers(app: &TestApp, slug: &str, hook: &str, marker: &str) -> String {
    let mut all = String::new();
    for path in [
        format!("/v1/tickets/demo/{slug}"),
        format!("/v1/projects/demo/tickets/{slug}/notes"),
        format!("/v1/projects/demo/tickets/{slug}/chat"),
        format!("/v1/projects/demo/tickets/{slug}/timeline"),
        "/v1/projects/demo/tickets".to_owned(),
        format!("/v1/projects/demo/tickets?q={marker}"),
        "/v1/projects/demo/export".to_owned(),
        format!("/v1/projects/demo/webhooks/{hook}/deliveries"),
        "/v1/projects/demo/audit".to_owned(),
        "/v1/projects/demo/emails".to_owned(),
        format!("/v1/projects/demo/emails?ticket={slug}"),
    ] {
        let resp = app.admin_get(&path).await;
        let body = resp.text().await.unwrap().replace('\n', " ");
        // Labelled without the query, which holds the marker itself.
        let label = path.replace(marker, "MARKER");
        all.push_str(&format!("{label}: {body}\n"));
    }
    all
}

/// Whether any file under `dir` holds `needle`.
pub(crate) fn on_disk(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(on_disk(&path, needle));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}

/// Every row of every table of the keyspace holding `needle`, as `table: row`.
pub(crate) async fn in_keyspace(keyspace: &str, needle: &str) -> Vec<String> {
    let config = crate::support_cql::config(keyspace);
    let session = fleety::store::scylla::connect(&config).await.unwrap();
    let tables: Vec<(String,)> = session
        .query_iter(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .unwrap()
        .rows_stream::<(String,)>()
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await;
    let mut found = Vec::new();
    for (table,) in tables {
        let rows: Vec<scylla::value::Row> = session
            .query_iter(format!("SELECT * FROM {keyspace}.{table}"), ())
            .await
            .unwrap()
            .rows_stream::<scylla::value::Row>()
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
            .await;
        for row in rows {
            let text = format!("{row:?}");
            if text.contains(needle) {
                found.push(format!("{table}: {text}"));
            }
        }
    }
    found
}

/// Where the marker is stored: files of the data directory, or rows of the keyspace.
pub(crate) async fn stored(app_dir: &std::path::Path, keyspace: &str, marker: &str) -> Vec<String> {
    if cql_backend() {
        in_keyspace(keyspace, marker).await
    } else {
        on_disk(app_dir, marker.as_bytes())
            .into_iter()
            .map(|p| p.display().to_string())
            .collect()
    }
}

#[tokio::test]
async fn an_erased_ticket_leaves_its_words_in_no_answer_and_no_file_and_its_socket_is_closed() {
    let app = app().await;
    let marker = marker();
    let (slug, hook) = marked_ticket(&app, &marker).await;
    // A second ticket, kept: erasing one ticket touches no other.
    let kept = app.create_ticket("Kept ticket").await;
    app.post_message(&kept, "kept words").await;

    // The marker is where the test looks before the erasure: a place the test could not see
    // would make it pass by skipping.
    let before = answers(&app, &slug, &hook, &marker).await;
    for place in ["/notes:", "/chat:", "/export:", "/deliveries:", "q=MARKER:"] {
        let line = before.lines().find(|l| l.contains(place)).unwrap();
        assert!(line.contains(&marker), "before: {line}");
    }
    if !cql_backend() {
        // redb holds the rows after its next checkpoint; the log at once.
        assert!(!stored(app.dir.path(), &app.keyspace, &marker)
            .await
            .is_empty());
    }

    let emails = emails_of(&app, &slug).await;
    assert_eq!(emails.len(), 1, "{emails:?}");
    let email = emails[0]["id"].as_str().unwrap().to_owned();
    // Its subject names the ticket by its title (which holds the marker), but the listing
    // never shows the body, nor the closed port's details.
    let listed = emails[0].to_string();
    assert!(listed.contains(&marker), "{listed}");
    assert!(
        !listed.contains("agent reply about") && !listed.contains("127.0.0.1"),
        "{listed}"
    );
    assert!(emails[0].get("text").is_none() && emails[0].get("html").is_none());
    assert_eq!(
        emails[0]["last_error"], "the mail server could not be reached",
        "{listed}"
    );

    let mut socket = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut socket).await["type"], "subscribed");
    let mut feed = app.connect_feed().await;
    assert_eq!(next_event(&mut feed).await["type"], "subscribed");

    let resp = app
        .admin_delete(&format!("/v1/projects/demo/tickets/{slug}"))
        .await;
    assert_eq!(resp.status(), 200);

    // The subscriber hears it last, and the socket closes.
    let last = next_event(&mut socket).await;
    assert_eq!(last["type"], "ticket_deleted", "{last}");
    assert_eq!(last["payload"]["slug"], slug.as_str());
    loop {
        match socket.next().await {
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(u16::from(frame.unwrap().code), 1000);
                break;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            None | Some(Err(_)) => break,
            Some(other) => panic!("after ticket_deleted: {other:?}"),
        }
    }
    let told = next_event(&mut feed).await;
    assert_eq!(
        (told["type"].as_str(), told["ticket"].as_str()),
        (Some("ticket_deleted"), Some(slug.as_str()))
    );

    // Unknown from now on, as a ticket that never was; a second DELETE too.
    assert_eq!(
        app.get(&format!("/v1/tickets/demo/{slug}")).await.status(),
        404
    );
    let post = app
        .post_json(
            &format!("/v1/tickets/demo/{slug}/messages"),
            json!({"author": "user", "content": "hello?"}),
        )
        .await;
    assert_eq!(post.status(), 404);
    let socket = app
        .connect_with(&format!("/v1/tickets/demo/{slug}/ws"), None)
        .await;
    assert_eq!(socket.err(), Some(404));
    let again = app
        .admin_delete(&format!("/v1/projects/demo/tickets/{slug}"))
        .await;
    assert_eq!(again.status(), 404);

    let after = answers(&app, &slug, &hook, &marker).await;
    assert!(!after.contains(&marker), "{after}");
    // Its pending email is gone, from the outbox's listing and by id.
    assert!(emails_of(&app, &slug).await.is_empty());
    assert_eq!(app.ctx.store.get_email(&email).await.unwrap(), None);
    assert!(
        after.contains("kept words"),
        "the other ticket stays: {after}"
    );
    // The audit trail has the erasure, by slug.
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
        .find(|r| r["action"] == "ticket.deleted")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(erased["target"]["id"], slug.as_str());

    let left = stored(app.dir.path(), &app.keyspace, &marker).await;
    assert!(left.is_empty(), "the marker is still stored in {left:?}");
    // And stays gone once the server has stopped and checkpointed.
    let restart = app.stop().await;
    let left = stored(restart.dir.path(), &restart.keyspace, &marker).await;
    assert!(left.is_empty(), "after a stop, the marker is in {left:?}");
    drop_keyspace(&restart.keyspace).await;
}

#[tokio::test]
async fn an_erasure_cut_short_by_a_stop_is_finished_on_start_before_the_ticket_is_served() {
    let app = app().await;
    let marker = marker();
    let (slug, _) = marked_ticket(&app, &marker).await;
    let project = ProjectId::parse(&app.project).unwrap();
    let restart = app.stop().await;

    // What a server killed right after noting the erasure leaves: the intent, and the ticket
    // whole.
    let intent = Erasure {
        project_id: project.clone(),
        slug: Slug::parse(&slug).unwrap(),
        requested_at: chrono::Utc::now(),
    };
    if cql_backend() {
        let store = crate::support_cql::store(&restart.keyspace).await;
        store.put_erasure(&intent).await.unwrap();
    } else {
        let store = open_store(restart.dir.path()).await;
        store.put_erasure(&intent).await.unwrap();
    }

    let app = spawn_with(restart.options()).await;
    // The first request already finds it gone: the start finished the erasure.
    assert_eq!(
        app.get(&format!("/v1/tickets/demo/{slug}")).await.status(),
        404
    );
    let pending = app.ctx.store.pending_erasures().await.unwrap();
    assert!(
        !pending.iter().any(|e| e.project_id == project),
        "{pending:?}"
    );
    let export = app
        .admin_get("/v1/projects/demo/export")
        .await
        .text()
        .await
        .unwrap();
    assert!(!export.contains(&marker), "{export}");
    let left = stored(app.dir.path(), &app.keyspace, &marker).await;
    assert!(left.is_empty(), "the marker is still stored in {left:?}");
    drop_keyspace(&app.stop().await.keyspace).await;
}
