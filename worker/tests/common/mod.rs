//! Fixture makers for the pipeline tests: every input is generated here, nothing is read from disk.
#![allow(dead_code)]

pub mod rendition_check;

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// A deterministic pseudo-random byte source (xorshift), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A smooth photo-like RGB image: gradients plus soft blobs and a few hard edges.
pub fn photo_rgb(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let blob = ((fx * 9.0).sin() * (fy * 7.0).cos() * 60.0) as i32;
            let edge = if (x / 37 + y / 29) % 5 == 0 { 40 } else { 0 };
            let r = (fx * 200.0) as i32 + blob + edge;
            let g = (fy * 180.0) as i32 - blob / 2 + 30;
            let b = ((fx + fy) * 90.0) as i32 + edge + 20;
            out.extend([r, g, b].map(|v| v.clamp(0, 255) as u8));
        }
    }
    out
}

/// Encodes RGB (or gray, CMYK… per `color`) as a baseline JPEG.
pub fn jpeg_of(data: &[u8], w: u32, h: u32, color: ColorType) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out, 92);
    e.set_sampling_factor(SamplingFactor::R_4_4_4);
    e.encode(data, w as u16, h as u16, color).unwrap();
    out
}

/// [`jpeg_of`], progressive.
pub fn progressive_jpeg_of(data: &[u8], w: u32, h: u32, color: ColorType) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out, 92);
    e.set_sampling_factor(SamplingFactor::R_4_4_4);
    e.set_progressive(true);
    e.encode(data, w as u16, h as u16, color).unwrap();
    out
}

pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    jpeg_of(&photo_rgb(w, h), w, h, ColorType::Rgb)
}

/// Inserts a marker segment right after SOI.
pub fn insert_segment(jpeg: &[u8], marker: u8, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, marker]);
    out.extend(len.to_be_bytes());
    out.extend(payload);
    out.extend(&jpeg[2..]);
    out
}

/// A little-endian TIFF block with IFD0 holding Orientation and, if `gps`, a GPS IFD with a latitude.
pub fn exif_tiff(orientation: u16, gps: bool) -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend(8u32.to_le_bytes());
    let entries: u16 = if gps { 2 } else { 1 };
    t.extend(entries.to_le_bytes());
    t.extend([0x12, 0x01, 3, 0]);
    t.extend(1u32.to_le_bytes());
    t.extend([orientation as u8, (orientation >> 8) as u8, 0, 0]);
    if gps {
        let gps_ifd = 8 + 2 + 12 * 2 + 4;
        t.extend([0x25, 0x88, 4, 0]);
        t.extend(1u32.to_le_bytes());
        t.extend((gps_ifd as u32).to_le_bytes());
    }
    t.extend(0u32.to_le_bytes());
    if gps {
        // GPS IFD: GPSLatitudeRef 'N' and an ASCII marker that must never reach an output.
        t.extend(2u16.to_le_bytes());
        t.extend([0x01, 0x00, 2, 0]);
        t.extend(2u32.to_le_bytes());
        t.extend(*b"N\0\0\0");
        t.extend([0x1B, 0x00, 2, 0]); // GPSProcessingMethod-ish ASCII
        t.extend(16u32.to_le_bytes());
        let off = t.len() as u32 + 4 + 4;
        t.extend(off.to_le_bytes());
        t.extend(0u32.to_le_bytes());
        t.extend(*b"GPS-SECRET-52.1\0");
    }
    t
}

/// JPEG with an APP1 EXIF segment.
pub fn with_exif(jpeg: &[u8], orientation: u16, gps: bool) -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend(exif_tiff(orientation, gps));
    insert_segment(jpeg, 0xE1, &payload)
}

/// Encodes a PNG.
pub fn png_of(
    data: &[u8],
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    palette: Option<(&[u8], &[u8])>,
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(depth);
        if let Some((plte, trns)) = palette {
            e.set_palette(plte.to_vec());
            e.set_trns(trns.to_vec());
        }
        let mut writer = e.write_header().unwrap();
        writer.write_image_data(data).unwrap();
    }
    out
}

/// A PNG whose IHDR claims `w` x `h` and which holds no image data at all.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(png::ColorType::Rgb);
        e.set_depth(png::BitDepth::Eight);
        let w = e.write_header().unwrap();
        drop(w);
    }
    out
}

/// Sets the frame size in a baseline JPEG's SOF0 without touching the data.
pub fn patch_sof(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out.windows(2).position(|m| m == [0xFF, 0xC0]).expect("SOF0");
    out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    out
}

/// JPEG markers before the scan data (APPn, COM, DQT…), in order.
pub fn jpeg_markers(jpeg: &[u8]) -> Vec<u8> {
    let mut markers = Vec::new();
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let m = jpeg[i + 1];
        markers.push(m);
        if m == 0xDA {
            break;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        i += 2 + len;
    }
    markers
}

/// RIFF chunk names of a WebP file.
pub fn webp_chunks(webp: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut pos = 12;
    while pos + 8 <= webp.len() {
        names.push(String::from_utf8_lossy(&webp[pos..pos + 4]).into_owned());
        let len = u32::from_le_bytes(webp[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += 8 + len + (len & 1);
    }
    names
}

/// A simple lossy WebP (RIFF + one `VP8 ` chunk) whose key frame header claims 16383 x 16383, the
/// format's maximum.
pub fn webp_frame_bomb(lossy: &[u8]) -> Vec<u8> {
    let mut out = lossy.to_vec();
    assert_eq!(&out[12..16], b"VP8 ");
    assert_eq!(&out[23..26], &[0x9D, 0x01, 0x2A], "VP8 start code");
    out[26..28].copy_from_slice(&0x3FFFu16.to_le_bytes());
    out[28..30].copy_from_slice(&0x3FFFu16.to_le_bytes());
    out
}

/// Decodes a JPEG output to (width, height, RGB).
pub fn decode_jpeg(data: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut d = zune_jpeg::JpegDecoder::new(zune_core::bytestream::ZCursor::new(data));
    let px = d.decode().expect("output JPEG decodes");
    let info = d.info().unwrap();
    (info.width as u32, info.height as u32, px)
}

/// Decodes a WebP output to (width, height, channels, pixels).
pub fn decode_webp(data: &[u8]) -> (u32, u32, u8, Vec<u8>) {
    let img = webp::Decoder::new(data).decode().expect("output WebP decodes");
    (img.width(), img.height(), if img.is_alpha() { 4 } else { 3 }, img.to_vec())
}

/// Decodes an 8-bit RGB or RGBA PNG (a reference image) to (width, height, channels, pixels).
pub fn decode_rgb_png(data: &[u8]) -> (u32, u32, u8, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(data)).read_info().expect("reference PNG header");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).expect("reference PNG decodes");
    buf.truncate(frame.buffer_size());
    let channels = match (frame.color_type, frame.bit_depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        other => panic!("reference PNG is {other:?}, not 8-bit RGB(A)"),
    };
    (frame.width, frame.height, channels, buf)
}

/// Peak signal-to-noise ratio between two same-sized 8-bit buffers, in dB.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

/// JFIF YCbCr of RGB pixels, unrounded.
pub fn ycc_of(rgb: &[u8]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut cb, mut cr) = (vec![], vec![], vec![]);
    for p in rgb.chunks_exact(3) {
        let (r, g, b) = (f64::from(p[0]), f64::from(p[1]), f64::from(p[2]));
        y.push(0.299 * r + 0.587 * g + 0.114 * b);
        cb.push(128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b);
        cr.push(128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b);
    }
    (y, cb, cr)
}

/// A plane averaged over 2x2 cells, the cells cut by an odd edge averaged as they are.
pub fn half(plane: &[f64], w: u32, h: u32) -> Vec<f64> {
    let (w, h) = (w as usize, h as usize);
    let mut out = vec![];
    for cy in (0..h).step_by(2) {
        for cx in (0..w).step_by(2) {
            let cells = [(cx, cy), (cx + 1, cy), (cx, cy + 1), (cx + 1, cy + 1)];
            let values: Vec<f64> =
                cells.iter().filter(|(x, y)| *x < w && *y < h).map(|(x, y)| plane[y * w + x]).collect();
            out.push(values.iter().sum::<f64>() / values.len() as f64);
        }
    }
    out
}

/// PSNR over luma and 2x2-averaged chroma of two RGB images.
pub fn psnr_420(a: &[u8], b: &[u8], w: u32, h: u32) -> f64 {
    let ((ya, cba, cra), (yb, cbb, crb)) = (ycc_of(a), ycc_of(b));
    let (mut sq, mut n) = (0.0, 0usize);
    for (p, q) in [(ya, yb), (half(&cba, w, h), half(&cbb, w, h)), (half(&cra, w, h), half(&crb, w, h))] {
        sq += p.iter().zip(&q).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
        n += p.len();
    }
    let mse = sq / n as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}
