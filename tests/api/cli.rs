//! The `fleety` binary itself: project creation from the command line, and configuration errors.

use std::process::Command;

use serde_json::Value;

fn fleety(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleety"));
    // The binary refuses unknown FLEETY_* settings; give it none of the test run's own.
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("FLEETY_")) {
        cmd.env_remove(name);
    }
    cmd.env("FLEETY_DATA_DIR", dir)
        .env("FLEETY_LOG", "error")
        .env_remove("FLEETY_STORAGE");
    cmd
}

#[test]
fn project_create_prints_the_id_and_admin_key_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = fleety(dir.path())
        .args([
            "project",
            "create",
            "--name",
            "Acme",
            "--id",
            "acme",
            "--origin",
            "https://acme.example",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["project_id"], "acme");
    assert!(created["admin_key"].as_str().unwrap().starts_with("fk_"));
    assert_eq!(created["allowed_origins"][0], "https://acme.example");

    let again = fleety(dir.path())
        .args(["project", "create", "--name", "Acme", "--id", "acme"])
        .output()
        .unwrap();
    assert!(!again.status.success());

    let generated = fleety(dir.path())
        .args(["project", "create", "--name", "Other"])
        .output()
        .unwrap();
    let generated: Value = serde_json::from_slice(&generated.stdout).unwrap();
    assert!(generated["project_id"]
        .as_str()
        .unwrap()
        .starts_with("proj_"));
}

/// Runs `fleety member ...` with `stdin` as its input and returns its JSON answer, or its
/// error line.
fn member(dir: &std::path::Path, args: &[&str], stdin: &str) -> Result<Value, String> {
    use std::io::Write;
    let mut child = fleety(dir)
        .arg("member")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    match out.status.success() {
        true => Ok(serde_json::from_slice(&out.stdout).unwrap()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[test]
fn members_are_added_listed_given_a_role_and_deactivated_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let created = fleety(dir.path())
        .args(["project", "create", "--name", "Acme", "--id", "acme"])
        .output()
        .unwrap();
    assert!(created.status.success());
    let p = dir.path();
    let base = ["--project", "acme", "--email", "Dana@Example.com"];
    let add = [&["add"], &base[..], &["--name", "Dana", "--role", "admin"]].concat();
    let dana = member(p, &add, "correct horse battery\n").unwrap();
    assert_eq!(
        (&dana["email"], &dana["role"], &dana["state"]),
        (
            &Value::from("dana@example.com"),
            &Value::from("admin"),
            &Value::from("invited")
        )
    );
    assert!(dana.get("password_hash").is_none());
    // A weak password, a taken email, an unknown project: one clear line each.
    let weak = [&["add"], &base[..], &["--name", "Dana"]].concat();
    assert!(member(p, &weak, "short\n")
        .unwrap_err()
        .contains("at least 10"));
    assert!(member(p, &add, "correct horse battery\n")
        .unwrap_err()
        .contains("has a member with this email"));
    let nowhere = ["list", "--project", "nowhere"];
    assert!(member(p, &nowhere, "").unwrap_err().contains("no project"));

    let set = [&["set-role"], &base[..], &["--role", "owner"]].concat();
    assert_eq!(member(p, &set, "").unwrap()["role"], "owner");
    let off = [&["deactivate"], &base[..]].concat();
    assert_eq!(member(p, &off, "").unwrap()["state"], "deactivated");
    let list = member(p, &["list", "--project", "acme"], "").unwrap();
    assert_eq!(list["members"].as_array().unwrap().len(), 1);
    assert_eq!(list["members"][0]["state"], "deactivated");
}

#[test]
fn bad_configuration_stops_start_up_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = fleety(dir.path())
        .env("FLEETY_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("FLEETY_LISTEN"), "{stderr}");

    let out = fleety(dir.path())
        .env("FLEETY_PUBLIC_RATE_LIMIT", "lots")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FLEETY_PUBLIC_RATE_LIMIT"), "{stderr}");

    let out = fleety(dir.path())
        .args(["project", "create", "--name", "x", "--origin", "*"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--origin"));
}

/// Starts the real binary on a free port and returns it with its base URL.
fn start_server(dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = fleety(dir)
        .env("FLEETY_LISTEN", "127.0.0.1:0")
        .env("FLEETY_PUBLIC_RATE_LIMIT", "0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let banner = lines.next().expect("a banner line").unwrap();
    let url = banner.rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{banner}");
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

#[tokio::test]
async fn a_killed_server_loses_nothing_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = start_server(dir.path());
    let http = reqwest::Client::new();
    let ticket: Value = http
        .post(format!("{base}/v1/tickets/demo"))
        .json(&serde_json::json!({"title": "Survive a crash"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slug = ticket["slug"].as_str().unwrap().to_owned();
    let posts = (0..30).map(|i| {
        let (http, url) = (
            http.clone(),
            format!("{base}/v1/tickets/demo/{slug}/messages"),
        );
        async move {
            let resp = http
                .post(url)
                .json(&serde_json::json!({"content": format!("m{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            format!("m{i}")
        }
    });
    let acknowledged = futures_util::future::join_all(posts).await;

    // No graceful shutdown, no flush: the process just dies.
    server.kill().unwrap();
    server.wait().unwrap();

    let (mut server, base) = start_server(dir.path());
    let after: Value = http
        .get(format!("{base}/v1/tickets/demo/{slug}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: Vec<String> = after["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    server.kill().unwrap();
    server.wait().unwrap();
    for m in &acknowledged {
        assert!(stored.contains(m), "acknowledged {m} was lost");
    }
    assert_eq!(stored.len(), acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleety_chat_talks_to_a_running_server_from_the_terminal() {
    use std::io::Write;
    let app = crate::helpers::spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = fleety(dir.path())
        .args(["chat", "--project", &app.project, "--server", &app.base])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"How do I reset my password?\nI want to talk to a human\n")
        .unwrap();
    // Closing stdin ends the session after both questions are answered.
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Forgot password"), "{stdout}");
    assert!(stdout.contains("I've created a support ticket"), "{stdout}");
    assert!(
        stdout.contains(&format!("/v1/tickets/{}/", app.project)),
        "{stdout}"
    );
}

#[tokio::test]
async fn export_writes_a_running_servers_project_to_a_file() {
    let app = crate::helpers::spawn_app().await;
    let slug = app.create_ticket("Exported from the command line").await;
    app.post_message(&slug, "Hello from the visitor").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.jsonl");
    let mut child = fleety(dir.path())
        .args(["export", "--project", &app.project, "--server", &app.base])
        .arg("--out")
        .arg(&out)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{}", app.admin_key).unwrap();
    }
    let done = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "export");
    assert_eq!(lines.last().unwrap()["type"], "end");
    assert!(lines
        .iter()
        .any(|l| l["type"] == "message" && l["message"]["content"] == "Hello from the visitor"));

    // An existing file is never overwritten, and a wrong key is a clear failure.
    let again = fleety(dir.path())
        .args(["export", "--project", &app.project, "--server", &app.base])
        .arg("--out")
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!again.status.success());
    let other = dir.path().join("other.jsonl");
    let mut child = fleety(dir.path())
        .args(["export", "--project", &app.project, "--server", &app.base])
        .arg("--out")
        .arg(&other)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "fk_wrong").unwrap();
    }
    let wrong = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("not the admin key"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}
