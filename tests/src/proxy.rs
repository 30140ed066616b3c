//! A fault-injecting HTTP proxy in front of moto server: per service (S3 or SQS), requests pass,
//! are delayed, get an error answer, or have their connection closed unanswered (an endpoint that
//! cannot be reached). Every request is counted, so a test can tell retries from a hot loop.
//!
//! One request per connection: the request goes upstream with `Connection: close` and the answer
//! comes back with it too, which keeps the proxy a few dozen lines.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Which API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    Sqs,
}

/// What happens to a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    Pass,
    /// Forwarded after this long.
    Delay(Duration),
    /// Answered with this status and an S3/SQS-style error body, never forwarded.
    Error(u16),
    /// The connection is closed without an answer.
    Drop,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub service: Service,
    pub method: String,
    pub path: String,
    pub at: Instant,
    pub fault: Fault,
}

#[derive(Debug, Default)]
struct State {
    s3: Fault,
    sqs: Fault,
    seen: Vec<Seen>,
}

/// The running proxy; it stops with the test process.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (state, upstream) = (shared.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, &state).await;
                });
            }
        });
        Self { addr, state }
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, service: Service, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        match service {
            Service::S3 => s.s3 = fault,
            Service::Sqs => s.sqs = fault,
        }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests for `service` seen since `since`.
    pub fn count(&self, service: Service, since: Instant) -> usize {
        self.state.lock().unwrap().seen.iter().filter(|s| s.service == service && s.at >= since).count()
    }
}

async fn serve(mut client: TcpStream, upstream: &str, state: &Mutex<State>) -> std::io::Result<()> {
    let (head, body) = read_request(&mut client).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut first = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (first.next().unwrap_or_default().to_owned(), first.next().unwrap_or_default().to_owned());
    let service =
        if text.to_ascii_lowercase().contains("x-amz-target: amazonsqs") { Service::Sqs } else { Service::S3 };
    let fault = {
        let mut s = state.lock().unwrap();
        let fault = if service == Service::S3 { s.s3 } else { s.sqs };
        s.seen.push(Seen { service, method, path, at: Instant::now(), fault });
        fault
    };
    match fault {
        Fault::Drop => return Ok(()),
        Fault::Error(status) => {
            let code = if status == 503 { "SlowDown" } else { "InternalError" };
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"
            );
            let answer = format!(
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nx-amzn-query-error: {code};Receiver\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            return client.write_all(answer.as_bytes()).await;
        }
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Pass => {}
    }
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&with_connection_close(&head)).await?;
    up.write_all(&body).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    let split = find(&answer, b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
    client.write_all(&with_connection_close(&answer[..split])).await?;
    client.write_all(&answer[split..]).await?;
    client.shutdown().await
}

/// Reads one request: the header block (with its blank line) and the body.
async fn read_request(client: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = buf[..end].to_vec();
    let mut body = buf[end..].to_vec();
    let lower = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length =
        lower.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(length) = length {
        while body.len() < length {
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if lower.contains("transfer-encoding: chunked") {
        while find(&body, b"0\r\n\r\n").is_none() {
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Ok((head, body))
}

/// The header block with any `Connection` header replaced by `Connection: close`.
fn with_connection_close(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = text.trim_end_matches("\r\n").split("\r\n").collect();
    lines.retain(|l| {
        !l.to_ascii_lowercase().starts_with("connection:") && !l.to_ascii_lowercase().starts_with("keep-alive:")
    });
    let mut out = lines.join("\r\n");
    out.push_str("\r\nConnection: close\r\n\r\n");
    out.into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
