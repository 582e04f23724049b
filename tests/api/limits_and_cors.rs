use serde_json::{json, Value};

use crate::helpers::*;

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn public_endpoints_allow_the_limit_per_minute_then_answer_429() {
    let app = spawn_with_settings(|s| s.limits.public_per_minute = 3).await;
    for remaining in ["2", "1", "0"] {
        let resp = app
            .post_json("/v1/tickets/demo", json!({"title": "t"}))
            .await;
        assert_eq!(resp.status(), 201);
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            header(&resp, "x-ratelimit-remaining").as_deref(),
            Some(remaining)
        );
        let reset: u32 = header(&resp, "x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset));
    }
    let resp = app.get("/v1/tickets/demo/quiet-otter-001").await;
    assert_eq!(resp.status(), 429);
    assert!(header(&resp, "retry-after").is_some());
    assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
    assert!(error_of(&resp.json::<Value>().await.unwrap()).contains("rate limit"));
}

#[tokio::test]
async fn failed_slug_lookups_count_against_the_limit() {
    let app = spawn_with_settings(|s| s.limits.public_per_minute = 2).await;
    assert_eq!(
        app.get("/v1/tickets/demo/quiet-otter-001").await.status(),
        404
    );
    assert_eq!(
        app.get("/v1/tickets/demo/brave-lynx-002").await.status(),
        404
    );
    assert_eq!(
        app.get("/v1/tickets/demo/brave-lynx-003").await.status(),
        429
    );
}

#[tokio::test]
async fn agents_with_the_admin_key_are_not_counted() {
    let app = spawn_with_settings(|s| s.limits.public_per_minute = 1).await;
    let slug = app.create_ticket("t").await;
    for _ in 0..3 {
        let resp = app
            .http
            .get(app.url(&format!("/v1/tickets/demo/{slug}")))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(header(&resp, "x-ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn a_visitor_with_a_session_token_is_counted_per_session_and_anyone_else_per_ip() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    // A clock that stands still: every request falls in one window however long they take.
    let clock = manual_clock();
    let app = spawn_clocked(&clock, |s| {
        s.limits.public_per_minute = 10;
        s.limits.visitor_per_minute = 40;
    })
    .await;
    let slug = app.create_ticket("a busy conversation").await; // the IP's first request
    let token = app.session_token().await;
    let ticket = format!("/v1/tickets/demo/{slug}");
    let as_visitor = |req: reqwest::RequestBuilder| req.bearer_auth(&token).send();

    // Twelve quick agent replies, each read by the visitor's widget and marked read, and a
    // reply from the visitor: 36 requests, far past the IP's 10, all on the session's budget.
    for i in 0..12 {
        let reply = app
            .admin_post(
                &format!("{ticket}/messages"),
                json!({"author": "admin", "content": format!("reply {i}")}),
            )
            .await;
        assert_eq!(reply.status(), 201);
        let read = as_visitor(app.http.patch(app.url(&format!("{ticket}/messages/read"))))
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "mark read {i}");
        assert_eq!(header(&read, "x-ratelimit-limit").as_deref(), Some("40"));
        let got = as_visitor(app.http.get(app.url(&ticket))).await.unwrap();
        assert_eq!(got.status(), 200, "get {i}");
        let posted = as_visitor(
            app.http
                .post(app.url(&format!("{ticket}/messages")))
                .json(&json!({"author": "user", "content": format!("thanks {i}")})),
        )
        .await
        .unwrap();
        assert_eq!(posted.status(), 201, "post {i}");
    }
    // The socket takes the token as a subprotocol (a browser cannot set headers on one), and
    // the answer selects `fleety`, as browsers require.
    let mut request = format!("{}{}/ws", app.ws_base, app.at(&ticket))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("fleety, fleety.bearer.{token}").parse().unwrap(),
    );
    let (_socket, answer) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        answer.headers()["sec-websocket-protocol"].to_str().unwrap(),
        "fleety"
    );
    let left = as_visitor(app.http.get(app.url(&ticket))).await.unwrap();
    assert_eq!(header(&left, "x-ratelimit-remaining").as_deref(), Some("2"));

    // Anyone without a token (or with a token that is not a valid session of this project)
    // still has exactly the IP's 10 a minute, the ticket's creation included.
    for i in 2..=10 {
        let bearer = if i % 2 == 0 {
            "not-a-session-token"
        } else {
            ""
        };
        let mut req = app.http.get(app.url(&ticket));
        if !bearer.is_empty() {
            req = req.bearer_auth(bearer);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "anonymous request {i}");
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("10"));
    }
    let refused = app.get(&ticket).await;
    assert_eq!(refused.status(), 429);
    assert!(header(&refused, "retry-after").is_some());

    // The session's own budget ends too, and another session's is its own.
    for _ in 0..2 {
        assert_eq!(
            as_visitor(app.http.get(app.url(&ticket)))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let over = as_visitor(app.http.get(app.url(&ticket))).await.unwrap();
    assert_eq!(over.status(), 429);
    assert!(header(&over, "retry-after").is_some());
    let other = app.session_token().await;
    let fresh = app
        .http
        .get(app.url(&ticket))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(
        header(&fresh, "x-ratelimit-remaining").as_deref(),
        Some("39")
    );
}

#[tokio::test]
async fn an_allowed_origin_is_echoed_exactly_with_vary() {
    let app = spawn_app().await;
    let resp = app
        .http
        .post(app.url("/v1/tickets/demo"))
        .header("origin", "http://localhost:3000")
        .json(&json!({"title": "from the widget"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    assert_eq!(header(&resp, "vary").as_deref(), Some("Origin"));
}

#[tokio::test]
async fn a_disallowed_origin_is_refused_with_403() {
    let app = spawn_app().await;
    let slug = app.create_ticket("t").await;
    let resp = app
        .http
        .post(app.url(&format!("/v1/tickets/demo/{slug}/messages")))
        .header("origin", "https://evil.example")
        .json(&json!({"content": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The refusal, and only it, is readable by the page, so a widget embedded on the wrong
    // site can say why it does not work.
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some("https://evil.example")
    );
    assert!(error_of(&resp.json::<Value>().await.unwrap()).contains("origin not allowed"));
    assert_eq!(app.ticket(&slug).await["messages"], json!([]));
}

#[tokio::test]
async fn preflights_are_answered_for_allowed_origins_only() {
    let app = spawn_app().await;
    let preflight = |path: &str, origin: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("/v1/tickets/demo", "http://localhost:3000")
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(
        header(&ok, "access-control-allow-origin").as_deref(),
        Some("http://localhost:3000")
    );
    assert!(header(&ok, "access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let allowed = header(&ok, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    // A widget retries posts with an Idempotency-Key: browsers must be allowed to send it.
    for wanted in ["content-type", "authorization", "idempotency-key"] {
        assert!(allowed.contains(wanted), "{allowed}");
    }
    assert_eq!(header(&ok, "vary").as_deref(), Some("Origin"));

    let session = preflight("/v1/init-session", "http://localhost:8080")
        .await
        .unwrap();
    assert_eq!(session.status(), 204);

    let refused = preflight("/v1/tickets/demo", "https://evil.example")
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(header(&refused, "access-control-allow-origin").is_none());
    assert_eq!(
        preflight("/v1/init-session", "https://evil.example")
            .await
            .unwrap()
            .status(),
        403
    );
}

#[tokio::test]
async fn fifty_thousand_clients_behind_a_proxy_each_get_exactly_their_limit() {
    use futures_util::StreamExt;
    // A clock that stands still: both rounds fall in one window however long they take.
    let mut options = Options {
        clock: std::sync::Arc::new(manual_clock()),
        ..Options::default()
    };
    options.settings.limits.public_per_minute = 1;
    options.settings.limits.trusted_proxies = 1;
    let app = spawn_with(options).await;
    let slug = app.create_ticket("shared by many visitors").await;
    let url = app.url(&format!("/v1/tickets/demo/{slug}"));
    const CLIENTS: u32 = 50_000;
    // Addresses of the benchmarking range 198.18.0.0/15, one per visitor, as a proxy in front
    // would report them.
    let client = |i: u32| std::net::Ipv4Addr::from(0xC612_0000 + i).to_string();
    let round = |expected: u16| {
        let (http, url) = (app.http.clone(), url.clone());
        futures_util::stream::iter(0..CLIENTS)
            .map(move |i| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let resp = http
                        .get(url)
                        .header("x-forwarded-for", client(i))
                        .send()
                        .await
                        .unwrap();
                    (i, resp.status().as_u16())
                }
            })
            .buffer_unordered(32)
            .filter(move |&(_, status)| std::future::ready(status != expected))
            .collect::<Vec<_>>()
    };
    // Every visitor's first request goes through, wherever its address would hash...
    let wrongly_refused = round(200).await;
    assert!(
        wrongly_refused.is_empty(),
        "{} of {CLIENTS} clients were refused their first request, e.g. {:?}",
        wrongly_refused.len(),
        &wrongly_refused[..wrongly_refused.len().min(5)]
    );
    // ...and every visitor's second is refused: exactly the limit, for each.
    let wrongly_allowed = round(429).await;
    assert!(
        wrongly_allowed.is_empty(),
        "{} clients got past their limit, e.g. {:?}",
        wrongly_allowed.len(),
        &wrongly_allowed[..wrongly_allowed.len().min(5)]
    );
}
