//! The real `fleety` binary for the crash tests (issues 28 and 29): started on a store of its
//! own (a data directory, or a fresh keyspace on the CQL node with `FLEETY_TEST_BACKEND=cql`),
//! killed with SIGKILL (`Child::kill` on Unix: no shutdown runs, nothing is flushed), and
//! started again on the same store. Its JSON log lines are kept, so a test can wait for the
//! moment it kills at instead of sleeping towards it.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleety_actors::store::Store;
use serde_json::Value;

use crate::helpers::{cql_backend, until};

/// Where a server's data lives across its restarts.
pub enum Place {
    Dir(tempfile::TempDir),
    Keyspace(String, tempfile::TempDir),
}

impl Place {
    /// A fresh place on the store the API tests run on.
    pub fn fresh() -> Place {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = tempfile::tempdir().expect("temp dir");
        if cql_backend() {
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Place::Keyspace(format!("fleety_crash_{}_{n}", std::process::id()), dir)
        } else {
            Place::Dir(dir)
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        match self {
            Place::Dir(d) | Place::Keyspace(_, d) => d.path(),
        }
    }

    /// The store the server left, opened by the test while no server runs (the embedded
    /// store's file lock would refuse it otherwise).
    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            Place::Dir(d) => Arc::new(crate::helpers::open_store(d.path()).await),
            Place::Keyspace(ks, _) => Arc::new(crate::support_cql::store(ks).await),
        }
    }

    /// Drops the keyspace, so the test node does not fill with them.
    pub async fn remove(self) {
        if let Place::Keyspace(ks, _) = &self {
            let session = fleety::store::scylla::connect(&crate::support_cql::config(ks))
                .await
                .expect("connect to the CQL node");
            session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
                .await
                .expect("drop the test keyspace");
        }
    }
}

/// A log line to SIGKILL the server at: its message, and a text one of its fields holds.
type Trigger = Arc<Mutex<Option<(String, String)>>>;

/// One run of the binary; SIGKILLed when dropped.
pub struct RealServer {
    child: Arc<Mutex<Child>>,
    pub base: String,
    logs: Arc<Mutex<Vec<Value>>>,
    trigger: Trigger,
}

impl RealServer {
    /// Starts the binary on `place` with `env` on top of the settings every crash test uses,
    /// and returns once it serves; the demo admin key is printed on the first start only.
    pub fn start(place: &Place, env: &[(&str, String)]) -> (RealServer, Option<String>) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleety"));
        // The binary refuses unknown FLEETY_* settings; give it none of the test run's own.
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("FLEETY_")) {
            cmd.env_remove(name);
        }
        cmd.env("FLEETY_DATA_DIR", place.dir())
            .env("FLEETY_LISTEN", "127.0.0.1:0")
            .env("FLEETY_PUBLIC_RATE_LIMIT", "0")
            .env("FLEETY_LOG_FORMAT", "json")
            .env("FLEETY_LOG", "warn");
        if let Place::Keyspace(ks, _) = place {
            cmd.env("FLEETY_STORAGE", "scylla")
                .env("FLEETY_SCYLLA_NODES", crate::support_cql::cql_node())
                .env("FLEETY_SCYLLA_KEYSPACE", ks)
                .env("FLEETY_SCYLLA_AUTO_MIGRATE", "true");
        }
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the fleety binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let child = Arc::new(Mutex::new(child));
        let trigger: Trigger = Arc::default();
        let (kept, killer, armed) = (logs.clone(), child.clone(), trigger.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                // Killed from here, as the line is read: the server has gone on for as long
                // as reading the pipe took, no longer.
                if let Some((message, text)) = &*armed.lock().unwrap() {
                    if value["message"] == message.as_str() && value.to_string().contains(text) {
                        let _ = killer.lock().unwrap().kill();
                    }
                }
                kept.lock().unwrap().push(value);
            }
        });
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut base = None;
        let mut key = None;
        // The banner ends with the line that shows how to open a ticket, or the API
        // reference's without the demo.
        for line in lines.by_ref() {
            let line = line.expect("the banner");
            if let Some(url) = line.strip_prefix("Fleety is listening on ") {
                base = Some(url.trim().to_owned());
            } else if let Some(k) = line.trim().strip_prefix("demo admin key:") {
                key = Some(k.trim().to_owned());
            } else if line.trim().starts_with("try:") {
                break;
            }
        }
        let Some(base) = base else {
            let _ = child.lock().unwrap().kill();
            panic!(
                "the server never said where it listens: {:#?}",
                logs.lock().unwrap()
            );
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let server = RealServer {
            child,
            base,
            logs,
            trigger,
        };
        (server, key)
    }

    /// SIGKILL, and waits until the process is gone (its file lock with it).
    pub fn kill(self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        child.wait().expect("reap the server");
    }

    /// Has the server SIGKILLed the moment it logs `message` with `text` in a field.
    pub fn kill_when_logged(&self, message: &str, text: &str) {
        *self.trigger.lock().unwrap() = Some((message.to_owned(), text.to_owned()));
    }

    /// The log lines so far whose message is `message`.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["message"] == message)
            .cloned()
            .collect()
    }

    /// Every log line so far, and whether the process still runs, for a failure's message.
    pub fn logged_all(&self) -> (Vec<Value>, String) {
        let state = match self.child.lock().unwrap().try_wait() {
            Ok(None) => "running".to_owned(),
            other => format!("{other:?}"),
        };
        (self.logs.lock().unwrap().clone(), state)
    }

    /// Waits until `n` lines with `message` were logged.
    pub async fn await_logged(&self, message: &str, n: usize) -> Vec<Value> {
        let what = format!("{n} log lines '{message}'");
        until(&what, Duration::from_secs(60), async || {
            let got = self.logged(message);
            (got.len() >= n).then_some(got)
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// An HTTP client that gives up on a killed server soon.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
