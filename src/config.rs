//! Configuration: built-in defaults, then `fleety.toml` (or the file named by `FLEETY_CONFIG`),
//! then `FLEETY_*` environment variables, where `__` reaches into nested tables.
//!
//! Everything is checked at start-up; a bad value stops the server with one line naming the
//! setting and the reason.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::store::embedded::ApplyTiming;

/// A value that must never reach a log line or an error message.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Secrets given as a TOML list, or in the environment as one string separated by commas.
#[derive(Clone, Default, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secrets(Vec<Secret>);

impl Secrets {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self(secrets.into_iter().collect())
    }
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Secrets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            List(Vec<String>),
            Joined(String),
        }
        let secrets = match Given::deserialize(d)? {
            Given::List(list) => list,
            Given::Joined(joined) => joined.split(',').map(str::to_owned).collect(),
        };
        Ok(Self(
            secrets
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .map(Secret)
                .collect(),
        ))
    }
}

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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where the embedded store keeps its file.
    pub data_dir: PathBuf,
    pub storage: StorageBackend,
    /// Embedded store: how often redb is made durable so the log's older segment can be reused,
    /// in milliseconds. Longer means larger bursts of page writes and more log to replay.
    pub store_checkpoint_ms: u64,
    /// Embedded store: how long logged groups are gathered into one redb commit, in
    /// milliseconds; 0: no waiting, each commit takes what is already queued. Readers never
    /// wait for the window.
    pub store_apply_gather_ms: u64,
    /// Signs anonymous session tokens. Empty: a random secret kept in the data directory.
    pub jwt_secret: Secret,
    /// Secrets that signed tokens before the current one: they still verify, never sign. Keep
    /// one here for a session lifetime after rotating it out, then remove it.
    pub jwt_previous_secrets: Secrets,
    /// Authorises `POST /v1/admin/projects`. Empty: that endpoint is disabled.
    pub operator_token: Secret,
    /// Public ticket requests per minute per client IP; 0 disables the limit.
    pub public_rate_limit: u32,
    /// `POST /v1/init-session` requests per minute per client IP; 0 disables the limit.
    pub session_rate_limit: u32,
    /// Clients each rate limiter remembers at most; beyond it the least recently seen are
    /// forgotten and start afresh.
    pub rate_limit_clients: u64,
    /// Reverse proxies in front of the server whose `X-Forwarded-For` entries are trusted.
    pub trusted_proxies: usize,
    /// Lifetime of anonymous session tokens, in seconds.
    pub session_ttl_secs: u64,
    /// Log filter, in `tracing` env-filter syntax.
    pub log: String,
    pub log_format: LogFormat,
    /// Open connections at most; further ones are refused until some close.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout_secs: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Largest WebSocket message accepted from a client, in bytes.
    pub ws_max_message_bytes: usize,
    /// How often the server pings WebSocket clients; a client silent for two intervals is dropped.
    pub ws_ping_interval_secs: u64,
    /// Events buffered per WebSocket subscriber before it is cut off as too slow.
    pub ws_subscriber_queue: usize,
    /// How long one write to a WebSocket may wait for the peer before it is dropped as too
    /// slow, in milliseconds.
    pub ws_write_timeout_ms: u64,
    /// The kernel send buffer of each WebSocket, in bytes: what a peer that stops reading can
    /// pin at most (Linux doubles the figure for its bookkeeping).
    pub ws_send_buffer_bytes: usize,
    /// Seconds an unwatched, unused ticket actor stays in memory.
    pub ticket_idle_secs: u64,
    /// Seconds a graceful shutdown waits for open requests and sockets.
    pub shutdown_grace_secs: u64,
    /// Create the demo project on first start.
    #[serde(deserialize_with = "flag::deserialize")]
    pub demo: bool,
    /// The id the demo project gets.
    pub demo_project_id: String,
    /// CQL contact points, comma-separated `host:port`.
    pub scylla_nodes: String,
    pub scylla_keyspace: String,
    /// Consistency of every statement: LOCAL_QUORUM, QUORUM, ONE, ...
    pub scylla_consistency: String,
    pub scylla_username: String,
    pub scylla_password: Secret,
    /// Replicas for a keyspace that `migrate` creates: `3`, or per data centre `dc1:3,dc2:3`.
    pub scylla_replication: String,
    /// Apply pending CQL migrations at start-up.
    #[serde(deserialize_with = "flag::deserialize")]
    pub scylla_auto_migrate: bool,
    pub llm_provider: LlmProviderKind,
    /// An OpenAI-compatible API, up to and including `/v1`.
    pub llm_base_url: String,
    pub llm_api_key: Secret,
    pub llm_model: String,
    pub llm_connect_timeout_secs: u64,
    /// How long the model may take to start answering.
    pub llm_first_token_timeout_secs: u64,
    /// Longest pause the model may make in the middle of an answer.
    pub llm_idle_timeout_secs: u64,
    /// Tokens the model may generate per answer.
    pub llm_max_tokens: u32,
    /// Chat requests per minute per session; 0 disables the limit.
    pub chat_session_requests_per_minute: u32,
    /// Model tokens one session may use in all; 0 disables the limit.
    pub chat_session_token_budget: u64,
    /// Tickets the assistant may open per session.
    pub chat_session_tickets: u32,
    /// Chat requests per minute per project; 0 disables the limit.
    pub chat_project_requests_per_minute: u32,
    /// Model tokens per hour per project; 0 disables the limit.
    pub chat_project_tokens_per_hour: u64,
    /// Tickets the assistant may open per hour per project; 0 disables the limit.
    pub chat_project_tickets_per_hour: u32,
    /// Chat sessions held in memory at most; more are refused with 503 until some go idle.
    pub chat_max_sessions: usize,
    /// Serve `/metrics` on this address instead of the main one (empty: on the main one).
    pub metrics_listen: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            storage: StorageBackend::Embedded,
            store_checkpoint_ms: ApplyTiming::default().checkpoint_every.as_millis() as u64,
            store_apply_gather_ms: ApplyTiming::default().gather.as_millis() as u64,
            jwt_secret: Secret::default(),
            jwt_previous_secrets: Secrets::default(),
            operator_token: Secret::default(),
            public_rate_limit: 10,
            session_rate_limit: 30,
            rate_limit_clients: 100_000,
            trusted_proxies: 0,
            session_ttl_secs: 300,
            log: "info,warp=error,tantivy=warn".into(),
            log_format: LogFormat::Pretty,
            max_connections: 10_000,
            header_read_timeout_secs: 10,
            max_body_bytes: 64 * 1024,
            ws_max_message_bytes: 4096,
            ws_ping_interval_secs: 20,
            ws_subscriber_queue: 256,
            ws_write_timeout_ms: 1000,
            ws_send_buffer_bytes: 64 * 1024,
            ticket_idle_secs: 120,
            shutdown_grace_secs: 10,
            demo: true,
            demo_project_id: "demo".into(),
            scylla_nodes: "127.0.0.1:9042".into(),
            scylla_keyspace: "fleety".into(),
            scylla_consistency: "LOCAL_QUORUM".into(),
            scylla_username: String::new(),
            scylla_password: Secret::default(),
            scylla_replication: "1".into(),
            scylla_auto_migrate: false,
            llm_provider: LlmProviderKind::Auto,
            llm_base_url: String::new(),
            llm_api_key: Secret::default(),
            llm_model: "gpt-4o-mini".into(),
            llm_connect_timeout_secs: 5,
            llm_first_token_timeout_secs: 30,
            llm_idle_timeout_secs: 30,
            llm_max_tokens: 512,
            chat_session_requests_per_minute: 20,
            chat_session_token_budget: 50_000,
            chat_session_tickets: 3,
            chat_project_requests_per_minute: 600,
            chat_project_tokens_per_hour: 2_000_000,
            chat_project_tickets_per_hour: 100,
            chat_max_sessions: 100_000,
            metrics_listen: String::new(),
        }
    }
}

impl Settings {
    /// Reads defaults, then the config file, then the environment.
    pub fn load() -> Result<Settings, String> {
        let file = std::env::var("FLEETY_CONFIG").unwrap_or_else(|_| "fleety.toml".into());
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(&file))
            .merge(Env::prefixed("FLEETY_").ignore(&["CONFIG"]).split("__"));
        Self::from_figment(figment)
    }

    pub fn from_figment(figment: Figment) -> Result<Settings, String> {
        let settings: Settings = figment.extract().map_err(|e| {
            // figment names the key; say where it came from in terms of our variables too.
            let key = e.path.join(".");
            if key.is_empty() {
                format!("configuration error: {e}")
            } else {
                format!(
                    "configuration error in {key} (FLEETY_{}): {}",
                    key.to_ascii_uppercase().replace('.', "__"),
                    e.kind
                )
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("session_ttl_secs", self.session_ttl_secs),
            ("store_checkpoint_ms", self.store_checkpoint_ms),
            ("max_connections", self.max_connections as u64),
            ("rate_limit_clients", self.rate_limit_clients),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("max_body_bytes", self.max_body_bytes),
            ("ws_max_message_bytes", self.ws_max_message_bytes as u64),
            ("ws_ping_interval_secs", self.ws_ping_interval_secs),
            ("ws_subscriber_queue", self.ws_subscriber_queue as u64),
            ("ws_write_timeout_ms", self.ws_write_timeout_ms),
            ("ticket_idle_secs", self.ticket_idle_secs),
            ("llm_connect_timeout_secs", self.llm_connect_timeout_secs),
            (
                "llm_first_token_timeout_secs",
                self.llm_first_token_timeout_secs,
            ),
            ("llm_idle_timeout_secs", self.llm_idle_timeout_secs),
            ("llm_max_tokens", u64::from(self.llm_max_tokens)),
            ("chat_max_sessions", self.chat_max_sessions as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!(
                    "configuration error in {name} (FLEETY_{}): must be greater than 0",
                    name.to_ascii_uppercase()
                ));
            }
        }
        // Past a checkpoint interval, gathering would only hold the applier back.
        if self.store_apply_gather_ms >= self.store_checkpoint_ms {
            return Err(format!(
                "configuration error in store_apply_gather_ms (FLEETY_STORE_APPLY_GATHER_MS): must be less than store_checkpoint_ms ({})",
                self.store_checkpoint_ms
            ));
        }
        if !self.jwt_secret.is_empty() && self.jwt_secret.expose().len() < 32 {
            return Err("configuration error in jwt_secret (FLEETY_JWT_SECRET): must be at least 32 characters".into());
        }
        if self
            .jwt_previous_secrets
            .iter()
            .any(|s| s.expose().len() < 32)
        {
            return Err("configuration error in jwt_previous_secrets (FLEETY_JWT_PREVIOUS_SECRETS): each must be at least 32 characters".into());
        }
        if !self.operator_token.is_empty() && self.operator_token.expose().len() < 16 {
            return Err(
                "configuration error in operator_token (FLEETY_OPERATOR_TOKEN): must be at least 16 characters".into(),
            );
        }
        // Below a few KiB the kernel raises it anyway; far above, one idle peer pins megabytes.
        if !(4096..=16 << 20).contains(&self.ws_send_buffer_bytes) {
            return Err("configuration error in ws_send_buffer_bytes (FLEETY_WS_SEND_BUFFER_BYTES): must be between 4096 and 16777216".into());
        }
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return Err("configuration error in metrics_listen (FLEETY_METRICS_LISTEN): must be an address such as 127.0.0.1:9090".into());
        }
        if self.llm_provider == LlmProviderKind::Openai && self.llm_base_url.is_empty() {
            return Err("configuration error in llm_base_url (FLEETY_LLM_BASE_URL): required when llm_provider is openai".into());
        }
        if !self.llm_base_url.is_empty() {
            let ok = self
                .llm_base_url
                .parse::<http::Uri>()
                .ok()
                .is_some_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                });
            if !ok {
                return Err("configuration error in llm_base_url (FLEETY_LLM_BASE_URL): must be an http or https URL".into());
            }
        }
        Ok(())
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
    pub fn ws_write_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_write_timeout_ms)
    }
    pub fn ws_ping_interval(&self) -> Duration {
        Duration::from_secs(self.ws_ping_interval_secs)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// Boolean settings as people write them: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in
/// any case. The environment has no types, so figment hands over `1` as a number and `Yes` as
/// a string; both must mean what they say.
mod flag {
    use serde::de::{self, Deserializer, Unexpected, Visitor};
    use std::fmt;

    const EXPECTED: &str = "true/false, 1/0, yes/no or on/off";

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        d.deserialize_any(Flag)
    }

    /// The word a flag is written as, if it is one.
    fn parse(word: &str) -> Option<bool> {
        const WORDS: [(&str, bool); 8] = [
            ("true", true),
            ("false", false),
            ("1", true),
            ("0", false),
            ("yes", true),
            ("no", false),
            ("on", true),
            ("off", false),
        ];
        let word = word.trim();
        WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
            .map(|&(_, value)| value)
    }

    struct Flag;

    impl Visitor<'_> for Flag {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(Unexpected::Unsigned(v), &EXPECTED)),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &EXPECTED)),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            parse(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &EXPECTED))
        }
    }
}

#[cfg(test)]
// figment's `Jail` fixes its closures' error type, which is large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        for (k, v) in pairs {
            figment = figment.merge(Serialized::default(k, v));
        }
        Settings::from_figment(figment)
    }

    #[test]
    fn defaults_are_valid() {
        let s = with(&[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_rate_limit, 10);
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
                    .merge(Serialized::default("store_checkpoint_ms", checkpoint))
                    .merge(Serialized::default("store_apply_gather_ms", gather)),
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
        let s = timing(50, 0).unwrap();
        assert_eq!((s.store_checkpoint_ms, s.store_apply_gather_ms), (50, 0));
        let s = with(&[]).unwrap();
        assert_eq!((s.store_checkpoint_ms, s.store_apply_gather_ms), (100, 5));
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
                    (s.scylla_auto_migrate, s.demo),
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
                        (s.scylla_auto_migrate, s.demo),
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
            let got: Vec<&str> = s.jwt_previous_secrets.iter().map(Secret::expose).collect();
            assert_eq!(got, [a.as_str(), b.as_str()]);
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            // Only the variables set here: the test runner's own FLEETY_* ones must not leak in.
            jail.clear_env();
            jail.create_file("fleety.toml", &format!("jwt_previous_secrets = [{a:?}]\n"))?;
            let s = Settings::load().map_err(|e| e.to_string())?;
            assert_eq!(s.jwt_previous_secrets, Secrets::new([Secret::new(&a)]));
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
}
