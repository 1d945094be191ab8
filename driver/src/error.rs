//! The one error type of caq-driver (the tools on top use it too): what went wrong, with the layer, register or value involved.

use caq_spec::ErrorCode;

pub type Result<T, E = HostError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Model(#[from] caq_model::ModelError),

    #[error(transparent)]
    Spec(#[from] caq_spec::SpecError),

    /// A layer the device cannot run as compiled (shape, capacity, bits, regions).
    #[error("layer '{layer}' does not fit config '{config}': {what}")]
    Layer {
        layer: String,
        config: String,
        what: String,
    },

    /// A value the caller passed that the program cannot take.
    #[error("{what}: {why}")]
    Arg { what: &'static str, why: String },

    /// The program's memory region is not inside the backend's device memory.
    #[error(
        "the program needs device memory [{base:#x}, {end:#x}); the backend offers [{mem_base:#x}, {mem_end:#x})"
    )]
    Memory {
        base: u64,
        end: u64,
        mem_base: u64,
        mem_end: u64,
    },

    /// The backend failed a register or memory access.
    #[error("device access failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// The device stopped a descriptor list with an error in STATUS (and was then reset).
    #[error(
        "device error {code_name} ({code}) on descriptor {desc} of the list, layer '{layer}' (STATUS = {status:#010x}); the device was reset"
    )]
    Device {
        layer: String,
        desc: u32,
        code: u8,
        code_name: &'static str,
        status: u32,
    },

    /// The interrupt came but STATUS shows neither DONE nor ERROR (the device was then reset).
    #[error(
        "the interrupt fired but STATUS = {status:#010x} is not DONE running layers {layers:?}; the device was reset"
    )]
    NotDone { layers: Vec<String>, status: u32 },

    /// The completion interrupt did not come. `hint` says what STATUS showed: DONE or ERROR set
    /// means the device finished and the interrupt never reached the CPU (wiring, trigger type,
    /// IRQ_EN); BUSY means the device was still running (or hung on the bus). Either way the
    /// device was then reset, so no job is left to finish into memory the next call reuses.
    #[error(
        "no completion interrupt within {timeout:?} running layers {layers:?} (STATUS = {status:#010x}): {hint}; the device was reset"
    )]
    Timeout {
        layers: Vec<String>,
        timeout: std::time::Duration,
        status: u32,
        hint: &'static str,
    },

    /// SOFT_RESET did not bring the device back to idle (STATUS still shows BUSY, DONE or
    /// ERROR): it may still read and write device memory. `cause` is the failure that asked for
    /// the reset, if any.
    #[error(
        "{}SOFT_RESET did not stop the device ({why}): it may still read and write device memory, so the accelerator touches none until a reset succeeds (Accelerator::reset, or reload the bitstream)",
        cause.as_ref().map(|c| format!("{c}; then ")).unwrap_or_default()
    )]
    ResetFailed {
        cause: Option<Box<HostError>>,
        /// What was seen: STATUS after the wait, or the register access that failed.
        why: String,
    },

    // ---- Finding and opening the device (UIO) ----
    /// No UIO device with that name under the sysfs root.
    #[error(
        "no UIO device named '{name}' under {root}: is the bitstream loaded, the device-tree overlay applied, and uio_pdrv_genirq's of_id set to the node's compatible (\"generic-uio\")?{found}"
    )]
    DeviceNotFound {
        name: String,
        root: std::path::PathBuf,
        /// The names that were found, for the message (empty or ` (found: a, b)`).
        found: String,
    },

    /// More than one UIO device has that name.
    #[error("{} UIO devices are named '{name}' ({}): give each node its own linux,uio-name", candidates.len(), candidates.join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },

    /// The device file cannot be opened for lack of permission.
    #[error(
        "permission denied opening {path}: add a udev rule such as SUBSYSTEM==\"{subsystem}\", GROUP=\"caq\", MODE=\"0660\" (see docs/deploy.md) and add your user to that group, or run as root"
    )]
    PermissionDenied {
        path: std::path::PathBuf,
        /// `uio` or `u-dma-buf`.
        subsystem: &'static str,
    },

    /// A handle used in a process other than the one that opened it (a `fork` child).
    #[error(
        "{path} was opened by process {opened_by}; process {pid} (a fork) may not use it: the register and DMA mappings are not inherited (MADV_DONTFORK), and the lock and the interrupt count belong to the parent; open the accelerator in this process after the parent closed it"
    )]
    Forked {
        path: std::path::PathBuf,
        opened_by: u32,
        pid: u32,
    },

    /// Another process holds the exclusive lock on the device file.
    #[error("{path} is busy: another process holds the accelerator (exclusive lock)")]
    DeviceBusy { path: std::path::PathBuf },

    /// A UIO map is smaller than the register window.
    #[error(
        "map {index} of {device} is {actual:#x} bytes; the register window needs {required:#x} (device-tree `reg` too small, or the wrong map)"
    )]
    MapTooSmall {
        device: String,
        index: usize,
        actual: u64,
        required: u64,
    },

    /// The kernel refused the mmap of a UIO map or DMA buffer.
    #[error("mmap of {path} (map {index}, {len:#x} bytes at offset {offset:#x}) failed: {source}")]
    MapRejected {
        path: std::path::PathBuf,
        index: usize,
        len: u64,
        offset: u64,
        #[source]
        source: std::io::Error,
    },

    /// A sysfs attribute that does not hold what the kernel writes there.
    #[error("{path}: expected {expected}, found {content:?}")]
    SysfsParse {
        path: std::path::PathBuf,
        content: String,
        expected: &'static str,
    },

    /// A file the driver needs could not be read or opened.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The FPGA manager reports the programmable logic as not programmed (or being programmed):
    /// a read of a PL address could hang the interconnect.
    #[error(
        "{path} reads \"{state}\", not \"operating\": the programmable logic holds no finished bitstream, and a register read could hang the interconnect; load the bitstream first (docs/deploy.md, step 5), then apply the overlay"
    )]
    FpgaNotOperating {
        path: std::path::PathBuf,
        state: String,
    },

    /// The device at the mapped address is not a caq accelerator of a compatible register map.
    #[error("{register} = {found:#010x}, expected {expected:#010x}: {hint}")]
    IdMismatch {
        register: &'static str,
        found: u32,
        expected: u32,
        hint: &'static str,
    },

    /// The loaded bitstream was generated from another config.
    #[error(
        "the bitstream was built from another config: expected '{expected_name}' (CONFIG_HASH {expected_hash}, {expected}), found CONFIG_HASH {found_hash} ({found}); regenerate the bitstream or pass the config it was built from"
    )]
    ConfigMismatch {
        expected_name: String,
        expected_hash: String,
        expected: String,
        found_hash: String,
        found: String,
    },

    /// The interrupt file reports that the device has no interrupt.
    #[error(
        "{path} has no interrupt ({source}): the device-tree node needs an `interrupts` property, or open with the polling wait strategy"
    )]
    NoInterrupt {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A per-layer bit-width setting or gate that does not fit the loaded model or the device.
    #[error("bad config: {field} = {value}: expected {expected}")]
    BadConfig {
        field: String,
        value: String,
        expected: String,
    },

    /// The DMA region is `dma-coherent` (the kernel skips every sync) but the bitstream's config
    /// drives traffic the port does not snoop.
    #[error(
        "{path} reads 1: the region is dma-coherent, so the kernel makes every cache sync a no-op, but config '{config}' (axi.coherence = \"{coherence}\") drives ARCACHE {arcache}, which the port does not snoop: outputs would go stale without an error; apply the overlay of that config (devicetree/{config}.dtso) or build the bitstream of a coherent config (configs/zcu104-hpc.toml)"
    )]
    CoherenceMismatch {
        path: std::path::PathBuf,
        config: String,
        coherence: &'static str,
        arcache: String,
    },

    // ---- DMA memory ----
    /// Not enough DMA memory.
    #[error(
        "cannot allocate {requested} bytes of DMA memory from {pool}: {available} bytes free (raise the u-dma-buf `size` in the device tree, or cma= on the kernel command line)"
    )]
    DmaAlloc {
        pool: String,
        requested: u64,
        available: u64,
    },

    /// A buffer the accelerator cannot reach.
    #[error(
        "{what} at [{addr:#x}, {end:#x}) is outside what the accelerator can address: [{limit_base:#x}, {limit_end:#x}) ({why})"
    )]
    AddressOutOfRange {
        what: String,
        addr: u64,
        end: u64,
        limit_base: u64,
        limit_end: u64,
        why: &'static str,
    },

    /// A cached mapping was required but u-dma-buf maps this buffer uncached.
    #[error(
        "a cached mapping of the u-dma-buf at {path} was asked for (--cached), but {why} (sync_mode = {sync_mode}, quirk_mmap_mode = {}): drop --cached, or set sync_mode without its SYNC_ALWAYS bit (4) and load u-dma-buf with quirk_mmap_mode=2",
        quirk_mmap_mode.map_or("absent".to_string(), |q| q.to_string())
    )]
    NotCacheable {
        path: std::path::PathBuf,
        sync_mode: u64,
        quirk_mmap_mode: Option<u64>,
        why: &'static str,
    },

    /// The kernel rejected a cache-maintenance command.
    #[error("{path}: sync command {command:#018x} ({what}) rejected: {source}")]
    SyncRejected {
        path: std::path::PathBuf,
        command: u64,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl HostError {
    /// Wraps a backend's error; a backend whose error type is `HostError` (the UIO backend)
    /// passes its error through unchanged.
    pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> HostError {
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
        match boxed.downcast::<HostError>() {
            Ok(h) => *h,
            Err(other) => HostError::Backend(other),
        }
    }

    /// An I/O error on `path`, with EACCES/EPERM turned into [`HostError::PermissionDenied`].
    pub(crate) fn io(
        path: impl Into<std::path::PathBuf>,
        subsystem: &'static str,
        e: std::io::Error,
    ) -> HostError {
        let path = path.into();
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => HostError::PermissionDenied { path, subsystem },
            _ => HostError::Io { path, source: e },
        }
    }

    pub(crate) fn device(layer: String, desc: u32, code: u8, status: u32) -> HostError {
        let code_name = ErrorCode::from_u8(code).map_or("unknown", ErrorCode::name);
        HostError::Device {
            layer,
            desc,
            code,
            code_name,
            status,
        }
    }
}
