//! Who tickets are assigned to: the members an agent may pick ([`list`]), checking a picked
//! member ([`pick`]), and how a ticket's assignee is shown ([`Roster`]).
//!
//! A ticket stores the member it was assigned to as they were then. Whether that member still
//! counts is decided when the ticket is read, not by rewriting tickets: a deactivated member's
//! tickets show as unassigned (the ticket, the listing and its filters), and come back to them
//! if they are reactivated. This works the same whoever deactivated the member (the API, the
//! CLI on the store, another node) and needs no sweep that could stop half way.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use fleety_actors::domain::{AgentName, MessageAgent, Project, ProjectId, Ticket};
use fleety_actors::member::{Member, MemberState};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::reply::Response;

use super::error::{json, respond};
use super::{ApiError, Ctx};

/// A member may be assigned tickets unless deactivated: one added but not signed in yet
/// (`invited`) can be given work before their first sign-in.
pub fn assignable(member: &Member) -> bool {
    member.state != MemberState::Deactivated
}

/// The member as a ticket carries them.
pub fn member_ref(member: &Member) -> MessageAgent {
    MessageAgent {
        id: member.id,
        name: member.name.clone(),
        avatar_url: member.avatar_url.clone(),
    }
}

/// The member's display name as the ticket's `assignee` string: an agent name is at most 80
/// characters where a member's may have 100, so a longer one is cut.
pub fn display_name(name: &str) -> AgentName {
    let cut: String = name.chars().take(80).collect();
    AgentName::parse(cut.trim())
        .unwrap_or_else(|_| AgentName::parse("Member").expect("a valid agent name"))
}

/// The member `id` names, if they may be assigned tickets; a clear 400 otherwise.
pub async fn pick(ctx: &Ctx, project: &ProjectId, id: Uuid) -> Result<Member, ApiError> {
    let member = ctx.accounts.store().get_member(project, id).await?;
    match member {
        None => Err(ApiError::bad_request(
            "assignee_id: the project has no member with this id",
        )),
        Some(m) if !assignable(&m) => Err(ApiError::bad_request(
            "assignee_id: this member is deactivated and cannot be assigned tickets",
        )),
        Some(m) => Ok(m),
    }
}

/// The project's members by id, to show tickets' assignees as they stand now.
pub struct Roster {
    members: HashMap<Uuid, Member>,
}

impl Roster {
    pub async fn load(ctx: &Ctx, project: &ProjectId) -> Result<Roster, ApiError> {
        let members = ctx.accounts.store().list_members(project).await?;
        Ok(Roster {
            members: members.into_iter().map(|m| (m.id, m)).collect(),
        })
    }

    pub fn get(&self, id: Uuid) -> Option<&Member> {
        self.members.get(&id)
    }

    /// The members whose tickets count as nobody's.
    pub fn hidden(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .members
            .values()
            .filter(|m| !assignable(m))
            .map(|m| m.id)
            .collect();
        ids.sort();
        ids
    }

    /// The ticket as readers see it: a deactivated member's ticket unassigned, an assignable
    /// member under their current name and avatar.
    pub fn show(&self, ticket: &mut Ticket) {
        let Some(assigned) = ticket.assignee_member.as_ref() else {
            return;
        };
        match self.members.get(&assigned.id) {
            Some(m) if !assignable(m) => {
                ticket.assignee = None;
                ticket.assignee_member = None;
            }
            Some(m) => {
                ticket.assignee = Some(display_name(&m.name));
                ticket.assignee_member = Some(member_ref(m));
            }
            // Members are never deleted; a row that names none is shown as it was stored.
            None => {}
        }
    }
}

/// The ticket's view, as its actor encoded it, with the assignee as it stands now. Only a
/// ticket assigned to a member is decoded and encoded again: the marker below cannot occur
/// unescaped inside a JSON string, and the ticket's own fields come before its messages.
pub async fn show_view(ctx: &Ctx, project: &ProjectId, body: Bytes) -> Result<Bytes, ApiError> {
    const MARKER: &[u8] = b"\"assignee_member\":{\"id\":\"";
    let Some(at) = body.windows(MARKER.len()).position(|w| w == MARKER) else {
        return Ok(body);
    };
    let raw_id = body.get(at + MARKER.len()..at + MARKER.len() + 36);
    let Some(id) = raw_id
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .and_then(|raw| Uuid::try_parse(raw).ok())
    else {
        return Ok(body);
    };
    let Some(member) = ctx.accounts.store().get_member(project, id).await? else {
        return Ok(body);
    };
    let mut view: serde_json::Value = serde_json::from_slice(&body).map_err(ApiError::internal)?;
    if assignable(&member) {
        view["assignee"] = display_name(&member.name).as_str().into();
        view["assignee_member"] = serde_json::to_value(member_ref(&member)).unwrap_or_default();
    } else {
        view["assignee"] = serde_json::Value::Null;
        view["assignee_member"] = serde_json::Value::Null;
    }
    Ok(Bytes::from(
        serde_json::to_vec(&view).map_err(ApiError::internal)?,
    ))
}

/// The members tickets may be assigned to, by name.
#[derive(Serialize, ToSchema)]
pub struct AssigneeList {
    assignees: Vec<MessageAgent>,
}

/// GET /v1/projects/{projectId}/assignees: every agent may read it (the members list itself is
/// for owners and admins), and it shows nothing beyond what a ticket shows of its assignee.
pub async fn list(project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let members = ctx.accounts.store().list_members(&project.id).await?;
            let mut members: Vec<&Member> = members.iter().filter(|m| assignable(m)).collect();
            members.sort_by(|a, b| a.name.cmp(&b.name).then(a.email.cmp(&b.email)));
            let assignees = members.into_iter().map(member_ref).collect();
            Ok(json(StatusCode::OK, &AssigneeList { assignees }))
        }
        .await,
    )
}
