//! Per-client request limits in fixed one-minute windows, in memory that does not grow.
//!
//! Counts live in a count-min sketch: two fixed tables of counters, each indexed by a different
//! keyed hash of the client's IP. A client's count is the smaller of its two counters. Clients
//! that share a counter only ever make each other's count larger, never smaller, so an abuser
//! cannot slip under the limit, and the memory stays at [`SLOTS`] × 2 × 8 bytes (4 MiB) however
//! many clients there are. An IPv6 client is its /64, the block one host or home is given, so
//! rotating addresses within it gains nothing. Each counter remembers its window, so nothing needs sweeping.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fleety_actors::clock::Clock;

const SLOTS: usize = 1 << 18;
const WINDOW_SECS: i64 = 60;

pub struct RateLimiter {
    limit: u32,
    tables: [Box<[AtomicU64]>; 2],
    hashers: [std::collections::hash_map::RandomState; 2],
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
    /// `limit` requests per minute; 0 means unlimited.
    pub fn new(limit: u32, clock: Arc<dyn Clock>) -> Self {
        let table = || (0..SLOTS).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        Self {
            limit,
            tables: [table(), table()],
            hashers: [Default::default(), Default::default()],
            clock,
        }
    }

    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// Counts a request from `ip`.
    pub fn check(&self, ip: IpAddr) -> Decision {
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
        let client = client_key(ip);
        let mut count = u32::MAX;
        for (table, hasher) in self.tables.iter().zip(&self.hashers) {
            let slot = &table[(hasher.hash_one(client) as usize) & (SLOTS - 1)];
            count = count.min(self.bump(slot, window));
        }
        Decision {
            allowed: count <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset_secs,
        }
    }

    /// Adds one to the counter for `window` (restarting it if it held an older window) and
    /// returns the new count. Counts stop just past the limit, so they cannot overflow.
    fn bump(&self, slot: &AtomicU64, window: u64) -> u32 {
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (w, c) = (current >> 32, (current & 0xFFFF_FFFF) as u32);
            let next_count = if w == window {
                c.saturating_add(1).min(self.limit.saturating_add(1))
            } else {
                1
            };
            let next = (window << 32) | next_count as u64;
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next_count,
                Err(actual) => current = actual,
            }
        }
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

    fn limiter(limit: u32) -> (RateLimiter, ManualClock) {
        let clock = ManualClock::new(
            Utc.timestamp_opt(1_700_000_000 - 1_700_000_000 % 60, 0)
                .unwrap(),
        );
        (RateLimiter::new(limit, Arc::new(clock.clone())), clock)
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
    fn many_clients_never_lower_anyones_count() {
        let (l, _) = limiter(5);
        let victim: IpAddr = "198.51.100.9".parse().unwrap();
        for _ in 0..5 {
            l.check(victim);
        }
        for i in 0..200_000u32 {
            l.check(IpAddr::from(i.to_be_bytes()));
        }
        assert!(!l.check(victim).allowed);
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
    fn zero_means_unlimited() {
        let (l, _) = limiter(0);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert!((0..1000).all(|_| l.check(ip).allowed));
    }
}
