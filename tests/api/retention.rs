//! Retention (issue 29): a project's setting has the server erase, by itself, tickets that
//! have been resolved or closed for longer than it keeps them. Time passes on the manual
//! clock; a round comes every 50 ms of real time, and the tests wait for what it does.

use std::sync::Arc;

use chrono::Duration;
use serde_json::{json, Value};

use crate::helpers::*;

/// A server on `clock` whose retention rounds come every 50 ms. On CQL it has a keyspace of
/// its own: every server applies the retention of every project in its keyspace by its own
/// clock, and another test's clock may be far ahead of this one's.
async fn spawn_retaining(clock: &fleety_actors::clock::ManualClock) -> TestApp {
    static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut options = Options {
        clock: Arc::new(clock.clone()),
        keyspace: Some(format!("fleety_retention_{}_{n}", std::process::id())),
        ..Options::default()
    };
    options.settings.tickets.retention_every = std::time::Duration::from_millis(50);
    spawn_with(options).await
}

async fn finish(app: &TestApp, slug: &str, status: &str) {
    let resp = app
        .admin_patch(
            &format!("/v1/tickets/demo/{slug}"),
            json!({"status": status}),
        )
        .await;
    assert_eq!(resp.status(), 200, "{slug} becomes {status}");
}

async fn status_of(app: &TestApp, slug: &str) -> u16 {
    app.get(&format!("/v1/tickets/demo/{slug}"))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_setting_is_checked_shown_and_cleared() {
    let clock = manual_clock();
    let app = spawn_retaining(&clock).await;
    let project: Value = app
        .admin_get("/v1/projects/demo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(project["retention"], json!({"tickets_after_days": null}));
    for bad in [json!(0), json!(3651), json!(-1), json!("30"), json!(1.5)] {
        let resp = app
            .admin_patch(
                "/v1/projects/demo",
                json!({"retention": {"tickets_after_days": bad}}),
            )
            .await;
        assert_eq!(resp.status(), 400, "{bad} is refused");
        let body: Value = resp.json().await.unwrap();
        assert!(!error_of(&body).is_empty(), "{body}");
    }
    let set = app
        .admin_patch(
            "/v1/projects/demo",
            json!({"retention": {"tickets_after_days": 30.0}}),
        )
        .await;
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap()["retention"]["tickets_after_days"],
        30
    );
    // Leaving the field out changes nothing; null keeps everything again.
    let kept = app
        .admin_patch("/v1/projects/demo", json!({"retention": {}}))
        .await;
    assert_eq!(
        kept.json::<Value>().await.unwrap()["retention"]["tickets_after_days"],
        30
    );
    let cleared = app
        .admin_patch(
            "/v1/projects/demo",
            json!({"retention": {"tickets_after_days": null}}),
        )
        .await;
    assert_eq!(
        cleared.json::<Value>().await.unwrap()["retention"],
        json!({"tickets_after_days": null})
    );
}

#[tokio::test]
async fn finished_tickets_past_the_setting_are_erased_and_audited_and_the_rest_stay() {
    let clock = manual_clock();
    let app = spawn_retaining(&clock).await;
    let old_resolved = app.create_ticket("resolved long ago").await;
    let old_closed = app.create_ticket("closed long ago").await;
    let old_open = app.create_ticket("open all along").await;
    finish(&app, &old_resolved, "resolved").await;
    finish(&app, &old_closed, "closed").await;
    clock.advance(Duration::days(20));
    let recent = app.create_ticket("resolved lately").await;
    finish(&app, &recent, "resolved").await;
    let resp = app
        .admin_patch(
            "/v1/projects/demo",
            json!({"retention": {"tickets_after_days": 30}}),
        )
        .await;
    assert_eq!(resp.status(), 200);

    clock.advance(Duration::days(11));
    // Each erasure's record is written once it is done.
    let audit = async || -> Value {
        app.admin_get("/v1/projects/demo/audit?action=ticket.deleted")
            .await
            .json()
            .await
            .unwrap()
    };
    eventually("both erasures are in the audit trail", async || {
        audit().await["records"].as_array().unwrap().len() == 2
    })
    .await;
    assert_eq!(status_of(&app, &old_resolved).await, 404);
    assert_eq!(status_of(&app, &old_closed).await, 404);
    // Erased in the round that looked at every finished ticket of the project.
    assert_eq!(status_of(&app, &recent).await, 200, "finished 11 days ago");
    assert_eq!(
        status_of(&app, &old_open).await,
        200,
        "open tickets are kept"
    );
    let listed: Value = app
        .admin_get("/v1/projects/demo/tickets?limit=100")
        .await
        .json()
        .await
        .unwrap();
    let slugs: Vec<&str> = listed["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["slug"].as_str())
        .collect();
    assert!(!slugs.contains(&old_resolved.as_str()) && !slugs.contains(&old_closed.as_str()));

    let audit = audit().await;
    let records = audit["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{audit}");
    for r in records {
        assert_eq!(r["actor"]["kind"], "retention", "{r}");
        assert!(
            [old_resolved.as_str(), old_closed.as_str()]
                .contains(&r["target"]["id"].as_str().unwrap()),
            "{r}"
        );
        assert!(
            !r.to_string().contains("long ago"),
            "no title in the trail: {r}"
        );
    }

    // Twenty more days: the later one has been resolved 31 days too.
    clock.advance(Duration::days(20));
    eventually("the ticket resolved 31 days ago is erased", async || {
        status_of(&app, &recent).await == 404
    })
    .await;
    assert_eq!(status_of(&app, &old_open).await, 200);
}
