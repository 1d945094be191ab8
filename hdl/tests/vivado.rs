//! The Vivado flow: the committed scripts and constraints are the generator's output, the script's
//! header equals the config and the board map, the script reads every RTL file, and what it connects
//! exists on `caq_top`. No Vivado runs here; these checks are what can be verified without it.

mod common;

use std::collections::BTreeMap;
use std::fs;

use caq_hdl::vivado::{self, README, RTL_DIR, SCRIPT, XDC};
use caq_hdl::{Design, Dir, HdlError, generate};
use caq_spec::{AccelConfig, AxiAttrs, Board, Coherence, board_map};

/// Every config of a real board: the two boards, and the ZCU104 with its DMA master on HPC0.
const BOARDS: [&str; 3] = ["pynq-z2", "zcu104", "zcu104-hpc"];

fn flow(name: &str) -> (AccelConfig, Design, vivado::VivadoFlow) {
    let cfg = common::load(name);
    let design = generate(&cfg).unwrap();
    let flow = vivado::vivado(&cfg, &design).unwrap_or_else(|e| panic!("{name}: {e}"));
    (cfg, design, flow)
}

/// The `set CAQ_* value` lines of the header block, braces and quotes removed.
fn header(script: &str) -> BTreeMap<String, String> {
    let block = script
        .split(vivado::HEADER_END)
        .next()
        .expect("script has a header");
    let mut vars = BTreeMap::new();
    for line in block.lines() {
        let Some(rest) = line.strip_prefix("set ") else {
            continue;
        };
        let (name, value) = rest.split_once(' ').expect("set NAME VALUE");
        let value = value.trim().trim_matches(['{', '}', '"']).to_owned();
        assert!(
            vars.insert(name.to_owned(), value).is_none(),
            "{name} set twice in the header"
        );
    }
    vars
}

fn num(value: &str) -> u64 {
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => value.parse().unwrap(),
    }
}

/// Name -> width of the ports declared in the top module's Verilog text.
fn verilog_ports(text: &str) -> BTreeMap<String, u32> {
    let mut ports = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if !(line.starts_with("input ") || line.starts_with("output ")) {
            continue;
        }
        let width = match (line.find('['), line.find(':')) {
            (Some(open), Some(colon)) if colon > open => {
                line[open + 1..colon].trim().parse::<u32>().unwrap() + 1
            }
            _ => 1,
        };
        let name = line
            .trim_end_matches([',', ';', ')'])
            .split_whitespace()
            .last()
            .unwrap();
        ports.insert(name.to_owned(), width);
    }
    ports
}

/// `bitstreams/<board>/build.tcl` and `constraints/<board>.xdc` are the generator's output.
/// Regenerate with `CAQ_BLESS=1 cargo test -p caq-hdl --test vivado` and review the diff.
#[test]
fn committed_scripts_and_constraints_match_the_generator() {
    let root = common::repo_root();
    let bless = std::env::var("CAQ_BLESS").is_ok_and(|v| v == "1");
    for board in BOARDS {
        let (cfg, _, flow) = flow(board);
        let files = [
            (
                root.join("bitstreams").join(board).join(SCRIPT),
                flow.script,
            ),
            (
                root.join("constraints")
                    .join(format!("{}.xdc", cfg.board.as_str())),
                flow.constraints,
            ),
        ];
        for (path, text) in files {
            if bless {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                caq_hdl::design::write_atomic(&path, text.as_bytes()).unwrap();
                continue;
            }
            let committed = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (bless with CAQ_BLESS=1)", path.display()));
            if committed != text {
                let line = committed
                    .lines()
                    .zip(text.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(committed.lines().count().min(text.lines().count()));
                panic!(
                    "{} differs from the generator at line {} (bless with CAQ_BLESS=1 after \
                     review):\n  committed: {:?}\n  generated: {:?}",
                    path.display(),
                    line + 1,
                    committed.lines().nth(line),
                    text.lines().nth(line)
                );
            }
        }
    }
}

#[test]
fn script_header_equals_the_config_and_the_board_map() {
    for board in BOARDS {
        let (cfg, design, flow) = flow(board);
        let map = board_map(cfg.board).unwrap();
        let h = header(&flow.script);
        let get = |k: &str| {
            h.get(k)
                .unwrap_or_else(|| panic!("{board}: header lacks {k}"))
                .as_str()
        };
        assert_eq!(get("CAQ_CONFIG"), cfg.name, "{board}");
        assert_eq!(get("CAQ_CONFIG_HASH"), design.config_hash.to_string());
        assert_eq!(get("CAQ_BOARD"), cfg.board.as_str());
        assert_eq!(get("CAQ_PART"), cfg.part);
        assert_eq!(get("CAQ_CLOCK_MHZ").parse::<f64>().unwrap(), cfg.clock_mhz);
        assert_eq!(
            num(get("CAQ_AXI_DATA_WIDTH")),
            u64::from(cfg.axi.data_width)
        );
        assert_eq!(
            num(get("CAQ_AXI_ADDR_WIDTH")),
            u64::from(cfg.axi.addr_width)
        );
        assert_eq!(num(get("CAQ_AXI_ID_WIDTH")), u64::from(cfg.axi.id_width));
        assert_eq!(num(get("CAQ_CTRL_BASE")), map.ctrl_base, "{board}");
        assert_eq!(num(get("CAQ_CTRL_SIZE")), map.ctrl_size, "{board}");
        assert_eq!(get("CAQ_CTRL_PORT"), map.ctrl_port);
        assert_eq!(get("CAQ_DMA_PORT"), map.dma_port);
        assert_eq!(
            h.get("CAQ_DMA_PORT_COHERENT").map(String::as_str),
            map.dma_port_coherent
        );
        assert_eq!(format!("{}[0]", get("CAQ_IRQ_PIN")), map.irq_pin);
        assert_eq!(get("CAQ_FCLK"), map.fclk);
        assert_eq!(get("CAQ_TOP"), design.top);
        assert_eq!(get("CAQ_XDC"), XDC);
    }
}

/// The AxCACHE/AxPROT the script checks are the config's coherence mode's, the generated
/// `caq_dma` drives exactly those, and the port follows the mode.
#[test]
fn the_dma_attributes_the_script_checks_are_what_the_rtl_drives() {
    for board in BOARDS {
        let (cfg, design, flow) = flow(board);
        let h = header(&flow.script);
        let attrs = cfg.axi.coherence.axi_attrs();
        let dma = design
            .files
            .iter()
            .find(|f| format!("{RTL_DIR}/{}", f.name) == h["CAQ_DMA_RTL"])
            .unwrap_or_else(|| panic!("{board}: {} is not a design file", h["CAQ_DMA_RTL"]));
        for (sig, var, value, bits) in [
            ("m_axi_arcache", "CAQ_DMA_ARCACHE", attrs.arcache, 4),
            ("m_axi_awcache", "CAQ_DMA_AWCACHE", attrs.awcache, 4),
            ("m_axi_arprot", "CAQ_DMA_AXPROT", attrs.prot, 3),
            ("m_axi_awprot", "CAQ_DMA_AXPROT", attrs.prot, 3),
        ] {
            let want = AxiAttrs::verilog(value, bits);
            assert_eq!(h[var], want, "{board}: {var}");
            let line = format!("assign {sig} = {want};");
            assert!(
                dma.text.contains(&line),
                "{board}: caq_dma.v lacks `{line}`"
            );
        }
        let coherent = cfg.axi.coherence == Coherence::Io;
        assert_eq!(attrs.snooped(), coherent, "{board}");
        match h.get("CAQ_DMA_COHERENT") {
            Some(v) => assert_eq!(v, if coherent { "1" } else { "0" }, "{board}"),
            None => assert!(!coherent, "{board}: io coherence without a coherent port"),
        }
        assert!(
            flow.script
                .contains("regexp \"assign $sig = (\\[0-9\\]+'b\\[01\\]+);\" $dma_rtl -> got"),
            "{board}: the script checks the RTL's assignments"
        );
    }
}

#[test]
fn every_header_variable_is_used_and_every_used_variable_is_in_the_header() {
    for board in BOARDS {
        let (_, _, flow) = flow(board);
        let h = header(&flow.script);
        let (_, body) = flow.script.split_once(vivado::HEADER_END).unwrap();
        for name in h.keys() {
            assert!(
                body.contains(&format!("${name}")),
                "{board}: {name} is set but never used"
            );
        }
        for used in body.split('$').skip(1) {
            let name: String = used
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.starts_with("CAQ_") {
                assert!(h.contains_key(&name), "{board}: {name} used but not set");
            }
        }
        // Nothing config-derived is typed into the body: the values appear only in the header.
        for value in ["CAQ_PART", "CAQ_CTRL_BASE", "CAQ_CLOCK_MHZ"] {
            assert!(
                !body.contains(h[value].as_str()),
                "{board}: the value of {value} ({}) is typed again below the header",
                h[value]
            );
        }
    }
}

#[test]
fn script_reads_every_rtl_file_of_the_design() {
    for board in BOARDS {
        let (_, design, flow) = flow(board);
        let h = header(&flow.script);
        let listed: Vec<&str> = h["CAQ_RTL_FILES"].split_whitespace().collect();
        let expected: Vec<String> = design
            .files
            .iter()
            .map(|f| format!("{RTL_DIR}/{}", f.name))
            .collect();
        assert_eq!(listed, expected, "{board}");
        assert!(flow.script.contains("foreach f $CAQ_RTL_FILES"));
        assert!(flow.script.contains("read_verilog $path"));
    }
}

#[test]
fn interfaces_the_script_connects_are_ports_of_caq_top() {
    for board in BOARDS {
        let (cfg, design, flow) = flow(board);
        let top = design
            .files
            .iter()
            .find(|f| f.name == format!("{}.v", design.top))
            .expect("top file");
        let ports = verilog_ports(&top.text);
        // Every `caq/<name>` the script touches.
        let mut names: Vec<&str> = flow
            .script
            .split("caq/")
            .skip(1)
            .map(|s| {
                s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap()
            })
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names, ["clk", "irq", "m_axi", "rst_n", "s_axil"], "{board}");
        for name in names {
            let is_port = ports.contains_key(name);
            let is_interface = ports.keys().any(|p| p.starts_with(&format!("{name}_")));
            assert!(
                is_port || is_interface,
                "{board}: the script connects caq/{name}, which caq_top does not have"
            );
        }
        // The widths the header promises are the widths of the ports.
        assert_eq!(ports["m_axi_wdata"], cfg.axi.data_width, "{board}");
        assert_eq!(ports["m_axi_awaddr"], cfg.axi.addr_width, "{board}");
        assert_eq!(ports["m_axi_araddr"], cfg.axi.addr_width, "{board}");
        assert_eq!(ports["irq"], 1);
        // The Verilog parse agrees with the generator's own port list.
        for p in &design.ports {
            assert_eq!(ports.get(&p.name), Some(&p.width), "{board}: {}", p.name);
            if p.name == "irq" {
                assert_eq!(p.dir, Dir::Output);
            }
        }
        // The register window holds the 12 address bits the slave decodes.
        let map = board_map(cfg.board).unwrap();
        assert_eq!(1u64 << ports["s_axil_awaddr"], map.ctrl_size, "{board}");
    }
}

#[test]
fn a_sim_config_is_refused_naming_the_board() {
    let cfg = common::load("sim-small");
    assert_eq!(cfg.board, Board::Sim);
    let design = generate(&cfg).unwrap();
    let err = vivado::vivado(&cfg, &design).unwrap_err();
    assert!(matches!(err, HdlError::Unsupported { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("sim-small"), "{msg}");
    assert!(msg.contains("board = \"sim\""), "{msg}");
    assert!(vivado::constraints(Board::Sim).is_err());
}

#[test]
fn a_data_width_the_hp_port_cannot_take_is_refused_naming_the_field() {
    let cfg = common::load("pynq-z2");
    let design = generate(&cfg).unwrap();
    let mut wide = cfg.clone();
    wide.axi.data_width = 128;
    let msg = vivado::vivado(&wide, &design).unwrap_err().to_string();
    assert!(msg.contains("axi.data_width = 128"), "{msg}");
    assert!(msg.contains("S_AXI_HP0"), "{msg}");
}

#[test]
fn writing_the_flow_puts_script_rtl_and_constraints_side_by_side() {
    let (_, design, flow) = flow("zcu104");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("viv");
    flow.write(&design, &out).unwrap();
    assert_eq!(fs::read_to_string(out.join(SCRIPT)).unwrap(), flow.script);
    assert_eq!(fs::read_to_string(out.join(XDC)).unwrap(), flow.constraints);
    let readme = fs::read_to_string(out.join(README)).unwrap();
    assert!(
        readme.contains("vivado -mode batch -source build.tcl"),
        "{readme}"
    );
    for f in &design.files {
        let on_disk = fs::read_to_string(out.join(RTL_DIR).join(&f.name)).unwrap();
        assert_eq!(on_disk, f.text, "{}", f.name);
    }
    // No temporary files are left behind.
    for d in [out.as_path(), &out.join(RTL_DIR)] {
        for e in fs::read_dir(d).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".tmp-"), "{name} left in {}", d.display());
        }
    }
}
