//! SVG charts with plotters (SVG backend only: no font files, no bitmap code). Text uses the
//! browser's sans-serif; plotters only estimates its width for the layout.

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

/// Line colours by series index (colour-blind-safe Okabe-Ito order).
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
];

/// One named line.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Dashed style (used for a second statistic of the same target).
    pub dashed: bool,
    /// Colour index (same target, same colour).
    pub colour: usize,
}

const SIZE: (u32, u32) = (960, 380);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn bounds(lines: &[Line]) -> Option<(f64, f64, f64, f64)> {
    let pts = lines.iter().flat_map(|l| l.points.iter());
    let mut b: Option<(f64, f64, f64, f64)> = None;
    for &(x, y) in pts {
        if !x.is_finite() || !y.is_finite() {
            continue;
        }
        b = Some(match b {
            None => (x, x, y, y),
            Some((x0, x1, y0, y1)) => (x0.min(x), x1.max(x), y0.min(y), y1.max(y)),
        });
    }
    b
}

fn draw_lines<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    lines: &[Line],
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: plotters::coord::CoordTranslate<From = (f64, f64)> + 'a,
{
    for l in lines {
        let colour = COLOURS[l.colour % COLOURS.len()];
        let style = ShapeStyle::from(&colour).stroke_width(2);
        let pts = l.points.iter().copied();
        if l.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 6, 4, style))
                .map_err(err)?
                .label(l.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(err)?
                .label(l.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)
}

/// `1/(1-p)` → percentile label (`90%`, `99.9%`).
fn percentile_label(x: f64) -> String {
    let p = (1.0 - 1.0 / x) * 100.0;
    let s = format!("{p:.4}");
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

/// The latency percentile spectrum: x = 1/(1-p) on a log axis (as HdrHistogram plots do),
/// y = latency in ms on a log axis.
pub(crate) fn spectrum(lines: &[Line]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let Some((_, x1, y0, y1)) = bounds(lines) else {
            return Ok(String::new());
        };
        let x_max = 10f64.powf(x1.max(10.0).log10().ceil());
        let y_lo = (y0.max(1e-6) / 1.5).max(1e-6);
        let y_hi = (y1 * 1.5).max(y_lo * 10.0);
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency by percentile", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((1.0..x_max).log_scale(), (y_lo..y_hi).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale of 1/(1-p))")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| percentile_label(*x))
            // Log axes draw many minor lines; keep them faint so they do not form grey bands.
            .light_line_style(RGBColor(242, 243, 245))
            .y_label_formatter(&|y| crate::units::sig3(*y))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        draw_lines(&mut chart, lines)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// A line chart over time (x in seconds since the run start).
pub(crate) fn timeline(title: &str, y_desc: &str, lines: &[Line]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let Some((x0, x1, _, y1)) = bounds(lines) else {
            return Ok(String::new());
        };
        let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
        let y1 = if y1 > 0.0 { y1 * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc(y_desc)
            .x_label_formatter(&|x| crate::units::sig3(*x))
            .y_label_formatter(&|y| crate::units::sig3(*y))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        draw_lines(&mut chart, lines)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_lines() {
        let lines = vec![
            Line {
                name: "candidate".into(),
                points: vec![(1.0, 0.1), (10.0, 0.2), (100.0, 0.5), (1000.0, 3.0)],
                dashed: false,
                colour: 0,
            },
            Line {
                name: "primary".into(),
                points: vec![(1.0, 0.8), (10.0, 1.0), (100.0, 2.0)],
                dashed: true,
                colour: 1,
            },
        ];
        let s = spectrum(&lines).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..100]);
        assert!(s.contains("candidate") && s.contains("primary"));
        assert!(s.contains("99.9%"), "percentile labels");
        assert!(s.contains("<polyline"), "lines drawn");
        let t = timeline("Throughput", "req/s", &lines).unwrap();
        assert!(t.contains("Throughput") && t.contains("<polyline"));
        assert_eq!(spectrum(&[]).unwrap(), "");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(1.0), "0%");
    }
}
