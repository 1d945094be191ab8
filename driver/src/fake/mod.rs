//! A fake sysfs/procfs/dev tree for tests of the driver without a board: the files the kernel
//! would create, in the kernel's formats, under a directory the test owns (pass it to
//! [`crate::sys::SysRoot::new`]); a fake `/dev/uioN` interrupt file (`uio::irq_pair`); a
//! [`recorder::Recorder`] that logs every device call in order; and (feature `sim`) the
//! [`board::FakeBoard`] that plays the hardware behind them. Public so that applications built on
//! caq-driver can test their own code the same way.

#[cfg(feature = "sim")]
pub mod board;
pub mod context;
pub mod fpga;
pub mod hwmon;
pub mod recorder;
pub mod udmabuf;
pub mod uio;

use std::path::{Path, PathBuf};

/// A fake tree under `root`.
#[derive(Clone, Debug)]
pub struct FakeSys {
    root: PathBuf,
}

impl FakeSys {
    /// A fake tree in `root` (an existing, normally empty, directory).
    pub fn new(root: impl Into<PathBuf>) -> FakeSys {
        FakeSys { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `content` to `rel` under the root, creating directories.
    pub fn write(
        &self,
        rel: impl AsRef<Path>,
        content: impl AsRef<[u8]>,
    ) -> std::io::Result<PathBuf> {
        let p = self.root.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&p, content)?;
        Ok(p)
    }
}
