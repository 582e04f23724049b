//! Several nodes against one: publish-to-delivery latency for subscribers on the node that
//! took the post and on the other nodes, and deliveries per second, with Fleety nodes on a
//! NATS JetStream cluster and one CQL keyspace.
//!
//! `target/release/cluster --nodes 3` (after `cargo build --release --workspace`), with NATS
//! servers (`--nats`, default the three of `scripts/nats.sh start`) and a CQL node (`--cql`)
//! running. Each node is `target/release/fleety`, started here with its log in `--out`.
//!
//! Every ticket has subscribers on every node; a publisher posts to random tickets through
//! random nodes, stamping each message with the time it was sent. A delivery's latency is the
//! subscriber's clock minus that stamp (one machine, one clock), counted as "same node" when
//! the subscriber is on the node that took the post and "across nodes" otherwise.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(
    name = "cluster",
    about = "Fleety nodes on NATS JetStream: latency and deliveries/s"
)]
struct Cli {
    /// Fleety nodes to start (1 runs without NATS-backed ownership only if --alone).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Run one node without the cluster (the single-node default), as the baseline.
    #[arg(long)]
    alone: bool,
    #[arg(long, default_value_t = 30)]
    tickets: usize,
    /// Subscribers of each ticket on each node.
    #[arg(long, default_value_t = 3)]
    subscribers: usize,
    /// Posts per second (0: closed loop, each publisher posting as soon as it is answered).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Concurrent publishers.
    #[arg(long, default_value_t = 16)]
    publishers: usize,
    #[arg(long, default_value_t = 15)]
    duration_secs: u64,
    #[arg(
        long,
        default_value = "nats://127.0.0.1:4322,nats://127.0.0.1:4323,nats://127.0.0.1:4324"
    )]
    nats: String,
    #[arg(long, default_value = "127.0.0.1:9042")]
    cql: String,
    #[arg(long, default_value = "target/load")]
    out: PathBuf,
}

const OPERATOR: &str = "operator-token-for-the-cluster-bench";

struct Node {
    port: u16,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Latencies {
    same: Histogram<u64>,
    across: Histogram<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.out)?;
    let keyspace = format!("fleety_bench_cluster_{}", std::process::id());
    let config = fleety::store::scylla::ScyllaConfig {
        nodes: vec![cli.cql.clone()],
        keyspace: keyspace.clone(),
        ..Default::default()
    };
    let session = fleety::store::scylla::connect(&config).await?;
    fleety::store::scylla::migrate(&session, &config).await?;
    let fleety = std::env::current_exe()?.with_file_name("fleety");
    let dir = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    for i in 0..cli.nodes {
        let port = free_port();
        let log = std::fs::File::create(cli.out.join(format!("cluster-node{i}.log")))?;
        let mut cmd = Command::new(&fleety);
        cmd.env("FLEETY_LISTEN", format!("127.0.0.1:{port}"))
            .env("FLEETY_DATA_DIR", dir.path().join(format!("n{i}")))
            .env("FLEETY_STORAGE", "scylla")
            .env("FLEETY_SCYLLA_NODES", &cli.cql)
            .env("FLEETY_SCYLLA_KEYSPACE", &keyspace)
            .env(
                "FLEETY_JWT_SECRET",
                "cluster-bench-secret-cluster-bench-secret",
            )
            .env("FLEETY_OPERATOR_TOKEN", OPERATOR)
            .env("FLEETY_DEMO", "false")
            .env("FLEETY_PUBLIC_RATE_LIMIT", "0")
            .env("FLEETY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        if !cli.alone {
            cmd.env("FLEETY_CLUSTER_NATS_URL", &cli.nats)
                .env("FLEETY_CLUSTER_NODE_ID", format!("bench{i}"));
        }
        nodes.push(Node {
            port,
            child: cmd.spawn()?,
        });
    }
    let http = reqwest::Client::new();
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}/healthz", node.port);
        while !http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "a node did not start; see {}",
                cli.out.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let base = |i: usize| format!("http://127.0.0.1:{}", nodes[i].port);
    let created: Value = http
        .post(format!("{}/v1/admin/projects", base(0)))
        .bearer_auth(OPERATOR)
        .json(&json!({ "name": "Bench", "allowed_origins": [] }))
        .send()
        .await?
        .json()
        .await?;
    let project = created["project_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = created["admin_key"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(
        !project.is_empty(),
        "creating the project failed: {created}"
    );

    let mut slugs = Vec::new();
    for t in 0..cli.tickets {
        let made: Value = http
            .post(format!("{}/v1/tickets/{project}", base(t % cli.nodes)))
            .json(&json!({ "title": format!("bench {t}"), "description": "" }))
            .send()
            .await?
            .json()
            .await?;
        let slug = made["slug"].as_str().unwrap_or_default().to_owned();
        // The first post through a node makes it the ticket's owner: owners spread evenly.
        post(&http, &base(t % cli.nodes), &project, &slug, &key, 0).await?;
        slugs.push(slug);
    }

    let latencies = Arc::new(Mutex::new(Latencies {
        same: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        across: Histogram::new_with_bounds(1, 60_000_000, 3)?,
    }));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut listeners = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for slug in &slugs {
            for _ in 0..cli.subscribers {
                let url = format!(
                    "ws://127.0.0.1:{}/v1/tickets/{project}/{slug}/ws",
                    node.port
                );
                let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
                let (latencies, delivered) = (latencies.clone(), delivered.clone());
                listeners.push(tokio::spawn(async move {
                    while let Some(Ok(frame)) = socket.next().await {
                        let Message::Text(text) = frame else { continue };
                        let Ok(event) = serde_json::from_str::<Value>(&text) else {
                            continue;
                        };
                        if event["type"] != "new_message" {
                            continue;
                        }
                        // "<sent micros> <node>": who took the post, and when it was sent.
                        let content = event["payload"]["content"].as_str().unwrap_or_default();
                        let mut parts = content.split(' ');
                        let (Some(sent), Some(via)) = (parts.next(), parts.next()) else {
                            continue;
                        };
                        let (Ok(sent), Ok(via)) = (sent.parse::<u64>(), via.parse::<usize>())
                        else {
                            continue;
                        };
                        if sent == 0 {
                            continue;
                        }
                        let latency = now_micros().saturating_sub(sent).max(1);
                        let mut l = latencies.lock().unwrap();
                        let h = if via == i { &mut l.same } else { &mut l.across };
                        let _ = h.record(latency);
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
    }

    let duration = Duration::from_secs(cli.duration_secs);
    let bar = ProgressBar::new(cli.duration_secs);
    bar.set_style(ProgressStyle::with_template(
        "{msg} [{bar:40}] {pos}/{len} s",
    )?);
    bar.set_message(format!("{} node(s)", cli.nodes));
    let started = Instant::now();
    let posted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let per_publisher = if cli.rate > 0.0 {
        Some(Duration::from_secs_f64(cli.publishers as f64 / cli.rate))
    } else {
        None
    };
    let mut publishers = Vec::new();
    for p in 0..cli.publishers {
        let (http, project, key, slugs) =
            (http.clone(), project.clone(), key.clone(), slugs.clone());
        let bases: Vec<String> = (0..cli.nodes).map(base).collect();
        let (posted, failed) = (posted.clone(), failed.clone());
        publishers.push(tokio::spawn(async move {
            let mut n = p;
            let mut due = Instant::now() + per_publisher.unwrap_or_default() * p as u32 / 16;
            while started.elapsed() < duration {
                if let Some(every) = per_publisher {
                    tokio::time::sleep_until(due.into()).await;
                    due += every;
                }
                n += 1;
                let (slug, via) = (&slugs[n % slugs.len()], (n / slugs.len()) % bases.len());
                match post(&http, &bases[via], &project, slug, &key, via).await {
                    Ok(()) => posted.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.set_position(started.elapsed().as_secs().min(cli.duration_secs));
    }
    for p in publishers {
        let _ = p.await;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    bar.finish_and_clear();
    for l in listeners {
        l.abort();
    }
    let l = std::mem::replace(
        &mut *latencies.lock().unwrap(),
        Latencies {
            same: Histogram::new(3)?,
            across: Histogram::new(3)?,
        },
    );
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let posted = posted.load(Ordering::Relaxed);
    let deliveries = delivered.load(Ordering::Relaxed);
    let report = json!({
        "nodes": cli.nodes,
        "alone": cli.alone,
        "tickets": cli.tickets,
        "subscribers_per_ticket_per_node": cli.subscribers,
        "rate": cli.rate,
        "publishers": cli.publishers,
        "seconds": elapsed.as_secs_f64(),
        "posts": posted,
        "posts_failed": failed.load(Ordering::Relaxed),
        "posts_per_sec": posted as f64 / elapsed.as_secs_f64(),
        "deliveries": deliveries,
        "deliveries_per_sec": deliveries as f64 / elapsed.as_secs_f64(),
        "deliveries_expected": posted * (cli.subscribers * cli.nodes) as u64,
        "same_node_ms": { "count": l.same.len(), "p50": ms(&l.same, 0.5), "p99": ms(&l.same, 0.99), "max": ms(&l.same, 1.0) },
        "across_nodes_ms": { "count": l.across.len(), "p50": ms(&l.across, 0.5), "p99": ms(&l.across, 0.99), "max": ms(&l.across, 1.0) },
    });
    let name = if cli.alone {
        "cluster-alone".to_owned()
    } else {
        format!("cluster-{}", cli.nodes)
    };
    std::fs::write(
        cli.out.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    drop(nodes);
    let _ = session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await;
    Ok(())
}

/// Posts as the project's agent; the content carries when it was sent and through which node.
async fn post(
    http: &reqwest::Client,
    base: &str,
    project: &str,
    slug: &str,
    key: &str,
    via: usize,
) -> anyhow::Result<()> {
    let sent = now_micros();
    let resp = http
        .post(format!("{base}/v1/tickets/{project}/{slug}/messages"))
        .bearer_auth(key)
        .json(&json!({ "author": "admin", "content": format!("{sent} {via}") }))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().as_u16() == 201,
        "post answered {}",
        resp.status()
    );
    Ok(())
}
