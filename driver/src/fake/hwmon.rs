//! Fake hwmon devices: `sys/class/hwmon/hwmonN` with a `name` and the `power*`, `in*`/`curr*`
//! and `energy*` inputs (and labels) in the kernel's units and formats (one decimal integer and a
//! newline: µW, mV, mA, µJ). A test changes a value while a sampler reads it: every write goes
//! to a temporary file renamed over the attribute, so a reader sees the old value or the new one,
//! never a half-written file.

use std::path::{Path, PathBuf};

use super::FakeSys;

/// A fake hwmon device written by [`FakeSys::hwmon`].
#[derive(Clone, Debug)]
pub struct FakeHwmon {
    /// N of `hwmonN`.
    pub index: u32,
    /// `sys/class/hwmon/hwmonN`.
    pub dir: PathBuf,
}

impl FakeSys {
    /// A hwmon device `hwmon<index>` whose `name` is `name`, with no channels yet.
    pub fn hwmon(&self, index: u32, name: &str) -> std::io::Result<FakeHwmon> {
        let dir = self.root().join(format!("sys/class/hwmon/hwmon{index}"));
        std::fs::create_dir_all(&dir)?;
        let hw = FakeHwmon { index, dir };
        hw.set_attr("name", &format!("{name}\n"))?;
        Ok(hw)
    }
}

impl FakeHwmon {
    /// Sets (or creates) `power<ch>_input` to `uw` µW.
    pub fn power_input(&self, ch: u32, uw: u64) -> std::io::Result<&FakeHwmon> {
        self.set_attr(format!("power{ch}_input"), &format!("{uw}\n"))?;
        Ok(self)
    }

    /// Sets (or creates) `in<ch>_input` to `mv` mV and `curr<ch>_input` to `ma` mA.
    pub fn in_curr(&self, ch: u32, mv: i64, ma: i64) -> std::io::Result<&FakeHwmon> {
        self.set_attr(format!("in{ch}_input"), &format!("{mv}\n"))?;
        self.set_attr(format!("curr{ch}_input"), &format!("{ma}\n"))?;
        Ok(self)
    }

    /// Sets (or creates) `energy<ch>_input` to `uj` µJ.
    pub fn energy_input(&self, ch: u32, uj: u64) -> std::io::Result<&FakeHwmon> {
        self.set_attr(format!("energy{ch}_input"), &format!("{uj}\n"))?;
        Ok(self)
    }

    /// Writes `<kind><ch>_label` (kind `power`, `in`, `curr`, `energy`).
    pub fn label(&self, kind: &str, ch: u32, label: &str) -> std::io::Result<&FakeHwmon> {
        self.set_attr(format!("{kind}{ch}_label"), &format!("{label}\n"))?;
        Ok(self)
    }

    /// Replaces the attribute `rel` with `content` as is (to fake an odd driver or garbage),
    /// atomically.
    pub fn set_attr(&self, rel: impl AsRef<Path>, content: &str) -> std::io::Result<()> {
        let path = self.dir.join(rel);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| std::io::Error::other(format!("{}: no file name", path.display())))?;
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, &path)
    }

    /// Removes the attribute `rel` (a sensor that disappears while it is read).
    pub fn remove_attr(&self, rel: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::remove_file(self.dir.join(rel))
    }
}
