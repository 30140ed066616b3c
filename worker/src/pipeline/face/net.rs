//! YuNet-n, the face detector's network, run in plain Rust: the operations of
//! `worker/models/yunet_n.bin` (written by `worker/models/make_yunet.py` from the network's ONNX
//! export) in order. Four kinds are enough: convolution (3x3, depthwise 3x3 and 1x1, with an optional
//! ReLU), 2x2 max pooling, and a nearest-neighbour x2 upsampling added to a skip connection. Tensors
//! are `f32`, channels first. The 1x1 convolutions (most of the arithmetic) take four output
//! channels per pass over the input, and the depthwise 3x3 ones three taps per pass, in loops the
//! compiler vectorises.

use std::sync::OnceLock;

/// The weights, in the format `make_yunet.py` documents.
const MODEL: &[u8] = include_bytes!("../../../models/yunet_n.bin");

/// Input sides must be multiples of this (three poolings and a stride-2 convolution).
pub const ALIGN: usize = 32;

/// A tensor: `channels` planes of `height` x `width`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        Self { channels, height, width, data: vec![0.0; channels * height * width] }
    }

    fn plane(&self, c: usize) -> &[f32] {
        let n = self.height * self.width;
        &self.data[c * n..(c + 1) * n]
    }
}

#[derive(Debug)]
struct Conv {
    input: usize,
    output: usize,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    relu: bool,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

#[derive(Debug)]
enum Op {
    Conv(Conv),
    MaxPool { input: usize, output: usize },
    UpAdd { small: usize, large: usize, output: usize },
}

/// The parsed network.
#[derive(Debug)]
pub struct Net {
    ops: Vec<Op>,
    /// Tensor ids of cls, obj and bbox at strides 8, 16 and 32.
    outputs: Vec<usize>,
    tensors: usize,
}

/// Why the model file does not parse (a test keeps the embedded one parsing).
#[derive(Debug, thiserror::Error)]
#[error("face model: {0}")]
pub struct ModelError(&'static str);

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ModelError> {
        if self.0.len() < n {
            return Err(ModelError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, ModelError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, ModelError> {
        let bytes = self.take(n.checked_mul(4).ok_or(ModelError("size overflow"))?)?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

impl Net {
    /// Parses a model file; every tensor is produced before it is read.
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let mut r = Reader(bytes);
        if r.take(8)? != b"YUNET-N1" {
            return Err(ModelError("not a YUNET-N1 file"));
        }
        let count = r.u32()?;
        let mut ops = Vec::with_capacity(count.min(1024));
        let mut made = vec![true];
        let produce = |made: &mut Vec<bool>, reads: &[usize], output: usize| {
            if reads.iter().any(|&t| !made.get(t).copied().unwrap_or(false)) {
                return Err(ModelError("a tensor is read before it is made"));
            }
            if made.len() <= output {
                made.resize(output + 1, false);
            }
            made[output] = true;
            Ok(())
        };
        for _ in 0..count {
            let op = match r.u8()? {
                0 => {
                    let f: Vec<usize> = (0..9).map(|_| r.u32()).collect::<Result<_, _>>()?;
                    let (in_channels, out_channels, kernel, stride, groups) = (f[2], f[3], f[4], f[5], f[7]);
                    if groups == 0
                        || in_channels % groups != 0
                        || out_channels % groups != 0
                        || kernel == 0
                        || stride == 0
                        || f[6] >= kernel
                    {
                        return Err(ModelError("bad convolution"));
                    }
                    let weights = r.f32s(out_channels * (in_channels / groups) * kernel * kernel)?;
                    let bias = r.f32s(out_channels)?;
                    produce(&mut made, &[f[0]], f[1])?;
                    Op::Conv(Conv {
                        input: f[0],
                        output: f[1],
                        in_channels,
                        out_channels,
                        kernel,
                        stride,
                        pad: f[6],
                        groups,
                        relu: f[8] != 0,
                        weights,
                        bias,
                    })
                }
                1 => {
                    let (input, output) = (r.u32()?, r.u32()?);
                    produce(&mut made, &[input], output)?;
                    Op::MaxPool { input, output }
                }
                2 => {
                    let (small, large, output) = (r.u32()?, r.u32()?, r.u32()?);
                    produce(&mut made, &[small, large], output)?;
                    Op::UpAdd { small, large, output }
                }
                _ => return Err(ModelError("unknown operation")),
            };
            ops.push(op);
        }
        let n = r.u32()?;
        let outputs: Vec<usize> = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
        if outputs.len() != 9 || outputs.iter().any(|&t| !made.get(t).copied().unwrap_or(false)) || !r.0.is_empty() {
            return Err(ModelError("bad outputs"));
        }
        Ok(Self { ops, outputs, tensors: made.len() })
    }

    /// The embedded YuNet-n, parsed once.
    pub fn yunet() -> &'static Net {
        static NET: OnceLock<Net> = OnceLock::new();
        NET.get_or_init(|| Net::parse(MODEL).expect("the embedded face model parses (tested)"))
    }

    /// Runs the network on `input` (3 channels, BGR 0–255, sides multiples of [`ALIGN`]); returns cls,
    /// obj and bbox (before any sigmoid) at strides 8, 16 and 32, each channels first.
    pub fn run(&self, input: Tensor) -> Vec<Tensor> {
        assert!(
            input.channels == 3
                && input.height.is_multiple_of(ALIGN)
                && input.width.is_multiple_of(ALIGN)
                && input.height > 0,
            "network input {}x{}x{}",
            input.channels,
            input.height,
            input.width
        );
        let mut t: Vec<Option<Tensor>> = vec![None; self.tensors];
        t[0] = Some(input);
        let get = |t: &[Option<Tensor>], id: usize| -> Tensor { t[id].clone().expect("parse checked the order") };
        for op in &self.ops {
            match op {
                Op::Conv(c) => {
                    let out = conv(t[c.input].as_ref().expect("parse checked the order"), c);
                    t[c.output] = Some(out);
                }
                Op::MaxPool { input, output } => {
                    let out = max_pool(t[*input].as_ref().expect("parse checked the order"));
                    t[*output] = Some(out);
                }
                Op::UpAdd { small, large, output } => {
                    let mut out = get(&t, *large);
                    up_add(t[*small].as_ref().expect("parse checked the order"), &mut out);
                    t[*output] = Some(out);
                }
            }
        }
        self.outputs.iter().map(|&id| get(&t, id)).collect()
    }
}

fn conv(x: &Tensor, c: &Conv) -> Tensor {
    assert_eq!(x.channels, c.in_channels, "convolution input channels");
    let oh = (x.height + 2 * c.pad - c.kernel) / c.stride + 1;
    let ow = (x.width + 2 * c.pad - c.kernel) / c.stride + 1;
    let mut out = Tensor::zeros(c.out_channels, oh, ow);
    if c.kernel == 1 && c.stride == 1 && c.groups == 1 {
        pointwise(x, c, &mut out);
    } else {
        direct(x, c, &mut out);
    }
    if c.relu {
        out.data.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    out
}

/// A 1x1 convolution: a matrix product of the weights with the input planes, four output planes at a
/// time so each input value loaded serves four multiply-adds.
fn pointwise(x: &Tensor, c: &Conv, out: &mut Tensor) {
    let n = x.height * x.width;
    let cin = c.in_channels;
    for (block, planes) in out.data.chunks_mut(4 * n).enumerate() {
        let co0 = block * 4;
        let rows = planes.len() / n;
        for (r, plane) in planes.chunks_exact_mut(n).enumerate() {
            plane.fill(c.bias[co0 + r]);
        }
        if rows == 4 {
            let (p0, rest) = planes.split_at_mut(n);
            let (p1, rest) = rest.split_at_mut(n);
            let (p2, p3) = rest.split_at_mut(n);
            for ci in 0..cin {
                let w = |r: usize| c.weights[(co0 + r) * cin + ci];
                let (w0, w1, w2, w3) = (w(0), w(1), w(2), w(3));
                let xs = x.plane(ci);
                for ((((o0, o1), o2), o3), &v) in
                    p0.iter_mut().zip(p1.iter_mut()).zip(p2.iter_mut()).zip(p3.iter_mut()).zip(xs)
                {
                    *o0 += w0 * v;
                    *o1 += w1 * v;
                    *o2 += w2 * v;
                    *o3 += w3 * v;
                }
            }
        } else {
            for (r, plane) in planes.chunks_exact_mut(n).enumerate() {
                for ci in 0..cin {
                    let w = c.weights[(co0 + r) * cin + ci];
                    plane.iter_mut().zip(x.plane(ci)).for_each(|(o, &v)| *o += w * v);
                }
            }
        }
    }
}

/// Any other convolution: the depthwise 3x3 ones by [`depthwise3`]; otherwise (the first, 3x3 with
/// stride 2) for each input channel, kernel offset and output row, the input values that offset reads
/// are gathered once into a row (zeros where it falls in the padding), then multiplied into every
/// output channel of the group.
fn direct(x: &Tensor, c: &Conv, out: &mut Tensor) {
    let (oh, ow) = (out.height, out.width);
    let (ih, iw) = (x.height as isize, x.width as isize);
    let (k, s, pad) = (c.kernel, c.stride as isize, c.pad as isize);
    let per_group_in = c.in_channels / c.groups;
    let per_group_out = c.out_channels / c.groups;
    if k == 3 && s == 1 && pad == 1 && per_group_in == 1 && per_group_out == 1 {
        return depthwise3(x, c, out);
    }
    for co in 0..c.out_channels {
        out.data[co * oh * ow..(co + 1) * oh * ow].fill(c.bias[co]);
    }
    let mut gathered = vec![0f32; ow];
    for ci in 0..c.in_channels {
        let (g, ci_local) = (ci / per_group_in, ci % per_group_in);
        let xs = x.plane(ci);
        for ky in 0..k {
            for oy in 0..oh {
                let iy = oy as isize * s + ky as isize - pad;
                if iy < 0 || iy >= ih {
                    continue;
                }
                let row = &xs[iy as usize * iw as usize..(iy as usize + 1) * iw as usize];
                for kx in 0..k {
                    let dx = kx as isize - pad;
                    for (ox, v) in gathered.iter_mut().enumerate() {
                        let ix = ox as isize * s + dx;
                        *v = if ix >= 0 && ix < iw { row[ix as usize] } else { 0.0 };
                    }
                    for co in g * per_group_out..(g + 1) * per_group_out {
                        let w = c.weights[((co * per_group_in + ci_local) * k + ky) * k + kx];
                        let orow = &mut out.data[(co * oh + oy) * ow..(co * oh + oy + 1) * ow];
                        orow.iter_mut().zip(&gathered).for_each(|(o, &v)| *o += w * v);
                    }
                }
            }
        }
    }
}

/// A depthwise 3x3 convolution, stride 1, padding 1: each output row takes three input rows, each
/// row's three taps in one pass.
fn depthwise3(x: &Tensor, c: &Conv, out: &mut Tensor) {
    let (h, w) = (x.height, x.width);
    for ch in 0..x.channels {
        let xs = x.plane(ch);
        let taps = &c.weights[ch * 9..ch * 9 + 9];
        let plane = &mut out.data[ch * h * w..(ch + 1) * h * w];
        plane.fill(c.bias[ch]);
        for oy in 0..h {
            let orow = &mut plane[oy * w..(oy + 1) * w];
            for ky in 0..3 {
                let Some(iy) = (oy + ky).checked_sub(1).filter(|&iy| iy < h) else { continue };
                let row = &xs[iy * w..(iy + 1) * w];
                let (w0, w1, w2) = (taps[ky * 3], taps[ky * 3 + 1], taps[ky * 3 + 2]);
                if w == 1 {
                    orow[0] += w1 * row[0];
                    continue;
                }
                orow[0] += w1 * row[0] + w2 * row[1];
                orow[w - 1] += w0 * row[w - 2] + w1 * row[w - 1];
                for (o, ((&a, &b), &d)) in
                    orow[1..w - 1].iter_mut().zip(row[..w - 2].iter().zip(&row[1..w - 1]).zip(&row[2..]))
                {
                    *o += w0 * a + w1 * b + w2 * d;
                }
            }
        }
    }
}

fn max_pool(x: &Tensor) -> Tensor {
    let (oh, ow) = (x.height / 2, x.width / 2);
    let mut out = Tensor::zeros(x.channels, oh, ow);
    for c in 0..x.channels {
        let xs = x.plane(c);
        for oy in 0..oh {
            for ox in 0..ow {
                let at = |y: usize, xx: usize| xs[(2 * oy + y) * x.width + 2 * ox + xx];
                out.data[(c * oh + oy) * ow + ox] = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
            }
        }
    }
    out
}

/// `large += small` upsampled x2 by nearest neighbour (`large` is twice `small` on each side).
fn up_add(small: &Tensor, large: &mut Tensor) {
    assert!(
        small.channels == large.channels && large.height == 2 * small.height && large.width == 2 * small.width,
        "skip connection sizes"
    );
    let (h, w) = (large.height, large.width);
    for c in 0..large.channels {
        let s = small.plane(c);
        let plane = &mut large.data[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            let srow = &s[(y / 2) * small.width..(y / 2 + 1) * small.width];
            for (x, o) in plane[y * w..(y + 1) * w].iter_mut().enumerate() {
                *o += srow[x / 2];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_model_parses() {
        let net = Net::yunet();
        assert_eq!(net.outputs.len(), 9);
        assert!(net.ops.len() > 40, "{} operations", net.ops.len());
    }

    #[test]
    fn every_truncation_and_a_wrong_magic_are_errors_not_panics() {
        for cut in (0..MODEL.len()).step_by(997).chain([MODEL.len() - 1]) {
            assert!(Net::parse(&MODEL[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = MODEL.to_vec();
        bad[0] = b'X';
        assert!(Net::parse(&bad).is_err());
        let mut longer = MODEL.to_vec();
        longer.push(0);
        assert!(Net::parse(&longer).is_err(), "trailing bytes");
    }

    /// The general convolution against a naive definition, for every kernel, stride, padding and
    /// grouping the model uses and odd sizes it does not.
    #[test]
    fn convolutions_match_the_definition() {
        let mut seed = 7u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for (cin, cout, k, s, pad, groups) in [
            (3, 16, 3, 2, 1, 1),
            (16, 16, 3, 1, 1, 16),
            (64, 4, 1, 1, 0, 1),
            (4, 4, 3, 1, 1, 4),
            (6, 5, 1, 1, 0, 1),
            (2, 4, 3, 2, 1, 2),
        ] {
            for (h, w) in [(1, 1), (2, 3), (5, 7), (8, 8), (9, 4)] {
                if h + 2 * pad < k || w + 2 * pad < k {
                    continue;
                }
                let x = Tensor { channels: cin, height: h, width: w, data: (0..cin * h * w).map(|_| rnd()).collect() };
                let c = Conv {
                    input: 0,
                    output: 1,
                    in_channels: cin,
                    out_channels: cout,
                    kernel: k,
                    stride: s,
                    pad,
                    groups,
                    relu: false,
                    weights: (0..cout * cin / groups * k * k).map(|_| rnd()).collect(),
                    bias: (0..cout).map(|_| rnd()).collect(),
                };
                let got = conv(&x, &c);
                let (oh, ow) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
                assert_eq!((got.height, got.width), (oh, ow));
                let (gi, go) = (cin / groups, cout / groups);
                for co in 0..cout {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut sum = c.bias[co];
                            for cl in 0..gi {
                                let ci = co / go * gi + cl;
                                for ky in 0..k {
                                    for kx in 0..k {
                                        let (iy, ix) = (
                                            (oy * s + ky) as isize - pad as isize,
                                            (ox * s + kx) as isize - pad as isize,
                                        );
                                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                            sum += c.weights[((co * gi + cl) * k + ky) * k + kx]
                                                * x.data[(ci * h + iy as usize) * w + ix as usize];
                                        }
                                    }
                                }
                            }
                            let v = got.data[(co * oh + oy) * ow + ox];
                            assert!((v - sum).abs() < 1e-4, "{cin}->{cout} k{k} s{s} g{groups} {h}x{w}: {v} vs {sum}");
                        }
                    }
                }
            }
        }
    }
}
