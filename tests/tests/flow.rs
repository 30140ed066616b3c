//! Upload → renditions in S3 → event on the stream → queue empty; every message shape; loop guard;
//! bad uploads; poison messages. Against moto server and Redis on loopback.

use imgfleet_shared::event::{Event, EventType};
use imgfleet_shared::{ErrorKind, ImageFormat};
use imgfleet_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn completed_for<'a>(events: &'a [Event], key: &str) -> Option<&'a Event> {
    events.iter().find(|e| e.source.key == key && e.kind == EventType::Completed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_becomes_renditions_and_a_completed_event() {
    let env = Env::new().await;
    let setup = env.setup("flow", 3, 30).await;
    let worker = start_worker(&env.config(&setup), &env.sdk).await;
    let key = "uploads/u/42/me.jpg";
    env.upload(&setup.bucket, key, photo(1600, 1200)).await;

    let events = env.wait_events(&setup.stream, WAIT, |e| completed_for(e, key).is_some()).await;
    let event = completed_for(&events, key).unwrap();
    assert_eq!(event.v, 1);
    assert_eq!(event.source.bucket, setup.bucket);
    assert_eq!(
        (event.source.width, event.source.height, event.source.format),
        (Some(1600), Some(1200), Some(ImageFormat::Jpeg))
    );
    assert!(event.source.etag.is_some() && event.source.size.is_some());
    assert_eq!(event.attempt, 1);
    assert_eq!(event.worker_id, format!("{}-worker", setup.name));
    assert!(event.placeholder.as_ref().is_some_and(|p| p.len() > 10));
    assert!(event.timings.is_some_and(|t| t.total_ms > 0.0 && t.pipeline.decode_ms > 0.0));
    let expected = [
        ("thumb", ImageFormat::Jpeg, 150, 150),
        ("thumb", ImageFormat::Webp, 150, 150),
        ("medium", ImageFormat::Jpeg, 400, 400),
        ("medium", ImageFormat::Webp, 400, 400),
        ("large", ImageFormat::Jpeg, 800, 600),
        ("large", ImageFormat::Webp, 800, 600),
    ];
    let got: Vec<_> = event.renditions.iter().map(|r| (r.name.as_str(), r.format, r.width, r.height)).collect();
    assert_eq!(got, expected);

    for r in &event.renditions {
        assert_eq!(r.key, format!("renditions/uploads/u/42/me/{}.{}", r.name, r.format.extension()));
        let head = env.s3.head_object().bucket(&r.bucket).key(&r.key).send().await.expect("rendition stored");
        assert_eq!(head.content_type(), Some(r.format.content_type()));
        assert_eq!(head.cache_control(), Some("public, max-age=31536000, immutable"));
        assert_eq!(head.content_length(), Some(r.bytes as i64));
        let meta = head.metadata().cloned().unwrap_or_default();
        assert_eq!(meta.get("source-etag"), event.source.etag.as_ref());
        assert_eq!(meta.get("preset").map(String::as_str), Some("profile"));
        let body = env
            .s3
            .get_object()
            .bucket(&r.bucket)
            .key(&r.key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        match r.format {
            ImageFormat::Jpeg => assert_eq!(&body[..3], &[0xFF, 0xD8, 0xFF]),
            _ => assert_eq!(&body[8..12], b"WEBP"),
        }
    }
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    let metrics = http_get(worker.metrics_addr, "/metrics").await.1;
    assert!(metric(&metrics, "imgfleet_jobs_total{outcome=\"completed\"}") >= 1.0, "{metrics}");
    assert!(metric(&metrics, "imgfleet_jobs_total{outcome=\"ignored\"}") >= 1.0, "the s3:TestEvent is acknowledged");
    assert!(metric(&metrics, "imgfleet_messages_deleted_total") >= 2.0);
    assert!(metric(&metrics, "imgfleet_output_bytes_total{format=\"webp\"}") > 0.0);
    worker.shutdown();
    worker.wait().await;
}

/// An animated GIF through the fleet: still renditions of its first frame, and the event says
/// how many frames the upload had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_animated_gif_becomes_first_frame_renditions() {
    let env = Env::new().await;
    let setup = env.setup("anim", 3, 30).await;
    let worker = start_worker(&env.config(&setup), &env.sdk).await;
    let key = "uploads/u/7/wave.gif";
    env.upload(&setup.bucket, key, animated_gif(320, 240, 5)).await;
    let events = env.wait_events(&setup.stream, WAIT, |e| completed_for(e, key).is_some()).await;
    let event = completed_for(&events, key).unwrap();
    let s = &event.source;
    assert_eq!(
        (s.format, s.width, s.height, s.frames, s.animated),
        (Some(ImageFormat::Gif), Some(320), Some(240), Some(5), true)
    );
    assert_eq!(event.renditions.len(), 6);
    for r in &event.renditions {
        assert!(env.exists(&r.bucket, &r.key).await, "{} stored", r.key);
        assert!(matches!(r.format, ImageFormat::Jpeg | ImageFormat::Webp));
    }
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    worker.shutdown();
    worker.wait().await;
}

/// An iPhone photo (HEIC, held upright: a grid turned by `irot`) through the fleet: upright renditions where
/// the build reads HEIF (the heic feature, as the test suite and the container image build), a failed
/// `unsupported` event that says so where it does not; the message is answered either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iphone_heic_becomes_upright_renditions() {
    let env = Env::new().await;
    let setup = env.setup("heic", 3, 30).await;
    let worker = start_worker(&env.config(&setup), &env.sdk).await;
    let key = "uploads/u/8/IMG_0001.HEIC";
    let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/../worker/tests/fixtures/heif/iphone-portrait.heic");
    env.upload(&setup.bucket, key, std::fs::read(photo).unwrap()).await;
    let events = env.wait_events(&setup.stream, WAIT, |e| e.iter().any(|e| e.source.key == key)).await;
    let event = events.iter().find(|e| e.source.key == key).unwrap();
    if imgfleet_worker::pipeline::decode::HEIF_SUPPORTED {
        assert_eq!(event.kind, EventType::Completed, "{event:?}");
        let s = &event.source;
        assert_eq!((s.format, s.width, s.height), (Some(ImageFormat::Heic), Some(3024), Some(4032)));
        assert_eq!(event.renditions.len(), 6);
        for r in &event.renditions {
            assert!(env.exists(&r.bucket, &r.key).await, "{} stored", r.key);
            assert!(r.width == r.height || r.height > r.width, "{}: {}x{} is upright", r.key, r.width, r.height);
        }
    } else {
        assert_eq!(event.kind, EventType::Failed);
        let error = event.error.as_ref().unwrap();
        assert_eq!(error.kind, ErrorKind::Unsupported);
        assert!(error.message.contains("heic feature"), "{}", error.message);
    }
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    worker.shutdown();
    worker.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_shape_and_key_encoding() {
    let env = Env::new().await;
    let setup = env.setup("shapes", 3, 30).await;
    let dir = std::env::temp_dir().join(format!("{}-presets", setup.name));
    std::fs::create_dir_all(&dir).unwrap();
    let presets = dir.join("presets.toml");
    // AVIF renditions where this build writes them (the test suite's builds do: scripts/test.sh).
    let avif = imgfleet_worker::pipeline::encode::avif_supported();
    std::fs::write(
        &presets,
        r#"
        [[presets]]
        name = "profile"
        [[presets.renditions]]
        name = "thumb"
        width = 150
        height = 150
        fit = "cover"
        formats = [{ format = "jpeg", quality = 85 }]
        [[presets]]
        name = "avatar"
        [[presets.renditions]]
        name = "tiny"
        width = 32
        height = 32
        fit = "cover"
        crop = "attention"
        formats = [{ format = "webp", quality = 70 }]
        [[presets]]
        name = "portrait"
        [[presets.renditions]]
        name = "thumb"
        width = 150
        height = 150
        fit = "cover"
        crop = "face"
        formats = [{ format = "jpeg", quality = 85 }AVIF]
        "#
        .replace("AVIF", if avif { r#", { format = "avif", quality = 60, effort = 6 }"# } else { "" }),
    )
    .unwrap();
    let mut config = env.config(&setup);
    config.presets = Some(presets);
    let worker = start_worker(&config, &env.sdk).await;

    // Through the bucket notification: awkward keys.
    let notified = ["uploads/my photo é+ü&x.jpg", "uploads/plus+sign.jpg", "uploads/ünïcödé/фото.jpg"];
    for key in notified {
        env.upload(&setup.bucket, key, photo(320, 240)).await;
    }
    // Sent by hand for objects outside the notified prefix.
    for key in ["manual/sns.jpg", "manual/eventbridge.jpg", "manual/direct.jpg"] {
        env.upload(&setup.bucket, key, photo(300, 200)).await;
    }
    // A headshot (483x640; its face labelled at 98,78 266x342 in the crop evaluation set).
    let headshot = concat!(env!("CARGO_MANIFEST_DIR"), "/../worker/tests/fixtures/faces/02-headshot-suit.jpg");
    env.upload(&setup.bucket, "manual/face.jpg", std::fs::read(headshot).unwrap()).await;
    let s3_event = format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"{}"}},"object":{{"key":"manual/sns.jpg","size":1000}}}}}}]}}"#,
        setup.bucket
    );
    let sns = serde_json::json!({"Type": "Notification", "MessageId": "m1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": s3_event}).to_string();
    env.send(&setup.queue_url, &sns).await;
    let eventbridge = serde_json::json!({
        "version": "0", "id": "e1", "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
        "time": "2026-11-30T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"version": "0", "bucket": {"name": setup.bucket}, "object": {"key": "manual/eventbridge.jpg", "size": 1000}, "reason": "PutObject"}
    })
    .to_string();
    env.send(&setup.queue_url, &eventbridge).await;
    let direct = serde_json::json!({"v": 1, "bucket": setup.bucket, "key": "manual/direct.jpg", "job_id": "job-direct-1", "preset": "avatar"}).to_string();
    env.send(&setup.queue_url, &direct).await;
    let face = serde_json::json!({"v": 1, "bucket": setup.bucket, "key": "manual/face.jpg", "job_id": "job-face-1", "preset": "portrait"});
    env.send(&setup.queue_url, &face.to_string()).await;
    // Renditions must never trigger processing: a notification for a key under the output prefix.
    let loop_guard = s3_event.replace("manual/sns.jpg", "renditions/uploads/x/thumb.jpg");
    env.send(&setup.queue_url, &loop_guard).await;

    let want: Vec<&str> = notified
        .iter()
        .copied()
        .chain(["manual/sns.jpg", "manual/eventbridge.jpg", "manual/direct.jpg", "manual/face.jpg"])
        .collect();
    let events = env.wait_events(&setup.stream, WAIT, |e| want.iter().all(|k| completed_for(e, k).is_some())).await;
    for key in notified {
        let e = completed_for(&events, key).unwrap();
        assert_eq!(e.renditions[0].key, format!("renditions/{}/thumb.jpg", key.trim_end_matches(".jpg")));
        env.s3
            .head_object()
            .bucket(&setup.bucket)
            .key(&e.renditions[0].key)
            .send()
            .await
            .expect("stored under the decoded key");
    }
    let direct = completed_for(&events, "manual/direct.jpg").unwrap();
    assert_eq!(direct.job_id, "job-direct-1");
    assert_eq!(direct.preset.as_deref(), Some("avatar"));
    assert_eq!(direct.renditions.len(), 1);
    assert_eq!((direct.renditions[0].name.as_str(), direct.renditions[0].format), ("tiny", ImageFormat::Webp));
    // The attention crop's focus, in the upright source's pixels; none where every crop is centred.
    let focus = direct.focus.expect("the attention crop reports its focus");
    assert!(focus.width > 0 && focus.height > 0 && focus.x + focus.width <= 300 && focus.y + focus.height <= 200);
    assert_eq!(direct.faces, None, "no face crop, no face count");
    // The face crop's focus: the face found, with its headroom, and how many faces there were.
    let face = completed_for(&events, "manual/face.jpg").unwrap();
    assert_eq!(face.faces, Some(1));
    let f = face.focus.expect("the face crop reports its focus");
    let (cx, cy) = (98 + 266 / 2, 78 + 342 / 2);
    assert!(f.x < cx && cx < f.x + f.width && f.y < cy && cy < f.y + f.height, "{f:?}");
    assert!(f.x + f.width <= 483 && f.y + f.height <= 640 && f.width < 483, "{f:?}");
    if avif {
        let r = face.renditions.iter().find(|r| r.format == ImageFormat::Avif).expect("an AVIF rendition");
        assert_eq!((r.key.as_str(), r.width, r.height), ("renditions/manual/face/thumb.avif", 150, 150));
        let stored = env.s3.get_object().bucket(&setup.bucket).key(&r.key).send().await.unwrap();
        assert_eq!(stored.content_type(), Some("image/avif"));
        let bytes = stored.body.collect().await.unwrap().into_bytes();
        assert_eq!(bytes.len() as u64, r.bytes);
        let back = imgfleet_worker::pipeline::decode::decode(&bytes, ImageFormat::Avif, &Default::default()).unwrap();
        assert_eq!((back.width, back.height), (150, 150));
    }
    assert_eq!(completed_for(&events, "manual/sns.jpg").unwrap().preset.as_deref(), Some("profile"));
    assert!(events.iter().filter(|e| e.preset.as_deref() == Some("profile")).all(|e| e.focus.is_none()));
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    assert!(events.iter().all(|e| !e.source.key.starts_with("renditions/")), "no job for an output key");
    let metrics = http_get(worker.metrics_addr, "/metrics").await.1;
    assert!(
        metric(&metrics, "imgfleet_jobs_total{outcome=\"ignored\"}") >= 2.0,
        "test event and loop guard: {metrics}"
    );
    worker.shutdown();
    worker.wait().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_image_upload_fails_cleanly_and_is_deleted() {
    let env = Env::new().await;
    let setup = env.setup("nonimage", 3, 30).await;
    let worker = start_worker(&env.config(&setup), &env.sdk).await;
    let key = "uploads/evil.jpg";
    env.upload(
        &setup.bucket,
        key,
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec(),
    )
    .await;
    let events = env.wait_events(&setup.stream, WAIT, |e| e.iter().any(|e| e.source.key == key)).await;
    let e = events.iter().find(|e| e.source.key == key).unwrap();
    assert_eq!(e.kind, EventType::Failed);
    let error = e.error.as_ref().unwrap();
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert!(error.message.contains("SVG"), "{}", error.message);
    assert!(e.renditions.is_empty());
    env.wait_queue_empty(&setup.queue_url, WAIT).await;
    assert_eq!(env.queue_counts(&setup.dlq_url).await, (0, 0), "a bad image is answered, not dead-lettered");
    let listed = env.s3.list_objects_v2().bucket(&setup.bucket).prefix("renditions/").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0));
    worker.shutdown();
    worker.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_ends_in_the_dead_letter_queue() {
    let env = Env::new().await;
    let setup = env.setup("poison", 2, 30).await;
    let config = env.config(&setup);
    let settings = imgfleet_worker::fleet::service::consumer_settings(&config, Duration::from_millis(500));
    let worker = start_worker_with(&config, &env.sdk, settings).await;
    env.send(&setup.queue_url, "this is not a message imgfleet understands").await;

    eventually(WAIT, "poison message never reached the DLQ", || async {
        env.queue_counts(&setup.dlq_url).await.0 >= 1
    })
    .await;
    let events = env.events(&setup.stream).await;
    let failed: Vec<_> =
        events.iter().filter(|e| e.error.as_ref().is_some_and(|x| x.kind == ErrorKind::InvalidMessage)).collect();
    assert_eq!(failed.len(), 1, "one failure event per poison message: {events:#?}");
    assert!(failed[0].job_id.starts_with("message-"));
    let dead = env.sqs.receive_message().queue_url(&setup.dlq_url).send().await.unwrap().messages.unwrap_or_default();
    assert_eq!(dead[0].body(), Some("this is not a message imgfleet understands"));
    let metrics = http_get(worker.metrics_addr, "/metrics").await.1;
    assert!(metric(&metrics, "imgfleet_messages_poison_total") >= 2.0, "{metrics}");
    worker.shutdown();
    worker.wait().await;
}
