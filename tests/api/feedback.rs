//! Knowing how the assistant does: the visitor's thumbs up or down on each answer, seen by
//! agents in the ticket's chat, and how each conversation ended (resolved, escalated,
//! abandoned), counted by the API over a time range and on `/metrics`.

use std::sync::Arc;

use fleety_actors::clock::{Clock, ManualClock};
use serde_json::{json, Value};

use crate::helpers::*;

const ANSWERED: &str = "How do I reset my password?";
const UNANSWERED: &str = "Do you have a mobile app?";
const HUMAN: &str = "I want to talk to a human";

/// A server with a project of its own: `/metrics` is shared by every server of the test
/// binary, and its counters are labelled by project.
async fn spawn_own(clock: &ManualClock) -> TestApp {
    spawn_with(Options {
        clock: Arc::new(clock.clone()),
        project: Some(own_project()),
        ..Options::default()
    })
    .await
}

/// The clock's time, as a query names it.
fn time_of(clock: &ManualClock) -> String {
    clock
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn own_project() -> String {
    format!("fb_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Asks on `/v1/chat/tools`; the answer's text and its turn id, checking that every frame names
/// the same turn.
async fn ask(app: &TestApp, token: &str, messages: Value) -> (String, String) {
    let resp = app
        .chat(
            "/v1/chat/tools",
            token,
            json!({"messages": messages, "enable_tool_calling": true}),
        )
        .await;
    let events = sse_json(resp).await;
    let id = events[0]["turn_id"].as_str().expect("a turn id").to_owned();
    assert!(
        events.iter().all(|e| e["turn_id"] == id.as_str()),
        "{events:?}"
    );
    (delta_text(&events), id)
}

/// Asks for a person; the tool call's answer.
async fn hand_over(app: &TestApp, token: &str, messages: Value) -> Value {
    let resp = app
        .chat(
            "/v1/chat/tools",
            token,
            json!({"messages": messages, "enable_tool_calling": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["type"], "tool_call", "{answer}");
    answer
}

async fn rate(app: &TestApp, token: Option<&str>, turn: &str, body: Value) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(&format!("/v1/chat/turns/{turn}/feedback")))
        .json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

async fn outcomes(app: &TestApp, query: &str) -> Value {
    let resp = app
        .admin_get(&format!("/v1/projects/demo/assistant/outcomes{query}"))
        .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// The value of the project's counter line `name{project=...,<label>}` on `/metrics`, 0 when
/// the line is missing.
async fn counter(app: &TestApp, name: &str, label: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let line = format!("{name}{{project=\"{}\",{label}}} ", app.project);
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

#[tokio::test]
async fn a_visitor_rates_an_answer_changes_the_rating_and_agents_see_it_in_the_ticket_chat() {
    let app = spawn_app().await;
    let token = app.session_token().await;
    let question = json!({"role": "user", "content": ANSWERED});
    let (answer, turn) = ask(&app, &token, json!([question])).await;
    assert!(answer.contains("password"), "{answer}");

    let resp = rate(&app, Some(&token), &turn, json!({"rating": "up"})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"turn_id": turn, "rating": "up"}));
    // Changed, by the same session.
    let resp = rate(&app, Some(&token), &turn, json!({"rating": "down"})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["rating"], "down");

    // Only "up" or "down".
    for bad in [json!({"rating": "meh"}), json!({"rating": 1}), json!({})] {
        let resp = rate(&app, Some(&token), &turn, bad.clone()).await;
        assert_eq!(resp.status(), 400, "{bad}");
        assert!(!error_of(&resp.json().await.unwrap()).is_empty());
    }
    // Only the session's own answers: another session's, an unknown id, or no token.
    let other = app.session_token().await;
    let resp = rate(&app, Some(&other), &turn, json!({"rating": "up"})).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        error_of(&resp.json().await.unwrap()),
        "this session has no such answer"
    );
    for unknown in ["not-an-id", &uuid::Uuid::new_v4().to_string()] {
        let resp = rate(&app, Some(&token), unknown, json!({"rating": "up"})).await;
        assert_eq!(resp.status(), 404, "{unknown}");
    }
    assert_eq!(
        rate(&app, None, &turn, json!({"rating": "up"}))
            .await
            .status(),
        401
    );

    // The visitor asks for a person: the ticket's chat shows the rating to agents.
    let conversation = json!([
        question,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": HUMAN},
    ]);
    let opened = hand_over(&app, &token, conversation).await;
    assert!(opened["turn_id"].is_string(), "{opened}");
    let slug = opened["ticket_slug"].as_str().unwrap();
    let chat: Value = app
        .admin_get(&format!("/v1/projects/demo/tickets/{slug}/chat"))
        .await
        .json()
        .await
        .unwrap();
    let turns = chat["turns"].as_array().unwrap();
    let rated = turns.iter().find(|t| t["id"] == turn.as_str()).unwrap();
    assert_eq!(rated["feedback"], "down");
    assert!(
        turns
            .iter()
            .filter(|t| t["id"] != turn.as_str())
            .all(|t| t.get("feedback").is_none()),
        "{turns:?}"
    );
    // A visitor's own message is not an answer to rate.
    let asked = turns.iter().find(|t| t["role"] == "user").unwrap();
    let id = asked["id"].as_str().unwrap();
    assert_eq!(
        rate(&app, Some(&token), id, json!({"rating": "up"}))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn each_conversation_ends_resolved_escalated_or_abandoned_on_the_api_and_metrics() {
    let clock = manual_clock();
    let app = spawn_own(&clock).await;
    let started = time_of(&clock);

    // Answered and rated up: resolved once it ends.
    let resolved = app.session_token().await;
    let (_, turn) = ask(
        &app,
        &resolved,
        json!([{"role": "user", "content": ANSWERED}]),
    )
    .await;
    let up = rate(&app, Some(&resolved), &turn, json!({"rating": "up"})).await;
    assert_eq!(up.status(), 200);
    // Handed to a person: escalated at once.
    let escalated = app.session_token().await;
    hand_over(
        &app,
        &escalated,
        json!([{"role": "user", "content": HUMAN}]),
    )
    .await;
    // Offered a person for a question the help center does not answer, and gone.
    let offered = app.session_token().await;
    let (text, _) = ask(
        &app,
        &offered,
        json!([{"role": "user", "content": UNANSWERED}]),
    )
    .await;
    assert!(text.contains("Shall I pass this to the team?"), "{text}");
    // Answered, but rated down, and gone.
    let disliked = app.session_token().await;
    let (_, turn) = ask(
        &app,
        &disliked,
        json!([{"role": "user", "content": ANSWERED}]),
    )
    .await;
    let down = rate(&app, Some(&disliked), &turn, json!({"rating": "down"})).await;
    assert_eq!(down.status(), 200);

    // Each conversation's row is written just after its answer or rating.
    let mut now = Value::Null;
    eventually("every conversation is stored", async || {
        now = outcomes(&app, "").await;
        now["open"] == 3 && now["feedback"]["down"] == 1
    })
    .await;
    assert_eq!(
        (
            &now["resolved"],
            &now["escalated"],
            &now["abandoned"],
            &now["open"]
        ),
        (&json!(0), &json!(1), &json!(0), &json!(3)),
        "{now}"
    );
    assert_eq!(now["feedback"], json!({"up": 1, "down": 1}));
    let escalations = "outcome=\"escalated\"";
    assert_eq!(
        counter(&app, "fleety_assistant_conversations_total", escalations).await,
        1
    );
    assert_eq!(
        counter(
            &app,
            "fleety_assistant_conversations_total",
            "outcome=\"resolved\""
        )
        .await,
        0
    );
    assert_eq!(
        counter(&app, "fleety_assistant_feedback_total", "rating=\"up\"").await,
        1
    );
    assert_eq!(
        counter(&app, "fleety_assistant_feedback_total", "rating=\"down\"").await,
        1
    );

    // Half an hour without activity ends the others.
    clock.advance(chrono::Duration::minutes(30));
    let ended = outcomes(&app, "").await;
    assert_eq!(
        (
            &ended["resolved"],
            &ended["escalated"],
            &ended["abandoned"],
            &ended["open"]
        ),
        (&json!(1), &json!(1), &json!(2), &json!(0)),
        "{ended}"
    );
    for (outcome, count) in [("resolved", 1), ("escalated", 1), ("abandoned", 2)] {
        let label = format!("outcome=\"{outcome}\"");
        let counted = counter(&app, "fleety_assistant_conversations_total", &label).await;
        assert_eq!(counted, count, "{outcome}");
    }

    // A range is `[from, to)` by when conversations started.
    let later = time_of(&clock);
    let none = outcomes(&app, &format!("?from={later}")).await;
    assert_eq!(
        (&none["resolved"], &none["open"]),
        (&json!(0), &json!(0)),
        "{none}"
    );
    let all = outcomes(&app, &format!("?from={started}&to={later}")).await;
    assert_eq!(all["abandoned"], 2, "{all}");

    // Counted from the store: a restart keeps them.
    let restart = app.stop().await;
    let app = spawn_with(Options {
        clock: Arc::new(clock.clone()),
        ..restart.options()
    })
    .await;
    let after = outcomes(&app, "").await;
    assert_eq!(after, ended);
}

#[tokio::test]
async fn an_outcomes_range_is_checked() {
    let app = spawn_app().await;
    for (query, says) in [
        ("?from=yesterday", "from must be an RFC 3339 time"),
        ("?to=2026-13-01T00:00:00Z", "to must be an RFC 3339 time"),
        (
            "?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z",
            "from must be before to",
        ),
        (
            "?from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "at most 366 days",
        ),
    ] {
        let resp = app
            .admin_get(&format!("/v1/projects/demo/assistant/outcomes{query}"))
            .await;
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert!(error_of(&body).contains(says), "{query}: {body}");
    }
    // Agents only.
    let resp = app.get("/v1/projects/demo/assistant/outcomes").await;
    assert_eq!(resp.status(), 401);
}
