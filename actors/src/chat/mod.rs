//! Chats with the assistant: one [`ChatSessionActor`] per anonymous session, started on demand
//! and passivated when idle. [`Chats`] is the handle the HTTP front uses.
//!
//! A session's actor keeps its transcript and quotas and starts each answer ("turn") as a task
//! that retrieves knowledge-base passages, streams the model's answer through the link filter
//! to the caller, opens a ticket when the model calls `create_ticket`, and reports back to the
//! actor when it is done. The actor's mailbox never waits on the model.

mod actor;
mod bare_call;
pub mod links;
pub mod outcome;
pub mod quota;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::{ActorCell, ActorRef};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

pub use actor::ChatSessionActor;
pub use quota::ChatQuotas;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::domain::{OutcomeCounts, ProjectId, Rating, Slug};
use crate::kb::KnowledgeBases;
use crate::llm::{LlmError, LlmMessage, LlmProvider};
use crate::registry::{CallError, Family, Keeper, Registry};
use crate::ticket::Tickets;
use crate::MessageId;

/// Identifies a chat session: the anonymous session id from the visitor's token, within the
/// project the token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub project: ProjectId,
    pub session: String,
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.project, self.session)
    }
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
    /// A conversation without a hand-off ends this long after its last question, answer or
    /// rating (docs/assistant.md, "Outcomes").
    pub conversation_ends_after: Duration,
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
            conversation_ends_after: Duration::from_secs(30 * 60),
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
    /// The assistant's name, greeting and the admins' guidance, from the project's settings.
    pub assistant: crate::domain::AssistantProfile,
    /// The language the visitor writes in, when the client says: the knowledge base is
    /// searched in it first.
    pub language: Option<crate::domain::Language>,
    /// Who the visitor is, as the page that embeds the widget says: kept on a ticket the
    /// assistant opens, for the agents.
    pub visitor: Option<crate::domain::VisitorContact>,
    /// The verified contact whose session this is, if any: a ticket the turn opens is theirs.
    pub contact: Option<crate::contact::TicketContact>,
}

/// What a turn streams to its caller. It ends with `Done` or `Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnEvent {
    /// A piece of the answer, already filtered.
    Text(String),
    /// The answer's closing list of the articles it drew on: `text` as a piece of the answer
    /// ("Sources: ..."), and the articles themselves.
    Sources {
        text: String,
        citations: Vec<Citation>,
    },
    /// The assistant opened a ticket; `message` tells the visitor so.
    TicketOpened {
        slug: Slug,
        message: String,
    },
    Error(ChatError),
    Done,
}

/// An article an answer cites.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Citation {
    pub article_id: uuid::Uuid,
    pub title: String,
    /// Where the article is published, when it says: an http or https URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A running turn: read its events; dropping it cancels the turn and the model's stream.
pub struct Turn {
    pub events: mpsc::Receiver<TurnEvent>,
    /// The id the answer is stored under: what the visitor rates it by.
    pub answer: MessageId,
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
    /// The session has no answer of the assistant with that id.
    #[error("this session has no such answer")]
    UnknownTurn,
    #[error("chat failure: {0}")]
    Internal(String),
}

impl From<CallError> for ChatError {
    fn from(e: CallError) -> Self {
        let cause = match e {
            CallError::Timeout => "the chat session did not answer in time",
            CallError::Dropped => "the chat session restarted while handling the request",
            CallError::KeptRestarting => "the chat session kept restarting",
            CallError::Failed(e) => return ChatError::Internal(e),
        };
        ChatError::Unavailable(cause.into())
    }
}

/// What every chat session actor is built with.
#[derive(Clone)]
pub struct ChatDeps {
    pub store: Arc<dyn crate::store::ChatStore>,
    /// Where the questions the assistant could not answer are counted.
    pub unanswered: Arc<dyn crate::store::UnansweredStore>,
    pub clock: Arc<dyn Clock>,
    pub llm: Arc<dyn LlmProvider>,
    pub kb: KnowledgeBases,
    pub tickets: Tickets,
    pub config: Arc<ChatConfig>,
    /// Told of each ticket a hand-off opens, once the server sets it (the agents' emails).
    pub opened: Arc<std::sync::OnceLock<Arc<dyn crate::agent_mail::TicketOpened>>>,
    projects: Arc<DashMap<ProjectId, quota::ProjectWindows>>,
    registry: Arc<Registry<SessionKey, actor::ChatMsg>>,
    outcomes: Arc<outcome::Outcomes>,
    /// Every running turn, each until its transcript is stored: what a clean stop waits for.
    tasks: TaskTracker,
}

/// The handle to every chat session.
#[derive(Clone)]
pub struct Chats {
    deps: ChatDeps,
}

/// What [`Chats::start`] needs.
pub struct ChatArgs {
    pub store: Arc<dyn crate::store::ChatStore>,
    pub unanswered: Arc<dyn crate::store::UnansweredStore>,
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
        let ends_after = chrono::Duration::from_std(args.config.conversation_ends_after)
            .unwrap_or(chrono::Duration::MAX);
        let outcomes = outcome::Outcomes::new(ends_after, args.config.max_sessions);
        spawn_settling(&outcomes, args.clock.clone(), args.config.tick_interval);
        let chats = Chats {
            deps: ChatDeps {
                outcomes,
                store: args.store,
                unanswered: args.unanswered,
                clock: args.clock,
                llm: args.llm,
                kb: args.kb,
                tickets: args.tickets,
                config: Arc::new(args.config),
                opened: Arc::default(),
                projects: Arc::default(),
                registry: Arc::default(),
                tasks: TaskTracker::new(),
            },
        };
        let family = Family {
            kind: "chat_session",
            registry: chats.deps.registry.clone(),
            restart: None,
        };
        Keeper::start(family, parent).await?;
        Ok(chats)
    }

    /// Has every ticket a hand-off opens told to `hook`, as the API's new tickets are.
    pub fn on_ticket_opened(&self, hook: Arc<dyn crate::agent_mail::TicketOpened>) {
        let _ = self.deps.opened.set(hook);
    }

    /// Waits for the running turns to end and store their transcripts, for up to `grace`:
    /// for a clean stop, before the store is flushed. Turns started meanwhile are waited for
    /// too.
    pub async fn finish(&self, grace: Duration) {
        let tasks = &self.deps.tasks;
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(
                turns = tasks.len(),
                ?grace,
                "chat turns still running at shutdown; their transcripts may be lost"
            );
        }
    }

    /// The model behind the assistant.
    pub fn provider(&self) -> &'static str {
        self.deps.llm.name()
    }

    /// The newest `limit` turns of a session's transcript, oldest first: what an agent reads
    /// when a chat became a ticket.
    pub async fn transcript(
        &self,
        project: &ProjectId,
        session: &str,
        limit: usize,
    ) -> Result<Vec<crate::domain::ChatTurn>, ChatError> {
        let turns = self
            .deps
            .store
            .list_chat_turns(project, session, limit)
            .await;
        turns.map_err(|e| match e {
            crate::store::StoreError::Unavailable(cause) => ChatError::Unavailable(cause),
            other => ChatError::Internal(other.to_string()),
        })
    }

    /// The questions the assistant could not answer in a project, most asked first, `limit`
    /// at most.
    pub async fn unanswered(
        &self,
        project: &ProjectId,
        limit: usize,
    ) -> Result<Vec<crate::unanswered::UnansweredQuestion>, crate::store::StoreError> {
        self.deps.unanswered.list_unanswered(project, limit).await
    }

    /// Takes a question off that list (an article now answers it).
    pub async fn dismiss_unanswered(
        &self,
        project: &ProjectId,
        id: &str,
    ) -> Result<(), crate::store::StoreError> {
        self.deps.unanswered.dismiss_unanswered(project, id).await
    }

    /// Rates one of the assistant's answers in `key`'s session; a rating may be changed.
    /// [`ChatError::UnknownTurn`] unless `turn` is an answer of this session.
    pub async fn rate(
        &self,
        key: &SessionKey,
        turn: MessageId,
        rating: Rating,
    ) -> Result<(), ChatError> {
        let timeout = self.deps.config.call_timeout;
        let activate = || self.activate(key);
        let ask = |reply| actor::ChatMsg::Rate {
            turn,
            rating,
            reply,
        };
        self.deps.registry.call(key, timeout, activate, ask).await
    }

    /// The project's conversations that started in `[from, to)`, by outcome as they stand now.
    pub async fn outcomes(
        &self,
        project: &ProjectId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<OutcomeCounts, ChatError> {
        let now = self.deps.clock.now();
        let ends_after = self.deps.outcomes.ends_after();
        let store = &self.deps.store;
        let counts = store.count_chat_outcomes(project, from, to, now, ends_after);
        counts.await.map_err(|e| match e {
            crate::store::StoreError::Unavailable(cause) => ChatError::Unavailable(cause),
            other => ChatError::Internal(other.to_string()),
        })
    }

    /// Counts on `/metrics` the conversations that have ended by now: called before a scrape.
    pub fn settle_outcomes(&self) {
        self.deps.outcomes.settle(self.deps.clock.now());
    }

    /// How many chat sessions are in memory now.
    pub fn active(&self) -> usize {
        self.deps.registry.len()
    }

    /// Starts a session's actor, loading its transcript; refused once too many are open, so a
    /// flood of sessions cannot exhaust memory.
    async fn activate(&self, key: &SessionKey) -> Result<ActorRef<actor::ChatMsg>, ChatError> {
        if self.deps.registry.len() >= self.deps.config.max_sessions {
            return Err(ChatError::Unavailable(
                "too many chat sessions are open; retry shortly".into(),
            ));
        }
        let args = actor::ChatArgs {
            key: key.clone(),
            deps: self.deps.clone(),
        };
        let started = self.deps.registry.spawn(ChatSessionActor, args);
        match tokio::time::timeout(self.deps.config.call_timeout, started).await {
            Ok(started) => started
                .map_err(|e| ChatError::Unavailable(format!("could not start the chat: {e}"))),
            Err(_) => Err(ChatError::Unavailable(
                "the chat session took too long to start".into(),
            )),
        }
    }

    /// Starts answering `request` in `key`'s session.
    pub async fn turn(&self, key: &SessionKey, request: TurnRequest) -> Result<Turn, ChatError> {
        let _in_flight = crate::telemetry::InFlight::new("chat_session");
        let timeout = self.deps.config.call_timeout;
        let activate = || self.activate(key);
        let ask = |reply| actor::ChatMsg::Start {
            request: request.clone(),
            reply,
        };
        self.deps.registry.call(key, timeout, activate, ask).await
    }
}

/// Counts ended conversations every `every`, for as long as the chats exist.
fn spawn_settling(outcomes: &Arc<outcome::Outcomes>, clock: Arc<dyn Clock>, every: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let outcomes = Arc::downgrade(outcomes);
    rt.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(outcomes) = outcomes.upgrade() else {
                return;
            };
            outcomes.settle(clock.now());
        }
    });
}
