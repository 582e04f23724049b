//! Knowledge bases: one [`KnowledgeBaseActor`] per project, holding the project's articles and
//! their search index, activated on first use and passivated when idle. [`KnowledgeBases`] is
//! the handle callers use.
//!
//! The store is the source of truth: an article change is made durable first, then applied to
//! the in-memory index. An actor that fails is forgotten, and the next request rebuilds the
//! project's index from the store.
//!
//! A change asked by an agent carries who asks ([`AuditBy`], from the request's
//! [`audit::acting`]); the actor, which alone knows the article before the change, writes the
//! audit record with it (its id and title, which fields changed, never its body).

#[cfg(test)]
mod eval;
pub mod index;
#[cfg(test)]
mod tests;
mod words;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use crate::audit::{self, AuditBy, AuditRecord, AuditTarget};
use crate::domain::{Article, Language, ProjectId};
use crate::llm::Passage;
use crate::registry::{CallError, Family, Keeper, Registry};
use crate::store::{KbStore, StoreError};
use index::KbIndex;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KbError {
    #[error("article not found")]
    NotFound,
    #[error("the knowledge base is full ({0} articles at most)")]
    Full(usize),
    #[error("knowledge base unavailable: {0}")]
    Unavailable(String),
    #[error("knowledge base failure: {0}")]
    Internal(String),
}

impl From<StoreError> for KbError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => KbError::NotFound,
            StoreError::Unavailable(m) => KbError::Unavailable(m),
            StoreError::Conflict => KbError::Internal("unexpected conflict".into()),
            StoreError::Internal(m) => KbError::Internal(m),
        }
    }
}

impl From<CallError> for KbError {
    fn from(e: CallError) -> Self {
        let cause = match e {
            CallError::Timeout => "the knowledge base did not answer in time",
            CallError::Dropped => "the knowledge base restarted while handling the request",
            CallError::KeptRestarting => "the knowledge base kept restarting",
            CallError::Failed(e) => return KbError::Internal(e),
        };
        KbError::Unavailable(cause.into())
    }
}

impl From<index::IndexError> for KbError {
    fn from(e: index::IndexError) -> Self {
        KbError::Internal(e.to_string())
    }
}

/// Tunables of knowledge-base actors.
#[derive(Debug, Clone)]
pub struct KbConfig {
    /// Articles per project at most: bounds the memory of one project's index.
    pub max_articles: usize,
    /// An actor unused for this long passivates, freeing its index.
    pub idle_timeout: Duration,
    pub tick_interval: Duration,
    pub call_timeout: Duration,
}

impl Default for KbConfig {
    fn default() -> Self {
        Self {
            max_articles: 1000,
            idle_timeout: Duration::from_secs(600),
            tick_interval: Duration::from_secs(30),
            call_timeout: Duration::from_secs(10),
        }
    }
}

pub enum KbMsg {
    /// The best passages for a query, best first, asked in `language` when known.
    Search {
        query: String,
        language: Option<Language>,
        limit: usize,
        reply: RpcReplyPort<Result<Vec<Passage>, KbError>>,
    },
    /// Every article, newest change first.
    List {
        reply: RpcReplyPort<Result<Vec<Article>, KbError>>,
    },
    Get {
        id: Uuid,
        reply: RpcReplyPort<Result<Article, KbError>>,
    },
    /// Changes the fields given of an existing article.
    Patch {
        id: Uuid,
        change: ArticleChange,
        by: Option<AuditBy>,
        reply: RpcReplyPort<Result<Article, KbError>>,
    },
    /// Creates the article, or replaces the one with its id (keeping its creation time).
    Put {
        article: Article,
        by: Option<AuditBy>,
        reply: RpcReplyPort<Result<Article, KbError>>,
    },
    /// Deletes the article; `at` is when, for its audit record.
    Delete {
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
        by: Option<AuditBy>,
        reply: RpcReplyPort<Result<(), KbError>>,
    },
    Tick,
}

/// New values for some of an article's fields.
#[derive(Debug, Clone, Default)]
pub struct ArticleChange {
    pub title: Option<crate::domain::ArticleTitle>,
    pub body: Option<crate::domain::ArticleBody>,
    pub tags: Option<Vec<String>>,
    pub language: Option<Language>,
    /// `Some(None)` removes the link.
    pub url: Option<Option<crate::domain::ArticleUrl>>,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Clone)]
struct Deps {
    store: Arc<dyn KbStore>,
    config: Arc<KbConfig>,
    registry: Arc<Registry<ProjectId, KbMsg>>,
}

/// The handle to every project's knowledge base.
#[derive(Clone)]
pub struct KnowledgeBases {
    deps: Deps,
}

impl KnowledgeBases {
    /// Starts the supervisor under `parent` (or unsupervised when `None`).
    pub async fn start(
        store: Arc<dyn KbStore>,
        config: KbConfig,
        parent: Option<ActorCell>,
    ) -> Result<KnowledgeBases, ractor::SpawnErr> {
        let kb = KnowledgeBases {
            deps: Deps {
                store,
                config: Arc::new(config),
                registry: Arc::default(),
            },
        };
        let family = Family {
            kind: "knowledge_base",
            registry: kb.deps.registry.clone(),
            restart: None,
        };
        Keeper::start(family, parent).await?;
        Ok(kb)
    }

    /// How many projects have their knowledge base in memory now.
    pub fn active(&self) -> usize {
        self.deps.registry.len()
    }

    /// Loads the project's knowledge base into a new actor.
    async fn activate(&self, project: &ProjectId) -> Result<ActorRef<KbMsg>, KbError> {
        let args = KbArgs {
            project: project.clone(),
            deps: self.deps.clone(),
        };
        let started = self.deps.registry.spawn(KnowledgeBaseActor, args);
        match tokio::time::timeout(self.deps.config.call_timeout, started).await {
            Ok(started) => started.map_err(|e| {
                KbError::Unavailable(format!("could not load the knowledge base: {e}"))
            }),
            Err(_) => Err(KbError::Unavailable(
                "the knowledge base took too long to start".into(),
            )),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        project: &ProjectId,
        make: impl Fn(RpcReplyPort<Result<T, KbError>>) -> KbMsg,
    ) -> Result<T, KbError> {
        let _in_flight = crate::telemetry::InFlight::new("knowledge_base");
        let timeout = self.deps.config.call_timeout;
        let activate = || self.activate(project);
        self.deps
            .registry
            .call(project, timeout, activate, make)
            .await
    }

    pub async fn search(
        &self,
        project: &ProjectId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Passage>, KbError> {
        self.search_in(project, query, None, limit).await
    }

    /// The best passages for a question asked in `language` (see [`KbIndex::search`]).
    pub async fn search_in(
        &self,
        project: &ProjectId,
        query: &str,
        language: Option<Language>,
        limit: usize,
    ) -> Result<Vec<Passage>, KbError> {
        self.call(project, |reply| KbMsg::Search {
            query: query.to_owned(),
            language,
            limit,
            reply,
        })
        .await
    }

    pub async fn list(&self, project: &ProjectId) -> Result<Vec<Article>, KbError> {
        self.call(project, |reply| KbMsg::List { reply }).await
    }

    pub async fn get(&self, project: &ProjectId, id: Uuid) -> Result<Article, KbError> {
        self.call(project, |reply| KbMsg::Get { id, reply }).await
    }

    pub async fn patch(
        &self,
        project: &ProjectId,
        id: Uuid,
        change: ArticleChange,
    ) -> Result<Article, KbError> {
        let by = audit::acting_now();
        self.call(project, |reply| KbMsg::Patch {
            id,
            change: change.clone(),
            by: by.clone(),
            reply,
        })
        .await
    }

    pub async fn put(&self, article: Article) -> Result<Article, KbError> {
        let project = article.project_id.clone();
        let by = audit::acting_now();
        self.call(&project, |reply| KbMsg::Put {
            article: article.clone(),
            by: by.clone(),
            reply,
        })
        .await
    }

    pub async fn delete(
        &self,
        project: &ProjectId,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), KbError> {
        let by = audit::acting_now();
        self.call(project, |reply| KbMsg::Delete {
            id,
            at,
            by: by.clone(),
            reply,
        })
        .await
    }
}

pub struct KnowledgeBaseActor;

pub struct KbArgs {
    project: ProjectId,
    deps: Deps,
}

pub struct KbState {
    project: ProjectId,
    deps: Deps,
    articles: HashMap<Uuid, Article>,
    index: Arc<KbIndex>,
    last_used: Instant,
}

impl KbState {
    /// Stores the article with its audit record, if any, in the same write, then indexes it.
    async fn store_and_index(
        &mut self,
        article: Article,
        record: Option<AuditRecord>,
    ) -> Result<Article, KbError> {
        audit::recorded(record, self.deps.store.put_article(&article)).await?;
        self.articles.insert(article.id, article.clone());
        let (index, changed) = (self.index.clone(), article.clone());
        blocking(move || Ok(index.change([&changed], [])?)).await?;
        Ok(article)
    }
}

/// The audit record of `action` on `article` by `by`, if anyone is recorded as acting.
fn article_record(
    by: Option<&AuditBy>,
    article: &Article,
    action: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<AuditRecord> {
    let target = AuditTarget::new("article", article.id).named(article.title.as_str());
    Some(by?.record(&article.project_id, at, action).target(target))
}

/// What changed between two versions of an article, for its audit record: the body only as
/// `"changed"`, since the trail is not a copy of the knowledge base.
fn article_changes(record: AuditRecord, old: &Article, new: &Article) -> AuditRecord {
    let record = record
        .changed("title", &old.title, &new.title)
        .changed("tags", &old.tags, &new.tags)
        .changed("language", old.language, new.language)
        .changed("url", &old.url, &new.url);
    match old.body == new.body {
        true => record,
        false => record.with("body", "changed"),
    }
}

/// Runs index work on the blocking pool: tantivy's writer blocks while it commits.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KbError> + Send + 'static,
) -> Result<T, KbError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KbError::Internal(e.to_string()))?
}

impl Actor for KnowledgeBaseActor {
    type Msg = KbMsg;
    type State = KbState;
    type Arguments = KbArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<KbMsg>,
        args: KbArgs,
    ) -> Result<KbState, ActorProcessingErr> {
        let articles = args.deps.store.list_articles(&args.project).await?;
        let for_index = articles.clone();
        let index = blocking(move || Ok(KbIndex::build(&for_index)?)).await?;
        crate::registry::spawn_ticker(myself.clone(), args.deps.config.tick_interval, || {
            KbMsg::Tick
        });
        crate::telemetry::actor_started("knowledge_base");
        Ok(KbState {
            project: args.project,
            deps: args.deps,
            articles: articles.into_iter().map(|a| (a.id, a)).collect(),
            index: Arc::new(index),
            last_used: Instant::now(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<KbMsg>,
        message: KbMsg,
        state: &mut KbState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(message, KbMsg::Tick) {
            state.last_used = Instant::now();
        }
        let started = Instant::now();
        let name = match &message {
            KbMsg::Search { .. } => "search",
            KbMsg::List { .. } => "list",
            KbMsg::Get { .. } => "get",
            KbMsg::Patch { .. } => "patch",
            KbMsg::Put { .. } => "put",
            KbMsg::Delete { .. } => "delete",
            KbMsg::Tick => "tick",
        };
        let result = self.handle_message(myself, message, state).await;
        crate::telemetry::message_handled("knowledge_base", name, started);
        result
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<KbMsg>,
        _state: &mut KbState,
    ) -> Result<(), ActorProcessingErr> {
        crate::telemetry::actor_stopped("knowledge_base");
        Ok(())
    }
}

impl KnowledgeBaseActor {
    async fn handle_message(
        &self,
        myself: ActorRef<KbMsg>,
        message: KbMsg,
        state: &mut KbState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            KbMsg::Search {
                query,
                language,
                limit,
                reply,
            } => {
                let found = state.index.search(&query, language, limit);
                let _ = reply.send(found.map_err(KbError::from));
            }
            KbMsg::List { reply } => {
                let mut all: Vec<Article> = state.articles.values().cloned().collect();
                all.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
                let _ = reply.send(Ok(all));
            }
            KbMsg::Get { id, reply } => {
                let _ = reply.send(state.articles.get(&id).cloned().ok_or(KbError::NotFound));
            }
            KbMsg::Patch {
                id,
                change,
                by,
                reply,
            } => {
                // Applied here, the one writer of this knowledge base: a delete that came first
                // wins, and the change cannot bring the article back.
                let result = match state.articles.get(&id) {
                    None => Err(KbError::NotFound),
                    Some(old) => {
                        let mut article = old.clone();
                        if let Some(title) = change.title {
                            article.title = title;
                        }
                        if let Some(body) = change.body {
                            article.body = body;
                        }
                        if let Some(tags) = change.tags {
                            article.tags = tags;
                        }
                        if let Some(language) = change.language {
                            article.language = language;
                        }
                        if let Some(url) = change.url {
                            article.url = url;
                        }
                        article.updated_at = change.at;
                        let record =
                            article_record(by.as_ref(), &article, "article.changed", change.at)
                                .map(|r| article_changes(r, old, &article));
                        state.store_and_index(article, record).await
                    }
                };
                let _ = reply.send(result);
            }
            KbMsg::Put {
                mut article,
                by,
                reply,
            } => {
                let result = async {
                    let at = article.updated_at;
                    let record = match state.articles.get(&article.id) {
                        Some(old) => {
                            article.created_at = old.created_at;
                            article_record(by.as_ref(), &article, "article.changed", at)
                                .map(|r| article_changes(r, old, &article))
                        }
                        None if state.articles.len() >= state.deps.config.max_articles => {
                            return Err(KbError::Full(state.deps.config.max_articles));
                        }
                        None => article_record(by.as_ref(), &article, "article.created", at)
                            .map(|r| r.with("title", &article.title)),
                    };
                    state.store_and_index(article, record).await
                }
                .await;
                let _ = reply.send(result);
            }
            KbMsg::Delete { id, at, by, reply } => {
                let result = async {
                    // Deleting an article that is not there changes nothing, and is not recorded.
                    let record = state
                        .articles
                        .get(&id)
                        .and_then(|old| article_record(by.as_ref(), old, "article.deleted", at));
                    let delete = state.deps.store.delete_article(&state.project, id);
                    audit::recorded(record, delete).await?;
                    state.articles.remove(&id);
                    let index = state.index.clone();
                    blocking(move || Ok(index.change([], [id])?)).await
                }
                .await;
                let _ = reply.send(result);
            }
            KbMsg::Tick => {
                if state.last_used.elapsed() >= state.deps.config.idle_timeout {
                    // Stop routing to this actor first; requests already in its mailbox
                    // are still answered, later ones start a fresh actor.
                    let cell = myself.get_cell();
                    state.deps.registry.unroute(&state.project, &cell);
                    crate::telemetry::actor_passivated("knowledge_base");
                    myself.drain()?;
                }
            }
        }
        Ok(())
    }
}
