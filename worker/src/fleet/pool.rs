//! The worker's rendering threads: a fixed pool of `IMGFLEET_CONCURRENCY` OS threads, each
//! rendering one image at a time, fed through a bounded channel. The async side (receive, fetch,
//! store, publish, heartbeat) stays on tokio; a job hands its bytes to the pool and awaits the
//! result.
//!
//! Why not tokio's blocking pool: its threads come and go by the hundred over a task's life, and
//! each one that renders grows an allocator arena that keeps its peak, so the worker used to map
//! every image buffer afresh instead (and fault it in page by page; the cost is in
//! docs/performance.md). A fixed
//! set of threads bounds the arenas, so the worker keeps freed memory for the next image as
//! `imgfleet process` does ([`crate::ops::memory::keep_freed_memory`]); after an unusually large image a
//! thread hands what it freed back to the system ([`crate::ops::memory::trim`]), so one 40 MP photo
//! does not pin its buffers for the rest of the task's life. Measured in docs/performance.md and
//! docs/reliability.md.

use crate::fleet::job::Renderer;
use crate::pipeline::{RenderError, RenderOptions, Rendered};
use imgfleet_shared::Preset;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// A source of at least this many pixels is unusually large: after it, the thread that rendered
/// it returns its freed memory to the system.
pub const TRIM_AFTER_PIXELS: u64 = 16_000_000;

/// One image to render, and where its result goes.
struct Task {
    bytes: Vec<u8>,
    preset: Preset,
    options: RenderOptions,
    render: Renderer,
    span: tracing::Span,
    reply: oneshot::Sender<Result<Rendered, RenderError>>,
}

/// The pool could not render an image: a rendering thread died under it (never the image's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rendering thread stopped before answering")]
pub struct PoolError;

/// A fixed pool of rendering threads. Cloning shares the pool; the threads end when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct RenderPool {
    tx: mpsc::Sender<Task>,
}

impl RenderPool {
    /// Starts `threads` rendering threads (at least one). Callers bound the renders in flight to
    /// `threads` (the job context's CPU slots), so a task waits in the channel only while a
    /// thread finishes answering the previous one.
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Task>(threads);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new().name(format!("imgfleet-render-{i}")).spawn(move || serve(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a rendering thread");
            }
        }
        Self { tx }
    }

    /// Renders `bytes` on a pool thread with `render` and returns its result.
    pub async fn render(
        &self,
        bytes: Vec<u8>,
        preset: Preset,
        options: RenderOptions,
        render: Renderer,
    ) -> Result<Result<Rendered, RenderError>, PoolError> {
        let (reply, answer) = oneshot::channel();
        let task = Task { bytes, preset, options, render, span: tracing::Span::current(), reply };
        self.tx.send(task).await.map_err(|_| PoolError)?;
        answer.await.map_err(|_| PoolError)
    }
}

/// A rendering thread's loop: one task at a time until the pool is dropped.
fn serve(rx: &Mutex<mpsc::Receiver<Task>>) {
    loop {
        // The lock is held only while waiting for the next task, never while rendering.
        let next = rx.lock().ok().and_then(|mut rx| rx.blocking_recv());
        let Some(task) = next else { return };
        let Task { bytes, preset, options, render, span, reply } = task;
        // `render` catches panics itself; this keeps the thread alive should any other code panic.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            span.in_scope(|| render(&bytes, &preset, &options))
        }));
        let large =
            result.as_ref().ok().and_then(|r| r.as_ref().ok()).is_some_and(|r| {
                u64::from(r.result.source.width) * u64::from(r.result.source.height) >= TRIM_AFTER_PIXELS
            });
        drop(bytes);
        match result {
            Ok(result) => {
                let _ = reply.send(result);
            }
            Err(_) => drop(reply),
        }
        if large {
            crate::ops::memory::trim();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(bytes: &[u8], preset: &Preset, options: &RenderOptions) -> Result<Rendered, RenderError> {
        crate::pipeline::render(bytes, preset, options)
    }

    fn panics(_: &[u8], _: &Preset, _: &RenderOptions) -> Result<Rendered, RenderError> {
        panic!("a bug outside the pipeline's own guard")
    }

    #[tokio::test]
    async fn renders_on_its_own_threads_and_survives_a_panic() {
        let pool = RenderPool::new(1);
        let preset = Preset::default_profile();
        let options = RenderOptions::default();
        let died = pool.render(vec![], preset.clone(), options, panics).await;
        assert_eq!(died.err(), Some(PoolError), "a panic answers as a stopped thread");
        // The same (only) thread still serves: an empty input is refused by the pipeline itself.
        let refused = pool.render(vec![], preset.clone(), options, ok).await.expect("the thread is alive");
        assert!(refused.is_err());
        fn whoami(_: &[u8], _: &Preset, _: &RenderOptions) -> Result<Rendered, RenderError> {
            let name = std::thread::current().name().unwrap_or_default().to_owned();
            Err(crate::pipeline::resize::ResizeError::new(name).into())
        }
        let named = pool.render(vec![], preset, options, whoami).await.unwrap().unwrap_err();
        assert!(named.to_string().contains("imgfleet-render-0"), "{named}");
    }
}
