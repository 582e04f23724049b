//! The CQL store's part of the emails to agents ([`fleety_actors::agent_mail`]): members'
//! notification switches (`cql/0031_agent_mail.cql`), one partition per project.

use fleety_actors::agent_mail::NotificationPrefs;
use fleety_actors::domain::ProjectId;
use fleety_actors::store::{timed, StoreResult};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use uuid::Uuid;

use super::{internal, prepare, ScyllaStore};

pub(super) struct Statements {
    upsert: PreparedStatement,
    select: PreparedStatement,
    select_project: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        Ok(Self {
            upsert: p(format!("INSERT INTO {ks}.notification_prefs (project_id, member_id, body) VALUES (?, ?, ?)")).await?,
            select: p(format!("SELECT body FROM {ks}.notification_prefs WHERE project_id = ? AND member_id = ?")).await?,
            select_project: p(format!("SELECT body FROM {ks}.notification_prefs WHERE project_id = ?")).await?,
        })
    }
}

fn parse(body: Option<String>) -> StoreResult<Option<NotificationPrefs>> {
    body.map(|b| serde_json::from_str(&b).map_err(internal))
        .transpose()
}

impl ScyllaStore {
    pub(super) async fn notification_prefs(
        &self,
        project: &ProjectId,
        member: Uuid,
    ) -> StoreResult<Option<NotificationPrefs>> {
        timed("scylla", "get_notification_prefs", async {
            let st = &self.agent_mail.select;
            let row = self
                .one_row::<(Option<String>,)>(st, (project.as_str(), member))
                .await?;
            parse(row.and_then(|(b,)| b))
        })
        .await
    }

    pub(super) async fn put_prefs(&self, prefs: &NotificationPrefs) -> StoreResult<()> {
        timed("scylla", "put_notification_prefs", async {
            let body = serde_json::to_string(prefs).map_err(internal)?;
            let values = (prefs.project_id.as_str(), prefs.member_id, body);
            self.write(&self.agent_mail.upsert, values).await
        })
        .await
    }

    pub(super) async fn project_prefs(
        &self,
        project: &ProjectId,
    ) -> StoreResult<Vec<NotificationPrefs>> {
        timed("scylla", "list_notification_prefs", async {
            let st = &self.agent_mail.select_project;
            let rows = self
                .all_rows::<(Option<String>,)>(st, (project.as_str(),))
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for (body,) in rows {
                out.extend(parse(body)?);
            }
            Ok(out)
        })
        .await
    }
}
