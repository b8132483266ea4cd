//! Server-side SVG charts with `plotters`: bars or points with 95% interval whiskers, and a
//! trend line. Colours come from the Okabe–Ito palette, chosen so that the three used for
//! police presence also differ in lightness (they stay apart in greyscale), and every mark
//! has a black outline; each chart is drawn beside a table of its numbers.
//!
//! A figure whose follow-up is incomplete is drawn so that it is not read as a final one: a
//! bar lighter and hatched, a trend point hollow with a dashed line into it, each chart with a
//! legend that says so. Hatching and hollowness survive greyscale and colour blindness.

use plotters::coord::Shift;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::{RangedCoordf64, RangedCoordu32};
use plotters::prelude::*;

/// Fill colours by class: dark blue, vermilion, yellow (dark, middle and light in greyscale).
pub const PALETTE: [RGBColor; 3] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
];
/// The fill of a greyed-out (small) cell: white, under its outline, so it is never taken
/// for the yellow class in greyscale (a grey of 200 was within 20 of its luminance).
const GREY: RGBColor = RGBColor(255, 255, 255);

/// The legend of a mark whose follow-up is incomplete (short: the bar chart's legend has
/// room for about 30 characters after the three police classes).
pub const INCOMPLETE_LEGEND: &str = "follow-up incomplete";

/// One bar (or point) with its interval.
#[derive(Debug, Clone)]
pub struct Mark {
    pub label: String,
    pub value: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Index into [`PALETTE`].
    pub class: usize,
    /// Drawn grey: below the small-cell display threshold.
    pub grey: bool,
    /// Its follow-up is incomplete: a lighter, hatched bar, or a hollow point.
    pub incomplete: bool,
}

/// A colour halfway to white: the fill of an incomplete bar, under its hatching.
fn lighter(c: RGBColor) -> RGBColor {
    RGBColor(c.0 / 2 + 128, c.1 / 2 + 128, c.2 / 2 + 128)
}

/// The colour of hatching lines.
const HATCH: RGBColor = RGBColor(40, 40, 40);

/// Diagonal hatching over the pixel rectangle between the corners `a` and `b`, lines
/// `step` pixels apart, rising to the right (each line is x + y = s).
fn hatch(root: &Area<'_>, a: (i32, i32), b: (i32, i32), step: i32) -> DrawResult {
    let (x0, x1) = (a.0.min(b.0), a.0.max(b.0));
    let (y0, y1) = (a.1.min(b.1), a.1.max(b.1));
    let mut s = x0 + y0 + step;
    while s < x1 + y1 {
        let (xa, xb) = (x0.max(s - y1), x1.min(s - y0));
        if xa < xb {
            root.draw(&PathElement::new(
                vec![(xa, s - xa), (xb, s - xb)],
                HATCH.stroke_width(1),
            ))?;
        }
        s += step;
    }
    Ok(())
}

/// A dashed straight line from `a` to `b` in pixels: dashes and gaps of 6 pixels.
fn dashed(root: &Area<'_>, a: (i32, i32), b: (i32, i32), style: ShapeStyle) -> DrawResult {
    let (dx, dy) = (f64::from(b.0 - a.0), f64::from(b.1 - a.1));
    let len = dx.hypot(dy).max(1.0);
    let at = |t: f64| {
        let t = t.min(len) / len;
        (a.0 + (dx * t).round() as i32, a.1 + (dy * t).round() as i32)
    };
    let mut t = 0.0;
    while t < len {
        root.draw(&PathElement::new(vec![at(t), at(t + 6.0)], style))?;
        t += 12.0;
    }
    Ok(())
}

/// A chart's frame: size, title and the value axis.
#[derive(Debug, Clone)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub title: String,
    pub y_label: String,
    /// The value axis as a share (0 to 1) shown as percent, or a count.
    pub percent: bool,
}

fn y_range(marks: &[Mark], percent: bool) -> (f64, f64) {
    let mut lo: f64 = 0.0;
    let mut hi: f64 = if percent { 0.1 } else { 1.0 };
    for m in marks {
        for v in [m.value, m.lower, m.upper].into_iter().flatten() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let pad = (hi - lo) * 0.08;
    (
        if lo < 0.0 { lo - pad } else { 0.0 },
        if percent && lo >= 0.0 {
            (hi + pad).clamp(0.1, 1.0)
        } else {
            hi + pad
        },
    )
}

fn axis_label(v: f64, percent: bool) -> String {
    // No "-0%" at the zero line.
    let v = if v.abs() < 1e-9 { 0.0 } else { v };
    if percent {
        format!("{:.0}%", v * 100.0)
    } else {
        format!("{v:.0}")
    }
}

/// Vertical bars with whiskers over categories; `legend` names the classes used. A mark
/// without a value (a rate whose denominator is too noisy) is drawn as an empty slot
/// labelled `n/a`.
pub fn bars(frame: &Frame, marks: &[Mark], legend: &[(String, usize)]) -> String {
    render(frame, |root| draw_bars(root, frame, marks, legend))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;
type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
/// A chart with one x segment per mark and a value axis.
type MarkChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<SegmentedCoord<RangedCoordu32>, RangedCoordf64>>;

/// A chart's SVG, drawn by `draw` on an area of the frame's size. A drawing error leaves
/// the SVG as far as it got.
fn render(frame: &Frame, draw: impl FnOnce(&Area<'_>) -> DrawResult) -> String {
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (frame.width, frame.height)).into_drawing_area();
        let _ = draw(&root);
        let _ = root.present();
    }
    svg
}

/// What both charts draw first: the white ground, the caption, one x segment per mark
/// labelled with the mark's label (`label_size` in points, or plotters' default), and the
/// value axis. Returns the chart and its value range.
fn axes<'a, 'b>(
    root: &'a Area<'b>,
    frame: &Frame,
    marks: &[Mark],
    x_label_area: u32,
    label_size: Option<u32>,
) -> Result<(MarkChart<'a, 'b>, f64, f64), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let (y0, y1) = y_range(marks, frame.percent);
    // `a..b` segments include `b`: n marks take 0..n-1.
    let n = marks.len().max(1) as u32;
    let mut chart = ChartBuilder::on(root)
        .caption(&frame.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(x_label_area)
        .y_label_area_size(56)
        .build_cartesian_2d((0u32..n - 1).into_segmented(), y0..y1)?;
    let labels: Vec<String> = marks.iter().map(|m| m.label.clone()).collect();
    let percent = frame.percent;
    let x_label = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let y_label = |v: &f64| axis_label(*v, percent);
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_labels(marks.len().max(1))
        .x_label_formatter(&x_label);
    if let Some(size) = label_size {
        mesh.x_label_style(("sans-serif", size));
    }
    mesh.y_desc(&frame.y_label)
        .y_label_formatter(&y_label)
        .draw()?;
    Ok((chart, y0, y1))
}

fn draw_bars(
    root: &Area<'_>,
    frame: &Frame,
    marks: &[Mark],
    legend: &[(String, usize)],
) -> DrawResult {
    let (mut chart, y0, y1) = axes(root, frame, marks, 48, Some(11))?;
    let n = marks.len().max(1) as u32;
    for (i, m) in marks.iter().enumerate() {
        let i = i as u32;
        let fill = if m.grey {
            GREY
        } else if m.incomplete {
            lighter(PALETTE[m.class % PALETTE.len()])
        } else {
            PALETTE[m.class % PALETTE.len()]
        };
        if let Some(v) = m.value {
            let base = 0.0f64.clamp(y0, y1);
            let rect = [
                (SegmentValue::Exact(i), base),
                (SegmentValue::Exact(i + 1), v),
            ];
            // A gap between neighbouring bars.
            let gap = |mut r: Rectangle<_>| {
                r.set_margin(0, 0, 3, 3);
                r
            };
            chart.draw_series(std::iter::once(gap(Rectangle::new(
                rect.clone(),
                fill.filled(),
            ))))?;
            if m.incomplete {
                // The bar's corners in pixels, inside its 3-pixel gaps.
                let (xa, ya) = chart.backend_coord(&(SegmentValue::Exact(i), base));
                let (xb, yb) = chart.backend_coord(&(SegmentValue::Exact(i + 1), v));
                hatch(root, (xa + 3, ya), (xb - 3, yb), 7)?;
            }
            chart.draw_series(std::iter::once(gap(Rectangle::new(
                rect,
                BLACK.stroke_width(1),
            ))))?;
        } else {
            chart.draw_series(std::iter::once(Text::new(
                "n/a",
                (SegmentValue::CenterOf(i), y0 + (y1 - y0) * 0.05),
                ("sans-serif", 12),
            )))?;
        }
        if let (Some(lo), Some(hi)) = (m.lower, m.upper) {
            let x = SegmentValue::CenterOf(i);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x.clone(), lo), (x.clone(), hi)],
                BLACK.stroke_width(2),
            )))?;
            for y in [lo, hi] {
                chart.draw_series(std::iter::once(Circle::new(
                    (x.clone(), y),
                    3,
                    BLACK.filled(),
                )))?;
            }
        }
    }
    if y0 < 0.0 {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::Exact(0), 0.0), (SegmentValue::Exact(n), 0.0)],
            BLACK.stroke_width(1),
        )))?;
    }
    let y = frame.height as i32 - 14;
    for (k, (name, class)) in legend.iter().enumerate() {
        let x = 70 + 190 * k as i32;
        root.draw(&Rectangle::new(
            [(x, y - 9), (x + 14, y + 5)],
            PALETTE[class % PALETTE.len()].filled(),
        ))?;
        root.draw(&Rectangle::new(
            [(x, y - 9), (x + 14, y + 5)],
            BLACK.stroke_width(1),
        ))?;
        root.draw(&Text::new(
            name.clone(),
            (x + 20, y - 8),
            ("sans-serif", 12),
        ))?;
    }
    if marks.iter().any(|m| m.incomplete && m.value.is_some()) {
        let x = 70 + 190 * legend.len() as i32;
        root.draw(&Rectangle::new(
            [(x, y - 9), (x + 14, y + 5)],
            lighter(PALETTE[0]).filled(),
        ))?;
        hatch(root, (x, y - 9), (x + 14, y + 5), 5)?;
        root.draw(&Rectangle::new(
            [(x, y - 9), (x + 14, y + 5)],
            BLACK.stroke_width(1),
        ))?;
        root.draw(&Text::new(
            format!("hatched: {INCOMPLETE_LEGEND}"),
            (x + 20, y - 8),
            ("sans-serif", 12),
        ))?;
    }
    Ok(())
}

/// A line over quarters with a whisker at each point.
pub fn trend(frame: &Frame, marks: &[Mark]) -> String {
    render(frame, |root| draw_trend(root, frame, marks))
}

fn draw_trend(root: &Area<'_>, frame: &Frame, marks: &[Mark]) -> DrawResult {
    let incomplete = marks.iter().any(|m| m.incomplete && m.value.is_some());
    // Room under the quarters for the legend of incomplete points.
    let label_area = if incomplete { 52 } else { 36 };
    let (mut chart, _, _) = axes(root, frame, marks, label_area, None)?;
    // (index, value, incomplete) of each point that has a value.
    let points: Vec<(u32, f64, bool)> = marks
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.value.map(|v| (i as u32, v, m.incomplete)))
        .collect();
    // The line: solid between complete points, dashed into or out of an incomplete one.
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let (pa, pb) = (
            (SegmentValue::CenterOf(a.0), a.1),
            (SegmentValue::CenterOf(b.0), b.1),
        );
        if a.2 || b.2 {
            let (pa, pb) = (chart.backend_coord(&pa), chart.backend_coord(&pb));
            dashed(root, pa, pb, PALETTE[0].stroke_width(2))?;
        } else {
            chart.draw_series(LineSeries::new(vec![pa, pb], PALETTE[0].stroke_width(2)))?;
        }
    }
    for (i, m) in marks.iter().enumerate() {
        let x = SegmentValue::CenterOf(i as u32);
        if let (Some(lo), Some(hi)) = (m.lower, m.upper) {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x.clone(), lo), (x.clone(), hi)],
                BLACK.stroke_width(2),
            )))?;
        }
        if let Some(v) = m.value {
            if m.incomplete {
                // Hollow: white inside a thick ring of the line's colour (a small cell's
                // point is white inside a thin black ring).
                chart.draw_series(std::iter::once(Circle::new(
                    (x.clone(), v),
                    5,
                    WHITE.filled(),
                )))?;
                chart.draw_series(std::iter::once(Circle::new(
                    (x.clone(), v),
                    5,
                    PALETTE[0].stroke_width(3),
                )))?;
                continue;
            }
            let fill = if m.grey { GREY } else { PALETTE[0] };
            chart.draw_series(std::iter::once(Circle::new(
                (x.clone(), v),
                5,
                fill.filled(),
            )))?;
            chart.draw_series(std::iter::once(Circle::new(
                (x.clone(), v),
                5,
                BLACK.stroke_width(1),
            )))?;
        }
    }
    if incomplete {
        let (x, y) = (70, frame.height as i32 - 12);
        dashed(root, (x, y), (x + 30, y), PALETTE[0].stroke_width(2))?;
        root.draw(&Circle::new((x + 15, y), 5, WHITE.filled()))?;
        root.draw(&Circle::new((x + 15, y), 5, PALETTE[0].stroke_width(3)))?;
        root.draw(&Text::new(
            format!("hollow point, dashed line: {INCOMPLETE_LEGEND} (may rise as data arrive)"),
            (x + 40, y - 7),
            ("sans-serif", 12),
        ))?;
    }
    Ok(())
}
