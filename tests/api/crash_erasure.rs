//! Issue 29: a kill -9 during erasure, five times: each ticket is either whole or gone, never
//! partly served. The real binary, on the store the API tests run on, holds tickets with
//! messages, a note and (some) a chat transcript, each carrying a word of its own; erasures
//! are started and the server SIGKILLed at five moments, found by events, never by sleeping:
//!
//! 1. a DELETE's bytes written to the socket, the server perhaps not yet reading them;
//! 2. the erasure's intent stored (its log line);
//! 3. the ticket's rows erased, the intent not yet removed (its log line);
//! 4. the erasure finished, its answer not yet sent (its log line);
//! 5. a DELETE answered and a second written.
//!
//! After each restart on the same store every ticket is whole (it, all its messages, its note,
//! its transcript, its row in the listing and its search hit) or gone (404 everywhere, in no
//! listing, found by no search), an answered erasure is gone, and the DELETE sent again
//! completes.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::helpers::until;
use crate::real_server::{client, Place, RealServer};

struct Ticket {
    slug: String,
    word: String,
    /// The contents of its messages, oldest first.
    messages: Vec<String>,
    chat: bool,
}

struct Admin<'a> {
    server: &'a RealServer,
    key: &'a str,
}

impl Admin<'_> {
    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = client()
            .get(self.server.url(path))
            .bearer_auth(self.key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = client()
            .post(self.server.url(path))
            .bearer_auth(self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    async fn delete(&self, slug: &str) -> u16 {
        let resp = client()
            .delete(
                self.server
                    .url(&format!("/v1/projects/demo/tickets/{slug}")),
            )
            .bearer_auth(self.key)
            .send()
            .await;
        match resp {
            Ok(resp) => resp.status().as_u16(),
            Err(e) => panic!(
                "DELETE {slug}: {e:?}; the server logged {:#?}",
                self.server.logged_all()
            ),
        }
    }

    /// Writes a DELETE to the server and returns with it unanswered; the socket is kept, so
    /// the request is not abandoned before the server reads it.
    async fn delete_unanswered(&self, slug: &str) -> tokio::net::TcpStream {
        let addr = self.server.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "DELETE /v1/projects/demo/tickets/{slug} HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
            self.key
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        stream
    }

    /// A ticket with three messages and a note, each carrying `word`; `chat`: opened from a
    /// chat with the assistant, whose transcript carries it too.
    async fn ticket(&self, n: usize, chat: bool) -> Ticket {
        let word = format!(
            "crashword{n}x{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let (slug, mut messages) = if chat {
            let session: Value = client()
                .post(self.server.url("/v1/init-session"))
                .json(&json!({"project_id": "demo"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = session["token"].as_str().unwrap();
            let resp = client()
                .post(self.server.url("/v1/chat/tools"))
                .bearer_auth(token)
                .json(&json!({"enable_tool_calling": true, "messages": [
                    {"role": "user", "content": format!("My invoice {word} is wrong")},
                    {"role": "assistant", "content": "Invoices are under Billing."},
                    {"role": "user", "content": format!("I want to talk to a human about {word}")}
                ]}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let body: Value = resp.json().await.unwrap();
            let slug = body["ticket_slug"].as_str().unwrap().to_owned();
            let (_, opened) = self.get(&format!("/v1/tickets/demo/{slug}")).await;
            (slug, contents(&opened))
        } else {
            let opened = self
                .post(
                    "/v1/tickets/demo",
                    json!({"title": "Erase me", "description": format!("about {word}")}),
                )
                .await;
            let slug = opened["slug"].as_str().unwrap().to_owned();
            let (_, opened) = self.get(&format!("/v1/tickets/demo/{slug}")).await;
            (slug, contents(&opened))
        };
        for (author, content) in [("user", "more on"), ("admin", "answer on")] {
            let content = format!("{content} {word}");
            let path = format!("/v1/tickets/demo/{slug}/messages");
            self.post(&path, json!({"author": author, "content": content}))
                .await;
            messages.push(content);
        }
        let path = format!("/v1/projects/demo/tickets/{slug}/notes");
        self.post(
            &path,
            json!({"author": "Dana", "content": format!("note {word}")}),
        )
        .await;
        if chat {
            // The transcript is written after the chat's answer.
            let path = format!("/v1/projects/demo/tickets/{slug}/chat");
            until("the transcript", Duration::from_secs(20), async || {
                let (_, body) = self.get(&path).await;
                body.to_string().contains(&word).then_some(())
            })
            .await;
        }
        Ticket {
            slug,
            word,
            messages,
            chat,
        }
    }

    /// Whether `t` is whole (true) or gone (false); anything in between fails the test.
    async fn whole(&self, t: &Ticket) -> bool {
        let slug = &t.slug;
        let (status, body) = self.get(&format!("/v1/tickets/demo/{slug}")).await;
        let got = contents(&body);
        let mut seen = vec![(status, "ticket", status == 200 && got == t.messages)];
        let (status, body) = self
            .get(&format!("/v1/projects/demo/tickets/{slug}/notes"))
            .await;
        let note = body["notes"]
            .to_string()
            .contains(&format!("note {}", t.word));
        seen.push((status, "notes", status == 200 && note));
        if t.chat {
            let (status, body) = self
                .get(&format!("/v1/projects/demo/tickets/{slug}/chat"))
                .await;
            let chat = body.to_string().contains(&t.word);
            seen.push((status, "chat", status == 200 && chat));
        }
        let (_, listed) = self.get("/v1/projects/demo/tickets?limit=100").await;
        let listed = slugs(&listed).contains(slug);
        seen.push((if listed { 200 } else { 404 }, "listing", listed));
        let (_, found) = self
            .get(&format!("/v1/projects/demo/tickets?q={}", t.word))
            .await;
        let found = slugs(&found);
        seen.push((
            if found.is_empty() { 404 } else { 200 },
            "search",
            found == [slug.clone()],
        ));
        let whole = seen.iter().all(|(status, _, full)| *status == 200 && *full);
        let gone = seen.iter().all(|(status, _, _)| *status == 404);
        assert!(
            whole || gone,
            "{slug} is partly there: {seen:?}; messages {got:?}, expected {:?}",
            t.messages
        );
        whole
    }
}

fn contents(ticket: &Value) -> Vec<String> {
    ticket["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| m["content"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn slugs(page: &Value) -> Vec<String> {
    page["tickets"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| t["slug"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// How the server is killed in one round, around the erasure of `cut`.
enum Moment {
    Written,
    Logged(&'static str),
    AfterOneAnswered,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_erasure_five_times_leaves_each_ticket_whole_or_gone() {
    let place = Place::fresh();
    let env = [(
        "FLEETY_LOG",
        "warn,fleety_actors::ticket::erase=debug".to_owned(),
    )];
    let (server, key) = RealServer::start(&place, &env);
    let key = key.expect("the first start prints the admin key");
    let mut tickets = Vec::new();
    {
        let admin = Admin {
            server: &server,
            key: &key,
        };
        for n in 0..8 {
            tickets.push(admin.ticket(n, n % 3 == 0).await);
        }
    }
    let mut server = Some(server);
    let mut erased: Vec<String> = Vec::new();
    let moments = [
        Moment::Written,
        Moment::Logged("erasure intent stored"),
        Moment::Logged("ticket rows erased"),
        Moment::Logged("ticket erased"),
        Moment::AfterOneAnswered,
    ];
    let mut next = 0;
    for moment in moments {
        let running = server.take().unwrap();
        let admin = Admin {
            server: &running,
            key: &key,
        };
        // The tickets whose erasure the kill cut short: whole or gone, either may be.
        let mut cut = Vec::new();
        let mut _unanswered = None;
        match moment {
            Moment::Written => {
                cut.push(next);
                _unanswered = Some(admin.delete_unanswered(&tickets[next].slug).await);
                next += 1;
            }
            Moment::Logged(message) => {
                let slug = tickets[next].slug.clone();
                running.kill_when_logged(message, &slug);
                cut.push(next);
                next += 1;
                // Answered only if the kill came after the answer was written.
                let status = tokio::spawn({
                    let (url, key) = (
                        running.url(&format!("/v1/projects/demo/tickets/{slug}")),
                        key.clone(),
                    );
                    async move {
                        client()
                            .delete(url)
                            .bearer_auth(key)
                            .send()
                            .await
                            .map(|r| r.status())
                    }
                });
                running.await_logged(message, 1).await;
                if let Ok(Ok(status)) = status.await {
                    assert_eq!(status, 200);
                    erased.push(slug);
                }
            }
            Moment::AfterOneAnswered => {
                for _ in 0..1 {
                    assert_eq!(admin.delete(&tickets[next].slug).await, 200);
                    erased.push(tickets[next].slug.clone());
                    next += 1;
                }
                cut.push(next);
                _unanswered = Some(admin.delete_unanswered(&tickets[next].slug).await);
                next += 1;
            }
        }
        running.kill();

        let (restarted, _) = RealServer::start(&place, &env);
        let admin = Admin {
            server: &restarted,
            key: &key,
        };
        for t in &tickets {
            let whole = admin.whole(t).await;
            assert!(
                !(whole && erased.contains(&t.slug)),
                "{} was erased, the erasure answered, and it is back",
                t.slug
            );
            let was_cut = cut.iter().any(|&c| tickets[c].slug == t.slug);
            if !whole && !was_cut {
                assert!(erased.contains(&t.slug), "{} is gone unasked", t.slug);
            }
        }
        // The DELETE sent again completes: the ticket is gone.
        for &c in &cut {
            let status = admin.delete(&tickets[c].slug).await;
            assert!(status == 200 || status == 404, "{status}");
            assert!(!admin.whole(&tickets[c]).await);
            erased.push(tickets[c].slug.clone());
        }
        server = Some(restarted);
    }
    // The tickets no round touched are whole after five kills.
    let running = server.take().unwrap();
    let admin = Admin {
        server: &running,
        key: &key,
    };
    for t in &tickets[next..] {
        assert!(admin.whole(t).await, "{} was never erased", t.slug);
    }
    running.kill();
    place.remove().await;
}
