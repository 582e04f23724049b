//! What the actors' unit tests share: a whole actor system on the in-memory store, with the
//! offline assistant and one project, so each test reads as requests and answers.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::chat::ChatConfig;
use crate::clock::{now_millis, Clock, SystemClock};
use crate::domain::{
    Article, ArticleBody, ArticleTitle, Description, Project, ProjectId, TicketSource, Title,
};
use crate::kb::KbConfig;
use crate::llm::offline::OfflineProvider;
use crate::root::{RootArgs, System};
use crate::store::memory::MemoryStore;
use crate::store::ProjectStore;
use crate::ticket::{Cluster, NewTicket, TicketConfig, TicketKey};

pub struct Kit {
    pub store: Arc<MemoryStore>,
    pub system: System,
    pub project: ProjectId,
}

/// Tunables that make idle actors passivate within a test.
pub fn quick_passivation() -> (TicketConfig, KbConfig, ChatConfig) {
    let idle = Duration::from_millis(50);
    let tick = Duration::from_millis(20);
    let tickets = TicketConfig {
        idle_timeout: idle,
        tick_interval: tick,
        ..TicketConfig::default()
    };
    let kb = KbConfig {
        idle_timeout: idle,
        tick_interval: tick,
        ..KbConfig::default()
    };
    let chat = ChatConfig {
        idle_timeout: idle,
        tick_interval: tick,
        ..ChatConfig::default()
    };
    (tickets, kb, chat)
}

pub async fn kit() -> Kit {
    kit_with(
        TicketConfig::default(),
        KbConfig::default(),
        ChatConfig::default(),
    )
    .await
}

pub async fn kit_with(tickets: TicketConfig, kb: KbConfig, chat: ChatConfig) -> Kit {
    kit_clocked(tickets, kb, chat, Arc::new(SystemClock)).await
}

/// A kit whose actors read the time from `clock`.
pub async fn kit_clocked(
    tickets: TicketConfig,
    kb: KbConfig,
    chat: ChatConfig,
    clock: Arc<dyn Clock>,
) -> Kit {
    kit_of(tickets, kb, chat, clock, None).await
}

/// A kit whose tickets are one node's of several, on `cluster`.
pub async fn kit_clustered(cluster: Arc<dyn Cluster>) -> Kit {
    let (tickets, kb, chat) = Default::default();
    kit_of(tickets, kb, chat, Arc::new(SystemClock), Some(cluster)).await
}

async fn kit_of(
    tickets: TicketConfig,
    kb: KbConfig,
    chat: ChatConfig,
    clock: Arc<dyn Clock>,
    cluster: Option<Arc<dyn Cluster>>,
) -> Kit {
    let store = MemoryStore::new();
    let project = ProjectId::parse(&format!("p{}", Uuid::new_v4().simple())).unwrap();
    store
        .create_project(&Project {
            id: project.clone(),
            name: "Acme".into(),
            allowed_origins: vec![],
            admin_key_hash: "00".repeat(32),
            assistant: Default::default(),
            csat_disabled: false,
            identity_secrets: Vec::new(),
            ticket_access: Default::default(),
            retention: Default::default(),
            created_at: now_millis(),
        })
        .await
        .unwrap();
    let system = System::start(RootArgs {
        store: store.clone(),
        clock,
        tickets,
        llm: Arc::new(OfflineProvider),
        kb,
        chat,
        hooks: Default::default(),
        cluster,
    })
    .await
    .unwrap();
    Kit {
        store,
        system,
        project,
    }
}

impl Kit {
    /// Opens a ticket, as `POST /v1/tickets/{project}` does.
    pub async fn open_ticket(&self) -> TicketKey {
        let ticket = self.system.tickets.open(NewTicket {
            project: self.project.clone(),
            title: Title::parse("Cannot log in").unwrap(),
            description: Description::parse("Since this morning").unwrap(),
            source: TicketSource::Api,
            session_id: None,
            history: Vec::new(),
            visitor: None,
            contact: None,
        });
        let ticket = ticket.await.unwrap();
        TicketKey {
            project: ticket.project_id,
            slug: ticket.slug,
        }
    }

    pub fn article(&self, title: &str, body: &str) -> Article {
        let now = now_millis();
        Article {
            id: Uuid::new_v4(),
            project_id: self.project.clone(),
            title: ArticleTitle::parse(title).unwrap(),
            body: ArticleBody::parse(body).unwrap(),
            tags: vec![],
            created_at: now,
            updated_at: now,
            language: Default::default(),
            url: None,
        }
    }
}

/// Waits until `done` holds: for effects that land on their own time (a passivation, a
/// transcript written after the answer). A condition, not a timing: it gives up after 10 s.
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}
