//! Storage: fetch a source object (size-capped) and store renditions. The S3 implementation is
//! here; the folder-backed store of `imgfleet demo` lives in [`crate::adapters::local`].

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use imgfleet_shared::config::Sse;
use std::collections::HashMap;
use std::future::Future;

/// A fetched source object.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

/// What a HEAD request tells about an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub etag: Option<String>,
    pub size: u64,
    /// User metadata (`x-amz-meta-*`), names in lower case.
    pub metadata: HashMap<String, String>,
}

/// What a conditional delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// The object no longer matched the expected ETag (it was replaced meanwhile): left alone.
    Changed,
    /// There was nothing to delete.
    Missing,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub modified: Option<std::time::SystemTime>,
}

/// Which objects a listing asks for: up to `max_keys` under `prefix`, in key order, those after
/// `start_after` on the first page (`page` `None`), then from where the page token `page` says.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    pub prefix: &'a str,
    pub start_after: Option<&'a str>,
    pub page: Option<&'a str>,
    pub max_keys: i32,
}

/// One page of a listing, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
}

/// How a rendition is stored.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: String,
    pub cache_control: String,
    pub metadata: HashMap<String, String>,
    pub sse: Option<Sse>,
}

/// A failed storage call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    #[error("s3://{bucket}/{key} is {size} bytes: over the limit of {limit} bytes")]
    TooLarge { bucket: String, key: String, size: u64, limit: u64 },
    /// A call failed. `transient`: it may pass on its own (throttling, a 5xx, a timeout, the
    /// network); otherwise the deployment needs fixing ([`is_transient`]).
    #[error("S3 {operation} s3://{bucket}/{key} failed: {message}")]
    Failed { operation: &'static str, bucket: String, key: String, message: String, transient: bool },
}

/// Error codes S3 (and KMS through it) answers with a 4xx status that still pass on their own:
/// throttling, a request that took too long, credentials that expired before the SDK renewed them.
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "ExpiredToken",
    "TokenRefreshRequired",
    "OperationAborted",
    "KMS.ThrottlingException",
];

/// Whether an S3 answer of `status` with error `code` may pass on its own: any 5xx, 429, and the
/// [`TRANSIENT_CODES`]. Every other 4xx (`AccessDenied`, `NoSuchBucket`, `InvalidArgument`,
/// `PermanentRedirect`, a refused KMS key…) needs the deployment fixed: no retry changes it.
pub fn is_transient(status: u16, code: Option<&str>) -> bool {
    status >= 500 || status == 429 || code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
}

/// [`StoreError::Failed`] from an SDK error: a service error is classified by [`is_transient`];
/// timeouts, network and response failures are transient; a request the SDK could not even
/// build is not.
fn failed<E>(operation: &'static str, bucket: &str, key: &str, e: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let transient = match e {
        SdkError::ServiceError(s) => is_transient(s.raw().status().as_u16(), s.err().code()),
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    StoreError::Failed {
        operation,
        bucket: bucket.into(),
        key: key.into(),
        message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        transient,
    }
}

/// What the job runner needs from object storage.
pub trait ObjectStore: Send + Sync + 'static {
    /// Reads an object, refusing one larger than `max_bytes` before and while downloading it.
    fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> impl Future<Output = Result<Fetched, StoreError>> + Send;

    /// Writes an object, replacing any with the same key.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        options: &PutOptions,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads an object's ETag, size and metadata; `None` when it does not exist.
    fn head(&self, bucket: &str, key: &str) -> impl Future<Output = Result<Option<Head>, StoreError>> + Send;

    /// Deletes an object, but only while its ETag is still `if_match` (when given).
    fn delete(
        &self,
        bucket: &str,
        key: &str,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<Deleted, StoreError>> + Send;

    /// One page of the objects of `bucket` that `query` asks for.
    fn list(&self, bucket: &str, query: &ListQuery<'_>) -> impl Future<Output = Result<ListPage, StoreError>> + Send;
}

/// S3 through the AWS SDK.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

impl ObjectStore for S3Store {
    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Fetched, StoreError> {
        let too_large = |size| StoreError::TooLarge { bucket: bucket.into(), key: key.into(), size, limit: max_bytes };
        let out = match self.client.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    return Err(StoreError::NotFound { bucket: bucket.into(), key: key.into() });
                }
                return Err(failed("GetObject", bucket, key, &e));
            }
        };
        let declared = out.content_length.and_then(|l| u64::try_from(l).ok());
        if let Some(size) = declared.filter(|&s| s > max_bytes) {
            return Err(too_large(size));
        }
        let (etag, version_id) = (out.e_tag.map(|t| t.trim_matches('"').to_owned()), out.version_id);
        let mut body = out.body;
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(max_bytes) as usize);
        let interrupted = |e: aws_sdk_s3::primitives::ByteStreamError| StoreError::Failed {
            operation: "GetObject",
            bucket: bucket.into(),
            key: key.into(),
            message: e.to_string(),
            transient: true,
        };
        while let Some(chunk) = body.try_next().await.map_err(interrupted)? {
            if (bytes.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_large((bytes.len() + chunk.len()) as u64));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched { bytes, etag, version_id })
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, options: &PutOptions) -> Result<(), StoreError> {
        let mut request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(&options.content_type)
            .cache_control(&options.cache_control)
            .set_metadata(Some(options.metadata.clone()))
            .body(ByteStream::from(body));
        request = match &options.sse {
            Some(Sse::Aes256) => request.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id }) => {
                request.server_side_encryption(ServerSideEncryption::AwsKms).set_ssekms_key_id(key_id.clone())
            }
            None => request,
        };
        request.send().await.map_err(|e| failed("PutObject", bucket, key, &e))?;
        Ok(())
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<Head>, StoreError> {
        match self.client.head_object().bucket(bucket).key(key).send().await {
            Ok(out) => Ok(Some(Head {
                etag: out.e_tag.map(|t| t.trim_matches('"').to_owned()),
                size: out.content_length.and_then(|l| u64::try_from(l).ok()).unwrap_or(0),
                metadata: out.metadata.unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(failed("HeadObject", bucket, key, &e)),
        }
    }

    async fn delete(&self, bucket: &str, key: &str, if_match: Option<&str>) -> Result<Deleted, StoreError> {
        let request =
            self.client.delete_object().bucket(bucket).key(key).set_if_match(if_match.map(|t| format!("\"{t}\"")));
        match request.send().await {
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                Some(412) => Ok(Deleted::Changed),
                Some(404) => Ok(Deleted::Missing),
                _ => Err(failed("DeleteObject", bucket, key, &e)),
            },
        }
    }

    async fn list(&self, bucket: &str, query: &ListQuery<'_>) -> Result<ListPage, StoreError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(query.prefix)
            .set_start_after(query.start_after.filter(|_| query.page.is_none()).map(str::to_owned))
            .set_continuation_token(query.page.map(str::to_owned))
            .max_keys(query.max_keys)
            // Keys may hold characters XML cannot carry; S3 then needs URL encoding.
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .send()
            .await
            .map_err(|e| failed("ListObjectsV2", bucket, query.prefix, &e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ListedObject {
                    key: imgfleet_shared::envelope::decode_s3_key(o.key()?).ok()?,
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    etag: o.e_tag().map(|t| t.trim_matches('"').to_owned()),
                    modified: o.last_modified().and_then(|t| std::time::SystemTime::try_from(*t).ok()),
                })
            })
            .collect();
        Ok(ListPage { objects, next: out.next_continuation_token().map(str::to_owned) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_answers_are_transient_or_need_the_deployment_fixed() {
        for (status, code) in [
            (500, Some("InternalError")),
            (503, Some("SlowDown")),
            (503, None),
            (429, None),
            (400, Some("RequestTimeout")),
            (400, Some("ExpiredToken")),
            (400, Some("KMS.ThrottlingException")),
        ] {
            assert!(is_transient(status, code), "{status} {code:?} passes on its own");
        }
        for (status, code) in [
            (403, Some("AccessDenied")),
            (404, Some("NoSuchBucket")),
            (400, Some("InvalidArgument")),
            (301, Some("PermanentRedirect")),
            (400, Some("KMS.NotFoundException")),
            (403, Some("KMS.DisabledException")),
            (403, None),
        ] {
            assert!(!is_transient(status, code), "{status} {code:?} needs the deployment fixed");
        }
    }
}
