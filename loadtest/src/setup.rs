//! `imgfleet-loadtest setup`: a bucket whose uploads under a prefix notify a queue, with a
//! dead-letter queue, as `tests/src/lib.rs` `Env::setup` makes them for the end-to-end tests;
//! `teardown` removes them again (objects included). Also the AWS clients every subcommand shares
//! (standard `AWS_*` variables and `AWS_ENDPOINT_URL`).

use anyhow::{Context as _, anyhow};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, Event as S3EventType, FilterRule, FilterRuleName,
    NotificationConfiguration, NotificationConfigurationFilter, ObjectIdentifier, QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use std::time::Duration;

/// How long the whole setup may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a teardown may take, and how many objects it deletes at most.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(300);
const TEARDOWN_MAX_OBJECTS: usize = 1_000_000;

/// An AWS error in one line: the service's code and message, or the whole chain when the request
/// never got an answer (connection refused, timeout).
pub fn aws_error<E, R>(e: SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(e).to_string(),
    }
}

/// S3 and SQS clients from the default AWS chain (path-style S3 when an endpoint is set).
#[derive(Debug, Clone)]
pub struct Clients {
    pub sdk: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    pub async fn from_env() -> Self {
        let sdk = imgfleet_worker::fleet::service::aws_config().await;
        let s3 = imgfleet_worker::fleet::service::s3_client(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        Self { sdk, s3, sqs }
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct SetupArgs {
    pub bucket: String,
    pub queue: String,
    /// Only uploads under this prefix notify the queue.
    pub prefix: String,
    /// Deliveries before a message moves to the dead-letter queue `<queue>-dlq`.
    pub max_receives: u32,
    pub visibility_secs: u32,
}

/// What was created.
#[derive(Debug, Clone)]
pub struct Created {
    pub queue_url: String,
    pub dlq_url: String,
}

/// Creates the bucket (an existing one of ours is fine), the queues and the bucket notification.
pub async fn run(clients: &Clients, args: &SetupArgs) -> anyhow::Result<Created> {
    tokio::time::timeout(SETUP_TIMEOUT, setup(clients, args))
        .await
        .map_err(|_| anyhow!("setup took more than {SETUP_TIMEOUT:?}"))?
}

async fn setup(clients: &Clients, args: &SetupArgs) -> anyhow::Result<Created> {
    create_bucket(clients, &args.bucket).await?;
    let dlq_url = create_queue(clients, &format!("{}-dlq", args.queue), &[]).await?;
    let dlq_arn = queue_arn(clients, &dlq_url).await?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": args.max_receives.to_string()})
        .to_string();
    let queue_url = create_queue(
        clients,
        &args.queue,
        &[
            (QueueAttributeName::RedrivePolicy, redrive),
            (QueueAttributeName::VisibilityTimeout, args.visibility_secs.to_string()),
        ],
    )
    .await?;
    let queue_arn = queue_arn(clients, &queue_url).await?;
    allow_bucket_to_send(clients, &queue_url, &queue_arn, &args.bucket).await?;
    notify_queue(clients, &args.bucket, &args.prefix, &queue_arn).await?;
    Ok(Created { queue_url, dlq_url })
}

async fn create_bucket(clients: &Clients, bucket: &str) -> anyhow::Result<()> {
    let mut request = clients.s3.create_bucket().bucket(bucket);
    // us-east-1 is the one region that refuses a location constraint naming itself.
    if let Some(region) = clients.sdk.region().map(ToString::to_string).filter(|r| r != "us-east-1") {
        let location = BucketLocationConstraint::from(region.as_str());
        request = request
            .create_bucket_configuration(CreateBucketConfiguration::builder().location_constraint(location).build());
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(()),
        Err(e) => Err(anyhow!("CreateBucket {bucket}: {}", aws_error(e))),
    }
}

async fn create_queue(
    clients: &Clients,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> anyhow::Result<String> {
    let mut request = clients.sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        request = request.attributes(k.clone(), v);
    }
    let created = request.send().await.map_err(|e| anyhow!("CreateQueue {name}: {}", aws_error(e)))?;
    created.queue_url.with_context(|| format!("CreateQueue {name} returned no queue URL"))
}

async fn queue_arn(clients: &Clients, url: &str) -> anyhow::Result<String> {
    let attrs = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| anyhow!("GetQueueAttributes {url}: {}", aws_error(e)))?;
    attrs
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .with_context(|| format!("{url} has no QueueArn"))
}

/// The queue policy real S3 needs before it may send notifications (moto does not check it).
async fn allow_bucket_to_send(clients: &Clients, url: &str, queue_arn: &str, bucket: &str) -> anyhow::Result<()> {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "imgfleet-bucket-notifications",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{bucket}")}}
        }]
    });
    clients
        .sqs
        .set_queue_attributes()
        .queue_url(url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .map_err(|e| anyhow!("SetQueueAttributes Policy {url}: {}", aws_error(e)))?;
    Ok(())
}

async fn notify_queue(clients: &Clients, bucket: &str, prefix: &str, queue_arn: &str) -> anyhow::Result<()> {
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(FilterRule::builder().name(FilterRuleName::Prefix).value(prefix).build())
                .build(),
        )
        .build();
    let queue_config = QueueConfiguration::builder()
        .id("imgfleet-uploads")
        .queue_arn(queue_arn)
        .events(S3EventType::from("s3:ObjectCreated:*"))
        .events(S3EventType::from("s3:ObjectRemoved:*"))
        .filter(filter)
        .build()
        .context("queue notification configuration")?;
    clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(NotificationConfiguration::builder().queue_configurations(queue_config).build())
        .send()
        .await
        .map_err(|e| anyhow!("PutBucketNotificationConfiguration {bucket}: {}", aws_error(e)))?;
    Ok(())
}

/// Deletes every object of `bucket` (at most [`TEARDOWN_MAX_OBJECTS`]), the bucket, and the queues
/// `queue` and `<queue>-dlq`; returns how many objects were deleted. Missing queues are fine.
pub async fn teardown(clients: &Clients, bucket: &str, queue: &str) -> anyhow::Result<usize> {
    let work = async {
        let deleted = empty_bucket(clients, bucket).await?;
        clients
            .s3
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| anyhow!("DeleteBucket {bucket}: {}", aws_error(e)))?;
        for name in [queue.to_owned(), format!("{queue}-dlq")] {
            let found = clients.sqs.get_queue_url().queue_name(&name).send().await;
            if let Some(url) = found.ok().and_then(|f| f.queue_url) {
                clients
                    .sqs
                    .delete_queue()
                    .queue_url(&url)
                    .send()
                    .await
                    .map_err(|e| anyhow!("DeleteQueue {url}: {}", aws_error(e)))?;
            }
        }
        Ok(deleted)
    };
    tokio::time::timeout(TEARDOWN_TIMEOUT, work)
        .await
        .map_err(|_| anyhow!("teardown took more than {TEARDOWN_TIMEOUT:?}"))?
}

async fn empty_bucket(clients: &Clients, bucket: &str) -> anyhow::Result<usize> {
    let mut deleted = 0;
    while deleted < TEARDOWN_MAX_OBJECTS {
        // Listing from the start each time: what was deleted is gone, so the next page is what is left.
        let page = clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| anyhow!("ListObjectsV2 {bucket}: {}", aws_error(e)))?;
        let ids: Vec<ObjectIdentifier> = page
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
            .collect();
        if ids.is_empty() {
            break;
        }
        let n = ids.len();
        let delete = Delete::builder().set_objects(Some(ids)).quiet(true).build().context("delete request")?;
        clients
            .s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| anyhow!("DeleteObjects {bucket}: {}", aws_error(e)))?;
        deleted += n;
    }
    Ok(deleted)
}
