//! The write pipeline, driven through the in-memory store's gate.

use super::*;
use crate::testkit::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_behind_a_batch_in_flight_go_together_in_order() {
    let f = fixture().await;
    let first = post(&f, "one").await;
    f.kit.store.holding(1).await;
    let second = post(&f, "two").await;
    let third = post(&f, "three").await;
    settled_mailbox(&f).await;
    // One batch per ticket at a time: the later posts wait for the first batch's outcome.
    assert_eq!(f.kit.store.held(), 1);

    f.kit.store.release();
    assert_eq!(first.await.unwrap().unwrap().content.as_str(), "one");
    f.kit.store.holding(1).await;
    f.kit.store.release();
    assert_eq!(second.await.unwrap().unwrap().content.as_str(), "two");
    assert_eq!(third.await.unwrap().unwrap().content.as_str(), "three");
    assert_eq!(f.kit.store.batch_sizes(), vec![1, 2]);
    assert_eq!(stored(&f).await, ["one", "two", "three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_refuses_the_writes_queued_behind_it_and_the_ticket_reloads() {
    let f = fixture().await;
    let (first, second) = one_held_one_queued(&f).await;

    f.kit.store.fail();
    assert!(matches!(
        first.await.unwrap(),
        Err(TicketError::Unavailable(_))
    ));
    assert!(matches!(
        second.await.unwrap(),
        Err(TicketError::Unavailable(_))
    ));
    // The write behind the failed batch was never sent.
    assert_eq!(f.kit.store.batch_sizes(), vec![1]);
    assert!(stored(&f).await.is_empty());

    // The next request finds a fresh actor, loaded from what the store holds. It goes through
    // `Tickets::call`, which steps past the stopping actor if the registry still names it.
    let third = spawn_call(&f, |reply| TicketMsg::Run {
        cmd: Command::Post {
            author: Participant::User,
            content: MessageBody::parse("three").unwrap(),
            idempotency_key: None,
            agent: None,
        },
        by: None,
        reply,
    });
    f.kit.store.holding(1).await;
    f.kit.store.release();
    let third = third.await.unwrap().unwrap().into_message().unwrap();
    assert_eq!(third.content.as_str(), "three");
    assert_eq!(stored(&f).await, ["three"]);
    let view = f
        .tickets
        .call(&f.key, |reply| TicketMsg::Get { page: None, reply })
        .await
        .unwrap();
    let view: serde_json::Value = serde_json::from_slice(&view).unwrap();
    assert_eq!(view["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_flight_when_its_actor_crashes_lands_before_its_successor_loads() {
    let f = fixture().await;
    let first = post(&f, "one").await;
    f.kit.store.holding(1).await;
    f.tickets.crash(&f.key).await.unwrap();
    // A crash drops the actor's state with its callers' reply ports: the HTTP side answers
    // 503 ("restarted while handling the request"), and a client retries with its
    // idempotency key.
    assert!(first.await.is_err());
    // The successor cannot load the ticket while its predecessor's batch is out.
    let next = spawn_call(&f, |reply| TicketMsg::Get { page: None, reply });
    eventually("the successor waits for the writer lease", async || {
        waiting_for_lease(&f)
    })
    .await;
    assert!(!next.is_finished());

    f.kit.store.release();
    let view: serde_json::Value = serde_json::from_slice(&next.await.unwrap().unwrap()).unwrap();
    assert_eq!(view["messages"][0]["content"], "one");
    assert_eq!(stored(&f).await, ["one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_store_loses_is_refused_instead_of_waited_for() {
    let f = fixture().await;
    let first = post(&f, "one").await;
    f.kit.store.holding(1).await;
    f.kit.store.lose();
    assert!(matches!(
        first.await.unwrap(),
        Err(TicketError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_tickets_sends_their_queued_writes_and_answers_every_caller() {
    let f = fixture().await;
    let (first, second) = one_held_one_queued(&f).await;

    // As at shutdown: the actor system stops, and with it every ticket actor.
    let system = f.kit.system.clone();
    let stopped = tokio::spawn(async move { system.stop().await });
    f.kit.store.release();
    // The stopping actor sends what it had queued, as one more batch.
    f.kit.store.holding(1).await;
    f.kit.store.release();
    assert_eq!(first.await.unwrap().unwrap().content.as_str(), "one");
    assert_eq!(second.await.unwrap().unwrap().content.as_str(), "two");
    stopped.await.unwrap();
    assert_eq!(stored(&f).await, ["one", "two"]);
}

/// Tickets the registry routes requests for, activated or not.
fn routes(f: &Fixture) -> usize {
    f.tickets.deps.registry.routes()
}

/// Whether an activation of the ticket waits for its writer lease. The lease's `Arc` is held
/// by the map of leases, by the guard of the writer that has it, and by each activation
/// waiting to take it (`WriterLease::drop` counts the same way).
fn waiting_for_lease(f: &Fixture) -> bool {
    let lease = f.tickets.deps.leases.get(&f.key);
    lease.is_some_and(|lease| std::sync::Arc::strong_count(&lease) > 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_abandoned_mid_way_leaves_no_route_behind() {
    let f = fixture().await;
    // Hold the ticket's writer lease, as a predecessor whose last batch is still with the
    // store does, so an activation waits part way through.
    let lease = f
        .tickets
        .deps
        .leases
        .entry(f.key.clone())
        .or_default()
        .clone();
    let held = lease.lock_owned().await;
    let waiting = {
        let (tickets, key) = (f.tickets.clone(), f.key.clone());
        tokio::spawn(async move { tickets.actor(&key).await.map(|_| ()) })
    };
    eventually("the activation waits for the lease", async || {
        waiting_for_lease(&f)
    })
    .await;
    assert!(!waiting.is_finished(), "the activation waits for the lease");
    assert_eq!(routes(&f), 1);
    // The caller goes away, as a client that disconnects does.
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert_eq!(
        routes(&f),
        0,
        "an abandoned activation leaves no route behind"
    );
    drop(held);
    f.tickets.actor(&f.key).await.unwrap();
    assert_eq!(routes(&f), 1, "one route, to the running actor");
}

/// Who acts in [`audit_rides_in_the_changes_batch_and_fails_with_it`].
fn dana() -> crate::audit::AuditBy {
    crate::audit::AuditBy {
        actor: crate::audit::AuditActor::Member {
            id: uuid::Uuid::from_u128(7),
            name: "Dana".into(),
            token: None,
        },
        ip: Some("203.0.113.7".into()),
    }
}

async fn trail(f: &Fixture) -> Vec<crate::audit::AuditRecord> {
    use crate::store::AuditStore;
    let query = crate::audit::AuditQuery {
        limit: 50,
        ..Default::default()
    };
    let page = f.kit.store.list_audit(&f.key.project, &query).await;
    page.unwrap().records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rides_in_the_changes_batch_and_fails_with_it() {
    use crate::domain::TicketStatus;
    let f = fixture().await;
    let pending = TicketChange::status(TicketStatus::Pending);
    let run = |change: TicketChange| {
        let tickets = f.tickets.clone();
        let key = f.key.clone();
        let acting = crate::audit::acting(Some(dana()), async move {
            tickets.run(&key, Command::Change(change)).await
        });
        tokio::spawn(acting)
    };

    // A change that fails takes its record with it.
    let failed = run(pending.clone());
    f.kit.store.holding(1).await;
    f.kit.store.fail();
    assert!(failed.await.unwrap().is_err());
    assert!(trail(&f).await.is_empty());

    // One that lands lands with its record, in the same batch.
    let landed = run(pending);
    f.kit.store.holding(1).await;
    f.kit.store.release();
    landed.await.unwrap().unwrap();
    assert_eq!(
        f.kit.store.batch_sizes().last(),
        Some(&2),
        "the ticket and its record"
    );
    let records = trail(&f).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, "ticket.status_changed");
    assert_eq!(records[0].actor, dana().actor);
    assert_eq!(records[0].ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(
        records[0].changes,
        serde_json::json!({"status": {"before": "open", "after": "pending"}})
    );

    // Without anyone acting (a visitor, the assistant), nothing is recorded.
    let quiet = tokio::spawn({
        let (tickets, key) = (f.tickets.clone(), f.key.clone());
        async move {
            let open = TicketChange::status(TicketStatus::Open);
            tickets.run(&key, Command::Change(open)).await
        }
    });
    f.kit.store.holding(1).await;
    f.kit.store.release();
    quiet.await.unwrap().unwrap();
    assert_eq!(trail(&f).await.len(), 1);
}
