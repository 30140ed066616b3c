//! Any bytes through the whole pipeline (sniff, header limits, decode, orient, resize, encode):
//! renditions or a typed rejection, never a panic (not even a caught one), a hang or an
//! allocation past the limits.
#![no_main]

use imgfleet_shared::{Limits, Preset};
use imgfleet_worker::pipeline::{RenderError, RenderOptions, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast; the checks are the same as with the defaults.
    let options = RenderOptions {
        limits: Limits { max_source_bytes: 1 << 20, max_source_pixels: 1 << 20, max_side: 4096 },
        ..RenderOptions::default()
    };
    match render(data, &Preset::default_profile(), &options) {
        Ok(r) => assert_eq!(r.outputs.len(), r.result.renditions.len()),
        Err(RenderError::Panic(message)) => panic!("a decoder panicked: {message}"),
        Err(_) => {}
    }
});
