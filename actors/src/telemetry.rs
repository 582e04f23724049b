//! The actors' metrics, written through the `metrics` facade; the server installs the
//! Prometheus recorder that collects them. Names are listed in docs/metrics.md.

use std::time::Instant;

/// An actor has started.
pub fn actor_started(kind: &'static str) {
    metrics::counter!("fleety_actors_spawned_total", "kind" => kind).increment(1);
    metrics::gauge!("fleety_actors_live", "kind" => kind).increment(1.0);
}

/// An actor has stopped, for whatever reason.
pub fn actor_stopped(kind: &'static str) {
    metrics::counter!("fleety_actors_stopped_total", "kind" => kind).increment(1);
    metrics::gauge!("fleety_actors_live", "kind" => kind).decrement(1.0);
}

pub fn actor_passivated(kind: &'static str) {
    metrics::counter!("fleety_actors_passivated_total", "kind" => kind).increment(1);
}

pub fn actor_restarted(kind: &'static str) {
    metrics::counter!("fleety_actors_restarted_total", "kind" => kind).increment(1);
}

/// One message handled, timed from `started`.
pub fn message_handled(kind: &'static str, message: &'static str, started: Instant) {
    metrics::histogram!("fleety_actor_message_duration_seconds", "kind" => kind, "message" => message)
        .record(started.elapsed().as_secs_f64());
}

/// Counts a request to an actor as in flight until dropped.
pub struct InFlight(&'static str);

impl InFlight {
    pub fn new(kind: &'static str) -> Self {
        metrics::gauge!("fleety_actor_calls_in_flight", "kind" => kind).increment(1.0);
        InFlight(kind)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("fleety_actor_calls_in_flight", "kind" => self.0).decrement(1.0);
    }
}
