//! The storage conformance suite against the embedded (redb) backend.

use std::sync::Arc;

use fleety::store::embedded::EmbeddedStore;
use fleety_actors::store::{ProjectStore, Store, TicketStore};

/// Each case gets its own database, in a directory removed when the case ends.
async fn embedded() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
    (Arc::new(store), dir)
}

fleety_actors::store_conformance_tests!(embedded());

#[tokio::test]
async fn acknowledged_writes_survive_reopening_the_database() {
    use chrono::Utc;
    use fleety_actors::domain::*;
    use fleety_actors::store::{write, MessageRange, TicketWrite};
    use fleety_actors::MessageId;

    let dir = tempfile::tempdir().unwrap();
    let project = Project {
        id: ProjectId::parse("p1").unwrap(),
        name: "P".into(),
        allowed_origins: vec![],
        admin_key_hash: String::new(),
        assistant: Default::default(),
        csat_disabled: false,
        identity_secrets: Vec::new(),
        ticket_access: Default::default(),
        retention: Default::default(),
        created_at: Utc::now(),
    };
    let ticket = Ticket {
        id: uuid::Uuid::new_v4(),
        slug: Slug::parse("swift-bear-053").unwrap(),
        project_id: project.id.clone(),
        title: Title::parse("t").unwrap(),
        description: Description::parse("").unwrap(),
        status: TicketStatus::Open,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        source: TicketSource::Api,
        session_id: None,
        assignee: None,
        assignee_member: None,
        tags: Default::default(),
        visitor: None,
        satisfaction: None,
        contact: None,
    };
    let id = MessageId::next(None, Utc::now());
    let message = Message {
        id,
        author: Participant::User,
        content: MessageBody::parse("persist me").unwrap(),
        timestamp: id.timestamp(),
        idempotency_key: None,
        agent: None,
    };
    {
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store.create_project(&project).await.unwrap();
        store.create_ticket(&ticket, &[]).await.unwrap();
        let writes = vec![TicketWrite::Message(message.clone())];
        write(store, &project.id, &ticket.slug, writes)
            .await
            .unwrap();
        // No flush, no clean close: what was acknowledged must already be on disk.
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get_ticket(&project.id, &ticket.slug).await.unwrap(),
        Some(ticket.clone())
    );
    assert_eq!(
        store
            .list_messages(&project.id, &ticket.slug, MessageRange::all())
            .await
            .unwrap(),
        vec![message]
    );
}
