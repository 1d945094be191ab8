//! Typed port handles: an input cannot be read back through `get` nor an output driven, and a port
//! wider than 64 bits only takes and gives 32-bit word arrays. Handles are resolved by name from a
//! loaded model's port table ([`super::ModelLib::input`] and friends) and belong to that library:
//! using one on a model of another library is a bug and panics.

/// Direction of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortDir {
    In,
    Out,
}

/// A port of a verilated module, as its library's port table declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    pub name: &'static str,
    pub dir: PortDir,
    pub width: u32,
}

/// The waveform format compiled into a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceFormat {
    Vcd,
    Fst,
}

macro_rules! port_handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            /// The library the handle was resolved in.
            lib: u32,
            /// Position in the library's port table.
            index: u32,
            name: &'static str,
            width: u32,
        }

        impl $name {
            pub(crate) const fn new(lib: u32, index: u32, name: &'static str, width: u32) -> Self {
                Self { lib, index, name, width }
            }

            pub(crate) const fn lib(self) -> u32 {
                self.lib
            }

            pub(crate) const fn index(self) -> u32 {
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
    /// An output (or an input read back) of at most 64 bits.
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

/// A bus input of either width (the AXI data buses are 64 or 128 bits, per config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyInPort {
    Narrow(InPort),
    Wide(WideInPort),
}

/// A bus output of either width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyOutPort {
    Narrow(OutPort),
    Wide(WideOutPort),
}
