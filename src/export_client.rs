//! `fleety export`: reads a project's export from a running server into a file, with a
//! progress line, and resumes by itself from the last `resume` cursor when the answer is cut
//! short. Over HTTP rather than from the store: the embedded store is held by the running
//! server, and the API already decides what an export may hold.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;

/// Attempts in a row that may end without their `end` line and without a ticket more: an
/// answer cut short after some progress is resumed at once, and one that makes none counts.
const RETRIES: u32 = 5;
/// A line longer than this is not one the server writes.
const MAX_LINE: usize = 64 * 1024 * 1024;

pub async fn run(server: &str, project: &str, out: &Path) -> anyhow::Result<()> {
    // From standard input, so it shows neither in the process list nor in the shell's history.
    let mut key = String::new();
    std::io::stdin().read_line(&mut key)?;
    let key = key.trim().to_owned();
    if key.is_empty() {
        bail!("no key: pass the admin key or an API token on the first line of standard input");
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut file = std::io::BufWriter::new(file);
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));

    let mut state = Progress::default();
    let mut failures = 0;
    loop {
        let before = state.tickets;
        match read_once(
            &http, server, project, &key, &mut state, &mut file, &progress,
        )
        .await
        {
            Ok(()) => break,
            Err(Fault::Final(e)) => {
                progress.abandon();
                return Err(e);
            }
            Err(Fault::CutShort(e)) => {
                // No waiting between attempts: progress resets the count, so a server that
                // keeps cutting the stream still gets the export through, and one that is
                // down is given up on after a few quick tries.
                failures = if state.tickets > before {
                    0
                } else {
                    failures + 1
                };
                if failures > RETRIES {
                    progress.abandon();
                    return Err(e.context(format!(
                        "gave up after {RETRIES} attempts in a row without progress"
                    )));
                }
                progress.println(format!("the export was cut short ({e}); resuming"));
            }
        }
    }
    file.flush()?;
    progress.finish_with_message(format!(
        "exported {} tickets ({} lines) to {}",
        state.tickets,
        state.lines,
        out.display()
    ));
    Ok(())
}

/// Where the export is.
#[derive(Default)]
struct Progress {
    cursor: Option<String>,
    tickets: u64,
    lines: u64,
}

enum Fault {
    /// Asking again will not help.
    Final(anyhow::Error),
    /// The answer ended early: ask again from the last cursor.
    CutShort(anyhow::Error),
}

async fn read_once(
    http: &reqwest::Client,
    server: &str,
    project: &str,
    key: &str,
    state: &mut Progress,
    file: &mut impl Write,
    progress: &indicatif::ProgressBar,
) -> Result<(), Fault> {
    let url = format!(
        "{}/v1/projects/{project}/export",
        server.trim_end_matches('/')
    );
    let mut req = http.get(&url).bearer_auth(key);
    if let Some(cursor) = &state.cursor {
        req = req.query(&[("cursor", cursor)]);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Fault::CutShort(anyhow!("cannot reach {server}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let error = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        let e = anyhow!("the server answered {status}: {error}");
        return Err(if status.is_server_error() {
            Fault::CutShort(e)
        } else {
            Fault::Final(e)
        });
    }
    let mut body = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let write = |e: std::io::Error| Fault::Final(anyhow!("cannot write the export: {e}"));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Fault::CutShort(anyhow!("{e}")))?;
        pending.extend_from_slice(&chunk);
        while let Some(at) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            let value: serde_json::Value = serde_json::from_slice(&line)
                .map_err(|e| Fault::CutShort(anyhow!("a line is not JSON: {e}")))?;
            match value["type"].as_str() {
                // A resumed answer opens with the same header again: the file keeps the first.
                Some("export") if state.lines > 0 => continue,
                Some("error") => {
                    let e = value["error"].as_str().unwrap_or("the export stopped");
                    return Err(Fault::CutShort(anyhow!("{e}")));
                }
                Some("resume") => {
                    state.cursor = value["cursor"].as_str().map(str::to_owned);
                    state.tickets += 1;
                }
                _ => {}
            }
            file.write_all(&line).map_err(write)?;
            state.lines += 1;
            progress.set_message(format!("{} tickets, {} lines", state.tickets, state.lines));
            if value["type"] == "end" {
                return Ok(());
            }
        }
        if pending.len() > MAX_LINE {
            return Err(Fault::Final(anyhow!(
                "a line is longer than any the server writes"
            )));
        }
    }
    Err(Fault::CutShort(anyhow!(
        "the answer ended before its last line"
    )))
}
