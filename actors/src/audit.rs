//! The audit trail: who did what to a project, when and from where. Owns the stored record
//! ([`AuditRecord`]), the listing's query and paging ([`AuditQuery`], [`AuditPage`]), and the
//! way a record travels with the change it records ([`recorded`]).
//!
//! A record is written in the same durable write as its change, so a change cannot happen
//! without it. Rather than a second write after the fact, a change is run inside
//! [`recorded`]: the store's write methods [`take`] the pending record and make it part of
//! their own write (one WAL record on the embedded store). A ticket's actor, which batches
//! its own writes, carries it as [`crate::store::TicketWrite::Audit`]. An event that changes
//! nothing (a failed sign-in) is written alone with
//! [`AuditStore::record_audit`](crate::store::AuditStore::record_audit).
//!
//! Records never hold a secret: callers put in `changes` only what is safe to show an owner
//! (a password change is recorded as `{"password": "changed"}`).

use std::cell::RefCell;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::ProjectId;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditActor {
    /// A member, with their name at the time; `token` is the id of the personal API token
    /// they acted by, if they did.
    Member {
        id: Uuid,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Uuid>,
    },
    /// The project's admin key.
    AdminKey,
    /// The operator: the operator API's token, or the `fleety` command line.
    Operator,
    /// Someone not signed in (a failed sign-in): who they claimed to be is the target.
    Anonymous,
    /// The server itself, applying the project's retention setting.
    Retention,
}

impl AuditActor {
    pub fn member_id(&self) -> Option<Uuid> {
        match self {
            AuditActor::Member { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// Who makes a change and from where: all a record needs besides what changed. Handlers
/// build it once per request and hand it to whatever makes the change: a store write
/// ([`recorded`]), or an actor that decides the change and its record itself ([`acting`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBy {
    pub actor: AuditActor,
    pub ip: Option<String>,
}

impl AuditBy {
    /// The operator, from the command line (no address).
    pub fn operator() -> Self {
        Self {
            actor: AuditActor::Operator,
            ip: None,
        }
    }

    /// A record of `action` by this actor, at `at`.
    pub fn record(&self, project: &ProjectId, at: DateTime<Utc>, action: &str) -> AuditRecord {
        AuditRecord::new(project, at, self.actor.clone(), self.ip.clone(), action)
    }
}

/// What an action was done to: `{"kind": "member", "id": "…", "name": "Dana"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditTarget {
    /// `project`, `member`, `session`, `webhook`, `article`, `canned_reply`, `ticket`.
    pub kind: String,
    pub id: String,
    /// A readable name (a member's name, a ticket's title), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl AuditTarget {
    pub fn new(kind: &str, id: impl ToString) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.to_string(),
            name: None,
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Random; orders records of the same millisecond.
    pub id: Uuid,
    #[schema(value_type = String)]
    pub project_id: ProjectId,
    /// To the millisecond.
    pub at: DateTime<Utc>,
    pub actor: AuditActor,
    /// The client's address (the TCP peer, or what a trusted proxy saw).
    pub ip: Option<String>,
    /// A stable dotted name: `member.signed_in`, `ticket.status_changed`, ….
    pub action: String,
    pub target: Option<AuditTarget>,
    /// What changed: `{"field": {"before": …, "after": …}}`, or details of the event.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
}

impl AuditRecord {
    /// A new record of `action` by `actor`, now.
    pub fn new(
        project: &ProjectId,
        at: DateTime<Utc>,
        actor: AuditActor,
        ip: Option<String>,
        action: &str,
    ) -> Self {
        // Milliseconds, as CQL keeps them and cursors carry them.
        let at = DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
        Self {
            id: Uuid::new_v4(),
            project_id: project.clone(),
            at,
            actor,
            ip,
            action: action.to_owned(),
            target: None,
            changes: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn target(mut self, target: AuditTarget) -> Self {
        self.target = Some(target);
        self
    }

    /// Adds `field` changed from `before` to `after`; nothing if they are equal.
    pub fn changed(self, field: &str, before: impl Serialize, after: impl Serialize) -> Self {
        let (before, after) = (json(before), json(after));
        if before != after {
            self.detail(field, serde_json::json!({"before": before, "after": after}))
        } else {
            self
        }
    }

    /// Adds a detail of the event (`{"role": "agent"}` on a new member).
    pub fn with(self, field: &str, value: impl Serialize) -> Self {
        self.detail(field, json(value))
    }

    fn detail(mut self, field: &str, value: serde_json::Value) -> Self {
        if let serde_json::Value::Object(map) = &mut self.changes {
            map.insert(field.to_owned(), value);
        }
        self
    }

    /// Whether anything is recorded as changed (a setting saved unchanged is not recorded).
    pub fn has_changes(&self) -> bool {
        self.changes.as_object().is_some_and(|m| !m.is_empty())
    }

    /// Its place in the project's trail.
    pub fn cursor(&self) -> AuditCursor {
        AuditCursor {
            at: self.at,
            id: self.id,
        }
    }
}

fn json(value: impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// A position in a project's trail, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditCursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl AuditCursor {
    /// `<millis>_<uuid>`, as the API hands it out.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at.timestamp_millis(), self.id)
    }

    pub fn decode(raw: &str) -> Option<AuditCursor> {
        let (ms, id) = raw.split_once('_')?;
        Some(AuditCursor {
            at: DateTime::from_timestamp_millis(ms.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// Records an audit listing asks for.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only what this member did.
    pub member: Option<Uuid>,
    /// Only this action, or with a trailing `.*` every action under that prefix (`member.*`).
    pub action: Option<String>,
    /// Only records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Continue after this position (exclusive), as returned in [`AuditPage::next`].
    pub after: Option<AuditCursor>,
    /// Page size; backends clamp it to 1..=[`MAX_PAGE`].
    pub limit: usize,
}

/// The most records one page holds.
pub const MAX_PAGE: usize = 200;
/// Records a filtered page examines at most, so one request stays bounded however long the
/// trail; a short page with a `next` cursor has more to look at.
pub const SCAN: usize = 5_000;

impl AuditQuery {
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }

    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.member.is_none_or(|m| r.actor.member_id() == Some(m))
            && self.since.is_none_or(|s| r.at >= s)
            && self
                .action
                .as_deref()
                .is_none_or(|a| match a.strip_suffix('*') {
                    Some(prefix) => r.action.starts_with(prefix),
                    None => r.action == a,
                })
    }
}

#[derive(Debug, Clone)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next: Option<AuditCursor>,
}

impl AuditPage {
    /// Builds a page from records newest first, already after the query's cursor and not
    /// older than its `since`: keeps those that match, stops once the page is full (with a
    /// `next` cursor if any record is left) or after [`SCAN`] records (with a `next` cursor
    /// at the last one examined).
    pub fn scan(records: impl IntoIterator<Item = AuditRecord>, query: &AuditQuery) -> AuditPage {
        let size = query.page_size();
        let mut page = Vec::new();
        let mut last = None;
        for (examined, r) in records.into_iter().enumerate() {
            if page.len() == size {
                return AuditPage {
                    next: page.last().map(AuditRecord::cursor),
                    records: page,
                };
            }
            if examined == SCAN {
                return AuditPage {
                    records: page,
                    next: last,
                };
            }
            last = Some(r.cursor());
            if query.matches(&r) {
                page.push(r);
            }
        }
        AuditPage {
            records: page,
            next: None,
        }
    }
}

/// How long records are kept by default (`FLEETY_AUDIT_RETENTION_DAYS`).
pub const DEFAULT_RETENTION_DAYS: u32 = 365;

tokio::task_local! {
    static PENDING: RefCell<Option<AuditRecord>>;
}

/// Runs `change` with `record` pending: the first audited store write it makes takes the
/// record and writes it in the same durable batch. `None` runs `change` as it is. A change
/// that fails or is refused before reaching the store writes no record.
pub async fn recorded<F: Future>(record: Option<AuditRecord>, change: F) -> F::Output {
    PENDING.scope(RefCell::new(record), change).await
}

/// The record pending for the write being made, if any; it is taken, so a second write of
/// the same change does not record it again. Called by store backends.
/// Takes the ticket's title out of a record naming the ticket `slug` (its target's name), as
/// the ticket's erasure must: the title is the ticket's content. Whether it changed anything.
pub fn redact_ticket(record: &mut AuditRecord, slug: &str) -> bool {
    match &mut record.target {
        Some(t) if t.kind == "ticket" && t.id == slug && t.name.is_some() => {
            t.name = None;
            true
        }
        _ => false,
    }
}

pub fn take() -> Option<AuditRecord> {
    PENDING
        .try_with(|pending| pending.borrow_mut().take())
        .ok()
        .flatten()
}

tokio::task_local! {
    static ACTING: Option<AuditBy>;
}

/// Runs `request` as done by `by`: the actors it asks for a change (a ticket's, a knowledge
/// base's) learn who acts from [`acting_now`] and send it along with the request, so the
/// actor, which alone knows what the change comes to (a status before and after), writes the
/// record in the change's own batch. `None`: nobody to record (a visitor).
pub async fn acting<F: Future>(by: Option<AuditBy>, request: F) -> F::Output {
    ACTING.scope(by, request).await
}

/// Who acts in the request being handled ([`acting`]); `None` outside one, or for a visitor.
pub fn acting_now() -> Option<AuditBy> {
    ACTING.try_with(Clone::clone).ok().flatten()
}

/// Puts back a record a backend took for a write that was refused before anything was
/// written, so a later write of the same change can carry it.
pub fn put_back(record: AuditRecord) {
    let _ = PENDING.try_with(|pending| *pending.borrow_mut() = Some(record));
}
