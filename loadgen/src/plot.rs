//! The fan-out latency-distribution plot: for each series, the share of devices (y) reached by
//! a given time after the admin call (x) — a cumulative distribution, one line per series.

use std::path::Path;

use plotters::prelude::*;

use crate::LoadError;
use crate::scenarios::Series;

/// One line: a legend label and sorted samples.
#[derive(Debug)]
pub struct Line<'a> {
    pub label: String,
    pub series: &'a Series,
    pub color: RGBColor,
    pub dashed: bool,
}

pub const COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
];

/// Writes an SVG with one cumulative-distribution line per series.
pub fn cdf_svg(path: &Path, title: &str, lines: &[Line<'_>]) -> Result<(), LoadError> {
    let err = |e: String| LoadError::Failed(format!("cannot draw {}: {e}", path.display()));
    let all = lines.iter().flat_map(|l| l.series.samples.iter());
    let ms = |d: &std::time::Duration| d.as_secs_f64() * 1000.0;
    // Log scale: the baseline's milliseconds and a slow run's tens of seconds on one chart.
    let x_min = all.clone().map(ms).fold(f64::INFINITY, f64::min).max(0.1) * 0.8;
    let x_max = all.map(ms).fold(1.0_f64, f64::max).max(x_min * 10.0) * 1.25;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..100.0)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("milliseconds since the admin call (log scale)")
        .y_desc("% of devices")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for line in lines {
        let n = line.series.samples.len().max(1) as f64;
        let step = (line.series.samples.len() / 2000).max(1);
        let points: Vec<(f64, f64)> = line
            .series
            .samples
            .iter()
            .enumerate()
            // At most ~2,000 points a line keep the file small; the last point is always kept.
            .filter(|(i, _)| i % step == 0 || i + 1 == line.series.samples.len())
            .map(|(i, d)| (ms(d).max(x_min), 100.0 * (i + 1) as f64 / n))
            .collect();
        let color = line.color;
        let style = color.stroke_width(2);
        let drawn = if line.dashed {
            chart.draw_series(DashedLineSeries::new(points, 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(points, style))
        };
        drawn
            .map_err(|e| err(e.to_string()))?
            .label(line.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
