//! A photo's whole life against moto server and Redis: renditions with public URLs, deleted with
//! their source, stale removals that must not touch a newer upload's renditions.

use imgfleet_shared::event::{Event, EventType};
use imgfleet_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn of_kind<'a>(events: &'a [Event], kind: EventType, key: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind == kind && e.source.key == key).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_source_deletes_its_renditions_once() {
    let env = Env::new().await;
    let setup = env.setup("removal", 3, 30).await;
    let mut config = env.config(&setup);
    config.public_base_url = Some("https://img.example.com".into());
    let worker = imgfleet_worker::service::start(&config, &env.sdk).await.unwrap();
    let key = "uploads/u/7/me.jpg";
    env.upload(&setup.bucket, key, photo(640, 480)).await;

    let events = env.wait_events(&setup.stream, WAIT, |e| !of_kind(e, EventType::Completed, key).is_empty()).await;
    let completed = of_kind(&events, EventType::Completed, key)[0].clone();
    assert_eq!(completed.renditions.len(), 6);
    let etag = completed.source.etag.clone().unwrap();
    for r in &completed.renditions {
        let url = r.url.as_deref().expect("public URL");
        assert_eq!(url, format!("https://img.example.com/{}?v={}", r.key, &etag[..16]));
        assert!(env.exists(&r.bucket, &r.key).await);
    }

    // moto notifies the removal (ObjectRemoved:Delete, no sequencer).
    env.s3.delete_object().bucket(&setup.bucket).key(key).send().await.unwrap();
    let events = env.wait_events(&setup.stream, WAIT, |e| !of_kind(e, EventType::Deleted, key).is_empty()).await;
    let deleted = of_kind(&events, EventType::Deleted, key)[0];
    let mut gone: Vec<_> = deleted.deleted.iter().map(|o| o.key.clone()).collect();
    let mut made: Vec<_> = completed.renditions.iter().map(|r| r.key.clone()).collect();
    gone.sort();
    made.sort();
    assert_eq!(gone, made, "every format of every rendition is deleted");
    assert!(deleted.kept.is_empty());
    for r in &completed.renditions {
        assert!(!env.exists(&r.bucket, &r.key).await, "{} still exists", r.key);
    }

    // The same removal again, and one for a key that never had renditions: no-op events.
    env.send(&setup.queue_url, &s3_record(&setup.bucket, key, "ObjectRemoved:Delete", "")).await;
    let never = "uploads/never/had.jpg";
    env.send(&setup.queue_url, &s3_record(&setup.bucket, never, "ObjectRemoved:DeleteMarkerCreated", "")).await;
    let events = env
        .wait_events(&setup.stream, WAIT, |e| {
            of_kind(e, EventType::Deleted, key).len() == 2 && of_kind(e, EventType::Deleted, never).len() == 1
        })
        .await;
    for e in [of_kind(&events, EventType::Deleted, key)[1], of_kind(&events, EventType::Deleted, never)[0]] {
        assert!(e.deleted.is_empty() && e.kept.is_empty(), "{e:?}");
        assert!(e.reason.as_deref().is_some_and(|r| r.contains("no renditions")), "{e:?}");
    }
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    let metrics = http_get(worker.metrics_addr, "/metrics").await.1;
    assert_eq!(metric(&metrics, "imgfleet_renditions_deleted_total"), 6.0, "{metrics}");
    assert_eq!(metric(&metrics, "imgfleet_jobs_total{outcome=\"deleted\"}"), 3.0, "{metrics}");
    worker.shutdown();
    worker.wait().await;
}

/// Sources under `manual/` do not notify, so each notification here is sent by hand, with the
/// sequencers S3 would give them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_removal_never_deletes_a_newer_uploads_renditions() {
    let env = Env::new().await;
    let setup = env.setup("race", 3, 30).await;
    let worker = imgfleet_worker::service::start(&env.config(&setup), &env.sdk).await.unwrap();
    let (bucket, key) = (setup.bucket.clone(), "manual/u/9/me.png");
    let deleted_events = |n: usize| move |e: &[Event]| of_kind(e, EventType::Deleted, key).len() == n;

    // Upload (sequencer A0) → renditions that remember it.
    env.upload(&bucket, key, photo(500, 500)).await;
    env.send(&setup.queue_url, &s3_record(&bucket, key, "ObjectCreated:Put", "00000000000000A0")).await;
    let events = env.wait_events(&setup.stream, WAIT, |e| !of_kind(e, EventType::Completed, key).is_empty()).await;
    let renditions = of_kind(&events, EventType::Completed, key)[0].renditions.clone();
    let head = env.s3.head_object().bucket(&bucket).key(&renditions[0].key).send().await.unwrap();
    assert_eq!(head.metadata().and_then(|m| m.get("source-sequencer")).map(String::as_str), Some("00000000000000A0"));

    // 1. A removal delivered while the source exists (the upload that replaced it is there): superseded.
    env.send(&setup.queue_url, &s3_record(&bucket, key, "ObjectRemoved:Delete", "0000000000000090")).await;
    let events = env.wait_events(&setup.stream, WAIT, deleted_events(1)).await;
    let e = of_kind(&events, EventType::Deleted, key)[0];
    assert!(e.deleted.is_empty() && e.reason.as_deref().is_some_and(|r| r.contains("exists")), "{e:?}");

    // 2. The source is gone, but the removal (90) is older than the upload the renditions came from (A0):
    //    every rendition is kept.
    env.s3.delete_object().bucket(&bucket).key(key).send().await.unwrap();
    env.send(&setup.queue_url, &s3_record(&bucket, key, "ObjectRemoved:Delete", "0000000000000090")).await;
    let events = env.wait_events(&setup.stream, WAIT, deleted_events(2)).await;
    let e = of_kind(&events, EventType::Deleted, key)[1];
    assert!(e.deleted.is_empty(), "{e:?}");
    assert_eq!(e.kept.len(), 6, "{e:?}");
    for r in &renditions {
        assert!(env.exists(&r.bucket, &r.key).await, "{} was deleted by a stale removal", r.key);
    }

    // 3. A later removal (B0) deletes them.
    env.send(&setup.queue_url, &s3_record(&bucket, key, "ObjectRemoved:Delete", "00000000000000B0")).await;
    let events = env.wait_events(&setup.stream, WAIT, deleted_events(3)).await;
    let e = of_kind(&events, EventType::Deleted, key)[2];
    assert_eq!((e.deleted.len(), e.kept.len()), (6, 0), "{e:?}");
    for r in &renditions {
        assert!(!env.exists(&r.bucket, &r.key).await);
    }

    // 4. A direct delete job is explicit: it deletes even while the source exists.
    env.upload(&bucket, key, photo(300, 300)).await;
    env.send(&setup.queue_url, &s3_record(&bucket, key, "ObjectCreated:Put", "00000000000000C0")).await;
    env.wait_events(&setup.stream, WAIT, |e| of_kind(e, EventType::Completed, key).len() == 2).await;
    let job = serde_json::json!({"v": 1, "action": "delete", "bucket": bucket, "key": key, "job_id": "app-delete-1"});
    env.send(&setup.queue_url, &job.to_string()).await;
    let events = env.wait_events(&setup.stream, WAIT, deleted_events(4)).await;
    let e = of_kind(&events, EventType::Deleted, key)[3];
    assert_eq!((e.job_id.as_str(), e.deleted.len()), ("app-delete-1", 6), "{e:?}");
    assert!(env.exists(&bucket, key).await, "the source itself is never deleted");
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    worker.shutdown();
    worker.wait().await;
}
