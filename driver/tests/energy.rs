//! Energy per inference without a board: the integration core against analytic power curves and
//! slow sample-and-hold sensors, hwmon units and sanity checks on fake sysfs trees, board
//! detection, idle subtraction, the sampling thread in real time on a fake tree, and the
//! counter-based model (hand-computed, and on the functional model of the accelerator).

use caq_driver::HostError;
use caq_driver::accel::EnergyMeter;
use caq_driver::energy::boards::{BoardSensors, RailGroup};
use caq_driver::energy::hwmon::{self, Channel};
use caq_driver::energy::{
    EnergyModel, FnSource, HwmonMeter, HwmonPower, PowerSample, PowerSource, Sampler, SensorSpec,
    Timed, integrate,
};
use caq_driver::fake::FakeSys;
use caq_driver::sys::SysRoot;
use caq_spec::{AccelConfig, Board, PerfCounters};
use std::f64::consts::PI;
use std::time::Duration;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn config(name: &str) -> AccelConfig {
    AccelConfig::load(format!(
        "{}/../configs/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Samples of `p` every `step` s covering [a, b] (one sample at or before a, one at or after b).
fn sampled(p: impl Fn(f64) -> f64, a: f64, b: f64, step: f64) -> Vec<Timed> {
    let n = ((b - a) / step).ceil() as usize + 1;
    (0..=n)
        .map(|i| {
            let t = a + i as f64 * step;
            Timed::watts(secs(t), p(t))
        })
        .collect()
}

/// A sensor that converts over `update` s and holds the average of each conversion interval
/// until the next one ends (as an INA226 with averaging does), updates at `phase + k·update`,
/// read every `step` s over [a, b].
fn sample_and_hold(
    p: impl Fn(f64) -> f64,
    update: f64,
    phase: f64,
    a: f64,
    b: f64,
    step: f64,
) -> Vec<Timed> {
    let held = |t: f64| {
        let k = ((t - phase) / update).floor();
        let end = phase + k * update;
        // The mean of p over the conversion that ended at `end` (midpoint rule, 200 points).
        let n = 200;
        (0..n)
            .map(|i| p(end - update + (i as f64 + 0.5) * update / n as f64))
            .sum::<f64>()
            / n as f64
    };
    sampled(held, a, b, step)
}

const LOOSE: SensorSpec = SensorSpec {
    update_period: Duration::from_millis(1),
    min_updates: 1,
    max_w: 100.0,
};

fn rel_err(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

#[test]
fn trapezoid_integrates_analytic_power_within_one_percent() {
    // P = 2 + sin(2πt) over [0, 2.3] s: E = 4.6 + (1 − cos(4.6π)) / 2π.
    let p = |t: f64| 2.0 + (2.0 * PI * t).sin();
    let exact = 4.6 + (1.0 - (4.6 * PI).cos()) / (2.0 * PI);
    let s = sampled(p, 0.0, 2.3, 0.005);
    let r = integrate(&s, secs(0.0), secs(2.3), &LOOSE, "sin").unwrap();
    assert!(
        rel_err(r.energy_j, exact) < 0.01,
        "{} vs {exact}",
        r.energy_j
    );
    // The trapezoid of a smooth curve at 5 ms is far better than 1 %.
    assert!(
        rel_err(r.energy_j, exact) < 1e-4,
        "{} vs {exact}",
        r.energy_j
    );

    // A ramp P = 0.5 + t over a window that does not fall on samples: exact for linear P.
    let s = sampled(|t| 0.5 + t, 0.0, 3.1, 0.007);
    let r = integrate(&s, secs(0.0005), secs(3.0), &LOOSE, "ramp").unwrap();
    let exact = |t: f64| 0.5 * t + t * t / 2.0;
    let want = exact(3.0) - exact(0.0005);
    assert!(rel_err(r.energy_j, want) < 1e-9, "{} vs {want}", r.energy_j);
}

#[test]
fn a_35_ms_sensor_sampled_every_5_ms_over_10_s_is_within_1_percent() {
    // Work whose power swings between 1 and 3 W twice a second; the INA226 (hwmon ina2xx
    // default) holds a 35.2 ms average. Edge error bound: ΔP · update = 2 W · 35 ms = 0.07 J of
    // ~20 J, i.e. 0.35 %.
    let p = |t: f64| 2.0 + (2.0 * PI * 2.0 * t).sin();
    let (a, b) = (0.213, 10.213);
    let exact = 2.0 * (b - a) - ((4.0 * PI * b).cos() - (4.0 * PI * a).cos()) / (4.0 * PI);
    let s = sample_and_hold(p, 0.0352, 0.004, a - 0.1, b + 0.1, 0.005);
    let spec = SensorSpec {
        update_period: Duration::from_micros(35_200),
        min_updates: 20,
        max_w: 100.0,
    };
    let r = integrate(&s, secs(a), secs(b), &spec, "ina226").unwrap();
    assert!(
        rel_err(r.energy_j, exact) < 0.01,
        "{} vs {exact}",
        r.energy_j
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // About one update per 35 ms was seen.
    assert!((270..=290).contains(&r.updates), "{}", r.updates);
}

#[test]
fn a_1_s_sensor_over_90_s_of_work_is_within_1_percent() {
    // Idle 1 W, 4 W while the work runs from 10.4 s to 100.7 s; PMBus-like telemetry holding a
    // one-second average, read every 50 ms; the window is exactly the work. Exact: 4 · 90.3 J.
    // Bound: the held signal lags by up to one update at each edge, ΔP · 1 s = 3 J of 361 J
    // (0.83 %).
    let (a, b) = (10.4, 100.7);
    let p = |t: f64| if (a..b).contains(&t) { 4.0 } else { 1.0 };
    let s = sample_and_hold(p, 1.0, 0.3, 0.0, 110.0, 0.05);
    let spec = SensorSpec {
        update_period: Duration::from_secs(1),
        min_updates: 20,
        max_w: 100.0,
    };
    let r = integrate(&s, secs(a), secs(b), &spec, "pmbus").unwrap();
    let exact = 4.0 * (b - a);
    assert!(
        rel_err(r.energy_j, exact) < 0.01,
        "{} vs {exact}",
        r.energy_j
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn too_short_a_window_is_flagged() {
    let spec_35ms = SensorSpec {
        update_period: Duration::from_micros(35_200),
        min_updates: 20,
        max_w: 100.0,
    };
    // One 2 ms inference: inside one held value the sensor cannot see it at all.
    let p = |t: f64| {
        if (0.500..0.502).contains(&t) {
            5.0
        } else {
            1.0
        }
    };
    let s = sample_and_hold(p, 0.0352, 0.0, 0.0, 1.0, 0.005);
    let r = integrate(&s, secs(0.5), secs(0.502), &spec_35ms, "ina226").unwrap();
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("meter a batch"), "{}", r.warnings[0]);
    // The figure is indeed wrong: the 5 W burst is invisible.
    assert!(rel_err(r.energy_j, 0.010) > 0.5, "{}", r.energy_j);

    // 100 ms on a 35 ms sensor, 5 s on a 1 s sensor: flagged. 704 ms (20 updates): not.
    let s = sampled(|_| 1.0, 0.0, 10.0, 0.005);
    for (len, spec) in [
        (0.1, spec_35ms),
        (
            5.0,
            SensorSpec {
                update_period: Duration::from_secs(1),
                ..spec_35ms
            },
        ),
    ] {
        let r = integrate(&s, secs(1.0), secs(1.0 + len), &spec, "s").unwrap();
        assert!(
            r.warnings.iter().any(|w| w.contains("spans only")),
            "{len}: {:?}",
            r.warnings
        );
    }
    let s = sample_and_hold(|t| 2.0 + t.sin(), 0.0352, 0.0, 0.0, 3.0, 0.005);
    let r = integrate(&s, secs(1.0), secs(1.704), &spec_35ms, "s").unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_reading_that_never_changes_is_flagged_as_stuck() {
    let spec = SensorSpec {
        update_period: Duration::from_micros(35_200),
        min_updates: 20,
        max_w: 100.0,
    };
    let s = sampled(|_| 2.0, 0.0, 2.0, 0.005);
    let r = integrate(&s, secs(0.5), secs(1.5), &spec, "hwmon:ina226/power1").unwrap();
    assert!((r.energy_j - 2.0).abs() < 1e-9);
    assert!(
        r.warnings.iter().any(|w| w.contains("did not change")),
        "{:?}",
        r.warnings
    );
    // Over two updates' time a constant reading is normal.
    let r = integrate(&s, secs(0.5), secs(0.57), &spec, "s").unwrap();
    assert!(!r.warnings.iter().any(|w| w.contains("did not change")));
}

fn fake() -> (tempfile::TempDir, FakeSys) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSys::new(dir.path());
    (dir, sys)
}

#[test]
fn each_channel_kind_is_scaled_to_si_units() {
    let (_d, sys) = fake();
    let hw = sys.hwmon(0, "ina226").unwrap();
    hw.power_input(1, 1_500_000).unwrap(); // 1.5 W
    hw.label("power", 1, "VCCINT").unwrap();
    sys.hwmon(3, "sensor")
        .unwrap()
        .in_curr(2, 12_000, 250) // 12 V × 0.25 A = 3 W
        .unwrap()
        .energy_input(1, 2_500_000) // 2.5 J
        .unwrap();
    let devs = hwmon::list(&SysRoot::new(sys.root())).unwrap();
    assert_eq!(
        devs.iter()
            .map(|d| (d.index, d.name.as_str()))
            .collect::<Vec<_>>(),
        [(0, "ina226"), (3, "sensor")]
    );
    let p = devs[0].channel("power1").unwrap();
    assert_eq!(p.label.as_deref(), Some("VCCINT"));
    assert_eq!(p.read().unwrap(), PowerSample::Watts(1.5));
    assert_eq!(devs[0].channel_labelled("VCCINT"), Some(p));
    let vc = devs[1].channel("in2*curr2").unwrap();
    assert_eq!(vc.read().unwrap(), PowerSample::Watts(3.0));
    let e = devs[1].channel("energy1").unwrap();
    assert_eq!(e.read().unwrap(), PowerSample::CounterJoules(2.5));
    // A pair with different indices, as PMBus regulators number them.
    sys.hwmon(4, "irps5401")
        .unwrap()
        .in_curr(3, 850, 0)
        .unwrap()
        .in_curr(7, 0, 4_000)
        .unwrap();
    let ch = Channel::volt_curr(&sys.root().join("sys/class/hwmon/hwmon4"), 3, 7);
    match ch.read().unwrap() {
        PowerSample::Watts(w) => assert!((w - 3.4).abs() < 1e-12, "{w}"),
        other => panic!("{other:?}"),
    }
    // A sum of rails.
    let mut sum = HwmonPower::new(vec![
        ("ina226".into(), p.clone()),
        ("sensor".into(), vc.clone()),
    ])
    .unwrap();
    assert_eq!(sum.read().unwrap(), PowerSample::Watts(4.5));
    assert_eq!(sum.name(), "hwmon:ina226/power1(VCCINT)+sensor/in2*curr2");
    let mixed = HwmonPower::new(vec![
        ("ina226".into(), p.clone()),
        ("sensor".into(), e.clone()),
    ])
    .unwrap_err();
    assert!(mixed.to_string().contains("one kind"), "{mixed}");
}

#[test]
fn implausible_readings_are_errors_naming_the_sensor_file() {
    let (_d, sys) = fake();
    let hw = sys.hwmon(0, "ina226").unwrap();
    hw.power_input(1, 1_000_000).unwrap();
    hw.in_curr(2, 12_000, -5_000).unwrap();
    let root = SysRoot::new(sys.root());
    let devs = hwmon::list(&root).unwrap();
    let dev = &devs[0];

    hw.set_attr("power1_input", "garbage\n").unwrap();
    let e = dev.channel("power1").unwrap().read().unwrap_err();
    assert!(matches!(e, HostError::SysfsParse { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("hwmon0/power1_input"), "{msg}");
    assert!(msg.contains("µW"), "{msg}");

    // −60 W on one rail of a sum: the error names that rail's file.
    let mut sum = HwmonPower::single(dev, dev.channel("in2*curr2").unwrap()).unwrap();
    let msg = sum.read().unwrap_err().to_string();
    assert!(msg.contains("hwmon0/curr2_input"), "{msg}");
    assert!(msg.contains("non-negative"), "{msg}");

    // A reading above the board's bound (µW read as mW, say): the integration refuses it.
    let s = [
        Timed::watts(secs(0.0), 1.0),
        Timed::watts(secs(0.01), 1500.0),
    ];
    let msg = integrate(&s, secs(0.0), secs(0.01), &LOOSE, "hwmon:ina226/power1")
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("hwmon:ina226/power1: "), "{msg}");
    assert!(msg.contains("1500 W"), "{msg}");

    // The file disappears while the sampler reads it: the window's integration fails with
    // the read error, naming the file.
    hw.power_input(1, 1_000_000).unwrap();
    let source = HwmonPower::single(dev, dev.channel("power1").unwrap()).unwrap();
    let sampler = Sampler::start(Box::new(source), Duration::from_millis(2)).unwrap();
    let t0 = sampler.now();
    std::thread::sleep(Duration::from_millis(20));
    hw.remove_attr("power1_input").unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let t1 = sampler.now() + Duration::from_millis(50);
    let msg = sampler.integrate(t0, t1, &LOOSE).unwrap_err().to_string();
    assert!(msg.contains("hwmon0/power1_input"), "{msg}");
}

#[test]
fn idle_power_is_subtracted() {
    let source = FnSource::new("const 2 W", || Ok(PowerSample::Watts(2.0)));
    let sampler = Sampler::start(Box::new(source), Duration::from_millis(1)).unwrap();
    let meter = HwmonMeter::new(sampler, LOOSE).with_idle_w(0.5).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let t0 = meter.sampler().now();
    let t1 = t0 + Duration::from_millis(40);
    let r = meter.reading(t0, t1).unwrap();
    let dt = (t1 - t0).as_secs_f64();
    assert!((r.total_j - 2.0 * dt).abs() < 1e-9, "{r:?}");
    assert_eq!(r.dynamic_j, Some(r.total_j - 0.5 * dt));
    assert_eq!(r.idle_w, Some(0.5));
    assert_eq!(r.source, "const 2 W");
    assert!(r.samples >= 10, "{r:?}");

    // Measured idle power, then begin/end through the EnergyMeter trait.
    let source = FnSource::new("const 0.75 W", || Ok(PowerSample::Watts(0.75)));
    let sampler = Sampler::start(Box::new(source), Duration::from_millis(1)).unwrap();
    let mut meter = HwmonMeter::new(sampler, LOOSE);
    let idle = meter.measure_idle(Duration::from_millis(30)).unwrap();
    assert!((meter.idle_w().unwrap() - 0.75).abs() < 1e-9, "{idle:?}");
    meter.begin().unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let r = meter.end(&PerfCounters::default(), Duration::ZERO).unwrap();
    assert!(r.dynamic_j.unwrap().abs() < 1e-9, "{r:?}");

    // A given idle power must be a power.
    for bad in [-1.0, f64::NAN, 1e6] {
        let source = FnSource::new("x", || Ok(PowerSample::Watts(1.0)));
        let sampler = Sampler::start(Box::new(source), Duration::from_millis(1)).unwrap();
        let e = HwmonMeter::new(sampler, LOOSE)
            .with_idle_w(bad)
            .err()
            .unwrap();
        assert!(e.to_string().contains("idle power"), "{bad}: {e}");
    }
}

#[test]
fn the_sampler_thread_integrates_a_fake_tree_in_real_time() {
    // A fake INA226 at 1 W, switched to 3 W mid-window, sampled every 2 ms on the real thread
    // (a ZCU104 tree: the INA226 is its 12 V input). Whatever the scheduler does on a loaded
    // machine, the sampler must read the old value before the switch and the new one after it,
    // and the window's energy must be the trapezoid through what it read.
    let (_d, sys) = fake();
    let hw = sys.hwmon(2, "ina226").unwrap();
    hw.power_input(1, 1_000_000).unwrap();
    sys.hwmon(0, "irps5401")
        .unwrap()
        .power_input(1, 5_000_000)
        .unwrap();
    let root = SysRoot::new(sys.root());
    let found = BoardSensors::detect(&root).unwrap().expect("zcu104");
    assert_eq!(found.table.board, "zcu104");
    let source = found.source(&[RailGroup::Board]).unwrap();
    let period = Duration::from_millis(2);
    let started = std::time::Instant::now();
    let sampler = Sampler::start(Box::new(source), period).unwrap();
    let mut meter = HwmonMeter::new(sampler, LOOSE);
    meter.begin().unwrap();
    let t0 = meter.sampler().now();
    std::thread::sleep(Duration::from_millis(100));
    let ta = meter.sampler().now();
    hw.power_input(1, 3_000_000).unwrap();
    let tb = meter.sampler().now();
    std::thread::sleep(Duration::from_millis(100));
    let t1 = meter.sampler().now();
    let whole = meter.end(&PerfCounters::default(), Duration::ZERO).unwrap();

    let r = meter.reading(t0, t1).unwrap();
    let window = meter.sampler().window(t0, t1).unwrap();
    let w = |s: &Timed| match s.sample {
        PowerSample::Watts(w) => w,
        other => panic!("{other:?}"),
    };
    assert!(window.iter().all(|s| w(s) == 1.0 || w(s) == 3.0));
    let last_old = window.iter().rfind(|s| w(s) == 1.0).unwrap().t;
    let first_new = window.iter().find(|s| w(s) == 3.0).unwrap().t;
    // A reading is stamped at the midpoint of its read: one preempted mid-read can land a little
    // past the switch, hence the slack.
    let slack = Duration::from_millis(5);
    assert!(
        last_old < tb + slack && first_new + slack > ta,
        "{last_old:?} {first_new:?} {ta:?} {tb:?}"
    );
    assert!(
        window
            .iter()
            .skip_while(|s| w(s) == 1.0)
            .all(|s| w(s) == 3.0)
    );
    // The trapezoid through the readings: 1 W up to the midpoint of the two readings around the
    // switch, 3 W after it.
    let mid = (last_old + first_new).as_secs_f64() / 2.0;
    let want = 1.0 * (mid - t0.as_secs_f64()) + 3.0 * (t1.as_secs_f64() - mid);
    assert!((r.total_j - want).abs() < 1e-9, "{} vs {want}", r.total_j);
    assert_eq!(r.source, "hwmon:ina226/power1(12V input)");
    assert!(r.samples >= 20, "{r:?}");
    // begin/end covered at least [t0, t1]: at least its energy, at most 3 W beyond it.
    let extra = (meter.sampler().now() - t1).as_secs_f64() + t0.as_secs_f64();
    assert!(
        whole.total_j >= r.total_j - 1e-3 * 3.0 && whole.total_j <= r.total_j + 3.0 * extra,
        "{whole:?} {r:?}"
    );
    drop(meter);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn boards_are_detected_from_fake_trees() {
    // ZCU102: the 18 iio-hwmon INA226 devices; the PL group is VCCINT + VCCBRAM + VCCAUX.
    let (_d, sys) = fake();
    let names = [
        "76", "77", "78", "87", "85", "86", "93", "88", "15", "92", "79", "81", "80", "84", "16",
        "65", "74", "75",
    ];
    for (i, u) in names.iter().enumerate() {
        let hw = sys.hwmon(i as u32, &format!("ina226_u{u}")).unwrap();
        hw.power_input(1, 1_000_000 * (i as u64 + 1)).unwrap();
    }
    let root = SysRoot::new(sys.root());
    let found = BoardSensors::detect(&root).unwrap().unwrap();
    assert_eq!(found.table.board, "zcu102");
    let mut pl = found.source(&[RailGroup::Pl]).unwrap();
    // u79, u81, u80 are the 11th, 12th and 13th devices: 11 + 12 + 13 W.
    assert_eq!(pl.read().unwrap(), PowerSample::Watts(36.0));
    assert!(
        pl.name().contains("ina226_u79/power1(VCCINT)"),
        "{}",
        pl.name()
    );
    let ps = found.source(&[RailGroup::Ps]).unwrap();
    assert_eq!(ps.rails().len(), 8);
    assert!(found.source(&[RailGroup::Board]).is_err());

    // KV260, under either driver's name.
    for name in ["ina260_u14", "ina260"] {
        let (_d, sys) = fake();
        sys.hwmon(1, name)
            .unwrap()
            .power_input(1, 4_200_000)
            .unwrap();
        let found = BoardSensors::detect(&SysRoot::new(sys.root()))
            .unwrap()
            .unwrap();
        assert_eq!(found.table.board, "kv260");
        let mut s = found.source(&[RailGroup::Board]).unwrap();
        assert_eq!(s.read().unwrap(), PowerSample::Watts(4.2));
    }

    // Ultra96-V2: two PMICs of one name and a third; each rail finds its own device.
    let (_d, sys) = fake();
    sys.hwmon(0, "irps5401")
        .unwrap()
        .power_input(1, 1_000_000)
        .unwrap();
    sys.hwmon(1, "ir38060")
        .unwrap()
        .power_input(1, 500_000)
        .unwrap();
    sys.hwmon(2, "irps5401")
        .unwrap()
        .power_input(1, 2_000_000)
        .unwrap();
    let found = BoardSensors::detect(&SysRoot::new(sys.root()))
        .unwrap()
        .unwrap();
    assert_eq!(found.table.board, "ultra96-v2");
    assert_eq!(
        found.source(&[RailGroup::Board]).unwrap().read().unwrap(),
        PowerSample::Watts(3.5)
    );
    assert_eq!(found.table.update_period, Duration::from_secs(1));

    // ZCU104 whose INA226 lacks its power channel: the error names the device and the file.
    let (_d, sys) = fake();
    sys.hwmon(0, "ina226").unwrap().in_curr(0, 5, 0).unwrap();
    sys.hwmon(1, "irps5401").unwrap();
    let found = BoardSensors::detect(&SysRoot::new(sys.root()))
        .unwrap()
        .unwrap();
    assert_eq!(found.table.board, "zcu104");
    let msg = found.source(&[RailGroup::Board]).unwrap_err().to_string();
    assert!(
        msg.contains("power1_input") && msg.contains("hwmon0"),
        "{msg}"
    );

    // PYNQ-Z2 (no sensor), an unknown board, and no hwmon class at all: nothing detected.
    let (_d, sys) = fake();
    assert!(
        BoardSensors::detect(&SysRoot::new(sys.root()))
            .unwrap()
            .is_none()
    );
    sys.hwmon(0, "ina226").unwrap().power_input(1, 1).unwrap();
    sys.hwmon(1, "cpu_thermal").unwrap();
    assert!(
        BoardSensors::detect(&SysRoot::new(sys.root()))
            .unwrap()
            .is_none()
    );
    let pynq = BoardSensors::for_board("pynq-z2").unwrap();
    assert!(pynq.rails.is_empty());
    let e = HwmonMeter::detect(&SysRoot::new(sys.root()), &[RailGroup::Board])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("energy model"), "{e}");
}

#[test]
fn the_model_estimate_matches_hand_computed_counters() {
    // ZCU104: 64 × 64 array at 200 MHz; 0.23 pJ per cell-plane, 200 pJ/B, 0.6 W static.
    let cfg = config("zcu104");
    let m = EnergyModel::builtin(Board::Zcu104).unwrap();
    let perf = PerfCounters {
        cycles: 2_000_000,
        busy_cycles: 1_500_000,
        stall_cycles: 300_000,
        plane_ops: 1_000_000,
        bytes_rd: 8_000_000,
        bytes_wr: 2_000_000,
    };
    let e = m.estimate(&cfg, &perf);
    // 1e6 · 4096 · 0.23 pJ = 942.08 µJ; 1e7 B · 200 pJ = 2 mJ; 10 ms · 0.6 W = 6 mJ.
    assert!((e.compute_j - 942.08e-6).abs() < 1e-12, "{e:?}");
    assert!((e.ddr_j - 2e-3).abs() < 1e-12, "{e:?}");
    assert!((e.static_j - 6e-3).abs() < 1e-12, "{e:?}");
    assert!(
        (e.total_j - (942.08e-6 + 2e-3 + 6e-3)).abs() < 1e-12,
        "{e:?}"
    );
    // From any directory: the built-in copy equals the file next to the configs.
    let dir = format!("{}/../configs", env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        EnergyModel::for_config(&cfg, Some(dir.as_ref())).unwrap(),
        m
    );
    assert_eq!(EnergyModel::for_config(&cfg, None).unwrap(), m);
}

#[cfg(feature = "sim")]
#[path = "../../host/tests/common/mod.rs"]
mod common;

#[cfg(feature = "sim")]
#[test]
fn meter_batch_prices_the_whole_batch_with_the_model() {
    use caq_driver::accel::{Accelerator, LoadOptions};
    use caq_driver::energy::{MODEL_SOURCE, ModelMeter, meter_batch};
    use common::*;

    let cfg = config("sim-small");
    let set = digits();
    let q = quantize(mlp(), &set, &[8, 4], 3);
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_model(q, &LoadOptions::default()).unwrap();
    let model = EnergyModel::builtin(Board::Sim).unwrap();
    // Each inference metered on its own through the accelerator's hook...
    acc.attach_meter(Box::new(ModelMeter::new(model.clone(), &cfg).unwrap()));
    let inputs: Vec<&[u8]> = (0..4).map(|i| set.image(i)).collect();
    let mut batch_meter = ModelMeter::new(model.clone(), &cfg).unwrap();
    // ...and the batch as one window.
    let (out, batch) = meter_batch(&mut acc, &mut batch_meter, &inputs).unwrap();
    assert_eq!(batch.inferences, 4);
    assert_eq!(batch.reading.source, MODEL_SOURCE);
    let mut sum = 0.0;
    for inf in &out {
        let e = inf.report.energy.as_ref().unwrap();
        assert_eq!(e.source, MODEL_SOURCE);
        assert_eq!(e.total_j, model.estimate(&cfg, &inf.report.device).total_j);
        assert!(e.total_j > 0.0);
        sum += e.total_j;
    }
    // The model is linear in the counters: the batch costs the sum of its inferences.
    assert!(rel_err(batch.reading.total_j, sum) < 1e-12);
    assert!(rel_err(batch.per_inference_j, sum / 4.0) < 1e-12);
}

#[cfg(feature = "sim")]
#[test]
fn meter_window_repeats_the_batch_until_a_slow_sensor_window_is_filled() {
    // A ZCU104 tree at a constant 2 W on its input, sampled every 2 ms; the batch of 3 images
    // takes far less than the 0.2 s window asked for, so it runs again, whole, until it fills it,
    // and the window's energy is 2 W times its length.
    use caq_driver::accel::{Accelerator, LoadOptions};
    use caq_driver::energy::{HwmonMeter, Sampler, meter_window};
    use common::*;

    let (_d, sys) = fake();
    sys.hwmon(2, "ina226")
        .unwrap()
        .power_input(1, 2_000_000)
        .unwrap();
    sys.hwmon(0, "irps5401")
        .unwrap()
        .power_input(1, 5_000_000)
        .unwrap();
    let root = SysRoot::new(sys.root());
    let found = BoardSensors::detect(&root).unwrap().expect("zcu104");
    let sampler = Sampler::start(
        Box::new(found.source(&[RailGroup::Board]).unwrap()),
        Duration::from_millis(2),
    )
    .unwrap();
    let mut meter = HwmonMeter::new(sampler, LOOSE).with_idle_w(1.5).unwrap();

    let cfg = config("sim-small");
    let set = digits();
    let q = quantize(mlp(), &set, &[8, 4], 3);
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_model(q, &LoadOptions::default()).unwrap();
    let inputs: Vec<&[u8]> = (0..3).map(|i| set.image(i)).collect();
    let window = Duration::from_millis(200);
    let t = std::time::Instant::now();
    let e = meter_window(&mut acc, &mut meter, &inputs, Some(window)).unwrap();
    let took = t.elapsed().as_secs_f64();
    assert_eq!(e.inferences % 3, 0, "whole batches only");
    assert!(e.inferences >= 6, "repeated: {} inferences", e.inferences);
    // The metered window is at least the one asked for, less the timing pass's jitter, and no
    // longer than the whole call; the power is a constant 2 W and the idle 1.5 W.
    let secs = e.reading.total_j / 2.0;
    assert!(
        secs >= 0.9 * window.as_secs_f64() && secs <= took * 1.01,
        "{secs} s of {took}"
    );
    let dynamic = e.reading.dynamic_j.unwrap();
    assert!(
        rel_err(dynamic, 0.5 * secs) < 0.02,
        "dynamic {dynamic} J over {secs} s"
    );
    assert!(rel_err(e.per_inference_j, e.reading.total_j / e.inferences as f64) < 1e-12);
    // Without a window the batch runs once.
    let mut model =
        caq_driver::energy::ModelMeter::new(EnergyModel::builtin(Board::Sim).unwrap(), &cfg)
            .unwrap();
    let once = meter_window(&mut acc, &mut model, &inputs, None).unwrap();
    assert_eq!(once.inferences, 3);
}
