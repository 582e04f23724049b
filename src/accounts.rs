//! Members' credentials: password hashing (Argon2id) and its strength rule, signed-in sessions
//! (their secrets, idle timeout and maximum age), and the brake on guessing passwords.
//!
//! A session's secret is `fms_<member id>_<43 base64url characters>` (256 random bits). The
//! store keeps only the SHA-256 digest of the whole secret, which is the session's id, and the
//! member id in it says which member's sessions to look in. The CSRF token of a session is
//! derived from its secret, so it needs no storage and cannot be computed without the secret.
//!
//! Sign-in answers the same for an unknown email, a wrong password and a deactivated member,
//! and does the same work for each: an unknown email is checked against a dummy hash.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use fleety_actors::audit::{self, AuditActor, AuditRecord};
use fleety_actors::clock::Clock;
use fleety_actors::domain::ProjectId;
use fleety_actors::member::{Member, MemberSession, MemberState};
use fleety_actors::store::{MemberStore, StoreError};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted, in bytes: hashing is costly, and no one types more.
pub const MAX_PASSWORD_BYTES: usize = 256;
/// Sessions a member may hold at once; a sign-in beyond it ends the oldest.
pub const MAX_SESSIONS_PER_MEMBER: usize = 20;
/// How often a session's `last_seen_at` is written: its idle timeout is this coarse.
const TOUCH_EVERY_SECS: i64 = 60;
const TOKEN_PREFIX: &str = "fms_";

/// The name of the session cookie.
pub const COOKIE: &str = "fleety_member";

/// Why a password is refused.
pub fn password_problem(password: &str) -> Option<&'static str> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Some("the password is longer than 256 bytes");
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some("the password must have at least 10 characters");
    }
    // Lower case, upper case, digits, anything else: at least two of the four.
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return Some("the password must mix at least two kinds of characters (lower case, upper case, digits, others)");
    }
    None
}

/// An Argon2id hash of `password` in the PHC string format, with a fresh random salt and the
/// crate's default cost (19 MiB, two passes, one lane: OWASP's recommendation). Slow on
/// purpose: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `hash`; false for a hash that does not parse.
/// The comparison inside the crate takes constant time.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A new session secret for `member`.
fn new_secret(member: Uuid) -> String {
    let bytes: [u8; 32] = rand::random();
    let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!("{TOKEN_PREFIX}{}_{random}", member.simple())
}

/// The member a session secret names, if it is shaped like one.
fn secret_member(secret: &str) -> Option<Uuid> {
    let rest = secret.strip_prefix(TOKEN_PREFIX)?;
    let (member, random) = rest.split_once('_')?;
    (random.len() == 43).then_some(())?;
    Uuid::try_parse(member).ok()
}

/// Whether a bearer token is a member's session secret rather than an admin key.
pub fn is_session_secret(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

/// The session id of a secret: its SHA-256 digest.
pub fn session_id(secret: &str) -> String {
    crate::auth::hex(&Sha256::digest(secret.as_bytes()))
}

/// The CSRF token of the session whose secret this is.
pub fn csrf_token(secret: &str) -> String {
    let digest = Sha256::digest([b"fleety-csrf:".as_slice(), secret.as_bytes()].concat());
    crate::auth::hex(&digest[..16])
}

/// Whether `presented` is the CSRF token of the session `secret`, compared in constant time.
pub fn csrf_matches(secret: &str, presented: &str) -> bool {
    csrf_token(secret)
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

/// How long sessions and one-time links last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however used.
    pub max_age: Duration,
    /// An invitation link works this long.
    pub invitation_ttl: Duration,
    /// A password-reset link works this long.
    pub reset_ttl: Duration,
}

/// A signed-in member, as a request finds it. Its `Debug` leaves the secret out.
#[derive(Clone)]
pub struct SignedIn {
    pub member: Member,
    pub session: MemberSession,
    /// The secret the request carried.
    pub secret: String,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("member", &self.member)
            .field("session", &self.session)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What a sign-in gives.
pub struct NewSession {
    pub member: Member,
    pub session: MemberSession,
    pub secret: String,
}

/// Why a sign-in did not open a session.
#[derive(Debug)]
pub enum SignInError {
    /// Unknown email, wrong password or a member who may not sign in: one answer for all.
    Refused,
    /// A wrong code or recovery code at the second step (the member's, for the audit trail).
    WrongCode(Box<Member>),
    /// The second step's challenge is unknown, expired, used, or took too many wrong codes:
    /// sign in again.
    Expired,
    /// Too many failures lately, or an attempt in flight, for this account or this client:
    /// wait this long.
    Throttled(Duration),
    Store(StoreError),
    Internal(String),
}

/// Failed sign-ins, per account and per client IP, each making the next attempt wait longer.
///
/// The first few failures cost nothing; each one after doubles the wait, up to a ceiling.
/// The account's ceiling is short (30 s), so someone guessing an account's password from many
/// addresses slows it down without locking its owner out; a client's ceiling is long (15 min).
/// An attempt refused for waiting counts as nothing. Both tables are bounded caches that forget
/// the least recently seen entries and those idle for an hour.
///
/// An account, and a client, has one password check in flight at most: a failure is known
/// only once its check ends, so guesses sent all at once would otherwise all pass the brake
/// before the first of them counted. A second attempt meanwhile waits a second.
pub struct Throttle {
    accounts: Cache<String, Failures>,
    clients: Cache<u128, Failures>,
    clock: Arc<dyn Clock>,
    /// The accounts and clients with a check in flight: as many entries as requests in
    /// progress, each removed when its attempt ends (or its request is dropped).
    in_flight: std::sync::Mutex<InFlight>,
}

#[derive(Default)]
struct InFlight {
    accounts: std::collections::HashSet<String>,
    clients: std::collections::HashSet<u128>,
}

/// A sign-in attempt under way; ending it (dropping it) lets the next one for its account and
/// client begin.
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    account: String,
    client: u128,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.throttle.lock_in_flight();
        in_flight.accounts.remove(&self.account);
        in_flight.clients.remove(&self.client);
    }
}

/// What an attempt made while another for the same account or client is in flight waits.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: DateTime<Utc>,
}

/// Failures allowed before the waits start.
const FREE_FAILURES: u32 = 3;
const ACCOUNT_CEILING: Duration = Duration::from_secs(30);
const CLIENT_CEILING: Duration = Duration::from_secs(15 * 60);

fn wait_after(count: u32, ceiling: Duration) -> Duration {
    let Some(over) = count.checked_sub(FREE_FAILURES + 1) else {
        return Duration::ZERO;
    };
    Duration::from_secs(1u64 << over.min(20)).min(ceiling)
}

impl Throttle {
    pub fn new(capacity: u64, clock: Arc<dyn Clock>) -> Self {
        fn cache<K>(capacity: u64) -> Cache<K, Failures>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
        {
            Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(Duration::from_secs(3600))
                .build()
        }
        Self {
            accounts: cache(capacity),
            clients: cache(capacity),
            clock,
            in_flight: std::sync::Mutex::default(),
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        // The sets stay consistent whatever panicked while holding the lock.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Begins an attempt, or says how long it must wait: for earlier failures, or for an
    /// attempt on the same account or from the same client still in flight.
    pub fn begin(
        &self,
        project: &ProjectId,
        email: &str,
        ip: IpAddr,
    ) -> Result<Attempt<'_>, Duration> {
        if let Some(wait) = self.waiting(project, email, ip) {
            return Err(wait);
        }
        let account = Self::account_key(project, email);
        let client = client_key(ip);
        let mut in_flight = self.lock_in_flight();
        if in_flight.accounts.contains(&account) || in_flight.clients.contains(&client) {
            return Err(IN_FLIGHT_WAIT);
        }
        in_flight.accounts.insert(account.clone());
        in_flight.clients.insert(client);
        Ok(Attempt {
            throttle: self,
            account,
            client,
        })
    }

    fn account_key(project: &ProjectId, email: &str) -> String {
        format!("{project}\n{email}")
    }

    /// How long the attempt must wait, if it must.
    pub fn waiting(&self, project: &ProjectId, email: &str, ip: IpAddr) -> Option<Duration> {
        let now = self.clock.now();
        let left = |f: Option<Failures>| {
            f.filter(|f| f.until > now)
                .and_then(|f| (f.until - now).to_std().ok())
        };
        let account = left(self.accounts.get(&Self::account_key(project, email)));
        let client = left(self.clients.get(&client_key(ip)));
        account.into_iter().chain(client).max()
    }

    pub fn failed(&self, project: &ProjectId, email: &str, ip: IpAddr) {
        let now = self.clock.now();
        let bump = |f: Option<Failures>, ceiling| {
            let count = f.map_or(0, |f| f.count).saturating_add(1);
            let wait = chrono::Duration::from_std(wait_after(count, ceiling)).unwrap_or_default();
            Failures {
                count,
                until: now + wait,
            }
        };
        let key = Self::account_key(project, email);
        self.accounts
            .insert(key.clone(), bump(self.accounts.get(&key), ACCOUNT_CEILING));
        let key = client_key(ip);
        self.clients
            .insert(key, bump(self.clients.get(&key), CLIENT_CEILING));
    }

    pub fn succeeded(&self, project: &ProjectId, email: &str) {
        self.accounts.invalidate(&Self::account_key(project, email));
    }
}

/// A client's key: an IPv6 client is its /64, like the rate limiter's.
fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => (u128::from(v6) >> 64) << 64 | 1,
    }
}

/// Sessions that ended: one (`session`), or all of a member's (`None`).
#[derive(Debug, Clone)]
pub struct SessionsEnded {
    pub project: ProjectId,
    pub member: Uuid,
    pub session: Option<String>,
}

impl SessionsEnded {
    /// Whether this ends the session `id` of `member` in `project`.
    pub fn ends(&self, project: &ProjectId, member: Uuid, id: &str) -> bool {
        &self.project == project
            && self.member == member
            && self.session.as_deref().is_none_or(|s| s == id)
    }
}

/// Members' sign-in and sessions, over the store.
pub struct Accounts {
    store: Arc<dyn MemberStore>,
    clock: Arc<dyn Clock>,
    pub policy: SessionPolicy,
    pub throttle: Throttle,
    /// Checked when the email is unknown, so that answer takes as long as a wrong password.
    dummy_hash: String,
    /// Password checks running at once at most: each holds 19 MiB while it runs, so sign-ins
    /// from many addresses at once queue here instead of filling memory.
    hash_slots: tokio::sync::Semaphore,
    /// Sessions ended here, told to the inbox sockets of this node.
    ended: tokio::sync::broadcast::Sender<SessionsEnded>,
    /// Writes the emails that carry invitation and reset links; `None` while email is off.
    pub mail: Option<crate::mailer::Composer>,
}

impl Accounts {
    pub fn new(
        store: Arc<dyn MemberStore>,
        clock: Arc<dyn Clock>,
        policy: SessionPolicy,
        capacity: u64,
    ) -> anyhow::Result<Self> {
        let dummy_hash = hash_password(&format!("dummy-{}", Uuid::new_v4()))
            .map_err(|e| anyhow::anyhow!("cannot hash a password: {e}"))?;
        Ok(Self {
            store,
            throttle: Throttle::new(capacity, clock.clone()),
            clock,
            policy,
            dummy_hash,
            hash_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            ),
            // A socket that falls this far behind closes and its inbox reconnects, rechecking
            // its session.
            ended: tokio::sync::broadcast::channel(256).0,
            mail: None,
        })
    }

    pub fn store(&self) -> &Arc<dyn MemberStore> {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        fleety_actors::clock::truncate_millis(self.clock.now())
    }

    /// Checks a password against a PHC hash off the async threads, a bounded number at a time.
    pub(crate) async fn check_password(
        &self,
        password: String,
        hash: String,
    ) -> Result<bool, String> {
        let slot = self.hash_slots.acquire().await.map_err(|e| e.to_string())?;
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| e.to_string())?;
        drop(slot);
        Ok(matches)
    }

    /// Checks an email and password and opens a session, or, for a member with a second
    /// factor, answers the challenge to finish with ([`Accounts::sign_in_second_factor`]).
    pub async fn sign_in(
        &self,
        project: &ProjectId,
        email: &str,
        password: &str,
        ip: IpAddr,
        user_agent: Option<String>,
    ) -> Result<crate::totp::SignedInStep, SignInError> {
        let email = fleety_actors::member::normalise_email(email).unwrap_or_default();
        // Held until the check's outcome is counted, below.
        let attempt = self
            .throttle
            .begin(project, &email, ip)
            .map_err(SignInError::Throttled)?;
        let member = match email.is_empty() {
            true => None,
            false => self
                .store
                .member_by_email(project, &email)
                .await
                .map_err(SignInError::Store)?,
        };
        let hash = member
            .as_ref()
            .filter(|m| !m.password_hash.is_empty())
            .map_or(self.dummy_hash.clone(), |m| m.password_hash.clone());
        let matches = self
            .check_password(password.to_owned(), hash)
            .await
            .map_err(SignInError::Internal)?;
        let member = match member {
            Some(m) if matches && m.state != MemberState::Deactivated => m,
            _ => {
                self.throttle.failed(project, &email, ip);
                drop(attempt);
                return Err(SignInError::Refused);
            }
        };
        // With a second factor the sign-in is not over: the account's count stays until it is.
        let challenge = self
            .after_password(&member)
            .await
            .map_err(SignInError::Store)?;
        if let Some(challenge) = challenge {
            drop(attempt);
            return Ok(crate::totp::SignedInStep::SecondFactor(challenge));
        }
        self.throttle.succeeded(project, &email);
        drop(attempt);
        let now = self.now();
        let member = match member.state {
            MemberState::Invited => {
                let active = Member {
                    state: MemberState::Active,
                    updated_at: now,
                    ..member
                };
                self.store
                    .update_member(&active)
                    .await
                    .map_err(SignInError::Store)?;
                active
            }
            _ => member,
        };
        self.open_session(member, ip, user_agent)
            .await
            .map(|new| crate::totp::SignedInStep::Session(Box::new(new)))
            .map_err(SignInError::Store)
    }

    /// Opens a session for a member whose credentials were just checked (a sign-in, or an
    /// accepted invitation).
    pub async fn open_session(
        &self,
        member: Member,
        ip: IpAddr,
        user_agent: Option<String>,
    ) -> Result<NewSession, StoreError> {
        let now = self.now();
        self.prune(&member, now).await?;
        let secret = new_secret(member.id);
        let max_age = chrono::Duration::from_std(self.policy.max_age).unwrap_or_default();
        let session = MemberSession {
            id: session_id(&secret),
            project_id: member.project_id.clone(),
            member_id: member.id,
            created_at: now,
            last_seen_at: now,
            expires_at: now + max_age,
            user_agent: user_agent.map(|ua| ua.chars().take(256).collect()),
            ip: Some(ip.to_string()),
        };
        let record = AuditRecord::new(
            &member.project_id,
            now,
            AuditActor::Member {
                id: member.id,
                name: member.name.clone(),
                token: None,
            },
            Some(ip.to_string()),
            "member.signed_in",
        )
        .target(crate::members::target(&member));
        audit::recorded(Some(record), self.store.put_member_session(&session)).await?;
        Ok(NewSession {
            member,
            session,
            secret,
        })
    }

    /// Ends a member's expired sessions, and the oldest ones beyond the cap, before a new one.
    async fn prune(&self, member: &Member, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut sessions = self
            .store
            .list_member_sessions(&member.project_id, member.id)
            .await?;
        sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        for (i, s) in sessions.iter().enumerate() {
            if i + 1 >= MAX_SESSIONS_PER_MEMBER || !self.alive(s, now) {
                match self
                    .store
                    .delete_member_session(&member.project_id, member.id, &s.id)
                    .await
                {
                    Ok(()) | Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn alive(&self, s: &MemberSession, now: DateTime<Utc>) -> bool {
        let idle = chrono::Duration::from_std(self.policy.idle).unwrap_or_default();
        now < s.expires_at && now - s.last_seen_at < idle
    }

    /// The signed-in member a session secret stands for, in `project`; `None` if the secret
    /// names no live session of an active member. Moves the session's `last_seen_at` on.
    pub async fn session(
        &self,
        project: &ProjectId,
        secret: &str,
    ) -> Result<Option<SignedIn>, StoreError> {
        let Some(member_id) = secret_member(secret) else {
            return Ok(None);
        };
        let id = session_id(secret);
        let Some(session) = self
            .store
            .get_member_session(project, member_id, &id)
            .await?
        else {
            return Ok(None);
        };
        let now = self.now();
        if !self.alive(&session, now) {
            match self
                .store
                .delete_member_session(project, member_id, &id)
                .await
            {
                Ok(()) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
            return Ok(None);
        }
        let Some(member) = self.store.get_member(project, member_id).await? else {
            return Ok(None);
        };
        // Deactivation ends the sessions; this also covers one written by a racing sign-in.
        if member.state == MemberState::Deactivated {
            return Ok(None);
        }
        let session = if (now - session.last_seen_at).num_seconds() >= TOUCH_EVERY_SECS {
            let touched = MemberSession {
                last_seen_at: now,
                ..session
            };
            self.store.put_member_session(&touched).await?;
            touched
        } else {
            session
        };
        Ok(Some(SignedIn {
            member,
            session,
            secret: secret.to_owned(),
        }))
    }

    /// Ends every session of `member`: on deactivation and on a new password. Their open
    /// inboxes are told at once.
    pub async fn end_sessions(&self, member: &Member) -> Result<usize, StoreError> {
        let ended = self
            .store
            .delete_member_sessions(&member.project_id, member.id)
            .await;
        // Told even when the delete failed part-way: a socket that rechecks finds out anyway.
        self.announce(&member.project_id, member.id, None);
        ended
    }

    /// Ends one session of a member (sign-out, or the member ending it from their list);
    /// [`StoreError::NotFound`] if there is no such session. Its open inbox is told at once.
    pub async fn end_session(
        &self,
        project: &ProjectId,
        member: Uuid,
        id: &str,
    ) -> Result<(), StoreError> {
        self.store
            .delete_member_session(project, member, id)
            .await?;
        self.announce(project, member, Some(id.to_owned()));
        Ok(())
    }

    fn announce(&self, project: &ProjectId, member: Uuid, session: Option<String>) {
        // No receiver (no inbox open on this node) is not an error.
        let _ = self.ended.send(SessionsEnded {
            project: project.clone(),
            member,
            session,
        });
    }

    /// Sessions ended on this node from now on, for the inbox sockets to close theirs.
    pub fn ended_sessions(&self) -> tokio::sync::broadcast::Receiver<SessionsEnded> {
        self.ended.subscribe()
    }

    /// Whether a session is still live, its member active: what a socket opened with it
    /// checks now and then, for sessions ended on another node.
    pub async fn session_alive(
        &self,
        project: &ProjectId,
        member: Uuid,
        id: &str,
    ) -> Result<bool, StoreError> {
        let Some(session) = self.store.get_member_session(project, member, id).await? else {
            return Ok(false);
        };
        if !self.alive(&session, self.now()) {
            return Ok(false);
        }
        let member = self.store.get_member(project, member).await?;
        Ok(member.is_some_and(|m| m.state != MemberState::Deactivated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleety_actors::clock::ManualClock;

    #[test]
    fn passwords_need_ten_characters_of_two_kinds() {
        assert!(password_problem("short1A").is_some());
        assert!(password_problem("alllowercaseletters").is_some());
        assert!(password_problem("12345678901234").is_some());
        assert!(password_problem(&"aA".repeat(200)).is_some());
        assert_eq!(password_problem("correct horse"), None);
        assert_eq!(password_problem("Tr0ub4dor&3"), None);
        assert_eq!(password_problem("lowercase123"), None);
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsf", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn a_secret_names_its_member_and_its_csrf_token_is_its_own() {
        let member = Uuid::new_v4();
        let secret = new_secret(member);
        assert_eq!(secret_member(&secret), Some(member));
        assert!(is_session_secret(&secret));
        assert_eq!(secret_member("fms_nothex_abc"), None);
        assert_eq!(session_id(&secret).len(), 64);
        let other = new_secret(member);
        assert_ne!(session_id(&secret), session_id(&other));
        assert!(csrf_matches(&secret, &csrf_token(&secret)));
        assert!(!csrf_matches(&secret, &csrf_token(&other)));
        assert!(!csrf_matches(&secret, ""));
    }

    #[test]
    fn failures_make_the_next_attempt_wait_longer_up_to_a_ceiling() {
        let clock = ManualClock::new(Utc::now());
        let throttle = Throttle::new(1000, Arc::new(clock.clone()));
        let project = ProjectId::parse("demo").unwrap();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "198.51.100.4".parse().unwrap();
        let mut waits = Vec::new();
        for _ in 0..12 {
            assert_eq!(throttle.waiting(&project, "dana@example.com", ip), None);
            throttle.failed(&project, "dana@example.com", ip);
            let wait = throttle
                .waiting(&project, "dana@example.com", ip)
                .unwrap_or_default();
            waits.push(wait.as_secs());
            clock.advance(chrono::Duration::from_std(wait).unwrap());
        }
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256]);
        // Another client waits only for the account, whose wait stops at 30 s.
        throttle.failed(&project, "dana@example.com", ip);
        let account_wait = throttle.waiting(&project, "dana@example.com", other);
        assert_eq!(account_wait, Some(ACCOUNT_CEILING));
        // Another account from this client waits for the client.
        assert!(throttle.waiting(&project, "eli@example.com", ip) > Some(ACCOUNT_CEILING));
        throttle.succeeded(&project, "dana@example.com");
        assert_eq!(throttle.waiting(&project, "dana@example.com", other), None);
    }

    #[test]
    fn an_account_and_a_client_have_one_attempt_in_flight_at_a_time() {
        let throttle = Throttle::new(1000, Arc::new(ManualClock::new(Utc::now())));
        let project = ProjectId::parse("demo").unwrap();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "198.51.100.4".parse().unwrap();
        let first = throttle.begin(&project, "dana@example.com", ip).unwrap();
        let same_account = throttle.begin(&project, "dana@example.com", other);
        assert_eq!(same_account.err(), Some(IN_FLIGHT_WAIT));
        let same_client = throttle.begin(&project, "eli@example.com", ip);
        assert_eq!(same_client.err(), Some(IN_FLIGHT_WAIT));
        let unrelated = throttle.begin(&project, "eli@example.com", other);
        assert!(unrelated.is_ok());
        drop(unrelated);
        drop(first);
        assert!(throttle.begin(&project, "dana@example.com", other).is_ok());
    }

    #[test]
    fn printing_a_signed_in_member_shows_neither_the_secret_nor_the_hash() {
        let now = Utc::now();
        let hash = hash_password("correct horse").unwrap();
        let member = Member {
            id: Uuid::new_v4(),
            project_id: ProjectId::parse("demo").unwrap(),
            email: "dana@example.com".into(),
            name: "Dana".into(),
            avatar_url: None,
            role: fleety_actors::member::Role::Agent,
            state: MemberState::Active,
            password_hash: hash.clone(),
            created_at: now,
            updated_at: now,
        };
        let secret = new_secret(member.id);
        let signed_in = SignedIn {
            session: MemberSession {
                id: session_id(&secret),
                project_id: member.project_id.clone(),
                member_id: member.id,
                created_at: now,
                last_seen_at: now,
                expires_at: now,
                user_agent: None,
                ip: None,
            },
            member,
            secret: secret.clone(),
        };
        let printed = format!("{signed_in:?} {signed_in:#?}");
        assert!(printed.contains("dana@example.com"), "{printed}");
        assert!(!printed.contains(&secret), "{printed}");
        assert!(
            !printed.contains(&hash) && !printed.contains("$argon2"),
            "{printed}"
        );
    }
}
