//! Cleanup of content no product refers to, one processor a round.

use std::collections::{BTreeMap, HashSet};

use object_store::{ObjectStoreExt, path::Path};

use super::{ContentStore, FIRST_STEP, KEEP_EPOCHS, MANIFEST, SOURCE};
use crate::failure::Failure;

impl ContentStore {
    /// Deletes content that no reference names and that was written [`KEEP_EPOCHS`] or
    /// more epochs before `now_epoch`, and the sources kept for deferred second steps once
    /// their content is complete and from an earlier epoch, or that old; returns how many
    /// objects went.
    pub async fn collect_garbage(&self, now_epoch: u64) -> Result<usize, Failure> {
        let failed =
            |e: object_store::Error| Failure::transient(format!("listing the store failed: {e}"));
        // References first: one written after this listing names content of this epoch or
        // the previous one, which is not old enough to go.
        let referenced: HashSet<String> = self
            .list("products")
            .await
            .map_err(failed)?
            .into_iter()
            .filter_map(|parts| (parts.len() == 5).then(|| parts[4].clone()))
            .collect();
        let mut by_content: BTreeMap<String, Vec<Path>> = BTreeMap::new();
        for parts in self.list("images").await.map_err(failed)? {
            if parts.len() == 4 {
                let location = self.storage.path(&parts.join("/"));
                let content = Self::content_id(&parts[1], parts[2].parse().unwrap_or(u64::MAX));
                by_content.entry(content).or_default().push(location);
            }
        }
        let mut deleted = 0;
        for (content, objects) in by_content {
            let epoch = content
                .rsplit_once('-')
                .and_then(|(_, epoch)| epoch.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            let old = epoch.saturating_add(KEEP_EPOCHS) <= now_epoch;
            if !old || referenced.contains(&content) {
                // A source kept for a deferred second step is read by it, and by the second
                // steps of other products with the same bytes, deferred meanwhile: it goes
                // once the whole set is stored and its epoch is over, or once old.
                let complete = objects.iter().any(|p| p.filename() == Some(MANIFEST));
                if old || (complete && epoch < now_epoch) {
                    for location in objects.iter().filter(|p| p.filename() == Some(SOURCE)) {
                        match self.storage.store().delete(location).await {
                            Ok(()) => deleted += 1,
                            Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => {
                                return Err(Failure::transient(format!(
                                    "deleting a kept source failed: {e}"
                                )));
                            }
                        }
                    }
                }
                continue;
            }
            // The manifests first: a half-deleted set is never taken for complete.
            let (manifests, variants): (Vec<_>, Vec<_>) = objects
                .into_iter()
                .partition(|p| matches!(p.filename(), Some(MANIFEST | FIRST_STEP)));
            for location in manifests.into_iter().chain(variants) {
                match self.storage.store().delete(&location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                    Err(e) => {
                        return Err(Failure::transient(format!(
                            "deleting stored images failed: {e}"
                        )));
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Claims cleanup round `round` (the time divided by `IMAGE_GC_INTERVAL`): true for the
    /// one processor whose claim is stored first, false for every other, so the store is
    /// listed once a round however many replicas run. The claim is an empty object
    /// `gc/<round>` written only if absent; claims of earlier rounds are deleted. A store
    /// that cannot write only-if-absent gets a true from every processor: each cleans up,
    /// which is safe, only slower (the worker cleans up after an error here, too).
    pub async fn claim_cleanup(&self, round: u64) -> Result<bool, Failure> {
        let failed = |e: object_store::Error| {
            Failure::transient(format!("claiming the cleanup round failed: {e}"))
        };
        let create = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        let claim = self.storage.path(&format!("gc/{round}"));
        match self
            .storage
            .store()
            .put_opts(&claim, object_store::PutPayload::new(), create)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => return Ok(true),
            Err(e) => return Err(failed(e)),
        }
        for parts in self.list("gc").await.map_err(failed)? {
            let earlier = parts
                .get(1)
                .and_then(|r| r.parse::<u64>().ok())
                .is_some_and(|r| r < round);
            if earlier {
                let location = self.storage.path(&parts.join("/"));
                match self.storage.store().delete(&location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(failed(e)),
                }
            }
        }
        Ok(true)
    }
}
