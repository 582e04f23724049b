//! Issue 28: a crash between the change and the send loses no email and sends none twice. The
//! real binary, on the store the API tests run on, is killed with SIGKILL at three moments of a
//! visitor email's life and started again on the same store:
//!
//! - right after the agent's replies were acknowledged, before their emails are due: after the
//!   restart each burst's email arrives, once;
//! - while the SMTP server holds its answer to an email's `DATA`: after the restart that email
//!   is sent again, with the same `Message-ID`, and the server accepts one message per burst;
//! - after the sends were marked: the restart sends none of them again.
//!
//! "None twice" counts what an SMTP server accepted (answered `250` to `DATA`), by
//! `Message-ID`; a message whose `DATA` the crash left unanswered was never accepted, so its
//! resend is not a second email (docs/operations.md).
//!
//! The SMTP server is the test's own, so it can hold an answer; the moments are found by
//! events (an acknowledgement, a `DATA` received, the log line that follows a mark), never by
//! sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleety_actors::email::EmailStatus;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::until;
use crate::real_server::{client, Place, RealServer};

/// A message the SMTP server received: its recipient and `Message-ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    to: String,
    message_id: String,
}

#[derive(Default)]
struct Mailbox {
    /// Answered `250`: delivered, as far as the sender can know.
    accepted: Vec<Got>,
    /// Received, and left unanswered.
    held: Vec<Got>,
    /// Hold the answer to the next message's `DATA`.
    hold_next: bool,
}

/// An SMTP server speaking just what lettre says to it.
struct Smtp {
    port: u16,
    mailbox: Arc<Mutex<Mailbox>>,
}

impl Smtp {
    async fn start(hold_first: bool) -> Smtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mailbox = Arc::new(Mutex::new(Mailbox {
            hold_next: hold_first,
            ..Mailbox::default()
        }));
        let shared = mailbox.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        Smtp { port, mailbox }
    }

    fn accepted(&self) -> Vec<Got> {
        self.mailbox.lock().unwrap().accepted.clone()
    }

    fn held(&self) -> Vec<Got> {
        self.mailbox.lock().unwrap().held.clone()
    }

    /// The server's settings: this SMTP server, a burst's email due `after_secs` after its
    /// first reply, a short conversation timeout (an attempt a crash cut short is claimed for
    /// it and 30 s more, so its resend waits that long), and the sender's marks logged.
    fn env(&self, after_secs: u64) -> Vec<(&'static str, String)> {
        vec![
            (
                "FLEETY_SMTP_URL",
                format!("smtp://127.0.0.1:{}?tls=none", self.port),
            ),
            ("FLEETY_SMTP_FROM", "Support <support@fleety.test>".into()),
            ("FLEETY_PUBLIC_URL", "https://help.fleety.test/".into()),
            ("FLEETY_EMAIL_TIMEOUT_SECS", "3".into()),
            ("FLEETY_EMAIL_RETRY_SCHEDULE", "1s".into()),
            ("FLEETY_VISITOR_EMAIL_AFTER_SECS", after_secs.to_string()),
            ("FLEETY_LOG", "warn,fleety::mailer=debug".into()),
        ]
    }
}

async fn session(stream: TcpStream, mailbox: Arc<Mutex<Mailbox>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 crash.test ESMTP\r\n").await?;
    let mut to = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let answer: &[u8] = if upper.starts_with("EHLO") {
            b"250-crash.test\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("RCPT") {
            let (start, end) = (line.find('<').unwrap_or(0), line.rfind('>').unwrap_or(0));
            to = line.get(start + 1..end).unwrap_or("").to_owned();
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 go on\r\n").await?;
            let mut message_id = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                if line.to_ascii_lowercase().starts_with("message-id:") {
                    message_id = line["message-id:".len()..].trim().to_owned();
                }
            }
            let got = Got {
                to: to.clone(),
                message_id,
            };
            let hold = {
                let mut mailbox = mailbox.lock().unwrap();
                let hold = std::mem::take(&mut mailbox.hold_next);
                if hold {
                    mailbox.held.push(got);
                } else {
                    mailbox.accepted.push(got);
                }
                hold
            };
            if hold {
                // No answer, ever: the connection ends with the sender.
                let mut rest = Vec::new();
                let _ = read.read_to_end(&mut rest).await;
                return Ok(());
            }
            b"250 accepted\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if ["HELO", "MAIL", "RSET", "NOOP"]
            .iter()
            .any(|c| upper.starts_with(c))
        {
            b"250 OK\r\n"
        } else {
            b"502 not here\r\n"
        };
        write.write_all(answer).await?;
    }
}

/// A ticket whose visitor left `to` as their address; its slug.
async fn ticket(server: &RealServer, to: &str) -> String {
    let resp = client()
        .post(server.url("/v1/tickets/demo"))
        .json(&json!({"title": "Crash test", "description": "help",
                      "visitor": {"name": "Ada", "email": to}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json::<serde_json::Value>().await.unwrap()["slug"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An agent's public reply, acknowledged.
async fn reply(server: &RealServer, key: &str, slug: &str, content: &str) {
    let resp = client()
        .post(server.url(&format!("/v1/tickets/demo/{slug}/messages")))
        .bearer_auth(key)
        .json(&json!({"author": "admin", "content": content}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

fn addresses(n: usize) -> Vec<String> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    (0..n)
        .map(|i| format!("visitor{i}-{}@example.com", &run[..10]))
        .collect()
}

/// The `Message-ID`s the SMTP server accepted, per recipient.
fn per_recipient(smtp: &Smtp) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for got in smtp.accepted() {
        out.entry(got.to).or_default().push(got.message_id);
    }
    out
}

/// Waits until every address got `n` messages and the server logged `marks` sends as marked.
async fn delivered(smtp: &Smtp, server: &RealServer, to: &[String], n: usize, marks: usize) {
    let what = format!("{n} email(s) to each of {to:?}");
    until(&what, Duration::from_secs(90), async || {
        let got = per_recipient(smtp);
        to.iter()
            .all(|a| got.get(a).is_some_and(|ids| ids.len() >= n))
            .then_some(())
    })
    .await;
    let marked = server.await_logged("email attempt recorded", marks).await;
    assert!(marked.iter().all(|l| l["status"] == "Sent"), "{marked:#?}");
}

/// No `Message-ID` was accepted twice, and each is the outbox id of an email the store holds as
/// sent after exactly `attempts(id)` attempts. The ids, with the store's view of them.
async fn once_each(smtp: &Smtp, place: &Place, attempts: impl Fn(&str) -> u32) -> Vec<String> {
    let accepted = smtp.accepted();
    let mut ids: Vec<String> = accepted.iter().map(|g| g.message_id.clone()).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(
        ids.len(),
        before,
        "a message was accepted twice: {accepted:#?}"
    );
    let store = place.open().await;
    for id in &ids {
        let outbox_id = id.trim_start_matches('<').trim_end_matches("@fleety.test>");
        let email = store.get_email(outbox_id).await.unwrap();
        let email = email.unwrap_or_else(|| panic!("{id} is in no outbox"));
        assert_eq!(email.status, EmailStatus::Sent, "{email:#?}");
        assert_eq!(email.attempts, attempts(id), "{email:#?}");
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_before_an_email_is_due_or_after_its_send_was_marked_sends_it_exactly_once() {
    let smtp = Smtp::start(false).await;
    let place = Place::fresh();
    let env = smtp.env(3);
    let to = addresses(3);

    // Replies on three tickets, acknowledged, and the server killed before they are due.
    let (server, key) = RealServer::start(&place, &env);
    let key = key.expect("the first start prints the admin key");
    let mut slugs = Vec::new();
    for a in &to {
        let slug = ticket(&server, a).await;
        reply(&server, &key, &slug, "First answer").await;
        slugs.push(slug);
    }
    server.kill();

    // The restart sends each burst's email; it is killed once every send was marked.
    let (server, _) = RealServer::start(&place, &env);
    delivered(&smtp, &server, &to, 1, to.len()).await;
    server.kill();

    // A second burst on each ticket, after the restart, proves its sender ran: the first
    // emails, marked before the kill, are not sent again, and the second ones thread under them.
    let (server, _) = RealServer::start(&place, &env);
    for slug in &slugs {
        reply(&server, &key, slug, "Second answer").await;
    }
    delivered(&smtp, &server, &to, 2, to.len()).await;
    server.kill();

    let ids = once_each(&smtp, &place, |_| 1).await;
    assert_eq!(ids.len(), 2 * to.len());
    for (address, got) in per_recipient(&smtp) {
        assert_eq!(got.len(), 2, "{address}: {got:?}");
        assert_ne!(got[0], got[1]);
    }
    place.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_while_the_smtp_server_holds_its_answer_sends_that_email_again_under_its_id() {
    // The first message's DATA is never answered: the server is killed meanwhile.
    let smtp = Smtp::start(true).await;
    let place = Place::fresh();
    let env = smtp.env(1);
    let to = addresses(3);

    let (server, key) = RealServer::start(&place, &env);
    let key = key.expect("the first start prints the admin key");
    for a in &to {
        let slug = ticket(&server, a).await;
        reply(&server, &key, &slug, "An answer").await;
    }
    let held = until("a message held", Duration::from_secs(60), async || {
        smtp.held().first().cloned()
    })
    .await;
    server.kill();
    assert!(smtp.accepted().iter().all(|g| g.to != held.to));

    // After the restart every burst's email arrives, the held one too, once its claim ran
    // out: under the same Message-ID, accepted once.
    let (server, _) = RealServer::start(&place, &env);
    delivered(&smtp, &server, &to, 1, to.len()).await;
    server.kill();

    // The interrupted attempt was never recorded: the resend is the email's only attempt on
    // record.
    let ids = once_each(&smtp, &place, |_| 1).await;
    assert_eq!(ids.len(), to.len());
    let got = per_recipient(&smtp);
    assert_eq!(got[&held.to], vec![held.message_id.clone()]);
    place.remove().await;
}
