//! Replies by email that were posted (`cql/0028_inbound_mail.cql`): one row per mail and
//! ticket, a plain write of its whole record. Two nodes posting one mail at once post it once
//! (the ticket's idempotency key says so) and record the same message, so the later write
//! changes nothing.

use async_trait::async_trait;
use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::inbound_mail::InboundMail;
use fleety_actors::store::{timed, InboundMailStore, StoreError, StoreResult};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::{prepare, ScyllaStore};

pub(super) struct Statements {
    upsert: PreparedStatement,
    select: PreparedStatement,
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
                "INSERT INTO {ks}.inbound_mail (project_id, slug, mail_key, body) VALUES (?, ?, ?, ?)"
            ))
            .await?,
            select: p(format!(
                "SELECT body FROM {ks}.inbound_mail WHERE project_id = ? AND slug = ? AND mail_key = ?"
            ))
            .await?,
        })
    }
}

#[async_trait]
impl InboundMailStore for ScyllaStore {
    async fn put_inbound_mail(&self, mail: &InboundMail) -> StoreResult<()> {
        timed("scylla", "put_inbound_mail", async {
            let body =
                serde_json::to_string(mail).map_err(|e| StoreError::Internal(e.to_string()))?;
            let values = (
                mail.project_id.as_str(),
                mail.slug.as_str(),
                mail.key.as_str(),
                body,
            );
            self.write(&self.inbound_mail.upsert, values).await
        })
        .await
    }

    async fn get_inbound_mail(
        &self,
        project: &ProjectId,
        slug: &Slug,
        key: &str,
    ) -> StoreResult<Option<InboundMail>> {
        timed("scylla", "get_inbound_mail", async {
            let values = (project.as_str(), slug.as_str(), key);
            let row: Option<(String,)> = self.one_row(&self.inbound_mail.select, values).await?;
            row.map(|(body,)| {
                serde_json::from_str(&body)
                    .map_err(|e| StoreError::Internal(format!("corrupt inbound mail: {e}")))
            })
            .transpose()
        })
        .await
    }
}
