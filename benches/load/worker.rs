//! Worker processes. The coordinator starts several copies of this binary, each with one job as
//! JSON, so that no process holds more than a few thousand sockets and the client side uses
//! every core. A worker talks to the coordinator in lines on stdout: `P <n>` adds n to the
//! progress bar, `READY` says a standing job (sockets that stay open) is in place, and
//! `RESULT <json>` ends the job. A standing job runs until its stdin says `stop` or closes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::net::{HttpConn, RawConn};

/// Latencies are recorded in microseconds, up to 100 s, with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .expect("histogram serializes into memory");
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub fn decode(s: &str) -> anyhow::Result<Histogram<u64>> {
    let raw = base64::engine::general_purpose::STANDARD.decode(s)?;
    let h: Histogram<u64> = Deserializer::new().deserialize(&mut raw.as_slice())?;
    Ok(h)
}

/// Microseconds since the Unix epoch: publishers stamp messages with it and subscribers in
/// other processes subtract it from their own clock (one machine, one clock).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The content of a timed message: `t=<micros>` and padding to a realistic size.
pub fn stamped_content(pad: usize) -> String {
    format!("t={} {}", now_micros(), "x".repeat(pad))
}

/// Finds `"content":"t=<micros>` in a frame without parsing the JSON.
pub fn stamp_of(frame: &str) -> Option<u64> {
    let at = frame.find("\"content\":\"t=")? + "\"content\":\"t=".len();
    let digits = frame[at..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .map(|b| b - b'0');
    let mut n = 0u64;
    let mut any = false;
    for d in digits {
        n = n * 10 + u64::from(d);
        any = true;
    }
    any.then_some(n)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Job {
    /// Open `count` WebSockets, spread over `paths`, and record the delay of every timed
    /// `new_message` they receive until stopped.
    Subscribe {
        server: SocketAddr,
        paths: Vec<String>,
        count: usize,
        first: u64,
    },
    /// Send requests on `connections` keep-alive connections: open loop at `rate` requests/s
    /// in all (each connection on its own schedule), or closed loop as fast as answers come
    /// when `rate` is 0.
    Http {
        server: SocketAddr,
        requests: Vec<Request>,
        connections: usize,
        rate: f64,
        duration_ms: u64,
        first: u64,
    },
    /// A connect storm: open `count` WebSockets to `target`, `in_flight` at a time, timing each
    /// from its connect to its subscription, and hold them until stopped.
    Storm {
        server: SocketAddr,
        target: crate::storm::Target,
        count: usize,
        in_flight: usize,
        first: u64,
    },
    /// Run `total` chat streams, `concurrency` at a time, each on a new session.
    Chat {
        server: SocketAddr,
        project: String,
        concurrency: usize,
        total: usize,
        first: u64,
    },
}

/// One kind of request in a mix; connection `i` uses `requests[i % len]`'s `paths[i % paths]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub op: String,
    pub method: String,
    pub paths: Vec<String>,
    pub auth: Option<String>,
    /// Body template; `{stamp}` becomes a timed content.
    pub body: Option<String>,
    /// Share of the requests (the weights are normalised).
    pub weight: f64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Histograms by name, encoded.
    pub histograms: Vec<(String, String)>,
    pub counts: Vec<(String, u64)>,
    pub errors: Vec<String>,
    /// Wall time of the measured part of the job.
    pub elapsed_ms: u64,
    /// CPU time (user + system) this worker process used in all.
    pub cpu_ms: u64,
}

impl Outcome {
    pub fn count(&mut self, name: &str, n: u64) {
        self.counts.push((name.to_owned(), n));
    }
}

pub struct Progress(AtomicU64);

impl Progress {
    /// Reports progress at most every 100 ms, so the pipe stays quiet.
    pub fn spawn() -> Arc<Self> {
        let p = Arc::new(Progress(AtomicU64::new(0)));
        let q = p.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let n = q.0.swap(0, Ordering::Relaxed);
                if n > 0 {
                    println!("P {n}");
                }
            }
        });
        p
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Keeps the first few distinct errors: enough to say what went wrong, bounded in memory.
#[derive(Default)]
pub struct Errors {
    total: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Errors {
    pub fn push(&self, e: impl std::fmt::Display) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut s = self.samples.lock().unwrap();
        let text = e.to_string();
        if s.len() < 5 && !s.contains(&text) {
            s.push(text);
        }
    }
    /// Moves the count and samples into `out`; every task holding the log has ended.
    pub fn report(self: Arc<Self>, out: &mut Outcome) {
        out.count("errors", self.total.load(Ordering::Relaxed));
        out.errors = self.samples.lock().unwrap().clone();
    }
}

pub async fn run(job: Job) -> anyhow::Result<()> {
    let outcome = match job {
        Job::Subscribe {
            server,
            paths,
            count,
            first,
        } => {
            // Connects in bounded parallel waves: a burst of thousands of handshakes at once
            // only measures the accept queue.
            let target = crate::storm::Target::Fleety { paths };
            crate::storm::run(server, target, count, 64, first).await?
        }
        Job::Http {
            server,
            requests,
            connections,
            rate,
            duration_ms,
            first,
        } => http(server, requests, connections, rate, duration_ms, first).await?,
        Job::Chat {
            server,
            project,
            concurrency,
            total,
            first,
        } => chat(server, project, concurrency, total, first).await?,
        Job::Storm {
            server,
            target,
            count,
            in_flight,
            first,
        } => crate::storm::run(server, target, count, in_flight, first).await?,
    };
    let mut outcome = outcome;
    outcome.cpu_ms = own_cpu_ms();
    println!("RESULT {}", serde_json::to_string(&outcome)?);
    Ok(())
}

fn own_cpu_ms() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

pub async fn wait_for_stop() {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "stop" {
            return;
        }
    }
}

async fn http(
    server: SocketAddr,
    requests: Vec<Request>,
    connections: usize,
    rate: f64,
    duration_ms: u64,
    first: u64,
) -> anyhow::Result<Outcome> {
    let progress = Progress::spawn();
    let errors = Arc::new(Errors::default());
    let ops: Vec<String> = requests.iter().map(|r| r.op.clone()).collect();
    let results = Arc::new(Mutex::new(
        ops.iter().map(|_| (histogram(), 0u64)).collect::<Vec<_>>(),
    ));
    // Open every connection before the clock starts.
    let mut conns = Vec::with_capacity(connections);
    for i in 0..connections {
        conns.push(
            RawConn::open(server, first + i as u64)
                .await
                .with_context(|| format!("connection {i}"))?,
        );
    }
    let total_weight: f64 = requests.iter().map(|r| r.weight).sum();
    let requests = Arc::new(requests);
    let per_conn_interval =
        (rate > 0.0).then(|| Duration::from_secs_f64(connections as f64 / rate));
    let started = Instant::now();
    let deadline = started + Duration::from_millis(duration_ms);
    let mut tasks = Vec::with_capacity(connections);
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (requests, results, errors, progress) = (
            requests.clone(),
            results.clone(),
            errors.clone(),
            progress.clone(),
        );
        // Each connection starts at its own offset into the interval, so the load is even.
        let offset = per_conn_interval
            .map(|iv| iv.mul_f64(i as f64 / connections as f64))
            .unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            let mut pick = fastrand_seed(i as u64);
            let mut intended = tokio::time::Instant::from_std(started) + offset;
            let mut k = 0u64;
            loop {
                if let Some(iv) = per_conn_interval {
                    intended += iv;
                    if intended.into_std() >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(intended).await;
                } else if Instant::now() >= deadline {
                    break;
                }
                // Open loop: latency counts from when the request was due, so a stall shows up
                // in every request it delayed (no coordinated omission).
                let due = if per_conn_interval.is_some() {
                    intended.into_std()
                } else {
                    Instant::now()
                };
                let r = choose(&requests, total_weight, &mut pick);
                let spec = &requests[r];
                let path = &spec.paths[(i + k as usize) % spec.paths.len()];
                k += 1;
                let body = spec
                    .body
                    .as_ref()
                    .map(|b| b.replace("{stamp}", &stamped_content(100)));
                let answer = conn
                    .request(
                        &spec.method,
                        path,
                        spec.auth.as_deref(),
                        body.as_deref().map(str::as_bytes),
                    )
                    .await;
                match answer {
                    Ok(a) if (200..300).contains(&a.status) => {
                        let us = due.elapsed().as_micros() as u64;
                        let mut all = results.lock().unwrap();
                        let _ = all[r].0.record(us.max(1));
                        all[r].1 += 1;
                        progress.add(1);
                    }
                    Ok(a) => errors.push(format!(
                        "{} {}: {}",
                        spec.op,
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    )),
                    Err(e) => {
                        errors.push(format!("{}: {e:#}", spec.op));
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut out = Outcome {
        elapsed_ms: started.elapsed().as_millis() as u64,
        ..Outcome::default()
    };
    let results = Arc::try_unwrap(results)
        .map_err(|_| anyhow::anyhow!("results still shared"))?
        .into_inner()
        .unwrap();
    for (op, (h, n)) in ops.into_iter().zip(results) {
        out.histograms.push((op.clone(), encode(&h)));
        out.count(&op, n);
    }
    errors.report(&mut out);
    Ok(out)
}

/// A small xorshift generator: the mix needs spread, not quality.
fn fastrand_seed(seed: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

fn choose(requests: &[Request], total: f64, state: &mut u64) -> usize {
    if requests.len() == 1 {
        return 0;
    }
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let mut x = (*state % 1_000_000) as f64 / 1_000_000.0 * total;
    for (i, r) in requests.iter().enumerate() {
        if x < r.weight {
            return i;
        }
        x -= r.weight;
    }
    requests.len() - 1
}

async fn chat(
    server: SocketAddr,
    project: String,
    concurrency: usize,
    total: usize,
    first: u64,
) -> anyhow::Result<Outcome> {
    let progress = Progress::spawn();
    let errors = Arc::new(Errors::default());
    let ttfb = Arc::new(Mutex::new(histogram()));
    let whole = Arc::new(Mutex::new(histogram()));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let prompts = [
        "How do I reset my password?",
        "Can I change my plan later?",
        "Where do I find my invoices?",
        "How do I invite a teammate?",
    ];
    let mut tasks = Vec::with_capacity(concurrency);
    for c in 0..concurrency {
        let (errors, ttfb, whole, next, progress, project) = (
            errors.clone(),
            ttfb.clone(),
            whole.clone(),
            next.clone(),
            progress.clone(),
            project.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = match HttpConn::open(server, first + c as u64).await {
                Ok(c) => c,
                Err(e) => return errors.push(format!("{e:#}")),
            };
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total as u64 {
                    return;
                }
                let session = conn
                    .json(
                        hyper::Method::POST,
                        "/v1/init-session",
                        None,
                        Some(serde_json::json!({ "project_id": project })),
                    )
                    .await;
                let token = match session
                    .as_ref()
                    .ok()
                    .and_then(|s| s["token"].as_str().map(str::to_owned))
                {
                    Some(t) => t,
                    None => return errors.push(format!("init-session: {session:?}")),
                };
                let prompt = prompts[n as usize % prompts.len()];
                let body = Bytes::from(serde_json::json!({ "prompt": prompt }).to_string());
                let sent = Instant::now();
                let resp = match conn.stream("/v1/chat", &token, body).await {
                    Ok(r) if r.status().is_success() => r,
                    Ok(r) => {
                        errors.push(format!("chat: {}", r.status()));
                        continue;
                    }
                    Err(e) => return errors.push(format!("chat: {e:#}")),
                };
                let mut body = resp.into_body();
                let mut first_byte = None;
                let mut text = Vec::new();
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => {
                            if let Some(data) = f.data_ref() {
                                if first_byte.is_none() && !data.is_empty() {
                                    first_byte = Some(sent.elapsed());
                                }
                                // Only the tail matters: it must end in [DONE].
                                text.extend_from_slice(data);
                                if text.len() > 64 {
                                    text.drain(..text.len() - 64);
                                }
                            }
                        }
                        Err(e) => {
                            errors.push(format!("chat body: {e}"));
                            break;
                        }
                    }
                }
                let done = String::from_utf8_lossy(&text).contains("[DONE]");
                match (first_byte, done) {
                    (Some(fb), true) => {
                        let _ = ttfb.lock().unwrap().record((fb.as_micros() as u64).max(1));
                        let _ = whole
                            .lock()
                            .unwrap()
                            .record((sent.elapsed().as_micros() as u64).max(1));
                        progress.add(1);
                    }
                    _ => errors.push("chat stream ended without [DONE]"),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut out = Outcome {
        elapsed_ms: started.elapsed().as_millis() as u64,
        ..Outcome::default()
    };
    let ttfb = ttfb.lock().unwrap();
    out.count("streams", ttfb.len());
    out.histograms.push(("ttfb".into(), encode(&ttfb)));
    out.histograms
        .push(("stream".into(), encode(&whole.lock().unwrap())));
    drop(ttfb);
    errors.report(&mut out);
    Ok(out)
}
