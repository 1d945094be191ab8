//! Generates, verilates and compiles the RTL model (feature `verilator`).
//!
//! Owns the build-time steps and their failure messages; the text of the shim and of the Rust glue is
//! `shim`'s. Every error names the config, the file or the tool involved and what to do about it.

use std::env;
use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use caq_spec::AccelConfig;

use crate::shim::{Dir, Port, Shim, Trace};

/// The config built when `CAQ_SIM_CONFIG` is not set, relative to the workspace root.
const DEFAULT_CONFIG: &str = "configs/sim-small.toml";
/// Static library holding the Verilator runtime; reused across rebuilds in the same `OUT_DIR`.
const RUNTIME_LIB: &str = "caq_sim_vlrt";
/// Static library holding the verilated model and the shim; rebuilt on every run.
const MODEL_LIB: &str = "caq_sim_model";

pub fn build() -> Result<(), String> {
    println!("cargo::rerun-if-env-changed=CAQ_SIM_CONFIG");
    println!("cargo::rerun-if-env-changed=VERILATOR");
    println!("cargo::rerun-if-env-changed=VERILATOR_ROOT");
    println!("cargo::rerun-if-env-changed=CXX");
    println!("cargo::rerun-if-env-changed=CXXFLAGS");

    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or_else(|| format!("{}: no parent directory", manifest_dir.display()))?;

    let config_path = config_path(workspace);
    println!("cargo::rerun-if-changed={}", config_path.display());
    let config_text = fs::read_to_string(&config_path).map_err(|e| {
        format!(
            "{}: cannot read the accelerator config to simulate: {e}\n\
             (set CAQ_SIM_CONFIG to a config file, relative to the workspace root or absolute)",
            config_path.display()
        )
    })?;
    let origin = config_path.display().to_string();
    let cfg = AccelConfig::from_toml_str(&config_text, &origin).map_err(|e| e.to_string())?;
    let design = caq_hdl::generate(&cfg)
        .map_err(|e| format!("caq_hdl::generate failed for {origin}: {e}"))?;

    let ports = ports_of(&design, &origin)?;
    let rtl_dir = out_dir.join("rtl");
    let sources = write_rtl(&design, &rtl_dir)?;
    let tool = Verilator::find()?;
    let trace = Trace::from_features();

    let shim = Shim {
        top: &design.top,
        config_name: &cfg.name,
        config_path: &config_path,
        config_hash: design.config_hash.0,
        clock_mhz: cfg.clock_mhz,
        verilator_version: &tool.version,
        ports: &ports,
        trace,
    };
    write(&out_dir.join("config.toml"), &config_text)?;
    write(&out_dir.join("shim.cpp"), &shim.cpp())?;
    write(&out_dir.join("ffi.rs"), &shim.ffi_rs())?;
    write(
        &out_dir.join("params.rs"),
        &shim.params_rs(&out_dir.join("config.toml")),
    )?;

    let obj_dir = out_dir.join("obj_dir");
    tool.verilate(&design.top, &sources, &obj_dir, trace, &rtl_dir)?;
    compile_model(&tool, &obj_dir, &out_dir.join("shim.cpp"), trace)?;
    compile_runtime(&tool, &out_dir, trace)?;
    if trace == Trace::Fst {
        println!("cargo::rustc-link-lib=z");
    }
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|e| format!("environment variable {name}: {e} (set by cargo)"))
}

/// `CAQ_SIM_CONFIG`, relative to the workspace root unless absolute, or the default.
fn config_path(workspace: &Path) -> PathBuf {
    match env::var_os("CAQ_SIM_CONFIG") {
        Some(p) if !p.is_empty() => workspace.join(p),
        _ => workspace.join(DEFAULT_CONFIG),
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// The design's ports in shim form, checked for what the shim and `RtlModel` rely on.
fn ports_of(design: &caq_hdl::Design, origin: &str) -> Result<Vec<Port>, String> {
    let ports: Vec<Port> = design
        .ports
        .iter()
        .map(|p| Port {
            name: p.name.clone(),
            dir: match p.dir {
                caq_hdl::Dir::Input => Dir::In,
                caq_hdl::Dir::Output => Dir::Out,
            },
            width: p.width,
            signed: p.signed,
        })
        .collect();
    let what = format!("top module `{}` generated for {origin}", design.top);
    for p in &ports {
        let ident_ok = p
            .name
            .starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && p.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ident_ok {
            return Err(format!(
                "{what}: port `{}`: expected a lower-case Verilog identifier ([a-z_][a-z0-9_]*), \
                 which the shim uses unchanged as a C++ member and a C symbol suffix",
                p.name
            ));
        }
        if p.width == 0 {
            return Err(format!("{what}: port `{}` has width 0", p.name));
        }
    }
    for (name, dir) in [("clk", Dir::In), ("rst_n", Dir::In)] {
        match ports.iter().find(|p| p.name == name) {
            Some(p) if p.dir == dir && p.width == 1 => {}
            Some(p) => {
                return Err(format!(
                    "{what}: port `{name}` is {:?} width {}: expected a 1-bit input",
                    p.dir, p.width
                ));
            }
            None => {
                return Err(format!(
                    "{what}: no port `{name}`; RtlModel drives `clk` (rising edge) and `rst_n` \
                     (synchronous, active low)"
                ));
            }
        }
    }
    Ok(ports)
}

/// Writes the design's Verilog under `dir` (emptied first) and returns the files Verilator reads.
fn write_rtl(design: &caq_hdl::Design, dir: &Path) -> Result<Vec<PathBuf>, String> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("{}: cannot clear: {e}", dir.display()))?;
    }
    let mut sources = Vec::new();
    for file in &design.files {
        let rel = Path::new(&file.name);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!(
                "caq_hdl::Design file name `{}`: expected a relative path without `..`",
                file.name
            ));
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("{}: cannot create: {e}", parent.display()))?;
        }
        write(&path, &file.text)?;
        // Headers (`.vh`, `.svh`) are found through `-I`; only modules are passed as sources.
        if path.extension().is_some_and(|e| e == "v" || e == "sv") {
            sources.push(path);
        }
    }
    if sources.is_empty() {
        return Err("caq_hdl::Design has no .v or .sv file".to_string());
    }
    sources.sort();
    Ok(sources)
}

/// The Verilator found at build time.
struct Verilator {
    bin: PathBuf,
    /// `Verilator 5.006 2023-01-22 rev (Debian 5.006-3)`.
    version: String,
    /// `$VERILATOR_ROOT/include`.
    include: PathBuf,
}

impl Verilator {
    fn find() -> Result<Verilator, String> {
        let bin = PathBuf::from(env::var_os("VERILATOR").unwrap_or_else(|| "verilator".into()));
        let version = match Command::new(&bin).arg("--version").output() {
            Ok(out) if out.status.success() => {
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
            Ok(out) => {
                return Err(format!(
                    "`{} --version` failed ({}): {}",
                    bin.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(format!(
                    "`{}` not found: caq-sim's `verilator` feature builds a Verilator model of the \
                     generated RTL and needs Verilator >= 5.0 in PATH.\n\
                     Install it with `apt-get install verilator` (Debian 12 ships 5.006), point \
                     VERILATOR at the binary, or build without the feature \
                     (`--no-default-features`).",
                    bin.display()
                ));
            }
            Err(e) => return Err(format!("cannot run `{}`: {e}", bin.display())),
        };
        let major = version
            .strip_prefix("Verilator ")
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        if major.is_none_or(|m| m < 5) {
            return Err(format!(
                "`{}` reports `{version}`: caq-sim needs Verilator >= 5.0 (VerilatedContext API, \
                 hashed output file names)",
                bin.display()
            ));
        }
        let root = match env::var_os("VERILATOR_ROOT") {
            Some(r) if !r.is_empty() => PathBuf::from(r),
            _ => {
                let out = Command::new(&bin)
                    .args(["--getenv", "VERILATOR_ROOT"])
                    .output()
                    .map_err(|e| format!("cannot run `{} --getenv`: {e}", bin.display()))?;
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
        Ok(Verilator {
            bin,
            version,
            include,
        })
    }

    fn verilate(
        &self,
        top: &str,
        sources: &[PathBuf],
        obj_dir: &Path,
        trace: Trace,
        rtl_dir: &Path,
    ) -> Result<(), String> {
        // Stale hashed files from a previous config would otherwise be globbed into the build.
        if obj_dir.exists() {
            fs::remove_dir_all(obj_dir)
                .map_err(|e| format!("{}: cannot clear: {e}", obj_dir.display()))?;
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "--cc",
            "-Wall",
            "--x-assign",
            "unique",
            "--x-initial",
            "unique",
        ])
        .args(["--top-module", top, "--Mdir"])
        .arg(obj_dir)
        .arg(format!("-I{}", rtl_dir.display()));
        match trace {
            Trace::None => {}
            Trace::Vcd => {
                cmd.arg("--trace");
            }
            Trace::Fst => {
                cmd.arg("--trace-fst");
            }
        }
        cmd.args(sources);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "verilator rejected the generated RTL of `{top}` ({}); the Verilog is in {}:\n{}{}",
                out.status,
                rtl_dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// A `cc::Build` with the flags Verilator's own makefile uses, at `-O2` in every profile: an
    /// unoptimized model simulates several times slower, and debugging happens in the Verilog.
    fn cc_build(&self, trace: Trace) -> cc::Build {
        let mut b = cc::Build::new();
        b.cpp(true)
            .std("c++17")
            .opt_level(2)
            .debug(false)
            .warnings(false)
            .include(&self.include)
            .include(self.include.join("vltstd"))
            .define("VM_COVERAGE", "0")
            .define("VM_SC", "0")
            .define("VM_TRACE", if trace == Trace::None { "0" } else { "1" })
            .define("VM_TRACE_VCD", if trace == Trace::Vcd { "1" } else { "0" })
            .define("VM_TRACE_FST", if trace == Trace::Fst { "1" } else { "0" })
            .flag_if_supported("-faligned-new")
            .flag_if_supported("-fcf-protection=none");
        b
    }

    fn runtime_sources(&self, trace: Trace) -> Vec<PathBuf> {
        let mut files = vec![
            self.include.join("verilated.cpp"),
            self.include.join("verilated_threads.cpp"),
        ];
        match trace {
            Trace::None => {}
            Trace::Vcd => files.push(self.include.join("verilated_vcd_c.cpp")),
            Trace::Fst => files.push(self.include.join("verilated_fst_c.cpp")),
        }
        files
    }
}

fn compile_model(
    tool: &Verilator,
    obj_dir: &Path,
    shim: &Path,
    trace: Trace,
) -> Result<(), String> {
    let mut files: Vec<PathBuf> = fs::read_dir(obj_dir)
        .map_err(|e| format!("{}: {e}", obj_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cpp"))
        .collect();
    if files.is_empty() {
        return Err(format!(
            "{}: verilator wrote no .cpp file",
            obj_dir.display()
        ));
    }
    files.sort();
    files.push(shim.to_path_buf());
    let mut b = tool.cc_build(trace);
    b.include(obj_dir).files(&files);
    b.try_compile(MODEL_LIB)
        .map_err(|e| format!("compiling the verilated model: {e}"))
}

/// Compiles the Verilator runtime unless this `OUT_DIR` already holds it for the same Verilator and
/// trace setting: a config change (`CAQ_SIM_CONFIG`) then recompiles only the model.
fn compile_runtime(tool: &Verilator, out_dir: &Path, trace: Trace) -> Result<(), String> {
    let lib = out_dir.join(format!("lib{RUNTIME_LIB}.a"));
    let stamp_path = out_dir.join(format!("{RUNTIME_LIB}.stamp"));
    let stamp = format!(
        "{}\n{}\n{:?}\n{}\n",
        tool.version,
        tool.include.display(),
        trace,
        env::var("CXX").unwrap_or_default()
    );
    if lib.is_file() && fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        println!("cargo::rustc-link-search=native={}", out_dir.display());
        println!("cargo::rustc-link-lib=static={RUNTIME_LIB}");
        return Ok(());
    }
    let _ = fs::remove_file(&stamp_path);
    tool.cc_build(trace)
        .files(tool.runtime_sources(trace))
        .try_compile(RUNTIME_LIB)
        .map_err(|e| format!("compiling the Verilator runtime: {e}"))?;
    write(&stamp_path, &stamp)
}
