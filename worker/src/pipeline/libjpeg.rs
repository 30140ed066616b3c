//! libjpeg-turbo's JPEG compressor (mozjpeg-sys, in its libjpeg-turbo-compatible "fastest"
//! profile: standard quantisation tables, no trellis), set up for renditions: baseline (or, when a
//! preset asks, progressive with libjpeg's standard scan script), 4:2:0, optimised Huffman tables,
//! and nothing in the file but JFIF, DQT, SOF, DHT and the scans.
//!
//! Optimised Huffman tables take two passes over the quantised blocks: the first counts the
//! symbols the blocks will be coded with, the second codes them with tables made for those counts.
//! libjpeg's counting pass visits each of a block's 63 AC coefficients in turn with a branch on
//! each, which the CPU mispredicts wherever zeros and non-zeros alternate (its share of the job's
//! time is in docs/performance.md). Here that pass is replaced by [`count_block`], which makes a bit mask of a
//! block's non-zero coefficients in zig-zag order and visits only those. The counts are the same,
//! so the tables and the files are byte for byte the ones libjpeg makes (tested against libjpeg's
//! own pass). libjpeg is built for this replacement: each stage is an object with a method table
//! (`struct jpeg_entropy_encoder` in jpegint.h), and the counting pass's two methods are swapped
//! after `jpeg_start_compress`, when libjpeg has set them up for the pass.
//!
//! libjpeg reports errors by calling its error handler, which must not return; here it unwinds (as
//! the `mozjpeg` crate's does), and [`compress`] turns that into an error string.

#![allow(unsafe_code)]

use super::pixels::{Pixels, YccPlanes};
use mozjpeg_sys as ffi;
use std::ffi::{c_int, c_long, c_void};
use std::mem::size_of;

/// JPEG from interleaved RGB rows (`width * height * 3` bytes).
pub fn encode_rgb(rgb: &[u8], width: u32, height: u32, quality: u8, progressive: bool) -> Result<Vec<u8>, String> {
    compress(width, height, Quality { quality, progressive }, Input::Rgb(rgb), Counting::Mask)
}

/// JPEG from 4:2:0 YCbCr planes (libjpeg's raw data input): the samples are coded as they are.
pub fn encode_planes(planes: &YccPlanes, quality: u8, progressive: bool) -> Result<Vec<u8>, String> {
    let input = Input::Planes([&planes.y, &planes.cb, &planes.cr]);
    compress(planes.y.width, planes.y.height, Quality { quality, progressive }, input, Counting::Mask)
}

/// The quality setting (1–100) and whether the file is progressive (libjpeg's standard
/// progression, `jpeg_simple_progression`; its Huffman tables are then counted by libjpeg).
#[derive(Clone, Copy)]
struct Quality {
    quality: u8,
    progressive: bool,
}

enum Input<'a> {
    Rgb(&'a [u8]),
    Planes([&'a Pixels; 3]),
}

/// Who counts the Huffman symbols: [`count_block`], or libjpeg's own pass (for tests).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counting {
    Mask,
    #[cfg_attr(not(test), allow(dead_code))]
    Libjpeg,
}

fn compress(
    width: u32,
    height: u32,
    quality: Quality,
    input: Input<'_>,
    counting: Counting,
) -> Result<Vec<u8>, String> {
    let run = || {
        let mut c = Compressor::new(matches!(input, Input::Rgb(_)));
        c.settings(width, height, quality, matches!(input, Input::Planes(_)));
        c.start(counting);
        match input {
            Input::Rgb(rgb) => c.write_rgb(rgb)?,
            Input::Planes(planes) => c.write_planes(planes)?,
        }
        Ok(c.finish())
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(panic) => Err(super::panic_message(panic.as_ref()).unwrap_or_else(|| "libjpeg error".into())),
    }
}

/// A `jpeg_compress_struct` and what it points to, destroyed together (also when libjpeg unwinds).
struct Compressor {
    cinfo: Box<ffi::jpeg_compress_struct>,
    err: Box<ffi::jpeg_error_mgr>,
    dest: Box<Destination>,
    counts: Box<Counts>,
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // SAFETY: cinfo was set up by jpeg_CreateCompress (or is zeroed, which jpeg_destroy accepts);
        // its err, dest and client_data point into boxes that outlive this call.
        unsafe { ffi::jpeg_destroy_compress(&mut self.cinfo) }
    }
}

impl Compressor {
    fn new(rgb: bool) -> Self {
        // SAFETY: all-zero is the documented initial state of both structs (libjpeg's example.c);
        // jpeg_std_error fills the error manager, jpeg_CreateCompress the rest.
        let mut c = unsafe {
            Compressor {
                cinfo: Box::new(std::mem::zeroed()),
                err: Box::new(std::mem::zeroed()),
                dest: Box::new(Destination::new()),
                counts: Box::new(Counts::default()),
            }
        };
        // SAFETY: the pointers stored in cinfo point into boxes owned by `c`, which destroys cinfo
        // before they are freed.
        unsafe {
            ffi::jpeg_std_error(&mut c.err);
            c.err.error_exit = Some(unwind_error_exit);
            c.err.emit_message = Some(silence_message);
            c.cinfo.common.err = &mut *c.err;
            ffi::jpeg_CreateCompress(&mut *c.cinfo, ffi::JPEG_LIB_VERSION, size_of::<ffi::jpeg_compress_struct>());
            c.cinfo.in_color_space = if rgb { ffi::J_COLOR_SPACE::JCS_RGB } else { ffi::J_COLOR_SPACE::JCS_YCbCr };
            c.cinfo.input_components = 3;
            c.cinfo.dest = &mut c.dest.mgr;
            c.cinfo.common.client_data = (&mut *c.counts as *mut Counts).cast::<c_void>();
        }
        c
    }

    /// libjpeg-turbo's defaults, the size, quality, 4:2:0 and optimised Huffman tables.
    fn settings(&mut self, width: u32, height: u32, quality: Quality, raw: bool) {
        let cinfo = &mut *self.cinfo;
        // SAFETY: cinfo is a created compressor that has not started.
        unsafe {
            ffi::jpeg_set_defaults(cinfo);
            ffi::jpeg_c_set_int_param(
                cinfo,
                ffi::J_INT_PARAM::JINT_COMPRESS_PROFILE,
                ffi::JINT_COMPRESS_PROFILE_VALUE::JCP_FASTEST as c_int,
            );
            ffi::jpeg_set_defaults(cinfo);
            cinfo.image_width = width;
            cinfo.image_height = height;
            ffi::jpeg_set_quality(cinfo, c_int::from(quality.quality.clamp(1, 100)), 0);
            let components = std::slice::from_raw_parts_mut(cinfo.comp_info, 3);
            for (c, sampling) in components.iter_mut().zip([2, 1, 1]) {
                (c.h_samp_factor, c.v_samp_factor) = (sampling, sampling);
            }
            cinfo.optimize_coding = 1;
            cinfo.raw_data_in = c_int::from(raw);
            if quality.progressive {
                // After the sampling factors: the script is made for the components as set.
                ffi::jpeg_simple_progression(cinfo);
            }
        }
        // A rendition's JPEG is rarely over a quarter byte per pixel: room for it up front.
        self.dest.out.reserve(width as usize * height as usize / 4);
    }

    fn start(&mut self, counting: Counting) {
        // SAFETY: the settings above make a valid single-scan baseline compressor.
        unsafe { ffi::jpeg_start_compress(&mut self.cinfo, 1) };
        if counting == Counting::Mask {
            self.count_with_masks();
        }
    }

    /// Swaps libjpeg's symbol-counting methods for [`count_mcu`] and [`make_tables`], when this is
    /// the one interleaved scan of a 3-component baseline image with optimised tables (what
    /// [`Self::settings`] asks for); otherwise libjpeg counts.
    fn count_with_masks(&mut self) {
        let cinfo = &*self.cinfo;
        if cinfo.num_components != 3
            || cinfo.optimize_coding == 0
            || cinfo.arith_code != 0
            || cinfo.restart_interval != 0
            || !cinfo.scan_info.is_null()
        {
            return;
        }
        // SAFETY: comp_info holds num_components entries once the compressor has started.
        let components = unsafe { std::slice::from_raw_parts(cinfo.comp_info, 3) };
        let mut blocks = 0;
        for (ci, c) in components.iter().enumerate() {
            let n = (c.h_samp_factor * c.v_samp_factor) as usize;
            let tables = (c.dc_tbl_no as usize, c.ac_tbl_no as usize);
            if blocks + n > self.counts.membership.len() || tables.0 >= 4 || tables.1 >= 4 {
                return;
            }
            // An interleaved scan's MCU holds each component's h x v blocks in turn (jcmaster.c).
            self.counts.membership[blocks..blocks + n].fill(ci as u8);
            self.counts.tables[ci] = tables;
            blocks += n;
        }
        self.counts.blocks = blocks;
        // SAFETY: the compressor has started, so `entropy` points to libjpeg's Huffman encoder, whose
        // first member is its method table; it is set for the counting pass now (jcmaster.c calls
        // start_pass(cinfo, optimize_coding) when the first pass is prepared) and set again for the
        // output pass by libjpeg's own start_pass, which these two methods leave alone.
        unsafe {
            let entropy = entropy(&mut self.cinfo);
            if entropy.is_null() || (*entropy).encode_mcu.is_none() || (*entropy).finish_pass.is_none() {
                return;
            }
            (*entropy).encode_mcu = Some(count_mcu);
            (*entropy).finish_pass = Some(make_tables);
        }
    }

    fn write_rgb(&mut self, rgb: &[u8]) -> Result<(), String> {
        let row = self.cinfo.image_width as usize * 3;
        if rgb.len() != row * self.cinfo.image_height as usize {
            return Err(format!("expected {} bytes of RGB, got {}", row * self.cinfo.image_height as usize, rgb.len()));
        }
        for rows in rgb.chunks(16 * row) {
            let pointers: Vec<*const u8> = rows.chunks_exact(row).map(<[u8]>::as_ptr).collect();
            let mut done = 0;
            while done < pointers.len() {
                // SAFETY: each pointer is a whole row of `rgb`, which outlives the call.
                let n = unsafe {
                    ffi::jpeg_write_scanlines(
                        &mut self.cinfo,
                        pointers[done..].as_ptr(),
                        (pointers.len() - done) as ffi::JDIMENSION,
                    )
                };
                if n == 0 {
                    return Err("libjpeg took no rows".into());
                }
                done += n as usize;
            }
        }
        Ok(())
    }

    /// libjpeg reads raw data in whole 8 x 8 blocks, one iMCU row (16 luma rows) per call: each plane
    /// is padded to its blocks by repeating its last column and row, as libjpeg pads pixels.
    fn write_planes(&mut self, planes: [&Pixels; 3]) -> Result<(), String> {
        // SAFETY: comp_info holds 3 entries (settings) and the compressor has started.
        let components = unsafe { std::slice::from_raw_parts(self.cinfo.comp_info, 3) };
        let mut padded = Vec::with_capacity(3);
        for (c, plane) in components.iter().zip(planes) {
            let (w, h) = (c.width_in_blocks as usize * 8, c.height_in_blocks as usize * 8);
            padded.push((padded_plane(plane, w, h), w, h, c.v_samp_factor as usize * 8));
        }
        let luma_rows = padded[0].3;
        let mut row = 0;
        while (row as u32) < self.cinfo.image_height {
            let mut pointers = [[std::ptr::null::<u8>(); 16]; 3];
            for ((data, w, h, rows), ptrs) in padded.iter().zip(&mut pointers) {
                let first = row * rows / luma_rows;
                for (k, p) in ptrs[..*rows].iter_mut().enumerate() {
                    // libjpeg reads only rows inside the component's blocks; the rest stay null.
                    if first + k < *h {
                        *p = data[(first + k) * w..].as_ptr();
                    }
                }
            }
            let image = [pointers[0].as_ptr(), pointers[1].as_ptr(), pointers[2].as_ptr()];
            // SAFETY: every non-null pointer is a whole padded row; libjpeg reads v_samp x 8 rows of
            // each component per call, and none past the component's blocks.
            let n = unsafe { ffi::jpeg_write_raw_data(&mut self.cinfo, image.as_ptr(), luma_rows as ffi::JDIMENSION) };
            if n == 0 {
                return Err("libjpeg took fewer rows than the image has".into());
            }
            row += n as usize;
        }
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        // SAFETY: every row has been written.
        unsafe { ffi::jpeg_finish_compress(&mut self.cinfo) };
        std::mem::take(&mut self.dest.out)
    }
}

/// A `width` x `height` copy of a one-channel `plane`, its last column and row repeated.
fn padded_plane(plane: &Pixels, width: usize, height: usize) -> Vec<u8> {
    let w = (plane.width as usize).min(width);
    let mut out = Vec::with_capacity(width * height);
    for row in plane.data.chunks_exact(plane.width as usize).take(height) {
        out.extend_from_slice(&row[..w]);
        out.resize(out.len() + width - w, row[w - 1]);
    }
    let last = out.len() - width;
    while out.len() < width * height {
        out.extend_from_within(last..last + width);
    }
    out
}

unsafe extern "C-unwind" fn unwind_error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let mut buffer = [0u8; 80];
    // SAFETY: err is the error manager set up by jpeg_std_error; format_message writes at most
    // JMSG_LENGTH_MAX (80) bytes, NUL-terminated.
    let message = unsafe {
        match (*cinfo.err).format_message {
            Some(format) => {
                let format: unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, *mut u8) =
                    std::mem::transmute(format);
                format(cinfo, buffer.as_mut_ptr());
                let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
                String::from_utf8_lossy(&buffer[..end]).into_owned()
            }
            None => format!("code {}", (*cinfo.err).msg_code),
        }
    };
    std::panic::resume_unwind(Box::new(format!("libjpeg fatal error: {message}")));
}

unsafe extern "C-unwind" fn silence_message(_cinfo: &mut ffi::jpeg_common_struct, _level: c_int) {}

/// The output, grown as libjpeg fills it.
#[repr(C)]
struct Destination {
    mgr: ffi::jpeg_destination_mgr,
    out: Vec<u8>,
}

impl Destination {
    fn new() -> Self {
        Destination {
            mgr: ffi::jpeg_destination_mgr {
                next_output_byte: std::ptr::null_mut(),
                free_in_buffer: 0,
                init_destination: Some(init_destination),
                empty_output_buffer: Some(empty_output_buffer),
                term_destination: Some(term_destination),
            },
            out: Vec::new(),
        }
    }

    /// # Safety
    /// `cinfo.dest` must be the `mgr` of a live `Destination`.
    unsafe fn of(cinfo: &mut ffi::jpeg_compress_struct) -> &mut Destination {
        // SAFETY: mgr is the first field of a repr(C) Destination (the caller's promise).
        unsafe { &mut *cinfo.dest.cast::<Destination>() }
    }

    /// Offers libjpeg the spare capacity after `out`'s contents.
    fn offer_spare(&mut self) {
        self.out.reserve(self.out.len().max(4096));
        let len = self.out.len();
        // SAFETY: len <= capacity, so this is at most one past the end of the allocation.
        self.mgr.next_output_byte = unsafe { self.out.as_mut_ptr().add(len) };
        self.mgr.free_in_buffer = self.out.capacity() - len;
    }
}

unsafe extern "C-unwind" fn init_destination(cinfo: &mut ffi::jpeg_compress_struct) {
    // SAFETY: cinfo.dest was set by Compressor::new.
    let d = unsafe { Destination::of(cinfo) };
    d.out.clear();
    d.offer_spare();
}

/// libjpeg calls this when the whole buffer it was offered is full (jcphuff.c does not even update
/// the position first).
unsafe extern "C-unwind" fn empty_output_buffer(cinfo: &mut ffi::jpeg_compress_struct) -> ffi::boolean {
    // SAFETY: cinfo.dest was set by Compressor::new; libjpeg wrote all of the spare capacity offered.
    unsafe {
        let d = Destination::of(cinfo);
        d.out.set_len(d.out.capacity());
        d.offer_spare();
    }
    1
}

unsafe extern "C-unwind" fn term_destination(cinfo: &mut ffi::jpeg_compress_struct) {
    // SAFETY: cinfo.dest was set by Compressor::new; libjpeg wrote the offered bytes up to the ones
    // still free.
    unsafe {
        let d = Destination::of(cinfo);
        d.out.set_len(d.out.capacity() - d.mgr.free_in_buffer);
    }
}

/// libjpeg's entropy encoder method table (`struct jpeg_entropy_encoder`, jpegint.h).
#[repr(C)]
struct EntropyMethods {
    start_pass: Option<unsafe extern "C-unwind" fn(&mut ffi::jpeg_compress_struct, ffi::boolean)>,
    encode_mcu:
        Option<unsafe extern "C-unwind" fn(&mut ffi::jpeg_compress_struct, *mut ffi::JBLOCKROW) -> ffi::boolean>,
    finish_pass: Option<unsafe extern "C-unwind" fn(&mut ffi::jpeg_compress_struct)>,
}

/// The `entropy` member of a `jpeg_compress_struct`. The Rust binding keeps it private; jpeglib.h
/// ends the struct with `entropy`, `script_space` and `script_space_size` (an int, padded to a
/// pointer's alignment), in every ABI variant.
///
/// # Safety
/// `cinfo` must be a compressor made by `jpeg_CreateCompress`.
unsafe fn entropy(cinfo: &mut ffi::jpeg_compress_struct) -> *mut EntropyMethods {
    const OFFSET: usize = size_of::<ffi::jpeg_compress_struct>()
        - 2 * size_of::<*mut c_void>()
        - if size_of::<c_int>() > size_of::<*mut c_void>() { size_of::<c_int>() } else { size_of::<*mut c_void>() };
    // SAFETY: OFFSET is inside the struct and pointer-aligned (see above).
    unsafe { *(cinfo as *mut ffi::jpeg_compress_struct).cast::<u8>().add(OFFSET).cast::<*mut EntropyMethods>() }
}

unsafe extern "C-unwind" {
    /// Makes the optimal Huffman table for symbol counts (jchuff.c; `freq` has 257 entries and is
    /// overwritten).
    fn jpeg_gen_optimal_table(cinfo: &mut ffi::jpeg_compress_struct, htbl: *mut ffi::JHUFF_TBL, freq: *mut c_long);
}

/// Symbol counts for up to four DC and four AC tables, and the scan's MCU layout.
struct Counts {
    dc: [[c_long; 257]; 4],
    ac: [[c_long; 257]; 4],
    last_dc: [i32; 3],
    /// Component of each block of an MCU.
    membership: [u8; 10],
    blocks: usize,
    /// (DC, AC) table of each component.
    tables: [(usize, usize); 3],
    out_of_range: bool,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            dc: [[0; 257]; 4],
            ac: [[0; 257]; 4],
            last_dc: [0; 3],
            membership: [0; 10],
            blocks: 0,
            tables: [(0, 0); 3],
            out_of_range: false,
        }
    }
}

/// The counting pass's `encode_mcu`: counts one MCU's blocks (libjpeg's `encode_mcu_gather`).
unsafe extern "C-unwind" fn count_mcu(cinfo: &mut ffi::jpeg_compress_struct, mcu: *mut ffi::JBLOCKROW) -> ffi::boolean {
    // SAFETY: client_data is the Counts box (Compressor::new); libjpeg passes blocks_in_MCU block
    // pointers, which count_with_masks worked out as `blocks`.
    let counts = unsafe { &mut *cinfo.common.client_data.cast::<Counts>() };
    for b in 0..counts.blocks {
        let ci = usize::from(counts.membership[b]);
        // SAFETY: as above.
        let block = unsafe { &**mcu.add(b) };
        let (dc, ac) = counts.tables[ci];
        counts.out_of_range |= !count_block(block, counts.last_dc[ci], &mut counts.dc[dc], &mut counts.ac[ac]);
        counts.last_dc[ci] = i32::from(block[0]);
    }
    1
}

/// The counting pass's `finish_pass`: makes each table from its counts (libjpeg's
/// `finish_pass_gather`).
unsafe extern "C-unwind" fn make_tables(cinfo: &mut ffi::jpeg_compress_struct) {
    // SAFETY: client_data is the Counts box (Compressor::new).
    let counts = unsafe { &mut *cinfo.common.client_data.cast::<Counts>() };
    if counts.out_of_range {
        std::panic::resume_unwind(Box::new("libjpeg fatal error: DCT coefficient out of range".to_string()));
    }
    let (mut dc_done, mut ac_done) = ([false; 4], [false; 4]);
    for &(dc, ac) in &counts.tables {
        for (t, done, table, freq) in [
            (dc, &mut dc_done, &mut cinfo.dc_huff_tbl_ptrs[dc] as *mut *mut ffi::JHUFF_TBL, &mut counts.dc[dc]),
            (ac, &mut ac_done, &mut cinfo.ac_huff_tbl_ptrs[ac] as *mut *mut ffi::JHUFF_TBL, &mut counts.ac[ac]),
        ] {
            // A table's counts are made into a table once: jpeg_gen_optimal_table overwrites them.
            if done[t] {
                continue;
            }
            done[t] = true;
            // SAFETY: the table pointers are cinfo's own; jpeg_alloc_huff_table allocates from
            // cinfo's pool, and `freq` has the 257 entries jpeg_gen_optimal_table expects.
            unsafe {
                if (*table).is_null() {
                    *table = ffi::jpeg_alloc_huff_table(&mut cinfo.common);
                }
                jpeg_gen_optimal_table(cinfo, *table, freq.as_mut_ptr());
            }
        }
    }
}

/// Natural (row-major) index of each zig-zag position.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
];

/// Zig-zag position of each natural (row-major) index.
const ZIGZAG_POSITION: [u8; 64] = {
    let mut position = [0; 64];
    let mut k = 0;
    while k < 64 {
        position[ZIGZAG[k] as usize] = k as u8;
        k += 1;
    }
    position
};

/// For each nibble of a natural-order mask (coefficients 4n..4n+4) and each of its 16 values, the
/// same bits at those coefficients' zig-zag positions.
static NIBBLE_TO_ZIGZAG: [[u64; 16]; 16] = {
    let mut table = [[0; 16]; 16];
    let mut nibble = 0;
    while nibble < 16 {
        let mut value = 0;
        while value < 16 {
            let mut bit = 0;
            while bit < 4 {
                if value >> bit & 1 == 1 {
                    table[nibble][value] |= 1 << ZIGZAG_POSITION[nibble * 4 + bit];
                }
                bit += 1;
            }
            value += 1;
        }
        nibble += 1;
    }
    table
};

/// Bit k set where the coefficient at natural index k is non-zero.
#[cfg(target_arch = "x86_64")]
fn nonzero_mask(block: &[i16; 64]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_packs_epi16, _mm_setzero_si128,
    };
    let rows = block.as_ptr().cast::<__m128i>();
    let mut mask = 0;
    for i in 0..4 {
        // SAFETY: SSE2 is part of x86-64; the two loads read 16 of the block's 64 coefficients.
        // Packing to bytes with signed saturation keeps zero and non-zero apart.
        let zeros = unsafe {
            let packed = _mm_packs_epi16(_mm_loadu_si128(rows.add(2 * i)), _mm_loadu_si128(rows.add(2 * i + 1)));
            _mm_movemask_epi8(_mm_cmpeq_epi8(packed, _mm_setzero_si128()))
        };
        mask |= u64::from(!zeros as u16) << (16 * i);
    }
    mask
}

#[cfg(not(target_arch = "x86_64"))]
fn nonzero_mask(block: &[i16; 64]) -> u64 {
    block.iter().enumerate().fold(0, |mask, (k, &v)| mask | u64::from(v != 0) << k)
}

/// Counts the Huffman symbols one quantised block will be coded with (JPEG F.1.2): the size of its
/// DC difference from the previous block's, and, over its AC coefficients in zig-zag order, a
/// (zero run, size) symbol for each non-zero one, a ZRL (0xF0) for every 16 zeros before one, and
/// an EOB (0x00) if the block ends in zeros. Only the non-zero coefficients are visited, from a
/// mask of them in zig-zag order. False if a coefficient is too large for 8-bit JPEG.
fn count_block(block: &[i16; 64], last_dc: i32, dc: &mut [c_long; 257], ac: &mut [c_long; 257]) -> bool {
    let dc_bits = 32 - (i32::from(block[0]) - last_dc).unsigned_abs().leading_zeros();
    dc[dc_bits as usize] += 1;
    let natural = nonzero_mask(block);
    let mut nonzero = 0;
    for (nibble, table) in NIBBLE_TO_ZIGZAG.iter().enumerate() {
        nonzero |= table[(natural >> (4 * nibble)) as usize & 15];
    }
    nonzero &= !1;
    let (mut max_bits, mut last) = (0, 0);
    while nonzero != 0 {
        let k = nonzero.trailing_zeros();
        let mut run = k - last - 1;
        while run > 15 {
            ac[0xF0] += 1;
            run -= 16;
        }
        let bits = 32 - u32::from(block[usize::from(ZIGZAG[k as usize])].unsigned_abs()).leading_zeros();
        max_bits = max_bits.max(bits);
        ac[((run << 4) + bits) as usize] += 1;
        last = k;
        nonzero &= nonzero - 1;
    }
    if last != 63 {
        ac[0] += 1;
    }
    dc_bits <= 11 && max_bits <= 10
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::geometry::Ratio;

    /// libjpeg's `htest_one_block` (jchuff.c), transcribed.
    fn reference_counts(block: &[i16; 64], last_dc: i32, dc: &mut [c_long; 257], ac: &mut [c_long; 257]) {
        let mut temp = (i32::from(block[0]) - last_dc).abs();
        let mut nbits = 0;
        while temp != 0 {
            nbits += 1;
            temp >>= 1;
        }
        dc[nbits] += 1;
        let mut r = 0;
        for &n in &ZIGZAG[1..] {
            let mut temp = i32::from(block[usize::from(n)]);
            if temp == 0 {
                r += 1;
                continue;
            }
            while r > 15 {
                ac[0xF0] += 1;
                r -= 16;
            }
            temp = temp.abs();
            let mut nbits = 1;
            temp >>= 1;
            while temp != 0 {
                nbits += 1;
                temp >>= 1;
            }
            ac[(r << 4) + nbits] += 1;
            r = 0;
        }
        if r > 0 {
            ac[0] += 1;
        }
    }

    /// A deterministic pseudo-random sequence (xorshift).
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    #[test]
    fn block_counts_are_libjpegs() {
        let mut next = rng(7);
        let (mut dc, mut ac, mut dc_ref, mut ac_ref) = ([0; 257], [0; 257], [0; 257], [0; 257]);
        let mut last_dc = 0;
        for case in 0..20_000 {
            // Blocks from empty to full, with long zero runs, the last coefficient set or not, and
            // values up to the largest an 8-bit JPEG has.
            let density = [0, 1, 3, 10, 30, 64][case % 6];
            let mut block = [0i16; 64];
            for v in &mut block {
                if next() % 64 < density {
                    let magnitude = (next() % 1024) as i16 >> (next() % 10);
                    *v = if next().is_multiple_of(2) { magnitude } else { -magnitude };
                }
            }
            if case % 5 == 0 {
                block[63] = 1;
            }
            assert!(count_block(&block, last_dc, &mut dc, &mut ac), "{block:?}");
            reference_counts(&block, last_dc, &mut dc_ref, &mut ac_ref);
            assert_eq!((dc, ac), (dc_ref, ac_ref), "case {case}: {block:?}");
            last_dc = i32::from(block[0]);
        }
        assert!(ac[0xF0] > 0 && ac[0] > 0, "covers zero runs over 16 and blocks ending in zeros");
    }

    #[test]
    fn coefficients_too_large_for_8_bit_jpeg_are_refused() {
        let (mut dc, mut ac) = ([0; 257], [0; 257]);
        let mut block = [0i16; 64];
        block[5] = 1024;
        assert!(!count_block(&block, 0, &mut dc, &mut ac), "an AC coefficient of 11 bits");
        block[5] = 1023;
        assert!(count_block(&block, 0, &mut dc, &mut ac));
        block[0] = 2047;
        assert!(count_block(&block, 0, &mut dc, &mut ac), "a DC difference of 11 bits");
        assert!(!count_block(&block, -1, &mut dc, &mut ac), "a DC difference of 12 bits");
    }

    fn plane(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Pixels {
        Pixels::new(w, h, 1, (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).map(|(x, y)| f(x, y)).collect())
    }

    #[test]
    fn files_are_byte_for_byte_what_libjpegs_own_counting_makes() {
        // Noise (large coefficients, few zeros), flat areas (empty blocks), gradients and edges, at
        // sizes that are and are not whole MCUs, from planes and from RGB, at several qualities.
        let mut next = rng(3);
        let noise: Vec<u8> = (0..300 * 200 * 3).map(|_| next() as u8).collect();
        for (w, h) in [(1u32, 1u32), (7, 9), (16, 16), (33, 17), (150, 150), (301, 199)] {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let ycc = YccPlanes {
                y: plane(w, h, |x, y| {
                    if (x / 9 + y / 7) % 3 == 0 { noise[((y * w + x) % 60_000) as usize] } else { (x * 2 + y) as u8 }
                }),
                cb: plane(cw, ch, |x, y| if x > cw / 2 { 128 } else { (x * 5 + y * 3) as u8 }),
                cr: plane(cw, ch, |x, y| if (x + y) % 11 < 3 { 255 } else { 40 }),
                chroma_scale: (Ratio::HALF, Ratio::HALF),
                chroma_early: (false, false),
            };
            let rgb: Vec<u8> = (0..w * h * 3)
                .map(|i| if i % 17 < 8 { noise[(i % 180_000) as usize] } else { (i / 3 % w) as u8 })
                .collect();
            for quality in [30, 85, 100] {
                let planes = Input::Planes([&ycc.y, &ycc.cb, &ycc.cr]);
                let ours = compress(w, h, Quality { quality, progressive: false }, planes, Counting::Mask).unwrap();
                let planes = Input::Planes([&ycc.y, &ycc.cb, &ycc.cr]);
                let theirs =
                    compress(w, h, Quality { quality, progressive: false }, planes, Counting::Libjpeg).unwrap();
                assert!(ours == theirs, "planes {w}x{h} q{quality}: {} against {} bytes", ours.len(), theirs.len());
                let ours =
                    compress(w, h, Quality { quality, progressive: false }, Input::Rgb(&rgb), Counting::Mask).unwrap();
                let theirs =
                    compress(w, h, Quality { quality, progressive: false }, Input::Rgb(&rgb), Counting::Libjpeg)
                        .unwrap();
                assert!(ours == theirs, "rgb {w}x{h} q{quality}: {} against {} bytes", ours.len(), theirs.len());
            }
        }
    }

    #[test]
    fn progressive_files_hold_the_baseline_files_coefficients() {
        // The same quantised coefficients in several scans: a full decode gives the baseline
        // file's pixels exactly, from planes and from RGB, at sizes that are and are not whole MCUs.
        let markers = |jpeg: &[u8]| {
            jpeg.windows(2)
                .filter(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC2 | 0xDA))
                .map(|w| w[1])
                .collect::<Vec<_>>()
        };
        let decode =
            |jpeg: &[u8]| zune_jpeg::JpegDecoder::new(zune_core::bytestream::ZCursor::new(jpeg)).decode().unwrap();
        for (w, h) in [(1u32, 1u32), (33, 17), (150, 150), (301, 199)] {
            let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7) % 251) as u8 ^ ((i / 3 % w) as u8)).collect();
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let ycc = YccPlanes {
                y: plane(w, h, |x, y| (x * 3 + y * 5) as u8),
                cb: plane(cw, ch, |x, _| (x * 7) as u8),
                cr: plane(cw, ch, |_, y| 255 - (y * 3) as u8),
                chroma_scale: (Ratio::HALF, Ratio::HALF),
                chroma_early: (false, false),
            };
            for progressive in [false, true] {
                let from_rgb = encode_rgb(&rgb, w, h, 85, progressive).unwrap();
                let from_planes = encode_planes(&ycc, 85, progressive).unwrap();
                for jpeg in [&from_rgb, &from_planes] {
                    let m = markers(jpeg);
                    let (sof, scans) =
                        (m.iter().find(|&&x| x != 0xDA).copied(), m.iter().filter(|&&x| x == 0xDA).count());
                    if progressive {
                        assert!(sof == Some(0xC2) && scans > 1, "{w}x{h}: SOF {sof:x?}, {scans} scans");
                    } else {
                        assert!(sof == Some(0xC0) && scans == 1, "{w}x{h}: SOF {sof:x?}, {scans} scans");
                    }
                }
            }
            for (a, b) in [
                (encode_rgb(&rgb, w, h, 85, false), encode_rgb(&rgb, w, h, 85, true)),
                (encode_planes(&ycc, 85, false), encode_planes(&ycc, 85, true)),
            ] {
                assert_eq!(decode(&a.unwrap()), decode(&b.unwrap()), "{w}x{h}");
            }
        }
    }

    #[test]
    fn the_counting_pass_is_replaced() {
        // A counting method that refuses every block shows the swap took effect: libjpeg's own
        // pass would have made the file.
        let ycc = YccPlanes {
            y: plane(40, 24, |x, y| (x * 3 + y) as u8),
            cb: plane(20, 12, |_, _| 128),
            cr: plane(20, 12, |_, _| 128),
            chroma_scale: (Ratio::HALF, Ratio::HALF),
            chroma_early: (false, false),
        };
        let run = |poison: bool| {
            std::panic::catch_unwind(|| {
                let mut c = Compressor::new(false);
                c.settings(40, 24, Quality { quality: 85, progressive: false }, true);
                c.start(Counting::Mask);
                c.counts.out_of_range = poison;
                c.write_planes([&ycc.y, &ycc.cb, &ycc.cr]).unwrap();
                c.finish()
            })
        };
        assert!(run(false).is_ok());
        let err = run(true).expect_err("the swapped finish_pass refuses");
        assert!(super::super::panic_message(err.as_ref()).unwrap().contains("out of range"));
    }
}
