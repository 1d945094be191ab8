//! Typed port handles: an input cannot be read back through `get` nor an output driven, and a port
//! wider than 64 bits only takes and gives 32-bit word arrays. The handles themselves are generated
//! into `design::ports` from the design's port list.

/// Direction of a top-level port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortDir {
    In,
    Out,
}

/// A port of the top module as caq-hdl declared it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    pub name: &'static str,
    pub dir: PortDir,
    pub width: u32,
    pub signed: bool,
}

/// The waveform format compiled into the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    Vcd,
    Fst,
}

macro_rules! port_handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            /// Position in the shim's function table of this kind of port.
            index: usize,
            name: &'static str,
            width: u32,
            signed: bool,
        }

        impl $name {
            #[allow(
                dead_code,
                reason = "called by the generated handles only when the design has a port of this kind"
            )]
            pub(crate) const fn new(index: usize, name: &'static str, width: u32, signed: bool) -> Self {
                Self { index, name, width, signed }
            }

            pub(crate) const fn index(self) -> usize {
                self.index
            }

            /// The Verilog port name.
            pub const fn name(self) -> &'static str {
                self.name
            }

            /// Width in bits.
            pub const fn width(self) -> u32 {
                self.width
            }

            /// True when the port is declared `signed`.
            pub const fn signed(self) -> bool {
                self.signed
            }

            /// 32-bit words the value takes in a word array.
            pub const fn words(self) -> usize {
                self.width.div_ceil(32) as usize
            }
        }
    };
}

port_handle!(
    /// An input of at most 64 bits.
    InPort
);
port_handle!(
    /// An output of at most 64 bits.
    OutPort
);
port_handle!(
    /// An input wider than 64 bits, driven as 32-bit words, least significant first.
    WideInPort
);
port_handle!(
    /// An output wider than 64 bits, read as 32-bit words, least significant first.
    WideOutPort
);
