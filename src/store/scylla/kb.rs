//! Knowledge bases (`kb_articles`): a project's articles, in one partition per project.

use async_trait::async_trait;
use fleety_actors::domain::{Article, ProjectId};
use fleety_actors::store::{timed, KbStore, StoreError, StoreResult};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use super::rows::{ArticleRow, ArticleValues};
use super::{prepare, ScyllaStore, LIST_DEADLINE};

/// Rows per page when reading a knowledge base (articles are up to ~200 KB each).
const ARTICLE_PAGE_SIZE: i32 = 25;
const COLUMNS: &str =
    "project_id, article_id, title, body, tags, created_at, updated_at, language, url";

pub(super) struct Statements {
    upsert_article: PreparedStatement,
    select_article_id: PreparedStatement,
    delete_article: PreparedStatement,
    select_articles: PreparedStatement,
}

impl Statements {
    pub(super) async fn prepare(
        session: &Session,
        consistency: Consistency,
        ks: &str,
    ) -> anyhow::Result<Self> {
        let p = |cql: String| prepare(session, consistency, cql, true);
        // Articles are large rows: small pages keep each one well under the request timeout.
        let mut select_articles = p(format!(
            "SELECT {COLUMNS} FROM {ks}.kb_articles WHERE project_id = ?"
        ))
        .await?;
        select_articles.set_page_size(ARTICLE_PAGE_SIZE);
        Ok(Self {
            upsert_article: p(format!(
                "INSERT INTO {ks}.kb_articles ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            select_article_id: p(format!(
                "SELECT article_id FROM {ks}.kb_articles WHERE project_id = ? AND article_id = ?"
            ))
            .await?,
            delete_article: p(format!(
                "DELETE FROM {ks}.kb_articles WHERE project_id = ? AND article_id = ?"
            ))
            .await?,
            select_articles,
        })
    }
}

impl ScyllaStore {
    async fn list_articles_within(&self, project: &ProjectId) -> StoreResult<Vec<Article>> {
        let rows: Vec<ArticleRow> = self
            .all_rows(&self.kb.select_articles, (project.as_str(),))
            .await?;
        rows.into_iter().map(Article::try_from).collect()
    }
}

#[async_trait]
impl KbStore for ScyllaStore {
    async fn put_article(&self, a: &Article) -> StoreResult<()> {
        timed("scylla", "put_article", async {
            self.write_audited(&self.kb.upsert_article, ArticleValues::from(a))
                .await
        })
        .await
    }

    async fn delete_article(&self, project: &ProjectId, id: uuid::Uuid) -> StoreResult<()> {
        timed("scylla", "delete_article", async {
            // Without LWT a DELETE cannot tell whether the row was there; read first. A racing
            // delete of the same article makes both succeed, which is what a user expects.
            let key = (project.as_str(), id);
            if self
                .one_row::<(uuid::Uuid,)>(&self.kb.select_article_id, key)
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound);
            }
            self.write_audited(&self.kb.delete_article, key).await
        })
        .await
    }

    async fn list_articles(&self, project: &ProjectId) -> StoreResult<Vec<Article>> {
        timed("scylla", "list_articles", async {
            tokio::time::timeout(LIST_DEADLINE, self.list_articles_within(project))
                .await
                .map_err(|_| {
                    StoreError::Unavailable("reading the knowledge base took too long".into())
                })?
        })
        .await
    }
}
