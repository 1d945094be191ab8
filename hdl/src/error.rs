//! [`HdlError`]: the one error type of caq-hdl.
//!
//! Generation errors name the module and the signal, port or register involved; tool errors name the
//! tool, the command and quote the end of its log.

use std::path::PathBuf;

/// Everything that can go wrong in caq-hdl.
#[derive(Debug, thiserror::Error)]
pub enum HdlError {
    /// The config breaks a caq-spec rule.
    #[error(transparent)]
    Spec(#[from] caq_spec::SpecError),

    /// The config asks for something this generator version does not build.
    #[error("config '{config}': {what}")]
    Unsupported { config: String, what: String },

    /// A name is not a plain Verilog identifier or is a reserved word.
    #[error("module `{module}`: `{name}` is not a usable Verilog identifier ({why})")]
    BadIdentifier {
        module: String,
        name: String,
        why: &'static str,
    },

    /// Two ports, nets or instances of one module share a name.
    #[error("module `{module}`: `{name}` is declared twice")]
    DuplicateName { module: String, name: String },

    /// A port or net was given zero bits.
    #[error("module `{module}`: `{name}` has width 0; every signal needs at least one bit")]
    ZeroWidth { module: String, name: String },

    /// A signal is used but was never declared.
    #[error("module `{module}`: `{name}` is used but not declared")]
    Undeclared { module: String, name: String },

    /// A literal does not fit the width it was given.
    #[error("module `{module}`: literal {value:#x} does not fit in {width} bits")]
    LiteralOverflow {
        module: String,
        value: u64,
        width: u32,
    },

    /// A slice reaches outside its signal.
    #[error("module `{module}`: slice `{name}[{msb}:{lsb}]` is outside its {width} bits")]
    BadSlice {
        module: String,
        name: String,
        msb: u32,
        lsb: u32,
        width: u32,
    },

    /// An instance connects a signal of the wrong width to a port.
    #[error(
        "{instance}: port `{port}` is {expected} bits wide but is connected to `{expr}` ({found} \
         bits)"
    )]
    WidthMismatch {
        /// "module `m`, instance `u` of `sub`".
        instance: String,
        port: String,
        expected: u32,
        found: u32,
        expr: String,
    },

    /// A continuous assignment's sides differ in width.
    #[error(
        "module `{module}`: `assign {lhs}` is {expected} bits wide but `{rhs}` is {found} bits"
    )]
    AssignWidth {
        module: String,
        lhs: String,
        expected: u32,
        rhs: String,
        found: u32,
    },

    /// A continuous assignment drives something that is not a wire or an output port.
    #[error("module `{module}`: `{name}` cannot be driven by `assign` ({why})")]
    NotAssignable {
        module: String,
        name: String,
        why: &'static str,
    },

    /// An instance connects a port the instantiated module does not have.
    #[error("module `{module}`, instance `{instance}`: `{of}` has no port `{port}`")]
    UnknownPort {
        module: String,
        instance: String,
        of: String,
        port: String,
    },

    /// An instance leaves a port unconnected or connects it twice.
    #[error("module `{module}`, instance `{instance}` of `{of}`: port `{port}` {problem}")]
    PortConnection {
        module: String,
        instance: String,
        of: String,
        port: String,
        problem: &'static str,
    },

    /// An output of an instance is connected to something that cannot be driven.
    #[error(
        "module `{module}`, instance `{instance}`: output port `{port}` must drive a declared wire, \
         found `{expr}`"
    )]
    UndrivableOutput {
        module: String,
        instance: String,
        port: String,
        expr: String,
    },

    /// A register of the spec's table has no hardware behaviour in this generator.
    #[error(
        "register {name} (offset {offset:#05x}) of caq_spec::regmap::REGISTERS is not implemented by \
         caq_axil_regs: {why}"
    )]
    UnhandledRegister {
        name: &'static str,
        offset: u32,
        why: &'static str,
    },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A manifest.json could not be read back.
    #[error("{}: not a caq-hdl manifest: {message}", path.display())]
    Manifest { path: PathBuf, message: String },

    /// An external tool is not installed.
    #[error("`{tool}` was not found on PATH; install it with `apt-get install {package}`")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },

    /// An external tool ran and failed.
    #[error("`{command}` failed ({status}); log kept at {}; last lines:\n{tail}", log.display())]
    ToolFailed {
        command: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    /// Yosys `sta` cannot time some cell types of the netlist, so its worst path would not be the
    /// worst (the paths through them are cut).
    #[error(
        "yosys sta cannot time the {family} netlist of {part}: Yosys' Xilinx cell library has no \
         timing arcs for {}; sta would cut every path through them, so no worst path is reported \
         (sta output kept at {}). Timing works for -family xc7 only (docs/hardware.md, Timing)",
        cells.join(", "),
        log.display()
    )]
    TimingUnsupported {
        part: String,
        family: &'static str,
        cells: Vec<String>,
        log: PathBuf,
    },

    /// A tool's report did not contain what it should.
    #[error("{tool} report {}: {message}", log.display())]
    Report {
        tool: &'static str,
        log: PathBuf,
        message: String,
    },
}

/// Result with [`HdlError`].
pub type Result<T, E = HdlError> = std::result::Result<T, E>;
