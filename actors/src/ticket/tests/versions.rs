//! Changes of the ticket's own fields: each a new version, and several fields one change.

use super::*;
use crate::domain::TicketStatus;

/// The stores keep a ticket row's newer version by its `updated_at`, so every change must move
/// it forward: with the clock standing still, and with the clock behind the ticket's last
/// version (a ticket that moved here from a node whose clock runs ahead).
#[tokio::test]
async fn every_ticket_change_has_a_later_version_than_the_one_before() {
    let start = crate::clock::now_millis();
    let clock = crate::clock::ManualClock::new(start);
    let (tickets, kb, chat) = Default::default();
    let k =
        crate::testkit::kit_clocked(tickets, kb, chat, std::sync::Arc::new(clock.clone())).await;
    let key = k.open_ticket().await;
    let tickets = &k.system.tickets;
    let opened = k.store.get_ticket(&key.project, &key.slug).await.unwrap();
    let mut versions = vec![opened.unwrap().updated_at];
    let mut last = None;
    for i in 0..30 {
        if i == 15 {
            clock.advance(-chrono::Duration::hours(1));
        }
        let changed = if i % 2 == 0 {
            let status = [TicketStatus::Pending, TicketStatus::Open][i / 2 % 2];
            change(tickets, &key, TicketChange::status(status))
                .await
                .unwrap()
        } else {
            let agent = crate::domain::AgentName::parse(&format!("Agent {i}")).unwrap();
            change(tickets, &key, TicketChange::assignee(Some(agent)))
                .await
                .unwrap()
        };
        versions.push(changed.updated_at);
        last = Some(changed);
    }
    let steps: Vec<i64> = versions
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    assert_eq!(
        steps,
        vec![1; 30],
        "each change one millisecond past the one before"
    );
    let stored = k.store.get_ticket(&key.project, &key.slug).await.unwrap();
    assert_eq!(stored, last, "the store holds the last change");
}

/// A status and an assignee changed together are one change: the ticket's one new version and
/// both webhooks go to the store in one batch, and subscribers hear one event of each kind,
/// both of that version.
#[tokio::test]
async fn a_status_and_an_assignee_changed_together_are_one_batch() {
    use crate::store::WebhookStore;
    use crate::webhook::{Endpoint, EventType};
    let k = kit().await;
    let key = k.open_ticket().await;
    let hook = Endpoint {
        id: uuid::Uuid::new_v4(),
        project_id: k.project.clone(),
        url: "https://hooks.example.com/fleety".into(),
        events: vec![EventType::TicketStatusChanged, EventType::TicketAssigned],
        secret: "whsec_dGVzdA==".into(),
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        created_at: crate::clock::now_millis(),
    };
    k.system.hooks.set(&k.project, vec![hook.clone()]);
    let mut sub = k.system.tickets.subscribe(&key, None).await.unwrap();
    let batches_before = k.store.batch_sizes().len();

    let sam = crate::domain::AgentName::parse("Sam").unwrap();
    let mut both = TicketChange::status(TicketStatus::Pending);
    both.assignee = Some(Some(sam.clone()));
    let changed = change(&k.system.tickets, &key, both).await.unwrap();
    assert_eq!(
        (changed.status, changed.assignee.as_ref()),
        (TicketStatus::Pending, Some(&sam))
    );

    assert_eq!(
        k.store.batch_sizes()[batches_before..],
        [3],
        "one batch: the ticket's new version and its two webhooks"
    );
    let stored = k.store.get_ticket(&key.project, &key.slug).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&changed));
    let deliveries = k.store.list_deliveries(&k.project, hook.id, 10).await;
    let mut events: Vec<EventType> = deliveries.unwrap().iter().map(|d| d.event).collect();
    events.sort_by_key(|e| e.as_str());
    assert_eq!(
        events,
        [EventType::TicketAssigned, EventType::TicketStatusChanged]
    );

    let version = crate::events::rfc3339(changed.updated_at);
    let mut heard = Vec::new();
    for _ in 0..2 {
        let event = sub.events.recv().await.unwrap();
        let event: serde_json::Value = serde_json::from_slice(&event.frame).unwrap();
        assert_eq!(event["payload"]["updated_at"], version.as_str(), "{event}");
        heard.push(event["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(heard, ["status_change", "assigned"]);
    // A later post is the next thing heard: nothing else came of the change.
    let content = MessageBody::parse("Thanks").unwrap();
    let posted = post_message(&k.system.tickets, &key, Participant::User, content, None);
    posted.await.unwrap();
    let next = sub.events.recv().await.unwrap();
    let next: serde_json::Value = serde_json::from_slice(&next.frame).unwrap();
    assert_eq!(next["type"], "new_message");
}
