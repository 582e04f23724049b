//! Configuration: built-in defaults, then `fleety.toml` (or the file named by `FLEETY_CONFIG`),
//! then `FLEETY_*` environment variables.
//!
//! [`Settings`] is grouped by concern (server, WebSockets, store, ScyllaDB, auth, limits, the
//! language model, chat, tickets, the demo project), and each part of the server is handed its
//! group. Operators write every setting under one flat name, `scylla_nodes` in the file and
//! `FLEETY_SCYLLA_NODES` in the environment; [`NAMES`] says where each one goes. A group can
//! also be written as a table (`[scylla]` with `nodes = ...`, or `FLEETY_SCYLLA__NODES`).
//!
//! Each setting is read straight into the type the server uses ([`values`] says how), so a bad
//! value stops the server at start-up with one line naming the setting and the reason, and no
//! module parses a setting again. [`Settings::validate`] checks only the rules between settings.

pub mod values;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use fleety_actors::domain::ProjectId;
use fleety_actors::webhook::RetrySchedule;
use serde::{Deserialize, Serialize};

pub use crate::store::scylla::ScyllaConfig;
pub use values::{
    HttpUrl, LogFilter, MailDomain, MailFrom, NodeId, Secret, Secrets, SmtpTls, SmtpUrl,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Embedded,
    Scylla,
}

/// Which language model answers chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmProviderKind {
    /// `openai` when `llm_base_url` is set, otherwise `offline`.
    Auto,
    Openai,
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Every setting's flat name, and its place in [`Settings`].
pub const NAMES: &[(&str, &str)] = &[
    ("listen", "server.listen"),
    ("max_connections", "server.max_connections"),
    ("listen_backlog", "server.listen_backlog"),
    (
        "header_read_timeout_secs",
        "server.header_read_timeout_secs",
    ),
    ("max_body_bytes", "server.max_body_bytes"),
    ("shutdown_grace_secs", "server.shutdown_grace_secs"),
    ("metrics_listen", "server.metrics_listen"),
    ("log", "server.log"),
    ("log_format", "server.log_format"),
    ("ws_max_message_bytes", "ws.max_message_bytes"),
    ("ws_ping_interval_secs", "ws.ping_interval_secs"),
    ("ws_subscriber_queue", "ws.subscriber_queue"),
    ("ws_write_timeout_ms", "ws.write_timeout_ms"),
    ("ws_send_buffer_bytes", "ws.send_buffer_bytes"),
    ("storage", "store.backend"),
    ("data_dir", "store.data_dir"),
    ("store_checkpoint_ms", "store.checkpoint_ms"),
    ("store_apply_gather_ms", "store.apply_gather_ms"),
    ("audit_retention_days", "store.audit_retention_days"),
    ("scylla_nodes", "scylla.nodes"),
    ("scylla_keyspace", "scylla.keyspace"),
    ("scylla_consistency", "scylla.consistency"),
    ("scylla_username", "scylla.username"),
    ("scylla_password", "scylla.password"),
    ("scylla_replication", "scylla.replication"),
    ("scylla_auto_migrate", "scylla.auto_migrate"),
    ("jwt_secret", "auth.jwt_secret"),
    ("jwt_previous_secrets", "auth.jwt_previous_secrets"),
    ("operator_token", "auth.operator_token"),
    ("session_ttl_secs", "auth.session_ttl_secs"),
    ("member_idle_timeout_secs", "auth.member_idle_timeout_secs"),
    (
        "member_session_max_age_secs",
        "auth.member_session_max_age_secs",
    ),
    ("invitation_ttl_secs", "auth.invitation_ttl_secs"),
    ("password_reset_ttl_secs", "auth.password_reset_ttl_secs"),
    ("secure_cookies", "auth.secure_cookies"),
    ("public_rate_limit", "limits.public_per_minute"),
    ("session_rate_limit", "limits.sessions_per_minute"),
    ("visitor_rate_limit", "limits.visitor_per_minute"),
    ("rate_limit_clients", "limits.clients"),
    ("trusted_proxies", "limits.trusted_proxies"),
    ("llm_provider", "llm.provider"),
    ("llm_base_url", "llm.base_url"),
    ("llm_api_key", "llm.api_key"),
    ("llm_model", "llm.model"),
    ("llm_connect_timeout_secs", "llm.connect_timeout_secs"),
    (
        "llm_first_token_timeout_secs",
        "llm.first_token_timeout_secs",
    ),
    ("llm_idle_timeout_secs", "llm.idle_timeout_secs"),
    ("llm_max_tokens", "llm.max_tokens"),
    (
        "chat_session_requests_per_minute",
        "chat.session_requests_per_minute",
    ),
    ("chat_session_token_budget", "chat.session_token_budget"),
    ("chat_session_tickets", "chat.session_tickets"),
    (
        "chat_project_requests_per_minute",
        "chat.project_requests_per_minute",
    ),
    (
        "chat_project_tokens_per_hour",
        "chat.project_tokens_per_hour",
    ),
    (
        "chat_project_tickets_per_hour",
        "chat.project_tickets_per_hour",
    ),
    ("chat_max_sessions", "chat.max_sessions"),
    ("ticket_idle_secs", "tickets.idle_secs"),
    ("retention_every_secs", "tickets.retention_every_secs"),
    ("webhook_allow_private", "webhooks.allow_private"),
    ("webhook_retry_schedule", "webhooks.retry_schedule"),
    ("webhook_timeout_secs", "webhooks.timeout_secs"),
    ("webhook_concurrency", "webhooks.concurrency"),
    ("smtp_url", "email.smtp_url"),
    ("smtp_from", "email.from"),
    ("public_url", "email.public_url"),
    ("email_retry_schedule", "email.retry_schedule"),
    ("email_timeout_secs", "email.timeout_secs"),
    ("reply_domain", "email.reply_domain"),
    ("inbound_email_secret", "email.inbound_secret"),
    ("visitor_email_after_secs", "email.visitor_after_secs"),
    ("agent_email_after_secs", "email.agent_after_secs"),
    ("cluster_nats_url", "cluster.nats_url"),
    ("cluster_node_id", "cluster.node_id"),
    ("cluster_lease_ttl_secs", "cluster.lease_ttl_secs"),
    ("cluster_replicas", "cluster.replicas"),
    ("demo", "demo.enabled"),
    ("demo_project_id", "demo.project_id"),
];

/// The flat name of the setting at `place` (`scylla.nodes`), or the place itself.
fn flat_name(place: &str) -> &str {
    NAMES
        .iter()
        .find(|(_, p)| *p == place)
        .map_or(place, |(flat, _)| flat)
}

/// The error line for a setting, named as operators write it.
fn invalid(place: &str, why: impl fmt::Display) -> String {
    let flat = flat_name(place);
    format!(
        "configuration error in {flat} (FLEETY_{}): {why}",
        flat.to_ascii_uppercase()
    )
}

/// Every setting, by concern. What each means, its unit and its default are in the README's
/// table, under the flat name [`NAMES`] gives it. A field whose name lacks the unit its setting
/// is written in (`header_read_timeout`, written `header_read_timeout_secs`) is a `Duration`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub ws: WsSettings,
    pub store: StoreSettings,
    pub scylla: ScyllaConfig,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub llm: LlmSettings,
    pub chat: ChatSettings,
    pub tickets: TicketSettings,
    pub webhooks: WebhookSettings,
    pub email: EmailSettings,
    pub cluster: ClusterSettings,
    pub demo: DemoSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Open connections at most, WebSockets included. By default as many as the process's
    /// open files and memory allow ([`default_max_connections`]).
    #[serde(deserialize_with = "values::positive")]
    pub max_connections: usize,
    /// Connections the kernel holds for the accept loop at most (capped by the kernel's
    /// `net.core.somaxconn`): a reconnecting crowd past it has its handshakes dropped and
    /// retried a second later.
    #[serde(deserialize_with = "values::positive")]
    pub listen_backlog: u32,
    #[serde(rename = "header_read_timeout_secs", with = "values::secs::positive")]
    pub header_read_timeout: Duration,
    #[serde(deserialize_with = "values::positive")]
    pub max_body_bytes: u64,
    /// How long a stopping server waits for its connections to finish.
    #[serde(rename = "shutdown_grace_secs", with = "values::secs")]
    pub shutdown_grace: Duration,
    /// `/metrics` on an address of its own; on the main listener when `None`.
    #[serde(with = "values::optional_address")]
    pub metrics_listen: Option<SocketAddr>,
    #[serde(with = "values::text")]
    pub log: LogFilter,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WsSettings {
    #[serde(deserialize_with = "values::positive")]
    pub max_message_bytes: usize,
    #[serde(rename = "ping_interval_secs", with = "values::secs::positive")]
    pub ping_interval: Duration,
    #[serde(deserialize_with = "values::positive")]
    pub subscriber_queue: usize,
    #[serde(rename = "write_timeout_ms", with = "values::millis::positive")]
    pub write_timeout: Duration,
    /// Below a few KiB the kernel raises it anyway; far above, one idle peer pins megabytes.
    #[serde(deserialize_with = "send_buffer_bytes")]
    pub send_buffer_bytes: usize,
}

fn send_buffer_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let bytes = usize::deserialize(d)?;
    if !(4096..=16 << 20).contains(&bytes) {
        return Err(serde::de::Error::custom(
            "must be between 4096 and 16777216",
        ));
    }
    Ok(bytes)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub backend: StorageBackend,
    pub data_dir: PathBuf,
    /// How often the embedded store makes what it applied durable.
    #[serde(rename = "checkpoint_ms", with = "values::millis::positive")]
    pub checkpoint: Duration,
    /// How long the embedded store's applier waits to gather more writes into one commit.
    #[serde(rename = "apply_gather_ms", with = "values::millis")]
    pub apply_gather: Duration,
    /// Days audit records are kept.
    #[serde(deserialize_with = "values::positive")]
    pub audit_retention_days: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    #[serde(deserialize_with = "values::secret_of_at_least::<32, _>")]
    pub jwt_secret: Secret,
    #[serde(deserialize_with = "values::secrets_of_at_least::<32, _>")]
    pub jwt_previous_secrets: Secrets,
    #[serde(deserialize_with = "values::secret_of_at_least::<16, _>")]
    pub operator_token: Secret,
    /// How long a session token is valid.
    #[serde(rename = "session_ttl_secs", with = "values::secs::positive")]
    pub session_ttl: Duration,
    /// A member's session unused this long ends.
    #[serde(rename = "member_idle_timeout_secs", with = "values::secs::positive")]
    pub member_idle_timeout: Duration,
    /// A member's session ends this long after sign-in, however used.
    #[serde(
        rename = "member_session_max_age_secs",
        with = "values::secs::positive"
    )]
    pub member_session_max_age: Duration,
    /// An invitation link works this long.
    #[serde(rename = "invitation_ttl_secs", with = "values::secs::positive")]
    pub invitation_ttl: Duration,
    /// A password-reset link works this long.
    #[serde(rename = "password_reset_ttl_secs", with = "values::secs::positive")]
    pub password_reset_ttl: Duration,
    /// When the session cookie is marked `Secure`.
    pub secure_cookies: SecureCookies,
}

/// When a member's session cookie carries `Secure` (sent over HTTPS only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureCookies {
    /// When the request came over HTTPS: `X-Forwarded-Proto: https` from a trusted proxy
    /// (`trusted_proxies` above 0). The server itself speaks plain HTTP.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub public_per_minute: u32,
    pub sessions_per_minute: u32,
    /// A visitor's ticket requests per minute per session token.
    pub visitor_per_minute: u32,
    #[serde(deserialize_with = "values::positive")]
    pub clients: u64,
    pub trusted_proxies: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    pub provider: LlmProviderKind,
    /// Up to and including `/v1`; none means no model is configured.
    #[serde(with = "values::optional_text")]
    pub base_url: Option<HttpUrl>,
    pub api_key: Secret,
    pub model: String,
    #[serde(rename = "connect_timeout_secs", with = "values::secs::positive")]
    pub connect_timeout: Duration,
    #[serde(rename = "first_token_timeout_secs", with = "values::secs::positive")]
    pub first_token_timeout: Duration,
    #[serde(rename = "idle_timeout_secs", with = "values::secs::positive")]
    pub idle_timeout: Duration,
    #[serde(deserialize_with = "values::positive")]
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    pub session_requests_per_minute: u32,
    pub session_token_budget: u64,
    pub session_tickets: u32,
    pub project_requests_per_minute: u32,
    pub project_tokens_per_hour: u64,
    pub project_tickets_per_hour: u32,
    #[serde(deserialize_with = "values::positive")]
    pub max_sessions: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSettings {
    /// How long a ticket's actor stays without traffic before it stops.
    #[serde(rename = "idle_secs", with = "values::secs::positive")]
    pub idle: Duration,
    /// How often the projects' retention settings are applied (`crate::retention`).
    #[serde(rename = "retention_every_secs", with = "values::secs::positive")]
    pub retention_every: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Lets webhooks reach loopback, private and link-local addresses (a test bench, an
    /// intranet); off, so a tenant cannot point the server at its own network.
    #[serde(deserialize_with = "values::flag::deserialize")]
    pub allow_private: bool,
    /// The waits between a failed delivery's attempts, written like `5s,5m,30m,2h`.
    #[serde(with = "values::text")]
    pub retry_schedule: RetrySchedule,
    /// How long one attempt may take.
    #[serde(rename = "timeout_secs", with = "values::secs::positive")]
    pub timeout: Duration,
    /// Deliveries in flight at once, over all endpoints.
    #[serde(deserialize_with = "values::positive")]
    pub concurrency: usize,
}

/// Email (issue 28): without `smtp_url` no email is sent, and the links emails would carry
/// are shown to copy instead.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// `smtp://user:password@host:port?tls=starttls|tls|none`; empty: email is off.
    #[serde(with = "values::optional_text")]
    pub smtp_url: Option<SmtpUrl>,
    /// The `From` of every email; required with `smtp_url`.
    #[serde(with = "values::optional_text")]
    pub from: Option<MailFrom>,
    /// The server's address as people reach it (`https://support.example.com`): links in
    /// emails start with it. Required with `smtp_url`.
    #[serde(with = "values::optional_text")]
    pub public_url: Option<HttpUrl>,
    /// The waits between a failed email's attempts, written like `30s,5m,30m,2h`.
    #[serde(with = "values::text")]
    pub retry_schedule: RetrySchedule,
    /// How long one SMTP conversation may take.
    #[serde(rename = "timeout_secs", with = "values::secs::positive")]
    pub timeout: Duration,
    /// Where replies by email are received (`reply+TOKEN@<domain>`); none: reply by email is
    /// off.
    #[serde(with = "values::optional_text")]
    pub reply_domain: Option<MailDomain>,
    /// What the mail server presents to the inbound endpoint (bearer or basic password).
    #[serde(deserialize_with = "values::secret_of_at_least::<16, _>")]
    pub inbound_secret: Secret,
    /// How long after an agent's reply the visitor, if they have not read it nor had the
    /// ticket open since, is emailed the replies they missed.
    #[serde(rename = "visitor_after_secs", with = "values::secs::positive")]
    pub visitor_after: Duration,
    /// How long after a visitor's message the ticket's assignee, if they have not been in the
    /// inbox nor read it since, is emailed the visitor's messages they missed.
    #[serde(rename = "agent_after_secs", with = "values::secs::positive")]
    pub agent_after: Duration,
}

impl EmailSettings {
    pub fn enabled(&self) -> bool {
        self.smtp_url.is_some()
    }
}

/// Several nodes serving the same tickets, coordinated through NATS JetStream. Off (one node)
/// while `nats_url` is empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// NATS servers, comma separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`).
    #[serde(with = "values::nats_servers")]
    pub nats_url: Vec<async_nats::ServerAddr>,
    /// This node's name among the nodes; drawn at start when not given.
    #[serde(with = "values::optional_text")]
    pub node_id: Option<NodeId>,
    /// How long a ticket stays with a node that stopped renewing its hold on it.
    #[serde(
        rename = "lease_ttl_secs",
        serialize_with = "values::secs::serialize",
        deserialize_with = "lease_ttl"
    )]
    pub lease_ttl: Duration,
    /// Copies JetStream keeps of the tickets' log and the leases (1, 3 or 5).
    #[serde(deserialize_with = "replicas")]
    pub replicas: usize,
}

/// A lease renewed three times per lifetime needs a lifetime of a few seconds.
fn lease_ttl<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let ttl = values::secs::deserialize(d)?;
    if ttl < Duration::from_secs(2) {
        return Err(serde::de::Error::custom("must be at least 2"));
    }
    Ok(ttl)
}

/// JetStream's replication: an odd number of copies, so a majority exists.
fn replicas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let replicas = usize::deserialize(d)?;
    if ![1, 3, 5].contains(&replicas) {
        return Err(serde::de::Error::custom("must be 1, 3 or 5"));
    }
    Ok(replicas)
}

impl ClusterSettings {
    pub fn enabled(&self) -> bool {
        !self.nats_url.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSettings {
    #[serde(deserialize_with = "values::flag::deserialize")]
    pub enabled: bool,
    pub project_id: ProjectId,
}

impl Default for Settings {
    fn default() -> Self {
        let secs = Duration::from_secs;
        let millis = Duration::from_millis;
        Self {
            server: ServerSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                max_connections: default_max_connections(),
                listen_backlog: 4096,
                header_read_timeout: secs(10),
                max_body_bytes: 64 * 1024,
                shutdown_grace: secs(10),
                metrics_listen: None,
                log: "info,warp=error,tantivy=warn"
                    .parse()
                    .expect("a valid log filter"),
                log_format: LogFormat::Pretty,
            },
            ws: WsSettings {
                max_message_bytes: 4096,
                ping_interval: secs(20),
                subscriber_queue: 256,
                write_timeout: millis(1000),
                send_buffer_bytes: 64 * 1024,
            },
            store: StoreSettings {
                backend: StorageBackend::Embedded,
                data_dir: PathBuf::from("./data"),
                checkpoint: millis(100),
                apply_gather: millis(5),
                audit_retention_days: fleety_actors::audit::DEFAULT_RETENTION_DAYS,
            },
            scylla: ScyllaConfig::default(),
            auth: AuthSettings {
                jwt_secret: Secret::default(),
                jwt_previous_secrets: Secrets::default(),
                operator_token: Secret::default(),
                session_ttl: secs(300),
                member_idle_timeout: secs(12 * 3600),
                member_session_max_age: secs(7 * 24 * 3600),
                invitation_ttl: secs(7 * 24 * 3600),
                password_reset_ttl: secs(3600),
                secure_cookies: SecureCookies::Auto,
            },
            limits: LimitSettings {
                public_per_minute: 10,
                sessions_per_minute: 30,
                visitor_per_minute: 120,
                clients: 100_000,
                trusted_proxies: 0,
            },
            llm: LlmSettings {
                provider: LlmProviderKind::Auto,
                base_url: None,
                api_key: Secret::default(),
                model: "gpt-4o-mini".into(),
                connect_timeout: secs(5),
                first_token_timeout: secs(30),
                idle_timeout: secs(30),
                max_tokens: 512,
            },
            chat: ChatSettings {
                session_requests_per_minute: 20,
                session_token_budget: 50_000,
                session_tickets: 3,
                project_requests_per_minute: 600,
                project_tokens_per_hour: 2_000_000,
                project_tickets_per_hour: 100,
                max_sessions: 100_000,
            },
            tickets: TicketSettings {
                idle: secs(120),
                retention_every: secs(600),
            },
            webhooks: WebhookSettings {
                allow_private: false,
                retry_schedule: RetrySchedule::default(),
                timeout: secs(15),
                concurrency: 16,
            },
            email: EmailSettings {
                smtp_url: None,
                from: None,
                public_url: None,
                retry_schedule: RetrySchedule::parse("30s,5m,30m,2h,6h,12h")
                    .expect("a valid schedule"),
                timeout: secs(30),
                reply_domain: None,
                inbound_secret: Secret::default(),
                visitor_after: secs(120),
                agent_after: secs(120),
            },
            cluster: ClusterSettings {
                nats_url: Vec::new(),
                node_id: None,
                lease_ttl: secs(6),
                replicas: 3,
            },
            demo: DemoSettings {
                enabled: true,
                project_id: ProjectId::parse("demo").expect("a valid project id"),
            },
        }
    }
}

/// A provider's settings with each flat name moved to its place in its group.
struct Grouped<P>(P);

impl<P: Provider> Provider for Grouped<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut out = Map::new();
        for (profile, flat) in self.0.data()? {
            let mut grouped = Dict::new();
            for (key, value) in flat {
                let Some((_, place)) = NAMES.iter().find(|(name, _)| *name == key) else {
                    // A group given as a table, or a name serde will refuse as unknown.
                    merge(&mut grouped, key, value);
                    continue;
                };
                let (group, field) = place.split_once('.').unwrap_or((place, ""));
                let mut fields = Dict::new();
                fields.insert(field.to_owned(), value);
                merge(&mut grouped, group.to_owned(), Value::from(fields));
            }
            out.insert(profile, grouped);
        }
        Ok(out)
    }
}

/// Puts `value` at `key`, joining two tables given for one group.
fn merge(into: &mut Dict, key: String, value: Value) {
    match (into.get_mut(&key), value) {
        (Some(Value::Dict(_, have)), Value::Dict(_, more)) => have.extend(more),
        (_, value) => {
            into.insert(key, value);
        }
    }
}

impl Settings {
    /// Reads defaults, then the config file, then the environment.
    pub fn load() -> Result<Settings, String> {
        let file = std::env::var("FLEETY_CONFIG").unwrap_or_else(|_| "fleety.toml".into());
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Grouped(Toml::file(&file)))
            .merge(Grouped(
                Env::prefixed("FLEETY_").ignore(&["CONFIG"]).split("__"),
            ));
        Self::from_figment(figment)
    }

    pub fn from_figment(figment: Figment) -> Result<Settings, String> {
        let settings: Settings = figment.extract().map_err(|e| {
            if let figment::error::Kind::UnknownField(name, _) = &e.kind {
                let place = e.path.iter().chain([name]).cloned().collect::<Vec<_>>();
                return invalid(&place.join("."), "no such setting");
            }
            match e.path.join(".") {
                place if place.is_empty() => format!("configuration error: {e}"),
                place => invalid(&place, &e.kind),
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// The rules between settings; each setting's own rules hold by its type.
    fn validate(&self) -> Result<(), String> {
        if self.cluster.enabled() && self.store.backend != StorageBackend::Scylla {
            let why = "several nodes share one store: set FLEETY_STORAGE=scylla";
            return Err(invalid("cluster.nats_url", why));
        }
        // Past a checkpoint interval, gathering would only hold the applier back.
        let store = &self.store;
        if store.apply_gather >= store.checkpoint {
            let why = format!(
                "must be less than store_checkpoint_ms ({})",
                store.checkpoint.as_millis()
            );
            return Err(invalid("store.apply_gather_ms", why));
        }
        if self.email.enabled() {
            if self.email.from.is_none() {
                return Err(invalid("email.from", "required when smtp_url is set"));
            }
            if self.email.public_url.is_none() {
                let why = "required when smtp_url is set: the links in emails start with it";
                return Err(invalid("email.public_url", why));
            }
        }
        if self.email.reply_domain.is_some() && self.email.inbound_secret.is_empty() {
            let why = "required when reply_domain is set: the mail server presents it";
            return Err(invalid("email.inbound_secret", why));
        }
        if self.llm.provider == LlmProviderKind::Openai && self.llm.base_url.is_none() {
            return Err(invalid(
                "llm.base_url",
                "required when llm_provider is openai",
            ));
        }
        Ok(())
    }
}

impl ServerSettings {
    /// Connections past `max_connections` that are answered 503 at once, beyond which more
    /// are closed unread: see [`refusal_allowance`].
    pub fn refusal_allowance(&self) -> usize {
        refusal_allowance(self.max_connections)
    }
    /// How long a connection past the cap may take to send its request and read the 503: a
    /// fifth of the time a served client has for its headers (2 s at the default), since a
    /// client that is turned away only needs to be told so.
    pub fn refusal_time(&self) -> Duration {
        self.header_read_timeout / 5
    }
}

/// Memory an open connection is budgeted at when the default cap is sized from memory: the
/// costlier of the two kinds measured (docs/operations.md), a keep-alive HTTP connection
/// waiting for its next request, at 19.7 KiB of server RSS and 3.7 KiB in the kernel. An idle
/// WebSocket costs 5.5 and 3.7 KiB.
pub const MEMORY_PER_CONNECTION: u64 = 24 * 1024;

/// Open files kept back from connections at least: the store's files, the listeners and the
/// runtimes' own descriptors (18 in all on the embedded store), and outgoing connections to
/// ScyllaDB, NATS, webhook receivers and the model, which grow with the load.
pub const FILES_RESERVED: u64 = 256;

/// The open-file limit assumed where it cannot be read (not Linux): the usual soft limit.
const ASSUMED_OPEN_FILES: u64 = 1024;

/// A cap below this is no use to anyone; a limit that low is a mistake the start-up log names.
const MIN_CONNECTIONS: u64 = 64;

/// The default connection cap, from this process's open-file soft limit and the memory it may
/// use (see [`connection_cap`]). Read once: the limits do not change while the server runs.
pub fn default_max_connections() -> usize {
    static CAP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| connection_cap(open_file_limit(), memory_limit()))
}

/// As many connections as fit in both budgets:
/// - open files: the soft limit (`ulimit -n`, systemd's `LimitNOFILE`) less a reserve of
///   [`FILES_RESERVED`] or a sixteenth of the limit, whichever is more, and less the refusal
///   allowance, since a refused connection holds a file too while it is answered;
/// - memory: half the memory the process may use (the machine's, or its control group's limit
///   when lower) at [`MEMORY_PER_CONNECTION`] each; the other half is for the tickets, chat
///   sessions, search indexes and the store.
pub fn connection_cap(open_files: Option<u64>, memory: Option<u64>) -> usize {
    let files = open_files.unwrap_or(ASSUMED_OPEN_FILES);
    let usable = files.saturating_sub((files / 16).max(FILES_RESERVED));
    let refusals = refusal_allowance(usize::try_from(usable).unwrap_or(usize::MAX)) as u64;
    let by_files = usable.saturating_sub(refusals);
    let by_memory = memory.map_or(u64::MAX, |bytes| bytes / 2 / MEMORY_PER_CONNECTION);
    let cap = by_files.min(by_memory).max(MIN_CONNECTIONS);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Connections past a cap of `max_connections` that are answered 503 at once: a thirty-second
/// of the cap, from 8 to 512. Each holds a file and a few KiB until its request is answered,
/// and at most [`ServerSettings::refusal_time`]; past them, connections are closed unread.
pub fn refusal_allowance(max_connections: usize) -> usize {
    (max_connections / 32).clamp(8, 512)
}

/// The soft limit on open files (`RLIMIT_NOFILE`), where the system says (Linux).
pub fn open_file_limit() -> Option<u64> {
    parse_open_file_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft limit from `/proc/self/limits`: `Max open files  <soft>  <hard>  files`.
fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The memory this process may use: the machine's, or its control group's limit when that is
/// lower (a container).
fn memory_limit() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_mem_total(&m));
    let group = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|groups| cgroup_memory_limit(&groups, |path| std::fs::read_to_string(path).ok()));
    match (machine, group) {
        (Some(m), Some(g)) => Some(m.min(g)),
        (m, g) => m.or(g),
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line["MemTotal:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The memory limit of the control group named in `/proc/self/cgroup` (`groups`): cgroup v2's
/// `memory.max` (`0::/path`) or v1's `memory.limit_in_bytes` (`N:memory:/path`). `read` reads
/// a file under `/sys/fs/cgroup`. `None` when there is no limit or it cannot be read.
fn cgroup_memory_limit(groups: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    groups.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_end_matches('/');
        let file = if controllers.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else {
            return None;
        };
        // v2 writes "max" for no limit; v1 a number near 2^63, which the machine's memory
        // undercuts anyway.
        read(&file)?.trim().parse().ok()
    })
}

#[cfg(test)]
// figment's `Jail` fixes its closures' error type, which is large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use crate::store::scylla::Replication;

    #[test]
    fn several_nodes_need_the_shared_store_and_sound_leases() {
        let cluster = [("cluster_nats_url", "nats://127.0.0.1:4222")];
        let alone = with(&cluster).unwrap_err();
        assert!(
            alone.contains("FLEETY_CLUSTER_NATS_URL") && alone.contains("scylla"),
            "{alone}"
        );
        let shared = [cluster[0], ("storage", "scylla")];
        let settings = with(&shared).expect("a cluster on the CQL store");
        assert!(settings.cluster.enabled());
        assert!(
            !Settings::default().cluster.enabled(),
            "one node by default"
        );
        for (name, value, flat) in [
            ("cluster_replicas", "2", "FLEETY_CLUSTER_REPLICAS"),
            (
                "cluster_lease_ttl_secs",
                "1",
                "FLEETY_CLUSTER_LEASE_TTL_SECS",
            ),
            ("cluster_node_id", "node.one", "FLEETY_CLUSTER_NODE_ID"),
        ] {
            let error = with(&[shared[0], shared[1], (name, value)]).unwrap_err();
            assert!(error.contains(flat), "{name}={value}: {error}");
        }
    }

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        for (k, v) in pairs {
            figment = figment.merge(Grouped(Serialized::default(k, v)));
        }
        Settings::from_figment(figment)
    }

    #[test]
    fn defaults_are_valid() {
        let s = with(&[]).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.limits.public_per_minute, 10);
    }

    #[test]
    fn email_settings_are_checked_at_start() {
        let off = with(&[]).unwrap();
        assert!(!off.email.enabled());
        let url = "smtp://me%40x.org:p%3Ass@mail.example.com?tls=tls";
        let needs_from = with(&[("smtp_url", url)]).unwrap_err();
        assert!(needs_from.contains("FLEETY_SMTP_FROM"), "{needs_from}");
        let needs_base = with(&[("smtp_url", url), ("smtp_from", "Help <help@x.org>")]);
        assert!(needs_base.unwrap_err().contains("FLEETY_PUBLIC_URL"));
        let on = with(&[
            ("smtp_url", url),
            ("smtp_from", "Help <help@x.org>"),
            ("public_url", "https://help.x.org"),
        ])
        .unwrap();
        let smtp = on.email.smtp_url.clone().unwrap();
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.tls),
            ("mail.example.com", 465, SmtpTls::Tls)
        );
        let (user, password) = smtp.credentials.clone().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("me@x.org", "p:ss"));
        // The password never shows in what is logged.
        assert!(!format!("{on:?}").contains("p:ss") && !format!("{on:?}").contains("p%3Ass"));
        assert_eq!(on.email.from.unwrap().domain(), "x.org");
        let plain: SmtpUrl = "smtp://127.0.0.1:2525?tls=none".parse().unwrap();
        assert_eq!(
            (plain.port, plain.tls, plain.credentials.is_none()),
            (2525, SmtpTls::None, true)
        );
        let starttls: SmtpUrl = "smtp://relay".parse().unwrap();
        assert_eq!((starttls.port, starttls.tls), (587, SmtpTls::StartTls));
        for bad in [
            "http://x",
            "smtp://x?tls=maybe",
            "smtp://u@x",
            "smtp://x?port=2",
            "smtp:///",
        ] {
            assert!(bad.parse::<SmtpUrl>().is_err(), "{bad}");
        }
        assert!(with(&[("smtp_from", "not an address")]).is_err());
    }

    #[test]
    fn reply_by_email_needs_a_domain_and_the_inbound_secret() {
        let off = with(&[]).unwrap();
        assert_eq!(off.email.reply_domain, None);
        let secret = "a-long-inbound-secret";
        let needs_secret = with(&[("reply_domain", "replies.x.org")]).unwrap_err();
        assert!(
            needs_secret.contains("FLEETY_INBOUND_EMAIL_SECRET"),
            "{needs_secret}"
        );
        let on = with(&[
            ("reply_domain", "Replies.X.org"),
            ("inbound_email_secret", secret),
        ]);
        let on = on.unwrap();
        assert_eq!(on.email.reply_domain.unwrap().as_str(), "replies.x.org");
        assert!(!format!("{:?}", on.email.inbound_secret).contains(secret));
        for bad in ["x", "not a domain", "-x.org", "a..b"] {
            let err = with(&[("reply_domain", bad), ("inbound_email_secret", secret)]);
            assert!(err.unwrap_err().contains("FLEETY_REPLY_DOMAIN"), "{bad}");
        }
        let short = with(&[("inbound_email_secret", "short")]).unwrap_err();
        assert!(short.contains("FLEETY_INBOUND_EMAIL_SECRET"), "{short}");
    }

    #[test]
    fn the_default_connection_cap_fits_the_open_files_and_the_memory() {
        const GIB: u64 = 1 << 30;
        // 20,000 files (this machine's limit): 1,250 kept back, 512 for refusals.
        assert_eq!(connection_cap(Some(20_000), Some(24 * GIB)), 18_238);
        // systemd's default soft limit: 256 kept back, 24 for refusals.
        assert_eq!(connection_cap(Some(1024), Some(24 * GIB)), 744);
        // A container with a million files and 512 MiB: memory decides, 256 MiB at 24 KiB.
        assert_eq!(connection_cap(Some(1 << 20), Some(512 << 20)), 10_922);
        // Where the open-file limit cannot be read, 1,024 files are assumed.
        assert_eq!(connection_cap(None, Some(32 << 20)), 682);
        assert_eq!(connection_cap(None, None), 744);
        // A limit too low to be meant still leaves a usable server.
        assert_eq!(connection_cap(Some(100), None), 64);
        for files in [1024, 4096, 20_000, 65_536, 1 << 20] {
            let cap = connection_cap(Some(files), None);
            let needed = (cap + refusal_allowance(cap)) as u64 + FILES_RESERVED;
            assert!(
                needed <= files,
                "{files} files: a cap of {cap} needs {needed}"
            );
        }
        assert_eq!(
            (
                refusal_allowance(3),
                refusal_allowance(10_000),
                refusal_allowance(1 << 20)
            ),
            (8, 312, 512)
        );
    }

    #[test]
    fn the_limits_are_read_as_linux_writes_them() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95393                95393                processes \n\
                      Max open files            20000                524288               files     \n";
        assert_eq!(parse_open_file_limit(limits), Some(20_000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert_eq!(
            parse_mem_total("MemTotal:       24683772 kB\nMemFree: 1 kB\n"),
            Some(24_683_772 * 1024)
        );
        let files = |path: &str| match path {
            "/sys/fs/cgroup/system.slice/fleety.service/memory.max" => Some("536870912\n".into()),
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes" => Some("268435456\n".into()),
            "/sys/fs/cgroup/memory.max" => Some("max\n".into()),
            _ => None,
        };
        let v2 = cgroup_memory_limit("0::/system.slice/fleety.service\n", files);
        assert_eq!(v2, Some(512 << 20));
        let v1 = "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n";
        assert_eq!(cgroup_memory_limit(v1, files), Some(256 << 20));
        assert_eq!(cgroup_memory_limit("0::/\n", files), None, "no limit");
    }

    #[test]
    fn an_explicit_connection_cap_overrides_the_derived_one() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let s = Settings::load()?;
            assert_eq!(s.server.max_connections, default_max_connections());
            jail.set_env("FLEETY_MAX_CONNECTIONS", "123");
            let s = Settings::load()?;
            assert_eq!(s.server.max_connections, 123);
            assert_eq!(s.server.refusal_allowance(), 8);
            jail.set_env("FLEETY_MAX_CONNECTIONS", "0");
            let err = Settings::load().unwrap_err();
            assert!(err.contains("FLEETY_MAX_CONNECTIONS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let err = with(&[("listen", "not an address")]).unwrap_err();
        assert!(err.contains("FLEETY_LISTEN"), "{err}");
        let err = with(&[("storage", "postgres")]).unwrap_err();
        assert!(err.contains("FLEETY_STORAGE"), "{err}");
        let err = with(&[("jwt_secret", "short")]).unwrap_err();
        assert!(err.contains("FLEETY_JWT_SECRET"), "{err}");
        assert!(
            !err.contains("short"),
            "the secret must not be echoed: {err}"
        );
    }

    #[test]
    fn the_apply_gather_must_fit_inside_a_checkpoint_interval() {
        let timing = |checkpoint: u64, gather: u64| {
            Settings::from_figment(
                Figment::from(Serialized::defaults(Settings::default()))
                    .merge(Grouped(Serialized::default(
                        "store_checkpoint_ms",
                        checkpoint,
                    )))
                    .merge(Grouped(Serialized::default(
                        "store_apply_gather_ms",
                        gather,
                    ))),
            )
        };
        let err = timing(0, 0).unwrap_err();
        assert!(
            err.contains("FLEETY_STORE_CHECKPOINT_MS") && err.contains("greater than 0"),
            "{err}"
        );
        let err = timing(50, 50).unwrap_err();
        assert!(
            err.contains("FLEETY_STORE_APPLY_GATHER_MS") && err.contains("less than"),
            "{err}"
        );
        let ms = Duration::from_millis;
        let s = timing(50, 0).unwrap();
        assert_eq!((s.store.checkpoint, s.store.apply_gather), (ms(50), ms(0)));
        let s = with(&[]).unwrap();
        assert_eq!((s.store.checkpoint, s.store.apply_gather), (ms(100), ms(5)));
    }

    #[test]
    fn boolean_settings_take_the_usual_words_from_the_file_and_the_environment() {
        let cases = [
            ("true", true),
            ("FALSE", false),
            ("1", true),
            ("0", false),
            ("Yes", true),
            ("no", false),
            ("ON", true),
            ("off", false),
        ];
        for (word, expected) in cases {
            figment::Jail::expect_with(|jail| {
                // Only the variables set here: the test runner's own FLEETY_* ones must not leak in.
                jail.clear_env();
                jail.set_env("FLEETY_SCYLLA_AUTO_MIGRATE", word);
                jail.set_env("FLEETY_DEMO", word);
                let s = Settings::load().map_err(|e| e.to_string())?;
                assert_eq!(
                    (s.scylla.auto_migrate, s.demo.enabled),
                    (expected, expected),
                    "env {word}"
                );
                Ok(())
            });
            // In the file, as a TOML value (a bare word where TOML has one) or a string.
            let bare = if word.parse::<u8>().is_ok() || ["true", "false"].contains(&word) {
                word.to_owned()
            } else {
                format!("{word:?}")
            };
            for value in [bare, format!("{word:?}")] {
                figment::Jail::expect_with(|jail| {
                    // Only the variables set here: the test runner's own FLEETY_* ones must not leak in.
                    jail.clear_env();
                    jail.create_file(
                        "fleety.toml",
                        &format!("scylla_auto_migrate = {value}\ndemo = {value}\n"),
                    )?;
                    let s = Settings::load().map_err(|e| e.to_string())?;
                    assert_eq!(
                        (s.scylla.auto_migrate, s.demo.enabled),
                        (expected, expected),
                        "file {value}"
                    );
                    Ok(())
                });
            }
        }
    }

    #[test]
    fn a_boolean_setting_that_is_no_such_word_names_the_setting_and_the_choices() {
        figment::Jail::expect_with(|jail| {
            // Only the variables set here: the test runner's own FLEETY_* ones must not leak in.
            jail.clear_env();
            jail.set_env("FLEETY_SCYLLA_AUTO_MIGRATE", "2");
            let err = Settings::load().unwrap_err();
            assert!(err.contains("FLEETY_SCYLLA_AUTO_MIGRATE"), "{err}");
            assert!(err.contains("yes/no"), "{err}");
            jail.set_env("FLEETY_SCYLLA_AUTO_MIGRATE", "maybe");
            let err = Settings::load().unwrap_err();
            assert!(
                err.contains("FLEETY_SCYLLA_AUTO_MIGRATE") && err.contains("maybe"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let list = Secrets::new([s.clone(), s]);
        assert_eq!(format!("{list:?}"), "[2 redacted]");
    }

    #[test]
    fn previous_secrets_come_as_a_list_or_joined_by_commas() {
        let a = "a".repeat(32);
        let b = "b".repeat(40);
        figment::Jail::expect_with(|jail| {
            // Only the variables set here: the test runner's own FLEETY_* ones must not leak in.
            jail.clear_env();
            jail.set_env("FLEETY_JWT_PREVIOUS_SECRETS", format!("{a}, {b}"));
            let s = Settings::load().map_err(|e| e.to_string())?;
            let got: Vec<&str> = s
                .auth
                .jwt_previous_secrets
                .iter()
                .map(Secret::expose)
                .collect();
            assert_eq!(got, [a.as_str(), b.as_str()]);
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            // Only the variables set here: the test runner's own FLEETY_* ones must not leak in.
            jail.clear_env();
            jail.create_file("fleety.toml", &format!("jwt_previous_secrets = [{a:?}]\n"))?;
            let s = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(s.auth.jwt_previous_secrets, Secrets::new([Secret::new(&a)]));
            jail.set_env("FLEETY_JWT_PREVIOUS_SECRETS", "too-short");
            let err = Settings::load().unwrap_err();
            assert!(err.contains("FLEETY_JWT_PREVIOUS_SECRETS"), "{err}");
            assert!(
                !err.contains("too-short"),
                "the secret must not be echoed: {err}"
            );
            Ok(())
        });
    }

    /// Every field of `Settings` has one flat name, and the README documents each of them.
    #[test]
    fn every_setting_has_one_flat_name_and_the_readme_lists_it() {
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        let mut places = Vec::new();
        for (group, fields) in defaults.as_object().unwrap() {
            for field in fields.as_object().unwrap().keys() {
                places.push(format!("{group}.{field}"));
            }
        }
        let mut named: Vec<String> = NAMES.iter().map(|(_, p)| p.to_string()).collect();
        places.sort();
        named.sort();
        assert_eq!(places, named);
        let readme = include_str!("../../README.md");
        for (flat, _) in NAMES {
            let row = format!("| `FLEETY_{}` | `{flat}` |", flat.to_ascii_uppercase());
            assert!(readme.contains(&row), "the README's table lacks {flat}");
        }
    }

    #[test]
    fn a_group_may_be_given_as_a_table_beside_flat_names() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "fleety.toml",
                "scylla_keyspace = \"support\"\n[scylla]\nnodes = \"10.0.0.1:9042\"\n",
            )?;
            jail.set_env("FLEETY_CHAT__MAX_SESSIONS", "7");
            let s = Settings::load()?;
            assert_eq!(s.scylla.keyspace, "support");
            assert_eq!(s.scylla.nodes, ["10.0.0.1:9042"]);
            assert_eq!(s.chat.max_sessions, 7);
            Ok(())
        });
    }

    #[test]
    fn an_unknown_setting_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("FLEETY_SCYLA_NODES", "x");
            let err = Settings::load().unwrap_err();
            assert!(
                err.contains("FLEETY_SCYLA_NODES") && err.contains("no such setting"),
                "{err}"
            );
            Ok(())
        });
    }

    /// The full line for a bad value of `name`, read from the environment.
    fn refused(name: &str, value: &str) -> String {
        let mut err = String::new();
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env(format!("FLEETY_{}", name.to_ascii_uppercase()), value);
            err = Settings::load().expect_err("refused");
            Ok(())
        });
        err
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_refused_in_one_line_naming_the_setting_and_why() {
        let cases = [
            (
                "metrics_listen",
                "localhost",
                "must be an address such as 127.0.0.1:9090",
            ),
            (
                "llm_base_url",
                "ftp://models.example",
                "must be an http or https URL",
            ),
            ("llm_base_url", "not a url", "must be an http or https URL"),
            (
                "webhook_retry_schedule",
                "5 minutes",
                "the unit must be ms, s, m or h",
            ),
            ("scylla_nodes", " , ", "list at least one host:port"),
            (
                "scylla_keyspace",
                "fleety;drop",
                "must be 1-48 letters, digits or '_'",
            ),
            (
                "scylla_consistency",
                "most",
                "is not one of ONE, TWO, THREE",
            ),
            (
                "scylla_replication",
                "dc1:0",
                "must be a replica count like 3",
            ),
            (
                "cluster_node_id",
                "node.one",
                "must be up to 64 letters, digits",
            ),
            (
                "demo_project_id",
                "demo project",
                "project_id must be 1-64 characters",
            ),
            ("ws_ping_interval_secs", "0", "must be greater than 0"),
            ("store_checkpoint_ms", "0", "must be greater than 0"),
            ("chat_max_sessions", "0", "must be greater than 0"),
            (
                "ws_send_buffer_bytes",
                "1024",
                "must be between 4096 and 16777216",
            ),
            ("cluster_replicas", "2", "must be 1, 3 or 5"),
            ("cluster_lease_ttl_secs", "1", "must be at least 2"),
            ("operator_token", "short", "must be at least 16 characters"),
            ("listen", "localhost", "invalid socket address"),
            (
                "log",
                "info,warp=loud",
                "\"warp=loud\" is not a log filter directive",
            ),
            (
                "cluster_nats_url",
                "nats://10.0.0.1:4222,http://10.0.0.2:4222",
                "invalid scheme for NATS server URL: http",
            ),
            ("cluster_lease_ttl_secs", "soon", "invalid type"),
        ];
        for (name, value, why) in cases {
            let err = refused(name, value);
            let upper = name.to_ascii_uppercase();
            let line = format!("configuration error in {name} (FLEETY_{upper}): ");
            assert!(err.starts_with(&line), "{name}={value}: {err}");
            assert!(err.contains(why), "{name}={value}: {err}");
            assert_eq!(err.lines().count(), 1, "{name}={value}: {err}");
        }
    }

    #[test]
    fn settings_are_read_into_the_types_the_server_uses() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "fleety.toml",
                "scylla_nodes = [\"10.0.0.1:9042\", \"10.0.0.2:9042\"]\n\
                 header_read_timeout_secs = 7\n\
                 ws_write_timeout_ms = 250\n\
                 webhook_retry_schedule = \"1s, 90m\"\n",
            )?;
            jail.set_env("FLEETY_METRICS_LISTEN", "127.0.0.1:9090");
            jail.set_env("FLEETY_LLM_BASE_URL", "http://127.0.0.1:8081/v1");
            jail.set_env("FLEETY_SCYLLA_CONSISTENCY", "each_quorum");
            jail.set_env("FLEETY_SCYLLA_REPLICATION", "dc1:3,dc2:2");
            jail.set_env("FLEETY_SCYLLA_USERNAME", "fleety");
            jail.set_env("FLEETY_CLUSTER_NODE_ID", "node-a");
            jail.set_env("FLEETY_LISTEN", "[::1]:8443");
            jail.set_env("FLEETY_LOG", "debug,fleety::http=trace");
            jail.set_env("FLEETY_CLUSTER_NATS_URL", "nats://10.0.0.1:4222, 10.0.0.2");
            jail.set_env("FLEETY_CLUSTER_LEASE_TTL_SECS", "9");
            jail.set_env("FLEETY_STORAGE", "scylla");
            jail.set_env("FLEETY_DEMO_PROJECT_ID", "acme_1");
            let s = Settings::load()?;
            assert_eq!(s.server.listen, "[::1]:8443".parse().unwrap());
            let directives: Vec<String> = s
                .server
                .log
                .directives()
                .iter()
                .map(|d| d.to_string())
                .collect();
            assert_eq!(directives, ["debug", "fleety::http=trace"]);
            let nats: Vec<&str> = s.cluster.nats_url.iter().map(|a| a.as_url_str()).collect();
            assert_eq!(nats, ["nats://10.0.0.1:4222", "nats://10.0.0.2"]);
            assert!(s.cluster.enabled());
            assert_eq!(s.cluster.lease_ttl, Duration::from_secs(9));
            assert_eq!(s.demo.project_id.as_str(), "acme_1");
            assert_eq!(s.scylla.nodes, ["10.0.0.1:9042", "10.0.0.2:9042"]);
            assert_eq!(s.server.header_read_timeout, Duration::from_secs(7));
            assert_eq!(s.server.refusal_time(), Duration::from_millis(1400));
            assert_eq!(s.ws.write_timeout, Duration::from_millis(250));
            let waits = [Duration::from_secs(1), Duration::from_secs(90 * 60)];
            assert_eq!(s.webhooks.retry_schedule.0, waits);
            assert_eq!(s.server.metrics_listen, Some(([127, 0, 0, 1], 9090).into()));
            let base = s.llm.base_url.as_ref().map(|u| u.as_url().as_str());
            assert_eq!(base, Some("http://127.0.0.1:8081/v1"));
            assert_eq!(
                s.scylla.consistency,
                scylla::statement::Consistency::EachQuorum
            );
            let dcs = vec![("dc1".to_owned(), 3), ("dc2".to_owned(), 2)];
            assert_eq!(s.scylla.replication, Replication::PerDataCentre(dcs));
            assert_eq!(s.scylla.username.as_deref(), Some("fleety"));
            assert!(s.scylla.password.is_none(), "unset when empty");
            assert_eq!(
                s.cluster.node_id.as_ref().map(NodeId::as_str),
                Some("node-a")
            );
            // Left empty, the optional ones are unset.
            jail.set_env("FLEETY_METRICS_LISTEN", "");
            jail.set_env("FLEETY_LLM_BASE_URL", "");
            jail.set_env("FLEETY_CLUSTER_NODE_ID", "");
            jail.set_env("FLEETY_CLUSTER_NATS_URL", "");
            let s = Settings::load()?;
            assert_eq!(s.server.metrics_listen, None);
            assert!(s.llm.base_url.is_none() && s.cluster.node_id.is_none());
            assert!(!s.cluster.enabled(), "one node without NATS servers");
            Ok(())
        });
    }

    /// The README writes `FLEETY_SCYLLA_REPLICATION=3`; the environment hands that over as a
    /// number, which a setting read as a string refused.
    #[test]
    fn a_replica_count_or_a_node_name_may_be_a_bare_number() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("FLEETY_SCYLLA_REPLICATION", "3");
            jail.set_env("FLEETY_CLUSTER_NODE_ID", "7");
            let s = Settings::load()?;
            assert_eq!(s.scylla.replication, Replication::Factor(3));
            assert_eq!(s.cluster.node_id.as_ref().map(NodeId::as_str), Some("7"));
            jail.clear_env();
            jail.create_file("fleety.toml", "scylla_replication = 5\n")?;
            let s = Settings::load()?;
            assert_eq!(s.scylla.replication, Replication::Factor(5));
            Ok(())
        });
    }

    #[test]
    fn the_defaults_are_written_as_operators_write_them_and_read_back_the_same() {
        let written = serde_json::to_value(Settings::default()).unwrap();
        assert_eq!(written["server"]["header_read_timeout_secs"], 10);
        assert_eq!(written["server"]["metrics_listen"], "");
        assert_eq!(written["ws"]["write_timeout_ms"], 1000);
        assert_eq!(written["scylla"]["nodes"], "127.0.0.1:9042");
        assert_eq!(written["scylla"]["consistency"], "LOCAL_QUORUM");
        assert_eq!(written["scylla"]["replication"], "1");
        assert_eq!(written["server"]["log"], "info,warp=error,tantivy=warn");
        assert_eq!(written["cluster"]["nats_url"], "");
        assert_eq!(written["cluster"]["lease_ttl_secs"], 6);
        assert_eq!(
            written["webhooks"]["retry_schedule"],
            "5s,5m,30m,2h,5h,10h,10h"
        );
        let read = with(&[]).unwrap();
        assert_eq!(serde_json::to_value(&read).unwrap(), written);
    }
}
