//! Several nodes serving the same tickets, on NATS JetStream: the adapter behind the tickets'
//! [`Cluster`] port. It owns the connection, the tickets' log (one JetStream stream, a subject
//! per ticket), the ownership leases (a key-value bucket), the forwarding of commands to a
//! ticket's owner, and the reading of the log into this node's subscribers and feeds.
//!
//! Subjects:
//! - `fleety.log.<project>.<slug>`: the ticket's log, in the `FLEETY_TICKETS` stream. Each
//!   entry is a batch of the ticket's writes with the events it tells, appended on condition
//!   that the subject's last entry is the one the owner knows (`Nats-Expected-Last-Subject-
//!   Sequence`) and de-duplicated by an id unique to the owner and position (`Nats-Msg-Id`).
//! - `fleety.node.<node>`: commands forwarded to a node (request and reply).
//! - `fleety.live.<project>.<slug>`: events that are never stored (typing, a ticket opened).
//!
//! The leases live in the `fleety_owners` bucket under `<project>.<slug>`, valued with the
//! owner's node name. The bucket's maximum age is the lease's lifetime: an owner renews its
//! leases (compare-and-set on the revision) three times per lifetime, and a node that stops
//! renewing loses its tickets once that time has passed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, stream};
use async_trait::async_trait;
use bytes::Bytes;
use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::store::{Store, StoreError, TicketStore, TicketWrite};
use fleety_actors::ticket::{
    Answer, Claim, Cluster, Command, LogBatch, LogEvent, Logged, Placement, TicketError, TicketKey,
    Tickets,
};
use fleety_actors::FastMap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::ClusterSettings;

const STREAM: &str = "FLEETY_TICKETS";
const BUCKET: &str = "fleety_owners";
/// The header naming the entry before this one on the same ticket (0 for the first), so a
/// reader can walk a ticket's log backwards without scanning the stream.
const PREV: &str = "Fleety-Prev";
/// Log entries one new subscriber may be missing at most; further behind, it reloads.
const MAX_MISSED: usize = 64;
/// How long the tickets' log keeps an entry. The store is the record; the log only needs to
/// outlive an owner's crash between appending and storing, and a subscriber's reconnect.
const LOG_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the log reader's progress is checked against the stream's end.
const LOG_CHECK: Duration = Duration::from_secs(2);
/// Entries the log keeps per ticket at most.
const LOG_PER_TICKET: i64 = 256;

/// A command on its way to a ticket's owner.
#[derive(Serialize, Deserialize)]
struct Forwarded {
    project: ProjectId,
    slug: Slug,
    command: Command,
}

/// What the log's reader needs of an entry: the writes are skipped unread.
#[derive(Deserialize)]
struct EntryEvents {
    events: Vec<LogEvent>,
}

/// The JetStream side of several nodes.
pub struct NatsCluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    owners: kv::Store,
    store: Arc<dyn Store>,
    /// This node's leases, by bucket key, for the renewal task.
    leases: FastMap<String, Arc<Lease>>,
    /// Who owns tickets that other nodes own, as last read from the bucket: requests for them
    /// go straight to the owner instead of reading the bucket each time. Forgotten after half
    /// a lease's lifetime, or as soon as forwarding there fails.
    known_owners: moka::sync::Cache<String, String>,
    ttl: Duration,
    /// How long a forwarded command may take: the owner's own timeout, and a margin.
    forward_timeout: Duration,
}

/// One lease this node holds.
struct Lease {
    revision: AtomicU64,
    lost: AtomicBool,
    renewed: Mutex<Instant>,
}

impl NatsCluster {
    /// Connects, and creates the tickets' log and the leases' bucket unless they exist.
    pub async fn connect(
        settings: &ClusterSettings,
        store: Arc<dyn Store>,
        call_timeout: Duration,
    ) -> anyhow::Result<NatsCluster> {
        let node = match settings.node_id.as_str() {
            "" => format!("node-{}", fleety_actors::domain::random_token(8)),
            name => name.to_owned(),
        };
        let addrs = settings
            .nats_url
            .split(',')
            .map(|url| url.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow::anyhow!(
                    "configuration error in cluster_nats_url (FLEETY_CLUSTER_NATS_URL): {e}"
                )
            })?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("fleety {node}"))
            // Reconnects go on for ever: a node without NATS serves nothing, but comes back.
            .max_reconnects(None)
            .connect(addrs)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach NATS at {}: {e}", settings.nats_url))?;
        let js = jetstream::new(client.clone());
        let replicas = settings.replicas;
        let hint = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "cannot set up JetStream with {replicas} replica(s): {e} (a single NATS server needs FLEETY_CLUSTER_REPLICAS=1)"
            )
        };
        let log = stream::Config {
            name: STREAM.into(),
            subjects: vec!["fleety.log.>".into()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            max_age: LOG_MAX_AGE,
            max_messages_per_subject: LOG_PER_TICKET,
            discard: stream::DiscardPolicy::Old,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        // Nodes starting together race to create these; a loser's request can time out while
        // the winner's takes effect, so each step is tried again before giving up.
        let mut attempt = 0;
        let stream = loop {
            let made = match js.create_or_update_stream(log.clone()).await {
                Ok(_) => js.get_stream(STREAM).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match made {
                Ok(stream) => break stream,
                Err(e) if attempt < 4 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "setting up the tickets' log; trying again");
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
                Err(e) => return Err(hint(&e)),
            }
        };
        let ttl = Duration::from_secs(settings.lease_ttl_secs);
        let bucket = kv::Config {
            bucket: BUCKET.into(),
            history: 1,
            max_age: ttl,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let mut attempt = 0;
        let owners = loop {
            match js.create_or_update_key_value(bucket.clone()).await {
                Ok(owners) => break owners,
                Err(e) if attempt < 4 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "setting up the leases' bucket; trying again");
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
                Err(e) => return Err(hint(&e)),
            }
        };
        tracing::info!(%node, replicas, lease_ttl_secs = ttl.as_secs(), "joined the cluster");
        Ok(NatsCluster {
            inner: Arc::new(Inner {
                node,
                client,
                js,
                stream,
                owners,
                store,
                leases: FastMap::default(),
                known_owners: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(ttl / 2)
                    .build(),
                ttl,
                forward_timeout: call_timeout + Duration::from_secs(1),
            }),
        })
    }

    /// The port the tickets use.
    pub fn port(&self) -> Arc<dyn Cluster> {
        Arc::new(Port(self.inner.clone()))
    }

    /// Serves this node's part until `shutdown`: commands forwarded to it, the log read into
    /// its subscribers and feeds, unstored events, and the renewal of its leases.
    pub async fn serve(
        &self,
        tickets: Tickets,
        shutdown: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let inner = self.inner.clone();
        // Subscribed before serving starts, so a node never answers HTTP without hearing the
        // log; later losses are picked up again by the loops themselves.
        let requests = inner
            .client
            .subscribe(format!("fleety.node.{}", inner.node))
            .await?;
        let live = inner.client.subscribe("fleety.live.>").await?;
        // Read from the log's end as it is now; the reader keeps its place from there.
        let start = inner.stream.get_info().await?.state.last_sequence;
        let log = inner.log_reader(start).await?;
        let handle = tokio::spawn(async move {
            tokio::select! {
                _ = serve_requests(inner.clone(), tickets.clone(), requests) => {}
                _ = read_log(inner.clone(), tickets.clone(), log, start) => {}
                _ = read_live(inner.clone(), tickets.clone(), live) => {}
                _ = renew(inner.clone(), tickets.clone()) => {}
                _ = shutdown.cancelled() => {}
            }
        });
        Ok(handle)
    }

    /// Gives back every lease this node still holds, so other nodes need not wait them out.
    pub async fn release_all(&self) {
        let keys: Vec<(String, u64)> = self
            .inner
            .leases
            .iter()
            .map(|l| (l.key().clone(), l.revision.load(Ordering::Acquire)))
            .collect();
        for (key, revision) in keys {
            let _ = self
                .inner
                .owners
                .delete_expect_revision(&key, Some(revision))
                .await;
        }
        let _ = self.inner.client.flush().await;
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }
}

impl Inner {
    /// An ordered reader of every ticket's log, from the entry after `after`.
    async fn log_reader(&self, after: u64) -> anyhow::Result<consumer::pull::Ordered> {
        let deliver_policy = consumer::DeliverPolicy::ByStartSequence {
            start_sequence: after + 1,
        };
        let ordered = consumer::pull::OrderedConfig {
            filter_subject: "fleety.log.>".into(),
            deliver_policy,
            ..Default::default()
        };
        Ok(self
            .stream
            .create_consumer(ordered)
            .await?
            .messages()
            .await?)
    }
}

fn bucket_key(key: &TicketKey) -> String {
    format!("{}.{}", key.project, key.slug)
}

fn log_subject(key: &TicketKey) -> String {
    format!("fleety.log.{}.{}", key.project, key.slug)
}

/// The ticket a `fleety.<kind>.<project>.<slug>` subject names.
fn ticket_of(subject: &str) -> Option<TicketKey> {
    let mut parts = subject.splitn(4, '.');
    let (_, _, project, slug) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(TicketKey {
        project: ProjectId::parse(project).ok()?,
        slug: Slug::parse(slug).ok()?,
    })
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> TicketError {
    TicketError::Unavailable(format!("{what}: {e}"))
}

struct Port(Arc<Inner>);

#[async_trait]
impl Cluster for Port {
    fn node(&self) -> &str {
        &self.0.node
    }

    async fn place(&self, key: &TicketKey) -> Result<Placement, TicketError> {
        let inner = &self.0;
        let name = bucket_key(key);
        if let Some(owner) = inner.known_owners.get(&name) {
            return Ok(Placement::There(owner));
        }
        let me = Bytes::from(inner.node.clone());
        for _ in 0..8 {
            match inner.owners.create(&name, me.clone()).await {
                Ok(revision) => return inner.claim(key, name, revision).await,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable("taking the ticket's lease", e)),
            }
            let entry = inner.owners.entry(name.clone()).await;
            let entry = entry.map_err(|e| unavailable("reading the ticket's lease", e))?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                continue; // given back or expired meanwhile: take it
            };
            let owner = String::from_utf8_lossy(&entry.value).into_owned();
            if owner != inner.node {
                inner.known_owners.insert(name, owner.clone());
                return Ok(Placement::There(owner));
            }
            // This node's own, from an actor that stopped here: carry it on.
            if let Ok(revision) = inner.owners.update(&name, me.clone(), entry.revision).await {
                return inner.claim(key, name, revision).await;
            }
        }
        Err(TicketError::Unavailable(
            "the ticket's lease kept changing hands".into(),
        ))
    }

    async fn forward(
        &self,
        node: &str,
        key: &TicketKey,
        command: Command,
    ) -> Result<Answer, TicketError> {
        let inner = &self.0;
        let forwarded = Forwarded {
            project: key.project.clone(),
            slug: key.slug.clone(),
            command,
        };
        let payload = serde_json::to_vec(&forwarded)
            .map_err(|e| TicketError::Internal(format!("encoding a command: {e}")))?;
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(inner.forward_timeout));
        let reply = inner
            .client
            .send_request(format!("fleety.node.{node}"), request)
            .await;
        let forwarded = |outcome: &'static str| {
            metrics::counter!("fleety_cluster_forwards_total", "outcome" => outcome).increment(1)
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                inner.known_owners.invalidate(&bucket_key(key));
                forwarded("unreachable");
                return Err(TicketError::Unreachable(node.to_owned()));
            }
            Err(e) => {
                inner.known_owners.invalidate(&bucket_key(key));
                forwarded("failed");
                return Err(unavailable(&format!("node {node}"), e));
            }
        };
        forwarded("answered");
        let answer = serde_json::from_slice::<Result<Answer, TicketError>>(&reply.payload)
            .map_err(|e| TicketError::Internal(format!("node {node} answered garbage: {e}")))?;
        if let Err(TicketError::Elsewhere(_) | TicketError::Moved) = &answer {
            // The ticket left that node: read the bucket again next time.
            inner.known_owners.invalidate(&bucket_key(key));
        }
        answer
    }

    async fn missed(&self, key: &TicketKey, after: u64) -> Result<Vec<Logged>, TicketError> {
        let inner = &self.0;
        let subject = log_subject(key);
        let last = inner.stream.get_last_raw_message_by_subject(&subject).await;
        let mut entry = match last {
            Ok(entry) => entry,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(unavailable("reading the ticket's log", e)),
        };
        let mut missed = Vec::new();
        while entry.sequence > after {
            if missed.len() == MAX_MISSED {
                return Err(TicketError::TooFarBehind);
            }
            let events: EntryEvents = serde_json::from_slice(&entry.payload)
                .map_err(|e| TicketError::Internal(format!("a log entry is unreadable: {e}")))?;
            let prev = prev_of(&entry.headers);
            missed.push(Logged {
                seq: entry.sequence,
                events: events.events,
            });
            if prev <= after {
                break;
            }
            entry = match inner.stream.get_raw_message(prev).await {
                Ok(entry) if entry.subject.as_str() == subject => entry,
                Ok(_) => {
                    return Err(TicketError::Internal(format!(
                        "entry {prev} of the log is not {subject}'s"
                    )))
                }
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                    return Err(TicketError::TooFarBehind)
                }
                Err(e) => return Err(unavailable("reading the ticket's log", e)),
            };
        }
        missed.reverse();
        Ok(missed)
    }

    fn broadcast(&self, key: &TicketKey, event: LogEvent) {
        let Ok(payload) = serde_json::to_vec(&event) else {
            return;
        };
        let client = self.0.client.clone();
        // Never stored and never waited for: while NATS is away, such events are dropped
        // rather than queued.
        if client.connection_state() != async_nats::connection::State::Connected {
            return;
        }
        let subject = format!("fleety.live.{}.{}", key.project, key.slug);
        tokio::spawn(async move {
            if let Err(e) = client.publish(subject, payload.into()).await {
                tracing::debug!(error = %e, "an unstored event did not go out");
            }
        });
    }
}

fn prev_of(headers: &async_nats::HeaderMap) -> u64 {
    headers
        .get(PREV)
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0)
}

impl Inner {
    /// Makes a fresh lease this node's claim: the store catches up with the ticket's log
    /// first, since the previous owner may have appended a batch and stopped before storing it.
    async fn claim(
        self: &Arc<Self>,
        key: &TicketKey,
        name: String,
        revision: u64,
    ) -> Result<Placement, TicketError> {
        let lease = Arc::new(Lease {
            revision: AtomicU64::new(revision),
            lost: AtomicBool::new(false),
            renewed: Mutex::new(Instant::now()),
        });
        self.leases.insert(name.clone(), lease.clone());
        let claim = NatsClaim {
            inner: self.clone(),
            key: key.clone(),
            name,
            lease,
            subject: log_subject(key),
            last: AtomicU64::new(0),
            nonce: fleety_actors::domain::random_token(8),
        };
        // From here on, dropping the claim gives the lease back.
        //
        // The store first catches up with the log; then an empty entry fences the ticket: a
        // former owner that has not noticed losing it appends at a position that is taken
        // now, and is refused, even if this node has nothing to write yet.
        let fence = LogBatch {
            writes: Vec::new(),
            events: Vec::new(),
        };
        for _ in 0..5 {
            let last = self.catch_up(key, &claim.subject).await?;
            claim.last.store(last, Ordering::Release);
            match claim.append(&fence).await {
                Ok(_) => return Ok(Placement::Here(Arc::new(claim))),
                // The former owner appended in between: catch up with that too.
                Err(StoreError::Conflict) => claim.lease.lost.store(false, Ordering::Release),
                Err(e) => return Err(e.into()),
            }
        }
        Err(TicketError::Unavailable(
            "the ticket's former owner kept writing".into(),
        ))
    }

    /// Writes the ticket's last log entry to the store again (every write in it is idempotent,
    /// and webhook deliveries already stored are left alone); returns its position.
    async fn catch_up(&self, key: &TicketKey, subject: &str) -> Result<u64, TicketError> {
        let last = match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(entry) => entry,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => return Ok(0),
            Err(e) => return Err(unavailable("reading the ticket's log", e)),
        };
        let batch: LogBatch = match serde_json::from_slice(&last.payload) {
            Ok(batch) => batch,
            Err(e) => {
                // Nothing in it can be applied; refusing the ticket for ever would not help.
                tracing::error!(ticket = %key, seq = last.sequence, error = %e, "the ticket's last log entry is unreadable; not applied");
                return Ok(last.sequence);
            }
        };
        if batch.writes.is_empty() {
            return Ok(last.sequence);
        }
        let mut writes = Vec::with_capacity(batch.writes.len());
        for write in batch.writes {
            if let TicketWrite::Delivery(d) = &write {
                let stored = self.store.get_delivery(&d.project_id, d.endpoint_id, &d.id);
                if stored.await?.is_some() {
                    continue;
                }
            }
            writes.push(write);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let store: Arc<dyn TicketStore> = self.store.clone();
        let done = Box::new(move |result| drop(tx.send(result)));
        store.submit(key.project.clone(), key.slug.clone(), writes, done);
        match rx.await {
            Ok(Ok(())) => Ok(last.sequence),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(TicketError::Unavailable("the store lost a write".into())),
        }
    }
}

/// This node's hold on one ticket.
struct NatsClaim {
    inner: Arc<Inner>,
    key: TicketKey,
    name: String,
    lease: Arc<Lease>,
    subject: String,
    last: AtomicU64,
    /// Makes this claim's message ids its own: a retried append de-duplicates, while another
    /// owner's append at the same position never passes for it.
    nonce: String,
}

#[async_trait]
impl Claim for NatsClaim {
    async fn append(&self, batch: &LogBatch) -> Result<u64, StoreError> {
        let prev = self.last.load(Ordering::Acquire);
        let payload = serde_json::to_vec(batch)
            .map_err(|e| StoreError::Internal(format!("encoding a log entry: {e}")))?;
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .expected_last_subject_sequence(prev)
            .message_id(format!("{}.{}.{prev}", self.inner.node, self.nonce))
            .header(PREV, prev.to_string().as_str());
        let sent = self
            .inner
            .js
            .send_publish(self.subject.clone(), publish)
            .await;
        let ack = match sent {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        let outcome = match &ack {
            Ok(_) => "ok",
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                "refused"
            }
            Err(_) => "failed",
        };
        metrics::counter!("fleety_cluster_appends_total", "outcome" => outcome).increment(1);
        match ack {
            Ok(ack) => {
                self.last.store(ack.sequence, Ordering::Release);
                Ok(ack.sequence)
            }
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                tracing::warn!(ticket = %self.key, "another node wrote to the ticket; this node's write is refused");
                self.lease.lost.store(true, Ordering::Release);
                Err(StoreError::Conflict)
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "appending to the log: {e}"
            ))),
        }
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    fn lost(&self) -> bool {
        self.lease.lost.load(Ordering::Acquire)
    }
}

impl Drop for NatsClaim {
    fn drop(&mut self) {
        let mine = self
            .inner
            .leases
            .remove_if(&self.name, |_, l| Arc::ptr_eq(l, &self.lease))
            .is_some();
        if !mine || self.lease.lost.load(Ordering::Acquire) {
            return;
        }
        let (owners, name) = (self.inner.owners.clone(), self.name.clone());
        let revision = self.lease.revision.load(Ordering::Acquire);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = owners.delete_expect_revision(&name, Some(revision)).await;
            });
        }
    }
}

async fn serve_requests(inner: Arc<Inner>, tickets: Tickets, mut requests: async_nats::Subscriber) {
    loop {
        while let Some(request) = requests.next().await {
            let Some(reply_to) = request.reply.clone() else {
                continue;
            };
            let (client, tickets) = (inner.client.clone(), tickets.clone());
            tokio::spawn(async move {
                let answer = match serde_json::from_slice::<Forwarded>(&request.payload) {
                    Ok(f) => {
                        let key = TicketKey {
                            project: f.project,
                            slug: f.slug,
                        };
                        tickets.here(&key, f.command).await
                    }
                    Err(e) => Err(TicketError::Internal(format!("unreadable command: {e}"))),
                };
                let payload = serde_json::to_vec(&answer).unwrap_or_default();
                if let Err(e) = client.publish(reply_to, payload.into()).await {
                    tracing::debug!(error = %e, "a forwarded command's answer did not go out");
                }
            });
        }
        tracing::error!("the forwarded commands' subscription ended; subscribing again");
        requests = resubscribe(&inner, format!("fleety.node.{}", inner.node)).await;
    }
}

/// Reads every entry of every ticket's log, in order, into this node's subscribers and feeds.
/// The ordered consumer starts again after the last entry it handed over whenever it misses
/// one, so nothing is skipped while the stream keeps it.
///
/// The reader is watched: when the stream has entries past the last one delivered and none
/// arrives for two checks in a row (its consumer lived on a NATS server that died, or the
/// connection moved to another server), a new reader starts right after the last entry
/// delivered, so nothing is skipped and nothing waits for the client's own heartbeat checks.
async fn read_log(
    inner: Arc<Inner>,
    tickets: Tickets,
    mut log: consumer::pull::Ordered,
    mut position: u64,
) {
    let mut check = tokio::time::interval(LOG_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled_at = None;
    loop {
        let entry = tokio::select! {
            entry = log.next() => entry,
            _ = check.tick() => {
                let behind = match inner.stream.get_info().await {
                    Ok(info) => info.state.last_sequence > position,
                    Err(_) => false,
                };
                let stuck = behind && stalled_at == Some(position);
                stalled_at = behind.then_some(position);
                if !stuck {
                    continue;
                }
                tracing::warn!(position, "the tickets' log reader fell silent; starting it again");
                log = restart_log(&inner, position).await;
                stalled_at = None;
                continue;
            }
        };
        let Some(entry) = entry else {
            tracing::error!(
                position,
                "the tickets' log reader stopped; starting it again"
            );
            log = restart_log(&inner, position).await;
            continue;
        };
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(error = %e, "reading the tickets' log");
                continue;
            }
        };
        let Ok(info) = entry.info() else { continue };
        let seq = info.stream_sequence;
        position = position.max(seq);
        let Some(key) = ticket_of(entry.subject.as_str()).filter(|k| tickets.heard(k)) else {
            continue;
        };
        match serde_json::from_slice::<EntryEvents>(&entry.payload) {
            Ok(read) => tickets.deliver(&key, Some(seq), &read.events),
            Err(e) => tracing::error!(ticket = %key, seq, error = %e, "an unreadable log entry"),
        }
    }
}

/// A new log reader right after `position`, once one can be made.
async fn restart_log(inner: &Inner, position: u64) -> consumer::pull::Ordered {
    loop {
        match inner.log_reader(position).await {
            Ok(log) => return log,
            Err(e) => tracing::warn!(error = %e, "restarting the tickets' log reader"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn read_live(inner: Arc<Inner>, tickets: Tickets, mut live: async_nats::Subscriber) {
    loop {
        while let Some(message) = live.next().await {
            let Some(key) = ticket_of(message.subject.as_str()) else {
                continue;
            };
            if let Ok(event) = serde_json::from_slice::<LogEvent>(&message.payload) {
                tickets.deliver(&key, None, std::slice::from_ref(&event));
            }
        }
        tracing::error!("the unstored events' subscription ended; subscribing again");
        live = resubscribe(&inner, "fleety.live.>".into()).await;
    }
}

/// Subscribes again, until it works.
async fn resubscribe(inner: &Inner, subject: String) -> async_nats::Subscriber {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match inner.client.subscribe(subject.clone()).await {
            Ok(subscription) => return subscription,
            Err(e) => tracing::warn!(%subject, error = %e, "subscribing again"),
        }
    }
}

/// Renews every lease this node holds, three times per lifetime; a lease another node took,
/// or one not renewed for a whole lifetime, is lost, and its ticket's actor stops here.
async fn renew(inner: Arc<Inner>, tickets: Tickets) {
    let mut every = tokio::time::interval(inner.ttl / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me = Bytes::from(inner.node.clone());
    loop {
        every.tick().await;
        tickets.watchers().prune();
        let held: Vec<(String, Arc<Lease>)> = inner
            .leases
            .iter()
            .map(|l| (l.key().clone(), l.value().clone()))
            .collect();
        let renewals = held.into_iter().map(|(name, lease)| {
            let (owners, me, ttl) = (inner.owners.clone(), me.clone(), inner.ttl);
            async move {
                let revision = lease.revision.load(Ordering::Acquire);
                match owners.update(&name, me, revision).await {
                    Ok(next) => {
                        lease.revision.store(next, Ordering::Release);
                        *lease.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    }
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        tracing::info!(lease = %name, "a ticket's lease was taken by another node");
                        lease.lost.store(true, Ordering::Release);
                    }
                    Err(e) => {
                        tracing::warn!(lease = %name, error = %e, "renewing a ticket's lease")
                    }
                }
                let renewed = *lease.renewed.lock().unwrap_or_else(|e| e.into_inner());
                if renewed.elapsed() >= ttl {
                    lease.lost.store(true, Ordering::Release);
                }
            }
        });
        futures_util::stream::iter(renewals)
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_ticket_and_nothing_else_passes_for_one() {
        let key = TicketKey {
            project: ProjectId::parse("acme_1").unwrap(),
            slug: Slug::parse("brave-otter-123").unwrap(),
        };
        assert_eq!(ticket_of(&log_subject(&key)), Some(key.clone()));
        assert_eq!(
            ticket_of("fleety.live.acme_1.brave-otter-123"),
            Some(key.clone())
        );
        assert_eq!(bucket_key(&key), "acme_1.brave-otter-123");
        for bad in [
            "fleety.log.acme_1",
            "fleety.log.acme_1.not a slug",
            "fleety.log.acme!.brave-otter-123",
            "fleety.log.acme_1.brave-otter-123.extra",
        ] {
            assert_eq!(ticket_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_entry_without_a_previous_one_points_at_the_start() {
        let mut headers = async_nats::HeaderMap::new();
        assert_eq!(prev_of(&headers), 0);
        headers.insert(PREV, "41");
        assert_eq!(prev_of(&headers), 41);
        headers.insert(PREV, "garbage");
        assert_eq!(prev_of(&headers), 0);
    }
}
