//! [`HwmonMeter`]: the [`EnergyMeter`] that measures with a board's power sensors through a
//! [`Sampler`], and [`meter_batch`], which meters a whole batch of inferences as one window.
//!
//! The accelerator calls `begin`/`end` around each inference. With sensors that update every
//! ~35 ms (INA226) or every second (PMBus), one inference of a few milliseconds sees no sensor
//! update at all: its reading carries a warning and is not worth much. Meter a batch instead
//! ([`meter_batch`], or [`HwmonMeter::measure`] around any work) long enough to span
//! [`super::boards::MIN_UPDATES`] sensor updates, and divide by the number of inferences.

use super::boards::{BoardSensors, RailGroup};
use super::integrate::SensorSpec;
use super::sampler::Sampler;
use crate::accel::{Accelerator, EnergyMeter, EnergyReading, Inference};
use crate::error::{HostError, Result};
use crate::sys::SysRoot;
use caq_spec::{Device, PerfCounters};
use serde::Serialize;
use std::time::{Duration, Instant};

/// An energy meter over a sampled power sensor: `begin` marks the start of a window, `end`
/// integrates the sensor's power over it and subtracts the idle power when one is known.
pub struct HwmonMeter {
    sampler: Sampler,
    spec: SensorSpec,
    idle_w: Option<f64>,
    t0: Option<Duration>,
}

impl HwmonMeter {
    /// A meter reading `sampler`, with the checks of `spec`.
    pub fn new(sampler: Sampler, spec: SensorSpec) -> HwmonMeter {
        HwmonMeter {
            sampler,
            spec,
            idle_w: None,
            t0: None,
        }
    }

    /// The meter of the board found under `root`, summing the rails of `groups` (e.g.
    /// `[RailGroup::Pl]` on a ZCU102, `[RailGroup::Board]` where only the input is measured),
    /// sampled at the board table's period. Fails when no known sensor is found.
    pub fn detect(root: &SysRoot, groups: &[RailGroup]) -> Result<HwmonMeter> {
        let found = BoardSensors::detect(root)?.ok_or_else(|| HostError::BadConfig {
            field: "power sensors".into(),
            value: format!("none known under {}", root.class("hwmon").display()),
            expected: "the hwmon devices of a ZCU102, ZCU104, KV260 or Ultra96-V2 (docs/energy.md); boards without sensors use the energy model".into(),
        })?;
        let source = found.source(groups)?;
        let sampler = Sampler::start(Box::new(source), found.table.sample_period)?;
        Ok(HwmonMeter::new(sampler, found.table.spec()))
    }

    /// The meter of the board found under `root` on the rails closest to the accelerator: the
    /// PL's where the board measures them, else the board's input. What `caq run --energy auto`
    /// and the C and Python bindings use.
    pub fn detect_any(root: &SysRoot) -> Result<HwmonMeter> {
        HwmonMeter::detect(root, &[RailGroup::Pl])
            .or_else(|_| HwmonMeter::detect(root, &[RailGroup::Board]))
    }

    /// Uses `w` as the idle power to subtract (from an earlier measurement).
    pub fn with_idle_w(mut self, w: f64) -> Result<HwmonMeter> {
        if !(w.is_finite() && (0.0..=self.spec.max_w).contains(&w)) {
            return Err(HostError::BadConfig {
                field: "idle power".into(),
                value: format!("{w} W"),
                expected: format!("a power in [0, {}] W", self.spec.max_w),
            });
        }
        self.idle_w = Some(w);
        Ok(self)
    }

    /// Measures the idle power over `window` (the caller keeps the accelerator idle
    /// meanwhile), keeps it for later readings and returns the idle window's reading.
    pub fn measure_idle(&mut self, window: Duration) -> Result<EnergyReading> {
        let t0 = self.sampler.now();
        std::thread::sleep(window);
        let t1 = self.sampler.now();
        let mut r = self.reading(t0, t1)?;
        let secs = (t1 - t0).as_secs_f64();
        let idle = if secs > 0.0 { r.total_j / secs } else { 0.0 };
        self.idle_w = Some(idle);
        r.idle_w = Some(idle);
        r.dynamic_j = Some(0.0);
        Ok(r)
    }

    pub fn idle_w(&self) -> Option<f64> {
        self.idle_w
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    pub fn spec(&self) -> &SensorSpec {
        &self.spec
    }

    /// Runs `work` (`inferences` inferences) as one window and reports the window's energy
    /// and its share per inference.
    pub fn measure<T>(
        &mut self,
        inferences: usize,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<(T, BatchEnergy)> {
        self.begin()?;
        let out = work()?;
        let reading = self.end(&PerfCounters::default(), Duration::ZERO)?;
        Ok((out, BatchEnergy::new(reading, inferences)))
    }

    /// The reading of `[t0, t1]` on the sampler's clock.
    pub fn reading(&self, t0: Duration, t1: Duration) -> Result<EnergyReading> {
        let i = self.sampler.integrate(t0, t1, &self.spec)?;
        let dynamic_j = self
            .idle_w
            .map(|p| i.energy_j - p * i.duration.as_secs_f64());
        Ok(EnergyReading {
            total_j: i.energy_j,
            dynamic_j,
            idle_w: self.idle_w,
            source: self.sampler.source_name().to_string(),
            samples: i.samples,
            warnings: i.warnings,
        })
    }
}

impl EnergyMeter for HwmonMeter {
    fn begin(&mut self) -> Result<()> {
        let t0 = self.sampler.now();
        // Readings before the window are not needed again: memory stays bounded however long
        // the meter runs.
        self.sampler.discard_before(t0);
        self.t0 = Some(t0);
        Ok(())
    }

    fn end(&mut self, _perf: &PerfCounters, _elapsed: Duration) -> Result<EnergyReading> {
        let t0 = self.t0.take().ok_or(HostError::Arg {
            what: "energy meter",
            why: "end() without begin()".into(),
        })?;
        let t1 = self.sampler.now();
        self.reading(t0, t1)
    }
}

/// The energy of a batch metered as one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BatchEnergy {
    /// The whole window.
    pub reading: EnergyReading,
    pub inferences: usize,
    /// `reading.total_j / inferences`.
    pub per_inference_j: f64,
    /// `reading.dynamic_j / inferences`, when the idle power is known.
    pub per_inference_dynamic_j: Option<f64>,
}

impl BatchEnergy {
    pub fn new(reading: EnergyReading, inferences: usize) -> BatchEnergy {
        let n = inferences.max(1) as f64;
        BatchEnergy {
            per_inference_j: reading.total_j / n,
            per_inference_dynamic_j: reading.dynamic_j.map(|d| d / n),
            reading,
            inferences,
        }
    }
}

/// Runs `inputs` back to back on `acc` as one metered window: `meter.begin()`, every
/// inference, `meter.end()` with the summed counters and the wall time. Works with any meter
/// (a [`HwmonMeter`], or a [`super::ModelMeter`], which then prices the whole batch's counters).
/// A meter attached to `acc` itself still meters each inference on its own.
pub fn meter_batch<D: Device>(
    acc: &mut Accelerator<D>,
    meter: &mut dyn EnergyMeter,
    inputs: &[&[u8]],
) -> Result<(Vec<Inference>, BatchEnergy)> {
    meter.begin()?;
    let t0 = Instant::now();
    let out = acc.infer_batch(inputs.iter().copied())?;
    let elapsed = t0.elapsed();
    let mut perf = PerfCounters::default();
    for inf in &out {
        perf.add(&inf.report.device);
    }
    let reading = meter.end(&perf, elapsed)?;
    let n = out.len();
    Ok((out, BatchEnergy::new(reading, n)))
}

/// Meters `inputs` as one window like [`meter_batch`]; with `min_window` (for a sensor that
/// updates slowly) whole passes over the inputs run back to back until the window has lasted at
/// least `min_window`.
pub fn meter_window<D: Device>(
    acc: &mut Accelerator<D>,
    meter: &mut dyn EnergyMeter,
    inputs: &[&[u8]],
    min_window: Option<Duration>,
) -> Result<BatchEnergy> {
    let Some(window) = min_window.filter(|_| !inputs.is_empty()) else {
        return Ok(meter_batch(acc, meter, inputs)?.1);
    };
    meter.begin()?;
    let t0 = Instant::now();
    let mut perf = PerfCounters::default();
    let mut n = 0;
    while n == 0 || t0.elapsed() < window {
        for inf in acc.infer_batch(inputs.iter().copied())? {
            perf.add(&inf.report.device);
            n += 1;
        }
    }
    let reading = meter.end(&perf, t0.elapsed())?;
    Ok(BatchEnergy::new(reading, n))
}
