//! The ticket actor as its callers see it, on a whole actor system.

use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::domain::TicketStatus;
use crate::testkit::{eventually, kit, kit_clocked, kit_with, Kit};
use crate::MessageId;

async fn say(k: &Kit, key: &TicketKey, author: Participant, text: &str) -> Message {
    let content = MessageBody::parse(text).unwrap();
    post_message(&k.system.tickets, key, author, content, None)
        .await
        .unwrap()
}

async fn view(k: &Kit, key: &TicketKey) -> serde_json::Value {
    let bytes = k.system.tickets.view(key, None).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn frame(event: &Event) -> serde_json::Value {
    serde_json::from_slice(&event.frame).unwrap()
}

async fn subscribe(k: &Kit, key: &TicketKey, since: Option<MessageId>) -> Subscription {
    k.system.tickets.subscribe(key, since).await.unwrap()
}

#[tokio::test]
async fn every_change_reaches_a_subscriber_in_order_and_shows_in_the_view() {
    let k = kit().await;
    let key = k.open_ticket().await;
    let mut sub = subscribe(&k, &key, None).await;
    let first: serde_json::Value = serde_json::from_slice(&sub.subscribed).unwrap();
    assert_eq!(first["type"], "subscribed");

    let hello = say(&k, &key, Participant::User, "Hello?").await;
    let read = Command::MarkRead {
        reader: Participant::Admin,
    };
    let read = k.system.tickets.run(&key, read).await.unwrap();
    assert_eq!(read.into_read().unwrap(), Some(hello.id));
    let pending = Command::Change(TicketChange::status(TicketStatus::Pending));
    k.system.tickets.run(&key, pending).await.unwrap();

    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(frame(&sub.events.recv().await.unwrap())["type"].clone());
    }
    assert_eq!(kinds, ["new_message", "ticket_update", "status_change"]);
    let v = view(&k, &key).await;
    assert_eq!(v["status"], "pending");
    assert_eq!(v["messages"][0]["content"], "Hello?");
    assert_eq!(v["messages"][0]["read_by"], serde_json::json!(["admin"]));
}

#[tokio::test]
async fn a_post_retried_with_its_idempotency_key_is_made_once() {
    let k = kit().await;
    let key = k.open_ticket().await;
    let post = |text: &str| {
        let content = MessageBody::parse(text).unwrap();
        let retry = crate::domain::IdempotencyKey::parse("retry-1").unwrap();
        post_message(
            &k.system.tickets,
            &key,
            Participant::User,
            content,
            Some(retry),
        )
    };
    let made = post("Once").await.unwrap();
    assert_eq!(post("Once").await.unwrap(), made);
    let other = post("Something else").await;
    assert!(matches!(other, Err(TicketError::KeyReused)));
    let messages = view(&k, &key).await["messages"].as_array().unwrap().len();
    assert_eq!(messages, 1);
}

#[tokio::test]
async fn a_closed_ticket_takes_no_posts_and_a_visitor_reply_reopens_a_resolved_one() {
    let k = kit().await;
    let key = k.open_ticket().await;
    let tickets = &k.system.tickets;
    let resolved = TicketChange::status(TicketStatus::Resolved);
    change(tickets, &key, resolved).await.unwrap();
    say(&k, &key, Participant::User, "Still broken").await;
    assert_eq!(view(&k, &key).await["status"], "open");

    let closed = TicketChange::status(TicketStatus::Closed);
    change(tickets, &key, closed).await.unwrap();
    let content = MessageBody::parse("Hello?").unwrap();
    let posted = post_message(tickets, &key, Participant::User, content, None).await;
    assert!(matches!(posted, Err(TicketError::Closed)));
}

#[tokio::test]
async fn missed_messages_are_replayed_from_memory_or_from_the_store() {
    let tickets = TicketConfig {
        recent_messages: 3,
        ..TicketConfig::default()
    };
    let k = kit_with(tickets, Default::default(), Default::default()).await;
    let key = k.open_ticket().await;
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push(say(&k, &key, Participant::User, &format!("m{i}")).await);
    }
    let contents = |events: Vec<Event>| -> Vec<String> {
        let payloads = events
            .iter()
            .map(|e| frame(e)["payload"]["content"].clone());
        payloads.map(|c| c.as_str().unwrap().to_owned()).collect()
    };

    let recent = subscribe(&k, &key, Some(sent[3].id)).await;
    let Replay::Ready(events) = recent.replay else {
        panic!("the newest messages are in memory");
    };
    assert_eq!(contents(events), ["m4", "m5"]);

    let older = subscribe(&k, &key, Some(sent[0].id)).await;
    let Replay::Loading(loading) = older.replay else {
        panic!("older messages come from the store");
    };
    let events = loading.await.unwrap().unwrap();
    assert_eq!(contents(events), ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(older.last_message_id, Some(sent[5].id));
}

/// A kit whose tickets check for idleness often, on a clock that moves only when told.
async fn clocked() -> (Kit, ManualClock) {
    let clock = ManualClock::new(crate::clock::now_millis());
    let tickets = TicketConfig {
        tick_interval: Duration::from_millis(20),
        ..TicketConfig::default()
    };
    let clocked = std::sync::Arc::new(clock.clone());
    let k = kit_clocked(tickets, Default::default(), Default::default(), clocked).await;
    (k, clock)
}

/// Time enough, by the ticket's clock, for an unused actor to passivate.
fn idle_timeout(k: &Kit) -> chrono::Duration {
    let idle = k.system.tickets.config().idle_timeout;
    chrono::Duration::from_std(idle).unwrap() + chrono::Duration::seconds(1)
}

#[tokio::test]
async fn an_idle_ticket_passivates_and_comes_back_with_everything_it_wrote() {
    let (k, clock) = clocked().await;
    let key = k.open_ticket().await;
    say(&k, &key, Participant::User, "Before the nap").await;
    assert_eq!(k.system.tickets.active(), 1);
    // Idle checks before the timeout has passed keep it.
    assert!(k.system.tickets.tick(&key).await.unwrap());
    clock.advance(idle_timeout(&k));
    // Its own ticker, not the test, finds it idle now.
    eventually("the idle ticket passivates", async || {
        k.system.tickets.active() == 0
    })
    .await;

    say(&k, &key, Participant::Admin, "After the nap").await;
    let v = view(&k, &key).await;
    let messages = v["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "Before the nap");
}

#[tokio::test]
async fn a_watched_ticket_does_not_passivate() {
    let (k, clock) = clocked().await;
    let key = k.open_ticket().await;
    let watching = subscribe(&k, &key, None).await;
    clock.advance(idle_timeout(&k));
    // Idle by the clock, but the subscriber keeps the actor.
    assert!(k.system.tickets.tick(&key).await.unwrap());
    assert_eq!(k.system.tickets.active(), 1);
    // Unwatched and idle again (the probe `tick` waits with counts as a request), it goes.
    drop(watching);
    clock.advance(idle_timeout(&k));
    assert!(!k.system.tickets.tick(&key).await.unwrap());
}
