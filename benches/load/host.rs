//! The host the run shares: a probe of how long a cache line takes to travel from one CPU to
//! another and back, pinning processes to CPUs, and the kernel's TCP counters.
//!
//! On the cloud VMs these benchmarks run on, it swings between about 100 ns and 500 ns from
//! one second to the next, as the hypervisor places the two virtual CPUs on the same or on
//! different core complexes. Every hand-over between the server's threads (a request to its
//! ticket actor, a batch to the store's writer, the answer back) pays it several times over,
//! so a run's throughput and tail latency are read beside it, taken before and after the run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Round trips per sample, and samples per probe; the probe reports the median sample. With
/// 20,000 trips a sample read about twice the true figure: the partner thread's start-up
/// weighed on it. 200,000 take 20–100 ms and agree with a C program doing the same.
const TRIPS: u64 = 200_000;
const SAMPLES: usize = 5;
/// A sample whose partner thread does not answer within this long (a busy machine) is given up.
const PATIENCE: Duration = Duration::from_secs(2);
/// Spins between looks at the clock: reading it on every spin would add its own cost to each
/// round trip.
const SPINS_PER_CLOCK_READ: u32 = 4096;

/// Spins until `done` holds; false if `PATIENCE` ran out first or `done` says to give up.
fn spin_until(started: Instant, mut done: impl FnMut() -> Option<bool>) -> bool {
    let mut spins = 0u32;
    loop {
        match done() {
            Some(true) => return true,
            None => return false,
            Some(false) => {}
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(SPINS_PER_CLOCK_READ) && started.elapsed() > PATIENCE {
            return false;
        }
        std::hint::spin_loop();
    }
}

/// The median round trip between CPU 0 and CPU 1 in nanoseconds; `None` on a single CPU or
/// when the threads cannot be pinned or kept running.
pub fn cross_cpu_round_trip_ns() -> Option<f64> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    // Its own threads, so no thread of the generator's runtime is left pinned.
    std::thread::spawn(|| {
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            samples.push(sample()?);
        }
        samples.sort_by(f64::total_cmp);
        Some(samples[SAMPLES / 2])
    })
    .join()
    .ok()
    .flatten()
}

/// Pins the calling thread.
fn pin(cpu: usize) -> bool {
    affinity(cpu).is_ok()
}

/// One sample: the calling thread, pinned to CPU 0, writes odd numbers; a partner on CPU 1
/// answers each with the next even one.
fn sample() -> Option<f64> {
    let flag = Arc::new(AtomicU64::new(0));
    let partner = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            if !pin(1) {
                flag.store(u64::MAX, Ordering::Release);
                return;
            }
            let started = Instant::now();
            for i in 0..TRIPS {
                if !spin_until(started, || Some(flag.load(Ordering::Acquire) == 2 * i + 1)) {
                    flag.store(u64::MAX, Ordering::Release);
                    return;
                }
                flag.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    let result = pin(0).then(|| {
        let started = Instant::now();
        for i in 0..TRIPS {
            flag.store(2 * i + 1, Ordering::Release);
            let answered = spin_until(started, || match flag.load(Ordering::Acquire) {
                u64::MAX => None,
                seen => Some(seen == 2 * i + 2),
            });
            if !answered {
                return None;
            }
        }
        Some(started.elapsed().as_nanos() as f64 / TRIPS as f64)
    });
    let _ = partner.join();
    result.flatten()
}

/// Makes a child process run on `cpu` alone. The mask is set in the child between fork and
/// exec, so every thread it will start inherits it (pinning a running process by pid moves
/// only its main thread).
pub fn pin_child(cmd: &mut std::process::Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only makes one system call, which is async-signal-safe.
    unsafe { cmd.pre_exec(move || affinity(cpu)) };
}

/// [`pin_child`] for a tokio command.
pub fn pin_tokio_child(cmd: &mut tokio::process::Command, cpu: usize) {
    // SAFETY: as in `pin_child`.
    unsafe { cmd.pre_exec(move || affinity(cpu)) };
}

fn affinity(cpu: usize) -> std::io::Result<()> {
    // SAFETY: `set` is a plain bit set owned by this frame; the call only reads it.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The kernel's TCP counters that say whether connections waited on the accept queue: SYNs
/// dropped because a listener's queue was full, and SYNs sent again by clients.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpCounters {
    pub listen_overflows: u64,
    pub listen_drops: u64,
    pub syn_retransmits: u64,
}

impl TcpCounters {
    /// The machine-wide counters now (from /proc/net/netstat); zeros where it cannot be read.
    pub fn now() -> Self {
        let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
        let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return TcpCounters::default();
        };
        let pairs: Vec<(&str, u64)> = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .map(|(n, v)| (n, v.parse().unwrap_or(0)))
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, v)| *v)
        };
        TcpCounters {
            listen_overflows: get("ListenOverflows"),
            listen_drops: get("ListenDrops"),
            syn_retransmits: get("TCPSynRetrans"),
        }
    }

    pub fn since(self, before: TcpCounters) -> TcpCounters {
        TcpCounters {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(before.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(before.listen_drops),
            syn_retransmits: self.syn_retransmits.saturating_sub(before.syn_retransmits),
        }
    }
}
