//! `caq_axil_regs`: the AXI4-Lite control block, generated from `caq_spec::regmap::REGISTERS`.
//!
//! Every offset, reset value, access type and field position comes from the spec's table; the
//! constants (ID, VERSION, CONFIG_HASH, CAPS) come from the config through `ConfigHash::of` and
//! `Caps::from_config`. A register of the table this generator does not know how to implement is an
//! error ([`HdlError::UnhandledRegister`]), never a silent omission. This module knows the register
//! map and the core-side interface of the block; it does not know what the core does.

use caq_spec::regmap::{self, Access, Field, PERF_COUNTERS, REGISTERS, Register, Reset, WidePair};
use caq_spec::{AccelConfig, Caps, ConfigHash};

use crate::emit::{Code, Dir, Expr, Module, ModuleBuilder, Sig, hex_literal, literal};
use crate::error::{HdlError, Result};

/// The module's name (and file stem).
pub const MODULE: &str = "caq_axil_regs";
/// AXI4-Lite address bits: byte offsets into a 4 KiB window (the smallest AXI address-map unit);
/// the registers occupy the first `REGISTER_SPACE_BYTES`.
pub const AXIL_ADDR_WIDTH: u32 = 12;
/// AXI4-Lite data bits: every register is one 32-bit word.
pub const AXIL_DATA_WIDTH: u32 = 32;
/// Width of the per-cycle performance-counter increments from the core.
pub const PERF_INC_WIDTH: u32 = 16;
/// Cycles from the cycle in which the later of the AW and W handshakes completes to the cycle in
/// which BVALID is first high (the write has taken effect by then).
pub const WRITE_LATENCY_CYCLES: u32 = 2;
/// Cycles from the AR handshake to the cycle in which RVALID is first high.
pub const READ_LATENCY_CYCLES: u32 = 1;

/// AXI response codes (AMBA AXI spec, "RRESP/BRESP encoding").
const RESP_OKAY: u64 = 0b00;
const RESP_SLVERR: u64 = 0b10;

/// The self-clearing CTRL bits: written 1, they make a one-cycle pulse and read back as 0.
const CTRL_PULSES: [Field; 3] = [
    regmap::CTRL_START,
    regmap::CTRL_SOFT_RESET,
    regmap::CTRL_PERF_CLEAR,
];

/// RW register pairs the core sees as one 64-bit value: `<pair>_o = {HI, LO}`.
const WIDE_OUTPUTS: [WidePair; 3] = [regmap::DESC_ADDR, regmap::WIN_BASE, regmap::WIN_LIMIT];

/// How a register of the table is implemented.
enum Role {
    /// A read-only constant.
    Const {
        value: u32,
    },
    /// CTRL: pulse bits and stored bits.
    Ctrl,
    /// STATUS: BUSY from the core, the rest latched from the core's done/error pulses.
    Status,
    /// IRQ_STATUS: set by the core's done/error pulses, write 1 to clear.
    IrqStatus,
    /// A plain 32-bit RW register driven to the core.
    Stored,
    /// A performance counter's LO word (snapshots the counter) or HI word (the snapshot).
    PerfLo(usize),
    PerfHi(usize),
}

fn role(r: &Register, hash: ConfigHash, caps: [u32; 4]) -> Result<Role> {
    let unhandled = |why| HdlError::UnhandledRegister {
        name: r.name,
        offset: r.offset,
        why,
    };
    if *r == regmap::CTRL {
        return Ok(Role::Ctrl);
    }
    if *r == regmap::STATUS {
        return Ok(Role::Status);
    }
    if *r == regmap::IRQ_STATUS {
        return Ok(Role::IrqStatus);
    }
    if let Some(i) = PERF_COUNTERS.iter().position(|p| p.lo == *r) {
        return Ok(Role::PerfLo(i));
    }
    if let Some(i) = PERF_COUNTERS.iter().position(|p| p.hi == *r) {
        return Ok(Role::PerfHi(i));
    }
    match (r.access, r.reset) {
        (Access::Ro, Reset::Value(value)) => Ok(Role::Const { value }),
        (Access::Ro, Reset::FromConfig) => {
            let from_config = [
                (regmap::CONFIG_HASH_LO, hash.lo()),
                (regmap::CONFIG_HASH_HI, hash.hi()),
                (regmap::CAPS0, caps[0]),
                (regmap::CAPS1, caps[1]),
                (regmap::CAPS2, caps[2]),
                (regmap::CAPS3, caps[3]),
            ];
            from_config
                .iter()
                .find(|(reg, _)| reg == r)
                .map(|&(_, value)| Role::Const { value })
                .ok_or_else(|| unhandled("no config value is known for this read-only register"))
        }
        (Access::Rw, Reset::Value(_)) if r.fields.is_empty() => Ok(Role::Stored),
        (Access::Rw, _) => Err(unhandled(
            "RW registers with fields or a config-derived reset have no generic implementation",
        )),
        (Access::W1c, _) => Err(unhandled("the only W1C register known is IRQ_STATUS")),
        (Access::Wo, _) => Err(unhandled("write-only registers have no core connection")),
    }
}

fn lower(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The reset value of a register that has one.
fn reset_value(r: &Register) -> Result<u32> {
    match r.reset {
        Reset::Value(v) => Ok(v),
        Reset::FromConfig => Err(HdlError::UnhandledRegister {
            name: r.name,
            offset: r.offset,
            why: "a register with state needs a fixed reset value",
        }),
    }
}

/// A 32-bit read value assembled from fields, most significant first, with zero fill in the gaps
/// (reserved bits read as 0).
fn pack(mut fields: Vec<(Field, Expr)>) -> Expr {
    fields.sort_by_key(|(f, _)| std::cmp::Reverse(f.lsb));
    let mut parts = Vec::new();
    let mut next_msb = AXIL_DATA_WIDTH;
    for (f, e) in fields {
        let top = u32::from(f.lsb) + u32::from(f.width);
        if top < next_msb {
            parts.push(Expr::zero(next_msb - top));
        }
        parts.push(e);
        next_msb = u32::from(f.lsb);
    }
    if next_msb > 0 {
        parts.push(Expr::zero(next_msb));
    }
    Expr::Concat(parts)
}

/// One-line decoding of a constant, for the comment next to its localparam.
fn describe_const(r: &Register, value: u32) -> String {
    if r.fields.is_empty() {
        let is_hash = *r == regmap::CONFIG_HASH.lo || *r == regmap::CONFIG_HASH.hi;
        match r.reset {
            Reset::FromConfig if !is_hash => {
                format!("{} = {value}", first_sentence(r.description))
            }
            _ => first_sentence(r.description).to_owned(),
        }
    } else {
        let fields: Vec<String> = r
            .fields
            .iter()
            .map(|f| format!("{}={}", f.name, f.get(value)))
            .collect();
        format!("{}: {}", r.name, fields.join(" "))
    }
}

/// Everything the generated block exposes to the core, for `caq_top` and the docs.
pub struct RegsModule {
    pub module: Module,
}

/// Generates `caq_axil_regs` for a config.
pub fn generate(cfg: &AccelConfig, hash: ConfigHash) -> Result<RegsModule> {
    let caps = Caps::from_config(cfg)?.encode();
    let roles = REGISTERS
        .iter()
        .map(|r| role(r, hash, caps).map(|role| (r, role)))
        .collect::<Result<Vec<_>>>()?;

    let mut m = ModuleBuilder::new(MODULE)?;
    header(&mut m, cfg, hash);

    // ---- ports ----
    let clk = m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_group("AXI4-Lite slave: byte addresses, one 32-bit register per word");
    let awaddr = m.port(Dir::Input, "s_axil_awaddr", AXIL_ADDR_WIDTH)?;
    let awvalid = m.port(Dir::Input, "s_axil_awvalid", 1)?;
    let awready = m.port(Dir::Output, "s_axil_awready", 1)?;
    let wdata = m.port(Dir::Input, "s_axil_wdata", AXIL_DATA_WIDTH)?;
    let wstrb = m.port(Dir::Input, "s_axil_wstrb", AXIL_DATA_WIDTH / 8)?;
    let wvalid = m.port(Dir::Input, "s_axil_wvalid", 1)?;
    let wready = m.port(Dir::Output, "s_axil_wready", 1)?;
    let bresp = m.port(Dir::Output, "s_axil_bresp", 2)?;
    let bvalid = m.port(Dir::Output, "s_axil_bvalid", 1)?;
    let bready = m.port(Dir::Input, "s_axil_bready", 1)?;
    let araddr = m.port(Dir::Input, "s_axil_araddr", AXIL_ADDR_WIDTH)?;
    let arvalid = m.port(Dir::Input, "s_axil_arvalid", 1)?;
    let arready = m.port(Dir::Output, "s_axil_arready", 1)?;
    let rdata = m.port(Dir::Output, "s_axil_rdata", AXIL_DATA_WIDTH)?;
    let rresp = m.port(Dir::Output, "s_axil_rresp", 2)?;
    let rvalid = m.port(Dir::Output, "s_axil_rvalid", 1)?;
    let rready = m.port(Dir::Input, "s_axil_rready", 1)?;
    m.port_group("Core control: one-cycle pulses and register values");
    let start_o = m.port_doc(Dir::Output, "start_o", 1, "CTRL.START accepted (not BUSY)")?;
    let soft_reset_o = m.port_doc(Dir::Output, "soft_reset_o", 1, "CTRL.SOFT_RESET")?;
    let mut stored_outputs = Vec::new();
    for pair in WIDE_OUTPUTS {
        let base = pair.lo.name.strip_suffix("_LO").unwrap_or(pair.lo.name);
        let sig = m.port_doc(
            Dir::Output,
            &format!("{}_o", lower(base)),
            2 * AXIL_DATA_WIDTH,
            &format!("{{{}, {}}}", pair.hi.name, pair.lo.name),
        )?;
        stored_outputs.push((sig, vec![pair.hi, pair.lo]));
    }
    for (r, role) in &roles {
        let in_pair = WIDE_OUTPUTS.iter().any(|p| p.lo == **r || p.hi == **r);
        if matches!(role, Role::Stored) && !in_pair {
            let sig = m.port_doc(
                Dir::Output,
                &format!("{}_o", lower(r.name)),
                AXIL_DATA_WIDTH,
                r.name,
            )?;
            stored_outputs.push((sig, vec![**r]));
        }
    }
    m.port_group("Core status: BUSY level; DONE / ERROR one-cycle pulses at the end of a run");
    let busy_i = m.port(Dir::Input, "busy_i", 1)?;
    let done_i = m.port(Dir::Input, "done_i", 1)?;
    let error_i = m.port(Dir::Input, "error_i", 1)?;
    let err_code_i = m.port_doc(
        Dir::Input,
        "err_code_i",
        u32::from(regmap::STATUS_ERR_CODE.width),
        "ErrorCode, valid with error_i",
    )?;
    let err_desc_i = m.port_doc(
        Dir::Input,
        "err_desc_i",
        u32::from(regmap::STATUS_ERR_DESC.width),
        "failing descriptor index, valid with error_i",
    )?;
    m.port_group(format!(
        "Performance-counter increments, added every cycle ({PERF_INC_WIDTH} bits: far above"
    ));
    m.port_group("what one cycle can move or issue)");
    let perf_inputs: Vec<Sig> = PERF_COUNTERS
        .iter()
        .map(|pair| perf_input(&mut m, pair, &busy_i))
        .collect::<Result<_>>()?;
    m.port_group("Interrupt: level, registered");
    let irq_o = m.port(Dir::Output, "irq_o", 1)?;

    // ---- constants ----
    m.section("register offsets (caq_spec::regmap::REGISTERS) and constants");
    let mut addr = Vec::new();
    for (r, _) in &roles {
        // Offsets are below REGISTER_SPACE_BYTES (checked by caq-spec's tests), so they fit.
        let a = m.localparam(
            &format!("ADDR_{}", r.name),
            Expr::raw(
                hex_literal(AXIL_ADDR_WIDTH, u64::from(r.offset)),
                AXIL_ADDR_WIDTH,
            ),
            Some(r.access.as_str().to_owned()),
        )?;
        addr.push(a);
    }
    let mut consts = Vec::new();
    for (r, role) in &roles {
        if let Role::Const { value } = role {
            let c = m.localparam(
                &format!("VALUE_{}", r.name),
                Expr::lit(AXIL_DATA_WIDTH, u64::from(*value)),
                Some(describe_const(r, *value)),
            )?;
            consts.push((r.name, c));
        }
    }
    let okay = m.localparam("RESP_OKAY", Expr::lit(2, RESP_OKAY), None)?;
    let slverr = m.localparam("RESP_SLVERR", Expr::lit(2, RESP_SLVERR), None)?;
    let addr_of = |r: &Register| -> &Sig {
        // Every register of the table got an ADDR_ localparam above, in table order.
        let i = REGISTERS.iter().position(|x| x == r).unwrap_or(0);
        &addr[i]
    };

    // ---- write channel ----
    m.section("write channel: AW and W accepted independently, one write outstanding");
    let aw_full_q = m.reg(
        "aw_full_q",
        1,
        Some("an accepted address waits for its data"),
    )?;
    let awaddr_q = m.reg("awaddr_q", AXIL_ADDR_WIDTH, None)?;
    let w_full_q = m.reg("w_full_q", 1, Some("accepted data waits for its address"))?;
    let wdata_q = m.reg("wdata_q", AXIL_DATA_WIDTH, None)?;
    let wstrb_q = m.reg("wstrb_q", AXIL_DATA_WIDTH / 8, None)?;
    let bvalid_q = m.reg("bvalid_q", 1, None)?;
    let bresp_q = m.reg("bresp_q", 2, None)?;
    m.comment(&[
        "READY depends only on flops (never on VALID); no new address or data is taken while",
        "one is held or while the response waits for BREADY.",
    ]);
    m.assign(
        &awready,
        Expr::raw(format!("~{aw_full_q} & ~{bvalid_q}"), 1),
    )?;
    m.assign(&wready, Expr::raw(format!("~{w_full_q} & ~{bvalid_q}"), 1))?;
    let aw_fire = m.wire_assign(
        "aw_fire",
        Expr::raw(format!("{awvalid} & {awready}"), 1),
        None,
    )?;
    let w_fire = m.wire_assign("w_fire", Expr::raw(format!("{wvalid} & {wready}"), 1), None)?;
    m.comment(&[
        "Pipeline stage: the write is decoded from the held address and data, one cycle after",
        "both are in, so the decode starts from flops rather than from the interconnect.",
    ]);
    let wr_en = m.wire_assign(
        "wr_en",
        Expr::raw(format!("{aw_full_q} & {w_full_q}"), 1),
        None,
    )?;
    let aw_hit = m.reg(
        "aw_hit",
        1,
        Some("the held address is a register (exact byte offset)"),
    )?;
    let mut c = Code::new();
    c.set(aw_hit.name(), "1'b0");
    c.line(format!("case ({awaddr_q})"));
    for (r, _) in &roles {
        c.line(format!("    {}: {aw_hit} = 1'b1;", addr_of(r)));
    }
    c.line("    default: ;");
    c.line("endcase");
    m.always_comb(c);
    let mut c = Code::new();
    c.if_else(
        "!rst_n",
        |c| {
            c.nb(aw_full_q.name(), "1'b0");
            c.nb(awaddr_q.name(), literal(AXIL_ADDR_WIDTH, 0));
            c.nb(w_full_q.name(), "1'b0");
            c.nb(wdata_q.name(), literal(AXIL_DATA_WIDTH, 0));
            c.nb(wstrb_q.name(), literal(AXIL_DATA_WIDTH / 8, 0));
            c.nb(bvalid_q.name(), "1'b0");
            c.nb(bresp_q.name(), okay.name());
        },
        |c| {
            c.if_(aw_fire.name(), |c| {
                c.nb(aw_full_q.name(), "1'b1");
                c.nb(awaddr_q.name(), awaddr.name());
            });
            c.if_(w_fire.name(), |c| {
                c.nb(w_full_q.name(), "1'b1");
                c.nb(wdata_q.name(), wdata.name());
                c.nb(wstrb_q.name(), wstrb.name());
            });
            c.if_(wr_en.name(), |c| {
                c.nb(aw_full_q.name(), "1'b0");
                c.nb(w_full_q.name(), "1'b0");
                c.nb(bvalid_q.name(), "1'b1");
                c.nb(bresp_q.name(), format!("{aw_hit} ? {okay} : {slverr}"));
            });
            c.else_if(bready.name(), |c| {
                c.nb(bvalid_q.name(), "1'b0");
            });
        },
    );
    m.always_ff(&clk, c)?;
    m.assign(&bvalid, &bvalid_q)?;
    m.assign(&bresp, &bresp_q)?;

    // ---- write decode ----
    m.section("write decode");
    let wmask = m.wire_assign(
        "wmask",
        Expr::raw(
            format!(
                "{{{{8{{{w}[3]}}}}, {{8{{{w}[2]}}}}, {{8{{{w}[1]}}}}, {{8{{{w}[0]}}}}}}",
                w = wstrb_q
            ),
            AXIL_DATA_WIDTH,
        ),
        Some("WSTRB per bit: writes change only enabled byte lanes"),
    )?;
    let mut wr_sel = Vec::new();
    for (r, _) in &roles {
        if matches!(r.access, Access::Rw | Access::W1c) {
            let s = m.wire_assign(
                &format!("wr_{}", lower(r.name)),
                Expr::raw(format!("{wr_en} & ({awaddr_q} == {})", addr_of(r)), 1),
                None,
            )?;
            wr_sel.push((r.name, s));
        }
    }
    let wr_of = |name: &str| -> Result<&Sig> {
        wr_sel
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
            .ok_or(HdlError::UnhandledRegister {
                name: regmap::CTRL.name,
                offset: regmap::CTRL.offset,
                why: "a written register has no write select",
            })
    };
    let merge = |q: &str, f: Option<Field>| match f {
        None => format!("({q} & ~{wmask}) | ({wdata_q} & {wmask})"),
        Some(f) => {
            let b = field_range(f);
            format!("({q} & ~{wmask}{b}) | ({wdata_q}{b} & {wmask}{b})")
        }
    };

    // ---- CTRL ----
    m.section("CTRL: self-clearing pulses and stored bits");
    let wr_ctrl = wr_of(regmap::CTRL.name)?.clone();
    let mut pulse_req = Vec::new();
    for f in CTRL_PULSES {
        if f.width != 1 {
            return Err(HdlError::UnhandledRegister {
                name: regmap::CTRL.name,
                offset: regmap::CTRL.offset,
                why: "a self-clearing CTRL field is wider than one bit",
            });
        }
        let s = m.wire_assign(
            &format!("{}_req", lower(f.name)),
            Expr::raw(
                format!("{wr_ctrl} & {wdata_q}[{b}] & {wmask}[{b}]", b = f.lsb),
                1,
            ),
            Some(&format!("CTRL.{} written 1", f.name)),
        )?;
        pulse_req.push((f, s));
    }
    let req = |f: Field| -> &Sig {
        // CTRL_PULSES is iterated above, so every pulse field has its request wire.
        let i = CTRL_PULSES.iter().position(|p| *p == f).unwrap_or(0);
        &pulse_req[i].1
    };
    let start_req = req(regmap::CTRL_START).clone();
    let soft_reset_req = req(regmap::CTRL_SOFT_RESET).clone();
    let perf_clear_req = req(regmap::CTRL_PERF_CLEAR).clone();
    m.comment(&["START is ignored while BUSY, and when SOFT_RESET is written in the same word."]);
    let start_accept = m.wire_assign(
        "start_accept",
        Expr::raw(format!("{start_req} & ~{busy_i} & ~{soft_reset_req}"), 1),
        None,
    )?;
    let ctrl_reset = reset_value(&regmap::CTRL)?;
    let mut ctrl_stored = Vec::new();
    for f in regmap::CTRL.fields {
        if CTRL_PULSES.contains(f) {
            continue;
        }
        let base = format!("ctrl_{}", lower(f.name));
        let q = m.reg(&format!("{base}_q"), u32::from(f.width), None)?;
        let d = m.reg(&format!("{base}_d"), u32::from(f.width), None)?;
        ctrl_stored.push((*f, q, d));
    }
    let mut c = Code::new();
    for (f, q, d) in &ctrl_stored {
        c.set(d.name(), q.name());
        let rhs = merge(q.name(), Some(*f));
        c.if_(wr_ctrl.name(), |c| {
            c.set(d.name(), rhs);
        });
    }
    m.always_comb(c);
    let start_q = m.reg("start_q", 1, None)?;
    let soft_reset_q = m.reg("soft_reset_q", 1, None)?;
    let mut c = Code::new();
    c.if_else(
        "!rst_n",
        |c| {
            for (f, q, _) in &ctrl_stored {
                c.nb(
                    q.name(),
                    literal(u32::from(f.width), u64::from(f.get(ctrl_reset))),
                );
            }
            c.nb(start_q.name(), "1'b0");
            c.nb(soft_reset_q.name(), "1'b0");
        },
        |c| {
            for (_, q, d) in &ctrl_stored {
                c.nb(q.name(), d.name());
            }
            c.nb(start_q.name(), start_accept.name());
            c.nb(soft_reset_q.name(), soft_reset_req.name());
        },
    );
    m.always_ff(&clk, c)?;
    m.assign(&start_o, &start_q)?;
    m.assign(&soft_reset_o, &soft_reset_q)?;

    // ---- STATUS and IRQ_STATUS ----
    m.section("STATUS and IRQ_STATUS: latched from the core's done / error pulses");
    let status_reset = reset_value(&regmap::STATUS)?;
    let mut status = Vec::new(); // (field, q, d) of the latched STATUS fields
    let mut status_read = Vec::new();
    for f in regmap::STATUS.fields {
        if *f == regmap::STATUS_BUSY {
            status_read.push((*f, busy_i.expr()));
            continue;
        }
        let known = [
            regmap::STATUS_DONE,
            regmap::STATUS_ERROR,
            regmap::STATUS_ERR_CODE,
            regmap::STATUS_ERR_DESC,
        ];
        if !known.contains(f) {
            return Err(HdlError::UnhandledRegister {
                name: regmap::STATUS.name,
                offset: regmap::STATUS.offset,
                why: "STATUS has a field this generator does not drive",
            });
        }
        let base = format!("status_{}", lower(f.name));
        let q = m.reg(&format!("{base}_q"), u32::from(f.width), None)?;
        let d = m.reg(&format!("{base}_d"), u32::from(f.width), None)?;
        status_read.push((*f, q.expr()));
        status.push((*f, q, d));
    }
    let irq_reset = reset_value(&regmap::IRQ_STATUS)?;
    let wr_irq = wr_of(regmap::IRQ_STATUS.name)?.clone();
    let mut irq_status = Vec::new();
    let mut irq_read = Vec::new();
    for f in regmap::IRQ_STATUS.fields {
        let event = if *f == regmap::IRQ_STATUS_DONE {
            &done_i
        } else if *f == regmap::IRQ_STATUS_ERROR {
            &error_i
        } else {
            return Err(HdlError::UnhandledRegister {
                name: regmap::IRQ_STATUS.name,
                offset: regmap::IRQ_STATUS.offset,
                why: "IRQ_STATUS has a cause this generator has no core event for",
            });
        };
        let base = format!("irq_status_{}", lower(f.name));
        let q = m.reg(&format!("{base}_q"), u32::from(f.width), None)?;
        let d = m.reg(&format!("{base}_d"), u32::from(f.width), None)?;
        irq_read.push((*f, q.expr()));
        irq_status.push((*f, q, d, event.clone()));
    }
    let sd = |f: Field| -> String {
        status
            .iter()
            .find(|(sf, _, _)| *sf == f)
            .map(|(_, _, d)| d.name().to_owned())
            .unwrap_or_default()
    };
    let mut c = Code::new();
    for (_, q, d) in &status {
        c.set(d.name(), q.name());
    }
    for (f, q, d, _) in &irq_status {
        let b = field_range(*f);
        c.set(
            d.name(),
            format!("{q} & ~({wr_irq} & {wdata_q}{b} & {wmask}{b})"),
        );
    }
    c.comment("START clears the result of the previous run.");
    c.if_(start_accept.name(), |c| {
        for (f, _, d) in &status {
            c.set(d.name(), literal(u32::from(f.width), 0));
        }
    });
    c.comment("Core events win over START and over a W1C in the same cycle, so none is lost.");
    c.if_(done_i.name(), |c| {
        c.set(sd(regmap::STATUS_DONE), "1'b1");
    });
    c.comment("STATUS keeps the first error of a run.");
    c.if_(format!("{error_i} && !{}", sd(regmap::STATUS_ERROR)), |c| {
        c.set(sd(regmap::STATUS_ERROR), "1'b1");
        c.set(sd(regmap::STATUS_ERR_CODE), err_code_i.name());
        c.set(sd(regmap::STATUS_ERR_DESC), err_desc_i.name());
    });
    for (_, _, d, event) in &irq_status {
        c.if_(event.name(), |c| {
            c.set(d.name(), "1'b1");
        });
    }
    c.comment("SOFT_RESET returns both registers to idle, over anything else in the same cycle.");
    c.if_(soft_reset_req.name(), |c| {
        for (f, _, d) in &status {
            c.set(d.name(), literal(u32::from(f.width), 0));
        }
        for (f, _, d, _) in &irq_status {
            c.set(d.name(), literal(u32::from(f.width), 0));
        }
    });
    m.always_comb(c);
    let irq_q = m.reg("irq_q", 1, None)?;
    let irq_en = ctrl_stored
        .iter()
        .find(|(f, _, _)| *f == regmap::CTRL_IRQ_EN)
        .map(|(_, _, d)| d.clone())
        .ok_or(HdlError::UnhandledRegister {
            name: regmap::CTRL.name,
            offset: regmap::CTRL.offset,
            why: "CTRL has no IRQ_EN bit to gate the interrupt",
        })?;
    let any_cause: Vec<String> = irq_status
        .iter()
        .map(|(_, _, d, _)| d.name().to_owned())
        .collect();
    m.comment(&[
        "The interrupt is registered from the next-state values, so it follows IRQ_EN and",
        "IRQ_STATUS with no extra cycle and never glitches.",
    ]);
    let irq_d = m.wire_assign(
        "irq_d",
        Expr::raw(format!("{irq_en} & ({})", any_cause.join(" | ")), 1),
        None,
    )?;
    let mut c = Code::new();
    c.if_else(
        "!rst_n",
        |c| {
            for (f, q, _) in &status {
                c.nb(
                    q.name(),
                    literal(u32::from(f.width), u64::from(f.get(status_reset))),
                );
            }
            for (f, q, _, _) in &irq_status {
                c.nb(
                    q.name(),
                    literal(u32::from(f.width), u64::from(f.get(irq_reset))),
                );
            }
            c.nb(irq_q.name(), "1'b0");
        },
        |c| {
            for (_, q, d) in &status {
                c.nb(q.name(), d.name());
            }
            for (_, q, d, _) in &irq_status {
                c.nb(q.name(), d.name());
            }
            c.nb(irq_q.name(), irq_d.name());
        },
    );
    m.always_ff(&clk, c)?;
    m.assign(&irq_o, &irq_q)?;

    // ---- plain RW registers ----
    m.section("RW registers driven to the core");
    let mut stored = Vec::new();
    for (r, role) in &roles {
        if matches!(role, Role::Stored) {
            let q = m.reg(&format!("{}_q", lower(r.name)), AXIL_DATA_WIDTH, None)?;
            stored.push((**r, q));
        }
    }
    let mut c = Code::new();
    let mut updates = Vec::new();
    for (r, q) in &stored {
        updates.push((
            wr_of(r.name)?.name().to_owned(),
            q.name().to_owned(),
            merge(q.name(), None),
            literal(AXIL_DATA_WIDTH, u64::from(reset_value(r)?)),
        ));
    }
    c.if_else(
        "!rst_n",
        |c| {
            for (_, q, _, reset) in &updates {
                c.nb(q, reset);
            }
        },
        |c| {
            for (wr, q, rhs, _) in &updates {
                c.if_(wr, |c| {
                    c.nb(q, rhs);
                });
            }
        },
    );
    m.always_ff(&clk, c)?;
    let stored_q = |r: &Register| -> Option<Sig> {
        stored.iter().find(|(s, _)| s == r).map(|(_, q)| q.clone())
    };
    for (out, regs) in &stored_outputs {
        let parts = regs
            .iter()
            .filter_map(stored_q)
            .map(|q| q.expr())
            .collect::<Vec<_>>();
        let rhs = if parts.len() == 1 {
            parts
                .into_iter()
                .next()
                .unwrap_or(Expr::zero(AXIL_DATA_WIDTH))
        } else {
            Expr::Concat(parts)
        };
        m.assign(out, rhs)?;
    }

    // ---- performance counters ----
    m.section("performance counters: 64 bits, snapshot of HI taken when LO is read");
    m.comment(&[
        "PERF_CLEAR and SOFT_RESET zero every counter; increments of that cycle are dropped.",
    ]);
    let perf_clear = m.wire_assign(
        "perf_clear",
        Expr::raw(format!("{perf_clear_req} | {soft_reset_req}"), 1),
        None,
    )?;
    let ar_fire = m.wire("ar_fire", 1, None)?;
    let mut counters = Vec::new();
    for (pair, inc) in PERF_COUNTERS.iter().zip(&perf_inputs) {
        let base = lower(pair.lo.name.strip_suffix("_LO").unwrap_or(pair.lo.name));
        let width = 2 * AXIL_DATA_WIDTH;
        let q = m.reg(&format!("{base}_q"), width, None)?;
        let snap = m.reg(&format!("{base}_snap_hi_q"), AXIL_DATA_WIDTH, None)?;
        let inc_ext = if inc.width() == width {
            inc.to_string()
        } else {
            format!("{{{}, {inc}}}", literal(width - inc.width(), 0))
        };
        let d = m.wire_assign(
            &format!("{base}_d"),
            Expr::raw(
                format!("{perf_clear} ? {} : {q} + {inc_ext}", literal(width, 0)),
                width,
            ),
            None,
        )?;
        let rd_lo = m.wire_assign(
            &format!("rd_{}", lower(pair.lo.name)),
            Expr::raw(
                format!("{ar_fire} & ({araddr} == {})", addr_of(&pair.lo)),
                1,
            ),
            None,
        )?;
        let reset = WidePair::join(reset_value(&pair.lo)?, reset_value(&pair.hi)?);
        counters.push((q, snap, d, rd_lo, reset));
    }
    let mut c = Code::new();
    c.if_else(
        "!rst_n",
        |c| {
            for (q, snap, _, _, reset) in &counters {
                c.nb(q.name(), literal(2 * AXIL_DATA_WIDTH, *reset));
                c.nb(snap.name(), literal(AXIL_DATA_WIDTH, reset >> 32));
            }
        },
        |c| {
            for (q, snap, d, rd_lo, _) in &counters {
                c.nb(q.name(), d.name());
                c.comment("The snapshot matches the LO word returned by the same read.");
                c.if_(rd_lo.name(), |c| {
                    c.nb(snap.name(), format!("{q}[63:32]"));
                });
                c.else_if(perf_clear.name(), |c| {
                    c.nb(snap.name(), literal(AXIL_DATA_WIDTH, 0));
                });
            }
        },
    );
    m.always_ff(&clk, c)?;

    // ---- read channel ----
    m.section("read channel: one read outstanding, data registered");
    let rvalid_q = m.reg("rvalid_q", 1, None)?;
    let rdata_q = m.reg("rdata_q", AXIL_DATA_WIDTH, None)?;
    let rresp_q = m.reg("rresp_q", 2, None)?;
    m.assign(&arready, Expr::raw(format!("~{rvalid_q}"), 1))?;
    m.assign(&ar_fire, Expr::raw(format!("{arvalid} & {arready}"), 1))?;
    let ar_hit = m.reg("ar_hit", 1, Some("the read address is a register"))?;
    let rdata_d = m.reg("rdata_d", AXIL_DATA_WIDTH, None)?;
    let mut c = Code::new();
    c.set(ar_hit.name(), "1'b0");
    c.set(rdata_d.name(), literal(AXIL_DATA_WIDTH, 0));
    c.line(format!("case ({araddr})"));
    for (r, role) in &roles {
        let value = match role {
            Role::Const { .. } => consts
                .iter()
                .find(|(n, _)| *n == r.name)
                .map(|(_, s)| s.expr())
                .unwrap_or(Expr::zero(AXIL_DATA_WIDTH)),
            Role::Ctrl => pack(ctrl_stored.iter().map(|(f, q, _)| (*f, q.expr())).collect()),
            Role::Status => pack(status_read.clone()),
            Role::IrqStatus => pack(irq_read.clone()),
            Role::Stored => stored_q(r)
                .map(|q| q.expr())
                .unwrap_or(Expr::zero(AXIL_DATA_WIDTH)),
            Role::PerfLo(i) => counters[*i].0.slice(31, 0),
            Role::PerfHi(i) => counters[*i].1.expr(),
        };
        if m.check(&value)? != AXIL_DATA_WIDTH {
            return Err(HdlError::UnhandledRegister {
                name: r.name,
                offset: r.offset,
                why: "its read value is not 32 bits wide",
            });
        }
        c.line(format!("    {}: begin", addr_of(r)));
        c.line(format!("        {ar_hit} = 1'b1;"));
        c.line(format!("        {rdata_d} = {value};"));
        c.line("    end");
    }
    c.line("    default: ;");
    c.line("endcase");
    m.always_comb(c);
    let mut c = Code::new();
    c.if_else(
        "!rst_n",
        |c| {
            c.nb(rvalid_q.name(), "1'b0");
            c.nb(rdata_q.name(), literal(AXIL_DATA_WIDTH, 0));
            c.nb(rresp_q.name(), okay.name());
        },
        |c| {
            c.if_(ar_fire.name(), |c| {
                c.nb(rvalid_q.name(), "1'b1");
                c.nb(rdata_q.name(), rdata_d.name());
                c.nb(rresp_q.name(), format!("{ar_hit} ? {okay} : {slverr}"));
            });
            c.else_if(rready.name(), |c| {
                c.nb(rvalid_q.name(), "1'b0");
            });
        },
    );
    m.always_ff(&clk, c)?;
    m.assign(&rvalid, &rvalid_q)?;
    m.assign(&rdata, &rdata_q)?;
    m.assign(&rresp, &rresp_q)?;

    Ok(RegsModule { module: m.finish() })
}

/// `[msb:lsb]` or `[bit]` of a field.
fn field_range(f: Field) -> String {
    if f.width == 1 {
        format!("[{}]", f.lsb)
    } else {
        format!("[{}:{}]", f.lsb + f.width - 1, f.lsb)
    }
}

/// The increment input of a counter: PERF_CYCLES counts cycles while BUSY (the spec's definition),
/// so it uses `busy_i`; the others have their own input.
fn perf_input(m: &mut ModuleBuilder, pair: &WidePair, busy_i: &Sig) -> Result<Sig> {
    let (name, width, what) = if *pair == regmap::PERF_CYCLES {
        return Ok(busy_i.clone());
    } else if *pair == regmap::PERF_BUSY_CYCLES {
        ("perf_busy_i", 1, "the array did useful work this cycle")
    } else if *pair == regmap::PERF_STALL_CYCLES {
        ("perf_stall_i", 1, "the array waited on DMA this cycle")
    } else if *pair == regmap::PERF_PLANE_OPS {
        (
            "perf_plane_ops_i",
            PERF_INC_WIDTH,
            "plane steps issued this cycle",
        )
    } else if *pair == regmap::PERF_BYTES_RD {
        (
            "perf_bytes_rd_i",
            PERF_INC_WIDTH,
            "bytes read by the DMA this cycle",
        )
    } else if *pair == regmap::PERF_BYTES_WR {
        (
            "perf_bytes_wr_i",
            PERF_INC_WIDTH,
            "bytes written by the DMA this cycle",
        )
    } else {
        return Err(HdlError::UnhandledRegister {
            name: pair.lo.name,
            offset: pair.lo.offset,
            why: "no core input is known for this performance counter",
        });
    };
    m.port_doc(Dir::Input, name, width, what)
}

/// The first sentence of a description, for a comment on one line.
fn first_sentence(d: &str) -> &str {
    match d.find(". ") {
        Some(i) => &d[..=i],
        None => d,
    }
}

fn header(m: &mut ModuleBuilder, cfg: &AccelConfig, hash: ConfigHash) {
    m.doc_line(format!(
        "{MODULE}: AXI4-Lite control and status registers of the caq accelerator (register map {})",
        regmap::REGMAP_VERSION_STRING,
    ));
    m.doc_line(format!("for config '{}' (hash {hash}).", cfg.name));
    m.doc(&[
        "Generated from caq_spec::regmap::REGISTERS; docs/regmap.md is the same table in prose.",
        "",
        "AXI4-Lite (all timing in cycles of clk, cycle n = the cycle in which a handshake's VALID",
        "and READY are both high at the rising edge that ends it):",
        "- 12-bit byte addresses. A register is hit only at its exact offset (low two bits 0);",
        "  every other address, including the unused part of the 4 KiB window, is unmapped.",
        "- Writes: AWREADY is high whenever no address is held and no response is pending, WREADY",
        "  likewise for data; neither waits for VALID. AW and W are accepted independently, in",
        "  either order or together. If the later of the two handshakes is in cycle n, the",
        "  register takes the write at the end of cycle n+1 and BVALID is high from cycle n+2",
        "  (latency 2) until BREADY; effects of the write (start_o, soft_reset_o pulses, cleared",
        "  counters, new register values) are visible from cycle n+2 as well. A new AW or W is",
        "  accepted from the cycle after the B handshake: one write outstanding.",
        "- Reads: ARREADY = !RVALID. An AR handshake in cycle n gives RVALID and RDATA from cycle",
        "  n+1 (latency 1), held until RREADY; ARREADY is high again the cycle after the R",
        "  handshake: one read outstanding. RDATA is the value the register holds during cycle n.",
        "- BRESP/RRESP: OKAY for a register's offset (a write to a read-only register is ignored",
        "  and still OKAY); SLVERR for an unmapped address, whose read data is 0 and whose write",
        "  changes nothing. READY never depends combinationally on VALID.",
        "- WSTRB selects the byte lanes that a write changes, for RW and W1C registers alike, and",
        "  the CTRL pulse bits (byte lane 0) fire only when their lane is enabled.",
        "",
        "Registers:",
        "- CTRL: START, SOFT_RESET and PERF_CLEAR are self-clearing and read 0; IRQ_EN is stored.",
        "  START is accepted only while busy_i is low and SOFT_RESET is not written with it; an",
        "  accepted START gives a one-cycle start_o pulse and clears STATUS.DONE, ERROR, ERR_CODE",
        "  and ERR_DESC. SOFT_RESET gives a one-cycle soft_reset_o pulse and clears STATUS,",
        "  IRQ_STATUS and every performance counter; IRQ_EN, DESC_* and WIN_* keep their values.",
        "- STATUS: BUSY is busy_i as sampled in the read's AR cycle. A done_i pulse sets DONE; an",
        "  error_i pulse sets ERROR and latches err_code_i / err_desc_i unless ERROR is already",
        "  set (the first error of a run is kept). Core pulses win over START and over a W1C in",
        "  the same cycle; SOFT_RESET wins over everything.",
        "- IRQ_STATUS (W1C): DONE is set by done_i, ERROR by error_i; writing 1 clears a bit.",
        "- irq_o = IRQ_EN & (IRQ_STATUS != 0), registered from the next-state values: high the",
        "  cycle after the done_i / error_i pulse, low the cycle after the clearing write takes",
        "  effect (cycle n+2 above).",
        "- DESC_ADDR_*, DESC_COUNT, WIN_BASE_*, WIN_LIMIT_*: full 32-bit RW words, driven to the",
        "  core unchanged (the core checks range and alignment, so an out-of-range value is an",
        "  error rather than a silently truncated address).",
        "- Performance counters (64 bits): PERF_CYCLES counts cycles with busy_i high (the spec's",
        "  \"clock cycles while BUSY\"); the others add their input every cycle. Reading a LO word",
        "  returns bits 31:0 and snapshots bits 63:32, which the HI word returns until the next",
        "  LO read of that counter; each counter has its own snapshot. PERF_CLEAR and SOFT_RESET",
        "  zero the counters and the snapshots (the increments of that cycle are dropped).",
        "- rst_n (synchronous, active low) returns every register to its reset value in the",
        "  table; it is the only thing that resets IRQ_EN, DESC_*, WIN_*.",
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use caq_spec::regmap::{STATUS_BUSY, STATUS_ERR_CODE};

    #[test]
    fn pack_fills_reserved_bits_with_zero() {
        let m = {
            let mut m = ModuleBuilder::new("t").unwrap();
            let b = m.port(Dir::Input, "b", 1).unwrap();
            let c = m.port(Dir::Input, "c", 8).unwrap();
            (m, b, c)
        };
        let (m, b, c) = m;
        let e = pack(vec![(STATUS_BUSY, b.expr()), (STATUS_ERR_CODE, c.expr())]);
        assert_eq!(m.check(&e).unwrap(), 32);
        assert_eq!(e.to_string(), "{16'd0, c, 7'd0, b}");
    }
}
