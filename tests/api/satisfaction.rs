//! Satisfaction ratings (CSAT): the visitor rates a resolved ticket once, with a score of 1 to
//! 5 and an optional comment; the rating is kept on the ticket, shown in the listing, told on
//! the ticket's socket and the project feed, and counted on `/metrics`. A project can turn the
//! ratings off.

use serde_json::{json, Value};

use crate::helpers::*;

fn rating(slug: &str) -> String {
    format!("/v1/tickets/demo/{slug}/satisfaction")
}

async fn resolve(app: &TestApp, slug: &str) {
    let path = format!("/v1/tickets/demo/{slug}");
    let resp = app.admin_patch(&path, json!({"status": "resolved"})).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_visitor_rates_a_resolved_ticket_once_and_the_agents_see_and_hear_it() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Refund please").await;
    assert_eq!(app.ticket(&slug).await["satisfaction"], Value::Null);

    // Not before the ticket is solved.
    let early = app.post_json(&rating(&slug), json!({"score": 5})).await;
    assert_eq!(early.status(), 409);
    let body: Value = early.json().await.unwrap();
    assert!(error_of(&body).contains("resolved"), "{body}");

    resolve(&app, &slug).await;
    let mut visitor = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut visitor).await["type"], "subscribed");
    let mut feed = app.connect_feed().await;
    assert_eq!(next_event(&mut feed).await["type"], "subscribed");

    let resp = app
        .post_json(
            &rating(&slug),
            json!({"score": 4, "comment": "  Quick and kind, thanks!  "}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let ticket: Value = resp.json().await.unwrap();
    assert_eq!(ticket["satisfaction"]["score"], 4);
    assert_eq!(
        ticket["satisfaction"]["comment"], "Quick and kind, thanks!",
        "the comment is trimmed"
    );
    assert_eq!(ticket["status"], "resolved", "rating changes nothing else");

    let event = next_event(&mut visitor).await;
    assert_eq!(event["type"], "ticket_update");
    assert_eq!(event["payload"]["satisfaction"], ticket["satisfaction"]);
    assert_eq!(event["payload"]["updated_at"], ticket["updated_at"]);
    let on_feed = next_event(&mut feed).await;
    assert_eq!(on_feed["type"], "ticket_update");
    assert_eq!(on_feed["ticket"], slug.as_str());
    assert_eq!(on_feed["payload"], event["payload"]);

    // Rated once: a second rating, even a different one, is refused and changes nothing.
    let again = app.post_json(&rating(&slug), json!({"score": 1})).await;
    assert_eq!(again.status(), 409);
    let body: Value = again.json().await.unwrap();
    assert!(error_of(&body).contains("rated already"), "{body}");
    assert_eq!(
        app.ticket(&slug).await["satisfaction"],
        ticket["satisfaction"]
    );
    let listed: Value = app
        .admin_get("/v1/projects/demo/tickets")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["tickets"][0]["satisfaction"]["score"], 4,
        "the listing shows the rating"
    );

    // The counters are the process's, shared with the other tests running beside this one and
    // rating other scores in the same project; no other test gives a 4.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("fleety_csat_ratings_total")
                && l.contains(&format!("project=\"{}\"", app.project))
                && l.contains("score=\"4\"")
        })
        .unwrap_or_else(|| panic!("no rating of 4 counted:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn ratings_are_validated_and_a_closed_ticket_can_be_rated_with_no_comment() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Cannot log in").await;
    resolve(&app, &slug).await;
    let long = "x".repeat(1001);
    for (body, why) in [
        (json!({"score": 0}), "score"),
        (json!({"score": 6}), "score"),
        (json!({"score": 3.5}), "score"),
        (json!({"score": "5"}), "score"),
        (json!({"score": null}), "score"),
        (json!({"comment": "great"}), "score"),
        (json!({"score": 5, "comment": long}), "1000"),
        (json!({"score": 5, "comment": "bad\u{0007}"}), "control"),
        (json!({"score": 5, "extra": 1}), "extra"),
    ] {
        let resp = app.post_json(&rating(&slug), body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
        let answer: Value = resp.json().await.unwrap();
        assert!(error_of(&answer).contains(why), "{body}: {answer}");
    }
    assert_eq!(app.ticket(&slug).await["satisfaction"], Value::Null);
    let missing = app
        .post_json(&rating("brave-lynx-777"), json!({"score": 5}))
        .await;
    assert_eq!(missing.status(), 404);

    // JSON Schema's integer: 5.0 is 5.
    let whole = app.create_ticket("Whole number").await;
    resolve(&app, &whole).await;
    let resp = app.post_json(&rating(&whole), json!({"score": 5.0})).await;
    assert_eq!(resp.status(), 201);

    let closed = app.create_ticket("Old problem").await;
    let path = format!("/v1/tickets/demo/{closed}");
    let resp = app.admin_patch(&path, json!({"status": "closed"})).await;
    assert_eq!(resp.status(), 200);
    let resp = app.post_json(&rating(&closed), json!({"score": 1})).await;
    assert_eq!(resp.status(), 201);
    let ticket: Value = resp.json().await.unwrap();
    assert_eq!(ticket["satisfaction"]["score"], 1);
    assert_eq!(ticket["satisfaction"]["comment"], "");
}

#[tokio::test]
async fn a_project_that_turns_ratings_off_refuses_them_until_it_turns_them_on() {
    let app = spawn_app().await;
    let project: Value = app
        .admin_get("/v1/projects/demo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(project["csat_enabled"], true, "on by default");
    let slug = app.create_ticket("Refund please").await;
    resolve(&app, &slug).await;

    let off = app
        .admin_patch("/v1/projects/demo", json!({"csat_enabled": false}))
        .await;
    assert_eq!(off.status(), 200);
    let off: Value = off.json().await.unwrap();
    assert_eq!(off["csat_enabled"], false);
    let bad = app
        .admin_patch("/v1/projects/demo", json!({"csat_enabled": "no"}))
        .await;
    assert_eq!(bad.status(), 400);

    let refused = app.post_json(&rating(&slug), json!({"score": 5})).await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert!(error_of(&body).contains("does not ask"), "{body}");

    let on = app
        .admin_patch("/v1/projects/demo", json!({"csat_enabled": true}))
        .await;
    assert_eq!(on.status(), 200);
    let resp = app.post_json(&rating(&slug), json!({"score": 5})).await;
    assert_eq!(resp.status(), 201);
}
