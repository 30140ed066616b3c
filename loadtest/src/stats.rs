//! Statistics over samples in milliseconds: percentiles, a summary row and a histogram.
//!
//! Percentiles interpolate linearly between the two closest ranks (position `p × (n − 1)` in the
//! sorted samples, the default of numpy and of R's type 7), so the 50th percentile is the usual
//! median (the mean of the two middle values for an even count). The peer benchmark's p90 takes the
//! lower of the two ranks instead; on 30 samples the two differ by a tenth of one gap.

use serde::Serialize;

/// The `p`-th percentile (0–100) of samples sorted ascending; `None` when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let (first, last) = (sorted.first()?, sorted.last()?);
    if p <= 0.0 {
        return Some(*first);
    }
    if p >= 100.0 {
        return Some(*last);
    }
    let pos = p / 100.0 * (sorted.len() - 1) as f64;
    let lower = pos.floor() as usize;
    let upper = pos.ceil() as usize;
    let weight = pos - lower as f64;
    Some(sorted[lower] + (sorted[upper] - sorted[lower]) * weight)
}

/// Sorts samples ascending, dropping NaNs (which have no rank).
pub fn sorted(samples: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = samples.into_iter().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Count, mean and the percentiles every report prints, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises samples (any order); all zeros when there are none.
    pub fn of(samples: impl IntoIterator<Item = f64>) -> Self {
        let s = sorted(samples);
        if s.is_empty() {
            return Self::default();
        }
        let at = |p| percentile(&s, p).unwrap_or(0.0);
        Self {
            count: s.len(),
            min: s[0],
            mean: s.iter().sum::<f64>() / s.len() as f64,
            p50: at(50.0),
            p90: at(90.0),
            p95: at(95.0),
            p99: at(99.0),
            max: s[s.len() - 1],
        }
    }
}

/// Equal-width bins from `lo` to `hi`; the last bin includes `hi`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<usize>,
}

impl Histogram {
    /// Bins samples into `bins` equal bins over `[lo, hi]`; samples outside are clamped into the edge bins.
    pub fn new(samples: &[f64], lo: f64, hi: f64, bins: usize) -> Self {
        let bins = bins.max(1);
        let mut counts = vec![0; bins];
        let width = (hi - lo) / bins as f64;
        for &x in samples.iter().filter(|x| !x.is_nan()) {
            let i = if width > 0.0 { ((x - lo) / width).floor() } else { 0.0 };
            counts[(i.max(0.0) as usize).min(bins - 1)] += 1;
        }
        Self { lo, hi, counts }
    }

    /// Width of one bin.
    pub fn bin_width(&self) -> f64 {
        (self.hi - self.lo) / self.counts.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn percentiles_of_one_to_ten() {
        let s: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&s, 0.0), Some(1.0));
        assert_eq!(percentile(&s, 100.0), Some(10.0));
        assert!(close(percentile(&s, 50.0).unwrap(), 5.5), "median of an even count is the mean of the middle two");
        assert!(close(percentile(&s, 90.0).unwrap(), 9.1));
        assert!(close(percentile(&s, 95.0).unwrap(), 9.55));
        assert!(close(percentile(&s, 99.0).unwrap(), 9.91));
    }

    #[test]
    fn percentiles_match_numpy_linear_on_uneven_data() {
        // numpy.percentile([3, 1, 4, 1, 5, 9, 2, 6], [25, 50, 75, 90]) == [1.75, 3.5, 5.25, 6.9]
        let s = sorted([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]);
        assert!(close(percentile(&s, 25.0).unwrap(), 1.75));
        assert!(close(percentile(&s, 50.0).unwrap(), 3.5));
        assert!(close(percentile(&s, 75.0).unwrap(), 5.25));
        assert!(close(percentile(&s, 90.0).unwrap(), 6.9));
    }

    #[test]
    fn edge_cases() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(sorted([2.0, f64::NAN, 1.0]), vec![1.0, 2.0]);
        assert_eq!(Summary::of([]), Summary::default());
    }

    #[test]
    fn summary_of_a_hundred() {
        let s = Summary::of((1..=100).rev().map(f64::from));
        assert_eq!(s.count, 100);
        assert!(close(s.min, 1.0) && close(s.max, 100.0));
        assert!(close(s.mean, 50.5));
        assert!(close(s.p50, 50.5));
        assert!(close(s.p95, 95.05));
        assert!(close(s.p99, 99.01));
    }

    #[test]
    fn histogram_bins_and_clamps() {
        let h = Histogram::new(&[0.0, 1.0, 9.99, 10.0, 25.0, -3.0, 5.0], 0.0, 10.0, 2);
        assert_eq!(h.counts, vec![3, 4]);
        assert!(close(h.bin_width(), 5.0));
        assert_eq!(Histogram::new(&[4.0, 4.0], 4.0, 4.0, 3).counts, vec![2, 0, 0]);
    }
}
