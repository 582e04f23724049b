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
//!
//! One file per aggregate prepares its statements and implements its storage trait
//! ([`projects`], [`tickets`] with its [`listing`], [`chat`], [`kb`], [`webhooks`], [`members`],
//! [`email`], [`audit`], which also says how a change carries its audit record, [`contacts`],
//! [`inbound_mail`], [`erase`], [`contact_erase`], [`email_index`]); [`rows`]
//! holds the rows they bind and decode, [`config`] the settings and [`migrations`] the schema.

mod agent_mail;
mod audit;
mod canned;
mod chat;
mod config;
mod contact_erase;
mod contacts;
mod email;
mod email_index;
mod erase;
mod inbound_mail;
mod kb;
mod listing;
mod members;
mod migrations;
mod projects;
mod rows;
mod tickets;
mod unanswered;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleety_actors::store::{timed, Store, StoreError, StoreResult};
use futures_util::TryStreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, NextRowError, RequestAttemptError};
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::{CqlValue, Row};

pub use config::{Replication, ScyllaConfig};
pub use migrations::{migrate, MIGRATIONS};

/// How long one statement may take before the store reports the cluster unavailable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one listing (of tickets, of a knowledge base) may take in all.
const LIST_DEADLINE: Duration = Duration::from_secs(10);
/// Rows per page of a paged read.
const PAGE_SIZE: i32 = 500;

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
        builder = builder.user(user, password.expose());
    }
    builder.build().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the CQL cluster at {}: {e}",
            config.nodes.join(",")
        )
    })
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

pub struct ScyllaStore {
    session: Arc<Session>,
    projects: projects::Statements,
    tickets: tickets::Statements,
    listing: listing::Statements,
    chat: chat::Statements,
    kb: kb::Statements,
    webhooks: webhooks::Statements,
    unanswered: unanswered::Statements,
    members: members::Statements,
    canned: canned::Statements,
    audit: audit::Statements,
    email: email::Statements,
    agent_mail: agent_mail::Statements,
    contacts: contacts::Statements,
    inbound_mail: inbound_mail::Statements,
    erase: erase::Statements,
    contact_erase: contact_erase::Statements,
    email_index: email_index::Statements,
}

impl ScyllaStore {
    /// Connects, migrates if the settings say so, and prepares every statement.
    pub async fn open(config: &ScyllaConfig) -> anyhow::Result<Self> {
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
        if config.auto_migrate {
            migrate(&session, config).await?;
        }
        let (ks, consistency) = (config.keyspace.as_str(), config.consistency);
        Ok(Self {
            projects: projects::Statements::prepare(&session, consistency, ks).await?,
            tickets: tickets::Statements::prepare(&session, consistency, ks).await?,
            listing: listing::Statements::prepare(&session, consistency, ks).await?,
            chat: chat::Statements::prepare(&session, consistency, ks).await?,
            kb: kb::Statements::prepare(&session, consistency, ks).await?,
            webhooks: webhooks::Statements::prepare(&session, consistency, ks).await?,
            unanswered: unanswered::Statements::prepare(&session, consistency, ks).await?,
            members: members::Statements::prepare(&session, consistency, ks).await?,
            canned: canned::Statements::prepare(&session, consistency, ks).await?,
            audit: audit::Statements::prepare(&session, consistency, ks).await?,
            email: email::Statements::prepare(&session, consistency, ks).await?,
            agent_mail: agent_mail::Statements::prepare(&session, consistency, ks).await?,
            contacts: contacts::Statements::prepare(&session, consistency, ks).await?,
            inbound_mail: inbound_mail::Statements::prepare(&session, consistency, ks).await?,
            erase: erase::Statements::prepare(&session, consistency, ks).await?,
            contact_erase: contact_erase::Statements::prepare(&session, consistency, ks).await?,
            email_index: email_index::Statements::prepare(&session, consistency, ks).await?,
            session: Arc::new(session),
        })
    }

    /// Runs one statement whose result is not read.
    async fn write(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> StoreResult<()> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map_err(execution)?;
        Ok(())
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

    /// Runs a single-row read and decodes the row, if there is one.
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
}

/// One row write of a batch, run beside the others.
type BoxedWrite<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<()>> + Send + 'a>>;

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
impl Store for ScyllaStore {
    fn backend(&self) -> &'static str {
        "scylla"
    }

    /// Every acknowledged write is already on the replicas the consistency level asked for.
    async fn flush(&self) -> StoreResult<()> {
        timed("scylla", "flush", async { Ok(()) }).await
    }
}
