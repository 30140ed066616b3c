//! The run's chart as one self-contained SVG file: latency over time (each upload at the time its
//! PutObject returned, against its upload → event latency; lost uploads marked along the top) above
//! a latency histogram with the p50 / p95 / p99 lines.
//!
//! Written by hand rather than with `plotters`: two plots of a few hundred points need axes, ticks,
//! rectangles, circles and text, which is a couple of hundred lines of plain string building with no
//! dependency to keep current, and an output that is deterministic and easy to test (the tests parse
//! it). `plotters` would bring its own tree of crates for the same picture.

use crate::ledger::{Lost, Sample};
use crate::stats::{Histogram, Summary};
use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 860.0;
const LEFT: f64 = 90.0;
const PLOT_W: f64 = 830.0;
const SCATTER_TOP: f64 = 110.0;
const SCATTER_H: f64 = 300.0;
const HIST_TOP: f64 = 520.0;
const HIST_H: f64 = 250.0;
const BINS: usize = 30;

const COMPLETED: &str = "#1f77b4";
const FAILED: &str = "#ff7f0e";
const LOST: &str = "#d62728";
const P50: &str = "#2ca02c";
const P95: &str = "#9467bd";
const P99: &str = "#d62728";

/// What the chart shows.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    pub title: String,
    pub subtitle: String,
    pub samples: &'a [Sample],
    pub lost: &'a [Lost],
}

/// A linear mapping from data to pixels, with the ticks to draw.
#[derive(Debug, Clone)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
    px_lo: f64,
    px_hi: f64,
}

impl Axis {
    /// An axis over `[lo, hi]` rounded out to about `n` round-numbered ticks.
    fn new(lo: f64, hi: f64, n: usize, px_lo: f64, px_hi: f64) -> Self {
        let (lo, hi, step) = nice_range(lo, hi, n);
        Self { lo, hi, step, px_lo, px_hi }
    }

    /// An axis of counts from 0: whole-number ticks only.
    fn counts(max: usize, n: usize, px_lo: f64, px_hi: f64) -> Self {
        let (_, _, step) = nice_range(0.0, max.max(1) as f64, n);
        let step = step.max(1.0);
        let hi = (max.max(1) as f64 / step).ceil() * step;
        Self { lo: 0.0, hi, step, px_lo, px_hi }
    }

    fn px(&self, v: f64) -> f64 {
        self.px_lo + (v - self.lo) / (self.hi - self.lo) * (self.px_hi - self.px_lo)
    }

    fn ticks(&self) -> Vec<f64> {
        let n = ((self.hi - self.lo) / self.step).round() as usize;
        (0..=n).map(|i| self.lo + i as f64 * self.step).collect()
    }

    fn label(&self, v: f64) -> String {
        let decimals = if self.step >= 1.0 { 0 } else { (-self.step.log10()).ceil() as usize };
        format!("{v:.decimals$}")
    }
}

/// Rounds `[lo, hi]` out to multiples of a 1-2-5 step giving about `n` intervals (the step whose
/// count is nearest `n` on a log scale, as d3's ticks choose it).
pub fn nice_range(lo: f64, hi: f64, n: usize) -> (f64, f64, f64) {
    let (lo, hi) = if hi > lo && (hi - lo).is_finite() { (lo, hi) } else { (lo.min(0.0), lo.max(0.0) + 1.0) };
    let raw = (hi - lo) / n.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let error = raw / magnitude;
    let factor = if error >= 50f64.sqrt() {
        10.0
    } else if error >= 10f64.sqrt() {
        5.0
    } else if error >= 2f64.sqrt() {
        2.0
    } else {
        1.0
    };
    let step = factor * magnitude;
    // The epsilon keeps 13 / 0.2 = 65.00000000000001 from adding a needless tick.
    let (nlo, nhi) = ((lo / step + 1e-9).floor() * step, (hi / step - 1e-9).ceil() * step);
    (nlo, if nhi > nlo { nhi } else { nlo + step }, step)
}

/// Escapes text for XML content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The whole SVG document.
pub fn svg(chart: &Chart<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="32" font-size="20" font-weight="bold" text-anchor="middle">{}</text>"##,
        WIDTH / 2.0,
        esc(&chart.title)
    );
    let _ = writeln!(
        out,
        r##"<text x="{}" y="54" fill="#555" text-anchor="middle">{}</text>"##,
        WIDTH / 2.0,
        esc(&chart.subtitle)
    );
    scatter(&mut out, chart);
    histogram(&mut out, chart.samples);
    out.push_str("</svg>\n");
    out
}

/// Axes, grid, tick labels and axis titles of one panel.
fn frame(out: &mut String, x: &Axis, y: &Axis, top: f64, height: f64, x_title: &str, y_title: &str) {
    let bottom = top + height;
    let _ = writeln!(out, r##"<g class="axes" stroke="#ccc" stroke-width="1">"##);
    for t in y.ticks() {
        let py = y.px(t);
        let _ = writeln!(out, r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}"/>"##, LEFT + PLOT_W);
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(out, r##"<g class="ticks" fill="#333">"##);
    for t in x.ticks() {
        let px = x.px(t);
        let _ =
            writeln!(out, r##"<line x1="{px:.1}" y1="{bottom}" x2="{px:.1}" y2="{}" stroke="black"/>"##, bottom + 5.0);
        let _ =
            writeln!(out, r##"<text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##, bottom + 18.0, x.label(t));
    }
    for t in y.ticks() {
        let py = y.px(t);
        let _ = writeln!(out, r##"<line x1="{}" y1="{py:.1}" x2="{LEFT}" y2="{py:.1}" stroke="black"/>"##, LEFT - 5.0);
        let _ =
            writeln!(out, r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##, LEFT - 8.0, py + 4.0, y.label(t));
    }
    let _ = writeln!(out, "</g>");
    let _ = writeln!(
        out,
        r##"<path d="M{LEFT} {top} V{bottom} H{:.1}" fill="none" stroke="black" stroke-width="1.2"/>"##,
        LEFT + PLOT_W
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"##,
        LEFT + PLOT_W / 2.0,
        bottom + 38.0,
        esc(x_title)
    );
    let cy = top + height / 2.0;
    let _ = writeln!(
        out,
        r##"<text x="24" y="{cy:.1}" text-anchor="middle" transform="rotate(-90 24 {cy:.1})">{}</text>"##,
        esc(y_title)
    );
}

/// A one-row legend above the top right of a panel, clear of the data: (colour, marker, label).
fn legend(out: &mut String, top: f64, entries: &[(&str, Marker, String)]) {
    // Text is about 7 px per character at 12 px sans-serif; each entry is swatch + gap + label + gap.
    let widths: Vec<f64> =
        entries.iter().map(|(_, _, label)| 26.0 + label.chars().count() as f64 * 7.0 + 14.0).collect();
    let mut x = LEFT + PLOT_W - widths.iter().sum::<f64>();
    let my = top - 19.0;
    let _ = writeln!(out, r##"<g class="legend">"##);
    for ((colour, marker, label), w) in entries.iter().zip(&widths) {
        let mx = x + 8.0;
        match marker {
            Marker::Dot => {
                let _ = writeln!(
                    out,
                    r##"<rect x="{:.1}" y="{:.1}" width="8" height="8" rx="4" fill="{colour}"/>"##,
                    mx - 4.0,
                    my - 4.0
                );
            }
            Marker::Cross => cross(out, mx, my, colour),
            Marker::Line => {
                let _ = writeln!(
                    out,
                    r##"<line x1="{:.1}" y1="{my:.1}" x2="{:.1}" y2="{my:.1}" stroke="{colour}" stroke-width="2" stroke-dasharray="5 3"/>"##,
                    mx - 8.0,
                    mx + 8.0
                );
            }
            Marker::Bar => {
                let _ = writeln!(
                    out,
                    r##"<rect x="{:.1}" y="{:.1}" width="12" height="10" fill="{colour}"/>"##,
                    mx - 6.0,
                    my - 5.0
                );
            }
        }
        let _ = writeln!(out, r##"<text x="{:.1}" y="{:.1}">{}</text>"##, mx + 16.0, my + 4.0, esc(label));
        x += w;
    }
    let _ = writeln!(out, "</g>");
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
enum Marker {
    Dot,
    Cross,
    Line,
    Bar,
}

fn cross(out: &mut String, x: f64, y: f64, colour: &str) {
    let _ = writeln!(
        out,
        r##"<path d="M{:.1} {:.1} l8 8 m0 -8 l-8 8" stroke="{colour}" stroke-width="2"/>"##,
        x - 4.0,
        y - 4.0
    );
}

fn scatter(out: &mut String, chart: &Chart<'_>) {
    let samples = chart.samples;
    let max_t =
        samples.iter().map(|s| s.upload_ms).chain(chart.lost.iter().map(|l| l.upload_ms)).fold(0.0, f64::max) / 1000.0;
    let max_latency = samples.iter().map(|s| s.latency_ms).fold(0.0, f64::max);
    let min_latency = samples.iter().map(|s| s.latency_ms).fold(0.0, f64::min);
    let x = Axis::new(0.0, max_t, 10, LEFT, LEFT + PLOT_W);
    let y = Axis::new(min_latency, max_latency, 6, SCATTER_TOP + SCATTER_H, SCATTER_TOP);
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{}" font-size="15" font-weight="bold">Latency over time</text>"##,
        SCATTER_TOP - 14.0
    );
    frame(out, &x, &y, SCATTER_TOP, SCATTER_H, "upload time since start of run (s)", "upload → event latency (ms)");
    let _ = writeln!(out, r##"<g class="series" fill-opacity="0.7">"##);
    for s in samples {
        let (class, colour) = if s.error_kind.is_some() { ("failed", FAILED) } else { ("completed", COMPLETED) };
        let _ = writeln!(
            out,
            r##"<circle class="point {class}" cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"><title>{} {:.0} ms</title></circle>"##,
            x.px(s.upload_ms / 1000.0),
            y.px(s.latency_ms),
            esc(&s.key),
            s.latency_ms
        );
    }
    for l in chart.lost.iter().filter(|l| l.late_latency_ms.is_none()) {
        let _ = writeln!(out, r##"<g class="point lost"><title>{} lost</title>"##, esc(&l.key));
        cross(out, x.px(l.upload_ms / 1000.0), SCATTER_TOP + 6.0, LOST);
        let _ = writeln!(out, "</g>");
    }
    let _ = writeln!(out, "</g>");
    let failed = samples.iter().filter(|s| s.error_kind.is_some()).count();
    let never = chart.lost.iter().filter(|l| l.late_latency_ms.is_none()).count();
    legend(
        out,
        SCATTER_TOP,
        &[
            (COMPLETED, Marker::Dot, format!("completed ({})", samples.len() - failed)),
            (FAILED, Marker::Dot, format!("failed ({failed})")),
            (LOST, Marker::Cross, format!("lost, no event ({never})")),
        ],
    );
    if samples.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#999" text-anchor="middle">no events</text>"##,
            LEFT + PLOT_W / 2.0,
            SCATTER_TOP + SCATTER_H / 2.0
        );
    }
}

/// Completed jobs' latencies in blue with failed ones stacked on top in orange; the percentile lines
/// are those of completed jobs, as in the table.
fn histogram(out: &mut String, samples: &[Sample]) {
    let (failed, completed): (Vec<&Sample>, Vec<&Sample>) = samples.iter().partition(|s| s.error_kind.is_some());
    let latencies = |v: &[&Sample]| v.iter().map(|s| s.latency_ms).collect::<Vec<f64>>();
    let (ok_ms, failed_ms) = (latencies(&completed), latencies(&failed));
    let all = Summary::of(samples.iter().map(|s| s.latency_ms));
    let (lo, hi, _) = nice_range(all.min.min(0.0), all.max, 10);
    let ok_hist = Histogram::new(&ok_ms, lo, hi, BINS);
    let failed_hist = Histogram::new(&failed_ms, lo, hi, BINS);
    let stacked_max = ok_hist.counts.iter().zip(&failed_hist.counts).map(|(a, b)| a + b).max().unwrap_or(0);
    let x = Axis::new(lo, hi, 10, LEFT, LEFT + PLOT_W);
    let y = Axis::counts(stacked_max, 5, HIST_TOP + HIST_H, HIST_TOP);
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="{}" font-size="15" font-weight="bold">Latency histogram</text>"##,
        HIST_TOP - 14.0
    );
    frame(out, &x, &y, HIST_TOP, HIST_H, "upload → event latency (ms)", "uploads");
    let width = ok_hist.bin_width();
    let _ = writeln!(out, r##"<g class="bars" fill-opacity="0.8">"##);
    for (i, (&ok, &bad)) in ok_hist.counts.iter().zip(&failed_hist.counts).enumerate() {
        let (from, to) = (lo + i as f64 * width, lo + (i + 1) as f64 * width);
        let (x0, x1) = (x.px(from) + 0.5, x.px(to) - 0.5);
        for (class, colour, below, count) in [("bin", COMPLETED, 0, ok), ("bin failed", FAILED, ok, bad)] {
            if count == 0 {
                continue;
            }
            let (top, bottom) = (y.px((below + count) as f64), y.px(below as f64));
            let _ = writeln!(
                out,
                r##"<rect class="{class}" x="{x0:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{from:.0}–{to:.0} ms: {count}</title></rect>"##,
                (x1 - x0).max(0.5),
                bottom - top,
            );
        }
    }
    let _ = writeln!(out, "</g>");
    let summary = Summary::of(ok_ms);
    let mut entries = vec![(COMPLETED, Marker::Bar, format!("completed ({})", completed.len()))];
    if !failed.is_empty() {
        entries.push((FAILED, Marker::Bar, format!("failed ({})", failed.len())));
    }
    if summary.count > 0 {
        for (name, value, colour) in [("p50", summary.p50, P50), ("p95", summary.p95, P95), ("p99", summary.p99, P99)] {
            let px = x.px(value);
            let _ = writeln!(
                out,
                r##"<line class="{name}" x1="{px:.1}" y1="{HIST_TOP}" x2="{px:.1}" y2="{}" stroke="{colour}" stroke-width="2" stroke-dasharray="5 3"/>"##,
                HIST_TOP + HIST_H
            );
            entries.push((colour, Marker::Line, format!("{name} {value:.0} ms")));
        }
    }
    legend(out, HIST_TOP, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize, latency_ms: f64, failed: bool) -> Sample {
        Sample {
            index: i,
            key: format!("uploads/lt/{i:05}-a&b.jpg"),
            upload_ms: i as f64 * 100.0,
            latency_ms,
            stamp_latency_ms: latency_ms,
            job_ms: Some(10.0),
            error_kind: failed.then(|| "corrupt".to_owned()),
        }
    }

    /// Checks the document is well-formed XML: tokens parse and every element is closed in order.
    fn assert_well_formed(doc: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        for token in xmlparser::Tokenizer::from(doc) {
            match token.unwrap_or_else(|e| panic!("not XML: {e}")) {
                xmlparser::Token::ElementStart { local, .. } => {
                    if stack.is_empty() {
                        roots += 1;
                    }
                    stack.push(local.as_str().to_owned());
                }
                xmlparser::Token::ElementEnd { end, .. } => match end {
                    xmlparser::ElementEnd::Open => {}
                    xmlparser::ElementEnd::Empty => {
                        stack.pop();
                    }
                    xmlparser::ElementEnd::Close(_, name) => {
                        assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "mismatched closing tag");
                    }
                },
                _ => {}
            }
        }
        assert!(stack.is_empty(), "unclosed elements: {stack:?}");
        assert_eq!(roots, 1);
    }

    #[test]
    fn svg_is_well_formed_and_holds_every_series() {
        let samples: Vec<Sample> = (0..50).map(|i| sample(i, 200.0 + (i % 7) as f64 * 40.0, i % 10 == 3)).collect();
        let lost = vec![
            Lost { index: 50, key: "uploads/lt/00050-x.jpg".into(), upload_ms: 5_000.0, late_latency_ms: None },
            Lost { index: 51, key: "uploads/lt/00051-x.jpg".into(), upload_ms: 5_100.0, late_latency_ms: Some(9e5) },
        ];
        let doc =
            svg(&Chart { title: "run <1> & co".into(), subtitle: "50 uploads".into(), samples: &samples, lost: &lost });
        assert_well_formed(&doc);
        assert!(doc.starts_with("<svg "));
        assert!(doc.contains("run &lt;1&gt; &amp; co"));
        assert!(doc.contains("Latency over time") && doc.contains("Latency histogram"));
        assert_eq!(doc.matches(r##"class="point completed""##).count(), 45);
        assert_eq!(doc.matches(r##"class="point failed""##).count(), 5);
        assert_eq!(
            doc.matches(r##"class="point lost""##).count(),
            1,
            "a late event is drawn as its sample, not as lost"
        );
        assert!(doc.contains("completed (45)") && doc.contains("failed (5)") && doc.contains("lost, no event (1)"));
        assert!(
            doc.contains(r##"class="p50""##) && doc.contains(r##"class="p95""##) && doc.contains(r##"class="p99""##)
        );
        let binned: usize = doc.match_indices(r##"<rect class="bin""##).count();
        assert!(binned >= 2, "the histogram has bars");
        assert!(doc.contains(r##"<rect class="bin failed""##), "failures are stacked on the bars");
        assert!(doc.contains("upload time since start of run (s)"));
    }

    #[test]
    fn empty_run_still_draws_axes() {
        let doc = svg(&Chart { title: "t".into(), subtitle: String::new(), samples: &[], lost: &[] });
        assert_well_formed(&doc);
        assert!(doc.contains("no events"));
        assert!(!doc.contains("NaN") && !doc.contains("inf"));
    }

    #[test]
    fn nice_ranges() {
        assert_eq!(nice_range(0.0, 9.3, 10), (0.0, 10.0, 1.0));
        assert_eq!(nice_range(0.0, 1234.0, 6), (0.0, 1400.0, 200.0));
        assert_eq!(nice_range(0.0, 0.0, 5), (0.0, 1.0, 0.2));
        let (lo, hi, step) = nice_range(12.0, 13.0, 4);
        assert!((lo - 12.0).abs() < 1e-9 && (hi - 13.0).abs() < 1e-9 && (step - 0.2).abs() < 1e-9);
        let axis = Axis::new(12.0, 13.0, 4, 0.0, 100.0);
        let labels: Vec<String> = axis.ticks().iter().map(|t| axis.label(*t)).collect();
        assert_eq!(labels, ["12.0", "12.2", "12.4", "12.6", "12.8", "13.0"]);
        assert!((axis.px(12.5) - 50.0).abs() < 1e-9);
        let counts = Axis::counts(3, 5, 0.0, 100.0);
        assert_eq!(counts.ticks(), [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(Axis::counts(0, 5, 0.0, 100.0).ticks(), [0.0, 1.0]);
    }
}
