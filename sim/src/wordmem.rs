//! A word-addressed memory model behind the core's `mem_*` ports (the word protocol of
//! caq-hdl's `caq_core`), with seeded random stalls on every channel and an injectable bus error.
//! It stands in for the DMA engine and DDR until the AXI4 master is generated (issue 4).

use crate::rtl::RtlModel;
use crate::rtl::design::ports;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Flat device memory at `BASE`, served one 64-bit word per cycle at most, with random stalls.
pub struct WordMemory {
    bytes: Vec<u8>,
    rng: ChaCha8Rng,
    /// Probability that a channel is ready / valid in a given cycle.
    p: f64,
    rd: Option<(u64, u64)>,
    wr: Option<(u64, u64)>,
    wr_resp_pending: bool,
    /// Word address whose read returns SLVERR.
    pub poison: Option<u64>,
}

pub const BASE: u64 = 0x1000_0000;
pub const MEM_BYTES: usize = 1 << 20;

impl WordMemory {
    /// Memory of `MEM_BYTES` at `BASE`; each channel is ready/valid with probability `p` per cycle.
    pub fn new(seed: u64, p: f64) -> WordMemory {
        WordMemory {
            bytes: vec![0; MEM_BYTES],
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
            p,
            rd: None,
            wr: None,
            wr_resp_pending: false,
            poison: None,
        }
    }
    fn at(&self, addr: u64) -> usize {
        let off = addr.checked_sub(BASE).expect("address below memory") as usize;
        assert!(off + 8 <= MEM_BYTES, "address {addr:#x} beyond memory");
        off
    }
    pub fn write(&mut self, addr: u64, data: &[u8]) {
        let o = self.at(addr);
        self.bytes[o..o + data.len()].copy_from_slice(data);
    }
    pub fn read(&self, addr: u64, len: usize) -> &[u8] {
        let o = self.at(addr);
        &self.bytes[o..o + len]
    }
    fn coin(&mut self) -> bool {
        self.rng.random_bool(self.p)
    }

    /// One clock cycle: drive the inputs, evaluate, record the handshakes, tick.
    pub fn cycle(&mut self, m: &mut RtlModel) {
        let rd_req_ready = self.rd.is_none() && self.coin();
        let rd_valid = self.rd.is_some() && self.coin();
        let (word, err) = match self.rd {
            Some((addr, _)) => {
                let o = self.at(addr);
                let w = u64::from_le_bytes(self.bytes[o..o + 8].try_into().unwrap());
                (w, self.poison == Some(addr))
            }
            None => (0, false),
        };
        let wr_req_ready = self.wr.is_none() && !self.wr_resp_pending && self.coin();
        let wr_ready = self.wr.is_some() && self.coin();
        let wr_resp_valid = self.wr_resp_pending && self.coin();
        m.set(ports::MEM_RD_REQ_READY, rd_req_ready as u64).unwrap();
        m.set(ports::MEM_RD_VALID, rd_valid as u64).unwrap();
        m.set(ports::MEM_RD_DATA, word).unwrap();
        m.set(ports::MEM_RD_RESP, if err { 2 } else { 0 }).unwrap();
        m.set(ports::MEM_WR_REQ_READY, wr_req_ready as u64).unwrap();
        m.set(ports::MEM_WR_READY, wr_ready as u64).unwrap();
        m.set(ports::MEM_WR_RESP_VALID, wr_resp_valid as u64)
            .unwrap();
        m.set(ports::MEM_WR_RESP_RESP, 0).unwrap();
        m.eval();
        if rd_req_ready && m.is_high(ports::MEM_RD_REQ_VALID) {
            let addr = m.get(ports::MEM_RD_REQ_ADDR);
            let words = m.get(ports::MEM_RD_REQ_WORDS);
            assert_eq!(addr % 8, 0, "unaligned read request {addr:#x}");
            assert!(words >= 1, "empty read request at {addr:#x}");
            self.rd = Some((addr, words));
        } else if rd_valid && m.is_high(ports::MEM_RD_READY) {
            let (addr, left) = self.rd.unwrap();
            self.rd = if left == 1 {
                None
            } else {
                Some((addr + 8, left - 1))
            };
        }
        if wr_req_ready && m.is_high(ports::MEM_WR_REQ_VALID) {
            let addr = m.get(ports::MEM_WR_REQ_ADDR);
            let words = m.get(ports::MEM_WR_REQ_WORDS);
            assert_eq!(addr % 8, 0, "unaligned write request {addr:#x}");
            assert!(words >= 1);
            self.wr = Some((addr, words));
        } else if wr_ready && m.is_high(ports::MEM_WR_VALID) {
            let (addr, left) = self.wr.unwrap();
            let data = m.get(ports::MEM_WR_DATA).to_le_bytes();
            let strb = m.get(ports::MEM_WR_STRB);
            let o = self.at(addr);
            for (l, b) in data.iter().enumerate() {
                if strb >> l & 1 == 1 {
                    self.bytes[o + l] = *b;
                }
            }
            if left == 1 {
                self.wr = None;
                self.wr_resp_pending = true;
            } else {
                self.wr = Some((addr + 8, left - 1));
            }
        }
        if wr_resp_valid {
            self.wr_resp_pending = false;
        }
        m.tick();
    }
}
