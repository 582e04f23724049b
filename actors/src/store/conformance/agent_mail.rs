//! Conformance cases for the emails to agents ([`crate::agent_mail`]): members' switches and
//! the outbox's create-once.

use std::sync::Arc;

use chrono::{DateTime, Duration};
use uuid::Uuid;

use super::{email, project};
use crate::agent_mail::NotificationPrefs;
use crate::clock::now_millis;
use crate::store::Store;

pub async fn notification_prefs_are_kept_per_member_and_project(store: Arc<dyn Store>) {
    let (p, q) = (project(), project());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(store.get_notification_prefs(&p.id, a).await.unwrap(), None);
    assert!(store
        .list_notification_prefs(&p.id)
        .await
        .unwrap()
        .is_empty());
    let mut pa = NotificationPrefs::defaults(&p.id, a, now_millis());
    pa.new_ticket = true;
    let mut pb = NotificationPrefs::defaults(&p.id, b, now_millis());
    pb.assigned = false;
    pb.visitor_reply = false;
    let qa = NotificationPrefs::defaults(&q.id, a, now_millis());
    for prefs in [&pa, &pb, &qa] {
        store.put_notification_prefs(prefs).await.unwrap();
    }
    assert_eq!(
        store.get_notification_prefs(&p.id, a).await.unwrap(),
        Some(pa.clone())
    );
    assert_eq!(
        store.get_notification_prefs(&q.id, a).await.unwrap(),
        Some(qa.clone())
    );
    let mut listed = store.list_notification_prefs(&p.id).await.unwrap();
    listed.sort_by_key(|x| x.member_id);
    let mut want = vec![pa.clone(), pb.clone()];
    want.sort_by_key(|x| x.member_id);
    assert_eq!(listed, want, "a project's switches, and only its own");
    // Replaced whole.
    let mut again = pa.clone();
    again.new_ticket = false;
    again.updated_at = now_millis() + Duration::seconds(1);
    store.put_notification_prefs(&again).await.unwrap();
    assert_eq!(
        store.get_notification_prefs(&p.id, a).await.unwrap(),
        Some(again)
    );
    assert_eq!(store.list_notification_prefs(&p.id).await.unwrap().len(), 2);
}

pub async fn an_email_created_twice_is_stored_once_and_never_requeued(store: Arc<dyn Store>) {
    let p = project();
    let base = DateTime::from_timestamp_millis(
        631_152_000_000 + i64::from(rand::random::<u32>() % 1_000_000) * 60_000,
    )
    .unwrap();
    let mut e = email(&p.id, 3, base);
    // Made now, though due long ago: on CQL a row lives 30 days from when it was made, so an
    // email made in the past would expire within a second, on a busy machine before it is read.
    e.created_at = now_millis();
    e.kind = crate::email::EmailKind::AgentAssigned;
    e.id = crate::visitor_mail::hashed_id(&format!("conformance {}", Uuid::new_v4()));
    assert!(store.create_email(&e).await.unwrap());
    assert_eq!(store.get_email(&e.id).await.unwrap(), Some(e.clone()));
    let due = store.due_emails(base, 10_000).await.unwrap();
    assert!(due.iter().any(|d| d.id == e.id), "a created email is due");
    // Sent, then created again (a retry, another node): it stays sent and is not due.
    let sent = e
        .clone()
        .settled(crate::email::EmailStatus::Sent, now_millis());
    store.put_email(&sent, e.next_attempt_at).await.unwrap();
    let mut retry = e.clone();
    retry.subject = "another".into();
    assert!(!store.create_email(&retry).await.unwrap());
    assert_eq!(store.get_email(&e.id).await.unwrap(), Some(sent));
    let due = store.due_emails(base, 10_000).await.unwrap();
    assert!(
        due.iter().all(|d| d.id != e.id),
        "a sent email is not queued again"
    );
}
