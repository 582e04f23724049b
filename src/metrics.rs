//! Prometheus metrics: the recorder every `metrics::` macro in both crates writes to, the
//! descriptions of every metric (docs/metrics.md lists the same), and the HTTP route labels.
//! The store backends time their own calls (`fleety_actors::store::timed`).
//!
//! One recorder serves the whole process. It is installed once; servers built later in the
//! same process (tests) share it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: from 100 µs (an actor round trip) to 60 s (a long answer).
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
/// Writes per group commit.
const GROUP_SIZES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Every metric the server records; docs/metrics.md and the Grafana dashboard use these names.
pub const NAMES: &[&str] = &[
    "fleety_http_requests_total",
    "fleety_http_request_duration_seconds",
    "fleety_connections_refused_total",
    "fleety_actors_live",
    "fleety_actors_spawned_total",
    "fleety_actors_stopped_total",
    "fleety_actors_restarted_total",
    "fleety_actors_passivated_total",
    "fleety_actor_calls_in_flight",
    "fleety_actor_message_duration_seconds",
    "fleety_websockets_open",
    "fleety_sse_streams_open",
    "fleety_events_fanned_out_total",
    "fleety_slow_subscribers_cut_total",
    "fleety_slow_websockets_dropped_total",
    "fleety_store_operation_duration_seconds",
    "fleety_store_errors_total",
    "fleety_store_group_commit_writes",
    "fleety_store_log_sync_seconds",
    "fleety_store_checkpoint_seconds",
    "fleety_store_apply_lag_groups",
    "fleety_llm_time_to_first_token_seconds",
    "fleety_llm_tokens_total",
    "fleety_llm_errors_total",
    "fleety_rate_limited_total",
    "fleety_chat_quota_refusals_total",
    "fleety_assistant_conversations_total",
    "fleety_assistant_feedback_total",
    "fleety_csat_ratings_total",
    "fleety_webhook_attempts_total",
    "fleety_cluster_appends_total",
    "fleety_cluster_forwards_total",
    "fleety_email_attempts_total",
    "fleety_visitor_emails_total",
    "fleety_agent_emails_total",
    "fleety_store_scrub_seconds",
    "fleety_retention_rounds_total",
    "fleety_retention_erased_total",
];

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("fleety_store_group_commit_writes".into()),
                    GROUP_SIZES,
                )
            });
        let handle = match builder.and_then(|b| b.install_recorder()) {
            Ok(handle) => handle,
            // Another recorder is installed already (a test harness, an embedding program):
            // serve an empty page from a recorder of our own rather than fail.
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        describe();
        // Histograms are kept in windows that upkeep folds together; without it they grow.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let upkeep = handle.clone();
            rt.spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                loop {
                    every.tick().await;
                    upkeep.run_upkeep();
                }
            });
        }
        handle
    })
}

/// The text exposition of every metric.
pub fn render() -> String {
    handle().render()
}

fn describe() {
    describe_counter!(
        "fleety_http_requests_total",
        "HTTP requests answered, by route, method and status"
    );
    describe_histogram!(
        "fleety_http_request_duration_seconds",
        Unit::Seconds,
        "Time to the response head, by route and method"
    );
    describe_counter!(
        "fleety_connections_refused_total",
        "Connections past FLEETY_MAX_CONNECTIONS, by outcome (answered, unanswered, dropped)"
    );
    describe_gauge!(
        "fleety_actors_live",
        "Actors running now, by kind (ticket, chat_session, knowledge_base)"
    );
    describe_counter!("fleety_actors_spawned_total", "Actors started, by kind");
    describe_counter!(
        "fleety_webhook_attempts_total",
        "Webhook attempts, by outcome (delivered, failed, dropped, not_yet)"
    );
    describe_counter!(
        "fleety_cluster_appends_total",
        "Batches appended to tickets' logs (several nodes), by outcome (ok, refused, failed)"
    );
    describe_counter!(
        "fleety_cluster_forwards_total",
        "Commands forwarded to a ticket's owner (several nodes), by outcome (answered, unreachable, failed)"
    );
    describe_counter!(
        "fleety_actors_stopped_total",
        "Actors stopped for any reason, by kind"
    );
    describe_counter!(
        "fleety_actors_restarted_total",
        "Failed actors restarted by their supervisor, by kind"
    );
    describe_counter!(
        "fleety_actors_passivated_total",
        "Actors stopped because they were idle, by kind"
    );
    describe_gauge!("fleety_actor_calls_in_flight", "Requests sent to actors and not yet answered (waiting in a mailbox or being handled), by kind");
    describe_histogram!(
        "fleety_actor_message_duration_seconds",
        Unit::Seconds,
        "Time an actor spends handling one message, by kind and message"
    );
    describe_gauge!(
        "fleety_websockets_open",
        "Open WebSockets, by kind (ticket, feed)"
    );
    describe_gauge!(
        "fleety_sse_streams_open",
        "Chat answers streaming now (kind: chat)"
    );
    describe_counter!(
        "fleety_events_fanned_out_total",
        "Realtime events offered to ticket subscribers (one per subscriber)"
    );
    describe_counter!(
        "fleety_slow_subscribers_cut_total",
        "Ticket subscribers disconnected for falling behind"
    );
    describe_counter!(
        "fleety_slow_websockets_dropped_total",
        "WebSockets closed because their client fell behind or left a write waiting"
    );
    describe_histogram!(
        "fleety_store_operation_duration_seconds",
        Unit::Seconds,
        "Storage operation latency, by backend and operation"
    );
    describe_counter!(
        "fleety_store_errors_total",
        "Failed storage operations, by backend and operation"
    );
    describe_histogram!(
        "fleety_store_group_commit_writes",
        Unit::Count,
        "Writes made durable by one group commit (embedded store)"
    );
    describe_histogram!(
        "fleety_store_log_sync_seconds",
        Unit::Seconds,
        "Time to append and fdatasync a batch of groups to the write-ahead log (embedded store)"
    );
    describe_histogram!(
        "fleety_store_checkpoint_seconds",
        Unit::Seconds,
        "Time to make redb durable up to the newest applied group (embedded store)"
    );
    describe_gauge!(
        "fleety_store_apply_lag_groups",
        "Groups acknowledged from the log that redb has not applied yet (embedded store)"
    );
    describe_histogram!(
        "fleety_llm_time_to_first_token_seconds",
        Unit::Seconds,
        "Time from asking the model to its first event, by provider"
    );
    describe_counter!(
        "fleety_llm_tokens_total",
        "Model tokens, by provider and kind (prompt, completion)"
    );
    describe_counter!(
        "fleety_llm_errors_total",
        "Failed model requests, by provider and kind (unreachable, timeout, upstream, protocol)"
    );
    describe_counter!(
        "fleety_rate_limited_total",
        "Requests refused by a per-IP rate limit, by limiter (public, session)"
    );
    describe_counter!(
        "fleety_chat_quota_refusals_total",
        "Chat requests refused by a quota or the concurrency limit"
    );
    describe_counter!(
        "fleety_assistant_conversations_total",
        "Conversations with the assistant that ended, by project and outcome (resolved, escalated, abandoned)"
    );
    describe_counter!(
        "fleety_assistant_feedback_total",
        "Ratings visitors gave the assistant's answers, by project and rating (up, down)"
    );
    describe_counter!(
        "fleety_csat_ratings_total",
        "Satisfaction ratings visitors gave resolved tickets, by project and score (1 to 5)"
    );
    describe_counter!(
        "fleety_email_attempts_total",
        "Attempts to hand an outbox email to the SMTP server, by outcome (sent, retry, failed)"
    );
    describe_counter!(
        "fleety_visitor_emails_total",
        "Emails to visitors composed from a burst of agent replies they had not read"
    );
    describe_counter!(
        "fleety_agent_emails_total",
        "Emails to agents written to the outbox, by kind (new_ticket, assigned)"
    );
    describe_histogram!(
        "fleety_store_scrub_seconds",
        Unit::Seconds,
        "Embedded store: the rewrite of the data file and the log after a ticket's erasure"
    );
    describe_counter!(
        "fleety_retention_rounds_total",
        "Rounds of applying the projects' retention settings"
    );
    describe_counter!(
        "fleety_retention_erased_total",
        "What retention erased, by kind (ticket)"
    );
}

/// Counts a connection past the cap: `answered` 503, `unanswered` (no request read in time),
/// or `dropped` unread past the refusal allowance.
pub fn connection_refused(outcome: &'static str) {
    metrics::counter!("fleety_connections_refused_total", "outcome" => outcome).increment(1);
}

/// Records one answered HTTP request.
/// `route` is the request's route label (`http::router::route_label`): a path of the route
/// table, or `other`.
pub fn http_request(method: &http::Method, route: &'static str, status: u16, started: Instant) {
    let method = match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    // The handles are looked up once per (route, method, status) and kept: a registry lookup
    // hashes every label and the status needs a string, which showed in the hot-read profile.
    type Handles = fleety_actors::FastMap<
        (&'static str, &'static str, u16),
        (metrics::Counter, metrics::Histogram),
    >;
    static HANDLES: std::sync::LazyLock<Handles> = std::sync::LazyLock::new(Handles::default);
    let key = (route, method, status);
    let handles = match HANDLES.get(&key) {
        Some(h) => h.value().clone(),
        None => HANDLES
            .entry(key)
            .or_insert_with(|| {
                (
                    metrics::counter!("fleety_http_requests_total", "route" => route, "method" => method, "status" => status.to_string()),
                    metrics::histogram!("fleety_http_request_duration_seconds", "route" => route, "method" => method),
                )
            })
            .value()
            .clone(),
    };
    handles.0.increment(1);
    handles.1.record(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names a text mentions, without the `_bucket`/`_sum`/`_count` of histograms.
    fn mentioned(text: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for (i, _) in text.match_indices("fleety_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .map(str::to_owned)
                .unwrap_or(name);
            out.insert(name);
        }
        out
    }

    #[test]
    fn the_docs_and_the_dashboard_match_the_metrics() {
        let docs = include_str!("../docs/metrics.md");
        let dashboard = include_str!("../docs/grafana/fleety.json");
        for name in NAMES {
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/metrics.md lacks {name}"
            );
            assert!(
                dashboard.contains(name),
                "the dashboard does not show {name}"
            );
        }
        for name in mentioned(docs).into_iter().chain(mentioned(dashboard)) {
            assert!(
                NAMES.contains(&name.as_str()),
                "{name} is documented but never recorded"
            );
        }
        serde_json::from_str::<serde_json::Value>(dashboard).expect("the dashboard is JSON");
    }
}
