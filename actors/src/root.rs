//! `RootSupervisor`: the top of the actor tree. [`System::start`] starts the families'
//! supervisors (one `Keeper` each for tickets, knowledge bases and chat sessions) under it, and
//! it stops the whole system if one of them fails, since they hold no state worth saving and a
//! clean restart of the process is the honest answer.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::chat::{ChatArgs, ChatConfig, Chats};
use crate::clock::Clock;
use crate::feed::ProjectFeeds;
use crate::kb::{KbConfig, KnowledgeBases};
use crate::llm::LlmProvider;
use crate::store::Store;
use crate::ticket::{TicketConfig, TicketSetup, Tickets};
use crate::webhook::Hooks;

pub struct RootSupervisor;

pub enum RootMsg {}

/// Handles to everything the actor system offers its callers.
#[derive(Clone)]
pub struct System {
    pub tickets: Tickets,
    pub kb: KnowledgeBases,
    pub chats: Chats,
    pub feeds: ProjectFeeds,
    pub hooks: Hooks,
    pub root: ActorRef<RootMsg>,
}

pub struct RootArgs {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub tickets: TicketConfig,
    pub llm: Arc<dyn LlmProvider>,
    pub kb: KbConfig,
    pub chat: ChatConfig,
    /// Every project's webhook endpoints; the server fills it from the store at start.
    pub hooks: Hooks,
    /// Set when several nodes serve the same tickets.
    pub cluster: Option<Arc<dyn crate::ticket::Cluster>>,
}

impl System {
    pub async fn start(args: RootArgs) -> Result<System, ractor::SpawnErr> {
        let (root, _) = Actor::spawn(None, RootSupervisor, ()).await?;
        let feeds = ProjectFeeds::default();
        let setup = TicketSetup {
            store: args.store.clone(),
            clock: args.clock.clone(),
            feeds: feeds.clone(),
            hooks: args.hooks.clone(),
            config: args.tickets,
            cluster: args.cluster,
        };
        let (tickets, _) = Tickets::start(setup, Some(root.get_cell())).await?;
        let kb = KnowledgeBases::start(args.store.clone(), args.kb, Some(root.get_cell())).await?;
        let chats = Chats::start(
            ChatArgs {
                unanswered: args.store.clone(),
                store: args.store,
                clock: args.clock,
                llm: args.llm,
                kb: kb.clone(),
                tickets: tickets.clone(),
                config: args.chat,
            },
            Some(root.get_cell()),
        )
        .await?;
        Ok(System {
            tickets,
            kb,
            chats,
            feeds,
            hooks: args.hooks,
            root,
        })
    }

    /// Stops every actor, children first, once the chat turns in flight have ended and stored
    /// their transcripts (or 5 s have passed).
    pub async fn stop(&self) {
        self.chats.finish(std::time::Duration::from_secs(5)).await;
        self.root
            .stop_children_and_wait(None, Some(std::time::Duration::from_secs(5)))
            .await;
        self.root.stop(None);
    }
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<RootMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            tracing::error!(actor = ?cell.get_name(), %error, "a domain supervisor failed; stopping the actor system");
            myself.stop(Some("child supervisor failed".into()));
        }
        Ok(())
    }
}
