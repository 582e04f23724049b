//! Storage backends behind the actors' storage port.

pub mod embedded;
pub mod scylla;

use std::sync::Arc;

use fleety_actors::store::Store;

use crate::config::{StorageBackend, StoreSettings};

/// Opens the configured backend.
pub async fn open(
    store: &StoreSettings,
    scylla: &scylla::ScyllaConfig,
) -> anyhow::Result<Arc<dyn Store>> {
    match store.backend {
        StorageBackend::Embedded => {
            let timing = embedded::ApplyTiming {
                checkpoint_every: store.checkpoint,
                gather: store.apply_gather,
            };
            let opened = embedded::EmbeddedStore::open_with(&store.data_dir, timing)?;
            Ok(Arc::new(opened))
        }
        StorageBackend::Scylla => {
            let opened = scylla::ScyllaStore::open(scylla).await?;
            opened.set_audit_retention_days(store.audit_retention_days);
            Ok(Arc::new(opened))
        }
    }
}
