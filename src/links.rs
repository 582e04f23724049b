//! Invitations and password resets: single-use, expiring links, and the rules of making,
//! listing, revoking and using them.
//!
//! A link's token is `fmi_` (an invitation) or `fmr_` (a reset) and 43 base64url characters:
//! 256 random bits. The store keeps only its SHA-256 digest, which is the link's id, so the
//! token is shown once, in the answer that makes it. Using a link deletes it, and of two uses
//! only one deletes it, so it works once.
//!
//! - An invitation names an address and a role; whoever invites follows the rules of adding a
//!   member (admins invite agents only). Accepting creates the member, active, with the name
//!   and password the invitee chose, and signs them in. An address has one pending invitation:
//!   inviting it again replaces the earlier one. An address that is a member's already cannot
//!   be invited.
//! - A reset is for one member, who has one pending reset at most (a new one replaces it).
//!   Completing it sets the password and ends every session of the member.
//!
//! Expired links are refused and removed when met; on CQL they also leave on their own.

use std::net::IpAddr;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use fleety_actors::audit::{self, AuditActor, AuditBy, AuditRecord, AuditTarget};
use fleety_actors::domain::ProjectId;
use fleety_actors::member::{normalise_email, LinkKind, Member, MemberLink, MemberState, Role};
use fleety_actors::store::StoreError;
use uuid::Uuid;

use crate::accounts::{Accounts, NewSession};
use crate::members::{check_name, MemberError};

/// Pending invitations a project may hold at once: each is a stored row, made on request.
pub const MAX_PENDING_INVITATIONS: usize = 200;

const INVITATION_PREFIX: &str = "fmi_";
const RESET_PREFIX: &str = "fmr_";

/// Why a link was not made or not used.
#[derive(Debug)]
pub enum LinkError {
    Member(MemberError),
    /// Used, revoked, expired or never made: the same for all but expiry, which is known only
    /// while the row is there.
    Gone(&'static str),
    /// The project has as many pending invitations as it may.
    Full,
}

impl From<MemberError> for LinkError {
    fn from(e: MemberError) -> Self {
        LinkError::Member(e)
    }
}

impl From<StoreError> for LinkError {
    fn from(e: StoreError) -> Self {
        LinkError::Member(MemberError::Store(e))
    }
}

const GONE: &str = "this link was used or revoked, or never existed: ask for a new one";
const EXPIRED: &str = "this link has expired: ask for a new one";

/// A link just made, with the token only this answer carries.
pub struct Issued {
    pub link: MemberLink,
    pub token: String,
    /// Whether an email carrying the link was written to the outbox with it.
    pub emailed: bool,
}

impl Issued {
    /// Where the inbox opens the link. The token is in the fragment, which browsers never
    /// send to the server, so it stays out of access logs.
    pub fn path(&self) -> String {
        let page = match self.link.kind {
            LinkKind::Invitation => "accept",
            LinkKind::PasswordReset => "reset",
        };
        let project =
            url::form_urlencoded::byte_serialize(self.link.project_id.as_str().as_bytes())
                .collect::<String>();
        format!("/inbox#/{page}?project={project}&token={}", self.token)
    }
}

fn new_token(kind: LinkKind) -> String {
    let bytes: [u8; 32] = rand::random();
    let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let prefix = match kind {
        LinkKind::Invitation => INVITATION_PREFIX,
        LinkKind::PasswordReset => RESET_PREFIX,
    };
    format!("{prefix}{random}")
}

/// The id of the link a token stands for, if the token is shaped like one of `kind`.
fn token_id(token: &str, kind: LinkKind) -> Option<String> {
    let prefix = match kind {
        LinkKind::Invitation => INVITATION_PREFIX,
        LinkKind::PasswordReset => RESET_PREFIX,
    };
    let random = token.strip_prefix(prefix)?;
    let shaped = random.len() == 43
        && random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then(|| crate::accounts::session_id(token))
}

fn ttl(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(1))
}

/// Removes the links of `project` that `replaced` picks, and expired ones; the rest.
async fn prune(
    accounts: &Accounts,
    project: &ProjectId,
    now: DateTime<Utc>,
    replaced: impl Fn(&MemberLink) -> bool,
) -> Result<Vec<MemberLink>, StoreError> {
    let store = accounts.store();
    let mut kept = Vec::new();
    for link in store.list_member_links(project).await? {
        if link.expires_at <= now || replaced(&link) {
            match store.delete_member_link(project, &link.id).await {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        } else {
            kept.push(link);
        }
    }
    Ok(kept)
}

/// Invites `email` as `role`. `by` is the caller's role, `by_member` the caller when a member.
pub async fn invite(
    accounts: &Accounts,
    project: &ProjectId,
    email: &str,
    role: Role,
    by: Role,
    by_member: Option<Uuid>,
    who: &AuditBy,
) -> Result<Issued, LinkError> {
    crate::members::check_may_give(by, role)?;
    let email = normalise_email(email)
        .ok_or_else(|| MemberError::Invalid("email is not an email address".into()))?;
    if accounts
        .store()
        .member_by_email(project, &email)
        .await?
        .is_some()
    {
        return Err(MemberError::Taken.into());
    }
    let now = accounts.now();
    let pending = prune(accounts, project, now, |l| {
        l.kind == LinkKind::Invitation && l.email == email
    })
    .await?;
    let invitations = pending
        .iter()
        .filter(|l| l.kind == LinkKind::Invitation)
        .count();
    if invitations >= MAX_PENDING_INVITATIONS {
        return Err(LinkError::Full);
    }
    let token = new_token(LinkKind::Invitation);
    let link = MemberLink {
        id: crate::accounts::session_id(&token),
        project_id: project.clone(),
        kind: LinkKind::Invitation,
        email,
        role,
        member_id: None,
        created_by: by_member,
        created_at: now,
        expires_at: now + ttl(accounts.policy.invitation_ttl),
    };
    let record = who
        .record(project, now, "invitation.created")
        .target(invitation_target(&link))
        .changed("role", serde_json::Value::Null, link.role);
    store_link(accounts, link, token, now, record).await
}

/// What an invitation record names: the invitation, by its id and the address invited.
fn invitation_target(link: &MemberLink) -> AuditTarget {
    AuditTarget::new("invitation", &link.id).named(&link.email)
}

/// Stores a new link: with the email that carries it when email is on (one write), alone
/// otherwise, for its maker to hand on.
async fn store_link(
    accounts: &Accounts,
    link: MemberLink,
    token: String,
    now: DateTime<Utc>,
    record: AuditRecord,
) -> Result<Issued, LinkError> {
    let mut issued = Issued {
        link,
        token,
        emailed: false,
    };
    // The record goes in the link's own write, with its email when there is one.
    let record = Some(record);
    match &accounts.mail {
        Some(mail) => {
            let email = mail.link_email(&issued.link, &issued.path(), now);
            audit::recorded(record, mail.put_link(&issued.link, &email)).await?;
            issued.emailed = true;
        }
        None => {
            let put = accounts.store().put_member_link(&issued.link);
            audit::recorded(record, put).await?
        }
    }
    Ok(issued)
}

/// The project's pending invitations, newest first.
pub async fn pending_invitations(
    accounts: &Accounts,
    project: &ProjectId,
) -> Result<Vec<MemberLink>, StoreError> {
    let now = accounts.now();
    let mut links = accounts.store().list_member_links(project).await?;
    links.retain(|l| l.kind == LinkKind::Invitation && l.expires_at > now);
    links.sort_by_key(|l| std::cmp::Reverse(l.created_at));
    Ok(links)
}

/// Revokes a pending invitation, by its id. Admins revoke invitations to the agent role only.
pub async fn revoke_invitation(
    accounts: &Accounts,
    project: &ProjectId,
    id: &str,
    by: Role,
    who: &AuditBy,
) -> Result<(), LinkError> {
    let not_found = || LinkError::Member(MemberError::NotFound);
    let well_formed = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err(not_found());
    }
    let id = id.to_ascii_lowercase();
    let link = accounts.store().get_member_link(project, &id).await?;
    let link = link
        .filter(|l| l.kind == LinkKind::Invitation)
        .ok_or_else(not_found)?;
    crate::members::check_may_give(by, link.role)?;
    let record = who
        .record(project, accounts.now(), "invitation.revoked")
        .target(invitation_target(&link));
    let delete = accounts.store().delete_member_link(project, &id);
    match audit::recorded(Some(record), delete).await {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// Finds the live link a token stands for, removing it if it expired.
async fn live_link(
    accounts: &Accounts,
    project: &ProjectId,
    token: &str,
    kind: LinkKind,
) -> Result<MemberLink, LinkError> {
    let id = token_id(token, kind).ok_or(LinkError::Gone(GONE))?;
    let link = accounts.store().get_member_link(project, &id).await?;
    let link = link
        .filter(|l| l.kind == kind)
        .ok_or(LinkError::Gone(GONE))?;
    if link.expires_at <= accounts.now() {
        match accounts.store().delete_member_link(project, &id).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        return Err(LinkError::Gone(EXPIRED));
    }
    Ok(link)
}

/// Uses a link: deletes it, or finds another use got there first.
async fn use_link(accounts: &Accounts, link: &MemberLink) -> Result<(), LinkError> {
    match accounts
        .store()
        .delete_member_link(&link.project_id, &link.id)
        .await
    {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => Err(LinkError::Gone(GONE)),
        Err(e) => Err(e.into()),
    }
}

/// Accepts an invitation: the invitee becomes an active member with this name and password,
/// and is signed in. The name and password are checked before the link is used, so a
/// refused password leaves the link working.
pub async fn accept(
    accounts: &Accounts,
    project: &ProjectId,
    token: &str,
    name: &str,
    password: String,
    ip: IpAddr,
    user_agent: Option<String>,
) -> Result<NewSession, LinkError> {
    let link = live_link(accounts, project, token, LinkKind::Invitation).await?;
    let name = check_name(name)?;
    let password_hash = crate::members::hash(password).await?;
    use_link(accounts, &link).await?;
    let now = accounts.now();
    let member = Member {
        id: Uuid::new_v4(),
        project_id: project.clone(),
        email: link.email.clone(),
        name,
        avatar_url: None,
        role: link.role,
        state: MemberState::Active,
        password_hash,
        created_at: now,
        updated_at: now,
    };
    // Recorded as the new member's own doing, from where they accepted.
    let record = member_acting(&member, Some(ip.to_string()))
        .record(project, now, "invitation.accepted")
        .target(crate::members::target(&member))
        .changed("role", serde_json::Value::Null, member.role);
    match audit::recorded(Some(record), accounts.store().create_member(&member)).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(MemberError::Taken.into()),
        Err(e) => return Err(e.into()),
    }
    Ok(accounts.open_session(member, ip, user_agent).await?)
}

/// Makes a reset link for a member, replacing an earlier one. `by` is `None` when the member
/// asked for it themself (the public request).
pub async fn reset_for(
    accounts: &Accounts,
    member: &Member,
    by: Option<(Role, Option<Uuid>)>,
    who: &AuditBy,
) -> Result<Issued, LinkError> {
    if let Some((role, by_member)) = by {
        if !crate::members::may_manage_member(role, by_member, member) {
            crate::members::check_may_give(role, member.role)?;
        }
    }
    if member.state == MemberState::Deactivated {
        return Err(
            MemberError::Deactivated("the member is deactivated: reactivate them first").into(),
        );
    }
    let project = &member.project_id;
    let now = accounts.now();
    prune(accounts, project, now, |l| {
        l.kind == LinkKind::PasswordReset && l.member_id == Some(member.id)
    })
    .await?;
    let token = new_token(LinkKind::PasswordReset);
    let link = MemberLink {
        id: crate::accounts::session_id(&token),
        project_id: project.clone(),
        kind: LinkKind::PasswordReset,
        email: member.email.clone(),
        role: member.role,
        member_id: Some(member.id),
        created_by: by.and_then(|(_, m)| m),
        created_at: now,
        expires_at: now + ttl(accounts.policy.reset_ttl),
    };
    let record = who
        .record(project, now, "member.reset_link_created")
        .target(crate::members::target(member));
    store_link(accounts, link, token, now, record).await
}

/// A member acting for themself, from `ip`.
fn member_acting(member: &Member, ip: Option<String>) -> AuditBy {
    AuditBy {
        actor: AuditActor::Member {
            id: member.id,
            name: member.name.clone(),
            token: None,
        },
        ip,
    }
}

/// A reset asked for by address, from the public endpoint: a link for the member with this
/// address, if there is one who may sign in; nothing otherwise. The caller answers the same
/// either way and runs this after answering.
pub async fn request_reset(
    accounts: &Accounts,
    project: &ProjectId,
    email: &str,
    ip: IpAddr,
) -> Result<Option<Issued>, LinkError> {
    let Some(email) = normalise_email(email) else {
        return Ok(None);
    };
    let member = accounts.store().member_by_email(project, &email).await?;
    match member {
        Some(m) if m.state != MemberState::Deactivated => {
            // Nobody signed in asked: the record names the member the link is for.
            let who = AuditBy {
                actor: AuditActor::Anonymous,
                ip: Some(ip.to_string()),
            };
            Ok(Some(reset_for(accounts, &m, None, &who).await?))
        }
        _ => Ok(None),
    }
}

/// Completes a reset: sets the member's new password and ends every session of theirs.
pub async fn complete_reset(
    accounts: &Accounts,
    project: &ProjectId,
    token: &str,
    password: String,
    ip: IpAddr,
) -> Result<Member, LinkError> {
    let link = live_link(accounts, project, token, LinkKind::PasswordReset).await?;
    let password_hash = crate::members::hash(password).await?;
    use_link(accounts, &link).await?;
    let member = match link.member_id {
        Some(id) => accounts.store().get_member(project, id).await?,
        None => None,
    };
    let member = member
        .filter(|m| m.state != MemberState::Deactivated)
        .ok_or(LinkError::Gone(GONE))?;
    let changed = Member {
        password_hash,
        updated_at: accounts.now().max(member.updated_at),
        ..member
    };
    let record = member_acting(&changed, Some(ip.to_string()))
        .record(project, accounts.now(), "member.password_reset")
        .target(crate::members::target(&changed));
    let update = accounts.store().update_member(&changed);
    audit::recorded(Some(record), update).await?;
    accounts.end_sessions(&changed).await?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_stands_for_a_link_of_its_own_kind_only() {
        let invite = new_token(LinkKind::Invitation);
        let reset = new_token(LinkKind::PasswordReset);
        assert!(invite.starts_with("fmi_") && invite.len() == 47);
        let id = token_id(&invite, LinkKind::Invitation).unwrap();
        assert_eq!(id, crate::accounts::session_id(&invite));
        assert_eq!(id.len(), 64);
        assert_eq!(token_id(&invite, LinkKind::PasswordReset), None);
        assert!(token_id(&reset, LinkKind::PasswordReset).is_some());
        assert_eq!(token_id("fmi_short", LinkKind::Invitation), None);
        assert_eq!(
            token_id(&format!("fmi_{}", "=".repeat(43)), LinkKind::Invitation),
            None
        );
        assert_ne!(invite, new_token(LinkKind::Invitation));
    }
}
