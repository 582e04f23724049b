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
