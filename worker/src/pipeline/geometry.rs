//! Rendition geometry as pure functions of sizes: where each rendition comes from in its source
//! (the crop box), how big it ends up, how far the source may be box-shrunk first, and which image
//! each rendition is resized from (the source, its shrunk copy, a chroma plane, or a larger
//! rendition: the cascade). [`schedule`] is the whole plan of a preset; `pipeline` carries it out.
//!
//! Exactness: a crop box is held on the full-size stored source in fixed point ([`UNIT`] steps per
//! pixel), and every image it is read from is reached from the source by one exact rational scale
//! ([`Ratio`]) and one monotone rounding. Each image's far edge is a whole number of units at or
//! beyond the source's far edge so mapped (a box-shrunk copy is `ceil(w / k)` wide, a chroma plane
//! `ceil(w · h_c / h_max)`, a rendition exactly its scale of the source), so a region lies inside
//! the image it is read from by construction, and its left edge plus its width is its right edge
//! exactly in `f64`, which is what the resizer checks. The tests below check it for every source
//! size up to 2,000 a side and a sample up to the limits.

use super::exif;
use imgfleet_shared::{CropMode, Fit, Preset};

/// Fixed-point steps per pixel of a crop box. Edges of images up to [`MAX_SIDE`] pixels stay
/// under 2^52 units, so they, their differences and their sums are exact in `f64`.
pub const UNIT: u64 = 1 << 32;

/// The largest side the geometry is exact for (2^20 pixels); `decode` refuses larger sources
/// whatever the configured limit.
pub const MAX_SIDE: u32 = 1 << 20;

/// A smaller rendition is cut from a larger full-frame one only if that has this many times the
/// pixels it needs on each side; the cascade's quality is checked against a direct resize in tests.
pub const CASCADE_MIN_RATIO: f64 = 1.5;

/// Before Lanczos3, a source is box-shrunk by the largest whole factor that leaves it at least
/// this many times the size its largest rendition needs. Checked against a direct resize in tests;
/// measured in docs/performance.md.
pub const SHRINK_MARGIN: f64 = 1.0;

/// An exact scale `num / den` between two images (kept in lowest terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    num: u64,
    den: u64,
}

impl Ratio {
    pub const ONE: Self = Self { num: 1, den: 1 };
    pub const HALF: Self = Self { num: 1, den: 2 };

    /// `num / den`; a zero denominator is taken as one.
    pub fn new(num: u64, den: u64) -> Self {
        Self::reduced(u128::from(num), u128::from(den.max(1)))
    }

    fn reduced(num: u128, den: u128) -> Self {
        let g = gcd(num, den).max(1);
        let fit = |v: u128| u64::try_from(v / g).unwrap_or(u64::MAX);
        Self { num: fit(num), den: fit(den) }
    }

    /// This scale followed by `other`.
    pub fn then(self, other: Self) -> Self {
        Self::reduced(u128::from(self.num) * u128::from(other.num), u128::from(self.den) * u128::from(other.den))
    }

    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// `units` scaled, rounded to the nearest unit (halves up): monotone, and exact wherever the
    /// product is a whole number of units.
    fn of(self, units: u64) -> u64 {
        if let Some(product) = units.checked_mul(self.num).and_then(|p| p.checked_add(self.den / 2)) {
            return product / self.den;
        }
        let den = u128::from(self.den);
        u64::try_from((u128::from(units) * u128::from(self.num) + den / 2) / den).unwrap_or(u64::MAX)
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A crop box on the full-size stored source, in [`UNIT`]s: left ≤ right, top ≤ bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    left: u64,
    top: u64,
    right: u64,
    bottom: u64,
}

impl Crop {
    /// The whole of a `w` x `h` image.
    pub fn full(w: u32, h: u32) -> Self {
        Self { left: 0, top: 0, right: units(w), bottom: units(h) }
    }

    /// A `cw` x `ch` (units) box centred in a `w` x `h` image; `cw`, `ch` must not exceed it.
    fn centred(w: u32, h: u32, cw: u64, ch: u64) -> Self {
        let (left, top) = ((units(w) - cw) / 2, (units(h) - ch) / 2);
        Self { left, top, right: left + cw, bottom: top + ch }
    }

    /// A `cw` x `ch` (units) box in a `w` x `h` image, centred on `focus` as far as the image allows:
    /// on an axis where that would cross an edge, it is pushed back against that edge.
    fn around(w: u32, h: u32, cw: u64, ch: u64, focus: Focus) -> Self {
        let place = |side: u64, len: u64, at: u64| at.saturating_sub(len / 2).min(side - len);
        let (left, top) = (place(units(w), cw, focus.x), place(units(h), ch, focus.y));
        Self { left, top, right: left + cw, bottom: top + ch }
    }
}

/// The point a non-centre crop is centred on, on the full-size stored source, in [`UNIT`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Focus {
    x: u64,
    y: u64,
}

impl Focus {
    /// The point (`x`, `y`) in source pixels, clamped to a `w` x `h` source.
    pub fn at(x: f64, y: f64, w: u32, h: u32) -> Self {
        let unit = |v: f64, side: u32| ((v.max(0.0) * UNIT as f64).round() as u64).min(units(side));
        Self { x: unit(x, w), y: unit(y, h) }
    }
}

fn units(px: u32) -> u64 {
    u64::from(px) * UNIT
}

fn to_px(units: u64) -> f64 {
    units as f64 / UNIT as f64
}

/// The part of an image a resize reads, in that image's pixels: left, top, width, height.
pub type Region = (f64, f64, f64, f64);

/// One rendition's geometry: its size, its crop box on the source, and the scale from the
/// source to the image it is read from (1 for the source itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub width: u32,
    pub height: u32,
    crop: Crop,
    scale: (Ratio, Ratio),
}

impl Plan {
    /// The whole of a `w` x `h` image resized to `width` x `height`.
    pub fn whole(w: u32, h: u32, width: u32, height: u32) -> Self {
        Self { width, height, crop: Crop::full(w, h), scale: (Ratio::ONE, Ratio::ONE) }
    }

    /// The same rendition read from a copy of this plan's image scaled by `sx`, `sy` (a shrunk
    /// source, a chroma plane, or a rendition).
    pub fn scaled(&self, sx: Ratio, sy: Ratio) -> Self {
        Self { scale: (self.scale.0.then(sx), self.scale.1.then(sy)), ..*self }
    }

    /// The crop box in the pixels of the image this plan reads (exact: left + width is the right
    /// edge in `f64`).
    pub fn region(&self) -> Region {
        let (sx, sy) = self.scale;
        let (l, t) = (sx.of(self.crop.left), sy.of(self.crop.top));
        let (r, b) = (sx.of(self.crop.right), sy.of(self.crop.bottom));
        (to_px(l), to_px(t), to_px(r - l), to_px(b - t))
    }

    /// True when the crop box is the whole `w` x `h` source.
    pub fn is_full_frame(&self, w: u32, h: u32) -> bool {
        self.crop == Crop::full(w, h)
    }

    /// Where the chroma planes of this plan's rendition are read from, in a YCbCr image whose
    /// chroma is `scale` of its luma, starting one luma pixel early on the axes `src_early` says
    /// ([`super::pixels::YccPlanes::chroma_early`]): the planes' size, half the rendition's rounded
    /// up as 4:2:0 encoders keep it, and the region they cover in chroma pixels.
    ///
    /// For an odd side the last chroma sample covers the rendition's last pixel and one beyond it
    /// (encoders fill it by repeating the edge), or, on the axes `out_early` says, the first
    /// pixel and one before it (a rendition to be mirrored upright). So the region is the luma
    /// crop widened by one rendition pixel's span at that end, then put on the chroma grid: each
    /// chroma sample stays centred on its two luma pixels. The region may reach past the plane's
    /// edges by up to that span; the resize repeats the plane's edge there.
    pub fn chroma(
        &self,
        scale: (Ratio, Ratio),
        src_early: (bool, bool),
        out_early: (bool, bool),
    ) -> (u32, u32, Region) {
        let (width, height) = (self.width.div_ceil(2), self.height.div_ceil(2));
        let (l, t, w, h) = self.scaled(scale.0, scale.1).region();
        // (start, length) on one axis: `out` rendition pixels as `half` chroma samples.
        let axis = |start: f64, len: f64, out: u32, half: u32, step: Ratio, src_early: bool, out_early: bool| {
            let start = if src_early { start + step.to_f64() } else { start };
            if 2 * half == out {
                return (start, len);
            }
            let span = len / f64::from(out);
            (if out_early { start - span } else { start }, len + span)
        };
        let (l, w) = axis(l, w, self.width, width, scale.0, src_early.0, out_early.0);
        let (t, h) = axis(t, h, self.height, height, scale.1, src_early.1, out_early.1);
        (width, height, (l, t, w, h))
    }
}

/// Plans a rendition of a `src_w` x `src_h` image for a `box_w` x `box_h` box. Never upscales:
/// `Inside` stops at the source size, `Cover` keeps the box's aspect with the largest centred
/// crop, at the box size when the source holds it, otherwise at the source's size on the side
/// that limits it.
pub fn plan(src_w: u32, src_h: u32, box_w: u32, box_h: u32, fit: Fit) -> Plan {
    plan_around(src_w, src_h, box_w, box_h, fit, None)
}

/// [`plan`], with a `Cover` crop centred on `focus` (as far as the source allows) instead of on the
/// middle; the crop's size, and so the rendition's, is the same.
pub fn plan_around(src_w: u32, src_h: u32, box_w: u32, box_h: u32, fit: Fit, focus: Option<Focus>) -> Plan {
    let (sw, sh, bw, bh) = (f64::from(src_w), f64::from(src_h), f64::from(box_w), f64::from(box_h));
    let px = |v: f64| (v.round() as u32).max(1);
    match fit {
        Fit::Inside => {
            let s = (bw / sw).min(bh / sh).min(1.0);
            Plan::whole(src_w, src_h, px(sw * s).min(box_w), px(sh * s).min(box_h))
        }
        Fit::Cover => {
            // Wider than the box: the crop is the full height; otherwise the full width.
            let wider = u64::from(src_w) * u64::from(box_h) > u64::from(box_w) * u64::from(src_h);
            let part = |side: u32, num: u32, den: u32| {
                let v = u128::from(units(side)) * u128::from(num) / u128::from(den);
                u64::try_from(v).unwrap_or(u64::MAX)
            };
            let (cw, ch) = if wider {
                (part(src_h, box_w, box_h), units(src_h))
            } else {
                (units(src_w), part(src_w, box_h, box_w))
            };
            let (width, height) = if box_w <= src_w && box_h <= src_h {
                (box_w, box_h)
            } else if wider {
                (px(sh * bw / bh), src_h)
            } else {
                (src_w, px(sw * bh / bw))
            };
            let crop = match focus {
                Some(focus) => Crop::around(src_w, src_h, cw, ch, focus),
                None => Crop::centred(src_w, src_h, cw, ch),
            };
            Plan { width, height, crop, scale: (Ratio::ONE, Ratio::ONE) }
        }
    }
}

/// Plans a box against the stored `src_w` x `src_h` image: for orientations 5–8 the box is transposed.
pub fn transposed_plan(src_w: u32, src_h: u32, w: u32, h: u32, fit: Fit, orientation: u8) -> Plan {
    let (bw, bh) = if exif::transposes(orientation) { (h, w) } else { (w, h) };
    plan(src_w, src_h, bw, bh, fit)
}

/// The plans of a preset's renditions on a `src_w` x `src_h` source (stored orientation).
pub fn plans(src_w: u32, src_h: u32, preset: &Preset, orientation: u8) -> Vec<Plan> {
    plans_around(src_w, src_h, preset, orientation, None)
}

/// [`plans`], the renditions whose crop is not `centre` centred on `focus` when there is one.
pub fn plans_around(src_w: u32, src_h: u32, preset: &Preset, orientation: u8, focus: Option<Focus>) -> Vec<Plan> {
    plans_focused(src_w, src_h, preset, orientation, &|mode| focus.filter(|_| !mode.is_centre()))
}

/// [`plans`] with each `cover` crop centred on `focus_of` its crop mode (where that gives a point).
pub fn plans_focused(
    src_w: u32,
    src_h: u32,
    preset: &Preset,
    orientation: u8,
    focus_of: &dyn Fn(CropMode) -> Option<Focus>,
) -> Vec<Plan> {
    preset
        .renditions
        .iter()
        .map(|r| {
            let (bw, bh) = if exif::transposes(orientation) { (r.height, r.width) } else { (r.width, r.height) };
            let focus = if r.crop.is_centre() { None } else { focus_of(r.crop) };
            plan_around(src_w, src_h, bw, bh, r.fit, focus)
        })
        .collect()
}

/// How much of the source's size (per side) must survive a box shrink for these plans: the most
/// any of them needs, times [`SHRINK_MARGIN`].
pub fn keep_for(plans: &[Plan]) -> f64 {
    let need = plans
        .iter()
        .map(|p| {
            let (_, _, cw, ch) = p.region();
            (f64::from(p.width) / cw).max(f64::from(p.height) / ch)
        })
        .fold(0.0, f64::max);
    need * SHRINK_MARGIN
}

/// The factors a box shrink reduces luma (or RGB) and chroma planes by, for chroma planes scaled by
/// `chroma_scale` against luma: luma keeps at least `keep` of its size, chroma half that of luma's.
pub fn shrink_factors(keep: f64, chroma_scale: (Ratio, Ratio)) -> (u32, u32) {
    let factor = |keep: f64| whole_factor((1.0 / keep.max(1e-6)).floor().min(1024.0) as u32);
    let k = factor(keep);
    (k, factor(keep / 2.0 / chroma_scale.0.to_f64().min(chroma_scale.1.to_f64())).min(k * 2))
}

/// The chroma scale (against luma) once luma is shrunk by `k` and chroma by `k_chroma`.
pub fn shrunk_chroma_scale((sx, sy): (Ratio, Ratio), k: u32, k_chroma: u32) -> (Ratio, Ratio) {
    let f = Ratio::new(u64::from(k), u64::from(k_chroma));
    (sx.then(f), sy.then(f))
}

/// The largest factor up to `k` that a box shrink makes exactly: 1–4, or 4 times such a factor.
pub fn whole_factor(k: u32) -> u32 {
    if k <= 4 { k.max(1) } else { 4 * whole_factor(k / 4) }
}

/// Which image a rendition is resized from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The decoded source, or its box-shrunk copy.
    Base,
    /// An already made rendition (by preset index): a larger full-frame one.
    Rendition(usize),
}

/// One resize of a [`schedule`]: rendition `rendition` from `from`, with `plan` on that image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub rendition: usize,
    pub from: Source,
    pub plan: Plan,
}

/// The resizes that make a preset's renditions (`plans`, on the `src_w` x `src_h` source) from a
/// base that is the source scaled by `base_scale` (1 / the box-shrink factor), largest first: a
/// smaller rendition is cut from the smallest larger full-frame one that has at least
/// [`CASCADE_MIN_RATIO`] times the pixels it needs per side, otherwise from the base.
pub fn schedule(src_w: u32, src_h: u32, base_scale: Ratio, plans: &[Plan]) -> Vec<Step> {
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(u64::from(plans[i].width) * u64::from(plans[i].height)));
    let mut frames: Vec<usize> = Vec::new();
    let mut steps = Vec::with_capacity(plans.len());
    for i in order {
        let plan = plans[i];
        let cascade = frames.iter().rev().find_map(|&f| cascade_plan(src_w, src_h, &plans[f], &plan).map(|p| (f, p)));
        steps.push(match cascade {
            Some((f, p)) => Step { rendition: i, from: Source::Rendition(f), plan: p },
            None => Step { rendition: i, from: Source::Base, plan: plan.scaled(base_scale, base_scale) },
        });
        if is_frame(&plan, src_w, src_h) {
            frames.push(i);
        }
    }
    steps
}

/// True when `plan` makes a full-frame rendition smaller than its `src_w` x `src_h` source: one that
/// smaller renditions may be cut from.
pub fn is_frame(plan: &Plan, src_w: u32, src_h: u32) -> bool {
    plan.is_full_frame(src_w, src_h) && (plan.width < src_w || plan.height < src_h)
}

/// Maps a plan on the full source onto a smaller full-frame rendition (`frame`), if that is big enough.
fn cascade_plan(src_w: u32, src_h: u32, frame: &Plan, plan: &Plan) -> Option<Plan> {
    let p = plan.scaled(
        Ratio::new(u64::from(frame.width), u64::from(src_w)),
        Ratio::new(u64::from(frame.height), u64::from(src_h)),
    );
    let (_, _, cw, ch) = p.region();
    (cw >= CASCADE_MIN_RATIO * f64::from(p.width) && ch >= CASCADE_MIN_RATIO * f64::from(p.height)).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgfleet_shared::{CropMode, ImageFormat, OutputSpec, RenditionSpec};

    fn preset(boxes: &[(u32, u32, Fit)]) -> Preset {
        let renditions = boxes
            .iter()
            .enumerate()
            .map(|(i, &(width, height, fit))| RenditionSpec {
                name: format!("r{i}"),
                width,
                height,
                fit,
                crop: CropMode::Centre,
                formats: vec![OutputSpec::new(ImageFormat::Jpeg, 85)],
            })
            .collect();
        Preset { name: "test".into(), renditions }
    }

    /// How a decoded source is laid out: interleaved pixels (with or without alpha, which is never
    /// box-shrunk), or YCbCr planes whose chroma is `h_c / h_y` x `v_c / v_y` of luma (JPEG
    /// sampling factors), each plane `ceil(side · factor / max factor)` as JPEG sizes them.
    #[derive(Debug, Clone, Copy)]
    enum Layout {
        Pixels { alpha: bool },
        Ycc { h_y: u32, v_y: u32, h_c: u32, v_c: u32 },
    }

    const LAYOUTS: [Layout; 8] = [
        Layout::Pixels { alpha: false },
        Layout::Pixels { alpha: true },
        Layout::Ycc { h_y: 2, v_y: 2, h_c: 1, v_c: 1 }, // 4:2:0
        Layout::Ycc { h_y: 1, v_y: 1, h_c: 1, v_c: 1 }, // 4:4:4
        Layout::Ycc { h_y: 2, v_y: 1, h_c: 1, v_c: 1 }, // 4:2:2
        Layout::Ycc { h_y: 1, v_y: 2, h_c: 1, v_c: 1 }, // 4:4:0
        Layout::Ycc { h_y: 4, v_y: 1, h_c: 1, v_c: 1 }, // 4:1:1
        Layout::Ycc { h_y: 3, v_y: 2, h_c: 1, v_c: 2 }, // odd factors
    ];

    /// A region read from an image `ext` pixels big lies inside it, as the resizer checks it.
    fn inside(region: Region, ext: (u32, u32)) -> Result<(), String> {
        let (l, t, w, h) = region;
        let (ew, eh) = (f64::from(ext.0), f64::from(ext.1));
        let ok = l >= 0.0 && t >= 0.0 && w > 0.0 && h > 0.0 && l < ew && t < eh && l + w <= ew && t + h <= eh;
        if ok { Ok(()) } else { Err(format!("region {region:?} outside {}x{}", ext.0, ext.1)) }
    }

    /// A chroma region is the luma region on the chroma grid, widened by one rendition pixel's
    /// span at the end (or at the start, for a rendition to be mirrored) on an odd side, and
    /// passes the `ext` plane's edges by no more than that span.
    fn chroma_inside(
        plan: &Plan,
        scale: (Ratio, Ratio),
        ext: (u32, u32),
        out_early: (bool, bool),
    ) -> Result<(), String> {
        let luma = plan.scaled(scale.0, scale.1).region();
        let (cw, ch, (l, t, w, h)) = plan.chroma(scale, (false, false), out_early);
        let eps = 1e-6;
        let check = |start: f64, len: f64, l_start: f64, l_len: f64, out: u32, half: u32, extent: u32, early: bool| {
            let span = l_len / f64::from(out);
            let widened = if 2 * half == out { 0.0 } else { span };
            let want_start = if early && widened > 0.0 { l_start - span } else { l_start };
            (start - want_start).abs() <= eps
                && (len - (l_len + widened)).abs() <= eps
                && start >= -span - eps
                && start + len <= f64::from(extent) + span + eps
        };
        if check(l, w, luma.0, luma.2, plan.width, cw, ext.0, out_early.0)
            && check(t, h, luma.1, luma.3, plan.height, ch, ext.1, out_early.1)
        {
            Ok(())
        } else {
            Err(format!("chroma region {:?} for luma {luma:?} ({out_early:?}) in {}x{}", (l, t, w, h), ext.0, ext.1))
        }
    }

    /// Every property the geometry promises, for one source size, box orientation, layout and set of boxes.
    fn check(
        src: (u32, u32),
        orientation: u8,
        layout: Layout,
        boxes: &[(u32, u32, Fit)],
        p: &Preset,
    ) -> Result<(), String> {
        let (w, h) = src;
        let plans = plans(w, h, p, orientation);
        for (&(bw, bh, fit), plan) in boxes.iter().zip(&plans) {
            let (bw, bh) = if exif::transposes(orientation) { (bh, bw) } else { (bw, bh) };
            check_plan((w, h), (bw, bh), fit, plan).map_err(|e| format!("{w}x{h} box {bw}x{bh} {fit:?}: {e}"))?;
        }
        // The box shrink: its factors, and the extents of the base it makes.
        let (chroma_scale, chroma_ext) = match layout {
            Layout::Pixels { .. } => ((Ratio::ONE, Ratio::ONE), (w, h)),
            Layout::Ycc { h_y, v_y, h_c, v_c } => (
                (Ratio::new(h_c.into(), h_y.into()), Ratio::new(v_c.into(), v_y.into())),
                ((w * h_c).div_ceil(h_y), (h * v_c).div_ceil(v_y)),
            ),
        };
        let keep = keep_for(&plans);
        let (k, k_c) = match layout {
            Layout::Pixels { alpha: true } => (1, 1),
            Layout::Pixels { alpha: false } => (shrink_factors(keep, chroma_scale).0, 1),
            Layout::Ycc { .. } => shrink_factors(keep, chroma_scale),
        };
        let (k, k_c) = if k == 1 { (1, 1) } else { (k, k_c) };
        let base = (w.div_ceil(k), h.div_ceil(k));
        let base_chroma = (chroma_ext.0.div_ceil(k_c), chroma_ext.1.div_ceil(k_c));
        let base_chroma_scale = shrunk_chroma_scale(chroma_scale, k, k_c);
        let steps = schedule(w, h, Ratio::new(1, k.into()), &plans);
        let mut made = vec![false; plans.len()];
        for step in &steps {
            let i = step.rendition;
            let want = &plans[i];
            let at = || format!("{w}x{h} o{orientation} {layout:?} k {k}/{k_c} rendition {i} from {:?}", step.from);
            if made[i] || (step.plan.width, step.plan.height) != (want.width, want.height) {
                return Err(format!("{}: made twice or at the wrong size", at()));
            }
            let (ext, chroma, chroma_at) = match step.from {
                Source::Base => (base, base_chroma, base_chroma_scale),
                Source::Rendition(f) => {
                    let frame = &plans[f];
                    if !made[f] || !is_frame(frame, w, h) {
                        return Err(format!("{}: cut from a rendition that is not a made full frame", at()));
                    }
                    let (_, _, cw, ch) = step.plan.region();
                    if cw < CASCADE_MIN_RATIO * f64::from(want.width) || ch < CASCADE_MIN_RATIO * f64::from(want.height)
                    {
                        return Err(format!("{}: cascade source too small", at()));
                    }
                    (
                        (frame.width, frame.height),
                        (frame.width.div_ceil(2), frame.height.div_ceil(2)),
                        (Ratio::HALF, Ratio::HALF),
                    )
                }
            };
            inside(step.plan.region(), ext).map_err(|e| format!("{}: {e}", at()))?;
            if let Layout::Ycc { .. } = layout {
                let (w_odd, h_odd) = (want.width % 2 == 1, want.height % 2 == 1);
                let (mx, my) = crate::pipeline::orient::mirrored_axes(orientation);
                chroma_inside(&step.plan, chroma_at, chroma, (mx && w_odd, my && h_odd))
                    .map_err(|e| format!("{} chroma: {e}", at()))?;
            }
            if step.from == Source::Base && k > 1 {
                // The shrunk base still has at least what the rendition needs: never upscaled.
                let (_, _, cw, ch) = step.plan.region();
                let eps = 1e-9;
                if cw + eps < f64::from(want.width) * SHRINK_MARGIN || ch + eps < f64::from(want.height) * SHRINK_MARGIN
                {
                    return Err(format!("{}: shrunk too far ({cw}x{ch} for {}x{})", at(), want.width, want.height));
                }
            }
            made[i] = true;
        }
        if made.iter().all(|&m| m) { Ok(()) } else { Err(format!("{w}x{h}: a rendition was never made")) }
    }

    /// A plan's size and crop box on the source, against its box.
    fn check_plan(src: (u32, u32), bx: (u32, u32), fit: Fit, plan: &Plan) -> Result<(), String> {
        let ((w, h), (bw, bh)) = (src, bx);
        let (out_w, out_h) = (plan.width, plan.height);
        let (sw, sh, fw, fh) = (f64::from(w), f64::from(h), f64::from(out_w), f64::from(out_h));
        inside(plan.region(), src).map_err(|e| format!("crop: {e}"))?;
        if out_w == 0 || out_h == 0 || out_w > w || out_h > h {
            return Err(format!("size {out_w}x{out_h}: empty or upscaled"));
        }
        let (l, t, cw, ch) = plan.region();
        match fit {
            Fit::Inside => {
                if plan.region() != (0.0, 0.0, sw, sh) {
                    return Err(format!("inside crops: {:?}", plan.region()));
                }
                if out_w > bw || out_h > bh {
                    return Err(format!("size {out_w}x{out_h} over the box"));
                }
                // Fills the box (or the source) on one side, and keeps the aspect within a pixel.
                if !(out_w == bw || out_h == bh || (out_w, out_h) == (w, h)) {
                    return Err(format!("size {out_w}x{out_h} fills neither side"));
                }
                let s = (f64::from(bw) / sw).min(f64::from(bh) / sh).min(1.0);
                if (fw - sw * s).abs() > 1.0 || (fh - sh * s).abs() > 1.0 {
                    return Err(format!("size {out_w}x{out_h} off the aspect (scale {s})"));
                }
            }
            Fit::Cover => {
                if bw <= w && bh <= h {
                    if (out_w, out_h) != (bw, bh) {
                        return Err(format!("size {out_w}x{out_h}, not the box"));
                    }
                } else if !(out_w == w || out_h == h)
                    || (fw * f64::from(bh) - fh * f64::from(bw)).abs() > f64::from(bw.max(bh))
                {
                    // Smaller than the box: the source's size on the side that limits it, the box's aspect within a pixel.
                    return Err(format!("size {out_w}x{out_h} of a small source"));
                }
                // The crop has the box's aspect, spans the source on one side, and is centred.
                let tolerance = 4.0 / UNIT as f64 * sw.max(sh);
                if (cw * f64::from(bh) - ch * f64::from(bw)).abs() > tolerance * f64::from(bw.max(bh)) {
                    return Err(format!("crop {cw}x{ch} off the box's aspect"));
                }
                if !(cw == sw || ch == sh) {
                    return Err(format!("crop {cw}x{ch} is not the largest"));
                }
                if (l - (sw - (l + cw))).abs() > 1e-6 || (t - (sh - (t + ch))).abs() > 1e-6 {
                    return Err(format!("crop at {l},{t} not centred"));
                }
            }
        }
        Ok(())
    }

    /// Runs `check` for every source size in `sizes` (split over two threads), every layout and both
    /// box orientations (only 5–8 transpose the box; `orientations_transpose_the_box` shows the rest are alike).
    fn sweep(sizes: &[(u32, u32)], boxes: &[(u32, u32, Fit)], layouts: &[Layout]) {
        let p = preset(boxes);
        let failures: Vec<String> = std::thread::scope(|s| {
            let halves = sizes.chunks(sizes.len().div_ceil(2).max(1)).collect::<Vec<_>>();
            let handles: Vec<_> = halves
                .into_iter()
                .map(|part| {
                    let p = &p;
                    s.spawn(move || {
                        let mut failures = Vec::new();
                        for &src in part {
                            for orientation in [1, 6] {
                                for &layout in layouts {
                                    if let Err(e) = check(src, orientation, layout, boxes, p) {
                                        failures.push(e);
                                    }
                                }
                            }
                        }
                        failures
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("sweep thread")).collect()
        });
        assert!(failures.is_empty(), "{} failures, e.g. {:#?}", failures.len(), &failures[..failures.len().min(10)]);
    }

    const PROFILE: [(u32, u32, Fit); 3] = [(150, 150, Fit::Cover), (400, 400, Fit::Cover), (800, 800, Fit::Inside)];

    /// Odd boxes: a single pixel, one-pixel strips, very wide and very tall, a box larger than any
    /// source here, both fits of each.
    const ODD: [(u32, u32, Fit); 12] = [
        (1, 1, Fit::Cover),
        (1, 1, Fit::Inside),
        (1, 700, Fit::Cover),
        (700, 1, Fit::Inside),
        (8192, 3, Fit::Cover),
        (3, 8192, Fit::Cover),
        (8192, 3, Fit::Inside),
        (3, 8192, Fit::Inside),
        (8192, 8192, Fit::Cover),
        (7, 5, Fit::Cover),
        (333, 217, Fit::Inside),
        (1000, 999, Fit::Cover),
    ];

    fn all_sizes(max: u32) -> Vec<(u32, u32)> {
        (1..=max).flat_map(|w| (1..=max).map(move |h| (w, h))).collect()
    }

    /// Random sizes up to the default limits (16,384 a side, 40 MP) and a few up to [`MAX_SIDE`].
    fn sampled_sizes(n: usize, seed: u64) -> Vec<(u32, u32)> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut sizes = Vec::with_capacity(n);
        while sizes.len() < n {
            let (a, b) = (next(), next());
            let (w, h) = if sizes.len() % 100 == 0 {
                // A strip up to the geometry's own maximum side.
                ((a % u64::from(MAX_SIDE)) as u32 + 1, (b % 40) as u32 + 1)
            } else {
                ((a % 16_384) as u32 + 1, (b % 16_384) as u32 + 1)
            };
            if u64::from(w) * u64::from(h) <= 40_000_000 {
                sizes.push(if sizes.len() % 2 == 0 { (w, h) } else { (h, w) });
            }
        }
        sizes
    }

    #[test]
    fn every_source_size_to_2000_renders_the_profile_preset_inside_its_images() {
        // 4 million sizes x 2 box orientations x the layouts every photo meets (RGB, RGBA, 4:2:0).
        sweep(&all_sizes(2000), &PROFILE, &LAYOUTS[..3]);
    }

    #[test]
    fn every_source_size_to_300_with_every_layout_and_odd_boxes() {
        sweep(&all_sizes(300), &PROFILE, &LAYOUTS);
        sweep(&all_sizes(300), &ODD, &LAYOUTS);
    }

    #[test]
    fn sampled_sizes_up_to_the_limits() {
        sweep(&sampled_sizes(40_000, 21), &PROFILE, &LAYOUTS);
        sweep(&sampled_sizes(20_000, 22), &ODD, &LAYOUTS);
    }

    #[test]
    fn the_sizes_that_were_refused_fit_now() {
        // Sizes whose crop box the floating-point geometry put a hair past the image's edge.
        for (w, h) in [(1227, 1305), (1238, 1264), (1378, 1397), (1127, 599), (630, 2173), (2726, 1400), (2847, 2813)] {
            sweep(&[(w, h), (h, w)], &PROFILE, &LAYOUTS);
        }
    }

    #[test]
    fn orientations_transpose_the_box() {
        let p = preset(&ODD);
        for o in 0..=9u8 {
            for (w, h) in [(1, 1), (640, 480), (17, 3000)] {
                let want: Vec<Plan> = ODD
                    .iter()
                    .map(
                        |&(bw, bh, fit)| {
                            if (5..=8).contains(&o) { plan(w, h, bh, bw, fit) } else { plan(w, h, bw, bh, fit) }
                        },
                    )
                    .collect();
                assert_eq!(plans(w, h, &p, o), want, "orientation {o}");
            }
        }
    }

    #[test]
    fn ratios_are_exact_and_reduced() {
        assert_eq!(Ratio::new(6, 4), Ratio::new(3, 2));
        assert_eq!(Ratio::new(1, 2).then(Ratio::new(4, 3)), Ratio::new(2, 3));
        assert_eq!(Ratio::new(5, 0), Ratio::new(5, 1));
        // Whole edges map exactly; anything else rounds to the nearest unit.
        assert_eq!(Ratio::new(800, 4032).of(4032 * UNIT), 800 * UNIT);
        assert_eq!(Ratio::new(1, 3).of(1), 0);
        assert_eq!(Ratio::new(2, 3).of(1), 1);
    }

    #[test]
    fn inside_keeps_aspect_and_never_upscales() {
        let size = |p: Plan| (p.width, p.height);
        assert_eq!(size(plan(4000, 3000, 800, 800, Fit::Inside)), (800, 600));
        assert_eq!(size(plan(3000, 4000, 800, 800, Fit::Inside)), (600, 800));
        assert_eq!(size(plan(100, 50, 800, 800, Fit::Inside)), (100, 50));
        assert_eq!(size(plan(10000, 10, 800, 800, Fit::Inside)), (800, 1));
    }

    #[test]
    fn cover_crops_exactly_and_centred() {
        let p = plan(4000, 3000, 400, 400, Fit::Cover);
        assert_eq!((p.width, p.height), (400, 400));
        assert_eq!(p.region(), (500.0, 0.0, 3000.0, 3000.0));
        let p = plan(3000, 4000, 150, 150, Fit::Cover);
        assert_eq!(p.region(), (0.0, 500.0, 3000.0, 3000.0));
        // A crop that is not whole pixels: its edges add up exactly.
        let p = plan(1227, 1305, 400, 400, Fit::Cover);
        let (l, t, w, h) = p.region();
        assert_eq!((l, w, t + h), (0.0, 1227.0, (1305.0 + 1227.0) / 2.0));
    }

    #[test]
    fn a_focused_cover_crop_is_the_centred_crops_size_inside_the_source_and_centred_on_the_focus_where_it_can_be() {
        // Every source up to 24x24, boxes of several aspects, the focus on every pixel corner and
        // beyond the edges (clamped): the crop keeps the centred crop's size and rendition size, stays
        // inside the source, and on each axis is centred on the focus unless that would cross an edge,
        // in which case it lies against that edge.
        let boxes = [(1, 1), (3, 2), (2, 3), (16, 9), (9, 16), (150, 150), (5, 1), (1, 7)];
        for (w, h) in (1..=24).flat_map(|w| (1..=24).map(move |h| (w, h))) {
            for &(bw, bh) in &boxes {
                let centred = plan(w, h, bw, bh, Fit::Cover);
                let (cw, ch) = (centred.crop.right - centred.crop.left, centred.crop.bottom - centred.crop.top);
                for fy in -1..=i64::from(h) + 1 {
                    for fx in -1..=i64::from(w) + 1 {
                        let focus = Focus::at(fx as f64, fy as f64, w, h);
                        let p = plan_around(w, h, bw, bh, Fit::Cover, Some(focus));
                        let c = p.crop;
                        let at = format!("{w}x{h} box {bw}x{bh} focus {fx},{fy}");
                        assert_eq!((p.width, p.height), (centred.width, centred.height), "{at}");
                        assert_eq!((c.right - c.left, c.bottom - c.top), (cw, ch), "{at}");
                        assert!(c.right <= units(w) && c.bottom <= units(h), "{at}: outside");
                        let axis = |lo: u64, len: u64, side: u64, f: u64| {
                            let centre = lo + len / 2;
                            centre == f || (lo == 0 && f < centre) || (lo + len == side && f > centre)
                        };
                        assert!(axis(c.left, cw, units(w), focus.x), "{at}: left {}", c.left);
                        assert!(axis(c.top, ch, units(h), focus.y), "{at}: top {}", c.top);
                    }
                }
            }
        }
    }

    #[test]
    fn only_renditions_with_a_crop_mode_follow_the_focus() {
        let mut p = preset(&PROFILE);
        p.renditions[0].crop = CropMode::Attention;
        let focus = Focus::at(0.0, 0.0, 4000, 3000);
        let (plain, focused) = (plans(4000, 3000, &p, 1), plans_around(4000, 3000, &p, 1, Some(focus)));
        assert_eq!(plans_around(4000, 3000, &p, 1, None), plain, "no focus: every crop centred");
        assert_eq!(focused[1..], plain[1..], "centre renditions ignore the focus");
        assert_eq!(focused[0].region(), (0.0, 0.0, 3000.0, 3000.0), "thumb pushed to the top-left corner");
        assert_eq!(plain[0].region(), (500.0, 0.0, 3000.0, 3000.0));
    }

    #[test]
    fn cover_of_a_small_source_crops_without_upscaling() {
        let p = plan(100, 50, 150, 150, Fit::Cover);
        assert_eq!((p.width, p.height), (50, 50));
        assert_eq!(p.region(), (25.0, 0.0, 50.0, 50.0));
        let p = plan(1, 1, 150, 150, Fit::Cover);
        assert_eq!((p.width, p.height), (1, 1));
        let p = plan(1000, 100, 150, 150, Fit::Cover);
        assert_eq!((p.width, p.height), (100, 100));
    }

    #[test]
    fn the_cascade_reads_the_smallest_frame_big_enough() {
        // 4000 x 3000: large (800 x 600) is cut from the (shrunk) source; medium (400 x 400 from a
        // 600 x 600 crop of large) and thumb (150 x 150) from large, the only frame.
        let p = preset(&PROFILE);
        let plans = plans(4000, 3000, &p, 1);
        let steps = schedule(4000, 3000, Ratio::new(1, 4), &plans);
        let order: Vec<(usize, Source)> = steps.iter().map(|s| (s.rendition, s.from)).collect();
        assert_eq!(order, [(2, Source::Base), (1, Source::Rendition(2)), (0, Source::Rendition(2))]);
        assert_eq!(steps[0].plan.region(), (0.0, 0.0, 1000.0, 750.0));
        assert_eq!(steps[1].plan.region(), (100.0, 0.0, 600.0, 600.0));
    }
}
