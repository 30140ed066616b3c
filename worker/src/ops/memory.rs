//! Memory under the churn of large images: how freed image buffers are kept or returned.
//!
//! glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
//! decode and resize buffers of a few MiB come from per-thread arenas, which keep their peak. While
//! the worker rendered on tokio's blocking pool (threads by the hundred over a task's life) its
//! resident memory crept up image after image, so it fixed a 1 MiB threshold: every image-sized
//! buffer in a mapping of its own, unmapped when freed, and faulted in page by page for the next
//! image (docs/reliability.md).
//!
//! Every command now renders on a fixed number of threads, one image each (`imgfleet process`'s
//! jobs, the worker's [`crate::fleet::pool::RenderPool`]), so the arenas are bounded: they keep freed
//! memory for the next image ([`keep_freed_memory`]), and a thread that rendered an unusually
//! large image hands its free memory back ([`trim`]). Measured in docs/performance.md and
//! docs/reliability.md.

/// Buffers up to this size come from the arenas when memory is kept for reuse (the largest mmap
/// threshold glibc accepts on 64-bit targets).
pub const BATCH_MMAP_THRESHOLD: usize = 32 << 20;

/// The fleet worker's mmap threshold: buffers up to this size (a typical photo's shrunk planes,
/// resize and encode buffers) are kept for the next image; larger ones (a source file of a few
/// MB, a large photo's planes) get a mapping of their own, unmapped when freed. How 2 MiB was
/// chosen against 1 and 32 MiB (peak memory under churn, CPU per image): docs/performance.md,
/// "Rendering threads in the worker".
pub const WORKER_MMAP_THRESHOLD: usize = 2 << 20;

/// Free memory at the top of an arena is handed back to the system only beyond this, when kept.
pub const BATCH_TRIM_THRESHOLD: usize = 128 << 20;

/// For a fixed number of rendering threads (`imgfleet process`, the worker's pool, the pipeline benchmark): decode
/// and resize buffers up to [`BATCH_MMAP_THRESHOLD`] come from the thread's arena and the next
/// image reuses them, rather than mapping them afresh and faulting them in page by page (measured
/// in docs/performance.md, "Memory kept for the next image"). Call before the rendering threads
/// start; a no-op outside glibc.
pub fn keep_freed_memory() {
    keep_freed_memory_below(BATCH_MMAP_THRESHOLD);
}

/// [`keep_freed_memory`] for buffers below `mmap_threshold` only ([`WORKER_MMAP_THRESHOLD`] for
/// the fleet worker). Call before the rendering threads start; a no-op outside glibc.
pub fn keep_freed_memory_below(mmap_threshold: usize) {
    set(Tunable::MmapThreshold, mmap_threshold);
    set(Tunable::TrimThreshold, BATCH_TRIM_THRESHOLD);
}

/// Hands the free memory of every arena back to the system (`malloc_trim`): after an unusually
/// large image, so its buffers are not kept for the rest of the process's life. A no-op outside
/// glibc.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only returns free memory to the system, under glibc's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The glibc allocator settings set here.
#[derive(Clone, Copy)]
enum Tunable {
    MmapThreshold,
    TrimThreshold,
}

/// Sets one allocator tunable; a no-op outside glibc.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(unused_variables))]
fn set(tunable: Tunable, bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes an allocator tunable, under glibc's own lock.
    unsafe {
        let param = match tunable {
            Tunable::MmapThreshold => libc::M_MMAP_THRESHOLD,
            Tunable::TrimThreshold => libc::M_TRIM_THRESHOLD,
        };
        libc::mallopt(param, libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX));
    }
}
