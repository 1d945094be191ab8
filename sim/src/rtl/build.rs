//! Building a Verilator model into a shared library, through an on-disk cache that every test
//! binary, every `caq` run and every CI step shares.
//!
//! A [`ModelSource`] (Verilog files, a top module, its clock) becomes `model.so` in
//! `<cache>/<key>/`, where `<key>` is a SHA-256 over everything the library depends on: the files'
//! names and text, the top module, the clock, the Verilator version and arguments, the C++
//! compiler's identity and flags, the trace format and [`SHIM_VERSION`]. `<cache>` is
//! `CAQ_VERILATOR_CACHE` if set, else `caq-verilator/` in the cargo target directory the running
//! binary lives in (found by its `CACHEDIR.TAG`), else the system temp directory.
//!
//! A build runs in `<cache>/tmp-<key>-<pid>/` and is renamed into place when complete, so a reader
//! that sees `<key>/` sees a whole library. Builders serialize on an exclusive `flock` of
//! `<cache>/<key>.lock`: the second binary to want a model waits for the first and loads its result.
//! The Verilator runtime is compiled once per (Verilator, compiler, flags, trace) into
//! `<cache>/runtime-<key>/` under the same scheme and linked into every model. A failed build is
//! moved to `<cache>/failed-<key>/`, its `build.log` holding every command and its output.
//!
//! Every load touches the model's `build.log`; each new build first removes the models, runtimes and
//! failed builds not used for [`KEEP_UNUSED_DAYS`] days (and temp dirs a crashed builder left
//! over a day ago), so a machine that runs random configs does not fill its disk.
//!
//! Steps: `verilator --cc` (warnings are logged, not fatal: `caq_hdl::lint` is the lint), the port
//! list read from the generated `V<top>.h`, the shim generated from it, every `.cpp` compiled with
//! `-O1 -fPIC -fvisibility=hidden` (jobs in parallel, `CAQ_VERILATOR_JOBS` or one per core), linked
//! `-shared`. This module knows the tools and the cache; it knows nothing of the accelerator.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::port::TraceFormat;
use super::shim::{self, SHIM_VERSION};
use crate::error::SimError;

/// The optimization level of every compiled file. Verilator's own makefiles use `-Os`; `-O1`
/// compiles about as fast and simulates as fast on these designs (docs/hardware.md has numbers).
const OPT: &str = "-O1";

/// Cache entries unused this long are removed when a new model is built.
pub const KEEP_UNUSED_DAYS: u64 = 7;

/// What to verilate: a set of Verilog files and the top module among them.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSource {
    /// Names the model in messages and in the cache's `info.txt`: a config, or a module bench.
    pub name: String,
    /// The top module.
    pub top: String,
    /// `(relative path, text)` of every file; `.v` and `.sv` files are the sources, others (headers)
    /// are found through `-I`.
    pub files: Vec<(String, String)>,
    /// The 1-bit clock input `tick` toggles (rising edge active).
    pub clock: String,
    /// The clock's frequency, which only sets the time stamps of a trace.
    pub clock_mhz: f64,
}

impl ModelSource {
    /// A module bench: `files` hold `top` and what it instantiates, clocked by `clk` at 100 MHz.
    pub fn module(top: &str, files: Vec<(String, String)>) -> ModelSource {
        ModelSource {
            name: format!("module {top}"),
            top: top.to_string(),
            files,
            clock: "clk".to_string(),
            clock_mhz: 100.0,
        }
    }
}

/// How a model is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// Compile tracing in (`RtlModel::trace_open`). Default: FST with feature `trace-fst`, VCD with
    /// `trace-vcd`, none otherwise.
    pub trace: Option<TraceFormat>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        let trace = if cfg!(feature = "trace-fst") {
            Some(TraceFormat::Fst)
        } else if cfg!(feature = "trace-vcd") {
            Some(TraceFormat::Vcd)
        } else {
            None
        };
        BuildOptions { trace }
    }
}

/// A library ready to load: where it is and what is known of it.
#[derive(Debug)]
pub(crate) struct Built {
    pub key: String,
    pub so: PathBuf,
    pub verilator_version: String,
}

/// The directory of the cache (created).
pub fn cache_dir() -> Result<PathBuf, SimError> {
    let dir = match std::env::var_os("CAQ_VERILATOR_CACHE") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => target_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("caq-verilator"),
    };
    fs::create_dir_all(&dir).map_err(|e| SimError::Io {
        path: dir.clone(),
        reason: format!("cannot create the Verilator model cache: {e}"),
    })?;
    Ok(dir)
}

/// The cargo target directory holding the running binary: the nearest ancestor with cargo's
/// `CACHEDIR.TAG`.
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

/// The tools, found once per process.
#[derive(Debug)]
struct Tools {
    verilator: PathBuf,
    /// `Verilator 5.006 2023-01-22 rev (Debian 5.006-3)`.
    verilator_version: String,
    /// `$VERILATOR_ROOT/include`.
    include: PathBuf,
    cxx: PathBuf,
    /// The first line of `c++ --version`.
    cxx_version: String,
}

fn tools() -> Result<&'static Tools, SimError> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    TOOLS
        .get_or_init(find_tools)
        .as_ref()
        .map_err(|reason| SimError::Tool {
            reason: reason.clone(),
        })
}

fn find_tools() -> Result<Tools, String> {
    let verilator =
        PathBuf::from(std::env::var_os("VERILATOR").unwrap_or_else(|| "verilator".into()));
    let first_line = |bin: &Path, what: &str| -> Result<String, String> {
        match Command::new(bin).arg("--version").output() {
            Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()),
            Ok(out) => Err(format!(
                "`{} --version` failed ({}): {}",
                bin.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(format!("`{}` not found: {what}", bin.display()))
            }
            Err(e) => Err(format!("cannot run `{}`: {e}", bin.display())),
        }
    };
    let verilator_version = first_line(
        &verilator,
        "caq-sim's Verilator models need Verilator >= 5.0 in PATH (Debian 12: `apt-get install \
         verilator`, or `bash scripts/setup.sh`), or VERILATOR pointing at the binary",
    )?;
    let major = verilator_version
        .strip_prefix("Verilator ")
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < 5) {
        return Err(format!(
            "`{}` reports `{verilator_version}`: caq-sim needs Verilator >= 5.0 (VerilatedContext \
             API)",
            verilator.display()
        ));
    }
    let root = match std::env::var_os("VERILATOR_ROOT") {
        Some(r) if !r.is_empty() => PathBuf::from(r),
        _ => {
            let out = Command::new(&verilator)
                .args(["--getenv", "VERILATOR_ROOT"])
                .output()
                .map_err(|e| format!("cannot run `{} --getenv`: {e}", verilator.display()))?;
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
    };
    let include = root.join("include");
    if !include.join("verilated.cpp").is_file() {
        return Err(format!(
            "{}: no verilated.cpp; set VERILATOR_ROOT to the directory holding Verilator's \
             `include/` (Debian: /usr/share/verilator)",
            include.display()
        ));
    }
    let cxx = PathBuf::from(std::env::var_os("CXX").unwrap_or_else(|| "c++".into()));
    let cxx_version = first_line(
        &cxx,
        "a C++17 compiler is needed to build Verilator models (`apt-get install g++`), or CXX \
         pointing at one",
    )?;
    Ok(Tools {
        verilator,
        verilator_version,
        include,
        cxx,
        cxx_version,
    })
}

impl Tools {
    fn cxx_flags(&self, trace: Option<TraceFormat>, obj: Option<&Path>) -> Vec<String> {
        let on = |b: bool| if b { "1" } else { "0" };
        let mut flags: Vec<String> = [
            "-std=c++17",
            OPT,
            "-fPIC",
            "-fvisibility=hidden",
            "-fvisibility-inlines-hidden",
            "-faligned-new",
            "-fcf-protection=none",
            "-w",
            "-DVM_COVERAGE=0",
            "-DVM_SC=0",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        flags.push(format!("-DVM_TRACE={}", on(trace.is_some())));
        flags.push(format!(
            "-DVM_TRACE_VCD={}",
            on(trace == Some(TraceFormat::Vcd))
        ));
        flags.push(format!(
            "-DVM_TRACE_FST={}",
            on(trace == Some(TraceFormat::Fst))
        ));
        flags.push(format!("-I{}", self.include.display()));
        flags.push(format!("-I{}", self.include.join("vltstd").display()));
        if let Some(obj) = obj {
            flags.push(format!("-I{}", obj.display()));
        }
        flags
    }

    fn verilator_args(top: &str, trace: Option<TraceFormat>) -> Vec<String> {
        let mut args: Vec<String> = [
            "--cc",
            "-Wno-fatal",
            "--x-assign",
            "unique",
            "--x-initial",
            "unique",
            "--top-module",
            top,
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        match trace {
            None => {}
            Some(TraceFormat::Vcd) => args.push("--trace".into()),
            Some(TraceFormat::Fst) => args.push("--trace-fst".into()),
        }
        args
    }

    fn runtime_sources(&self, trace: Option<TraceFormat>) -> Vec<PathBuf> {
        let mut files = vec![
            self.include.join("verilated.cpp"),
            self.include.join("verilated_threads.cpp"),
        ];
        match trace {
            None => {}
            Some(TraceFormat::Vcd) => files.push(self.include.join("verilated_vcd_c.cpp")),
            Some(TraceFormat::Fst) => files.push(self.include.join("verilated_fst_c.cpp")),
        }
        files
    }
}

fn hex(digest: &[u8]) -> String {
    digest[..16].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Half a clock period in picoseconds, for trace time stamps.
fn half_period_ps(clock_mhz: f64) -> u64 {
    ((500_000.0 / clock_mhz).round() as u64).max(1)
}

/// The cache key of a model: every input of its build.
fn model_key(tools: &Tools, src: &ModelSource, opts: BuildOptions) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &str| {
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value.as_bytes());
    };
    field("shim", &SHIM_VERSION.to_string());
    field("verilator", &tools.verilator_version);
    field(
        "verilator args",
        &Tools::verilator_args(&src.top, opts.trace).join(" "),
    );
    field("cxx", &tools.cxx_version);
    field("cxx flags", &tools.cxx_flags(opts.trace, None).join(" "));
    field("clock", &src.clock);
    field("half period ps", &half_period_ps(src.clock_mhz).to_string());
    let files: BTreeMap<&str, &str> = src
        .files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    for (name, text) in files {
        field("file", name);
        field("text", text);
    }
    hex(&h.finalize())
}

fn runtime_key(tools: &Tools, trace: Option<TraceFormat>) -> String {
    let mut h = Sha256::new();
    for part in [
        tools.verilator_version.as_str(),
        &tools.include.display().to_string(),
        &tools.cxx_version,
        &tools.cxx_flags(trace, None).join(" "),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

/// An exclusive `flock` on `<cache>/<key>.lock`, released on drop.
struct CacheLock {
    _lock: nix::fcntl::Flock<File>,
}

impl CacheLock {
    fn take(cache: &Path, key: &str) -> Result<CacheLock, SimError> {
        let path = cache.join(format!("{key}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| SimError::Io {
                path: path.clone(),
                reason: format!("cannot open the build lock: {e}"),
            })?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
            |(_, e)| SimError::Io {
                path,
                reason: format!("cannot lock: {e}"),
            },
        )?;
        Ok(CacheLock { _lock: lock })
    }
}

/// The log of one build: every command and its output, kept with the library.
struct Log {
    path: PathBuf,
    file: File,
}

impl Log {
    fn create(path: PathBuf) -> Result<Log, SimError> {
        let file = File::create(&path).map_err(|e| SimError::Io {
            path: path.clone(),
            reason: format!("cannot create the build log: {e}"),
        })?;
        Ok(Log { path, file })
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.file, "{text}");
    }
}

/// A step failed: the log says why.
struct StepFailed {
    tool: String,
    tail: String,
}

fn io_failed(path: &Path, e: impl std::fmt::Display) -> StepFailed {
    StepFailed {
        tool: "file system".into(),
        tail: format!("{}: {e}", path.display()),
    }
}

/// Runs one command, logging it and its output.
fn run(log: &Mutex<&mut Log>, tool: &str, cmd: &mut Command) -> Result<(), StepFailed> {
    let line = format!("$ {cmd:?}");
    let out = cmd.output();
    let mut log = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    log.line(&line);
    match out {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            log.line(text.trim_end());
            if out.status.success() {
                Ok(())
            } else {
                log.line(&format!("-> {}", out.status));
                let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                Err(StepFailed {
                    tool: tool.to_string(),
                    tail: lines[lines.len().saturating_sub(15)..].join("\n"),
                })
            }
        }
        Err(e) => {
            log.line(&format!("-> cannot run: {e}"));
            Err(StepFailed {
                tool: tool.to_string(),
                tail: format!("cannot run: {e}"),
            })
        }
    }
}

/// Compiles `sources` into `out_dir`, one object per source, in parallel; returns the objects.
fn compile_all(
    tools: &Tools,
    log: &mut Log,
    sources: &[PathBuf],
    flags: &[String],
    out_dir: &Path,
) -> Result<Vec<PathBuf>, StepFailed> {
    let jobs = std::env::var("CAQ_VERILATOR_JOBS")
        .ok()
        .and_then(|j| j.parse::<usize>().ok())
        .filter(|&j| j > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let objects: Vec<PathBuf> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let stem = s
                .file_stem()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
            out_dir.join(format!("{i:03}-{stem}.o"))
        })
        .collect();
    let next = Mutex::new(0usize);
    let failure: Mutex<Option<StepFailed>> = Mutex::new(None);
    let log = Mutex::new(log);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(sources.len()) {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let stop = failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .is_some();
                    if i >= sources.len() || stop {
                        return;
                    }
                    let mut cmd = Command::new(&tools.cxx);
                    cmd.args(flags)
                        .arg("-c")
                        .arg(&sources[i])
                        .arg("-o")
                        .arg(&objects[i]);
                    if let Err(e) = run(&log, "c++", &mut cmd) {
                        *failure
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                        return;
                    }
                }
            });
        }
    });
    match failure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(e) => Err(e),
        None => Ok(objects),
    }
}

/// Runs `build` in a temp directory unless `<cache>/<key>/` exists, then renames it into place;
/// one builder at a time per key, across processes.
fn cached(
    cache: &Path,
    key: &str,
    what: &str,
    build: impl FnOnce(&Path, &mut Log) -> Result<(), StepFailed>,
) -> Result<PathBuf, SimError> {
    let dir = cache.join(key);
    if dir.is_dir() {
        touch(&dir);
        return Ok(dir);
    }
    let _lock = CacheLock::take(cache, key)?;
    if dir.is_dir() {
        touch(&dir);
        return Ok(dir);
    }
    prune(cache);
    let tmp = cache.join(format!("tmp-{key}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| SimError::Io {
        path: tmp.clone(),
        reason: format!("cannot create: {e}"),
    })?;
    let mut log = Log::create(tmp.join("build.log"))?;
    let started = Instant::now();
    log.line(&format!("# {what}"));
    match build(&tmp, &mut log) {
        Ok(()) => {
            log.line(&format!(
                "# built in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            drop(log);
            fs::rename(&tmp, &dir).map_err(|e| SimError::Io {
                path: dir.clone(),
                reason: format!(
                    "cannot move the finished build from {} here: {e}",
                    tmp.display()
                ),
            })?;
            Ok(dir)
        }
        Err(failed) => {
            log.line(&format!(
                "# FAILED after {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            let log_name = log.path.file_name().map(PathBuf::from).unwrap_or_default();
            drop(log);
            let kept = cache.join(format!("failed-{key}"));
            let _ = fs::remove_dir_all(&kept);
            let log = if fs::rename(&tmp, &kept).is_ok() {
                kept.join(log_name)
            } else {
                tmp.join(log_name)
            };
            Err(SimError::Build {
                model: what.to_string(),
                tool: failed.tool,
                log,
                tail: failed.tail,
            })
        }
    }
}

/// Marks a cache entry used now (the mtime of its `build.log`, which pruning reads).
fn touch(dir: &Path) {
    if let Ok(f) = File::options().append(true).open(dir.join("build.log")) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Removes entries not used for [`KEEP_UNUSED_DAYS`] and temp dirs older than a day. Best effort:
/// an entry in use (under its lock) or touched since is kept; errors are ignored.
fn prune(cache: &Path) {
    let day = std::time::Duration::from_secs(24 * 3600);
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() {
            continue;
        }
        let keep_for = if name.starts_with("tmp-") {
            day
        } else {
            day * KEEP_UNUSED_DAYS as u32
        };
        let stamp = path.join("build.log");
        let age = fs::metadata(if stamp.is_file() { &stamp } else { &path })
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if age.is_some_and(|a| a > keep_for) {
            let key = name.strip_prefix("failed-").unwrap_or(&name);
            // Never under another builder's feet: skip an entry whose lock is held.
            let lock = cache.join(format!("{key}.lock"));
            let Ok(file) = OpenOptions::new().write(true).open(&lock) else {
                let _ = fs::remove_dir_all(&path);
                continue;
            };
            if let Ok(held) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                let _ = fs::remove_dir_all(&path);
                let _ = fs::remove_file(&lock);
                drop(held);
            }
        }
    }
}

/// The Verilator runtime's objects for a trace setting, compiled once per cache.
fn runtime(
    tools: &Tools,
    cache: &Path,
    trace: Option<TraceFormat>,
) -> Result<Vec<PathBuf>, SimError> {
    let key = format!("runtime-{}", runtime_key(tools, trace));
    let dir = cached(cache, &key, "the Verilator runtime", |tmp, log| {
        let flags = tools.cxx_flags(trace, None);
        compile_all(tools, log, &tools.runtime_sources(trace), &flags, tmp).map(|_| ())
    })?;
    let mut objects: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| SimError::Io {
            path: dir.clone(),
            reason: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    objects.sort();
    Ok(objects)
}

/// Builds (or finds in the cache) the library of `src`.
pub(crate) fn build(src: &ModelSource, opts: BuildOptions) -> Result<Built, SimError> {
    let tools = tools()?;
    let cache = cache_dir()?;
    let key = model_key(tools, src, opts);
    let what = format!("{} (top `{}`)", src.name, src.top);
    let dir = cache.join(&key);
    if dir.is_dir() {
        touch(&dir);
    } else {
        let runtime = runtime(tools, &cache, opts.trace)?;
        cached(&cache, &key, &what, |tmp, log| {
            build_model(tools, src, opts, &runtime, tmp, log)
        })?;
    }
    Ok(Built {
        key,
        so: dir.join("model.so"),
        verilator_version: tools.verilator_version.clone(),
    })
}

fn build_model(
    tools: &Tools,
    src: &ModelSource,
    opts: BuildOptions,
    runtime: &[PathBuf],
    tmp: &Path,
    log: &mut Log,
) -> Result<(), StepFailed> {
    let rtl = tmp.join("rtl");
    let mut sources = Vec::new();
    for (name, text) in &src.files {
        let rel = Path::new(name);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StepFailed {
                tool: "caq-sim".into(),
                tail: format!("file name `{name}`: expected a relative path without `..`"),
            });
        }
        let path = rtl.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| io_failed(parent, e))?;
        }
        fs::write(&path, text).map_err(|e| io_failed(&path, e))?;
        if path.extension().is_some_and(|e| e == "v" || e == "sv") {
            sources.push(path);
        }
    }
    sources.sort();
    let obj = tmp.join("obj");
    let mut cmd = Command::new(&tools.verilator);
    cmd.args(Tools::verilator_args(&src.top, opts.trace))
        .arg("--Mdir")
        .arg(&obj)
        .arg(format!("-I{}", rtl.display()))
        .args(&sources);
    run(&Mutex::new(&mut *log), "verilator", &mut cmd)?;
    let header = obj.join(format!("V{}.h", src.top));
    let text = fs::read_to_string(&header).map_err(|e| io_failed(&header, e))?;
    let ports = shim::ports_from_header(&text).map_err(|e| StepFailed {
        tool: "caq-sim shim".into(),
        tail: format!("{}: {e}", header.display()),
    })?;
    match ports.iter().find(|p| p.name == src.clock) {
        Some(p) if p.dir == super::PortDir::In && p.width == 1 => {}
        _ => {
            return Err(StepFailed {
                tool: "caq-sim shim".into(),
                tail: format!(
                    "`{}` has no 1-bit input `{}` to clock it (ModelSource::clock)",
                    src.top, src.clock
                ),
            });
        }
    }
    let shim_cpp = obj.join("caq_shim.cpp");
    fs::write(
        &shim_cpp,
        shim::cpp(&src.top, &ports, &src.clock, half_period_ps(src.clock_mhz)),
    )
    .map_err(|e| io_failed(&shim_cpp, e))?;
    let mut cpps: Vec<PathBuf> = fs::read_dir(&obj)
        .map_err(|e| io_failed(&obj, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cpp"))
        .collect();
    cpps.sort();
    let objects = compile_all(
        tools,
        log,
        &cpps,
        &tools.cxx_flags(opts.trace, Some(&obj)),
        &obj,
    )?;
    let mut link = Command::new(&tools.cxx);
    link.args(["-shared", "-pthread", "-Wl,-z,defs", "-o"])
        .arg(tmp.join("model.so"))
        .args(&objects)
        .args(runtime);
    if opts.trace == Some(TraceFormat::Fst) {
        link.arg("-lz");
    }
    run(&Mutex::new(&mut *log), "c++ (link)", &mut link)?;
    // The library is all a load needs; the generated C++ and objects are large (tens of MB for
    // zcu104) and rebuilt from the key's inputs on demand.
    fs::remove_dir_all(&obj).map_err(|e| io_failed(&obj, e))?;
    let info = format!(
        "model: {}\ntop: {}\nclock: {} ({} MHz)\nfiles: {}\nverilator: {} {}\nc++: {} {}\n",
        src.name,
        src.top,
        src.clock,
        src.clock_mhz,
        src.files
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        tools.verilator_version,
        Tools::verilator_args(&src.top, opts.trace).join(" "),
        tools.cxx_version,
        tools.cxx_flags(opts.trace, None).join(" "),
    );
    fs::write(tmp.join("info.txt"), info).map_err(|e| io_failed(tmp, e))?;
    Ok(())
}
