//! Chats with the assistant: one [`ChatSessionActor`] per anonymous session, under a
//! [`ChatSupervisor`]. [`Chats`] is the handle the HTTP front uses.
//!
//! A session's actor keeps its transcript and quotas and starts each answer ("turn") as a task
//! that retrieves knowledge-base passages, streams the model's answer through the link filter
//! to the caller, opens a ticket when the model calls `create_ticket`, and reports back to the
//! actor when it is done. The actor's mailbox never waits on the model.

mod actor;
pub mod links;
pub mod quota;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{mpsc, OnceCell};

pub use actor::ChatSessionActor;
pub use quota::ChatQuotas;

use crate::clock::Clock;
use crate::domain::{ProjectId, Slug};
use crate::kb::KnowledgeBases;
use crate::llm::{LlmError, LlmMessage, LlmProvider};
use crate::slug::SlugGenerator;
use crate::ticket::Tickets;

/// Identifies a chat session: the anonymous session id from the visitor's token, within the
/// project the token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub project: ProjectId,
    pub session: String,
}

/// Tunables of chat sessions.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub quotas: ChatQuotas,
    /// Tokens the model may generate per answer.
    pub max_tokens: u32,
    /// Knowledge-base passages given to the model per turn.
    pub passages: usize,
    /// Earlier turns of the transcript a `/v1/chat` prompt is answered with.
    pub history_turns: usize,
    /// Answers one session may have streaming at once.
    pub max_concurrent_turns: usize,
    /// A session unused for this long passivates.
    pub idle_timeout: Duration,
    pub tick_interval: Duration,
    pub call_timeout: Duration,
    /// Events buffered between a turn and the client reading it.
    pub stream_buffer: usize,
    /// Chat sessions in memory at most; a new session beyond this is refused as unavailable,
    /// so a flood of sessions cannot exhaust memory.
    pub max_sessions: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            quotas: ChatQuotas::default(),
            max_tokens: 512,
            passages: 3,
            history_turns: 10,
            max_concurrent_turns: 2,
            idle_timeout: Duration::from_secs(300),
            tick_interval: Duration::from_secs(30),
            call_timeout: Duration::from_secs(10),
            stream_buffer: 64,
            max_sessions: 100_000,
        }
    }
}

/// Which endpoint a turn answers, which decides its history and whether tools are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatMode {
    /// `/v1/chat`: one prompt, answered with the session's recent transcript as history.
    Prompt,
    /// `/v1/chat/tools`: the client sends the conversation; `tools` offers `create_ticket`.
    Conversation { tools: bool },
}

/// One question to the assistant.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub mode: ChatMode,
    /// User and assistant messages only, oldest first, ending with the user's question. For
    /// [`ChatMode::Prompt`] just the prompt.
    pub messages: Vec<LlmMessage>,
    /// The project's display name, for the system prompt.
    pub project_name: String,
    /// Hosts that links in answers may point at.
    pub allowed_hosts: Vec<String>,
}

/// What a turn streams to its caller. It ends with `Done` or `Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// A piece of the answer, already filtered.
    Text(String),
    /// The assistant opened a ticket; `message` tells the visitor so.
    TicketOpened {
        slug: Slug,
        message: String,
    },
    Error(ChatError),
    Done,
}

/// A running turn: read its events; dropping it cancels the turn and the model's stream.
pub struct Turn {
    pub events: mpsc::Receiver<TurnEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// A quota is used up; `retry_after` says when it frees up, if it will.
    #[error("{what}")]
    Quota {
        what: String,
        retry_after: Option<Duration>,
    },
    /// Too many answers of this session are streaming already.
    #[error("another answer is still streaming for this session")]
    Busy,
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("chat unavailable: {0}")]
    Unavailable(String),
    #[error("chat failure: {0}")]
    Internal(String),
}

/// What every chat session actor is built with.
#[derive(Clone)]
pub struct ChatDeps {
    pub store: Arc<dyn crate::store::Store>,
    pub clock: Arc<dyn Clock>,
    pub llm: Arc<dyn LlmProvider>,
    pub kb: KnowledgeBases,
    pub tickets: Tickets,
    pub slugs: Arc<SlugGenerator>,
    pub config: Arc<ChatConfig>,
    projects: Arc<DashMap<ProjectId, quota::ProjectWindows>>,
    registry: Arc<DashMap<SessionKey, Arc<OnceCell<ActorRef<actor::ChatMsg>>>>>,
    /// Which session each running actor serves, so a stopped actor is forgotten in O(1).
    keys: Arc<DashMap<ractor::ActorId, SessionKey>>,
    supervisor: Arc<std::sync::OnceLock<ActorCell>>,
}

/// The handle to every chat session.
#[derive(Clone)]
pub struct Chats {
    deps: ChatDeps,
}

/// What [`Chats::start`] needs.
pub struct ChatArgs {
    pub store: Arc<dyn crate::store::Store>,
    pub clock: Arc<dyn Clock>,
    pub llm: Arc<dyn LlmProvider>,
    pub kb: KnowledgeBases,
    pub tickets: Tickets,
    pub config: ChatConfig,
}

impl Chats {
    pub async fn start(
        args: ChatArgs,
        parent: Option<ActorCell>,
    ) -> Result<Chats, ractor::SpawnErr> {
        let chats = Chats {
            deps: ChatDeps {
                store: args.store,
                clock: args.clock,
                llm: args.llm,
                kb: args.kb,
                tickets: args.tickets,
                slugs: Arc::new(SlugGenerator::new()),
                config: Arc::new(args.config),
                projects: Arc::default(),
                registry: Arc::default(),
                keys: Arc::default(),
                supervisor: Arc::default(),
            },
        };
        let (sup, _) = match parent {
            Some(p) => Actor::spawn_linked(None, ChatSupervisor, chats.clone(), p).await?,
            None => Actor::spawn(None, ChatSupervisor, chats.clone()).await?,
        };
        let _ = chats.deps.supervisor.set(sup.get_cell());
        Ok(chats)
    }

    /// The model behind the assistant.
    pub fn provider(&self) -> &'static str {
        self.deps.llm.name()
    }

    /// How many chat sessions are in memory now.
    pub fn active(&self) -> usize {
        self.deps.registry.len()
    }

    async fn actor(&self, key: &SessionKey) -> Result<ActorRef<actor::ChatMsg>, ChatError> {
        if !self.deps.registry.contains_key(key)
            && self.deps.registry.len() >= self.deps.config.max_sessions
        {
            return Err(ChatError::Unavailable(
                "too many chat sessions are open; retry shortly".into(),
            ));
        }
        let slot = self.deps.registry.entry(key.clone()).or_default().clone();
        // Forgets the slot if this call is abandoned (timeout, or its caller went away) before
        // the actor started, so abandoned starts do not pile up in the registry.
        let guard = crate::supervision::SlotGuard {
            registry: &self.deps.registry,
            key,
            slot: &slot,
        };
        let start = slot.get_or_try_init(|| async {
            let supervisor = self
                .deps
                .supervisor
                .get()
                .cloned()
                .ok_or_else(|| ChatError::Unavailable("chat supervisor not started".into()))?;
            let args = actor::ChatArgs {
                key: key.clone(),
                deps: self.deps.clone(),
            };
            let (actor, _) = Actor::spawn_linked(None, ChatSessionActor, args, supervisor)
                .await
                .map_err(|e| ChatError::Unavailable(format!("could not start the chat: {e}")))?;
            self.deps.keys.insert(actor.get_id(), key.clone());
            Ok(actor)
        });
        let result = match tokio::time::timeout(self.deps.config.call_timeout, start).await {
            Ok(started) => started.cloned(),
            Err(_) => Err(ChatError::Unavailable(
                "the chat session took too long to start".into(),
            )),
        };
        drop(guard);
        result
    }

    /// Starts answering `request` in `key`'s session.
    pub async fn turn(&self, key: &SessionKey, request: TurnRequest) -> Result<Turn, ChatError> {
        let _in_flight = crate::telemetry::InFlight::new("chat_session");
        for _ in 0..3 {
            let actor = self.actor(key).await?;
            let req = request.clone();
            let asked = actor
                .call(
                    move |reply| actor::ChatMsg::Start {
                        request: req,
                        reply,
                    },
                    Some(self.deps.config.call_timeout),
                )
                .await;
            match asked {
                Ok(ractor::rpc::CallResult::Success(answer)) => return answer,
                Ok(ractor::rpc::CallResult::Timeout) => {
                    return Err(ChatError::Unavailable(
                        "the chat session did not answer in time".into(),
                    ))
                }
                // The actor passivated before taking the request (which was dropped unanswered,
                // so nothing was started): ask a fresh one.
                Ok(ractor::rpc::CallResult::SenderError) | Err(_) => {
                    let id = actor.get_id();
                    self.deps
                        .registry
                        .remove_if(key, |_, s| s.get().is_some_and(|a| a.get_id() == id));
                }
            }
        }
        Err(ChatError::Unavailable(
            "the chat session kept restarting".into(),
        ))
    }
}

/// The parent of every chat session actor: forgets a session's actor as soon as it stops or
/// fails. A failed session is not restarted eagerly; its next request starts it again from
/// the stored transcript.
pub struct ChatSupervisor;

impl Actor for ChatSupervisor {
    type Msg = ();
    type State = Chats;
    type Arguments = Chats;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        chats: Chats,
    ) -> Result<Chats, ActorProcessingErr> {
        Ok(chats)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        chats: &mut Chats,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match &event {
            SupervisionEvent::ActorTerminated(cell, ..) => cell,
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::warn!(%error, "a chat session actor failed; it restarts on next use");
                crate::telemetry::actor_stopped("chat_session");
                cell
            }
            _ => return Ok(()),
        };
        let id = cell.get_id();
        if let Some((_, key)) = chats.deps.keys.remove(&id) {
            chats
                .deps
                .registry
                .remove_if(&key, |_, s| s.get().is_some_and(|a| a.get_id() == id));
        }
        Ok(())
    }
}
