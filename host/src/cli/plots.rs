//! SVG plots of the demo and the benchmark (plotters' SVG backend: no fonts or system libraries
//! needed; the files are written to a temp file and renamed).

use super::adapt::GateTable;
use super::adaptive::AdaptiveTable;
use super::demo::PointRow;
use anyhow::{Context as _, Result, anyhow};
use plotters::prelude::*;
use std::path::Path;

const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

/// Renders into a string and writes it atomically.
fn write_svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(root.clone())?;
        root.present().map_err(err)?;
    }
    caq_model::store::write_bytes_atomic(path, svg.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn span(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let d = (hi - lo).max(1e-9) * pad;
    (lo - d, hi + d)
}

/// Accuracy against dynamic energy per inference: the uniform-precision curve and each gate.
pub fn gates(path: &Path, t: &GateTable) -> Result<()> {
    write_svg(path, (760, 520), |root| {
        let xs = t
            .uniform
            .iter()
            .map(|f| f.energy.dynamic_j * 1e6)
            .chain(t.gates.iter().map(|g| g.gate.energy.dynamic_j * 1e6));
        let ys = t
            .uniform
            .iter()
            .map(|f| f.accuracy_pct)
            .chain(t.gates.iter().map(|g| g.gate.accuracy_pct));
        let (x0, x1) = span(xs, 0.08);
        let (y0, y1) = span(ys, 0.15);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Top-1 vs energy per inference ({}, model)", t.config),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("dynamic energy per inference (µJ, energy model)")
            .y_desc("top-1 on the held-out set (%)")
            .draw()
            .map_err(err)?;
        let uni: Vec<(f64, f64)> = t
            .uniform
            .iter()
            .map(|f| (f.energy.dynamic_j * 1e6, f.accuracy_pct))
            .collect();
        let grey = RGBColor(0x55, 0x55, 0x55);
        chart
            .draw_series(LineSeries::new(uni.clone(), grey.stroke_width(2)))
            .map_err(err)?
            .label("uniform precision")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey));
        chart
            .draw_series(uni.iter().zip(&t.uniform).map(|(&(x, y), f)| {
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 4, grey.filled())
                    + Text::new(format!("{}-bit", f.bits[0]), (6, 4), ("sans-serif", 13))
            }))
            .map_err(err)?;
        for (i, g) in t.gates.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let p = (g.gate.energy.dynamic_j * 1e6, g.gate.accuracy_pct);
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(p)
                        + TriangleMarker::new((0, 0), 7, c.filled())
                        + Text::new(
                            g.name.clone(),
                            (8, -14),
                            ("sans-serif", 13).into_font().color(&c),
                        ),
                ))
                .map_err(err)?
                .label(format!("gate {}", g.name))
                .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 6, c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// The replayed trace over time: the context (battery, free memory) above, the gate's mean bits
/// and energy per inference below.
pub fn trace(path: &Path, rows: &[PointRow]) -> Result<()> {
    write_svg(path, (900, 640), |root| {
        let (top, bottom) = root.split_vertically(320);
        let t_end = rows.last().map_or(1.0, |r| r.t_s.max(1.0));
        let mem_max = rows
            .iter()
            .filter_map(|r| r.mem_free_mib)
            .fold(1.0f64, f64::max);
        let mut c1 = ChartBuilder::on(&top)
            .caption("Context", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..t_end, 0.0..105.0)
            .map_err(err)?;
        c1.configure_mesh()
            .y_desc("% (battery; free memory of its peak)")
            .draw()
            .map_err(err)?;
        let blue = PALETTE[0];
        let green = PALETTE[2];
        c1.draw_series(LineSeries::new(
            rows.iter()
                .filter_map(|r| r.battery_pct.map(|b| (r.t_s, b))),
            blue.stroke_width(2),
        ))
        .map_err(err)?
        .label("battery %")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue));
        c1.draw_series(LineSeries::new(
            rows.iter()
                .filter_map(|r| r.mem_free_mib.map(|m| (r.t_s, 100.0 * m / mem_max))),
            green.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!("free memory (100 % = {mem_max:.0} MiB)"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], green));
        c1.draw_series(rows.iter().filter(|r| r.switched).map(|r| {
            EmptyElement::at((r.t_s, 100.0)) + Text::new(r.gate.clone(), (2, 0), ("sans-serif", 11))
        }))
        .map_err(err)?;
        c1.configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(err)?;

        let e_max = rows
            .iter()
            .map(|r| r.energy_dynamic_uj)
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.1;
        let mut c2 = ChartBuilder::on(&bottom)
            .caption("Gate chosen", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .right_y_label_area_size(56)
            .build_cartesian_2d(0.0..t_end, 0.0..8.5)
            .map_err(err)?
            .set_secondary_coord(0.0..t_end, 0.0..e_max);
        c2.configure_mesh()
            .x_desc("time (s)")
            .y_desc("mean weight bits")
            .draw()
            .map_err(err)?;
        c2.configure_secondary_axes()
            .y_desc("dynamic µJ / inference (model)")
            .draw()
            .map_err(err)?;
        let red = PALETTE[1];
        let orange = PALETTE[3];
        let mean = |b: &[u8]| b.iter().map(|&x| f64::from(x)).sum::<f64>() / b.len().max(1) as f64;
        let mut steps = Vec::new();
        for w in rows.windows(2) {
            steps.push((w[0].t_s, mean(&w[0].bits)));
            steps.push((w[1].t_s, mean(&w[0].bits)));
        }
        if let Some(l) = rows.last() {
            steps.push((l.t_s, mean(&l.bits)));
        }
        c2.draw_series(LineSeries::new(steps, red.stroke_width(2)))
            .map_err(err)?
            .label("mean bits per layer")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red));
        c2.draw_secondary_series(LineSeries::new(
            rows.iter().map(|r| (r.t_s, r.energy_dynamic_uj)),
            orange.stroke_width(1),
        ))
        .map_err(err)?
        .label("dynamic energy per inference")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], orange));
        c2.configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// Top-1 against mean dynamic energy per inference (left) and mean latency (right) of every
/// policy of the adaptive table: uniform precision as a curve, then per class its static gate
/// (triangle), cascade (circle) and gate network (square).
pub fn adaptive(path: &Path, t: &AdaptiveTable) -> Result<()> {
    write_svg(path, (1280, 560), |root| {
        let (left, right) = root.split_horizontally(640);
        adaptive_panel(
            &left,
            t,
            "mean dynamic energy per inference (µJ, energy model)",
            |r| r.energy_dynamic_uj,
        )?;
        adaptive_panel(
            &right,
            t,
            "mean latency per inference (µs, device cycles at the clock)",
            |r| r.latency_us,
        )
    })
}

fn adaptive_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    t: &AdaptiveTable,
    x_desc: &str,
    x_of: impl Fn(&super::adaptive::PolicyRow) -> f64,
) -> Result<()> {
    let (x0, x1) = span(t.rows.iter().map(&x_of), 0.08);
    let (y0, y1) = span(t.rows.iter().map(|r| r.accuracy_pct), 0.15);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Static, cascade, gate network ({})", t.config),
            ("sans-serif", 17),
        )
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(format!("top-1 on {} held-out images (%)", t.test_images))
        .draw()
        .map_err(err)?;
    let grey = RGBColor(0x55, 0x55, 0x55);
    let uni: Vec<(f64, f64)> = t
        .rows
        .iter()
        .filter(|r| r.kind == "uniform")
        .map(|r| (x_of(r), r.accuracy_pct))
        .collect();
    chart
        .draw_series(LineSeries::new(uni, grey.stroke_width(2)))
        .map_err(err)?
        .label("uniform precision")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey));
    let mut classes: Vec<&str> = t
        .rows
        .iter()
        .filter(|r| r.kind != "uniform")
        .map(|r| r.class.as_str())
        .collect();
    classes.dedup();
    for (i, class) in classes.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        for r in t.rows.iter().filter(|r| r.class == *class) {
            let p = (x_of(r), r.accuracy_pct);
            let label = format!("{class} {}", r.kind);
            let text = Text::new(
                label.clone(),
                (8, -12),
                ("sans-serif", 12).into_font().color(&c),
            );
            match r.kind.as_str() {
                "static" => chart
                    .draw_series(std::iter::once(
                        EmptyElement::at(p) + TriangleMarker::new((0, 0), 7, c.filled()) + text,
                    ))
                    .map_err(err)?
                    .label(label)
                    .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 6, c.filled())),
                "cascade" => chart
                    .draw_series(std::iter::once(
                        EmptyElement::at(p) + Circle::new((0, 0), 5, c.filled()) + text,
                    ))
                    .map_err(err)?
                    .label(label)
                    .legend(move |(x, y)| Circle::new((x + 9, y), 5, c.filled())),
                _ => chart
                    .draw_series(std::iter::once(
                        EmptyElement::at(p) + Rectangle::new([(-5, -5), (5, 5)], c.filled()) + text,
                    ))
                    .map_err(err)?
                    .label(label)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x + 4, y - 5), (x + 14, y + 5)], c.filled())
                    }),
            };
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(err)?;
    Ok(())
}
