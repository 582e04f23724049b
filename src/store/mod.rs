//! Storage backends behind the actors' storage port.

pub mod embedded;
pub mod scylla;

use std::sync::Arc;
use std::time::Duration;

use fleety_actors::store::Store;

use crate::config::{ScyllaSettings, StorageBackend, StoreSettings};

/// Opens the configured backend.
pub async fn open(
    store: &StoreSettings,
    scylla: &ScyllaSettings,
) -> anyhow::Result<Arc<dyn Store>> {
    match store.backend {
        StorageBackend::Embedded => {
            let timing = embedded::ApplyTiming {
                checkpoint_every: Duration::from_millis(store.checkpoint_ms),
                gather: Duration::from_millis(store.apply_gather_ms),
            };
            let opened = embedded::EmbeddedStore::open_with(&store.data_dir, timing)?;
            Ok(Arc::new(opened))
        }
        StorageBackend::Scylla => {
            let config = scylla::ScyllaConfig::from_settings(scylla).map_err(anyhow::Error::msg)?;
            let opened = scylla::ScyllaStore::open(&config, scylla.auto_migrate).await?;
            Ok(Arc::new(opened))
        }
    }
}
