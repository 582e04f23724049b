//! End to end against a real model server: llama.cpp's `llama-server` running SmolLM2-135M,
//! started by `scripts/llama.sh` (which `scripts/test.sh` runs). The test is ignored in a plain
//! `cargo test`; the test script runs it with `--ignored` and fails when the server is missing.

use serde_json::json;

use crate::helpers::*;

fn model_url() -> String {
    std::env::var("FLEETY_TEST_LLM_URL")
        .expect("FLEETY_TEST_LLM_URL must name a running llama-server (scripts/llama.sh start)")
}

#[tokio::test]
#[ignore = "needs a llama-server; scripts/test.sh starts one and runs this"]
async fn a_real_model_streams_its_answer_through_fleety_intact() {
    let base = format!("{}/v1", model_url().trim_end_matches('/'));
    let app = spawn_with_settings(|s| {
        s.llm.base_url = Some(base.parse().unwrap());
        s.llm.model = "SmolLM2-135M-Instruct".into();
        s.llm.max_tokens = 48;
        // A small model on a busy 2-core machine: allow it time to start.
        s.llm.first_token_timeout = std::time::Duration::from_secs(120);
        s.llm.idle_timeout = std::time::Duration::from_secs(60);
    })
    .await;
    assert_eq!(app.ctx.system.chats.provider(), "openai");
    let token = app.session_token().await;

    // The server waits up to two minutes for a first token; the test's usual client gives up
    // after 30 seconds, which a busy machine can exceed while the model starts.
    let patient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .unwrap();
    let chat = |path: &str, body: serde_json::Value| {
        patient
            .post(app.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let resp = chat(
        "/v1/chat/tools",
        json!({
            "messages": [{"role": "user", "content": "How do I reset my password?"}],
            "enable_tool_calling": false
        }),
    )
    .await
    .expect("request sent");
    // `sse_json` checks the framing of every event and the closing `[DONE]`.
    let events = sse_json(resp).await;
    let text = delta_text(&events);
    assert!(
        events.len() >= 3,
        "the answer arrives in pieces: {events:?}"
    );
    assert!(!text.trim().is_empty(), "{events:?}");

    let resp = chat("/v1/chat", json!({"prompt": "Say hello."}))
        .await
        .expect("request sent");
    let events = sse_json(resp).await;
    let text = content_text(&events);
    assert!(!text.trim().is_empty(), "{events:?}");
}
