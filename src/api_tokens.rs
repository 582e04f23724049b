//! Members' personal API tokens: making one, finding the member a presented token stands for,
//! and noting its use.
//!
//! A token is `fpt_<token id>_<43 base64url characters>` (256 random bits), shown once when it
//! is made. The store keeps only the SHA-256 digest of the whole token; the id in it says
//! which row to compare with, and the comparison takes constant time. A token acts as its
//! member with their current role, limited by its scope (`read`: GET and HEAD only), and stops
//! working when it is revoked or its member is deactivated.

use base64::Engine as _;
use fleety_actors::audit::{self, AuditBy, AuditTarget};
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
    pub async fn token(
        &self,
        project: &ProjectId,
        secret: &str,
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
            true => match self.store().touch_api_token(project, id, now).await {
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

#[cfg(test)]
mod tests {
    use super::*;

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
