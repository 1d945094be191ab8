//! Reads the live [`Context`] from sysfs and procfs under a [`SysRoot`].
//!
//! Every source is optional. A file or directory that does not exist leaves its field `None`
//! silently (Zynq dev boards have no battery; `memory.max` does not exist in the root cgroup); a
//! file that exists but cannot be read or does not hold what the kernel writes there also leaves
//! its field `None`, and adds a warning naming the file and what was expected. The probe never
//! fails and never panics.
//!
//! Sources, with the kernel's formats (Documentation/ABI/testing/sysfs-class-power,
//! Documentation/admin-guide/cgroup-v2.rst, Documentation/filesystems/proc.rst):
//! - battery: `sys/class/power_supply/<name>/{type,scope,capacity,status,energy_now,energy_full}`;
//!   `capacity` is `%d` percent, `energy_*` are µWh;
//! - external power: `online` of the supplies of type `Mains`, `USB` or the older `USB_*` types;
//! - memory: `MemAvailable` of `proc/meminfo` (kB);
//! - cgroup v2: the `0::<path>` line of `proc/self/cgroup`, the cgroup2 mount from
//!   `proc/self/mountinfo` (`/sys/fs/cgroup` when there is no mountinfo; `/sys/fs/cgroup/unified`
//!   on hybrid systems), and `memory.max` (bytes or `max`) and `memory.current` there;
//! - temperature: `sys/class/thermal/thermal_zone*/temp` (m°C).

use std::path::{Path, PathBuf};

use super::Context;
use crate::sys::SysRoot;

/// Where the probe looks, when the defaults are not right.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeOptions {
    /// The `power_supply` entry to read as the battery (e.g. `BAT1`). Default: the first entry by
    /// name of type `Battery` whose `scope` is not `Device` (a mouse's or a phone's battery).
    pub battery: Option<String>,
    /// The cgroup to read, as a path in the cgroup2 hierarchy (e.g. `/system.slice/app.service`).
    /// Default: the process's own, from `proc/self/cgroup`.
    pub cgroup: Option<String>,
}

/// Reads the live context; see the module documentation for the sources.
#[derive(Clone, Debug)]
pub struct ContextProbe {
    root: SysRoot,
    options: ProbeOptions,
    warnings: Vec<String>,
}

impl ContextProbe {
    /// A probe of the system under `root` (`SysRoot::default()` on a board).
    pub fn new(root: SysRoot) -> ContextProbe {
        ContextProbe::with_options(root, ProbeOptions::default())
    }

    /// A probe with a given battery or cgroup.
    pub fn with_options(root: SysRoot, options: ProbeOptions) -> ContextProbe {
        ContextProbe {
            root,
            options,
            warnings: Vec::new(),
        }
    }

    pub fn root(&self) -> &SysRoot {
        &self.root
    }

    pub fn options(&self) -> &ProbeOptions {
        &self.options
    }

    /// Reads everything once. `power_w` and `latency_budget_ms` are left `None`: they come from
    /// the caller. The warnings of this probe replace those of the last one.
    pub fn probe(&mut self) -> Context {
        let mut r = Reader::default();
        let mut ctx = Context::default();
        self.power_supplies(&mut r, &mut ctx);
        ctx.mem_available_bytes = self.mem_available(&mut r);
        if let Some((max, current)) = self.cgroup_memory(&mut r) {
            ctx.cgroup_mem_max = max;
            ctx.cgroup_mem_current = current;
        }
        ctx.temp_max_mc = self.temp_max(&mut r);
        self.warnings = r.warnings;
        ctx
    }

    /// What the last [`ContextProbe::probe`] could not read, one line per file: the file, what
    /// was expected and what was found.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn power_supplies(&self, r: &mut Reader, ctx: &mut Context) {
        let class = self.root.class("power_supply");
        let supplies = r.list(&class);
        let battery = match &self.options.battery {
            Some(name) => {
                let dir = class.join(name);
                if dir.is_dir() {
                    Some(dir)
                } else {
                    r.warn(format!(
                        "{}: no such power supply (the battery named in the probe options)",
                        dir.display()
                    ));
                    None
                }
            }
            None => supplies.iter().find_map(|(_, dir)| {
                let is_battery = r.read(&dir.join("type")).as_deref() == Some("Battery");
                let device_scope = r.read(&dir.join("scope")).as_deref() == Some("Device");
                (is_battery && !device_scope).then(|| dir.clone())
            }),
        };
        if let Some(dir) = battery {
            self.battery(r, &dir, ctx);
        }
        let mut on_ac = None;
        for (_, dir) in &supplies {
            let external = r
                .read(&dir.join("type"))
                .is_some_and(|t| t == "Mains" || t == "USB" || t.starts_with("USB_"));
            if !external {
                continue;
            }
            let online = r.parse(&dir.join("online"), "0 or 1", |s| match s {
                "0" => Some(false),
                "1" => Some(true),
                _ => None,
            });
            if let Some(online) = online {
                on_ac = Some(on_ac.unwrap_or(false) || online);
            }
        }
        ctx.on_ac = on_ac;
    }

    fn battery(&self, r: &mut Reader, dir: &Path, ctx: &mut Context) {
        let capacity = r.parse(&dir.join("capacity"), "a percentage 0..=100", |s| {
            s.parse::<u8>().ok().filter(|&p| p <= 100).map(f64::from)
        });
        ctx.battery_status = r.read(&dir.join("status")).filter(|s| !s.is_empty());
        ctx.battery_energy_uwh =
            r.parse(&dir.join("energy_now"), "µWh as a decimal number", |s| {
                s.parse::<u64>().ok()
            });
        // Some fuel gauges have no `capacity`; the charge then follows from the energies.
        ctx.battery_pct = capacity.or_else(|| {
            let now = ctx.battery_energy_uwh?;
            let full = r.parse(&dir.join("energy_full"), "µWh as a decimal number", |s| {
                s.parse::<u64>().ok()
            })?;
            (full > 0).then(|| (now as f64 / full as f64 * 100.0).min(100.0))
        });
    }

    fn mem_available(&self, r: &mut Reader) -> Option<u64> {
        let path = self.root.join("proc/meminfo");
        let text = r.read(&path)?;
        let Some(line) = text.lines().find(|l| l.starts_with("MemAvailable:")) else {
            r.warn(format!(
                "{}: no MemAvailable line (the kernel is older than 3.14, or this is not meminfo)",
                path.display()
            ));
            return None;
        };
        let value = line["MemAvailable:".len()..].trim();
        let kb = value
            .strip_suffix("kB")
            .and_then(|n| n.trim().parse::<u64>().ok());
        let bytes = kb.and_then(|kb| kb.checked_mul(1024));
        if bytes.is_none() {
            r.warn(format!(
                "{}: expected MemAvailable in kB (\"<n> kB\"), found {value:?}",
                path.display()
            ));
        }
        bytes
    }

    /// `(memory.max, memory.current)` of the cgroup with the least headroom among the process's
    /// cgroup and its ancestors: a limit on a parent (a systemd slice) binds the children too.
    /// `None` when there is no cgroup2 hierarchy or the process's cgroup is unknown.
    fn cgroup_memory(&self, r: &mut Reader) -> Option<(Option<u64>, Option<u64>)> {
        let (mount, mount_root) = self.cgroup2_mount(r)?;
        let path = match &self.options.cgroup {
            Some(p) => p.clone(),
            None => self.own_cgroup(r)?,
        };
        // Below a mount of a sub-tree (`mountinfo` root other than `/`), paths are relative to it.
        let rel = match mount_root.as_str() {
            "/" => path.as_str(),
            root => path.strip_prefix(root).unwrap_or(&path),
        };
        let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        if parts.iter().any(|c| *c == "." || *c == "..") {
            r.warn(format!(
                "cgroup {path:?}: expected an absolute cgroup path without '.' or '..'"
            ));
            return None;
        }
        let own_dir = mount.join(parts.join("/"));
        let mut own_current = None;
        let mut tightest: Option<(u64, u64, Option<u64>)> = None;
        for depth in (0..=parts.len()).rev() {
            let dir = mount.join(parts[..depth].join("/"));
            let max = r.parse(&dir.join("memory.max"), "a byte count or \"max\"", |s| {
                if s == "max" {
                    Some(None)
                } else {
                    s.parse::<u64>().ok().map(Some)
                }
            });
            let current = r.parse(&dir.join("memory.current"), "a byte count", |s| {
                s.parse::<u64>().ok()
            });
            if dir == own_dir {
                own_current = current;
            }
            if let Some(Some(max)) = max {
                let headroom = max.saturating_sub(current.unwrap_or(0));
                if tightest.is_none_or(|(h, _, _)| headroom < h) {
                    tightest = Some((headroom, max, current));
                }
            }
        }
        Some(match tightest {
            Some((_, max, current)) => (Some(max), current),
            None => (None, own_current),
        })
    }

    /// The cgroup2 mount point under the root and the hierarchy path mounted there. Without a
    /// `mountinfo`, the usual `/sys/fs/cgroup`; with one that has no cgroup2 line (cgroup v1
    /// only), `None`: v1 memory limits are not read.
    fn cgroup2_mount(&self, r: &mut Reader) -> Option<(PathBuf, String)> {
        let path = self.root.join("proc/self/mountinfo");
        let Some(text) = r.read(&path) else {
            return Some((self.root.join("sys/fs/cgroup"), "/".to_string()));
        };
        for (n, line) in text.lines().enumerate() {
            // `36 35 98:0 /root /mount/point opts [optional fields] - fstype source super-opts`
            let parsed = line.split_once(" - ").and_then(|(left, right)| {
                let left: Vec<&str> = left.split(' ').collect();
                let fstype = right.split(' ').next()?;
                (left.len() >= 5).then(|| (left[3], left[4], fstype))
            });
            match parsed {
                Some((root, mount_point, "cgroup2")) => {
                    return Some((self.root.join(unescape(mount_point)), unescape(root)));
                }
                Some(_) => {}
                None => {
                    r.warn(format!(
                        "{}: line {}: expected \"<id> <parent> <dev> <root> <mount point> ... - <fstype> ...\", found {line:?}",
                        path.display(),
                        n + 1
                    ));
                }
            }
        }
        None
    }

    /// The path of the `0::` line of `proc/self/cgroup` (cgroup v2 or hybrid).
    fn own_cgroup(&self, r: &mut Reader) -> Option<String> {
        let path = self.root.join("proc/self/cgroup");
        let text = r.read(&path)?;
        let own = text.lines().find_map(|l| l.strip_prefix("0::"));
        if own.is_none() && text.lines().all(|l| l.split(':').count() < 3) {
            r.warn(format!(
                "{}: expected lines \"<id>:<controllers>:<path>\", found {text:?}",
                path.display()
            ));
        }
        own.map(str::to_string)
    }

    fn temp_max(&self, r: &mut Reader) -> Option<i64> {
        let class = self.root.class("thermal");
        r.list(&class)
            .iter()
            .filter(|(name, _)| name.starts_with("thermal_zone"))
            .filter_map(|(_, dir)| {
                r.parse(
                    &dir.join("temp"),
                    "millidegrees Celsius as an integer",
                    |s| s.parse::<i64>().ok(),
                )
            })
            .max()
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (b[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads files for one probe, turning every failure but "absent" into a warning.
#[derive(Default)]
struct Reader {
    warnings: Vec<String>,
}

impl Reader {
    fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    /// The file's content without trailing blanks; `None` when absent (silently) or unreadable
    /// (with a warning).
    fn read(&mut self, path: &Path) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(s) => Some(s.trim_end().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                self.warn(format!("{}: {e}", path.display()));
                None
            }
        }
    }

    /// The file parsed by `parse`; a value it rejects is a warning that says what was expected.
    fn parse<T>(
        &mut self,
        path: &Path,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let content = self.read(path)?;
        let value = parse(content.trim());
        if value.is_none() {
            self.warn(format!(
                "{}: expected {expected}, found {content:?}",
                path.display()
            ));
        }
        value
    }

    /// The entries of a directory as (name, path), sorted by name; empty when it is absent.
    fn list(&mut self, dir: &Path) -> Vec<(String, PathBuf)> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.warn(format!("{}: {e}", dir.display()));
                return Vec::new();
            }
        };
        let mut out: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/sys/fs/cgroup"), "/sys/fs/cgroup");
        assert_eq!(unescape(r"/mnt/my\040disk"), "/mnt/my disk");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
        assert_eq!(
            unescape(r"/odd\04"),
            r"/odd\04",
            "a short escape is kept as is"
        );
        assert_eq!(unescape(r"/odd\9xy"), r"/odd\9xy");
    }
}
