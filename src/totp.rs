//! Members' second factor: TOTP codes (RFC 6238: HMAC-SHA1, six digits, 30-second steps, the
//! parameters every authenticator app uses), recovery codes, enrolment, turning it off, and
//! the second step of a sign-in.
//!
//! - The secret is 160 random bits, base32. It is answered once, at enrolment, with its
//!   `otpauth://` URI; it is stored as is (checking a code needs it) and never logged.
//! - A code is accepted for the current step or one step either side (clock skew), and only
//!   for a step after the newest one accepted before, so a code works once. Accepting it is a
//!   write conditional on the version of the row that was read, so two uses of one code at
//!   once, on one node or several, cannot both succeed.
//! - Recovery codes are 80 random bits each (16 base32 characters, shown in groups of four);
//!   the store keeps their SHA-256 digests. 80 bits is beyond guessing, so no slow hash is
//!   needed. Each works once; making new ones voids the old.
//! - A sign-in whose password is right for a member with TOTP on answers a challenge
//!   (`fmc_<member id>_<43 base64url characters>`, 256 random bits) that works for five
//!   minutes and for five wrong codes at most; only its digest is stored, in the member's row,
//!   so any node can finish the sign-in. Wrong codes count on the same brake as wrong
//!   passwords (per account and per client).

use std::net::IpAddr;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use fleety_actors::audit::{self, AuditActor, AuditBy, AuditRecord};
use fleety_actors::domain::ProjectId;
use fleety_actors::member::{Member, MemberState, MemberTotp, TotpChallenge};
use fleety_actors::store::StoreError;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::accounts::{Accounts, NewSession, SignInError};

/// Seconds per step.
pub const STEP_SECS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Recovery codes made at once.
pub const RECOVERY_CODES: usize = 10;
/// How long a sign-in waits for its code.
pub const CHALLENGE_SECS: i64 = 300;
/// Wrong codes a challenge takes before the sign-in must start again.
pub const CHALLENGE_TRIES: u32 = 5;
const CHALLENGE_PREFIX: &str = "fmc_";
/// Issuer shown in authenticator apps.
const ISSUER: &str = "Fleety";

/// A new secret: 160 random bits (RFC 4226's recommended length), base32 without padding.
pub fn new_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    data_encoding::BASE32_NOPAD.encode(&bytes)
}

fn secret_bytes(secret: &str) -> Option<Vec<u8>> {
    data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).ok()
}

/// The time step of `at`.
pub fn step_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(STEP_SECS)
}

/// The code of `step` for `key` (RFC 4226's dynamic truncation).
fn code_at(key: &[u8], step: i64) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", bin % 10u32.pow(DIGITS))
}

/// The step `code` is right for, among the current one and one either side, if it is later
/// than `last_step`.
pub fn check_code(secret: &str, code: &str, now: DateTime<Utc>, last_step: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let key = secret_bytes(secret)?;
    let now = step_of(now);
    // Every candidate is compared, so the time taken does not say which matched.
    let mut found = None;
    for step in [now - 1, now, now + 1] {
        let same: bool = code_at(&key, step).as_bytes().ct_eq(code.as_bytes()).into();
        if same && step > last_step {
            found = Some(step);
        }
    }
    found
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

/// The `otpauth://` URI an authenticator app reads (as text or as a QR code).
pub fn otpauth_uri(secret: &str, project: &ProjectId, email: &str) -> String {
    let issuer = format!("{ISSUER} ({project})");
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        encode(&issuer),
        encode(email),
        encode(&issuer),
    )
}

/// A recovery code as compared: lower case, without the dashes and spaces it is shown with.
fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The stored digest of a recovery code.
pub fn recovery_hash(code: &str) -> String {
    crate::auth::hex(&Sha256::digest(normalise_recovery(code).as_bytes()))
}

/// New recovery codes, as shown (`abcd-efgh-ijkl-mnop`), and their digests.
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    (0..RECOVERY_CODES)
        .map(|_| {
            let bytes: [u8; 10] = rand::random();
            let raw = data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase();
            let shown = raw
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-");
            let hash = recovery_hash(&shown);
            (shown, hash)
        })
        .unzip()
}

fn digest(text: &str) -> String {
    crate::auth::hex(&Sha256::digest(text.as_bytes()))
}

fn new_challenge(member: Uuid) -> String {
    let bytes: [u8; 32] = rand::random();
    let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!("{CHALLENGE_PREFIX}{}_{random}", member.simple())
}

fn challenge_member(challenge: &str) -> Option<Uuid> {
    let rest = challenge.strip_prefix(CHALLENGE_PREFIX)?;
    let (member, random) = rest.split_once('_')?;
    (random.len() == 43).then_some(())?;
    Uuid::try_parse(member).ok()
}

/// What proves the member is at the keyboard, to turn TOTP off or make new recovery codes.
pub enum Proof {
    Password(String),
    Code(String),
}

/// What the second step of a sign-in brings.
pub enum SecondFactor {
    Code(String),
    RecoveryCode(String),
}

/// Why a TOTP change was refused.
#[derive(Debug)]
pub enum TotpError {
    /// The state does not allow it (not enrolled, already on, off).
    Conflict(&'static str),
    /// A wrong code at confirmation.
    WrongCode,
    /// A wrong password or code for turning off or regenerating.
    WrongProof,
    Throttled(std::time::Duration),
    Store(StoreError),
    Internal(String),
}

impl From<StoreError> for TotpError {
    fn from(e: StoreError) -> Self {
        TotpError::Store(e)
    }
}

/// A member's second factor as they may see it: never the secret.
pub struct TotpStatus {
    pub enabled: bool,
    /// An enrolment waiting for its first code.
    pub pending: bool,
    pub recovery_codes_left: usize,
}

/// A sign-in waiting for a code.
pub struct Challenge {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// What a right password opens: a session, or (TOTP on) a challenge.
pub enum SignedInStep {
    Session(Box<NewSession>),
    SecondFactor(Challenge),
}

fn member_record(
    member: &Member,
    now: DateTime<Utc>,
    ip: Option<String>,
    action: &str,
) -> AuditRecord {
    AuditRecord::new(
        &member.project_id,
        now,
        // Only a signed-in session manages a second factor: never a token.
        AuditActor::Member {
            id: member.id,
            name: member.name.clone(),
            token: None,
        },
        ip,
        action,
    )
    .target(crate::members::target(member))
}

impl Accounts {
    /// The member's second factor, as they may see it.
    pub async fn totp_status(&self, member: &Member) -> Result<TotpStatus, StoreError> {
        let row = self
            .store()
            .get_member_totp(&member.project_id, member.id)
            .await?;
        Ok(TotpStatus {
            enabled: row.as_ref().is_some_and(|t| t.enabled),
            pending: row.as_ref().is_some_and(|t| !t.enabled),
            recovery_codes_left: row
                .filter(|t| t.enabled)
                .map_or(0, |t| t.recovery_hashes.len()),
        })
    }

    /// Begins an enrolment: a new secret, replacing one still waiting for its first code.
    /// Answers the secret and its URI, which are never shown again.
    pub async fn enrol_totp(&self, member: &Member) -> Result<(String, String), TotpError> {
        let project = &member.project_id;
        let row = self.store().get_member_totp(project, member.id).await?;
        if row.as_ref().is_some_and(|t| t.enabled) {
            return Err(TotpError::Conflict(
                "two-factor authentication is on already; turn it off first",
            ));
        }
        let now = self.now();
        let secret = new_secret();
        let totp = MemberTotp {
            project_id: project.clone(),
            member_id: member.id,
            version: Uuid::new_v4(),
            secret: secret.clone(),
            enabled: false,
            last_step: 0,
            recovery_hashes: Vec::new(),
            challenge: None,
            created_at: now,
            updated_at: now,
        };
        self.store()
            .put_member_totp(&totp, row.map(|t| t.version))
            .await
            .map_err(|e| match e {
                StoreError::Conflict => {
                    TotpError::Conflict("the enrolment changed meanwhile; start again")
                }
                e => e.into(),
            })?;
        let uri = otpauth_uri(&secret, project, &member.email);
        Ok((secret, uri))
    }

    /// Turns TOTP on with the first code of the enrolment; answers the recovery codes, shown
    /// this once.
    pub async fn confirm_totp(
        &self,
        member: &Member,
        code: &str,
        who: &AuditBy,
    ) -> Result<Vec<String>, TotpError> {
        let project = &member.project_id;
        let row = self.store().get_member_totp(project, member.id).await?;
        let row = match row {
            Some(t) if !t.enabled => t,
            Some(_) => {
                return Err(TotpError::Conflict(
                    "two-factor authentication is on already",
                ))
            }
            None => {
                return Err(TotpError::Conflict(
                    "no enrolment is waiting: begin one first",
                ))
            }
        };
        let now = self.now();
        let Some(step) = check_code(&row.secret, code, now, row.last_step) else {
            return Err(TotpError::WrongCode);
        };
        let (codes, hashes) = new_recovery_codes();
        let on = MemberTotp {
            version: Uuid::new_v4(),
            enabled: true,
            last_step: step,
            recovery_hashes: hashes,
            challenge: None,
            updated_at: now,
            ..row.clone()
        };
        let record = who
            .record(project, now, "member.totp_enabled")
            .target(crate::members::target(member));
        audit::recorded(
            Some(record),
            self.store().put_member_totp(&on, Some(row.version)),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict => TotpError::WrongCode,
            e => e.into(),
        })?;
        Ok(codes)
    }

    /// Checks a password or a code of a member with TOTP on, on the brake of sign-ins. A
    /// right code is spent. Answers the row as it is after.
    async fn prove(
        &self,
        member: &Member,
        proof: Proof,
        ip: IpAddr,
    ) -> Result<MemberTotp, TotpError> {
        let project = &member.project_id;
        let attempt = self
            .throttle
            .begin(project, &member.email, ip)
            .map_err(TotpError::Throttled)?;
        let row = self.store().get_member_totp(project, member.id).await?;
        let row = match row {
            Some(t) if t.enabled => t,
            _ => return Err(TotpError::Conflict("two-factor authentication is off")),
        };
        let right = match proof {
            Proof::Password(password) => {
                let hash = member.password_hash.clone();
                self.check_password(password, hash)
                    .await
                    .map_err(TotpError::Internal)?
                    .then_some(row)
            }
            Proof::Code(code) => match check_code(&row.secret, &code, self.now(), row.last_step) {
                Some(step) => {
                    let spent = MemberTotp {
                        version: Uuid::new_v4(),
                        last_step: step,
                        updated_at: self.now(),
                        ..row.clone()
                    };
                    match self
                        .store()
                        .put_member_totp(&spent, Some(row.version))
                        .await
                    {
                        Ok(()) => Some(spent),
                        // Used at the same moment by another request.
                        Err(StoreError::Conflict) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
                None => None,
            },
        };
        let Some(row) = right else {
            self.throttle.failed(project, &member.email, ip);
            drop(attempt);
            return Err(TotpError::WrongProof);
        };
        drop(attempt);
        Ok(row)
    }

    /// Turns TOTP off, with the member's password or a current code.
    pub async fn disable_totp(
        &self,
        member: &Member,
        proof: Proof,
        ip: IpAddr,
        who: &AuditBy,
    ) -> Result<(), TotpError> {
        let row = self.prove(member, proof, ip).await?;
        let record = who
            .record(&member.project_id, self.now(), "member.totp_disabled")
            .target(crate::members::target(member));
        let delete = self
            .store()
            .delete_member_totp(&member.project_id, member.id, row.version);
        match audit::recorded(Some(record), delete).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => {
                Err(TotpError::Conflict("two-factor authentication is off"))
            }
            Err(StoreError::Conflict) => Err(TotpError::Conflict(
                "two-factor authentication changed meanwhile; try again",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// New recovery codes, with the member's password or a current code; the old ones stop
    /// working.
    pub async fn regenerate_recovery_codes(
        &self,
        member: &Member,
        proof: Proof,
        ip: IpAddr,
        who: &AuditBy,
    ) -> Result<Vec<String>, TotpError> {
        let row = self.prove(member, proof, ip).await?;
        let (codes, hashes) = new_recovery_codes();
        let now = self.now();
        let next = MemberTotp {
            version: Uuid::new_v4(),
            recovery_hashes: hashes,
            updated_at: now,
            ..row.clone()
        };
        let record = who
            .record(&member.project_id, now, "member.recovery_codes_regenerated")
            .target(crate::members::target(member));
        let put = self.store().put_member_totp(&next, Some(row.version));
        match audit::recorded(Some(record), put).await {
            Ok(()) => Ok(codes),
            Err(StoreError::Conflict) => Err(TotpError::Conflict(
                "two-factor authentication changed meanwhile; try again",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// After a right password: a session, or for a member with TOTP on, a challenge for the
    /// second step. The brake's count for the account is cleared only once the sign-in is
    /// complete.
    pub(crate) async fn after_password(
        &self,
        member: &Member,
    ) -> Result<Option<Challenge>, StoreError> {
        let project = &member.project_id;
        let Some(row) = self.store().get_member_totp(project, member.id).await? else {
            return Ok(None);
        };
        if !row.enabled {
            return Ok(None);
        }
        let now = self.now();
        let token = new_challenge(member.id);
        let expires_at = now + chrono::Duration::seconds(CHALLENGE_SECS);
        // A new sign-in replaces the one waiting, if any.
        let next = MemberTotp {
            version: Uuid::new_v4(),
            challenge: Some(TotpChallenge {
                hash: digest(&token),
                expires_at,
                failures: 0,
            }),
            updated_at: now,
            ..row.clone()
        };
        self.store()
            .put_member_totp(&next, Some(row.version))
            .await?;
        Ok(Some(Challenge { token, expires_at }))
    }

    /// The second step of a sign-in: the challenge and a code, or a recovery code.
    pub async fn sign_in_second_factor(
        &self,
        project: &ProjectId,
        challenge: &str,
        factor: SecondFactor,
        ip: IpAddr,
        user_agent: Option<String>,
    ) -> Result<NewSession, SignInError> {
        let Some(member_id) = challenge_member(challenge) else {
            return Err(SignInError::Expired);
        };
        let member = self
            .store()
            .get_member(project, member_id)
            .await
            .map_err(SignInError::Store)?;
        let Some(member) = member.filter(|m| m.state != MemberState::Deactivated) else {
            return Err(SignInError::Expired);
        };
        let attempt = self
            .throttle
            .begin(project, &member.email, ip)
            .map_err(SignInError::Throttled)?;
        let row = self
            .store()
            .get_member_totp(project, member.id)
            .await
            .map_err(SignInError::Store)?;
        let now = self.now();
        let row = row.filter(|t| t.enabled).filter(|t| {
            t.challenge.as_ref().is_some_and(|c| {
                let same: bool = c.hash.as_bytes().ct_eq(digest(challenge).as_bytes()).into();
                same && now < c.expires_at && c.failures < CHALLENGE_TRIES
            })
        });
        let Some(row) = row else {
            return Err(SignInError::Expired);
        };
        let (step, recovery) = match &factor {
            SecondFactor::Code(code) => (check_code(&row.secret, code, now, row.last_step), None),
            SecondFactor::RecoveryCode(code) => {
                let hash = recovery_hash(code);
                let found = row
                    .recovery_hashes
                    .iter()
                    .position(|h| bool::from(h.as_bytes().ct_eq(hash.as_bytes())));
                (None, found)
            }
        };
        let right = step.is_some() || recovery.is_some();
        let mut next = MemberTotp {
            version: Uuid::new_v4(),
            updated_at: now,
            ..row.clone()
        };
        let record = match right {
            true => {
                next.challenge = None;
                if let Some(step) = step {
                    next.last_step = step;
                }
                if let Some(i) = recovery {
                    next.recovery_hashes.remove(i);
                }
                recovery.map(|_| {
                    member_record(
                        &member,
                        now,
                        Some(ip.to_string()),
                        "member.recovery_code_used",
                    )
                })
            }
            false => {
                if let Some(c) = next.challenge.as_mut() {
                    c.failures += 1;
                }
                None
            }
        };
        let written = audit::recorded(
            record,
            self.store().put_member_totp(&next, Some(row.version)),
        )
        .await;
        match written {
            Ok(()) => {}
            // Another request used this challenge or this code meanwhile: this one failed.
            Err(StoreError::Conflict) => {
                return Err(self.second_factor_failed(member, ip, attempt));
            }
            Err(e) => return Err(SignInError::Store(e)),
        }
        if !right {
            return Err(self.second_factor_failed(member, ip, attempt));
        }
        self.throttle.succeeded(project, &member.email);
        drop(attempt);
        self.open_session(member, ip, user_agent)
            .await
            .map_err(SignInError::Store)
    }

    fn second_factor_failed(
        &self,
        member: Member,
        ip: IpAddr,
        attempt: crate::accounts::Attempt<'_>,
    ) -> SignInError {
        self.throttle.failed(&member.project_id, &member.email, ip);
        drop(attempt);
        SignInError::WrongCode(Box::new(member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc_6238_test_vectors() {
        // RFC 6238, appendix B, SHA-1 (its eight digits cut to our six).
        let key = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(key, time / STEP_SECS), code, "at {time}");
        }
    }

    #[test]
    fn a_code_is_right_one_step_either_side_and_only_after_the_last_used() {
        let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        let now = DateTime::from_timestamp(1_111_111_111, 0).unwrap();
        let step = step_of(now);
        let key = secret_bytes(&secret).unwrap();
        assert_eq!(
            check_code(&secret, &code_at(&key, step), now, 0),
            Some(step)
        );
        assert_eq!(
            check_code(&secret, &code_at(&key, step - 1), now, 0),
            Some(step - 1)
        );
        assert_eq!(
            check_code(&secret, &code_at(&key, step + 1), now, 0),
            Some(step + 1)
        );
        assert_eq!(check_code(&secret, &code_at(&key, step - 2), now, 0), None);
        assert_eq!(check_code(&secret, &code_at(&key, step + 2), now, 0), None);
        // Spent: the step is not after the last one used.
        assert_eq!(check_code(&secret, &code_at(&key, step), now, step), None);
        assert_eq!(check_code(&secret, "12345", now, 0), None);
        assert_eq!(check_code(&secret, "abcdef", now, 0), None);
    }

    #[test]
    fn recovery_codes_are_many_bits_and_compare_without_dashes_or_case() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(codes[0].len(), 19);
        assert_eq!(recovery_hash(&codes[0]), hashes[0]);
        assert_eq!(
            recovery_hash(&codes[0].replace('-', "").to_uppercase()),
            hashes[0]
        );
        assert_ne!(codes[0], codes[1]);
    }

    #[test]
    fn the_uri_names_the_issuer_and_the_account() {
        let project = ProjectId::parse("acme").unwrap();
        let uri = otpauth_uri("ABC", &project, "dana+1@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Fleety%20%28acme%29:dana%2B1%40example.com?secret=ABC&issuer=Fleety%20%28acme%29&algorithm=SHA1&digits=6&period=30"
        );
        let c = new_challenge(Uuid::nil());
        assert_eq!(challenge_member(&c), Some(Uuid::nil()));
    }
}
