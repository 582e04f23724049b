//! The servers under load: Fleety itself, started from the release binary on a fresh embedded
//! store (or one already running, given by address and pid); the ceiling, a bare warp server
//! answering GETs and posts with documents taken from Fleety; and a peer, Centrifugo, for the
//! connect storm.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::net::HttpConn;

pub struct Server {
    pub addr: SocketAddr,
    pub pid: u32,
    pub project: String,
    pub admin_key: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the release `fleety` binary on a free loopback port with a fresh data directory, no
    /// per-IP or chat limits (the generator is one client with many sockets), and room for
    /// 19,000 connections.
    pub async fn start(
        log: &Path,
        extra_env: &[(String, String)],
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(server_binary()?);
        cmd.env("FLEETY_LISTEN", addr.to_string())
            .env("FLEETY_DATA_DIR", dir.path())
            .env("FLEETY_LOG", "warn")
            .env("FLEETY_PUBLIC_RATE_LIMIT", "0")
            .env("FLEETY_SESSION_RATE_LIMIT", "0")
            .env("FLEETY_MAX_CONNECTIONS", "19000")
            .env("FLEETY_CHAT_SESSION_REQUESTS_PER_MINUTE", "0")
            .env("FLEETY_CHAT_PROJECT_REQUESTS_PER_MINUTE", "0")
            .env("FLEETY_CHAT_PROJECT_TOKENS_PER_HOUR", "0")
            .env("FLEETY_LLM_PROVIDER", "offline")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let key_file = dir.path().join("demo-admin-key");
        let mut server = Server::launch(cmd, cpu, addr, Some(dir), "/healthz")
            .await
            .context("the fleety binary")?;
        server.project = "demo".into();
        server.admin_key = std::fs::read_to_string(key_file)
            .context("the demo admin key was not written")?
            .trim()
            .to_owned();
        Ok(server)
    }

    /// A server someone else started.
    pub fn external(addr: SocketAddr, pid: u32, project: String, admin_key: String) -> Self {
        Server {
            addr,
            pid,
            project,
            admin_key,
            child: None,
            _dir: None,
        }
    }

    /// Starts this binary as the bare warp server, answering from `body_file` (see [`run_bare`]).
    pub async fn bare(body_file: &Path, cpu: Option<usize>) -> anyhow::Result<Self> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("bare-server")
            .arg(addr.to_string())
            .arg(body_file)
            .stdin(Stdio::null());
        Server::launch(cmd, cpu, addr, None, "/healthz").await
    }

    /// Starts Centrifugo (`binary`) on a free loopback port with connection tokens signed by
    /// `secret` (HS256) and clients allowed to subscribe to channels without a namespace: what
    /// a site whose visitors subscribe to their own conversation would configure. Its logs go
    /// to `log`.
    pub async fn centrifugo(
        binary: &Path,
        secret: &str,
        log: &Path,
        cpu: Option<usize>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let config = serde_json::json!({
            "http_server": { "address": "127.0.0.1", "port": port },
            "log": { "level": "warn" },
            "client": { "token": { "hmac_secret_key": secret }, "allowed_origins": ["*"] },
            "channel": { "without_namespace": { "allow_subscribe_for_client": true } },
            "health": { "enabled": true },
            "usage_stats": { "disabled": true },
        });
        let config_file = dir.path().join("config.json");
        std::fs::write(&config_file, serde_json::to_vec_pretty(&config)?)?;
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(binary);
        cmd.arg("--config")
            .arg(&config_file)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        Server::launch(cmd, cpu, addr, Some(dir), "/health")
            .await
            .with_context(|| format!("{}", binary.display()))
    }

    /// Spawns `cmd` (on `cpu` alone, if given) as a server at `addr`, owning `dir`, and waits
    /// until `health` answers 200.
    async fn launch(
        mut cmd: Command,
        cpu: Option<usize>,
        addr: SocketAddr,
        dir: Option<tempfile::TempDir>,
        health: &str,
    ) -> anyhow::Result<Self> {
        if let Some(cpu) = cpu {
            crate::host::pin_child(&mut cmd, cpu);
        }
        let child = cmd.spawn().context("cannot start the server")?;
        let mut server = Server {
            addr,
            pid: child.id(),
            project: String::new(),
            admin_key: String::new(),
            child: Some(child),
            _dir: dir,
        };
        wait_healthy(addr, health, server.child.as_mut()).await?;
        Ok(server)
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        status_field(self.pid, "VmRSS:")
    }

    /// The RSS once it has stopped moving: allocators hand freed memory back to the kernel
    /// some time after it was freed (mimalloc purges in the background), so a reading taken
    /// soon after a burst still holds the burst's garbage, and the next one may be tens of MiB
    /// lower. Reads every 500 ms until two readings a second apart differ by under 256 KiB,
    /// for at most 20 s.
    pub async fn settled_rss_kib(&self) -> anyhow::Result<u64> {
        let until = Instant::now() + Duration::from_secs(20);
        let mut readings = vec![self.rss_kib()?];
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            readings.push(self.rss_kib()?);
            if let [.., a, _, b] = readings[..] {
                if a.abs_diff(b) < 256 {
                    return Ok(b);
                }
            }
        }
        Ok(*readings.last().unwrap_or(&0))
    }

    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        status_field(self.pid, "VmHWM:")
    }

    /// CPU time (user + system) the server has used so far.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_of(self.pid)
    }
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_of(pid: u32) -> anyhow::Result<Duration> {
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_millis(ticks * 1000 / hz))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // SIGTERM drains; the store closes cleanly.
            // SAFETY: kill has no memory preconditions; the pid is our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(15);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_healthy(
    addr: SocketAddr,
    path: &str,
    mut child: Option<&mut Child>,
) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Some(c) = child.as_mut() {
            if let Some(status) = c.try_wait()? {
                bail!("the server exited at start-up ({status}); see its log");
            }
        }
        if let Ok(mut conn) = HttpConn::open(addr, 0).await {
            if let Ok(a) = conn.request(hyper::Method::GET, path, None, None).await {
                if a.status == 200 {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server at {addr} did not become healthy in 30 s")
}

/// The ceiling: warp serialising one JSON value per GET, the least any warp JSON endpoint does,
/// and for a POST parsing the JSON body and answering with a stored post's answer, which is the
/// least a message post does without storing anything. It answers `/healthz` too, so the same
/// start-up check works. `body_file` holds `{"get": …, "post": …}`.
pub async fn run_bare(addr: SocketAddr, body_file: PathBuf) -> anyhow::Result<()> {
    use warp::Filter;
    let docs: serde_json::Value = serde_json::from_slice(&std::fs::read(&body_file)?)?;
    let get = std::sync::Arc::new(docs["get"].clone());
    let post = std::sync::Arc::new(docs["post"].clone());
    let health =
        warp::path("healthz").map(|| warp::reply::json(&serde_json::json!({"status": "ok"})));
    let read = warp::get().map(move || warp::reply::json(&*get));
    let write = warp::post()
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::json())
        .map(move |_: serde_json::Value| {
            warp::reply::with_status(warp::reply::json(&*post), warp::http::StatusCode::CREATED)
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    warp::serve(health.or(read).or(write))
        .incoming(listener)
        .run()
        .await;
    Ok(())
}

/// The `fleety` binary built beside this one (`cargo build --release --workspace` builds both
/// into the same directory).
fn server_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let server = me.with_file_name("fleety");
    if !server.exists() {
        bail!(
            "{} is missing: build the server first with `cargo build --release --workspace`",
            server.display()
        );
    }
    Ok(server)
}
