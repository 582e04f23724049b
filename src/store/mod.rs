//! Storage backends behind the actors' storage port.

pub mod embedded;
pub mod scylla;

use std::sync::Arc;
use std::time::Duration;

use fleety_actors::store::Store;

use crate::config::{Settings, StorageBackend};

/// Opens the configured backend.
pub async fn open(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    match settings.storage {
        StorageBackend::Embedded => {
            let timing = embedded::ApplyTiming {
                checkpoint_every: Duration::from_millis(settings.store_checkpoint_ms),
                gather: Duration::from_millis(settings.store_apply_gather_ms),
            };
            Ok(Arc::new(embedded::EmbeddedStore::open_with(
                &settings.data_dir,
                timing,
            )?))
        }
        StorageBackend::Scylla => {
            let config =
                scylla::ScyllaConfig::from_settings(settings).map_err(anyhow::Error::msg)?;
            Ok(Arc::new(
                scylla::ScyllaStore::open(&config, settings.scylla_auto_migrate).await?,
            ))
        }
    }
}
