//! Storage backends behind the actors' storage port.

pub mod embedded;

use std::sync::Arc;

use fleety_actors::store::Store;

use crate::config::{Settings, StorageBackend};

/// Opens the configured backend.
pub async fn open(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    match settings.storage {
        StorageBackend::Embedded => Ok(Arc::new(embedded::EmbeddedStore::open(&settings.data_dir)?)),
        StorageBackend::Scylla => anyhow::bail!(
            "FLEETY_STORAGE=scylla: the ScyllaDB backend is not available in this build yet; use \"embedded\""
        ),
    }
}
