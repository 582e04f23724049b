//! Sending webhooks: the dispatcher that finds due deliveries in the store and posts them, the
//! Standard Webhooks signature, and the guard that keeps a tenant's URL away from the server's
//! own network.
//!
//! The outbox is the store (see `fleety_actors::webhook`): every change that owes a webhook was
//! written with its delivery, so the dispatcher only has to read what is due, try it, and write
//! the outcome back. A delivery is sent at least once; its `webhook-id` stays the same on every
//! attempt, so a receiver can tell a retry from a new event. With several nodes on one store,
//! each dispatcher claims an attempt in the store before sending it, so only one sends it; an
//! attempt whose dispatcher died is claimed again once its claim runs out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use fleety_actors::clock::Clock;
use fleety_actors::domain::Slug;
use fleety_actors::store::Store;
use fleety_actors::webhook::{Delivery, DeliveryStatus, Endpoint, EventType, Hooks, RetrySchedule};
use hmac::{Hmac, Mac};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::WebhookSettings;

mod addresses;
pub use addresses::is_internal;

/// Deliveries read from the store per round.
const ROUND: usize = 64;
/// The longest the dispatcher goes without looking at the store. It wakes by itself when a
/// delivery it knows of comes due (one it made, rescheduled or saw coming in its last look), so
/// this bounds only how late it finds one it could not know of: due now, written by another
/// node (whose dispatcher died) or left by this node before a restart.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How far ahead a look reads, so that a delivery coming due before the next look is woken
/// for on time. At least [`LOOK_EVERY`].
const LOOK_AHEAD: chrono::TimeDelta = chrono::TimeDelta::seconds(1);
/// How often endpoints changed through other nodes are picked up.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// How long attempts under way may take to finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often deliveries past the log's retention are deleted, and how many per batch.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: usize = 1000;
/// Time to open a connection (and TLS) to a receiver.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest URL an endpoint may have.
pub const MAX_URL: usize = 2048;
/// How long a `ticket.created` announcement may wait for its ticket to become readable (the CQL
/// store writes the announcement just before it claims the slug).
const CLAIM_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// A new signing secret: `whsec_` and 32 random bytes in base64, as the specification has it.
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The `webhook-signature` header for one attempt: `v1,` and the base64 HMAC-SHA256 of
/// `id.timestamp.body`, keyed by the secret's decoded bytes. `None` for a secret that is not
/// `whsec_` and base64 (only a corrupt row could hold one).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_")?)
        .ok()?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    let tag = mac.finalize().into_bytes();
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    ))
}

/// Checks an endpoint URL as it is registered: `http` or `https`, a host, no credentials, and
/// (unless private addresses are allowed) no host that is an internal address or `localhost`.
/// Names are checked again, by the addresses they resolve to, at every attempt.
pub fn check_url(raw: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    if raw.len() > MAX_URL {
        return Err(format!("url: at most {MAX_URL} characters"));
    }
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| format!("url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url: must be http or https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url: must not hold a user name or password".into());
    }
    let internal = match url.host() {
        None => return Err("url: must name a host".into()),
        Some(url::Host::Ipv4(ip)) => is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    if internal && !allow_private {
        return Err("url: points at a loopback, private, link-local or other non-public address, which this server does not call".into());
    }
    Ok(url)
}

/// Resolves receivers' names and refuses internal addresses, so a name that points inside
/// (or is re-pointed there after it was registered) is never called.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_internal(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A receiver's name resolved only to internal addresses.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the address is loopback, private, link-local or otherwise not public")
    }
}

impl std::error::Error for Refused {}

/// The HTTP client webhooks go out on: no redirects, the configured timeout, the address
/// guard unless private addresses are allowed, and no proxy. `HTTP_PROXY`, `HTTPS_PROXY` and
/// `ALL_PROXY` are ignored: a proxy is handed the receiver's name unresolved and resolves it
/// itself, out of the guard's sight, so a name pointing inside would reach the proxy's network.
pub fn client(settings: &WebhookSettings) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(settings.timeout)
        .user_agent(concat!("Fleety-Webhooks/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(2);
    if !settings.allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the webhook client: {e}"))
}

/// What one attempt came to.
#[derive(Debug)]
enum Outcome {
    /// A 2xx answer.
    Delivered(u16),
    /// Any other answer, or none. `gone` is a 410: the receiver asks never to be called again.
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
        gone: bool,
    },
    /// Not sent, and never will be, for this reason.
    Dropped(&'static str),
    /// Not sent yet: try again after this long, without counting an attempt.
    NotYet(Duration),
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    hooks: Hooks,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    schedule: RetrySchedule,
    allow_private: bool,
    permits: Arc<Semaphore>,
    /// How long a claim on an attempt lasts: the request's timeout and some room to record it.
    claim_for: chrono::TimeDelta,
    /// Deliveries being tried, so a round that reads one again before its outcome is written
    /// leaves it alone.
    in_flight: Mutex<HashMap<String, Delivery>>,
    /// The soonest due time known beyond what the last round started: what attempts have
    /// rescheduled since, and the first delivery that round saw coming.
    soonest: Mutex<Option<DateTime<Utc>>>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        hooks: Hooks,
        clock: Arc<dyn Clock>,
        settings: &WebhookSettings,
    ) -> anyhow::Result<Arc<Self>> {
        // Room to record the outcome, past the longest an attempt can take.
        let claim_for = settings
            .timeout
            .saturating_add(CONNECT_TIMEOUT + Duration::from_secs(10));
        Ok(Arc::new(Self {
            store,
            hooks,
            clock,
            client: client(settings)?,
            schedule: settings.retry_schedule.clone(),
            allow_private: settings.allow_private,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            claim_for: chrono::TimeDelta::from_std(claim_for)
                .unwrap_or(chrono::TimeDelta::hours(1)),
            in_flight: Mutex::new(HashMap::new()),
            soonest: Mutex::new(None),
        }))
    }

    /// Loads every endpoint into [`Hooks`]; done before the server takes requests.
    pub async fn load_endpoints(&self) -> anyhow::Result<()> {
        let all =
            self.store.all_endpoints().await.map_err(|e| {
                anyhow::anyhow!("cannot read webhook endpoints from the store: {e}")
            })?;
        self.hooks.load(all);
        Ok(())
    }

    /// Sends due deliveries until `shutdown`. Attempts still running then get a moment to
    /// finish; the rest are abandoned and their claims given back, so another node, or this
    /// one after a restart, sends them at once (their outcome was never written).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tasks = JoinSet::new();
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.tick().await;
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The next look at the store: at once, then every `LOOK_EVERY` at least.
        let mut next = tokio::time::Instant::now();
        // After a wake-up the new deliveries may still be on their way to the store: look
        // again shortly after, once.
        let mut follow_up: Option<tokio::time::Instant> = None;
        // The last round left due deliveries for want of a free slot or a longer read.
        let mut backlog = false;
        loop {
            // Recomputed whenever anything wakes the loop, an attempt ending included: a retry
            // it scheduled is woken for when it comes due.
            let at = [Some(next), follow_up, self.next_due()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = refresh.tick() => {
                    if let Err(e) = self.load_endpoints().await {
                        tracing::warn!(error = %e, "refreshing webhook endpoints failed");
                    }
                }
                _ = prune.tick() => self.prune().await,
                () = self.hooks.made() => {
                    let soon = tokio::time::Instant::now() + Duration::from_millis(20);
                    next = next.min(soon);
                    follow_up = Some(soon + Duration::from_millis(250));
                }
                _ = tokio::time::sleep_until(at) => {
                    if follow_up.is_some_and(|f| f <= tokio::time::Instant::now()) {
                        follow_up = None;
                    }
                    backlog = self.round(&mut tasks).await;
                    next = tokio::time::Instant::now() + LOOK_EVERY;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    if backlog {
                        next = tokio::time::Instant::now();
                    }
                }
            }
        }
        let finish = async { while tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, finish).await;
        tasks.shutdown().await;
        let abandoned: Vec<Delivery> = lock(&self.in_flight).drain().map(|(_, d)| d).collect();
        for d in abandoned {
            // Written back as it was read: that ends the claim and changes nothing else.
            if let Err(e) = self.store.put_delivery(&d, d.next_attempt_at).await {
                tracing::warn!(error = %e, "giving back a webhook claim failed; it runs out by itself");
            }
        }
    }

    /// Deletes deliveries past the log's retention, a batch at a time.
    async fn prune(&self) {
        let before = self.clock.now() - fleety_actors::webhook::LOG_RETENTION;
        loop {
            match self.store.prune_deliveries(before, PRUNE_BATCH).await {
                Ok(n) if n == PRUNE_BATCH => tokio::task::yield_now().await,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the webhook delivery log failed");
                    return;
                }
            }
        }
    }

    /// Notes that a delivery comes due at `at`, so the loop wakes for it.
    fn expect(&self, at: DateTime<Utc>) {
        let mut soonest = lock(&self.soonest);
        *soonest = Some(soonest.map_or(at, |s| s.min(at)));
    }

    /// When the soonest delivery known comes due, on tokio's clock.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        let due = (*lock(&self.soonest))?;
        let wait = (due - self.clock.now()).to_std().unwrap_or_default();
        Some(tokio::time::Instant::now() + wait)
    }

    /// Reads what is due now or before the next look, starts an attempt for each delivery due
    /// now that is not already being tried, as far as there are free slots, and notes when the
    /// next one comes due. True when due deliveries were left for want of a slot, or the read
    /// was full of them.
    async fn round(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> bool {
        let now = self.clock.now();
        // What is due by now is this round's to start (a delivery is in the store before its
        // due time is noted); what comes later stays noted.
        lock(&self.soonest).take_if(|at| *at <= now);
        if self.permits.available_permits() == 0 {
            return true;
        }
        let due = match self.store.due_deliveries(now + LOOK_AHEAD, ROUND).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reading due webhook deliveries failed");
                return false;
            }
        };
        let full = due.len() == ROUND;
        for d in due {
            if let Some(at) = d.next_attempt_at.filter(|at| *at > now) {
                // Soonest first: this one and the rest come later.
                self.expect(at);
                return false;
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return true;
            };
            {
                let mut in_flight = lock(&self.in_flight);
                if in_flight.contains_key(&d.id) {
                    continue;
                }
                in_flight.insert(d.id.clone(), d.clone());
            }
            let me = self.clone();
            tasks.spawn(async move {
                let id = d.id.clone();
                me.attempt(d).await;
                lock(&me.in_flight).remove(&id);
                drop(permit);
            });
        }
        full
    }

    async fn attempt(&self, d: Delivery) {
        // Another node's dispatcher may have read it too: only the one that claims it sends.
        let now = self.clock.now();
        match self
            .store
            .claim_delivery(&d, now, now + self.claim_for)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "claiming a webhook delivery failed");
                return;
            }
        }
        let endpoint = self.endpoint(&d).await;
        let outcome = match &endpoint {
            None => Outcome::Dropped("the endpoint was deleted"),
            Some(e) if !e.enabled => Outcome::Dropped("the endpoint is disabled"),
            Some(e) => match self.announced_ticket_exists(&d).await {
                Some(outcome) => outcome,
                None => self.send(e, &d).await,
            },
        };
        metrics::counter!("fleety_webhook_attempts_total", "outcome" => outcome_name(&outcome))
            .increment(1);
        if let Err(e) = self.record(d, endpoint, outcome).await {
            tracing::warn!(error = %e, "recording a webhook attempt failed; it will be sent again");
        }
    }

    /// The delivery's endpoint: from memory, or from the store when this node has not seen it
    /// yet (made through another node since the last refresh).
    async fn endpoint(&self, d: &Delivery) -> Option<Endpoint> {
        if let Some(e) = self.hooks.endpoint(&d.project_id, d.endpoint_id) {
            return Some(e);
        }
        let endpoints = self.store.list_endpoints(&d.project_id).await.ok()?;
        let found = endpoints.iter().find(|e| e.id == d.endpoint_id).cloned();
        self.hooks.set(&d.project_id, endpoints);
        found
    }

    /// For a `ticket.created` or `message.created` delivery: `None` when its ticket is there,
    /// or why it is not sent (yet). A CQL store writes a new ticket's announcements, those of
    /// its history included, before it claims the slug, and a claim that lost or never came
    /// (a crash) leaves announcements of a ticket that is not ours.
    async fn announced_ticket_exists(&self, d: &Delivery) -> Option<Outcome> {
        let slug_field = match d.event {
            EventType::TicketCreated => "slug",
            EventType::MessageCreated => "ticket_slug",
            _ => return None,
        };
        let payload: serde_json::Value = serde_json::from_str(&d.payload).ok()?;
        let data = &payload["data"];
        let slug = data[slug_field].as_str()?;
        // A message's announcement names only the slug; a ticket's has the ticket's id too.
        let id = match d.event {
            EventType::TicketCreated => Some(data["id"].as_str()?),
            _ => None,
        };
        let slug = Slug::parse(slug).ok()?;
        match self.store.get_ticket(&d.project_id, &slug).await {
            Ok(Some(t)) if id.is_none_or(|id| t.id.to_string() == id) => None,
            Ok(Some(_)) => Some(Outcome::Dropped(
                "the ticket it announced was never created",
            )),
            Ok(None) if self.clock.now() - d.created_at < CLAIM_GRACE => {
                Some(Outcome::NotYet(Duration::from_secs(5)))
            }
            Ok(None) => Some(Outcome::Dropped(
                "the ticket it announced was never created",
            )),
            Err(_) => Some(Outcome::NotYet(Duration::from_secs(5))),
        }
    }

    async fn send(&self, e: &Endpoint, d: &Delivery) -> Outcome {
        let failed = |error: &str| Outcome::Failed {
            status: None,
            error: error.to_owned(),
            retry_after: None,
            gone: false,
        };
        // A literal address never reaches the resolver, and the operator may have turned
        // private addresses off since the endpoint was registered.
        if let Err(why) = check_url(&e.url, self.allow_private) {
            return failed(&why);
        }
        let now = self.clock.now();
        let Some(signature) = sign(&e.secret, &d.id, now.timestamp(), &d.payload) else {
            return Outcome::Dropped("the endpoint's secret is unreadable");
        };
        let request = self
            .client
            .post(&e.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", now.timestamp().to_string())
            .header("webhook-signature", signature)
            .body(d.payload.clone());
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                Outcome::Delivered(response.status().as_u16())
            }
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, now));
                Outcome::Failed {
                    status: Some(status.as_u16()),
                    error: format!("HTTP {}", status.as_u16()),
                    retry_after,
                    gone: status == http::StatusCode::GONE,
                }
            }
            Err(err) => failed(&describe(&err)),
        }
    }

    /// Writes what an attempt came to, and what it means for the endpoint.
    async fn record(
        &self,
        d: Delivery,
        endpoint: Option<Endpoint>,
        outcome: Outcome,
    ) -> Result<(), fleety_actors::store::StoreError> {
        let now = self.clock.now();
        let was_due = d.next_attempt_at;
        let mut next = d.clone();
        let mut endpoint_change: Option<Endpoint> = None;
        match outcome {
            Outcome::Delivered(status) => {
                next.attempts += 1;
                next.status = DeliveryStatus::Succeeded;
                next.next_attempt_at = None;
                next.last_status = Some(status);
                next.last_error = None;
                if let Some(e) = endpoint.filter(|e| e.failing_since.is_some()) {
                    endpoint_change = Some(Endpoint {
                        failing_since: None,
                        ..e
                    });
                }
            }
            Outcome::Failed {
                status,
                error,
                retry_after,
                gone,
            } => {
                next.attempts += 1;
                next.last_status = status;
                next.last_error = Some(error);
                let wait = (!gone)
                    .then(|| {
                        self.schedule
                            .next(next.attempts, retry_after, rand::random::<f64>())
                    })
                    .flatten();
                match wait {
                    Some(wait) => {
                        next.status = DeliveryStatus::Pending;
                        next.next_attempt_at = Some(later(now, wait));
                    }
                    None => {
                        next.status = DeliveryStatus::Failed;
                        next.next_attempt_at = None;
                    }
                }
                if let Some(e) = endpoint {
                    let span = self.schedule.shortest_span();
                    endpoint_change = failing(e, &next, gone, now, span);
                }
            }
            Outcome::Dropped(why) => {
                next.status = DeliveryStatus::Failed;
                next.next_attempt_at = None;
                next.last_error = Some(why.to_owned());
            }
            Outcome::NotYet(wait) => next.next_attempt_at = Some(later(now, wait)),
        }
        // The endpoint first: once the log shows the outcome, the endpoint reflects it too.
        if let Some(e) = endpoint_change {
            self.save_endpoint(e).await?;
        }
        // A delivery whose ticket was erased while the attempt was under way is removed
        // instead (see `WebhookStore::put_delivery`).
        self.store.put_delivery(&next, was_due).await?;
        if let Some(at) = next.next_attempt_at {
            self.expect(at);
        }
        Ok(())
    }

    /// Stores a change the dispatcher made to an endpoint, keeping anything an admin changed
    /// meanwhile other than what the dispatcher owns (its failure state).
    async fn save_endpoint(
        &self,
        changed: Endpoint,
    ) -> Result<(), fleety_actors::store::StoreError> {
        let current = self.store.list_endpoints(&changed.project_id).await?;
        let Some(mut e) = current.into_iter().find(|e| e.id == changed.id) else {
            return Ok(());
        };
        e.failing_since = changed.failing_since;
        if !changed.enabled && e.enabled {
            e.enabled = false;
            e.disabled_reason = changed.disabled_reason;
            tracing::warn!(endpoint = %e.id, project = %e.project_id, url = %e.url, "webhook endpoint disabled: it kept failing");
        }
        match self.store.update_endpoint(&e).await {
            // Deleted meanwhile: nothing left to mark.
            Err(fleety_actors::store::StoreError::NotFound) => return Ok(()),
            other => other?,
        }
        let endpoints = self.store.list_endpoints(&e.project_id).await?;
        self.hooks.set(&e.project_id, endpoints);
        Ok(())
    }
}

/// The endpoint after a failed attempt, if that changes it: failing from now on; disabled once a
/// delivery has used up its attempts and nothing sent to the endpoint has succeeded for at
/// least as long as a delivery's attempts take (`span`: it has failed for about a day); or
/// disabled at once on a 410.
fn failing(
    e: Endpoint,
    d: &Delivery,
    gone: bool,
    now: DateTime<Utc>,
    span: Duration,
) -> Option<Endpoint> {
    let since = e.failing_since.unwrap_or(now);
    let failing_for = (now - since).to_std().unwrap_or_default();
    let exhausted = d.status == DeliveryStatus::Failed && failing_for >= span;
    let reason = if gone {
        Some("the receiver answered 410 Gone".to_owned())
    } else if exhausted {
        Some(format!(
            "every delivery failed since {}",
            fleety_actors::events::rfc3339(since)
        ))
    } else {
        None
    };
    if reason.is_none() && e.failing_since.is_some() {
        return None;
    }
    Some(Endpoint {
        failing_since: Some(since),
        enabled: e.enabled && reason.is_none(),
        disabled_reason: reason.or(e.disabled_reason.clone()),
        ..e
    })
}

/// `now + wait`, to the millisecond the stores keep.
fn later(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
    now + chrono::TimeDelta::try_milliseconds(ms).unwrap_or(chrono::TimeDelta::MAX)
}

/// A `Retry-After` value: seconds, or an HTTP date.
fn retry_after(raw: &str, now: DateTime<Utc>) -> Option<Duration> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(raw).ok()?.with_timezone(&Utc);
    (at - now).to_std().ok()
}

/// A failed request in words fit for the project's delivery log: what went wrong, never the
/// server's internals.
fn describe(err: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<Refused>() {
            return Refused.to_string();
        }
        source = e.source();
    }
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Delivered(_) => "delivered",
        Outcome::Failed { .. } => "failed",
        Outcome::Dropped(_) => "dropped",
        Outcome::NotYet(_) => "not_yet",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_known_in_every_form() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_when_registered() {
        assert!(check_url("https://hooks.example.com/fleety?x=1", false).is_ok());
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
            "https://127.0.0.1/hook",
            "http://[::1]:8080/",
            "http://localhost:3000/",
            "http://api.localhost/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.8/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "http://[2002:7f00:1::1]/",
            "http://[::127.0.0.1]/",
            "http://198.18.0.1/",
            "http://240.0.0.1/",
            "http://2130706433/",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:9/hook", true).is_ok());
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(3000)), false).is_err());
    }

    #[test]
    fn the_signature_is_the_one_the_specification_gives() {
        // The example from the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = sign(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("nope", "id", 1, "{}"), None);
        assert!(new_secret().starts_with("whsec_"));
        assert_ne!(new_secret(), new_secret());
    }

    #[tokio::test]
    async fn names_that_resolve_inside_are_refused_at_resolution() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        // `localhost` resolves (from /etc/hosts) to loopback only.
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let err = PublicOnly.resolve(name).await.err().expect("refused");
        assert!(err.is::<Refused>(), "{err}");
        // And a request through the guarded client says so in the delivery log's words.
        let settings = crate::config::Settings::default().webhooks;
        let err = client(&settings)
            .unwrap()
            .get("http://localhost:9/")
            .send()
            .await
            .unwrap_err();
        assert_eq!(describe(&err), Refused.to_string());
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), None);
        assert_eq!(retry_after("soon", now), None);
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            id: uuid::Uuid::new_v4(),
            project_id: fleety_actors::domain::ProjectId::parse("acme").unwrap(),
            url: "https://hooks.example.com/".into(),
            events: vec![EventType::MessageCreated],
            secret: new_secret(),
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            created_at: Utc::now(),
        }
    }

    /// A clock on tokio's time, so that with the time paused, the dispatcher's due times and
    /// its sleeps move together, and only when the test lets them.
    struct TokioClock {
        start: tokio::time::Instant,
        at: DateTime<Utc>,
    }

    impl Clock for TokioClock {
        fn now(&self) -> DateTime<Utc> {
            let elapsed = chrono::TimeDelta::from_std(self.start.elapsed()).unwrap_or_default();
            fleety_actors::clock::truncate_millis(self.at + elapsed)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_is_attempted_the_moment_it_comes_due() {
        use fleety_actors::store::memory::MemoryStore;
        use fleety_actors::store::WebhookStore;
        let store = MemoryStore::new();
        let clock = Arc::new(TokioClock {
            start: tokio::time::Instant::now(),
            at: fleety_actors::clock::now_millis(),
        });
        let mut settings = crate::config::Settings::default().webhooks;
        settings.retry_schedule = "2s,1h".parse().unwrap();
        // A loopback address: refused at every attempt, before any connection is tried.
        let e = Endpoint {
            url: "http://127.0.0.1:9/hook".into(),
            ..endpoint()
        };
        store.create_endpoint(&e, 20).await.unwrap();
        let hooks = Hooks::default();
        hooks.load(vec![e.clone()]);
        let d = Delivery::new(
            &e,
            EventType::MessageCreated,
            &serde_json::json!({}),
            clock.now(),
        );
        store.put_delivery(&d, None).await.unwrap();
        let dispatcher = Dispatcher::new(store.clone(), hooks, clock.clone(), &settings).unwrap();
        let stop = CancellationToken::new();
        let running = tokio::spawn(dispatcher.run(stop.clone()));

        async fn stored(store: &MemoryStore, d: &Delivery) -> Delivery {
            let found = store.get_delivery(&d.project_id, d.endpoint_id, &d.id);
            found.await.unwrap().unwrap()
        }
        // Lets the dispatcher run without moving the time (a yield never advances it) until
        // the delivery has had `n` attempts.
        async fn attempted(store: &MemoryStore, d: &Delivery, n: u32) -> Delivery {
            for _ in 0..10_000 {
                let now = stored(store, d).await;
                if now.attempts >= n {
                    return now;
                }
                tokio::task::yield_now().await;
            }
            panic!("attempt {n} was not made");
        }
        let first = attempted(&store, &d, 1).await;
        assert_eq!(
            first.last_error.as_deref().map(|e| e.starts_with("url:")),
            Some(true)
        );
        let due = first.next_attempt_at.unwrap();
        let wait = (due - clock.now()).to_std().unwrap();
        assert!(
            (1600..=2400).contains(&wait.as_millis()),
            "{wait:?}: 2 s ±20 %"
        );

        // Up to a millisecond before it is due, nothing: the paused time jumps from one timer to
        // the next, so every look the dispatcher takes meanwhile happens.
        tokio::time::sleep(wait - Duration::from_millis(1)).await;
        assert_eq!(
            stored(&store, &d).await.attempts,
            1,
            "tried before it was due"
        );
        // At the due time the attempt is made, with the time standing still.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let second = attempted(&store, &d, 2).await;
        assert_eq!(clock.now(), due);
        assert_eq!(second.status, DeliveryStatus::Pending);
        stop.cancel();
        running.await.unwrap();
    }

    #[test]
    fn an_endpoint_is_disabled_only_when_it_failed_for_a_whole_delivery_or_is_gone() {
        let t0 = Utc::now();
        let span = Duration::from_secs(3600);
        let e = endpoint();
        let data = serde_json::json!({});
        let mut d = Delivery::new(&e, EventType::MessageCreated, &data, t0);
        // A first failure marks the endpoint failing; the next ones change nothing.
        let marked = failing(e.clone(), &d, false, t0, span).unwrap();
        assert_eq!(marked.failing_since, Some(t0));
        assert!(marked.enabled);
        assert!(failing(marked.clone(), &d, false, t0, span).is_none());
        // Out of attempts after failing for the whole span: disabled.
        d.status = DeliveryStatus::Failed;
        let later = t0 + chrono::TimeDelta::seconds(3600);
        let off = failing(marked.clone(), &d, false, later, span).unwrap();
        assert!(!off.enabled);
        assert!(off
            .disabled_reason
            .unwrap()
            .starts_with("every delivery failed"));
        // Out of attempts, but something succeeded within the span: still on.
        let recovered = Endpoint {
            failing_since: Some(t0 + chrono::TimeDelta::minutes(30)),
            ..marked
        };
        assert!(failing(recovered, &d, false, later, span).is_none());
        // 410 Gone: off at once.
        d.status = DeliveryStatus::Pending;
        assert!(!failing(e, &d, true, t0, span).unwrap().enabled);
    }
}
