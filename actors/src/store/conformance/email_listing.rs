//! Conformance cases of the outbox's listing (issue 28) and of emails about a ticket that is
//! erased while they are made or sent (issue 29).

use std::sync::Arc;

use chrono::TimeDelta;

use super::{email, emails_about, stored_project, ticket, ticket_emails, visitor_mail};
use crate::clock::now_millis;
use crate::domain::Slug;
use crate::email::{EmailCursor, EmailQuery, EmailStatus};
use crate::store::{Store, StoreError};

pub async fn emails_list_newest_first_per_ticket_and_page_by_page(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let other = stored_project(&store).await;
    let slug = Slug::parse("listed-ticket-001").unwrap();
    store
        .create_ticket(&ticket(&p.id, slug.as_str(), now_millis()), &[])
        .await
        .unwrap();
    let base = now_millis();
    // Five emails about no ticket, a second apart, and two about the ticket made after them.
    let mut ids = Vec::new();
    for n in 0..5 {
        let e = email(&p.id, n, base - TimeDelta::seconds(10 - i64::from(n)));
        store.put_email(&e, None).await.unwrap();
        ids.push(e.id);
    }
    let [burst, told] = ticket_emails(&store, &p.id, &slug).await;
    store
        .put_email(&email(&other.id, 9, base), None)
        .await
        .unwrap();

    let about = emails_about(&store, &p.id, &slug).await;
    let mut both = vec![burst.clone(), told.clone()];
    both.sort();
    let mut sorted = about.clone();
    sorted.sort();
    assert_eq!(sorted, both, "only the ticket's, and both");

    // Pages of three, newest first, without a repeat or a gap.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let q = EmailQuery {
            ticket: None,
            after: after.clone(),
            limit: 3,
        };
        let page = store.list_emails(&p.id, &q).await.unwrap();
        assert!(page.emails.len() <= 3);
        seen.extend(page.emails.iter().map(EmailCursor::of));
        assert!(page.emails.iter().all(|e| e.project_id == p.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut newest_first = seen.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, newest_first);
    assert_eq!(seen.len(), 7, "{seen:?}");
    let listed: Vec<&str> = seen.iter().map(|c| c.id.as_str()).collect();
    // The ticket's two were made last; the five before them, newest first.
    let oldest: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed[2..], oldest[..]);
    // A settled email is listed with what became of it, its body cleared.
    let page = store
        .list_emails(
            &p.id,
            &EmailQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let sent = page.emails.iter().find(|e| e.id == told).unwrap();
    assert_eq!(sent.status, EmailStatus::Sent);
    assert!(sent.text.is_empty() && sent.sent_at.is_some());
    assert_eq!(sent.ticket.as_ref(), Some(&slug));
    let q = EmailQuery {
        ticket: Some(Slug::parse("absent-ticket-002").unwrap()),
        after: None,
        limit: 10,
    };
    assert!(store
        .list_emails(&p.id, &q)
        .await
        .unwrap()
        .emails
        .is_empty());
}

pub async fn an_erased_tickets_email_is_never_made_or_written_back(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let slug = Slug::parse("erased-mail-001").unwrap();
    store
        .create_ticket(&ticket(&p.id, slug.as_str(), now_millis()), &[])
        .await
        .unwrap();
    let [burst, _] = ticket_emails(&store, &p.id, &slug).await;
    let pending = store.get_email(&burst).await.unwrap().unwrap();
    // The sender read it before the erasure, and records its attempt after.
    assert!(store.erase_ticket(&p.id, &slug).await.unwrap());
    assert_eq!(store.get_email(&burst).await.unwrap(), None);
    let sent = pending.clone().settled(EmailStatus::Sent, now_millis());
    let late = store.put_email(&sent, pending.next_attempt_at).await;
    assert!(matches!(late, Err(StoreError::NotFound)), "{late:?}");
    assert_eq!(store.get_email(&burst).await.unwrap(), None);
    let due = store
        .due_emails(now_millis() + TimeDelta::hours(1), 1000)
        .await
        .unwrap();
    assert!(due.iter().all(|e| e.id != burst));

    // An email composed while the ticket was erased is not made, alone or with its record.
    let mut again = pending.clone();
    again.id = email(&p.id, 1, now_millis()).id;
    assert!(!store.create_email(&again).await.unwrap());
    assert_eq!(store.get_email(&again.id).await.unwrap(), None);
    let record = visitor_mail(&p.id, slug.as_str(), None);
    store
        .put_visitor_mail(&record, None, Some(&again))
        .await
        .unwrap();
    assert_eq!(store.get_email(&again.id).await.unwrap(), None);
    assert!(emails_about(&store, &p.id, &slug).await.is_empty());
}
