//! The load generator. It drives a Fleety server over real sockets and measures what the
//! performance goals are stated in: server memory per connection, deliveries per second and
//! publish-to-delivery latency, durable writes per second, hot-read throughput against a
//! bare warp server, and how long a peer that stops reading stays connected.
//!
//! Run: `cargo build --release --workspace`, then `target/release/load <scenario> [options]`
//! (`--help` lists them). By default it starts the `fleety` binary beside it on a fresh
//! embedded store; `--url`/`--pid` point it at a
//! server already running. Client sockets are spread over worker processes (this binary,
//! re-run with a job) and over 127.0.0.x source addresses. Each run prints a table and writes
//! `<out>/<scenario>.json` and `<out>/<scenario>.svg`.

mod host;
mod net;
mod report;
mod server;
mod slow;
mod storm;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};

use report::Report;
use server::Server;
use worker::{Job, Outcome, Request};

#[derive(Parser)]
#[command(name = "load", about = "Fleety's load generator")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Where the JSON results, SVG plots and the server's log go.
    #[arg(long, global = true, default_value = "target/load")]
    out: PathBuf,
    /// A running server to load instead of starting one (`host:port`, loopback).
    #[arg(long, global = true, requires_all = ["pid", "admin_key"])]
    url: Option<SocketAddr>,
    /// The running server's process id, for its memory.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// The running server's project admin key.
    #[arg(long, global = true)]
    admin_key: Option<String>,
    /// The running server's project.
    #[arg(long, global = true, default_value = "demo")]
    project: String,
    /// Client worker processes.
    #[arg(long, global = true, default_value_t = 2)]
    workers: usize,
    /// Pin the servers this run starts (Fleety, the bare server, Centrifugo) to this CPU.
    #[arg(long, global = true)]
    server_cpu: Option<usize>,
    /// Pin the client worker processes to this CPU.
    #[arg(long, global = true)]
    client_cpu: Option<usize>,
}

/// `--client-cpu`, for every worker a scenario starts.
static CLIENT_CPU: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

#[derive(Subcommand)]
enum Scenario {
    /// N idle subscribed WebSockets: server memory per connection.
    Idle {
        #[arg(long, default_value_t = 15_000)]
        connections: usize,
        /// Tickets the sockets are spread over.
        #[arg(long, default_value_t = 100)]
        tickets: usize,
        /// How long to hold the sockets before measuring.
        #[arg(long, default_value_t = 10)]
        settle_secs: u64,
    },
    /// One ticket, N subscribers, one publisher at a fixed rate: deliveries/s and latency.
    Fanout {
        #[arg(long, default_value_t = 1_000)]
        subscribers: usize,
        /// Messages per second the publisher posts.
        #[arg(long, default_value_t = 160.0)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        /// Connections the publisher posts on (each on its own schedule).
        #[arg(long, default_value_t = 32)]
        publishers: usize,
    },
    /// Many tickets with a few subscribers each, under a mix of posts, reads and read receipts.
    Tickets {
        #[arg(long, default_value_t = 500)]
        tickets: usize,
        #[arg(long, default_value_t = 3)]
        subscribers: usize,
        /// Requests per second in all.
        #[arg(long, default_value_t = 3_000.0)]
        rate: f64,
        #[arg(long, default_value_t = 100)]
        connections: usize,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
    },
    /// Open-loop POST message and GET ticket at a fixed rate (0: as fast as answers come).
    Http {
        #[arg(long, value_enum, default_value_t = Mix::Both)]
        mix: Mix,
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        #[arg(long, default_value_t = 500)]
        connections: usize,
        /// Tickets the posts are spread over (GETs all read the first, the hot one).
        #[arg(long, default_value_t = 500)]
        tickets: usize,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        /// Messages on the hot ticket before the run.
        #[arg(long, default_value_t = 20)]
        messages: usize,
        /// Load the bare warp server (the ceiling) with the same requests instead of Fleety: it
        /// answers GETs with the hot ticket's JSON and parses each post's JSON body and answers
        /// with a real post's answer, storing nothing.
        #[arg(long)]
        bare: bool,
    },
    /// N concurrent chat streams on the offline assistant: time to first byte, memory.
    Sse {
        #[arg(long, default_value_t = 500)]
        concurrency: usize,
        #[arg(long, default_value_t = 10_000)]
        total: usize,
    },
    /// A reconnecting crowd: N WebSockets connect and subscribe, a fixed number in flight, each
    /// timed from connect to subscription; against Fleety and, with --centrifugo, against
    /// Centrifugo in the same run.
    Storm {
        #[arg(long, default_value_t = 5_000)]
        connections: usize,
        /// Connects in flight at once, over all workers.
        #[arg(long, default_value_t = 200)]
        in_flight: usize,
        /// Tickets (Centrifugo: channels) the sockets subscribe to.
        #[arg(long, default_value_t = 100)]
        tickets: usize,
        /// How long to hold the sockets before measuring memory.
        #[arg(long, default_value_t = 5)]
        settle_secs: u64,
        /// The Centrifugo binary to run the same crowd against (`scripts/centrifugo.sh path`).
        #[arg(long)]
        centrifugo: Option<PathBuf>,
        /// Run the crowd against Centrifugo first.
        #[arg(long)]
        peer_first: bool,
    },
    /// Subscribers that read and peers that subscribe and never read, on one ticket under
    /// steady posts: how long the server keeps a peer that fell behind (Linux: read from
    /// /proc/net/tcp), what the kernel queues for it, and the readers' latency without and with
    /// such peers, in alternating phases.
    Slow(slow::Shape),
    /// (internal) run one worker job given as JSON.
    #[command(hide = true)]
    Worker { job: String },
    /// (internal) the bare warp server.
    #[command(hide = true)]
    BareServer { addr: SocketAddr, body: PathBuf },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Mix {
    Post,
    Get,
    Both,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A worker is one thread: parallelism comes from worker processes, and on a small machine
    // extra threads only add switches between them.
    let runtime = if matches!(cli.scenario, Scenario::Worker { .. }) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        match cli.scenario {
            Scenario::Worker { ref job } => worker::run(serde_json::from_str(job)?).await,
            Scenario::BareServer { addr, ref body } => server::run_bare(addr, body.clone()).await,
            _ => coordinate(cli).await,
        }
    })
}

async fn coordinate(cli: Cli) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.out)?;
    if let Some(cpu) = cli.client_cpu {
        let _ = CLIENT_CPU.set(cpu);
    }
    let server = match (cli.url, cli.pid, cli.admin_key.clone()) {
        (Some(url), Some(pid), Some(key)) => Server::external(url, pid, cli.project.clone(), key),
        _ => {
            let log = cli.out.join("server.log");
            // The scenarios that report memory have mimalloc give freed pages back at once: by default it
            // keeps them until later allocator activity, so the RSS before a crowd still held
            // start-up's garbage and dropped by 20-30 MiB once sockets arrived.
            let env: Vec<(String, String)> = match cli.scenario {
                Scenario::Idle { .. } | Scenario::Storm { .. } => {
                    vec![("MIMALLOC_PURGE_DELAY".into(), "0".into())]
                }
                Scenario::Slow(ref shape) => shape.server_env(),
                _ => Vec::new(),
            };
            let s = Server::start(&log, &env, cli.server_cpu).await?;
            eprintln!(
                "started fleety at {} (pid {}, log {})",
                s.addr,
                s.pid,
                log.display()
            );
            s
        }
    };
    let probe_before = host::cross_cpu_round_trip_ns();
    let mut report = match cli.scenario {
        Scenario::Idle {
            connections,
            tickets,
            settle_secs,
        } => idle(&cli, &server, connections, tickets, settle_secs).await?,
        Scenario::Fanout {
            subscribers,
            rate,
            duration_secs,
            publishers,
        } => fanout(&cli, &server, subscribers, rate, duration_secs, publishers).await?,
        Scenario::Tickets {
            tickets,
            subscribers,
            rate,
            connections,
            duration_secs,
        } => {
            tickets_mix(
                &cli,
                &server,
                tickets,
                subscribers,
                rate,
                connections,
                duration_secs,
            )
            .await?
        }
        Scenario::Http {
            mix,
            rate,
            connections,
            tickets,
            duration_secs,
            messages,
            bare,
        } => {
            http(
                &cli,
                &server,
                mix,
                rate,
                connections,
                tickets,
                duration_secs,
                messages,
                bare,
            )
            .await?
        }
        Scenario::Sse { concurrency, total } => sse(&cli, &server, concurrency, total).await?,
        Scenario::Storm {
            connections,
            in_flight,
            tickets,
            settle_secs,
            ref centrifugo,
            peer_first,
        } => {
            let crowd = Crowd {
                connections,
                in_flight,
                settle_secs,
            };
            storm(
                &cli,
                &server,
                &crowd,
                tickets,
                centrifugo.as_deref(),
                peer_first,
            )
            .await?
        }
        Scenario::Slow(ref shape) => slow::run(&cli, &server, shape).await?,
        Scenario::Worker { .. } | Scenario::BareServer { .. } => unreachable!("handled in main"),
    };
    let probe_after = host::cross_cpu_round_trip_ns();
    for (when, probe) in [("before", probe_before), ("after", probe_after)] {
        if let Some(ns) = probe {
            report.figure(&format!("cross-CPU round trip {when}"), "ns", ns);
        }
    }
    report.print();
    report.write(&cli.out)?;
    Ok(())
}

/// A worker process and the lines it reports.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Worker {
    fn spawn(job: &Job) -> anyhow::Result<Self> {
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.arg("worker")
            .arg(serde_json::to_string(job)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(cpu) = CLIENT_CPU.get() {
            host::pin_tokio_child(&mut cmd, *cpu);
        }
        let mut child = cmd.spawn().context("cannot start a worker")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("worker stdout")?;
        Ok(Worker {
            child,
            stdin,
            lines: tokio::io::BufReader::new(stdout).lines(),
        })
    }

    fn cpu(&self) -> Duration {
        self.child
            .id()
            .and_then(|pid| server::cpu_of(pid).ok())
            .unwrap_or_default()
    }

    /// Reads reports until `READY` or `RESULT`, moving the bar on each `P`.
    async fn until(&mut self, bar: &ProgressBar) -> anyhow::Result<Option<Outcome>> {
        while let Some(line) = self.lines.next_line().await? {
            if let Some(n) = line.strip_prefix("P ") {
                bar.inc(n.parse().unwrap_or(0));
            } else if line == "READY" {
                return Ok(None);
            } else if let Some(json) = line.strip_prefix("RESULT ") {
                return Ok(Some(serde_json::from_str(json)?));
            }
        }
        let status = self.child.wait().await?;
        bail!("a worker ended without a result ({status})")
    }

    async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            stdin.write_all(b"stop\n").await?;
        }
        Ok(())
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<22} [{bar:40}] {pos}/{len} ({per_sec}, {elapsed})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Splits `total` into `parts` near-equal shares.
fn shares(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .filter(|n| *n > 0)
        .collect()
}

/// Spawns subscribe workers for `count` sockets over `paths`; returns once all are connected.
async fn subscribers(
    cli: &Cli,
    server: &Server,
    paths: &[String],
    count: usize,
) -> anyhow::Result<(Vec<Worker>, f64)> {
    let bar = bar(count as u64, "subscribing");
    let started = Instant::now();
    let mut workers = Vec::new();
    let mut first = 10_000u64;
    for share in shares(count, cli.workers) {
        workers.push(Worker::spawn(&Job::Subscribe {
            server: server.addr,
            paths: paths.to_vec(),
            count: share,
            first,
        })?);
        first += share as u64;
    }
    for w in &mut workers {
        if let Some(outcome) = w.until(&bar).await? {
            bail!("a subscriber worker ended early: {:?}", outcome.errors);
        }
    }
    bar.finish();
    Ok((workers, started.elapsed().as_secs_f64()))
}

/// Stops standing workers and gathers their outcomes.
async fn finish(workers: &mut [Worker]) -> anyhow::Result<Vec<Outcome>> {
    let bar = ProgressBar::hidden();
    let mut out = Vec::new();
    for w in workers.iter_mut() {
        w.stop().await?;
    }
    for w in workers.iter_mut() {
        match w.until(&bar).await? {
            Some(o) => out.push(o),
            None => bail!("a worker said READY twice"),
        }
    }
    Ok(out)
}

async fn run_jobs(jobs: Vec<Job>, bar: &ProgressBar) -> anyhow::Result<Vec<Outcome>> {
    let mut workers = jobs
        .iter()
        .map(Worker::spawn)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    // Drain every worker's lines at once, so none blocks on a full pipe.
    let results = futures_util::future::join_all(workers.iter_mut().map(|w| w.until(bar))).await;
    for r in results {
        match r? {
            Some(o) => out.push(o),
            None => bail!("a finite job said READY"),
        }
    }
    Ok(out)
}

fn merged(outcomes: &[Outcome], name: &str) -> anyhow::Result<Histogram<u64>> {
    let mut h = worker::histogram();
    for o in outcomes {
        for (n, enc) in &o.histograms {
            if n == name {
                h.add(worker::decode(enc)?)?;
            }
        }
    }
    Ok(h)
}

/// The longest measured span of any worker: rates are counted over the requests, not over
/// starting processes and opening connections.
fn measured_secs(outcomes: &[Outcome]) -> f64 {
    outcomes
        .iter()
        .map(|o| o.elapsed_ms)
        .max()
        .unwrap_or(0)
        .max(1) as f64
        / 1000.0
}

/// The server's CPU over `server_secs`, the client processes' CPU over `client_secs` (both as
/// a share of one core), and the server's RSS now.
fn usage(
    r: &mut Report,
    server: &Server,
    cpu: Duration,
    server_secs: f64,
    outcomes: &[Outcome],
    client_secs: f64,
) -> anyhow::Result<()> {
    let clients = outcomes.iter().map(|o| o.cpu_ms).sum::<u64>() as f64 / 1000.0;
    r.figure(
        "server CPU",
        "% of one core",
        cpu.as_secs_f64() / server_secs * 100.0,
    );
    r.figure(
        "client processes' CPU",
        "% of one core",
        clients / client_secs * 100.0,
    );
    r.figure("server RSS", "MiB", server.rss_kib()? as f64 / 1024.0);
    Ok(())
}

fn total(outcomes: &[Outcome], name: &str) -> u64 {
    outcomes
        .iter()
        .flat_map(|o| o.counts.iter())
        .filter(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .sum()
}

/// The error count of all `groups` of workers in one figure, and their distinct samples.
fn errors(report: &mut Report, groups: &[&[Outcome]]) {
    let mut n = 0;
    for outcomes in groups {
        for o in outcomes.iter() {
            for e in &o.errors {
                if !report.errors.contains(e) {
                    report.errors.push(e.clone());
                }
            }
        }
        n += total(outcomes, "errors");
    }
    report.figure("errors", "count", n as f64);
}

async fn admin(server: &Server) -> anyhow::Result<net::HttpConn> {
    net::HttpConn::open(server.addr, 1).await
}

/// Creates `n` tickets; their slugs.
async fn create_tickets(server: &Server, n: usize) -> anyhow::Result<Vec<String>> {
    let bar = bar(n as u64, "creating tickets");
    let mut conns = Vec::new();
    for i in 0..8.min(n.max(1)) {
        conns.push(net::HttpConn::open(server.addr, 2 + i as u64).await?);
    }
    let per = n.div_ceil(conns.len());
    let project = server.project.clone();
    let tasks = conns.into_iter().enumerate().map(|(c, mut conn)| {
        let project = project.clone();
        let bar = bar.clone();
        async move {
            let mut slugs = Vec::new();
            for i in (c * per)..((c + 1) * per).min(n) {
                let t = conn
                    .json(
                        hyper::Method::POST,
                        &format!("/v1/tickets/{project}"),
                        None,
                        Some(json!({ "title": format!("load ticket {i}"), "description": "made by the load generator" })),
                    )
                    .await?;
                slugs.push(t["slug"].as_str().context("ticket without slug")?.to_owned());
                bar.inc(1);
            }
            anyhow::Ok(slugs)
        }
    });
    let mut slugs = Vec::with_capacity(n);
    for r in futures_util::future::join_all(tasks).await {
        slugs.extend(r?);
    }
    bar.finish();
    Ok(slugs)
}

/// `/v1/tickets/{project}/{slug}{suffix}` for each ticket.
fn ticket_paths(server: &Server, slugs: &[String], suffix: &str) -> Vec<String> {
    slugs
        .iter()
        .map(|s| format!("/v1/tickets/{}/{s}{suffix}", server.project))
        .collect()
}

fn ws_paths(server: &Server, slugs: &[String]) -> Vec<String> {
    ticket_paths(server, slugs, "/ws")
}

/// Visitor messages stamped with their send time, spread over `slugs`.
fn visitor_posts(op: &str, server: &Server, slugs: &[String], weight: f64) -> Request {
    Request {
        op: op.into(),
        method: "POST".into(),
        paths: ticket_paths(server, slugs, "/messages"),
        auth: None,
        body: Some(r#"{"author":"user","content":"{stamp}"}"#.into()),
        weight,
    }
}

async fn idle(
    cli: &Cli,
    server: &Server,
    connections: usize,
    tickets: usize,
    settle_secs: u64,
) -> anyhow::Result<Report> {
    let slugs = create_tickets(server, tickets).await?;
    let paths = ws_paths(server, &slugs);
    // Warm the ticket actors and the allocator with a short first round, so the baseline
    // holds what any server with these tickets holds.
    let (mut warm, _) = subscribers(cli, server, &paths, tickets.min(connections)).await?;
    finish(&mut warm).await?;
    drop(warm);
    let before = server.settled_rss_kib().await?;
    // In two halves: the server's baseline holds memory freed at start-up that the first
    // sockets reuse, so (RSS after − RSS before) / sockets understates what a socket costs
    // until that is used up (a few thousand sockets). The second half's growth does not.
    let first_half = connections / 2;
    let (mut workers, first_secs) = subscribers(cli, server, &paths, first_half).await?;
    let half = server.settled_rss_kib().await?;
    let (more, second_secs) = subscribers(cli, server, &paths, connections - first_half).await?;
    workers.extend(more);
    let connect_secs = first_secs + second_secs;
    eprintln!("holding {connections} sockets for {settle_secs} s");
    tokio::time::sleep(Duration::from_secs(settle_secs)).await;
    let after = server.settled_rss_kib().await?;
    let peak = server.peak_rss_kib()?;
    let outcomes = finish(&mut workers).await?;
    let mut r = Report::new(
        "idle",
        json!({ "connections": connections, "tickets": tickets, "settle_secs": settle_secs }),
    );
    let connected = total(&outcomes, "connected");
    r.figure("sockets connected", "count", connected as f64);
    r.figure(
        "sockets closed by the server",
        "count",
        total(&outcomes, "closed_by_server") as f64,
    );
    r.figure("connect rate", "sockets/s", connected as f64 / connect_secs);
    r.figure("server RSS before", "MiB", before as f64 / 1024.0);
    r.figure(
        "server RSS at half the sockets",
        "MiB",
        half as f64 / 1024.0,
    );
    r.figure("server RSS with sockets", "MiB", after as f64 / 1024.0);
    r.figure("server peak RSS", "MiB", peak as f64 / 1024.0);
    r.figure(
        "server RSS per socket",
        "KiB",
        after.saturating_sub(before) as f64 / connected.max(1) as f64,
    );
    r.figure(
        "server RSS per socket, 2nd half",
        "KiB",
        after.saturating_sub(half) as f64 / (connections - first_half).max(1) as f64,
    );
    errors(&mut r, &[&outcomes]);
    Ok(r)
}

async fn fanout(
    cli: &Cli,
    server: &Server,
    subscribers_n: usize,
    rate: f64,
    duration_secs: u64,
    publishers: usize,
) -> anyhow::Result<Report> {
    let slugs = create_tickets(server, 1).await?;
    let paths = ws_paths(server, &slugs);
    let (mut subs, _) = subscribers(cli, server, &paths, subscribers_n).await?;
    let publisher = visitor_posts("publish", server, &slugs, 1.0);
    let expected = (rate * duration_secs as f64) as u64;
    let bar = bar(expected, "publishing");
    let cpu_before = server.cpu()?;
    let clients_before: Duration = subs.iter().map(Worker::cpu).sum();
    let started = Instant::now();
    // Several connections, as many visitors and agents would post on, so one slow answer does
    // not hold the whole schedule.
    let pubs = run_jobs(
        vec![Job::Http {
            server: server.addr,
            requests: vec![publisher],
            connections: publishers,
            rate,
            duration_ms: duration_secs * 1000,
            first: 1_000,
        }],
        &bar,
    )
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last deliveries land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = server.cpu()? - cpu_before;
    let clients_cpu = subs.iter().map(Worker::cpu).sum::<Duration>() - clients_before;
    bar.finish();
    let outcomes = finish(&mut subs).await?;
    let published = total(&pubs, "publish");
    let received = total(&outcomes, "received");
    let mut r = Report::new(
        "fanout",
        json!({ "subscribers": subscribers_n, "rate": rate, "duration_secs": duration_secs,
                "publishers": publishers }),
    );
    r.figure("messages published", "count", published as f64);
    r.figure("deliveries", "count", received as f64);
    r.figure(
        "deliveries expected",
        "count",
        (published * total(&outcomes, "connected")) as f64,
    );
    r.figure("deliveries per second", "1/s", received as f64 / elapsed);
    r.figure(
        "server CPU",
        "% of one core",
        cpu.as_secs_f64() / elapsed * 100.0,
    );
    r.figure(
        "subscriber processes' CPU",
        "% of one core",
        clients_cpu.as_secs_f64() / elapsed * 100.0,
    );
    r.figure(
        "sockets closed by the server",
        "count",
        total(&outcomes, "closed_by_server") as f64,
    );
    r.latency("delivery", merged(&outcomes, "delivery")?);
    r.latency("publish ack", merged(&pubs, "publish")?);
    errors(&mut r, &[&pubs, &outcomes]);
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
async fn tickets_mix(
    cli: &Cli,
    server: &Server,
    tickets: usize,
    subscribers_n: usize,
    rate: f64,
    connections: usize,
    duration_secs: u64,
) -> anyhow::Result<Report> {
    let slugs = create_tickets(server, tickets).await?;
    let paths = ws_paths(server, &slugs);
    let (mut subs, _) = subscribers(cli, server, &paths, tickets * subscribers_n).await?;
    let mix = vec![
        visitor_posts("post", server, &slugs, 0.4),
        Request {
            op: "agent post".into(),
            method: "POST".into(),
            paths: ticket_paths(server, &slugs, "/messages"),
            auth: Some(server.admin_key.clone()),
            body: Some(r#"{"author":"admin","content":"{stamp}"}"#.into()),
            weight: 0.1,
        },
        Request {
            op: "get".into(),
            method: "GET".into(),
            paths: ticket_paths(server, &slugs, ""),
            auth: None,
            body: None,
            weight: 0.4,
        },
        Request {
            op: "mark read".into(),
            method: "PATCH".into(),
            paths: ticket_paths(server, &slugs, "/messages/read"),
            auth: Some(server.admin_key.clone()),
            body: Some(r#"{"reader":"admin"}"#.into()),
            weight: 0.1,
        },
    ];
    let ops: Vec<String> = mix.iter().map(|m| m.op.clone()).collect();
    let jobs = http_jobs(cli, server, mix, connections, rate, duration_secs);
    let bar = bar((rate * duration_secs as f64) as u64, "mixed traffic");
    let cpu_before = server.cpu()?;
    let started = Instant::now();
    let outcomes = run_jobs(jobs, &bar).await?;
    let wall = started.elapsed().as_secs_f64();
    let elapsed = measured_secs(&outcomes);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = server.cpu()? - cpu_before;
    bar.finish();
    let socket_outcomes = finish(&mut subs).await?;
    let mut r = Report::new(
        "tickets",
        json!({ "tickets": tickets, "subscribers": subscribers_n, "rate": rate,
                "connections": connections, "duration_secs": duration_secs }),
    );
    let done: u64 = ops.iter().map(|op| total(&outcomes, op)).sum();
    r.figure("requests answered", "count", done as f64);
    r.figure("requests per second", "1/s", done as f64 / elapsed);
    let received = total(&socket_outcomes, "received");
    r.figure("deliveries", "count", received as f64);
    r.figure("deliveries per second", "1/s", received as f64 / elapsed);
    // The server's CPU also covers the 2 s left for the last deliveries.
    usage(&mut r, server, cpu, wall + 2.0, &outcomes, wall)?;
    for op in &ops {
        r.latency(op, merged(&outcomes, op)?);
    }
    r.latency("delivery", merged(&socket_outcomes, "delivery")?);
    errors(&mut r, &[&outcomes, &socket_outcomes]);
    Ok(r)
}

/// Splits a mix over the worker processes: connections and rate in equal shares.
fn http_jobs(
    cli: &Cli,
    server: &Server,
    mix: Vec<Request>,
    connections: usize,
    rate: f64,
    duration_secs: u64,
) -> Vec<Job> {
    let parts = shares(connections, cli.workers);
    let mut first = 1_000u64;
    parts
        .iter()
        .map(|&c| {
            let job = Job::Http {
                server: server.addr,
                requests: mix.clone(),
                connections: c,
                rate: rate * c as f64 / connections as f64,
                duration_ms: duration_secs * 1000,
                first,
            };
            first += c as u64;
            job
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn http(
    cli: &Cli,
    fleety: &Server,
    mix: Mix,
    rate: f64,
    connections: usize,
    tickets: usize,
    duration_secs: u64,
    messages: usize,
    bare: bool,
) -> anyhow::Result<Report> {
    let slugs = create_tickets(fleety, tickets.max(1)).await?;
    let p = &fleety.project;
    let hot = format!("/v1/tickets/{p}/{}", slugs[0]);
    let mut conn = admin(fleety).await?;
    // A visitor's post answered, for the bare server to copy (the load posts as a visitor).
    let mut posted = serde_json::Value::Null;
    for i in 0..messages {
        let (author, auth) = match i % 2 {
            0 => ("user", None),
            _ => ("admin", Some(fleety.admin_key.as_str())),
        };
        let content = format!(
            "message {i} on the hot ticket, about a hundred bytes long, like a real support message"
        );
        let answer = conn
            .json(
                hyper::Method::POST,
                &format!("{hot}/messages"),
                auth,
                Some(json!({ "author": author, "content": content })),
            )
            .await?;
        if auth.is_none() {
            posted = answer;
        }
    }
    let body = conn
        .request(hyper::Method::GET, &hot, None, None)
        .await?
        .body;
    let mut requests = Vec::new();
    if mix != Mix::Get {
        requests.push(visitor_posts("post", fleety, &slugs, 1.0));
    }
    if mix != Mix::Post {
        requests.push(Request {
            op: "get".into(),
            method: "GET".into(),
            paths: vec![hot.clone()],
            auth: None,
            body: None,
            weight: 1.0,
        });
    }
    let bare_server;
    let target = if bare {
        if mix != Mix::Get && posted.is_null() {
            // Without a real answer to copy the ceiling would answer `null`, and look cheaper.
            bail!(
                "--bare with posts needs a post to copy its answer from: use --messages 1 or more"
            );
        }
        let file = cli.out.join("bare-body.json");
        let get: serde_json::Value = serde_json::from_slice(&body)?;
        std::fs::write(
            &file,
            serde_json::to_vec(&json!({ "get": get, "post": posted }))?,
        )?;
        bare_server = Server::bare(&file, cli.server_cpu).await?;
        &bare_server
    } else {
        fleety
    };
    let ops: Vec<String> = requests.iter().map(|m| m.op.clone()).collect();
    let jobs = http_jobs(cli, target, requests, connections, rate, duration_secs);
    let expected = if rate > 0.0 {
        (rate * duration_secs as f64) as u64
    } else {
        0
    };
    let bar = bar(expected, if bare { "bare warp" } else { "requests" });
    let cpu_before = target.cpu()?;
    let started = Instant::now();
    let outcomes = run_jobs(jobs, &bar).await?;
    let wall = started.elapsed().as_secs_f64();
    let elapsed = measured_secs(&outcomes);
    let cpu = target.cpu()? - cpu_before;
    bar.finish();
    let name = if bare { "http-bare" } else { "http" };
    let mut r = Report::new(
        name,
        json!({ "mix": match mix { Mix::Post => "post", Mix::Get => "get", Mix::Both => "both" },
                "rate": rate, "connections": connections, "tickets": tickets,
                "duration_secs": duration_secs, "target": if bare { "bare warp" } else { "fleety" },
                "body_bytes": body.len() }),
    );
    for op in &ops {
        let n = total(&outcomes, op);
        r.figure(&format!("{op} answered"), "count", n as f64);
        r.figure(&format!("{op} per second"), "1/s", n as f64 / elapsed);
    }
    usage(&mut r, target, cpu, wall, &outcomes, wall)?;
    for op in &ops {
        r.latency(op, merged(&outcomes, op)?);
    }
    errors(&mut r, &[&outcomes]);
    Ok(r)
}

async fn sse(
    cli: &Cli,
    server: &Server,
    concurrency: usize,
    total_n: usize,
) -> anyhow::Result<Report> {
    let before = server.rss_kib()?;
    let parts = shares(concurrency, cli.workers);
    let mut first = 1_000u64;
    let jobs: Vec<Job> = parts
        .iter()
        .map(|&c| {
            let job = Job::Chat {
                server: server.addr,
                project: server.project.clone(),
                concurrency: c,
                total: total_n * c / concurrency,
                first,
            };
            first += c as u64;
            job
        })
        .collect();
    let bar = bar(total_n as u64, "chat streams");
    // Sample the server's memory while the streams run; the high-water mark is per process
    // lifetime, so the samples are what belongs to this run.
    let pid = server.pid;
    let sampler = tokio::spawn(async move {
        let mut peak = 0u64;
        loop {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(v) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak = peak.max(v);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = tokio::signal::ctrl_c() => return peak,
            }
            if PEAK_STOP.load(std::sync::atomic::Ordering::Relaxed) {
                return peak;
            }
        }
    });
    let started = Instant::now();
    let outcomes = run_jobs(jobs, &bar).await?;
    let elapsed = started.elapsed().as_secs_f64();
    PEAK_STOP.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await?;
    bar.finish();
    let mut r = Report::new(
        "sse",
        json!({ "concurrency": concurrency, "total": total_n }),
    );
    let streams = total(&outcomes, "streams");
    r.figure("streams completed", "count", streams as f64);
    r.figure("streams per second", "1/s", streams as f64 / elapsed);
    r.figure("server RSS before", "MiB", before as f64 / 1024.0);
    r.figure("server RSS peak during run", "MiB", peak as f64 / 1024.0);
    // Each stream opens a session, and sessions stay in memory until 5 idle minutes pass:
    // what the server still holds after the run is theirs, not the streams'.
    let after = server.rss_kib()?;
    r.figure("server RSS after the run", "MiB", after as f64 / 1024.0);
    r.figure(
        "server RSS held per session",
        "KiB",
        after.saturating_sub(before) as f64 / streams.max(1) as f64,
    );
    r.figure(
        "server RSS per concurrent stream",
        "KiB",
        peak.saturating_sub(before) as f64 / concurrency.max(1) as f64,
    );
    r.latency("ttfb", merged(&outcomes, "ttfb")?);
    r.latency("whole stream", merged(&outcomes, "stream")?);
    errors(&mut r, &[&outcomes]);
    Ok(r)
}

static PEAK_STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The shape of a connect storm.
struct Crowd {
    connections: usize,
    in_flight: usize,
    settle_secs: u64,
}

async fn storm(
    cli: &Cli,
    server: &Server,
    crowd: &Crowd,
    tickets: usize,
    centrifugo: Option<&std::path::Path>,
    peer_first: bool,
) -> anyhow::Result<Report> {
    let slugs = create_tickets(server, tickets).await?;
    let mut r = Report::new(
        "storm",
        json!({ "connections": crowd.connections, "in_flight": crowd.in_flight,
                "tickets": tickets, "workers": cli.workers, "server_cpu": cli.server_cpu,
                "client_cpu": cli.client_cpu, "peer": centrifugo.map(|_| "centrifugo 6.9.1") }),
    );
    let fleety = storm::Target::Fleety {
        paths: ws_paths(server, &slugs),
    };
    let Some(binary) = centrifugo else {
        storm_crowd(cli, &mut r, "fleety", server, fleety, crowd).await?;
        return Ok(r);
    };
    // A fresh secret per run; the peer is started now so both servers idle alike beforehand.
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let peer = Server::centrifugo(
        binary,
        &secret,
        &cli.out.join("centrifugo.log"),
        cli.server_cpu,
    )
    .await?;
    let peer_target = storm::Target::Centrifugo {
        token: storm::centrifugo_token(&secret)?,
        channels: (0..tickets).map(|i| format!("ticket-{i}")).collect(),
    };
    let mut runs = vec![
        ("fleety", server, fleety),
        ("centrifugo", &peer, peer_target),
    ];
    if peer_first {
        runs.reverse();
    }
    for (i, (name, s, target)) in runs.into_iter().enumerate() {
        if i > 0 {
            // The first crowd's closed sockets leave the machine before the next one.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        storm_crowd(cli, &mut r, name, s, target, crowd).await?;
    }
    Ok(r)
}

/// One crowd against one server: its figures, prefixed with `name`, and its latency histogram.
async fn storm_crowd(
    cli: &Cli,
    r: &mut Report,
    name: &str,
    server: &Server,
    target: storm::Target,
    crowd: &Crowd,
) -> anyhow::Result<()> {
    let rss_before = server.settled_rss_kib().await?;
    let tcp_before = host::TcpCounters::now();
    let bar = bar(crowd.connections as u64, &format!("{name}: connecting"));
    let mut workers = Vec::new();
    let mut first = 10_000u64;
    let in_flight = shares(crowd.in_flight, cli.workers);
    for (w, count) in shares(crowd.connections, cli.workers)
        .into_iter()
        .enumerate()
    {
        workers.push(Worker::spawn(&Job::Storm {
            server: server.addr,
            target: target.clone(),
            count,
            in_flight: in_flight.get(w).copied().unwrap_or(1),
            first,
        })?);
        first += count as u64;
    }
    for w in &mut workers {
        if let Some(outcome) = w.until(&bar).await? {
            bail!("a storm worker ended early: {:?}", outcome.errors);
        }
    }
    bar.finish();
    let tcp = host::TcpCounters::now().since(tcp_before);
    tokio::time::sleep(Duration::from_secs(crowd.settle_secs)).await;
    let rss_after = server.settled_rss_kib().await?;
    let outcomes = finish(&mut workers).await?;
    let connected = total(&outcomes, "connected");
    let failed = (crowd.connections as u64).saturating_sub(connected);
    let figure = |r: &mut Report, what: &str, unit: &str, v: f64| {
        r.figure(&format!("{name}: {what}"), unit, v)
    };
    figure(r, "sockets subscribed", "count", connected as f64);
    figure(r, "failed connections", "count", failed as f64);
    figure(
        r,
        "closed by the server",
        "count",
        total(&outcomes, "closed_by_server") as f64,
    );
    figure(
        r,
        "storm rate",
        "sockets/s",
        connected as f64 / measured_secs(&outcomes),
    );
    figure(r, "listen overflows", "count", tcp.listen_overflows as f64);
    figure(r, "listen drops", "count", tcp.listen_drops as f64);
    figure(r, "SYN retransmits", "count", tcp.syn_retransmits as f64);
    figure(r, "RSS before", "MiB", rss_before as f64 / 1024.0);
    figure(r, "RSS with sockets", "MiB", rss_after as f64 / 1024.0);
    figure(
        r,
        "RSS per socket",
        "KiB",
        rss_after.saturating_sub(rss_before) as f64 / connected.max(1) as f64,
    );
    for o in &outcomes {
        for e in &o.errors {
            let e = format!("{name}: {e}");
            if !r.errors.contains(&e) {
                r.errors.push(e);
            }
        }
    }
    r.latency(name, merged(&outcomes, "connect")?);
    Ok(())
}
