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
//! `imgfleet process` renders on a fixed number of threads, so glibc's defaults stay bounded
//! there, and mapping every buffer afresh cost it about 10 % of its time in page faults
//! (docs/performance.md).

/// Buffers at least this large get their own mapping.
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// Sets the allocator's mmap threshold; call before the threads that render start. A no-op
/// outside glibc.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes an allocator tunable, under glibc's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}
