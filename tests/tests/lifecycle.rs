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
    let worker = start_worker(&config, &env.sdk).await;
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
    let worker = start_worker(&env.config(&setup), &env.sdk).await;
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

/// Runs the `imgfleet` command line against the test services; (exit code, stdout, stderr).
fn imgfleet(env: &Env, setup: &Setup, args: &[&str]) -> (i32, String, String) {
    let out = imgfleet_command(env!("CARGO_BIN_EXE_imgfleet-e2e-worker"), env, setup, &env.endpoint)
        .args(args)
        .output()
        .expect("imgfleet runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_enqueues_exactly_the_sources_that_need_renditions() {
    use imgfleet_worker::adapters::storage::{ObjectStore, PutOptions, S3Store};
    let env = Env::new().await;
    let setup = env.setup("backfill", 3, 30).await;
    drain(&env, &setup.queue_url).await; // the s3:TestEvent
    let bucket = setup.bucket.clone();
    let catalog = imgfleet_shared::PresetCatalog::default();
    let preset = catalog.default_preset().clone();
    let store = S3Store::new(env.s3.clone());

    // 300 sources under legacy/ (not notified), by i % 10: 0–3 done, 4 made by an older preset,
    // 5 made from an earlier upload of the key, 6 half done, 7–9 never processed.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300u32 {
        let (store, preset, bucket) = (store.clone(), preset.clone(), bucket.clone());
        tasks.spawn(async move {
            let key = format!("legacy/u/{i:03}/photo.jpg");
            let body = format!("not decoded by a backfill {i}").into_bytes();
            store.put(&bucket, &key, body, &PutOptions::default()).await.unwrap();
            let etag = store.head(&bucket, &key).await.unwrap().unwrap().etag.unwrap();
            let keys = imgfleet_shared::keys::KeyTemplate::default().preset_keys("renditions/", &key, &preset).unwrap();
            let (fingerprint, source_etag, count) = match i % 10 {
                0..=3 => (preset.fingerprint(), etag, keys.len()),
                4 => ("an-older-preset".to_owned(), etag, keys.len()),
                5 => (preset.fingerprint(), "an-earlier-upload".to_owned(), keys.len()),
                6 => (preset.fingerprint(), etag, keys.len() / 2),
                _ => (preset.fingerprint(), etag, 0),
            };
            let metadata = [("preset-fingerprint".to_owned(), fingerprint), ("source-etag".to_owned(), source_etag)];
            let options = PutOptions { metadata: metadata.into(), ..PutOptions::default() };
            for k in &keys[..count] {
                store.put(&bucket, k, b"r".to_vec(), &options).await.unwrap();
            }
        });
        if tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    env.upload(&bucket, "legacy/empty-folder/", vec![]).await;
    // A key so long that no rendition key fits in S3's 1,024 bytes: skipped, never enqueued.
    env.upload(&bucket, &format!("legacy/z{}.jpg", "z".repeat(1000)), photo(8, 8)).await;
    let needs: Vec<String> =
        (0..300u32).filter(|i| i % 10 >= 4).map(|i| format!("legacy/u/{i:03}/photo.jpg")).collect();

    // A dry run over the whole bucket, in pages of 50: renditions and the folder marker are skipped.
    let request = imgfleet_worker::commands::backfill::BackfillRequest {
        bucket: bucket.clone(),
        prefix: String::new(),
        preset_name: None,
        preset: preset.clone(),
        since: None,
        extensions: vec![],
        dry_run: true,
        rate: 1000.0,
        start_after: None,
        limit: None,
        output_bucket: None,
        output_prefix: "renditions/".into(),
        key_template: imgfleet_shared::keys::KeyTemplate::default(),
        max_source_bytes: catalog.limits.max_source_bytes,
        page_size: 50,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let store = imgfleet_worker::adapters::storage::S3Store::new(env.s3.clone());
    let queue = imgfleet_worker::adapters::queue::SqsQueue::new(env.sqs.clone(), &setup.queue_url);
    let mut seen = 0;
    let dry = imgfleet_worker::commands::backfill::run(&store, &queue, &request, &stop, |_| seen += 1).await.unwrap();
    assert!(seen > 4, "progress is reported along the way");
    assert_eq!((dry.up_to_date, dry.missing, dry.stale, dry.enqueued), (120, 120, 60, 0), "{dry:?}");
    assert_eq!(dry.listed, dry.skipped + 300);
    assert!(dry.complete);
    assert_eq!(env.queue_counts(&setup.queue_url).await, (0, 0), "a dry run sends nothing");

    // The command line: stop after 70 objects, then resume from the key it printed, paced to 100/s.
    let (code, out, err) =
        imgfleet(&env, &setup, &["backfill", "--bucket", &bucket, "--prefix", "legacy/", "--limit", "70", "--json"]);
    assert_eq!(code, 0, "{err}");
    let first: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((first["listed"].as_u64(), first["complete"].as_bool()), (Some(70), Some(false)), "{out}");
    let resume = first["last_key"].as_str().unwrap().to_owned();
    assert!(err.contains(&format!("--start-after '{resume}'")), "{err}");
    let started = std::time::Instant::now();
    let (code, out, err) = imgfleet(
        &env,
        &setup,
        &[
            "backfill",
            "--bucket",
            &bucket,
            "--prefix",
            "legacy/",
            "--start-after",
            &resume,
            "--rate",
            "100/s",
            "--json",
        ],
    );
    let elapsed = started.elapsed();
    assert_eq!(code, 0, "{err}");
    let second: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(second["complete"].as_bool(), Some(true), "{out}");
    assert_eq!(first["listed"].as_u64().unwrap() + second["listed"].as_u64().unwrap(), 302, "every key listed once");
    let enqueued_second = second["enqueued"].as_u64().unwrap();
    assert_eq!(first["enqueued"].as_u64().unwrap() + enqueued_second, needs.len() as u64);
    // Paced: batches of 10 at 100 messages a second.
    assert!(elapsed.as_secs_f64() >= (enqueued_second - 10) as f64 / 100.0, "{elapsed:?} for {enqueued_second}");

    let mut jobs: Vec<String> = drain(&env, &setup.queue_url)
        .await
        .iter()
        .map(|body| match imgfleet_shared::envelope::parse_message(body) {
            Ok(imgfleet_shared::envelope::Message::Requests(r)) => {
                assert!(r[0].is_create() && r[0].object.etag.is_some(), "{body}");
                r[0].object.key.clone()
            }
            other => panic!("{body}: {other:?}"),
        })
        .collect();
    jobs.sort();
    assert_eq!(jobs, needs, "exactly the sources needing renditions, each once");

    // Nothing was modified after the far future.
    let (code, out, err) = imgfleet(
        &env,
        &setup,
        &["backfill", "--bucket", &bucket, "--prefix", "legacy/", "--since", "2999-01-01", "--dry-run", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let none: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((none["skipped"].as_u64(), none["enqueued"].as_u64()), (Some(302), Some(0)), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_post_uploads_straight_to_the_bucket_and_is_processed() {
    let env = Env::new().await;
    let setup = env.setup("presign", 3, 30).await;
    let worker = start_worker(&env.config(&setup), &env.sdk).await;
    let key = "uploads/u/5/avatar.jpg";
    let (code, out, err) = imgfleet(
        &env,
        &setup,
        &[
            "presign",
            "--bucket",
            &setup.bucket,
            "--key",
            key,
            "--content-type",
            "image/jpeg",
            "--max-bytes",
            "2000000",
            "--expires",
            "10m",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let post: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(post["url"], format!("{}/{}", env.endpoint, setup.bucket));
    let fields: Vec<(String, String)> =
        post["fields"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    let photo = photo(900, 700);
    let (status, body) = http_post_form(post["url"].as_str().unwrap(), &fields, &photo).await;
    assert!((200..300).contains(&status), "{status} {body}");
    let head = env.s3.head_object().bucket(&setup.bucket).key(key).send().await.unwrap();
    assert_eq!(head.content_length(), Some(photo.len() as i64));
    let events = env.wait_events(&setup.stream, WAIT, |e| !of_kind(e, EventType::Completed, key).is_empty()).await;
    assert_eq!(of_kind(&events, EventType::Completed, key)[0].renditions.len(), 6);

    let (code, _, err) =
        imgfleet(&env, &setup, &["presign", "--bucket", "b", "--key", "k", "--content-type", "text/html"]);
    assert_eq!(code, 2);
    assert!(err.contains("not an image type"), "{err}");
    worker.shutdown();
    worker.wait().await;
}

/// S3 itself enforces the policy. moto accepts any POST upload, so this runs against s3s-fs, an S3
/// server that checks SigV4 POST signatures and policies (started by `scripts/services.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_presigned_post_policy_is_enforced_by_s3() {
    use imgfleet_worker::commands::presign::{PostPolicyRequest, presign_post};
    let endpoint = std::env::var("IMGFLEET_TEST_POLICY_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5100".into());
    let credentials = aws_credential_types::Credentials::new("imgfleet", "imgfleet-secret", None, None, "tests");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials.clone())
        .load()
        .await;
    let s3 = imgfleet_worker::fleet::service::s3_client(&sdk);
    let bucket = format!("policy-{}", std::process::id());
    if let Err(e) = s3.create_bucket().bucket(&bucket).send().await {
        assert!(
            s3.head_bucket().bucket(&bucket).send().await.is_ok(),
            "s3s-fs at {endpoint}: run scripts/services.sh start ({e:?})"
        );
    }
    let request = PostPolicyRequest {
        bucket: bucket.clone(),
        key: "uploads/u/1/me.jpg".into(),
        content_type: "image/jpeg".into(),
        max_bytes: 5_000,
        expires_in: Duration::from_secs(600),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.clone()),
    };
    let post = presign_post(&request, &credentials, std::time::SystemTime::now()).unwrap();
    let form = |post: &imgfleet_worker::commands::presign::PresignedPost| -> Vec<(String, String)> {
        post.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let refused = |answer: &(u16, String), status: u16, code: &str| {
        assert_eq!(answer.0, status, "{answer:?}");
        assert!(answer.1.contains(code), "expected {code}: {answer:?}");
    };

    // Within the policy: stored.
    let (status, body) = http_post_form(&post.url, &form(&post), &[7u8; 4_000]).await;
    assert!((200..300).contains(&status), "{status} {body}");
    let head = s3.head_object().bucket(&bucket).key(&request.key).send().await.unwrap();
    assert_eq!(head.content_length(), Some(4_000));

    // Over the size limit, another content type, a tampered signature, another key, an expired policy.
    refused(&http_post_form(&post.url, &form(&post), &[7u8; 6_000]).await, 400, "EntityTooLarge");
    let mut fields = form(&post);
    fields.iter_mut().filter(|(k, _)| k == "Content-Type").for_each(|(_, v)| *v = "text/html".into());
    refused(&http_post_form(&post.url, &fields, b"<html>").await, 400, "InvalidPolicyDocument");
    let mut fields = form(&post);
    fields.iter_mut().filter(|(k, _)| k == "x-amz-signature").for_each(|(_, v)| *v = "0".repeat(64));
    refused(&http_post_form(&post.url, &fields, &[7u8; 100]).await, 403, "SignatureDoesNotMatch");
    let mut fields = form(&post);
    fields.iter_mut().filter(|(k, _)| k == "key").for_each(|(_, v)| *v = "uploads/someone-else.jpg".into());
    refused(&http_post_form(&post.url, &fields, &[7u8; 100]).await, 400, "InvalidPolicyDocument");
    // Signed five minutes ago for one minute (within S3's 15 minutes of allowed clock skew).
    let short = PostPolicyRequest { expires_in: Duration::from_secs(60), ..request.clone() };
    let expired = presign_post(&short, &credentials, std::time::SystemTime::now() - Duration::from_secs(300)).unwrap();
    refused(&http_post_form(&expired.url, &form(&expired), &[7u8; 100]).await, 403, "AccessDenied");
    assert!(s3.head_object().bucket(&bucket).key("uploads/someone-else.jpg").send().await.is_err());
}

/// Keys that try to climb out of the output prefix: every object the worker writes is under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_source_keys_never_write_outside_the_output_prefix() {
    let env = Env::new().await;
    let setup = env.setup("escape", 3, 30).await;
    let worker = start_worker(&env.config(&setup), &env.sdk).await;
    let long = format!("manual/{}.jpg", "x".repeat(1000));
    let hostile = [
        "manual/../../../etc/passwd.jpg",
        "/manual/absolute.jpg",
        "manual/./dot/../dotdot.jpg",
        "manual/ctl\u{1}\u{7}\u{1b}[31m.jpg",
        "manual//double//slash.jpg",
        "..",
        long.as_str(),
    ];
    for key in hostile {
        env.upload(&setup.bucket, key, photo(64, 48)).await;
        let job = serde_json::json!({"v": 1, "bucket": setup.bucket, "key": key});
        env.send(&setup.queue_url, &job.to_string()).await;
    }
    let events =
        env.wait_events(&setup.stream, WAIT, |e| hostile.iter().all(|k| e.iter().any(|ev| ev.source.key == *k))).await;
    let long_event = events.iter().find(|e| e.source.key == long).unwrap();
    assert_eq!(long_event.kind, EventType::Failed, "a rendition key over 1024 bytes is refused");
    assert_eq!(long_event.error.as_ref().unwrap().kind, imgfleet_shared::ErrorKind::InvalidMessage);
    for e in events.iter().filter(|e| e.source.key != long) {
        assert_eq!(e.kind, EventType::Completed, "{e:?}");
        for r in &e.renditions {
            assert!(r.key.starts_with("renditions/"), "{} -> {}", e.source.key, r.key);
            assert!(!r.key.split('/').any(|s| s == ".." || s == "." || s.is_empty()), "{}", r.key);
            assert!(!r.key.chars().any(char::is_control), "{:?}", r.key);
        }
    }
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    // Keys with control characters only list with URL encoding (XML cannot carry them).
    let listed = env
        .s3
        .list_objects_v2()
        .bucket(&setup.bucket)
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .send()
        .await
        .unwrap();
    let keys: Vec<String> =
        listed.contents().iter().map(|o| imgfleet_shared::envelope::decode_s3_key(o.key().unwrap()).unwrap()).collect();
    let written: Vec<&String> = keys.iter().filter(|k| !hostile.contains(&k.as_str())).collect();
    assert_eq!(written.len(), 6 * (hostile.len() - 1), "{written:#?}");
    assert!(written.iter().all(|k| k.starts_with("renditions/")), "{written:#?}");
    worker.shutdown();
    worker.wait().await;
}
