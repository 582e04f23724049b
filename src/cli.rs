//! The command line: `fleety` (serve), `fleety serve`, `fleety migrate`, `fleety project create`,
//! `fleety chat`.

use clap::{Parser, Subcommand};
use fleety_actors::domain::{ProjectId, ProjectName};

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
    }
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
