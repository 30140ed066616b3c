//! Decompression bombs are refused from their headers: while rendering one, no single allocation
//! is larger than the input plus a small constant, and the memory live at once stays small. A
//! counting allocator measures it (this file is its own test binary, with one test, so nothing else
//! allocates meanwhile).

// A global allocator is an unsafe trait; this one only counts and defers to the system allocator.
#![allow(unsafe_code)]

mod common;

use common::*;
use imgfleet_shared::{ErrorKind, ImageFormat, Preset};
use imgfleet_worker::pipeline::{RenderOptions, render};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        LARGEST.fetch_max(layout.size(), Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let live = LIVE.fetch_add(new_size - layout.size(), Relaxed) + new_size - layout.size();
            PEAK.fetch_max(live, Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        LARGEST.fetch_max(new_size, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What the pipeline may allocate on top of the input before it refuses a bomb.
const SMALL: usize = 256 * 1024;

#[test]
fn bombs_are_refused_before_any_large_allocation() {
    let good = jpeg(64, 48);
    let bombs = [
        ("jpeg SOF 60000x60000", patch_sof(&good, 60_000, 60_000)),
        ("jpeg SOF 8000x8000 (64 MP, over the pixel limit)", patch_sof(&good, 8_000, 8_000)),
        ("png IHDR 60000x60000", png_header_only(60_000, 60_000)),
        ("png IHDR 7000x7000 with data", {
            let mut png = png_of(&photo_rgb(64, 48), 64, 48, png::ColorType::Rgb, png::BitDepth::Eight, None);
            png[16..20].copy_from_slice(&7000u32.to_be_bytes());
            png[20..24].copy_from_slice(&7000u32.to_be_bytes());
            png
        }),
        ("webp VP8 16383x16383", webp_frame_bomb(&webp::Encoder::from_rgb(&photo_rgb(64, 48), 64, 48).encode(80.0))),
    ];
    let mut report = Vec::new();
    for (name, bytes) in bombs {
        let (preset, options) = (Preset::default_profile(), RenderOptions::default());
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        LARGEST.store(0, Relaxed);
        let result = render(&bytes, &preset, &options);
        let (largest, peak) = (LARGEST.load(Relaxed), PEAK.load(Relaxed) - before);
        let kind = result.err().map(|e| e.kind());
        assert_eq!(kind, Some(ErrorKind::TooLarge), "{name}");
        report.push(format!("{name}: input {} B, largest allocation {largest} B, peak live {peak} B", bytes.len()));
        assert!(largest <= bytes.len() + SMALL, "{name}: an allocation of {largest} B for {} B of input", bytes.len());
        assert!(peak <= bytes.len() + 4 * SMALL, "{name}: {peak} B live at once for {} B of input", bytes.len());
    }
    eprintln!("{}", report.join("\n"));

    // The counter does see real work: a full-size decode of a 2000x1500 JPEG needs a 3 MB luma plane.
    let photo = jpeg(2000, 1500);
    LARGEST.store(0, Relaxed);
    imgfleet_worker::pipeline::decode::decode(&photo, ImageFormat::Jpeg, &Default::default()).expect("decodes");
    assert!(LARGEST.load(Relaxed) >= 2000 * 1500, "the counting allocator missed the decode buffer");
    // Rendered, the same photo is shrunk by 2 band by band as it is decoded: no full-size plane.
    LARGEST.store(0, Relaxed);
    render(&photo, &Preset::default_profile(), &RenderOptions::default()).expect("renders");
    let largest = LARGEST.load(Relaxed);
    assert!(largest < 2000 * 1500 / 2, "render allocated {largest} B at once for a 2000x1500 photo");
}
