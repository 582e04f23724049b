//! The CQL schema: the numbered files in `cql/`, compiled into the binary and applied in order
//! by `fleety migrate` (or at start with `FLEETY_SCYLLA_AUTO_MIGRATE`). Each applied version is
//! recorded in `schema_migrations`, so a run applies only what is new.

use chrono::Utc;
use futures_util::TryStreamExt;
use scylla::client::session::Session;

use super::ScyllaConfig;

/// The migrations compiled into the binary, applied in order by [`migrate`].
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "0001_init", include_str!("../../../cql/0001_init.cql")),
    (
        2,
        "0002_message_idempotency_key",
        include_str!("../../../cql/0002_message_idempotency_key.cql"),
    ),
    (
        3,
        "0003_chat_and_knowledge_base",
        include_str!("../../../cql/0003_chat_and_knowledge_base.cql"),
    ),
    (
        4,
        "0004_notes_and_assignment",
        include_str!("../../../cql/0004_notes_and_assignment.cql"),
    ),
    (
        5,
        "0005_webhooks",
        include_str!("../../../cql/0005_webhooks.cql"),
    ),
    (
        6,
        "0006_webhook_endpoint_cap",
        include_str!("../../../cql/0006_webhook_endpoint_cap.cql"),
    ),
    (
        7,
        "0007_ticket_tags",
        include_str!("../../../cql/0007_ticket_tags.cql"),
    ),
    (
        8,
        "0008_assistant_profile",
        include_str!("../../../cql/0008_assistant_profile.cql"),
    ),
    (
        9,
        "0009_unanswered_questions",
        include_str!("../../../cql/0009_unanswered_questions.cql"),
    ),
    (
        10,
        "0010_chat_feedback_and_outcomes",
        include_str!("../../../cql/0010_chat_feedback_and_outcomes.cql"),
    ),
    (
        11,
        "0011_article_language_and_url",
        include_str!("../../../cql/0011_article_language_and_url.cql"),
    ),
    (
        12,
        "0012_members_and_sessions",
        include_str!("../../../cql/0012_members_and_sessions.cql"),
    ),
    (
        13,
        "0013_canned_replies",
        include_str!("../../../cql/0013_canned_replies.cql"),
    ),
    (
        14,
        "0014_ticket_visitor",
        include_str!("../../../cql/0014_ticket_visitor.cql"),
    ),
    (
        15,
        "0015_message_agent",
        include_str!("../../../cql/0015_message_agent.cql"),
    ),
    (
        16,
        "0016_member_links",
        include_str!("../../../cql/0016_member_links.cql"),
    ),
    (
        17,
        "0017_api_tokens",
        include_str!("../../../cql/0017_api_tokens.cql"),
    ),
    (
        18,
        "0018_ticket_assignee_member",
        include_str!("../../../cql/0018_ticket_assignee_member.cql"),
    ),
    (
        19,
        "0019_audit_log",
        include_str!("../../../cql/0019_audit_log.cql"),
    ),
    (
        20,
        "0020_satisfaction",
        include_str!("../../../cql/0020_satisfaction.cql"),
    ),
    (
        21,
        "0021_ticket_activity",
        include_str!("../../../cql/0021_ticket_activity.cql"),
    ),
    (
        22,
        "0022_member_totp",
        include_str!("../../../cql/0022_member_totp.cql"),
    ),
    (
        25,
        "0025_contacts",
        include_str!("../../../cql/0025_contacts.cql"),
    ),
    (
        26,
        "0026_email_outbox",
        include_str!("../../../cql/0026_email_outbox.cql"),
    ),
    (
        27,
        "0027_visitor_mail",
        include_str!("../../../cql/0027_visitor_mail.cql"),
    ),
    (
        28,
        "0028_inbound_mail",
        include_str!("../../../cql/0028_inbound_mail.cql"),
    ),
    (
        29,
        "0029_ticket_access",
        include_str!("../../../cql/0029_ticket_access.cql"),
    ),
    (
        30,
        "0030_ticket_erasure",
        include_str!("../../../cql/0030_ticket_erasure.cql"),
    ),
    (
        31,
        "0031_agent_mail",
        include_str!("../../../cql/0031_agent_mail.cql"),
    ),
    (
        32,
        "0032_visitor_email_unverified",
        include_str!("../../../cql/0032_visitor_email_unverified.cql"),
    ),
    (
        33,
        "0033_contact_erasure",
        include_str!("../../../cql/0033_contact_erasure.cql"),
    ),
    (
        34,
        "0034_retention",
        include_str!("../../../cql/0034_retention.cql"),
    ),
    (
        36,
        "0036_email_listing",
        include_str!("../../../cql/0036_email_listing.cql"),
    ),
];

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
        config.replication.cql_map()
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
        // Numbers rise; a gap is allowed, as numbers are handed out to branches that land
        // in any order (each migration is applied once, whatever its neighbours).
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].1, pair[1].1);
        }
        for (version, name, _) in MIGRATIONS {
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
}
