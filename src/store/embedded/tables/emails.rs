//! The outbox's indexes in the embedded store: a project's emails newest first, and a
//! ticket's, kept by the one place an email row changes (`Op::Email`), so the listing pages
//! them and a ticket's erasure finds every email about it.

use fleety_actors::email::{Email, EmailCursor, EmailPage, EmailQuery};
use fleety_actors::store::StoreResult;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{from_json, internal, Tables, EMAILS};

/// (project, created_at in ms, email id): a project's emails, newest first by reverse scan.
pub(in crate::store::embedded) const EMAILS_BY_PROJECT: TableDefinition<(&str, i64, &str), ()> =
    TableDefinition::new("emails_by_project");
/// (project, slug, created_at in ms, email id): the emails about a ticket.
pub(in crate::store::embedded) const EMAILS_BY_TICKET: TableDefinition<
    (&str, &str, i64, &str),
    (),
> = TableDefinition::new("emails_by_ticket");

impl Tables<'_> {
    /// Enters an email written now in the indexes; writing it again changes nothing, as its
    /// project, ticket and making never change.
    pub(super) fn index_email(&mut self, e: &Email) -> StoreResult<()> {
        let (project, at) = (e.project_id.as_str(), e.created_at.timestamp_millis());
        self.emails_by_project
            .insert((project, at, e.id.as_str()), ())
            .map_err(internal)?;
        if let Some(slug) = &e.ticket {
            self.emails_by_ticket
                .insert((project, slug.as_str(), at, e.id.as_str()), ())
                .map_err(internal)?;
        }
        Ok(())
    }

    /// Removes every email about the ticket, with its due and index entries.
    pub(super) fn erase_emails(&mut self, project: &str, slug: &str) -> StoreResult<()> {
        let mut entries = Vec::new();
        for row in self
            .emails_by_ticket
            .range::<(&str, &str, i64, &str)>(
                (project, slug, i64::MIN, "")..=(project, slug, i64::MAX, "~"),
            )
            .map_err(internal)?
        {
            let (k, _) = row.map_err(internal)?;
            let (_, _, at, id) = k.value();
            entries.push((at, id.to_owned()));
        }
        for (at, id) in entries {
            let removed = self.emails.remove(id.as_str()).map_err(internal)?;
            if let Some(row) = removed {
                if let Some(due) = from_json::<Email>(row.value())?.next_attempt_at {
                    self.emails_due
                        .remove((due.timestamp_millis(), id.as_str()))
                        .map_err(internal)?;
                }
            }
            self.emails_by_project
                .remove((project, at, id.as_str()))
                .map_err(internal)?;
            self.emails_by_ticket
                .remove((project, slug, at, id.as_str()))
                .map_err(internal)?;
        }
        Ok(())
    }

    /// Indexes the emails stored before the indexes existed, once: when the project index is
    /// empty and emails are not.
    pub(in crate::store::embedded) fn index_stored_emails(&mut self) -> StoreResult<()> {
        if !self.emails_by_project.is_empty().map_err(internal)?
            || self.emails.is_empty().map_err(internal)?
        {
            return Ok(());
        }
        let mut stored = Vec::new();
        for row in self.emails.iter().map_err(internal)? {
            stored.push(from_json::<Email>(row.map_err(internal)?.1.value())?);
        }
        for e in &stored {
            self.index_email(e)?;
        }
        Ok(())
    }
}

/// A page of the project's emails as of `txn`, as the query asks.
pub(in crate::store::embedded) fn list(
    txn: &redb::ReadTransaction,
    project: &str,
    query: &EmailQuery,
) -> StoreResult<EmailPage> {
    let (before_ms, before_id) = match &query.after {
        Some(EmailCursor { at_ms, id }) => (*at_ms, id.as_str()),
        None => (i64::MAX, "~"),
    };
    let want = query.page_size() + 1;
    let mut keys: Vec<(i64, String)> = Vec::with_capacity(want);
    let mut keep = |at: i64, id: &str| {
        // The cursor's own entry is the end of the range, which is inclusive.
        if (at, id) != (before_ms, before_id) {
            keys.push((at, id.to_owned()));
        }
        keys.len() < want
    };
    match &query.ticket {
        Some(slug) => {
            let s = slug.as_str();
            let table = txn.open_table(EMAILS_BY_TICKET).map_err(internal)?;
            let range = table
                .range::<(&str, &str, i64, &str)>(
                    (project, s, i64::MIN, "")..=(project, s, before_ms, before_id),
                )
                .map_err(internal)?;
            for row in range.rev() {
                let (k, _) = row.map_err(internal)?;
                let (_, _, at, id) = k.value();
                if !keep(at, id) {
                    break;
                }
            }
        }
        None => {
            let table = txn.open_table(EMAILS_BY_PROJECT).map_err(internal)?;
            let range = table
                .range::<(&str, i64, &str)>(
                    (project, i64::MIN, "")..=(project, before_ms, before_id),
                )
                .map_err(internal)?;
            for row in range.rev() {
                let (k, _) = row.map_err(internal)?;
                let (_, at, id) = k.value();
                if !keep(at, id) {
                    break;
                }
            }
        }
    }
    let rows = txn.open_table(EMAILS).map_err(internal)?;
    let mut emails = Vec::with_capacity(keys.len());
    for (_, id) in keys {
        if let Some(row) = rows.get(id.as_str()).map_err(internal)? {
            emails.push(from_json::<Email>(row.value())?);
        }
    }
    Ok(EmailPage::of(emails, query))
}
