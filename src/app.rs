//! `Application`: builds everything from `Settings`, binds the listener first (so tests can
//! use port 0 and ask for the port), and runs until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleety_actors::chat::{ChatConfig, ChatQuotas};
use fleety_actors::clock::{Clock, SystemClock};
use fleety_actors::domain::ProjectName;
use fleety_actors::kb::KbConfig;
use fleety_actors::root::{RootArgs, System};
use fleety_actors::store::Store;
use fleety_actors::ticket::TicketConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Tokens};
use crate::config::Settings;
use crate::http::ratelimit::RateLimiter;
use crate::http::Ctx;
use crate::projects::{parse_origins, Projects};

pub struct Application {
    listener: TcpListener,
    /// `/metrics` on its own address, when `FLEETY_METRICS_LISTEN` is set.
    metrics_listener: Option<TcpListener>,
    ctx: Arc<Ctx>,
    /// Flushed once everything has stopped.
    store: Arc<dyn Store>,
    webhooks: Arc<crate::webhooks::Dispatcher>,
    /// Sends the email outbox; `None` while email is off.
    mailer: Option<Arc<crate::mailer::Mailer>>,
    /// Set when several nodes serve the same tickets.
    cluster: Option<crate::cluster::NatsCluster>,
}

/// The demo project created on first start, so the server is usable at once.
pub struct Demo {
    pub project_id: String,
    pub admin_key: String,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let store = crate::store::open(&settings.store, &settings.scylla).await?;
        Self::build_with(settings, store, Arc::new(SystemClock)).await
    }

    /// Builds on a given store and clock (tests use these to control time and storage).
    pub async fn build_with(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        crate::metrics::handle();
        let listener =
            listen(settings.server.listen, settings.server.listen_backlog).map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {} (FLEETY_LISTEN): {e}",
                    settings.server.listen
                )
            })?;
        let metrics_listener = match settings.server.metrics_listen {
            None => None,
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot listen on {addr} (FLEETY_METRICS_LISTEN): {e}")
            })?),
        };
        let secret = auth::load_or_create_secret(
            settings.auth.jwt_secret.expose(),
            &settings.store.data_dir,
        )?;
        let ticket_config = TicketConfig {
            idle_timeout: settings.tickets.idle,
            tick_interval: settings
                .tickets
                .idle
                .clamp(Duration::from_secs(1), Duration::from_secs(15)),
            subscriber_queue: settings.ws.subscriber_queue,
            ..TicketConfig::default()
        };
        let chat_config = ChatConfig {
            quotas: ChatQuotas {
                session_requests_per_minute: settings.chat.session_requests_per_minute,
                session_token_budget: settings.chat.session_token_budget,
                session_tickets: settings.chat.session_tickets,
                project_requests_per_minute: settings.chat.project_requests_per_minute,
                project_tokens_per_hour: settings.chat.project_tokens_per_hour,
                project_tickets_per_hour: settings.chat.project_tickets_per_hour,
            },
            max_tokens: settings.llm.max_tokens,
            max_sessions: settings.chat.max_sessions,
            ..ChatConfig::default()
        };
        let llm = crate::llm::from_settings(&settings.llm)?;
        tracing::info!(provider = llm.name(), "language model");
        let hooks = fleety_actors::webhook::Hooks::default();
        let webhooks = crate::webhooks::Dispatcher::new(
            store.clone(),
            hooks.clone(),
            clock.clone(),
            &settings.webhooks,
        )?;
        webhooks.load_endpoints().await?;
        let cluster = match settings.cluster.enabled() {
            false => None,
            true => Some(
                crate::cluster::NatsCluster::connect(
                    &settings.cluster,
                    store.clone(),
                    ticket_config.call_timeout,
                )
                .await?,
            ),
        };
        let system = System::start(RootArgs {
            store: store.clone(),
            clock: clock.clone(),
            tickets: ticket_config,
            llm,
            kb: KbConfig::default(),
            chat: chat_config,
            hooks,
            cluster: cluster.as_ref().map(|c| c.port()),
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the actor system: {e}"))?;
        // An erasure a stop cut short is finished before anything is served, so no request
        // ever sees part of an erased ticket.
        let finished = system.tickets.finish_erasures().await.map_err(|e| {
            anyhow::anyhow!("cannot finish the erasures begun before the stop: {e}")
        })?;
        if finished > 0 {
            tracing::info!(
                erasures = finished,
                "finished erasures begun before the stop"
            );
        }
        let contacts: Arc<dyn fleety_actors::store::ContactStore> = store.clone();
        let finished = fleety_actors::contact_erasure::finish(&system.tickets, contacts.as_ref())
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot finish the contact erasures begun before the stop: {e}")
            })?;
        if finished > 0 {
            tracing::info!(
                erasures = finished,
                "finished contact erasures begun before the stop"
            );
        }
        let projects = Projects::new(store.clone());
        projects
            .load_all()
            .await
            .map_err(|e| anyhow::anyhow!("cannot read projects from the store: {e}"))?;
        let outbox = fleety_actors::email::Outbox::default();
        let mailer = crate::mailer::Mailer::new(
            &settings.email,
            store.clone(),
            clock.clone(),
            outbox.clone(),
        )?;
        if let Some(url) = &settings.email.smtp_url {
            tracing::info!(smtp = %url.redacted(), "email is on");
        }
        let mut accounts = crate::accounts::Accounts::new(
            store.clone(),
            clock.clone(),
            crate::accounts::SessionPolicy {
                idle: settings.auth.member_idle_timeout,
                max_age: settings.auth.member_session_max_age,
                invitation_ttl: settings.auth.invitation_ttl,
                reset_ttl: settings.auth.password_reset_ttl,
            },
            settings.limits.clients,
        )?;
        accounts.mail =
            crate::mailer::Composer::new(&settings.email, store.clone(), outbox.clone());
        let previous_secrets: Vec<&[u8]> = settings
            .auth
            .jwt_previous_secrets
            .iter()
            .map(|s| s.expose().as_bytes())
            .collect();
        let replies = crate::reply_address::ReplyAddresses::new(
            settings.email.reply_domain.as_ref().map(|d| d.as_str()),
            &secret,
            &previous_secrets,
        );
        let tokens = Tokens::new(
            &secret,
            &previous_secrets,
            settings.auth.session_ttl.as_secs(),
            clock.clone(),
        );
        let visitor_mail = crate::visitor_mail::VisitorMailer::new(
            &settings.email,
            store.clone(),
            clock.clone(),
            Tokens::new(
                &secret,
                &previous_secrets,
                settings.auth.session_ttl.as_secs(),
                clock.clone(),
            ),
            outbox.clone(),
            replies.clone(),
        );
        let agent_mail = crate::agent_mail::AgentMailer::new(
            &settings.email,
            store.clone(),
            clock.clone(),
            outbox,
            replies.clone(),
        );
        if let (Some(mailer), Some(v)) = (&mailer, &visitor_mail) {
            mailer.compose_for_visitors(v.clone());
        }
        if let (Some(mailer), Some(a)) = (&mailer, &agent_mail) {
            mailer.compose_for_agents(a.clone());
        }
        if let Some(a) = &agent_mail {
            system.chats.on_ticket_opened(a.clone());
        }
        let ctx = Ctx {
            accounts,
            tokens,
            replies,
            public_limit: RateLimiter::new(
                settings.limits.public_per_minute,
                settings.limits.clients,
                clock.clone(),
            ),
            session_limit: RateLimiter::new(
                settings.limits.sessions_per_minute,
                settings.limits.clients,
                clock.clone(),
            ),
            visitor_limit: RateLimiter::new(
                settings.limits.visitor_per_minute,
                settings.limits.clients,
                clock.clone(),
            ),
            system,
            projects,
            clock,
            webhook_store: store.clone(),
            canned_store: store.clone(),
            contact_store: store.clone(),
            visitor_mail,
            agent_mail,
            audit_store: store.clone(),
            store: store.clone(),
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            settings,
        };
        Ok(Application {
            listener,
            metrics_listener,
            ctx: Arc::new(ctx),
            store,
            webhooks,
            mailer,
            cluster,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.ctx.settings.server.listen)
    }

    /// Where `/metrics` is served when it has an address of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Shared state, for tests and the CLI.
    pub fn ctx(&self) -> Arc<Ctx> {
        self.ctx.clone()
    }

    /// Creates the demo project unless it exists; its admin key is kept in the data directory
    /// (readable by the owner only) so it can be printed on every start.
    pub async fn ensure_demo(&self) -> anyhow::Result<Demo> {
        let id = self.ctx.settings.demo.project_id.clone();
        let key_file = self.ctx.settings.store.data_dir.join("demo-admin-key");
        if self.ctx.projects.get(&id).await?.is_some() {
            let admin_key = std::fs::read_to_string(&key_file)
                .map(|k| k.trim().to_owned())
                .unwrap_or_default();
            return Ok(Demo {
                project_id: id.to_string(),
                admin_key,
            });
        }
        let origins = parse_origins([
            "http://localhost:8080",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:3000",
        ])
        .map_err(|e| anyhow::anyhow!(e))?;
        let name = ProjectName::parse("Demo").map_err(|e| anyhow::anyhow!(e))?;
        let created = self.ctx.projects.create(Some(id), name, origins).await?;
        auth::write_private(&key_file, &created.admin_key)?;
        crate::demo::seed_knowledge_base(&self.ctx, &created.project.id).await?;
        Ok(Demo {
            project_id: created.project.id.to_string(),
            admin_key: created.admin_key,
        })
    }

    /// Serves until `stop` completes, then drains and flushes the store.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            stop.await;
            shutdown.cancel();
        });
        if let Some(listener) = self.metrics_listener {
            tokio::spawn(crate::server::serve_metrics(
                listener,
                ctx.shutdown.clone(),
                ctx.system.chats.clone(),
            ));
        }
        let webhooks = tokio::spawn(self.webhooks.run(ctx.shutdown.clone()));
        if let Some(mailer) = self.mailer.clone() {
            tokio::spawn(mailer.run(ctx.shutdown.clone()));
        }
        if self.cluster.is_none() {
            let retention = crate::retention::Retention::new(
                self.store.clone(),
                ctx.system.tickets.clone(),
                ctx.clock.clone(),
                ctx.settings.tickets.retention_every,
            );
            tokio::spawn(retention.run(ctx.shutdown.clone()));
        }
        tokio::spawn(prune_audit(
            self.store.clone(),
            ctx.clock.clone(),
            ctx.settings.store.audit_retention_days,
            ctx.shutdown.clone(),
        ));
        // The cluster's work stops last: the actors' last batches still go to the tickets'
        // logs, and their leases are given back before the node stops answering for them.
        let cluster_stop = CancellationToken::new();
        if let Some(cluster) = &self.cluster {
            let tickets = ctx.system.tickets.clone();
            cluster
                .serve(tickets, cluster_stop.clone())
                .await
                .map_err(|e| anyhow::anyhow!("cannot subscribe to the cluster's subjects: {e}"))?;
        }
        crate::server::serve(self.listener, ctx.clone()).await;
        let _ = webhooks.await;
        ctx.system.stop().await;
        if let Some(cluster) = &self.cluster {
            cluster.release_all().await;
        }
        cluster_stop.cancel();
        self.store
            .flush()
            .await
            .map_err(|e| anyhow::anyhow!("flushing the store at shutdown failed: {e}"))?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// A listener with an explicit accept backlog. `TcpListener::bind` asks for 128 (what the
/// standard library passes to `listen`), and a storm of reconnecting sockets overflowed it:
/// the kernel dropped their handshakes and the clients retried a second later.
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As the standard library does for listeners: a restart need not wait out TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Deletes audit records past their retention every hour, a batch at a time (a backend whose
/// rows expire on their own deletes none).
async fn prune_audit(
    store: Arc<dyn fleety_actors::store::Store>,
    clock: Arc<dyn fleety_actors::clock::Clock>,
    retention_days: u32,
    shutdown: CancellationToken,
) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
    const BATCH: usize = 1000;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let before = clock.now() - chrono::Duration::days(i64::from(retention_days));
        loop {
            match store.prune_audit(before, BATCH).await {
                Ok(n) if n == BATCH => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the audit trail failed");
                    break;
                }
            }
        }
    }
}
