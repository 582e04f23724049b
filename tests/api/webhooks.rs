//! Webhooks, end to end: endpoints registered over the API, events delivered to a receiver on
//! port 0 that checks every signature with an independent implementation (the
//! `standardwebhooks` crate), retries, disabling, replay, restarts, and the guards.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::*;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
    at: Instant,
}

/// How the receiver answers one request.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    /// Never answer (to make the sender time out).
    hang: bool,
}

impl Answer {
    fn status(status: u16) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            hang: false,
        }
    }
}

/// A webhook receiver: answers from a script, then with `fallback`.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    fallback: Arc<Mutex<Answer>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let r = Receiver {
            url,
            got: Arc::default(),
            script: Arc::default(),
            fallback: Arc::new(Mutex::new(Answer::status(200))),
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(me.clone().serve(stream));
            }
        });
        r
    }

    async fn serve(self, mut stream: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let Ok(n) = stream.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let Ok(n) = stream.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        let answer = {
            let next = self.script.lock().unwrap().pop_front();
            next.unwrap_or_else(|| self.fallback.lock().unwrap().clone())
        };
        self.got.lock().unwrap().push(Received {
            headers,
            body,
            at: Instant::now(),
        });
        if answer.hang {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let mut response = format!(
            "HTTP/1.1 {} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n",
            answer.status
        );
        for (name, value) in &answer.headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        let _ = stream.write_all(response.as_bytes()).await;
    }

    fn answer_next(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().extend(answers);
    }

    fn answer_always(&self, answer: Answer) {
        *self.fallback.lock().unwrap() = answer;
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until the receiver has had `n` requests, and returns them.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} requests, not {n}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks a request's signature with the `standardwebhooks` crate and returns its payload.
fn verified(secret: &str, r: &Received) -> Value {
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let value = r.headers.get(name).unwrap_or_else(|| panic!("no {name}"));
        headers.insert(name, value.parse().unwrap());
    }
    let hook = standardwebhooks::Webhook::new(secret).expect("a valid secret");
    hook.verify(r.body.as_bytes(), &headers)
        .unwrap_or_else(|e| panic!("the signature does not verify: {e:?}"));
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    serde_json::from_str(&r.body).unwrap()
}

/// The webhook tests run one at a time: on CQL they share a keyspace of their own, and every
/// dispatcher on a keyspace sends what is due there, with its own settings, so another test's
/// server would send this test's deliveries. (Each test's server stops with its runtime.)
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server whose store no other test's dispatcher reads (see [`ONE_AT_A_TIME`]).
async fn isolated(change: impl FnOnce(&mut fleety::config::Settings)) -> TestApp {
    let mut options = Options::default();
    change(&mut options.settings);
    if cql_backend() {
        options.keyspace = Some(format!("fleety_hooks_{}", std::process::id()));
    }
    spawn_with(options).await
}

/// A server that may call the receiver on 127.0.0.1, retrying on `schedule`.
async fn app_with_schedule(schedule: &str) -> TestApp {
    let schedule = schedule.parse().expect("a retry schedule");
    isolated(move |s| {
        s.webhooks.allow_private = true;
        s.webhooks.retry_schedule = schedule;
    })
    .await
}

async fn register(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let resp = app
        .admin_post(
            "/v1/projects/demo/webhooks",
            json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(app: &TestApp, hook: &str) -> Vec<Value> {
    let resp = app
        .admin_get(&format!("/v1/projects/demo/webhooks/{hook}/deliveries"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["deliveries"].as_array().unwrap().clone()
}

/// Waits until the endpoint's log satisfies `done`.
async fn log_until(app: &TestApp, hook: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = deliveries(app, hook).await;
        if done(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the log never got there: {log:#?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn endpoint(app: &TestApp, hook: &str) -> Value {
    let resp = app
        .admin_get(&format!("/v1/projects/demo/webhooks/{hook}"))
        .await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn endpoints_are_managed_over_the_api_and_the_secret_is_shown_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let app = isolated(|_| {}).await;
    let resp = app
        .admin_post(
            "/v1/projects/demo/webhooks",
            json!({"url": "https://hooks.example.com/fleety", "events": ["ticket.created", "message.created", "ticket.created"]}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(
        created["events"],
        json!(["ticket.created", "message.created"])
    );
    assert_eq!(created["enabled"], true);

    let listed: Value = app
        .admin_get("/v1/projects/demo/webhooks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    assert!(listed["webhooks"][0].get("secret").is_none());
    assert!(endpoint(&app, &id).await.get("secret").is_none());

    let path = format!("/v1/projects/demo/webhooks/{id}");
    let changed: Value = app
        .admin_patch(
            &path,
            json!({"events": ["ticket.assigned"], "enabled": false, "url": "https://other.example.com/x"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(changed["events"], json!(["ticket.assigned"]));
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["url"], "https://other.example.com/x");
    assert_eq!(deliveries(&app, &id).await, Vec::<Value>::new());

    // Bad input, each with a clear error.
    for (body, status, says) in [
        (
            json!({"url": "ftp://x.example.com", "events": ["ticket.created"]}),
            400,
            "http or https",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "events": ["ticket.created"]}),
            400,
            "private",
        ),
        (
            json!({"url": "http://169.254.169.254/latest", "events": ["ticket.created"]}),
            400,
            "link-local",
        ),
        (
            json!({"url": "http://localhost:8080/", "events": ["ticket.created"]}),
            400,
            "loopback",
        ),
        (
            json!({"url": "https://x.example.com", "events": ["ticket.deleted"]}),
            400,
            "unknown event",
        ),
        (
            json!({"url": "https://x.example.com", "events": []}),
            400,
            "at least one",
        ),
        (json!({"url": "https://x.example.com"}), 400, "events"),
        (
            json!({"url": "https://x.example.com", "events": ["ticket.created"], "secret": "mine"}),
            400,
            "secret",
        ),
    ] {
        let resp = app
            .admin_post("/v1/projects/demo/webhooks", body.clone())
            .await;
        assert_eq!(resp.status(), status, "{body}");
        let err: Value = resp.json().await.unwrap();
        assert!(error_of(&err).contains(says), "{body}: {err}");
    }
    let resp = app
        .admin_patch(&path, json!({"url": "http://10.0.0.1/"}))
        .await;
    assert_eq!(resp.status(), 400);
    for missing in [
        "/v1/projects/demo/webhooks/not-a-uuid",
        "/v1/projects/demo/webhooks/7f0c6d2e-5a43-4c1c-9d0e-4b8f1f7f2a11",
    ] {
        assert_eq!(app.admin_get(missing).await.status(), 404);
        assert_eq!(app.admin_delete(missing).await.status(), 404);
    }
    let replay = format!("{path}/deliveries/msg_nothing/replay");
    let resp = app.admin_patch(&path, json!({"enabled": true})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.admin_post(&replay, json!({})).await.status(), 404);

    // Only the project's admin key may look.
    let anonymous = app.get(&path).await;
    assert_eq!(anonymous.status(), 401);

    assert_eq!(app.admin_delete(&path).await.status(), 200);
    assert_eq!(app.admin_get(&path).await.status(), 404);
    assert_eq!(app.admin_delete(&path).await.status(), 404);
}

#[tokio::test]
async fn every_event_arrives_signed_as_the_specification_says() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = app_with_schedule("5s").await;
    let all = [
        "ticket.created",
        "message.created",
        "ticket.status_changed",
        "ticket.assigned",
    ];
    let (hook, secret) = register(&app, &receiver.url, &all).await;
    let slug = app.create_ticket("Printer on fire").await;
    let message = app.post_message(&slug, "It is still burning").await;
    let path = format!("/v1/tickets/demo/{slug}");
    assert_eq!(
        app.admin_patch(&path, json!({"status": "pending"}))
            .await
            .status(),
        200
    );
    let resp = app.admin_patch(&path, json!({"assignee": "Alex"})).await;
    assert_eq!(resp.status(), 200);

    let got = receiver.wait_for(4).await;
    let mut payloads: Vec<Value> = got.iter().map(|r| verified(&secret, r)).collect();
    payloads.sort_by_key(|p| all.iter().position(|e| *e == p["type"]).unwrap());
    let types: Vec<&str> = payloads
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, all);
    for p in &payloads {
        assert!(p["timestamp"].as_str().unwrap().ends_with('Z'), "{p}");
    }
    assert_eq!(payloads[0]["data"]["slug"], slug);
    assert_eq!(payloads[0]["data"]["title"], "Printer on fire");
    assert_eq!(payloads[1]["data"]["ticket_slug"], slug);
    assert_eq!(payloads[1]["data"]["message"]["id"], message["data"]["id"]);
    assert_eq!(
        payloads[1]["data"]["message"]["content"],
        "It is still burning"
    );
    assert_eq!(payloads[2]["data"]["ticket"]["status"], "pending");
    assert_eq!(payloads[2]["data"]["previous"], "open");
    assert_eq!(payloads[3]["data"]["ticket"]["assignee"], "Alex");
    assert_eq!(payloads[3]["data"]["previous"], Value::Null);
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|r| r.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(ids.len(), 4, "each event has its own webhook-id");

    let log = log_until(&app, &hook, |log| {
        log.len() == 4 && log.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    for d in &log {
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_status"], 200);
        assert!(ids.contains(d["id"].as_str().unwrap()));
    }
    // Newest first.
    assert_eq!(log[0]["event_type"], "ticket.assigned");
    assert_eq!(log[3]["event_type"], "ticket.created");

    // Read receipts are announced to no endpoint, even one that takes every event there is.
    // The ticket is marked read by the visitor and by an agent, then resolved. The ticket
    // writes its changes in order, each with the deliveries it owes, so once the resolution's
    // delivery is in the log, any delivery owed for the receipts is in it too.
    let read = format!("{path}/messages/read");
    let resp = app.patch_json(&read, json!({"reader": "user"})).await;
    assert_eq!(resp.status(), 200);
    let resp = app.admin_patch(&read, json!({"reader": "admin"})).await;
    assert_eq!(resp.status(), 200);
    let resp = app.admin_patch(&path, json!({"status": "resolved"})).await;
    assert_eq!(resp.status(), 200);
    let resolved = |d: &Value| d["payload"]["data"]["ticket"]["status"] == "resolved";
    let log = log_until(&app, &hook, |log| log.iter().any(resolved)).await;
    let since: Vec<&Value> = log
        .iter()
        .filter(|d| !ids.contains(d["id"].as_str().unwrap()))
        .collect();
    assert_eq!(since.len(), 1, "{since:#?}");
    assert!(resolved(since[0]), "{since:#?}");
    let got = receiver.wait_for(5).await;
    assert_eq!(
        got[4].headers["webhook-id"],
        since[0]["id"].as_str().unwrap()
    );
}

#[tokio::test]
async fn forty_creates_at_once_leave_exactly_the_twenty_endpoints_a_project_may_have() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let app = isolated(|_| {}).await;
    let creates = (0..40).map(|i| {
        let body =
            json!({"url": format!("https://hooks-{i}.example.com/"), "events": ["ticket.created"]});
        app.admin_post("/v1/projects/demo/webhooks", body)
    });
    let answers = futures_util::future::join_all(creates).await;
    let (mut created, mut refused) = (0, 0);
    for resp in answers {
        match resp.status().as_u16() {
            201 => created += 1,
            409 => {
                let err: Value = resp.json().await.unwrap();
                assert_eq!(
                    error_of(&err),
                    "a project may have at most 20 webhooks; delete one first"
                );
                refused += 1;
            }
            other => panic!("a create answered {other}: {:?}", resp.text().await),
        }
    }
    assert_eq!((created, refused), (20, 20));
    let listed: Value = app
        .admin_get("/v1/projects/demo/webhooks")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn an_endpoint_whose_url_the_rule_now_refuses_cannot_be_turned_back_on() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Registered while private addresses were allowed, and turned off.
    let app = isolated(|s| s.webhooks.allow_private = true).await;
    let (hook, _) = register(&app, "http://127.0.0.1:9/hooks", &["ticket.created"]).await;
    let path = format!("/v1/projects/demo/webhooks/{hook}");
    let resp = app.admin_patch(&path, json!({"enabled": false})).await;
    assert_eq!(resp.status(), 200);
    // The server restarts on the same data without that allowance.
    let restart = app.stop().await;
    let app = spawn_with(restart.options()).await;
    let resp = app.admin_patch(&path, json!({"enabled": true})).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(error_of(&err).contains("loopback"), "{err}");
    assert!(error_of(&err).contains("change the url"), "{err}");
    assert_eq!(endpoint(&app, &hook).await["enabled"], false);
    // With a url the rule accepts, it comes back on.
    let public = json!({"enabled": true, "url": "https://hooks.example.com/x"});
    let resp = app.admin_patch(&path, public).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(endpoint(&app, &hook).await["enabled"], true);
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_its_id_until_it_lands_and_retry_after_is_honoured() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = app_with_schedule("100ms,100ms,100ms").await;
    let (hook, secret) = register(&app, &receiver.url, &["ticket.created"]).await;
    let asks = Answer {
        headers: vec![("retry-after", "1".into())],
        ..Answer::status(503)
    };
    receiver.answer_next([Answer::status(500), asks]);
    app.create_ticket("Retry me").await;
    let got = receiver.wait_for(3).await;
    let first = &got[0].headers["webhook-id"];
    for r in &got {
        verified(&secret, r);
        assert_eq!(&r.headers["webhook-id"], first, "one delivery, one id");
    }
    // After the 503 the receiver asked for a second, far more than the schedule's 100 ms.
    assert!(got[2].at - got[1].at >= Duration::from_millis(900));
    let log = log_until(&app, &hook, |log| log[0]["status"] == "succeeded").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["attempts"], 3);
    assert_eq!(log[0]["last_status"], 200);
    assert_eq!(endpoint(&app, &hook).await["enabled"], true);
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_disabled_and_a_replay_sends_again() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    receiver.answer_always(Answer::status(500));
    let app = app_with_schedule("50ms,50ms").await;
    let (hook, secret) =
        register(&app, &receiver.url, &["ticket.created", "message.created"]).await;
    let slug = app.create_ticket("Down").await;
    let log = log_until(&app, &hook, |log| log[0]["status"] == "failed").await;
    assert_eq!(log[0]["attempts"], 3);
    assert_eq!(log[0]["last_status"], 500);
    assert_eq!(log[0]["last_error"], "HTTP 500");
    let e = endpoint(&app, &hook).await;
    assert_eq!(e["enabled"], false);
    assert!(
        e["disabled_reason"]
            .as_str()
            .unwrap()
            .starts_with("every delivery failed"),
        "{e}"
    );
    assert_eq!(receiver.got().len(), 3);

    // A disabled endpoint is owed nothing new, and replays wait until it is on again.
    app.post_message(&slug, "anyone?").await;
    let path = format!("/v1/projects/demo/webhooks/{hook}");
    let replay = format!(
        "{path}/deliveries/{}/replay",
        log[0]["id"].as_str().unwrap()
    );
    assert_eq!(app.admin_post(&replay, json!({})).await.status(), 409);
    let on: Value = app
        .admin_patch(&path, json!({"enabled": true}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(on["disabled_reason"], Value::Null);
    assert_eq!(deliveries(&app, &hook).await.len(), 1);

    receiver.answer_always(Answer::status(204));
    let resp = app.admin_post(&replay, json!({})).await;
    assert_eq!(resp.status(), 202);
    let got = receiver.wait_for(4).await;
    let payload = verified(&secret, &got[3]);
    assert_eq!(payload["type"], "ticket.created");
    assert_eq!(got[3].headers["webhook-id"], log[0]["id"].as_str().unwrap());
    let log = log_until(&app, &hook, |log| log[0]["status"] == "succeeded").await;
    assert_eq!(log[0]["attempts"], 1);
    assert_eq!(log[0]["last_status"], 204);

    // The replay that was sent is in the audit trail, once (the refused one is not), and
    // the payload it sent again is not.
    let trail: Value = app
        .admin_get("/v1/projects/demo/audit?action=webhook.delivery_replayed")
        .await
        .json()
        .await
        .unwrap();
    let records = trail["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{trail}");
    assert_eq!(records[0]["actor"]["kind"], "admin_key");
    assert_eq!(records[0]["target"]["kind"], "webhook");
    assert_eq!(records[0]["target"]["id"], hook.as_str());
    assert_eq!(records[0]["changes"]["delivery"], log[0]["id"]);
    assert_eq!(records[0]["changes"]["event"], "ticket.created");
    assert!(!records[0].to_string().contains("\"data\""));
}

#[tokio::test]
async fn a_receiver_that_answers_410_is_turned_off_at_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    receiver.answer_always(Answer::status(410));
    let app = app_with_schedule("50ms,50ms,50ms").await;
    let (hook, _) = register(&app, &receiver.url, &["ticket.created"]).await;
    app.create_ticket("Gone").await;
    let log = log_until(&app, &hook, |log| log[0]["status"] == "failed").await;
    assert_eq!(log[0]["attempts"], 1);
    let e = endpoint(&app, &hook).await;
    assert_eq!(e["enabled"], false);
    assert!(e["disabled_reason"].as_str().unwrap().contains("410"));
}

#[tokio::test]
async fn a_status_and_an_assignee_patched_together_are_one_change_heard_once() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = app_with_schedule("5s").await;
    let events = [
        "ticket.status_changed",
        "ticket.assigned",
        "message.created",
    ];
    let (hook, secret) = register(&app, &receiver.url, &events).await;
    let slug = app.create_ticket("Login").await;
    let mut visitor = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut visitor).await["type"], "subscribed");
    let mut feed = app.connect_feed().await;
    assert_eq!(next_event(&mut feed).await["type"], "subscribed");

    let path = format!("/v1/tickets/demo/{slug}");
    let resp = app
        .admin_patch(&path, json!({"status": "pending", "assignee": "Sam"}))
        .await;
    assert_eq!(resp.status(), 200);
    let changed: Value = resp.json().await.unwrap();
    let version = changed["updated_at"].as_str().unwrap().to_owned();
    assert_eq!(app.ticket(&slug).await["updated_at"], version.as_str());
    // A later message marks the end of what the change told.
    let marker = app.post_message(&slug, "Thanks").await;

    for (who, socket) in [("visitor", &mut visitor), ("feed", &mut feed)] {
        let mut heard = Vec::new();
        let last = loop {
            let event = next_event(socket).await;
            if event["type"] == "new_message" {
                break event;
            }
            heard.push(event);
        };
        assert_eq!(last["payload"]["id"], marker["data"]["id"], "{who}");
        let kinds: Vec<&str> = heard.iter().map(|e| e["type"].as_str().unwrap()).collect();
        // Agents' feed also gets the change's timeline entries, one per field.
        let expected: &[&str] = match who {
            "feed" => &[
                "status_change",
                "assigned",
                "timeline_entry",
                "timeline_entry",
            ],
            _ => &["status_change", "assigned"],
        };
        assert_eq!(kinds, expected, "{who}: {heard:?}");
        for event in heard.iter().filter(|e| e["type"] != "timeline_entry") {
            // One version: the ticket's updated_at moved once, to what the PATCH answered.
            assert_eq!(
                event["payload"]["updated_at"],
                version.as_str(),
                "{who}: {event}"
            );
        }
    }

    // Every delivery is written with the change it announces, so once these have landed the
    // log holds all there will ever be.
    let log = log_until(&app, &hook, |log| {
        log.len() >= 3 && log.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    let mut types: Vec<&str> = log
        .iter()
        .map(|d| d["event_type"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "message.created",
            "ticket.assigned",
            "ticket.status_changed"
        ]
    );
    let got = receiver.got();
    assert_eq!(got.len(), 3, "one delivery per event");
    for r in &got {
        let payload = verified(&secret, r);
        if payload["type"] == "message.created" {
            continue;
        }
        // Both announce the ticket after the whole change.
        let ticket = &payload["data"]["ticket"];
        assert_eq!(ticket["updated_at"], version.as_str(), "{payload}");
        assert_eq!(
            (ticket["status"].as_str(), ticket["assignee"].as_str()),
            (Some("pending"), Some("Sam")),
            "{payload}"
        );
    }
}

#[tokio::test]
async fn a_ticket_opened_from_a_chat_arrives_whole_and_is_announced_with_its_history() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = app_with_schedule("5s").await;
    let events = ["ticket.created", "message.created"];
    let (hook, secret) = register(&app, &receiver.url, &events).await;
    let mut feed = app.connect_feed().await;
    assert_eq!(next_event(&mut feed).await["type"], "subscribed");

    let token = app.session_token().await;
    let conversation = json!([
        {"role": "user", "content": "I was charged twice"},
        {"role": "assistant", "content": "Refunds take five days."},
        {"role": "user", "content": "I want to talk to a human"}
    ]);
    let resp = app
        .chat(
            "/v1/chat/tools",
            &token,
            json!({"messages": conversation, "enable_tool_calling": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let slug = answer["ticket_slug"].as_str().unwrap().to_owned();
    // The history is there the moment the visitor hears of the ticket.
    let ticket = app.ticket(&slug).await;
    let messages = ticket["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 3, "{ticket}");

    // Agents hear of the ticket once, whole, and of its hand-off note; then of the next one
    // (the marker), and of nothing between.
    let created = next_event(&mut feed).await;
    assert_eq!(
        (created["type"].as_str(), created["ticket"].as_str()),
        (Some("ticket_created"), Some(slug.as_str()))
    );
    // Then of the assistant's hand-off note, written once the ticket stands.
    let note = next_event(&mut feed).await;
    assert_eq!(
        (note["type"].as_str(), note["ticket"].as_str()),
        (Some("note_added"), Some(slug.as_str()))
    );
    let marker = app.create_ticket("Marker").await;
    let next = next_event(&mut feed).await;
    assert_eq!(
        (next["type"].as_str(), next["ticket"].as_str()),
        (Some("ticket_created"), Some(marker.as_str())),
        "the copied messages are not announced one by one"
    );

    // Webhooks: the ticket, and each of its messages, in order.
    let log = log_until(&app, &hook, |log| {
        log.len() >= 5 && log.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    assert_eq!(log.len(), 5, "{log:#?}");
    let mut payloads: Vec<Value> = receiver
        .got()
        .iter()
        .map(|r| verified(&secret, r))
        .filter(|p| p["data"]["slug"] == slug.as_str() || p["data"]["ticket_slug"] == slug.as_str())
        .collect();
    payloads.sort_by_key(|p| p["type"] != "ticket.created");
    assert_eq!(payloads.len(), 4);
    assert_eq!(payloads[0]["type"], "ticket.created");
    let mut announced: Vec<&Value> = payloads[1..]
        .iter()
        .map(|p| &p["data"]["message"])
        .collect();
    announced.sort_by_key(|m| m["id"].as_str().unwrap().to_owned());
    let announced: Vec<(&Value, &Value)> = announced
        .iter()
        .map(|m| (&m["id"], &m["content"]))
        .collect();
    let stored: Vec<(&Value, &Value)> =
        messages.iter().map(|m| (&m["id"], &m["content"])).collect();
    assert_eq!(announced, stored);
}

#[tokio::test]
async fn a_message_announced_for_a_ticket_that_never_came_is_not_sent() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = app_with_schedule("5s").await;
    let (hook, _) = register(&app, &receiver.url, &["message.created"]).await;
    // What a CQL store leaves when it crashes between writing a new ticket's history and
    // claiming its slug: an announcement of a message of a ticket that does not exist.
    let project = fleety_actors::domain::ProjectId::parse(&app.project).unwrap();
    let id = uuid::Uuid::parse_str(&hook).unwrap();
    let e = app.ctx.system.hooks.endpoint(&project, id).unwrap();
    let made = chrono::Utc::now() - chrono::Duration::minutes(5);
    let data = json!({
        "project_id": app.project,
        "ticket_slug": "never-made-001",
        "message": {"id": "x", "author": "user", "content": "lost", "timestamp": "x", "read_by": []}
    });
    let event = fleety_actors::webhook::EventType::MessageCreated;
    let orphan = fleety_actors::webhook::Delivery::new(&e, event, &data, made);
    app.ctx
        .webhook_store
        .put_delivery(&orphan, None)
        .await
        .unwrap();

    // Its outcome, dropped unsent, is not written back for a ticket that is not there: the
    // delivery leaves the log instead (as one does whose ticket is erased during an attempt).
    // It was stored (the write above), so only the dispatcher's outcome can take it out.
    log_until(&app, &hook, |log| log.is_empty()).await;
    assert!(receiver.got().is_empty(), "never sent");
}

#[tokio::test]
async fn redirects_are_not_followed_and_a_silent_receiver_times_out() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let target = Receiver::start().await;
    let receiver = Receiver::start().await;
    receiver.answer_always(Answer {
        headers: vec![("location", target.url.clone())],
        ..Answer::status(307)
    });
    let app = isolated(|s| {
        s.webhooks.allow_private = true;
        s.webhooks.retry_schedule = "1h".parse().unwrap();
        s.webhooks.timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let (hook, _) = register(&app, &receiver.url, &["ticket.created"]).await;
    app.create_ticket("Moved").await;
    let log = log_until(&app, &hook, |log| log[0]["attempts"] == 1).await;
    assert_eq!(log[0]["last_status"], 307);
    assert_eq!(log[0]["status"], "pending");
    assert!(target.got().is_empty(), "the redirect was followed");

    let silent = Receiver::start().await;
    silent.answer_always(Answer {
        hang: true,
        ..Answer::status(200)
    });
    let (hook, _) = register(&app, &silent.url, &["ticket.created"]).await;
    app.create_ticket("Hello?").await;
    let log = log_until(&app, &hook, |log| log[0]["attempts"] == 1).await;
    assert_eq!(log[0]["last_error"], "timed out");
    assert_eq!(log[0]["last_status"], Value::Null);
}

#[tokio::test]
async fn an_internal_address_is_never_called_unless_the_operator_allows_it() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = isolated(|s| s.webhooks.retry_schedule = "1h".parse().unwrap()).await;
    // Registered while private addresses were allowed (or through another node's settings):
    // the check at delivery refuses it all the same.
    let endpoint = fleety_actors::webhook::Endpoint {
        id: uuid::Uuid::new_v4(),
        project_id: fleety_actors::domain::ProjectId::parse(&app.project).unwrap(),
        url: receiver.url.clone(),
        events: vec![fleety_actors::webhook::EventType::TicketCreated],
        secret: fleety::webhooks::new_secret(),
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        created_at: chrono::Utc::now(),
    };
    app.ctx
        .webhook_store
        .create_endpoint(&endpoint, 20)
        .await
        .unwrap();
    let project = endpoint.project_id.clone();
    let all = app
        .ctx
        .webhook_store
        .list_endpoints(&project)
        .await
        .unwrap();
    app.ctx.system.hooks.set(&project, all);
    app.create_ticket("Inside job").await;
    let hook = endpoint.id.to_string();
    let log = log_until(&app, &hook, |log| log[0]["attempts"] == 1).await;
    assert!(
        log[0]["last_error"].as_str().unwrap().contains("loopback"),
        "{log:#?}"
    );
    assert!(receiver.got().is_empty());
}

#[tokio::test]
async fn deliveries_owed_when_the_server_stops_are_sent_after_it_restarts() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    receiver.answer_always(Answer::status(500));
    let app = app_with_schedule("200ms,1s,1s,1s,1s,1s").await;
    let (hook, secret) =
        register(&app, &receiver.url, &["ticket.created", "message.created"]).await;
    let slug = app.create_ticket("Across restarts").await;
    for n in 0..5 {
        app.post_message(&slug, &format!("message {n}")).await;
    }
    receiver.wait_for(1).await;
    let restart = app.stop().await;
    let sent_before = receiver.got().len();

    receiver.answer_always(Answer::status(200));
    let mut options = restart.options();
    options.settings.webhooks.allow_private = true;
    options.settings.webhooks.retry_schedule = "200ms,1s,1s,1s,1s,1s".parse().unwrap();
    let app = spawn_with(options).await;
    let log = log_until(&app, &hook, |log| {
        log.len() == 6 && log.iter().all(|d| d["status"] == "succeeded")
    })
    .await;
    let got = receiver.got();
    assert!(got.len() > sent_before);
    // Every event arrived, each with a signature that verifies; retries reuse their ids.
    let mut landed: Vec<String> = got[sent_before..]
        .iter()
        .filter(|r| {
            let payload = verified(&secret, r);
            payload["type"] == "message.created" || payload["type"] == "ticket.created"
        })
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    landed.sort();
    landed.dedup();
    let mut logged: Vec<String> = log
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    logged.sort();
    assert_eq!(landed, logged);
}

/// The real binary, started with a proxy in its environment; killed when dropped.
struct ProxiedServer {
    child: std::process::Child,
    base: String,
    admin_key: String,
}

impl ProxiedServer {
    fn start(dir: &std::path::Path, proxy: &str) -> ProxiedServer {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fleety"));
        // The binary refuses unknown FLEETY_* settings; give it none of the test run's own.
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("FLEETY_")) {
            cmd.env_remove(name);
        }
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            cmd.env(name, proxy).env(name.to_ascii_lowercase(), proxy);
        }
        let mut child = cmd
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env("FLEETY_DATA_DIR", dir)
            .env("FLEETY_LOG", "error")
            .env("FLEETY_LISTEN", "127.0.0.1:0")
            .env("FLEETY_PUBLIC_RATE_LIMIT", "0")
            .env("FLEETY_WEBHOOK_RETRY_SCHEDULE", "1h")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut next = || lines.next().expect("a banner line").unwrap();
        let base = next().rsplit(' ').next().unwrap().to_owned();
        assert!(next().trim().ends_with("demo"));
        let admin_key = next().rsplit(' ').next().unwrap().to_owned();
        assert!(admin_key.starts_with("fk_"), "{admin_key}");
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ProxiedServer {
            child,
            base,
            admin_key,
        }
    }
}

impl Drop for ProxiedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn webhooks_ignore_a_proxy_in_the_environment_and_never_reach_inside_through_it() {
    // A name that resolves to this machine: its own host name. (`localhost` would not do: the
    // URL check refuses that name before any look-up.)
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("a Linux host name");
    let host = host.trim().to_owned();
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .expect("the host's own name resolves")
        .collect();
    assert!(
        !addrs.is_empty() && addrs.iter().all(|a| fleety::webhooks::is_internal(a.ip())),
        "{host} should resolve to this machine only: {addrs:?}"
    );
    // The proxy stand-in answers 200 to whatever it is asked, as a proxy that reached the
    // receiver would; the receiver listens on loopback, where the name points.
    let proxy = Receiver::start().await;
    let receiver = Receiver::start().await;
    let proxy_addr = proxy.url.trim_end_matches("/hooks").to_owned();
    let port = receiver.url.rsplit(':').next().unwrap();
    let target = format!("http://{host}:{port}");

    let dir = tempfile::tempdir().unwrap();
    let server = ProxiedServer::start(dir.path(), &proxy_addr);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = http
        .post(format!("{}/v1/projects/demo/webhooks", server.base))
        .bearer_auth(&server.admin_key)
        .json(&json!({"url": target, "events": ["ticket.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{target} is a name: registered");
    let hook = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = http
        .post(format!("{}/v1/tickets/demo", server.base))
        .json(&json!({"title": "Through the proxy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let log_url = format!(
        "{}/v1/projects/demo/webhooks/{hook}/deliveries",
        server.base
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log: Value = http
            .get(&log_url)
            .bearer_auth(&server.admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if log["deliveries"][0]["attempts"] == 1 {
            break log["deliveries"][0].clone();
        }
        assert!(Instant::now() < deadline, "never attempted: {log:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(log["status"], "pending", "{log:#}");
    assert!(
        log["last_error"].as_str().unwrap().contains("not public"),
        "{log:#}"
    );
    assert!(
        proxy.got().is_empty(),
        "the proxy was asked: {:#?}",
        proxy.got()
    );
    assert!(receiver.got().is_empty());
    drop(server);
}

#[tokio::test]
async fn a_tickets_tags_ride_in_the_ticket_of_its_webhooks() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = app_with_schedule("5s").await;
    let events = ["ticket.created", "ticket.status_changed"];
    let (_, secret) = register(&app, &receiver.url, &events).await;
    let slug = app.create_ticket("Tag me").await;
    let path = format!("/v1/tickets/demo/{slug}");
    let resp = app.admin_patch(&path, json!({"tags": ["vip"]})).await;
    assert_eq!(resp.status(), 200);
    let resp = app.admin_patch(&path, json!({"status": "pending"})).await;
    assert_eq!(resp.status(), 200);

    let got = receiver.wait_for(2).await;
    let mut payloads: Vec<Value> = got.iter().map(|r| verified(&secret, r)).collect();
    payloads.sort_by_key(|p| events.iter().position(|e| *e == p["type"]).unwrap());
    assert_eq!(payloads[0]["data"]["tags"], json!([]));
    assert_eq!(payloads[1]["data"]["ticket"]["tags"], json!(["vip"]));
    assert_eq!(payloads[1]["data"]["ticket"]["status"], "pending");
}

/// A signed-in member's reply names them in the answer, in GET, in the ticket's socket event
/// and in the webhook; the admin key's reply names nobody.
#[tokio::test]
async fn a_members_reply_names_the_member_everywhere_and_the_admin_keys_names_nobody() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = app_with_schedule("50ms").await;
    let (_hook, secret) = register(&app, &receiver.url, &["message.created"]).await;
    let password = "correct horse battery";
    let added = app
        .admin_post(
            "/v1/projects/demo/members",
            json!({"email": "dana@example.com", "name": "Dana", "password": password,
                   "role": "agent", "avatar_url": "https://example.com/dana.png"}),
        )
        .await;
    assert_eq!(added.status(), 201);
    let member: Value = added.json().await.unwrap();
    let signed_in: Value = app
        .post_json(
            "/v1/projects/demo/sign-in",
            json!({"email": "dana@example.com", "password": password}),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = signed_in["token"].as_str().expect("a session token");
    let slug = app.create_ticket("Who answers?").await;
    let mut ws = app.connect(&format!("/v1/tickets/demo/{slug}/ws")).await;
    assert_eq!(next_event(&mut ws).await["type"], "subscribed");

    let path = format!("/v1/tickets/demo/{slug}/messages");
    let resp = app
        .http
        .post(app.url(&path))
        .bearer_auth(token)
        .json(&json!({"author": "admin", "content": "Dana here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let by_member: Value = resp.json().await.unwrap();
    let agent =
        json!({"id": member["id"], "name": "Dana", "avatar_url": "https://example.com/dana.png"});
    assert_eq!(by_member["data"]["author"], "admin");
    assert_eq!(by_member["data"]["agent"], agent);
    let resp = app
        .admin_post(&path, json!({"author": "admin", "content": "the key"}))
        .await;
    assert_eq!(resp.status(), 201);
    let by_key: Value = resp.json().await.unwrap();
    assert!(by_key["data"].get("agent").is_none(), "{by_key}");

    let ticket = app.ticket(&slug).await;
    let messages = ticket["messages"].as_array().unwrap();
    let listed = |content: &str| {
        messages
            .iter()
            .find(|m| m["content"] == content)
            .unwrap_or_else(|| panic!("{content} is listed"))
            .clone()
    };
    assert_eq!(listed("Dana here")["agent"], agent);
    assert!(listed("the key").get("agent").is_none());

    let first = next_event(&mut ws).await;
    assert_eq!(first["type"], "new_message");
    assert_eq!(first["payload"], by_member["data"]);
    let second = next_event(&mut ws).await;
    assert_eq!(second["type"], "new_message");
    assert_eq!(second["payload"], by_key["data"]);

    let got = receiver.wait_for(2).await;
    let mut said: Vec<(String, Value)> = got
        .iter()
        .map(|r| {
            let payload = verified(&secret, r);
            assert_eq!(payload["type"], "message.created");
            let message = &payload["data"]["message"];
            let content = message["content"].as_str().unwrap().to_owned();
            (
                content,
                message.get("agent").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    said.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        said,
        [
            ("Dana here".to_owned(), agent.clone()),
            ("the key".to_owned(), Value::Null)
        ]
    );
}

#[tokio::test]
async fn an_assignment_to_a_member_announces_the_member_and_the_one_before() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = app_with_schedule("5s").await;
    let (_hook, secret) = register(&app, &receiver.url, &["ticket.assigned"]).await;
    let mut ids = Vec::new();
    for (email, name) in [("dana@example.com", "Dana"), ("sam@example.com", "Sam")] {
        let body = json!({"email": email, "name": name, "password": "correct horse battery"});
        let resp = app.admin_post("/v1/projects/demo/members", body).await;
        assert_eq!(resp.status(), 201);
        let member: Value = resp.json().await.unwrap();
        ids.push(member["id"].as_str().unwrap().to_owned());
    }
    let slug = app.create_ticket("Login").await;
    let path = format!("/v1/tickets/demo/{slug}");
    for id in &ids {
        let resp = app.admin_patch(&path, json!({"assignee_id": id})).await;
        assert_eq!(resp.status(), 200);
    }
    let got = receiver.wait_for(2).await;
    let mut payloads: Vec<Value> = got.iter().map(|r| verified(&secret, r)).collect();
    payloads.sort_by_key(|p| {
        p["data"]["ticket"]["updated_at"]
            .as_str()
            .map(str::to_owned)
    });
    let dana = json!({"id": ids[0], "name": "Dana", "avatar_url": null});
    let first = &payloads[0]["data"];
    assert_eq!(first["ticket"]["assignee"], "Dana");
    assert_eq!(first["ticket"]["assignee_member"], dana);
    assert_eq!(
        (&first["previous"], &first["previous_member"]),
        (&Value::Null, &Value::Null)
    );
    let second = &payloads[1]["data"];
    assert_eq!(second["ticket"]["assignee_member"]["id"], ids[1].as_str());
    assert_eq!(
        (&second["previous"], &second["previous_member"]),
        (&json!("Dana"), &dana)
    );
}

#[tokio::test]
async fn a_rating_is_announced_as_ticket_rated_with_the_ticket_and_its_rating() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let receiver = Receiver::start().await;
    let app = app_with_schedule("5s").await;
    let (hook, secret) = register(&app, &receiver.url, &["ticket.rated"]).await;
    let slug = app.create_ticket("Printer on fire").await;
    let path = format!("/v1/tickets/demo/{slug}");
    let resp = app.admin_patch(&path, json!({"status": "resolved"})).await;
    assert_eq!(resp.status(), 200);
    let rate = format!("{path}/satisfaction");
    let resp = app
        .post_json(&rate, json!({"score": 2, "comment": "Slow answer"}))
        .await;
    assert_eq!(resp.status(), 201);

    let got = receiver.wait_for(1).await;
    let payload = verified(&secret, &got[0]);
    assert_eq!(payload["type"], "ticket.rated");
    assert_eq!(payload["data"]["ticket"]["slug"], slug);
    assert_eq!(payload["data"]["ticket"]["status"], "resolved");
    assert_eq!(payload["data"]["satisfaction"]["score"], 2);
    assert_eq!(payload["data"]["satisfaction"]["comment"], "Slow answer");
    let log = log_until(&app, &hook, |log| {
        log.len() == 1 && log[0]["status"] == "succeeded"
    })
    .await;
    assert_eq!(log[0]["event_type"], "ticket.rated");
}
