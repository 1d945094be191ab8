//! Which power sensors each board has, as hwmon shows them: the device `name`s, the channel of
//! each rail, which rails are the programmable logic's ("PL"), the processing system's ("PS")
//! or the whole board's input ("board"), and how often the sensors update. docs/energy.md gives
//! the source of every entry and says which are unverified; nothing here was checked on a board.
//!
//! [`BoardSensors::detect`] picks a table from the hwmon names found under a root. A board with
//! no sensor (PYNQ-Z2) has a table with no rails and is never detected: its energy comes from
//! [`super::EnergyModel`].

use super::hwmon::{self, Channel, HwmonDevice, HwmonPower};
use super::integrate::SensorSpec;
use crate::error::{HostError, Result};
use crate::sys::SysRoot;
use std::time::Duration;

/// What a rail supplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RailGroup {
    /// The programmable logic's core rails (VCCINT, VCCBRAM, VCCAUX): what the accelerator
    /// loads.
    Pl,
    /// The processing system's rails (CPU, DDR controller and I/O).
    Ps,
    /// The board's input supply: everything, accelerator included.
    Board,
    /// Other rails (transceivers, I/O banks): measured, not summed by default.
    Other,
}

/// The channel of a rail within its hwmon device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelRef {
    /// `power<N>_input`.
    Power(u32),
    /// `in<V>_input` × `curr<C>_input`.
    VoltCurr(u32, u32),
    /// `energy<N>_input`.
    Energy(u32),
}

/// One measured rail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rail {
    /// The rail's name on the schematic.
    pub rail: &'static str,
    /// The hwmon `name`s the device may carry (the Xilinx device trees route INA2xx chips
    /// through `iio-hwmon`, whose name is the node name with `-` as `_`; the plain hwmon
    /// driver names the device after the chip).
    pub device: &'static [&'static str],
    /// Which of several devices with that name (in hwmon index order).
    pub nth: usize,
    pub channel: ChannelRef,
    pub group: RailGroup,
}

/// The sensors of one board.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoardSensors {
    /// `zcu104`, `zcu102`, `kv260`, `ultra96-v2`, `pynq-z2`.
    pub board: &'static str,
    /// The board is detected when every name of one of these sets is among the hwmon names.
    pub signatures: &'static [&'static [&'static str]],
    pub rails: &'static [Rail],
    /// How often the sensors produce a new value.
    pub update_period: Duration,
    /// How often the sampler reads them.
    pub sample_period: Duration,
    /// A summed reading above this is not physical for the board (a plausibility bound, well
    /// above its supply's rating, not the rating itself).
    pub max_w: f64,
    /// What of this entry was checked against which source (docs/energy.md has the links).
    pub provenance: &'static str,
}

/// Windows shorter than this many sensor updates are flagged: the edge error of a
/// sample-and-hold sensor is at most one update period's worth of the power change, so 20
/// updates keep it under 5 %.
pub const MIN_UPDATES: u32 = 20;

/// The Linux ina2xx hwmon driver programs INA226 and INA260 with 16 averages of two 1.1 ms
/// conversions (`INA226_CONFIG_DEFAULT 0x4527`, `INA260_CONFIG_DEFAULT 0x6527` in
/// drivers/hwmon/ina2xx.c): a new value every 16 × 2.2 ms = 35.2 ms.
const INA2XX_UPDATE: Duration = Duration::from_micros(35_200);

/// Sampling faster than the sensor updates costs I2C reads and gains little; a third of the
/// update period resolves each update's edge to ~12 ms and keeps a 10-rail sum's reads
/// (~0.3 ms each at 400 kHz) well inside the period.
const INA2XX_SAMPLE: Duration = Duration::from_millis(12);

/// PMBus telemetry (the pmbus core and PMIC firmware): treated as one update a second
/// (unverified; see docs/energy.md).
const PMBUS_UPDATE: Duration = Duration::from_secs(1);

const fn rail(
    rail: &'static str,
    device: &'static [&'static str],
    channel: ChannelRef,
    group: RailGroup,
) -> Rail {
    Rail {
        rail,
        device,
        nth: 0,
        channel,
        group,
    }
}

use ChannelRef::Power;
use RailGroup::{Board, Other, Pl, Ps};

/// ZCU102: 18 INA226 on the PS and PL PMBus branches, each behind an `iio-hwmon` node
/// `ina226-uNN` (upstream zynqmp-zcu102-revA.dts).
const ZCU102_RAILS: &[Rail] = &[
    rail("VCCPSINTFP", &["ina226_u76"], Power(1), Ps),
    rail("VCCPSINTLP", &["ina226_u77"], Power(1), Ps),
    rail("VCCPSAUX", &["ina226_u78"], Power(1), Ps),
    rail("VCCPSPLL", &["ina226_u87"], Power(1), Ps),
    rail("MGTRAVCC", &["ina226_u85"], Power(1), Other),
    rail("MGTRAVTT", &["ina226_u86"], Power(1), Other),
    rail("VCCO_PSDDR_504", &["ina226_u93"], Power(1), Ps),
    rail("VCCOPS", &["ina226_u88"], Power(1), Ps),
    rail("VCCOPS3", &["ina226_u15"], Power(1), Ps),
    rail("VCCPSDDRPLL", &["ina226_u92"], Power(1), Ps),
    rail("VCCINT", &["ina226_u79"], Power(1), Pl),
    rail("VCCBRAM", &["ina226_u81"], Power(1), Pl),
    rail("VCCAUX", &["ina226_u80"], Power(1), Pl),
    rail("VCC1V2", &["ina226_u84"], Power(1), Other),
    rail("VCC3V3", &["ina226_u16"], Power(1), Other),
    rail("VADJ_FMC", &["ina226_u65"], Power(1), Other),
    rail("MGTAVCC", &["ina226_u74"], Power(1), Other),
    rail("MGTAVTT", &["ina226_u75"], Power(1), Other),
];

/// ZCU104: one INA226 (u183, 5 mΩ) and two IRPS5401 PMICs (u175, u180) in the upstream
/// zynqmp-zcu104-revC.dts; the INA226 is the 12 V input monitor.
const ZCU104_RAILS: &[Rail] = &[rail("12V input", &["ina226"], Power(1), Board)];

/// KV260: one INA260 (u14) on the carrier card (zynqmp-sck-kv-g-rev{A,B}.dtso).
const KV260_RAILS: &[Rail] = &[rail(
    "carrier supply",
    &["ina260_u14", "ina260"],
    Power(1),
    Board,
)];

/// Ultra96-V2: PMIC telemetry only (two IRPS5401 and an IR38060); the input power of each.
const ULTRA96V2_RAILS: &[Rail] = &[
    Rail {
        rail: "IRPS5401 #1 input",
        device: &["irps5401"],
        nth: 0,
        channel: Power(1),
        group: Board,
    },
    Rail {
        rail: "IRPS5401 #2 input",
        device: &["irps5401"],
        nth: 1,
        channel: Power(1),
        group: Board,
    },
    rail("IR38060 input", &["ir38060"], Power(1), Board),
];

/// Every table, in detection order (the most specific signatures first).
pub const BOARDS: &[BoardSensors] = &[
    BoardSensors {
        board: "zcu102",
        signatures: &[&["ina226_u79", "ina226_u81", "ina226_u80"]],
        rails: ZCU102_RAILS,
        update_period: INA2XX_UPDATE,
        sample_period: INA2XX_SAMPLE,
        max_w: 150.0,
        provenance: "chips, addresses, shunts and iio-hwmon node names: upstream device tree; rail of each chip: third-party tools (power-monitor-zcu102), not checked against UG1182; update period: hwmon ina2xx default, the IIO driver's not checked",
    },
    BoardSensors {
        board: "kv260",
        signatures: &[&["ina260_u14"], &["ina260"]],
        rails: KV260_RAILS,
        update_period: INA2XX_UPDATE,
        sample_period: INA2XX_SAMPLE,
        max_w: 60.0,
        provenance: "chip, address and node name: upstream device-tree overlay; which supply it measures: unverified",
    },
    BoardSensors {
        board: "ultra96-v2",
        signatures: &[&["irps5401", "ir38060"]],
        rails: ULTRA96V2_RAILS,
        update_period: PMBUS_UPDATE,
        sample_period: Duration::from_millis(100),
        max_w: 60.0,
        provenance: "unverified: PMIC parts from Avnet and PYNQ material, hwmon names and channels assumed from the kernel pmbus drivers",
    },
    BoardSensors {
        board: "zcu104",
        signatures: &[&["ina226", "irps5401"]],
        rails: ZCU104_RAILS,
        update_period: INA2XX_UPDATE,
        sample_period: INA2XX_SAMPLE,
        max_w: 150.0,
        provenance: "chips and addresses: upstream device tree; 12 V input: DESIGN brief and UG1267, not checked here; update period: hwmon ina2xx default",
    },
    BoardSensors {
        board: "pynq-z2",
        signatures: &[],
        rails: &[],
        update_period: Duration::ZERO,
        sample_period: Duration::ZERO,
        max_w: 0.0,
        provenance: "no power sensor on the board: energy comes from the model (configs/energy/pynq-z2.toml)",
    },
];

/// A board's table with the hwmon devices found.
#[derive(Clone, Debug)]
pub struct Detected {
    pub table: &'static BoardSensors,
    pub devices: Vec<HwmonDevice>,
}

impl BoardSensors {
    /// The table of `board` (`zcu104`, `zcu102`, `kv260`, `ultra96-v2`, `pynq-z2`).
    pub fn for_board(board: &str) -> Option<&'static BoardSensors> {
        BOARDS.iter().find(|b| b.board == board)
    }

    /// The board whose sensors are under `root`: the first table (in [`BOARDS`] order) one of
    /// whose signatures is present. `None` when no table matches (no sensors: use the model).
    pub fn detect(root: &SysRoot) -> Result<Option<Detected>> {
        let devices = hwmon::list(root)?;
        let has = |n: &str| devices.iter().any(|d| d.name == n);
        let table = BOARDS
            .iter()
            .find(|b| b.signatures.iter().any(|sig| sig.iter().all(|n| has(n))));
        Ok(table.map(|table| Detected { table, devices }))
    }

    /// What the integration checks need to know.
    pub fn spec(&self) -> SensorSpec {
        SensorSpec {
            update_period: self.update_period,
            min_updates: MIN_UPDATES,
            max_w: self.max_w,
        }
    }

    /// The rails of `groups`.
    pub fn rails_in(&self, groups: &[RailGroup]) -> impl Iterator<Item = &'static Rail> + use<> {
        let groups = groups.to_vec();
        self.rails.iter().filter(move |r| groups.contains(&r.group))
    }
}

impl Detected {
    /// One power source summing the rails of `groups`. Every rail must be found: a missing
    /// device or channel is an error naming it.
    pub fn source(&self, groups: &[RailGroup]) -> Result<HwmonPower> {
        let mut rails = Vec::new();
        for r in self.table.rails_in(groups) {
            let dev = self
                .devices
                .iter()
                .filter(|d| r.device.contains(&d.name.as_str()))
                .nth(r.nth)
                .ok_or_else(|| HostError::BadConfig {
                    field: format!("{} rail {}", self.table.board, r.rail),
                    value: format!(
                        "{} hwmon device(s) named {:?}",
                        self.devices
                            .iter()
                            .filter(|d| r.device.contains(&d.name.as_str()))
                            .count(),
                        r.device
                    ),
                    expected: format!("at least {} (docs/energy.md)", r.nth + 1),
                })?;
            let ch = match r.channel {
                ChannelRef::Power(n) => find(dev, &format!("power{n}"))?,
                ChannelRef::Energy(n) => find(dev, &format!("energy{n}"))?,
                ChannelRef::VoltCurr(v, c) => {
                    let ch = Channel::volt_curr(&dev.dir, v, c);
                    for f in ch.files() {
                        if !f.exists() {
                            return Err(missing(dev, &f.display().to_string()));
                        }
                    }
                    ch
                }
            };
            let ch = Channel {
                label: ch.label.or(Some(r.rail.to_string())),
                ..ch
            };
            rails.push((dev.name.clone(), ch));
        }
        if rails.is_empty() {
            return Err(HostError::BadConfig {
                field: format!("{} rail groups", self.table.board),
                value: format!("{groups:?}"),
                expected: format!(
                    "groups with rails on this board: {:?}",
                    self.table.rails.iter().map(|r| r.group).collect::<Vec<_>>()
                ),
            });
        }
        HwmonPower::new(rails)
    }
}

fn find(dev: &HwmonDevice, id: &str) -> Result<Channel> {
    dev.channel(id)
        .cloned()
        .ok_or_else(|| missing(dev, &format!("{id}_input")))
}

fn missing(dev: &HwmonDevice, file: &str) -> HostError {
    HostError::BadConfig {
        field: format!("hwmon device {} ({})", dev.name, dev.dir.display()),
        value: format!(
            "channels {:?}",
            dev.channels.iter().map(|c| &c.id).collect::<Vec<_>>()
        ),
        expected: format!("a {file} (docs/energy.md lists each board's channels)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_with_rails_can_be_detected_and_sampled() {
        let mut names: Vec<&str> = BOARDS.iter().map(|b| b.board).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BOARDS.len(), "board names are unique");
        for b in BOARDS {
            assert_eq!(b.rails.is_empty(), b.signatures.is_empty(), "{}", b.board);
            if b.rails.is_empty() {
                continue;
            }
            // Reads every few milliseconds at most as often as the sensor updates, and
            // windows of MIN_UPDATES updates stay under a few seconds.
            assert!(b.sample_period <= b.update_period, "{}", b.board);
            assert!(
                b.spec().min_window() <= Duration::from_secs(20),
                "{}",
                b.board
            );
            assert!(b.max_w > 0.0);
            // Every rail's device can be told apart by its name (and index among equals).
            for r in b.rails {
                assert!(!r.device.is_empty(), "{} {}", b.board, r.rail);
            }
        }
        let zcu102 = BoardSensors::for_board("zcu102").unwrap();
        let pl: Vec<&str> = zcu102.rails_in(&[RailGroup::Pl]).map(|r| r.rail).collect();
        assert_eq!(pl, ["VCCINT", "VCCBRAM", "VCCAUX"]);
        assert_eq!(zcu102.update_period, Duration::from_micros(35_200));
    }
}
