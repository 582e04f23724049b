//! A project's members (the people who answer its tickets) and their signed-in sessions: the
//! rows the storage port keeps for them, and the rules those rows obey whatever the backend
//! (an email is normalised and unique per project; a session is found by the hash of its
//! secret, never by the secret).
//!
//! Hashing passwords and issuing session secrets is the server's business (`src/accounts.rs`);
//! this module only holds what is stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::ProjectId;

/// What a member may do. Ordered by power: an owner can do all an admin can, an admin all an
/// agent can.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Tickets, notes, replies, assignment; the knowledge base read-only.
    Agent,
    /// Everything an agent does, plus the project's settings, origins, webhooks, knowledge
    /// base, and its agents and admins.
    Admin,
    /// Everything, including the other owners.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// Where a member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Added, not signed in yet.
    Invited,
    /// Has signed in at least once.
    Active,
    /// May not sign in; every session of theirs has ended.
    Deactivated,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Invited => "invited",
            MemberState::Active => "active",
            MemberState::Deactivated => "deactivated",
        }
    }

    pub fn parse(raw: &str) -> Option<MemberState> {
        match raw {
            "invited" => Some(MemberState::Invited),
            "active" => Some(MemberState::Active),
            "deactivated" => Some(MemberState::Deactivated),
            _ => None,
        }
    }
}

/// A member of a project, as stored. Its `Debug` leaves the password hash out, so no log line
/// or failed assertion that prints a member can carry it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: Uuid,
    pub project_id: ProjectId,
    /// Normalised ([`normalise_email`]); unique within the project, and never changes.
    pub email: String,
    pub name: String,
    pub avatar_url: Option<String>,
    pub role: Role,
    pub state: MemberState,
    /// A PHC string (Argon2id); empty for a member who has no password yet.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hash = match self.password_hash.is_empty() {
            true => "none",
            false => "<redacted>",
        };
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("project_id", &self.project_id)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("avatar_url", &self.avatar_url)
            .field("role", &self.role)
            .field("state", &self.state)
            .field("password_hash", &hash)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// One signed-in session of a member. The secret the browser holds is never stored: only its
/// SHA-256 digest, which is the session's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSession {
    /// The hex SHA-256 digest of the session's secret.
    pub id: String,
    pub project_id: ProjectId,
    pub member_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// When the session ends whatever its use (its maximum age).
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// What a personal API token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// Reads only (GET and HEAD).
    Read,
    /// Whatever its member's role allows.
    Write,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
        }
    }

    pub fn parse(raw: &str) -> Option<TokenScope> {
        match raw {
            "read" => Some(TokenScope::Read),
            "write" => Some(TokenScope::Write),
            _ => None,
        }
    }
}

/// A member's personal API token, for integrations. The secret is shown once when the token
/// is made and never stored: only its SHA-256 digest is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub member_id: Uuid,
    pub name: String,
    pub scope: TokenScope,
    /// The hex SHA-256 digest of the whole secret.
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    /// Written at most once a minute, so it is that coarse.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What a one-time link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// Joins the project: the invitee sets a name and a password and becomes a member.
    Invitation,
    /// Sets a new password for an existing member.
    PasswordReset,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Invitation => "invitation",
            LinkKind::PasswordReset => "password_reset",
        }
    }

    pub fn parse(raw: &str) -> Option<LinkKind> {
        match raw {
            "invitation" => Some(LinkKind::Invitation),
            "password_reset" => Some(LinkKind::PasswordReset),
            _ => None,
        }
    }
}

/// A single-use, expiring link: an invitation or a password reset. As for sessions, the
/// token in the link is never stored, only its SHA-256 digest, which is the link's id. Using
/// the link deletes it, so it works once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLink {
    /// The hex SHA-256 digest of the link's token.
    pub id: String,
    pub project_id: ProjectId,
    pub kind: LinkKind,
    /// Normalised: the invitee's address, or the address of the member to reset.
    pub email: String,
    /// The role an invitation gives; for a reset, the member's role when it was made.
    pub role: Role,
    /// The member a reset is for; `None` for an invitation.
    pub member_id: Option<Uuid>,
    /// Who made it: a member, or `None` for the admin key (or, for a reset, the member's own
    /// request).
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A member's second factor: a TOTP secret (RFC 6238), whether it is on, the newest time step
/// a code was accepted for, the digests of the unused recovery codes, and the sign-in waiting
/// for a code. One row per member; every write names the version it read
/// ([`crate::store::MemberStore::put_member_totp`]), so two uses of one code, on one node or
/// several, cannot both land.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberTotp {
    pub project_id: ProjectId,
    pub member_id: Uuid,
    /// A fresh value at every write.
    pub version: Uuid,
    /// The shared secret, base32 (RFC 4648, no padding). Checking a code needs it, so it is
    /// stored as is; it never leaves the server after enrolment.
    pub secret: String,
    /// Off while an enrolment waits for its first code.
    pub enabled: bool,
    /// The newest time step a code was accepted for; a code of that step or an earlier one is
    /// refused, so a code works once.
    pub last_step: i64,
    /// Hex SHA-256 digests of the recovery codes not used yet.
    pub recovery_hashes: Vec<String>,
    /// A sign-in whose password was right, waiting for a code.
    pub challenge: Option<TotpChallenge>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for MemberTotp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberTotp")
            .field("project_id", &self.project_id)
            .field("member_id", &self.member_id)
            .field("version", &self.version)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("last_step", &self.last_step)
            .field("recovery_codes", &self.recovery_hashes.len())
            .field("challenge", &self.challenge)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// A sign-in waiting for its second factor. The challenge token is never stored: only its
/// SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpChallenge {
    /// The hex SHA-256 digest of the challenge token.
    pub hash: String,
    pub expires_at: DateTime<Utc>,
    /// Wrong codes given for it so far.
    pub failures: u32,
}

/// Longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;

/// An email address as stored and compared: trimmed and lower-cased. `None` if it is not
/// shaped like an address (one `@`, something on each side, no spaces or control characters).
pub fn normalise_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let valid = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= MAX_EMAIL
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    valid.then_some(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lower_cased_and_shaped_like_addresses() {
        assert_eq!(
            normalise_email("  Dana@Example.COM ").as_deref(),
            Some("dana@example.com")
        );
        for bad in [
            "",
            "dana",
            "@example.com",
            "dana@",
            "da na@example.com",
            "a@b@c.d",
            "a@b",
        ] {
            assert_eq!(normalise_email(bad), None, "{bad}");
        }
        assert_eq!(
            normalise_email(&format!("{}@example.com", "a".repeat(250))),
            None
        );
    }

    #[test]
    fn roles_are_ordered_by_power_and_round_trip() {
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Agent);
        for role in [Role::Agent, Role::Admin, Role::Owner] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for state in [
            MemberState::Invited,
            MemberState::Active,
            MemberState::Deactivated,
        ] {
            assert_eq!(MemberState::parse(state.as_str()), Some(state));
        }
    }
}
