//! `/`, the first page a newcomer opens: the demo site with the widget, or a short page naming
//! the inbox and the API reference, always with the pages' security headers and never with an
//! admin key.

use crate::helpers::*;

/// The page at `/`, checked for what every page of the server carries.
async fn home(app: &TestApp) -> String {
    let resp = app.get("/").await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        !csp.contains("script-src"),
        "no exception for scripts: {csp}"
    );
    let body = resp.text().await.unwrap();
    assert!(!app.admin_key.is_empty());
    assert!(
        !body.contains(&app.admin_key),
        "the admin key is on the page"
    );
    // The pages run no inline script: the policy would block it.
    for script in body.split("<script").skip(1) {
        let tag = &script[..script.find('>').unwrap()];
        assert!(
            tag.contains(" src=\"/"),
            "an inline or foreign script: <script{tag}>"
        );
    }
    body
}

#[tokio::test]
async fn with_the_demo_the_home_page_is_a_site_with_the_widget_and_the_next_steps() {
    let app = spawn_app().await;
    let body = home(&app).await;
    let project = &app.project;
    assert!(
        body.contains(&format!(
            "<script src=\"/widget.js\" data-project=\"{project}\" async></script>"
        )),
        "the widget is embedded for the demo project"
    );
    assert!(body.contains("href=\"/inbox\""));
    for step in [
        "Embed the snippet",
        "Create a project",
        "Point the assistant at a model",
    ] {
        assert!(body.contains(step), "missing step: {step}");
    }
    // The snippet to copy names this server as the browser reached it.
    assert!(body.contains(&format!("{}/widget.js", app.base)), "{body}");
    // The widget the page embeds is served, and may talk to the server from the page.
    assert_eq!(app.get("/widget.js").await.status(), 200);
    let resp = app
        .post_json(
            "/v1/init-session",
            serde_json::json!({"project_id": "demo"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn without_the_demo_the_home_page_names_the_inbox_and_the_api_reference() {
    let app = spawn_with_settings(|s| s.demo.enabled = false).await;
    let body = home(&app).await;
    assert!(body.contains("href=\"/inbox\""));
    assert!(body.contains("href=\"/v1/openapi.json\""));
    assert!(!body.contains("widget.js"), "no widget without the demo");
    assert!(
        !body.contains(&format!("<code>{}</code>", app.project)) && !body.contains("data-project"),
        "no demo project named"
    );
    // HEAD answers as GET does, without the body.
    let head = app.http.head(app.url("/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "text/html; charset=utf-8");
}

#[tokio::test]
async fn an_odd_host_header_never_reaches_the_page() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(app.url("/"))
        .header("host", "evil\"><b>x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(!body.contains("evil"), "{body}");
}
