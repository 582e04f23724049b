//! The audit trail over HTTP: who a request's changes are recorded as ([`by`]), and the
//! listing `GET /v1/projects/{projectId}/audit` for owners and admins.
//!
//! Recording a new action is one line where the change is made:
//! `audit::recorded(Some(who.record(&project.id, now, "thing.done").target(..)), store.change(..))`,
//! with `who` from the route's `b.audited()` (see docs/accounts.md, Audit trail).

use std::sync::Arc;

use chrono::DateTime;
use fleety_actors::audit::{AuditActor, AuditBy, AuditCursor, AuditQuery, AuditRecord, MAX_PAGE};
use fleety_actors::domain::Project;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warp::reply::Response;

use super::access::{Principal, Visitor};
use super::error::{json, respond};
use super::{ApiError, Ctx};
use crate::server::RequestMeta;

/// Who the caller's changes are recorded as: the member (with the personal token they used,
/// if any) or the admin key, from the client's address.
pub fn by(principal: &Principal, meta: &RequestMeta) -> AuditBy {
    let actor = match principal {
        Principal::AdminKey => AuditActor::AdminKey,
        Principal::Member(m) => AuditActor::Member {
            id: m.member.id,
            name: m.member.name.clone(),
            token: None,
        },
        Principal::Token(t) => AuditActor::Member {
            id: t.member.id,
            name: t.member.name.clone(),
            token: Some(t.token.id),
        },
    };
    AuditBy {
        actor,
        ip: Some(meta.ip.to_string()),
    }
}

/// Who a public route's caller acts as, when they act as the project's agents (the admin
/// key, or a member signed in or by a token); `None` for a visitor, whose actions the trail
/// does not record.
pub fn by_visitor(visitor: &Visitor, meta: &RequestMeta) -> Option<AuditBy> {
    let actor = match (&visitor.member, visitor.admin) {
        (Some(m), _) => AuditActor::Member {
            id: m.id,
            name: m.name.clone(),
            token: visitor.token,
        },
        (None, true) => AuditActor::AdminKey,
        (None, false) => return None,
    };
    Some(AuditBy {
        actor,
        ip: Some(meta.ip.to_string()),
    })
}

/// Which records to list, and which page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditListQuery {
    /// Only what this member did (their id).
    member: Option<String>,
    /// Only this action (`member.signed_in`), or every action under a prefix (`member.*`).
    action: Option<String>,
    /// Only records at or after this time (RFC 3339).
    since: Option<String>,
    /// Records per page, 50 by default.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
    /// Where to continue: the `next` of the page before.
    cursor: Option<String>,
}

/// A page of the trail, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditRecord>,
    /// Pass as `cursor` for the next page; null when there is none. A filtered page may come
    /// back short, even empty, with a `next`: the trail is searched a bounded stretch at a
    /// time.
    pub next: Option<String>,
}

fn parse(q: AuditListQuery) -> Result<AuditQuery, ApiError> {
    // A filter left empty (`?member=&action=`, as a form sends it) filters nothing.
    let given = |v: Option<String>| v.filter(|v| !v.is_empty());
    let q = AuditListQuery {
        member: given(q.member),
        action: given(q.action),
        since: given(q.since),
        cursor: given(q.cursor),
        ..q
    };
    let member = match q.member.as_deref() {
        Some(raw) => Some(
            uuid::Uuid::parse_str(raw)
                .map_err(|_| ApiError::bad_request("member is not a member id"))?,
        ),
        None => None,
    };
    let action = match q.action {
        Some(a) if a.is_empty() || a.len() > 64 => {
            return Err(ApiError::bad_request("action must be 1 to 64 characters"))
        }
        Some(a)
            if !a
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b"._*".contains(&b)) =>
        {
            return Err(ApiError::bad_request(
                "action is a dotted name such as member.signed_in, or a prefix such as member.*",
            ))
        }
        other => other,
    };
    let since = match q.since.as_deref() {
        Some(raw) => Some(
            DateTime::parse_from_rfc3339(raw)
                .map_err(|_| ApiError::bad_request("since is not an RFC 3339 time"))?
                .to_utc(),
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = match q.cursor.as_deref() {
        Some(raw) => Some(
            AuditCursor::decode(raw).ok_or_else(|| ApiError::bad_request("cursor is not valid"))?,
        ),
        None => None,
    };
    Ok(AuditQuery {
        member,
        action,
        since,
        after,
        limit,
    })
}

/// GET /v1/projects/{projectId}/audit
pub async fn list(project: Arc<Project>, ctx: Arc<Ctx>, query: AuditListQuery) -> Response {
    respond(
        async {
            let query = parse(query)?;
            let page = ctx.audit_store.list_audit(&project.id, &query).await?;
            let list = AuditList {
                records: page.records,
                next: page.next.map(|c| c.encode()),
            };
            Ok(json(StatusCode::OK, &list))
        }
        .await,
    )
}
