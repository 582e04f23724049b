//! `TicketSupervisor`: the parent of every `TicketActor`.
//!
//! It keeps the registry true to what is running (an actor that stops or fails is forgotten at
//! once) and restarts a failed ticket with its state reloaded from the store. A ticket that
//! keeps failing is not restarted eagerly; the next request for it activates it again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::{TicketKey, Tickets};

/// Restarts allowed per ticket within [`RESTART_WINDOW`] before the supervisor stops trying.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long a shutdown waits for the ticket actors to finish their writes.
const CHILDREN_STOP: Duration = Duration::from_secs(5);

pub struct TicketSupervisor;

/// The supervisor has no requests of its own; it acts on supervision events.
pub enum SupervisorMsg {}

pub struct SupervisorState {
    tickets: Tickets,
    restarts: HashMap<TicketKey, Vec<Instant>>,
}

impl Actor for TicketSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Tickets;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        tickets: Tickets,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            tickets,
            restarts: HashMap::new(),
        })
    }

    /// On shutdown ractor kills the children of a supervisor that stops, and a killed actor
    /// skips `post_stop`. Stopping them first lets each one send its queued writes and answer
    /// its callers.
    async fn post_stop(
        &self,
        myself: ActorRef<SupervisorMsg>,
        _state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        myself
            .stop_children_and_wait(Some("shutting down".into()), Some(CHILDREN_STOP))
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let registry = &state.tickets.deps.registry;
        match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some(key) = registry.forget(&cell) {
                    tracing::debug!(ticket = %key, reason = reason.as_deref().unwrap_or(""), "ticket actor stopped");
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                // A failed actor skips `post_stop`, where stops are otherwise counted.
                crate::telemetry::actor_stopped("ticket");
                let Some(key) = registry.forget(&cell) else {
                    return Ok(());
                };
                let now = Instant::now();
                let recent = state.restarts.entry(key.clone()).or_default();
                recent.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                recent.push(now);
                if recent.len() > MAX_RESTARTS {
                    tracing::error!(ticket = %key, %error, "ticket actor keeps failing; not restarting it eagerly");
                    return Ok(());
                }
                tracing::warn!(ticket = %key, %error, "ticket actor failed; restarting it from the store");
                crate::telemetry::actor_restarted("ticket");
                // Reloading reads the store: do it off the supervisor's mailbox.
                let tickets = state.tickets.clone();
                tokio::spawn(async move {
                    if let Err(e) = tickets.actor(&key).await {
                        tracing::warn!(ticket = %key, error = %e, "restarting ticket actor failed");
                    }
                });
                state.restarts.retain(|_, times| {
                    times
                        .last()
                        .is_some_and(|t| now.duration_since(*t) < RESTART_WINDOW)
                });
            }
            _ => {}
        }
        Ok(())
    }
}
