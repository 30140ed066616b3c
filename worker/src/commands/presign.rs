//! Presigned POST policies: apps upload photos straight to S3 from a browser or phone, and S3
//! itself refuses a file of the wrong type or size.
//!
//! The policy (AWS Signature Version 4 for browser-based POST) fixes the bucket, the exact key
//! and the `Content-Type`, bounds the size with `content-length-range`, and expires. Signing uses
//! the SDK's own SigV4 primitives; no request is made, so it needs credentials but no network.

use aws_credential_types::Credentials;
use base64::Engine as _;
use imgfleet_shared::ImageFormat;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The longest a policy may live (the SigV4 limit for presigned requests).
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the upload may be.
#[derive(Debug, Clone)]
pub struct PostPolicyRequest {
    pub bucket: String,
    pub key: String,
    /// Must be the content type of a format the worker reads.
    pub content_type: String,
    pub max_bytes: u64,
    pub expires_in: Duration,
    pub region: String,
    /// A custom S3 endpoint (path-style URL); `None` means AWS's virtual-hosted one.
    pub endpoint: Option<String>,
}

/// The form an app posts: `fields` first, in any order, then the file as the last field `file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresignedPost {
    pub url: String,
    pub fields: BTreeMap<String, String>,
    /// RFC 3339.
    pub expires_at: String,
}

/// Why no policy was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PresignError {
    #[error("content type {0:?} is not an image type the worker reads ({types})", types = accepted_content_types().join(", "))]
    ContentType(String),
    #[error("the size limit must be at least 1 byte")]
    MaxBytes,
    #[error("expiry must be between 1 second and 7 days")]
    Expiry,
    #[error("the key must not be empty")]
    Key,
}

/// The `Content-Type`s a policy may name: the formats this build reads (HEIC and AVIF with the heic
/// feature; `image/heif` too, which some clients send for HEIC).
pub fn accepted_content_types() -> Vec<&'static str> {
    let mut types: Vec<&str> = [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp, ImageFormat::Gif]
        .iter()
        .map(|f| f.content_type())
        .collect();
    if crate::pipeline::decode::HEIF_SUPPORTED {
        types.extend([ImageFormat::Heic.content_type(), "image/heif", ImageFormat::Avif.content_type()]);
    }
    types
}

/// Signs a POST policy for one upload, as of `now`.
pub fn presign_post(
    request: &PostPolicyRequest,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<PresignedPost, PresignError> {
    if !accepted_content_types().contains(&request.content_type.as_str()) {
        return Err(PresignError::ContentType(request.content_type.clone()));
    }
    if request.max_bytes == 0 {
        return Err(PresignError::MaxBytes);
    }
    if request.expires_in.is_zero() || request.expires_in > MAX_EXPIRY {
        return Err(PresignError::Expiry);
    }
    if request.key.is_empty() {
        return Err(PresignError::Key);
    }
    let (date, stamp) = sigv4_times(now);
    let credential = format!("{}/{date}/{}/s3/aws4_request", credentials.access_key_id(), request.region);
    let expires_at = rfc3339(now + request.expires_in).replace('Z', ".000Z");

    let mut fields = BTreeMap::from([
        ("key".to_owned(), request.key.clone()),
        ("Content-Type".to_owned(), request.content_type.clone()),
        ("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
        ("x-amz-credential".to_owned(), credential),
        ("x-amz-date".to_owned(), stamp),
    ]);
    if let Some(token) = credentials.session_token() {
        fields.insert("x-amz-security-token".into(), token.to_owned());
    }
    let mut conditions = vec![
        serde_json::json!({"bucket": request.bucket}),
        serde_json::json!(["content-length-range", 1, request.max_bytes]),
    ];
    conditions.extend(fields.iter().map(|(k, v)| serde_json::json!({ k: v })));
    let policy = serde_json::json!({"expiration": expires_at, "conditions": conditions});
    let policy = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
    let key = aws_sigv4::sign::v4::generate_signing_key(credentials.secret_access_key(), now, &request.region, "s3");
    let signature = aws_sigv4::sign::v4::calculate_signature(key, policy.as_bytes());
    fields.insert("policy".into(), policy);
    fields.insert("x-amz-signature".into(), signature);

    let url = match &request.endpoint {
        Some(endpoint) => format!("{}/{}", endpoint.trim_end_matches('/'), request.bucket),
        None => format!("https://{}.s3.{}.amazonaws.com/", request.bucket, request.region),
    };
    Ok(PresignedPost { url, fields, expires_at })
}

/// Parses `15m`, `900s`, `2h`, `7d` or plain seconds.
pub fn parse_expiry(text: &str) -> Result<Duration, PresignError> {
    let t = text.trim();
    let (number, unit) = t.find(|c: char| !c.is_ascii_digit()).map_or((t, "s"), |i| t.split_at(i));
    let n: u64 = number.parse().map_err(|_| PresignError::Expiry)?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(PresignError::Expiry),
    };
    let d = Duration::from_secs(seconds);
    if d.is_zero() || d > MAX_EXPIRY { Err(PresignError::Expiry) } else { Ok(d) }
}

/// A time as RFC 3339 in UTC, to the second: `2015-12-29T00:15:00Z`.
fn rfc3339(t: SystemTime) -> String {
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DateTime::from_secs(i64::try_from(secs).unwrap_or(i64::MAX)).fmt(DateTimeFormat::DateTime).unwrap_or_default()
}

/// SigV4's date (`20151229`) and timestamp (`20151229T000000Z`).
fn sigv4_times(t: SystemTime) -> (String, String) {
    let stamp = rfc3339(t).replace(['-', ':'], "");
    (stamp[..8].to_owned(), stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PostPolicyRequest {
        PostPolicyRequest {
            bucket: "sigv4examplebucket".into(),
            key: "uploads/u/42/me.jpg".into(),
            content_type: "image/jpeg".into(),
            max_bytes: 10_485_760,
            expires_in: Duration::from_secs(900),
            region: "us-east-1".into(),
            endpoint: None,
        }
    }

    #[test]
    fn times_format_in_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_451_347_200); // 2015-12-29T00:00:00Z
        assert_eq!(sigv4_times(t), ("20151229".to_owned(), "20151229T000000Z".to_owned()));
        let leap = SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_210_096_700); // 2024-02-29T12:34:56.7Z
        assert_eq!(rfc3339(leap), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn the_policy_fixes_key_type_and_size() {
        let creds =
            Credentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None, None, "t");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_451_347_200);
        let post = presign_post(&request(), &creds, now).unwrap();
        assert_eq!(post.url, "https://sigv4examplebucket.s3.us-east-1.amazonaws.com/");
        assert_eq!(post.expires_at, "2015-12-29T00:15:00.000Z");
        assert_eq!(post.fields["x-amz-credential"], "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request");
        let policy = base64::engine::general_purpose::STANDARD.decode(&post.fields["policy"]).unwrap();
        let policy: serde_json::Value = serde_json::from_slice(&policy).unwrap();
        let conditions = policy["conditions"].as_array().unwrap();
        assert!(conditions.contains(&serde_json::json!(["content-length-range", 1, 10_485_760])));
        assert!(conditions.contains(&serde_json::json!({"key": "uploads/u/42/me.jpg"})));
        assert!(conditions.contains(&serde_json::json!({"Content-Type": "image/jpeg"})));
        assert!(conditions.contains(&serde_json::json!({"bucket": "sigv4examplebucket"})));
        // Every field but the policy and signature is itself a condition, so nothing can be swapped.
        for (k, v) in post.fields.iter().filter(|(k, _)| *k != "policy" && *k != "x-amz-signature") {
            assert!(conditions.contains(&serde_json::json!({ k: v })), "{k} is not in the policy");
        }
        // Known answer: HMAC-SHA256 over this policy with the SigV4 key chain, computed independently
        // (Python's hmac module) for these credentials and this time.
        assert_eq!(post.fields["x-amz-signature"], "46d87b10a0aa88c429b2b9502e790565e78c390dc676d9b3ace3a29186645ce3");
        let with_token = Credentials::new("AKID", "secret", Some("tok".into()), None, "t");
        assert_eq!(presign_post(&request(), &with_token, now).unwrap().fields["x-amz-security-token"], "tok");
    }

    #[test]
    fn the_signature_follows_aws_sigv4() {
        // The signing-key derivation example from AWS's SigV4 documentation.
        let key = aws_sigv4::sign::v4::generate_signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_329_264_000), // 2012-02-15
            "us-east-1",
            "iam",
        );
        let hex: String = key.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }

    #[test]
    fn bad_requests_are_refused() {
        let creds = Credentials::new("a", "b", None, None, "t");
        let now = SystemTime::now();
        let refused = |f: fn(&mut PostPolicyRequest)| {
            let mut r = request();
            f(&mut r);
            presign_post(&r, &creds, now).unwrap_err()
        };
        assert!(matches!(refused(|r| r.content_type = "text/html".into()), PresignError::ContentType(_)));
        let of_type = |t: &str| {
            let mut r = request();
            r.content_type = t.into();
            presign_post(&r, &creds, now)
        };
        for heif in ["image/heic", "image/heif", "image/avif"] {
            let refused_heif = matches!(of_type(heif), Err(PresignError::ContentType(_)));
            assert_eq!(refused_heif, !crate::pipeline::decode::HEIF_SUPPORTED, "{heif}");
        }
        assert!(of_type("image/gif").is_ok());
        assert_eq!(refused(|r| r.max_bytes = 0), PresignError::MaxBytes);
        assert_eq!(refused(|r| r.expires_in = Duration::from_secs(8 * 86_400)), PresignError::Expiry);
        assert_eq!(refused(|r| r.key.clear()), PresignError::Key);
        assert_eq!(parse_expiry("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_expiry("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_expiry("600"), Ok(Duration::from_secs(600)));
        assert!(parse_expiry("8d").is_err() && parse_expiry("0s").is_err() && parse_expiry("soon").is_err());
    }
}
