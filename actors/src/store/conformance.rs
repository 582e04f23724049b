//! The storage conformance suite: the behaviour every [`Store`] backend must show.
//!
//! A backend's test file invokes [`store_conformance_tests!`](crate::store_conformance_tests)
//! with an async expression that yields a ready store: an `Arc<dyn Store>`, or a pair of it and
//! whatever must live exactly as long as the case (a temporary directory, removed when the
//! case ends), both of which convert to a [`Backend`]. Each case uses fresh random project
//! ids, so the cases may share one database (a CQL keyspace) and run concurrently.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::clock::now_millis;
use uuid::Uuid;

use super::*;
use crate::domain::*;

mod contact_erasure;
use crate::slug::SlugGenerator;
pub use contact_erasure::*;

mod agent_mail;
pub use agent_mail::*;
mod email_listing;
pub use email_listing::*;

mod delivery_erasure;
pub use delivery_erasure::*;

/// Expands to one `#[tokio::test]` per conformance case, each calling `$factory` for its store.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@cases $factory;
            projects_are_created_read_updated_and_listed,
            a_project_id_can_be_claimed_once,
            tickets_are_created_and_read_back,
            a_visitor_email_given_later_is_kept_marked_unverified,
            a_slug_can_be_claimed_once_per_project,
            ticket_updates_persist_and_missing_tickets_are_reported,
            an_older_ticket_version_never_undoes_a_newer_one,
            tickets_list_newest_first_with_status_filter_and_cursor,
            messages_come_back_in_id_order_and_per_ticket,
            message_ranges_select_after_before_and_newest,
            appending_the_same_message_twice_keeps_one_copy,
            read_cursors_move_forward_only_and_per_reader,
            concurrent_appends_are_all_durable,
            submitted_batches_are_durable_when_reported,
            assistant_messages_round_trip,
            chat_transcripts_keep_order_per_session_and_ignore_repeats,
            a_rating_is_kept_with_its_turn_and_changed_only_by_another,
            conversations_are_counted_by_outcome_over_a_time_range,
            articles_are_put_listed_replaced_and_deleted,
            notes_are_kept_per_ticket_in_order_and_a_repeat_is_one,
            timeline_entries_are_kept_per_ticket_in_order_and_a_repeat_is_one,
            a_ticket_keeps_its_assignee,
            a_ticket_keeps_its_assigned_member_and_a_listing_finds_it_by_them,
            a_ticket_keeps_its_tags_and_a_listing_finds_it_by_one,
            a_ticket_keeps_its_rating_and_a_project_its_csat_setting,
            a_title_search_finds_its_tickets_page_by_page_within_its_scan,
            webhook_endpoints_are_put_listed_replaced_and_deleted,
            deliveries_come_due_in_order_and_move_when_rescheduled,
            deliveries_ride_with_the_changes_they_announce,
            a_delivery_is_claimed_by_one_dispatcher_at_a_time,
            an_erased_tickets_delivery_is_not_written_back_by_its_attempt,
            deliveries_past_the_retention_leave_the_log,
            creates_racing_for_a_projects_last_endpoints_never_pass_its_cap,
            a_ticket_created_with_its_history_reads_back_whole,
            unanswered_questions_count_up_sort_first_and_are_dismissed,
            a_project_keeps_its_most_recently_unanswered_questions,
            a_project_keeps_its_assistant_profile,
            members_are_added_found_by_email_changed_and_listed,
            member_links_are_kept_listed_and_deleted_once,
            a_member_link_used_at_once_twice_is_used_once,
            members_racing_for_one_email_leave_one_member,
            member_sessions_are_kept_listed_and_ended,
            api_tokens_are_created_touched_listed_and_revoked,
            a_second_factor_is_written_only_over_the_version_it_read,
            canned_replies_are_created_listed_replaced_and_deleted,
            canned_replies_racing_never_pass_the_cap_or_share_a_shortcut,
            audit_records_list_newest_first_filtered_and_paged,
            a_change_and_its_audit_record_are_one_write,
            audit_records_past_the_retention_leave_the_trail,
            emails_come_due_in_order_are_claimed_once_and_settle,
            a_member_link_and_its_email_are_one_write,
            visitor_mails_come_due_in_order_and_an_email_rides_with_its_record,
            contacts_are_put_read_replaced_and_kept_per_project,
            contacts_list_in_id_order_page_by_page_and_a_search_stays_within_its_scan,
            a_contacts_tickets_come_newest_first_and_only_theirs,
            a_project_keeps_its_identity_secrets,
            a_project_keeps_its_ticket_access_and_a_ticket_who_opened_it,
            a_project_keeps_its_retention,
            inbound_mail_is_kept_per_ticket_and_key,
            an_erased_ticket_leaves_no_row_and_the_others_keep_theirs,
            erasures_are_noted_listed_and_forgotten,
            a_contacts_erasure_takes_its_tickets_and_record_and_leaves_the_others,
            contact_erasures_are_noted_listed_and_forgotten,
            notification_prefs_are_kept_per_member_and_project,
            an_email_created_twice_is_stored_once_and_never_requeued,
            emails_list_newest_first_per_ticket_and_page_by_page,
            an_erased_tickets_email_is_never_made_or_written_back,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend: $crate::store::conformance::Backend = $factory.await.into();
                $crate::store::conformance::$case(backend.store.clone()).await;
            }
        )*
    };
}

/// A store under test, with what must outlive it until the case ends.
pub struct Backend {
    pub store: Arc<dyn Store>,
    _keep: Option<Box<dyn std::any::Any + Send>>,
}

impl From<Arc<dyn Store>> for Backend {
    fn from(store: Arc<dyn Store>) -> Self {
        Backend { store, _keep: None }
    }
}

impl<K: Send + 'static> From<(Arc<dyn Store>, K)> for Backend {
    fn from((store, keep): (Arc<dyn Store>, K)) -> Self {
        Backend {
            store,
            _keep: Some(Box::new(keep)),
        }
    }
}

fn project() -> Project {
    Project {
        id: ProjectId::parse(&format!("conf_{}", Uuid::new_v4().simple())).unwrap(),
        name: "Conformance".into(),
        allowed_origins: vec!["https://example.com".into()],
        admin_key_hash: "00".repeat(32),
        assistant: Default::default(),
        csat_disabled: false,
        identity_secrets: Vec::new(),
        ticket_access: Default::default(),
        retention: Default::default(),
        created_at: now_millis(),
    }
}

fn ticket(project: &ProjectId, slug: &str, created_at: chrono::DateTime<Utc>) -> Ticket {
    Ticket::opened(
        project.clone(),
        Slug::parse(slug).unwrap(),
        Title::parse("Cannot log in").unwrap(),
        Description::parse("Since this morning").unwrap(),
        TicketSource::Api,
        None,
        created_at,
    )
}

fn messages(n: usize) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(n);
    let now = Utc::now();
    for i in 0..n {
        let id = MessageId::next(out.last().map(|m| m.id), now);
        out.push(Message {
            // Every third message carries a client's idempotency key, which must round-trip.
            idempotency_key: (i % 3 == 0)
                .then(|| IdempotencyKey::parse(&format!("key-{i}")).unwrap()),
            id,
            author: if i % 2 == 0 {
                Participant::User
            } else {
                Participant::Admin
            },
            content: MessageBody::parse(&format!("message {i}")).unwrap(),
            timestamp: id.timestamp(),
            // Some agents' messages name the member who wrote them, with or without an
            // avatar; the rest came from the admin key. Each must come back as it went in.
            agent: match i % 8 {
                1 | 5 => Some(MessageAgent {
                    id: Uuid::from_u128(i as u128 + 1),
                    name: format!("Agent {i}"),
                    avatar_url: (i % 8 == 1).then(|| format!("https://example.com/{i}.png")),
                }),
                _ => None,
            },
        });
    }
    out
}

fn cursor(reader: Participant, up_to: MessageId) -> TicketWrite {
    TicketWrite::ReadCursor { reader, up_to }
}

/// One ticket write, handed over through `submit` as a ticket's actor hands its batches.
async fn put(
    store: &Arc<dyn Store>,
    project: &ProjectId,
    slug: &Slug,
    w: TicketWrite,
) -> StoreResult<()> {
    write(store.clone(), project, slug, vec![w]).await
}

async fn stored_project(store: &Arc<dyn Store>) -> Project {
    let p = project();
    store.create_project(&p).await.expect("create project");
    p
}

pub async fn projects_are_created_read_updated_and_listed(store: Arc<dyn Store>) {
    let mut p = stored_project(&store).await;
    assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p.clone()));

    p.name = "Renamed".into();
    p.allowed_origins = vec!["https://a.example".into(), "http://localhost:3000".into()];
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p.clone()));
    assert!(store.list_projects().await.unwrap().contains(&p));

    let missing = project();
    assert_eq!(store.get_project(&missing.id).await.unwrap(), None);
    assert!(matches!(
        store.update_project(&missing).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn a_project_id_can_be_claimed_once(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let mut again = project();
    again.id = p.id.clone();
    again.name = "Impostor".into();
    assert!(matches!(
        store.create_project(&again).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_project(&p.id).await.unwrap().unwrap().name,
        p.name
    );
}

pub async fn tickets_are_created_and_read_back(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let mut t = ticket(&p.id, "swift-bear-053", now_millis());
    t.source = TicketSource::Chat;
    t.session_id = Some("session-1".into());
    t.visitor = Some(crate::domain::VisitorContact {
        name: Some(crate::domain::VisitorName::parse("Ada Lovelace").unwrap()),
        email: Some(crate::domain::Email::parse("ada@example.org").unwrap()),
        email_unverified: false,
    });
    store.create_ticket(&t, &[]).await.unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &t.slug).await.unwrap(),
        Some(t.clone())
    );
    // A visitor known by email alone keeps the name unknown.
    let mut by_email = ticket(&p.id, "brave-lynx-002", now_millis());
    by_email.visitor = Some(crate::domain::VisitorContact {
        name: None,
        email: Some(crate::domain::Email::parse("b@example.com").unwrap()),
        email_unverified: false,
    });
    store.create_ticket(&by_email, &[]).await.unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &by_email.slug).await.unwrap(),
        Some(by_email)
    );
    let other = Slug::parse("quiet-otter-001").unwrap();
    assert_eq!(store.get_ticket(&p.id, &other).await.unwrap(), None);
}

/// The widget's "get replies by email" field: a ticket change gives, changes and removes the
/// visitor's address, marked unverified, beside a name given at the opening.
pub async fn a_visitor_email_given_later_is_kept_marked_unverified(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let mut t = ticket(&p.id, "amber-crane-017", now_millis());
    t.visitor = Some(crate::domain::VisitorContact {
        name: Some(crate::domain::VisitorName::parse("Ada").unwrap()),
        email: None,
        email_unverified: false,
    });
    store.create_ticket(&t, &[]).await.unwrap();
    let mut given = t.clone();
    given.updated_at = t.updated_at + Duration::seconds(1);
    given.visitor = Some(crate::domain::VisitorContact {
        name: Some(crate::domain::VisitorName::parse("Ada").unwrap()),
        email: Some(crate::domain::Email::parse("ada@example.org").unwrap()),
        email_unverified: true,
    });
    put(&store, &p.id, &t.slug, TicketWrite::Ticket(given.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &t.slug).await.unwrap(),
        Some(given.clone())
    );
    // Removed again, with no name either: no visitor at all.
    let mut removed = given.clone();
    removed.updated_at = given.updated_at + Duration::seconds(1);
    removed.visitor = None;
    put(&store, &p.id, &t.slug, TicketWrite::Ticket(removed.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &t.slug).await.unwrap(),
        Some(removed)
    );
}

pub async fn a_slug_can_be_claimed_once_per_project(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let q = stored_project(&store).await;
    let first = ticket(&p.id, "swift-bear-053", now_millis());
    store.create_ticket(&first, &[]).await.unwrap();

    let mut second = ticket(&p.id, "swift-bear-053", now_millis());
    second.title = Title::parse("Someone else").unwrap();
    assert!(matches!(
        store.create_ticket(&second, &[]).await,
        Err(StoreError::Conflict)
    ));
    let kept = store.get_ticket(&p.id, &first.slug).await.unwrap().unwrap();
    assert_eq!(kept.id, first.id);

    // The same slug in another project is a different ticket.
    store
        .create_ticket(&ticket(&q.id, "swift-bear-053", now_millis()), &[])
        .await
        .unwrap();

    // Racing creations of one slug: exactly one wins.
    let racers = (0..8).map(|_| {
        let store = store.clone();
        let t = ticket(&p.id, "brave-lynx-777", now_millis());
        tokio::spawn(async move { store.create_ticket(&t, &[]).await })
    });
    let mut won = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(won, 1);
}

pub async fn ticket_updates_persist_and_missing_tickets_are_reported(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let mut t = ticket(&p.id, "swift-bear-053", now_millis());
    store.create_ticket(&t, &[]).await.unwrap();
    t.status = TicketStatus::Resolved;
    t.updated_at = t.created_at + Duration::seconds(5);
    put(
        &store,
        &t.project_id,
        &t.slug,
        TicketWrite::Ticket(t.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &t.slug).await.unwrap(),
        Some(t.clone())
    );

    let ghost = ticket(&p.id, "quiet-otter-001", now_millis());
    assert!(matches!(
        put(
            &store,
            &ghost.project_id,
            &ghost.slug,
            TicketWrite::Ticket(ghost.clone())
        )
        .await,
        Err(StoreError::NotFound)
    ));
}

/// A node that lost a ticket may wake and write a version that another node has since
/// replaced: the store keeps the newer one, the listing's status too.
pub async fn an_older_ticket_version_never_undoes_a_newer_one(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let created = ticket(&p.id, "swift-bear-053", now_millis());
    store.create_ticket(&created, &[]).await.unwrap();
    let listed = |status| {
        let store = store.clone();
        let project = p.id.clone();
        async move {
            let query = TicketQuery {
                status: Some(status),
                limit: 10,
                ..TicketQuery::default()
            };
            let page = store.list_tickets(&project, &query).await.unwrap();
            page.tickets.into_iter().map(|t| t.slug).collect::<Vec<_>>()
        }
    };
    let version = |status, assignee: Option<&str>, secs| {
        let mut t = created.clone();
        t.status = status;
        t.assignee = assignee.map(|a| AgentName::parse(a).unwrap());
        t.updated_at = created.created_at + Duration::seconds(secs);
        t
    };
    let late = version(TicketStatus::Closed, Some("Alex Doe"), 1);
    let newer = version(TicketStatus::Resolved, None, 2);
    for t in [&newer, &late] {
        put(&store, &p.id, &t.slug, TicketWrite::Ticket(t.clone()))
            .await
            .unwrap();
    }
    assert_eq!(
        store.get_ticket(&p.id, &created.slug).await.unwrap(),
        Some(newer.clone()),
        "the late, older version changed nothing"
    );
    assert_eq!(
        listed(TicketStatus::Resolved).await,
        vec![created.slug.clone()]
    );
    assert!(listed(TicketStatus::Closed).await.is_empty());

    // The same version again is a rewrite, as when a new owner replays its last log entry.
    put(
        &store,
        &p.id,
        &newer.slug,
        TicketWrite::Ticket(newer.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &created.slug).await.unwrap(),
        Some(newer)
    );
    let next = version(TicketStatus::Open, Some("Sam Roe"), 3);
    put(&store, &p.id, &next.slug, TicketWrite::Ticket(next.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &created.slug).await.unwrap(),
        Some(next)
    );
    assert_eq!(listed(TicketStatus::Open).await, vec![created.slug.clone()]);
    assert!(listed(TicketStatus::Resolved).await.is_empty());
}

pub async fn tickets_list_newest_first_with_status_filter_and_cursor(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let base = now_millis() - Duration::days(40);
    let generator = SlugGenerator::new();
    let mut created = Vec::new();
    // Spread over more than a month so bucketed backends cross buckets.
    for i in 0..25 {
        let mut t = ticket(
            &p.id,
            generator.generate().as_str(),
            base + Duration::days(i * 2),
        );
        if i % 3 == 0 {
            t.status = TicketStatus::Closed;
        }
        store.create_ticket(&t, &[]).await.unwrap();
        created.push(t);
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_tickets(
                &p.id,
                &TicketQuery {
                    after,
                    limit: 7,
                    ..TicketQuery::default()
                },
            )
            .await
            .unwrap();
        assert!(page.tickets.len() <= 7);
        seen.extend(page.tickets.iter().map(|t| t.slug.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let expected: Vec<Slug> = created.iter().map(|t| t.slug.clone()).collect();
    assert_eq!(seen, expected);

    let closed = store
        .list_tickets(
            &p.id,
            &TicketQuery {
                status: Some(TicketStatus::Closed),
                limit: 100,
                ..TicketQuery::default()
            },
        )
        .await
        .unwrap();
    let expected_closed: Vec<Slug> = created
        .iter()
        .filter(|t| t.status == TicketStatus::Closed)
        .map(|t| t.slug.clone())
        .collect();
    assert_eq!(
        closed
            .tickets
            .iter()
            .map(|t| t.slug.clone())
            .collect::<Vec<_>>(),
        expected_closed
    );
    assert!(closed.next.is_none());

    // A status change is reflected in the filtered listing.
    let mut reopened = created
        .iter()
        .find(|t| t.status == TicketStatus::Closed)
        .unwrap()
        .clone();
    reopened.status = TicketStatus::Open;
    reopened.updated_at += Duration::seconds(1);
    put(
        &store,
        &reopened.project_id,
        &reopened.slug,
        TicketWrite::Ticket(reopened.clone()),
    )
    .await
    .unwrap();
    let closed_now = store
        .list_tickets(
            &p.id,
            &TicketQuery {
                status: Some(TicketStatus::Closed),
                limit: 100,
                ..TicketQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(closed_now.tickets.len(), expected_closed.len() - 1);
    assert!(closed_now.tickets.iter().all(|t| t.slug != reopened.slug));
}

pub async fn messages_come_back_in_id_order_and_per_ticket(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let a = ticket(&p.id, "swift-bear-053", now_millis());
    let b = ticket(&p.id, "quiet-otter-001", now_millis());
    store.create_ticket(&a, &[]).await.unwrap();
    store.create_ticket(&b, &[]).await.unwrap();
    let msgs = messages(12);
    for m in &msgs {
        put(&store, &p.id, &a.slug, TicketWrite::Message(m.clone()))
            .await
            .unwrap();
    }
    put(
        &store,
        &p.id,
        &b.slug,
        TicketWrite::Message(messages(1)[0].clone()),
    )
    .await
    .unwrap();

    let back = store
        .list_messages(&p.id, &a.slug, MessageRange::all())
        .await
        .unwrap();
    assert_eq!(back, msgs);
    assert_eq!(
        store
            .list_messages(&p.id, &b.slug, MessageRange::all())
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn message_ranges_select_after_before_and_newest(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let t = ticket(&p.id, "swift-bear-053", now_millis());
    store.create_ticket(&t, &[]).await.unwrap();
    let msgs = messages(10);
    for m in &msgs {
        put(&store, &p.id, &t.slug, TicketWrite::Message(m.clone()))
            .await
            .unwrap();
    }
    let list = |range| {
        let store = store.clone();
        let (pid, slug) = (p.id.clone(), t.slug.clone());
        async move { store.list_messages(&pid, &slug, range).await.unwrap() }
    };
    assert_eq!(list(MessageRange::after(Some(msgs[6].id))).await, msgs[7..]);
    assert!(list(MessageRange::after(Some(msgs[9].id))).await.is_empty());
    assert_eq!(list(MessageRange::newest(3)).await, msgs[7..]);
    assert_eq!(
        list(MessageRange {
            before: Some(msgs[5].id),
            limit: 2,
            newest: true,
            after: None
        })
        .await,
        msgs[3..5]
    );
    assert_eq!(
        list(MessageRange {
            after: Some(msgs[1].id),
            before: Some(msgs[5].id),
            limit: 10,
            newest: false
        })
        .await,
        msgs[2..5]
    );
    assert_eq!(
        list(MessageRange {
            after: None,
            before: None,
            limit: 4,
            newest: false
        })
        .await,
        msgs[..4]
    );
}

pub async fn appending_the_same_message_twice_keeps_one_copy(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let t = ticket(&p.id, "swift-bear-053", now_millis());
    store.create_ticket(&t, &[]).await.unwrap();
    let m = messages(1).remove(0);
    put(&store, &p.id, &t.slug, TicketWrite::Message(m.clone()))
        .await
        .unwrap();
    put(&store, &p.id, &t.slug, TicketWrite::Message(m.clone()))
        .await
        .unwrap();
    assert_eq!(
        store
            .list_messages(&p.id, &t.slug, MessageRange::all())
            .await
            .unwrap(),
        vec![m]
    );
}

pub async fn read_cursors_move_forward_only_and_per_reader(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let t = ticket(&p.id, "swift-bear-053", now_millis());
    store.create_ticket(&t, &[]).await.unwrap();
    let msgs = messages(5);
    assert!(store.read_cursors(&p.id, &t.slug).await.unwrap().is_empty());

    // The admin's second cursor is older than its first, and must not move it back.
    let moves = [
        (Participant::Admin, msgs[2].id),
        (Participant::Admin, msgs[1].id),
        (Participant::User, msgs[4].id),
    ];
    for (reader, up_to) in moves {
        put(&store, &p.id, &t.slug, cursor(reader, up_to))
            .await
            .unwrap();
    }
    let mut cursors = store.read_cursors(&p.id, &t.slug).await.unwrap();
    cursors.sort_by_key(|c| c.reader);
    assert_eq!(
        cursors,
        vec![
            ReadCursor {
                reader: Participant::User,
                up_to: msgs[4].id
            },
            ReadCursor {
                reader: Participant::Admin,
                up_to: msgs[2].id
            },
        ]
    );
}

pub async fn concurrent_appends_are_all_durable(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let generator = SlugGenerator::new();
    let mut tickets = Vec::new();
    for _ in 0..8 {
        let t = ticket(&p.id, generator.generate().as_str(), now_millis());
        store.create_ticket(&t, &[]).await.unwrap();
        tickets.push(t);
    }
    let writers = tickets.iter().map(|t| {
        let store = store.clone();
        let (pid, slug) = (p.id.clone(), t.slug.clone());
        tokio::spawn(async move {
            let msgs = messages(25);
            let writes = msgs
                .iter()
                .map(|m| put(&store, &pid, &slug, TicketWrite::Message(m.clone())));
            for r in futures_util::future::join_all(writes).await {
                r.unwrap();
            }
            msgs
        })
    });
    let written: Vec<Vec<Message>> = futures_util::future::join_all(writers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for (t, msgs) in tickets.iter().zip(written) {
        let back = store
            .list_messages(&p.id, &t.slug, MessageRange::all())
            .await
            .unwrap();
        assert_eq!(back, msgs);
    }
}

pub async fn submitted_batches_are_durable_when_reported(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let mut t = ticket(&p.id, "swift-bear-053", now_millis());
    store.create_ticket(&t, &[]).await.unwrap();
    let msgs = messages(3);
    t.status = TicketStatus::Resolved;
    t.updated_at = t.created_at + Duration::seconds(5);
    let mut writes: Vec<TicketWrite> = msgs.iter().cloned().map(TicketWrite::Message).collect();
    writes.push(TicketWrite::ReadCursor {
        reader: Participant::Admin,
        up_to: msgs[1].id,
    });
    writes.push(TicketWrite::Ticket(t.clone()));
    write(store.clone(), &p.id, &t.slug, writes).await.unwrap();

    let back = store
        .list_messages(&p.id, &t.slug, MessageRange::all())
        .await
        .unwrap();
    assert_eq!(back, msgs);
    assert_eq!(
        store.read_cursors(&p.id, &t.slug).await.unwrap(),
        vec![ReadCursor {
            reader: Participant::Admin,
            up_to: msgs[1].id
        }]
    );
    assert_eq!(store.get_ticket(&p.id, &t.slug).await.unwrap(), Some(t));

    // A batch that cannot land reports its error through the same callback.
    let ghost = ticket(&p.id, "quiet-otter-001", now_millis());
    let refused = write(
        store.clone(),
        &p.id,
        &ghost.slug,
        vec![TicketWrite::Ticket(ghost.clone())],
    )
    .await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
}

pub async fn assistant_messages_round_trip(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let t = ticket(&p.id, "calm-owl-001", now_millis());
    store.create_ticket(&t, &[]).await.unwrap();
    let id = MessageId::next(None, now_millis());
    let m = Message {
        id,
        author: Participant::Assistant,
        content: MessageBody::parse("Try resetting your password.").unwrap(),
        // A message's time is its id's, as every writer makes it.
        timestamp: id.timestamp(),
        idempotency_key: None,
        agent: None,
    };
    put(&store, &p.id, &t.slug, TicketWrite::Message(m.clone()))
        .await
        .unwrap();
    let back = store
        .list_messages(&p.id, &t.slug, MessageRange::all())
        .await
        .unwrap();
    assert_eq!(back, vec![m]);
}

fn turn(previous: Option<MessageId>, role: ChatRole, content: &str) -> ChatTurn {
    let at = now_millis();
    ChatTurn {
        id: MessageId::next(previous, at),
        role,
        content: content.into(),
        at,
        ticket_slug: None,
        citations: vec![],
        tokens: 0,
        feedback: None,
    }
}

pub async fn chat_transcripts_keep_order_per_session_and_ignore_repeats(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let session = Uuid::new_v4().to_string();
    let other = Uuid::new_v4().to_string();
    let mut turns = Vec::new();
    let mut last = None;
    for i in 0..5 {
        let role = if i % 2 == 0 {
            ChatRole::User
        } else {
            ChatRole::Assistant
        };
        let mut t = turn(last, role, &format!("turn {i}"));
        if i == 3 {
            t.ticket_slug = Some(Slug::parse("brave-fox-123").unwrap());
            t.citations = vec![Uuid::new_v4()];
        }
        if role == ChatRole::Assistant {
            t.tokens = 100 + i as u64;
        }
        last = Some(t.id);
        turns.push(t);
    }
    store
        .append_chat_turns(&p.id, &session, &turns[..3])
        .await
        .unwrap();
    // The last batch repeats turn 2, as a retried write would.
    store
        .append_chat_turns(&p.id, &session, &turns[2..])
        .await
        .unwrap();
    store
        .append_chat_turns(&p.id, &other, &[turn(None, ChatRole::User, "elsewhere")])
        .await
        .unwrap();

    let all = store.list_chat_turns(&p.id, &session, 100).await.unwrap();
    assert_eq!(all, turns);
    let newest = store.list_chat_turns(&p.id, &session, 2).await.unwrap();
    assert_eq!(newest, turns[3..].to_vec());
    assert_eq!(
        store
            .list_chat_turns(&p.id, &other, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.chat_session_usage(&p.id, &session).await.unwrap(),
        ChatUsage {
            tokens: 101 + 103,
            tickets: 1,
            started_at: Some(turns[0].at),
            up: 0,
            down: 0,
        }
    );
    let unknown = Uuid::new_v4().to_string();
    assert_eq!(
        store.chat_session_usage(&p.id, &unknown).await.unwrap(),
        ChatUsage::default()
    );
    assert!(store
        .list_chat_turns(&p.id, &unknown, 100)
        .await
        .unwrap()
        .is_empty());
}

pub async fn a_rating_is_kept_with_its_turn_and_changed_only_by_another(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let session = Uuid::new_v4().to_string();
    let question = turn(None, ChatRole::User, "How do I export?");
    let answer = turn(
        Some(question.id),
        ChatRole::Assistant,
        "Use the export menu.",
    );
    let turns = [question.clone(), answer.clone()];
    store
        .append_chat_turns(&p.id, &session, &turns)
        .await
        .unwrap();
    assert_eq!(
        store.chat_turn(&p.id, &session, answer.id).await.unwrap(),
        Some(answer.clone())
    );

    let mut rated = answer.clone();
    rated.feedback = Some(Rating::Up);
    store
        .append_chat_turns(&p.id, &session, std::slice::from_ref(&rated))
        .await
        .unwrap();
    // The answer's own write landing after the rating (or retried) keeps the rating.
    store
        .append_chat_turns(&p.id, &session, std::slice::from_ref(&answer))
        .await
        .unwrap();
    let listed = store.list_chat_turns(&p.id, &session, 10).await.unwrap();
    assert_eq!(listed, vec![question.clone(), rated.clone()]);
    let usage = store.chat_session_usage(&p.id, &session).await.unwrap();
    assert_eq!((usage.up, usage.down), (1, 0));
    assert_eq!(usage.started_at, Some(question.at));

    rated.feedback = Some(Rating::Down);
    store
        .append_chat_turns(&p.id, &session, std::slice::from_ref(&rated))
        .await
        .unwrap();
    assert_eq!(
        store.chat_turn(&p.id, &session, answer.id).await.unwrap(),
        Some(rated)
    );
    let usage = store.chat_session_usage(&p.id, &session).await.unwrap();
    assert_eq!((usage.up, usage.down), (0, 1));

    // A turn is found only in its own session.
    let other = Uuid::new_v4().to_string();
    assert_eq!(
        store.chat_turn(&p.id, &other, answer.id).await.unwrap(),
        None
    );
    let unknown = MessageId::next(Some(answer.id), now_millis());
    assert_eq!(
        store.chat_turn(&p.id, &session, unknown).await.unwrap(),
        None
    );
}

pub async fn conversations_are_counted_by_outcome_over_a_time_range(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let other = stored_project(&store).await;
    let now = now_millis();
    let ends = Duration::minutes(30);
    let conversation = |started: DateTime<Utc>, last: DateTime<Utc>| ChatConversation {
        session: Uuid::new_v4().to_string(),
        started_at: started,
        last_at: last,
        escalated: false,
        unanswered: false,
        up: 0,
        down: 0,
    };
    // Three days back, so a range spans days (partitions, on CQL).
    let old = now - Duration::days(3);
    let mut resolved = conversation(old, old + Duration::minutes(2));
    resolved.up = 2;
    let mut escalated = conversation(now - Duration::hours(30), now - Duration::minutes(1));
    escalated.escalated = true;
    let mut abandoned = conversation(now - Duration::hours(2), now - Duration::hours(1));
    abandoned.down = 1;
    let open = conversation(now - Duration::minutes(10), now - Duration::minutes(5));
    for c in [&resolved, &escalated, &abandoned, &open] {
        store.put_chat_conversation(&p.id, c).await.unwrap();
    }
    store
        .put_chat_conversation(&other.id, &conversation(old, old))
        .await
        .unwrap();
    // Written again with newer facts: still one conversation.
    resolved.last_at += Duration::minutes(1);
    resolved.up = 3;
    store.put_chat_conversation(&p.id, &resolved).await.unwrap();

    let all = store
        .count_chat_outcomes(
            &p.id,
            now - Duration::days(7),
            now + Duration::seconds(1),
            now,
            ends,
        )
        .await
        .unwrap();
    assert_eq!(
        all,
        OutcomeCounts {
            resolved: 1,
            escalated: 1,
            abandoned: 1,
            open: 1,
            up: 3,
            down: 1,
        }
    );
    // `from` is included, `to` is not.
    let recent = store
        .count_chat_outcomes(&p.id, abandoned.started_at, open.started_at, now, ends)
        .await
        .unwrap();
    assert_eq!((recent.abandoned, recent.open, recent.escalated), (1, 0, 0));
    // Later, the open one has ended, as resolved.
    let later = store
        .count_chat_outcomes(&p.id, now - Duration::days(7), now, now + ends, ends)
        .await
        .unwrap();
    assert_eq!((later.resolved, later.open), (2, 0));
    let empty = store
        .count_chat_outcomes(&p.id, now, now - Duration::days(1), now, ends)
        .await
        .unwrap();
    assert_eq!(empty, OutcomeCounts::default());
}

pub async fn articles_are_put_listed_replaced_and_deleted(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let other = stored_project(&store).await;
    let now = now_millis();
    let article = |title: &str, body: &str| Article {
        id: Uuid::new_v4(),
        project_id: p.id.clone(),
        title: ArticleTitle::parse(title).unwrap(),
        body: ArticleBody::parse(body).unwrap(),
        tags: vec!["billing".into()],
        created_at: now,
        updated_at: now,
        language: Default::default(),
        url: None,
    };
    let a = article("Refunds", "Refunds take five days.");
    let mut b = article("Passwords", "Use the reset link.");
    // An article's language and link are kept as given.
    b.language = crate::domain::Language::De;
    b.url = Some(crate::domain::ArticleUrl::parse("https://help.example.com/de/passwort").unwrap());
    store.put_article(&a).await.unwrap();
    store.put_article(&b).await.unwrap();
    let mut listed = store.list_articles(&p.id).await.unwrap();
    listed.sort_by(|x, y| x.title.as_str().cmp(y.title.as_str()));
    assert_eq!(listed, vec![b.clone(), a.clone()]);
    assert!(store.list_articles(&other.id).await.unwrap().is_empty());

    let mut changed = a.clone();
    changed.body = ArticleBody::parse("Refunds take three days.").unwrap();
    changed.updated_at = now + Duration::seconds(1);
    store.put_article(&changed).await.unwrap();
    store.delete_article(&p.id, b.id).await.unwrap();
    assert_eq!(store.list_articles(&p.id).await.unwrap(), vec![changed]);
    assert!(matches!(
        store.delete_article(&p.id, b.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_article(&other.id, a.id).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn unanswered_questions_count_up_sort_first_and_are_dismissed(store: Arc<dyn Store>) {
    use crate::unanswered::Asked;
    let p = stored_project(&store).await;
    let other = stored_project(&store).await;
    let t0 = now_millis();
    let at = |s: i64| t0 + Duration::seconds(s);
    let pdf = Asked::new("Can I export to PDF?", at(0)).unwrap();
    let app = Asked::new("Do you have a mobile app?", at(1)).unwrap();
    let pdf_again = Asked::new("can i export to pdf", at(2)).unwrap();
    assert_eq!(pdf.id, pdf_again.id);
    for asked in [&pdf, &app, &pdf_again] {
        store.record_unanswered(&p.id, asked).await.unwrap();
    }
    let listed = store.list_unanswered(&p.id, 10).await.unwrap();
    let summary: Vec<(&str, u64)> = listed
        .iter()
        .map(|q| (q.question.as_str(), q.count))
        .collect();
    assert_eq!(
        summary,
        vec![("can i export to pdf", 2), ("do you have a mobile app", 1)]
    );
    assert_eq!(listed[0].id, pdf.id);
    assert_eq!(listed[0].example, "can i export to pdf");
    assert_eq!((listed[0].first_seen, listed[0].last_seen), (at(0), at(2)));
    assert_eq!(listed[0].project_id, p.id);
    assert_eq!(store.list_unanswered(&p.id, 1).await.unwrap().len(), 1);
    assert!(store
        .list_unanswered(&other.id, 10)
        .await
        .unwrap()
        .is_empty());

    // Dismissed once an article answers it; only in its own project.
    assert!(matches!(
        store.dismiss_unanswered(&other.id, &pdf.id).await,
        Err(StoreError::NotFound)
    ));
    store.dismiss_unanswered(&p.id, &pdf.id).await.unwrap();
    assert!(matches!(
        store.dismiss_unanswered(&p.id, &pdf.id).await,
        Err(StoreError::NotFound)
    ));
    let listed = store.list_unanswered(&p.id, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
        vec![app.id.as_str()]
    );
    // Asked again, it starts over.
    let later = Asked::new("Can I export to PDF?!", at(3)).unwrap();
    store.record_unanswered(&p.id, &later).await.unwrap();
    let listed = store.list_unanswered(&p.id, 10).await.unwrap();
    let again = listed.iter().find(|q| q.id == pdf.id).unwrap();
    assert_eq!((again.count, again.first_seen), (1, at(3)));
}

pub async fn a_project_keeps_its_most_recently_unanswered_questions(store: Arc<dyn Store>) {
    use crate::unanswered::{Asked, MAX_PER_PROJECT};
    let p = stored_project(&store).await;
    let t0 = now_millis();
    let asked: Vec<Asked> = (0..=MAX_PER_PROJECT)
        .map(|i| {
            Asked::new(
                &format!("question number {i}"),
                t0 + Duration::seconds(i as i64),
            )
            .unwrap()
        })
        .collect();
    // The first question is asked again before the others come: it is the second oldest.
    store.record_unanswered(&p.id, &asked[1]).await.unwrap();
    store.record_unanswered(&p.id, &asked[0]).await.unwrap();
    let mut repeat = asked[0].clone();
    repeat.at = t0 + Duration::milliseconds(1_500);
    store.record_unanswered(&p.id, &repeat).await.unwrap();
    for a in &asked[2..] {
        store.record_unanswered(&p.id, a).await.unwrap();
    }
    let listed = store.list_unanswered(&p.id, 1_000).await.unwrap();
    assert_eq!(listed.len(), MAX_PER_PROJECT);
    assert_eq!(listed[0].id, asked[0].id);
    assert!(
        listed.iter().all(|q| q.id != asked[1].id),
        "the least recently asked went"
    );
}

pub async fn a_project_keeps_its_assistant_profile(store: Arc<dyn Store>) {
    let mut p = stored_project(&store).await;
    assert_eq!(
        store.get_project(&p.id).await.unwrap().unwrap().assistant,
        AssistantProfile::default()
    );
    p.assistant = AssistantProfile {
        name: "Ava".into(),
        greeting: "Hi, I'm Ava from Acme.".into(),
        guidance: "Be brief.\nNever promise refunds.".into(),
    };
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap().unwrap(), p);
    let listed = store.list_projects().await.unwrap();
    assert!(listed.contains(&p));
}

fn note(previous: Option<MessageId>, author: &str, text: &str) -> Note {
    let at = now_millis();
    Note {
        id: MessageId::next(previous, at),
        author: AgentName::parse(author).unwrap(),
        content: MessageBody::parse(text).unwrap(),
        created_at: at,
    }
}

pub async fn notes_are_kept_per_ticket_in_order_and_a_repeat_is_one(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let t = ticket(&p.id, "swift-bear-053", now_millis());
    let u = ticket(&p.id, "quiet-otter-001", now_millis());
    store.create_ticket(&t, &[]).await.unwrap();
    store.create_ticket(&u, &[]).await.unwrap();
    let first = note(None, "Alex", "Refund approved by finance");
    let second = note(Some(first.id), "Sam", "Customer prefers email");
    let elsewhere = note(None, "Alex", "Another ticket");
    for n in [&first, &second, &second] {
        put(&store, &p.id, &t.slug, TicketWrite::Note(n.clone()))
            .await
            .unwrap();
    }
    put(&store, &p.id, &u.slug, TicketWrite::Note(elsewhere.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.list_notes(&p.id, &t.slug).await.unwrap(),
        vec![first, second]
    );
    assert_eq!(
        store.list_notes(&p.id, &u.slug).await.unwrap(),
        vec![elsewhere]
    );
    // Notes are not messages: nothing a visitor reads holds them.
    let messages = store.list_messages(&p.id, &t.slug, MessageRange::all());
    assert!(messages.await.unwrap().is_empty());
    let missing = Slug::parse("brave-lynx-777").unwrap();
    assert!(store.list_notes(&p.id, &missing).await.unwrap().is_empty());
}

pub async fn timeline_entries_are_kept_per_ticket_in_order_and_a_repeat_is_one(
    store: Arc<dyn Store>,
) {
    let p = stored_project(&store).await;
    let t = ticket(&p.id, "swift-bear-053", now_millis());
    let u = ticket(&p.id, "quiet-otter-001", now_millis());
    store.create_ticket(&t, &[]).await.unwrap();
    store.create_ticket(&u, &[]).await.unwrap();
    let entry = |previous: Option<MessageId>, actor: Actor, change: ActivityChange| {
        let at = now_millis();
        Activity {
            id: MessageId::next(previous, at),
            created_at: at,
            actor,
            change,
        }
    };
    let member = Actor::Member {
        member: MessageAgent {
            id: Uuid::new_v4(),
            name: "Alex Doe".into(),
            avatar_url: Some("https://example.com/alex.png".into()),
        },
    };
    let status = entry(
        None,
        member.clone(),
        ActivityChange::Status {
            from: TicketStatus::Open,
            to: TicketStatus::Pending,
        },
    );
    let assignee = entry(
        Some(status.id),
        Actor::AdminKey,
        ActivityChange::Assignee {
            from: None,
            to: Some("Alex Doe".into()),
        },
    );
    let tags = entry(
        Some(assignee.id),
        member,
        ActivityChange::Tags {
            added: vec!["billing".into(), "vip".into()],
            removed: vec!["new".into()],
        },
    );
    let reopened = entry(
        None,
        Actor::Visitor,
        ActivityChange::Status {
            from: TicketStatus::Resolved,
            to: TicketStatus::Open,
        },
    );
    // Written out of order, and one twice, as a retried batch would.
    for a in [&tags, &status, &assignee, &tags] {
        put(&store, &p.id, &t.slug, TicketWrite::Activity(a.clone()))
            .await
            .unwrap();
    }
    put(
        &store,
        &p.id,
        &u.slug,
        TicketWrite::Activity(reopened.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        store.list_activity(&p.id, &t.slug).await.unwrap(),
        vec![status, assignee, tags]
    );
    assert_eq!(
        store.list_activity(&p.id, &u.slug).await.unwrap(),
        vec![reopened]
    );
    // Timeline entries are neither messages nor notes.
    let messages = store.list_messages(&p.id, &t.slug, MessageRange::all());
    assert!(messages.await.unwrap().is_empty());
    assert!(store.list_notes(&p.id, &t.slug).await.unwrap().is_empty());
    let missing = Slug::parse("brave-lynx-777").unwrap();
    assert!(store
        .list_activity(&p.id, &missing)
        .await
        .unwrap()
        .is_empty());
}

pub async fn a_ticket_keeps_its_assignee(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let mut t = ticket(&p.id, "swift-bear-053", now_millis());
    store.create_ticket(&t, &[]).await.unwrap();
    t.assignee = Some(AgentName::parse("Alex Doe").unwrap());
    t.updated_at += Duration::seconds(1);
    put(&store, &p.id, &t.slug, TicketWrite::Ticket(t.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &t.slug).await.unwrap(),
        Some(t.clone())
    );
    t.assignee = None;
    t.updated_at += Duration::seconds(1);
    put(&store, &p.id, &t.slug, TicketWrite::Ticket(t.clone()))
        .await
        .unwrap();
    assert_eq!(store.get_ticket(&p.id, &t.slug).await.unwrap(), Some(t));
}

pub async fn a_ticket_keeps_its_assigned_member_and_a_listing_finds_it_by_them(
    store: Arc<dyn Store>,
) {
    let p = stored_project(&store).await;
    let base = now_millis() - Duration::days(1);
    let mut dana = ticket(&p.id, "swift-bear-053", base);
    let mut typed = ticket(&p.id, "brave-lynx-777", base + Duration::minutes(1));
    let nobody = ticket(&p.id, "calm-owl-123", base + Duration::minutes(2));
    let mut sam = ticket(&p.id, "quiet-fox-456", base + Duration::minutes(3));
    for t in [&dana, &typed, &nobody, &sam] {
        store.create_ticket(t, &[]).await.unwrap();
    }
    let (dana_id, sam_id) = (Uuid::new_v4(), Uuid::new_v4());
    let member = |id, name: &str, avatar: Option<&str>| MessageAgent {
        id,
        name: name.into(),
        avatar_url: avatar.map(Into::into),
    };
    let assign = |t: &mut Ticket, name: &str, who: Option<MessageAgent>| {
        t.assignee = Some(AgentName::parse(name).unwrap());
        t.assignee_member = who;
        t.updated_at += Duration::seconds(1);
    };
    assign(
        &mut dana,
        "Dana",
        Some(member(dana_id, "Dana", Some("https://a.example/d.png"))),
    );
    assign(&mut typed, "Alex", None);
    assign(&mut sam, "Sam", Some(member(sam_id, "Sam", None)));
    for t in [&dana, &typed, &sam] {
        let write = TicketWrite::Ticket(t.clone());
        put(&store, &p.id, &t.slug, write).await.unwrap();
        let stored = store.get_ticket(&p.id, &t.slug).await.unwrap();
        assert_eq!(
            stored.as_ref(),
            Some(t),
            "the member, avatar and all, reads back"
        );
    }
    let listed = |filter: AssigneeFilter| {
        let store = store.clone();
        let id = p.id.clone();
        async move {
            let query = TicketQuery {
                assignee: Some(filter),
                limit: 10,
                ..TicketQuery::default()
            };
            let page = store.list_tickets(&id, &query).await.unwrap();
            page.tickets
                .into_iter()
                .map(|t| t.slug.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(AssigneeFilter::Member(dana_id)).await,
        ["swift-bear-053"]
    );
    assert_eq!(
        listed(AssigneeFilter::Member(Uuid::new_v4())).await,
        Vec::<String>::new()
    );
    let plain_nobody = AssigneeFilter::Nobody { hidden: Vec::new() };
    assert_eq!(
        listed(plain_nobody).await,
        ["calm-owl-123"],
        "a typed name is somebody"
    );
    // The caller's hidden members (deactivated ones) count as nobody.
    let sam_gone = AssigneeFilter::Nobody {
        hidden: vec![sam_id],
    };
    assert_eq!(listed(sam_gone).await, ["quiet-fox-456", "calm-owl-123"]);

    // Unassigned again: the member goes with the name.
    dana.assignee = None;
    dana.assignee_member = None;
    dana.updated_at += Duration::seconds(1);
    let write = TicketWrite::Ticket(dana.clone());
    put(&store, &p.id, &dana.slug, write).await.unwrap();
    let stored = store.get_ticket(&p.id, &dana.slug).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&dana));
    assert_eq!(
        listed(AssigneeFilter::Member(dana_id)).await,
        Vec::<String>::new()
    );
}

pub async fn a_ticket_keeps_its_tags_and_a_listing_finds_it_by_one(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let base = now_millis() - Duration::days(1);
    let mut tagged = ticket(&p.id, "swift-bear-053", base);
    let plain = ticket(&p.id, "brave-lynx-777", base + Duration::minutes(1));
    store.create_ticket(&tagged, &[]).await.unwrap();
    store.create_ticket(&plain, &[]).await.unwrap();
    let stored = store.get_ticket(&p.id, &plain.slug).await.unwrap();
    assert!(stored.unwrap().tags.is_empty(), "never tagged: no tags");
    let by_tag = |tag: &str| TicketQuery {
        tag: Some(Tag::parse(tag).unwrap()),
        limit: 10,
        ..TicketQuery::default()
    };
    // Tagged, then cleared: each version reads back whole, and the listing follows it.
    for (tags, listed) in [(&["vip", "billing"][..], 1), (&[][..], 0)] {
        tagged.tags = Tags::parse(tags).unwrap();
        tagged.updated_at += Duration::seconds(1);
        let write = TicketWrite::Ticket(tagged.clone());
        put(&store, &p.id, &tagged.slug, write).await.unwrap();
        let stored = store.get_ticket(&p.id, &tagged.slug).await.unwrap();
        assert_eq!(stored.as_ref(), Some(&tagged));
        let found = store.list_tickets(&p.id, &by_tag("vip")).await.unwrap();
        assert_eq!(found.tickets.len(), listed, "{tags:?}");
        assert!(found.tickets.iter().all(|t| t == &tagged));
    }
    tagged.tags = Tags::parse(&["billing"]).unwrap();
    tagged.updated_at += Duration::seconds(1);
    let write = TicketWrite::Ticket(tagged.clone());
    put(&store, &p.id, &tagged.slug, write).await.unwrap();
    let none = store.list_tickets(&p.id, &by_tag("Billing")).await.unwrap();
    assert!(none.tickets.is_empty(), "tags are compared exactly");
}

pub async fn a_ticket_keeps_its_rating_and_a_project_its_csat_setting(store: Arc<dyn Store>) {
    let mut p = stored_project(&store).await;
    assert!(
        !store
            .get_project(&p.id)
            .await
            .unwrap()
            .unwrap()
            .csat_disabled
    );
    p.csat_disabled = true;
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap().unwrap(), p);

    let mut t = ticket(&p.id, "swift-bear-053", now_millis() - Duration::hours(1));
    store.create_ticket(&t, &[]).await.unwrap();
    let stored = store.get_ticket(&p.id, &t.slug).await.unwrap().unwrap();
    assert_eq!(stored.satisfaction, None, "never rated: no rating");
    t.status = TicketStatus::Resolved;
    t.updated_at += Duration::seconds(1);
    put(&store, &p.id, &t.slug, TicketWrite::Ticket(t.clone()))
        .await
        .unwrap();
    t.updated_at += Duration::seconds(1);
    t.satisfaction = Some(Box::new(Satisfaction {
        score: 4,
        comment: SatisfactionComment::parse("Quick and kind, thanks!\nWould ask again.").unwrap(),
        rated_at: t.updated_at,
    }));
    put(&store, &p.id, &t.slug, TicketWrite::Ticket(t.clone()))
        .await
        .unwrap();
    let stored = store.get_ticket(&p.id, &t.slug).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&t));
    let query = TicketQuery {
        limit: 10,
        ..TicketQuery::default()
    };
    let listed = store.list_tickets(&p.id, &query).await.unwrap();
    assert_eq!(
        listed.tickets,
        vec![t.clone()],
        "the listing shows the rating"
    );

    // A rating without a comment reads back with an empty one; a later change keeps it.
    let mut plain = ticket(&p.id, "brave-lynx-777", now_millis());
    plain.satisfaction = Some(Box::new(Satisfaction {
        score: 1,
        comment: SatisfactionComment::parse("").unwrap(),
        rated_at: plain.updated_at,
    }));
    store.create_ticket(&plain, &[]).await.unwrap();
    plain.tags = Tags::parse(&["vip"]).unwrap();
    plain.updated_at += Duration::seconds(1);
    put(
        &store,
        &p.id,
        &plain.slug,
        TicketWrite::Ticket(plain.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &plain.slug).await.unwrap(),
        Some(plain)
    );
}

pub async fn a_title_search_finds_its_tickets_page_by_page_within_its_scan(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let base = now_millis() - Duration::days(3);
    let generator = SlugGenerator::new();
    let mut refunds = Vec::new();
    for i in 0..9 {
        let mut t = ticket(
            &p.id,
            generator.generate().as_str(),
            base + Duration::minutes(i),
        );
        if i % 3 == 0 {
            t.title = Title::parse(&format!("REFUND request {i}")).unwrap();
            refunds.push(t.slug.clone());
        }
        store.create_ticket(&t, &[]).await.unwrap();
    }
    refunds.reverse();
    let search = |after: Option<TicketCursor>, scan: Option<usize>| {
        let store = store.clone();
        let pid = p.id.clone();
        async move {
            let query = TicketQuery {
                status: None,
                title: Some("refund".into()),
                tag: None,
                assignee: None,
                search_scan: scan,
                after,
                limit: 2,
            };
            store.list_tickets(&pid, &query).await.unwrap()
        }
    };
    // Page by page, newest first, only matching titles.
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let page = search(after, None).await;
        seen.extend(page.tickets.iter().map(|t| t.slug.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, refunds);
    // A search that may examine only 4 tickets a page still finds them all, a page at a time,
    // some pages short or empty but always with a way on until the end.
    let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = search(after, Some(4)).await;
        pages += 1;
        assert!(page.tickets.len() <= 2);
        seen.extend(page.tickets.iter().map(|t| t.slug.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, refunds);
    assert!(pages >= 3, "{pages} pages");
}

fn endpoint(project: &ProjectId, url: &str) -> crate::webhook::Endpoint {
    crate::webhook::Endpoint {
        id: Uuid::new_v4(),
        project_id: project.clone(),
        url: url.into(),
        events: crate::webhook::EventType::ALL.to_vec(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        created_at: now_millis(),
    }
}

fn delivery(
    e: &crate::webhook::Endpoint,
    n: usize,
    at: chrono::DateTime<Utc>,
) -> crate::webhook::Delivery {
    let data = serde_json::json!({ "n": n });
    let event = crate::webhook::EventType::MessageCreated;
    crate::webhook::Delivery::new(e, event, &data, at)
}

pub async fn webhook_endpoints_are_put_listed_replaced_and_deleted(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let q = stored_project(&store).await;
    let a = endpoint(&p.id, "https://a.example/hook");
    let b = endpoint(&p.id, "https://b.example/hook");
    let elsewhere = endpoint(&q.id, "https://c.example/hook");
    for e in [&a, &b, &elsewhere] {
        store.create_endpoint(e, 20).await.unwrap();
    }
    let mut listed = store.list_endpoints(&p.id).await.unwrap();
    listed.sort_by(|x, y| x.url.cmp(&y.url));
    assert_eq!(listed, vec![a.clone(), b.clone()]);
    let mut changed = a.clone();
    changed.enabled = false;
    changed.disabled_reason = Some("failing since yesterday".into());
    changed.failing_since = Some(now_millis());
    store.update_endpoint(&changed).await.unwrap();
    store.delete_endpoint(&p.id, b.id).await.unwrap();
    assert_eq!(
        store.list_endpoints(&p.id).await.unwrap(),
        vec![changed.clone()]
    );
    assert!(matches!(
        store.delete_endpoint(&p.id, b.id).await,
        Err(StoreError::NotFound)
    ));
    // A change to an endpoint deleted meanwhile does not bring it back.
    assert!(matches!(
        store.update_endpoint(&b).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.list_endpoints(&p.id).await.unwrap(),
        vec![changed.clone()]
    );
    let all = store.all_endpoints().await.unwrap();
    assert!(all.contains(&changed) && all.contains(&elsewhere) && !all.contains(&b));
}

pub async fn deliveries_come_due_in_order_and_move_when_rescheduled(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let e = endpoint(&p.id, "https://a.example/hook");
    store.create_endpoint(&e, 20).await.unwrap();
    // Due a little in the past, so other cases' deliveries (due now) may come first or not:
    // only ours are looked at.
    let start = now_millis() - Duration::seconds(60);
    let made: Vec<_> = (0..3)
        .map(|i| delivery(&e, i, start + Duration::seconds(i as i64)))
        .collect();
    for d in &made {
        store.put_delivery(d, None).await.unwrap();
    }
    let ours = |due: Vec<crate::webhook::Delivery>| -> Vec<String> {
        due.into_iter()
            .filter(|d| d.endpoint_id == e.id)
            .map(|d| d.id)
            .collect()
    };
    let due = store.due_deliveries(now_millis(), 10_000).await.unwrap();
    assert_eq!(
        ours(due),
        made.iter().map(|d| d.id.clone()).collect::<Vec<_>>()
    );

    // The first failed once and waits an hour; the second succeeded.
    let mut retry = made[0].clone();
    let was_due = retry.next_attempt_at;
    retry.attempts = 1;
    retry.last_status = Some(500);
    retry.next_attempt_at = Some(now_millis() + Duration::hours(1));
    store.put_delivery(&retry, was_due).await.unwrap();
    let mut done = made[1].clone();
    let was_due = done.next_attempt_at;
    done.attempts = 1;
    done.status = crate::webhook::DeliveryStatus::Succeeded;
    done.last_status = Some(204);
    done.next_attempt_at = None;
    store.put_delivery(&done, was_due).await.unwrap();
    let due = store.due_deliveries(now_millis(), 10_000).await.unwrap();
    assert_eq!(ours(due), vec![made[2].id.clone()]);
    let later = store
        .due_deliveries(now_millis() + Duration::hours(2), 10_000)
        .await
        .unwrap();
    assert_eq!(ours(later), vec![made[2].id.clone(), retry.id.clone()]);

    // The log: newest first, each as last written.
    let log = store.list_deliveries(&p.id, e.id, 2).await.unwrap();
    assert_eq!(log, vec![made[2].clone(), done.clone()]);
    let got = store.get_delivery(&p.id, e.id, &retry.id).await.unwrap();
    assert_eq!(got, Some(retry));
    assert_eq!(
        store.get_delivery(&p.id, e.id, "msg_none").await.unwrap(),
        None
    );
}

pub async fn deliveries_ride_with_the_changes_they_announce(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let e = endpoint(&p.id, "https://a.example/hook");
    store.create_endpoint(&e, 20).await.unwrap();
    let t = ticket(&p.id, "swift-bear-053", now_millis());
    let created = delivery(&e, 0, now_millis());
    store
        .create_ticket(&t, std::slice::from_ref(&created))
        .await
        .unwrap();
    // A slug that is taken writes neither the ticket nor its announcement.
    let refused = delivery(&e, 1, now_millis());
    let again = store
        .create_ticket(&t, std::slice::from_ref(&refused))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)));
    let m = messages(1).remove(0);
    let posted = delivery(&e, 2, now_millis());
    let batch = vec![
        TicketWrite::Message(m.clone()),
        TicketWrite::Delivery(posted.clone()),
    ];
    write(store.clone(), &p.id, &t.slug, batch).await.unwrap();
    let log = store.list_deliveries(&p.id, e.id, 10).await.unwrap();
    let ids: Vec<&str> = log.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [posted.id.as_str(), created.id.as_str()]);
    assert_eq!(
        store
            .list_messages(&p.id, &t.slug, MessageRange::all())
            .await
            .unwrap(),
        vec![m]
    );
}

pub async fn a_delivery_is_claimed_by_one_dispatcher_at_a_time(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let e = endpoint(&p.id, "https://a.example/hook");
    store.create_endpoint(&e, 20).await.unwrap();
    let now = now_millis();
    let d = delivery(&e, 0, now - Duration::seconds(1));
    store.put_delivery(&d, None).await.unwrap();
    let until = now + Duration::seconds(60);
    assert!(store.claim_delivery(&d, now, until).await.unwrap());
    assert!(!store.claim_delivery(&d, now, until).await.unwrap());
    // A claim whose dispatcher died runs out.
    let after = until + Duration::seconds(1);
    assert!(store
        .claim_delivery(&d, after, after + Duration::seconds(60))
        .await
        .unwrap());
    // Writing the outcome ends the claim; a copy read before it is stale and cannot be claimed.
    let mut retried = d.clone();
    retried.attempts = 1;
    retried.next_attempt_at = Some(now + Duration::seconds(5));
    store
        .put_delivery(&retried, d.next_attempt_at)
        .await
        .unwrap();
    assert!(!store.claim_delivery(&d, now, until).await.unwrap());
    assert!(store.claim_delivery(&retried, now, until).await.unwrap());
    let unknown = delivery(&e, 1, now);
    assert!(!store.claim_delivery(&unknown, now, until).await.unwrap());
}

pub async fn deliveries_past_the_retention_leave_the_log(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let e = endpoint(&p.id, "https://a.example/hook");
    store.create_endpoint(&e, 20).await.unwrap();
    let now = now_millis();
    let mut old = delivery(
        &e,
        0,
        now - crate::webhook::LOG_RETENTION - Duration::days(1),
    );
    old.status = crate::webhook::DeliveryStatus::Succeeded;
    old.next_attempt_at = None;
    let recent = delivery(&e, 1, now - Duration::days(2));
    store.put_delivery(&old, None).await.unwrap();
    store.put_delivery(&recent, None).await.unwrap();
    // Other cases' deliveries share the store: prune until nothing old is left.
    while store
        .prune_deliveries(now - crate::webhook::LOG_RETENTION, 1000)
        .await
        .unwrap()
        == 1000
    {}
    let log = store.list_deliveries(&p.id, e.id, 10).await.unwrap();
    assert_eq!(log, vec![recent.clone()]);
    assert_eq!(
        store.get_delivery(&p.id, e.id, &old.id).await.unwrap(),
        None
    );
    let due = store.due_deliveries(now, 10_000).await.unwrap();
    assert!(due.iter().any(|d| d.id == recent.id));
}

pub async fn creates_racing_for_a_projects_last_endpoints_never_pass_its_cap(
    store: Arc<dyn Store>,
) {
    const CAP: usize = 5;
    let p = stored_project(&store).await;
    let q = stored_project(&store).await;
    // Another project's endpoints do not count.
    let theirs = endpoint(&q.id, "https://q.example/hook");
    store.create_endpoint(&theirs, 1).await.unwrap();
    let first = endpoint(&p.id, "https://first.example/hook");
    store.create_endpoint(&first, CAP).await.unwrap();
    let race = |n: usize| {
        let mut racing = tokio::task::JoinSet::new();
        for i in 0..n {
            let store = store.clone();
            let e = endpoint(&p.id, &format!("https://racer-{i}.example/hook"));
            racing.spawn(async move { store.create_endpoint(&e, CAP).await });
        }
        async move {
            let (mut created, mut refused) = (0, 0);
            while let Some(outcome) = racing.join_next().await {
                match outcome.unwrap() {
                    Ok(()) => created += 1,
                    Err(StoreError::Conflict) => refused += 1,
                    Err(e) => panic!("a create failed: {e}"),
                }
            }
            (created, refused)
        }
    };
    assert_eq!(race(16).await, (CAP - 1, 16 - (CAP - 1)));
    assert_eq!(store.list_endpoints(&p.id).await.unwrap().len(), CAP);
    // A place freed by a deletion is taken once.
    store.delete_endpoint(&p.id, first.id).await.unwrap();
    assert_eq!(race(4).await, (1, 3));
    assert_eq!(store.list_endpoints(&p.id).await.unwrap().len(), CAP);
    assert_eq!(
        store.list_endpoints(&q.id).await.unwrap(),
        vec![theirs.clone()]
    );
    // A project whose every endpoint was deleted has none, and may have one again.
    store.delete_endpoint(&q.id, theirs.id).await.unwrap();
    assert_eq!(store.list_endpoints(&q.id).await.unwrap(), vec![]);
    assert!(!store.all_endpoints().await.unwrap().contains(&theirs));
    let again = endpoint(&q.id, "https://q.example/again");
    store.create_endpoint(&again, 1).await.unwrap();
    assert_eq!(store.list_endpoints(&q.id).await.unwrap(), vec![again]);
}

pub async fn a_ticket_created_with_its_history_reads_back_whole(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let e = endpoint(&p.id, "https://a.example/hook");
    store.create_endpoint(&e, 20).await.unwrap();
    let t = ticket(&p.id, "calm-heron-101", now_millis());
    let mut history = messages(7);
    history[3].author = Participant::Assistant;
    let announced: Vec<crate::webhook::Delivery> = (0..=history.len())
        .map(|n| delivery(&e, n, now_millis()))
        .collect();
    store
        .create_ticket_with_history(&t, &history, &announced)
        .await
        .unwrap();

    // One read brings the whole history back, in order, as it was written.
    let read = store.list_messages(&p.id, &t.slug, MessageRange::all());
    assert_eq!(read.await.unwrap(), history);
    assert_eq!(
        store.get_ticket(&p.id, &t.slug).await.unwrap(),
        Some(t.clone())
    );
    let newest = TicketQuery {
        limit: 10,
        ..Default::default()
    };
    let listed = store.list_tickets(&p.id, &newest).await.unwrap();
    assert_eq!(listed.tickets, vec![t.clone()]);
    let log = store.list_deliveries(&p.id, e.id, 100).await.unwrap();
    let mut ids: Vec<&str> = log.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = announced.iter().map(|d| d.id.as_str()).collect();
    want.sort_unstable();
    assert_eq!(ids, want, "every announcement is written with the ticket");

    // Another creation on the slug is refused, and leaves the ticket's history as it was.
    let mut other = ticket(&p.id, "calm-heron-101", now_millis());
    other.title = Title::parse("Someone else's").unwrap();
    let intruders = messages(2);
    let refused = store.create_ticket_with_history(&other, &intruders, &[]);
    assert!(matches!(refused.await, Err(StoreError::Conflict)));
    let read = store.list_messages(&p.id, &t.slug, MessageRange::all());
    assert_eq!(read.await.unwrap(), history);
    assert_eq!(
        store.get_ticket(&p.id, &t.slug).await.unwrap(),
        Some(t.clone())
    );

    // The ticket's actor carries on after the history.
    let id = MessageId::next(history.last().map(|m| m.id), Utc::now());
    let next = Message {
        id,
        timestamp: id.timestamp(),
        idempotency_key: None,
        agent: None,
        ..history[0].clone()
    };
    let posted = put(&store, &p.id, &t.slug, TicketWrite::Message(next.clone()));
    posted.await.unwrap();
    let read = store.list_messages(&p.id, &t.slug, MessageRange::newest(1));
    assert_eq!(read.await.unwrap(), vec![next]);
}

fn member(project: &ProjectId, email: &str, role: crate::member::Role) -> crate::member::Member {
    crate::member::Member {
        id: Uuid::new_v4(),
        project_id: project.clone(),
        email: email.into(),
        name: "Dana".into(),
        avatar_url: None,
        role,
        state: crate::member::MemberState::Invited,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        created_at: now_millis(),
        updated_at: now_millis(),
    }
}

pub async fn members_are_added_found_by_email_changed_and_listed(store: Arc<dyn Store>) {
    use crate::member::{MemberState, Role};
    let p = project();
    let other = project();
    let dana = member(&p.id, "dana@example.com", Role::Owner);
    let eli = member(&p.id, "eli@example.com", Role::Agent);
    store.create_member(&dana).await.unwrap();
    store.create_member(&eli).await.unwrap();
    // The same email in another project is another member.
    let elsewhere = member(&other.id, "dana@example.com", Role::Agent);
    store.create_member(&elsewhere).await.unwrap();

    assert_eq!(
        store.get_member(&p.id, dana.id).await.unwrap(),
        Some(dana.clone())
    );
    assert_eq!(
        store
            .member_by_email(&p.id, "dana@example.com")
            .await
            .unwrap(),
        Some(dana.clone())
    );
    assert_eq!(
        store
            .member_by_email(&other.id, "dana@example.com")
            .await
            .unwrap(),
        Some(elsewhere.clone())
    );
    assert_eq!(
        store
            .member_by_email(&p.id, "nobody@example.com")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get_member(&other.id, dana.id).await.unwrap(), None);

    // Neither the id nor the email can be taken twice within a project.
    let same_email = member(&p.id, "dana@example.com", Role::Agent);
    assert!(matches!(
        store.create_member(&same_email).await,
        Err(StoreError::Conflict)
    ));
    let same_id = crate::member::Member {
        email: "new@example.com".into(),
        ..dana.clone()
    };
    assert!(matches!(
        store.create_member(&same_id).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store
            .member_by_email(&p.id, "new@example.com")
            .await
            .unwrap(),
        None
    );

    // A change keeps the stored email whatever the row says.
    let changed = crate::member::Member {
        email: "changed@example.com".into(),
        name: "Dana Scully".into(),
        avatar_url: Some("https://example.com/d.png".into()),
        role: Role::Admin,
        state: MemberState::Deactivated,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3".into(),
        updated_at: now_millis() + Duration::seconds(1),
        ..eli.clone()
    };
    store.update_member(&changed).await.unwrap();
    let stored = store.get_member(&p.id, eli.id).await.unwrap().unwrap();
    assert_eq!(
        stored,
        crate::member::Member {
            email: eli.email.clone(),
            ..changed.clone()
        }
    );
    assert_eq!(
        store
            .member_by_email(&p.id, "eli@example.com")
            .await
            .unwrap(),
        Some(stored.clone())
    );
    assert_eq!(
        store
            .member_by_email(&p.id, "changed@example.com")
            .await
            .unwrap(),
        None
    );

    let missing = member(&p.id, "ghost@example.com", Role::Agent);
    assert!(matches!(
        store.update_member(&missing).await,
        Err(StoreError::NotFound)
    ));

    let mut listed = store.list_members(&p.id).await.unwrap();
    listed.sort_by_key(|m| m.email.clone());
    assert_eq!(listed, vec![dana, stored]);
    assert_eq!(
        store.list_members(&other.id).await.unwrap(),
        vec![elsewhere]
    );
}

pub async fn members_racing_for_one_email_leave_one_member(store: Arc<dyn Store>) {
    let p = project();
    let racers: Vec<_> = (0..6)
        .map(|_| member(&p.id, "race@example.com", crate::member::Role::Agent))
        .collect();
    let results = futures_util::future::join_all(racers.iter().map(|m| {
        let store = store.clone();
        async move { store.create_member(m).await }
    }))
    .await;
    let won: Vec<_> = racers
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(m, _)| m.id)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(()) | Err(StoreError::Conflict))));
    let listed = store.list_members(&p.id).await.unwrap();
    assert_eq!(listed.iter().map(|m| m.id).collect::<Vec<_>>(), won);
    let found = store
        .member_by_email(&p.id, "race@example.com")
        .await
        .unwrap();
    assert_eq!(found.map(|m| m.id), won.first().copied());
}

fn link(project: &ProjectId, n: u8, kind: crate::member::LinkKind) -> crate::member::MemberLink {
    let now = now_millis();
    crate::member::MemberLink {
        id: format!("{n:02x}").repeat(32),
        project_id: project.clone(),
        kind,
        email: format!("person{n}@example.com"),
        role: crate::member::Role::Agent,
        member_id: (kind == crate::member::LinkKind::PasswordReset).then(uuid::Uuid::new_v4),
        created_by: n.is_multiple_of(2).then(uuid::Uuid::new_v4),
        created_at: now,
        expires_at: now + Duration::days(7),
    }
}

pub async fn member_links_are_kept_listed_and_deleted_once(store: Arc<dyn Store>) {
    use crate::member::LinkKind;
    let (p, q) = (project(), project());
    let invite = link(&p.id, 1, LinkKind::Invitation);
    let reset = link(&p.id, 2, LinkKind::PasswordReset);
    let elsewhere = link(&q.id, 3, LinkKind::Invitation);
    for l in [&invite, &reset, &elsewhere] {
        store.put_member_link(l).await.unwrap();
    }
    assert_eq!(
        store.get_member_link(&p.id, &invite.id).await.unwrap(),
        Some(invite.clone())
    );
    // A link is found only in its own project.
    assert_eq!(
        store.get_member_link(&q.id, &invite.id).await.unwrap(),
        None
    );
    let mut listed = store.list_member_links(&p.id).await.unwrap();
    listed.sort_by_key(|l| l.id.clone());
    assert_eq!(listed, vec![invite.clone(), reset.clone()]);

    store.delete_member_link(&p.id, &invite.id).await.unwrap();
    assert!(matches!(
        store.delete_member_link(&p.id, &invite.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.get_member_link(&p.id, &invite.id).await.unwrap(),
        None
    );
    assert_eq!(store.list_member_links(&p.id).await.unwrap(), vec![reset]);
    assert_eq!(
        store.list_member_links(&q.id).await.unwrap(),
        vec![elsewhere]
    );
}

pub async fn a_member_link_used_at_once_twice_is_used_once(store: Arc<dyn Store>) {
    let p = project();
    let invite = link(&p.id, 4, crate::member::LinkKind::Invitation);
    store.put_member_link(&invite).await.unwrap();
    let uses = (0..4).map(|_| {
        let (store, project, id) = (store.clone(), p.id.clone(), invite.id.clone());
        tokio::spawn(async move { store.delete_member_link(&project, &id).await })
    });
    let mut won = 0;
    for use_ in uses {
        match use_.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::NotFound) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
}

pub async fn member_sessions_are_kept_listed_and_ended(store: Arc<dyn Store>) {
    use crate::member::{MemberSession, Role};
    let p = project();
    let dana = member(&p.id, "dana@example.com", Role::Owner);
    let eli = member(&p.id, "eli@example.com", Role::Agent);
    store.create_member(&dana).await.unwrap();
    store.create_member(&eli).await.unwrap();
    let now = now_millis();
    let session = |m: &crate::member::Member, n: u8| MemberSession {
        id: format!("{n:02x}").repeat(32),
        project_id: p.id.clone(),
        member_id: m.id,
        created_at: now,
        last_seen_at: now,
        expires_at: now + Duration::days(1),
        user_agent: n.is_multiple_of(2).then(|| "Mozilla/5.0".into()),
        ip: Some("203.0.113.7".into()),
    };
    let (a, b, c) = (session(&dana, 1), session(&dana, 2), session(&eli, 3));
    for s in [&a, &b, &c] {
        store.put_member_session(s).await.unwrap();
    }
    assert_eq!(
        store
            .get_member_session(&p.id, dana.id, &a.id)
            .await
            .unwrap(),
        Some(a.clone())
    );
    // A session is found only under its own member.
    assert_eq!(
        store
            .get_member_session(&p.id, eli.id, &a.id)
            .await
            .unwrap(),
        None
    );

    let seen = MemberSession {
        last_seen_at: now + Duration::minutes(5),
        ..b.clone()
    };
    store.put_member_session(&seen).await.unwrap();
    let mut listed = store.list_member_sessions(&p.id, dana.id).await.unwrap();
    listed.sort_by_key(|s| s.id.clone());
    assert_eq!(listed, vec![a.clone(), seen.clone()]);

    store
        .delete_member_session(&p.id, dana.id, &a.id)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_member_session(&p.id, dana.id, &a.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .get_member_session(&p.id, dana.id, &a.id)
            .await
            .unwrap(),
        None
    );

    store.put_member_session(&a).await.unwrap();
    assert_eq!(
        store.delete_member_sessions(&p.id, dana.id).await.unwrap(),
        2
    );
    assert!(store
        .list_member_sessions(&p.id, dana.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.delete_member_sessions(&p.id, dana.id).await.unwrap(),
        0
    );
    // Another member's sessions stay.
    assert_eq!(
        store.list_member_sessions(&p.id, eli.id).await.unwrap(),
        vec![c]
    );
}

fn canned(project: &ProjectId, shortcut: &str) -> crate::canned::CannedReply {
    use crate::canned::*;
    let now = now_millis();
    CannedReply {
        id: Uuid::new_v4(),
        project_id: project.clone(),
        name: CannedName::parse(&format!("Reply {shortcut}")).unwrap(),
        shortcut: Shortcut::parse(shortcut).unwrap(),
        body: CannedBody::parse("Hi {{visitor.name}}, {{agent.name}} here.\nLine two.").unwrap(),
        created_at: now,
        updated_at: now,
    }
}

fn by_shortcut(mut replies: Vec<crate::canned::CannedReply>) -> Vec<crate::canned::CannedReply> {
    replies.sort_by(|a, b| a.shortcut.as_str().cmp(b.shortcut.as_str()));
    replies
}

pub async fn canned_replies_are_created_listed_replaced_and_deleted(store: Arc<dyn Store>) {
    use crate::canned::*;
    let p = stored_project(&store).await;
    let q = stored_project(&store).await;
    let hello = canned(&p.id, "hello");
    let refund = canned(&p.id, "refund");
    // Another project's shortcuts are its own.
    let theirs = canned(&q.id, "hello");
    for r in [&hello, &refund, &theirs] {
        assert_eq!(store.create_canned_reply(r, 10).await.unwrap(), Ok(()));
    }
    assert_eq!(
        by_shortcut(store.list_canned_replies(&p.id).await.unwrap()),
        vec![hello.clone(), refund.clone()]
    );
    let twin = canned(&p.id, "hello");
    assert_eq!(
        store.create_canned_reply(&twin, 10).await.unwrap(),
        Err(CannedConflict::ShortcutTaken)
    );
    // A change may keep its own shortcut, but not take another reply's.
    let mut changed = hello.clone();
    changed.body = CannedBody::parse("Hello again, {{visitor.name}}.").unwrap();
    changed.name = CannedName::parse("Greeting").unwrap();
    changed.updated_at = now_millis();
    assert_eq!(store.update_canned_reply(&changed).await.unwrap(), Ok(()));
    let mut clash = refund.clone();
    clash.shortcut = Shortcut::parse("hello").unwrap();
    assert_eq!(
        store.update_canned_reply(&clash).await.unwrap(),
        Err(CannedConflict::ShortcutTaken)
    );
    let mut renamed = refund.clone();
    renamed.shortcut = Shortcut::parse("refunds").unwrap();
    assert_eq!(store.update_canned_reply(&renamed).await.unwrap(), Ok(()));
    assert_eq!(
        by_shortcut(store.list_canned_replies(&p.id).await.unwrap()),
        vec![changed.clone(), renamed.clone()]
    );
    store.delete_canned_reply(&p.id, refund.id).await.unwrap();
    assert!(matches!(
        store.delete_canned_reply(&p.id, refund.id).await,
        Err(StoreError::NotFound)
    ));
    // A change to a reply deleted meanwhile does not bring it back.
    assert!(matches!(
        store.update_canned_reply(&renamed).await,
        Err(StoreError::NotFound)
    ));
    // Its shortcut is free again.
    let again = canned(&p.id, "refunds");
    assert_eq!(store.create_canned_reply(&again, 10).await.unwrap(), Ok(()));
    assert_eq!(
        by_shortcut(store.list_canned_replies(&p.id).await.unwrap()),
        vec![changed, again]
    );
    assert_eq!(
        store.list_canned_replies(&q.id).await.unwrap(),
        vec![theirs]
    );
}

pub async fn canned_replies_racing_never_pass_the_cap_or_share_a_shortcut(store: Arc<dyn Store>) {
    use crate::canned::*;
    const CAP: usize = 3;
    let p = stored_project(&store).await;
    let race = |shortcuts: Vec<String>| {
        let mut racing = tokio::task::JoinSet::new();
        for shortcut in shortcuts {
            let store = store.clone();
            let r = canned(&p.id, &shortcut);
            racing.spawn(async move { store.create_canned_reply(&r, CAP).await });
        }
        async move {
            let (mut created, mut full, mut taken) = (0, 0, 0);
            while let Some(outcome) = racing.join_next().await {
                match outcome.unwrap() {
                    Ok(Ok(())) => created += 1,
                    Ok(Err(CannedConflict::Full)) => full += 1,
                    Ok(Err(CannedConflict::ShortcutTaken)) => taken += 1,
                    Err(e) => panic!("a create failed: {e}"),
                }
            }
            (created, full, taken)
        }
    };
    // One shortcut, claimed by six at once: one gets it.
    assert_eq!(race(vec!["same".to_owned(); 6]).await, (1, 0, 5));
    let distinct = (0..8).map(|i| format!("racer-{i}")).collect();
    assert_eq!(race(distinct).await, (CAP - 1, 8 - (CAP - 1), 0));
    let all = store.list_canned_replies(&p.id).await.unwrap();
    assert_eq!(all.len(), CAP);
    // A place freed by a deletion is taken once.
    store.delete_canned_reply(&p.id, all[0].id).await.unwrap();
    let distinct = (0..4).map(|i| format!("late-{i}")).collect();
    assert_eq!(race(distinct).await, (1, 3, 0));
    assert_eq!(store.list_canned_replies(&p.id).await.unwrap().len(), CAP);
}

pub async fn api_tokens_are_created_touched_listed_and_revoked(store: Arc<dyn Store>) {
    use crate::member::{ApiToken, Role, TokenScope};
    let p = project();
    let other = project();
    let dana = member(&p.id, "dana@example.com", Role::Owner);
    store.create_member(&dana).await.unwrap();
    let now = now_millis();
    let token = |project: &ProjectId, n: u8, scope| ApiToken {
        id: Uuid::new_v4(),
        project_id: project.clone(),
        member_id: dana.id,
        name: format!("integration {n}"),
        scope,
        secret_hash: format!("{n:02x}").repeat(32),
        created_at: now,
        last_used_at: None,
    };
    let read = token(&p.id, 1, TokenScope::Read);
    let write = token(&p.id, 2, TokenScope::Write);
    let elsewhere = token(&other.id, 3, TokenScope::Write);
    for t in [&read, &write, &elsewhere] {
        store.create_api_token(t).await.unwrap();
    }
    assert!(matches!(
        store.create_api_token(&read).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_api_token(&p.id, read.id).await.unwrap(),
        Some(read.clone())
    );
    // A token is found only in its own project.
    assert_eq!(store.get_api_token(&other.id, read.id).await.unwrap(), None);

    let later = now + Duration::minutes(3);
    store.touch_api_token(&p.id, write.id, later).await.unwrap();
    let touched = ApiToken {
        last_used_at: Some(later),
        ..write.clone()
    };
    let mut listed = store.list_api_tokens(&p.id).await.unwrap();
    listed.sort_by_key(|t| t.name.clone());
    assert_eq!(listed, vec![read.clone(), touched.clone()]);
    assert_eq!(
        store.list_api_tokens(&other.id).await.unwrap(),
        vec![elsewhere.clone()]
    );

    store.delete_api_token(&p.id, read.id).await.unwrap();
    assert!(matches!(
        store.delete_api_token(&p.id, read.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.get_api_token(&p.id, read.id).await.unwrap(), None);
    // A use noted after the revocation does not bring the token back.
    assert!(matches!(
        store.touch_api_token(&p.id, read.id, later).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.get_api_token(&p.id, read.id).await.unwrap(), None);
    assert_eq!(store.list_api_tokens(&p.id).await.unwrap(), vec![touched]);
}

fn totp(project: &ProjectId, member: Uuid) -> crate::member::MemberTotp {
    crate::member::MemberTotp {
        project_id: project.clone(),
        member_id: member,
        version: Uuid::new_v4(),
        secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into(),
        enabled: false,
        last_step: 0,
        recovery_hashes: Vec::new(),
        challenge: None,
        created_at: now_millis(),
        updated_at: now_millis(),
    }
}

pub async fn a_second_factor_is_written_only_over_the_version_it_read(store: Arc<dyn Store>) {
    use crate::member::{MemberTotp, Role, TotpChallenge};
    let p = project();
    let other = project();
    let dana = member(&p.id, "dana@example.com", Role::Agent);
    store.create_member(&dana).await.unwrap();
    assert_eq!(store.get_member_totp(&p.id, dana.id).await.unwrap(), None);

    let pending = totp(&p.id, dana.id);
    // A first write must find none; a second create is refused.
    store.put_member_totp(&pending, None).await.unwrap();
    assert!(matches!(
        store.put_member_totp(&totp(&p.id, dana.id), None).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.get_member_totp(&p.id, dana.id).await.unwrap(),
        Some(pending.clone())
    );
    assert_eq!(
        store.get_member_totp(&other.id, dana.id).await.unwrap(),
        None
    );

    let now = now_millis();
    let on = MemberTotp {
        version: Uuid::new_v4(),
        enabled: true,
        last_step: 56_789_012,
        recovery_hashes: vec!["ab".repeat(32), "cd".repeat(32)],
        challenge: Some(TotpChallenge {
            hash: "ef".repeat(32),
            expires_at: now + Duration::minutes(5),
            failures: 2,
        }),
        updated_at: now + Duration::seconds(1),
        ..pending.clone()
    };
    store
        .put_member_totp(&on, Some(pending.version))
        .await
        .unwrap();
    assert_eq!(
        store.get_member_totp(&p.id, dana.id).await.unwrap(),
        Some(on.clone())
    );

    // Two writes that read the same version: one lands, the other is refused, whichever
    // comes first. This is what makes a code and a recovery code work once.
    let race = |n: i64| {
        let store = store.clone();
        let next = MemberTotp {
            version: Uuid::new_v4(),
            last_step: on.last_step + n,
            challenge: None,
            ..on.clone()
        };
        let expected = on.version;
        tokio::spawn(async move { store.put_member_totp(&next, Some(expected)).await })
    };
    let (a, b) = (race(1), race(2));
    let outcomes = [a.await.unwrap(), b.await.unwrap()];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, Err(StoreError::Conflict))));
    let landed = store
        .get_member_totp(&p.id, dana.id)
        .await
        .unwrap()
        .unwrap();
    assert!(landed.last_step > on.last_step);
    assert_eq!(landed.challenge, None);

    // A delete names the version too.
    assert!(matches!(
        store.delete_member_totp(&p.id, dana.id, on.version).await,
        Err(StoreError::Conflict)
    ));
    store
        .delete_member_totp(&p.id, dana.id, landed.version)
        .await
        .unwrap();
    assert_eq!(store.get_member_totp(&p.id, dana.id).await.unwrap(), None);
    assert!(matches!(
        store
            .delete_member_totp(&p.id, dana.id, landed.version)
            .await,
        Err(StoreError::NotFound)
    ));
    // A write over a version that is gone is refused; enrolling again starts from none.
    assert!(matches!(
        store.put_member_totp(&on, Some(landed.version)).await,
        Err(StoreError::Conflict)
    ));
    let again = totp(&p.id, dana.id);
    store.put_member_totp(&again, None).await.unwrap();
    assert_eq!(
        store.get_member_totp(&p.id, dana.id).await.unwrap(),
        Some(again)
    );
}

fn audit_record(
    project: &ProjectId,
    at: DateTime<Utc>,
    actor: crate::audit::AuditActor,
    action: &str,
) -> crate::audit::AuditRecord {
    crate::audit::AuditRecord::new(project, at, actor, Some("203.0.113.7".into()), action)
        .target(crate::audit::AuditTarget::new("project", project.as_str()))
        .changed("name", "Before", "After")
}

pub async fn audit_records_list_newest_first_filtered_and_paged(store: Arc<dyn Store>) {
    use crate::audit::{AuditActor, AuditQuery};
    let p = project();
    let other = project();
    let dana = AuditActor::Member {
        id: Uuid::new_v4(),
        name: "Dana".into(),
        token: None,
    };
    let start = now_millis() - Duration::hours(1);
    let mut written = Vec::new();
    for i in 0..12 {
        let (actor, action) = match i % 3 {
            0 => (dana.clone(), "member.signed_in"),
            1 => (AuditActor::AdminKey, "project.changed"),
            _ => (dana.clone(), "ticket.status_changed"),
        };
        let r = audit_record(&p.id, start + Duration::seconds(i), actor, action);
        store.record_audit(&r).await.unwrap();
        written.push(r);
    }
    // Two records of one millisecond both come back, in a stable order.
    let twin = audit_record(
        &p.id,
        start + Duration::seconds(11),
        dana.clone(),
        "member.signed_out",
    );
    store.record_audit(&twin).await.unwrap();
    written.push(twin);
    let elsewhere = audit_record(&other.id, start, dana.clone(), "member.signed_in");
    store.record_audit(&elsewhere).await.unwrap();

    let mut newest_first = written.clone();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.cursor()));
    let all = |limit| AuditQuery {
        limit,
        ..Default::default()
    };
    let page = store.list_audit(&p.id, &all(100)).await.unwrap();
    assert_eq!(page.records, newest_first);
    assert_eq!(page.next, None);

    // Paged five at a time, the pages join up to the whole trail.
    let (mut pages, mut after) = (Vec::new(), None);
    loop {
        let q = AuditQuery { after, ..all(5) };
        let page = store.list_audit(&p.id, &q).await.unwrap();
        assert!(page.records.len() <= 5);
        pages.extend(page.records);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, newest_first);

    let by = |q: AuditQuery| {
        let store = store.clone();
        let p = p.id.clone();
        async move { store.list_audit(&p, &q).await.unwrap().records }
    };
    let dana_id = dana.member_id();
    let mine = by(AuditQuery {
        member: dana_id,
        ..all(100)
    })
    .await;
    assert_eq!(mine.len(), 9);
    assert!(mine.iter().all(|r| r.actor == dana));
    let signed_in = by(AuditQuery {
        action: Some("member.signed_in".into()),
        ..all(100)
    })
    .await;
    assert_eq!(signed_in.len(), 4);
    let members = by(AuditQuery {
        action: Some("member.*".into()),
        ..all(100)
    })
    .await;
    assert_eq!(members.len(), 5);
    let recent = by(AuditQuery {
        since: Some(start + Duration::seconds(10)),
        ..all(100)
    })
    .await;
    assert_eq!(recent, newest_first[..3].to_vec());
    // Filters combine, and a filtered listing pages too.
    let first = store
        .list_audit(
            &p.id,
            &AuditQuery {
                member: dana_id,
                action: Some("ticket.status_changed".into()),
                ..all(2)
            },
        )
        .await
        .unwrap();
    assert_eq!(first.records.len(), 2);
    let rest = by(AuditQuery {
        member: dana_id,
        action: Some("ticket.status_changed".into()),
        after: first.next,
        ..all(100)
    })
    .await;
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|r| r.action == "ticket.status_changed"));
    assert_eq!(
        store
            .list_audit(&other.id, &all(100))
            .await
            .unwrap()
            .records,
        vec![elsewhere]
    );
}

pub async fn a_change_and_its_audit_record_are_one_write(store: Arc<dyn Store>) {
    use crate::audit::{recorded, AuditActor, AuditQuery};
    use crate::member::Role;
    let p = stored_project(&store).await;
    let now = now_millis();
    let record = |action: &str| Some(audit_record(&p.id, now, AuditActor::AdminKey, action));
    let trail = || async {
        let q = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        let page = store.list_audit(&p.id, &q).await.unwrap();
        let mut actions: Vec<String> = page.records.into_iter().map(|r| r.action).collect();
        actions.sort();
        actions
    };

    // Each audited write carries its record.
    let mut renamed = p.clone();
    renamed.name = "Renamed".into();
    recorded(record("project.changed"), store.update_project(&renamed))
        .await
        .unwrap();
    let dana = member(&p.id, "dana@example.com", Role::Agent);
    recorded(record("member.added"), store.create_member(&dana))
        .await
        .unwrap();
    let mut promoted = dana.clone();
    promoted.role = Role::Admin;
    recorded(
        record("member.role_changed"),
        store.update_member(&promoted),
    )
    .await
    .unwrap();
    let session = MemberSession {
        id: "ab".repeat(32),
        project_id: p.id.clone(),
        member_id: dana.id,
        created_at: now,
        last_seen_at: now,
        expires_at: now + Duration::days(1),
        user_agent: None,
        ip: None,
    };
    recorded(
        record("member.signed_in"),
        store.put_member_session(&session),
    )
    .await
    .unwrap();
    recorded(
        record("member.signed_out"),
        store.delete_member_session(&p.id, dana.id, &session.id),
    )
    .await
    .unwrap();
    let second = totp(&p.id, dana.id);
    recorded(
        record("member.totp_enabled"),
        store.put_member_totp(&second, None),
    )
    .await
    .unwrap();
    recorded(
        record("member.totp_disabled"),
        store.delete_member_totp(&p.id, dana.id, second.version),
    )
    .await
    .unwrap();
    let e = endpoint(&p.id, "https://a.example/hook");
    recorded(record("webhook.created"), store.create_endpoint(&e, 20))
        .await
        .unwrap();
    recorded(record("webhook.changed"), store.update_endpoint(&e))
        .await
        .unwrap();
    recorded(
        record("webhook.deleted"),
        store.delete_endpoint(&p.id, e.id),
    )
    .await
    .unwrap();
    let reply = canned(&p.id, "hello");
    recorded(
        record("canned_reply.created"),
        store.create_canned_reply(&reply, 10),
    )
    .await
    .unwrap()
    .unwrap();
    recorded(
        record("canned_reply.deleted"),
        store.delete_canned_reply(&p.id, reply.id),
    )
    .await
    .unwrap();
    let key = crate::member::ApiToken {
        id: Uuid::new_v4(),
        project_id: p.id.clone(),
        member_id: dana.id,
        name: "CRM sync".into(),
        scope: crate::member::TokenScope::Write,
        secret_hash: "cd".repeat(32),
        created_at: now,
        last_used_at: None,
    };
    recorded(record("token.created"), store.create_api_token(&key))
        .await
        .unwrap();
    recorded(
        record("token.revoked"),
        store.delete_api_token(&p.id, key.id),
    )
    .await
    .unwrap();
    let invite = link(&p.id, 9, crate::member::LinkKind::Invitation);
    recorded(record("invitation.created"), store.put_member_link(&invite))
        .await
        .unwrap();
    recorded(
        record("invitation.revoked"),
        store.delete_member_link(&p.id, &invite.id),
    )
    .await
    .unwrap();
    // A refused delete (the link is gone) leaves no record.
    let again = recorded(
        record("invitation.revoked"),
        store.delete_member_link(&p.id, &invite.id),
    )
    .await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    let t = ticket(&p.id, "quiet-owl-026", now);
    store.create_ticket(&t, &[]).await.unwrap();
    let mut closed = t.clone();
    closed.status = TicketStatus::Resolved;
    closed.updated_at = now + Duration::seconds(1);
    let status = record("ticket.status_changed").unwrap();
    write(
        store.clone(),
        &p.id,
        &t.slug,
        vec![
            TicketWrite::Ticket(closed.clone()),
            TicketWrite::Audit(status),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        store.get_ticket(&p.id, &t.slug).await.unwrap(),
        Some(closed)
    );

    let expected = [
        "canned_reply.created",
        "canned_reply.deleted",
        "invitation.created",
        "invitation.revoked",
        "member.added",
        "member.role_changed",
        "member.signed_in",
        "member.signed_out",
        "member.totp_disabled",
        "member.totp_enabled",
        "project.changed",
        "ticket.status_changed",
        "token.created",
        "token.revoked",
        "webhook.changed",
        "webhook.created",
        "webhook.deleted",
    ];
    assert_eq!(trail().await, expected);

    // A refused change leaves no record: neither lands.
    let ghost = member(&p.id, "ghost@example.com", Role::Agent);
    let refused = recorded(record("member.role_changed"), store.update_member(&ghost)).await;
    assert!(matches!(refused, Err(StoreError::NotFound)));
    let twin = member(&p.id, "dana@example.com", Role::Agent);
    let refused = recorded(record("member.added"), store.create_member(&twin)).await;
    assert!(matches!(refused, Err(StoreError::Conflict)));
    let refused = recorded(
        record("webhook.deleted"),
        store.delete_endpoint(&p.id, e.id),
    )
    .await;
    assert!(matches!(refused, Err(StoreError::NotFound)));
    let refused = recorded(
        record("token.revoked"),
        store.delete_api_token(&p.id, key.id),
    )
    .await;
    assert!(matches!(refused, Err(StoreError::NotFound)));
    let refused = recorded(
        record("member.signed_out"),
        store.delete_member_session(&p.id, dana.id, &session.id),
    )
    .await;
    assert!(matches!(refused, Err(StoreError::NotFound)));
    let refused = recorded(
        record("member.totp_enabled"),
        store.put_member_totp(&second, Some(Uuid::new_v4())),
    )
    .await;
    assert!(matches!(refused, Err(StoreError::Conflict)));
    let first = canned(&p.id, "first");
    store
        .create_canned_reply(&first, 10)
        .await
        .unwrap()
        .unwrap();
    let clash = canned(&p.id, "first");
    let refused = recorded(
        record("canned_reply.created"),
        store.create_canned_reply(&clash, 10),
    )
    .await
    .unwrap();
    assert!(refused.is_err());
    // A change outside `recorded` carries nothing, and a record goes with one write only.
    store.update_project(&p).await.unwrap();
    recorded(record("project.changed"), async {
        store.update_project(&renamed).await.unwrap();
        store.update_project(&p).await.unwrap();
    })
    .await;
    let mut again = expected.to_vec();
    again.push("project.changed");
    again.sort();
    assert_eq!(trail().await, again);
}

pub async fn audit_records_past_the_retention_leave_the_trail(store: Arc<dyn Store>) {
    use crate::audit::{AuditActor, AuditQuery};
    let p = project();
    let now = now_millis();
    let old = audit_record(
        &p.id,
        now - Duration::days(400),
        AuditActor::AdminKey,
        "project.changed",
    );
    let recent = audit_record(
        &p.id,
        now - Duration::days(2),
        AuditActor::AdminKey,
        "project.changed",
    );
    store.record_audit(&old).await.unwrap();
    store.record_audit(&recent).await.unwrap();
    // Other cases' records share the store: prune until nothing old is left.
    while store
        .prune_audit(now - Duration::days(365), 1000)
        .await
        .unwrap()
        == 1000
    {}
    let q = AuditQuery {
        limit: 10,
        ..Default::default()
    };
    let listed = store.list_audit(&p.id, &q).await.unwrap().records;
    // A backend whose rows expire on their own has written the old one with a TTL of a
    // second: it may still be listed for that second, never after.
    match store.backend() {
        "scylla" => assert!(listed.contains(&recent)),
        _ => assert_eq!(listed, vec![recent]),
    }
}

fn email(p: &ProjectId, n: u32, due: DateTime<Utc>) -> crate::email::Email {
    let mut e = crate::email::Email::new(
        p,
        crate::email::EmailKind::Invitation,
        &format!("to{n}@example.com"),
        format!("Subject {n}"),
        format!("Text {n} <&>"),
        format!("<p>Html {n} &amp;</p>"),
        due,
    );
    e.thread = n
        .is_multiple_of(2)
        .then(|| format!("<eml_{n}@example.com>"));
    e
}

pub async fn emails_come_due_in_order_are_claimed_once_and_settle(store: Arc<dyn Store>) {
    let p = project();
    // A time of its own, far back: rows other cases (or earlier runs on a shared keyspace)
    // left due are all later or belong to other projects.
    let base = DateTime::from_timestamp_millis(
        631_152_000_000 + i64::from(rand::random::<u32>() % 1_000_000) * 60_000,
    )
    .unwrap();
    let emails: Vec<_> = (0..3u32)
        .map(|n| email(&p.id, n, base + Duration::seconds(i64::from(2 - n))))
        .collect();
    for e in &emails {
        store.put_email(e, None).await.unwrap();
    }
    let mine = |all: Vec<crate::email::Email>| {
        all.into_iter()
            .filter(|e| e.project_id == p.id)
            .collect::<Vec<_>>()
    };
    let due = mine(
        store
            .due_emails(base + Duration::seconds(1), 100)
            .await
            .unwrap(),
    );
    assert_eq!(
        due,
        vec![emails[2].clone(), emails[1].clone()],
        "soonest first, only what is due"
    );
    assert_eq!(
        store
            .due_emails(base + Duration::seconds(5), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.get_email(&emails[0].id).await.unwrap(),
        Some(emails[0].clone())
    );
    assert_eq!(store.get_email("eml_none").await.unwrap(), None);

    // One claim at a time; a claim on an attempt that moved on fails.
    let now = Utc::now();
    let until = now + Duration::seconds(30);
    assert!(store.claim_email(&emails[2], now, until).await.unwrap());
    assert!(!store.claim_email(&emails[2], now, until).await.unwrap());
    // Rescheduled: found at its new time only, and the write ends the claim.
    let mut retry = emails[2].clone();
    retry.attempts = 1;
    retry.last_error = Some("451 try later".into());
    retry.next_attempt_at = Some(base + Duration::seconds(10));
    store
        .put_email(&retry, emails[2].next_attempt_at)
        .await
        .unwrap();
    assert!(!store.claim_email(&emails[2], now, until).await.unwrap());
    let due = mine(
        store
            .due_emails(base + Duration::seconds(5), 100)
            .await
            .unwrap(),
    );
    assert_eq!(due, vec![emails[1].clone(), emails[0].clone()]);
    assert!(store.claim_email(&retry, now, until).await.unwrap());

    // Settled: no longer due, and kept without its body.
    for e in [retry, emails[1].clone(), emails[0].clone()] {
        let was = e.next_attempt_at;
        let sent = e.settled(crate::email::EmailStatus::Sent, now_millis());
        store.put_email(&sent, was).await.unwrap();
        assert_eq!(store.get_email(&sent.id).await.unwrap(), Some(sent.clone()));
    }
    let due = mine(
        store
            .due_emails(base + Duration::seconds(60), 100)
            .await
            .unwrap(),
    );
    assert!(due.is_empty(), "{due:?}");
}

pub async fn a_member_link_and_its_email_are_one_write(store: Arc<dyn Store>) {
    let p = project();
    let invite = link(&p.id, 7, crate::member::LinkKind::Invitation);
    let e = email(&p.id, 7, now_millis());
    store.put_member_link_with_email(&invite, &e).await.unwrap();
    assert_eq!(
        store.get_member_link(&p.id, &invite.id).await.unwrap(),
        Some(invite)
    );
    assert_eq!(store.get_email(&e.id).await.unwrap(), Some(e.clone()));
    let due = store
        .due_emails(now_millis() + Duration::seconds(1), 10_000)
        .await
        .unwrap();
    assert!(due.iter().any(|d| d.id == e.id));
    let sent = e
        .clone()
        .settled(crate::email::EmailStatus::Sent, now_millis());
    store.put_email(&sent, e.next_attempt_at).await.unwrap();
}

fn visitor_mail(
    p: &ProjectId,
    slug: &str,
    due: Option<DateTime<Utc>>,
) -> crate::visitor_mail::VisitorMail {
    crate::visitor_mail::VisitorMail {
        project_id: p.clone(),
        slug: Slug::parse(slug).unwrap(),
        due_at: due,
        sent_through: None,
        first_email: None,
        unsubscribed: false,
        lang: Some("de".into()),
        updated_at: now_millis(),
    }
}

pub async fn visitor_mails_come_due_in_order_and_an_email_rides_with_its_record(
    store: Arc<dyn Store>,
) {
    let p = project();
    // A time of its own, far back, as for the outbox's emails.
    let base = DateTime::from_timestamp_millis(
        631_152_000_000 + i64::from(rand::random::<u32>() % 1_000_000) * 60_000,
    )
    .unwrap();
    let a = visitor_mail(&p.id, "brave-lynx-001", Some(base + Duration::seconds(2)));
    let b = visitor_mail(&p.id, "brave-lynx-002", Some(base + Duration::seconds(1)));
    let c = visitor_mail(&p.id, "brave-lynx-003", None);
    for m in [&a, &b, &c] {
        store.put_visitor_mail(m, None, None).await.unwrap();
    }
    let mine = |all: Vec<crate::visitor_mail::VisitorMail>| {
        all.into_iter()
            .filter(|m| m.project_id == p.id)
            .collect::<Vec<_>>()
    };
    let due = |at| {
        let store = store.clone();
        async move { store.due_visitor_mails(at, 1000).await.unwrap() }
    };
    assert_eq!(
        mine(due(base + Duration::milliseconds(1500)).await),
        vec![b.clone()]
    );
    assert_eq!(
        mine(due(base + Duration::seconds(5)).await),
        vec![b.clone(), a.clone()],
        "soonest first, never one that waits for nothing"
    );
    assert_eq!(
        store.get_visitor_mail(&p.id, &c.slug).await.unwrap(),
        Some(c.clone())
    );
    let none = Slug::parse("brave-lynx-999").unwrap();
    assert_eq!(store.get_visitor_mail(&p.id, &none).await.unwrap(), None);

    // Sent: the record no longer waits and the email is in the outbox, from one write.
    let mut e = email(&p.id, 9, base + Duration::seconds(2));
    e.kind = crate::email::EmailKind::VisitorReply;
    e.id = crate::visitor_mail::email_id(&p.id, &a.slug, a.due_at.unwrap());
    e.headers = vec![("List-Unsubscribe".into(), "<https://x.org/u?t=1>".into())];
    let through = crate::message_id::MessageId::next(None, base);
    let done = crate::visitor_mail::sent(a.clone(), &e.id, through, now_millis());
    store
        .put_visitor_mail(&done, a.due_at, Some(&e))
        .await
        .unwrap();
    assert_eq!(
        store.get_visitor_mail(&p.id, &a.slug).await.unwrap(),
        Some(done)
    );
    assert_eq!(store.get_email(&e.id).await.unwrap(), Some(e.clone()));
    // Moved later: found at its new time only.
    let mut later = b.clone();
    later.due_at = Some(base + Duration::seconds(10));
    store
        .put_visitor_mail(&later, b.due_at, None)
        .await
        .unwrap();
    assert!(mine(due(base + Duration::seconds(5)).await).is_empty());
    assert_eq!(
        mine(due(base + Duration::seconds(10)).await),
        vec![later.clone()]
    );
    // Settled, so the outbox does not send it from a shared keyspace's later runs.
    let settled = e
        .clone()
        .settled(crate::email::EmailStatus::Sent, now_millis());
    store.put_email(&settled, e.next_attempt_at).await.unwrap();
    let mut off = later.clone();
    off.due_at = None;
    store
        .put_visitor_mail(&off, later.due_at, None)
        .await
        .unwrap();
}

fn contact(project: &ProjectId, n: u128, external_id: &str) -> crate::contact::Contact {
    let at = now_millis();
    crate::contact::Contact {
        id: Uuid::from_u128(n),
        project_id: project.clone(),
        external_id: external_id.into(),
        email: Some(format!("{external_id}@example.com")),
        name: None,
        attributes: [("plan".to_owned(), "pro".to_owned())].into(),
        verified: true,
        first_seen_at: at,
        last_seen_at: at,
    }
}

pub async fn contacts_are_put_read_replaced_and_kept_per_project(store: Arc<dyn Store>) {
    let (p, q) = (stored_project(&store).await, stored_project(&store).await);
    let mut ada = contact(&p.id, 7, "ada");
    store.put_contact(&ada).await.unwrap();
    assert_eq!(
        store.get_contact(&p.id, ada.id).await.unwrap(),
        Some(ada.clone())
    );
    // One id in another project is another contact.
    assert_eq!(store.get_contact(&q.id, ada.id).await.unwrap(), None);
    ada.name = Some("Ada Lovelace".into());
    ada.attributes.clear();
    ada.email = None;
    ada.last_seen_at += Duration::hours(2);
    store.put_contact(&ada).await.unwrap();
    assert_eq!(store.get_contact(&p.id, ada.id).await.unwrap(), Some(ada));
    let missing = Uuid::from_u128(8);
    assert_eq!(store.get_contact(&p.id, missing).await.unwrap(), None);
}

pub async fn contacts_list_in_id_order_page_by_page_and_a_search_stays_within_its_scan(
    store: Arc<dyn Store>,
) {
    use crate::contact::ContactQuery;
    let (p, q) = (stored_project(&store).await, stored_project(&store).await);
    let names = ["carol", "ada", "bob", "dave", "erin"];
    for (i, name) in names.iter().enumerate() {
        // Ids out of the names' order, so the listing's order is the ids'.
        let n = [5u128, 1, 4, 2, 3][i] << 100;
        store.put_contact(&contact(&p.id, n, name)).await.unwrap();
    }
    store
        .put_contact(&contact(&q.id, 1 << 100, "other"))
        .await
        .unwrap();
    let ids = |page: &crate::contact::ContactPage| -> Vec<String> {
        page.contacts
            .iter()
            .map(|c| c.external_id.clone())
            .collect()
    };
    let first = store
        .list_contacts(
            &p.id,
            &ContactQuery {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&first), ["ada", "dave"]);
    let second = store
        .list_contacts(
            &p.id,
            &ContactQuery {
                limit: 2,
                after: first.next,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&second), ["erin", "bob"]);
    let last = store
        .list_contacts(
            &p.id,
            &ContactQuery {
                limit: 2,
                after: second.next,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((ids(&last), last.next), (vec!["carol".to_owned()], None));

    // A search matches the external id, email or name, ignoring case.
    let search = |q: &str, scan: Option<usize>, after: Option<Uuid>| ContactQuery {
        q: Some(q.into()),
        limit: 10,
        scan,
        after,
    };
    let found = store
        .list_contacts(&p.id, &search("b@example", None, None))
        .await
        .unwrap();
    assert_eq!((ids(&found), found.next), (vec!["bob".to_owned()], None));
    // Examining two contacts per page, it finds `erin` (the third) on the second page.
    let short = store
        .list_contacts(&p.id, &search("erin", Some(2), None))
        .await
        .unwrap();
    assert!(short.contacts.is_empty());
    assert_eq!(short.next, Some(Uuid::from_u128(2 << 100)));
    let then = store
        .list_contacts(&p.id, &search("erin", Some(2), short.next))
        .await
        .unwrap();
    assert_eq!(ids(&then), ["erin"]);
}

pub async fn a_contacts_tickets_come_newest_first_and_only_theirs(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let (ada, bob) = (contact(&p.id, 1, "ada"), contact(&p.id, 2, "bob"));
    store.put_contact(&ada).await.unwrap();
    store.put_contact(&bob).await.unwrap();
    let start = now_millis();
    let mut slugs = Vec::new();
    for (i, who) in [Some(&ada), None, Some(&bob), Some(&ada), Some(&ada)]
        .into_iter()
        .enumerate()
    {
        let mut t = ticket(
            &p.id,
            &format!("contact-ticket-{i:03}"),
            start + Duration::seconds(i as i64),
        );
        t.contact = who.map(|c| Box::new(c.on_ticket()));
        store.create_ticket(&t, &[]).await.unwrap();
        slugs.push(t.slug);
    }
    let of = |tickets: Vec<Ticket>| -> Vec<Slug> { tickets.into_iter().map(|t| t.slug).collect() };
    let adas = store.contact_tickets(&p.id, ada.id, 10).await.unwrap();
    assert_eq!(adas[0].contact.as_deref(), Some(&ada.on_ticket()));
    assert_eq!(
        of(adas),
        [slugs[4].clone(), slugs[3].clone(), slugs[0].clone()]
    );
    let newest = store.contact_tickets(&p.id, ada.id, 2).await.unwrap();
    assert_eq!(of(newest), [slugs[4].clone(), slugs[3].clone()]);
    let bobs = store.contact_tickets(&p.id, bob.id, 10).await.unwrap();
    assert_eq!(of(bobs), [slugs[2].clone()]);
    let nobody = store
        .contact_tickets(&p.id, Uuid::from_u128(3), 10)
        .await
        .unwrap();
    assert!(nobody.is_empty());
    // The ticket keeps its contact.
    let read = store.get_ticket(&p.id, &slugs[0]).await.unwrap().unwrap();
    assert_eq!(read.contact.as_deref(), Some(&ada.on_ticket()));
}

pub async fn a_project_keeps_its_identity_secrets(store: Arc<dyn Store>) {
    let mut p = stored_project(&store).await;
    let secret = |id: &str| crate::contact::IdentitySecret {
        id: id.into(),
        secret: format!("secret-of-{id}"),
        created_at: now_millis(),
    };
    p.identity_secrets = vec![secret("old"), secret("new")];
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p.clone()));
    p.identity_secrets.remove(0);
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p.clone()));
    p.identity_secrets.clear();
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p));
}

/// The retention setting comes back as written, and clearing it keeps everything again.
pub async fn a_project_keeps_its_retention(store: Arc<dyn Store>) {
    let mut p = stored_project(&store).await;
    let stored = store.get_project(&p.id).await.unwrap().unwrap();
    assert!(stored.retention.keeps_all(), "the default keeps everything");
    p.retention.tickets_after_days = Some(30);
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p.clone()));
    assert!(store.list_projects().await.unwrap().contains(&p));
    p.retention.tickets_after_days = None;
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p.clone()));
}

/// `session` access checks a ticket against the session and the verified contact that opened
/// it: both must come back as written, with the project's setting.
pub async fn a_project_keeps_its_ticket_access_and_a_ticket_who_opened_it(store: Arc<dyn Store>) {
    use crate::domain::TicketAccess;
    let mut p = stored_project(&store).await;
    let stored = store.get_project(&p.id).await.unwrap().unwrap();
    assert_eq!(stored.ticket_access, TicketAccess::Slug, "the default");
    p.ticket_access = TicketAccess::Session;
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p.clone()));
    assert!(store.list_projects().await.unwrap().contains(&p));
    p.ticket_access = TicketAccess::Slug;
    store.update_project(&p).await.unwrap();
    assert_eq!(store.get_project(&p.id).await.unwrap(), Some(p.clone()));

    let mut t = ticket(&p.id, "quiet-heron-417", now_millis());
    t.session_id = Some("session-that-opened-it".into());
    t.contact = Some(Box::new(crate::contact::TicketContact {
        id: uuid::Uuid::new_v4(),
        external_id: "user-42".into(),
        name: None,
        email: None,
        verified: true,
    }));
    store.create_ticket(&t, &[]).await.unwrap();
    let read = store.get_ticket(&p.id, &t.slug).await.unwrap().unwrap();
    assert_eq!(read.session_id, t.session_id);
    assert_eq!(read.contact, t.contact);
}

pub async fn inbound_mail_is_kept_per_ticket_and_key(store: Arc<dyn Store>) {
    use crate::inbound_mail::InboundMail;
    let (p, q) = (stored_project(&store).await, stored_project(&store).await);
    let (a, b) = (
        Slug::parse("swift-bear-001").unwrap(),
        Slug::parse("swift-bear-002").unwrap(),
    );
    let now = now_millis();
    let key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let mail = InboundMail {
        project_id: p.id.clone(),
        slug: a.clone(),
        key: key.into(),
        message_id: MessageId::next(None, now),
        received_at: now,
    };
    assert_eq!(store.get_inbound_mail(&p.id, &a, key).await.unwrap(), None);
    store.put_inbound_mail(&mail).await.unwrap();
    assert_eq!(
        store.get_inbound_mail(&p.id, &a, key).await.unwrap(),
        Some(mail.clone())
    );
    // The same mail is another on another ticket, in another project, and another key is
    // another mail.
    assert_eq!(store.get_inbound_mail(&p.id, &b, key).await.unwrap(), None);
    assert_eq!(store.get_inbound_mail(&q.id, &a, key).await.unwrap(), None);
    let other = "0".repeat(64);
    assert_eq!(
        store.get_inbound_mail(&p.id, &a, &other).await.unwrap(),
        None
    );
    // Recorded again (a retry that raced the first), it names the message it names.
    store.put_inbound_mail(&mail).await.unwrap();
    assert_eq!(
        store.get_inbound_mail(&p.id, &a, key).await.unwrap(),
        Some(mail)
    );
}

/// The emails about a ticket an erasure must find: a visitor's burst waiting to be sent, and
/// an agent's email already sent (its subject still names the ticket). Their ids.
pub(super) async fn ticket_emails(
    store: &Arc<dyn Store>,
    p: &ProjectId,
    slug: &Slug,
) -> [String; 2] {
    let now = now_millis();
    let mut burst = crate::email::Email::new(
        p,
        crate::email::EmailKind::VisitorReply,
        "visitor@example.com",
        "New reply about “Cannot log in”".into(),
        "message 1".into(),
        "<p>message 1</p>".into(),
        now,
    );
    burst.ticket = Some(slug.clone());
    let mut told = crate::email::Email::new(
        p,
        crate::email::EmailKind::AgentNewTicket,
        "agent@example.com",
        "[acme] New ticket: Cannot log in".into(),
        "message 1".into(),
        "<p>message 1</p>".into(),
        now,
    );
    told.ticket = Some(slug.clone());
    assert!(store.create_email(&burst).await.unwrap());
    assert!(store.create_email(&told).await.unwrap());
    let sent = told.clone().settled(crate::email::EmailStatus::Sent, now);
    store.put_email(&sent, told.next_attempt_at).await.unwrap();
    [burst.id, told.id]
}

/// A ticket with every kind of row an erasure must find: messages, a note, a timeline entry,
/// a read cursor, a contact, the chat that opened it, webhook deliveries about it, an audit
/// record naming it by its title, and emails about it ([`ticket_emails`]).
async fn ticket_with_everything(
    store: &Arc<dyn Store>,
    p: &ProjectId,
    e: &crate::webhook::Endpoint,
    slug: &str,
    contact: &crate::contact::Contact,
) -> (Ticket, String) {
    let session = Uuid::new_v4().to_string();
    let mut t = ticket(p, slug, now_millis());
    t.session_id = Some(session.clone());
    t.contact = Some(Box::new(contact.on_ticket()));
    let summary = serde_json::json!({ "slug": slug, "title": "Cannot log in" });
    let created = crate::webhook::Delivery::new(
        e,
        crate::webhook::EventType::TicketCreated,
        &summary,
        now_millis(),
    );
    let ms = messages(2);
    store
        .create_ticket_with_history(&t, &ms[..1], &[created])
        .await
        .unwrap();
    let told = serde_json::json!({ "ticket_slug": slug, "message": { "content": "message 1" } });
    let posted = crate::webhook::Delivery::new(
        e,
        crate::webhook::EventType::MessageCreated,
        &told,
        now_millis(),
    );
    let record = crate::audit::AuditRecord::new(
        p,
        now_millis(),
        crate::audit::AuditActor::AdminKey,
        None,
        "ticket.note_added",
    )
    .target(crate::audit::AuditTarget::new("ticket", slug).named("Cannot log in"));
    let batch = vec![
        TicketWrite::Message(ms[1].clone()),
        TicketWrite::Delivery(posted),
        TicketWrite::Note(note(None, "Alex", "Secret remark")),
        TicketWrite::Audit(record),
        cursor(Participant::Admin, ms[1].id),
    ];
    write(store.clone(), p, &t.slug, batch).await.unwrap();
    store
        .append_chat_turns(p, &session, &[turn(None, ChatRole::User, "I need help")])
        .await
        .unwrap();
    ticket_emails(store, p, &t.slug).await;
    (t, session)
}

/// The ids of the project's emails about `slug`, as the outbox lists them.
pub(super) async fn emails_about(
    store: &Arc<dyn Store>,
    p: &ProjectId,
    slug: &Slug,
) -> Vec<String> {
    let query = crate::email::EmailQuery {
        ticket: Some(slug.clone()),
        after: None,
        limit: 100,
    };
    let page = store.list_emails(p, &query).await.unwrap();
    page.emails.into_iter().map(|e| e.id).collect()
}

pub async fn an_erased_ticket_leaves_no_row_and_the_others_keep_theirs(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let e = endpoint(&p.id, "https://a.example/hook");
    store.create_endpoint(&e, 20).await.unwrap();
    let ada = contact(&p.id, 1, "ada");
    store.put_contact(&ada).await.unwrap();
    let (gone, gone_session) =
        ticket_with_everything(&store, &p.id, &e, "erased-ticket-001", &ada).await;
    let (kept, kept_session) =
        ticket_with_everything(&store, &p.id, &e, "kept-ticket-002", &ada).await;

    assert!(store.erase_ticket(&p.id, &gone.slug).await.unwrap());

    let (pid, slug) = (&p.id, &gone.slug);
    assert_eq!(store.get_ticket(pid, slug).await.unwrap(), None);
    let left = store
        .list_messages(pid, slug, MessageRange::all())
        .await
        .unwrap();
    assert!(left.is_empty());
    assert!(store.list_notes(pid, slug).await.unwrap().is_empty());
    assert!(store.list_activity(pid, slug).await.unwrap().is_empty());
    assert!(store.read_cursors(pid, slug).await.unwrap().is_empty());
    let chat = store.list_chat_turns(pid, &gone_session, 10).await.unwrap();
    assert!(chat.is_empty());
    let listed = store
        .list_tickets(
            pid,
            &TicketQuery {
                limit: 100,
                ..TicketQuery::default()
            },
        )
        .await
        .unwrap();
    let slugs: Vec<&Slug> = listed.tickets.iter().map(|t| &t.slug).collect();
    assert_eq!(slugs, [&kept.slug]);
    let adas: Vec<Slug> = store
        .contact_tickets(pid, ada.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.slug)
        .collect();
    assert_eq!(adas, std::slice::from_ref(&kept.slug));
    let log = store.list_deliveries(pid, e.id, 10).await.unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|d| d.concerns_ticket(kept.slug.as_str())));
    // The trail still names the erased ticket, by slug only; the kept one keeps its title.
    let all = crate::audit::AuditQuery {
        member: None,
        action: None,
        since: None,
        after: None,
        limit: 100,
    };
    let trail = store.list_audit(pid, &all).await.unwrap().records;
    let named = |s: &Slug| {
        trail
            .iter()
            .find(|r| r.target.as_ref().is_some_and(|t| t.id == s.as_str()))
            .and_then(|r| r.target.as_ref().unwrap().name.clone())
    };
    assert_eq!(named(&gone.slug), None);
    assert_eq!(named(&kept.slug), Some("Cannot log in".to_owned()));
    // Its emails are gone, sent or not, from the listing and by id; the other's stay.
    assert!(emails_about(&store, pid, slug).await.is_empty());
    let kept_emails = emails_about(&store, pid, &kept.slug).await;
    assert_eq!(kept_emails.len(), 2);
    let everything = crate::email::EmailQuery {
        limit: 100,
        ..Default::default()
    };
    let listed = store.list_emails(pid, &everything).await.unwrap().emails;
    assert!(listed.iter().all(|m| m.ticket.as_ref() == Some(&kept.slug)));
    assert_eq!(listed.len(), 2);

    // The other ticket has all it had.
    let kept_messages = store
        .list_messages(pid, &kept.slug, MessageRange::all())
        .await
        .unwrap();
    assert_eq!(kept_messages.len(), 2);
    assert_eq!(store.list_notes(pid, &kept.slug).await.unwrap().len(), 1);
    assert_eq!(store.read_cursors(pid, &kept.slug).await.unwrap().len(), 1);
    let kept_chat = store.list_chat_turns(pid, &kept_session, 10).await.unwrap();
    assert_eq!(kept_chat.len(), 1);

    // Erasing again finds nothing, and the slug is free for a new ticket.
    assert!(!store.erase_ticket(pid, slug).await.unwrap());
    let again = ticket(pid, slug.as_str(), now_millis());
    store.create_ticket(&again, &[]).await.unwrap();
    let fresh = store
        .list_messages(pid, slug, MessageRange::all())
        .await
        .unwrap();
    assert!(fresh.is_empty());
}

pub async fn erasures_are_noted_listed_and_forgotten(store: Arc<dyn Store>) {
    let p = stored_project(&store).await;
    let erasure = |slug: &str| Erasure {
        project_id: p.id.clone(),
        slug: Slug::parse(slug).unwrap(),
        requested_at: now_millis(),
    };
    let (a, b) = (erasure("erased-ticket-001"), erasure("erased-ticket-002"));
    for e in [&a, &a, &b] {
        store.put_erasure(e).await.unwrap();
    }
    let mine = |all: Vec<Erasure>| -> Vec<Erasure> {
        let mut mine: Vec<Erasure> = all.into_iter().filter(|e| e.project_id == p.id).collect();
        mine.sort_by(|x, y| x.slug.as_str().cmp(y.slug.as_str()));
        mine
    };
    let pending = mine(store.pending_erasures().await.unwrap());
    assert_eq!(pending, [a.clone(), b.clone()]);
    store.delete_erasure(&p.id, &a.slug).await.unwrap();
    // Forgetting one that is gone is no error.
    store.delete_erasure(&p.id, &a.slug).await.unwrap();
    assert_eq!(mine(store.pending_erasures().await.unwrap()), [b]);
}
