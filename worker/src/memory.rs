//! Memory returned to the system under the churn of large images.
//!
//! glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
//! decode and resize buffers of a few MiB come from the per-thread arenas instead, and with many
//! blocking threads those arenas keep their peak: a worker's resident memory crept up image after
//! image. A fixed 1 MiB threshold keeps every image-sized buffer in its own mapping, unmapped when
//! freed. Measured in docs/reliability.md (96 images, 2 jobs at once: peak 593 MB and still
//! growing, against 416 MB flat).
//!
//! Only the commands that run on the async runtime (the worker and `demo` render there) set it.
//! `imgfleet process` renders on a fixed number of threads, one image each, so its arenas stay
//! bounded; there mapping every buffer afresh cost about 10 % of the time in page faults
//! (docs/performance.md), and it keeps freed memory for the next image instead
//! ([`keep_freed_memory`]).

/// Buffers at least this large get their own mapping.
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// Buffers up to this size come from the arenas when memory is kept for reuse (the largest mmap
/// threshold glibc accepts on 64-bit targets).
pub const BATCH_MMAP_THRESHOLD: usize = 32 << 20;

/// Free memory at the top of an arena is handed back to the system only beyond this, when kept.
pub const BATCH_TRIM_THRESHOLD: usize = 128 << 20;

/// For a fixed number of rendering threads (`imgfleet process`, the pipeline benchmark): decode
/// and resize buffers up to [`BATCH_MMAP_THRESHOLD`] come from the thread's arena and the next
/// image reuses them, rather than mapping them afresh and faulting them in page by page. On the 10
/// corpus photos: page faults 20 000 -> 6 600 per 40 images, system time 0.13-0.25 -> 0.08 s,
/// peak RSS 34 MB either way. Call before the rendering threads start; a no-op outside glibc.
pub fn keep_freed_memory() {
    set(Tunable::MmapThreshold, BATCH_MMAP_THRESHOLD);
    set(Tunable::TrimThreshold, BATCH_TRIM_THRESHOLD);
}

/// Sets the allocator's mmap threshold; call before the threads that render start. A no-op
/// outside glibc.
pub fn return_freed_memory() {
    set(Tunable::MmapThreshold, MMAP_THRESHOLD);
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
