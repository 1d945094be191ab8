//! Input-adaptive gating, host side: what each pass of an adaptive inference costs on the
//! accelerator ([`PassPricer`]), the calibration of confidence cascades ([`cascade`]) and the
//! training of gate networks ([`network`]) on training images, inside a context class's budget
//! on average. The rules that pick a setting per input live in `caq_model::adaptive`; the driver
//! applies them (`Accelerator::infer_adaptive`). docs/gates.md, "Input-adaptive gating".

pub mod cascade;
pub mod network;

use crate::compile::{self, PassStart, PassStep, Program};
use crate::error::Result;
use caq_model::adaptive::{Adaptive, Pass};
use caq_model::qmodel::QModel;
use caq_spec::{AccelConfig, CoreShape, DeviceAddr, PerfCounters};
use std::collections::HashMap;

/// The device counters of passes over a compiled model, from the timing model the functional
/// device charges (so they are what it reports, START for START).
pub struct PassPricer {
    program: Program,
    timing: caq_sim::TimingModel,
    shape: CoreShape,
    memo: HashMap<(Vec<u8>, PassStart, Option<usize>), PerfCounters>,
}

impl PassPricer {
    /// Compiles `q` for `cfg` at `base` (the device address the model is loaded at: the DMA's
    /// 4 KiB boundaries depend on it).
    pub fn new(q: &QModel, cfg: &AccelConfig, base: DeviceAddr) -> Result<PassPricer> {
        let bits = q.uniform_bits(q.levels()[0]);
        Ok(PassPricer {
            program: compile::compile(q, cfg, &bits, base)?,
            timing: caq_sim::TimingModel::default(),
            shape: CoreShape::of(cfg),
            memo: HashMap::new(),
        })
    }

    pub fn layers(&self) -> usize {
        self.program.layers.len()
    }

    /// The counters of one pass at `bits` (see `Program::pass`): one START per piece of a
    /// segment it runs.
    pub fn pass(
        &mut self,
        bits: &[u8],
        start: PassStart,
        stop: Option<usize>,
    ) -> Result<PerfCounters> {
        let key = (bits.to_vec(), start, stop);
        if let Some(p) = self.memo.get(&key) {
            return Ok(*p);
        }
        self.program.set_bits(bits)?;
        let mut perf = PerfCounters::default();
        for step in self.program.pass(start, stop)? {
            if let PassStep::Device { layers, .. } = step {
                let descs: Vec<_> = self.program.layers[layers].iter().map(|l| l.desc).collect();
                perf.add(&self.timing.estimate(&self.shape, &descs));
            }
        }
        self.memo.insert(key, perf);
        Ok(perf)
    }

    /// The counters of the model's pass `pass` at `bits`, as `caq_model::adaptive::infer` asks
    /// for it.
    pub fn model_pass(&mut self, bits: &[u8], pass: Pass) -> Result<PerfCounters> {
        match pass {
            Pass::Full => self.pass(bits, PassStart::Input, None),
            Pass::From(i) => self.pass(bits, PassStart::Layer(i), None),
            Pass::FirstLayer => self.pass(bits, PassStart::Input, Some(0)),
            Pass::AfterFirst if self.layers() > 1 => self.pass(bits, PassStart::After(0), None),
            Pass::AfterFirst => Ok(PerfCounters::default()),
        }
    }

    /// The counters of an adaptive inference that took `passes` (`Outcome::passes`) under
    /// `policy`.
    pub fn outcome(
        &mut self,
        policy: Adaptive<'_>,
        passes: &[(usize, usize)],
    ) -> Result<PerfCounters> {
        let settings = policy.settings();
        let mut perf = PerfCounters::default();
        for (n, &(k, from)) in passes.iter().enumerate() {
            let pass = match (policy, n) {
                (Adaptive::Cascade(_), 0) => Pass::Full,
                (Adaptive::Cascade(_), _) => Pass::From(from),
                (Adaptive::Network(_), 0) => Pass::FirstLayer,
                (Adaptive::Network(_), _) => Pass::AfterFirst,
            };
            perf.add(&self.model_pass(&settings[k], pass)?);
        }
        Ok(perf)
    }
}
