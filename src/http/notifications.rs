//! The caller's own email switches (`/me/notifications`, issue 28): which emails to agents
//! ([`crate::agent_mail`]) they receive in this project. The switches are the unsubscribe of
//! those emails. Personal preferences, so not in the audit trail (as the inbox's sound and
//! desktop alerts, kept in the browser, are not).

use std::sync::Arc;

use fleety_actors::agent_mail::NotificationPrefs;
use fleety_actors::domain::Project;
use fleety_actors::member::Member;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::reply::Response;

use super::access::Principal;
use super::error::{json, respond};
use super::{ApiError, Ctx};

/// Which emails the caller receives in this project.
#[derive(Serialize, ToSchema)]
pub struct NotificationsView {
    /// An email for every new ticket (off until turned on: on a busy desk every member would
    /// get every ticket).
    pub new_ticket: bool,
    /// An email when someone else assigns a ticket to the caller (on until turned off).
    pub assigned: bool,
    /// An email when the visitor of a ticket assigned to the caller writes while the caller
    /// is away from the inbox (on until turned off).
    pub visitor_reply: bool,
    /// Whether this server sends email at all: when it does not, the switches are kept but
    /// nothing is sent.
    pub email_enabled: bool,
}

/// The switches to change; those left out stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsChange {
    pub new_ticket: Option<bool>,
    pub assigned: Option<bool>,
    pub visitor_reply: Option<bool>,
}

fn me(principal: &Principal) -> Result<&Member, ApiError> {
    principal
        .person()
        .ok_or_else(|| ApiError::bad_request("the admin key is no member and receives no email"))
}

async fn current(ctx: &Ctx, me: &Member) -> Result<NotificationPrefs, ApiError> {
    let stored = ctx
        .store
        .get_notification_prefs(&me.project_id, me.id)
        .await?;
    Ok(stored
        .unwrap_or_else(|| NotificationPrefs::defaults(&me.project_id, me.id, ctx.clock.now())))
}

fn view(ctx: &Ctx, prefs: &NotificationPrefs) -> NotificationsView {
    NotificationsView {
        new_ticket: prefs.new_ticket,
        assigned: prefs.assigned,
        visitor_reply: prefs.visitor_reply,
        email_enabled: ctx.agent_mail.is_some(),
    }
}

/// GET /v1/projects/{projectId}/me/notifications
pub async fn get(_project: Arc<Project>, principal: Principal, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let prefs = current(&ctx, me(&principal)?).await?;
            Ok(json(StatusCode::OK, &view(&ctx, &prefs)))
        }
        .await,
    )
}

/// PATCH /v1/projects/{projectId}/me/notifications
pub async fn change(
    _project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
    req: NotificationsChange,
) -> Response {
    respond(
        async {
            if req.new_ticket.is_none() && req.assigned.is_none() && req.visitor_reply.is_none() {
                return Err(ApiError::bad_request(
                    "give new_ticket, assigned or visitor_reply (at least one)",
                ));
            }
            let me = me(&principal)?;
            let mut prefs = current(&ctx, me).await?;
            prefs.new_ticket = req.new_ticket.unwrap_or(prefs.new_ticket);
            prefs.assigned = req.assigned.unwrap_or(prefs.assigned);
            prefs.visitor_reply = req.visitor_reply.unwrap_or(prefs.visitor_reply);
            prefs.updated_at = ctx.clock.now();
            ctx.store.put_notification_prefs(&prefs).await?;
            Ok(json(StatusCode::OK, &view(&ctx, &prefs)))
        }
        .await,
    )
}
