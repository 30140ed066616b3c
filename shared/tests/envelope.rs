//! `envelope::parse_message` against recorded message shapes in `tests/fixtures/`.

use std::path::Path;

use imgfleet_shared::envelope::*;

/// The key both moto and LocalStack fixtures encode, decoded.
const PHOTO_KEY: &str = "incoming/my photo é+ü&x.jpg";

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn requests(name: &str) -> Vec<Request> {
    match parse_message(&fixture(name)) {
        Ok(Message::Requests(requests)) => requests,
        other => panic!("{name}: expected requests, got {other:?}"),
    }
}

fn single(name: &str) -> Request {
    let mut all = requests(name);
    assert_eq!(all.len(), 1, "{name}: expected one request, got {all:?}");
    all.remove(0)
}

/// Parses a body that must fail, and returns the error's Display.
fn error_of(body: &str) -> String {
    match parse_message(body) {
        Err(error) => error.to_string(),
        Ok(message) => panic!("expected an error for {body:?}, got {message:?}"),
    }
}

fn fixture_error(name: &str) -> String {
    error_of(&fixture(name))
}

fn assert_mentions(message: &str, words: &[&str]) {
    for word in words {
        assert!(message.contains(word), "error {message:?} does not mention {word:?}");
    }
}

// --- S3 event notifications -------------------------------------------------

#[test]
fn s3_put_from_moto_decodes_plus_and_percent() {
    let request = single("s3_put_moto.json");
    assert_eq!(request.action, Action::Created);
    assert!(request.is_create());
    assert_eq!(request.event_name, "ObjectCreated:Put");
    assert_eq!(request.origin, Origin::S3);
    assert_eq!(
        request.object,
        ObjectRef {
            bucket: "uploads".into(),
            key: PHOTO_KEY.into(),
            size: Some(12345),
            etag: Some("e05a0c0fd64a0e5a1e0f4f8a1b2c3d4e".into()),
            version_id: None,
            sequencer: None,
        }
    );
    assert_eq!(request.options, JobOptions::default());
}

#[test]
fn s3_put_from_localstack_decodes_percent_20() {
    let request = single("s3_put_localstack.json");
    assert_eq!(request.object.key, PHOTO_KEY);
    assert_eq!(request.object.size, Some(12345));
    assert_eq!(request.object.version_id, None, "null versionId is absent");
    assert_eq!(request.object.sequencer.as_deref(), Some("0062E99A88DC407460"));
    assert_eq!(request.origin, Origin::S3);
}

#[test]
fn s3_multipart_upload_keeps_version_and_multipart_etag() {
    let request = single("s3_multipart_upload.json");
    assert_eq!(request.action, Action::Created);
    assert_eq!(request.event_name, "ObjectCreated:CompleteMultipartUpload");
    assert_eq!(request.object.key, "uploads/u/42/holiday 2026/IMG_0001.JPG");
    assert_eq!(request.object.size, Some(26_214_400));
    assert_eq!(request.object.etag.as_deref(), Some("4af981f98d22a0b9979da24b259e5e42-5"));
    assert_eq!(request.object.version_id.as_deref(), Some("uhggCJ2_B6gU2JaXWXebnXFDstO0ID6G"));
    assert_eq!(request.object.sequencer.as_deref(), Some("0064D3901D00059242"));
}

#[test]
fn s3_two_records_keep_order_and_actions() {
    let all = requests("s3_created_and_removed.json");
    let summary: Vec<_> = all.iter().map(|r| (r.action, r.event_name.as_str(), r.object.key.as_str())).collect();
    assert_eq!(
        summary,
        [
            (Action::Created, "ObjectCreated:Copy", "uploads/u/7/new.png"),
            (Action::Removed, "ObjectRemoved:DeleteMarkerCreated", "uploads/u/7/old.png"),
        ]
    );
    assert_eq!(all[0].object.size, Some(2048));
    assert_eq!(all[1].object.size, None);
    assert_eq!(all[1].object.version_id.as_deref(), Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"));
}

#[test]
fn s3_delete_has_no_size_or_etag() {
    let request = single("s3_removed_delete.json");
    assert_eq!(request.action, Action::Removed);
    assert!(!request.is_create());
    assert_eq!(request.event_name, "ObjectRemoved:Delete");
    assert_eq!(request.object.key, "uploads/u/42/me.jpg");
    assert_eq!(request.object.size, None);
    assert_eq!(request.object.etag, None);
    assert_eq!(request.object.sequencer.as_deref(), Some("0055AED6DCD90281E5"));
}

#[test]
fn s3_prefixed_event_name_from_minio_is_stripped() {
    let request = single("s3_minio_prefixed.json");
    assert_eq!(request.event_name, "ObjectCreated:Put");
    assert_eq!(request.action, Action::Created);
    assert_eq!(request.object.key, "uploads/u/9/cat.webp");
    assert_eq!(request.origin, Origin::S3);
}

#[test]
fn s3_other_events_are_other() {
    let request = single("s3_restore_post.json");
    assert_eq!(request.action, Action::Other);
    assert_eq!(request.event_name, "ObjectRestore:Post");
    assert_eq!(request.object.key, "archive/2019/a.jpg");

    for name in
        ["LifecycleTransition", "s3:ObjectTagging:Put", "ObjectAcl:Put", "Replication:OperationFailedReplication"]
    {
        let body = format!(
            r#"{{"Records":[{{"eventSource":"aws:s3","eventName":"{name}","s3":{{"bucket":{{"name":"b"}},"object":{{"key":"k"}}}}}}]}}"#
        );
        match parse_message(&body) {
            Ok(Message::Requests(all)) => assert_eq!(all[0].action, Action::Other, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// One rule whatever the channel: an upload a lifecycle rule expired leaves no renditions, as S3
/// notifications (`LifecycleExpiration:*`) and EventBridge (`Object Deleted`, reason "Lifecycle
/// Expiration") both report it.
#[test]
fn lifecycle_expirations_remove_like_deletes_in_every_form() {
    for name in
        ["LifecycleExpiration:Delete", "LifecycleExpiration:DeleteMarkerCreated", "s3:LifecycleExpiration:Delete"]
    {
        let body = format!(
            r#"{{"Records":[{{"eventSource":"aws:s3","eventName":"{name}","s3":{{"bucket":{{"name":"b"}},"object":{{"key":"uploads/old.jpg","sequencer":"0A1"}}}}}}]}}"#
        );
        match parse_message(&body) {
            Ok(Message::Requests(all)) => {
                assert_eq!((all[0].action, all[0].object.key.as_str()), (Action::Removed, "uploads/old.jpg"), "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
        let sns = serde_json::json!({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": body});
        match parse_message(&sns.to_string()) {
            Ok(Message::Requests(all)) => assert_eq!(all[0].action, Action::Removed, "SNS {name}"),
            other => panic!("SNS {name}: {other:?}"),
        }
    }
    let eventbridge = r#"{"version":"0","detail-type":"Object Deleted","source":"aws.s3",
        "detail":{"bucket":{"name":"b"},"object":{"key":"uploads/old.jpg"},
                  "deletion-type":"Permanently Deleted","reason":"Lifecycle Expiration"}}"#;
    match parse_message(eventbridge) {
        Ok(Message::Requests(all)) => assert_eq!(all[0].action, Action::Removed),
        other => panic!("{other:?}"),
    }
}

#[test]
fn s3_quoted_etag_is_unquoted() {
    let body = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Post",
        "s3":{"bucket":{"name":"b"},"object":{"key":"a.jpg","eTag":"\"abc123\""}}}]}"#;
    match parse_message(body) {
        Ok(Message::Requests(all)) => assert_eq!(all[0].object.etag.as_deref(), Some("abc123")),
        other => panic!("{other:?}"),
    }
}

// --- SNS envelopes ----------------------------------------------------------

#[test]
fn sns_wrapped_s3_event_is_parsed_with_origin_sns() {
    let request = single("sns_s3_put.json");
    assert_eq!(request.origin, Origin::Sns);
    assert_eq!(request.action, Action::Created);
    assert_eq!(request.event_name, "ObjectCreated:Put");
    assert_eq!(request.object.bucket, "uploads");
    assert_eq!(request.object.key, PHOTO_KEY);
    assert_eq!(request.object.size, Some(12345));
}

#[test]
fn sns_wrapped_test_event_is_test() {
    assert_eq!(parse_message(&fixture("sns_test_event.json")).ok(), Some(Message::Test));
}

#[test]
fn sns_wrapped_eventbridge_event_has_origin_sns() {
    let inner = fixture("eventbridge_object_created.json");
    let body = serde_json::json!({"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": inner});
    match parse_message(&body.to_string()) {
        Ok(Message::Requests(all)) => {
            assert_eq!(all[0].origin, Origin::Sns);
            assert_eq!(all[0].event_name, "Object Created");
            assert_eq!(all[0].object.key, "uploads/a b+c%20d.jpg");
        }
        other => panic!("{other:?}"),
    }
}

// --- EventBridge ------------------------------------------------------------

#[test]
fn eventbridge_object_created_takes_key_literally() {
    let request = single("eventbridge_object_created.json");
    assert_eq!(request.action, Action::Created);
    assert_eq!(request.event_name, "Object Created");
    assert_eq!(request.origin, Origin::EventBridge);
    assert_eq!(
        request.object,
        ObjectRef {
            bucket: "uploads".into(),
            key: "uploads/a b+c%20d.jpg".into(),
            size: Some(123),
            etag: Some("b1946ac92492d2347c6235b4d2611184".into()),
            version_id: Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e".into()),
            sequencer: Some("617f08299329d189".into()),
        }
    );
}

#[test]
fn eventbridge_object_deleted_is_removed() {
    let request = single("eventbridge_object_deleted.json");
    assert_eq!(request.action, Action::Removed);
    assert_eq!(request.event_name, "Object Deleted");
    assert_eq!(request.origin, Origin::EventBridge);
    assert_eq!(request.object.key, "uploads/a b.jpg");
    assert_eq!(request.object.size, None);
    assert_eq!(request.object.version_id.as_deref(), Some("1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF"));
}

#[test]
fn eventbridge_other_detail_type_and_moto_etag() {
    let body = r#"{"version":"0","detail-type":"Object Tags Added","source":"aws.s3",
        "detail":{"bucket":{"name":"b"},"object":{"key":"k.jpg","eTag":"abc"}}}"#;
    match parse_message(body) {
        Ok(Message::Requests(all)) => {
            assert_eq!(all[0].action, Action::Other);
            assert_eq!(all[0].object.etag.as_deref(), Some("abc"));
        }
        other => panic!("{other:?}"),
    }
}

// --- Test events ------------------------------------------------------------

#[test]
fn test_events_from_aws_and_moto() {
    for name in ["test_event_aws.json", "test_event_moto.json"] {
        assert_eq!(parse_message(&fixture(name)).ok(), Some(Message::Test), "{name}");
    }
}

// --- Direct jobs ------------------------------------------------------------

#[test]
fn direct_job_minimal() {
    let request = single("direct_job_minimal.json");
    assert_eq!(request.action, Action::Created);
    assert!(request.is_create());
    assert_eq!(request.event_name, "Job");
    assert_eq!(request.origin, Origin::Direct);
    assert_eq!(
        request.object,
        ObjectRef { bucket: "uploads".into(), key: "uploads/u/42/me.jpg".into(), ..ObjectRef::default() }
    );
    assert_eq!(request.options, JobOptions::default());
}

#[test]
fn direct_job_full_keeps_literal_key_and_options() {
    let request = single("direct_job_full.json");
    assert_eq!(request.origin, Origin::Direct);
    assert_eq!(request.object.key, "uploads/u/42/my photo+%20.jpg");
    assert_eq!(request.object.size, Some(48213));
    assert_eq!(request.object.etag.as_deref(), Some("5d41402abc4b2a76b9719d911017c592"));
    assert_eq!(request.object.version_id.as_deref(), Some("3sL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"));
    assert_eq!(
        request.options,
        JobOptions {
            job_id: Some("job-2026-11-30-0001".into()),
            preset: Some("avatar".into()),
            output_prefix: Some("renditions/u/42/".into()),
        }
    );
}

#[test]
fn direct_delete_job_is_a_removal() {
    let body = r#"{"v":1,"action":"delete","bucket":"uploads","key":"uploads/u/42/me.jpg","job_id":"d1"}"#;
    let Ok(Message::Requests(mut r)) = parse_message(body) else { panic!("not parsed") };
    let request = r.remove(0);
    assert_eq!(request.action, Action::Removed);
    assert!(!request.is_create());
    assert_eq!(request.event_name, "Delete");
    assert_eq!(request.options.job_id.as_deref(), Some("d1"));
    let render = r#"{"v":1,"action":"render","bucket":"uploads","key":"k"}"#;
    assert!(matches!(parse_message(render), Ok(Message::Requests(r)) if r[0].is_create()));
    assert_mentions(&error_of(r#"{"v":1,"action":"purge","bucket":"b","key":"k"}"#), &["purge", "delete"]);
}

#[test]
fn sequencers_order_events_after_padding() {
    use std::cmp::Ordering::*;
    assert_eq!(compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E6"), Less);
    // Different lengths: the shorter is right-padded with zeros, so "0A" is "0A00" here.
    assert_eq!(compare_sequencers("0A", "09FF"), Greater);
    assert_eq!(compare_sequencers("0A", "0A00"), Equal);
    assert_eq!(compare_sequencers("0a1", "0A0F"), Greater);
}

// --- Bad messages -----------------------------------------------------------

#[test]
fn bad_not_json() {
    assert_mentions(&fixture_error("bad_not_json.json"), &["JSON"]);
}

#[test]
fn bad_empty_bodies() {
    assert_mentions(&fixture_error("bad_empty.json"), &["empty"]);
    assert_mentions(&error_of("  \n\t "), &["empty"]);
}

#[test]
fn bad_array() {
    assert_mentions(&fixture_error("bad_array.json"), &["array", "object"]);
    assert_mentions(&error_of(r#"[{"v":1,"bucket":"b","key":"k"}]"#), &["array"]);
}

#[test]
fn bad_scalars() {
    assert_mentions(&error_of("null"), &["null"]);
    assert_mentions(&error_of("42"), &["number"]);
    assert_mentions(&error_of(r#""{\"v\":1}""#), &["string"]);
}

#[test]
fn bad_empty_object() {
    assert_mentions(&fixture_error("bad_empty_object.json"), &["unrecognised", "empty"]);
}

#[test]
fn bad_unknown_shape_lists_its_fields() {
    assert_mentions(&fixture_error("bad_unknown_shape.json"), &["unrecognised", "\"hello\"", "Records"]);
}

#[test]
fn bad_direct_job_without_version_says_so() {
    assert_mentions(&error_of(r#"{"bucket":"b","key":"k"}"#), &["\"v\": 1"]);
}

#[test]
fn bad_sns_garbage_message() {
    assert_mentions(&fixture_error("bad_sns_garbage_message.json"), &["SNS", "Message", "JSON"]);
}

#[test]
fn bad_sns_subscription_confirmation() {
    assert_mentions(&fixture_error("bad_sns_subscription_confirmation.json"), &["SubscriptionConfirmation"]);
}

#[test]
fn bad_sns_nesting_and_direct_job_inside_sns() {
    let inner_sns = serde_json::json!({"Type": "Notification", "TopicArn": "t", "Message": "{}"}).to_string();
    let nested = serde_json::json!({"Type": "Notification", "TopicArn": "t", "Message": inner_sns});
    assert_mentions(&error_of(&nested.to_string()), &["SNS envelope", "not accepted"]);
    let job =
        serde_json::json!({"Type": "Notification", "TopicArn": "t", "Message": r#"{"v":1,"bucket":"b","key":"k"}"#});
    assert_mentions(&error_of(&job.to_string()), &["direct job", "not accepted"]);
}

#[test]
fn bad_direct_job_v2() {
    let message = fixture_error("bad_direct_job_v2.json");
    assert_mentions(&message, &["version 2"]);
    assert!(matches!(parse_message(&fixture("bad_direct_job_v2.json")), Err(ParseError::UnsupportedVersion(2))));
}

#[test]
fn bad_direct_job_fields() {
    assert_mentions(&fixture_error("bad_direct_job_empty_key.json"), &["`key`", "missing"]);
    assert_mentions(&error_of(r#"{"v":1,"key":"k"}"#), &["`bucket`"]);
    assert_mentions(&error_of(r#"{"v":"1","bucket":"b","key":"k"}"#), &["direct job", "u64"]);
    assert_mentions(&error_of(r#"{"v":1,"bucket":"b","key":"k","size":-1}"#), &["direct job"]);
}

#[test]
fn bad_key_invalid_utf8() {
    let message = fixture_error("bad_key_invalid_utf8.json");
    assert_mentions(&message, &["incoming%2Fbad%C3%28.jpg", "UTF-8"]);
}

#[test]
fn bad_s3_records() {
    assert_mentions(&fixture_error("bad_empty_records.json"), &["no records"]);
    assert_mentions(&fixture_error("bad_foreign_records.json"), &["aws:dynamodb"]);
    assert_mentions(&error_of(r#"{"Records":{}}"#), &["malformed S3"]);
    assert_mentions(
        &error_of(
            r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}"#,
        ),
        &["s3.object.key"],
    );
    assert_mentions(
        &error_of(
            r#"{"Records":[{"eventVersion":"3.0","eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#,
        ),
        &["event version", "3.0"],
    );
}

#[test]
fn bad_eventbridge() {
    assert_mentions(
        &error_of(r#"{"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}"#),
        &["aws.ec2"],
    );
    assert_mentions(
        &error_of(r#"{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{}}}"#),
        &["detail.object.key"],
    );
}

#[test]
fn bad_test_event_name() {
    assert_mentions(&error_of(r#"{"Service":"Amazon S3","Event":"s3:SomethingElse"}"#), &["s3:SomethingElse"]);
}

#[test]
fn every_bad_fixture_is_an_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures dir") {
        let name = entry.expect("dir entry").file_name().to_string_lossy().into_owned();
        if name.starts_with("bad_") {
            let message = fixture_error(&name);
            assert!(message.len() > 10, "{name}: uninformative error {message:?}");
            seen += 1;
        } else if name.ends_with(".json") {
            assert!(parse_message(&fixture(&name)).is_ok(), "{name} should parse");
        }
    }
    assert!(seen >= 12, "only {seen} bad fixtures found");
}

// --- decode_s3_key ----------------------------------------------------------

#[test]
fn decode_s3_key_cases() {
    let cases = [
        ("incoming%2Fmy+photo+%C3%A9%2B%C3%BC%26x.jpg", PHOTO_KEY),
        ("incoming/my%20photo%20%C3%A9%2B%C3%BC%26x.jpg", PHOTO_KEY),
        ("plain/key.jpg", "plain/key.jpg"),
        ("100%25+done", "100% done"),
        ("%2541", "%41"),
        ("", ""),
    ];
    for (encoded, decoded) in cases {
        assert_eq!(decode_s3_key(encoded).ok().as_deref(), Some(decoded), "{encoded}");
    }
}

#[test]
fn decode_s3_key_rejects_bad_input() {
    for encoded in ["%C3%28", "%FF", "50%", "50%2", "%zz", "%%41"] {
        match decode_s3_key(encoded) {
            Err(error @ ParseError::BadKeyEncoding { .. }) => assert_mentions(&error.to_string(), &["key"]),
            other => panic!("{encoded}: {other:?}"),
        }
    }
}

#[test]
fn long_inputs_are_truncated_in_errors() {
    let key = "%FF".repeat(10_000);
    let message = decode_s3_key(&key).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.len() < 400, "error message is {} bytes", message.len());
    assert!(message.contains('…'));
}

/// Found by the `envelope` fuzz target: serde's message for a field of the wrong type quotes the
/// whole value, which reached failure events and logs unbounded.
#[test]
fn a_long_value_of_the_wrong_type_is_not_echoed_whole() {
    let long = format!(" ,{}E-11111,{}", "1".repeat(5_000), "i".repeat(5_000));
    for body in [
        serde_json::json!({"v": 1, "bucket": long, "key": "k", "size": long}).to_string(),
        serde_json::json!({"Records": [{"eventSource": "aws:s3", "eventName": long, "s3": long}]}).to_string(),
        format!("{{\"v\": 1, \"bucket\": \"{long}"),
    ] {
        let message = error_of(&body);
        assert!(message.len() < 400, "error message is {} bytes: {message}", message.len());
    }
    let crash = "{\n  \"v\": \n \" ,11111111iiiiiiiiiiiiii~iiiiaws11NNNNNNNNNNNNNNNNNN1111111111111111111000861293337707602830E-11111,";
    let message = error_of(&format!("{crash}{}\"}}", "1111111111111E-11,".repeat(120)));
    assert!(message.len() < 400 && message.contains('…'), "{message}");
}

#[test]
fn object_ref_round_trips_through_serde() {
    let request = single("s3_multipart_upload.json");
    let json = serde_json::to_string(&request.object).expect("serialize");
    let back: ObjectRef = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, request.object);
}

#[test]
fn encoded_keys_round_trip_through_a_notification() {
    for key in ["uploads/my photo é+ü&x.jpg", "a/b c/100%.png", "plain.jpg", "ünï/cödé?#.webp"] {
        let object = ObjectRef {
            bucket: "b".into(),
            key: key.into(),
            size: Some(7),
            etag: Some("e".into()),
            ..Default::default()
        };
        let body = s3_put_notification("b", &object, "2026-11-30T00:00:00.000Z");
        let Message::Requests(r) = parse_message(&body).unwrap() else { panic!("not requests") };
        assert_eq!(r[0].object.key, key);
        assert_eq!(r[0].object.size, Some(7));
        assert_eq!(r[0].action, Action::Created);
        assert_eq!(decode_s3_key(&encode_s3_key(key)).unwrap(), key);
    }
}
