//! The report's charts, drawn by plotters as SVG text.
//!
//! plotters' SVG backend writes text as `<text>` elements sized by its built-in estimate (no
//! font file is read) and escapes every label and attribute it writes, so names from the
//! program can be given to it as they are.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// An RGB colour, also written as CSS (`#rrggbb`) for the legends beside the charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rgb(pub(crate) u8, pub(crate) u8, pub(crate) u8);

impl Rgb {
    fn rgb(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }

    /// `#rrggbb`.
    pub(crate) fn css(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// The bands' colours, bottom band first (a categorical palette, without the red and black
/// kept for the lines).
pub(crate) const PALETTE: [Rgb; 10] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(44, 160, 44),
    Rgb(148, 103, 189),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(188, 189, 34),
    Rgb(23, 190, 207),
    Rgb(174, 199, 232),
    Rgb(255, 187, 120),
];
/// The band of everything else.
pub(crate) const OTHER: Rgb = Rgb(199, 199, 199);
/// The process's resident memory.
pub(crate) const RESIDENT: Rgb = Rgb(0, 0, 0);
/// classtrack's overhead.
pub(crate) const OVERHEAD: Rgb = Rgb(214, 39, 40);
/// The moment of the peak.
pub(crate) const PEAK: Rgb = Rgb(148, 0, 211);

/// A moment marked on a chart: a dashed vertical line at `time` up to `value`, a dot and a
/// label there.
pub(crate) struct Marker {
    pub(crate) time: f64,
    pub(crate) value: f64,
    pub(crate) label: String,
}

/// What a chart's vertical axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Bytes, labelled in binary units.
    Bytes,
    /// A count (instances).
    Count,
}

/// One band of a stacked chart: a value at each of the chart's times.
pub(crate) struct Band {
    pub(crate) color: Rgb,
    pub(crate) values: Vec<f64>,
}

/// One line: (seconds, value) points, oldest first.
pub(crate) struct Line {
    pub(crate) color: Rgb,
    pub(crate) points: Vec<(f64, f64)>,
    /// Whether the area below it is shaded.
    pub(crate) filled: bool,
}

/// A chart's size and axis titles.
pub(crate) struct Frame<'a> {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) unit: Unit,
    pub(crate) y_title: &'a str,
}

fn drawing_error(e: impl std::fmt::Display) -> Error {
    Error::Report(format!("drawing a chart of the HTML report failed: {e}"))
}

/// A tick step of 1, 2 or 5 times a power of ten, giving about six ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = max / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// The vertical axis for values up to `max`, in the unit that fits it: values are divided by
/// `scale` (a power of 1024 for bytes, 1 for counts) so that ticks fall on whole steps of a
/// binary unit (`256 MiB`, not `268435456`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    /// What one unit of the scaled axis is worth.
    scale: f64,
    /// The unit's name (`MiB`), empty for counts.
    unit: &'static str,
    /// The top of the scaled axis: a whole number of steps.
    top: f64,
    /// The tick step, scaled.
    step: f64,
}

impl Axis {
    fn new(max: f64, unit: Unit) -> Axis {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let (scale, name) = match unit {
            Unit::Count => (1.0, ""),
            Unit::Bytes => {
                let mut scale = 1.0;
                let mut name = "B";
                for next in ["KiB", "MiB", "GiB", "TiB"] {
                    if max / scale < 1024.0 {
                        break;
                    }
                    scale *= 1024.0;
                    name = next;
                }
                (scale, name)
            }
        };
        let scaled = max / scale;
        let mut step = nice_step(scaled);
        if scale == 1.0 {
            // Whole bytes and whole instances.
            step = step.max(1.0);
        }
        let steps = (scaled / step - 1e-9).ceil().max(1.0);
        Axis {
            scale,
            unit: name,
            top: steps * step,
            step,
        }
    }

    /// Ticks to ask plotters for: one per step.
    fn ticks(&self) -> usize {
        (self.top / self.step).round() as usize + 1
    }

    /// A tick's label (`v` scaled): `0`, `1.5 MiB`, `200 KiB`, `12`.
    fn label(&self, v: f64) -> String {
        if v.abs() < self.step * 1e-6 {
            return "0".to_owned();
        }
        let decimals = if self.step < 1.0 { 1 } else { 0 };
        let number = format!("{v:.decimals$}");
        if self.unit.is_empty() {
            number
        } else {
            format!("{number} {}", self.unit)
        }
    }
}

/// The shortest time axis, in seconds: ticks a tenth of it apart need 4 decimals, so that a
/// few microseconds between two times (an instance born just before a snapshot) do not make
/// labels too long to fit between ticks.
const MIN_SPAN: f64 = 1e-3;

/// The time axis: from the first time to the last (a second around a single time, at least
/// [`MIN_SPAN`] around close ones).
fn time_range(times: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for t in times.filter(|t| t.is_finite()) {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        return ((lo - 0.5).max(0.0), lo + 0.5);
    }
    if hi - lo < MIN_SPAN {
        let start = ((lo + hi - MIN_SPAN) / 2.0).max(0.0);
        return (start, start + MIN_SPAN);
    }
    (lo, hi)
}

/// A time tick's label, with as many decimals as ticks about a tenth of `span` apart need to
/// differ (`12 s`, `0.25 s`, `0.0004 s`).
fn seconds_label(t: f64, span: f64) -> String {
    let decimals = if span > 0.0 && span.is_finite() {
        (-(span / 10.0).log10()).ceil().clamp(0.0, 9.0) as usize
    } else {
        3
    };
    format!("{t:.decimals$} s")
}

/// Draws the axes, mesh and labels of a chart over `x` seconds and `y` values up to `max`,
/// then `draw` its series; returns the SVG.
fn draw(
    frame: &Frame<'_>,
    x: (f64, f64),
    max: f64,
    draw: impl FnOnce(&mut Plot<'_, '_>, f64) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (frame.width, frame.height)).into_drawing_area();
        root.fill(&WHITE).map_err(drawing_error)?;
        let axis = Axis::new(max, frame.unit);
        let span = x.1 - x.0;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(96)
            .build_cartesian_2d(x.0..x.1, 0f64..axis.top)
            .map_err(drawing_error)?;
        let y_label = |v: &f64| axis.label(*v);
        let x_label = |t: &f64| seconds_label(*t, span);
        chart
            .configure_mesh()
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(220, 220, 220))
            .x_labels(8)
            .y_labels(axis.ticks())
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_desc("seconds since the tracker was created")
            .y_desc(frame.y_title)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(drawing_error)?;
        draw(&mut chart, axis.scale)?;
        root.present().map_err(drawing_error)?;
    }
    Ok(svg)
}

type Plot<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws `lines`, values divided by `scale`.
fn draw_lines(chart: &mut Plot<'_, '_>, lines: &[Line], scale: f64) -> Result<()> {
    for line in lines {
        let color = line.color.rgb();
        let points = || line.points.iter().map(|&(t, v)| (t, v / scale));
        if line.filled {
            chart
                .draw_series(AreaSeries::new(points(), 0.0, color.mix(0.2)))
                .map_err(drawing_error)?;
        }
        chart
            .draw_series(LineSeries::new(points(), color.stroke_width(2)))
            .map_err(drawing_error)?;
        // A line of one point (a single snapshot) draws nothing: a dot shows the value.
        if line.points.len() == 1 {
            chart
                .draw_series(points().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(drawing_error)?;
        }
    }
    Ok(())
}

/// A stacked area chart: `bands` (bottom first) at `times`, with `lines` over them.
pub(crate) fn stacked(
    frame: &Frame<'_>,
    times: &[f64],
    bands: &[Band],
    lines: &[Line],
    marker: Option<&Marker>,
) -> Result<String> {
    // A single snapshot is drawn a second wide.
    let times: Vec<f64> = if times.len() == 1 {
        vec![times[0] - 0.5, times[0] + 0.5]
    } else {
        times.to_vec()
    };
    let value = |band: &Band, i: usize| {
        let v = if band.values.len() == 1 {
            band.values[0]
        } else {
            band.values.get(i).copied().unwrap_or(0.0)
        };
        if v.is_finite() {
            v.max(0.0)
        } else {
            0.0
        }
    };
    let mut below = vec![0.0; times.len()];
    let mut polygons = Vec::with_capacity(bands.len());
    for band in bands {
        let above: Vec<f64> = (0..times.len())
            .map(|i| below[i] + value(band, i))
            .collect();
        let mut points: Vec<(f64, f64)> =
            times.iter().copied().zip(above.iter().copied()).collect();
        points.extend(times.iter().copied().zip(below.iter().copied()).rev());
        polygons.push((points, band.color));
        below = above;
    }
    let max = below
        .iter()
        .copied()
        .chain(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)))
        .chain(marker.map(|m| m.value))
        .fold(0.0, f64::max);
    let x = time_range(times.iter().copied().chain(marker.map(|m| m.time)));
    draw(frame, x, max, |chart, scale| {
        for (points, color) in polygons {
            let points: Vec<(f64, f64)> = points.into_iter().map(|(t, v)| (t, v / scale)).collect();
            chart
                .draw_series(std::iter::once(Polygon::new(points, color.rgb().filled())))
                .map_err(drawing_error)?;
        }
        draw_lines(chart, lines, scale)?;
        if let Some(m) = marker {
            draw_marker(chart, m, scale, x)?;
        }
        Ok(())
    })
}

/// Draws `m`: a dashed line from the axis up to its value, a dot, and its label beside the
/// dot, on the side of the chart with more room.
fn draw_marker(chart: &mut Plot<'_, '_>, m: &Marker, scale: f64, x: (f64, f64)) -> Result<()> {
    let color = PEAK.rgb();
    let top = m.value / scale;
    chart
        .draw_series(DashedLineSeries::new(
            [(m.time, 0.0), (m.time, top)],
            6,
            4,
            color.stroke_width(2),
        ))
        .map_err(drawing_error)?;
    chart
        .draw_series(std::iter::once(Circle::new(
            (m.time, top),
            6,
            color.filled(),
        )))
        .map_err(drawing_error)?;
    let right_half = m.time > (x.0 + x.1) / 2.0;
    let anchor = if right_half { HPos::Right } else { HPos::Left };
    let style = TextStyle::from(("sans-serif", 17).into_font())
        .color(&color)
        .pos(Pos::new(anchor, VPos::Bottom));
    let dx = if right_half { -10 } else { 10 };
    chart
        .draw_series(std::iter::once(
            EmptyElement::at((m.time, top)) + Text::new(m.label.clone(), (dx, -8), style),
        ))
        .map_err(drawing_error)?;
    Ok(())
}

/// A chart of `lines`.
pub(crate) fn lines(frame: &Frame<'_>, lines: &[Line]) -> Result<String> {
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let x = time_range(lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)));
    draw(frame, x, max, |chart, scale| {
        draw_lines(chart, lines, scale)
    })
}

/// `(time, count)` changes as the points of a step line: each count holds until the next.
pub(crate) fn steps(points: &[(f64, u64)], until: Option<f64>) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2 + 1);
    for (i, &(t, n)) in points.iter().enumerate() {
        if i > 0 {
            out.push((t, points[i - 1].1 as f64));
        }
        out.push((t, n as f64));
    }
    if let (Some(end), Some(&(t, n))) = (until, points.last()) {
        if end > t {
            out.push((end, n as f64));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ticks_are_whole_steps_of_a_binary_unit() {
        let mib = 1024.0 * 1024.0;
        let axis = Axis::new(300.0 * mib, Unit::Bytes);
        assert_eq!(
            (axis.unit, axis.scale, axis.step, axis.top),
            ("MiB", mib, 50.0, 300.0)
        );
        assert_eq!(axis.ticks(), 7);
        assert_eq!(axis.label(100.0), "100 MiB");
        assert_eq!(axis.label(0.0), "0");
        let axis = Axis::new(1.1 * mib, Unit::Bytes);
        assert_eq!(axis.label(0.2), "0.2 MiB");
        let axis = Axis::new(3.0, Unit::Count);
        assert_eq!(
            (axis.top, axis.step, axis.label(2.0).as_str()),
            (3.0, 1.0, "2")
        );
        let axis = Axis::new(0.0, Unit::Bytes);
        assert_eq!((axis.top, axis.ticks()), (1.0, 2));
        assert!(Axis::new(f64::NAN, Unit::Bytes).top > 0.0);
        assert_eq!(Axis::new(1023.0, Unit::Bytes).unit, "B");
    }

    #[test]
    fn time_labels_differ_between_ticks() {
        assert_eq!(seconds_label(120.0, 500.0), "120 s");
        assert_eq!(seconds_label(1.5, 8.0), "1.5 s");
        assert_eq!(seconds_label(0.25, 0.6), "0.25 s");
        assert_eq!(seconds_label(0.0004, 0.001), "0.0004 s");
        assert_eq!(seconds_label(2.0, 0.0), "2.000 s");
    }

    #[test]
    fn close_times_get_an_axis_of_a_millisecond_with_short_labels() {
        // An instance born 50 µs before the only snapshot.
        let (lo, hi) = time_range([0.00238, 0.00243].into_iter());
        assert!((hi - lo - MIN_SPAN).abs() < 1e-12 && lo <= 0.00238 && hi >= 0.00243);
        assert_eq!(seconds_label(0.0024, hi - lo), "0.0024 s");
        // Near zero the axis starts at zero.
        assert_eq!(time_range([0.0, 0.0001].into_iter()), (0.0, MIN_SPAN));
        // Times far enough apart keep their own range.
        assert_eq!(time_range([1.0, 1.5].into_iter()), (1.0, 1.5));
    }

    #[test]
    fn steps_hold_each_count_until_the_next() {
        assert_eq!(
            steps(&[(1.0, 1), (2.0, 3)], Some(4.0)),
            vec![(1.0, 1.0), (2.0, 1.0), (2.0, 3.0), (4.0, 3.0)]
        );
        assert!(steps(&[], Some(1.0)).is_empty());
    }

    #[test]
    fn labels_are_escaped_in_the_svg() {
        let frame = Frame {
            width: 300,
            height: 200,
            unit: Unit::Bytes,
            y_title: "<script>alert(1)</script>",
        };
        let svg = lines(
            &frame,
            &[Line {
                color: PALETTE[0],
                points: vec![(0.0, 10.0), (1.0, 2048.0)],
                filled: true,
            }],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("KiB"));
    }
}
