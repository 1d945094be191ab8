//! A fake FPGA manager: `sys/class/fpga_manager/fpgaN` with the `name` and `state` attributes of
//! drivers/fpga/fpga-mgr.c (`state` is one of its `state_str` strings: `operating` once a
//! bitstream is loaded, `unknown` before, `write`, `write error`, ... during and after a load).

use std::path::{Path, PathBuf};

use super::FakeSys;

impl FakeSys {
    /// FPGA manager `fpga<index>` in `state`; returns its directory (write `state` there to change
    /// it).
    pub fn fpga_manager(&self, index: u32, state: &str) -> std::io::Result<PathBuf> {
        let dir = Path::new("sys/class/fpga_manager").join(format!("fpga{index}"));
        self.write(dir.join("name"), "Xilinx Zynq FPGA Manager\n")?;
        self.write(dir.join("state"), format!("{state}\n"))?;
        Ok(self.root().join(dir))
    }
}
