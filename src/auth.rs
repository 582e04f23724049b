//! Credentials: anonymous session tokens (HS256 JWTs), short-lived feed tokens for the agent
//! inbox socket, project admin keys, and the operator token.
//!
//! Verification pins HS256, picks the key by the token's `kid` (refusing a token whose `kid`
//! names no key we hold), requires `exp`, `iss` and `aud`, honours `nbf`, allows a few seconds
//! of clock leeway, and callers check that a token's project is the project of the resource it
//! is used on.
//!
//! Keys rotate: new tokens are signed with the current secret, and previous secrets still
//! verify the tokens they signed until the operator removes them (after the longest token
//! lifetime has passed).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use fleety_actors::clock::Clock;
use fleety_actors::domain::ProjectId;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ISSUER: &str = "fleety";
const SESSION_AUDIENCE: &str = "fleety-session";
const FEED_AUDIENCE: &str = "fleety-feed";
const VISITOR_LINK_AUDIENCE: &str = "fleety-visitor-link";
const UNSUBSCRIBE_AUDIENCE: &str = "fleety-unsubscribe";
/// The link in a visitor's email opens the conversation for this long.
pub const VISITOR_LINK_TTL_SECS: i64 = 7 * 24 * 3600;
/// An email's unsubscribe link works for this long: mail is read late, and unsubscribing
/// from a ticket gives nothing away.
pub const UNSUBSCRIBE_TTL_SECS: i64 = 90 * 24 * 3600;
const LEEWAY_SECS: u64 = 5;
/// Feed tokens only have to survive the moment between asking for one and opening the socket.
pub const FEED_TOKEN_TTL_SECS: i64 = 60;
/// A session may be renewed for this long after it began; then the visitor starts a new one.
/// Bounds what a stolen session token is worth.
pub const SESSION_MAX_AGE_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The anonymous session id (for feed tokens: "agent").
    pub sub: String,
    /// The project the token is for.
    pub pid: String,
    pub iat: i64,
    /// Not valid before; optional, as RFC 7519 has it, but checked whenever present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// When the session began; renewed tokens keep it. Absent in feed tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sat: Option<i64>,
    /// The verified contact the session is for (issue 28), as they were when it began;
    /// renewed tokens keep it. Absent in anonymous sessions and feed tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctc: Option<fleety_actors::contact::TicketContact>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("invalid token")]
    Invalid,
    #[error("token is for another project")]
    WrongProject,
}

pub struct IssuedToken {
    pub token: String,
    pub session_id: String,
    pub expires_at: DateTime<Utc>,
}

/// Signs and checks our JWTs.
pub struct Tokens {
    kid: String,
    encoding: EncodingKey,
    /// Every key that verifies, by its key id: the current one and the previous ones.
    decoding: HashMap<String, DecodingKey>,
    /// The same secrets by key id, for the ticket keys' HMAC.
    macs: HashMap<String, Vec<u8>>,
    session_ttl_secs: i64,
    clock: Arc<dyn Clock>,
}

/// The key id of a secret: a digest, so rotating the secret changes it and it says nothing
/// about the secret itself.
pub fn key_id(secret: &[u8]) -> String {
    hex(&Sha256::digest([b"fleety-kid:".as_slice(), secret].concat())[..8])
}

impl Tokens {
    /// Signs with `secret`; verifies tokens signed with it or with one of `previous`.
    pub fn new(
        secret: &[u8],
        previous: &[&[u8]],
        session_ttl_secs: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let decoding = std::iter::once(secret)
            .chain(previous.iter().copied())
            .map(|s| (key_id(s), DecodingKey::from_secret(s)))
            .collect();
        let macs = std::iter::once(secret)
            .chain(previous.iter().copied())
            .map(|s| (key_id(s), s.to_vec()))
            .collect();
        Self {
            kid: key_id(secret),
            encoding: EncodingKey::from_secret(secret),
            decoding,
            macs,
            session_ttl_secs: session_ttl_secs as i64,
            clock,
        }
    }

    fn issue(
        &self,
        sub: String,
        project: &ProjectId,
        audience: &str,
        ttl_secs: i64,
        sat: Option<i64>,
        ctc: Option<fleety_actors::contact::TicketContact>,
    ) -> IssuedToken {
        let now = self.clock.now();
        let exp = now.timestamp() + ttl_secs;
        let claims = Claims {
            sub: sub.clone(),
            pid: project.to_string(),
            iat: now.timestamp(),
            nbf: Some(now.timestamp()),
            exp,
            iss: ISSUER.into(),
            aud: audience.into(),
            sat,
            ctc,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        // Encoding our own claims with an HMAC key cannot fail.
        let token = encode(&header, &claims, &self.encoding).unwrap_or_default();
        IssuedToken {
            token,
            session_id: sub,
            expires_at: DateTime::from_timestamp(exp, 0).unwrap_or(now),
        }
    }

    /// A new anonymous session for `project`.
    pub fn issue_session(&self, project: &ProjectId) -> IssuedToken {
        self.issue_contact_session(project, None)
    }

    /// A new session for `project`, naming the verified contact it is for, if any.
    pub fn issue_contact_session(
        &self,
        project: &ProjectId,
        contact: Option<fleety_actors::contact::TicketContact>,
    ) -> IssuedToken {
        let session_id = uuid::Uuid::new_v4().to_string();
        let started = Some(self.clock.now().timestamp());
        let ttl = self.session_ttl_secs;
        self.issue(session_id, project, SESSION_AUDIENCE, ttl, started, contact)
    }

    /// A fresh token for a session whose current token is still valid: same session, so its
    /// quotas and transcript carry on. `None` once the session is older than
    /// [`SESSION_MAX_AGE_SECS`].
    pub fn renew_session(&self, project: &ProjectId, claims: &Claims) -> Option<IssuedToken> {
        let started = claims.sat.unwrap_or(claims.iat);
        if self.clock.now().timestamp() - started > SESSION_MAX_AGE_SECS {
            return None;
        }
        let ttl = self.session_ttl_secs;
        let (sub, contact) = (claims.sub.clone(), claims.ctc.clone());
        Some(self.issue(sub, project, SESSION_AUDIENCE, ttl, Some(started), contact))
    }

    /// A one-minute token that opens the agent inbox socket of `project`. `sub` says whose
    /// socket it is: [`feed_subject`].
    pub fn issue_feed(&self, project: &ProjectId, sub: String) -> IssuedToken {
        self.issue(sub, project, FEED_AUDIENCE, FEED_TOKEN_TTL_SECS, None, None)
    }

    fn verify(
        &self,
        token: &str,
        audience: &str,
        project: &ProjectId,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify_any_project(token, audience)?;
        if claims.pid != project.as_str() {
            return Err(TokenError::WrongProject);
        }
        Ok(claims)
    }

    /// Checks key id, signature, issuer, audience, expiry and `nbf`; the caller checks the
    /// project.
    fn verify_any_project(&self, token: &str, audience: &str) -> Result<Claims, TokenError> {
        // The key id only selects among keys we hold; it is never used to find one anywhere
        // else, so `../../etc/passwd` is just another unknown id.
        let kid = decode_header(token)
            .map_err(|_| TokenError::Invalid)?
            .kid
            .ok_or(TokenError::Invalid)?;
        let key = self.decoding.get(&kid).ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        // Expiry and `nbf` are checked below against our clock, so tests can move time.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = decode::<Claims>(token, key, &validation).map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let now = self.clock.now().timestamp();
        if claims.exp + (LEEWAY_SECS as i64) < now {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf - (LEEWAY_SECS as i64) > now)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// The signed link of a visitor's email back to ticket `slug` (its subject).
    pub fn issue_visitor_link(&self, project: &ProjectId, slug: &str) -> IssuedToken {
        let ttl = VISITOR_LINK_TTL_SECS;
        self.issue(slug.into(), project, VISITOR_LINK_AUDIENCE, ttl, None, None)
    }

    /// The signed one-click unsubscribe from the emails about ticket `slug`.
    pub fn issue_unsubscribe(&self, project: &ProjectId, slug: &str) -> IssuedToken {
        let ttl = UNSUBSCRIBE_TTL_SECS;
        self.issue(slug.into(), project, UNSUBSCRIBE_AUDIENCE, ttl, None, None)
    }

    /// A visitor-link token, for the project and ticket it names.
    pub fn verify_visitor_link(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_any_project(token, VISITOR_LINK_AUDIENCE)
    }

    /// An unsubscribe token, for the project and ticket it names.
    pub fn verify_unsubscribe(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_any_project(token, UNSUBSCRIBE_AUDIENCE)
    }

    /// A session token for whichever project it names (used to describe the token itself).
    pub fn verify_session_token(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_any_project(token, SESSION_AUDIENCE)
    }

    pub fn verify_session(&self, token: &str, project: &ProjectId) -> Result<Claims, TokenError> {
        self.verify(token, SESSION_AUDIENCE, project)
    }

    pub fn verify_feed(&self, token: &str, project: &ProjectId) -> Result<Claims, TokenError> {
        self.verify(token, FEED_AUDIENCE, project)
    }

    /// The ticket key of a ticket: `ftk_<key id>.<HMAC>`, signed with the current secret over
    /// the project, the slug and the ticket's id (so a slug used again after an erasure is
    /// another ticket with another key). Nothing is stored: the server recomputes it.
    pub fn ticket_key(&self, project: &ProjectId, slug: &str, ticket: uuid::Uuid) -> String {
        let mac = self
            .macs
            .get(&self.kid)
            .map(|secret| ticket_mac(secret, project, slug, ticket))
            .unwrap_or_default();
        format!("{TICKET_KEY_PREFIX}{}.{}", self.kid, b64(&mac))
    }

    /// Whether `presented` is the ticket key of this ticket, signed with a secret we still
    /// hold; compared in constant time.
    pub fn ticket_key_matches(
        &self,
        presented: &str,
        project: &ProjectId,
        slug: &str,
        ticket: uuid::Uuid,
    ) -> bool {
        let Some((kid, mac)) = presented
            .strip_prefix(TICKET_KEY_PREFIX)
            .and_then(|rest| rest.split_once('.'))
        else {
            return false;
        };
        let Some(secret) = self.macs.get(kid) else {
            return false;
        };
        let expected = b64(&ticket_mac(secret, project, slug, ticket));
        expected.as_bytes().ct_eq(mac.as_bytes()).into()
    }
}

const TICKET_KEY_PREFIX: &str = "ftk_";

fn ticket_mac(secret: &[u8], project: &ProjectId, slug: &str, ticket: uuid::Uuid) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    // An HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return Vec::new();
    };
    // Separated from every other use of the secret, and each part from the next.
    for part in ["fleety-ticket-key", project.as_str(), slug] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    mac.update(ticket.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The subject of a feed token: `agent` for the admin key, or `member:<id>:<session id>` for
/// a member's session (the session id is a digest, not the secret), so the socket closes
/// when that session ends.
pub fn feed_subject(session: Option<(uuid::Uuid, &str)>) -> String {
    match session {
        None => "agent".into(),
        Some((member, id)) => format!("member:{member}:{id}"),
    }
}

/// The member session a feed token's subject names, if any.
pub fn feed_session(sub: &str) -> Option<(uuid::Uuid, String)> {
    let (member, id) = sub.strip_prefix("member:")?.split_once(':')?;
    Some((uuid::Uuid::try_parse(member).ok()?, id.to_owned()))
}

/// A project's admin key: shown once at creation, stored only as a hash.
pub fn generate_admin_key() -> String {
    format!("fk_{}", fleety_actors::domain::random_token(40))
}

pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Compares a presented key with a stored hash in constant time.
pub fn key_matches(presented: &str, stored_hash: &str) -> bool {
    let presented = hash_key(presented);
    presented.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Compares two secrets in constant time (for the operator token).
pub fn secret_matches(presented: &str, expected: &str) -> bool {
    // Hash both so the comparison does not leak the expected length either.
    let (a, b) = (
        Sha256::digest(presented.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.ct_eq(&b).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret that signs session tokens: configured, or a random one kept in the data directory
/// so tokens survive a restart.
pub fn load_or_create_secret(
    configured: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<Vec<u8>> {
    if !configured.is_empty() {
        return Ok(configured.as_bytes().to_vec());
    }
    let path = data_dir.join("jwt.secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(existing.as_bytes().to_vec());
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = fleety_actors::domain::random_token(48);
    write_private(&path, &secret)?;
    tracing::info!(path = %path.display(), "generated a session-token secret");
    Ok(secret.into_bytes())
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_key_opens_its_own_ticket_only_and_survives_a_rotation() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let old = Tokens::new(&[7u8; 32], &[], 300, clock.clone());
        let project = ProjectId::parse("acme").unwrap();
        let other = ProjectId::parse("other").unwrap();
        let id = uuid::Uuid::new_v4();
        let key = old.ticket_key(&project, "swift-bear-053", id);
        assert!(key.starts_with("ftk_"));
        assert!(old.ticket_key_matches(&key, &project, "swift-bear-053", id));
        assert!(!old.ticket_key_matches(&key, &project, "swift-bear-054", id));
        assert!(!old.ticket_key_matches(&key, &other, "swift-bear-053", id));
        assert!(!old.ticket_key_matches(&key, &project, "swift-bear-053", uuid::Uuid::new_v4()));
        assert!(!old.ticket_key_matches("ftk_nothing", &project, "swift-bear-053", id));
        // Another last character: one key in 64 already ends with any given one.
        let last = if key.ends_with('A') { 'B' } else { 'A' };
        let tampered = format!("{}{last}", &key[..key.len() - 1]);
        assert!(!old.ticket_key_matches(&tampered, &project, "swift-bear-053", id));
        // Rotated: the previous secret still opens what it signed, until it is removed.
        let rotated = Tokens::new(&[9u8; 32], &[&[7u8; 32]], 300, clock.clone());
        assert!(rotated.ticket_key_matches(&key, &project, "swift-bear-053", id));
        let removed = Tokens::new(&[9u8; 32], &[], 300, clock);
        assert!(!removed.ticket_key_matches(&key, &project, "swift-bear-053", id));
    }
    use fleety_actors::clock::ManualClock;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn tokens(clock: ManualClock) -> Tokens {
        Tokens::new(SECRET, &[], 300, Arc::new(clock))
    }

    /// A token signed with `secret`, with the header and claims given.
    fn forge(secret: &[u8], kid: Option<&str>, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn claims_at(now: i64) -> Claims {
        Claims {
            sub: "s".into(),
            pid: "demo".into(),
            iat: now,
            nbf: None,
            exp: now + 300,
            iss: ISSUER.into(),
            aud: SESSION_AUDIENCE.into(),
            sat: None,
            ctc: None,
        }
    }

    #[test]
    fn a_renewed_token_keeps_its_session_until_the_session_is_a_day_old() {
        let clock = ManualClock::new(Utc::now());
        let t = tokens(clock.clone());
        let demo = ProjectId::parse("demo").unwrap();
        let first = t.issue_session(&demo);
        let claims = t.verify_session(&first.token, &demo).unwrap();
        clock.advance(chrono::Duration::seconds(250));
        let renewed = t.renew_session(&demo, &claims).unwrap();
        let again = t.verify_session(&renewed.token, &demo).unwrap();
        assert_eq!(
            (again.sub.as_str(), again.sat),
            (claims.sub.as_str(), claims.sat)
        );
        assert!(again.exp > claims.exp);
        clock.advance(chrono::Duration::seconds(SESSION_MAX_AGE_SECS));
        assert!(t.renew_session(&demo, &again).is_none());
    }

    #[test]
    fn a_session_token_verifies_for_its_project_only() {
        let clock = ManualClock::new(Utc::now());
        let t = tokens(clock);
        let demo = ProjectId::parse("demo").unwrap();
        let other = ProjectId::parse("other").unwrap();
        let issued = t.issue_session(&demo);
        let claims = t.verify_session(&issued.token, &demo).unwrap();
        assert_eq!(claims.sub, issued.session_id);
        assert_eq!(claims.exp - claims.iat, 300);
        assert_eq!(
            t.verify_session(&issued.token, &other),
            Err(TokenError::WrongProject)
        );
        // A session token does not open the agent feed, nor the reverse.
        assert_eq!(
            t.verify_feed(&issued.token, &demo),
            Err(TokenError::Invalid)
        );
        let feed = t.issue_feed(&demo, "agent".into());
        assert_eq!(
            t.verify_session(&feed.token, &demo),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn tokens_expire_after_their_lifetime_plus_leeway() {
        let clock = ManualClock::new(Utc::now());
        let t = tokens(clock.clone());
        let demo = ProjectId::parse("demo").unwrap();
        let issued = t.issue_session(&demo);
        clock.advance(chrono::Duration::seconds(300 + LEEWAY_SECS as i64));
        assert!(t.verify_session(&issued.token, &demo).is_ok());
        clock.advance(chrono::Duration::seconds(2));
        assert_eq!(
            t.verify_session(&issued.token, &demo),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let clock = ManualClock::new(Utc::now());
        let t = tokens(clock.clone());
        let demo = ProjectId::parse("demo").unwrap();
        let issued = t.issue_session(&demo);
        let mut parts: Vec<String> = issued.token.split('.').map(String::from).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert_eq!(
            t.verify_session(&parts.join("."), &demo),
            Err(TokenError::Invalid)
        );
        let stranger = Tokens::new(
            b"another-secret-another-secret-xx",
            &[],
            300,
            Arc::new(clock),
        );
        assert_eq!(
            t.verify_session(&stranger.issue_session(&demo).token, &demo),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_token_is_not_valid_before_its_nbf_beyond_the_leeway() {
        let clock = ManualClock::new(Utc::now());
        let t = tokens(clock.clone());
        let demo = ProjectId::parse("demo").unwrap();
        let now = clock.now().timestamp();
        let mut claims = claims_at(now);
        claims.nbf = Some(now + 120);
        let early = forge(SECRET, Some(&key_id(SECRET)), &claims);
        assert_eq!(
            t.verify_session(&early, &demo),
            Err(TokenError::NotYetValid)
        );
        claims.nbf = Some(now + LEEWAY_SECS as i64);
        let within_leeway = forge(SECRET, Some(&key_id(SECRET)), &claims);
        assert!(t.verify_session(&within_leeway, &demo).is_ok());
        // Our own tokens carry `nbf`, and are valid at once.
        let issued = t.issue_session(&demo);
        assert_eq!(
            t.verify_session(&issued.token, &demo).unwrap().nbf,
            Some(now)
        );
    }

    #[test]
    fn a_token_whose_kid_names_no_key_we_hold_is_refused_even_if_well_signed() {
        let clock = ManualClock::new(Utc::now());
        let t = tokens(clock.clone());
        let demo = ProjectId::parse("demo").unwrap();
        let claims = claims_at(clock.now().timestamp());
        for kid in [None, Some("unknown"), Some("../../etc/passwd"), Some("")] {
            let token = forge(SECRET, kid, &claims);
            assert_eq!(
                t.verify_session(&token, &demo),
                Err(TokenError::Invalid),
                "{kid:?}"
            );
        }
        let right = forge(SECRET, Some(&key_id(SECRET)), &claims);
        assert!(t.verify_session(&right, &demo).is_ok());
    }

    #[test]
    fn previous_secrets_verify_their_tokens_and_the_current_one_signs() {
        let clock = ManualClock::new(Utc::now());
        let old: &[u8] = b"the-old-secret-the-old-secret-old";
        let before = Tokens::new(old, &[], 300, Arc::new(clock.clone()));
        let demo = ProjectId::parse("demo").unwrap();
        let old_token = before.issue_session(&demo).token;

        let rotated = Tokens::new(SECRET, &[old], 300, Arc::new(clock.clone()));
        assert!(rotated.verify_session(&old_token, &demo).is_ok());
        let new_token = rotated.issue_session(&demo).token;
        assert_eq!(decode_header(&new_token).unwrap().kid, Some(key_id(SECRET)));
        // A token that names the old key but was signed with another secret is refused.
        let claims = claims_at(clock.now().timestamp());
        let mixed = forge(SECRET, Some(&key_id(old)), &claims);
        assert_eq!(
            rotated.verify_session(&mixed, &demo),
            Err(TokenError::Invalid)
        );

        // Once the old secret is dropped, its tokens stop verifying.
        let after = tokens(clock);
        assert_eq!(
            after.verify_session(&old_token, &demo),
            Err(TokenError::Invalid)
        );
        assert!(after.verify_session(&new_token, &demo).is_ok());
    }

    #[test]
    fn admin_keys_match_only_their_hash() {
        let key = generate_admin_key();
        let hash = hash_key(&key);
        assert!(key_matches(&key, &hash));
        assert!(!key_matches("fk_wrong", &hash));
        assert!(secret_matches("operator-secret", "operator-secret"));
        assert!(!secret_matches("operator-secreT", "operator-secret"));
    }
}
