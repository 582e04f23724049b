//! Starts a real server on port 0 and talks to it over real sockets.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fleety::app::Application;
use fleety::config::{Secret, Settings};
use fleety::http::Ctx;
use fleety::store::embedded::EmbeddedStore;
use fleety_actors::clock::{Clock, ManualClock, SystemClock};
use fleety_actors::store::Store;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const OPERATOR: &str = "operator-token-for-tests";
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct TestApp {
    pub base: String,
    pub ws_base: String,
    pub admin_key: String,
    pub http: reqwest::Client,
    pub ctx: Arc<Ctx>,
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct Options {
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub dir: Option<Arc<tempfile::TempDir>>,
}

impl Default for Options {
    fn default() -> Self {
        let settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            jwt_secret: Secret::new("test-secret-test-secret-test-secret!"),
            operator_token: Secret::new(OPERATOR),
            public_rate_limit: 0,
            session_rate_limit: 0,
            ..Settings::default()
        };
        Self {
            settings,
            clock: Arc::new(SystemClock),
            dir: None,
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

pub async fn spawn_with(options: Options) -> TestApp {
    fleety::telemetry::init("warn,warp=error", fleety::config::LogFormat::Pretty);
    let dir = options
        .dir
        .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("temp dir")));
    let mut settings = options.settings;
    settings.data_dir = dir.path().to_path_buf();
    let store: Arc<dyn Store> = Arc::new(open_store(dir.path()).await);
    let app = Application::build_with(settings, store, options.clock)
        .await
        .expect("build app");
    let demo = app.ensure_demo().await.expect("demo project");
    let addr = app.local_addr();
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
        stop: Some(stop),
        task: Some(task),
    }
}

/// Opens the store, waiting for a server that was just stopped to release the file lock: its
/// writer thread lets go once the last handle to the old store is dropped.
async fn open_store(dir: &std::path::Path) -> EmbeddedStore {
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
    /// Stops the server gracefully and waits until it has flushed its store.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server stopped in time")
                .unwrap();
        }
        self.dir.clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
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

    pub async fn ticket(&self, slug: &str) -> Value {
        let resp = self.get(&format!("/v1/tickets/demo/{slug}")).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    pub async fn connect(&self, path: &str) -> Socket {
        self.connect_with(path, None)
            .await
            .expect("websocket connects")
    }

    /// Connects a WebSocket; on a refused upgrade returns the HTTP status.
    pub async fn connect_with(&self, path: &str, origin: Option<&str>) -> Result<Socket, u16> {
        let mut request = format!("{}{}", self.ws_base, path)
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

pub fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}
