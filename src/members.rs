//! The rules of managing a project's members, shared by the API and the command line: what a
//! new member must give, what each role may change, and what a change ends (a deactivation or
//! a new password ends the member's sessions).
//!
//! Owners manage everyone. Admins manage agents only: they add agents, change agents, and
//! cannot make anyone an admin or an owner. The project's admin key acts as an owner.

use chrono::{DateTime, Utc};
use fleety_actors::audit::{self, AuditBy, AuditRecord, AuditTarget};
use fleety_actors::domain::ProjectId;
use fleety_actors::member::{normalise_email, Member, MemberState, Role};
use fleety_actors::store::{MemberStore, StoreError};
use uuid::Uuid;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest avatar URL, in bytes.
pub const MAX_AVATAR_URL: usize = 2048;

#[derive(Debug)]
pub enum MemberError {
    Invalid(String),
    Forbidden(&'static str),
    NotFound,
    /// The email belongs to another member already.
    Taken,
    /// The member is deactivated, and the request needs them active: a state conflict, which
    /// the same request may pass once they are reactivated.
    Deactivated(&'static str),
    Store(StoreError),
    Internal(String),
}

impl From<StoreError> for MemberError {
    fn from(e: StoreError) -> Self {
        MemberError::Store(e)
    }
}

/// A member to add.
pub struct NewMember {
    pub email: String,
    pub name: String,
    pub password: String,
    pub role: Role,
    pub avatar_url: Option<String>,
}

/// A change to a member; what is `None` stays.
#[derive(Default)]
pub struct MemberChange {
    pub name: Option<String>,
    /// `Some(None)` removes the avatar.
    pub avatar_url: Option<Option<String>>,
    pub role: Option<Role>,
    pub state: Option<MemberState>,
    pub password: Option<String>,
}

pub fn check_name(raw: &str) -> Result<String, MemberError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(MemberError::Invalid(
            "name must have 1 to 100 characters".into(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(MemberError::Invalid(
            "name must not contain control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

pub fn check_avatar(raw: &str) -> Result<String, MemberError> {
    let bad = || MemberError::Invalid("avatar_url must be an http or https URL".into());
    if raw.len() > MAX_AVATAR_URL {
        return Err(MemberError::Invalid(
            "avatar_url must be at most 2048 bytes".into(),
        ));
    }
    let url = url::Url::parse(raw).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad());
    }
    Ok(url.to_string())
}

/// Checks a new password's strength and hashes it, off the async threads.
pub async fn hash(password: String) -> Result<String, MemberError> {
    if let Some(problem) = crate::accounts::password_problem(&password) {
        return Err(MemberError::Invalid(problem.into()));
    }
    tokio::task::spawn_blocking(move || crate::accounts::hash_password(&password))
        .await
        .map_err(|e| MemberError::Internal(e.to_string()))?
        .map_err(MemberError::Internal)
}

/// Whether a caller of role `by` may give someone role `role`, or change a member who has it.
pub fn may_manage(by: Role, role: Role) -> bool {
    match by {
        Role::Owner => true,
        Role::Admin => role == Role::Agent,
        Role::Agent => false,
    }
}

/// Whether the caller (of role `by`, and the member `by_member` if a member calls) may manage
/// `member`: their own account always, anyone else's as [`may_manage`] says. What the member
/// routes (changes, reset links, tokens) all check.
pub fn may_manage_member(by: Role, by_member: Option<Uuid>, member: &Member) -> bool {
    by_member == Some(member.id) || may_manage(by, member.role)
}

const ONLY_OWNERS: &str = "only owners add, change or deactivate owners and admins";

/// Refuses a caller of role `by` who may not give role `role` (invite to it, or reset the
/// password of someone who has it).
pub fn check_may_give(by: Role, role: Role) -> Result<(), MemberError> {
    match may_manage(by, role) {
        true => Ok(()),
        false => Err(MemberError::Forbidden(ONLY_OWNERS)),
    }
}

/// Adds a member, invited until their first sign-in.
pub async fn add(
    store: &dyn MemberStore,
    project: &ProjectId,
    new: NewMember,
    by: Role,
    who: &AuditBy,
    now: DateTime<Utc>,
) -> Result<Member, MemberError> {
    if !may_manage(by, new.role) {
        return Err(MemberError::Forbidden(ONLY_OWNERS));
    }
    let email = normalise_email(&new.email)
        .ok_or_else(|| MemberError::Invalid("email is not an email address".into()))?;
    let name = check_name(&new.name)?;
    let avatar_url = new.avatar_url.as_deref().map(check_avatar).transpose()?;
    let password_hash = hash(new.password).await?;
    let member = Member {
        id: Uuid::new_v4(),
        project_id: project.clone(),
        email,
        name,
        avatar_url,
        role: new.role,
        state: MemberState::Invited,
        password_hash,
        created_at: now,
        updated_at: now,
    };
    let record = who
        .record(project, now, "member.added")
        .target(target(&member))
        .with("email", &member.email)
        .with("role", member.role);
    match audit::recorded(Some(record), store.create_member(&member)).await {
        Ok(()) => Ok(member),
        Err(StoreError::Conflict) => Err(MemberError::Taken),
        Err(e) => Err(e.into()),
    }
}

/// Changes a member. `by` is the caller's role, `by_member` the caller when a member (`None`
/// for the admin key). A member may change their own name, avatar and password whatever their
/// role, but not their own role or state.
pub async fn change(
    accounts: &crate::accounts::Accounts,
    project: &ProjectId,
    id: Uuid,
    change: MemberChange,
    by: Role,
    by_member: Option<Uuid>,
    who: &AuditBy,
) -> Result<Member, MemberError> {
    let store = accounts.store();
    let member = store
        .get_member(project, id)
        .await?
        .ok_or(MemberError::NotFound)?;
    let own = by_member == Some(id);
    let touches_standing = change.role.is_some() || change.state.is_some();
    if own && touches_standing {
        return Err(MemberError::Forbidden(
            "a member cannot change their own role or state",
        ));
    }
    if !may_manage_member(by, by_member, &member)
        || (!own && change.role.is_some_and(|r| !may_manage(by, r)))
    {
        return Err(MemberError::Forbidden(ONLY_OWNERS));
    }
    if change.state == Some(MemberState::Invited) {
        return Err(MemberError::Invalid(
            "state may be set to active or deactivated".into(),
        ));
    }
    let name = change.name.as_deref().map(check_name).transpose()?;
    let avatar_url = match change.avatar_url {
        Some(Some(url)) => Some(Some(check_avatar(&url)?)),
        other => other,
    };
    let password_hash = match change.password {
        Some(password) => Some(hash(password).await?),
        None => None,
    };
    let ends_sessions = password_hash.is_some() || change.state == Some(MemberState::Deactivated);
    let changed = Member {
        name: name.unwrap_or(member.name.clone()),
        avatar_url: avatar_url.unwrap_or(member.avatar_url.clone()),
        role: change.role.unwrap_or(member.role),
        state: change.state.unwrap_or(member.state),
        password_hash: password_hash.unwrap_or(member.password_hash.clone()),
        updated_at: accounts.now().max(member.updated_at),
        ..member.clone()
    };
    let record = change_record(who, &member, &changed, accounts.now());
    audit::recorded(record, store.update_member(&changed)).await?;
    if ends_sessions {
        accounts.end_sessions(&changed).await?;
    }
    Ok(changed)
}

/// What a member's change is recorded as: one record naming every field that changed, its
/// action the weightiest of them (state, then role, then password); `None` if nothing did.
/// A new password is recorded as changed, never its hash.
fn change_record(
    who: &AuditBy,
    before: &Member,
    after: &Member,
    now: DateTime<Utc>,
) -> Option<AuditRecord> {
    let action = if before.state != after.state {
        "member.state_changed"
    } else if before.role != after.role {
        "member.role_changed"
    } else if before.password_hash != after.password_hash {
        "member.password_changed"
    } else {
        "member.changed"
    };
    let mut record = who
        .record(&after.project_id, now, action)
        .target(target(after))
        .changed("name", &before.name, &after.name)
        .changed("avatar_url", &before.avatar_url, &after.avatar_url)
        .changed("role", before.role, after.role)
        .changed("state", before.state, after.state);
    if before.password_hash != after.password_hash {
        record = record.with("password", "changed");
    }
    record.has_changes().then_some(record)
}

/// A member as an audit record's target.
pub fn target(m: &Member) -> AuditTarget {
    AuditTarget::new("member", m.id).named(&m.name)
}

/// Finds a member by email, for the command line.
pub async fn by_email(
    store: &dyn MemberStore,
    project: &ProjectId,
    email: &str,
) -> Result<Member, MemberError> {
    let email = normalise_email(email)
        .ok_or_else(|| MemberError::Invalid("email is not an email address".into()))?;
    store
        .member_by_email(project, &email)
        .await?
        .ok_or(MemberError::NotFound)
}

impl std::fmt::Display for MemberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberError::Invalid(why) => f.write_str(why),
            MemberError::Forbidden(why) => f.write_str(why),
            MemberError::NotFound => f.write_str("no such member"),
            MemberError::Taken => f.write_str("the project has a member with this email"),
            MemberError::Deactivated(why) => f.write_str(why),
            MemberError::Store(e) => write!(f, "{e}"),
            MemberError::Internal(e) => write!(f, "{e}"),
        }
    }
}
