//! Pictures of a [`DyadTable`] as SVG: a holder × target heatmap of the net score, and the
//! time line of one dyad.

use std::collections::BTreeMap;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::DyadTable;
use crate::error::{Error, Result};

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::InvalidOption {
        option: "plot",
        reason: e.to_string(),
    }
}

/// Red for hostile (−1), white for balanced, blue for favourable (+1).
fn net_colour(net: f64) -> RGBColor {
    let t = net.clamp(-1.0, 1.0);
    let fade = |v: f64| (255.0 - (255.0 - v) * t.abs()) as u8;
    if t < 0.0 {
        RGBColor(fade(200.0), fade(30.0), fade(40.0))
    } else {
        RGBColor(fade(30.0), fade(90.0), fade(200.0))
    }
}

/// (holder, target) → (favor − against, total) over every period.
fn overall(table: &DyadTable) -> BTreeMap<(String, String), (i64, usize)> {
    let mut sums: BTreeMap<(String, String), (i64, usize)> = BTreeMap::new();
    for cell in &table.cells {
        let entry = sums
            .entry((cell.holder.clone(), cell.target.clone()))
            .or_default();
        entry.0 += cell.count("favor") as i64 - cell.count("against") as i64;
        entry.1 += cell.total;
    }
    sums
}

/// A heatmap of the net score (favor − against, over rows) per holder (rows) and target
/// (columns), each square labelled with its score and row count.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::report::{DyadTable, ReportOptions, RowRecord, plot::heatmap_svg};
/// let row = |holder: &str, label: &str| RowRecord {
///     holder: holder.into(), target: "NATO".into(), label: label.into(),
///     probability: 0.9, date: None,
/// };
/// let table = DyadTable::from_records([row("Russia", "against")], &ReportOptions::default())?;
/// let svg = heatmap_svg(&table)?;
/// assert!(svg.starts_with("<svg") && svg.contains("Russia") && svg.contains("NATO"));
/// assert!(!svg.contains("width=\"0\"") && !svg.contains("height=\"0\""), "one cell has an area");
/// # Ok(()) }
/// ```
pub fn heatmap_svg(table: &DyadTable) -> Result<String> {
    let sums = overall(table);
    let holders: Vec<&String> = {
        let mut v: Vec<&String> = sums.keys().map(|(h, _)| h).collect();
        v.dedup();
        v
    };
    let mut targets: Vec<&String> = sums.keys().map(|(_, t)| t).collect();
    targets.sort();
    targets.dedup();
    if holders.is_empty() {
        return Err(plot_error("no rows to draw"));
    }
    let (width, height) = (
        160 + 110 * targets.len() as u32,
        120 + 50 * holders.len() as u32,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (columns, rows) = (targets.len() as f64, holders.len() as f64);
        let mut chart = ChartBuilder::on(&root)
            .caption("net stance (favor − against) / rows", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(130)
            .build_cartesian_2d(0.0..columns, 0.0..rows)
            .map_err(plot_error)?;
        // Names are drawn at the cell centres below: plotters' own labels sit on tick
        // positions, and its discrete coordinates collapse when there is one cell.
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc("target")
            .y_desc("holder")
            .draw()
            .map_err(plot_error)?;
        let name_style =
            |h: HPos, v: VPos| TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(h, v));
        for (x, target) in targets.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(x as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                target.to_string(),
                (px, py + 6),
                name_style(HPos::Center, VPos::Top),
            ))
            .map_err(plot_error)?;
        }
        for (y, holder) in holders.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(0.0, y as f64 + 0.5));
            root.draw(&Text::new(
                holder.to_string(),
                (px - 6, py),
                name_style(HPos::Right, VPos::Center),
            ))
            .map_err(plot_error)?;
        }
        for (y, holder) in holders.iter().enumerate() {
            for (x, target) in targets.iter().enumerate() {
                let Some(&(net, total)) = sums.get(&((*holder).clone(), (*target).clone())) else {
                    continue;
                };
                let score = net as f64 / total as f64;
                let (x, y) = (x as f64, y as f64);
                chart
                    .draw_series([Rectangle::new(
                        [(x, y), (x + 1.0, y + 1.0)],
                        net_colour(score).filled(),
                    )])
                    .map_err(plot_error)?;
                let (px, py) = chart.backend_coord(&(x + 0.5, y + 0.5));
                root.draw(&Text::new(
                    format!("{score:+.2} ({total})"),
                    (px, py),
                    name_style(HPos::Center, VPos::Center),
                ))
                .map_err(plot_error)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The net score of one dyad per period (a table built with a period), as a line.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::report::{DyadTable, Period, ReportOptions, RowRecord, plot::timeline_svg};
/// let row = |date: &str, label: &str| RowRecord {
///     holder: "Russia".into(), target: "NATO".into(), label: label.into(),
///     probability: 0.9, date: Some(date.into()),
/// };
/// let options = ReportOptions {
///     date_field: Some("date".into()), period: Some(Period::Month), ..Default::default()
/// };
/// let rows = [row("2026-01-05", "favor"), row("2026-02-10", "against")];
/// let table = DyadTable::from_records(rows, &options)?;
/// let svg = timeline_svg(&table, "Russia", "NATO")?;
/// assert!(svg.contains("2026-01") && svg.contains("2026-02"));
/// assert!(timeline_svg(&table, "NATO", "Russia").is_err());
/// # Ok(()) }
/// ```
pub fn timeline_svg(table: &DyadTable, holder: &str, target: &str) -> Result<String> {
    let points: Vec<(&str, f64, usize)> = table
        .cells
        .iter()
        .filter(|c| c.holder == holder && c.target == target)
        .filter_map(|c| Some((c.period.as_deref()?, c.net?, c.total)))
        .collect();
    if points.is_empty() {
        return Err(plot_error(format!(
            "no dated {holder} → {target} rows (a time line needs --date-field and --period)"
        )));
    }
    let mut svg = String::new();
    {
        let width = (200 + 60 * points.len() as u32).max(480);
        let root = SVGBackend::with_string(&mut svg, (width, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{holder} → {target}: net stance"),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0..points.len().max(2) - 1, -1.0f64..1.0f64)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_labels(points.len())
            .x_label_formatter(&|i| points.get(*i).map_or(String::new(), |p| p.0.to_string()))
            .x_desc("period")
            .y_desc("(favor − against) / rows")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().enumerate().map(|(i, p)| (i, p.1)),
                &BLUE,
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(points.iter().enumerate().map(|(i, p)| {
                Circle::new(
                    (i, p.1),
                    3 + (p.2 as f64).log2().max(0.0) as i32,
                    BLUE.filled(),
                )
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
