//! Knowledge-base management (admin key) and the public help-center search.

use serde_json::{json, Value};

use crate::helpers::*;

async fn create(app: &TestApp, title: &str, body: &str, tags: &[&str]) -> Value {
    let resp = app
        .admin_post(
            "/v1/projects/demo/kb/articles",
            json!({"title": title, "body": body, "tags": tags}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn agents_create_read_update_list_and_delete_articles() {
    let app = spawn_app().await;
    let created = create(&app, "Gift cards", "Gift cards never expire.", &["billing"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["title"], "Gift cards");
    assert_eq!(created["tags"], json!(["billing"]));
    assert_eq!(created["project_id"], app.project.as_str());

    let path = format!("/v1/projects/demo/kb/articles/{id}");
    let read: Value = app.admin_get(&path).await.json().await.unwrap();
    assert_eq!(read, created);

    let changed = app
        .admin_patch(&path, json!({"body": "Gift cards expire after ten years."}))
        .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["title"], "Gift cards");
    assert_eq!(changed["body"], "Gift cards expire after ten years.");
    assert_eq!(changed["created_at"], created["created_at"]);

    let list: Value = app
        .admin_get("/v1/projects/demo/kb/articles")
        .await
        .json()
        .await
        .unwrap();
    let articles = list["articles"].as_array().unwrap();
    // The demo's own articles plus ours, the most recently changed first.
    assert_eq!(articles[0]["id"], id.as_str());
    assert!(articles.len() > 1);

    let deleted = app.admin_delete(&path).await;
    assert_eq!(deleted.status(), 200);
    assert_eq!(app.admin_get(&path).await.status(), 404);
    assert_eq!(app.admin_delete(&path).await.status(), 404);
}

#[tokio::test]
async fn bad_article_requests_get_clear_errors() {
    let app = spawn_app().await;
    let cases = [
        (json!({"title": "", "body": "x"}), "title"),
        (json!({"title": "x"}), "body"),
        (json!({"title": "x", "body": "   "}), "body"),
        (
            json!({"title": "x", "body": "y", "tags": (0..21).map(|i| i.to_string()).collect::<Vec<_>>()}),
            "tags",
        ),
        (json!({"title": "x".repeat(201), "body": "y"}), "title"),
    ];
    for (body, expected) in cases {
        let resp = app
            .admin_post("/v1/projects/demo/kb/articles", body.clone())
            .await;
        assert_eq!(resp.status(), 400, "{body}");
        let answer: Value = resp.json().await.unwrap();
        assert!(error_of(&answer).contains(expected), "{body} -> {answer}");
    }
    let anonymous = app
        .http
        .post(app.url("/v1/projects/demo/kb/articles"))
        .json(&json!({"title": "x", "body": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong_key = app
        .http
        .post(app.url("/v1/projects/demo/kb/articles"))
        .bearer_auth("not-the-key")
        .json(&json!({"title": "x", "body": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 403);
    for path in [
        "/v1/projects/demo/kb/articles/not-a-uuid",
        "/v1/projects/demo/kb/articles/3f0e8b1c-5d7a-4a53-9b5e-0c1d2e3f4a5b",
    ] {
        assert_eq!(app.admin_get(path).await.status(), 404);
        let resp = app.admin_patch(path, json!({"title": "x"})).await;
        assert_eq!(resp.status(), 404);
    }
}

#[tokio::test]
async fn public_search_ranks_the_best_article_first() {
    let app = spawn_app().await;
    let espresso = create(
        &app,
        "Descaling the espresso machine",
        "Descale the espresso machine every month.\n\nUse the descaling tablets that came with it.",
        &["coffee"],
    )
    .await;
    create(
        &app,
        "Cleaning the milk frother",
        "Rinse the frother after each use. The espresso machine needs no rinse.",
        &[],
    )
    .await;
    let resp = app
        .get("/v1/kb/demo/search?q=how%20to%20descale%20my%20espresso%20machine")
        .await;
    assert_eq!(resp.status(), 200);
    let found: Value = resp.json().await.unwrap();
    let results = found["results"].as_array().unwrap();
    assert!(results.len() >= 2, "{found}");
    assert_eq!(results[0]["article_id"], espresso["id"]);
    assert!(results[0]["score"].as_f64().unwrap() > results[1]["score"].as_f64().unwrap());
    assert!(results[0]["snippet"].as_str().unwrap().contains("Descale"));
    // One result per article, however many of its passages match.
    let ids: std::collections::HashSet<&str> = results
        .iter()
        .map(|r| r["article_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), results.len());

    let none: Value = app
        .get("/v1/kb/demo/search?q=xylophone")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["results"], json!([]));
    for bad in [
        "/v1/kb/demo/search",
        "/v1/kb/demo/search?q=%20",
        "/v1/kb/demo/search?q=a&limit=0",
    ] {
        assert_eq!(app.get(bad).await.status(), 400, "{bad}");
    }
    assert_eq!(
        app.get("/v1/kb/nosuchproject/search?q=a").await.status(),
        404
    );
}

#[tokio::test]
async fn public_search_is_rate_limited_and_cors_checked() {
    let app = spawn_with_settings(|s| s.limits.public_per_minute = 2).await;
    let search = |origin: &'static str| {
        app.http
            .get(app.url("/v1/kb/demo/search?q=password"))
            .header("Origin", origin)
            .send()
    };
    let ok = search("http://localhost:3000").await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(ok.headers()["x-ratelimit-limit"], "2");
    let refused = search("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    let limited = search("http://localhost:3000").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn articles_carry_a_language_and_a_link() {
    let app = spawn_app().await;
    // Left out: English, without a link.
    let plain = create(&app, "Gift cards", "Gift cards never expire.", &[]).await;
    assert_eq!(plain["language"], "en");
    assert_eq!(plain["url"], Value::Null);

    let resp = app
        .admin_post(
            "/v1/projects/demo/kb/articles",
            json!({
                "title": "Geschenkkarten",
                "body": "Geschenkkarten verfallen nie.",
                "language": "de-AT",
                "url": "https://help.example.com/de/geschenkkarten",
            }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    // A regional tag is kept as its language.
    assert_eq!(created["language"], "de");
    assert_eq!(created["url"], "https://help.example.com/de/geschenkkarten");
    let path = format!(
        "/v1/projects/demo/kb/articles/{}",
        created["id"].as_str().unwrap()
    );
    let read: Value = app.admin_get(&path).await.json().await.unwrap();
    assert_eq!(read, created);

    // A change of the title keeps both; `null` removes the link; the language can change.
    let changed: Value = app
        .admin_patch(&path, json!({"title": "Gutscheine"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["language"], "de");
    assert_eq!(changed["url"], created["url"]);
    let changed: Value = app
        .admin_patch(&path, json!({"url": null, "language": "fr"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["url"], Value::Null);
    assert_eq!(changed["language"], "fr");
    let list: Value = app
        .admin_get("/v1/projects/demo/kb/articles")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["articles"][0], changed);
}

#[tokio::test]
async fn bad_languages_and_links_are_refused() {
    let app = spawn_app().await;
    let long = format!("https://help.example.com/{}", "a".repeat(2040));
    let cases = [
        (json!({"language": "xx"}), "language"),
        (json!({"language": "english"}), "language"),
        (json!({"language": ""}), "language"),
        (json!({"language": 7}), "string"),
        (json!({"url": "javascript:alert(1)"}), "url"),
        (json!({"url": "ftp://help.example.com/a"}), "url"),
        (
            json!({"url": "https://user:secret@help.example.com/"}),
            "url",
        ),
        (json!({"url": "help.example.com/a"}), "url"),
        (json!({"url": "https://help.example.com/a b"}), "url"),
        (json!({"url": long}), "url"),
    ];
    let article = create(&app, "Gift cards", "Gift cards never expire.", &[]).await;
    let path = format!(
        "/v1/projects/demo/kb/articles/{}",
        article["id"].as_str().unwrap()
    );
    for (fields, expected) in cases {
        let mut body = json!({"title": "x", "body": "y"});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp = app
            .admin_post("/v1/projects/demo/kb/articles", body.clone())
            .await;
        assert_eq!(resp.status(), 400, "{body}");
        let answer: Value = resp.json().await.unwrap();
        assert!(error_of(&answer).contains(expected), "{body} -> {answer}");
        let resp = app.admin_patch(&path, fields.clone()).await;
        assert_eq!(resp.status(), 400, "{fields}");
        let answer: Value = resp.json().await.unwrap();
        assert!(error_of(&answer).contains(expected), "{fields} -> {answer}");
    }
    // Nothing was changed by the refused requests.
    let read: Value = app.admin_get(&path).await.json().await.unwrap();
    assert_eq!(read, article);
    // A search's language is a tag too; one without an analyser is searched in all languages.
    assert_eq!(
        app.get("/v1/kb/demo/search?q=gift&language=%3Cb%3E")
            .await
            .status(),
        400
    );
    let found: Value = app
        .get("/v1/kb/demo/search?q=gift%20cards&language=ja")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["results"][0]["article_id"], article["id"]);
}

#[tokio::test]
async fn search_reads_the_question_in_its_language() {
    let app = spawn_app().await;
    let english = create(
        &app,
        "Changing your password",
        "Open Settings, then Security, and choose a new password.",
        &[],
    )
    .await;
    let resp = app
        .admin_post(
            "/v1/projects/demo/kb/articles",
            json!({
                "title": "Passwort ändern",
                "body": "Öffnen Sie Einstellungen, dann Sicherheit, und wählen Sie ein neues Passwort.",
                "language": "de",
                "url": "https://help.example.com/de/passwort",
            }),
        )
        .await;
    let german: Value = resp.json().await.unwrap();
    let first = |q: &str| {
        let app = &app;
        let q = q.to_owned();
        async move {
            let found: Value = app.get(&q).await.json().await.unwrap();
            found["results"][0].clone()
        }
    };
    // Asked in German, the German article comes first, with its link.
    let hit =
        first("/v1/kb/demo/search?q=Wie%20kann%20ich%20mein%20Passwort%20%C3%A4ndern&language=de")
            .await;
    assert_eq!(hit["article_id"], german["id"]);
    assert_eq!(hit["url"], "https://help.example.com/de/passwort");
    let hit = first("/v1/kb/demo/search?q=change%20my%20password&language=en").await;
    assert_eq!(hit["article_id"], english["id"]);
    assert!(hit.get("url").is_none(), "{hit}");
}
