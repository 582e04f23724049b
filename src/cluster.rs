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
//!
//! Every request that JetStream answers through a stream's leader (the log's appends and
//! reads, the leases) waits [`ATTEMPT`] for its answer and is then sent again, until the
//! caller's patience runs out: see [`until_answered`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, stream};
use async_trait::async_trait;
use bytes::Bytes;
use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::store::{Store, StoreError, TicketStore, TicketWrite};
use fleety_actors::ticket::{
    Answer, Claim, Cluster, Command, LogBatch, LogEntry, LogEvent, Placement, TicketError,
    TicketKey, TicketMsg, Tickets,
};
use fleety_actors::FastMap;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterSettings, NodeId};

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
/// How long one JetStream request waits for its answer before it is sent again.
///
/// JetStream answers a stream's appends and reads through the stream's leader. When the
/// server leading it dies, nothing answers until the others elect a new leader (about five
/// seconds), and a request sent before that gets no answer at all: with the client's own
/// timeouts (10 s for a read, 5 s for an append's acknowledgement) a write waited out the
/// whole timeout after the election. Sent again after a short wait, a request reaches the new
/// leader within about this long of its election. A healthy cluster answers in milliseconds,
/// and sending a request twice is harmless: reads are reads, an append carries a message id
/// that JetStream de-duplicates, and the leases are compare-and-set.
const ATTEMPT: Duration = Duration::from_secs(1);
/// The pause before a request that failed at once (no server took it) is sent again; it
/// doubles up to [`PAUSE_MAX`].
const PAUSE: Duration = Duration::from_millis(20);
const PAUSE_MAX: Duration = Duration::from_millis(200);

/// A command on its way to a ticket's owner.
#[derive(Serialize, Deserialize)]
struct Forwarded {
    /// Unique to the command: the owner carries out a command sent again under the same id
    /// once, and answers every copy.
    #[serde(default)]
    id: Option<String>,
    project: ProjectId,
    slug: Slug,
    command: Command,
    /// Who acts, for the change's audit record (absent from older nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<fleety_actors::audit::AuditBy>,
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
    /// Its requests, and the handles made from it, wait [`ATTEMPT`] for an answer.
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
    /// How long a request that waits on a JetStream leader keeps being sent again: a
    /// caller's whole wait for its ticket (the call timeout).
    patience: Duration,
    /// The answers to commands other nodes forwarded here, by the command's id, for as long
    /// as the sender may send it again: a command sent again is answered, not carried out
    /// twice.
    answered: moka::sync::Cache<String, Arc<tokio::sync::OnceCell<Bytes>>>,
}

/// One lease this node holds.
struct Lease {
    revision: AtomicU64,
    /// Another node has the lease, or the log refused this node's write: the ticket is no
    /// longer this node's.
    lost: AtomicBool,
    /// Not renewed for a whole lifetime (the bucket did not answer, or this node could not
    /// reach it): another node may have taken it. Cleared when it is renewed again.
    lapsed: AtomicBool,
    renewed: Mutex<Instant>,
}

impl NatsCluster {
    /// Connects, and creates the tickets' log and the leases' bucket unless they exist.
    pub async fn connect(
        settings: &ClusterSettings,
        store: Arc<dyn Store>,
        call_timeout: Duration,
    ) -> anyhow::Result<NatsCluster> {
        let node = settings
            .node_id
            .clone()
            .unwrap_or_else(NodeId::drawn)
            .to_string();
        let addrs = settings.nats_url.clone();
        let urls: Vec<&str> = addrs.iter().map(|a| a.as_url_str()).collect();
        let urls = urls.join(",");
        let client = async_nats::ConnectOptions::new()
            .name(format!("fleety {node}"))
            // Reconnects go on for ever: a node without NATS serves nothing, but comes back.
            .max_reconnects(None)
            .connect(addrs)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach NATS at {urls}: {e}"))?;
        // Setting the log and the bucket up may take a while on a cluster that is starting too:
        // those requests keep the client's timeouts. Everything after waits `ATTEMPT` and
        // sends again.
        let setup = jetstream::new(client.clone());
        let mut js = setup.clone();
        js.set_timeout(ATTEMPT);
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
            // Any replica answers a read of a ticket's last entry (the catch-up): the stream's
            // leader answers reads only while the cluster's meta leader is known, and electing
            // that one again can take seconds longer than the stream's own election.
            allow_direct: true,
            ..Default::default()
        };
        // Nodes starting together race to create these; a loser's request can time out while
        // the winner's takes effect, so each step is tried again before giving up.
        let mut attempt = 0;
        let stream = loop {
            let made = match setup.create_or_update_stream(log.clone()).await {
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
        let ttl = settings.lease_ttl;
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
            let made = match setup.create_or_update_key_value(bucket.clone()).await {
                Ok(_) => js.get_key_value(BUCKET).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match made {
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
                patience: call_timeout,
                answered: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(2 * (call_timeout + Duration::from_secs(1)))
                    .build(),
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
        let deadline = inner.deadline();
        let info = until_answered(
            "reading the log's end",
            deadline,
            |_| false,
            || inner.stream.get_info(),
        );
        let start = info.await?.state.last_sequence;
        let reader = until_answered(
            "reading the log",
            deadline,
            |_| false,
            || inner.log_reader(start),
        );
        let log = reader.await?;
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
    /// When a request that waits on a JetStream leader, made now, stops being sent again.
    fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.patience
    }

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

/// Sends a JetStream request (`send` makes each attempt, each waiting [`ATTEMPT`] at most)
/// until it is answered, until it fails in a way that sending it again cannot change
/// (`final_`: a refusal, an absent entry), or until `deadline` has passed; then its last error.
///
/// A request to a stream or bucket whose leader died gets no answer until a new leader is
/// elected; sent again, it is answered as soon as there is one.
async fn until_answered<T, E, F, Fut>(
    what: &'static str,
    deadline: tokio::time::Instant,
    final_: impl Fn(&E) -> bool,
    mut send: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = PAUSE;
    let mut attempts = 1;
    loop {
        let error = match send().await {
            Ok(answer) => {
                if attempts > 1 {
                    tracing::info!(
                        what,
                        attempts,
                        "a JetStream request was answered after being sent again"
                    );
                }
                return Ok(answer);
            }
            Err(e) if final_(&e) => return Err(e),
            Err(e) => e,
        };
        if tokio::time::Instant::now() + pause >= deadline {
            tracing::warn!(what, attempts, error = %error, "a JetStream request went unanswered; giving up");
            return Err(error);
        }
        tracing::debug!(what, attempts, error = %error, "a JetStream request went unanswered; sending it again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(PAUSE_MAX);
        attempts += 1;
    }
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
        // One deadline for the whole placement: the lease, the catch-up and the fence.
        let deadline = inner.deadline();
        for _ in 0..8 {
            // A create sent again after the first one landed finds the lease taken, by this
            // node: it is carried on below.
            let created = until_answered(
                "taking a ticket's lease",
                deadline,
                |e: &kv::CreateError| {
                    matches!(
                        e.kind(),
                        kv::CreateErrorKind::AlreadyExists | kv::CreateErrorKind::InvalidKey
                    )
                },
                || inner.owners.create(&name, me.clone()),
            );
            match created.await {
                Ok(revision) => return inner.claim(key, name, revision, deadline).await,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable("taking the ticket's lease", e)),
            }
            let entry = until_answered(
                "reading a ticket's lease",
                deadline,
                |e: &kv::EntryError| e.kind() == kv::EntryErrorKind::InvalidKey,
                || inner.owners.entry(name.clone()),
            );
            let entry = entry
                .await
                .map_err(|e| unavailable("reading the ticket's lease", e))?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                continue; // given back or expired meanwhile: take it
            };
            let owner = String::from_utf8_lossy(&entry.value).into_owned();
            if owner != inner.node {
                inner.known_owners.insert(name, owner.clone());
                return Ok(Placement::There(owner));
            }
            // This node's own, from an actor that stopped here: carry it on. (One sent again
            // after it landed is refused; the next turn reads the lease again.)
            let updated = until_answered(
                "carrying on a ticket's lease",
                deadline,
                |e: &kv::UpdateError| {
                    matches!(
                        e.kind(),
                        kv::UpdateErrorKind::WrongLastRevision | kv::UpdateErrorKind::InvalidKey
                    )
                },
                || inner.owners.update(&name, me.clone(), entry.revision),
            );
            if let Ok(revision) = updated.await {
                return inner.claim(key, name, revision, deadline).await;
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
        by: Option<fleety_actors::audit::AuditBy>,
    ) -> Result<Answer, TicketError> {
        let inner = &self.0;
        let forwarded = Forwarded {
            id: Some(fleety_actors::domain::random_token(16)),
            project: key.project.clone(),
            slug: key.slug.clone(),
            command,
            by,
        };
        let payload: Bytes = serde_json::to_vec(&forwarded)
            .map_err(|e| TicketError::Internal(format!("encoding a command: {e}")))?
            .into();
        let forwarded = |outcome: &'static str| {
            metrics::counter!("fleety_cluster_forwards_total", "outcome" => outcome).increment(1)
        };
        // A command can be lost on its way, with a NATS server that dies under it, and then its
        // answer never comes. So it is sent again each `ATTEMPT` until answered, under the same
        // id: the owner carries it out once and answers every copy, however long it takes.
        let deadline = tokio::time::Instant::now() + inner.forward_timeout;
        let mut sent_before = false;
        let reply = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(ATTEMPT.min(left)));
            let reply = inner
                .client
                .send_request(format!("fleety.node.{node}"), request)
                .await;
            match reply {
                Ok(reply) => break reply,
                // Nobody took it: certainly not carried out, unless a copy sent before reached
                // the node before it went away.
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    inner.known_owners.invalidate(&bucket_key(key));
                    if sent_before {
                        forwarded("failed");
                        return Err(unavailable(
                            &format!("node {node}"),
                            "gone with the command",
                        ));
                    }
                    forwarded("unreachable");
                    return Err(TicketError::Unreachable(node.to_owned()));
                }
                Err(e)
                    if e.kind() == async_nats::RequestErrorKind::TimedOut
                        && tokio::time::Instant::now() < deadline =>
                {
                    sent_before = true;
                }
                Err(e) => {
                    inner.known_owners.invalidate(&bucket_key(key));
                    forwarded("failed");
                    return Err(unavailable(&format!("node {node}"), e));
                }
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

    async fn missed(&self, key: &TicketKey, after: u64) -> Result<Vec<LogEntry>, TicketError> {
        let inner = &self.0;
        let subject = log_subject(key);
        let deadline = inner.deadline();
        let last = inner.last_entry(&subject, deadline).await;
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
            missed.push(LogEntry {
                seq: entry.sequence,
                events: events.events,
            });
            if prev <= after {
                break;
            }
            let read = until_answered(
                "reading a ticket's log",
                deadline,
                |e: &stream::RawMessageError| {
                    e.kind() == stream::RawMessageErrorKind::NoMessageFound
                },
                || inner.stream.get_raw_message(prev),
            );
            entry = match read.await {
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
        deadline: tokio::time::Instant,
    ) -> Result<Placement, TicketError> {
        let lease = Arc::new(Lease {
            revision: AtomicU64::new(revision),
            lost: AtomicBool::new(false),
            lapsed: AtomicBool::new(false),
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
            let last = self.catch_up(key, &claim.subject, deadline).await?;
            claim.last.store(last, Ordering::Release);
            match claim.append_until(&fence, deadline).await {
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

    /// The last entry of a ticket's log, from the stream's leader: every entry appended so
    /// far is there.
    async fn last_entry(
        &self,
        subject: &str,
        deadline: tokio::time::Instant,
    ) -> Result<jetstream::message::StreamMessage, stream::LastRawMessageError> {
        let last_or_none = |e: &stream::LastRawMessageError| {
            matches!(
                e.kind(),
                stream::LastRawMessageErrorKind::NoMessageFound
                    | stream::LastRawMessageErrorKind::InvalidSubject
            )
        };
        until_answered("reading a ticket's log", deadline, last_or_none, || {
            self.stream.get_last_raw_message_by_subject(subject)
        })
        .await
    }

    /// Writes the ticket's last log entry to the store again (every write in it is idempotent,
    /// and webhook deliveries already stored are left alone); returns its position.
    ///
    /// The last entry is read from any replica of the log, which may lag behind its leader by
    /// an entry: then the fence that follows is refused, and the catch-up runs again.
    async fn catch_up(
        &self,
        key: &TicketKey,
        subject: &str,
        deadline: tokio::time::Instant,
    ) -> Result<u64, TicketError> {
        let final_ = |e: &stream::DirectGetError| {
            matches!(
                e.kind(),
                stream::DirectGetErrorKind::NotFound | stream::DirectGetErrorKind::InvalidSubject
            )
        };
        let read = until_answered("reading a ticket's log", deadline, final_, || {
            self.stream.direct_get_last_for_subject(subject)
        });
        let last = match read.await {
            Ok(entry) => entry,
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => return Ok(0),
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

impl NatsClaim {
    /// Appends a batch right after the last entry this claim knows of, sending it again while
    /// no leader answers, until `deadline`. Sending again is safe: the message id is the same
    /// each time, so an append that landed already is answered as a duplicate, with its
    /// position, and is never written twice.
    async fn append_until(
        &self,
        batch: &LogBatch,
        deadline: tokio::time::Instant,
    ) -> Result<u64, StoreError> {
        use jetstream::context::PublishErrorKind;
        let prev = self.last.load(Ordering::Acquire);
        let payload: Bytes = serde_json::to_vec(batch)
            .map_err(|e| StoreError::Internal(format!("encoding a log entry: {e}")))?
            .into();
        let id = format!("{}.{}.{prev}", self.inner.node, self.nonce);
        let refused = |e: &jetstream::context::PublishError| {
            matches!(
                e.kind(),
                PublishErrorKind::WrongLastSequence
                    | PublishErrorKind::WrongLastMessageId
                    | PublishErrorKind::MaxPayloadExceeded
            )
        };
        let ack = until_answered("appending to a ticket's log", deadline, refused, || async {
            let publish = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .expected_last_subject_sequence(prev)
                .message_id(id.as_str())
                .header(PREV, prev.to_string().as_str());
            let sent = self.inner.js.send_publish(self.subject.clone(), publish);
            sent.await?.await
        })
        .await;
        let outcome = match &ack {
            Ok(_) => "ok",
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => "refused",
            Err(_) => "failed",
        };
        metrics::counter!("fleety_cluster_appends_total", "outcome" => outcome).increment(1);
        match ack {
            Ok(ack) => {
                self.last.store(ack.sequence, Ordering::Release);
                Ok(ack.sequence)
            }
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                tracing::warn!(ticket = %self.key, "another node wrote to the ticket; this node's write is refused");
                self.lease.lost.store(true, Ordering::Release);
                Err(StoreError::Conflict)
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "appending to the log: {e}"
            ))),
        }
    }
}

#[async_trait]
impl Claim for NatsClaim {
    async fn append(&self, batch: &LogBatch) -> Result<u64, StoreError> {
        self.append_until(batch, self.inner.deadline()).await
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    fn lost(&self) -> bool {
        self.lease.lost.load(Ordering::Acquire) || self.lease.lapsed.load(Ordering::Acquire)
    }

    fn taken(&self) -> bool {
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
            let (inner, tickets) = (inner.clone(), tickets.clone());
            tokio::spawn(async move {
                let answer = match serde_json::from_slice::<Forwarded>(&request.payload) {
                    Ok(f) => {
                        // A copy of a command already taken waits for that one's answer.
                        let once = match &f.id {
                            Some(id) => inner.answered.get_with(id.clone(), Arc::default),
                            None => Arc::default(),
                        };
                        let key = TicketKey {
                            project: f.project,
                            slug: f.slug,
                        };
                        let carried_out = once.get_or_init(|| async {
                            let (cmd, by) = (f.command, f.by);
                            let run = |reply| TicketMsg::Run {
                                cmd: cmd.clone(),
                                by: by.clone().map(Box::new),
                                reply,
                            };
                            let answer = tickets.call(&key, run).await;
                            Bytes::from(serde_json::to_vec(&answer).unwrap_or_default())
                        });
                        carried_out.await.clone()
                    }
                    Err(e) => {
                        let answer: Result<Answer, TicketError> =
                            Err(TicketError::Internal(format!("unreadable command: {e}")));
                        Bytes::from(serde_json::to_vec(&answer).unwrap_or_default())
                    }
                };
                if let Err(e) = inner.client.publish(reply_to, answer).await {
                    tracing::debug!(error = %e, "a forwarded command's answer did not go out");
                }
            });
        }
        tracing::error!("the forwarded commands' subscription ended; subscribing again");
        requests = resubscribe(&inner, format!("fleety.node.{}", inner.node)).await;
    }
}

/// Reads every entry of every ticket's log, in order, into this node's subscribers and feeds,
/// and the writes of the entries of projects this node has a search index of into that index
/// (writes made on this node are indexed twice: indexing is idempotent).
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
        let Some(key) = ticket_of(entry.subject.as_str()) else {
            continue;
        };
        if tickets.indexes(&key.project) {
            match serde_json::from_slice::<LogBatch>(&entry.payload) {
                Ok(batch) => tickets.index_logged(&key, &batch.writes),
                Err(e) => {
                    tracing::error!(ticket = %key, seq, error = %e, "an unreadable log entry")
                }
            }
        }
        if !tickets.heard(&key) {
            continue;
        }
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
                if event.kind == "ticket_created" {
                    tickets.opened_elsewhere(&key);
                }
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

/// Renews every lease this node holds, three times per lifetime. A lease another node took is
/// lost, and its ticket's actor stops here. One not renewed for a whole lifetime has lapsed:
/// another node may have taken it, so this node's actor answers reads from the store rather
/// than its memory, but it keeps the ticket (the log decides every write, and nobody could
/// take the lease while the bucket did not answer) and takes the lease again once the bucket
/// answers and the lease is free.
///
/// A renewal that goes unanswered (the bucket's leader died) is sent again until the next
/// round; renewals a round had no time to send wait for the next one, so a round never takes
/// much longer than its period however many leases the node holds.
async fn renew(inner: Arc<Inner>, tickets: Tickets) {
    let period = inner.ttl / 3;
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me = Bytes::from(inner.node.clone());
    loop {
        every.tick().await;
        tickets.watchers().prune();
        let round_ends = tokio::time::Instant::now() + period;
        let held: Vec<(String, Arc<Lease>)> = inner
            .leases
            .iter()
            .map(|l| (l.key().clone(), l.value().clone()))
            .collect();
        let renewals = held.into_iter().map(|(name, lease)| {
            let (owners, me, ttl) = (inner.owners.clone(), me.clone(), inner.ttl);
            async move {
                // A lost lease stays lost: its actor is stopping, and the next claim is new.
                if lease.lost.load(Ordering::Acquire) {
                    return;
                }
                if tokio::time::Instant::now() < round_ends {
                    renew_one(&owners, &name, &lease, me, round_ends).await;
                }
                let renewed = *lease.renewed.lock().unwrap_or_else(|e| e.into_inner());
                if renewed.elapsed() >= ttl {
                    lease.lapsed.store(true, Ordering::Release);
                }
            }
        });
        futures_util::stream::iter(renewals)
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
    }
}

async fn renew_one(
    owners: &kv::Store,
    name: &str,
    lease: &Lease,
    me: Bytes,
    until: tokio::time::Instant,
) {
    let revision = lease.revision.load(Ordering::Acquire);
    let refused = |e: &kv::UpdateError| {
        matches!(
            e.kind(),
            kv::UpdateErrorKind::WrongLastRevision | kv::UpdateErrorKind::InvalidKey
        )
    };
    let renewed = until_answered("renewing a ticket's lease", until, refused, || {
        owners.update(name, me.clone(), revision)
    });
    let next = match renewed.await {
        Ok(next) => Some(next),
        // The lease changed since this node last wrote it: by this node's own renewal, sent
        // again after it landed; or it expired (the bucket had no leader for a whole
        // lifetime) and is free; or another node has it.
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            match owners.entry(name).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                    if entry.value == me {
                        Some(entry.revision)
                    } else {
                        tracing::info!(lease = %name, "a ticket's lease was taken by another node");
                        lease.lost.store(true, Ordering::Release);
                        None
                    }
                }
                // Free: this node's actor still serves the ticket, so it takes the lease again.
                Ok(_) => match owners.create(name, me.clone()).await {
                    Ok(next) => Some(next),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                        tracing::info!(lease = %name, "a ticket's lease was taken by another node");
                        lease.lost.store(true, Ordering::Release);
                        None
                    }
                    Err(e) => {
                        tracing::warn!(lease = %name, error = %e, "taking a ticket's lease again");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(lease = %name, error = %e, "reading a ticket's lease");
                    None
                }
            }
        }
        Err(e) => {
            tracing::warn!(lease = %name, error = %e, "renewing a ticket's lease");
            None
        }
    };
    if let Some(next) = next {
        lease.revision.store(next, Ordering::Release);
        *lease.renewed.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        lease.lapsed.store(false, Ordering::Release);
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

    /// A request that fails `failures` times, then is answered; counts its attempts.
    async fn flaky(
        attempts: &std::sync::atomic::AtomicUsize,
        failures: usize,
    ) -> Result<&'static str, &'static str> {
        let n = attempts.fetch_add(1, Ordering::SeqCst);
        match n < failures {
            true => Err("timed out"),
            false => Ok("answered"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_nobody_answers_is_sent_again_until_a_leader_answers() {
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let answer = until_answered("a test", deadline, |_| false, || flaky(&attempts, 3));
        assert_eq!(answer.await, Ok("answered"));
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_sent_again() {
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let refused = |e: &&str| *e == "timed out";
        let answer = until_answered("a test", deadline, refused, || flaky(&attempts, 3));
        assert_eq!(answer.await, Err("timed out"));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn sending_again_stops_at_the_deadline_with_the_last_error() {
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs(2);
        // Each attempt waits out its whole timeout, as one sent to a dead leader does.
        let unanswered = || async {
            attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(ATTEMPT).await;
            Err::<(), _>("timed out")
        };
        let answer = until_answered("a test", deadline, |_| false, unanswered);
        assert_eq!(answer.await, Err("timed out"));
        let attempts = attempts.load(Ordering::SeqCst);
        assert!(
            attempts >= 2,
            "sent again while there was time ({attempts} attempts)"
        );
        assert!(
            tokio::time::Instant::now() < deadline + ATTEMPT,
            "no attempt starts after the deadline"
        );
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
