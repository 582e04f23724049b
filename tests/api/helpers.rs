//! Starts a real server on port 0 and talks to it over real sockets.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fleety::app::Application;
use fleety::config::{Secret, Settings};
use fleety::http::Ctx;
use fleety::store::embedded::EmbeddedStore;
use fleety_actors::clock::{Clock, ManualClock, SystemClock};
use fleety_actors::domain::ProjectId;
use fleety_actors::store::Store;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const OPERATOR: &str = "operator-token-for-tests";
/// The secret test servers sign session tokens with, so tests can sign tokens of their own.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestApp {
    pub base: String,
    pub ws_base: String,
    pub admin_key: String,
    pub http: reqwest::Client,
    pub ctx: Arc<Ctx>,
    pub dir: Arc<tempfile::TempDir>,
    pub keyspace: String,
    /// The demo project's real id. Tests address it as `demo`; the helpers map that for them.
    pub project: String,
    /// Where `/metrics` is served when the settings give it an address of its own.
    pub metrics_addr: Option<std::net::SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct Options {
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub dir: Option<Arc<tempfile::TempDir>>,
    /// With the CQL backend: the keyspace to use (this run's shared one when `None`).
    pub keyspace: Option<String>,
    /// The demo project's id (a fresh one per server on the shared CQL keyspace when `None`).
    pub project: Option<String>,
}

/// What a restarted server needs to find the same data.
pub struct Restart {
    pub dir: Arc<tempfile::TempDir>,
    pub keyspace: String,
    pub project: String,
}

impl Restart {
    pub fn options(self) -> Options {
        Options {
            dir: Some(self.dir),
            keyspace: Some(self.keyspace),
            project: Some(self.project),
            ..Options::default()
        }
    }
}

/// Which store the API tests run on: `FLEETY_TEST_BACKEND=cql` runs them on the CQL node.
pub fn cql_backend() -> bool {
    std::env::var("FLEETY_TEST_BACKEND").is_ok_and(|b| b == "cql")
}

impl Default for Options {
    fn default() -> Self {
        let mut settings = Settings::default();
        settings.server.listen = "127.0.0.1:0".parse().unwrap();
        settings.auth.jwt_secret = Secret::new(JWT_SECRET);
        settings.auth.operator_token = Secret::new(OPERATOR);
        settings.limits.public_per_minute = 0;
        settings.limits.sessions_per_minute = 0;
        settings.limits.visitor_per_minute = 0;
        Self {
            settings,
            clock: Arc::new(SystemClock),
            dir: None,
            keyspace: None,
            project: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with_settings(change: impl FnOnce(&mut Settings)) -> TestApp {
    let mut options = Options::default();
    change(&mut options.settings);
    spawn_with(options).await
}

pub async fn spawn_with_clock(clock: ManualClock) -> TestApp {
    spawn_with(Options {
        clock: Arc::new(clock),
        ..Options::default()
    })
    .await
}

pub fn manual_clock() -> ManualClock {
    ManualClock::new(Utc::now())
}

/// A server whose actors read the time from `clock`, with `change` made to its settings.
pub async fn spawn_clocked(clock: &ManualClock, change: impl FnOnce(&mut Settings)) -> TestApp {
    let mut options = Options {
        clock: Arc::new(clock.clone()),
        ..Options::default()
    };
    change(&mut options.settings);
    spawn_with(options).await
}

pub async fn spawn_with(options: Options) -> TestApp {
    let filter = "warn,warp=error".parse().expect("a log filter");
    fleety::telemetry::init(&filter, fleety::config::LogFormat::Pretty);
    let dir = options
        .dir
        .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("temp dir")));
    let mut settings = options.settings;
    settings.store.data_dir = dir.path().to_path_buf();
    // On CQL, all servers of a run share one keyspace (a keyspace per server would exhaust a
    // small test node), and each gets its own demo project instead.
    let keyspace = options
        .keyspace
        .unwrap_or_else(|| format!("fleety_api_{}", std::process::id()));
    let project = options.project.unwrap_or_else(|| {
        if cql_backend() {
            format!("demo_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
        } else {
            "demo".to_owned()
        }
    });
    settings.demo.project_id = ProjectId::parse(&project).expect("a project id");
    let store: Arc<dyn Store> = if cql_backend() {
        Arc::new(crate::support_cql::store(&keyspace).await)
    } else {
        Arc::new(open_store(dir.path()).await)
    };
    let app = Application::build_with(settings, store, options.clock)
        .await
        .expect("build app");
    let demo = app.ensure_demo().await.expect("demo project");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let ctx = app.ctx();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .expect("server ran");
    });
    TestApp {
        base: format!("http://{addr}"),
        ws_base: format!("ws://{addr}"),
        admin_key: demo.admin_key,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        ctx,
        dir,
        keyspace,
        project,
        metrics_addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Opens the store, waiting for a server that was just stopped to release the file lock: its
/// writer thread lets go once the last handle to the old store is dropped.
pub async fn open_store(dir: &std::path::Path) -> EmbeddedStore {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match EmbeddedStore::open(dir) {
            Ok(store) => return store,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("open store: {e}"),
        }
    }
}

impl TestApp {
    /// Stops the server gracefully and waits until it has flushed its store. Returns what a
    /// restart needs to find the same data.
    pub async fn stop(mut self) -> Restart {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stopped in time")
                .unwrap();
        }
        Restart {
            dir: self.dir.clone(),
            keyspace: self.keyspace.clone(),
            project: self.project.clone(),
        }
    }

    /// Maps the `demo` project in a path to this server's demo project.
    pub fn at(&self, path: &str) -> String {
        for prefix in ["/v1/tickets/", "/v1/projects/", "/v1/kb/"] {
            if let Some(rest) = path.strip_prefix(prefix) {
                if rest == "demo" || rest.starts_with("demo/") || rest.starts_with("demo?") {
                    return format!("{prefix}{}{}", self.project, &rest[4..]);
                }
            }
        }
        path.to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, self.at(path))
    }

    pub async fn post_json(&self, path: &str, mut body: Value) -> reqwest::Response {
        if body["project_id"] == "demo" {
            body["project_id"] = Value::String(self.project.clone());
        }
        self.http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn patch_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .patch(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn admin_patch(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .patch(self.url(path))
            .bearer_auth(&self.admin_key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.admin_key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.admin_key)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(&self.admin_key)
            .send()
            .await
            .unwrap()
    }

    /// A fresh anonymous session token for the demo project.
    pub async fn session_token(&self) -> String {
        let resp = self
            .post_json("/v1/init-session", json!({"project_id": "demo"}))
            .await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    /// POSTs a chat request with a session token.
    pub async fn chat(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// Creates a ticket in the demo project and returns its slug.
    pub async fn create_ticket(&self, title: &str) -> String {
        let resp = self
            .post_json(
                "/v1/tickets/demo",
                json!({ "title": title, "description": "details" }),
            )
            .await;
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.unwrap();
        body["slug"].as_str().unwrap().to_owned()
    }

    pub async fn post_message(&self, slug: &str, content: &str) -> Value {
        let resp = self
            .post_json(
                &format!("/v1/tickets/demo/{slug}/messages"),
                json!({ "author": "user", "content": content }),
            )
            .await;
        assert_eq!(resp.status(), 201, "posting failed");
        resp.json().await.unwrap()
    }

    /// The demo project's ticket `slug`, as the actors name it.
    pub fn key(&self, slug: &str) -> fleety_actors::ticket::TicketKey {
        fleety_actors::ticket::TicketKey {
            project: fleety_actors::domain::ProjectId::parse(&self.project).unwrap(),
            slug: fleety_actors::domain::Slug::parse(slug).unwrap(),
        }
    }

    pub async fn ticket(&self, slug: &str) -> Value {
        let resp = self.get(&format!("/v1/tickets/demo/{slug}")).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// The project feed, as the inbox opens it: a feed token first, then the socket.
    pub async fn connect_feed(&self) -> Socket {
        let token: Value = self
            .admin_post("/v1/projects/demo/feed-token", serde_json::json!({}))
            .await
            .json()
            .await
            .expect("a feed token");
        self.connect(token["url"].as_str().expect("the feed's URL"))
            .await
    }

    pub async fn connect(&self, path: &str) -> Socket {
        self.connect_with(path, None)
            .await
            .expect("websocket connects")
    }

    /// Connects a WebSocket; on a refused upgrade returns the HTTP status.
    pub async fn connect_with(&self, path: &str, origin: Option<&str>) -> Result<Socket, u16> {
        let mut request = format!("{}{}", self.ws_base, self.at(path))
            .into_client_request()
            .unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket failed: {e}"),
        }
    }
}

/// The next JSON event on a socket, skipping pings; panics after 10 s.
pub async fn next_event(socket: &mut Socket) -> Value {
    try_next_event(socket, Duration::from_secs(10))
        .await
        .expect("an event arrived")
}

pub async fn try_next_event<S>(socket: &mut S, wait: Duration) -> Option<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .ok()??;
        match frame {
            Ok(Message::Text(text)) => {
                return Some(serde_json::from_str(&text).expect("events are JSON"))
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Waits until `done` holds: for effects that land on their own time (a ticket's ticker
/// passivating it, a closed socket's task ending). A condition, not a timing: see [`until`].
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    until(what, Duration::from_secs(20), async || {
        done().await.then_some(())
    })
    .await
}

/// Waits until `check` gives a value: a condition polled every 20 ms, never a timing. `limit`
/// only bounds a test that would otherwise hang (an email held by a claim waits for it).
pub async fn until<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

/// Splits an SSE body into its `data:` payloads, checking the framing on the way: every event
/// is exactly one `data: ` line followed by a blank line.
pub fn sse_data(body: &str) -> Vec<String> {
    assert!(
        body.ends_with("\n\n"),
        "an SSE body ends with a blank line: {body:?}"
    );
    body.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|event| {
            let data = event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a `data: ` event: {event:?}"));
            assert!(!data.contains('\n'), "one line per event: {event:?}");
            data.to_owned()
        })
        .collect()
}

/// Reads an SSE answer: checks its content type and framing and that it ends with `[DONE]`;
/// returns the JSON payloads before it.
pub async fn sse_json(resp: reqwest::Response) -> Vec<Value> {
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let body = resp.text().await.unwrap();
    let mut data = sse_data(&body);
    assert_eq!(data.pop().as_deref(), Some("[DONE]"), "{body}");
    data.iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

/// The text of `/v1/chat/tools` deltas.
pub fn delta_text(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .expect("a content delta")
        })
        .collect()
}

/// The text of `/v1/chat` events.
pub fn content_text(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| e["content"].as_str().expect("a content event"))
        .collect()
}

/// RFC 6238 with SHA-1, six digits and 30-second steps, computed here rather than by the
/// server's code: the code of base-32 `secret` for the step `offset` steps after `at`'s.
pub fn totp_code(secret: &str, at: chrono::DateTime<Utc>, offset: i64) -> String {
    use hmac::{Hmac, Mac};
    let key = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let step = at.timestamp().div_euclid(30) + offset;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let at = usize::from(h[19] & 0x0f);
    let bin = u32::from_be_bytes([h[at] & 0x7f, h[at + 1], h[at + 2], h[at + 3]]);
    format!("{:06}", bin % 1_000_000)
}
