//! Contacts (`cql/0025_contacts.cql`): a project's known visitors in one partition, and the
//! tickets each opened.
//!
//! A contact is a plain write of its whole row: of two nodes meeting one user at once, the
//! later write stands. A contact's ticket entry is written with the ticket's other index rows,
//! before the ticket claims its slug; an entry whose ticket is missing or is another's (the
//! creation lost its slug) is skipped on reading.

use async_trait::async_trait;
use fleety_actors::contact::{order_key, Contact, ContactPage, ContactQuery};
use fleety_actors::domain::{ProjectId, Slug, Ticket};
use fleety_actors::store::{timed, ContactStore, StoreError, StoreResult, TicketStore};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use uuid::Uuid;

use super::{prepare, ScyllaStore};

/// Tickets one contact's listing reads at most.
const MAX_CONTACT_TICKETS: usize = 100;

pub(super) struct Statements {
    upsert: PreparedStatement,
    select: PreparedStatement,
    select_after: PreparedStatement,
    insert_ticket: PreparedStatement,
    select_tickets: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            upsert: p(format!(
                "INSERT INTO {ks}.contacts (project_id, contact_id, body) VALUES (?, ?, ?)"
            ))
            .await?,
            select: p(format!(
                "SELECT body FROM {ks}.contacts WHERE project_id = ? AND contact_id = ?"
            ))
            .await?,
            select_after: p(format!(
                "SELECT body FROM {ks}.contacts WHERE project_id = ? AND contact_id > ? LIMIT ?"
            ))
            .await?,
            insert_ticket: p(format!(
                "INSERT INTO {ks}.contact_tickets (project_id, contact_id, created_at, slug) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            select_tickets: p(format!(
                "SELECT slug FROM {ks}.contact_tickets WHERE project_id = ? AND contact_id = ? LIMIT ?"
            ))
            .await?,
        })
    }
}

fn decode(body: &str) -> StoreResult<Contact> {
    serde_json::from_str(body).map_err(|e| StoreError::Internal(format!("corrupt contact: {e}")))
}

impl ScyllaStore {
    /// The contact's entry for a ticket it opens; nothing for a ticket without a contact.
    pub(super) async fn contact_ticket_row(&self, t: &Ticket) -> StoreResult<()> {
        let Some(c) = &t.contact else {
            return Ok(());
        };
        let values = (
            t.project_id.as_str(),
            order_key(c.id),
            t.created_at,
            t.slug.as_str(),
        );
        self.write(&self.contacts.insert_ticket, values).await
    }
}

#[async_trait]
impl ContactStore for ScyllaStore {
    async fn put_contact(&self, c: &Contact) -> StoreResult<()> {
        timed("scylla", "put_contact", async {
            let body = serde_json::to_string(c).map_err(|e| StoreError::Internal(e.to_string()))?;
            let values = (c.project_id.as_str(), order_key(c.id), body);
            self.write(&self.contacts.upsert, values).await
        })
        .await
    }

    async fn get_contact(&self, project: &ProjectId, id: Uuid) -> StoreResult<Option<Contact>> {
        timed("scylla", "get_contact", async {
            let row: Option<(String,)> = self
                .one_row(&self.contacts.select, (project.as_str(), order_key(id)))
                .await?;
            row.map(|(body,)| decode(&body)).transpose()
        })
        .await
    }

    async fn list_contacts(
        &self,
        project: &ProjectId,
        query: &ContactQuery,
    ) -> StoreResult<ContactPage> {
        timed("scylla", "list_contacts", async {
            // A plain page needs one row past it; a search at most its scan.
            let wanted = match query.q {
                Some(_) => query.scan_limit(),
                None => query.limit.clamp(1, 100) + 1,
            };
            let after = query.after.map(order_key).unwrap_or_default();
            let values = (project.as_str(), after, wanted as i32);
            let rows: Vec<(String,)> = self.all_rows(&self.contacts.select_after, values).await?;
            query.page(rows.iter().map(|(body,)| decode(body)))
        })
        .await
    }

    async fn contact_tickets(
        &self,
        project: &ProjectId,
        contact: Uuid,
        limit: usize,
    ) -> StoreResult<Vec<Ticket>> {
        timed("scylla", "contact_tickets", async {
            let limit = limit.min(MAX_CONTACT_TICKETS);
            let values = (project.as_str(), order_key(contact), limit as i32);
            let rows: Vec<(String,)> = self.all_rows(&self.contacts.select_tickets, values).await?;
            let reads = rows
                .iter()
                .filter_map(|(slug,)| Slug::parse(slug).ok())
                .map(|slug| async move { self.get_ticket(project, &slug).await });
            let mut out = Vec::with_capacity(rows.len());
            for ticket in futures_util::future::join_all(reads).await {
                if let Some(t) = ticket? {
                    if t.contact.as_ref().is_some_and(|c| c.id == contact) {
                        out.push(t);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn erase_contact(&self, project: &ProjectId, id: Uuid) -> StoreResult<bool> {
        timed(
            "scylla",
            "erase_contact",
            self.erase_contact_rows(project, id),
        )
        .await
    }

    async fn put_contact_erasure(
        &self,
        erasure: &fleety_actors::contact::ContactErasure,
    ) -> StoreResult<()> {
        let put = self.put_contact_erasure_row(erasure);
        timed("scylla", "put_contact_erasure", put).await
    }

    async fn delete_contact_erasure(&self, project: &ProjectId, id: Uuid) -> StoreResult<()> {
        let delete = self.delete_contact_erasure_row(project, id);
        timed("scylla", "delete_contact_erasure", delete).await
    }

    async fn pending_contact_erasures(
        &self,
    ) -> StoreResult<Vec<fleety_actors::contact::ContactErasure>> {
        timed(
            "scylla",
            "pending_contact_erasures",
            self.contact_erasure_rows(),
        )
        .await
    }
}
