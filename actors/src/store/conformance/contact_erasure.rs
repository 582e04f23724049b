//! Conformance cases of a contact's erasure (issue 29): the tickets erased together, the
//! contact's record and ticket index, and the intents a restart finishes.

use std::sync::Arc;

use uuid::Uuid;

use super::{contact, emails_about, endpoint, stored_project, ticket_with_everything};
use crate::clock::now_millis;
use crate::contact::{ContactErasure, ContactQuery};
use crate::domain::Slug;
use crate::store::{MessageRange, Store};

pub async fn a_contacts_erasure_takes_its_tickets_and_record_and_leaves_the_others(
    store: Arc<dyn Store>,
) {
    let p = stored_project(&store).await;
    let e = endpoint(&p.id, "https://a.example/hook");
    store.create_endpoint(&e, 20).await.unwrap();
    let (ada, bob) = (contact(&p.id, 1, "ada"), contact(&p.id, 2, "bob"));
    store.put_contact(&ada).await.unwrap();
    store.put_contact(&bob).await.unwrap();
    let (one, one_session) =
        ticket_with_everything(&store, &p.id, &e, "adas-ticket-001", &ada).await;
    let (two, _) = ticket_with_everything(&store, &p.id, &e, "adas-ticket-002", &ada).await;
    let (kept, kept_session) =
        ticket_with_everything(&store, &p.id, &e, "bobs-ticket-003", &bob).await;
    let pid = &p.id;

    // Erased together, with a slug that names no ticket among them: counted by rows found.
    let never = Slug::parse("never-there-004").unwrap();
    let slugs = [one.slug.clone(), two.slug.clone(), never.clone()];
    assert_eq!(store.erase_tickets(pid, &slugs).await.unwrap(), 2);
    assert!(store.erase_contact(pid, ada.id).await.unwrap());

    for slug in [&one.slug, &two.slug] {
        assert_eq!(store.get_ticket(pid, slug).await.unwrap(), None);
        let left = store.list_messages(pid, slug, MessageRange::all()).await;
        assert!(left.unwrap().is_empty());
        assert!(store.list_notes(pid, slug).await.unwrap().is_empty());
        assert!(emails_about(&store, pid, slug).await.is_empty());
    }
    assert_eq!(emails_about(&store, pid, &kept.slug).await.len(), 2);
    assert!(store
        .list_chat_turns(pid, &one_session, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.get_contact(pid, ada.id).await.unwrap(), None);
    assert!(store
        .contact_tickets(pid, ada.id, 10)
        .await
        .unwrap()
        .is_empty());
    let log = store.list_deliveries(pid, e.id, 10).await.unwrap();
    assert!(
        log.iter().all(|d| d.concerns_ticket(kept.slug.as_str())),
        "{log:?}"
    );

    // The other contact keeps their record and ticket, whole.
    let all = ContactQuery {
        limit: 100,
        ..ContactQuery::default()
    };
    let listed = store.list_contacts(pid, &all).await.unwrap().contacts;
    assert_eq!(listed, std::slice::from_ref(&bob));
    let bobs: Vec<Slug> = store
        .contact_tickets(pid, bob.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.slug)
        .collect();
    assert_eq!(bobs, std::slice::from_ref(&kept.slug));
    let kept_messages = store
        .list_messages(pid, &kept.slug, MessageRange::all())
        .await
        .unwrap();
    assert_eq!(kept_messages.len(), 2);
    let kept_chat = store.list_chat_turns(pid, &kept_session, 10).await.unwrap();
    assert_eq!(kept_chat.len(), 1);

    // Again: nothing is found, and nothing fails.
    assert_eq!(store.erase_tickets(pid, &slugs).await.unwrap(), 0);
    assert!(!store.erase_contact(pid, ada.id).await.unwrap());
    assert_eq!(store.erase_tickets(pid, &[]).await.unwrap(), 0);
}

pub async fn contact_erasures_are_noted_listed_and_forgotten(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let erasure = |n: u128| ContactErasure {
        project_id: p.id.clone(),
        contact_id: Uuid::from_u128(n),
        requested_at: now_millis(),
    };
    let (a, b) = (erasure(1), erasure(2));
    for e in [&a, &a, &b] {
        store.put_contact_erasure(e).await.unwrap();
    }
    let mine = |all: Vec<ContactErasure>| -> Vec<ContactErasure> {
        let mut mine: Vec<ContactErasure> =
            all.into_iter().filter(|e| e.project_id == p.id).collect();
        mine.sort_by_key(|e| e.contact_id);
        mine
    };
    let pending = mine(store.pending_contact_erasures().await.unwrap());
    assert_eq!(pending, [a.clone(), b.clone()]);
    store
        .delete_contact_erasure(&p.id, a.contact_id)
        .await
        .unwrap();
    // Forgetting one that is gone is no error.
    store
        .delete_contact_erasure(&p.id, a.contact_id)
        .await
        .unwrap();
    assert_eq!(mine(store.pending_contact_erasures().await.unwrap()), [b]);
}
