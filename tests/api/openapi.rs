use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn openapi_lists_every_route_and_every_listed_route_exists() {
    let app = spawn_app().await;
    let doc: Value = app.get("/v1/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 14);
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{projectId}", &app.project)
                .replace("{slug}", "quiet-otter-001")
                .replace("{articleId}", "3f0e8b1c-5d7a-4a53-9b5e-0c1d2e3f4a5b")
                .replace("{webhookId}", "7b1e2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e")
                .replace("{deliveryId}", "msg_0");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = app
                .http
                .request(m, app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert!(
                !(status == 404 && body["error"] == "no such endpoint"),
                "{method} {path} is documented but not routed"
            );
        }
    }
}

/// Every documented path answers a method it does not take with 405, naming in `Allow` the
/// methods it does take (RFC 9110 §15.5.6), in an `{"error"}` body.
#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_with_the_paths_methods_in_allow() {
    let app = spawn_app().await;
    let doc: Value = app.get("/v1/openapi.json").await.json().await.unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        if documented.contains(&"GET".to_owned()) {
            documented.push("HEAD".into());
        }
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if documented.iter().any(|m| m == method) {
                continue;
            }
            let concrete = concrete(&app, path);
            let resp = app
                .http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(&concrete),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 405, "{method} {path}");
            let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
            let mut allowed: Vec<&str> = allow.split(", ").collect();
            allowed.sort_unstable();
            let mut expected: Vec<&str> = documented.iter().map(String::as_str).collect();
            expected.push("OPTIONS");
            expected.sort_unstable();
            assert_eq!(allowed, expected, "Allow of {method} {path}");
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].is_string(), "{method} {path}: {body}");
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} method/path pairs");
}

fn concrete(app: &TestApp, path: &str) -> String {
    path.replace("{projectId}", &app.project)
        .replace("{slug}", "quiet-otter-001")
        .replace("{articleId}", "3f0e8b1c-5d7a-4a53-9b5e-0c1d2e3f4a5b")
        .replace("{webhookId}", "7b1e2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e")
        .replace("{deliveryId}", "msg_0")
}

#[tokio::test]
async fn options_names_the_paths_own_methods() {
    let app = spawn_app().await;
    let allow = |resp: &reqwest::Response, name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let health = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 204);
    assert_eq!(
        allow(&health, "allow").as_deref(),
        Some("GET, HEAD, OPTIONS")
    );

    // A browser's preflight from an allowed origin hears the same methods.
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/v1/tickets/demo"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        allow(&preflight, "access-control-allow-methods").as_deref(),
        Some("POST, OPTIONS")
    );
    let ticket = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            app.url("/v1/tickets/demo/quiet-otter-001"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        allow(&ticket, "allow").as_deref(),
        Some("GET, HEAD, PATCH, OPTIONS")
    );

    let nowhere = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);
}

/// A query that does not parse is the client's mistake on the route it asked for, not a
/// reason to try the path's other routes (which answered 405).
#[tokio::test]
async fn a_malformed_query_on_a_ticket_is_400_invalid_query_string() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Paging").await;
    for query in [
        "limit=abc",
        "limit=",
        "limit=-1",
        "limit=99999999999999999999",
    ] {
        let resp = app.get(&format!("/v1/tickets/demo/{slug}?{query}")).await;
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid query string", "{query}");
    }
    let resp = app.get(&format!("/v1/tickets/demo/{slug}?limit=0")).await;
    assert_eq!(resp.status(), 400);
    let resp = app.get(&format!("/v1/tickets/demo/{slug}?limit=2")).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn head_is_answered_as_get_without_a_body() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Head").await;
    let resp = app
        .http
        .head(app.url(&format!("/v1/tickets/demo/{slug}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.bytes().await.unwrap().is_empty());
}

/// Checks a value against a schema of the served document.
fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    let root = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::validator_for(&root).expect("a valid schema")
}

/// The realtime frames a client types from the document are the frames the server sends, on a
/// ticket's socket and on the project feed.
#[tokio::test]
async fn socket_and_feed_frames_match_the_schemas_the_document_gives_them() {
    use futures_util::SinkExt;
    let app = spawn_app().await;
    let doc: Value = app.get("/v1/openapi.json").await.json().await.unwrap();
    let ticket_event = validator(&doc, "TicketEvent");
    let feed_event = validator(&doc, "FeedEvent");

    let mut feed = app.connect_feed().await;
    let slug = app.create_ticket("Frames").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;

    app.post_message(&slug, "hello").await;
    app.admin_patch(
        &format!("/v1/tickets/demo/{slug}"),
        serde_json::json!({"status": "pending", "assignee": "Dana"}),
    )
    .await;
    app.patch_json(
        &format!("/v1/tickets/demo/{slug}/messages/read"),
        serde_json::json!({"reader": "user"}),
    )
    .await;
    app.admin_post(
        &format!("/v1/projects/demo/tickets/{slug}/notes"),
        serde_json::json!({"author": "Dana", "content": "a note"}),
    )
    .await;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"typing"}"#.into(),
    ))
    .await
    .unwrap();

    let mut seen = std::collections::BTreeSet::new();
    for kind in [
        "subscribed",
        "new_message",
        "status_change",
        "assigned",
        "ticket_update",
    ] {
        let frame = next_event(&mut ws).await;
        let errors: Vec<String> = ticket_event
            .iter_errors(&frame)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{frame}: {errors:?}");
        assert_eq!(frame["type"], kind, "{frame}");
        seen.insert(kind);
    }
    // The feed: its greeting, the new ticket, then the same events tagged with the slug, the
    // agents' note, and the visitor typing.
    let mut kinds = Vec::new();
    while !kinds.contains(&"typing".to_owned()) {
        let frame = next_event(&mut feed).await;
        let errors: Vec<String> = feed_event
            .iter_errors(&frame)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{frame}: {errors:?}");
        kinds.push(frame["type"].as_str().unwrap().to_owned());
    }
    for kind in [
        "subscribed",
        "ticket_created",
        "new_message",
        "status_change",
        "assigned",
        "ticket_update",
        "note_added",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "the feed sent no {kind}: {kinds:?}"
        );
    }
    // A frame of another shape is refused by the schema: the check is not vacuous.
    let wrong = serde_json::json!({"type": "new_message", "payload": {"id": 1}});
    assert!(!ticket_event.is_valid(&wrong));
}
