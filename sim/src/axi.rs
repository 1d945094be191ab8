//! AXI vocabulary shared by the simulation backends: which transfer, to which register, and the
//! response the slave gave. Knows the register map only to name offsets in messages.

use std::fmt;

use caq_spec::regmap;

/// A register access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AxiOp {
    Read,
    Write,
}

impl fmt::Display for AxiOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AxiOp::Read => "read",
            AxiOp::Write => "write",
        })
    }
}

/// The response code of an AXI read or write (RRESP / BRESP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resp {
    Okay,
    /// Exclusive okay; not allowed on AXI4-Lite.
    ExOkay,
    SlvErr,
    DecErr,
}

impl Resp {
    /// Decodes the 2-bit RRESP / BRESP field (upper bits ignored).
    pub const fn from_bits(bits: u64) -> Resp {
        match bits & 3 {
            0 => Resp::Okay,
            1 => Resp::ExOkay,
            2 => Resp::SlvErr,
            _ => Resp::DecErr,
        }
    }
}

impl fmt::Display for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resp::Okay => "OKAY",
            Resp::ExOkay => "EXOKAY",
            Resp::SlvErr => "SLVERR",
            Resp::DecErr => "DECERR",
        })
    }
}

/// A byte offset in the register window, displayed with its register's name when it has one:
/// `CTRL (0x020)`, `unmapped 0x02c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegAddr(pub u32);

impl fmt::Display for RegAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match regmap::register_at(self.0) {
            Some(r) => write!(f, "{} (0x{:03x})", r.name, self.0),
            None => write!(f, "unmapped 0x{:03x}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_addresses_are_named_in_messages() {
        assert_eq!(RegAddr(regmap::CTRL.offset).to_string(), "CTRL (0x020)");
        assert_eq!(RegAddr(0x2c).to_string(), "unmapped 0x02c");
    }

    #[test]
    fn response_codes_decode_from_two_bits() {
        let all = [Resp::Okay, Resp::ExOkay, Resp::SlvErr, Resp::DecErr];
        for (bits, resp) in (0u64..).zip(all) {
            assert_eq!(Resp::from_bits(bits), resp);
            assert_eq!(Resp::from_bits(bits | 4), resp);
        }
    }
}
