//! `caq_decode`: the descriptor's fields, its checks and its schedule, in registered stages.
//!
//! The fields are wires generated from `caq_spec::descriptor::DESCRIPTOR_FIELDS` by
//! [`desc_fields`] (the one place Verilog learns where a field lies; the fetch stage calls it too).
//! The checks are those of `caq_spec::descriptor::check_fetched`, in its order, followed by the
//! device's capacity rule and schedule, `caq_spec::CoreShape::schedule` (docs/descriptor.md,
//! docs/hardware.md). They run once per descriptor, so they are spread over [`STAGES`] registered
//! stages, each one adder, comparator or multiplier deep: `done` pulses `STAGES` cycles after `go`
//! with the first failing check's code (0: the descriptor runs) and the schedule.
//!
//! Knows the descriptor format and the engine's shape; knows nothing of memory ports or buffers.

use caq_spec::descriptor::{DESCRIPTOR_FIELDS, DescField, used_bits};
use caq_spec::regmap::ErrorCode;
use caq_spec::shape::{FM_LANES, MAX_ITEMS, MAX_K_DATAPATH, POOL_LINE};
use caq_spec::{AccelConfig, Caps, CoreShape};

use super::ports::{WORDS_BITS, clog2};
use crate::emit::{Code, Dir, Expr, Module, ModuleBuilder, Sig, zext};
use crate::error::{HdlError, Result};

/// Registered stages from `go` to `done`.
pub const STAGES: u32 = 6;

/// The flat descriptor: word i at bits [32i +: 32].
pub const DESC_BITS: u32 = 32 * caq_spec::descriptor::DESCRIPTOR_WORDS as u32;

/// The Verilog name of a field's wire.
pub fn field_wire(f: &DescField) -> String {
    format!("d_{}", f.name)
}

/// Declares a wire `d_<name>` for every descriptor field, sliced from the flat descriptor
/// `desc` (a 64-bit field takes its word and the next).
pub fn desc_fields(m: &mut ModuleBuilder, desc: &Sig) -> Result<()> {
    m.lint_off(
        "UNUSEDSIGNAL",
        "every field is decoded; a module uses the ones it needs",
    );
    for f in DESCRIPTOR_FIELDS {
        let lsb = 32 * u32::from(f.word) + u32::from(f.lsb);
        let w = u32::from(f.width);
        m.wire_assign(&field_wire(f), desc.slice(lsb + w - 1, lsb), None)?;
    }
    m.lint_on("UNUSEDSIGNAL");
    Ok(())
}

/// Bits of a byte count up to one feature-map bank (`fm_bytes`).
pub fn fm_byte_bits(s: &CoreShape) -> u32 {
    clog2(s.fm_bytes + 1)
}

/// Outputs: (name, width, description), registered and valid from `done`.
fn schedule_ports(s: &CoreShape, aw: u32) -> Vec<(&'static str, u32, &'static str)> {
    let fbb = fm_byte_bits(s);
    vec![
        ("s_wpr", 16, "64-bit words per plane row, ceil(K/64)"),
        ("s_nch", 16, "C-wide chunks per K-vector, ceil(K/C)"),
        ("s_planes", 6, "active planes P"),
        ("s_regions", 16, "regions along K (1 when not grouped)"),
        ("s_tiles", 16, "tiles of R output channels"),
        (
            "s_items",
            16,
            "outputs per tile: the batch (Dense) or out_h*out_w",
        ),
        (
            "s_written",
            16,
            "outputs per tile written: s_items, the pooled (out_h/k)*(out_w/k), or 1 (global)",
        ),
        ("s_pool", 2, "max pooling window log2 k (0: none)"),
        ("s_block", 4, "window block width W (1 for Dense)"),
        ("s_slots2", 1, "a tile's planes fit half the weight buffer"),
        ("s_in_words", WORDS_BITS, "words of the whole input read"),
        (
            "s_mirror",
            1,
            "Conv2d whose written map fits a feature-map bank (mirrored)",
        ),
        ("s_out_bytes", fbb, "bytes of the mirrored map"),
        ("s_in_bytes", fbb, "Conv2d: bytes of the input map"),
        (
            "s_plane_stride",
            aw,
            "bytes from one plane to the next: out_c*wpr*8",
        ),
        (
            "s_out_stride",
            17,
            "Dense: bytes from one output to the next: out_c in whole C-byte chunks",
        ),
        ("s_hw", 24, "in_h * in_w: the bytes of one input channel"),
    ]
}

/// The `caq_decode` module.
pub fn decode(cfg: &AccelConfig) -> Result<Module> {
    let s = CoreShape::of(cfg);
    let caps = Caps::from_config(cfg).map_err(|e| HdlError::Unsupported {
        config: cfg.name.clone(),
        what: e.to_string(),
    })?;
    let aw = s.addr_bits;
    let mut m = ModuleBuilder::new("caq_decode")?;
    m.doc(&[
        "Descriptor fields (generated from caq_spec's field table), the checks of",
        "caq_spec::descriptor::check_fetched in their order, then the capacity rule and the",
        "schedule of caq_spec::CoreShape::schedule, in registered stages.",
    ]);
    m.doc_line(format!(
        "done follows go by {STAGES} cycles; the descriptor and the window must hold still meanwhile."
    ));
    let clk = m.port(Dir::Input, "clk", 1)?;
    m.port_doc(Dir::Input, "rst_n", 1, "synchronous, active low")?;
    m.port_doc(
        Dir::Input,
        "go",
        1,
        "pulse: desc holds a fetched descriptor",
    )?;
    let desc = m.port_doc(Dir::Input, "desc", DESC_BITS, "word i at [32i +: 32]")?;
    m.port_doc(
        Dir::Input,
        "desc_last",
        1,
        "this is descriptor DESC_COUNT - 1",
    )?;
    m.port(Dir::Input, "win_base", aw + 1)?;
    m.port(Dir::Input, "win_limit", aw + 1)?;
    m.port_doc(
        Dir::Output,
        "done",
        1,
        "pulse: code and the schedule are valid",
    )?;
    m.port_doc(
        Dir::Output,
        "code",
        8,
        "STATUS.ERR_CODE of the first failing check, 0 if none",
    )?;
    for (name, w, doc) in schedule_ports(&s, aw) {
        m.port_doc(Dir::Output, name, w, doc)?;
    }

    m.section("fields (caq_spec::descriptor::DESCRIPTOR_FIELDS)");
    desc_fields(&mut m, &desc)?;
    m.wire_assign("d_conv", Expr::raw("d_op == 8'd2", 1), None)?;

    m.section("the window, registered (it does not change while a job runs)");
    m.reg("wb_q", aw + 1, None)?;
    m.reg("wl_q", aw + 1, None)?;
    let mut wr = Code::new();
    wr.nb("wb_q", "win_base");
    wr.nb("wl_q", "win_limit");
    m.always_ff(&clk, wr)?;

    m.section("stage valid bits");
    m.reg("go_q", STAGES, Some("go, delayed"))?;
    let mut ctl = Code::new();
    ctl.if_else(
        "!rst_n",
        |c| {
            c.nb("go_q", format!("{STAGES}'d0"));
        },
        |c| {
            c.nb("go_q", format!("{{go_q[{}:0], go}}", STAGES - 2));
        },
    );
    m.always_ff(&clk, ctl)?;
    m.assign_raw("done", format!("go_q[{}]", STAGES - 1))?;

    let mut st = Code::new();
    stage1(&mut m, &mut st, cfg, &caps, &s)?;
    stage2(&mut m, &mut st)?;
    stage3(&mut m, &mut st, &caps, &s)?;
    stage4(&mut m, &mut st, &s)?;
    stage5(&mut m, &mut st, &s)?;
    stage6(&mut m, &mut st, &s)?;
    m.always_ff(&clk, st)?;
    Ok(m.finish())
}

/// Declares a register and assigns it in `st`.
fn reg(
    m: &mut ModuleBuilder,
    st: &mut Code,
    name: &str,
    w: u32,
    value: impl AsRef<str>,
) -> Result<()> {
    m.reg(name, w, None)?;
    st.nb(name, value);
    Ok(())
}

/// Stage 1: the checks on single fields (1-6, 8-10, the dimensions), the products of two
/// fields, the address checks of buffers that are not tables.
fn stage1(
    m: &mut ModuleBuilder,
    st: &mut Code,
    cfg: &AccelConfig,
    caps: &Caps,
    s: &CoreShape,
) -> Result<()> {
    m.section("stage 1: single-field checks, first products");
    let aw = s.addr_bits;
    let stored = |g: u32| format!("d_n_groups > 8'd{g}");
    let bits_in = |f: &str, lo: u32, hi: u32| format!("({f} >= 4'd{lo} && {f} <= 4'd{hi})");
    reg(m, st, "c_op_q", 1, "d_op == 8'd1 || d_op == 8'd2")?;
    reg(
        m,
        st,
        "c_ngroups_q",
        1,
        "d_n_groups >= 8'd1 && d_n_groups <= 8'd4",
    )?;
    let mut widths = vec![bits_in("d_in_bits", 1, 8), bits_in("d_out_bits", 1, 8)];
    for g in 0..4 {
        widths.push(format!(
            "(!({}) || {})",
            stored(g),
            bits_in(&format!("d_pg{g}_bits"), 1, 8)
        ));
    }
    reg(m, st, "c_widths_q", 1, widths.join(" && "))?;
    let slots = (1..4)
        .map(|g| {
            format!(
                "({} || (d_pg{g}_bits == 4'd0 && d_pg{g}_shift == 8'd0 && d_weight_addr{g} == 64'd0))",
                stored(g)
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    reg(m, st, "c_slots_q", 1, slots)?;
    let reserved = used_bits()
        .iter()
        .enumerate()
        .filter(|(_, u)| **u != u32::MAX)
        .map(|(i, u)| format!("((desc[{} +: 32] & 32'h{:08x}) == 32'd0)", 32 * i, !u))
        .collect::<Vec<_>>()
        .join(" && ");
    // pool_mult and pool_shift are reserved while global_pool is clear.
    let reserved =
        format!("{reserved} && (d_global_pool || (d_pool_mult == 32'd0 && d_pool_shift == 6'd0))");
    reg(m, st, "c_reserved_q", 1, reserved)?;
    m.wire_assign(
        "bits_mask",
        Expr::lit(8, u64::from(caps.weight_bits_mask())),
        Some("supported weight bit-widths"),
    )?;
    let act = u32::from(caps.act_bits().get());
    let mut caps_bits = vec![bits_in("d_in_bits", 2, act), bits_in("d_out_bits", 2, act)];
    for g in 0..4 {
        caps_bits.push(format!(
            "(!({}) || bits_mask[d_pg{g}_bits[2:0] - 3'd1])",
            stored(g)
        ));
    }
    reg(m, st, "c_caps_bits_q", 1, caps_bits.join(" && "))?;
    let dim = caps.max_dim();
    let dims = [
        "d_in_c", "d_in_h", "d_in_w", "d_out_c", "d_out_h", "d_out_w",
    ]
    .iter()
    .map(|d| format!("({d} != 16'd0 && {{16'd0, {d}}} <= 32'd{dim})"))
    .collect::<Vec<_>>()
    .join(" && ");
    reg(m, st, "c_dims_q", 1, dims)?;
    reg(
        m,
        st,
        "c_kernel_q",
        1,
        "d_kernel_h >= 8'd1 && d_kernel_h <= 8'd15 && d_kernel_w >= 8'd1 && d_kernel_w <= 8'd7 && \
         d_stride >= 8'd1 && d_stride <= 8'd2 && \
         d_pad_top <= 4'd7 && d_pad_left <= 4'd7 && d_pad_bottom <= 4'd7 && d_pad_right <= 4'd7 && \
         {4'd0, d_pad_top} + {4'd0, d_pad_bottom} <= d_kernel_h && \
         {4'd0, d_pad_left} + {4'd0, d_pad_right} <= d_kernel_w && \
         (d_max_pool == 4'd0 || d_max_pool == 4'd2 || d_max_pool == 4'd4 || d_max_pool == 4'd8)",
    )?;
    reg(
        m,
        st,
        "c_dense_q",
        1,
        "d_in_h == 16'd1 && d_in_w == 16'd1 && d_out_h == 16'd1 && d_out_w == 16'd1 && \
         d_kernel_h == 8'd1 && d_kernel_w == 8'd1 && d_stride == 8'd1 && \
         d_pad_top == 4'd0 && d_pad_left == 4'd0 && d_pad_bottom == 4'd0 && d_pad_right == 4'd0 && \
         d_batch != 16'd0 && d_max_pool == 4'd0 && !d_global_pool",
    )?;
    reg(
        m,
        st,
        "c_conv_batch_q",
        1,
        format!(
            "d_batch == 16'd1 && {{12'd0, d_max_pool}} <= d_out_h && {{12'd0, d_max_pool}} <= d_out_w && \
             {}",
            // Without CAPS0.GLOBAL_POOL the field is refused, else not with max_pool.
            if s.global_pool {
                "!(d_global_pool && d_max_pool != 4'd0)"
            } else {
                "!d_global_pool"
            }
        ),
    )?;
    // Max pooling: the window as log2 k (POOL_WINDOWS are 2, 4, 8), the pooled map's size.
    m.wire_assign(
        "pool_e",
        Expr::raw(
            "(d_max_pool == 4'd2) ? 2'd1 : (d_max_pool == 4'd4) ? 2'd2 : \
             (d_max_pool == 4'd8) ? 2'd3 : 2'd0",
            2,
        ),
        Some("log2 of the max-pooling window, 0: none"),
    )?;
    reg(m, st, "pool_e_q", 2, "pool_e")?;
    reg(
        m,
        st,
        "pohw_q",
        16,
        // At most out_h * out_w, which the capacity rule bounds by MAX_ITEMS; 1 with global
        // pooling.
        if s.global_pool {
            "d_global_pool ? 16'd1 : (d_out_h >> pool_e) * (d_out_w >> pool_e)"
        } else {
            "(d_out_h >> pool_e) * (d_out_w >> pool_e)"
        },
    )?;
    reg(m, st, "pool_w_q", 16, "d_out_w >> pool_e")?;
    let wmax = caps.max_weight_bits().get();
    let mut groups = vec![
        format!("d_n_groups <= 8'd{}", caps.max_plane_groups()),
        "d_active_groups >= 8'd1 && d_active_groups <= d_n_groups".to_string(),
    ];
    for g in 0..4 {
        groups.push(format!(
            "(!({st}) || (d_pg{g}_shift <= 8'd7 && {{4'd0, d_pg{g}_bits}} + d_pg{g}_shift <= 8'd{wmax}))",
            st = stored(g)
        ));
    }
    reg(m, st, "c_groups_q", 1, groups.join(" && "))?;
    let gs = s.group_size;
    reg(
        m,
        st,
        "c_region_q",
        1,
        if gs == 0 {
            "!d_grouped && d_group_size == 16'd0".to_string()
        } else {
            format!("d_grouped ? (d_group_size == 16'd{gs}) : (d_group_size == 16'd0)")
        },
    )?;
    // 10: alignment of the addresses the run uses.
    let bus_log2 = clog2(cfg.bus_bytes());
    let used = used_addresses();
    // A Conv2d's input and output maps may start at any byte (read from the word they start in,
    // written with byte strobes).
    let aligned = used
        .iter()
        .map(|(n, u)| {
            let map = *n == "d_input_addr" || *n == "d_output_addr";
            let u = if map {
                format!("!d_conv && ({u})")
            } else {
                (*u).to_owned()
            };
            format!("(!({u}) || {n}[{}:0] == {bus_log2}'d0)", bus_log2 - 1)
        })
        .collect::<Vec<_>>()
        .join(" && ");
    reg(m, st, "c_aligned_q", 1, aligned)?;
    // 11, part 1: every used address fits the address space and starts in the window; the
    // tables' ends are checked in stage 5.
    // One flag per address here, their AND in stage 2 (two compares of the address width each).
    for (i, (n, u)) in used.iter().enumerate() {
        // The bits above the address width must be zero (none at 64 bits).
        let high = if aw < 64 {
            format!("{n}[63:{aw}] == {}'d0 && ", 64 - aw)
        } else {
            String::new()
        };
        reg(
            m,
            st,
            &format!("c_win{i}_q"),
            1,
            format!(
                "!({u}) || ({high}{{1'b0, {n}[{a}:0]}} >= wb_q && {{1'b0, {n}[{a}:0]}} < wl_q)",
                a = aw - 1
            ),
        )?;
    }
    reg(m, st, "c_position_q", 1, "d_last == desc_last")?;
    // The schedule's first products and sums.
    reg(
        m,
        st,
        "kk_q",
        7,
        "d_conv ? ({3'd0, d_kernel_h[3:0]} * {4'd0, d_kernel_w[2:0]}) : 7'd1",
    )?;
    reg(m, st, "hw_q", 32, "{16'd0, d_in_h} * {16'd0, d_in_w}")?;
    reg(m, st, "ohw_q", 32, "{16'd0, d_out_h} * {16'd0, d_out_w}")?;
    for (ax, inp, k, before, after) in [
        ("h", "d_in_h", "d_kernel_h", "d_pad_top", "d_pad_bottom"),
        ("w", "d_in_w", "d_kernel_w", "d_pad_left", "d_pad_right"),
    ] {
        reg(
            m,
            st,
            &format!("span_{ax}_q"),
            19,
            format!("{{3'd0, {inp}}} + {{15'd0, {before}}} + {{15'd0, {after}}} - {{11'd0, {k}}}"),
        )?;
    }
    let planes = "{2'd0, d_pg0_bits} + ((d_active_groups > 8'd1) ? {2'd0, d_pg1_bits} : 6'd0) + \
                  ((d_active_groups > 8'd2) ? {2'd0, d_pg2_bits} : 6'd0) + \
                  ((d_active_groups > 8'd3) ? {2'd0, d_pg3_bits} : 6'd0)";
    reg(m, st, "planes1_q", 6, planes)?;
    // Pixels whose kernel rows one 16-byte feature-map read covers: (W-1)*stride + kernel_w <= 16.
    reg(
        m,
        st,
        "segw_q",
        5,
        format!(
            "(d_stride == 8'd2) ? ((5'd{FM_LANES} - {{2'd0, d_kernel_w[2:0]}}) >> 1) + 5'd1 : \
             (5'd{FM_LANES} - {{2'd0, d_kernel_w[2:0]}}) + 5'd1"
        ),
    )?;
    Ok(())
}

/// The addresses a run uses, with the condition under which it uses each.
fn used_addresses() -> Vec<(&'static str, &'static str)> {
    vec![
        ("d_input_addr", "1'b1"),
        ("d_output_addr", "1'b1"),
        ("d_bias_addr", "1'b1"),
        ("d_requant_addr", "1'b1"),
        ("d_group_mult_addr", "d_grouped"),
        ("d_weight_addr0", "1'b1"),
        ("d_weight_addr1", "d_active_groups > 8'd1"),
        ("d_weight_addr2", "d_active_groups > 8'd2"),
        ("d_weight_addr3", "d_active_groups > 8'd3"),
    ]
}

/// Stage 2: K, the feature-map size, the output-size rule, the bias and requant table ends.
/// (Every stage's registers run freely from the still descriptor: a later stage reads any
/// earlier stage's registers directly; `done` waits until the last has settled.)
fn stage2(m: &mut ModuleBuilder, st: &mut Code) -> Result<()> {
    m.section("stage 2: K, the feature map, the output sizes, table ends");
    let flags = (0..used_addresses().len())
        .map(|i| format!("c_win{i}_q"))
        .collect::<Vec<_>>()
        .join(" && ");
    reg(m, st, "c_window2_q", 1, flags)?;
    reg(m, st, "k2_q", K2_BITS, "{6'd0, d_in_c} * {15'd0, kk_q}")?;
    reg(m, st, "fm2_q", 48, "{32'd0, d_in_c} * {16'd0, hw_q}")?;
    reg(m, st, "ob2_q", 32, "{16'd0, d_out_c} * {16'd0, pohw_q}")?;
    for (ax, out) in [("h", "d_out_h"), ("w", "d_out_w")] {
        reg(
            m,
            st,
            &format!("c_out_{ax}_q"),
            1,
            format!(
                "!span_{ax}_q[18] && (((span_{ax}_q >> (d_stride == 8'd2 ? 1 : 0)) + 19'd1) == {{3'd0, {out}}})"
            ),
        )?;
    }
    for (name, addr, shift) in [
        ("bias_end_q", "d_bias_addr", 2),
        ("rq_end_q", "d_requant_addr", 3),
    ] {
        reg(
            m,
            st,
            name,
            65,
            format!("{{1'b0, {addr}}} + ({{49'd0, d_out_c}} << {shift})"),
        )?;
    }
    Ok(())
}

/// Width of `k2_q`, K = in_c · kernel_h · kernel_w (16 × 6 bits).
const K2_BITS: u32 = 22;

/// ⌈`sig` / 2^`sh`⌉ as 16 bits, `sig` being `width` bits wide (the bits above 16 of the quotient
/// dropped: K is checked against `max_k` ≤ 65535 in the same stage).
fn ceil_shift(sig: &str, width: u32, sh: u32) -> String {
    if sh == 0 {
        return format!("{sig}[15:0]");
    }
    if sh >= width {
        return format!("{{15'd0, {sig} != {width}'d0}}");
    }
    let hi = (sh + 15).min(width - 1);
    let q = hi - sh + 1;
    let quotient = if q == 16 {
        format!("{sig}[{hi}:{sh}]")
    } else {
        format!("{{{}'d0, {sig}[{hi}:{sh}]}}", 16 - q)
    };
    format!("{quotient} + {{15'd0, {sig}[{}:0] != {sh}'d0}}", sh - 1)
}

/// Stage 3: K's derived counts, the shape check, the region count, the tables' window.
fn stage3(m: &mut ModuleBuilder, st: &mut Code, caps: &Caps, s: &CoreShape) -> Result<()> {
    // The feature map's bytes from the 8-byte word each map starts in (CoreShape::schedule,
    // CoreShape::mirror_bytes): a Conv2d's input is read from there, its output mirrored so.
    reg(
        m,
        st,
        "fml3_q",
        48,
        "fm2_q + {45'd0, d_conv ? d_input_addr[2:0] : 3'd0}",
    )?;
    reg(m, st, "obl3_q", 32, "ob2_q + {29'd0, d_output_addr[2:0]}")?;
    m.section("stage 3: counts derived from K, the shape rule");
    let cl = clog2(s.cols);
    reg(m, st, "wpr3_q", 16, ceil_shift("k2_q", K2_BITS, 6))?;
    reg(m, st, "nch3_q", 16, ceil_shift("k2_q", K2_BITS, cl))?;
    let regions = if s.group_size == 0 {
        "16'd1".to_string()
    } else {
        format!(
            "d_grouped ? ({}) : 16'd1",
            ceil_shift("k2_q", K2_BITS, clog2(s.group_size))
        )
    };
    reg(m, st, "regions3_q", 16, regions)?;
    reg(
        m,
        st,
        "c_shape3_q",
        1,
        format!(
            "c_dims_q && c_kernel_q && (d_conv ? (c_out_h_q && c_out_w_q && c_conv_batch_q) : \
             c_dense_q) && k2_q <= 22'd{}",
            caps.max_k()
        ),
    )?;
    let aw = s.addr_bits;
    let limit = zext("wl_q", aw + 1, 65);
    reg(
        m,
        st,
        "c_window3_q",
        1,
        format!("c_window2_q && bias_end_q <= {limit} && rq_end_q <= {limit}"),
    )?;
    Ok(())
}

/// Stage 4: the products of counts: weight words per row, the Dense batch's chunks, the region
/// table's length, the plane stride; the patch capacity per block width.
fn stage4(m: &mut ModuleBuilder, st: &mut Code, s: &CoreShape) -> Result<()> {
    m.section("stage 4: products of the counts");
    let aw = s.addr_bits;
    reg(m, st, "words4_q", 22, "{6'd0, wpr3_q} * {16'd0, planes1_q}")?;
    reg(
        m,
        st,
        "batch_ch4_q",
        32,
        "{16'd0, d_batch} * {16'd0, nch3_q}",
    )?;
    reg(
        m,
        st,
        "gm_len4_q",
        32,
        "{16'd0, d_out_c} * {16'd0, regions3_q}",
    )?;
    reg(
        m,
        st,
        "plane_stride4_q",
        aw - 3,
        format!("{{{z}'d0, d_out_c}} * {{{z}'d0, wpr3_q}}", z = aw - 3 - 16),
    )?;
    // Block widths W = 1..=max_block whose two patch blocks fit the activation banks.
    let fits = (1..=s.max_block)
        .rev()
        .map(|w| format!("({{16'd0, nch3_q}} * 32'd{}) <= 32'd{}", 2 * w, s.adepth))
        .collect::<Vec<_>>()
        .join(", ");
    reg(m, st, "patch_fit4_q", s.max_block, format!("{{{fits}}}"))?;
    // Dense: the batch's inputs, whole chunks each: batch * chunks * C/8 words.
    let lnb = clog2(s.abanks);
    reg(
        m,
        st,
        "batch_words4_q",
        WORDS_BITS,
        format!(
            "({{{z}'d0, d_batch}} * {{{z}'d0, nch3_q}}) << {lnb}",
            z = WORDS_BITS - 16
        ),
    )?;
    reg(
        m,
        st,
        "fm_words4_q",
        WORDS_BITS,
        format!(
            "fml3_q[{}:3] + {{{}'d0, fml3_q[2:0] != 3'd0}}",
            WORDS_BITS + 2,
            WORDS_BITS - 1
        ),
    )?;
    // CoreShape::mirror_bytes: the written map is mirrored when its bytes fit a bank (from the
    // word it starts in).
    reg(
        m,
        st,
        "mirror4_q",
        1,
        format!("d_conv && obl3_q <= 32'd{}", s.fm_bytes),
    )?;
    Ok(())
}

/// Stage 5: the region table's end, the capacity rule, the block width.
fn stage5(m: &mut ModuleBuilder, st: &mut Code, s: &CoreShape) -> Result<()> {
    m.section("stage 5: the region table's end, capacity, block width");
    reg(
        m,
        st,
        "gm_end5_q",
        65,
        "{1'b0, d_group_mult_addr} + {32'd0, gm_len4_q, 1'b0}",
    )?;
    let fit = |w: u32| {
        if s.max_block == 1 {
            "patch_fit4_q".to_owned()
        } else {
            format!("patch_fit4_q[{}]", w - 1)
        }
    };
    reg(
        m,
        st,
        "c_capacity5_q",
        1,
        format!(
            "k2_q <= 22'd{MAX_K_DATAPATH} && words4_q <= 22'd{wd} && \
             (d_conv || batch_ch4_q <= 32'd{ad}) && \
             (!d_conv || (fml3_q <= 48'd{fb} && {fit1} && ohw_q <= 32'd{MAX_ITEMS})) && \
             (pool_e_q == 2'd0 || pool_w_q <= 16'd{POOL_LINE})",
            wd = s.wdepth,
            ad = s.adepth,
            fb = s.fm_bytes,
            fit1 = fit(1)
        ),
    )?;
    reg(
        m,
        st,
        "slots2_5_q",
        1,
        format!("words4_q <= 22'd{}", s.wdepth / 2),
    )?;
    // W: the widest w with w <= segw, w <= out_w and the patch fit; at least 1.
    let choose = (1..=s.max_block)
        .rev()
        .map(|w| {
            format!(
                "({} && segw_q >= 5'd{w} && d_out_w >= 16'd{w}) ? 4'd{w} : ",
                fit(w)
            )
        })
        .collect::<String>()
        + "4'd1";
    reg(m, st, "block5_q", 4, format!("d_conv ? ({choose}) : 4'd1"))?;
    Ok(())
}

/// Stage 6: the last window check, the first failing check's code, the schedule outputs.
fn stage6(m: &mut ModuleBuilder, st: &mut Code, s: &CoreShape) -> Result<()> {
    m.section("stage 6: the first failing check, the schedule");
    let aw = s.addr_bits;
    m.wire_assign(
        "c_window_all",
        Expr::raw(
            format!(
                "c_window3_q && (!d_grouped || gm_end5_q <= {})",
                zext("wl_q", aw + 1, 65)
            ),
            1,
        ),
        None,
    )?;
    let code = |e: ErrorCode| format!("8'd{}", e.as_u8());
    let chain = [
        ("c_op_q", ErrorCode::BadOpcode),
        ("c_ngroups_q", ErrorCode::BadGroups),
        ("c_widths_q", ErrorCode::BadBits),
        ("c_slots_q", ErrorCode::BadGroups),
        ("c_reserved_q", ErrorCode::Reserved),
        ("c_caps_bits_q", ErrorCode::BadBits),
        ("c_shape3_q", ErrorCode::BadShape),
        ("c_groups_q", ErrorCode::BadGroups),
        ("c_region_q", ErrorCode::BadRegion),
        ("c_aligned_q", ErrorCode::Misaligned),
        ("c_window_all", ErrorCode::OutOfWindow),
        ("c_position_q", ErrorCode::DescCount),
        ("c_capacity5_q", ErrorCode::BadShape),
    ];
    let text = chain
        .iter()
        .map(|(w, e)| format!("!{w} ? {} : ", code(*e)))
        .collect::<String>()
        + "8'd0";
    reg(m, st, "code_q", 8, text)?;
    let rl = clog2(s.rows);
    m.wire_assign(
        "tiles",
        Expr::raw(
            format!(
                "{{{rl}'d0, d_out_c[15:{rl}]}} + {{15'd0, d_out_c[{}:0] != {rl}'d0}}",
                rl - 1
            ),
            16,
        ),
        Some("ceil(out_c / R)"),
    )?;
    let fbb = fm_byte_bits(s);
    let outs: Vec<(&str, u32, String)> = vec![
        ("s_wpr", 16, "wpr3_q".into()),
        ("s_nch", 16, "nch3_q".into()),
        ("s_planes", 6, "planes1_q".into()),
        ("s_regions", 16, "regions3_q".into()),
        ("s_tiles", 16, "tiles".into()),
        ("s_items", 16, "d_conv ? ohw_q[15:0] : d_batch".into()),
        ("s_written", 16, "d_conv ? pohw_q : d_batch".into()),
        ("s_pool", 2, "pool_e_q".into()),
        ("s_block", 4, "block5_q".into()),
        ("s_slots2", 1, "slots2_5_q".into()),
        (
            "s_in_words",
            WORDS_BITS,
            "d_conv ? fm_words4_q : batch_words4_q".into(),
        ),
        ("s_mirror", 1, "mirror4_q".into()),
        // Both at most the bank's bytes where they are used (a mirrored map; a Conv2d input
        // that passed the capacity rule), so the low bits are the whole value.
        ("s_out_bytes", fbb, format!("ob2_q[{}:0]", fbb - 1)),
        ("s_in_bytes", fbb, format!("fm2_q[{}:0]", fbb - 1)),
        ("s_plane_stride", aw, "{plane_stride4_q, 3'd0}".into()),
        (
            "s_out_stride",
            17,
            // CoreShape::batch_stride: out_c rounded up to whole C-byte chunks (C a power of two).
            format!("({{1'b0, d_out_c}} + 17'd{m}) & ~17'd{m}", m = s.cols - 1),
        ),
        ("s_hw", 24, "hw_q[23:0]".into()),
    ];
    for (name, w, value) in outs {
        let q = format!("{name}_q");
        reg(m, st, &q, w, value)?;
        m.assign_raw(name, q)?;
    }
    m.assign_raw("code", "code_q")?;
    Ok(())
}
