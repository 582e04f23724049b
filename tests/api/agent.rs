use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn agents_list_tickets_newest_first_filtered_and_paged() {
    let app = spawn_app().await;
    let mut slugs = Vec::new();
    for i in 0..5 {
        slugs.push(app.create_ticket(&format!("ticket {i}")).await);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
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
