//! [`DmaPool`]: the bookkeeping of a DMA region's device addresses, cut into the buffers a
//! program needs (descriptor lists, weight planes, activations).
//!
//! It knows addresses only: no mapping, no copies, no syncs (those are [`crate::dma`]'s), and
//! nothing of what a buffer holds. It enforces what the accelerator can reach: every block lies
//! below `1 << axi.addr_width` (a 32-bit master cannot see a buffer above 4 GiB, research §6.5.2)
//! and, when given, inside a DMA window; and every block starts and ends on a cache line, so no two
//! buffers share a line and a sync of one never cleans or invalidates its neighbour.

use caq_spec::{AccelConfig, DeviceAddr, MemRegion};

use crate::dma::CACHE_LINE;
use crate::error::{HostError, Result};

/// A block handed out by [`DmaPool::alloc`]: `len` bytes (as requested) at `addr`. The pool
/// reserves `len` rounded up to whole cache lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub addr: DeviceAddr,
    pub len: u64,
}

impl Block {
    /// The first address past the block.
    pub fn end(&self) -> u64 {
        self.addr.0.saturating_add(self.len)
    }
}

/// A first-fit free-list allocator over a region of device addresses.
#[derive(Debug, Clone)]
pub struct DmaPool {
    name: String,
    region: MemRegion,
    /// `1 << addr_width`, saturated for a 64-bit master.
    addr_limit: u64,
    window: Option<MemRegion>,
    /// Free ranges `[start, end)`, sorted, disjoint, never adjacent (coalesced).
    free: Vec<(u64, u64)>,
}

/// `n` rounded up to a multiple of `align` (a power of two), `None` on overflow.
fn round_up(n: u64, align: u64) -> Option<u64> {
    n.checked_add(align - 1).map(|v| v & !(align - 1))
}

impl DmaPool {
    /// A pool over `region` (named `name` in messages) for a master of `master_addr_bits`
    /// address bits. The region's start is rounded up and its end down to whole cache lines.
    pub fn new(name: impl Into<String>, region: MemRegion, master_addr_bits: u32) -> DmaPool {
        let addr_limit = 1u64.checked_shl(master_addr_bits).unwrap_or(u64::MAX);
        let start = round_up(region.base.0, CACHE_LINE).unwrap_or(u64::MAX);
        let end = region.end() & !(CACHE_LINE - 1);
        let free = if start < end {
            vec![(start, end)]
        } else {
            Vec::new()
        };
        DmaPool {
            name: name.into(),
            region,
            addr_limit,
            window: None,
            free,
        }
    }

    /// A pool over `region` for the accelerator of `cfg` (its AXI master's `addr_width`).
    pub fn for_config(name: impl Into<String>, region: MemRegion, cfg: &AccelConfig) -> DmaPool {
        DmaPool::new(name, region, cfg.axi.addr_width)
    }

    /// Restricts every block to `window` (e.g. the DMA window the driver programs into
    /// WIN_BASE/WIN_LIMIT).
    pub fn with_window(mut self, window: MemRegion) -> DmaPool {
        self.window = Some(window);
        self
    }

    /// The region the pool manages.
    pub fn region(&self) -> MemRegion {
        self.region
    }

    /// Bytes free (possibly in several pieces).
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|(s, e)| e - s).sum()
    }

    /// Bytes handed out, including the padding of blocks to whole lines.
    pub fn used(&self) -> u64 {
        self.capacity() - self.free_bytes()
    }

    /// The largest free piece: the biggest block an alloc with line alignment can return.
    pub fn largest_free(&self) -> u64 {
        self.free.iter().map(|(s, e)| e - s).max().unwrap_or(0)
    }

    fn capacity(&self) -> u64 {
        let start = round_up(self.region.base.0, CACHE_LINE).unwrap_or(u64::MAX);
        let end = self.region.end() & !(CACHE_LINE - 1);
        end.saturating_sub(start)
    }

    /// The addresses every block must lie in: below the master's limit and inside the window.
    fn reachable(&self) -> (u64, u64) {
        let (mut lo, mut hi) = (0, self.addr_limit);
        if let Some(w) = self.window {
            lo = lo.max(w.base.0);
            hi = hi.min(w.end());
        }
        (lo, hi)
    }

    /// The first aligned place for `span` bytes within `[lo, hi)`, as (free-list index, start).
    fn first_fit(&self, span: u64, align: u64, lo: u64, hi: u64) -> Option<(usize, u64)> {
        self.free.iter().enumerate().find_map(|(i, &(s, e))| {
            let start = round_up(s.max(lo), align)?;
            let end = start.checked_add(span)?;
            (end <= e.min(hi)).then_some((i, start))
        })
    }

    /// Allocates `len` bytes aligned to `align` (a power of two; at least a cache line) for
    /// `what` (named in errors). First fit, lowest address first.
    ///
    /// Errors: [`HostError::AddressOutOfRange`] when the space exists but only where the master
    /// (or the window) cannot reach; [`HostError::DmaAlloc`] when it does not exist at all.
    pub fn alloc(&mut self, len: u64, align: u64, what: &str) -> Result<Block> {
        if len == 0 || !align.is_power_of_two() {
            return Err(HostError::Arg {
                what: "DMA allocation",
                why: format!(
                    "{what}: {len} bytes aligned to {align} (need a nonzero length and a power-of-two alignment)"
                ),
            });
        }
        let align = align.max(CACHE_LINE);
        let too_big = || HostError::DmaAlloc {
            pool: self.name.clone(),
            requested: len,
            available: self.free_bytes(),
        };
        let span = round_up(len, CACHE_LINE).ok_or_else(too_big)?;
        let (lo, hi) = self.reachable();
        if let Some((i, start)) = self.first_fit(span, align, lo, hi) {
            self.take(i, start, start + span);
            return Ok(Block {
                addr: DeviceAddr(start),
                len,
            });
        }
        // No reachable space: say why, naming the place the block would have had.
        let Some((_, start)) = self.first_fit(span, align, 0, u64::MAX) else {
            return Err(too_big());
        };
        let end = start + span;
        let (limit_base, limit_end, why) = match self.window {
            Some(w) if !w.contains(DeviceAddr(start), span) => {
                (w.base.0, w.end(), "outside the DMA window")
            }
            _ => (0, self.addr_limit, "beyond the AXI master's address width"),
        };
        Err(HostError::AddressOutOfRange {
            what: what.to_string(),
            addr: start,
            end,
            limit_base,
            limit_end,
            why,
        })
    }

    /// Removes `[start, end)` from free range `i` (which contains it).
    fn take(&mut self, i: usize, start: u64, end: u64) {
        let (s, e) = self.free[i];
        match (s < start, end < e) {
            (false, false) => {
                self.free.remove(i);
            }
            (true, false) => self.free[i] = (s, start),
            (false, true) => self.free[i] = (end, e),
            (true, true) => {
                self.free[i] = (s, start);
                self.free.insert(i + 1, (end, e));
            }
        }
    }

    /// Returns `block` to the pool, merging it with free neighbours. A block the pool did not
    /// hand out (or already has back) is an error, and the pool is unchanged.
    pub fn free(&mut self, block: Block) -> Result<()> {
        let start = block.addr.0;
        let end = round_up(block.len, CACHE_LINE).and_then(|s| start.checked_add(s));
        let bad = |why: &str| HostError::Arg {
            what: "DMA free",
            why: format!(
                "block [{start:#x}, +{:#x}) of pool {}: {why}",
                block.len, self.name
            ),
        };
        let Some(end) = end else {
            return Err(bad("its end overflows"));
        };
        if block.len == 0
            || !start.is_multiple_of(CACHE_LINE)
            || !self.region.contains(block.addr, end - start)
        {
            return Err(bad("not a block of this pool"));
        }
        // The first free range at or after the block.
        let i = self.free.partition_point(|&(s, _)| s < start);
        let overlaps_prev = i > 0 && self.free[i - 1].1 > start;
        let overlaps_next = i < self.free.len() && self.free[i].0 < end;
        if overlaps_prev || overlaps_next {
            return Err(bad("already free (double free?)"));
        }
        let joins_prev = i > 0 && self.free[i - 1].1 == start;
        let joins_next = i < self.free.len() && self.free[i].0 == end;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.free[i - 1].1 = self.free[i].1;
                self.free.remove(i);
            }
            (true, false) => self.free[i - 1].1 = end,
            (false, true) => self.free[i].0 = start,
            (false, false) => self.free.insert(i, (start, end)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(base: u64, len: u64) -> MemRegion {
        MemRegion {
            base: DeviceAddr(base),
            len,
        }
    }

    fn pool() -> DmaPool {
        DmaPool::new("test", region(0x1000_0000, 0x1_0000), 32)
    }

    #[test]
    fn blocks_start_on_their_alignment_and_never_share_a_cache_line() {
        let mut p = pool();
        let a = p.alloc(1, 1, "a").unwrap();
        let b = p.alloc(100, 8, "b").unwrap();
        let c = p.alloc(64, 4096, "c").unwrap();
        assert_eq!(a.addr.0, 0x1000_0000);
        assert_eq!(b.addr.0, 0x1000_0040, "a's one byte takes a whole line");
        assert_eq!(b.len, 100, "the block keeps the requested length");
        assert_eq!(c.addr.0, 0x1000_1000);
        assert_eq!(p.used(), 64 + 128 + 64);
        let d = p.alloc(64, 64, "d").unwrap();
        assert_eq!(d.addr.0, 0x1000_00c0, "first fit: the gap before c is used");
        for (x, y) in [(a, b), (b, d), (d, c)] {
            assert!(x.end().div_ceil(64) * 64 <= y.addr.0, "{x:?} / {y:?}");
        }
        let e = p.alloc(8, 48, "e").unwrap_err();
        assert!(matches!(e, HostError::Arg { .. }), "{e}");
        let e = p.alloc(0, 64, "e").unwrap_err();
        assert!(e.to_string().contains("0 bytes"), "{e}");
    }

    #[test]
    fn freed_blocks_coalesce_into_one_range() {
        let mut p = pool();
        let blocks: Vec<_> = (0..4)
            .map(|i| p.alloc(0x1000, 64, &format!("b{i}")).unwrap())
            .collect();
        assert_eq!(p.free_bytes(), 0xc000);
        // b0 alone, b1 joins b0 (previous), b3 joins the tail (next), b2 joins both.
        p.free(blocks[0]).unwrap();
        p.free(blocks[1]).unwrap();
        assert_eq!((p.free_bytes(), p.largest_free()), (0xe000, 0xc000));
        p.free(blocks[3]).unwrap();
        assert_eq!(p.largest_free(), 0xd000, "b3 joined the tail");
        p.free(blocks[2]).unwrap();
        assert_eq!(
            (p.free_bytes(), p.largest_free(), p.used()),
            (0x1_0000, 0x1_0000, 0)
        );
        let whole = p.alloc(0x1_0000, 64, "whole").unwrap();
        assert_eq!(whole.addr.0, 0x1000_0000);
    }

    #[test]
    fn a_double_free_or_a_foreign_block_is_refused() {
        let mut p = pool();
        let a = p.alloc(0x100, 64, "a").unwrap();
        p.free(a).unwrap();
        let e = p.free(a).unwrap_err();
        assert!(e.to_string().contains("already free"), "{e}");
        let foreign = Block {
            addr: DeviceAddr(0x2000_0000),
            len: 64,
        };
        let e = p.free(foreign).unwrap_err();
        assert!(e.to_string().contains("not a block of this pool"), "{e}");
        assert_eq!(p.free_bytes(), 0x1_0000, "the failed frees changed nothing");
    }

    #[test]
    fn exhaustion_reports_the_request_and_the_free_bytes() {
        let mut p = pool();
        p.alloc(0xf000, 64, "weights").unwrap();
        let e = p.alloc(0x2000, 64, "activations").unwrap_err();
        match &e {
            HostError::DmaAlloc {
                pool,
                requested,
                available,
            } => assert_eq!(
                (pool.as_str(), *requested, *available),
                ("test", 0x2000, 0x1000)
            ),
            other => panic!("expected DmaAlloc, got {other}"),
        }
        assert!(e.to_string().contains("cannot allocate 8192 bytes"), "{e}");
        let e = p.alloc(u64::MAX, 64, "huge").unwrap_err();
        assert!(matches!(e, HostError::DmaAlloc { .. }), "{e}");
    }

    #[test]
    fn a_32_bit_master_gets_blocks_below_4_gib_only() {
        // 8 KiB below 4 GiB and 8 KiB above.
        let mut p = DmaPool::new("straddle", region(0xffff_e000, 0x4000), 32);
        let low = p.alloc(0x1000, 64, "low").unwrap();
        assert_eq!(low.end(), 0xffff_f000);
        let last = p.alloc(0x1000, 64, "last").unwrap();
        assert_eq!(last.end(), 1 << 32, "a block may end exactly at 4 GiB");
        let e = p.alloc(0x1000, 64, "descriptors").unwrap_err();
        match &e {
            HostError::AddressOutOfRange {
                what,
                addr,
                end,
                limit_end,
                why,
                ..
            } => {
                assert_eq!(what, "descriptors");
                assert_eq!((*addr, *end, *limit_end), (1 << 32, 0x1_0000_1000, 1 << 32));
                assert_eq!(*why, "beyond the AXI master's address width");
            }
            other => panic!("expected AddressOutOfRange, got {other}"),
        }
        assert_eq!(p.free_bytes(), 0x2000, "the refused block was not taken");
        // A 40-bit master (ZynqMP) reaches the upper half.
        let mut wide = DmaPool::new("straddle", region(0xffff_e000, 0x4000), 40);
        wide.alloc(0x2000, 64, "low").unwrap();
        assert_eq!(wide.alloc(0x1000, 64, "high").unwrap().addr.0, 1 << 32);
    }

    #[test]
    fn a_block_must_lie_in_the_window() {
        let window = region(0x1000_4000, 0x2000);
        let mut p = pool().with_window(window);
        let a = p.alloc(0x1000, 64, "a").unwrap();
        assert_eq!(a.addr.0, 0x1000_4000, "first fit inside the window");
        p.alloc(0x1000, 64, "b").unwrap();
        let e = p.alloc(0x1000, 64, "c").unwrap_err();
        match &e {
            HostError::AddressOutOfRange {
                limit_base,
                limit_end,
                why,
                ..
            } => assert_eq!(
                (*limit_base, *limit_end, *why),
                (0x1000_4000, 0x1000_6000, "outside the DMA window")
            ),
            other => panic!("expected AddressOutOfRange, got {other}"),
        }
    }

    #[test]
    fn the_config_gives_the_address_width() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
        let cfg = AccelConfig::load(path).expect("shipped config");
        let mut p = DmaPool::for_config("cfg", region(0xffff_ff00, 0x200), &cfg);
        p.alloc(0x100, 64, "low").unwrap();
        let e = p.alloc(0x40, 64, "high").unwrap_err();
        assert!(
            e.to_string()
                .contains("beyond the AXI master's address width"),
            "{e}"
        );
    }
}
