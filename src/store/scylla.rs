//! The ScyllaDB (CQL) store, for deployments that outgrow one machine. Any CQL cluster that
//! speaks protocol v4 works; the tests run it against Apache Cassandra 5.0.
//!
//! Statements are prepared once at connect time, every read is paged, and lightweight
//! transactions are used only on a ticket's own row and to claim identifiers at creation (a
//! ticket's slug, a project's id), never on the message path: a ticket row changes only when
//! its status or assignee does, and the transaction keeps an older version from overwriting a
//! newer one. Message inserts are idempotent (the id is the key), so the driver may retry them.
//! Read cursors are written `USING TIMESTAMP` of the message read, and listing entries
//! `USING TIMESTAMP` of the ticket's version, so the newest wins without a read or a
//! transaction. A node that is down or slow becomes [`StoreError::Unavailable`] within the
//! request timeout, which the HTTP front turns into 503.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Utc};
use fleety_actors::domain::{
    AgentName, Article, ArticleBody, ArticleTitle, ChatRole, ChatTurn, ChatUsage, Description,
    IdempotencyKey, Message, MessageBody, Note, Participant, Project, ProjectId, ReadCursor, Slug,
    Tag, Tags, Ticket, TicketSource, TicketStatus, Title,
};
use fleety_actors::store::{
    timed, ChatStore, Done, KbStore, MessageRange, ProjectStore, Store, StoreError, StoreResult,
    TicketCursor, TicketPage, TicketQuery, TicketStore, TicketWrite, WebhookStore,
};
use fleety_actors::webhook::{Delivery, Endpoint};
use fleety_actors::MessageId;
use futures_util::TryStreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, NextRowError, RequestAttemptError};
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::{CqlTimeuuid, CqlValue, Row};

use crate::config::ScyllaSettings;

mod webhooks;

/// The migrations compiled into the binary, applied in order by [`migrate`].
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "0001_init", include_str!("../../cql/0001_init.cql")),
    (
        2,
        "0002_message_idempotency_key",
        include_str!("../../cql/0002_message_idempotency_key.cql"),
    ),
    (
        3,
        "0003_chat_and_knowledge_base",
        include_str!("../../cql/0003_chat_and_knowledge_base.cql"),
    ),
    (
        4,
        "0004_notes_and_assignment",
        include_str!("../../cql/0004_notes_and_assignment.cql"),
    ),
    (
        5,
        "0005_webhooks",
        include_str!("../../cql/0005_webhooks.cql"),
    ),
    (
        6,
        "0006_webhook_endpoint_cap",
        include_str!("../../cql/0006_webhook_endpoint_cap.cql"),
    ),
    (
        7,
        "0007_ticket_tags",
        include_str!("../../cql/0007_ticket_tags.cql"),
    ),
];

/// How long one statement may take before the store reports the cluster unavailable.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one listing of tickets may take in all.
const LIST_DEADLINE: Duration = Duration::from_secs(10);
/// Rows per page when reading a knowledge base (articles are up to ~200 KB each).
const ARTICLE_PAGE_SIZE: i32 = 25;
/// Rows per page of a paged read.
const PAGE_SIZE: i32 = 500;

/// Connection settings, from `FLEETY_SCYLLA_*`.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub consistency: Consistency,
    pub username: Option<String>,
    pub password: Option<String>,
    pub replication: String,
}

impl ScyllaConfig {
    pub fn from_settings(s: &ScyllaSettings) -> Result<Self, String> {
        let nodes: Vec<String> = s
            .nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        if nodes.is_empty() {
            return Err("configuration error in scylla_nodes (FLEETY_SCYLLA_NODES): list at least one host:port".into());
        }
        Ok(Self {
            nodes,
            keyspace: parse_keyspace(&s.keyspace)?,
            consistency: parse_consistency(&s.consistency)?,
            username: (!s.username.is_empty()).then(|| s.username.clone()),
            password: (!s.password.is_empty()).then(|| s.password.expose().to_owned()),
            replication: replication_map(&s.replication)?,
        })
    }
}

/// Keyspace names are spliced into statements, so only plain identifiers are accepted.
pub fn parse_keyspace(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 48
        && raw.starts_with(|c: char| c.is_ascii_alphabetic())
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(format!(
            "configuration error in scylla_keyspace (FLEETY_SCYLLA_KEYSPACE): {raw:?} must be 1-48 letters, digits or '_', starting with a letter"
        ))
    }
}

pub fn parse_consistency(raw: &str) -> Result<Consistency, String> {
    Ok(match raw.to_ascii_uppercase().as_str() {
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        _ => {
            return Err(format!(
                "configuration error in scylla_consistency (FLEETY_SCYLLA_CONSISTENCY): {raw:?} is not one of ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE"
            ))
        }
    })
}

/// `3` → every data centre gets 3 replicas; `dc1:3,dc2:2` → per data centre. Always
/// NetworkTopologyStrategy, which both ScyllaDB and Cassandra accept.
pub fn replication_map(raw: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "configuration error in scylla_replication (FLEETY_SCYLLA_REPLICATION): {raw:?} must be a replica count like 3, or data centres like dc1:3,dc2:3"
        )
    };
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<u8>() {
        if n == 0 {
            return Err(bad());
        }
        return Ok(format!(
            "{{'class': 'NetworkTopologyStrategy', 'replication_factor': {n}}}"
        ));
    }
    let mut parts = Vec::new();
    for entry in raw.split(',') {
        let (dc, n) = entry.trim().split_once(':').ok_or_else(bad)?;
        let dc = dc.trim();
        let n: u8 = n.trim().parse().map_err(|_| bad())?;
        let dc_ok = !dc.is_empty()
            && dc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !dc_ok || n == 0 {
            return Err(bad());
        }
        parts.push(format!("'{dc}': {n}"));
    }
    Ok(format!(
        "{{'class': 'NetworkTopologyStrategy', {}}}",
        parts.join(", ")
    ))
}

/// Connects to the cluster.
pub async fn connect(config: &ScyllaConfig) -> anyhow::Result<Session> {
    // Client-side, monotonic write timestamps: one server's successive plain writes to a row
    // apply in the order it made them, whatever the coordinators' clocks say. (Ticket rows
    // change by transaction, and read cursors and listing entries carry their own timestamps.)
    let mut builder = SessionBuilder::new()
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_secs(5));
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.user(user, password);
    }
    builder.build().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the CQL cluster at {}: {e}",
            config.nodes.join(",")
        )
    })
}

/// Creates the keyspace if it is missing and applies every migration not yet recorded in
/// `schema_migrations`. Returns the names of the migrations it applied.
pub async fn migrate(session: &Session, config: &ScyllaConfig) -> anyhow::Result<Vec<String>> {
    let ks = &config.keyspace;
    let ddl = |cql: String| async move {
        session
            .query_unpaged(cql.clone(), ())
            .await
            .map_err(|e| anyhow::anyhow!("migration statement failed: {e}\n{cql}"))?;
        session
            .await_schema_agreement()
            .await
            .map_err(|e| anyhow::anyhow!("the cluster did not agree on the schema: {e}"))?;
        Ok::<_, anyhow::Error>(())
    };
    // ScyllaDB 6 puts new keyspaces on tablets, where lightweight transactions (our slug
    // claims) are not supported before 2025.4; Cassandra does not know the option at all.
    let tablets = if is_scylladb(session).await {
        " AND tablets = {'enabled': false}"
    } else {
        ""
    };
    ddl(format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}{tablets}",
        config.replication
    ))
    .await?;
    ddl(format!(
        "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (version int PRIMARY KEY, name text, applied_at timestamp)"
    ))
    .await?;
    let applied: Vec<i32> = session
        .query_iter(format!("SELECT version FROM {ks}.schema_migrations"), ())
        .await?
        .rows_stream::<(i32,)>()?
        .map_ok(|(v,)| v)
        .try_collect()
        .await?;
    let mut done = Vec::new();
    for (version, name, body) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        for statement in statements(body) {
            let statement = statement.replace("{keyspace}", ks);
            // CQL has no portable `ADD IF NOT EXISTS`: a column added by a run that died
            // before recording the migration is simply there already.
            if let Some((table, column)) = added_column(&statement, ks) {
                if column_exists(session, ks, &table, &column).await? {
                    continue;
                }
            }
            ddl(statement).await?;
        }
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
                (*version, *name, Utc::now()),
            )
            .await?;
        tracing::info!(migration = name, keyspace = %ks, "applied CQL migration");
        done.push((*name).to_owned());
    }
    Ok(done)
}

/// Whether the cluster is ScyllaDB (it has `system.scylla_local`; Cassandra does not).
async fn is_scylladb(session: &Session) -> bool {
    session
        .query_unpaged("SELECT key FROM system.scylla_local LIMIT 1", ())
        .await
        .is_ok()
}

/// The table and column of an `ALTER TABLE <ks>.<table> ADD <column> <type>` statement.
fn added_column(statement: &str, ks: &str) -> Option<(String, String)> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    match words.as_slice() {
        [alter, table, name, add, column, ..]
            if alter.eq_ignore_ascii_case("ALTER")
                && table.eq_ignore_ascii_case("TABLE")
                && add.eq_ignore_ascii_case("ADD") =>
        {
            let table = name.strip_prefix(&format!("{ks}.")).unwrap_or(name);
            Some((table.to_ascii_lowercase(), column.to_ascii_lowercase()))
        }
        _ => None,
    }
}

async fn column_exists(
    session: &Session,
    ks: &str,
    table: &str,
    column: &str,
) -> anyhow::Result<bool> {
    let result = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (ks, table, column),
        )
        .await?;
    Ok(result.into_rows_result()?.rows_num() > 0)
}

/// Splits a migration file into statements: `;`-terminated, `--` comments dropped.
fn statements(body: &str) -> Vec<String> {
    let without_comments: String = body
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Prepares one statement with the store's consistency, timeout and page size.
async fn prepare(
    session: &Session,
    consistency: Consistency,
    cql: String,
    idempotent: bool,
) -> anyhow::Result<PreparedStatement> {
    let mut p = session.prepare(cql.clone()).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot prepare a statement (is the schema migrated? run `fleety migrate`): {e}\n{cql}"
        )
    })?;
    p.set_consistency(consistency);
    p.set_is_idempotent(idempotent);
    p.set_request_timeout(Some(REQUEST_TIMEOUT));
    p.set_page_size(PAGE_SIZE);
    Ok(p)
}

/// Every statement the store runs, prepared once.
struct Statements {
    insert_project: PreparedStatement,
    upsert_project: PreparedStatement,
    select_project: PreparedStatement,
    select_projects: PreparedStatement,
    insert_ticket: PreparedStatement,
    update_ticket: PreparedStatement,
    select_ticket: PreparedStatement,
    upsert_by_time: PreparedStatement,
    insert_bucket: PreparedStatement,
    select_buckets: PreparedStatement,
    select_by_time: PreparedStatement,
    select_by_time_after: PreparedStatement,
    insert_message: PreparedStatement,
    delete_message: PreparedStatement,
    insert_note: PreparedStatement,
    select_notes: PreparedStatement,
    select_messages_asc: PreparedStatement,
    select_messages_desc: PreparedStatement,
    upsert_cursor: PreparedStatement,
    select_cursors: PreparedStatement,
    insert_turn: PreparedStatement,
    select_usage: PreparedStatement,
    select_turns: PreparedStatement,
    upsert_article: PreparedStatement,
    select_article_id: PreparedStatement,
    delete_article: PreparedStatement,
    select_articles: PreparedStatement,
}

pub struct ScyllaStore {
    session: Arc<Session>,
    st: Statements,
    wh: webhooks::WebhookStatements,
}

impl ScyllaStore {
    /// Connects, optionally migrates, and prepares every statement.
    pub async fn open(config: &ScyllaConfig, auto_migrate: bool) -> anyhow::Result<Self> {
        if matches!(
            config.consistency,
            Consistency::One
                | Consistency::Two
                | Consistency::Three
                | Consistency::LocalOne
                | Consistency::Any
        ) {
            tracing::warn!(
                consistency = ?config.consistency,
                "FLEETY_SCYLLA_CONSISTENCY below a quorum: a read may miss a write that was acknowledged"
            );
        }
        let session = connect(config).await?;
        if auto_migrate {
            migrate(&session, config).await?;
        }
        let ks = &config.keyspace;
        let prepare =
            |cql: String, idempotent: bool| prepare(&session, config.consistency, cql, idempotent);
        const PROJECT_COLS: &str = "project_id, name, allowed_origins, admin_key_hash, created_at";
        const TICKET_COLS: &str =
            "project_id, slug, id, title, description, status, source, session_id, created_at, updated_at, assignee, tags";
        const TURN_COLS: &str =
            "project_id, session_id, turn_id, role, content, at, ticket_slug, citations, tokens";
        const ARTICLE_COLS: &str =
            "project_id, article_id, title, body, tags, created_at, updated_at";
        let st = Statements {
            insert_project: prepare(format!("INSERT INTO {ks}.projects ({PROJECT_COLS}) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            upsert_project: prepare(format!("INSERT INTO {ks}.projects ({PROJECT_COLS}) VALUES (?, ?, ?, ?, ?)"), true).await?,
            select_project: prepare(format!("SELECT {PROJECT_COLS} FROM {ks}.projects WHERE project_id = ?"), true).await?,
            select_projects: prepare(format!("SELECT {PROJECT_COLS} FROM {ks}.projects"), true).await?,
            insert_ticket: prepare(format!("INSERT INTO {ks}.tickets ({TICKET_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            // Conditional on the stored version: equal writes again, older is refused. Retrying
            // it is harmless, hence idempotent.
            update_ticket: prepare(format!("UPDATE {ks}.tickets SET title = ?, description = ?, status = ?, source = ?, session_id = ?, updated_at = ?, assignee = ?, tags = ? WHERE project_id = ? AND slug = ? IF updated_at <= ?"), true).await?,
            select_ticket: prepare(format!("SELECT {TICKET_COLS} FROM {ks}.tickets WHERE project_id = ? AND slug = ?"), true).await?,
            upsert_by_time: prepare(format!("INSERT INTO {ks}.tickets_by_time (project_id, bucket, created_at, slug, status) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            insert_bucket: prepare(format!("INSERT INTO {ks}.ticket_buckets (project_id, bucket) VALUES (?, ?)"), true).await?,
            select_buckets: prepare(format!("SELECT bucket FROM {ks}.ticket_buckets WHERE project_id = ? AND bucket <= ?"), true).await?,
            select_by_time: prepare(format!("SELECT created_at, slug, status FROM {ks}.tickets_by_time WHERE project_id = ? AND bucket = ?"), true).await?,
            select_by_time_after: prepare(format!("SELECT created_at, slug, status FROM {ks}.tickets_by_time WHERE project_id = ? AND bucket = ? AND (created_at, slug) < (?, ?)"), true).await?,
            insert_note: prepare(format!("INSERT INTO {ks}.ticket_notes (project_id, slug, note_id, author, content, created_at) VALUES (?, ?, ?, ?, ?, ?)"), true).await?,
            select_notes: prepare(format!("SELECT note_id, author, content, created_at FROM {ks}.ticket_notes WHERE project_id = ? AND slug = ?"), true).await?,
            insert_message: prepare(format!("INSERT INTO {ks}.messages (project_id, slug, message_id, author, content, idempotency_key) VALUES (?, ?, ?, ?, ?, ?)"), true).await?,
            delete_message: prepare(format!("DELETE FROM {ks}.messages WHERE project_id = ? AND slug = ? AND message_id = ?"), true).await?,
            select_messages_asc: prepare(format!("SELECT message_id, author, content, idempotency_key FROM {ks}.messages WHERE project_id = ? AND slug = ? AND message_id > ? AND message_id < ? LIMIT ?"), true).await?,
            select_messages_desc: prepare(format!("SELECT message_id, author, content, idempotency_key FROM {ks}.messages WHERE project_id = ? AND slug = ? AND message_id > ? AND message_id < ? ORDER BY message_id DESC LIMIT ?"), true).await?,
            upsert_cursor: prepare(format!("INSERT INTO {ks}.read_cursors (project_id, slug, reader, up_to) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            select_cursors: prepare(format!("SELECT reader, up_to FROM {ks}.read_cursors WHERE project_id = ? AND slug = ?"), true).await?,
            insert_turn: prepare(format!("INSERT INTO {ks}.chat_turns ({TURN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"), true).await?,
            select_usage: prepare(format!("SELECT tokens, ticket_slug FROM {ks}.chat_turns WHERE project_id = ? AND session_id = ?"), true).await?,
            select_turns: prepare(format!("SELECT {TURN_COLS} FROM {ks}.chat_turns WHERE project_id = ? AND session_id = ? ORDER BY turn_id DESC LIMIT ?"), true).await?,
            upsert_article: prepare(format!("INSERT INTO {ks}.kb_articles ({ARTICLE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)"), true).await?,
            select_article_id: prepare(format!("SELECT article_id FROM {ks}.kb_articles WHERE project_id = ? AND article_id = ?"), true).await?,
            delete_article: prepare(format!("DELETE FROM {ks}.kb_articles WHERE project_id = ? AND article_id = ?"), true).await?,
            select_articles: {
                // Articles are large rows: small pages keep each one well under the request timeout.
                let mut p = prepare(format!("SELECT {ARTICLE_COLS} FROM {ks}.kb_articles WHERE project_id = ?"), true).await?;
                p.set_page_size(ARTICLE_PAGE_SIZE);
                p
            },
        };
        let wh = webhooks::WebhookStatements::prepare(&session, config.consistency, ks).await?;
        Ok(Self {
            session: Arc::new(session),
            st,
            wh,
        })
    }

    /// Runs a lightweight transaction (`INSERT ... IF NOT EXISTS`, `UPDATE ... IF`) and says
    /// whether it applied.
    async fn claim(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> StoreResult<bool> {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(execution)?;
        applied(result)
    }

    /// Runs a single-row read and decodes the row, if there is one.
    /// Every row a statement selects, read page by page.
    async fn all_rows<R>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> StoreResult<Vec<R>>
    where
        R: 'static
            + for<'frame, 'metadata> scylla::deserialize::row::DeserializeRow<'frame, 'metadata>,
    {
        self.session
            .execute_iter(st.clone(), values)
            .await
            .map_err(paging)?
            .rows_stream::<R>()
            .map_err(internal)?
            .try_collect()
            .await
            .map_err(paging)
    }

    async fn one_row<R>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> StoreResult<Option<R>>
    where
        R: for<'frame, 'metadata> scylla::deserialize::row::DeserializeRow<'frame, 'metadata>,
    {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(execution)?;
        let rows = result.into_rows_result().map_err(internal)?;
        rows.maybe_first_row::<R>().map_err(internal)
    }

    async fn list_articles_within(&self, project: &ProjectId) -> StoreResult<Vec<Article>> {
        let rows: Vec<ArticleRow> = self
            .all_rows::<ArticleRow>(&self.st.select_articles, (project.as_str(),))
            .await?;
        rows.into_iter().map(article_from_row).collect()
    }

    async fn list_tickets_within(
        &self,
        project: &ProjectId,
        query: &TicketQuery,
    ) -> StoreResult<TicketPage> {
        let limit = query.limit.clamp(1, 100);
        let start_bucket = query
            .after
            .as_ref()
            .map(|c| bucket(c.created_at))
            .unwrap_or_else(|| "9999-12".into());
        let buckets: Vec<(String,)> = self
            .all_rows::<(String,)>(
                &self.st.select_buckets,
                (project.as_str(), start_bucket.as_str()),
            )
            .await?;
        let mut out: Vec<Ticket> = Vec::with_capacity(limit + 1);
        let (scan, mut examined, mut stopped_at) = (query.scan_limit(), 0usize, None);
        'buckets: for (b,) in buckets {
            let pager = match &query.after {
                Some(c) if bucket(c.created_at) == b => {
                    self.session
                        .execute_iter(
                            self.st.select_by_time_after.clone(),
                            (project.as_str(), b.as_str(), c.created_at, c.slug.as_str()),
                        )
                        .await
                }
                _ => {
                    self.session
                        .execute_iter(
                            self.st.select_by_time.clone(),
                            (project.as_str(), b.as_str()),
                        )
                        .await
                }
            };
            let mut rows = pager
                .map_err(paging)?
                .rows_stream::<(DateTime<Utc>, String, String)>()
                .map_err(internal)?;
            while let Some((created_at, slug, status)) = rows.try_next().await.map_err(paging)? {
                if examined == scan {
                    break 'buckets;
                }
                examined += 1;
                let Ok(slug) = Slug::parse(&slug) else {
                    continue;
                };
                if examined == scan {
                    stopped_at = Some(TicketCursor {
                        created_at,
                        slug: slug.clone(),
                    });
                }
                if query.status.is_some_and(|s| s.as_str() != status) {
                    continue;
                }
                // The ticket row is the truth: skip index rows of failed claims and of
                // statuses that changed since the index row was written.
                let Some(t) = self.get_ticket(project, &slug).await? else {
                    continue;
                };
                if t.created_at != created_at || !query.matches(&t) {
                    continue;
                }
                out.push(t);
                if out.len() > limit {
                    break 'buckets;
                }
            }
        }
        Ok(TicketPage::scanned(out, limit, stopped_at))
    }

    /// The listing's rows for a ticket: its entry in the month and the month itself. Both are
    /// idempotent, so they can be written again whenever the ticket is. The entry's write
    /// timestamp is the ticket's version (`updated_at`), so of two versions' entries the newer
    /// one's status stays, whichever arrives last.
    async fn index_rows(&self, t: &Ticket) -> StoreResult<()> {
        let b = bucket(t.created_at);
        let (by_time, bucket_row) = tokio::join!(
            self.session.execute_unpaged(
                &self.st.upsert_by_time,
                (
                    t.project_id.as_str(),
                    b.as_str(),
                    t.created_at,
                    t.slug.as_str(),
                    t.status.as_str(),
                    t.updated_at.timestamp_micros(),
                ),
            ),
            self.session
                .execute_unpaged(&self.st.insert_bucket, (t.project_id.as_str(), b.as_str())),
        );
        by_time.map_err(execution)?;
        bucket_row.map_err(execution)?;
        Ok(())
    }

    async fn insert_message(
        &self,
        project: &ProjectId,
        slug: &Slug,
        m: &Message,
    ) -> StoreResult<()> {
        self.session
            .execute_unpaged(
                &self.st.insert_message,
                (
                    project.as_str(),
                    slug.as_str(),
                    CqlTimeuuid::from(m.id.as_uuid()),
                    m.author.as_str(),
                    m.content.as_str(),
                    m.idempotency_key.as_ref().map(IdempotencyKey::as_str),
                ),
            )
            .await
            .map_err(execution)?;
        Ok(())
    }

    async fn insert_note(&self, project: &ProjectId, slug: &Slug, n: &Note) -> StoreResult<()> {
        let values = (
            project.as_str(),
            slug.as_str(),
            CqlTimeuuid::from(n.id.as_uuid()),
            n.author.as_str(),
            n.content.as_str(),
            n.created_at,
        );
        self.session
            .execute_unpaged(&self.st.insert_note, values)
            .await
            .map_err(execution)?;
        Ok(())
    }

    async fn upsert_cursor(
        &self,
        project: &ProjectId,
        slug: &Slug,
        reader: Participant,
        up_to: MessageId,
    ) -> StoreResult<()> {
        // The write's own timestamp is the message's: the newest cursor wins by itself.
        let micros = up_to.timestamp().timestamp_micros();
        self.session
            .execute_unpaged(
                &self.st.upsert_cursor,
                (
                    project.as_str(),
                    slug.as_str(),
                    reader.as_str(),
                    CqlTimeuuid::from(up_to.as_uuid()),
                    micros,
                ),
            )
            .await
            .map_err(execution)?;
        Ok(())
    }

    /// A ticket row change, unless the stored row is newer (see [`TicketStore::submit`]): one
    /// lightweight transaction decides, so a late write from a node that lost the ticket
    /// cannot land between the check and the write. The ticket is created the same way, so
    /// its row only ever changes through Paxos.
    async fn update_ticket(&self, t: &Ticket) -> StoreResult<()> {
        let values = (
            t.title.as_str(),
            t.description.as_str(),
            t.status.as_str(),
            source_name(t.source),
            t.session_id.as_deref(),
            t.updated_at,
            t.assignee.as_ref().map(AgentName::as_str),
            tag_names(&t.tags),
            t.project_id.as_str(),
            t.slug.as_str(),
            t.updated_at,
        );
        if !self.claim(&self.st.update_ticket, values).await? {
            // Refused: either there is no such ticket (an UPDATE never creates one) or a newer
            // version is stored, which this one must not undo; its listing entry stays too.
            return match self.get_ticket(&t.project_id, &t.slug).await? {
                None => Err(StoreError::NotFound),
                Some(stored) => {
                    // Expected of a node that lost the ticket; from its owner it would mean the
                    // owner started from a stale row, so it is worth a line either way.
                    tracing::warn!(
                        project = %t.project_id.as_str(),
                        slug = %t.slug.as_str(),
                        version = %t.updated_at,
                        stored = %stored.updated_at,
                        "a ticket change older than the stored row was not written"
                    );
                    Ok(())
                }
            };
        }
        self.index_rows(t).await
    }

    /// Messages and cursors of a batch are independent rows and go out concurrently; ticket
    /// updates follow, in order. Everything is idempotent, so a failed batch may be retried.
    async fn apply(
        &self,
        project: &ProjectId,
        slug: &Slug,
        writes: &[TicketWrite],
    ) -> StoreResult<()> {
        let rows = writes.iter().filter_map(|w| -> Option<BoxedWrite<'_>> {
            match w {
                TicketWrite::Message(m) => Some(Box::pin(self.insert_message(project, slug, m))),
                TicketWrite::ReadCursor { reader, up_to } => {
                    Some(Box::pin(self.upsert_cursor(project, slug, *reader, *up_to)))
                }
                TicketWrite::Note(n) => Some(Box::pin(self.insert_note(project, slug, n))),
                TicketWrite::Delivery(d) => Some(Box::pin(self.put_delivery_rows(d, None))),
                TicketWrite::Ticket(_) => None,
            }
        });
        for result in futures_util::future::join_all(rows).await {
            result?;
        }
        for w in writes {
            if let TicketWrite::Ticket(t) = w {
                self.update_ticket(t).await?;
            }
        }
        Ok(())
    }
}

/// One row write of a batch, run beside the others.
type BoxedWrite<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<()>> + Send + 'a>>;

type TicketRow = (
    String,
    String,
    uuid::Uuid,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<String>,
    Option<Vec<String>>,
);

#[allow(clippy::type_complexity)]
fn ticket_values(
    t: &Ticket,
) -> (
    &str,
    &str,
    uuid::Uuid,
    &str,
    &str,
    &str,
    &str,
    Option<&str>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<&str>,
    Vec<&str>,
) {
    (
        t.project_id.as_str(),
        t.slug.as_str(),
        t.id,
        t.title.as_str(),
        t.description.as_str(),
        t.status.as_str(),
        source_name(t.source),
        t.session_id.as_deref(),
        t.created_at,
        t.updated_at,
        t.assignee.as_ref().map(AgentName::as_str),
        tag_names(&t.tags),
    )
}

/// A ticket's tags as the `tags` column holds them.
fn tag_names(tags: &Tags) -> Vec<&str> {
    tags.iter().map(Tag::as_str).collect()
}

fn source_name(s: TicketSource) -> &'static str {
    match s {
        TicketSource::Api => "api",
        TicketSource::Chat => "chat",
    }
}

fn ticket_from_row(r: TicketRow) -> StoreResult<Ticket> {
    let corrupt = |what: &str| StoreError::Internal(format!("corrupt ticket row: {what}"));
    Ok(Ticket {
        project_id: ProjectId::parse(&r.0).map_err(|_| corrupt("project_id"))?,
        slug: Slug::parse(&r.1).map_err(|_| corrupt("slug"))?,
        id: r.2,
        title: Title::parse(&r.3).map_err(|_| corrupt("title"))?,
        description: Description::parse(r.4.as_deref().unwrap_or(""))
            .map_err(|_| corrupt("description"))?,
        status: TicketStatus::parse(&r.5).map_err(|_| corrupt("status"))?,
        source: match r.6.as_str() {
            "chat" => TicketSource::Chat,
            _ => TicketSource::Api,
        },
        session_id: r.7,
        created_at: r.8,
        updated_at: r.9,
        assignee: match r.10 {
            Some(name) => Some(AgentName::parse(&name).map_err(|_| corrupt("assignee"))?),
            None => None,
        },
        tags: Tags::parse(&r.11.unwrap_or_default()).map_err(|_| corrupt("tags"))?,
    })
}

type ProjectRow = (
    String,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
    DateTime<Utc>,
);

fn project_from_row(r: ProjectRow) -> StoreResult<Project> {
    Ok(Project {
        id: ProjectId::parse(&r.0)
            .map_err(|_| StoreError::Internal("corrupt project id".into()))?,
        name: r.1.unwrap_or_default(),
        allowed_origins: r.2.unwrap_or_default(),
        admin_key_hash: r.3.unwrap_or_default(),
        created_at: r.4,
    })
}

fn message_from_row(
    (id, author, content, key): (CqlTimeuuid, String, String, Option<String>),
) -> StoreResult<Message> {
    let corrupt = |what: &str| StoreError::Internal(format!("corrupt message row: {what}"));
    let id = MessageId::from_uuid(id.into()).ok_or_else(|| corrupt("id"))?;
    Ok(Message {
        id,
        author: Participant::parse(&author).map_err(|_| corrupt("author"))?,
        content: MessageBody::parse(&content).map_err(|_| corrupt("content"))?,
        timestamp: id.timestamp(),
        idempotency_key: key
            .map(|k| IdempotencyKey::parse(&k))
            .transpose()
            .map_err(|_| corrupt("idempotency_key"))?,
    })
}

type TurnRow = (
    String,
    String,
    CqlTimeuuid,
    String,
    String,
    DateTime<Utc>,
    Option<String>,
    Option<Vec<uuid::Uuid>>,
    Option<i64>,
);

fn turn_from_row(r: TurnRow) -> StoreResult<ChatTurn> {
    let corrupt = |what: &str| StoreError::Internal(format!("corrupt chat turn: {what}"));
    Ok(ChatTurn {
        id: MessageId::from_uuid(r.2.into()).ok_or_else(|| corrupt("id"))?,
        role: match r.3.as_str() {
            "user" => ChatRole::User,
            "assistant" => ChatRole::Assistant,
            _ => return Err(corrupt("role")),
        },
        content: r.4,
        at: r.5,
        ticket_slug: r
            .6
            .map(|s| Slug::parse(&s))
            .transpose()
            .map_err(|_| corrupt("ticket_slug"))?,
        citations: r.7.unwrap_or_default(),
        tokens: r.8.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
    })
}

type ArticleRow = (
    String,
    uuid::Uuid,
    String,
    String,
    Option<Vec<String>>,
    DateTime<Utc>,
    DateTime<Utc>,
);

fn article_from_row(r: ArticleRow) -> StoreResult<Article> {
    let corrupt = |what: &str| StoreError::Internal(format!("corrupt article: {what}"));
    Ok(Article {
        project_id: ProjectId::parse(&r.0).map_err(|_| corrupt("project id"))?,
        id: r.1,
        title: ArticleTitle::parse(&r.2).map_err(|_| corrupt("title"))?,
        body: ArticleBody::parse(&r.3).map_err(|_| corrupt("body"))?,
        tags: r.4.unwrap_or_default(),
        created_at: r.5,
        updated_at: r.6,
    })
}

/// Whether a lightweight transaction (a statement or a conditional batch) applied.
/// ScyllaDB returns `[applied]` with every column, Cassandra only `[applied]`: read it by name.
fn applied(result: scylla::response::query_result::QueryResult) -> StoreResult<bool> {
    let rows = result.into_rows_result().map_err(internal)?;
    let column = rows
        .column_specs()
        .iter()
        .position(|c| c.name() == "[applied]")
        .ok_or_else(|| StoreError::Internal("LWT result has no [applied] column".into()))?;
    let row: Row = rows
        .maybe_first_row::<Row>()
        .map_err(internal)?
        .ok_or_else(|| StoreError::Internal("LWT result has no row".into()))?;
    Ok(matches!(
        row.columns.get(column),
        Some(Some(CqlValue::Boolean(true)))
    ))
}

/// The month a ticket is listed under: `YYYY-MM`, which sorts like time.
fn bucket(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// A statement that could not run: the cluster is down, overloaded or slow (retry later),
/// unless the statement itself was wrong.
fn execution(e: ExecutionError) -> StoreError {
    let transient = match &e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => transient_db(db),
        ExecutionError::LastAttemptError(
            RequestAttemptError::SerializationError(_)
            | RequestAttemptError::CqlRequestSerialization(_)
            | RequestAttemptError::CqlResultParseError(_)
            | RequestAttemptError::CqlErrorParseError(_)
            | RequestAttemptError::BodyExtensionsParseError(_),
        ) => false,
        ExecutionError::BadQuery(_)
        | ExecutionError::PrepareError(_)
        | ExecutionError::UseKeyspaceError(_) => false,
        // Broken connections, no reachable node, timeouts, schema disagreement.
        _ => true,
    };
    if transient {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Internal(e.to_string())
    }
}

/// Errors the cluster reports that pass with time: the rest (a syntax error, a missing grant,
/// a configuration problem) will not, and are internal errors rather than "retry later".
fn transient_db(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Unavailable { .. }
            | DbError::Overloaded
            | DbError::IsBootstrapping
            | DbError::ReadTimeout { .. }
            | DbError::WriteTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::WriteFailure { .. }
            | DbError::TruncateError
            | DbError::RateLimitReached { .. }
    )
}

/// A paged read that failed: fetching a page is like running a statement; a row that does not
/// decode is corrupt data.
fn paging(e: impl std::fmt::Display + std::any::Any) -> StoreError {
    let any: &dyn std::any::Any = &e;
    if let Some(NextRowError::RowDeserializationError(_)) = any.downcast_ref::<NextRowError>() {
        return StoreError::Internal(e.to_string());
    }
    StoreError::Unavailable(e.to_string())
}

#[async_trait]
impl ProjectStore for ScyllaStore {
    async fn create_project(&self, p: &Project) -> StoreResult<()> {
        timed("scylla", "create_project", async {
            let values = (
                p.id.as_str(),
                p.name.as_str(),
                &p.allowed_origins,
                p.admin_key_hash.as_str(),
                p.created_at,
            );
            if self.claim(&self.st.insert_project, values).await? {
                Ok(())
            } else {
                Err(StoreError::Conflict)
            }
        })
        .await
    }

    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        timed("scylla", "get_project", async {
            self.one_row::<ProjectRow>(&self.st.select_project, (id.as_str(),))
                .await?
                .map(project_from_row)
                .transpose()
        })
        .await
    }

    async fn update_project(&self, p: &Project) -> StoreResult<()> {
        timed("scylla", "update_project", async {
            if self.get_project(&p.id).await?.is_none() {
                return Err(StoreError::NotFound);
            }
            let values = (
                p.id.as_str(),
                p.name.as_str(),
                &p.allowed_origins,
                p.admin_key_hash.as_str(),
                p.created_at,
            );
            self.session
                .execute_unpaged(&self.st.upsert_project, values)
                .await
                .map_err(execution)?;
            Ok(())
        })
        .await
    }

    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        timed("scylla", "list_projects", async {
            let rows: Vec<ProjectRow> = self.all_rows(&self.st.select_projects, ()).await?;
            rows.into_iter().map(project_from_row).collect()
        })
        .await
    }
}

#[async_trait]
impl TicketStore for ScyllaStore {
    /// The rows of a new ticket live in several partitions (the ticket, its listing entry, its
    /// messages, the deliveries), which no CQL write makes atomic; a logged batch would only
    /// promise that all of them land eventually, not when, and it cannot hold the ticket's
    /// lightweight transaction. So the order makes it safe: everything that hangs off the
    /// ticket is written first, and the ticket row, claimed with `IF NOT EXISTS`, last. Until
    /// the claim the ticket cannot be read, and once it can, its whole history is there. A
    /// crash or a failure before the claim leaves rows that nothing serves: the listing skips
    /// an entry whose ticket is missing, the dispatcher drops an announcement of a ticket that
    /// never came, and no ticket holds the slug the history was written under (a later ticket
    /// would have to draw that very slug, one chance in about 2^30, to show it).
    async fn create_ticket_with_history(
        &self,
        t: &Ticket,
        messages: &[Message],
        deliveries: &[Delivery],
    ) -> StoreResult<()> {
        timed("scylla", "create_ticket", async {
            let (project, slug) = (&t.project_id, &t.slug);
            // A history must not land in the partition of a ticket that already has the slug.
            // The claim below still decides: two creations that draw one slug at once both
            // pass this look, and the loser takes its messages back.
            if !messages.is_empty() && self.get_ticket(project, slug).await?.is_some() {
                return Err(StoreError::Conflict);
            }
            self.index_rows(t).await?;
            let announce = deliveries
                .iter()
                .map(|d| -> BoxedWrite<'_> { Box::pin(self.put_delivery_rows(d, None)) });
            let history = messages
                .iter()
                .map(|m| -> BoxedWrite<'_> { Box::pin(self.insert_message(project, slug, m)) });
            for result in futures_util::future::join_all(announce.chain(history)).await {
                result?;
            }
            if !self.claim(&self.st.insert_ticket, ticket_values(t)).await? {
                // Best effort: the dispatcher's check covers an announcement left behind. A
                // message is left in the other ticket only if two creations drew one slug at
                // the same moment and its take-back failed too.
                for d in deliveries {
                    let _ = self.delete_new_delivery(d).await;
                }
                for m in messages {
                    let key = (
                        project.as_str(),
                        slug.as_str(),
                        CqlTimeuuid::from(m.id.as_uuid()),
                    );
                    let _ = self
                        .session
                        .execute_unpaged(&self.st.delete_message, key)
                        .await;
                }
                return Err(StoreError::Conflict);
            }
            Ok(())
        })
        .await
    }

    async fn get_ticket(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Option<Ticket>> {
        timed("scylla", "get_ticket", async {
            self.one_row::<TicketRow>(&self.st.select_ticket, (project.as_str(), slug.as_str()))
                .await?
                .map(ticket_from_row)
                .transpose()
        })
        .await
    }

    async fn list_tickets(
        &self,
        project: &ProjectId,
        query: &TicketQuery,
    ) -> StoreResult<TicketPage> {
        timed("scylla", "list_tickets", async {
            // A listing walks pages and does point reads; bound the whole of it, not each step.
            tokio::time::timeout(LIST_DEADLINE, self.list_tickets_within(project, query))
                .await
                .map_err(|_| StoreError::Unavailable("listing tickets took too long".into()))?
        })
        .await
    }

    async fn list_messages(
        &self,
        project: &ProjectId,
        slug: &Slug,
        range: MessageRange,
    ) -> StoreResult<Vec<Message>> {
        timed("scylla", "list_messages", async {
            if range.limit == 0 {
                return Ok(Vec::new());
            }
            let after = range.after.unwrap_or(MessageId::MIN);
            let before = range.before.unwrap_or(MessageId::MAX);
            let st = if range.newest {
                &self.st.select_messages_desc
            } else {
                &self.st.select_messages_asc
            };
            let limit = i32::try_from(range.limit).unwrap_or(i32::MAX);
            let values = (
                project.as_str(),
                slug.as_str(),
                CqlTimeuuid::from(after.as_uuid()),
                CqlTimeuuid::from(before.as_uuid()),
                limit,
            );
            let rows: Vec<(CqlTimeuuid, String, String, Option<String>)> = self
                .all_rows::<(CqlTimeuuid, String, String, Option<String>)>(st, values)
                .await?;
            let mut out = rows
                .into_iter()
                .map(message_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            if range.newest {
                out.reverse();
            }
            Ok(out)
        })
        .await
    }

    async fn list_notes(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<Note>> {
        timed("scylla", "list_notes", async {
            type Row = (CqlTimeuuid, String, String, DateTime<Utc>);
            let values = (project.as_str(), slug.as_str());
            let rows: Vec<Row> = self.all_rows::<Row>(&self.st.select_notes, values).await?;
            let corrupt = |what: &str| StoreError::Internal(format!("corrupt note row: {what}"));
            rows.into_iter()
                .map(|(id, author, content, created_at)| {
                    Ok(Note {
                        id: MessageId::from_uuid(id.into()).ok_or_else(|| corrupt("id"))?,
                        author: AgentName::parse(&author).map_err(|_| corrupt("author"))?,
                        content: MessageBody::parse(&content).map_err(|_| corrupt("content"))?,
                        created_at,
                    })
                })
                .collect()
        })
        .await
    }

    async fn read_cursors(&self, project: &ProjectId, slug: &Slug) -> StoreResult<Vec<ReadCursor>> {
        timed("scylla", "read_cursors", async {
            let rows: Vec<(String, CqlTimeuuid)> = self
                .all_rows::<(String, CqlTimeuuid)>(
                    &self.st.select_cursors,
                    (project.as_str(), slug.as_str()),
                )
                .await?;
            rows.into_iter()
                .map(|(reader, id)| {
                    Ok(ReadCursor {
                        reader: Participant::parse(&reader)
                            .map_err(|_| StoreError::Internal("corrupt cursor reader".into()))?,
                        up_to: MessageId::from_uuid(id.into())
                            .ok_or_else(|| StoreError::Internal("corrupt cursor id".into()))?,
                    })
                })
                .collect()
        })
        .await
    }

    fn submit(
        self: Arc<Self>,
        project: ProjectId,
        slug: Slug,
        writes: Vec<TicketWrite>,
        done: Done,
    ) {
        tokio::spawn(async move {
            let apply = self.apply(&project, &slug, &writes);
            done(timed("scylla", "apply", apply).await);
        });
    }
}

#[async_trait]
impl ChatStore for ScyllaStore {
    /// Turns are independent rows keyed by their id: written concurrently, and a repeat
    /// overwrites the same row.
    async fn append_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        turns: &[ChatTurn],
    ) -> StoreResult<()> {
        timed("scylla", "append_chat_turns", async {
            let writes = turns.iter().map(|t| {
                let values = (
                    project.as_str(),
                    session,
                    CqlTimeuuid::from(t.id.as_uuid()),
                    t.role.as_str(),
                    t.content.as_str(),
                    t.at,
                    t.ticket_slug.as_ref().map(Slug::as_str),
                    &t.citations,
                    i64::try_from(t.tokens).unwrap_or(i64::MAX),
                );
                self.session.execute_unpaged(&self.st.insert_turn, values)
            });
            for result in futures_util::future::join_all(writes).await {
                result.map_err(execution)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_chat_turns(
        &self,
        project: &ProjectId,
        session: &str,
        limit: usize,
    ) -> StoreResult<Vec<ChatTurn>> {
        timed("scylla", "list_chat_turns", async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let limit = i32::try_from(limit).unwrap_or(i32::MAX);
            let rows: Vec<TurnRow> = self
                .all_rows::<TurnRow>(&self.st.select_turns, (project.as_str(), session, limit))
                .await?;
            let mut out = rows
                .into_iter()
                .map(turn_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn chat_session_usage(
        &self,
        project: &ProjectId,
        session: &str,
    ) -> StoreResult<ChatUsage> {
        timed("scylla", "chat_session_usage", async {
            let rows: Vec<(Option<i64>, Option<String>)> = self
                .all_rows::<(Option<i64>, Option<String>)>(
                    &self.st.select_usage,
                    (project.as_str(), session),
                )
                .await?;
            let mut usage = ChatUsage::default();
            for (tokens, slug) in rows {
                usage.tokens = usage
                    .tokens
                    .saturating_add(tokens.and_then(|t| u64::try_from(t).ok()).unwrap_or(0));
                usage.tickets += u32::from(slug.is_some());
            }
            Ok(usage)
        })
        .await
    }
}

#[async_trait]
impl KbStore for ScyllaStore {
    async fn put_article(&self, a: &Article) -> StoreResult<()> {
        timed("scylla", "put_article", async {
            let values = (
                a.project_id.as_str(),
                a.id,
                a.title.as_str(),
                a.body.as_str(),
                &a.tags,
                a.created_at,
                a.updated_at,
            );
            self.session
                .execute_unpaged(&self.st.upsert_article, values)
                .await
                .map_err(execution)?;
            Ok(())
        })
        .await
    }

    async fn delete_article(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        timed("scylla", "delete_article", async {
            // Without LWT a DELETE cannot tell whether the row was there; read first. A racing
            // delete of the same article makes both succeed, which is what a user expects.
            let values = (project.as_str(), id);
            if self
                .one_row::<(uuid::Uuid,)>(&self.st.select_article_id, values)
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound);
            }
            self.session
                .execute_unpaged(&self.st.delete_article, values)
                .await
                .map_err(execution)?;
            Ok(())
        })
        .await
    }

    async fn list_articles(&self, project: &ProjectId) -> StoreResult<Vec<Article>> {
        timed("scylla", "list_articles", async {
            tokio::time::timeout(LIST_DEADLINE, self.list_articles_within(project))
                .await
                .map_err(|_| {
                    StoreError::Unavailable("reading the knowledge base took too long".into())
                })?
        })
        .await
    }
}

#[async_trait]
impl WebhookStore for ScyllaStore {
    async fn create_endpoint(&self, endpoint: &Endpoint, max: usize) -> StoreResult<()> {
        let create = self.create_endpoint_row(endpoint, max);
        timed("scylla", "create_endpoint", create).await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> StoreResult<()> {
        let update = self.update_endpoint_row(endpoint);
        timed("scylla", "update_endpoint", update).await
    }

    async fn delete_endpoint(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        timed(
            "scylla",
            "delete_endpoint",
            self.delete_endpoint_row(project, id),
        )
        .await
    }

    async fn list_endpoints(&self, project: &ProjectId) -> StoreResult<Vec<Endpoint>> {
        timed(
            "scylla",
            "list_endpoints",
            self.endpoint_rows(Some(project)),
        )
        .await
    }

    async fn all_endpoints(&self) -> StoreResult<Vec<Endpoint>> {
        timed("scylla", "all_endpoints", self.endpoint_rows(None)).await
    }

    async fn put_delivery(
        &self,
        delivery: &Delivery,
        was_due: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        timed(
            "scylla",
            "put_delivery",
            self.put_delivery_rows(delivery, was_due),
        )
        .await
    }

    async fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Delivery>> {
        timed("scylla", "due_deliveries", self.due_rows(now, limit)).await
    }

    async fn list_deliveries(
        &self,
        project: &ProjectId,
        endpoint: uuid::Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let rows = self.delivery_rows(project, endpoint, limit);
        timed("scylla", "list_deliveries", rows).await
    }

    async fn get_delivery(
        &self,
        project: &ProjectId,
        endpoint: uuid::Uuid,
        id: &str,
    ) -> StoreResult<Option<Delivery>> {
        let row = self.delivery_row(project.as_str(), endpoint, id);
        timed("scylla", "get_delivery", row).await
    }

    /// Rows expire by TTL, counted from the delivery's `created_at` (see `put_delivery_rows`).
    async fn prune_deliveries(&self, _before: DateTime<Utc>, _limit: usize) -> StoreResult<usize> {
        Ok(0)
    }

    async fn claim_delivery(
        &self,
        delivery: &Delivery,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let claim = self.claim_delivery_row(delivery, now, until);
        timed("scylla", "claim_delivery", claim).await
    }
}

#[async_trait]
impl Store for ScyllaStore {
    fn backend(&self) -> &'static str {
        "scylla"
    }

    /// Every acknowledged write is already on the replicas the consistency level asked for.
    async fn flush(&self) -> StoreResult<()> {
        timed("scylla", "flush", async { Ok(()) }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_cql_is_an_embedded_migration_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".cql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|(_, name, _)| format!("{name}.cql"))
            .collect();
        assert_eq!(files, embedded);
        for (i, (version, name, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(name.starts_with(&format!("{version:04}_")));
        }
    }

    #[test]
    fn migration_files_split_into_statements_without_comments() {
        let s = statements(MIGRATIONS[0].2);
        assert!(s.len() >= 6);
        assert!(s
            .iter()
            .all(|st| st.starts_with("CREATE TABLE IF NOT EXISTS {keyspace}.")));
    }

    #[test]
    fn replication_and_consistency_settings_are_checked() {
        assert_eq!(
            replication_map("3").unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}"
        );
        assert_eq!(
            replication_map("dc1:3, dc2:2").unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        assert!(replication_map("0").is_err());
        assert!(replication_map("dc1:3'; DROP").is_err());
        assert!(matches!(
            parse_consistency("local_quorum"),
            Ok(Consistency::LocalQuorum)
        ));
        assert!(parse_consistency("most").is_err());
        assert!(parse_keyspace("fleety").is_ok());
        assert!(parse_keyspace("fleety; DROP").is_err());
    }

    #[test]
    fn added_columns_are_recognised_for_idempotent_migrations() {
        assert_eq!(
            added_column(
                "ALTER TABLE fleety.messages ADD idempotency_key text",
                "fleety"
            ),
            Some(("messages".into(), "idempotency_key".into()))
        );
        assert_eq!(
            added_column(
                "CREATE TABLE IF NOT EXISTS fleety.x (a int PRIMARY KEY)",
                "fleety"
            ),
            None
        );
    }

    #[test]
    fn buckets_are_months_that_sort_like_time() {
        let a = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(bucket(a), "2023-11");
        assert!(bucket(a) < bucket(a + chrono::Duration::days(40)));
    }
}
