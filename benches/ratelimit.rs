//! The rate limiter's memory and speed when a million distinct clients arrive in one minute,
//! as from an attacker who holds many addresses (an IPv6 /48 alone is 65,536 clients).
//!
//! For each capacity it counts one request from each of 1,000,000 distinct clients inside a
//! single window, then reports the clients remembered, the growth of the process's resident
//! memory, the cost per request, and how many first requests were refused (it must be none:
//! each client's count is its own). A limiter that remembers every client (capacity 1,000,000)
//! is the peer the bounded default is measured against.
//! Run: `cargo bench -p fleety-benches --bench ratelimit`.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use fleety::http::ratelimit::RateLimiter;
use fleety_actors::clock::ManualClock;

/// The server's allocator, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: u64 = 1_000_000;

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Client `i`: its own IPv6 /64 inside one /32, as a prefix-rotating attacker would use.
fn client(i: u64) -> IpAddr {
    let prefix = (0x2001_0db8u128 << 96) | (u128::from(i) << 64) | 1;
    IpAddr::V6(Ipv6Addr::from(prefix))
}

fn run(capacity: u64) {
    // The clock stands still: every request falls in one window.
    let clock = ManualClock::new(Utc.timestamp_opt(1_800_000_000, 0).unwrap());
    let before = resident();
    let limiter = RateLimiter::new(10, capacity, Arc::new(clock));
    let started = Instant::now();
    let mut refused = 0u64;
    for i in 0..CLIENTS {
        if !limiter.check(client(i)).allowed {
            refused += 1;
        }
    }
    let took = started.elapsed();
    let remembered = limiter.clients();
    let grown = resident().saturating_sub(before);
    println!(
        "capacity {capacity:>9}: remembered {remembered:>9} clients, resident memory +{:>6.1} MiB \
         ({:>4} bytes a remembered client), {:>5.2} µs a request, {refused} first requests refused",
        grown as f64 / (1 << 20) as f64,
        grown.checked_div(remembered.max(1)).unwrap_or(0),
        took.as_secs_f64() * 1e6 / CLIENTS as f64,
    );
    drop(limiter);
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // Each capacity in a process of its own, so memory freed by one run cannot be reused
    // by the next and hide its growth.
    if let Some(capacity) = std::env::var("RATELIMIT_CAPACITY")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        return run(capacity);
    }
    println!("{CLIENTS} distinct clients, one request each, in one minute");
    let exe = std::env::current_exe().expect("the bench's own path");
    for capacity in [100_000u64, 1_000_000] {
        let status = std::process::Command::new(&exe)
            .arg("--bench")
            .env("RATELIMIT_CAPACITY", capacity.to_string())
            .status()
            .expect("run one capacity");
        assert!(status.success(), "capacity {capacity}: {status}");
    }
}
