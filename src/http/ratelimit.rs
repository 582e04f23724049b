//! Per-client request limits in fixed one-minute windows, counted exactly for each client, in
//! memory bounded by the number of clients remembered.
//!
//! Each client has a counter of its own, so one client's requests never count against another.
//! The counters live in a cache that holds at most `capacity` clients and forgets the least
//! recently seen first, and any client not seen for a window or two. A forgotten client starts
//! again from zero: under a flood of new addresses the limit fails open for the oldest clients,
//! never closed for an innocent one. An IPv6 client is its /64, the block one host or home is
//! given, so rotating addresses within it gains nothing. A visitor's session is counted by a
//! hash of its id ([`RateLimiter::check_session`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleety_actors::clock::Clock;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use sha2::Digest;

const WINDOW_SECS: i64 = 60;

pub struct RateLimiter {
    limit: u32,
    /// A client's window (high 32 bits) and count in it (low 32 bits), updated in place.
    clients: Cache<u128, Arc<AtomicU64>>,
    clock: Arc<dyn Clock>,
}

/// The outcome of counting one request, and what to tell the client about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_secs: u32,
}

impl RateLimiter {
    /// `limit` requests per minute; 0 means unlimited. At most `capacity` clients are
    /// remembered at once.
    pub fn new(limit: u32, capacity: u64, clock: Arc<dyn Clock>) -> Self {
        let clients = Cache::builder()
            .max_capacity(capacity)
            .eviction_policy(EvictionPolicy::lru())
            // A count older than its window is worth nothing; two windows covers a client
            // seen at the end of one and the start of the next.
            .time_to_idle(Duration::from_secs(2 * WINDOW_SECS as u64))
            .build();
        Self {
            limit,
            clients,
            clock,
        }
    }

    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// Counts a request from `ip`.
    pub fn check(&self, ip: IpAddr) -> Decision {
        self.check_key(client_key(ip))
    }

    /// Counts a request of the visitor session `session` (a session token's subject).
    pub fn check_session(&self, session: &str) -> Decision {
        // 128 bits of SHA-256: two sessions sharing a counter is not a practical concern.
        let digest = sha2::Sha256::digest(session.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        self.check_key(u128::from_be_bytes(key))
    }

    fn check_key(&self, key: u128) -> Decision {
        let now = self.clock.now().timestamp();
        let window = (now.div_euclid(WINDOW_SECS)) as u64 & 0xFFFF_FFFF;
        let reset_secs = (WINDOW_SECS - now.rem_euclid(WINDOW_SECS)) as u32;
        if self.limit == 0 {
            return Decision {
                allowed: true,
                limit: 0,
                remaining: 0,
                reset_secs,
            };
        }
        let counter = self.clients.get_with(key, || Arc::new(AtomicU64::new(0)));
        let count = self.bump(&counter, window);
        Decision {
            allowed: count <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset_secs,
        }
    }

    /// Adds one to the counter for `window` (restarting it if it held an older window) and
    /// returns the new count. Counts stop just past the limit, so they cannot overflow.
    fn bump(&self, counter: &AtomicU64, window: u64) -> u32 {
        let mut current = counter.load(Ordering::Relaxed);
        loop {
            let (w, c) = (current >> 32, (current & 0xFFFF_FFFF) as u32);
            let next_count = if w == window {
                c.saturating_add(1).min(self.limit.saturating_add(1))
            } else {
                1
            };
            let next = (window << 32) | next_count as u64;
            match counter.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next_count,
                Err(actual) => current = actual,
            }
        }
    }

    /// Clients remembered now (after pending evictions), for the memory benchmark.
    pub fn clients(&self) -> u64 {
        self.clients.run_pending_tasks();
        self.clients.entry_count()
    }
}

/// IPv4 addresses count one by one; IPv6 addresses by their /64 prefix.
fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u32::from(v4) as u128,
            None => (u128::from(v6) & !((1u128 << 64) - 1)) | 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use fleety_actors::clock::ManualClock;

    fn limiter_of(limit: u32, capacity: u64) -> (RateLimiter, ManualClock) {
        let clock = ManualClock::new(
            Utc.timestamp_opt(1_700_000_000 - 1_700_000_000 % 60, 0)
                .unwrap(),
        );
        let limiter = RateLimiter::new(limit, capacity, Arc::new(clock.clone()));
        (limiter, clock)
    }

    fn limiter(limit: u32) -> (RateLimiter, ManualClock) {
        limiter_of(limit, 100_000)
    }

    #[test]
    fn allows_the_limit_then_refuses_until_the_window_ends() {
        let (l, clock) = limiter(10);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for i in 0..10 {
            let d = l.check(ip);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9 - i);
        }
        let refused = l.check(ip);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset_secs, 60);
        clock.advance(chrono::Duration::seconds(59));
        assert!(!l.check(ip).allowed);
        assert_eq!(l.check(ip).reset_secs, 1);
        clock.advance(chrono::Duration::seconds(1));
        assert!(l.check(ip).allowed);
    }

    #[test]
    fn clients_are_counted_separately() {
        let (l, _) = limiter(2);
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(l.check(a).allowed && l.check(a).allowed && !l.check(a).allowed);
        assert!(l.check(b).allowed);
    }

    #[test]
    fn fifty_thousand_clients_each_get_exactly_their_limit() {
        let (l, _) = limiter(10);
        let clients = (0..50_000u32).map(|i| IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        let clients: Vec<IpAddr> = clients.collect();
        // Round after round, as concurrent clients would arrive, not one client at a time.
        for round in 0..11u32 {
            for &ip in &clients {
                let d = l.check(ip);
                assert_eq!(d.allowed, round < 10, "{ip} in round {round}");
                assert_eq!(d.remaining, 9u32.saturating_sub(round));
            }
        }
    }

    #[test]
    fn a_flood_of_new_clients_forgets_the_oldest_and_never_refuses_a_fresh_one() {
        let (l, _) = limiter_of(3, 1_000);
        let early: IpAddr = "198.51.100.9".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(early).allowed);
        }
        assert!(!l.check(early).allowed);
        for i in 0..20_000u32 {
            assert!(l.check(IpAddr::from(i.to_be_bytes())).allowed);
        }
        assert!(l.clients() <= 1_000, "remembered {}", l.clients());
        // Forgotten, the early client starts afresh: the limiter fails open, never closed.
        assert!(l.check(early).allowed);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let (l, _) = limiter(2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_block: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.check(a).allowed && l.check(same_block).allowed);
        assert!(!l.check(same_block).allowed);
        assert!(l.check(other_block).allowed);
    }

    #[test]
    fn sessions_are_counted_separately_from_each_other() {
        let (l, _) = limiter(2);
        assert!(l.check_session("a").allowed && l.check_session("a").allowed);
        assert!(!l.check_session("a").allowed);
        assert!(l.check_session("b").allowed);
    }

    #[test]
    fn zero_means_unlimited() {
        let (l, _) = limiter(0);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert!((0..1000).all(|_| l.check(ip).allowed));
    }
}
