//! Contact erasure (`cql/0033_contact_erasure.cql`): deleting a contact's row and its ticket
//! index, and the contact erasures begun and not finished.
//!
//! The contact's tickets are erased before, each by the ticket's erasure ([`super::erase`]);
//! the index goes first here and the row last, so a retry still finds the contact.

use fleety_actors::contact::{order_key, ContactErasure};
use fleety_actors::domain::ProjectId;
use fleety_actors::store::{ContactStore, StoreError, StoreResult};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use uuid::Uuid;

use super::{prepare, ScyllaStore};

pub(super) struct Statements {
    delete_tickets: PreparedStatement,
    delete_contact: PreparedStatement,
    insert_erasure: PreparedStatement,
    delete_erasure: PreparedStatement,
    select_erasures: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            delete_tickets: p(format!(
                "DELETE FROM {ks}.contact_tickets WHERE project_id = ? AND contact_id = ?"
            ))
            .await?,
            delete_contact: p(format!(
                "DELETE FROM {ks}.contacts WHERE project_id = ? AND contact_id = ?"
            ))
            .await?,
            insert_erasure: p(format!(
                "INSERT INTO {ks}.contact_erasures (shard, project_id, contact_id, body) VALUES (0, ?, ?, ?)"
            ))
            .await?,
            delete_erasure: p(format!(
                "DELETE FROM {ks}.contact_erasures WHERE shard = 0 AND project_id = ? AND contact_id = ?"
            ))
            .await?,
            select_erasures: p(format!(
                "SELECT body FROM {ks}.contact_erasures WHERE shard = 0"
            ))
            .await?,
        })
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("corrupt contact erasure: {e}"))
}

impl ScyllaStore {
    pub(super) async fn erase_contact_rows(
        &self,
        project: &ProjectId,
        id: Uuid,
    ) -> StoreResult<bool> {
        let existed = self.get_contact(project, id).await?.is_some();
        let values = (project.as_str(), order_key(id));
        self.write(&self.contact_erase.delete_tickets, values.clone())
            .await?;
        self.write(&self.contact_erase.delete_contact, values)
            .await?;
        Ok(existed)
    }

    pub(super) async fn put_contact_erasure_row(&self, e: &ContactErasure) -> StoreResult<()> {
        let body = serde_json::to_string(e).map_err(corrupt)?;
        let values = (e.project_id.as_str(), order_key(e.contact_id), body);
        self.write(&self.contact_erase.insert_erasure, values).await
    }

    pub(super) async fn delete_contact_erasure_row(
        &self,
        project: &ProjectId,
        id: Uuid,
    ) -> StoreResult<()> {
        let values = (project.as_str(), order_key(id));
        self.write(&self.contact_erase.delete_erasure, values).await
    }

    pub(super) async fn contact_erasure_rows(&self) -> StoreResult<Vec<ContactErasure>> {
        let rows: Vec<(Option<String>,)> = self
            .all_rows(&self.contact_erase.select_erasures, ())
            .await?;
        rows.into_iter()
            .filter_map(|(body,)| body)
            .map(|b| serde_json::from_str(&b).map_err(corrupt))
            .collect()
    }
}
