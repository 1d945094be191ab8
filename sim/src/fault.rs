//! Memory fault injection, backend-neutral: a test marks a range of device addresses so that the
//! accelerator's reads or writes touching it are answered with SLVERR or DECERR, whichever backend
//! models the memory system (the functional model, the AXI memory model behind the RTL). This
//! module knows the AXI response codes; it does not know how a backend serves its bus.

use std::ops::Range;

use crate::axi::Resp;

/// Which of the accelerator's accesses a fault answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultDir {
    Reads,
    Writes,
    Both,
}

impl FaultDir {
    /// True when the fault answers a read (`write = false`) or a write.
    pub const fn covers(self, write: bool) -> bool {
        matches!(
            (self, write),
            (FaultDir::Both, _) | (FaultDir::Reads, false) | (FaultDir::Writes, true)
        )
    }
}

/// One injected fault: accesses in `dir` that touch `range` get `resp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub range: Range<u64>,
    pub resp: Resp,
    pub dir: FaultDir,
}

impl Fault {
    /// The response for an access of `[addr, addr + len)`, if this fault covers it.
    pub fn answer(&self, addr: u64, len: u64, write: bool) -> Option<Resp> {
        let end = addr.saturating_add(len);
        (self.dir.covers(write) && addr < self.range.end && self.range.start < end)
            .then_some(self.resp)
    }
}

/// A backend whose memory system can answer the accelerator's accesses with bus errors.
pub trait InjectFaults {
    /// From now on, accesses in `dir` that touch `range` are answered with `resp` (SLVERR or
    /// DECERR).
    fn inject(&mut self, range: Range<u64>, resp: Resp, dir: FaultDir);

    /// Removes every injected fault.
    fn clear_faults(&mut self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_answers_overlapping_accesses_in_its_direction_only() {
        let f = Fault {
            range: 0x100..0x108,
            resp: Resp::SlvErr,
            dir: FaultDir::Reads,
        };
        assert_eq!(f.answer(0xf8, 16, false), Some(Resp::SlvErr));
        assert_eq!(f.answer(0xf8, 8, false), None);
        assert_eq!(f.answer(0x108, 8, false), None);
        assert_eq!(f.answer(0x100, 8, true), None);
    }
}
