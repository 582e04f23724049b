//! A probe of the host the run shares: how long a cache line takes to travel from one CPU to
//! another and back.
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

fn pin(cpu: usize) -> bool {
    // SAFETY: `set` is a plain bit set owned by this frame; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
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
