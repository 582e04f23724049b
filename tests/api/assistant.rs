//! The assistant's judgement on the offline provider: it says when the help center has no
//! answer instead of quoting an unrelated article, offers a person and opens a ticket on a
//! "yes", hands over at once on a request for a person or a problem only a person can solve,
//! never on a greeting, and leaves agents a title that names the problem and a note with the
//! reason and a summary.

use serde_json::{json, Value};

use crate::helpers::*;

/// The offer that ends an answer the help center does not have.
const OFFER: &str = "Shall I pass this to the team?";

/// A help center like a small notes-and-dashboards product has, in place of the demo's.
const HELP_CENTER: &[(&str, &[&str], &str)] = &[
    (
        "Resetting your password",
        &["account", "login"],
        "If you forgot your password, choose \"Forgot password\" on the sign-in page, in the \
         browser or in the app, and we email you a reset link that works for one hour.\n\n\
         If the email does not arrive, check your spam folder and ask for a new link.",
    ),
    (
        "Signing in with SSO",
        &["login", "sso"],
        "Workspaces on the Business plan can sign in with SAML single sign-on. An admin adds \
         the identity provider in Settings, then Security, then Single sign-on.",
    ),
    (
        "Recovering access with two-factor recovery codes",
        &["2fa", "security"],
        "If you lost the device with your authenticator, sign in with one of the recovery codes \
         you saved when you turned on two-factor authentication. Each code works once.",
    ),
    (
        "Deleting your account",
        &["account", "privacy"],
        "Before you delete your account, export your data from Settings, then Privacy, with \
         \"Download my data\".\n\n\
         To delete your account, go to Settings, then Privacy, and choose \"Delete account\". \
         Deletion is permanent after 14 days.",
    ),
    (
        "Exporting a single note",
        &["export"],
        "Open the note, choose the three dots, then Export. A note exports as Markdown or HTML.",
    ),
    (
        "Backing up a whole workspace",
        &["export", "backup"],
        "Admins can download a backup of the whole workspace from Settings, then Backup. The \
         backup is a ZIP archive of every notebook and attachment.",
    ),
    (
        "Importing notes from other apps",
        &["import"],
        "You can import notes from Evernote (ENEX files) and from Markdown folders. Go to \
         Settings, then Import, and choose the file.",
    ),
    (
        "Invoices and payment methods",
        &["billing"],
        "Invoices are emailed to the workspace owner each month and can be downloaded from \
         Settings, then Billing. To change your card, choose \"Update payment method\".",
    ),
    (
        "Refunds",
        &["billing"],
        "You can ask for a refund within 30 days of a payment. Refunds go back to the original \
         payment method within 5 to 10 business days.",
    ),
    (
        "How sync works",
        &["sync"],
        "Your notes sync across your devices within seconds whenever you are online. A cloud \
         icon on a note means it has changes waiting to sync.",
    ),
    (
        "Working offline",
        &["offline", "sync"],
        "Notebooks you mark as available offline can be read and edited without a connection. \
         Changes sync the next time you are online.",
    ),
];

/// Replaces the demo project's articles with [`HELP_CENTER`], or with none.
async fn help_center(app: &TestApp, articles: &[(&str, &[&str], &str)]) {
    let list: Value = app
        .admin_get("/v1/projects/demo/kb/articles")
        .await
        .json()
        .await
        .unwrap();
    for article in list["articles"].as_array().unwrap() {
        let id = article["id"].as_str().unwrap();
        let path = format!("/v1/projects/demo/kb/articles/{id}");
        assert_eq!(app.admin_delete(&path).await.status(), 200);
    }
    for (title, tags, body) in articles {
        let resp = app
            .admin_post(
                "/v1/projects/demo/kb/articles",
                json!({"title": title, "body": body, "tags": tags}),
            )
            .await;
        assert_eq!(resp.status(), 201);
    }
}

/// Asks the conversation on `/v1/chat/tools`; the answer's text, or the tool call's JSON.
enum Answer {
    Text(String),
    Ticket(Value),
}

async fn ask(app: &TestApp, token: &str, messages: Value) -> Answer {
    let resp = app
        .chat(
            "/v1/chat/tools",
            token,
            json!({"messages": messages, "enable_tool_calling": true}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    if resp.headers()["content-type"] == "application/json" {
        Answer::Ticket(resp.json().await.unwrap())
    } else {
        Answer::Text(delta_text(&sse_json(resp).await))
    }
}

async fn text_of(app: &TestApp, token: &str, messages: Value) -> String {
    match ask(app, token, messages).await {
        Answer::Text(text) => text,
        Answer::Ticket(ticket) => panic!("a ticket was opened: {ticket}"),
    }
}

/// The ticket the conversation opened: its title and its notes.
async fn ticket_of(app: &TestApp, token: &str, messages: Value) -> (Value, Vec<Value>) {
    let answer = match ask(app, token, messages).await {
        Answer::Ticket(answer) => answer,
        Answer::Text(text) => panic!("no ticket, the answer was: {text}"),
    };
    assert_eq!(answer["type"], "tool_call");
    let slug = answer["ticket_slug"].as_str().unwrap();
    let ticket = app.ticket(slug).await;
    let notes: Value = app
        .admin_get(&format!("/v1/projects/demo/tickets/{slug}/notes"))
        .await
        .json()
        .await
        .unwrap();
    (ticket, notes["notes"].as_array().unwrap().clone())
}

async fn ticket_count(app: &TestApp) -> usize {
    let tickets: Value = app
        .admin_get("/v1/projects/demo/tickets")
        .await
        .json()
        .await
        .unwrap();
    tickets["tickets"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_question_the_help_center_does_not_answer_gets_no_article_but_an_offer() {
    let app = spawn_app().await;
    help_center(&app, HELP_CENTER).await;
    let token = app.session_token().await;
    // The help center works: a question it answers is answered from the right article.
    let answered = text_of(
        &app,
        &token,
        json!([{"role": "user", "content": "How do I reset my password?"}]),
    )
    .await;
    assert!(
        answered.starts_with("From \"Resetting your password\""),
        "{answered}"
    );
    // The two questions that once quoted "deleting your account" and "password reset".
    for question in [
        "Can I export my dashboards to PDF?",
        "Do you have a mobile app?",
    ] {
        let text = text_of(&app, &token, json!([{"role": "user", "content": question}])).await;
        assert!(
            text.contains("couldn't find an answer"),
            "{question}: {text}"
        );
        assert!(text.ends_with(OFFER), "{question}: {text}");
        for title in [
            "Deleting your account",
            "Resetting your password",
            "Sources",
        ] {
            assert!(!text.contains(title), "{question} quoted {title}: {text}");
        }
    }
    assert_eq!(ticket_count(&app).await, 0, "an offer is not a ticket");
}

#[tokio::test]
async fn without_articles_a_first_question_gets_the_offer_and_a_yes_opens_the_ticket() {
    let app = spawn_app().await;
    help_center(&app, &[]).await;
    let token = app.session_token().await;
    let question = "Can I export my dashboards to PDF?";
    let offer = text_of(&app, &token, json!([{"role": "user", "content": question}])).await;
    assert!(offer.ends_with(OFFER), "{offer}");
    assert_eq!(ticket_count(&app).await, 0);

    // "No" keeps the chat going without a ticket.
    let declined = text_of(
        &app,
        &token,
        json!([
            {"role": "user", "content": question},
            {"role": "assistant", "content": offer},
            {"role": "user", "content": "no thanks"}
        ]),
    )
    .await;
    assert!(!declined.is_empty());
    assert_eq!(ticket_count(&app).await, 0);

    let (ticket, notes) = ticket_of(
        &app,
        &token,
        json!([
            {"role": "user", "content": question},
            {"role": "assistant", "content": offer},
            {"role": "user", "content": "yes please"}
        ]),
    )
    .await;
    assert_eq!(ticket["title"], question);
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = notes[0]["content"].as_str().unwrap();
    assert!(note.contains("Reason: no answer found"), "{note}");
    assert!(note.contains(question), "{note}");
    assert_eq!(notes[0]["author"], "Assistant");
}

#[tokio::test]
async fn greetings_and_thanks_never_open_a_ticket() {
    let app = spawn_app().await;
    let token = app.session_token().await;
    for greeting in ["Hi", "Hello!", "Thanks!", "Hallo", "مرحبا", "Hola", "Merci"] {
        let text = text_of(&app, &token, json!([{"role": "user", "content": greeting}])).await;
        assert!(!text.is_empty(), "{greeting}");
        assert!(!text.contains(OFFER), "{greeting}: {text}");
    }
    // Even in a project with no articles.
    help_center(&app, &[]).await;
    text_of(
        &app,
        &token,
        json!([{"role": "user", "content": "Good morning"}]),
    )
    .await;
    assert_eq!(ticket_count(&app).await, 0);
}

#[tokio::test]
async fn each_hand_off_reason_leaves_its_note_and_a_title_that_names_the_problem() {
    let app = spawn_app().await;
    help_center(&app, HELP_CENTER).await;
    let cases = [
        (
            json!([
                {"role": "user", "content": "How do I change my card?"},
                {"role": "assistant", "content": "Go to Settings, then Billing."},
                {"role": "user", "content": "I'd like to talk to a person, please."}
            ]),
            "How do I change my card?",
            "Reason: explicit request",
        ),
        (
            json!([
                {"role": "user", "content": "Ich möchte mit einem Menschen sprechen"}
            ]),
            "Visitor asked to talk to a person",
            "Reason: explicit request",
        ),
        (
            json!([
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "I was charged twice for my subscription this month"}
            ]),
            "I was charged twice for my subscription this month",
            "Reason: needs account access",
        ),
        (
            json!([
                {"role": "user", "content": "My export has been stuck at 40% for three hours"}
            ]),
            "My export has been stuck at 40% for three hours",
            "Reason: needs account access",
        ),
        (
            json!([
                {"role": "user", "content": "How does sync work?"},
                {"role": "assistant", "content": "Your notes sync within seconds."},
                {"role": "user", "content": "This is useless, I already tried that and it still doesn't work"}
            ]),
            "How does sync work?",
            "Reason: frustration",
        ),
    ];
    for (conversation, title, reason) in cases {
        // A session per case: the quota allows a few tickets per session.
        let token = app.session_token().await;
        let (ticket, notes) = ticket_of(&app, &token, conversation.clone()).await;
        assert_eq!(ticket["title"], title, "{conversation}");
        assert_eq!(notes.len(), 1, "{conversation}");
        let note = notes[0]["content"].as_str().unwrap();
        assert!(note.contains(reason), "{conversation}: {note}");
        assert!(note.contains("Summary:"), "{note}");
        let last = conversation.as_array().unwrap().last().unwrap();
        assert!(
            note.contains(last["content"].as_str().unwrap()),
            "the summary quotes the conversation: {note}"
        );
        // The transcript is on the ticket, as always.
        assert_eq!(
            ticket["messages"].as_array().unwrap().len(),
            conversation.as_array().unwrap().len()
        );
    }
}

#[tokio::test]
async fn an_answer_cites_its_article_with_the_article_s_link() {
    let app = spawn_app().await;
    help_center(&app, &[]).await;
    let link = "https://help.example.com/articles/password-reset";
    let resp = app
        .admin_post(
            "/v1/projects/demo/kb/articles",
            json!({
                "title": "Resetting your password",
                "body": "Choose \"Forgot password\" on the sign-in page and we email you a reset link.",
                "url": link,
            }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let article: Value = resp.json().await.unwrap();
    let token = app.session_token().await;
    let question = "How do I reset my password?";

    // /v1/chat/tools: the link in the answer's text, and the citation beside the Sources line.
    let resp = app
        .chat(
            "/v1/chat/tools",
            &token,
            json!({"messages": [{"role": "user", "content": question}], "language": "en"}),
        )
        .await;
    let frames = sse_json(resp).await;
    let text = delta_text(&frames);
    assert!(
        text.starts_with(&format!(
            "From \"Resetting your password\" ({link}): Choose"
        )),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("Sources: Resetting your password ({link})")),
        "{text}"
    );
    let cited: Vec<&Value> = frames
        .iter()
        .filter(|f| f.get("citations").is_some())
        .collect();
    assert_eq!(cited.len(), 1, "{frames:?}");
    assert_eq!(
        cited[0]["citations"],
        json!([{"article_id": article["id"], "title": "Resetting your password", "url": link}])
    );
    // The frame is still the seed's delta, carrying the Sources line.
    assert!(cited[0]["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap()
        .contains("Sources:"));

    // /v1/chat: the same, on its `content` frames.
    let resp = app
        .chat("/v1/chat", &token, json!({"prompt": question}))
        .await;
    let frames = sse_json(resp).await;
    let text: String = frames
        .iter()
        .filter_map(|f| f["content"].as_str())
        .collect();
    assert!(text.contains(link), "{text}");
    let cited = frames
        .iter()
        .find(|f| f.get("citations").is_some())
        .unwrap();
    assert_eq!(cited["citations"][0]["url"], link);

    // An article without a link is cited by its title alone.
    let path = format!(
        "/v1/projects/demo/kb/articles/{}",
        article["id"].as_str().unwrap()
    );
    assert_eq!(
        app.admin_patch(&path, json!({"url": null})).await.status(),
        200
    );
    let resp = app
        .chat("/v1/chat", &token, json!({"prompt": question}))
        .await;
    let frames = sse_json(resp).await;
    let cited = frames
        .iter()
        .find(|f| f.get("citations").is_some())
        .unwrap();
    assert_eq!(
        cited["citations"],
        json!([{"article_id": article["id"], "title": "Resetting your password"}])
    );
    // A malformed language tag is refused before anything is asked.
    let resp = app
        .chat(
            "/v1/chat",
            &token,
            json!({"prompt": question, "language": "<script>"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_ticket_the_assistant_opens_keeps_the_visitor_the_page_named() {
    let app = spawn_app().await;
    let token = app.session_token().await;
    let asked = json!([{"role": "user", "content": "I'd like to talk to a person, please."}]);
    let resp = app
        .chat(
            "/v1/chat/tools",
            &token,
            json!({"messages": asked, "visitor": {"name": " Dana Scully ", "email": "dana@example.com"}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let ticket = app.ticket(answer["ticket_slug"].as_str().unwrap()).await;
    assert_eq!(
        ticket["visitor"],
        json!({"name": "Dana Scully", "email": "dana@example.com"})
    );

    // Without one the ticket has none; one the server would refuse is refused, and no ticket
    // is opened for it.
    let (ticket, _) = ticket_of(&app, &app.session_token().await, asked.clone()).await;
    assert_eq!(ticket["visitor"], Value::Null);
    let before = ticket_count(&app).await;
    for visitor in [
        json!({"email": "not an email"}),
        json!({"name": "x".repeat(81)}),
        json!(["Dana", "dana@example.com"]),
    ] {
        let resp = app
            .chat(
                "/v1/chat/tools",
                &app.session_token().await,
                json!({"messages": asked, "visitor": visitor}),
            )
            .await;
        assert_eq!(resp.status(), 400, "{visitor}");
        let body: Value = resp.json().await.unwrap();
        let said = body["error"].as_str().unwrap();
        assert!(
            said.contains("visitor") || said.contains("expected a map"),
            "{body}"
        );
    }
    assert_eq!(ticket_count(&app).await, before);
}
