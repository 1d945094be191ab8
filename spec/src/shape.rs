//! [`CoreShape`]: the layer engine's buffer geometry derived from an [`AccelConfig`], and the
//! device's own capacity rule on a descriptor ([`CoreShape::check_capacity`], reported as
//! BAD_SHAPE after the checks of `descriptor::check_fetched`).
//!
//! The generator sizes its memories from this, the functional model and the compiler refuse what
//! it refuses; nothing else derives these values. This module knows the config and the
//! descriptor; it does not know Verilog or models.

use crate::config::AccelConfig;
use crate::descriptor::{LayerDescriptor, Opcode};

fn prev_power_of_two(n: u32) -> u32 {
    if n == 0 {
        0
    } else {
        1 << (31 - n.leading_zeros())
    }
}

/// Buffer geometry derived from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreShape {
    pub rows: u32,
    pub cols: u32,
    /// 64-bit words per weight bank (one bank per row).
    pub wdepth: u32,
    /// Activation banks (C/8), each 64 bits wide.
    pub abanks: u32,
    /// Entries per activation bank.
    pub adepth: u32,
    /// Local region size (0: none) and the largest region count a layer may have.
    pub group_size: u32,
    pub max_regions: u32,
    pub addr_bits: u32,
    /// Conv2d feature-map buffer: 64-bit words (memory.act_buf_kib).
    pub fwords: u32,
    /// Output staging: bytes per row (memory.acc_buf_kib / rows, a power of two): the most output
    /// pixels (out_h · out_w) of a Conv2d layer.
    pub smax: u32,
}

impl CoreShape {
    /// The geometry of a config that passed [`AccelConfig::validate`] (whose rules include what
    /// the layer engine supports).
    pub fn of(cfg: &AccelConfig) -> CoreShape {
        let (rows, cols) = (cfg.array.rows, cfg.array.cols);
        let wdepth = cfg.memory.weight_buf_kib * 1024 / (rows * 8);
        let abanks = cols / 8;
        // The activation banks hold one K-vector (a Dense input or a Conv2d patch): MAX_K bytes.
        let adepth = cfg.limits.max_k.div_ceil(cols).next_power_of_two();
        let k_cap = (adepth * cols).min(64 * wdepth).min(cfg.limits.max_k);
        let fwords = cfg.memory.act_buf_kib * 1024 / 8;
        let smax = prev_power_of_two(cfg.memory.acc_buf_kib * 1024 / rows);
        let group_size = cfg.array.group_size;
        let max_regions = if group_size == 0 {
            1
        } else {
            k_cap.div_ceil(group_size)
        };
        CoreShape {
            rows,
            cols,
            wdepth,
            abanks,
            adepth,
            group_size,
            max_regions,
            addr_bits: cfg.axi.addr_width,
            fwords,
            smax,
        }
    }

    /// The device's own limits on a descriptor that passed every check of
    /// `caq_spec::descriptor::check_fetched`: its K-vector, planes, feature map and output pixels
    /// must fit the buffers. The core checks this last and reports BAD_SHAPE.
    pub fn check_capacity(&self, d: &LayerDescriptor) -> Result<(), String> {
        let k = d.k();
        let wpr = k.div_ceil(64);
        let planes: u64 = d
            .active_plane_groups()
            .iter()
            .map(|g| u64::from(g.bits.get()))
            .sum();
        if wpr * planes > u64::from(self.wdepth) {
            return Err(format!(
                "K = {k} at {planes} planes needs {} weight words per row: the buffer holds {}",
                wpr * planes,
                self.wdepth
            ));
        }
        let acap = u64::from(self.adepth) * u64::from(self.cols);
        if k > acap {
            return Err(format!("K = {k}: the activation banks hold {acap}"));
        }
        if d.op == Opcode::Conv2d {
            let fm = u64::from(d.input.c) * u64::from(d.input.h) * u64::from(d.input.w);
            if fm > 8 * u64::from(self.fwords) {
                return Err(format!(
                    "input feature map {}x{}x{} = {fm} bytes: the feature buffer holds {}",
                    d.input.c,
                    d.input.h,
                    d.input.w,
                    8 * self.fwords
                ));
            }
            let px = u64::from(d.output.h) * u64::from(d.output.w);
            if px > u64::from(self.smax) {
                return Err(format!(
                    "output {}x{} = {px} pixels: the output staging holds {} per channel",
                    d.output.h, d.output.w, self.smax
                ));
            }
        }
        Ok(())
    }

    /// Chunks (of C lanes) per 64-bit plane word.
    pub fn chunks_per_word(&self) -> u32 {
        64 / self.cols
    }
}
