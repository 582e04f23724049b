//! Identity verification (issue 28): how the customer's backend vouches for one of its users
//! when a widget session starts, and what the server believes afterwards.
//!
//! Two proofs are accepted, both keyed with one of the project's identity secrets:
//! - a user hash, `hex(HMAC-SHA256(secret, user_id))`, as Intercom has it: it vouches for the
//!   user id alone; the email and name beside it are the page's word;
//! - a short-lived JWT (HS256) whose `sub` is the user id and whose `email` and `name` are
//!   vouched for with it; `exp` is required, `nbf` honoured, and an `aud`, when present, must
//!   name the project.
//!
//! Every secret the project holds verifies, so a rotation keeps the old one working until an
//! owner removes it. Secrets are HMAC keys: they are stored as they are, never as digests.

use chrono::{DateTime, Utc};
use fleety_actors::contact::{IdentitySecret, MAX_EXTERNAL_ID};
use fleety_actors::domain::{Email, ProjectId, VisitorName};
use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Seconds of clock difference allowed between the customer's backend and us.
const LEEWAY_SECS: i64 = 30;

/// Who the customer's backend vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub external_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Why an identity was not believed. Each says what to fix, never anything about the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this project has no identity secret: an owner or admin creates one first")]
    NoSecret,
    #[error("identity not verified: user_hash is not the HMAC-SHA256 of user_id with the project's identity secret")]
    WrongHash,
    #[error("identity not verified: the identity token is not a JWT signed (HS256) with the project's identity secret")]
    BadToken,
    #[error("identity not verified: the identity token has expired")]
    Expired,
    #[error("identity not verified: the identity token is not valid yet")]
    NotYetValid,
    #[error("identity not verified: the identity token is for another project (aud)")]
    OtherProject,
    /// The proof holds but what it vouches for is malformed.
    #[error("{0}")]
    Invalid(String),
}

impl Refusal {
    /// Whether the caller sent something malformed (400) rather than something unproven (401).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Refusal::Invalid(_) | Refusal::NoSecret)
    }
}

/// Checks an external id: 1 to [`MAX_EXTERNAL_ID`] characters, no control characters.
pub fn external_id(raw: &str, field: &str) -> Result<String, Refusal> {
    let n = raw.chars().count();
    if n == 0 || n > MAX_EXTERNAL_ID || raw.chars().any(char::is_control) || raw.trim() != raw {
        return Err(Refusal::Invalid(format!(
            "{field} must be 1 to {MAX_EXTERNAL_ID} characters, without control characters or surrounding spaces"
        )));
    }
    Ok(raw.to_owned())
}

pub fn email(raw: &str, field: &str) -> Result<String, Refusal> {
    Email::parse(raw)
        .map(|e| e.as_str().to_owned())
        .map_err(|_| Refusal::Invalid(format!("{field} must be an email address")))
}

pub fn name(raw: &str, field: &str) -> Result<String, Refusal> {
    VisitorName::parse(raw)
        .map(|n| n.as_str().to_owned())
        .map_err(|_| Refusal::Invalid(format!("{field} must be 1 to 80 characters")))
}

/// `hex(HMAC-SHA256(secret, user_id))`: what the customer's backend computes.
pub fn user_hash(secret: &str, user_id: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(user_id.as_bytes());
    crate::auth::hex(&mac.finalize().into_bytes())
}

/// Checks a user hash against every secret of the project, in constant time.
pub fn verify_user_hash(
    secrets: &[IdentitySecret],
    user_id: &str,
    presented: &str,
) -> Result<(), Refusal> {
    if secrets.is_empty() {
        return Err(Refusal::NoSecret);
    }
    // Hex of either case; anything else cannot match.
    let presented = presented.to_ascii_lowercase();
    let matches = secrets.iter().any(|s| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(s.secret.as_bytes()) else {
            return false;
        };
        mac.update(user_id.as_bytes());
        let Some(bytes) = unhex(&presented) else {
            return false;
        };
        mac.verify_slice(&bytes).is_ok()
    });
    matches.then_some(()).ok_or(Refusal::WrongHash)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Deserialize)]
struct IdentityClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// Checks an identity JWT against every secret of the project, at `now`.
pub fn verify_token(
    secrets: &[IdentitySecret],
    token: &str,
    project: &ProjectId,
    now: DateTime<Utc>,
) -> Result<Verified, Refusal> {
    if secrets.is_empty() {
        return Err(Refusal::NoSecret);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    // Checked below against our clock, and `aud` only when present.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = secrets
        .iter()
        .find_map(|s| {
            let key = DecodingKey::from_secret(s.secret.as_bytes());
            decode::<IdentityClaims>(token, &key, &validation).ok()
        })
        .ok_or(Refusal::BadToken)?
        .claims;
    let now = now.timestamp();
    if claims.exp + LEEWAY_SECS < now {
        return Err(Refusal::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf - LEEWAY_SECS > now) {
        return Err(Refusal::NotYetValid);
    }
    let ours = |v: &serde_json::Value| v.as_str() == Some(project.as_str());
    let aud_ok = match &claims.aud {
        None => true,
        Some(serde_json::Value::Array(all)) => all.iter().any(ours),
        Some(one) => ours(one),
    };
    if !aud_ok {
        return Err(Refusal::OtherProject);
    }
    Ok(Verified {
        external_id: external_id(&claims.sub, "the identity token's sub")?,
        email: claims
            .email
            .as_deref()
            .map(|e| email(e, "the identity token's email"))
            .transpose()?,
        name: claims
            .name
            .as_deref()
            .map(|n| name(n, "the identity token's name"))
            .transpose()?,
    })
}

/// The contact id of an external id in a project: a digest, so every node names a user's
/// contact alike without asking anyone, and an external id is one contact per project.
pub fn contact_id(project: &ProjectId, external_id: &str) -> uuid::Uuid {
    let digest = Sha256::digest(
        [
            b"fleety-contact:".as_slice(),
            project.as_str().as_bytes(),
            b"\0",
            external_id.as_bytes(),
        ]
        .concat(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A new identity secret: 50 random characters of 36 (over 256 bits), shown to its owner once.
pub fn generate_secret(now: DateTime<Utc>) -> IdentitySecret {
    let secret = format!("fis_{}", fleety_actors::domain::random_token(50));
    let id = crate::auth::hex(&Sha256::digest(secret.as_bytes())[..6]);
    IdentitySecret {
        id,
        secret,
        created_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn secret(s: &str) -> IdentitySecret {
        IdentitySecret {
            id: "k".into(),
            secret: s.into(),
            created_at: Utc::now(),
        }
    }

    fn jwt(secret: &str, claims: serde_json::Value) -> String {
        let key = EncodingKey::from_secret(secret.as_bytes());
        encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    #[test]
    fn a_user_hash_verifies_with_any_secret_held_and_no_other() {
        let (old, new) = (secret("old-secret"), secret("new-secret"));
        let hash = user_hash("old-secret", "u-1");
        assert_eq!(hash.len(), 64);
        assert!(verify_user_hash(&[old.clone(), new.clone()], "u-1", &hash).is_ok());
        assert!(verify_user_hash(&[old], "u-1", &hash.to_uppercase()).is_ok());
        assert_eq!(
            verify_user_hash(std::slice::from_ref(&new), "u-1", &hash),
            Err(Refusal::WrongHash)
        );
        assert_eq!(
            verify_user_hash(
                std::slice::from_ref(&new),
                "u-2",
                &user_hash("new-secret", "u-1")
            ),
            Err(Refusal::WrongHash)
        );
        assert_eq!(
            verify_user_hash(&[new], "u-1", "not hex"),
            Err(Refusal::WrongHash)
        );
        assert_eq!(verify_user_hash(&[], "u-1", &hash), Err(Refusal::NoSecret));
    }

    #[test]
    fn a_token_verifies_until_it_expires_and_only_for_its_project() {
        let demo = ProjectId::parse("demo").unwrap();
        let now = Utc::now();
        let s = [secret("the-secret")];
        let good = jwt(
            "the-secret",
            serde_json::json!({"sub": "u-1", "email": "a@example.com", "name": "Ada", "exp": now.timestamp() + 60}),
        );
        let v = verify_token(&s, &good, &demo, now).unwrap();
        assert_eq!(v.external_id, "u-1");
        assert_eq!(v.email.as_deref(), Some("a@example.com"));
        let later = now + chrono::Duration::seconds(60 + LEEWAY_SECS + 1);
        assert_eq!(verify_token(&s, &good, &demo, later), Err(Refusal::Expired));
        let other = jwt(
            "the-secret",
            serde_json::json!({"sub": "u-1", "aud": "other", "exp": now.timestamp() + 60}),
        );
        assert_eq!(
            verify_token(&s, &other, &demo, now),
            Err(Refusal::OtherProject)
        );
        let forged = jwt(
            "not-the-secret",
            serde_json::json!({"sub": "u-1", "exp": now.timestamp() + 60}),
        );
        assert_eq!(
            verify_token(&s, &forged, &demo, now),
            Err(Refusal::BadToken)
        );
        let no_exp = jwt("the-secret", serde_json::json!({"sub": "u-1"}));
        assert_eq!(
            verify_token(&s, &no_exp, &demo, now),
            Err(Refusal::BadToken)
        );
    }

    #[test]
    fn a_contact_id_is_the_same_for_one_user_and_differs_across_projects() {
        let (a, b) = (
            ProjectId::parse("alpha").unwrap(),
            ProjectId::parse("beta").unwrap(),
        );
        assert_eq!(contact_id(&a, "u-1"), contact_id(&a, "u-1"));
        assert_ne!(contact_id(&a, "u-1"), contact_id(&b, "u-1"));
        assert_ne!(contact_id(&a, "u-1"), contact_id(&a, "u-2"));
    }
}
