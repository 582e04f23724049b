//! Actors started on demand, one per key: tickets, chat sessions and knowledge bases.
//!
//! - [`Registry`] knows which actor serves which key, so callers find a running actor without
//!   messaging anyone, and it is the one way to reach them ([`Registry::call`]).
//! - [`Keeper`] is the family's supervisor: it forgets an actor the moment it stops or fails,
//!   and restarts failed ones when the family asks for that.
//! - [`spawn_ticker`] drives each actor's idle check, after which it passivates.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort,
    SupervisionEvent,
};
use tokio::sync::OnceCell;

use crate::FastMap;

type Slot<M> = Arc<OnceCell<ActorRef<M>>>;

pub struct Registry<K, M: ractor::Message> {
    /// Keys requests are routed for. A slot is filled once its actor has started; concurrent
    /// first requests share that one start.
    live: FastMap<K, Slot<M>>,
    /// The key each running actor serves, so a stopped actor is forgotten in O(1).
    keys: FastMap<ActorId, K>,
    supervisor: OnceLock<ActorCell>,
}

/// Why a call to an actor got no answer. Each family words these for its callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The actor did not answer within the timeout.
    Timeout,
    /// The actor stopped or failed with the request in hand; it may have been carried out.
    Dropped,
    /// Each actor asked had stopped before taking the request.
    KeptRestarting,
    Failed(String),
}

impl<K: Hash + Eq + Clone, M: ractor::Message> Default for Registry<K, M> {
    fn default() -> Self {
        Self {
            live: FastMap::default(),
            keys: FastMap::default(),
            supervisor: OnceLock::new(),
        }
    }
}

impl<K, M> Registry<K, M>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    M: ractor::Message,
{
    /// How many actors are running.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.live.contains_key(key)
    }

    /// The running actor for `key`, without starting one.
    pub fn running(&self, key: &K) -> Option<ActorRef<M>> {
        self.live.get(key).and_then(|slot| slot.get().cloned())
    }

    /// Keys routed, including those whose actor is still starting.
    #[cfg(test)]
    pub fn routes(&self) -> usize {
        self.live.len()
    }

    /// Spawns `actor` under the family's supervisor.
    pub async fn spawn<A>(&self, actor: A, args: A::Arguments) -> Result<ActorRef<M>, String>
    where
        A: Actor<Msg = M>,
    {
        let supervisor = self.supervisor.get().cloned().ok_or("not started")?;
        let (actor, _) = Actor::spawn_linked(None, actor, args, supervisor)
            .await
            .map_err(|e| e.to_string())?;
        Ok(actor)
    }

    /// The running actor for `key`, started by `start` if there is none.
    ///
    /// A start that fails, or whose caller goes away part way through (a client that
    /// disconnects, a timeout), leaves no route behind: a flood of requests for keys that are
    /// never started again cannot fill the registry.
    pub async fn actor<E, F, Fut>(&self, key: &K, start: F) -> Result<ActorRef<M>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ActorRef<M>, E>>,
    {
        // A running actor is found under the shard's read lock, without cloning the key.
        let found = self.live.get(key).map(|slot| slot.clone());
        let slot = found.unwrap_or_else(|| self.live.entry(key.clone()).or_default().clone());
        if let Some(actor) = slot.get() {
            return Ok(actor.clone());
        }
        let _unstarted = Unstarted {
            live: &self.live,
            key,
            slot: &slot,
        };
        let actor = slot
            .get_or_try_init(|| async {
                let actor = start().await?;
                self.keys.insert(actor.get_id(), key.clone());
                Ok(actor)
            })
            .await;
        actor.cloned()
    }

    /// Asks the actor for `key` (started by `start` if needed) and waits up to `timeout`.
    ///
    /// An actor that stopped before taking the request (it was passivating) is replaced and
    /// asked again: it never saw the request, so repeating it is safe.
    pub async fn call<T, E, F, Fut>(
        &self,
        key: &K,
        timeout: Duration,
        start: F,
        make: impl Fn(RpcReplyPort<Result<T, E>>) -> M,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<CallError> + Send + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<ActorRef<M>, E>>,
    {
        for _ in 0..3 {
            let actor = self.actor(key, &start).await?;
            match actor.call(&make, Some(timeout)).await {
                Ok(CallResult::Success(answer)) => return answer,
                Ok(CallResult::Timeout) => return Err(CallError::Timeout.into()),
                Ok(CallResult::SenderError) => return Err(CallError::Dropped.into()),
                Err(MessagingErr::SendErr(_) | MessagingErr::ChannelClosed) => {
                    self.unroute(key, &actor.get_cell());
                }
                Err(e) => return Err(CallError::Failed(e.to_string()).into()),
            }
        }
        Err(CallError::KeptRestarting.into())
    }

    /// Stops routing requests for `key` to `actor`: it is passivating, or has gone.
    pub fn unroute(&self, key: &K, actor: &ActorCell) {
        let id = actor.get_id();
        self.live
            .remove_if(key, |_, slot| slot.get().is_some_and(|a| a.get_id() == id));
    }

    /// Forgets an actor that has stopped or failed, and returns the key it served.
    pub fn forget(&self, actor: &ActorCell) -> Option<K> {
        let (_, key) = self.keys.remove(&actor.get_id())?;
        self.unroute(&key, actor);
        Some(key)
    }
}

/// Removes a slot that is still empty when the start waiting on it ends: it failed, or its
/// caller went away. Another caller sharing the start keeps the slot alive only while it waits.
struct Unstarted<'a, K: Hash + Eq, M: ractor::Message> {
    live: &'a FastMap<K, Slot<M>>,
    key: &'a K,
    slot: &'a Slot<M>,
}

impl<K: Hash + Eq, M: ractor::Message> Drop for Unstarted<'_, K, M> {
    fn drop(&mut self) {
        if !self.slot.initialized() {
            self.live.remove_if(self.key, |_, s| {
                Arc::ptr_eq(s, self.slot) && !s.initialized() && Arc::strong_count(s) <= 2
            });
        }
    }
}

/// Restarts allowed per key within [`RESTART_WINDOW`] before a family stops restarting it
/// eagerly; its next request starts it again.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long a stopping supervisor waits for its actors to finish.
const CHILDREN_STOP: Duration = Duration::from_secs(5);

/// The supervisor of one family of on-demand actors.
pub struct Keeper<K, M>(PhantomData<fn() -> (K, M)>);

impl<K, M> Default for Keeper<K, M> {
    fn default() -> Self {
        Keeper(PhantomData)
    }
}

/// What a [`Keeper`] looks after.
pub struct Family<K, M: ractor::Message> {
    /// The actors' kind, for logs and metrics.
    pub kind: &'static str,
    pub registry: Arc<Registry<K, M>>,
    /// Restarts a failed actor's key (from the store); `None` leaves it to the next request.
    pub restart: Option<Box<dyn Fn(K) + Send + Sync>>,
}

pub struct KeeperState<K, M: ractor::Message> {
    family: Family<K, M>,
    restarts: HashMap<K, Vec<Instant>>,
}

impl<K, M> Keeper<K, M>
where
    K: Hash + Eq + Clone + std::fmt::Display + Send + Sync + 'static,
    M: ractor::Message,
{
    /// Starts the supervisor under `parent` (or unsupervised when `None`) and makes it the
    /// parent of every actor the registry spawns.
    pub async fn start(
        family: Family<K, M>,
        parent: Option<ActorCell>,
    ) -> Result<ActorRef<()>, ractor::SpawnErr> {
        let registry = family.registry.clone();
        let (keeper, _) = match parent {
            Some(parent) => Actor::spawn_linked(None, Self::default(), family, parent).await?,
            None => Actor::spawn(None, Self::default(), family).await?,
        };
        let _ = registry.supervisor.set(keeper.get_cell());
        Ok(keeper)
    }
}

impl<K, M> Actor for Keeper<K, M>
where
    K: Hash + Eq + Clone + std::fmt::Display + Send + Sync + 'static,
    M: ractor::Message,
{
    type Msg = ();
    type State = KeeperState<K, M>;
    type Arguments = Family<K, M>;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        family: Family<K, M>,
    ) -> Result<KeeperState<K, M>, ActorProcessingErr> {
        Ok(KeeperState {
            family,
            restarts: HashMap::new(),
        })
    }

    /// On shutdown ractor kills the children of a supervisor that stops, and a killed actor
    /// skips `post_stop`. Stopping them first lets each one finish its writes and answer its
    /// callers.
    async fn post_stop(
        &self,
        myself: ActorRef<()>,
        _state: &mut KeeperState<K, M>,
    ) -> Result<(), ActorProcessingErr> {
        myself
            .stop_children_and_wait(Some("shutting down".into()), Some(CHILDREN_STOP))
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut KeeperState<K, M>,
    ) -> Result<(), ActorProcessingErr> {
        let kind = state.family.kind;
        match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(key) = state.family.registry.forget(&cell) {
                    let reason = reason.as_deref().unwrap_or("");
                    tracing::debug!(kind, key = %key, reason, "actor stopped");
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                // A failed actor skips `post_stop`, where stops are otherwise counted.
                crate::telemetry::actor_stopped(kind);
                let Some(key) = state.family.registry.forget(&cell) else {
                    return Ok(());
                };
                let Some(restart) = &state.family.restart else {
                    tracing::warn!(kind, key = %key, %error, "actor failed; its next request starts it again");
                    return Ok(());
                };
                let now = Instant::now();
                state
                    .restarts
                    .retain(|_, times| times.last().is_some_and(|t| now - *t < RESTART_WINDOW));
                let recent = state.restarts.entry(key.clone()).or_default();
                recent.retain(|t| now - *t < RESTART_WINDOW);
                recent.push(now);
                if recent.len() > MAX_RESTARTS {
                    tracing::error!(kind, key = %key, %error, "actor keeps failing; not restarting it eagerly");
                    return Ok(());
                }
                tracing::warn!(kind, key = %key, %error, "actor failed; restarting it");
                crate::telemetry::actor_restarted(kind);
                restart(key);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Sends `tick()` to `actor` every `every`, until the actor is gone. Missed ticks are not made
/// up: a busy actor gets one tick, not a burst.
pub fn spawn_ticker<M: ractor::Message>(actor: ActorRef<M>, every: Duration, tick: fn() -> M) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            if actor.send_message(tick()).is_err() {
                break;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Actor for Echo {
        type Msg = RpcReplyPort<Result<u32, CallError>>;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<Self::Msg>,
            reply: Self::Msg,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            let _ = reply.send(Ok(7));
            Ok(())
        }
    }

    type Echoes = Registry<u32, RpcReplyPort<Result<u32, CallError>>>;

    async fn family() -> Arc<Echoes> {
        let registry = Arc::new(Echoes::default());
        let family = Family {
            kind: "echo",
            registry: registry.clone(),
            restart: None,
        };
        Keeper::start(family, None).await.unwrap();
        registry
    }

    #[tokio::test]
    async fn a_start_abandoned_by_its_caller_leaves_no_route() {
        let registry = family().await;
        let waiting = {
            let registry = registry.clone();
            tokio::spawn(async move {
                let never = || std::future::pending::<Result<_, CallError>>();
                registry.actor(&1, never).await.map(|_| ())
            })
        };
        while registry.routes() == 0 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        assert_eq!(registry.routes(), 0);
    }

    #[tokio::test]
    async fn a_failed_start_leaves_no_route_and_concurrent_callers_share_one_start() {
        let registry = family().await;
        let failed: Result<_, CallError> = registry
            .actor(&1, || async { Err(CallError::Failed("no".into())) })
            .await;
        assert!(failed.is_err());
        assert_eq!(registry.routes(), 0);

        let starts = std::sync::atomic::AtomicUsize::new(0);
        let start = || async {
            starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            registry.spawn(Echo, ()).await.map_err(CallError::Failed)
        };
        let call = |_| registry.call(&2, Duration::from_secs(5), start, |reply| reply);
        let answers = futures_util::future::join_all((0..8).map(call)).await;
        assert!(answers.iter().all(|a| a == &Ok(7)));
        assert_eq!(starts.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!((registry.routes(), registry.len()), (1, 1));
    }

    #[tokio::test]
    async fn a_stopped_actor_is_forgotten_and_the_next_call_starts_another() {
        let registry = family().await;
        let start = || async { registry.spawn(Echo, ()).await.map_err(CallError::Failed) };
        let first = registry.actor(&3, start).await.unwrap();
        first.stop_and_wait(None, None).await.unwrap();
        // The keeper forgets it on the termination event.
        while !registry.is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(registry.routes(), 0);
        let answer = registry.call(&3, Duration::from_secs(5), start, |reply| reply);
        assert_eq!(answer.await, Ok(7));
    }
}
