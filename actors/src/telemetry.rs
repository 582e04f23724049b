//! The actors' metrics, written through the `metrics` facade; the server installs the
//! Prometheus recorder that collects them. Names are listed in docs/metrics.md.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

type Cache<K, V> = RefCell<HashMap<K, V, foldhash::fast::RandomState>>;
type Label = (&'static str, &'static str);

thread_local! {
    static HISTOGRAMS: Cache<(&'static str, Label, Label), metrics::Histogram> =
        RefCell::default();
    static GAUGES: Cache<(&'static str, Label), metrics::Gauge> = RefCell::default();
}

/// Records `value` in the histogram `name` with two labels. The handle is looked up in the
/// recorder once per thread and kept: a lookup hashes every label and takes a lock the threads
/// share, and these are recorded for every actor message and store operation.
pub fn record(name: &'static str, (k1, v1): Label, (k2, v2): Label, value: f64) {
    let recorded = HISTOGRAMS.try_with(|cache| {
        cache
            .borrow_mut()
            .entry((name, (k1, v1), (k2, v2)))
            .or_insert_with(|| metrics::histogram!(name, k1 => v1, k2 => v2))
            .record(value)
    });
    if recorded.is_err() {
        // This thread is exiting and its cache is gone.
        metrics::histogram!(name, k1 => v1, k2 => v2).record(value);
    }
}

/// Adds `delta` to the gauge `name` with one label; the handle is kept as in [`record`].
fn gauge_add(name: &'static str, (k, v): Label, delta: f64) {
    let added = GAUGES.try_with(|cache| {
        cache
            .borrow_mut()
            .entry((name, (k, v)))
            .or_insert_with(|| metrics::gauge!(name, k => v))
            .increment(delta)
    });
    if added.is_err() {
        metrics::gauge!(name, k => v).increment(delta);
    }
}

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
    record(
        "fleety_actor_message_duration_seconds",
        ("kind", kind),
        ("message", message),
        started.elapsed().as_secs_f64(),
    );
}

/// Counts a request to an actor as in flight until dropped.
pub struct InFlight(&'static str);

impl InFlight {
    pub fn new(kind: &'static str) -> Self {
        gauge_add("fleety_actor_calls_in_flight", ("kind", kind), 1.0);
        InFlight(kind)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge_add("fleety_actor_calls_in_flight", ("kind", self.0), -1.0);
    }
}

/// One storage-port call of `backend`, timed from `started`.
pub fn store_call(backend: &'static str, operation: &'static str, started: Instant, ok: bool) {
    record(
        "fleety_store_operation_duration_seconds",
        ("backend", backend),
        ("operation", operation),
        started.elapsed().as_secs_f64(),
    );
    if !ok {
        metrics::counter!("fleety_store_errors_total", "backend" => backend, "operation" => operation).increment(1);
    }
}
