//! A fake u-dma-buf: the sysfs attributes of ikwzm/udmabuf v5 in the kernel's formats, and a
//! regular file of the buffer's size standing in for `/dev/<name>` (a file-backed mmap plays the
//! reserved memory).
//!
//! There is no `ioctl_version`, so [`crate::dma::UDmaBuf`] sends its sync commands through the
//! `sync_for_cpu` / `sync_for_device` attributes, where a test reads them back. Nothing here
//! syncs anything: the attributes are plain files.

use std::path::{Path, PathBuf};

use super::FakeSys;

impl FakeSys {
    /// A u-dma-buf `name` of `size` bytes at `phys_addr` under `sys/class/u-dma-buf`, plus
    /// `dev/<name>`; returns its sysfs directory.
    pub fn udmabuf(
        &self,
        name: &str,
        phys_addr: u64,
        size: u64,
        dma_coherent: bool,
    ) -> std::io::Result<PathBuf> {
        self.udmabuf_in_class("u-dma-buf", name, phys_addr, size, dma_coherent)
    }

    /// As [`FakeSys::udmabuf`], under the pre-v2 class name `sys/class/udmabuf`.
    pub fn udmabuf_legacy(
        &self,
        name: &str,
        phys_addr: u64,
        size: u64,
        dma_coherent: bool,
    ) -> std::io::Result<PathBuf> {
        self.udmabuf_in_class("udmabuf", name, phys_addr, size, dma_coherent)
    }

    fn udmabuf_in_class(
        &self,
        class: &str,
        name: &str,
        phys_addr: u64,
        size: u64,
        dma_coherent: bool,
    ) -> std::io::Result<PathBuf> {
        let dir = Path::new("sys/class").join(class).join(name);
        // u-dma-buf.c's show functions and the values a freshly probed device holds
        // (sync_mode starts at SYNC_MODE_NONCACHED = 1, the sync state at 0, quirk_mmap_mode at
        // its ARM/ARM64 default 2, always on). `%pad` of a 64-bit dma_addr_t is 0x and 16 digits.
        let attrs: [(&str, String); 12] = [
            ("driver_version", "5.0.0\n".into()),
            ("phys_addr", format!("0x{phys_addr:016x}\n")),
            ("size", format!("{size}\n")),
            ("sync_mode", "1\n".into()),
            ("sync_offset", "0x0\n".into()),
            ("sync_size", "0\n".into()),
            ("sync_direction", "0\n".into()),
            ("sync_owner", "0\n".into()),
            ("sync_for_cpu", "0\n".into()),
            ("sync_for_device", "0\n".into()),
            ("dma_coherent", format!("{}\n", u8::from(dma_coherent))),
            ("quirk_mmap_mode", "2\n".into()),
        ];
        for (attr, value) in attrs {
            self.write(dir.join(attr), value)?;
        }
        let dev = self.write(Path::new("dev").join(name), [])?;
        std::fs::File::options()
            .write(true)
            .open(dev)?
            .set_len(size)?;
        Ok(self.root().join(dir))
    }
}
