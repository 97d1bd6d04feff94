//! The live predictions behind `GET /api/v1/predictions`, the predicted wait of each
//! queue in `GET /api/v1/queues` and a job's ETA: every node's saved models, decoded
//! once and shared by every caller for [`MAX_AGE`] (nodes save them once a minute, so a
//! fresher read would show nothing newer).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobmesh::clock::{Clock, SystemClock};
use jobmesh::predict::live::Predictions;
use jobmesh::store::{Store, StoreError};

/// How long one read serves.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// The SLO the shared read's breach probabilities are about (a request may ask for
/// another).
pub const DEFAULT_SLO_MS: f64 = 30_000.0;

/// The shared read.
#[derive(Debug, Default)]
pub struct PredictionsCache {
    cached: Mutex<Option<(Instant, Arc<Predictions>)>>,
    /// One re-read at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl PredictionsCache {
    fn current(&self) -> Option<Arc<Predictions>> {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < MAX_AGE)
            .map(|(_, p)| p.clone())
    }

    /// The predictions, re-read from `store` if older than [`MAX_AGE`]. A failed read
    /// fails the request and keeps the cached ones.
    pub async fn get(&self, store: &dyn Store) -> Result<Arc<Predictions>, StoreError> {
        if let Some(p) = self.current() {
            return Ok(p);
        }
        let _one = self.refreshing.lock().await;
        if let Some(p) = self.current() {
            return Ok(p);
        }
        let saved = store.load_models().await?;
        // Decoding is CPU work proportional to the models: off the async workers.
        let fresh = tokio::task::spawn_blocking(move || {
            Predictions::from_saved(
                &saved,
                SystemClock.now().0,
                DEFAULT_SLO_MS,
                // An API process does not know the nodes' own `[predict]`
                // settings: the default save interval's staleness.
                jobmesh::config::PredictSection::default().peer_max_age_ms(),
            )
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("computing predictions: {e}")))?;
        let fresh = Arc::new(fresh);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}
