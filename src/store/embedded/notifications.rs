//! The embedded store's part of the emails to agents ([`fleety_actors::agent_mail`]): members'
//! notification switches, and the outbox's create-once.

use fleety_actors::agent_mail::NotificationPrefs;
use fleety_actors::domain::ProjectId;
use fleety_actors::email::Email;
use fleety_actors::store::{StoreError, StoreResult};

use super::pipeline::Write;
use super::tables::{from_json, internal, NOTIFICATION_PREFS};
use super::EmbeddedStore;

impl EmbeddedStore {
    pub(super) async fn create_email_row(&self, email: &Email) -> StoreResult<bool> {
        match self
            .write("create_email", Write::CreateEmail(email.clone()))
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn notification_prefs(
        &self,
        project: &ProjectId,
        member: uuid::Uuid,
    ) -> StoreResult<Option<NotificationPrefs>> {
        let (project, member) = (project.clone(), member.to_string());
        self.read("get_notification_prefs", move |txn| {
            let rows = txn.open_table(NOTIFICATION_PREFS).map_err(internal)?;
            rows.get((project.as_str(), member.as_str()))
                .map_err(internal)?
                .map(|row| from_json::<NotificationPrefs>(row.value()))
                .transpose()
        })
        .await
    }

    pub(super) async fn put_prefs(&self, prefs: &NotificationPrefs) -> StoreResult<()> {
        let write = Write::PutNotificationPrefs(prefs.clone());
        self.write("put_notification_prefs", write).await
    }

    pub(super) async fn project_prefs(
        &self,
        project: &ProjectId,
    ) -> StoreResult<Vec<NotificationPrefs>> {
        let project = project.clone();
        self.read("list_notification_prefs", move |txn| {
            let rows = txn.open_table(NOTIFICATION_PREFS).map_err(internal)?;
            let p = project.as_str();
            // Member ids are UUIDs in hex-and-dash form, which sort between "" and "~".
            let mut out = Vec::new();
            for row in rows
                .range::<(&str, &str)>((p, "")..(p, "~"))
                .map_err(internal)?
            {
                let (_, value) = row.map_err(internal)?;
                out.push(from_json::<NotificationPrefs>(value.value())?);
            }
            Ok(out)
        })
        .await
    }
}
