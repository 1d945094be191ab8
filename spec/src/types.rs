//! Small value types the contract is written in: [`BitWidth`] and [`DeviceAddr`].
//!
//! They exist so that a bit-width or a device address never travels as a bare integer where a mix-up
//! would be silent. This module knows nothing about configs, registers or descriptors.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// A number of bits of an integer weight or activation: 1..=8.
///
/// Every precision in caq is at most 8 bits (weights are INT8 at full precision and split into
/// bit-planes; activations are at most 8 bits), so a `BitWidth` is always in `1..=8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct BitWidth(u8);

impl BitWidth {
    /// The narrowest width: one bit-plane.
    pub const MIN: BitWidth = BitWidth(1);
    /// The widest width: INT8.
    pub const MAX: BitWidth = BitWidth(8);

    /// The number of bits.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Every width from 1 to 8, ascending.
    pub fn all() -> impl Iterator<Item = BitWidth> {
        (Self::MIN.0..=Self::MAX.0).map(BitWidth)
    }
}

impl TryFrom<u8> for BitWidth {
    type Error = SpecError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        if (Self::MIN.0..=Self::MAX.0).contains(&value) {
            Ok(BitWidth(value))
        } else {
            Err(SpecError::BitWidth { value })
        }
    }
}

impl From<BitWidth> for u8 {
    fn from(bits: BitWidth) -> u8 {
        bits.0
    }
}

impl fmt::Display for BitWidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A byte address in the accelerator's view of memory (what its AXI master puts on the bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DeviceAddr(pub u64);

impl DeviceAddr {
    /// The address as a number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// True when the address is a multiple of `bytes`; `bytes = 0` aligns nothing.
    pub const fn is_aligned(self, bytes: u32) -> bool {
        bytes != 0 && self.0.is_multiple_of(bytes as u64)
    }
}

impl fmt::Display for DeviceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The rule for a name that reaches file names, tables and terminals (a config, a policy class,
/// a gate): short, and nothing a shell or a terminal would interpret.
pub const NAME_RULE: &str = "1..=64 letters, digits, '-' or '_'";

/// Whether `name` follows [`NAME_RULE`].
pub fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_width_accepts_one_to_eight_and_names_the_bad_value() {
        for v in 1..=8u8 {
            assert_eq!(BitWidth::try_from(v).map(u8::from).ok(), Some(v));
        }
        for v in [0u8, 9, 255] {
            let err = BitWidth::try_from(v).unwrap_err().to_string();
            assert!(
                err.contains(&v.to_string()) && err.contains("1..=8"),
                "{err}"
            );
        }
        assert_eq!(
            BitWidth::all().map(u8::from).collect::<Vec<_>>(),
            (1..=8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn bit_width_deserializes_through_the_range_check() {
        assert_eq!(
            serde_json::from_str::<BitWidth>("4").ok(),
            Some(BitWidth(4))
        );
        let err = serde_json::from_str::<BitWidth>("9")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bit width 9"), "{err}");
        assert_eq!(
            serde_json::to_string(&BitWidth(3)).ok().as_deref(),
            Some("3")
        );
    }

    #[test]
    fn device_addr_alignment_and_display() {
        assert!(DeviceAddr(0x1000).is_aligned(16));
        assert!(!DeviceAddr(0x1008).is_aligned(16));
        assert!(!DeviceAddr(0x1000).is_aligned(0));
        assert_eq!(DeviceAddr(0x1f00).to_string(), "0x1f00");
    }
}
