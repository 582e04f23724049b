//! The command line: `fleety` (serve), `fleety serve`, `fleety migrate`, `fleety project create`,
//! `fleety member add|list|set-role|deactivate`, `fleety chat`.

use clap::{Parser, Subcommand};
use fleety_actors::audit::AuditBy;
use fleety_actors::domain::{ProjectId, ProjectName};
use fleety_actors::member::{MemberState, Role};

use crate::members::{MemberChange, MemberError, NewMember};

use crate::app::{shutdown_signal, Application};
use crate::config::Settings;
use crate::projects::{parse_origins, Projects};

#[derive(Parser)]
#[command(name = "fleety", version, about = "Realtime customer-support server")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create the CQL keyspace if needed and apply pending migrations (FLEETY_STORAGE=scylla).
    Migrate,
    /// Chat with a running server's assistant from the terminal.
    Chat {
        /// The project whose assistant to talk to.
        #[arg(long)]
        project: String,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Do not let the assistant open tickets.
        #[arg(long)]
        no_tools: bool,
    },
    /// Manage projects (tenants) directly in the store.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Export a project from a running server as JSON Lines, resuming by itself when the
    /// connection drops. The admin key (or an owner's or admin's API token) is read from the
    /// first line of standard input.
    Export {
        #[arg(long)]
        project: String,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Where to write the export; it must not exist yet.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Manage a project's members directly in the store, with an owner's rights.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Add a member; the password is read from the first line of standard input, so it never
    /// shows in the process list or the shell's history. Prints the member as JSON.
    Add {
        #[arg(long)]
        project: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// owner, admin or agent.
        #[arg(long, default_value = "agent")]
        role: String,
        #[arg(long)]
        avatar_url: Option<String>,
    },
    /// Print the project's members as JSON.
    List {
        #[arg(long)]
        project: String,
    },
    /// Change a member's role.
    SetRole {
        #[arg(long)]
        project: String,
        #[arg(long)]
        email: String,
        /// owner, admin or agent.
        #[arg(long)]
        role: String,
    },
    /// Deactivate a member, ending their sessions.
    Deactivate {
        #[arg(long)]
        project: String,
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project and print its id and admin key as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// Project id; a random one when omitted.
        #[arg(long)]
        id: Option<String>,
        /// An allowed browser origin such as https://example.com (repeatable).
        #[arg(long = "origin")]
        origins: Vec<String>,
    },
}

pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let config = &settings.scylla;
            let session = crate::store::scylla::connect(config).await?;
            let applied = crate::store::scylla::migrate(&session, config).await?;
            let out = serde_json::json!({ "keyspace": config.keyspace, "applied": applied });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Chat {
            project,
            server,
            no_tools,
        } => crate::chat_client::run(&server, &project, !no_tools).await,
        Command::Project {
            command: ProjectCommand::Create { name, id, origins },
        } => {
            let name = ProjectName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let id = id
                .map(|raw| ProjectId::parse(&raw))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--id: {e}"))?;
            let origins = parse_origins(origins.iter().map(String::as_str))
                .map_err(|e| anyhow::anyhow!("--origin: {e}"))?;
            let store = crate::store::open(&settings.store, &settings.scylla).await?;
            let created = Projects::new(store.clone())
                .create(id, name, origins)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the project: {e}"))?;
            store.flush().await?;
            let out = serde_json::json!({
                "project_id": created.project.id,
                "name": created.project.name,
                "allowed_origins": created.project.allowed_origins,
                "admin_key": created.admin_key,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Member { command } => member(command, settings).await,
        Command::Export {
            project,
            server,
            out,
        } => crate::export_client::run(&server, &project, &out).await,
    }
}

/// A member as the command line prints it: the API's view.
fn member_json(m: &fleety_actors::member::Member) -> serde_json::Value {
    serde_json::to_value(crate::http::members::MemberView::from(m)).unwrap_or_default()
}

fn parse_role(raw: &str) -> anyhow::Result<Role> {
    Role::parse(raw).ok_or_else(|| anyhow::anyhow!("--role: must be owner, admin or agent"))
}

/// Changes the member with `email` as the operator, who acts with an owner's rights.
async fn change_by_email(
    accounts: &crate::accounts::Accounts,
    project: &ProjectId,
    email: &str,
    change: MemberChange,
) -> anyhow::Result<serde_json::Value> {
    let failed = |e: MemberError| anyhow::anyhow!("{e}");
    let found = crate::members::by_email(accounts.store().as_ref(), project, email)
        .await
        .map_err(failed)?;
    let by = AuditBy::operator();
    let changed =
        crate::members::change(accounts, project, found.id, change, Role::Owner, None, &by)
            .await
            .map_err(failed)?;
    Ok(member_json(&changed))
}

async fn member(command: MemberCommand, settings: Settings) -> anyhow::Result<()> {
    let project = match &command {
        MemberCommand::Add { project, .. }
        | MemberCommand::List { project }
        | MemberCommand::SetRole { project, .. }
        | MemberCommand::Deactivate { project, .. } => project.clone(),
    };
    let project = ProjectId::parse(&project).map_err(|e| anyhow::anyhow!("--project: {e}"))?;
    let store = crate::store::open(&settings.store, &settings.scylla).await?;
    if store.get_project(&project).await?.is_none() {
        anyhow::bail!("no project {project}");
    }
    let accounts = crate::accounts::Accounts::new(
        store.clone(),
        std::sync::Arc::new(fleety_actors::clock::SystemClock),
        crate::accounts::SessionPolicy {
            idle: settings.auth.member_idle_timeout,
            max_age: settings.auth.member_session_max_age,
            invitation_ttl: settings.auth.invitation_ttl,
            reset_ttl: settings.auth.password_reset_ttl,
        },
        1,
    )?;
    let failed = |e: MemberError| anyhow::anyhow!("{e}");
    let out = match command {
        MemberCommand::Add {
            email,
            name,
            role,
            avatar_url,
            ..
        } => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            let new = NewMember {
                email,
                name,
                password,
                role: parse_role(&role)?,
                avatar_url,
            };
            let added = crate::members::add(
                store.as_ref(),
                &project,
                new,
                Role::Owner,
                &AuditBy::operator(),
                accounts.now(),
            )
            .await
            .map_err(failed)?;
            member_json(&added)
        }
        MemberCommand::List { .. } => {
            let mut members = store.list_members(&project).await?;
            members.sort_by(|a, b| a.name.cmp(&b.name).then(a.email.cmp(&b.email)));
            serde_json::json!({ "members": members.iter().map(member_json).collect::<Vec<_>>() })
        }
        MemberCommand::SetRole { email, role, .. } => {
            let change = MemberChange {
                role: Some(parse_role(&role)?),
                ..MemberChange::default()
            };
            change_by_email(&accounts, &project, &email, change).await?
        }
        MemberCommand::Deactivate { email, .. } => {
            let change = MemberChange {
                state: Some(MemberState::Deactivated),
                ..MemberChange::default()
            };
            change_by_email(&accounts, &project, &email, change).await?
        }
    };
    store.flush().await?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let demo_wanted = settings.demo.enabled;
    let app = Application::build(settings).await?;
    let url = format!("http://{}", app.local_addr());
    tracing::info!(%url, "listening");
    let demo = match demo_wanted {
        true => Some(app.ensure_demo().await?),
        false => None,
    };
    // The banner is for the person who just started the server; logs go to stderr. Its first
    // line is what scripts and the browser tests read the port from.
    print!("{}", banner(&url, demo.as_ref(), &invocation()));
    app.run_until(shutdown_signal()).await
}

/// How the person who started the server runs `fleety` again: `cargo run --` under cargo
/// (which sets `CARGO_MANIFEST_DIR` for the program it runs), else the binary as it was named.
fn invocation() -> String {
    if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        return "cargo run --release --".to_owned();
    }
    match std::env::args().next() {
        Some(program) if program.contains('/') && !program.contains(char::is_whitespace) => program,
        _ => "fleety".to_owned(),
    }
}

/// What the server prints when it is ready: where to go first, and, with the demo, how to use
/// the demo project.
fn banner(url: &str, demo: Option<&crate::app::Demo>, fleety: &str) -> String {
    let mut out = vec![format!("Fleety is listening on {url}")];
    match demo {
        None => {
            out.push(format!("  inbox:         {url}/inbox"));
            out.push(format!("  API reference: {url}/v1/openapi.json"));
        }
        Some(demo) => {
            let id = &demo.project_id;
            // The id and the key come first, in the lines scripts read them from.
            out.push(format!("  demo project id: {id}"));
            if !demo.admin_key.is_empty() {
                out.push(format!("  demo admin key:  {}", demo.admin_key));
            }
            out.push(format!("  demo site: {url}/  (chat with the widget there)"));
            out.push(format!(
                "  inbox:     {url}/inbox  (sign in with the project id and admin key above)"
            ));
            out.push(format!(
                "  chat in the terminal: {fleety} chat --project {id}"
            ));
            out.push(format!(
                "  try: curl -s -X POST {url}/v1/tickets/{id} -H 'Content-Type: application/json' -d '{{\"title\":\"Hello\"}}'"
            ));
        }
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_the_demo_site_and_the_inbox_and_how_this_server_was_started() {
        let demo = crate::app::Demo {
            project_id: "demo".into(),
            admin_key: "fk_secret".into(),
        };
        let text = banner("http://127.0.0.1:8080", Some(&demo), "./fleety");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Fleety is listening on http://127.0.0.1:8080");
        assert_eq!(lines[1], "  demo project id: demo");
        assert_eq!(lines[2], "  demo admin key:  fk_secret");
        assert!(text.contains("http://127.0.0.1:8080/inbox"));
        assert!(text.contains("demo site: http://127.0.0.1:8080/ "));
        assert!(text.contains("fk_secret"));
        assert!(text.contains("./fleety chat --project demo"));
        assert!(!text.contains("cargo"), "{text}");

        let off = banner("http://127.0.0.1:8080", None, "fleety");
        assert!(off.contains("http://127.0.0.1:8080/inbox"));
        assert!(off.contains("/v1/openapi.json"));
        assert!(!off.contains("demo") && !off.contains("cargo"), "{off}");
    }
}
