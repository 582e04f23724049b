//! Members' personal API tokens: making one, finding the member a presented token stands for,
//! and noting its use.
//!
//! A token is `fpt_<token id>_<43 base64url characters>` (256 random bits), shown once when it
//! is made. The store keeps only the SHA-256 digest of the whole token; the id in it says
//! which row to compare with, and the comparison takes constant time. A token acts as its
//! member with their current role, limited by its scope (`read`: GET and HEAD only), and stops
//! working when it is revoked or its member is deactivated.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use fleety_actors::audit::{self, AuditActor, AuditBy, AuditRecord, AuditTarget};
use fleety_actors::domain::ProjectId;
use fleety_actors::member::{ApiToken, Member, MemberState, TokenScope};
use fleety_actors::store::StoreError;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::accounts::Accounts;

const PREFIX: &str = "fpt_";
/// How often a token's `last_used_at` is written.
const TOUCH_EVERY_SECS: i64 = 60;
/// Tokens a member may hold at once.
pub const MAX_TOKENS_PER_MEMBER: usize = 20;
/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Whether a bearer token is shaped as a personal API token (rather than a session's secret or
/// an admin key).
pub fn is_api_token(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// The hex SHA-256 digest of a token, as stored.
fn digest(secret: &str) -> String {
    crate::auth::hex(&Sha256::digest(secret.as_bytes()))
}

/// The id a token names, if it is shaped like one.
fn token_id(secret: &str) -> Option<Uuid> {
    let rest = secret.strip_prefix(PREFIX)?;
    let (id, random) = rest.split_once('_')?;
    (random.len() == 43).then_some(())?;
    Uuid::try_parse(id).ok()
}

/// A member calling with one of their tokens. Its `Debug` shows no secret: the request's
/// token is not kept, and the stored digest cannot give it back.
#[derive(Debug, Clone)]
pub struct TokenCaller {
    pub member: Member,
    pub token: ApiToken,
}

/// Why a token was not made.
#[derive(Debug)]
pub enum TokenError {
    Invalid(&'static str),
    /// The member holds [`MAX_TOKENS_PER_MEMBER`] already.
    Full,
    Store(StoreError),
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Store(e)
    }
}

impl Accounts {
    /// Makes a token for `member`; answers it with its secret, which is never seen again.
    pub async fn create_token(
        &self,
        member: &Member,
        name: &str,
        scope: TokenScope,
        who: &AuditBy,
    ) -> Result<(ApiToken, String), TokenError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(TokenError::Invalid(
                "name must be 1 to 100 characters, not only white space",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(TokenError::Invalid(
                "name must not contain control characters",
            ));
        }
        let project = &member.project_id;
        let held = self
            .store()
            .list_api_tokens(project)
            .await?
            .into_iter()
            .filter(|t| t.member_id == member.id)
            .count();
        if held >= MAX_TOKENS_PER_MEMBER {
            return Err(TokenError::Full);
        }
        let id = Uuid::new_v4();
        let bytes: [u8; 32] = rand::random();
        let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let secret = format!("{PREFIX}{}_{random}", id.simple());
        let token = ApiToken {
            id,
            project_id: project.clone(),
            member_id: member.id,
            name: name.to_owned(),
            scope,
            secret_hash: digest(&secret),
            created_at: self.now(),
            last_used_at: None,
        };
        let record = who
            .record(project, token.created_at, "token.created")
            .target(AuditTarget::new("token", id).named(name))
            .with("scope", scope.as_str())
            .with("member", member.id);
        audit::recorded(Some(record), self.store().create_api_token(&token)).await?;
        Ok((token, secret))
    }

    /// The member a presented token stands for in `project`; `None` if it names no token of
    /// the project, does not match it, or its member is deactivated. Notes the use, at most
    /// once a minute.
    ///
    /// The first use in each clock hour also leaves a `token.used` record in the audit trail,
    /// written with the touch, from `ip`: the trail tells when and whence a token was used
    /// without a record per request.
    pub async fn token(
        &self,
        project: &ProjectId,
        secret: &str,
        ip: Option<String>,
    ) -> Result<Option<TokenCaller>, StoreError> {
        let Some(id) = token_id(secret) else {
            return Ok(None);
        };
        let Some(token) = self.store().get_api_token(project, id).await? else {
            return Ok(None);
        };
        let matches: bool = digest(secret)
            .as_bytes()
            .ct_eq(token.secret_hash.as_bytes())
            .into();
        if !matches {
            return Ok(None);
        }
        let Some(member) = self.store().get_member(project, token.member_id).await? else {
            return Ok(None);
        };
        if member.state == MemberState::Deactivated {
            return Ok(None);
        }
        let now = self.now();
        let stale = token
            .last_used_at
            .is_none_or(|at| (now - at).num_seconds() >= TOUCH_EVERY_SECS);
        let token = match stale {
            false => token,
            true => match audit::recorded(
                used_record(&token, &member, now, ip),
                self.store().touch_api_token(project, id, now),
            )
            .await
            {
                Ok(()) => ApiToken {
                    last_used_at: Some(now),
                    ..token
                },
                // Revoked since it was read.
                Err(StoreError::NotFound) => return Ok(None),
                Err(e) => return Err(e),
            },
        };
        Ok(Some(TokenCaller { member, token }))
    }
}

/// The `token.used` record of a use at `now`, if it is the token's first in this clock hour.
fn used_record(
    token: &ApiToken,
    member: &Member,
    now: DateTime<Utc>,
    ip: Option<String>,
) -> Option<AuditRecord> {
    let hour = |at: DateTime<Utc>| at.timestamp().div_euclid(3600);
    if token.last_used_at.is_some_and(|at| hour(at) == hour(now)) {
        return None;
    }
    let by = AuditBy {
        actor: AuditActor::Member {
            id: member.id,
            name: member.name.clone(),
            token: Some(token.id),
        },
        ip,
    };
    let record = by
        .record(&token.project_id, now, "token.used")
        .target(AuditTarget::new("token", token.id).named(&token.name))
        .with("scope", token.scope);
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_use_is_recorded_once_a_clock_hour() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let member = Member {
            id: Uuid::new_v4(),
            project_id: ProjectId::parse("demo").unwrap(),
            email: "dana@example.com".into(),
            name: "Dana".into(),
            avatar_url: None,
            role: fleety_actors::member::Role::Owner,
            state: MemberState::Active,
            password_hash: String::new(),
            created_at: at("2026-12-07T09:00:00Z"),
            updated_at: at("2026-12-07T09:00:00Z"),
        };
        let mut token = ApiToken {
            id: Uuid::new_v4(),
            project_id: member.project_id.clone(),
            member_id: member.id,
            name: "CRM".into(),
            scope: TokenScope::Read,
            secret_hash: String::new(),
            created_at: at("2026-12-07T09:00:00Z"),
            last_used_at: None,
        };
        let ip = || Some("10.0.0.1".to_owned());
        let first = used_record(&token, &member, at("2026-12-07T09:10:00Z"), ip()).unwrap();
        assert_eq!(first.action, "token.used");
        token.last_used_at = Some(at("2026-12-07T09:10:00Z"));
        assert!(used_record(&token, &member, at("2026-12-07T09:59:59Z"), ip()).is_none());
        // A new hour, even a second later.
        token.last_used_at = Some(at("2026-12-07T09:59:59Z"));
        assert!(used_record(&token, &member, at("2026-12-07T10:00:00Z"), ip()).is_some());
    }

    #[test]
    fn a_token_names_its_id_and_only_its_own_shape_is_one() {
        let id = Uuid::new_v4();
        let secret = format!("{PREFIX}{}_{}", id.simple(), "a".repeat(43));
        assert_eq!(token_id(&secret), Some(id));
        assert!(is_api_token(&secret));
        assert_eq!(
            token_id(&format!("{PREFIX}{}_{}", id.simple(), "a".repeat(42))),
            None
        );
        assert_eq!(token_id("fpt_nothex_aaaa"), None);
        assert!(!is_api_token("fms_x"));
        assert_eq!(digest(&secret).len(), 64);
    }
}
