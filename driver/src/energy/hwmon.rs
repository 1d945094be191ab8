//! Power sensors through the Linux hwmon class (`sys/class/hwmon/hwmon*` under a
//! [`SysRoot`]), and the [`PowerSource`] trait the sampler reads.
//!
//! A device is a `hwmonN` directory with a `name`; a channel is one of (units from the kernel's
//! Documentation/hwmon/sysfs-interface.rst):
//! - `power<N>_input`: µW;
//! - `in<N>_input` × `curr<N>_input`: mV × mA = µW (a bus voltage and the current through the
//!   same rail; used where a chip gives no power channel);
//! - `energy<N>_input`: µJ, a counter (the sampler differences it).
//!
//! Labels (`power1_label`, ...) are read when present. This module knows the file formats, not
//! which board has which sensor ([`super::boards`]) nor how readings become joules.

use super::integrate::PowerSample;
use crate::error::{HostError, Result};
use crate::sys::{self, SysRoot};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Something that gives the power drawn now: a set of hwmon channels ([`HwmonPower`]), or a
/// stand-in in tests ([`FnSource`]).
pub trait PowerSource: Send {
    /// The sensor, as errors and readings name it (files or rails).
    fn name(&self) -> String;
    /// One reading.
    fn read(&mut self) -> Result<PowerSample>;
}

/// What a channel reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// `power<N>_input`, µW.
    Power { input: PathBuf },
    /// `in<N>_input` (mV) × `curr<M>_input` (mA).
    VoltCurr { volt: PathBuf, curr: PathBuf },
    /// `energy<N>_input`, a µJ counter.
    Energy { input: PathBuf },
}

/// One measurement channel of a hwmon device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// `power1`, `in1*curr1` or `energy1`: the channel within its device.
    pub id: String,
    pub kind: ChannelKind,
    /// The `_label` file's content, if the driver writes one.
    pub label: Option<String>,
}

/// A `sys/class/hwmon/hwmonN` device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwmonDevice {
    /// N of `hwmonN`.
    pub index: u32,
    pub dir: PathBuf,
    /// The `name` attribute (`ina226`, `ina226_u79`, `irps5401`, ...).
    pub name: String,
    pub channels: Vec<Channel>,
}

impl HwmonDevice {
    /// The channel called `id` (`power1`, `in1*curr1`, `energy1`).
    pub fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    /// The channel whose label is `label`.
    pub fn channel_labelled(&self, label: &str) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.label.as_deref() == Some(label))
    }
}

/// Every hwmon device under `root`, by index. No `sys/class/hwmon` (a board without sensors, or
/// a fake tree without them) is an empty list; a device without a `name` is skipped.
pub fn list(root: &SysRoot) -> Result<Vec<HwmonDevice>> {
    let class = root.class("hwmon");
    let entries = match std::fs::read_dir(&class) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HostError::io(&class, "hwmon", e)),
    };
    let mut devices = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| HostError::io(&class, "hwmon", e))?;
        let file = entry.file_name();
        let Some(index) = file
            .to_str()
            .and_then(|n| n.strip_prefix("hwmon"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        // Drivers set `name` in the device directory; very old ones only in `device/name`.
        let name = match sys::read_attr_opt(&dir.join("name"))? {
            Some(n) => n,
            None => match sys::read_attr_opt(&dir.join("device/name"))? {
                Some(n) => n,
                None => continue,
            },
        };
        let channels = channels(&dir)?;
        devices.push(HwmonDevice {
            index,
            dir,
            name,
            channels,
        });
    }
    devices.sort_by_key(|d| d.index);
    Ok(devices)
}

/// The devices called `name`.
pub fn by_name<'a>(devices: &'a [HwmonDevice], name: &str) -> Vec<&'a HwmonDevice> {
    devices.iter().filter(|d| d.name == name).collect()
}

fn channels(dir: &Path) -> Result<Vec<Channel>> {
    // (prefix, N) of every `<prefix><N>_input`.
    let mut inputs: BTreeMap<(&'static str, u32), PathBuf> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| HostError::io(dir, "hwmon", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| HostError::io(dir, "hwmon", e))?;
        let file = entry.file_name();
        let Some(stem) = file.to_str().and_then(|f| f.strip_suffix("_input")) else {
            continue;
        };
        for prefix in ["power", "in", "curr", "energy"] {
            if let Some(n) = stem
                .strip_prefix(prefix)
                .and_then(|n| n.parse::<u32>().ok())
            {
                inputs.insert((prefix, n), entry.path());
            }
        }
    }
    let label = |prefix: &str, n: u32| sys::read_attr_opt(&dir.join(format!("{prefix}{n}_label")));
    let mut out = Vec::new();
    for (&(prefix, n), path) in &inputs {
        match prefix {
            "power" => out.push(Channel {
                id: format!("power{n}"),
                kind: ChannelKind::Power {
                    input: path.clone(),
                },
                label: label("power", n)?,
            }),
            "energy" => out.push(Channel {
                id: format!("energy{n}"),
                kind: ChannelKind::Energy {
                    input: path.clone(),
                },
                label: label("energy", n)?,
            }),
            // A voltage and a current of the same index, on a device with no power channel of
            // that index: their product (ina2xx numbers the bus voltage in1 and its current
            // curr1). Other pairings are made explicitly with `Channel::volt_curr`.
            "in" if !inputs.contains_key(&("power", n)) => {
                if let Some(curr) = inputs.get(&("curr", n)) {
                    out.push(Channel {
                        id: format!("in{n}*curr{n}"),
                        kind: ChannelKind::VoltCurr {
                            volt: path.clone(),
                            curr: curr.clone(),
                        },
                        label: label("curr", n)?.or(label("in", n)?),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

impl Channel {
    /// `in<v>_input` × `curr<c>_input` of the device in `dir`, for chips (PMBus regulators)
    /// whose voltage and current of one rail carry different indices.
    pub fn volt_curr(dir: &Path, v: u32, c: u32) -> Channel {
        Channel {
            id: format!("in{v}*curr{c}"),
            kind: ChannelKind::VoltCurr {
                volt: dir.join(format!("in{v}_input")),
                curr: dir.join(format!("curr{c}_input")),
            },
            label: None,
        }
    }

    /// The files the channel reads.
    pub fn files(&self) -> Vec<&Path> {
        match &self.kind {
            ChannelKind::Power { input } | ChannelKind::Energy { input } => vec![input],
            ChannelKind::VoltCurr { volt, curr } => vec![volt, curr],
        }
    }

    /// One reading in SI units: W for power and volt × current channels, J for energy.
    pub fn read(&self) -> Result<PowerSample> {
        match &self.kind {
            ChannelKind::Power { input } => {
                let uw = read_i64(input, "a power in µW (a decimal integer)")?;
                Ok(PowerSample::Watts(uw as f64 * 1e-6))
            }
            ChannelKind::VoltCurr { volt, curr } => {
                let mv = read_i64(volt, "a voltage in mV (a decimal integer)")?;
                let ma = read_i64(curr, "a current in mA (a decimal integer)")?;
                Ok(PowerSample::Watts(mv as f64 * ma as f64 * 1e-6))
            }
            ChannelKind::Energy { input } => {
                let uj = sys::read_dec(input)?;
                Ok(PowerSample::CounterJoules(uj as f64 * 1e-6))
            }
        }
    }

    fn is_counter(&self) -> bool {
        matches!(self.kind, ChannelKind::Energy { .. })
    }
}

fn read_i64(path: &Path, expected: &'static str) -> Result<i64> {
    let s = sys::read_attr(path)?;
    s.trim().parse::<i64>().map_err(|_| HostError::SysfsParse {
        path: path.to_path_buf(),
        content: s,
        expected,
    })
}

/// The sum of a set of hwmon channels (the rails a measurement covers) as one [`PowerSource`]:
/// all power-like (W) or all energy counters (J).
#[derive(Clone, Debug)]
pub struct HwmonPower {
    /// (device name, channel) per rail.
    rails: Vec<(String, Channel)>,
}

impl HwmonPower {
    /// Refuses an empty set and a mix of power and energy-counter channels.
    pub fn new(rails: Vec<(String, Channel)>) -> Result<HwmonPower> {
        let Some(first) = rails.first() else {
            return Err(HostError::Arg {
                what: "power rails",
                why: "no channel to read".into(),
            });
        };
        let counter = first.1.is_counter();
        if let Some((dev, ch)) = rails.iter().find(|(_, c)| c.is_counter() != counter) {
            return Err(HostError::BadConfig {
                field: "power rails".into(),
                value: format!("{dev}/{}", ch.id),
                expected: format!(
                    "channels of one kind: all power (µW, mV×mA) or all energy counters (µJ), like {}/{}",
                    first.0, first.1.id
                ),
            });
        }
        Ok(HwmonPower { rails })
    }

    /// One channel.
    pub fn single(device: &HwmonDevice, channel: &Channel) -> Result<HwmonPower> {
        HwmonPower::new(vec![(device.name.clone(), channel.clone())])
    }

    pub fn rails(&self) -> &[(String, Channel)] {
        &self.rails
    }
}

impl PowerSource for HwmonPower {
    fn name(&self) -> String {
        let rails: Vec<String> = self
            .rails
            .iter()
            .map(|(dev, ch)| match &ch.label {
                Some(l) => format!("{dev}/{}({l})", ch.id),
                None => format!("{dev}/{}", ch.id),
            })
            .collect();
        format!("hwmon:{}", rails.join("+"))
    }

    fn read(&mut self) -> Result<PowerSample> {
        let mut sum = 0.0;
        let mut counter = false;
        for (_, ch) in &self.rails {
            match ch.read()? {
                PowerSample::Watts(w) => {
                    // One rail's reading checked on its own, so the error names its file.
                    if w < -super::integrate::NEGATIVE_NOISE_W {
                        return Err(HostError::SysfsParse {
                            path: ch
                                .files()
                                .last()
                                .map_or_else(PathBuf::new, |p| p.to_path_buf()),
                            content: format!("{w} W"),
                            expected: "a non-negative power (a negative one means a reversed shunt or a sign error)",
                        });
                    }
                    sum += w;
                }
                PowerSample::CounterJoules(j) => {
                    counter = true;
                    sum += j;
                }
            }
        }
        Ok(if counter {
            PowerSample::CounterJoules(sum)
        } else {
            PowerSample::Watts(sum)
        })
    }
}

/// A [`PowerSource`] from a closure: tests, and sensors hwmon does not cover.
pub struct FnSource<F> {
    name: String,
    read: F,
}

impl<F: FnMut() -> Result<PowerSample> + Send> FnSource<F> {
    pub fn new(name: impl Into<String>, read: F) -> FnSource<F> {
        FnSource {
            name: name.into(),
            read,
        }
    }
}

impl<F: FnMut() -> Result<PowerSample> + Send> PowerSource for FnSource<F> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn read(&mut self) -> Result<PowerSample> {
        (self.read)()
    }
}
