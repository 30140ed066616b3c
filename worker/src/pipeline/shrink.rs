//! Box shrink: a source much larger than its renditions need, made smaller by a whole factor (the
//! mean of each block), as a JPEG decoder's shrink-on-load would, before it is resized.

use super::geometry::{Ratio, shrink_factors, shrunk_chroma_scale, whole_factor};
use super::pixels::{Pixels, Raster, YccPlanes};

/// Shrinks `src` with a box filter (the mean of each block of k x k pixels; blocks cut off by the
/// right and bottom edges average what they have) by the largest factor [`box_reduce`] makes that
/// keeps at least `keep` of its size per side. Chroma planes keep at least half that much of the
/// luma size: renditions are encoded with half-resolution chroma. Returns the result and the factor
/// luma was shrunk by, or `None` when no factor over 1 keeps that much or `src` has alpha (a box
/// average of unpremultiplied alpha would fringe); a pixel at `x` lands at `x / factor`, so a plan
/// on `src` maps onto the result with [`super::geometry::Plan::scaled`].
pub fn shrink(src: &Raster, keep: f64) -> Option<(Raster, u32)> {
    if matches!(src, Raster::Pixels(p) if p.has_alpha()) {
        return None;
    }
    let chroma_scale = match src {
        Raster::Pixels(_) => (Ratio::ONE, Ratio::ONE),
        Raster::Ycc(planes) => planes.chroma_scale,
    };
    let (k, k_chroma) = shrink_factors(keep, chroma_scale);
    if k == 1 {
        return None;
    }
    let raster = match src {
        Raster::Pixels(p) => Raster::Pixels(box_reduce(p, k)),
        Raster::Ycc(planes) => Raster::Ycc(YccPlanes {
            // Decoded planes only: their chroma grid starts with luma's.
            y: box_reduce(&planes.y, k),
            cb: box_reduce(&planes.cb, k_chroma),
            cr: box_reduce(&planes.cr, k_chroma),
            chroma_scale: shrunk_chroma_scale(planes.chroma_scale, k, k_chroma),
            chroma_early: (false, false),
        }),
    };
    Some((raster, k))
}

/// The mean of every `k` x `k` block of `src`, for `k` as [`whole_factor`] rounds it (any channel
/// count; alpha is averaged as is, so callers keep this to opaque images).
pub fn box_reduce(src: &Pixels, k: u32) -> Pixels {
    let mut reducer = BoxReducer::new(src.width, src.channels, k);
    reducer.push(&src.data);
    reducer.finish()
}

/// [`box_reduce`] for an image that arrives a band of rows at a time, as a JPEG decoder makes it:
/// only `k` rows are ever held, so the full-size image never exists in memory.
#[derive(Debug)]
pub struct BoxReducer {
    width: usize,
    channels: u8,
    k: usize,
    /// Column sums of the rows of the current block so far (k * 255 fits in u16).
    acc: Vec<u16>,
    rows: usize,
    /// Blocks of blocks for factors over 4: a box of boxes is a box.
    next: Option<Box<BoxReducer>>,
    /// The row of block means being passed on (reused).
    row: Vec<u8>,
    out: Vec<u8>,
}

impl BoxReducer {
    pub fn new(width: u32, channels: u8, k: u32) -> Self {
        let k = whole_factor(k);
        let (first, rest) = if k > 4 { (4, k / 4) } else { (k, 1) };
        let width = width as usize;
        let out_width = width.div_ceil(first as usize);
        Self {
            width,
            channels,
            k: first as usize,
            acc: vec![0; if first > 1 { width * usize::from(channels) } else { 0 }],
            rows: 0,
            next: (rest > 1).then(|| Box::new(Self::new(out_width as u32, channels, rest))),
            row: Vec::with_capacity(out_width * usize::from(channels)),
            out: Vec::new(),
        }
    }

    /// Adds whole rows (`width * channels` bytes each) below those already pushed.
    pub fn push(&mut self, rows: &[u8]) {
        let stride = self.width * usize::from(self.channels);
        for row in rows.chunks_exact(stride) {
            if self.k == 1 {
                self.out.extend_from_slice(row);
                continue;
            }
            // The first row of a block starts the sums afresh: no clearing pass between blocks.
            if self.rows == 0 {
                for (a, &b) in self.acc.iter_mut().zip(row) {
                    *a = u16::from(b);
                }
            } else {
                for (a, &b) in self.acc.iter_mut().zip(row) {
                    *a += u16::from(b);
                }
            }
            self.rows += 1;
            if self.rows == self.k {
                self.emit();
            }
        }
    }

    /// The reduced image; a block cut off by the bottom edge averages the rows it has.
    pub fn finish(mut self) -> Pixels {
        if self.rows > 0 {
            self.emit();
        }
        match self.next {
            Some(next) => next.finish(),
            None => {
                let width = self.width.div_ceil(self.k);
                let height = self.out.len() / (width * usize::from(self.channels)).max(1);
                Pixels::new(width as u32, height as u32, self.channels, self.out)
            }
        }
    }

    /// Turns the summed rows into one row of block means and passes it on.
    fn emit(&mut self) {
        self.row.clear();
        match self.k {
            2 => mean_row::<2>(&self.acc, self.channels, self.rows, &mut self.row),
            3 => mean_row::<3>(&self.acc, self.channels, self.rows, &mut self.row),
            _ => mean_row::<4>(&self.acc, self.channels, self.rows, &mut self.row),
        }
        self.rows = 0;
        match &mut self.next {
            Some(next) => next.push(&self.row),
            None => self.out.extend_from_slice(&self.row),
        }
    }
}

/// The means of `K`-wide blocks of column sums over `n_rows` rows; a block cut off by the right
/// edge averages the columns it has.
fn mean_row<const K: usize>(acc: &[u16], channels: u8, n_rows: usize, out: &mut Vec<u8>) {
    let c = usize::from(channels);
    let full = acc.len() / c / K; // blocks not cut off by the right edge
    // Mean as a 16.16 multiply: rounding is off by at most one level.
    let mul = (1u32 << 16) / (K * n_rows) as u32;
    let blocks = &acc[..full * K * c];
    match c {
        1 => block_means::<K, 1>(blocks, mul, out),
        3 => block_means::<K, 3>(blocks, mul, out),
        4 => block_means::<K, 4>(blocks, mul, out),
        _ => {
            for block in blocks.chunks_exact(K * c) {
                out.extend((0..c).map(|ch| mean_of((0..K).map(|j| u32::from(block[j * c + ch])).sum(), mul)));
            }
        }
    }
    let tail = &acc[full * K * c..];
    if !tail.is_empty() {
        let n = (tail.len() / c * n_rows) as u32;
        for ch in 0..c {
            let sum: u32 = tail.iter().skip(ch).step_by(c).map(|&v| u32::from(v)).sum();
            out.push(((sum + n / 2) / n) as u8);
        }
    }
}

fn mean_of(sum: u32, mul: u32) -> u8 {
    ((sum * mul + (1 << 15)) >> 16) as u8
}

/// [`mean_row`]'s whole blocks with the block width and channel count fixed at compile time: the
/// sums unroll into straight-line code (they were a loop and an iterator per channel per block).
fn block_means<const K: usize, const C: usize>(blocks: &[u16], mul: u32, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + blocks.len() / K, 0);
    for (means, block) in out[start..].chunks_exact_mut(C).zip(blocks.chunks_exact(K * C)) {
        for (ch, m) in means.iter_mut().enumerate() {
            let mut sum = 0u32;
            for j in 0..K {
                sum += u32::from(block[j * C + ch]);
            }
            *m = mean_of(sum, mul);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_reduce_averages_blocks_and_edges() {
        // 5 x 3, one channel, shrunk by 2: full blocks average four pixels, the right column and
        // bottom row average what they have.
        let src = Pixels::new(5, 3, 1, vec![0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140]);
        let out = box_reduce(&src, 2);
        assert_eq!((out.width, out.height), (3, 2));
        assert_eq!(out.data, [30, 50, 65, 105, 125, 140]);
        let rgb = Pixels::new(4, 4, 3, (0..48).map(|i| (i * 5) as u8).collect());
        let out = box_reduce(&rgb, 4);
        assert_eq!((out.width, out.height, out.channels), (1, 1, 3));
        let mean = |c: usize| (0..16).map(|p| u32::from(rgb.data[p * 3 + c])).sum::<u32>() as f64 / 16.0;
        for c in 0..3 {
            assert!((f64::from(out.data[c]) - mean(c)).abs() <= 1.0, "channel {c}: {} vs {}", out.data[c], mean(c));
        }
        assert_eq!(whole_factor(7), 4);
        assert_eq!(whole_factor(9), 8);
        assert_eq!(box_reduce(&src, 1), src);
    }

    #[test]
    fn box_reduce_is_the_block_mean_for_every_channel_count_and_factor() {
        // Odd sizes, so every factor leaves blocks cut off by the right and bottom edges.
        let (w, h) = (37usize, 23usize);
        for channels in 1..=4u8 {
            let c = usize::from(channels);
            let data: Vec<u8> = (0..w * h * c).map(|i| ((i * 7919 + i / 3 * 31) % 256) as u8).collect();
            let src = Pixels::new(w as u32, h as u32, channels, data);
            for k in [2usize, 3, 4, 8, 16] {
                let out = box_reduce(&src, k as u32);
                let (ow, oh) = (w.div_ceil(k), h.div_ceil(k));
                assert_eq!((out.width as usize, out.height as usize, out.channels), (ow, oh, channels));
                // Factors over 4 are means of rounded 4 x 4 means: one more level of rounding, and
                // at the right and bottom edges a mean of unequal parts; their whole blocks are checked.
                let (tolerance, bw, bh) = if k > 4 { (2.0, w / k, h / k) } else { (1.0, ow, oh) };
                for by in 0..bh {
                    for bx in 0..bw {
                        for ch in 0..c {
                            let (mut sum, mut n) = (0.0, 0.0);
                            for y in by * k..((by + 1) * k).min(h) {
                                for x in bx * k..((bx + 1) * k).min(w) {
                                    sum += f64::from(src.data[(y * w + x) * c + ch]);
                                    n += 1.0;
                                }
                            }
                            let got = f64::from(out.data[(by * ow + bx) * c + ch]);
                            assert!(
                                (got - sum / n).abs() <= tolerance,
                                "{channels} channels, k {k}, block ({bx}, {by}): {got} vs {}",
                                sum / n
                            );
                        }
                    }
                }
            }
        }
    }
}
