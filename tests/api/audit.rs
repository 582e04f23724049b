//! The audit trail over real sockets (on the embedded store, or CQL with
//! `FLEETY_TEST_BACKEND=cql`): the record each kind of action leaves, with its actor, address
//! and changes; the listing's filters and pages; who may read it; and that no record holds a
//! secret.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "another Horse 42";

async fn add_member(app: &TestApp, email: &str, role: &str) -> Value {
    let body = json!({"email": email, "name": email.split('@').next(), "password": PASSWORD, "role": role});
    let resp = app.admin_post("/v1/projects/demo/members", body).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.unwrap()
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/projects/demo/sign-in"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// A bearer session's token.
async fn token(app: &TestApp, email: &str) -> String {
    let resp = sign_in(app, email, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Value {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

async fn audit(app: &TestApp, token: &str, query: &str) -> Value {
    let path = format!("/v1/projects/demo/audit{query}");
    call(app, Method::GET, &path, token, None).await
}

/// The one record of `action` in a listing.
fn one<'a>(list: &'a Value, action: &str) -> &'a Value {
    let found: Vec<&Value> = list["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action)
        .collect();
    assert_eq!(found.len(), 1, "{action} in {list:#}");
    found[0]
}

/// A project whose owner, Dana, is signed in with a bearer session: where every test starts.
struct Owned {
    app: TestApp,
    /// Dana's member id.
    id: String,
    /// Dana's session token.
    token: String,
}

impl Owned {
    async fn new() -> Owned {
        let app = spawn_app().await;
        let owner = add_member(&app, "dana@example.com", "owner").await;
        let token = token(&app, "dana@example.com").await;
        Owned {
            id: owner["id"].as_str().unwrap().to_owned(),
            app,
            token,
        }
    }

    /// Dana as the trail names her.
    fn actor(&self) -> Value {
        json!({"kind": "member", "id": self.id, "name": "dana"})
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        call(&self.app, method, path, &self.token, body).await
    }

    /// The records `?action=` finds, read by Dana.
    async fn records(&self, action: &str) -> Vec<Value> {
        let list = audit(&self.app, &self.token, &format!("?action={action}")).await;
        let records = list["records"].as_array().unwrap().clone();
        assert!(
            records.iter().all(
                |r| action
                    .strip_suffix('*')
                    .map_or(r["action"] == action, |p| r["action"]
                        .as_str()
                        .unwrap()
                        .starts_with(p))
            ),
            "?action={action} let others through: {records:#?}"
        );
        records
    }

    /// The one record `?action=` finds.
    async fn record(&self, action: &str) -> Value {
        let mut found = self.records(action).await;
        assert_eq!(found.len(), 1, "{action}: {found:#?}");
        found.remove(0)
    }
}

/// A ticket opened by a visitor, with its slug and the record's target.
async fn ticket(app: &TestApp, title: &str) -> (String, Value) {
    let slug = app.create_ticket(title).await;
    let target = json!({"kind": "ticket", "id": slug, "name": title});
    (slug, target)
}

/// The record was made from the test's own address.
fn from_here(record: &Value) {
    assert_eq!(record["ip"], "127.0.0.1", "{record:#}");
}

#[tokio::test]
async fn every_kind_of_action_leaves_one_record_and_none_holds_a_secret() {
    let Owned {
        app,
        id: owner_id,
        token: dana,
    } = Owned::new().await;
    let wrong = sign_in(&app, "dana@example.com", "not the password").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let second = token(&app, "dana@example.com").await;

    // Members: added, renamed, given a role, a password, deactivated.
    let eli = call(
        &app,
        Method::POST,
        "/v1/projects/demo/members",
        &dana,
        Some(json!({"email": "eli@example.com", "name": "Eli", "password": PASSWORD})),
    )
    .await;
    let eli_path = format!("/v1/projects/demo/members/{}", eli["id"].as_str().unwrap());
    call(
        &app,
        Method::PATCH,
        &eli_path,
        &dana,
        Some(json!({"name": "Eli B"})),
    )
    .await;
    call(
        &app,
        Method::PATCH,
        &eli_path,
        &dana,
        Some(json!({"role": "admin"})),
    )
    .await;
    call(
        &app,
        Method::PATCH,
        &eli_path,
        &dana,
        Some(json!({"password": NEW_PASSWORD})),
    )
    .await;
    call(
        &app,
        Method::PATCH,
        &eli_path,
        &dana,
        Some(json!({"state": "deactivated"})),
    )
    .await;

    // Settings: the project, a webhook, a canned reply.
    call(
        &app,
        Method::PATCH,
        "/v1/projects/demo",
        &dana,
        Some(json!({"name": "Renamed", "allowed_origins": ["https://shop.example.com"]})),
    )
    .await;
    let hook = call(
        &app,
        Method::POST,
        "/v1/projects/demo/webhooks",
        &dana,
        Some(json!({"url": "https://hooks.example.com/fleety", "events": ["ticket.created"]})),
    )
    .await;
    let hook_secret = hook["secret"].as_str().unwrap().to_owned();
    let hook_path = format!(
        "/v1/projects/demo/webhooks/{}",
        hook["id"].as_str().unwrap()
    );
    call(
        &app,
        Method::PATCH,
        &hook_path,
        &dana,
        Some(json!({"enabled": false})),
    )
    .await;
    call(&app, Method::DELETE, &hook_path, &dana, None).await;
    let reply = call(
        &app,
        Method::POST,
        "/v1/projects/demo/canned-replies",
        &dana,
        Some(json!({"name": "Refunds", "shortcut": "refund", "body": "Refunds take five days."})),
    )
    .await;
    let reply_path = format!(
        "/v1/projects/demo/canned-replies/{}",
        reply["id"].as_str().unwrap()
    );
    call(
        &app,
        Method::PATCH,
        &reply_path,
        &dana,
        Some(json!({"body": "Refunds take a week."})),
    )
    .await;
    call(&app, Method::DELETE, &reply_path, &dana, None).await;

    // Sessions: one ended from the list, then sign-out.
    let sessions = call(
        &app,
        Method::GET,
        "/v1/projects/demo/me/sessions",
        &dana,
        None,
    )
    .await;
    let current = sessions["sessions"].as_array().unwrap();
    let other = current.iter().find(|s| s["current"] != true).unwrap();
    let end = format!(
        "/v1/projects/demo/me/sessions/{}",
        other["id"].as_str().unwrap()
    );
    call(&app, Method::DELETE, &end, &dana, None).await;
    call(
        &app,
        Method::POST,
        "/v1/projects/demo/sign-out",
        &dana,
        Some(json!({})),
    )
    .await;

    // Read as the admin key (the owner has signed out).
    let list = audit(&app, &app.admin_key, "?limit=200").await;
    let member = json!({"kind": "member", "id": owner_id, "name": "dana"});

    let records = list["records"].as_array().unwrap();
    let added: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "member.added")
        .collect();
    assert_eq!(added.len(), 2);
    let added = *added.iter().find(|r| r["target"]["name"] == "Eli").unwrap();
    assert_eq!(
        added["actor"],
        json!({"kind": "member", "id": owner_id, "name": "dana"})
    );
    assert_eq!(added["target"]["name"], "Eli");
    assert_eq!(added["changes"]["role"], "agent");
    let failed = one(&list, "member.sign_in_failed");
    assert_eq!(failed["actor"]["kind"], "anonymous");
    assert_eq!(
        failed["target"],
        json!({"kind": "email", "id": "dana@example.com"})
    );
    assert!(failed["ip"].as_str().is_some_and(|ip| !ip.is_empty()));
    let signed_in: Vec<&Value> = list["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "member.signed_in")
        .collect();
    assert_eq!(signed_in.len(), 2);
    assert!(signed_in.iter().all(|r| r["actor"] == member));
    let changed = one(&list, "member.changed");
    assert_eq!(
        changed["changes"]["name"],
        json!({"before": "Eli", "after": "Eli B"})
    );
    let role = one(&list, "member.role_changed");
    assert_eq!(
        role["changes"]["role"],
        json!({"before": "agent", "after": "admin"})
    );
    assert_eq!(
        one(&list, "member.password_changed")["changes"],
        json!({"password": "changed"})
    );
    let state = one(&list, "member.state_changed");
    assert_eq!(
        state["changes"]["state"],
        json!({"before": "invited", "after": "deactivated"})
    );

    let project = one(&list, "project.changed");
    assert_eq!(project["actor"], member);
    assert_eq!(project["changes"]["name"]["after"], "Renamed");
    assert_eq!(
        project["changes"]["allowed_origins"]["after"],
        json!(["https://shop.example.com"])
    );
    assert_eq!(
        one(&list, "webhook.created")["changes"]["url"],
        "https://hooks.example.com/fleety"
    );
    assert_eq!(
        one(&list, "webhook.changed")["changes"]["enabled"],
        json!({"before": true, "after": false})
    );
    one(&list, "webhook.deleted");
    one(&list, "canned_reply.created");
    assert_eq!(
        one(&list, "canned_reply.changed")["changes"]["body"]["after"],
        "Refunds take a week."
    );
    one(&list, "canned_reply.deleted");
    one(&list, "member.session_ended");
    assert_eq!(one(&list, "member.signed_out")["actor"], member);

    // The admin key's own changes name it.
    let by_key = list["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "member.added" && r["target"]["name"] == "dana")
        .unwrap();
    assert_eq!(by_key["actor"], json!({"kind": "admin_key"}));

    // Newest first. Compared as times: a time on a whole second is written without a
    // fraction ("…59Z"), which sorts after "…59.108Z" as text.
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = list["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| chrono::DateTime::parse_from_rfc3339(r["at"].as_str().unwrap()).unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);

    // No secret: no password, hash, token, session id or signing secret.
    let text = list.to_string();
    for secret in [
        PASSWORD,
        NEW_PASSWORD,
        "not the password",
        &dana,
        &second,
        &hook_secret,
        &app.admin_key,
        "argon2",
        other["id"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "the trail holds a secret: {secret}");
    }
}

#[tokio::test]
async fn the_trail_filters_pages_and_is_for_owners_and_admins_only() {
    let Owned {
        app,
        id: owner_id,
        token: dana,
    } = Owned::new().await;
    add_member(&app, "eli@example.com", "agent").await;
    add_member(&app, "fay@example.com", "admin").await;
    let eli = token(&app, "eli@example.com").await;
    let fay = token(&app, "fay@example.com").await;
    let before_changes = audit(&app, &dana, "?limit=1").await["records"][0]["at"]
        .as_str()
        .unwrap()
        .to_owned();
    for name in ["One", "Two", "Three"] {
        call(
            &app,
            Method::PATCH,
            "/v1/projects/demo",
            &dana,
            Some(json!({"name": name})),
        )
        .await;
    }

    // By member, by action or a prefix, since a time.
    let owner_id = owner_id.as_str();
    let mine = audit(&app, &fay, &format!("?member={owner_id}")).await;
    let mine = mine["records"].as_array().unwrap();
    assert_eq!(mine.len(), 4); // signed in, three changes
    assert!(mine.iter().all(|r| r["actor"]["id"] == owner_id));
    let renames = audit(&app, &dana, "?action=project.changed").await;
    assert_eq!(renames["records"].as_array().unwrap().len(), 3);
    assert_eq!(renames["records"][0]["changes"]["name"]["after"], "Three");
    let members = audit(&app, &dana, "?action=member.*").await;
    assert_eq!(members["records"].as_array().unwrap().len(), 6); // three added, three signed in
    let since = audit(
        &app,
        &dana,
        &format!("?since={}", before_changes.replace('+', "%2B")),
    )
    .await;
    assert!(since["records"].as_array().unwrap().len() >= 3);

    // Paged two at a time: the pages join up to the whole trail.
    let whole = audit(&app, &dana, "?limit=200").await;
    let (mut joined, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".into(),
        };
        let page = audit(&app, &dana, &query).await;
        joined.extend(page["records"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(Value::Array(joined), whole["records"]);

    // An agent may not read it, and bad filters are refused.
    let resp = app
        .http
        .get(app.url("/v1/projects/demo/audit"))
        .bearer_auth(&eli)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!error_of(&resp.json().await.unwrap()).is_empty());
    for bad in [
        "?member=nobody",
        "?since=yesterday",
        "?limit=0",
        "?limit=201",
        "?cursor=x",
        "?action=DROP%20TABLE",
    ] {
        let path = format!("/v1/projects/demo/audit{bad}");
        let resp = app
            .http
            .get(app.url(&path))
            .bearer_auth(&dana)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(!error_of(&resp.json().await.unwrap()).is_empty());
    }
}

#[tokio::test]
async fn a_status_change_is_recorded_with_the_ticket_and_from_to() {
    let o = Owned::new().await;
    let (slug, target) = ticket(&o.app, "Refund for order 1042").await;
    let path = format!("/v1/tickets/demo/{slug}");
    o.call(Method::PATCH, &path, Some(json!({"status": "pending"})))
        .await;

    let r = o.record("ticket.status_changed").await;
    assert_eq!(r["actor"], o.actor());
    assert_eq!(r["target"], target);
    assert_eq!(
        r["changes"],
        json!({"status": {"before": "open", "after": "pending"}})
    );
    from_here(&r);
}

#[tokio::test]
async fn an_assignment_is_recorded_with_who_before_and_after() {
    let o = Owned::new().await;
    let (slug, target) = ticket(&o.app, "Cannot sign in").await;
    let path = format!("/v1/tickets/demo/{slug}");
    o.call(Method::PATCH, &path, Some(json!({"assignee_id": o.id})))
        .await;
    o.call(Method::PATCH, &path, Some(json!({"assignee": null})))
        .await;

    let records = o.records("ticket.assigned").await;
    assert_eq!(records.len(), 2, "{records:#?}");
    // Newest first: the unassignment, then the assignment.
    assert!(records.iter().all(|r| r["actor"] == o.actor()));
    assert!(records.iter().all(|r| r["target"] == target));
    assert_eq!(
        records[1]["changes"],
        json!({
            "assignee": {"before": null, "after": "dana"},
            "assignee_id": {"before": null, "after": o.id},
        })
    );
    assert_eq!(
        records[0]["changes"],
        json!({
            "assignee": {"before": "dana", "after": null},
            "assignee_id": {"before": o.id, "after": null},
        })
    );
    // Only assignments: the status did not change.
    assert!(o.records("ticket.status_changed").await.is_empty());
}

#[tokio::test]
async fn a_tags_change_is_recorded_and_one_patch_of_several_fields_leaves_a_record_each() {
    let o = Owned::new().await;
    let (slug, target) = ticket(&o.app, "Invoice address").await;
    let path = format!("/v1/tickets/demo/{slug}");
    o.call(Method::PATCH, &path, Some(json!({"tags": ["billing"]})))
        .await;
    o.call(
        Method::PATCH,
        &path,
        Some(json!({"tags": ["billing", "vip"], "status": "resolved"})),
    )
    .await;

    let tags = o.records("ticket.tags_changed").await;
    assert_eq!(tags.len(), 2, "{tags:#?}");
    assert_eq!(tags[0]["actor"], o.actor());
    assert_eq!(tags[0]["target"], target);
    assert_eq!(
        tags[0]["changes"],
        json!({"tags": {"before": ["billing"], "after": ["billing", "vip"]}})
    );
    assert_eq!(
        tags[1]["changes"],
        json!({"tags": {"before": [], "after": ["billing"]}})
    );
    let status = o.record("ticket.status_changed").await;
    assert_eq!(status["at"], tags[0]["at"], "one change, one time");
    // `ticket.*` finds both kinds, and nothing else.
    assert_eq!(o.records("ticket.*").await.len(), 3);
}

#[tokio::test]
async fn a_note_is_recorded_by_its_id_never_its_text() {
    let o = Owned::new().await;
    let (slug, target) = ticket(&o.app, "Shipping delay").await;
    let text = "The customer was rude on the phone";
    let note = o
        .call(
            Method::POST,
            &format!("/v1/projects/demo/tickets/{slug}/notes"),
            Some(json!({"author": "Dana", "content": text})),
        )
        .await;

    let r = o.record("ticket.note_added").await;
    assert_eq!(r["actor"], o.actor());
    assert_eq!(r["target"], target);
    assert_eq!(r["changes"], json!({"note": note["id"]}));
    from_here(&r);
    let all = audit(&o.app, &o.token, "?limit=200").await;
    assert!(!all.to_string().contains(text), "the trail copied a note");
}

#[tokio::test]
async fn an_agents_reply_is_recorded_by_its_id_and_a_visitors_message_is_not() {
    let o = Owned::new().await;
    let (slug, target) = ticket(&o.app, "Where is my parcel").await;
    o.app.post_message(&slug, "Hello, anyone there?").await;
    let text = "It left our warehouse this morning";
    let posted = o
        .call(
            Method::POST,
            &format!("/v1/tickets/demo/{slug}/messages"),
            Some(json!({"author": "admin", "content": text})),
        )
        .await;
    o.app.post_message(&slug, "Thanks!").await;
    // The visitor marking it read is not an agent's action either.
    let read = o
        .app
        .patch_json(&format!("/v1/tickets/demo/{slug}/messages/read"), json!({}))
        .await;
    assert_eq!(read.status(), StatusCode::OK);

    let r = o.record("ticket.replied").await;
    assert_eq!(r["actor"], o.actor());
    assert_eq!(r["target"], target);
    assert_eq!(r["changes"], json!({"message": posted["data"]["id"]}));
    from_here(&r);
    assert_eq!(o.records("ticket.*").await.len(), 1);
    let all = audit(&o.app, &o.token, "?limit=200").await;
    assert!(!all.to_string().contains(text), "the trail copied a reply");
}

#[tokio::test]
async fn a_satisfaction_rating_is_not_an_agents_action() {
    let o = Owned::new().await;
    let (slug, _) = ticket(&o.app, "Broken zipper").await;
    let path = format!("/v1/tickets/demo/{slug}");
    o.call(Method::PATCH, &path, Some(json!({"status": "resolved"})))
        .await;
    let rated = o
        .app
        .post_json(&format!("{path}/satisfaction"), json!({"score": 5}))
        .await;
    assert_eq!(rated.status(), StatusCode::CREATED);
    let records = o.records("ticket.*").await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["action"], "ticket.status_changed");
}

#[tokio::test]
async fn the_admin_key_and_a_personal_token_are_named_as_today() {
    let o = Owned::new().await;
    let (slug, target) = ticket(&o.app, "Password reset").await;
    let path = format!("/v1/tickets/demo/{slug}");
    let reply = o
        .app
        .admin_post(
            &format!("{path}/messages"),
            json!({"author": "admin", "content": "Done"}),
        )
        .await;
    assert_eq!(reply.status(), StatusCode::CREATED);
    let closed = o.app.admin_patch(&path, json!({"status": "closed"})).await;
    assert_eq!(closed.status(), StatusCode::OK);
    let made = o
        .call(
            Method::POST,
            "/v1/projects/demo/me/tokens",
            Some(json!({"name": "CRM sync", "scope": "write"})),
        )
        .await;
    let secret = made["secret"].as_str().unwrap();
    call(
        &o.app,
        Method::PATCH,
        &path,
        secret,
        Some(json!({"tags": ["crm"]})),
    )
    .await;
    let note = format!("/v1/projects/demo/tickets/{slug}/notes");
    let body = json!({"author": "Bot", "content": "synced"});
    call(&o.app, Method::POST, &note, secret, Some(body)).await;

    let reply = o.record("ticket.replied").await;
    assert_eq!(reply["actor"], json!({"kind": "admin_key"}));
    let status = o.record("ticket.status_changed").await;
    assert_eq!(status["actor"], json!({"kind": "admin_key"}));
    assert_eq!(status["target"], target);
    from_here(&status);
    let mut by_token = o.actor();
    by_token["token"] = made["id"].clone();
    assert_eq!(o.record("ticket.tags_changed").await["actor"], by_token);
    assert_eq!(o.record("ticket.note_added").await["actor"], by_token);
    let all = audit(&o.app, &o.token, "?limit=200").await.to_string();
    assert!(!all.contains(secret) && !all.contains(&o.app.admin_key));
}

#[tokio::test]
async fn knowledge_base_changes_are_recorded_with_the_title_never_the_body() {
    let o = Owned::new().await;
    let body = "Refunds reach your card within five working days.";
    let article = o
        .call(
            Method::POST,
            "/v1/projects/demo/kb/articles",
            Some(json!({"title": "Refunds", "body": body, "tags": ["billing"]})),
        )
        .await;
    let id = article["id"].as_str().unwrap();
    let path = format!("/v1/projects/demo/kb/articles/{id}");
    o.call(
        Method::PATCH,
        &path,
        Some(json!({"title": "Refunds and returns", "body": "Within a week."})),
    )
    .await;
    // The admin key's change names it.
    let deleted = o.app.admin_delete(&path).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    let again = o.app.admin_delete(&path).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    let created = o.record("article.created").await;
    assert_eq!(created["actor"], o.actor());
    assert_eq!(
        created["target"],
        json!({"kind": "article", "id": id, "name": "Refunds"})
    );
    assert_eq!(created["changes"], json!({"title": "Refunds"}));
    from_here(&created);
    let changed = o.record("article.changed").await;
    assert_eq!(changed["actor"], o.actor());
    assert_eq!(changed["target"]["name"], "Refunds and returns");
    assert_eq!(
        changed["changes"],
        json!({
            "title": {"before": "Refunds", "after": "Refunds and returns"},
            "body": "changed",
        })
    );
    // Deleting what is gone is refused, and not recorded.
    let deleted = o.record("article.deleted").await;
    assert_eq!(deleted["actor"], json!({"kind": "admin_key"}));
    assert_eq!(deleted["target"]["id"], id);
    assert_eq!(o.records("article.*").await.len(), 3);
    let all = audit(&o.app, &o.token, "?limit=200").await.to_string();
    assert!(!all.contains(body) && !all.contains("Within a week."));
}

#[tokio::test]
async fn the_assistants_guidance_and_identity_secrets_are_recorded_never_the_secret() {
    let o = Owned::new().await;
    let guidance = "Answer in a friendly tone and never promise refunds.";
    o.call(
        Method::PATCH,
        "/v1/projects/demo",
        Some(json!({"assistant_guidance": guidance})),
    )
    .await;
    let changed = o.record("project.changed").await;
    assert_eq!(changed["actor"], o.actor());
    assert_eq!(changed["changes"]["assistant_guidance"]["after"], guidance);
    from_here(&changed);

    let made = o
        .call(
            Method::POST,
            "/v1/projects/demo/identity-secrets",
            Some(json!({})),
        )
        .await;
    let id = made["id"].as_str().unwrap();
    let secret = made["secret"].as_str().unwrap();
    let path = format!("/v1/projects/demo/identity-secrets/{id}");
    o.call(Method::DELETE, &path, None).await;
    // Removing what is gone is refused, and not recorded.
    let again = o.app.admin_delete(&path).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    let created = o.record("identity_secret.created").await;
    assert_eq!(created["actor"], o.actor());
    assert_eq!(created["target"]["kind"], "identity_secret");
    assert_eq!(created["target"]["id"], id);
    let deleted = o.record("identity_secret.deleted").await;
    assert_eq!(deleted["target"]["id"], id);
    from_here(&deleted);
    let all = audit(&o.app, &o.token, "?limit=200").await.to_string();
    assert!(!all.contains(secret), "the secret is in the trail");
}

#[tokio::test]
async fn personal_tokens_made_and_revoked_are_recorded_without_their_secret() {
    let o = Owned::new().await;
    let made = o
        .call(
            Method::POST,
            "/v1/projects/demo/me/tokens",
            Some(json!({"name": "CRM sync", "scope": "read"})),
        )
        .await;
    let id = made["id"].as_str().unwrap();
    // Used three times within the hour: one `token.used` record.
    for _ in 0..3 {
        let secret = made["secret"].as_str().unwrap();
        call(
            &o.app,
            Method::GET,
            "/v1/projects/demo/tickets",
            secret,
            None,
        )
        .await;
    }
    o.call(
        Method::DELETE,
        &format!("/v1/projects/demo/me/tokens/{id}"),
        None,
    )
    .await;

    let target = json!({"kind": "token", "id": id, "name": "CRM sync"});
    let used = o.record("token.used").await;
    assert_eq!(
        used["actor"],
        json!({"kind": "member", "id": o.id, "name": "dana", "token": id})
    );
    assert_eq!(used["target"], target);
    assert_eq!(used["changes"], json!({"scope": "read"}));
    from_here(&used);
    let created = o.record("token.created").await;
    assert_eq!(created["actor"], o.actor());
    assert_eq!(created["target"], target);
    assert_eq!(created["changes"], json!({"scope": "read", "member": o.id}));
    from_here(&created);
    let revoked = o.record("token.revoked").await;
    assert_eq!(revoked["actor"], o.actor());
    assert_eq!(revoked["target"], target);
    assert_eq!(o.records("token.*").await.len(), 3);
    let all = audit(&o.app, &o.token, "?limit=200").await.to_string();
    assert!(!all.contains(made["secret"].as_str().unwrap()));
}

#[tokio::test]
async fn invitations_and_password_resets_are_recorded_without_their_tokens() {
    let o = Owned::new().await;
    // Made and revoked by Dana.
    let first = o
        .call(
            Method::POST,
            "/v1/projects/demo/invitations",
            Some(json!({"email": "gone@example.com", "role": "agent"})),
        )
        .await;
    let first_id = first["invitation"]["id"].as_str().unwrap().to_owned();
    o.call(
        Method::DELETE,
        &format!("/v1/projects/demo/invitations/{first_id}"),
        None,
    )
    .await;
    let revoked = o.record("invitation.revoked").await;
    assert_eq!(revoked["actor"], o.actor());
    assert_eq!(
        revoked["target"],
        json!({"kind": "invitation", "id": first_id, "name": "gone@example.com"})
    );

    // Made by Dana, accepted by Eli: the acceptance is Eli's own doing.
    let invited = o
        .call(
            Method::POST,
            "/v1/projects/demo/invitations",
            Some(json!({"email": "eli@example.com", "role": "agent"})),
        )
        .await;
    let created = o.records("invitation.created").await;
    assert_eq!(created.len(), 2);
    assert!(created.iter().all(|r| r["actor"] == o.actor()));
    assert_eq!(
        created[0]["changes"]["role"],
        json!({"before": null, "after": "agent"})
    );
    from_here(&created[0]);
    let joined = o
        .app
        .http
        .post(o.app.url("/v1/projects/demo/join"))
        .json(&json!({"token": invited["token"], "name": "Eli", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), StatusCode::OK);
    let eli: Value = joined.json().await.unwrap();
    let eli_id = eli["member"]["id"].as_str().unwrap().to_owned();
    let accepted = o.record("invitation.accepted").await;
    assert_eq!(
        accepted["actor"],
        json!({"kind": "member", "id": eli_id, "name": "Eli"})
    );
    assert_eq!(accepted["target"]["id"], eli_id.as_str());
    from_here(&accepted);

    // A reset link Dana makes for Eli, and the reset Eli completes with it.
    let reset = o
        .call(
            Method::POST,
            &format!("/v1/projects/demo/members/{eli_id}/password-reset"),
            None,
        )
        .await;
    let made = o.record("member.reset_link_created").await;
    assert_eq!(made["actor"], o.actor());
    assert_eq!(made["target"]["id"], eli_id.as_str());
    let done = o
        .app
        .http
        .post(o.app.url("/v1/projects/demo/password-reset/complete"))
        .json(&json!({"token": reset["token"], "password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    let completed = o.record("member.password_reset").await;
    assert_eq!(completed["actor"]["id"], eli_id.as_str());
    assert_eq!(completed["target"]["id"], eli_id.as_str());

    let all = audit(&o.app, &o.token, "?limit=200").await.to_string();
    for token in [&first["token"], &invited["token"], &reset["token"]] {
        assert!(!all.contains(token.as_str().unwrap()), "no link token");
    }
}
