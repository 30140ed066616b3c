//! Queue: the narrow interface the fleet needs from SQS (receive, delete, change visibility,
//! depth; send, for `imgfleet backfill`), with the SQS implementation. The in-process queue of `imgfleet demo` lives in [`crate::adapters::local`].

use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use std::future::Future;
use std::time::Duration;

/// The most messages one SQS call receives, deletes or changes (SQS's own batch limit).
pub const MAX_BATCH: usize = 10;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub id: String,
    /// Handle for delete / change-visibility; valid for this delivery only.
    pub receipt: String,
    pub body: String,
    /// SQS `ApproximateReceiveCount` (1 on first delivery).
    pub receive_count: u32,
    /// SQS `SentTimestamp`, milliseconds since the epoch.
    pub sent_at_ms: Option<u64>,
}

/// A failed queue call. `operation` is the API name, used as a metric label.
#[derive(Debug, Clone, thiserror::Error)]
#[error("SQS {operation} failed: {message}")]
pub struct QueueError {
    pub operation: &'static str,
    pub message: String,
}

/// What the consumer needs from a queue.
pub trait Queue: Send + Sync + 'static {
    /// Long-polls for up to `max` (1–10) messages, hiding them for `visibility`.
    fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send;

    /// Deletes a batch of up to 10 messages; returns the ids of entries that failed, with the reason.
    fn delete_batch(
        &self,
        entries: Vec<(String, String)>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, QueueError>> + Send;

    /// Sets how long until the message is visible again (0: at once).
    fn set_visibility(&self, receipt: &str, seconds: u32) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Makes a batch of up to 10 messages (id, receipt) visible again at once; returns the ids of
    /// entries that failed, with the reason. One call per message unless the queue batches.
    fn release_batch(
        &self,
        entries: Vec<(String, String)>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, QueueError>> + Send {
        async move {
            let mut failed = Vec::new();
            for (id, receipt) in entries {
                if let Err(e) = self.set_visibility(&receipt, 0).await {
                    failed.push((id, e.message));
                }
            }
            Ok(failed)
        }
    }

    /// Messages visible in the queue at `url` (its own URL when `None`).
    fn visible_messages(&self, url: Option<&str>) -> impl Future<Output = Result<i64, QueueError>> + Send;

    /// Sends up to 10 message bodies; returns the index (as a string) of each body that was not
    /// sent, with the reason.
    fn send_batch(&self, bodies: Vec<String>)
    -> impl Future<Output = Result<Vec<(String, String)>, QueueError>> + Send;
}

/// SQS through the AWS SDK.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }
}

fn sqs_error<E: std::error::Error + Send + Sync + 'static>(
    operation: &'static str,
) -> impl Fn(aws_sdk_sqs::error::SdkError<E>) -> QueueError {
    move |e| QueueError { operation, message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string() }
}

/// The (message id, reason) of each failed entry of a batch call whose entry ids are the indexes
/// into `entries`.
fn batch_failures(failed: Vec<BatchResultErrorEntry>, entries: &[(String, String)]) -> Vec<(String, String)> {
    failed
        .into_iter()
        .filter_map(|f| {
            let (id, _) = entries.get(f.id.parse::<usize>().ok()?)?;
            Some((id.clone(), format!("{}: {}", f.code, f.message.unwrap_or_default())))
        })
        .collect()
}

impl Queue for SqsQueue {
    async fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH as i32))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(visibility.as_secs().min(43_200) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(sqs_error("ReceiveMessage"))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let attrs = m.attributes.unwrap_or_default();
                let attr = |n: MessageSystemAttributeName| attrs.get(&n).and_then(|v| v.parse::<u64>().ok());
                Some(ReceivedMessage {
                    id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or(1) as u32,
                    sent_at_ms: attr(MessageSystemAttributeName::SentTimestamp),
                })
            })
            .collect())
    }

    async fn delete_batch(&self, entries: Vec<(String, String)>) -> Result<Vec<(String, String)>, QueueError> {
        let mut request = self.client.delete_message_batch().queue_url(&self.url);
        for (i, (_, receipt)) in entries.iter().enumerate() {
            let entry = DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .map_err(|e| QueueError { operation: "DeleteMessageBatch", message: e.to_string() })?;
            request = request.entries(entry);
        }
        let out = request.send().await.map_err(sqs_error("DeleteMessageBatch"))?;
        Ok(batch_failures(out.failed, &entries))
    }

    async fn set_visibility(&self, receipt: &str, seconds: u32) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds.min(43_200) as i32)
            .send()
            .await
            .map_err(sqs_error("ChangeMessageVisibility"))?;
        Ok(())
    }

    async fn release_batch(&self, entries: Vec<(String, String)>) -> Result<Vec<(String, String)>, QueueError> {
        let mut request = self.client.change_message_visibility_batch().queue_url(&self.url);
        for (i, (_, receipt)) in entries.iter().enumerate() {
            let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .build()
                .map_err(|e| QueueError { operation: "ChangeMessageVisibilityBatch", message: e.to_string() })?;
            request = request.entries(entry);
        }
        let out = request.send().await.map_err(sqs_error("ChangeMessageVisibilityBatch"))?;
        Ok(batch_failures(out.failed, &entries))
    }

    async fn send_batch(&self, bodies: Vec<String>) -> Result<Vec<(String, String)>, QueueError> {
        let refused =
            |e: aws_sdk_sqs::error::BuildError| QueueError { operation: "SendMessageBatch", message: e.to_string() };
        let entries = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(refused)?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(sqs_error("SendMessageBatch"))?;
        Ok(out.failed.into_iter().map(|f| (f.id, f.code)).collect())
    }

    async fn visible_messages(&self, url: Option<&str>) -> Result<i64, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url.unwrap_or(&self.url))
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(sqs_error("GetQueueAttributes"))?;
        Ok(out
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages).and_then(|v| v.parse().ok()))
            .unwrap_or(0))
    }
}

impl<T: Queue> Queue for std::sync::Arc<T> {
    fn receive(
        &self,
        max: i32,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send {
        (**self).receive(max, wait, visibility)
    }

    fn delete_batch(
        &self,
        entries: Vec<(String, String)>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, QueueError>> + Send {
        (**self).delete_batch(entries)
    }

    fn set_visibility(&self, receipt: &str, seconds: u32) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).set_visibility(receipt, seconds)
    }

    fn release_batch(
        &self,
        entries: Vec<(String, String)>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, QueueError>> + Send {
        (**self).release_batch(entries)
    }

    fn visible_messages(&self, url: Option<&str>) -> impl Future<Output = Result<i64, QueueError>> + Send {
        (**self).visible_messages(url)
    }

    fn send_batch(
        &self,
        bodies: Vec<String>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, QueueError>> + Send {
        (**self).send_batch(bodies)
    }
}
