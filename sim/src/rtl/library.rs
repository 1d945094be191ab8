//! [`ModelLib`]: one loaded model library — its port table, port handles resolved by name, and
//! new model instances ([`ModelLib::instantiate`]).
//!
//! A library is loaded once per process and key and lives until the process exits (`&'static`),
//! which is what lets port names be `&'static str` and handles be plain `Copy` values. This module
//! knows the port table; building is `build`'s, the accelerator's ports are `top`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::build::{self, BuildOptions, ModelSource};
use super::ffi::Symbols;
use super::model::RtlModel;
use super::port::{
    AnyInPort, AnyOutPort, InPort, OutPort, PortDir, PortInfo, TraceFormat, WideInPort, WideOutPort,
};
use super::top::TopPorts;
use crate::error::SimError;

/// A verilated module built into a shared library and loaded.
pub struct ModelLib {
    id: u32,
    name: String,
    top: String,
    key: String,
    so: PathBuf,
    verilator_version: String,
    pub(crate) symbols: Symbols,
    ports: Vec<PortInfo>,
    by_name: HashMap<&'static str, u32>,
    clock: &'static str,
    trace: Option<TraceFormat>,
    top_ports: OnceLock<Result<TopPorts, String>>,
}

impl std::fmt::Debug for ModelLib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelLib")
            .field("name", &self.name)
            .field("top", &self.top)
            .field("so", &self.so)
            .finish()
    }
}

impl ModelLib {
    /// Builds `source` (or finds it in the cache, see [`build`](super::build)) and loads it; the
    /// same source in the same process gives the same library.
    pub fn load(
        source: &ModelSource,
        options: BuildOptions,
    ) -> Result<&'static ModelLib, SimError> {
        static LOADED: Mutex<Vec<&'static ModelLib>> = Mutex::new(Vec::new());
        static NEXT_ID: AtomicU32 = AtomicU32::new(1);
        let built = build::build(source, options)?;
        if let Some(lib) = LOADED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|l| l.key == built.key)
        {
            return Ok(lib);
        }
        let loaded = Symbols::load(&built.so).map_err(|reason| SimError::Load {
            model: source.name.clone(),
            path: built.so.clone(),
            reason,
        })?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let ports: Vec<PortInfo> = loaded
            .ports
            .into_iter()
            .map(|(name, dir, width)| PortInfo {
                name: Box::leak(name.into_boxed_str()),
                dir,
                width,
            })
            .collect();
        let by_name = ports
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name, i as u32))
            .collect::<HashMap<_, _>>();
        let clock = ports
            .iter()
            .find(|p| p.name == source.clock)
            .map(|p| p.name)
            .ok_or_else(|| SimError::Load {
                model: source.name.clone(),
                path: built.so.clone(),
                reason: format!("no clock port `{}` in the port table", source.clock),
            })?;
        let lib: &'static ModelLib = Box::leak(Box::new(ModelLib {
            id,
            name: source.name.clone(),
            top: source.top.clone(),
            key: built.key,
            so: built.so,
            verilator_version: built.verilator_version,
            symbols: loaded.symbols,
            ports,
            by_name,
            clock,
            trace: match loaded.trace_format {
                0 => None,
                1 => Some(TraceFormat::Vcd),
                _ => Some(TraceFormat::Fst),
            },
            top_ports: OnceLock::new(),
        }));
        let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have loaded the same key meanwhile: keep the first (dlopen gave both
        // the same library, so the second entry would only duplicate it).
        if let Some(first) = loaded.iter().find(|l| l.key == lib.key) {
            return Ok(first);
        }
        loaded.push(lib);
        Ok(lib)
    }

    /// A new model instance, inputs at 0 and the clock low; see [`RtlModel::new`].
    pub fn instantiate(&'static self, seed: u64) -> RtlModel {
        RtlModel::new(self, seed)
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// What the model was built from (a config's name, or `module <top>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verilated top module.
    pub fn top(&self) -> &str {
        &self.top
    }

    /// The library file in the cache.
    pub fn path(&self) -> &Path {
        &self.so
    }

    /// `verilator --version` of the build.
    pub fn verilator_version(&self) -> &str {
        &self.verilator_version
    }

    /// The trace format compiled in, if any.
    pub fn trace_format(&self) -> Option<TraceFormat> {
        self.trace
    }

    /// Every port, the clock included, in the order of Verilator's header (narrow ports first).
    pub fn ports(&self) -> &[PortInfo] {
        &self.ports
    }

    /// The port called `name` and its index in the table.
    pub fn port(&self, name: &str) -> Option<(u32, PortInfo)> {
        self.by_name.get(name).map(|&i| (i, self.ports[i as usize]))
    }

    fn resolve(&self, name: &str, dir: PortDir, wide: bool) -> Result<(u32, PortInfo), SimError> {
        let err = |reason: String| SimError::Port {
            model: self.name.clone(),
            port: name.to_string(),
            reason,
        };
        let (index, info) = self
            .port(name)
            .ok_or_else(|| err(format!("`{}` has no such port", self.top)))?;
        if name == self.clock {
            return Err(err("the clock is driven by tick(), not set".into()));
        }
        if dir == PortDir::In && info.dir != PortDir::In {
            return Err(err(format!(
                "an output of {} bits, not an input",
                info.width
            )));
        }
        if (info.width > 64) != wide {
            return Err(err(format!(
                "{} bits: ports of at most 64 bits take InPort/OutPort, wider ones \
                 WideInPort/WideOutPort",
                info.width
            )));
        }
        Ok((index, info))
    }

    /// The input `name` of at most 64 bits.
    pub fn input(&self, name: &str) -> Result<InPort, SimError> {
        let (i, p) = self.resolve(name, PortDir::In, false)?;
        Ok(InPort::new(self.id, i, p.name, p.width))
    }

    /// The port `name` of at most 64 bits, to read (an output, or an input read back).
    pub fn output(&self, name: &str) -> Result<OutPort, SimError> {
        let (i, p) = self.resolve(name, PortDir::Out, false)?;
        Ok(OutPort::new(self.id, i, p.name, p.width))
    }

    /// The input `name` wider than 64 bits.
    pub fn wide_input(&self, name: &str) -> Result<WideInPort, SimError> {
        let (i, p) = self.resolve(name, PortDir::In, true)?;
        Ok(WideInPort::new(self.id, i, p.name, p.width))
    }

    /// The port `name` wider than 64 bits, to read.
    pub fn wide_output(&self, name: &str) -> Result<WideOutPort, SimError> {
        let (i, p) = self.resolve(name, PortDir::Out, true)?;
        Ok(WideOutPort::new(self.id, i, p.name, p.width))
    }

    /// The input `name`, narrow or wide.
    pub fn any_input(&self, name: &str) -> Result<AnyInPort, SimError> {
        match self.port(name) {
            Some((_, p)) if p.width > 64 => self.wide_input(name).map(AnyInPort::Wide),
            _ => self.input(name).map(AnyInPort::Narrow),
        }
    }

    /// The port `name`, narrow or wide, to read.
    pub fn any_output(&self, name: &str) -> Result<AnyOutPort, SimError> {
        match self.port(name) {
            Some((_, p)) if p.width > 64 => self.wide_output(name).map(AnyOutPort::Wide),
            _ => self.output(name).map(AnyOutPort::Narrow),
        }
    }

    /// The accelerator top's port handles (`caq_top`: `s_axil_*`, `m_axi_*`, `irq`, `rst_n`),
    /// resolved by name the first time they are asked for.
    pub fn top_ports(&'static self) -> Result<&'static TopPorts, SimError> {
        self.top_ports
            .get_or_init(|| TopPorts::resolve(self).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|reason| SimError::Port {
                model: self.name.clone(),
                port: "caq_top ports".into(),
                reason: reason.clone(),
            })
    }
}
