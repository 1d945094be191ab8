//! Fake context sources for [`crate::context::ContextProbe`]: `power_supply` batteries and
//! mains adapters, `proc/meminfo`, cgroup v2 memory files with `proc/self/cgroup`, and thermal
//! zones, in the kernel's formats. Each builder returns a handle whose setters change the values
//! between probes; `set_attr` writes anything, to fake an odd kernel or garbage.

use std::path::{Path, PathBuf};

use super::FakeSys;

/// A fake `sys/class/power_supply/<name>` entry.
#[derive(Clone, Debug)]
pub struct FakeSupply {
    pub dir: PathBuf,
}

/// A fake `proc/meminfo`.
#[derive(Clone, Debug)]
pub struct FakeMeminfo {
    pub path: PathBuf,
}

/// A fake cgroup v2 directory (`memory.max`, `memory.current`).
#[derive(Clone, Debug)]
pub struct FakeCgroup {
    pub dir: PathBuf,
}

/// A fake `sys/class/thermal/thermal_zone<n>`.
#[derive(Clone, Debug)]
pub struct FakeThermalZone {
    pub dir: PathBuf,
}

/// Full charge of the fake battery at 100 %, µWh (a 2-cell 10 Wh pack).
const FULL_UWH: u64 = 10_000_000;

impl FakeSys {
    /// A battery `name` (e.g. `BAT0`) with `capacity` percent, `status` (e.g. `Discharging`) and
    /// `energy_now` µWh, plus the attributes a laptop fuel gauge also shows.
    pub fn battery(
        &self,
        name: &str,
        capacity: u32,
        status: &str,
        energy_now_uwh: u64,
    ) -> std::io::Result<FakeSupply> {
        let rel = Path::new("sys/class/power_supply").join(name);
        for (attr, value) in [
            ("type", "Battery".to_string()),
            ("present", "1".to_string()),
            ("technology", "Li-ion".to_string()),
            ("status", status.to_string()),
            ("capacity", capacity.to_string()),
            ("energy_now", energy_now_uwh.to_string()),
            ("energy_full", FULL_UWH.to_string()),
            ("energy_full_design", FULL_UWH.to_string()),
            ("voltage_now", "7600000".to_string()),
            ("power_now", "4200000".to_string()),
        ] {
            self.write(rel.join(attr), format!("{value}\n"))?;
        }
        Ok(FakeSupply {
            dir: self.root().join(rel),
        })
    }

    /// An AC adapter `name` (e.g. `AC`) of type `Mains`, `online` or not.
    pub fn mains(&self, name: &str, online: bool) -> std::io::Result<FakeSupply> {
        let rel = Path::new("sys/class/power_supply").join(name);
        self.write(rel.join("type"), "Mains\n")?;
        self.write(rel.join("online"), format!("{}\n", u8::from(online)))?;
        Ok(FakeSupply {
            dir: self.root().join(rel),
        })
    }

    /// `proc/meminfo` of a 512 MiB board (a PYNQ-Z2 with its CMA pool) with `MemAvailable` of
    /// `mem_available_kb` (MemTotal grows to hold it if needed).
    pub fn meminfo(&self, mem_available_kb: u64) -> std::io::Result<FakeMeminfo> {
        let path = self.write("proc/meminfo", meminfo_text(mem_available_kb))?;
        Ok(FakeMeminfo { path })
    }

    /// A cgroup at `path` (e.g. `/system.slice/app.service`) under `sys/fs/cgroup` with
    /// `memory.max` (`None` = `max`) and `memory.current`, and `proc/self/cgroup` placing this
    /// process in it, as on a cgroup-v2-only system.
    pub fn cgroup(
        &self,
        path: &str,
        max: Option<u64>,
        current: u64,
    ) -> std::io::Result<FakeCgroup> {
        self.write("proc/self/cgroup", format!("0::{path}\n"))?;
        self.cgroup_at("/sys/fs/cgroup", path, max, current)
    }

    /// The memory files of the cgroup at `path` in the hierarchy mounted at `mount_point`,
    /// without touching `proc/self/cgroup` (for a parent cgroup, or a hybrid mount).
    pub fn cgroup_at(
        &self,
        mount_point: &str,
        path: &str,
        max: Option<u64>,
        current: u64,
    ) -> std::io::Result<FakeCgroup> {
        let rel = Path::new(mount_point.trim_start_matches('/')).join(path.trim_start_matches('/'));
        let cg = FakeCgroup {
            dir: self.root().join(&rel),
        };
        self.write(rel.join("cgroup.controllers"), "cpu io memory pids\n")?;
        cg.set_max(max)?;
        cg.set_current(current)?;
        Ok(cg)
    }

    /// `proc/self/mountinfo` of a hybrid systemd layout (cgroup v1 controllers under
    /// `/sys/fs/cgroup/<controller>`, cgroup2 at `/sys/fs/cgroup/unified`), and
    /// `proc/self/cgroup` placing this process at `path` in every hierarchy.
    pub fn cgroup_hybrid(&self, path: &str) -> std::io::Result<()> {
        self.write(
            "proc/self/mountinfo",
            "22 1 179:2 / / rw,relatime shared:1 - ext4 /dev/mmcblk0p2 rw\n\
             23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n\
             24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n\
             31 24 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n\
             32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory\n",
        )?;
        self.write(
            "proc/self/cgroup",
            format!("4:memory:{path}\n1:name=systemd:{path}\n0::{path}\n"),
        )?;
        Ok(())
    }

    /// A thermal zone `thermal_zone<n>` at `millideg` m°C.
    pub fn thermal_zone(&self, n: u32, millideg: i64) -> std::io::Result<FakeThermalZone> {
        let rel = PathBuf::from(format!("sys/class/thermal/thermal_zone{n}"));
        self.write(rel.join("type"), "cpu-thermal\n")?;
        self.write(rel.join("mode"), "enabled\n")?;
        let zone = FakeThermalZone {
            dir: self.root().join(rel),
        };
        zone.set_temp(millideg)?;
        Ok(zone)
    }
}

impl FakeSupply {
    pub fn set_capacity(&self, pct: u32) -> std::io::Result<()> {
        self.set_attr("capacity", &format!("{pct}\n"))
    }

    pub fn set_status(&self, status: &str) -> std::io::Result<()> {
        self.set_attr("status", &format!("{status}\n"))
    }

    pub fn set_energy_now(&self, uwh: u64) -> std::io::Result<()> {
        self.set_attr("energy_now", &format!("{uwh}\n"))
    }

    pub fn set_online(&self, online: bool) -> std::io::Result<()> {
        self.set_attr("online", &format!("{}\n", u8::from(online)))
    }

    /// Writes attribute `rel` as is (`std::fs::remove_file` of `dir.join(rel)` removes one).
    pub fn set_attr(&self, rel: impl AsRef<Path>, content: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.join(rel), content)
    }
}

impl FakeMeminfo {
    pub fn set_mem_available(&self, kb: u64) -> std::io::Result<()> {
        std::fs::write(&self.path, meminfo_text(kb))
    }

    /// Replaces the whole file.
    pub fn set_content(&self, content: &str) -> std::io::Result<()> {
        std::fs::write(&self.path, content)
    }
}

impl FakeCgroup {
    /// `memory.max`: bytes, or `max` for `None`.
    pub fn set_max(&self, max: Option<u64>) -> std::io::Result<()> {
        let text = max.map_or_else(|| "max".to_string(), |m| m.to_string());
        self.set_attr("memory.max", &format!("{text}\n"))
    }

    pub fn set_current(&self, bytes: u64) -> std::io::Result<()> {
        self.set_attr("memory.current", &format!("{bytes}\n"))
    }

    pub fn set_attr(&self, rel: impl AsRef<Path>, content: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.join(rel), content)
    }
}

impl FakeThermalZone {
    pub fn set_temp(&self, millideg: i64) -> std::io::Result<()> {
        self.set_attr("temp", &format!("{millideg}\n"))
    }

    pub fn set_attr(&self, rel: impl AsRef<Path>, content: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.join(rel), content)
    }
}

/// `proc/meminfo` as Linux 5.15 writes it (`%8lu kB` after a padded key), on a 512 MiB
/// Zynq-7000 board with a 128 MiB CMA pool; the other lines are kept consistent with
/// `MemAvailable`.
fn meminfo_text(available_kb: u64) -> String {
    let total = 505_652u64.max(available_kb);
    let free = available_kb * 3 / 4;
    let cached = available_kb / 5;
    let buffers = available_kb / 50;
    let lines: [(&str, u64); 24] = [
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", available_kb),
        ("Buffers", buffers),
        ("Cached", cached),
        ("SwapCached", 0),
        ("Active", cached / 2 + 9_000),
        ("Inactive", cached / 2 + 4_000),
        ("Active(anon)", 9_000),
        ("Inactive(anon)", 4_000),
        ("Active(file)", cached / 2),
        ("Inactive(file)", cached / 2),
        ("Unevictable", 0),
        ("Mlocked", 0),
        ("HighTotal", 0),
        ("HighFree", 0),
        ("LowTotal", total),
        ("LowFree", free),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Dirty", 12),
        ("Writeback", 0),
        ("CmaTotal", 131_072),
        ("CmaFree", 126_976),
    ];
    let mut s: String = lines
        .iter()
        .map(|(k, v)| format!("{:<16}{v:>8} kB\n", format!("{k}:")))
        .collect();
    s.push_str("HugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_lines_are_in_the_kernel_layout() {
        let text = meminfo_text(262_144);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("MemTotal:         505652 kB"));
        assert_eq!(lines.next(), Some("MemFree:          196608 kB"));
        assert_eq!(lines.next(), Some("MemAvailable:     262144 kB"));
        assert!(text.contains("\nCmaFree:          126976 kB\n"));
        assert!(meminfo_text(1 << 30).starts_with("MemTotal:       1073741824 kB\n"));
    }
}
