//! Projects (`projects`): created once under a claimed id, changed by overwriting the row.

use async_trait::async_trait;
use fleety_actors::domain::{Project, ProjectId};
use fleety_actors::store::{timed, ProjectStore, StoreError, StoreResult};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::rows::{ProjectRow, ProjectValues};
use super::{prepare, ScyllaStore};

const COLUMNS: &str = "project_id, name, allowed_origins, admin_key_hash, created_at, \
                       assistant_name, assistant_greeting, assistant_guidance, csat_disabled, \
                       identity_secrets, ticket_access, retention";

pub(super) struct Statements {
    insert: PreparedStatement,
    upsert: PreparedStatement,
    select: PreparedStatement,
    select_all: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String, idempotent| prepare(session, consistency, cql, idempotent);
        Ok(Self {
            insert: p(
                format!(
                    "INSERT INTO {ks}.projects ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
                ),
                false,
            )
            .await?,
            upsert: p(
                format!("INSERT INTO {ks}.projects ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                true,
            )
            .await?,
            select: p(
                format!("SELECT {COLUMNS} FROM {ks}.projects WHERE project_id = ?"),
                true,
            )
            .await?,
            select_all: p(format!("SELECT {COLUMNS} FROM {ks}.projects"), true).await?,
        })
    }
}

#[async_trait]
impl ProjectStore for ScyllaStore {
    async fn create_project(&self, p: &Project) -> StoreResult<()> {
        timed("scylla", "create_project", async {
            if self
                .claim(&self.projects.insert, ProjectValues::from(p))
                .await?
            {
                Ok(())
            } else {
                Err(StoreError::Conflict)
            }
        })
        .await
    }

    async fn get_project(&self, id: &ProjectId) -> StoreResult<Option<Project>> {
        timed("scylla", "get_project", async {
            self.one_row::<ProjectRow>(&self.projects.select, (id.as_str(),))
                .await?
                .map(Project::try_from)
                .transpose()
        })
        .await
    }

    async fn update_project(&self, p: &Project) -> StoreResult<()> {
        timed("scylla", "update_project", async {
            if self.get_project(&p.id).await?.is_none() {
                return Err(StoreError::NotFound);
            }
            self.write_audited(&self.projects.upsert, ProjectValues::from(p))
                .await
        })
        .await
    }

    async fn list_projects(&self) -> StoreResult<Vec<Project>> {
        timed("scylla", "list_projects", async {
            let rows: Vec<ProjectRow> = self.all_rows(&self.projects.select_all, ()).await?;
            rows.into_iter().map(Project::try_from).collect()
        })
        .await
    }
}
