//! The energy model: an estimate of an inference's energy from the accelerator's performance
//! counters, for boards without a power sensor (PYNQ-Z2) and for simulation. Its figures are
//! always labelled [`MODEL_SOURCE`], never reported as measured.
//!
//! ```text
//! compute_j = plane_ops · rows · cols · e_cell_plane_pj · 1e-12
//! ddr_j     = (bytes_rd + bytes_wr) · e_ddr_byte_pj · 1e-12
//! active_j  = busy_cycles / f_clock · p_active_w
//! static_j  = cycles / f_clock · p_static_w
//! dynamic_j = compute_j + ddr_j + active_j
//! total_j   = dynamic_j + static_j
//! ```
//!
//! A plane-step is one weight bit-plane over the whole rows × cols array (docs/regmap.md,
//! PERF_PLANE_OPS), so the per-step energy is stored per MAC cell (`e_cell_plane_pj`) and
//! multiplied by the array size of the [`AccelConfig`]: one coefficient file serves every array
//! shape on a chip. The coefficients live in `configs/energy/<board>.toml`, each with its source;
//! copies are built in so the model works from any directory. This module knows the counters and
//! the config, not how they were read, nor any sensor.

use crate::accel::{EnergyMeter, EnergyReading};
use crate::error::{HostError, Result};
use caq_spec::{AccelConfig, Board, PerfCounters};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `source` of every figure the model gives.
pub const MODEL_SOURCE: &str = "model";

/// The coefficient-file schema this build reads.
pub const ENERGY_SCHEMA_VERSION: u32 = 1;

/// Every board with built-in coefficients.
pub const MODEL_BOARDS: [Board; 3] = [Board::PynqZ2, Board::Zcu104, Board::Sim];

const BUILTIN_PYNQ_Z2: &str = include_str!("../../../configs/energy/pynq-z2.toml");
const BUILTIN_ZCU104: &str = include_str!("../../../configs/energy/zcu104.toml");
const BUILTIN_SIM: &str = include_str!("../../../configs/energy/sim.toml");

/// The coefficients of one board (one `configs/energy/<board>.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyModel {
    pub schema_version: u32,
    /// The board the coefficients describe; a config of another board is refused by
    /// [`EnergyModel::check_config`].
    pub board: Board,
    /// Energy of one MAC cell in one plane-step, pJ.
    pub e_cell_plane_pj: f64,
    /// Energy per byte the DMA reads or writes in DDR, pJ.
    pub e_ddr_byte_pj: f64,
    /// Static power of the chip, W, charged for the accelerator's PERF_CYCLES.
    pub p_static_w: f64,
    /// Power of the busy accelerator beyond the per-plane-step energy (clock tree, control), W,
    /// charged for PERF_BUSY_CYCLES.
    #[serde(default)]
    pub p_active_w: f64,
}

/// What the model says one stretch of work cost, in joules, split by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct EnergyEstimate {
    /// `dynamic_j + static_j`.
    pub total_j: f64,
    /// `compute_j + ddr_j + active_j`: what the work adds to an idle chip.
    pub dynamic_j: f64,
    /// Static power over the device time (PERF_CYCLES at the config's clock).
    pub static_j: f64,
    /// The array's plane-steps.
    pub compute_j: f64,
    /// DMA traffic to and from DDR.
    pub ddr_j: f64,
    /// Clock tree and control while busy (`p_active_w`).
    pub active_j: f64,
}

impl EnergyModel {
    /// Parses and checks coefficients; `origin` (usually the path) names the text in errors.
    pub fn parse(text: &str, origin: &str) -> Result<EnergyModel> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            bad(
                origin,
                "(syntax)",
                e.message().trim_end(),
                "TOML (docs/energy.md)",
            )
        })?;
        match table.get("schema_version") {
            Some(toml::Value::Integer(v)) if *v == i64::from(ENERGY_SCHEMA_VERSION) => {}
            found => {
                return Err(bad(
                    origin,
                    "schema_version",
                    &found.map_or_else(|| "(missing)".to_string(), |v| v.to_string()),
                    &ENERGY_SCHEMA_VERSION.to_string(),
                ));
            }
        }
        let model: EnergyModel = toml::from_str(text).map_err(|e| {
            bad(
                origin,
                "(schema)",
                e.message().trim_end(),
                "the fields schema_version, board, e_cell_plane_pj, e_ddr_byte_pj, p_static_w and optionally p_active_w (docs/energy.md)",
            )
        })?;
        model.validate(origin)?;
        Ok(model)
    }

    /// Reads coefficients from a file.
    pub fn load(path: impl AsRef<Path>) -> Result<EnergyModel> {
        let path = path.as_ref();
        let text =
            caq_spec::fsio::read_regular_to_string(path).map_err(|source| HostError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        EnergyModel::parse(&text, &path.display().to_string())
    }

    /// Reads `<configs_dir>/energy/<board>.toml` (`configs_dir` is the folder holding the
    /// accelerator configs) and checks that it describes `board`.
    pub fn for_board(board: Board, configs_dir: impl AsRef<Path>) -> Result<EnergyModel> {
        let path = EnergyModel::path_for(board, configs_dir);
        let model = EnergyModel::load(&path)?;
        model.check_board(board, &path.display().to_string())?;
        Ok(model)
    }

    /// Where [`EnergyModel::for_board`] looks.
    pub fn path_for(board: Board, configs_dir: impl AsRef<Path>) -> PathBuf {
        configs_dir
            .as_ref()
            .join("energy")
            .join(format!("{}.toml", board.as_str()))
    }

    /// The coefficients shipped in `configs/energy/<board>.toml`, built into the binary.
    pub fn builtin(board: Board) -> Result<EnergyModel> {
        let text = match board {
            Board::PynqZ2 => BUILTIN_PYNQ_Z2,
            Board::Zcu104 => BUILTIN_ZCU104,
            Board::Sim => BUILTIN_SIM,
        };
        let origin = format!("built-in configs/energy/{}.toml", board.as_str());
        let model = EnergyModel::parse(text, &origin)?;
        model.check_board(board, &origin)?;
        Ok(model)
    }

    /// The model for `cfg`'s board: `<configs_dir>/energy/<board>.toml` when `configs_dir` is
    /// given, the built-in copy otherwise.
    pub fn for_config(cfg: &AccelConfig, configs_dir: Option<&Path>) -> Result<EnergyModel> {
        match configs_dir {
            Some(dir) => EnergyModel::for_board(cfg.board, dir),
            None => EnergyModel::builtin(cfg.board),
        }
    }

    /// Refuses a config of another board than the coefficients describe.
    pub fn check_config(&self, cfg: &AccelConfig) -> Result<()> {
        if cfg.board == self.board {
            return Ok(());
        }
        Err(HostError::BadConfig {
            field: format!("board of config '{}'", cfg.name),
            value: cfg.board.as_str().into(),
            expected: format!(
                "'{}', the board of the energy model (load configs/energy/{}.toml for this config)",
                self.board.as_str(),
                cfg.board.as_str()
            ),
        })
    }

    /// The energy of the work `perf` counts, on the array and clock of `cfg`.
    pub fn estimate(&self, cfg: &AccelConfig, perf: &PerfCounters) -> EnergyEstimate {
        const PJ: f64 = 1e-12;
        let cells = f64::from(cfg.array.rows) * f64::from(cfg.array.cols);
        let hz = cfg.clock_mhz * 1e6;
        let compute_j = perf.plane_ops as f64 * cells * self.e_cell_plane_pj * PJ;
        let ddr_j = (perf.bytes_rd as f64 + perf.bytes_wr as f64) * self.e_ddr_byte_pj * PJ;
        let active_j = perf.busy_cycles as f64 / hz * self.p_active_w;
        let static_j = perf.cycles as f64 / hz * self.p_static_w;
        let dynamic_j = compute_j + ddr_j + active_j;
        EnergyEstimate {
            total_j: dynamic_j + static_j,
            dynamic_j,
            static_j,
            compute_j,
            ddr_j,
            active_j,
        }
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let fields = [
            ("e_cell_plane_pj", self.e_cell_plane_pj, 1e3),
            ("e_ddr_byte_pj", self.e_ddr_byte_pj, 1e5),
            ("p_static_w", self.p_static_w, 100.0),
            ("p_active_w", self.p_active_w, 100.0),
        ];
        for (field, v, max) in fields {
            // Bounds far above any real chip catch a unit slip (J for pJ, mW for W).
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return Err(bad(
                    origin,
                    field,
                    &v.to_string(),
                    &format!("a finite number in [0, {max}]"),
                ));
            }
        }
        Ok(())
    }

    fn check_board(&self, board: Board, origin: &str) -> Result<()> {
        if self.board == board {
            Ok(())
        } else {
            Err(bad(origin, "board", self.board.as_str(), board.as_str()))
        }
    }
}

fn bad(origin: &str, field: &str, value: &str, expected: &str) -> HostError {
    HostError::BadConfig {
        field: format!("{origin}: {field}"),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// An [`EnergyMeter`] that prices the counters of each inference with an [`EnergyModel`]. Its
/// readings say `source = "model"`, carry the static power as `idle_w`, and the model's
/// dynamic part as `dynamic_j`.
#[derive(Clone, Debug)]
pub struct ModelMeter {
    model: EnergyModel,
    cfg: AccelConfig,
}

impl ModelMeter {
    /// A meter for the accelerator of `cfg`; refuses coefficients of another board.
    pub fn new(model: EnergyModel, cfg: &AccelConfig) -> Result<ModelMeter> {
        model.check_config(cfg)?;
        Ok(ModelMeter {
            model,
            cfg: cfg.clone(),
        })
    }

    pub fn model(&self) -> &EnergyModel {
        &self.model
    }
}

impl EnergyMeter for ModelMeter {
    fn begin(&mut self) -> Result<()> {
        Ok(())
    }

    fn end(&mut self, perf: &PerfCounters, _elapsed: Duration) -> Result<EnergyReading> {
        let e = self.model.estimate(&self.cfg, perf);
        Ok(EnergyReading {
            total_j: e.total_j,
            dynamic_j: Some(e.dynamic_j),
            idle_w: Some(self.model.p_static_w),
            source: MODEL_SOURCE.into(),
            samples: 0,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(board: &str) -> AccelConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/{board}.toml"));
        AccelConfig::load(&path).unwrap()
    }

    #[test]
    fn every_builtin_parses_and_matches_its_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        for b in MODEL_BOARDS {
            let built = EnergyModel::builtin(b).unwrap();
            assert_eq!(built, EnergyModel::for_board(b, &dir).unwrap());
            assert_eq!(built.board, b);
        }
    }

    #[test]
    fn estimate_on_hand_computed_counters() {
        // pynq-z2: 16 x 64 array at 100 MHz; e_cell 0.55 pJ, DDR 320 pJ/B, static 0.113 W.
        let cfg = cfg("pynq-z2");
        let m = EnergyModel::builtin(Board::PynqZ2).unwrap();
        let perf = PerfCounters {
            cycles: 1_000_000,
            busy_cycles: 800_000,
            stall_cycles: 100_000,
            plane_ops: 500_000,
            bytes_rd: 3_000_000,
            bytes_wr: 1_000_000,
        };
        let e = m.estimate(&cfg, &perf);
        // 500e3 · 1024 · 0.55e-12 = 2.816e-4 J
        let compute = 500_000.0 * 1024.0 * 0.55e-12;
        // 4e6 · 320e-12 = 1.28e-3 J
        let ddr = 4_000_000.0 * 320e-12;
        // 1e6 cycles / 100 MHz = 10 ms; · 0.113 W = 1.13e-3 J
        let stat = 0.01 * 0.113;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1e-12);
        assert!(close(e.compute_j, compute), "{e:?}");
        assert!(close(e.ddr_j, ddr), "{e:?}");
        assert!(close(e.static_j, stat), "{e:?}");
        assert_eq!(e.active_j, 0.0);
        assert!(close(e.dynamic_j, compute + ddr));
        assert!(close(e.total_j, compute + ddr + stat));
    }

    #[test]
    fn compute_energy_scales_with_the_array() {
        let m = EnergyModel::builtin(Board::Sim).unwrap();
        let small = cfg("sim-small");
        let mut big = small.clone();
        big.array.rows *= 4;
        let perf = PerfCounters {
            plane_ops: 1000,
            ..PerfCounters::default()
        };
        let a = m.estimate(&small, &perf).compute_j;
        let b = m.estimate(&big, &perf).compute_j;
        assert!((b / a - 4.0).abs() < 1e-12, "{a} {b}");
    }

    #[test]
    fn active_power_is_charged_for_busy_cycles() {
        let cfg = cfg("zcu104");
        let mut m = EnergyModel::builtin(Board::Zcu104).unwrap();
        m.p_active_w = 0.5;
        let perf = PerfCounters {
            cycles: 400_000,
            busy_cycles: 200_000,
            ..PerfCounters::default()
        };
        // 200e3 / 200 MHz = 1 ms at 0.5 W.
        let e = m.estimate(&cfg, &perf);
        assert!((e.active_j - 0.5e-3).abs() < 1e-15, "{e:?}");
        assert!((e.static_j - 2e-3 * 0.6).abs() < 1e-15, "{e:?}");
    }

    #[test]
    fn bad_files_name_the_file_and_field() {
        let good = BUILTIN_PYNQ_Z2;
        let cases = [
            (
                good.replace("e_ddr_byte_pj = 320.0", "e_ddr_byte_pj = -1.0"),
                "x.toml: e_ddr_byte_pj",
            ),
            (
                good.replace("p_static_w = 0.113", "p_static_w = 113.0"),
                "x.toml: p_static_w",
            ),
            (
                good.replace("schema_version = 1", "schema_version = 2"),
                "x.toml: schema_version",
            ),
            (format!("{good}\nvolts = 1.0\n"), "volts"),
            (
                good.replace("board = \"pynq-z2\"", "board = \"zc706\""),
                "zc706",
            ),
            (
                good.replace("e_cell_plane_pj = 0.55\n", ""),
                "e_cell_plane_pj",
            ),
            (
                "schema_version = 1\nboard = [".to_string(),
                "x.toml: (syntax)",
            ),
        ];
        for (text, needle) in cases {
            let e = EnergyModel::parse(&text, "x.toml").unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn a_file_of_another_board_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("energy")).unwrap();
        std::fs::write(dir.path().join("energy/zcu104.toml"), BUILTIN_PYNQ_Z2).unwrap();
        let e = EnergyModel::for_board(Board::Zcu104, dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("zcu104.toml: board"), "{e}");
        let e = EnergyModel::for_board(Board::Sim, dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sim.toml"), "{e}");
    }

    #[test]
    fn the_model_meter_labels_its_figures_and_refuses_another_board() {
        let cfg = cfg("sim-small");
        let e = ModelMeter::new(EnergyModel::builtin(Board::PynqZ2).unwrap(), &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("board"), "{e}");
        let mut meter = ModelMeter::new(EnergyModel::builtin(Board::Sim).unwrap(), &cfg).unwrap();
        meter.begin().unwrap();
        let perf = PerfCounters {
            cycles: 100,
            plane_ops: 10,
            bytes_rd: 64,
            ..PerfCounters::default()
        };
        let r = meter.end(&perf, Duration::from_micros(5)).unwrap();
        assert_eq!(r.source, MODEL_SOURCE);
        let est = meter.model().estimate(&cfg, &perf);
        assert_eq!(r.total_j, est.total_j);
        assert_eq!(r.dynamic_j, Some(est.dynamic_j));
        assert_eq!(r.idle_w, Some(0.113));
    }
}
