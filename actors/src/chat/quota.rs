//! Chat quotas: fixed-window counters per session and per project.
//!
//! A fixed window is coarse (a burst at a window's edge can reach twice the rate for a moment)
//! but needs two numbers per counter, which matters when every session and project has some.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Limits on what the assistant may spend. 0 turns a limit off.
#[derive(Debug, Clone)]
pub struct ChatQuotas {
    pub session_requests_per_minute: u32,
    /// Tokens one session may use in all.
    pub session_token_budget: u64,
    /// Tickets the assistant may open for one session.
    pub session_tickets: u32,
    pub project_requests_per_minute: u32,
    pub project_tokens_per_hour: u64,
    pub project_tickets_per_hour: u32,
}

impl Default for ChatQuotas {
    fn default() -> Self {
        Self {
            session_requests_per_minute: 20,
            session_token_budget: 50_000,
            session_tickets: 3,
            project_requests_per_minute: 600,
            project_tokens_per_hour: 2_000_000,
            project_tickets_per_hour: 100,
        }
    }
}

/// A count within the current window of `length`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    start: i64,
    count: u64,
    length: i64,
}

impl Window {
    pub fn new(length: Duration) -> Self {
        Self {
            start: 0,
            count: 0,
            length: i64::try_from(length.as_millis()).unwrap_or(i64::MAX).max(1),
        }
    }

    fn roll(&mut self, now: DateTime<Utc>) {
        let start = now.timestamp_millis().div_euclid(self.length) * self.length;
        if start != self.start {
            self.start = start;
            self.count = 0;
        }
    }

    /// How much of the window is used now.
    pub fn used(&mut self, now: DateTime<Utc>) -> u64 {
        self.roll(now);
        self.count
    }

    /// Time until the window starts afresh.
    pub fn retry_after(&self, now: DateTime<Utc>) -> Duration {
        let left = self.start + self.length - now.timestamp_millis();
        Duration::from_millis(u64::try_from(left.max(1000)).unwrap_or(1000))
    }

    /// Counts `amount` if the window stays within `limit` (0 = no limit).
    pub fn take(&mut self, now: DateTime<Utc>, amount: u64, limit: u64) -> bool {
        self.roll(now);
        if limit != 0 && self.count + amount > limit {
            return false;
        }
        self.count += amount;
        true
    }

    /// Counts `amount` whatever the limit: for costs known only afterwards (tokens).
    pub fn add(&mut self, now: DateTime<Utc>, amount: u64) {
        self.roll(now);
        self.count = self.count.saturating_add(amount);
    }
}

/// A project's shared counters.
#[derive(Debug, Clone, Copy)]
pub struct ProjectWindows {
    pub requests: Window,
    pub tokens: Window,
    pub tickets: Window,
}

impl Default for ProjectWindows {
    fn default() -> Self {
        Self {
            requests: Window::new(Duration::from_secs(60)),
            tokens: Window::new(Duration::from_secs(3600)),
            tickets: Window::new(Duration::from_secs(3600)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_up_to_its_limit_and_starts_afresh() {
        let t0 = DateTime::from_timestamp(1_700_000_040, 0).unwrap();
        let mut w = Window::new(Duration::from_secs(60));
        assert!(w.take(t0, 1, 2));
        assert!(w.take(t0, 1, 2));
        assert!(!w.take(t0, 1, 2));
        assert_eq!(w.retry_after(t0), Duration::from_secs(60));
        let next = t0 + chrono::Duration::seconds(60);
        assert!(w.take(next, 1, 2));
        assert_eq!(w.used(next), 1);
        // No limit.
        assert!(w.take(next, 1_000_000, 0));
    }
}
