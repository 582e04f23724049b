//! The project directory: projects by id, cached in front of the store, and the checks that
//! depend on a project's settings (admin key, allowed origins).
//!
//! Entries are refreshed from the store after [`REFRESH`], so settings changed through another
//! server node take effect within that time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleety_actors::domain::{parse_origin, Project, ProjectId, ProjectName, MAX_ORIGINS};
use fleety_actors::store::{ProjectStore, StoreError};

use crate::auth;

const REFRESH: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Projects {
    store: Arc<dyn ProjectStore>,
    cache: Arc<fleety_actors::FastMap<ProjectId, (Arc<Project>, Instant)>>,
}

/// A project as created: the admin key is returned this once and never stored.
pub struct CreatedProject {
    pub project: Arc<Project>,
    pub admin_key: String,
}

impl Projects {
    pub fn new(store: Arc<dyn ProjectStore>) -> Self {
        Self {
            store,
            cache: Arc::default(),
        }
    }

    /// Warms the cache with every project, so browser preflights can be answered at once.
    pub async fn load_all(&self) -> Result<usize, StoreError> {
        let all = self.store.list_projects().await?;
        let n = all.len();
        for p in all {
            self.cache
                .insert(p.id.clone(), (Arc::new(p), Instant::now()));
        }
        Ok(n)
    }

    /// The project `wanted` picks, among those cached, then (if none is) among all the store
    /// holds: for what names a project only by a digest of its id (a reply address).
    pub async fn find(
        &self,
        wanted: impl Fn(&ProjectId) -> bool,
    ) -> Result<Option<Arc<Project>>, StoreError> {
        let cached = self
            .cache
            .iter()
            .find(|e| wanted(e.key()))
            .map(|e| e.key().clone());
        if let Some(id) = cached {
            return self.get(&id).await;
        }
        let all = self.store.list_projects().await?;
        match all.into_iter().find(|p| wanted(&p.id)) {
            Some(p) => self.get(&p.id).await,
            None => Ok(None),
        }
    }

    pub async fn get(&self, id: &ProjectId) -> Result<Option<Arc<Project>>, StoreError> {
        if let Some(entry) = self.cache.get(id) {
            if entry.1.elapsed() < REFRESH {
                return Ok(Some(entry.0.clone()));
            }
        }
        match self.store.get_project(id).await? {
            Some(p) => {
                let p = Arc::new(p);
                self.cache.insert(id.clone(), (p.clone(), Instant::now()));
                Ok(Some(p))
            }
            None => {
                self.cache.remove(id);
                Ok(None)
            }
        }
    }

    /// Creates a project with a fresh admin key. `id` defaults to a random one.
    pub async fn create(
        &self,
        id: Option<ProjectId>,
        name: ProjectName,
        origins: Vec<String>,
    ) -> Result<CreatedProject, StoreError> {
        let admin_key = auth::generate_admin_key();
        let project = Project {
            id: id.unwrap_or_else(ProjectId::generate),
            name: name.as_str().to_owned(),
            allowed_origins: origins,
            admin_key_hash: auth::hash_key(&admin_key),
            assistant: Default::default(),
            csat_disabled: false,
            identity_secrets: Vec::new(),
            ticket_access: Default::default(),
            retention: Default::default(),
            created_at: fleety_actors::clock::now_millis(),
        };
        self.store.create_project(&project).await?;
        let project = Arc::new(project);
        self.cache
            .insert(project.id.clone(), (project.clone(), Instant::now()));
        Ok(CreatedProject { project, admin_key })
    }

    pub async fn update(&self, project: Project) -> Result<Arc<Project>, StoreError> {
        self.store.update_project(&project).await?;
        let project = Arc::new(project);
        self.cache
            .insert(project.id.clone(), (project.clone(), Instant::now()));
        Ok(project)
    }

    /// Whether any project allows `origin`: answers preflights of endpoints whose project is
    /// only known from the body or token.
    pub fn any_allows(&self, origin: &str) -> bool {
        self.cache.iter().any(|e| allows(&e.value().0, origin))
    }
}

/// Whether the project lets a browser page on `origin` call it.
pub fn allows(project: &Project, origin: &str) -> bool {
    match parse_origin(origin) {
        Ok(origin) => project.allowed_origins.contains(&origin),
        Err(_) => false,
    }
}

/// Parses a list of origins from configuration or a request, normalised and de-duplicated.
pub fn parse_origins<'a>(raw: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for (i, o) in raw.into_iter().enumerate() {
        if i == MAX_ORIGINS {
            return Err(format!("at most {MAX_ORIGINS} allowed origins"));
        }
        let o = parse_origin(o).map_err(|e| e.0)?;
        if !out.contains(&o) {
            out.push(o);
        }
    }
    Ok(out)
}
