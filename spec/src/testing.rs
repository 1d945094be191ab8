//! Seeded random [`AccelConfig`]s for tests of every crate (feature `testing`): [`random_config`]
//! draws a config that [`AccelConfig::validate`] accepts, from the same ranges the rules are
//! written with, so a rule that changes moves the generator with it.
//!
//! Sizes are biased toward small arrays and buffers (a Verilator build and a co-simulation of each
//! config must stay short) but every value the rules allow has a chance, except two caps a
//! simulation cannot pay for, both named in [`random_config`]'s documentation. The generator has its
//! own SplitMix64 stream, so this crate keeps its one-dependency footprint and a seed gives the same
//! config on every platform and in every version of `rand`.
//!
//! This module knows the config rules; it knows nothing of the hardware built from a config.

use crate::coherence::Coherence;
use crate::config::{
    ACT_BITS, ADDR_WIDTH, AccelConfig, ArrayConfig, AxiConfig, Board, COLS, DATA_WIDTH,
    GROUP_SIZE_MAX, ID_WIDTH, LimitsConfig, MAX_BURST, MAX_DESCRIPTORS, MAX_DIM, MAX_OUTSTANDING,
    MAX_PLANE_GROUPS, MemoryConfig, ROWS, SCHEMA_VERSION, max_k_for,
};
use crate::types::BitWidth;

/// The largest `limits.max_k` drawn. The activation banks hold one K-vector (`max_k` bytes); the
/// accumulator bound alone allows up to 2^31 / 3 for 1-bit weights and 2-bit activations, a
/// 700 MB memory no simulation wants. 65536 is zcu104's value.
pub const MAX_K_DRAWN: u32 = 65536;

/// A SplitMix64 stream (Steele, Lea, Flood 2014): tiny, fast and good enough to pick parameters.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`lo <= hi`).
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        let span = u64::from(hi - lo) + 1;
        // The modulo bias is below 2^-32 for spans of u32: irrelevant for picking parameters.
        lo + (self.next_u64() % span) as u32
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.range(0, 99) < percent
    }

    /// One of `items`, item `i` with weight `weights[i]`.
    pub fn weighted<T: Copy>(&mut self, items: &[T], weights: &[u32]) -> T {
        let total: u32 = weights.iter().sum();
        let mut pick = self.range(0, total - 1);
        for (&item, &w) in items.iter().zip(weights) {
            if pick < w {
                return item;
            }
            pick -= w;
        }
        items[items.len() - 1]
    }

    /// A power of two in `lo..=hi` (both powers of two), the smaller ones more likely: each
    /// doubling is half as likely as the one before, with the remainder on `lo`.
    pub fn small_power_of_two(&mut self, lo: u32, hi: u32) -> u32 {
        let mut v = lo;
        while v < hi && self.chance(50) {
            v *= 2;
        }
        v
    }

    /// A value in `lo..=hi`, log-uniform: every power-of-two decade equally likely.
    pub fn log_uniform(&mut self, lo: u32, hi: u32) -> u32 {
        let (a, b) = (32 - lo.max(1).leading_zeros(), 32 - hi.leading_zeros());
        let bits = self.range(a, b);
        let top = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let bottom = if bits == 0 { 0 } else { 1u32 << (bits - 1) };
        self.range(bottom.max(lo), top.min(hi))
    }
}

/// A valid config drawn from `seed`, named `rand-<seed as 16 hex digits>`.
///
/// Every field ranges over what [`AccelConfig::validate`] accepts (boards, rows, cols, weight-width
/// subsets, activation widths, plane groups, region sizes, buffer sizes, bus widths, burst lengths,
/// address and ID widths, outstanding reads, limits), with two caps for simulation cost:
/// `limits.max_k` stops at [`MAX_K_DRAWN`], and `memory.weight_buf_kib` is at least enough for one
/// 64-lane word of every row at 8 planes (`rows / 16` KiB), so that some layer of the widest
/// supported weight fits the weight bank (a config below that is valid but can run nothing).
pub fn random_config(seed: u64) -> AccelConfig {
    let mut r = SplitMix64::new(seed);
    let board = r.weighted(&[Board::Sim, Board::PynqZ2, Board::Zcu104], &[70, 15, 15]);
    let part = match board {
        Board::Sim => "sim",
        Board::PynqZ2 => "xc7z020clg400-1",
        Board::Zcu104 => "xczu7ev-ffvc1156-2-e",
    };
    let array = random_array(&mut r);
    let memory = random_memory(&mut r, array.rows);
    let axi = random_axi(&mut r, board);
    let limits = random_limits(&mut r, &array);
    let cfg = AccelConfig {
        schema_version: SCHEMA_VERSION,
        name: format!("rand-{seed:016x}"),
        board,
        part: part.to_string(),
        clock_mhz: f64::from(r.weighted(&[100, 50, 150, 200, 10, 500], &[50, 10, 15, 15, 5, 5])),
        array,
        memory,
        axi,
        limits,
    };
    debug_assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    cfg
}

fn random_array(r: &mut SplitMix64) -> ArrayConfig {
    let rows = r.small_power_of_two(4, *ROWS.end());
    let cols = r.weighted(&COLS, &[45, 25, 15, 15]);
    let weight_bits: Vec<u32> = if r.chance(35) {
        (1..=u32::from(BitWidth::MAX.get())).collect()
    } else {
        loop {
            let picked: Vec<u32> = (1..=u32::from(BitWidth::MAX.get()))
                .filter(|_| r.chance(50))
                .collect();
            if !picked.is_empty() {
                break picked;
            }
        }
    };
    let group_size = if r.chance(30) {
        0
    } else {
        r.small_power_of_two(cols, GROUP_SIZE_MAX)
    };
    ArrayConfig {
        rows,
        cols,
        weight_bits,
        act_bits: r.range(*ACT_BITS.start(), *ACT_BITS.end()),
        max_plane_groups: r.range(*MAX_PLANE_GROUPS.start(), *MAX_PLANE_GROUPS.end()),
        group_size,
        global_pool: r.chance(50),
    }
}

fn random_memory(r: &mut SplitMix64, rows: u32) -> MemoryConfig {
    let mut kib = |lo: u32| {
        if r.chance(90) {
            r.log_uniform(lo, 64.max(lo))
        } else {
            r.log_uniform(lo, 4096)
        }
    };
    MemoryConfig {
        weight_buf_kib: kib((rows / 16).max(1)),
        act_buf_kib: kib(1),
        // Output staging: MIN_STAGE_BYTES per row at least (the config rule).
        acc_buf_kib: kib((rows * crate::shape::MIN_STAGE_BYTES).div_ceil(1024)),
    }
}

fn random_axi(r: &mut SplitMix64, board: Board) -> AxiConfig {
    let pynq = board == Board::PynqZ2;
    let max_burst_cap = if pynq { 16 } else { *MAX_BURST.end() };
    let max_burst = 1 << r.range(0, max_burst_cap.trailing_zeros());
    let addr_width = if pynq {
        32
    } else if r.chance(70) {
        r.weighted(&[32, 40, 48, 64], &[40, 30, 15, 15])
    } else {
        r.range(*ADDR_WIDTH.start(), *ADDR_WIDTH.end())
    };
    AxiConfig {
        data_width: r.weighted(&DATA_WIDTH, &[60, 40]),
        max_burst,
        addr_width,
        id_width: r.range(*ID_WIDTH.start(), *ID_WIDTH.end()),
        max_outstanding_reads: r.range(*MAX_OUTSTANDING.start(), *MAX_OUTSTANDING.end()),
        // I/O coherence where the board has a port for it (zcu104's HPC), a third of the time.
        coherence: if crate::board::board_map(board).is_some_and(|m| m.dma_port_coherent.is_some())
            && r.chance(33)
        {
            Coherence::Io
        } else {
            Coherence::None
        },
    }
}

fn random_limits(r: &mut SplitMix64, array: &ArrayConfig) -> LimitsConfig {
    let wmax = array
        .weight_bits
        .iter()
        .max()
        .and_then(|&w| BitWidth::try_from(w as u8).ok())
        .unwrap_or(BitWidth::MAX);
    let act = BitWidth::try_from(array.act_bits as u8).unwrap_or(BitWidth::MAX);
    let k_limit = max_k_for(wmax, act).min(MAX_K_DRAWN);
    let max_k = if r.chance(85) {
        r.log_uniform(256.min(k_limit), k_limit)
    } else {
        r.log_uniform(1, 255.min(k_limit))
    };
    let max_descriptors = if r.chance(85) {
        r.log_uniform(16, *MAX_DESCRIPTORS.end())
    } else {
        r.range(*MAX_DESCRIPTORS.start(), 15)
    };
    let max_dim = if r.chance(85) {
        r.log_uniform(256, *MAX_DIM.end())
    } else {
        r.range(*MAX_DIM.start(), 255)
    };
    LimitsConfig {
        max_descriptors,
        max_k,
        max_dim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drawn_config_is_valid_and_a_seed_gives_the_same_config() {
        for seed in 0..2000 {
            let cfg = random_config(seed);
            assert!(
                cfg.problems().is_empty(),
                "seed {seed}: {:?}",
                cfg.problems()
            );
            assert_eq!(cfg, random_config(seed));
        }
    }

    #[test]
    fn draws_cover_the_ranges_the_rules_allow() {
        let cfgs: Vec<AccelConfig> = (0..4000).map(random_config).collect();
        let has = |f: &dyn Fn(&AccelConfig) -> bool| cfgs.iter().any(f);
        for rows in [4, 8, 16, 32, 64] {
            assert!(has(&|c| c.array.rows == rows), "rows {rows}");
        }
        for cols in COLS {
            assert!(has(&|c| c.array.cols == cols), "cols {cols}");
        }
        for a in ACT_BITS {
            assert!(has(&|c| c.array.act_bits == a), "act_bits {a}");
        }
        for g in MAX_PLANE_GROUPS {
            assert!(
                has(&|c| c.array.max_plane_groups == g),
                "max_plane_groups {g}"
            );
        }
        for w in 1..=8 {
            assert!(has(&|c| c.array.weight_bits == [w]), "weight_bits [{w}]");
        }
        for b in 0..=8 {
            assert!(has(&|c| c.axi.max_burst == 1 << b), "max_burst 2^{b}");
        }
        for board in [Board::Sim, Board::PynqZ2, Board::Zcu104] {
            assert!(has(&|c| c.board == board), "{board:?}");
        }
        assert!(has(&|c| c.array.group_size == 0));
        assert!(has(&|c| c.array.group_size == GROUP_SIZE_MAX));
        assert!(has(&|c| c.axi.data_width == 128));
        assert!(has(&|c| c.axi.addr_width == 64));
        assert!(has(&|c| c.axi.id_width == 1) && has(&|c| c.axi.id_width == 8));
        assert!(has(&|c| c.axi.max_outstanding_reads == 1));
        assert!(has(&|c| c.axi.max_outstanding_reads == 16));
        assert!(has(&|c| c.limits.max_descriptors == 1));
        assert!(has(&|c| c.limits.max_k < 64) && has(&|c| c.limits.max_k > 32768));
        assert!(has(&|c| c.memory.act_buf_kib > 1024));
        // Small arrays dominate.
        let small = cfgs.iter().filter(|c| c.array.rows <= 8).count();
        assert!(small > cfgs.len() / 2, "{small} of {}", cfgs.len());
    }
}
