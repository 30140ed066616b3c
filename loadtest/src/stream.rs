//! Reads the workers' events from the Redis stream as they are appended.
//!
//! The position to read from is taken before the first upload: the ID of the stream's last entry
//! (what `$` means to XREAD), or `0-0` while the stream does not exist yet. From there each XREAD
//! BLOCKs for new entries and continues from the last ID it got, so nothing appended between two
//! reads is missed, and a reconnect resumes where it left off (unless the stream was trimmed past it).
//! The connection's response timeout must exceed the BLOCK time: the redis crate's default of 500 ms
//! would cut every idle read short.

use anyhow::Context as _;
use imgfleet_shared::event::Event;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadReply};
use std::time::Duration;

/// How long one XREAD waits for new entries.
pub const BLOCK: Duration = Duration::from_millis(1000);
/// Entries per XREAD at most.
const COUNT: usize = 500;

/// An entry of the stream: its event, or why its `event` field could not be read.
pub type Entry = Result<Event, String>;

/// A reader positioned on one stream.
#[derive(Debug)]
pub struct StreamReader {
    client: redis::Client,
    connection: MultiplexedConnection,
    stream: String,
    last_id: String,
}

impl StreamReader {
    /// Connects and takes the current end of `stream` as the starting point.
    pub async fn connect(url: &str, stream: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("invalid Redis URL {url}"))?;
        let connection = open(&client).await.with_context(|| format!("cannot connect to Redis at {url}"))?;
        let mut reader = Self { client, connection, stream: stream.to_owned(), last_id: String::new() };
        reader.last_id = reader.end_id().await?;
        Ok(reader)
    }

    /// The ID reading continues after.
    pub fn position(&self) -> &str {
        &self.last_id
    }

    async fn end_id(&mut self) -> anyhow::Result<String> {
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&self.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.connection)
            .await
            .with_context(|| format!("XREVRANGE {}", self.stream))?;
        Ok(reply.ids.into_iter().next().map_or_else(|| "0-0".to_owned(), |e| e.id))
    }

    /// Waits up to [`BLOCK`] for entries after the current position and moves past them.
    pub async fn read(&mut self) -> anyhow::Result<Vec<Entry>> {
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(&self.last_id)
            .query_async(&mut self.connection)
            .await
            .with_context(|| format!("XREAD {}", self.stream))?;
        let mut entries = Vec::new();
        for id in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            entries.push(match id.get::<String>("event") {
                Some(json) => serde_json::from_str(&json).map_err(|e| format!("entry {}: {e}", id.id)),
                None => Err(format!("entry {} has no event field", id.id)),
            });
            self.last_id = id.id;
        }
        Ok(entries)
    }

    /// Opens a new connection after an error; the position is kept.
    pub async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.connection = open(&self.client).await.context("cannot reconnect to Redis")?;
        Ok(())
    }
}

async fn open(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
    client.get_multiplexed_async_connection_with_config(&config).await
}
