//! Ticket search: `q` on the agents' listing finds tickets by their title and by what was
//! written on them, from the project's search index, which every write reaches at once.

use serde_json::{json, Value};

use crate::helpers::*;

async fn search(app: &TestApp, query: &str) -> Value {
    let resp = app
        .admin_get(&format!("/v1/projects/demo/tickets?{query}"))
        .await;
    assert_eq!(resp.status(), 200, "{query}");
    resp.json().await.unwrap()
}

fn slugs(page: &Value) -> Vec<String> {
    page["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn agents_find_tickets_by_title_messages_and_notes() {
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    let printer = app.create_ticket("Printer jammed").await;
    clock.advance(chrono::Duration::seconds(1));
    let invoice = app.create_ticket("Question").await;
    app.post_message(&invoice, "Where is my invoice for order 4711?")
        .await;
    let resp = app
        .admin_post(
            &format!("/v1/tickets/demo/{invoice}/messages"),
            json!({"author": "admin", "content": "Resent the PDF"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let resp = app
        .admin_post(
            &format!("/v1/projects/demo/tickets/{invoice}/notes"),
            json!({"author": "Alex", "content": "Finance approved a refund"}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    clock.advance(chrono::Duration::seconds(1));
    let both = app.create_ticket("Invoice printer settings").await;

    // Words of the title, of the visitor's and the agent's messages, and of a note; any case.
    assert_eq!(
        slugs(&search(&app, "q=PRINTER").await),
        [both.as_str(), printer.as_str()]
    );
    assert_eq!(slugs(&search(&app, "q=4711").await), [invoice.as_str()]);
    assert_eq!(
        slugs(&search(&app, "q=resent%20pdf").await),
        [invoice.as_str()]
    );
    assert_eq!(slugs(&search(&app, "q=finance").await), [invoice.as_str()]);
    // Every word must be in the ticket; the last may be the start of a word.
    assert_eq!(
        slugs(&search(&app, "q=invoice").await),
        [both.as_str(), invoice.as_str()]
    );
    assert_eq!(
        slugs(&search(&app, "q=invoice%20print").await),
        [both.as_str()]
    );
    assert!(slugs(&search(&app, "q=printer%20refund").await).is_empty());
    // The listing's fields come with a match.
    let found = search(&app, "q=4711").await;
    assert_eq!(found["tickets"][0]["title"], "Question");
    assert_eq!(
        found["tickets"][0]["last_message"]["preview"],
        "Resent the PDF"
    );
    assert_eq!(found["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_message_written_after_the_index_was_built_is_found_at_once() {
    let app = spawn_app().await;
    let slug = app.create_ticket("Login trouble").await;
    // The first search builds the project's index.
    assert!(slugs(&search(&app, "q=otp").await).is_empty());
    app.post_message(&slug, "The OTP code never arrives").await;
    assert_eq!(slugs(&search(&app, "q=otp").await), [slug.as_str()]);
    // So is a ticket opened after it, and a change of its status.
    let other = app.create_ticket("OTP again").await;
    assert_eq!(
        slugs(&search(&app, "q=otp").await),
        [other.as_str(), slug.as_str()]
    );
    let resp = app
        .admin_patch(
            &format!("/v1/tickets/demo/{other}"),
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        slugs(&search(&app, "q=otp&status=closed").await),
        [other.as_str()]
    );
    assert_eq!(
        slugs(&search(&app, "q=otp&status=open").await),
        [slug.as_str()]
    );
}

#[tokio::test]
async fn search_combines_with_status_and_tag_and_pages_with_the_cursor() {
    let clock = manual_clock();
    let app = spawn_with_clock(clock.clone()).await;
    let mut wanted = Vec::new();
    for i in 0..7 {
        let title = match i % 2 {
            0 => format!("Shipping delay {i}"),
            _ => format!("Other matter {i}"),
        };
        let slug = app.create_ticket(&title).await;
        if i % 2 == 1 {
            app.post_message(&slug, "and the shipping label is wrong")
                .await;
        }
        if i % 3 != 0 {
            let resp = app
                .admin_patch(
                    &format!("/v1/tickets/demo/{slug}"),
                    json!({"tags": ["courier"]}),
                )
                .await;
            assert_eq!(resp.status(), 200);
            wanted.push(slug.clone());
        }
        clock.advance(chrono::Duration::seconds(1));
    }
    app.create_ticket("Unrelated").await;
    wanted.reverse();
    let mut seen = Vec::new();
    let mut query = "q=shipping&tag=courier&status=open&limit=2".to_owned();
    loop {
        let page = search(&app, &query).await;
        let got = slugs(&page);
        assert!(got.len() <= 2);
        seen.extend(got);
        match page["next_cursor"].as_str() {
            Some(next) => {
                query = format!("q=shipping&tag=courier&status=open&limit=2&cursor={next}")
            }
            None => break,
        }
    }
    assert_eq!(seen, wanted);
    assert!(slugs(&search(&app, "q=shipping&status=closed").await).is_empty());
}

#[tokio::test]
async fn bad_searches_get_clear_errors() {
    let app = spawn_app().await;
    app.create_ticket("Anything").await;
    let long = "x".repeat(201);
    for (query, error) in [
        (format!("q={long}"), "q: at most 200 characters"),
        ("q=a&limit=0".to_owned(), "limit must be between 1 and 100"),
        (
            "q=a&cursor=nope".to_owned(),
            "cursor: not a cursor from this API",
        ),
    ] {
        let resp = app
            .admin_get(&format!("/v1/projects/demo/tickets?{query}"))
            .await;
        assert_eq!(resp.status(), 400, "{query}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(error_of(&body), error, "{query}");
    }
    let resp = app
        .admin_get("/v1/projects/demo/tickets?q=a&status=nope")
        .await;
    assert_eq!(resp.status(), 400);
    // Searching is for agents.
    assert_eq!(app.get("/v1/projects/demo/tickets?q=a").await.status(), 401);
    // Query syntax is only words; text without any word matches nothing; 200 characters are
    // fine (the description is searched too).
    assert!(slugs(&search(&app, "q=%22%2B*%3A(%5B").await).is_empty());
    assert_eq!(
        slugs(&search(&app, "q=anything%20AND%20(OR").await),
        Vec::<String>::new()
    );
    let many = format!("{}{}details", "anything ".repeat(21), " ".repeat(4));
    assert_eq!(many.len(), 200);
    let many = many.replace(' ', "%20");
    assert_eq!(slugs(&search(&app, &format!("q={many}")).await).len(), 1);
}
