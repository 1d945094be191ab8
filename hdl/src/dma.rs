//! `caq_dma`: the DMA engine. It turns the layer engine's read and write requests (the protocol
//! in `core/ports.rs`) into AXI4 INCR bursts on the master port `m_axi_*`, and owns nothing else:
//! it does not check addresses (the engine checks every request against the window first) and
//! knows nothing of descriptors or layers.
//!
//! Bursts: a request's beats are split at every `max_burst`-beat boundary of the address, so every
//! burst but the first and the last is a full, aligned `max_burst` beats, and none crosses a 4 KiB
//! boundary (`max_burst` × bus bytes divides 4096). Reads: the next request is taken as soon as the
//! previous one's bursts are all issued; up to `max_outstanding_reads` bursts in flight, all with
//! ID 0, so the interconnect returns them in order; beats go straight to the engine with their
//! RRESP. Writes: the same split and the same early acceptance (the W side keeps the beat counts of
//! up to two requests); a W beat is presented only after its burst's AW, so WLAST is known from the
//! address alone; one registered W stage; B is always accepted, at most `max_outstanding_reads`
//! write bursts await it, and `wr_err` keeps the worst BRESP.
//!
//! Soft reset: the bursts of accepted requests are finished silently (read beats consumed and
//! dropped, write beats sent with zero strobes, responses swallowed) so the bus is never left with
//! half a burst; new requests wait until it is done.

use caq_spec::{AccelConfig, AxiAttrs};

use crate::core::ports::{Side, WORDS_BITS, clog2, memory_ports};
use crate::emit::{Code, Dir, Expr, Module, ModuleBuilder, zext};
use crate::error::{HdlError, Result};

/// Write requests the DMA engine accepts behind the one whose beats are going out.
const WQ_DEPTH: u32 = 4;

/// The module's name.
pub const MODULE: &str = "caq_dma";

/// AXI's 4 KiB boundary, which no burst may cross.
const PAGE_BYTES: u32 = 4096;

/// Bus geometry from the config.
#[derive(Clone, Copy, Debug)]
struct Bus {
    aw: u32,
    /// Bus bytes and their log2.
    bytes: u32,
    lb: u32,
    /// log2(max_burst).
    mbl: u32,
    max_burst: u32,
    outstanding: u32,
    /// Width of the outstanding-burst counters.
    ob: u32,
    id: u32,
    /// AxCACHE and AxPROT of the config's `axi.coherence` (caq_spec::Coherence).
    attrs: AxiAttrs,
}

/// The `caq_dma` module for a config.
pub fn dma(cfg: &AccelConfig) -> Result<Module> {
    let x = &cfg.axi;
    let bytes = x.data_width / 8;
    if bytes * x.max_burst > PAGE_BYTES {
        return Err(HdlError::Unsupported {
            config: cfg.name.clone(),
            what: format!(
                "axi.max_burst = {} beats of {bytes} bytes is more than 4 KiB: a burst would cross \
                 a 4 KiB boundary",
                x.max_burst
            ),
        });
    }
    let b = Bus {
        aw: x.addr_width,
        bytes,
        lb: bytes.trailing_zeros(),
        mbl: x.max_burst.trailing_zeros(),
        max_burst: x.max_burst,
        outstanding: x.max_outstanding_reads,
        ob: clog2(x.max_outstanding_reads + 1),
        id: x.id_width,
        attrs: x.coherence.axi_attrs(),
    };
    let (aw, dw) = (b.aw, x.data_width);
    let mut m = ModuleBuilder::new(MODULE)?;
    m.doc(&[
        "DMA engine: the layer engine's read/write requests as AXI4 INCR bursts (one ID, in order).",
        "Split at max_burst-beat address boundaries (never across 4 KiB); requests pipelined;",
        "RRESP per beat to the engine, the worst BRESP kept in wr_err. See caq-hdl dma.rs.",
    ]);
    m.doc_line(format!(
        "Bus {dw} bits ({} bytes per beat), bursts up to {} beats, {} reads and {} writes in flight.",
        b.bytes, b.max_burst, b.outstanding, b.outstanding
    ));
    m.doc_line(format!(
        "ARCACHE {}, AWCACHE {}, AxPROT {}: axi.coherence = {} ({}).",
        AxiAttrs::verilog(b.attrs.arcache, 4),
        AxiAttrs::verilog(b.attrs.awcache, 4),
        AxiAttrs::verilog(b.attrs.prot, 3),
        x.coherence.as_str(),
        if b.attrs.snooped() {
            "snooped through the CCI"
        } else {
            "not snooped"
        }
    ));
    let clk = m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_doc(
        Dir::Input,
        "soft_reset",
        1,
        "pulse: finish the requests in flight silently",
    )?;
    memory_ports(&mut m, aw, b.bytes, Side::Dma)?;
    axi_ports(&mut m, &b, dw)?;

    read_engine(&mut m, &b)?;
    write_engine(&mut m, &b)?;
    registers(&mut m, &b, &clk)?;
    Ok(m.finish())
}

/// The AXI4 master port, in the order of the AXI specification's signal tables.
fn axi_ports(m: &mut ModuleBuilder, b: &Bus, dw: u32) -> Result<()> {
    m.port_group("AXI4 master: write address");
    for ch in ["aw", "ar"] {
        if ch == "ar" {
            m.port_group("AXI4 master: read address");
        }
        m.port(Dir::Output, &format!("m_axi_{ch}id"), b.id)?;
        m.port(Dir::Output, &format!("m_axi_{ch}addr"), b.aw)?;
        m.port(Dir::Output, &format!("m_axi_{ch}len"), 8)?;
        m.port(Dir::Output, &format!("m_axi_{ch}size"), 3)?;
        m.port(Dir::Output, &format!("m_axi_{ch}burst"), 2)?;
        m.port(Dir::Output, &format!("m_axi_{ch}lock"), 1)?;
        m.port(Dir::Output, &format!("m_axi_{ch}cache"), 4)?;
        m.port(Dir::Output, &format!("m_axi_{ch}prot"), 3)?;
        m.port(Dir::Output, &format!("m_axi_{ch}qos"), 4)?;
        m.port(Dir::Output, &format!("m_axi_{ch}valid"), 1)?;
        m.port(Dir::Input, &format!("m_axi_{ch}ready"), 1)?;
        if ch == "aw" {
            m.port_group("AXI4 master: write data");
            m.port(Dir::Output, "m_axi_wdata", dw)?;
            m.port(Dir::Output, "m_axi_wstrb", b.bytes)?;
            m.port(Dir::Output, "m_axi_wlast", 1)?;
            m.port(Dir::Output, "m_axi_wvalid", 1)?;
            m.port(Dir::Input, "m_axi_wready", 1)?;
            m.port_group("AXI4 master: write response");
            m.port(Dir::Input, "m_axi_bid", b.id)?;
            m.port(Dir::Input, "m_axi_bresp", 2)?;
            m.port(Dir::Input, "m_axi_bvalid", 1)?;
            m.port(Dir::Output, "m_axi_bready", 1)?;
        }
    }
    m.port_group("AXI4 master: read data");
    m.port(Dir::Input, "m_axi_rid", b.id)?;
    m.port(Dir::Input, "m_axi_rdata", dw)?;
    m.port(Dir::Input, "m_axi_rresp", 2)?;
    m.port(Dir::Input, "m_axi_rlast", 1)?;
    m.port(Dir::Input, "m_axi_rvalid", 1)?;
    m.port(Dir::Output, "m_axi_rready", 1)?;
    Ok(())
}

/// Wire `{p}_beats`: the beats a request covers, ⌈((addr mod B) + 8·words) / B⌉ for B bus bytes.
fn beats_wire(m: &mut ModuleBuilder, b: &Bus, p: &str) -> Result<String> {
    let (addr, words) = (format!("{p}_req_addr"), format!("{p}_req_words"));
    if b.lb == 3 {
        return Ok(words);
    }
    // Words per beat 2^(lb-3); the request's first word's place in its beat, addr[lb-1:3].
    let wl = b.lb - 3;
    let w = WORDS_BITS + 1;
    m.wire_assign(
        &format!("{p}_beats_x"),
        Expr::raw(
            format!(
                "{{1'b0, {words}}} + {{{z}'d0, {addr}[{}:3]}} + {w}'d{}",
                b.lb - 1,
                (1u32 << wl) - 1,
                z = w - wl
            ),
            w,
        ),
        Some("words from the first beat's start, plus a beat less one word"),
    )?;
    Ok(format!("{p}_beats_x[{}:{wl}]", WORDS_BITS + wl - 1))
}

/// Wires `{p}_len` (AxLEN) and `{p}_burst` (beats of the burst at the beat index `{p}_beat_q`
/// with `{p}_left_q` beats left): up to the next max_burst-aligned beat, at most the beats left.
fn burst_split(m: &mut ModuleBuilder, b: &Bus, p: &str) -> Result<()> {
    let bw = b.mbl + 1;
    let room = if b.mbl == 0 {
        "1'b1".to_owned()
    } else {
        format!(
            "{bw}'d{} - {{1'b0, {p}_beat_q[{}:0]}}",
            b.max_burst,
            b.mbl - 1
        )
    };
    m.wire_assign(
        &format!("{p}_room"),
        Expr::raw(room, bw),
        Some("beats to the next max_burst-aligned beat"),
    )?;
    m.wire_assign(
        &format!("{p}_burst"),
        Expr::raw(
            format!(
                "({p}_left_q < {}) ? {p}_left_q[{}:0] : {p}_room",
                zext(&format!("{p}_room"), bw, WORDS_BITS),
                bw - 1
            ),
            bw,
        ),
        Some("beats of the burst presented"),
    )?;
    let len = if bw > 8 {
        format!("{p}_len_w[7:0]")
    } else {
        zext(&format!("{p}_len_w"), bw, 8)
    };
    m.wire_assign(
        &format!("{p}_len_w"),
        Expr::raw(format!("{p}_burst - {bw}'d1"), bw),
        None,
    )?;
    m.wire_assign(&format!("{p}_len"), Expr::raw(len, 8), None)?;
    Ok(())
}

/// The fixed AxSIZE, AxBURST (INCR), AxLOCK, AxQOS of a channel, and the AxCACHE and AxPROT of
/// the config's coherence mode (`caq_spec::Coherence::axi_attrs`: 0011/000 on a non-coherent HP
/// port, 1111/010 for snooped traffic through the CCI).
fn fixed_fields(m: &mut ModuleBuilder, b: &Bus, ch: &str) -> Result<()> {
    let p = format!("m_axi_{ch}");
    m.assign_raw(&format!("{p}id"), format!("{}'d0", b.id))?;
    m.assign_raw(&format!("{p}addr"), format!("{{{ch}_beat_q, {}'d0}}", b.lb))?;
    m.assign_raw(&format!("{p}len"), format!("{ch}_len"))?;
    m.assign_raw(&format!("{p}size"), format!("3'd{}", b.lb))?;
    m.assign_raw(&format!("{p}burst"), "2'b01")?;
    m.assign_raw(&format!("{p}lock"), "1'b0")?;
    let cache = if ch == "ar" {
        b.attrs.arcache
    } else {
        b.attrs.awcache
    };
    m.assign_raw(&format!("{p}cache"), AxiAttrs::verilog(cache, 4))?;
    m.assign_raw(&format!("{p}prot"), AxiAttrs::verilog(b.attrs.prot, 3))?;
    m.assign_raw(&format!("{p}qos"), "4'd0")?;
    Ok(())
}

fn read_engine(m: &mut ModuleBuilder, b: &Bus) -> Result<()> {
    let (ob, abw) = (b.ob, b.aw - b.lb);
    m.section("read engine: AR bursts; R beats straight to the engine");
    m.reg("ar_beat_q", abw, Some("beat index of the next AR burst"))?;
    m.reg(
        "ar_left_q",
        WORDS_BITS,
        Some("beats of the latest request not yet in an AR"),
    )?;
    m.reg(
        "rd_out_q",
        ob,
        Some("AR bursts whose RLAST has not arrived"),
    )?;
    m.reg(
        "rd_drain_q",
        1,
        Some("after a soft reset: consume and drop the beats in flight"),
    )?;
    burst_split(m, b, "ar")?;
    m.wire_assign(
        "rd_busy",
        Expr::raw(
            format!("ar_left_q != {WORDS_BITS}'d0 || rd_out_q != {ob}'d0"),
            1,
        ),
        None,
    )?;
    m.comment(&["The next request is taken once the previous one's bursts are all issued."]);
    m.assign_raw(
        "rd_req_ready",
        format!("ar_left_q == {WORDS_BITS}'d0 && !rd_drain_q"),
    )?;
    m.wire_assign(
        "rd_req_fire",
        Expr::raw("rd_req_valid && rd_req_ready", 1),
        None,
    )?;
    m.assign_raw(
        "m_axi_arvalid",
        format!(
            "ar_left_q != {WORDS_BITS}'d0 && rd_out_q < {ob}'d{}",
            b.outstanding
        ),
    )?;
    fixed_fields(m, b, "ar")?;
    m.wire_assign(
        "ar_fire",
        Expr::raw("m_axi_arvalid && m_axi_arready", 1),
        None,
    )?;
    m.wire_assign(
        "r_last_fire",
        Expr::raw("m_axi_rvalid && m_axi_rready && m_axi_rlast", 1),
        None,
    )?;
    m.assign_raw("rd_valid", "m_axi_rvalid && !rd_drain_q")?;
    m.assign_raw("rd_resp", "m_axi_rresp")?;
    m.assign_raw("rd_data", "m_axi_rdata")?;
    m.assign_raw("m_axi_rready", "rd_drain_q || rd_ready")?;
    Ok(())
}

fn write_engine(m: &mut ModuleBuilder, b: &Bus) -> Result<()> {
    let (ob, abw, dw) = (b.ob, b.aw - b.lb, b.bytes * 8);
    m.section("write engine: AW bursts, the W side's request queue, one registered W stage, B");
    m.reg("aw_beat_q", abw, Some("beat index of the next AW burst"))?;
    m.reg(
        "aw_left_q",
        WORDS_BITS,
        Some("beats of the latest request not yet in an AW"),
    )?;
    m.comment(&[
        "The W side: the request whose beats are being formed (w_left_q beats left, w_idx_q its",
        "next beat's index in a max_burst block) and up to WQ_DEPTH more, accepted behind it",
        "(entry 0 the oldest).",
    ]);
    m.reg(
        "w_left_q",
        WORDS_BITS,
        Some("beats of the current request not yet formed"),
    )?;
    m.reg(
        "wq_n_q",
        clog2(WQ_DEPTH + 1),
        Some("requests waiting behind the current one"),
    )?;
    for e in 0..WQ_DEPTH {
        m.reg(&format!("wq{e}_left_q"), WORDS_BITS, None)?;
    }
    if b.mbl > 0 {
        m.reg(
            "w_idx_q",
            b.mbl,
            Some("beat index of the next W beat within its max_burst block"),
        )?;
        for e in 0..WQ_DEPTH {
            m.reg(&format!("wq{e}_idx_q"), b.mbl, None)?;
        }
    }
    m.reg("w_valid_q", 1, Some("a W beat is formed and waits"))?;
    m.reg("w_data_q", dw, None)?;
    m.reg("w_strb_q", b.bytes, None)?;
    m.reg("w_last_q", 1, None)?;
    m.reg(
        "aw_ahead_q",
        ob,
        Some("AW bursts whose WLAST has not been sent"),
    )?;
    m.reg("b_out_q", ob, Some("AW bursts whose B has not arrived"))?;
    m.reg(
        "wr_drain_q",
        1,
        Some("after a soft reset: finish accepted requests with zero strobes, no response"),
    )?;
    m.reg("wr_err_q", 2, Some("the worst BRESP since wr_err_clear"))?;
    burst_split(m, b, "aw")?;
    m.assign_raw(
        "wr_req_ready",
        format!(
            "aw_left_q == {WORDS_BITS}'d0 && wq_n_q != {}'d{WQ_DEPTH} && !wr_drain_q",
            clog2(WQ_DEPTH + 1)
        ),
    )?;
    m.wire_assign(
        "wr_req_fire",
        Expr::raw("wr_req_valid && wr_req_ready", 1),
        None,
    )?;
    m.assign_raw(
        "m_axi_awvalid",
        format!(
            "aw_left_q != {WORDS_BITS}'d0 && b_out_q < {ob}'d{}",
            b.outstanding
        ),
    )?;
    fixed_fields(m, b, "aw")?;
    m.wire_assign(
        "aw_fire",
        Expr::raw("m_axi_awvalid && m_axi_awready", 1),
        None,
    )?;
    m.comment(&["A W beat goes out only after its burst's AW, so WLAST follows from the address."]);
    m.assign_raw(
        "m_axi_wvalid",
        format!("w_valid_q && aw_ahead_q != {ob}'d0"),
    )?;
    m.assign_raw("m_axi_wdata", "w_data_q")?;
    m.assign_raw("m_axi_wstrb", "w_strb_q")?;
    m.assign_raw("m_axi_wlast", "w_last_q")?;
    m.wire_assign("w_fire", Expr::raw("m_axi_wvalid && m_axi_wready", 1), None)?;
    m.assign_raw("m_axi_bready", "1'b1")?;
    m.wire_assign(
        "w_load",
        Expr::raw(
            format!("(!w_valid_q || w_fire) && w_left_q != {WORDS_BITS}'d0"),
            1,
        ),
        Some("the W stage can take the current request's next beat"),
    )?;
    m.assign_raw("wr_ready", "!wr_drain_q && w_load")?;
    m.wire_assign(
        "w_in",
        Expr::raw("wr_drain_q ? w_load : (wr_valid && w_load)", 1),
        Some("a beat (or, draining, a zero-strobe filler) enters the W stage"),
    )?;
    let last = if b.mbl > 0 {
        format!("w_left_q == {WORDS_BITS}'d1 || (&w_idx_q)")
    } else {
        "1'b1".to_owned()
    };
    m.wire_assign(
        "w_last_d",
        Expr::raw(last, 1),
        Some("the beat formed ends its burst: the request's last, or a max_burst boundary"),
    )?;
    m.assign_raw(
        "wr_busy",
        format!(
            "aw_left_q != {WORDS_BITS}'d0 || w_left_q != {WORDS_BITS}'d0 || wq_n_q != {n}'d0 || \
             w_valid_q || b_out_q != {ob}'d0",
            n = clog2(WQ_DEPTH + 1)
        ),
    )?;
    m.assign_raw("wr_err", "wr_err_q")?;
    Ok(())
}

/// The W side's request queue: the current request takes the oldest waiting one (or the new
/// request) when its last beat enters the W stage; a new request otherwise joins the queue.
fn m_wq(c: &mut Code, b: &Bus, wr_beats: &str, idx: &dyn Fn(&str) -> String, n: u32) {
    let wb = WORDS_BITS;
    let free = format!("w_left_q == {wb}'d0 || (w_in && w_left_q == {wb}'d1)");
    let waiting = format!("wq_n_q != {n}'d0");
    let pop = format!("({free}) && {waiting}");
    let push = format!("wr_req_fire && !(({free}) && !({waiting}))");
    c.if_(&free, |c| {
        c.if_else(
            &waiting,
            |c| {
                c.nb("w_left_q", "wq0_left_q");
                if b.mbl > 0 {
                    c.nb("w_idx_q", "wq0_idx_q");
                }
            },
            |c| {
                c.if_("wr_req_fire", |c| {
                    c.nb("w_left_q", wr_beats);
                    if b.mbl > 0 {
                        c.nb("w_idx_q", idx("wr_req_addr"));
                    }
                });
            },
        );
    });
    // Entry e after this cycle: the next one moved up on a pop, the new request at the tail.
    for e in 0..WQ_DEPTH {
        let set = |c: &mut Code, src_left: String, src_idx: String| {
            c.nb(format!("wq{e}_left_q"), src_left);
            if b.mbl > 0 {
                c.nb(format!("wq{e}_idx_q"), src_idx);
            }
        };
        let new_left = wr_beats.to_owned();
        let new_idx = idx("wr_req_addr");
        c.if_else(
            &pop,
            |c| {
                c.if_else(
                    format!("({push}) && wq_n_q == {n}'d{}", e + 1),
                    |c| set(c, new_left.clone(), new_idx.clone()),
                    |c| {
                        if e + 1 < WQ_DEPTH {
                            set(
                                c,
                                format!("wq{}_left_q", e + 1),
                                format!("wq{}_idx_q", e + 1),
                            );
                        }
                    },
                );
            },
            |c| {
                c.if_(format!("({push}) && wq_n_q == {n}'d{e}"), |c| {
                    set(c, new_left.clone(), new_idx.clone())
                });
            },
        );
    }
    c.nb(
        "wq_n_q",
        format!("wq_n_q + {{{z}'d0, {push}}} - {{{z}'d0, {pop}}}", z = n - 1),
    );
}

fn registers(m: &mut ModuleBuilder, b: &Bus, clk: &crate::emit::Sig) -> Result<()> {
    let (ob, abw, lb, aw) = (b.ob, b.aw - b.lb, b.lb, b.aw);
    let bw = b.mbl + 1;
    let rd_beats = beats_wire(m, b, "rd")?;
    let wr_beats = beats_wire(m, b, "wr")?;
    m.section("state");
    let idx = |addr: &str| format!("{addr}[{}:{lb}]", lb + b.mbl - 1);
    let mut c = Code::new();
    c.if_else(
        "!rst_n",
        |c| {
            for r in ["ar_left_q", "aw_left_q", "w_left_q"] {
                c.nb(r, format!("{WORDS_BITS}'d0"));
            }
            for r in ["rd_out_q", "aw_ahead_q", "b_out_q"] {
                c.nb(r, format!("{ob}'d0"));
            }
            for r in ["rd_drain_q", "wr_drain_q", "w_valid_q"] {
                c.nb(r, "1'b0");
            }
            c.nb("wq_n_q", format!("{}'d0", clog2(WQ_DEPTH + 1)));
            c.nb("wr_err_q", "2'd0");
        },
        |c| {
            c.comment("read requests and AR bursts");
            c.if_("rd_req_fire", |c| {
                c.nb("ar_beat_q", format!("rd_req_addr[{}:{lb}]", aw - 1));
                c.nb("ar_left_q", rd_beats.clone());
            });
            c.if_("ar_fire", |c| {
                c.nb(
                    "ar_beat_q",
                    format!("ar_beat_q + {}", zext("ar_burst", bw, abw)),
                );
                c.nb(
                    "ar_left_q",
                    format!("ar_left_q - {}", zext("ar_burst", bw, WORDS_BITS)),
                );
            });
            c.nb(
                "rd_out_q",
                format!(
                    "rd_out_q + {} - {}",
                    zext("ar_fire", 1, ob),
                    zext("r_last_fire", 1, ob)
                ),
            );
            c.if_else(
                "soft_reset",
                |c| {
                    c.nb("rd_drain_q", "1'b1");
                },
                |c| {
                    c.if_("!rd_busy", |c| {
                        c.nb("rd_drain_q", "1'b0");
                    });
                },
            );

            c.comment("write requests and AW bursts");
            c.if_("wr_req_fire", |c| {
                c.nb("aw_beat_q", format!("wr_req_addr[{}:{lb}]", aw - 1));
                c.nb("aw_left_q", wr_beats.clone());
            });
            c.if_("aw_fire", |c| {
                c.nb(
                    "aw_beat_q",
                    format!("aw_beat_q + {}", zext("aw_burst", bw, abw)),
                );
                c.nb(
                    "aw_left_q",
                    format!("aw_left_q - {}", zext("aw_burst", bw, WORDS_BITS)),
                );
            });
            c.nb(
                "aw_ahead_q",
                format!(
                    "aw_ahead_q + {} - {}",
                    zext("aw_fire", 1, ob),
                    zext("(w_fire && w_last_q)", 1, ob)
                ),
            );
            c.nb(
                "b_out_q",
                format!(
                    "b_out_q + {} - {}",
                    zext("aw_fire", 1, ob),
                    zext("m_axi_bvalid", 1, ob)
                ),
            );
            c.if_else(
                "soft_reset || wr_err_clear",
                |c| {
                    c.nb("wr_err_q", "2'd0");
                },
                |c| {
                    c.if_(
                        "m_axi_bvalid && !wr_drain_q && m_axi_bresp > wr_err_q",
                        |c| {
                            c.nb("wr_err_q", "m_axi_bresp");
                        },
                    );
                },
            );
            c.comment("the W side: current request, the one behind it, the W stage");
            c.if_("w_fire", |c| {
                c.nb("w_valid_q", "1'b0");
            });
            c.if_("w_in", |c| {
                c.nb("w_valid_q", "1'b1");
                c.nb("w_data_q", "wr_data");
                c.nb("w_strb_q", format!("wr_drain_q ? {}'d0 : wr_strb", b.bytes));
                c.nb("w_last_q", "w_last_d");
                if b.mbl > 0 {
                    c.nb("w_idx_q", format!("w_idx_q + {}'d1", b.mbl));
                }
            });
            c.comment(
                "A new request becomes current when none is (or the current one's last beat \
                 enters now); else it waits behind.",
            );
            c.nb(
                "w_left_q",
                format!("w_left_q - {}", zext("w_in", 1, WORDS_BITS)),
            );
            let n = clog2(WQ_DEPTH + 1);
            m_wq(c, b, &wr_beats, &idx, n);
            c.if_else(
                "soft_reset",
                |c| {
                    c.nb("wr_drain_q", "1'b1");
                },
                |c| {
                    c.if_("!wr_busy", |c| {
                        c.nb("wr_drain_q", "1'b0");
                    });
                },
            );
        },
    );
    m.always_ff(clk, c)?;

    m.lint_off(
        "UNUSEDSIGNAL",
        "RID/BID (one ID is used), the address bits below the beat (the engine aligns), and the \
         burst length's top bit (the burst is at least one beat)",
    );
    let mut unused = vec![
        "m_axi_rid".to_owned(),
        "m_axi_bid".to_owned(),
        "rd_req_addr[2:0]".to_owned(),
        "wr_req_addr[2:0]".to_owned(),
    ];
    if lb > 3 {
        unused.push(format!("rd_beats_x[{}:0]", lb - 4));
        unused.push(format!("wr_beats_x[{}:0]", lb - 4));
    }
    if bw > 8 {
        unused.push("ar_len_w[8]".into());
        unused.push("aw_len_w[8]".into());
    }
    m.wire("dma_unused", 1, None)?;
    m.assign_raw("dma_unused", format!("^{{{}}}", unused.join(", ")))?;
    m.lint_on("UNUSEDSIGNAL");
    Ok(())
}
