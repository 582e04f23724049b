//! The `fleety` binary itself: project creation from the command line, and configuration errors.

use std::process::Command;

use serde_json::Value;

fn fleety(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleety"));
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
