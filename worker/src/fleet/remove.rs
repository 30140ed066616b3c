//! Removal: the source object is gone, so its renditions go too, unless they belong to a newer upload.
//!
//! S3 does not deliver notifications in order, so a removal can arrive after the upload that
//! replaced the object. The rule, in order:
//!
//! 1. **The source exists again** (a HEAD finds it): the removal is superseded, nothing is deleted.
//!    This also covers deleting an old version while a current one remains. Direct delete jobs
//!    (`"action":"delete"`) are explicit and skip this check.
//! 2. **Renditions from a newer upload are kept**: each key the configured presets write for the
//!    source is read (HEAD); one whose `source-sequencer` metadata is greater than the removal's
//!    sequencer (S3's ordering rule: right-pad with zeros, then compare) was made from a later
//!    upload of the same key.
//! 3. **The rest are deleted conditionally** on the ETag just read (`If-Match`), so a rendition
//!    rewritten between the read and the delete is kept too.
//!
//! Idempotent: a second delivery finds nothing left and publishes an event with no `deleted`.

use crate::adapters::events::EventSink;
use crate::adapters::storage::{Deleted, ObjectStore, StoreError};
use crate::fleet::job::{JobContext, JobFailure, META_SOURCE_SEQUENCER, Outcome, job_id};
use imgfleet_shared::envelope::{Origin, Request, compare_sequencers};
use imgfleet_shared::event::{Event, EventSource, EventType, StoredObject, now_ms};
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// What became of one rendition key.
enum Fate {
    Absent,
    Deleted,
    Kept,
}

impl<S: ObjectStore, E: EventSink> JobContext<S, E> {
    /// Deletes the renditions of a removed source and publishes `rendition.deleted`.
    pub async fn remove(&self, request: &Request, attempt: u32) -> Outcome {
        let object = &request.object;
        let marker = format!("removed:{}", object.sequencer.as_deref().or(object.version_id.as_deref()).unwrap_or(""));
        let id = request.options.job_id.clone().unwrap_or_else(|| job_id(&object.bucket, &object.key, Some(&marker)));
        let source = EventSource {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            version_id: object.version_id.clone(),
            ..Default::default()
        };
        let mut event = Event::new(EventType::Deleted, id, source, self.worker_id.clone(), now_ms());
        event.attempt = attempt;
        match self.remove_renditions(request, &mut event).await {
            Ok(()) => {
                event.timestamp_ms = now_ms();
                self.metrics.renditions_deleted.inc_by(event.deleted.len() as u64);
                self.publish(event, Outcome::Deleted).await
            }
            Err(e) => {
                self.count_s3_error(&e);
                self.settle(event, JobFailure::from(e), attempt).await
            }
        }
    }

    async fn remove_renditions(&self, request: &Request, event: &mut Event) -> Result<(), StoreError> {
        let object = &request.object;
        if request.origin != Origin::Direct && self.store.head(&object.bucket, &object.key).await?.is_some() {
            event.reason = Some("the source exists again: a newer upload replaced it".into());
            return Ok(());
        }
        let bucket = self.output.bucket.clone().unwrap_or_else(|| object.bucket.clone());
        let prefix = request.options.output_prefix.as_deref().unwrap_or(&self.output.prefix);
        let mut candidates = BTreeSet::new();
        for preset in &self.catalog.presets {
            match self.output.key_template.preset_keys(prefix, &object.key, preset) {
                Ok(k) => candidates.extend(k),
                Err(e) => tracing::warn!(error = %e, "no rendition keys for this source"),
            }
        }
        let fates = candidates.iter().map(|key| self.remove_one(&bucket, key, object.sequencer.as_deref()));
        for (key, fate) in candidates.iter().zip(futures_util::future::join_all(fates).await) {
            let named = StoredObject { bucket: bucket.clone(), key: key.clone() };
            match fate? {
                Fate::Absent => {}
                Fate::Deleted => event.deleted.push(named),
                Fate::Kept => event.kept.push(named),
            }
        }
        if !event.kept.is_empty() {
            event.reason = Some("renditions made from a newer upload were kept".into());
        } else if event.deleted.is_empty() {
            event.reason = Some("no renditions were stored for this source".into());
        }
        Ok(())
    }

    async fn remove_one(&self, bucket: &str, key: &str, removal: Option<&str>) -> Result<Fate, StoreError> {
        let Some(head) = self.store.head(bucket, key).await? else { return Ok(Fate::Absent) };
        let made_from = head.metadata.get(META_SOURCE_SEQUENCER).map(String::as_str);
        if let (Some(made_from), Some(removal)) = (made_from, removal)
            && compare_sequencers(made_from, removal) == Ordering::Greater
        {
            return Ok(Fate::Kept);
        }
        Ok(match self.store.delete(bucket, key, head.etag.as_deref()).await? {
            Deleted::Deleted => Fate::Deleted,
            Deleted::Changed => Fate::Kept,
            Deleted::Missing => Fate::Absent,
        })
    }
}
