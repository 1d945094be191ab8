//! Typed right-hand sides: signals, slices, sized literals and concatenations whose width the
//! emitter knows, so that assignments and instance connections can be width-checked when the
//! Verilog is generated rather than when Verilator reads it.

use std::fmt;

/// A declared port, net or localparam of a module, as returned by the module builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sig {
    pub(crate) name: String,
    pub(crate) width: u32,
    pub(crate) signed: bool,
}

impl Sig {
    /// The identifier.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Width in bits.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// The whole signal as an expression.
    pub fn expr(&self) -> Expr {
        Expr::Sig(self.clone())
    }

    /// Bits `msb..=lsb` (checked against the width when the expression is used).
    pub fn slice(&self, msb: u32, lsb: u32) -> Expr {
        Expr::Slice {
            sig: self.clone(),
            msb,
            lsb,
        }
    }

    /// One bit.
    pub fn bit(&self, index: u32) -> Expr {
        self.slice(index, index)
    }
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// An expression of known width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A whole signal.
    Sig(Sig),
    /// `name[msb:lsb]` or `name[bit]`.
    Slice { sig: Sig, msb: u32, lsb: u32 },
    /// A sized literal, e.g. `32'h4341_5121`.
    Lit { width: u32, value: u64 },
    /// `{a, b, ...}`, most significant part first.
    Concat(Vec<Expr>),
    /// Free Verilog text whose width the caller asserts; used for operators the IR does not model.
    /// The names in it are not checked, so prefer the other forms.
    Raw { text: String, width: u32 },
}

impl Expr {
    /// A sized literal.
    pub fn lit(width: u32, value: u64) -> Expr {
        Expr::Lit { width, value }
    }

    /// Zero of the given width.
    pub fn zero(width: u32) -> Expr {
        Expr::Lit { width, value: 0 }
    }

    /// Free text with an asserted width.
    pub fn raw(text: impl Into<String>, width: u32) -> Expr {
        Expr::Raw {
            text: text.into(),
            width,
        }
    }

    /// The width the expression claims (validity is checked by the module that uses it).
    pub fn width(&self) -> u32 {
        match self {
            Expr::Sig(s) => s.width,
            Expr::Slice { msb, lsb, .. } => msb.saturating_sub(*lsb) + 1,
            Expr::Lit { width, .. } | Expr::Raw { width, .. } => *width,
            Expr::Concat(parts) => parts.iter().map(Expr::width).sum(),
        }
    }
}

impl From<Sig> for Expr {
    fn from(s: Sig) -> Expr {
        Expr::Sig(s)
    }
}

impl From<&Sig> for Expr {
    fn from(s: &Sig) -> Expr {
        s.expr()
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Sig(s) => f.write_str(&s.name),
            Expr::Slice { sig, msb, lsb } if msb == lsb && sig.width == 1 => f.write_str(&sig.name),
            Expr::Slice { sig, msb, lsb } if msb == lsb => write!(f, "{}[{msb}]", sig.name),
            Expr::Slice { sig, msb, lsb } => write!(f, "{}[{msb}:{lsb}]", sig.name),
            Expr::Lit { width, value } => f.write_str(&literal(*width, *value)),
            Expr::Concat(parts) => {
                f.write_str("{")?;
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                f.write_str("}")
            }
            Expr::Raw { text, .. } => f.write_str(text),
        }
    }
}

/// A sized Verilog literal: `1'b0` for one bit, `N'd<v>` for small values of few bits, otherwise
/// hexadecimal with a `_` every four digits (`32'h4341_5121`).
pub fn literal(width: u32, value: u64) -> String {
    if width == 1 {
        return format!("1'b{}", value & 1);
    }
    if width < 8 || value == 0 {
        return format!("{width}'d{value}");
    }
    hex_literal(width, value)
}

/// A sized hexadecimal literal with a `_` every four digits, zero-padded to the width.
pub fn hex_literal(width: u32, value: u64) -> String {
    let digits = width.div_ceil(4) as usize;
    let hex = format!("{value:0digits$x}");
    let mut grouped = String::with_capacity(hex.len() + hex.len() / 4);
    for (i, c) in hex.chars().enumerate() {
        if i > 0 && (hex.len() - i) % 4 == 0 {
            grouped.push('_');
        }
        grouped.push(c);
    }
    format!("{width}'h{grouped}")
}

/// `[msb:0]` for a width, the empty string for one bit.
pub fn range(width: u32) -> String {
    if width <= 1 {
        String::new()
    } else {
        format!("[{}:0]", width - 1)
    }
}

/// `text` (of `from` bits) zero-extended to `to` bits (unchanged when it is already as wide).
pub fn zext(text: &str, from: u32, to: u32) -> String {
    if from >= to {
        text.to_owned()
    } else {
        format!("{{{}'d0, {text}}}", to - from)
    }
}

/// `text`, a `from`-bit value, as `to` bits: its low bits, or zero-extended.
pub fn fit(text: &str, from: u32, to: u32) -> String {
    if from > to {
        format!("{text}[{}:0]", to - 1)
    } else {
        zext(text, from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_selects_the_low_bits_or_zero_extends() {
        assert_eq!(fit("a", 16, 12), "a[11:0]");
        assert_eq!(fit("a", 16, 17), "{1'd0, a}");
        assert_eq!(fit("a", 16, 16), "a");
    }

    #[test]
    fn literals_are_sized_and_grouped() {
        assert_eq!(literal(1, 1), "1'b1");
        assert_eq!(literal(2, 2), "2'd2");
        assert_eq!(literal(12, 0x80), "12'h080");
        assert_eq!(literal(32, 0x4341_5121), "32'h4341_5121");
        assert_eq!(literal(64, 0), "64'd0");
        assert_eq!(literal(64, 1), "64'h0000_0000_0000_0001");
        assert_eq!(literal(16, 0xabc), "16'h0abc");
        assert_eq!(hex_literal(12, 0), "12'h000");
    }

    #[test]
    fn expression_widths_and_text() {
        let s = Sig {
            name: "data_q".into(),
            width: 32,
            signed: false,
        };
        let e = Expr::Concat(vec![s.slice(15, 8), Expr::zero(3), s.bit(0)]);
        assert_eq!(e.width(), 12);
        assert_eq!(e.to_string(), "{data_q[15:8], 3'd0, data_q[0]}");
        assert_eq!(range(1), "");
        assert_eq!(range(12), "[11:0]");
    }
}
