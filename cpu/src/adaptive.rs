//! Input-adaptive inference on the CPU backend: `caq_model::adaptive::infer`'s passes on one
//! [`CpuModel`] per setting of the policy, bit-exact with the golden reference
//! (`caq_model::adaptive::GoldenAdaptive`) and the driver's `Accelerator::infer_adaptive`.

use crate::{CpuError, CpuModel, Engine, Result};
use caq_model::adaptive::{self, Adaptive, Outcome, Pass};
use caq_model::graph::Shape3;
use caq_model::qmodel::QModel;

/// Adaptive inference on the CPU backend: one plan per setting of the policy; a re-run or the
/// rest after the first layer is computed whole (the outputs are the same; the CPU has no device
/// passes to save).
pub struct CpuAdaptive<'a> {
    policy: Adaptive<'a>,
    plans: Vec<CpuModel>,
    gate_node: usize,
    gate_shape: Shape3,
}

struct CpuPasses<'p> {
    plans: &'p [CpuModel],
    gate_node: usize,
    pixels: &'p [u8],
}

impl adaptive::Passes for CpuPasses<'_> {
    fn run(&mut self, k: usize, pass: Pass) -> caq_model::Result<Vec<i32>> {
        let cpu = |e: CpuError| caq_model::ModelError::arg("cpu backend", e.to_string());
        match pass {
            Pass::FirstLayer => {
                let mut all = self.plans[k].run_all(self.pixels).map_err(cpu)?;
                Ok(std::mem::take(&mut all[self.gate_node]))
            }
            Pass::Full | Pass::From(_) | Pass::AfterFirst => {
                self.plans[k].infer(self.pixels).map_err(cpu)
            }
        }
    }
}

impl<'a> CpuAdaptive<'a> {
    pub fn new(q: &QModel, policy: Adaptive<'a>) -> Result<CpuAdaptive<'a>> {
        let layout = policy.checked_layout(q)?;
        let plans = policy
            .settings()
            .iter()
            .map(|s| {
                CpuModel::new(q, s, Engine::Auto).map_err(|e| {
                    CpuError::Model(caq_model::ModelError::arg(
                        format!("setting {s:?}"),
                        e.to_string(),
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CpuAdaptive {
            policy,
            plans,
            gate_node: layout.gate_node,
            gate_shape: layout.gate_shape,
        })
    }

    /// One adaptive inference of `pixels`.
    pub fn infer(&self, pixels: &[u8]) -> Result<Outcome> {
        let mut passes = CpuPasses {
            plans: &self.plans,
            gate_node: self.gate_node,
            pixels,
        };
        Ok(adaptive::infer(self.policy, self.gate_shape, &mut passes)?)
    }
}
