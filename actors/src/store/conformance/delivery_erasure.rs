//! Conformance case of a webhook attempt under way while its ticket is erased (issue 29): the
//! attempt's outcome is not written back, so the delivery, which carries the ticket's words,
//! does not come back after the erasure.

use std::sync::Arc;

use chrono::Duration;

use super::{contact, endpoint, stored_project, ticket_with_everything};
use crate::clock::now_millis;
use crate::store::Store;

pub async fn an_erased_tickets_delivery_is_not_written_back_by_its_attempt(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let e = endpoint(&p.id, "https://a.example/hook");
    store.create_endpoint(&e, 20).await.unwrap();
    let ada = contact(&p.id, 1, "ada");
    store.put_contact(&ada).await.unwrap();
    let (gone, _) = ticket_with_everything(&store, &p.id, &e, "erased-hook-003", &ada).await;
    // The dispatcher reads one of the ticket's deliveries before the erasure...
    let log = store.list_deliveries(&p.id, e.id, 10).await.unwrap();
    let read = log
        .iter()
        .find(|d| d.concerns_ticket(gone.slug.as_str()))
        .unwrap()
        .clone();
    assert_eq!(read.ticket().as_deref(), Some(gone.slug.as_str()));
    assert!(store.erase_ticket(&p.id, &gone.slug).await.unwrap());

    // ...and records its attempt after it.
    let mut attempted = read.clone();
    attempted.attempts += 1;
    attempted.last_status = Some(500);
    attempted.next_attempt_at = Some(now_millis() + Duration::minutes(5));
    store
        .put_delivery(&attempted, read.next_attempt_at)
        .await
        .unwrap();
    assert_eq!(
        store.get_delivery(&p.id, e.id, &read.id).await.unwrap(),
        None
    );
    assert!(store
        .list_deliveries(&p.id, e.id, 10)
        .await
        .unwrap()
        .is_empty());
    let later = now_millis() + Duration::hours(1);
    let due = store.due_deliveries(later, 10_000).await.unwrap();
    assert!(due.iter().all(|d| d.id != read.id));
}
