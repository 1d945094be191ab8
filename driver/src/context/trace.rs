//! A context over time: points `(t_s, Context)` read from JSON or CSV, for demos and tests that
//! replay a day on battery in seconds.
//!
//! JSON: an array of objects, each with `t_s` and any of the [`Context`] field names (`null` or
//! absent = unknown). CSV: a header row naming `t_s` and any of the field names, one record per
//! point, an empty cell = unknown, lines starting with `#` are comments. Both also take the
//! column `mem_free_mib` (MiB, for hand-written traces), stored as `mem_available_bytes`.
//!
//! Rules, checked at load with the record and field named in the error: `t_s` present, finite
//! and non-decreasing; `battery_pct` in 0..=100; `battery_status` one of the kernel's five;
//! power, deadline and memory non-negative and finite.

use std::path::Path;

use serde::Serialize;

use super::{Context, ContextError, MIB};

/// One point of a trace: the context from `t_s` on, until the next point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TracePoint {
    /// Seconds from the start of the trace.
    pub t_s: f64,
    #[serde(flatten)]
    pub ctx: Context,
}

/// A context over time, points in non-decreasing time order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ContextTrace {
    pub points: Vec<TracePoint>,
}

/// The [`Context`] fields in file order.
const FIELDS: [&str; 10] = [
    "battery_pct",
    "battery_status",
    "battery_energy_uwh",
    "on_ac",
    "mem_available_bytes",
    "cgroup_mem_max",
    "cgroup_mem_current",
    "temp_max_mc",
    "power_w",
    "latency_budget_ms",
];

/// The column that sets `mem_available_bytes` in MiB.
const MEM_FREE_MIB: &str = "mem_free_mib";

/// The kernel's `status` values (drivers/power/supply/power_supply_sysfs.c).
const STATUSES: [&str; 5] = ["Unknown", "Charging", "Discharging", "Not charging", "Full"];

impl ContextTrace {
    /// Reads a trace; the format follows the extension (`.json` or `.csv`).
    pub fn load(path: impl AsRef<Path>) -> Result<ContextTrace, ContextError> {
        let path = path.as_ref();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parse = match ext.as_deref() {
            Some("json") => ContextTrace::from_json_str,
            Some("csv") => ContextTrace::from_csv_str,
            _ => {
                return Err(ContextError::TraceFormat {
                    path: path.to_path_buf(),
                });
            }
        };
        let text =
            caq_spec::fsio::read_regular_to_string(path).map_err(|source| ContextError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        parse(&text, path)
    }

    /// Parses a JSON trace; `path` names it in errors.
    pub fn from_json_str(text: &str, path: &Path) -> Result<ContextTrace, ContextError> {
        let file_err = |what: String| ContextError::TraceFile {
            path: path.to_path_buf(),
            what,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| file_err(e.to_string()))?;
        let serde_json::Value::Array(records) = value else {
            return Err(file_err(
                "expected a JSON array of points ({\"t_s\": ..., ...})".to_string(),
            ));
        };
        let mut b = Builder::new(path);
        for (i, record) in records.iter().enumerate() {
            let at = format!("record {}", i + 1);
            let serde_json::Value::Object(fields) = record else {
                return Err(b.field_err(&at, "(record)", record.to_string(), "a JSON object"));
            };
            let cells = fields.iter().map(|(k, v)| (k.as_str(), Cell::Json(v)));
            b.push(&at, cells)?;
        }
        b.finish()
    }

    /// Parses a CSV trace; `path` names it in errors.
    pub fn from_csv_str(text: &str, path: &Path) -> Result<ContextTrace, ContextError> {
        let file_err = |what: String| ContextError::TraceFile {
            path: path.to_path_buf(),
            what,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| file_err(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut b = Builder::new(path);
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                return Err(b.field_err("header", name, "(twice)", "each column once"));
            }
            if !is_column(name) {
                return Err(b.field_err("header", name, "(column)", known_columns()));
            }
        }
        if !header.iter().any(|h| h == "t_s") {
            return Err(b.field_err("header", "t_s", "(missing)", "a t_s column"));
        }
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| file_err(e.to_string()))?;
            let line = record.position().map_or(0, |p| record_line(text, p.byte()));
            let at = format!("record {} (line {line})", i + 1);
            let cells = header
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.as_str(), Cell::Text(v)));
            b.push(&at, cells)?;
        }
        b.finish()
    }

    /// The trace as pretty-printed JSON, only the known fields of each point.
    pub fn to_json_string(&self) -> String {
        // Plain numbers, strings and bools: serializing them cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// The trace as CSV: `t_s` and every field known at some point, empty cells for unknowns.
    pub fn to_csv_string(&self) -> String {
        let columns: Vec<&str> = FIELDS
            .into_iter()
            .filter(|f| self.points.iter().any(|p| cell_text(&p.ctx, f).is_some()))
            .collect();
        let mut w = csv::Writer::from_writer(Vec::new());
        let header = std::iter::once("t_s").chain(columns.iter().copied());
        // Writing to a Vec cannot fail.
        let _ = w.write_record(header);
        for p in &self.points {
            let row = std::iter::once(p.t_s.to_string()).chain(
                columns
                    .iter()
                    .map(|f| cell_text(&p.ctx, f).unwrap_or_default()),
            );
            let _ = w.write_record(row);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// Writes the trace as JSON, atomically (temp file and rename).
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<(), ContextError> {
        caq_model::store::write_bytes_atomic(path.as_ref(), self.to_json_string().as_bytes())?;
        Ok(())
    }

    /// Writes the trace as CSV, atomically (temp file and rename).
    pub fn save_csv(&self, path: impl AsRef<Path>) -> Result<(), ContextError> {
        caq_model::store::write_bytes_atomic(path.as_ref(), self.to_csv_string().as_bytes())?;
        Ok(())
    }

    /// The point in force at `t_s`: the last one with `t ≤ t_s`; `None` before the first.
    pub fn at(&self, t_s: f64) -> Option<&TracePoint> {
        let n = self.points.partition_point(|p| p.t_s <= t_s);
        n.checked_sub(1).map(|i| &self.points[i])
    }

    /// The time of the last point (0 for an empty trace).
    pub fn duration_s(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.t_s)
    }

    /// The demo scenario, one point every 10 s for 600 s, nothing plugged in:
    /// - the battery drains from 100 % to 5 %, and hovers ±1.5 % around 20 % from 360 s to 440 s
    ///   (the battery-low threshold of the default policy: without hysteresis the gate would
    ///   flip at every point);
    /// - a memory squeeze from 120 s to 180 s: free memory drops from 512 MiB to 24 MiB and
    ///   back;
    /// - a tight deadline from 240 s to 290 s: 0.12 ms per inference instead of 10 ms;
    /// - the temperature climbs from 45 °C to about 54 °C.
    ///
    /// `configs/traces/demo.csv` is this trace (a test keeps them equal).
    pub fn demo() -> ContextTrace {
        const FULL_UWH: u64 = 10_000_000;
        const HOVER: [f64; 9] = [21.0, 19.5, 20.5, 19.0, 21.0, 20.0, 21.5, 19.0, 20.5];
        const SQUEEZE_MIB: [u64; 7] = [200, 96, 48, 24, 24, 40, 120];
        let tenth = |x: f64| (x * 10.0).round() / 10.0;
        let points =
            (0..60u32)
                .map(|i| {
                    let battery = match i {
                        0..=35 => tenth(100.0 - f64::from(i) * 79.0 / 35.0),
                        36..=44 => HOVER[i as usize - 36],
                        _ => tenth(18.0 - f64::from(i - 45) * 13.0 / 14.0),
                    };
                    let mem_mib = match i {
                        12..=18 => SQUEEZE_MIB[i as usize - 12],
                        _ => 512,
                    };
                    let deadline_ms = if (24..=29).contains(&i) { 0.12 } else { 10.0 };
                    TracePoint {
                        t_s: f64::from(i * 10),
                        ctx: Context {
                            battery_pct: Some(battery),
                            battery_status: Some("Discharging".to_string()),
                            battery_energy_uwh: Some(
                                (battery * FULL_UWH as f64 / 100.0).round() as u64
                            ),
                            on_ac: Some(false),
                            mem_available_bytes: Some(mem_mib * MIB),
                            temp_max_mc: Some(45_000 + i64::from(i) * 150),
                            latency_budget_ms: Some(deadline_ms),
                            ..Context::default()
                        },
                    }
                })
                .collect();
        ContextTrace { points }
    }
}

/// The line on which the CSV record the reader placed at byte `start` begins. The reader places
/// a record where the previous one ended, before the comment and empty lines it skips (and its
/// own line count leaves those out), so they are skipped here too.
fn record_line(text: &str, start: u64) -> usize {
    let mut at = usize::try_from(start).unwrap_or(usize::MAX).min(text.len());
    let mut line = text.as_bytes()[..at]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1;
    while let Some(l) = text
        .get(at..)
        .and_then(|rest| rest.split_inclusive('\n').next())
    {
        let skipped = l.starts_with('#') || (l.ends_with('\n') && l.trim_end().is_empty());
        if !skipped {
            break;
        }
        at += l.len();
        line += 1;
    }
    line
}

fn is_column(name: &str) -> bool {
    name == "t_s" || name == MEM_FREE_MIB || FIELDS.contains(&name)
}

fn known_columns() -> String {
    format!("one of t_s, {}, {MEM_FREE_MIB}", FIELDS.join(", "))
}

/// One value as the file holds it.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Json(&'a serde_json::Value),
    Text(&'a str),
}

impl Cell<'_> {
    /// `None` for `null` or an empty cell: the field is unknown.
    fn is_unknown(self) -> bool {
        match self {
            Cell::Json(v) => v.is_null(),
            Cell::Text(s) => s.is_empty(),
        }
    }

    fn shown(self) -> String {
        match self {
            Cell::Json(v) => v.to_string(),
            Cell::Text(s) => format!("{s:?}"),
        }
    }

    fn f64(self) -> Option<f64> {
        match self {
            Cell::Json(v) => v.as_f64(),
            Cell::Text(s) => s.parse().ok(),
        }
    }

    fn u64(self) -> Option<u64> {
        match self {
            Cell::Json(v) => v.as_u64(),
            Cell::Text(s) => s.parse().ok(),
        }
    }

    fn i64(self) -> Option<i64> {
        match self {
            Cell::Json(v) => v.as_i64(),
            Cell::Text(s) => s.parse().ok(),
        }
    }

    fn bool(self) -> Option<bool> {
        match self {
            Cell::Json(v) => v.as_bool(),
            Cell::Text("true" | "1") => Some(true),
            Cell::Text("false" | "0") => Some(false),
            Cell::Text(_) => None,
        }
    }

    /// One of the kernel's battery statuses.
    fn status(self) -> Option<&'static str> {
        let s = match self {
            Cell::Json(v) => v.as_str()?,
            Cell::Text(s) => s,
        };
        STATUSES.into_iter().find(|k| *k == s)
    }
}

/// Sets `field` of `ctx` from `cell`; on a bad value, what was expected.
fn set_field(ctx: &mut Context, field: &str, cell: Cell) -> Result<(), String> {
    let non_negative = |x: f64| x.is_finite() && x >= 0.0;
    fn check<T>(v: Option<T>, ok: impl Fn(&T) -> bool, expected: &str) -> Result<T, String> {
        v.filter(ok).ok_or_else(|| expected.to_string())
    }
    match field {
        "battery_pct" => {
            let pct = |x: &f64| (0.0..=100.0).contains(x);
            ctx.battery_pct = Some(check(cell.f64(), pct, "a percentage in 0..=100")?);
        }
        "battery_status" => {
            let expected = format!("one of {}", STATUSES.map(|s| format!("{s:?}")).join(", "));
            ctx.battery_status = Some(check(cell.status(), |_| true, &expected)?.to_string());
        }
        "battery_energy_uwh" => {
            ctx.battery_energy_uwh = Some(check(cell.u64(), |_| true, "a whole number of µWh")?);
        }
        "on_ac" => ctx.on_ac = Some(check(cell.bool(), |_| true, "true or false")?),
        "mem_available_bytes" => {
            ctx.mem_available_bytes = Some(check(cell.u64(), |_| true, "a whole number of bytes")?);
        }
        MEM_FREE_MIB => {
            let mib = check(cell.f64(), |x| non_negative(*x), "MiB, a number ≥ 0")?;
            let bytes = (mib * MIB as f64).round();
            ctx.mem_available_bytes = Some(check(
                Some(bytes),
                |b| *b < u64::MAX as f64,
                "MiB that fit in 64 bits of bytes",
            )? as u64);
        }
        "cgroup_mem_max" => {
            ctx.cgroup_mem_max = Some(check(cell.u64(), |_| true, "a whole number of bytes")?);
        }
        "cgroup_mem_current" => {
            ctx.cgroup_mem_current = Some(check(cell.u64(), |_| true, "a whole number of bytes")?);
        }
        "temp_max_mc" => {
            ctx.temp_max_mc = Some(check(cell.i64(), |_| true, "whole millidegrees Celsius")?);
        }
        "power_w" => {
            ctx.power_w = Some(check(
                cell.f64(),
                |x| non_negative(*x),
                "watts, a number ≥ 0",
            )?);
        }
        "latency_budget_ms" => {
            let ms = check(
                cell.f64(),
                |x| non_negative(*x),
                "milliseconds, a number ≥ 0",
            )?;
            ctx.latency_budget_ms = Some(ms);
        }
        _ => return Err(known_columns()),
    }
    Ok(())
}

/// A field as [`ContextTrace::to_csv_string`] writes it; `None` when unknown.
fn cell_text(ctx: &Context, field: &str) -> Option<String> {
    match field {
        "battery_pct" => ctx.battery_pct.map(|v| v.to_string()),
        "battery_status" => ctx.battery_status.clone(),
        "battery_energy_uwh" => ctx.battery_energy_uwh.map(|v| v.to_string()),
        "on_ac" => ctx.on_ac.map(|v| v.to_string()),
        "mem_available_bytes" => ctx.mem_available_bytes.map(|v| v.to_string()),
        "cgroup_mem_max" => ctx.cgroup_mem_max.map(|v| v.to_string()),
        "cgroup_mem_current" => ctx.cgroup_mem_current.map(|v| v.to_string()),
        "temp_max_mc" => ctx.temp_max_mc.map(|v| v.to_string()),
        "power_w" => ctx.power_w.map(|v| v.to_string()),
        "latency_budget_ms" => ctx.latency_budget_ms.map(|v| v.to_string()),
        _ => None,
    }
}

/// Collects points, checking each record as it comes.
struct Builder<'a> {
    path: &'a Path,
    points: Vec<TracePoint>,
}

impl<'a> Builder<'a> {
    fn new(path: &'a Path) -> Builder<'a> {
        Builder {
            path,
            points: Vec::new(),
        }
    }

    fn field_err(
        &self,
        at: &str,
        field: &str,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> ContextError {
        ContextError::TraceField {
            path: self.path.to_path_buf(),
            at: at.to_string(),
            field: field.to_string(),
            value: value.into(),
            expected: expected.into(),
        }
    }

    fn push<'c>(
        &mut self,
        at: &str,
        cells: impl Iterator<Item = (&'c str, Cell<'c>)>,
    ) -> Result<(), ContextError> {
        let mut t_s = None;
        let mut ctx = Context::default();
        let mut mem_columns = Vec::new();
        for (field, cell) in cells {
            if field == "mem_available_bytes" || field == MEM_FREE_MIB {
                mem_columns.push(field);
                if mem_columns.len() > 1 {
                    let expected = "mem_available_bytes or mem_free_mib, not both";
                    return Err(self.field_err(at, field, cell.shown(), expected));
                }
            }
            if field == "t_s" {
                let t = cell.f64().filter(|t| t.is_finite()).ok_or_else(|| {
                    self.field_err(at, "t_s", cell.shown(), "a finite time in seconds")
                })?;
                t_s = Some(t);
            } else if !cell.is_unknown() {
                set_field(&mut ctx, field, cell)
                    .map_err(|expected| self.field_err(at, field, cell.shown(), expected))?;
            } else if !is_column(field) {
                return Err(self.field_err(at, field, cell.shown(), known_columns()));
            }
        }
        let Some(t_s) = t_s else {
            return Err(self.field_err(at, "t_s", "(missing)", "a finite time in seconds"));
        };
        if let Some(prev) = self.points.last()
            && t_s < prev.t_s
        {
            let expected = format!(
                "a time ≥ {} (the previous record's): times must not decrease",
                prev.t_s
            );
            return Err(self.field_err(at, "t_s", t_s.to_string(), expected));
        }
        self.points.push(TracePoint { t_s, ctx });
        Ok(())
    }

    fn finish(self) -> Result<ContextTrace, ContextError> {
        if self.points.is_empty() {
            return Err(ContextError::TraceFile {
                path: self.path.to_path_buf(),
                what: "no points: a trace needs at least one".to_string(),
            });
        }
        Ok(ContextTrace {
            points: self.points,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_is_the_last_point_not_after_the_time() {
        let trace = ContextTrace::demo();
        assert!(trace.at(-1.0).is_none());
        assert_eq!(trace.at(0.0).map(|p| p.t_s), Some(0.0));
        assert_eq!(trace.at(15.0).map(|p| p.t_s), Some(10.0));
        assert_eq!(trace.at(20.0).map(|p| p.t_s), Some(20.0));
        assert_eq!(trace.at(1e9).map(|p| p.t_s), Some(590.0));
        assert!(trace.at(f64::NAN).is_none());
        assert_eq!(trace.duration_s(), 590.0);
    }

    #[test]
    fn the_demo_has_the_documented_stretches() {
        let trace = ContextTrace::demo();
        assert_eq!(trace.points.len(), 60);
        let first = &trace.points[0].ctx;
        let last = &trace.points[59].ctx;
        assert_eq!(
            (first.battery_pct, last.battery_pct),
            (Some(100.0), Some(5.0))
        );
        assert_eq!(first.battery_energy_uwh, Some(10_000_000));
        let mem = |i: usize| trace.points[i].ctx.mem_free_bytes().map(|b| b / MIB);
        assert_eq!(
            (mem(11), mem(15), mem(19)),
            (Some(512), Some(24), Some(512))
        );
        let budget = |i: usize| trace.points[i].ctx.latency_budget_ms;
        assert_eq!(
            (budget(23), budget(24), budget(30)),
            (Some(10.0), Some(0.12), Some(10.0))
        );
        let hover: Vec<f64> = trace.points[35..=44]
            .iter()
            .filter_map(|p| p.ctx.battery_pct)
            .collect();
        assert!(hover.iter().all(|b| (19.0..=21.5).contains(b)), "{hover:?}");
        assert_eq!(hover.iter().filter(|&&b| b < 20.0).count(), 3);
        assert_eq!(hover.iter().filter(|&&b| b >= 20.0).count(), 7);
        let battery: Vec<f64> = trace
            .points
            .iter()
            .filter_map(|p| p.ctx.battery_pct)
            .collect();
        assert!(battery[..36].windows(2).all(|w| w[1] < w[0]));
        assert!(battery[45..].windows(2).all(|w| w[1] < w[0]));
    }
}
