//! The tickets' listing for agents: `tickets_by_time` holds an entry per ticket under the
//! month it was created in, newest first, and `ticket_buckets` the months a project has. The
//! ticket's own row stays the truth: a listing reads it for each entry it shows.

use chrono::{DateTime, Datelike, Utc};
use fleety_actors::domain::{ProjectId, Slug, Ticket};
use fleety_actors::store::{StoreResult, TicketCursor, TicketPage, TicketQuery, TicketStore};
use futures_util::TryStreamExt;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::rows::{ListingRow, ListingValues};
use super::{execution, internal, paging, prepare, ScyllaStore};

pub(super) struct Statements {
    upsert_entry: PreparedStatement,
    insert_bucket: PreparedStatement,
    select_buckets: PreparedStatement,
    select_entries: PreparedStatement,
    select_entries_after: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            upsert_entry: p(format!("INSERT INTO {ks}.tickets_by_time (project_id, bucket, created_at, slug, status) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?")).await?,
            insert_bucket: p(format!("INSERT INTO {ks}.ticket_buckets (project_id, bucket) VALUES (?, ?)")).await?,
            select_buckets: p(format!("SELECT bucket FROM {ks}.ticket_buckets WHERE project_id = ? AND bucket <= ?")).await?,
            select_entries: p(format!("SELECT created_at, slug, status FROM {ks}.tickets_by_time WHERE project_id = ? AND bucket = ?")).await?,
            select_entries_after: p(format!("SELECT created_at, slug, status FROM {ks}.tickets_by_time WHERE project_id = ? AND bucket = ? AND (created_at, slug) < (?, ?)")).await?,
        })
    }
}

impl ScyllaStore {
    pub(super) async fn list_tickets_within(
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
                &self.listing.select_buckets,
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
                            self.listing.select_entries_after.clone(),
                            (project.as_str(), b.as_str(), c.created_at, c.slug.as_str()),
                        )
                        .await
                }
                _ => {
                    self.session
                        .execute_iter(
                            self.listing.select_entries.clone(),
                            (project.as_str(), b.as_str()),
                        )
                        .await
                }
            };
            let mut rows = pager
                .map_err(paging)?
                .rows_stream::<ListingRow>()
                .map_err(internal)?;
            while let Some(entry) = rows.try_next().await.map_err(paging)? {
                if examined == scan {
                    break 'buckets;
                }
                examined += 1;
                let Ok(slug) = Slug::parse(&entry.slug) else {
                    continue;
                };
                if examined == scan {
                    stopped_at = Some(TicketCursor {
                        created_at: entry.created_at,
                        slug: slug.clone(),
                    });
                }
                if query.status.is_some_and(|s| s.as_str() != entry.status) {
                    continue;
                }
                // The ticket row is the truth: skip index rows of failed claims and of
                // statuses that changed since the index row was written.
                let Some(t) = self.get_ticket(project, &slug).await? else {
                    continue;
                };
                if t.created_at != entry.created_at || !query.matches(&t) {
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
    pub(super) async fn index_rows(&self, t: &Ticket) -> StoreResult<()> {
        let b = bucket(t.created_at);
        let (by_time, bucket_row) = tokio::join!(
            self.session
                .execute_unpaged(&self.listing.upsert_entry, ListingValues::new(t, &b)),
            self.session.execute_unpaged(
                &self.listing.insert_bucket,
                (t.project_id.as_str(), b.as_str())
            ),
        );
        by_time.map_err(execution)?;
        bucket_row.map_err(execution)?;
        Ok(())
    }
}

/// The month a ticket is listed under: `YYYY-MM`, which sorts like time.
pub(super) fn bucket(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_months_that_sort_like_time() {
        let a = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(bucket(a), "2023-11");
        assert!(bucket(a) < bucket(a + chrono::Duration::days(40)));
    }
}
