//! Webhooks: the endpoints a project registers, the deliveries owed to them, and when a failed
//! delivery is tried again.
//!
//! A delivery is written to the store in the same batch as the change it announces (the ticket
//! actor's, or the ticket's creation): the outbox pattern, so an acknowledged change never
//! loses its webhook, even across a crash. A dispatcher in the server (`src/webhooks.rs`) sends
//! what is due, signed as the Standard Webhooks specification says, and records the outcome.
//! [`Hooks`] knows every project's endpoints, so adding deliveries to a batch costs a map look-up
//! and nothing at all for a project without webhooks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::ProjectId;
use crate::FastMap;

/// How long a delivery stays in its endpoint's log: long after its last retry.
pub const LOG_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// What a webhook can announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "ticket.created")]
    TicketCreated,
    #[serde(rename = "ticket.status_changed")]
    TicketStatusChanged,
    #[serde(rename = "message.created")]
    MessageCreated,
    #[serde(rename = "ticket.assigned")]
    TicketAssigned,
    /// The visitor rated their satisfaction with a resolved ticket.
    #[serde(rename = "ticket.rated")]
    TicketRated,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::TicketCreated,
        EventType::TicketStatusChanged,
        EventType::MessageCreated,
        EventType::TicketAssigned,
        EventType::TicketRated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TicketCreated => "ticket.created",
            EventType::TicketStatusChanged => "ticket.status_changed",
            EventType::MessageCreated => "message.created",
            EventType::TicketAssigned => "ticket.assigned",
            EventType::TicketRated => "ticket.rated",
        }
    }

    pub fn parse(raw: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == raw)
    }
}

/// Where a project wants its events sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: Uuid,
    pub project_id: ProjectId,
    /// An `http` or `https` URL, checked when registered and again, by address, at delivery.
    pub url: String,
    pub events: Vec<EventType>,
    /// `whsec_` and the base64 key the payloads are signed with; shown once, at creation.
    pub secret: String,
    pub enabled: bool,
    /// Why the endpoint was turned off, when the server did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Since when every delivery to it has failed; cleared by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Endpoint {
    pub fn wants(&self, event: EventType) -> bool {
        self.enabled && self.events.contains(&event)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Succeeded,
    /// Every attempt failed; only a replay sends it again.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Succeeded,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// One event owed to one endpoint, with what became of its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The `webhook-id`: the same on every attempt, so a receiver can tell a retry.
    pub id: String,
    pub project_id: ProjectId,
    pub endpoint_id: Uuid,
    pub event: EventType,
    /// The body, exactly as signed and sent: `{"type", "timestamp", "data"}`.
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When it is due; `None` once it succeeded or gave up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Delivery {
    /// Whether the delivery announces something of the ticket `slug`: the deliveries an
    /// erasure of the ticket removes ([`payload_concerns_ticket`]).
    pub fn concerns_ticket(&self, slug: &str) -> bool {
        payload_concerns_ticket(&self.payload, slug)
    }

    /// The slug of the ticket the delivery announces something of, if its payload names one.
    pub fn ticket(&self) -> Option<String> {
        let payload = serde_json::from_str::<serde_json::Value>(&self.payload).ok()?;
        let data = &payload["data"];
        [&data["slug"], &data["ticket_slug"]]
            .iter()
            .find_map(|v| v.as_str().map(str::to_owned))
    }
}

/// Whether a delivery's payload announces something of the ticket `slug`: its `data` names
/// the ticket as `slug` (a ticket's own events) or `ticket_slug` (its messages').
pub fn payload_concerns_ticket(payload: &str, slug: &str) -> bool {
    let Ok(payload) = serde_json::from_str::<serde_json::Value>(payload) else {
        return false;
    };
    let data = &payload["data"];
    [&data["slug"], &data["ticket_slug"]]
        .iter()
        .any(|v| v.as_str() == Some(slug))
}

/// The smallest delivery id made at `at` or later: ids sort by when they were made.
pub fn first_id_at(at: DateTime<Utc>) -> String {
    format!(
        "msg_{:016x}",
        u64::try_from(at.timestamp_micros()).unwrap_or(0)
    )
}

/// Microseconds for a new delivery id: its time, nudged past the last id this process gave
/// when that is the same or a little later, so deliveries made together still list in the order
/// they were made. A time well before the last (a delivery dated back on purpose) is kept.
fn id_micros(now: DateTime<Utc>) -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    const NUDGE_WITHIN: u64 = 1_000_000;
    let now = u64::try_from(now.timestamp_micros()).unwrap_or(0);
    let pick = |last: u64| {
        if now > last || last - now > NUDGE_WITHIN {
            now
        } else {
            last + 1
        }
    };
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(pick(last).max(last))
        })
        .unwrap_or(0);
    pick(prev)
}

impl Delivery {
    /// A new delivery of `event` with `data`, due at once.
    pub fn new(
        endpoint: &Endpoint,
        event: EventType,
        data: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Self {
        let payload = serde_json::json!({
            "type": event.as_str(),
            "timestamp": crate::events::rfc3339(now),
            "data": data,
        });
        Delivery {
            // Sorts by creation time, so a log lists the newest first by id alone.
            id: format!("msg_{:016x}{:08x}", id_micros(now), rand::random::<u32>()),
            project_id: endpoint.project_id.clone(),
            endpoint_id: endpoint.id,
            event,
            payload: payload.to_string(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            last_status: None,
            last_error: None,
            created_at: now,
        }
    }
}

/// When a delivery that failed is tried again: after each of these waits in turn, with up to a
/// fifth more or less at random so a recovering receiver is not hit by every retry at once. A
/// receiver's `Retry-After` is honoured when it asks for longer.
#[derive(Debug, Clone)]
pub struct RetrySchedule(pub Vec<Duration>);

impl Default for RetrySchedule {
    /// Six retries over about a day: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, then the last waits
    /// another 10 h.
    fn default() -> Self {
        let m = |minutes: u64| Duration::from_secs(minutes * 60);
        RetrySchedule(vec![
            Duration::from_secs(5),
            m(5),
            m(30),
            m(120),
            m(300),
            m(600),
            m(600),
        ])
    }
}

/// The longest wait a `Retry-After` gets, unless the schedule has longer ones.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

impl RetrySchedule {
    /// The wait before the attempt after `attempts` failed ones, or `None` when none is left.
    /// `jitter` is a number in [0, 1) (random in use, fixed in tests).
    pub fn next(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let base = *self
            .0
            .get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
        // ±20 %, so receivers that failed together are not retried together.
        let wait = base
            .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
            .max(Duration::from_millis(1));
        // A receiver may ask for more time, not unlimited time: up to an hour, or the longest
        // wait of the schedule if that is longer.
        let longest = self.0.iter().max().copied().unwrap_or(wait);
        let cap = longest.max(RETRY_AFTER_CAP);
        Some(retry_after.map_or(wait, |asked| wait.max(asked.min(cap))))
    }

    /// The shortest time from a delivery's first attempt to its last, jitter included.
    pub fn shortest_span(&self) -> Duration {
        self.0.iter().sum::<Duration>().mul_f64(0.8)
    }

    /// How many attempts a delivery gets in all.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.0.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// Parses `5s,5m,30m,2h`: a list of waits with units ms, s, m or h.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let waits = raw
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|w| {
                let split = w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len());
                let (n, unit) = w.split_at(split);
                let n: u64 = n
                    .parse()
                    .map_err(|_| format!("{w:?} is not a number and a unit"))?;
                Ok(match unit {
                    "ms" => Duration::from_millis(n),
                    "s" => Duration::from_secs(n),
                    "m" => Duration::from_secs(n * 60),
                    "h" => Duration::from_secs(n * 3600),
                    _ => return Err(format!("{w:?}: the unit must be ms, s, m or h")),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if waits.is_empty() {
            return Err("list at least one wait, like 5s,5m,30m".into());
        }
        Ok(RetrySchedule(waits))
    }
}

impl std::str::FromStr for RetrySchedule {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        Self::parse(raw)
    }
}

/// The schedule as [`RetrySchedule::parse`] reads it, each wait in its largest whole unit.
impl std::fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, wait) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let ms = wait.as_millis();
            match ms {
                ms if ms > 0 && ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000)?,
                ms if ms > 0 && ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000)?,
                ms if ms > 0 && ms % 1000 == 0 => write!(f, "{}s", ms / 1000)?,
                ms => write!(f, "{ms}ms")?,
            }
        }
        Ok(())
    }
}

/// Every project's webhook endpoints, kept in memory so that writing a change knows at once
/// whether anyone wants to hear of it. Filled from the store at start, changed here when this
/// server changes an endpoint, and refreshed from the store every 30 s for changes made through
/// other nodes.
#[derive(Clone, Default)]
pub struct Hooks {
    endpoints: Arc<FastMap<ProjectId, Arc<Vec<Endpoint>>>>,
    /// Rung when deliveries are made, so the dispatcher looks for them without waiting for
    /// its next round.
    made: Arc<tokio::sync::Notify>,
}

impl Hooks {
    /// Replaces what is known of every project's endpoints.
    pub fn load(&self, all: Vec<Endpoint>) {
        let mut by_project: std::collections::HashMap<ProjectId, Vec<Endpoint>> =
            Default::default();
        for e in all {
            by_project.entry(e.project_id.clone()).or_default().push(e);
        }
        self.endpoints
            .retain(|project, _| by_project.contains_key(project));
        for (project, endpoints) in by_project {
            self.endpoints.insert(project, Arc::new(endpoints));
        }
    }

    /// Replaces what is known of one project's endpoints.
    pub fn set(&self, project: &ProjectId, endpoints: Vec<Endpoint>) {
        if endpoints.is_empty() {
            self.endpoints.remove(project);
        } else {
            self.endpoints.insert(project.clone(), Arc::new(endpoints));
        }
    }

    pub fn endpoint(&self, project: &ProjectId, id: Uuid) -> Option<Endpoint> {
        let endpoints = self.endpoints.get(project)?;
        endpoints.iter().find(|e| e.id == id).cloned()
    }

    /// The deliveries `event` with `data` owes: one per endpoint of the project that wants it;
    /// none, without building the payload, when no endpoint does.
    pub fn deliveries(
        &self,
        project: &ProjectId,
        event: EventType,
        data: impl FnOnce() -> serde_json::Value,
        now: DateTime<Utc>,
    ) -> Vec<Delivery> {
        let Some(endpoints) = self.endpoints.get(project).map(|e| e.clone()) else {
            return Vec::new();
        };
        let wanted: Vec<&Endpoint> = endpoints.iter().filter(|e| e.wants(event)).collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let data = data();
        self.made.notify_one();
        wanted
            .into_iter()
            .map(|e| Delivery::new(e, event, &data, now))
            .collect()
    }

    /// Completes when deliveries have been made since the last call (they may not be written
    /// yet: the change they ride with is still on its way to the store).
    pub async fn made(&self) {
        self.made.notified().await;
    }

    /// Rings [`Hooks::made`] for a delivery written outside a change (a replay).
    pub fn wake(&self) {
        self.made.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(project: &str, events: &[EventType], enabled: bool) -> Endpoint {
        Endpoint {
            id: Uuid::new_v4(),
            project_id: ProjectId::parse(project).unwrap(),
            url: "https://example.com/hook".into(),
            events: events.to_vec(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            enabled,
            disabled_reason: None,
            failing_since: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn deliveries_go_to_the_enabled_endpoints_that_want_the_event() {
        let hooks = Hooks::default();
        let acme = ProjectId::parse("acme").unwrap();
        let both = endpoint("acme", &EventType::ALL, true);
        let created_only = endpoint("acme", &[EventType::TicketCreated], true);
        let off = endpoint("acme", &EventType::ALL, false);
        hooks.load(vec![
            both.clone(),
            created_only.clone(),
            off,
            endpoint("other", &EventType::ALL, true),
        ]);
        let now = Utc::now();
        let made = hooks.deliveries(
            &acme,
            EventType::MessageCreated,
            || serde_json::json!({"x": 1}),
            now,
        );
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].endpoint_id, both.id);
        let body: serde_json::Value = serde_json::from_str(&made[0].payload).unwrap();
        assert_eq!(body["type"], "message.created");
        assert_eq!(body["data"], serde_json::json!({"x": 1}));
        assert!(made[0].id.starts_with("msg_"));
        let created = hooks.deliveries(
            &acme,
            EventType::TicketCreated,
            || serde_json::json!({}),
            now,
        );
        assert_eq!(created.len(), 2);
        // A project without endpoints pays nothing: the payload is not even built.
        let none = ProjectId::parse("quiet").unwrap();
        let built = std::cell::Cell::new(false);
        let made = hooks.deliveries(
            &none,
            EventType::TicketCreated,
            || {
                built.set(true);
                serde_json::json!({})
            },
            now,
        );
        assert!(made.is_empty() && !built.get());
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_and_honour_retry_after_within_reason() {
        let s = RetrySchedule::parse("5s, 1m, 2h").unwrap();
        assert_eq!(s.attempts(), 4);
        assert_eq!(s.next(1, None, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(s.next(1, None, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(s.next(2, None, 1.0), Some(Duration::from_secs(72)));
        assert_eq!(
            s.next(4, None, 0.5),
            None,
            "no attempt is left after the fourth"
        );
        assert_eq!(
            s.next(1, Some(Duration::from_secs(30)), 0.5),
            Some(Duration::from_secs(30))
        );
        // Asking for a week gets the longest wait of the schedule, or an hour if that is longer.
        let week = Duration::from_secs(7 * 24 * 3600);
        assert_eq!(s.next(1, Some(week), 0.5), Some(Duration::from_secs(7200)));
        let quick = RetrySchedule::parse("100ms").unwrap();
        assert_eq!(
            quick.next(1, Some(week), 0.5),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            quick.next(1, Some(Duration::from_secs(2)), 0.5),
            Some(Duration::from_secs(2))
        );
        assert!(RetrySchedule::parse("5 minutes").is_err());
        // Written back as it is read, each wait in its largest whole unit.
        let written = RetrySchedule::parse("5s, 120s, 90m, 2h, 1500ms").unwrap();
        assert_eq!(written.to_string(), "5s,2m,90m,2h,1500ms");
        assert_eq!(
            RetrySchedule::default().to_string(),
            "5s,5m,30m,2h,5h,10h,10h"
        );
        assert!(RetrySchedule::parse("").is_err());
        assert_eq!(s.shortest_span(), Duration::from_secs(7265).mul_f64(0.8));
        let total: Duration = RetrySchedule::default().0.iter().sum();
        assert!(total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(30 * 3600));
    }

    #[test]
    fn event_names_round_trip() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!(EventType::parse("ticket.deleted"), None);
    }
}
