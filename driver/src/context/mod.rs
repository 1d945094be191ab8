//! The context an application runs in, and the choice of a context class for it.
//!
//! - [`Context`]: battery, memory, temperature, board power and the application's deadline at one
//!   moment. Every field is optional: most boards have no battery, many kernels no cgroup limit.
//! - [`ContextProbe`] (`probe.rs`): reads the live context from sysfs and procfs under a
//!   [`crate::sys::SysRoot`], so tests point it at a fake tree ([`crate::fake`]).
//! - [`ContextTrace`] (`trace.rs`): a recorded or scripted context over time, from JSON or CSV, for
//!   demos and tests; [`ContextTrace::demo`] is the demo scenario (`configs/traces/demo.csv`).
//! - [`ContextPolicy`] (`policy.rs`): the context classes in priority order, the conditions that
//!   select each and the budget its gate is built for (`configs/contexts/default.toml`).
//! - [`GateSelector`] (`select.rs`): picks a class for each context, with hysteresis so that a
//!   value hovering around a threshold does not flip the gate back and forth.
//!
//! This module knows nothing of the accelerator, the model bundle or how a gate's bits are found:
//! it hands on a class name, and applying the gate of that name is the caller's business
//! ([`crate::Accelerator::apply_gate`]). Board power comes from an energy meter the caller owns.

mod error;
mod policy;
mod probe;
mod select;
mod trace;

pub use error::ContextError;
pub use policy::{
    Budget, Conditions, ContextClass, ContextPolicy, Hysteresis, POLICY_SCHEMA_VERSION,
};
pub use probe::{ContextProbe, ProbeOptions};
pub use select::{GateSelector, Selection};
pub use trace::{ContextTrace, TracePoint};

use serde::{Deserialize, Serialize};

/// Bytes in a MiB: memory thresholds are written in MiB, the context holds bytes.
pub const MIB: u64 = 1 << 20;

/// The context at one moment. `None` means unknown (no such sensor, or it could not be read),
/// and a policy condition on an unknown field never holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Context {
    /// Battery charge in percent, 0..=100 (`power_supply/<bat>/capacity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<f64>,
    /// The battery's `status`: `Charging`, `Discharging`, `Full`, `Not charging` or `Unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_status: Option<String>,
    /// Energy left in the battery, µWh (`energy_now`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery_energy_uwh: Option<u64>,
    /// Whether external power is present: any `Mains` or `USB` power supply with `online` = 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_ac: Option<bool>,
    /// `MemAvailable` of `/proc/meminfo`, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_available_bytes: Option<u64>,
    /// The cgroup v2 `memory.max` in bytes; `None` when it is `max` (no limit) or unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_mem_max: Option<u64>,
    /// The cgroup v2 `memory.current`, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_mem_current: Option<u64>,
    /// The hottest thermal zone, millidegrees Celsius.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_max_mc: Option<i64>,
    /// Board power in watts, from an energy meter (the probe leaves it `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    /// The application's deadline per inference, in milliseconds (set by the caller or a trace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_budget_ms: Option<f64>,
}

impl Context {
    /// The memory this process can still use, in bytes: the tighter of `MemAvailable` and the
    /// cgroup's headroom (`memory.max` − `memory.current`, or `memory.max` alone when the usage
    /// is unknown), whichever are known.
    pub fn mem_free_bytes(&self) -> Option<u64> {
        let cgroup = self
            .cgroup_mem_max
            .map(|max| max.saturating_sub(self.cgroup_mem_current.unwrap_or(0)));
        match (self.mem_available_bytes, cgroup) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    /// [`Context::mem_free_bytes`] in MiB, the unit of the policy's memory thresholds.
    pub fn mem_free_mib(&self) -> Option<f64> {
        self.mem_free_bytes().map(|b| b as f64 / MIB as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_free_is_the_tighter_of_meminfo_and_the_cgroup() {
        let mut c = Context::default();
        assert_eq!(c.mem_free_bytes(), None);
        c.mem_available_bytes = Some(500 * MIB);
        assert_eq!(c.mem_free_bytes(), Some(500 * MIB));
        c.cgroup_mem_max = Some(256 * MIB);
        assert_eq!(
            c.mem_free_bytes(),
            Some(256 * MIB),
            "usage unknown: max bounds it"
        );
        c.cgroup_mem_current = Some(200 * MIB);
        assert_eq!(c.mem_free_bytes(), Some(56 * MIB));
        assert_eq!(c.mem_free_mib(), Some(56.0));
        c.mem_available_bytes = Some(10 * MIB);
        assert_eq!(c.mem_free_bytes(), Some(10 * MIB));
        c.mem_available_bytes = None;
        assert_eq!(c.mem_free_bytes(), Some(56 * MIB));
        c.cgroup_mem_current = Some(300 * MIB);
        assert_eq!(
            c.mem_free_bytes(),
            Some(0),
            "over the limit is no headroom, not a wrap"
        );
        c.cgroup_mem_max = None;
        assert_eq!(
            c.mem_free_bytes(),
            None,
            "usage without a limit says nothing"
        );
    }

    #[test]
    fn serializes_only_the_known_fields_and_rejects_unknown_ones() {
        let c = Context {
            battery_pct: Some(42.5),
            on_ac: Some(false),
            ..Context::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"battery_pct":42.5,"on_ac":false}"#);
        assert_eq!(serde_json::from_str::<Context>(&json).unwrap(), c);
        let e = serde_json::from_str::<Context>(r#"{"battery":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `battery`"), "{e}");
    }
}
