//! The integration core: joules over a time window from timestamped power readings, and the
//! sanity checks on those readings. Pure: no threads, no clock, no files. The sampler
//! ([`super::sampler`]) feeds it what it read from a sensor; tests feed it analytic P(t).
//!
//! Power readings (W) are integrated with the trapezoid rule over the piecewise-linear P(t)
//! through the samples, clipped to the window by linear interpolation at its edges. Energy
//! counters (J, e.g. hwmon `energy*_input`) need no integration: the window's energy is the
//! counter's increase, interpolated at the edges the same way.
//!
//! A sensor that converts slowly (an INA226 under the Linux ina2xx driver updates every ~35 ms,
//! PMBus telemetry about once a second) holds each value until its next update. Sampling faster
//! than it updates does not add information, but it does not hurt either: the trapezoid over the
//! held steps is the integral of a delayed P(t), and the delay matters only at the window's two
//! edges, where it errs by at most (power change) × (update period). So a window must span many
//! updates; [`SensorSpec::min_updates`] says how many, and a shorter window gets a warning.

use crate::error::{HostError, Result};
use std::time::Duration;

/// One reading of a power source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PowerSample {
    /// Instantaneous (or converter-averaged) power, W.
    Watts(f64),
    /// A monotonic energy counter, J (its zero is arbitrary).
    CounterJoules(f64),
}

/// A reading and when it was taken (from any fixed epoch, the same for every sample of a
/// window).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timed {
    pub t: Duration,
    pub sample: PowerSample,
}

impl Timed {
    pub fn watts(t: Duration, w: f64) -> Timed {
        Timed {
            t,
            sample: PowerSample::Watts(w),
        }
    }

    pub fn counter(t: Duration, j: f64) -> Timed {
        Timed {
            t,
            sample: PowerSample::CounterJoules(j),
        }
    }
}

/// What the checks know about a sensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SensorSpec {
    /// How often the sensor produces a new value.
    pub update_period: Duration,
    /// A window spanning fewer updates than this is flagged (the edge error can reach
    /// 1/min_updates of the dynamic energy).
    pub min_updates: u32,
    /// A reading above this is not physical for the board (a unit slip or a broken driver) and
    /// is an error.
    pub max_w: f64,
}

impl SensorSpec {
    /// The shortest window [`integrate`] accepts without a warning.
    pub fn min_window(&self) -> Duration {
        self.update_period * self.min_updates
    }
}

/// A small negative power is converter noise on an idle rail (an INA226 reads a few LSB around
/// zero); beyond this it is a miswired shunt or a sign error, and an error.
pub const NEGATIVE_NOISE_W: f64 = 0.05;

/// A window needs this many sensor updates before a reading that never changed counts as
/// stuck.
const STUCK_AFTER_UPDATES: f64 = 3.0;

/// What [`integrate`] found over one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Integral {
    /// Energy over the window, J.
    pub energy_j: f64,
    /// The window's length.
    pub duration: Duration,
    /// Readings inside the window (the two bracketing ones outside it not counted).
    pub samples: usize,
    /// Times the reading changed inside the window: the sensor updates actually seen.
    pub updates: usize,
    pub warnings: Vec<String>,
}

impl Integral {
    /// The mean power over the window, W (0 for an empty window).
    pub fn mean_w(&self) -> f64 {
        let s = self.duration.as_secs_f64();
        if s > 0.0 { self.energy_j / s } else { 0.0 }
    }
}

/// Integrates `samples` (sorted by time, all of one kind) over `[t0, t1]`. The samples must
/// bracket the window: one at or before `t0`, one at or after `t1`. `source` names the sensor
/// in errors and warnings.
///
/// Errors (each naming `source`): samples out of order or mixed kinds, a window the samples do
/// not cover, a non-finite reading, a power above `spec.max_w` or below −[`NEGATIVE_NOISE_W`],
/// an energy counter that went backwards. Warnings: a window shorter than
/// [`SensorSpec::min_window`], a reading that did not change over a window that spans several
/// sensor updates.
pub fn integrate(
    samples: &[Timed],
    t0: Duration,
    t1: Duration,
    spec: &SensorSpec,
    source: &str,
) -> Result<Integral> {
    if t1 < t0 {
        return Err(problem(
            source,
            format!("window [{t0:?}, {t1:?}]"),
            "a window whose end is not before its start",
        ));
    }
    check_samples(samples, spec, source)?;
    let first = match (samples.first(), samples.last()) {
        (Some(f), Some(l)) if f.t <= t0 && l.t >= t1 => f,
        _ => {
            return Err(problem(
                source,
                format!(
                    "{} samples from {:?} to {:?}",
                    samples.len(),
                    samples.first().map(|s| s.t),
                    samples.last().map(|s| s.t)
                ),
                "samples covering the whole window (one at or before its start, one at or after its end)",
            ));
        }
    };
    let energy_j = match first.sample {
        PowerSample::Watts(_) => trapezoid(samples, t0, t1),
        PowerSample::CounterJoules(_) => counter_at(samples, t1) - counter_at(samples, t0),
    };
    let inside: Vec<&Timed> = samples.iter().filter(|s| s.t >= t0 && s.t <= t1).collect();
    let updates = inside
        .windows(2)
        .filter(|w| value(&w[0].sample) != value(&w[1].sample))
        .count();
    let duration = t1 - t0;
    let mut warnings = Vec::new();
    let expected = duration.as_secs_f64() / spec.update_period.as_secs_f64().max(1e-9);
    if duration < spec.min_window() {
        warnings.push(format!(
            "{source}: the window of {:.1} ms spans only about {expected:.1} sensor updates (one every {:.1} ms; at least {} are needed for the edge error to stay below {:.0} %): meter a batch of at least {:.0} ms of work",
            duration.as_secs_f64() * 1e3,
            spec.update_period.as_secs_f64() * 1e3,
            spec.min_updates,
            100.0 / f64::from(spec.min_updates.max(1)),
            spec.min_window().as_secs_f64() * 1e3,
        ));
    }
    if expected >= STUCK_AFTER_UPDATES && updates == 0 {
        warnings.push(format!(
            "{source}: the reading did not change over {:.1} ms (about {expected:.0} sensor updates): a stale driver cache, a stopped converter, or a rail the work does not load",
            duration.as_secs_f64() * 1e3,
        ));
    }
    Ok(Integral {
        energy_j,
        duration,
        samples: inside.len(),
        updates,
        warnings,
    })
}

fn check_samples(samples: &[Timed], spec: &SensorSpec, source: &str) -> Result<()> {
    let counter = matches!(
        samples.first().map(|s| s.sample),
        Some(PowerSample::CounterJoules(_))
    );
    for (i, s) in samples.iter().enumerate() {
        if let Some(prev) = i.checked_sub(1).map(|j| &samples[j])
            && s.t <= prev.t
        {
            return Err(problem(
                source,
                format!("sample {i} at {:?} after one at {:?}", s.t, prev.t),
                "samples in strictly increasing time",
            ));
        }
        match s.sample {
            PowerSample::Watts(w) if !counter => {
                if !w.is_finite() {
                    return Err(problem(
                        source,
                        format!("{w} W at {:?}", s.t),
                        "a finite power",
                    ));
                }
                if w > spec.max_w {
                    return Err(problem(
                        source,
                        format!("{w} W at {:?} (bound {} W)", s.t, spec.max_w),
                        "a power below the board's plausibility bound (a larger reading is a unit slip or a driver fault)",
                    ));
                }
                if w < -NEGATIVE_NOISE_W {
                    return Err(problem(
                        source,
                        format!("{w} W at {:?}", s.t),
                        "a non-negative power (a negative one means a reversed shunt or a sign error)",
                    ));
                }
            }
            PowerSample::CounterJoules(j) if counter => {
                if !j.is_finite() {
                    return Err(problem(
                        source,
                        format!("{j} J at {:?}", s.t),
                        "a finite energy counter",
                    ));
                }
                if let Some(PowerSample::CounterJoules(p)) =
                    i.checked_sub(1).map(|k| samples[k].sample)
                    && j < p
                {
                    return Err(problem(
                        source,
                        format!("{j} J at {:?} after {p} J", s.t),
                        "an energy counter that never decreases (it was reset or wrapped)",
                    ));
                }
            }
            _ => {
                return Err(problem(
                    source,
                    format!("sample {i}: {:?}", s.sample),
                    "readings of one kind in a window (all W or all energy counter)",
                ));
            }
        }
    }
    Ok(())
}

fn value(s: &PowerSample) -> f64 {
    match *s {
        PowerSample::Watts(w) => w,
        PowerSample::CounterJoules(j) => j,
    }
}

/// The piecewise-linear reading at `t`; `samples` bracket `t`.
fn interpolate(a: &Timed, b: &Timed, t: Duration) -> f64 {
    let (va, vb) = (value(&a.sample), value(&b.sample));
    let span = (b.t - a.t).as_secs_f64();
    if span <= 0.0 {
        return va;
    }
    let f = (t.as_secs_f64() - a.t.as_secs_f64()) / span;
    va + (vb - va) * f
}

fn trapezoid(samples: &[Timed], t0: Duration, t1: Duration) -> f64 {
    let mut e = 0.0;
    for w in samples.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let lo = a.t.max(t0);
        let hi = b.t.min(t1);
        if hi <= lo {
            continue;
        }
        let (plo, phi) = (interpolate(a, b, lo), interpolate(a, b, hi));
        e += 0.5 * (plo + phi) * (hi - lo).as_secs_f64();
    }
    e
}

fn counter_at(samples: &[Timed], t: Duration) -> f64 {
    for w in samples.windows(2) {
        if w[0].t <= t && t <= w[1].t {
            return interpolate(&w[0], &w[1], t);
        }
    }
    // A single sample at exactly t (the caller checked the bracket).
    samples.first().map_or(0.0, |s| value(&s.sample))
}

/// A reading or window the checks refuse, as the crate's sysfs-value error naming the sensor.
fn problem(source: &str, content: String, expected: &'static str) -> HostError {
    HostError::SysfsParse {
        path: source.into(),
        content,
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: SensorSpec = SensorSpec {
        update_period: Duration::from_millis(1),
        min_updates: 10,
        max_w: 100.0,
    };

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_constant_power_gives_power_times_time() {
        let s: Vec<Timed> = (0..=10).map(|i| Timed::watts(ms(i * 10), 2.5)).collect();
        let r = integrate(&s, ms(0), ms(100), &SPEC, "c").unwrap();
        assert!((r.energy_j - 0.25).abs() < 1e-12, "{r:?}");
        assert_eq!(r.samples, 11);
        assert!((r.mean_w() - 2.5).abs() < 1e-12);
    }

    #[test]
    fn the_window_is_clipped_by_interpolation() {
        // A ramp P = t (W, t in s) sampled at 0 and 1 s; the integral over [0.25, 0.75] is
        // (0.75² − 0.25²)/2 = 0.25 J, exact for a linear P.
        let s = [Timed::watts(ms(0), 0.0), Timed::watts(ms(1000), 1.0)];
        let r = integrate(&s, ms(250), ms(750), &SPEC, "ramp").unwrap();
        assert!((r.energy_j - 0.25).abs() < 1e-12, "{r:?}");
        assert_eq!(r.samples, 0);
    }

    #[test]
    fn an_energy_counter_is_differenced() {
        let s = [
            Timed::counter(ms(0), 100.0),
            Timed::counter(ms(100), 101.0),
            Timed::counter(ms(200), 103.0),
        ];
        let r = integrate(&s, ms(50), ms(150), &SPEC, "e").unwrap();
        // 100.5 at 50 ms, 102 at 150 ms.
        assert!((r.energy_j - 1.5).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn refused_readings_name_the_sensor() {
        let cases: Vec<(Vec<Timed>, &str)> = vec![
            (
                vec![Timed::watts(ms(0), 1.0), Timed::watts(ms(1), f64::NAN)],
                "finite",
            ),
            (
                vec![Timed::watts(ms(0), 1.0), Timed::watts(ms(1), 500.0)],
                "plausibility bound",
            ),
            (
                vec![Timed::watts(ms(0), 1.0), Timed::watts(ms(1), -1.0)],
                "non-negative",
            ),
            (
                vec![Timed::counter(ms(0), 5.0), Timed::counter(ms(1), 4.0)],
                "never decreases",
            ),
            (
                vec![Timed::watts(ms(0), 1.0), Timed::counter(ms(1), 4.0)],
                "one kind",
            ),
            (
                vec![Timed::watts(ms(1), 1.0), Timed::watts(ms(1), 1.0)],
                "increasing time",
            ),
        ];
        for (s, needle) in cases {
            let e = integrate(&s, ms(0), ms(1), &SPEC, "sensor/x")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("sensor/x: "), "{e}");
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let tiny_negative = [Timed::watts(ms(0), -0.01), Timed::watts(ms(1), 0.0)];
        assert!(integrate(&tiny_negative, ms(0), ms(1), &SPEC, "n").is_ok());
    }

    #[test]
    fn a_window_the_samples_do_not_cover_is_an_error() {
        let s = [Timed::watts(ms(10), 1.0), Timed::watts(ms(20), 1.0)];
        for (a, b) in [(5, 15), (12, 25), (15, 12)] {
            let e = integrate(&s, ms(a), ms(b), &SPEC, "w").unwrap_err();
            assert!(e.to_string().contains("window"), "{e}");
        }
    }
}
