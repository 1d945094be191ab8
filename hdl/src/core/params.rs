//! The run parameters: what the fetch stage hands the window generator, the execute stage and the
//! result stage when a descriptor starts running (`x_*` ports), one list for the driver of the
//! ports and every reader. Values are the descriptor's fields and its `caq_spec::Schedule`.

use caq_spec::CoreShape;

use crate::emit::{Dir, ModuleBuilder};
use crate::error::Result;

/// (port, width, meaning), for a core of shape `s` (its address width; the global pooling
/// parameters only where the core has it).
pub fn x_params(s: &CoreShape) -> Vec<(&'static str, u32, &'static str)> {
    let aw = s.addr_bits;
    let mut params = vec![
        ("x_conv", 1, "Conv2d (else Dense)"),
        ("x_relu", 1, ""),
        ("x_in_signed", 1, ""),
        ("x_out_signed", 1, ""),
        ("x_out_bits", 4, ""),
        ("x_grouped", 1, "local regions with multipliers"),
        ("x_in_c", 16, ""),
        ("x_in_h", 16, ""),
        ("x_in_w", 16, ""),
        ("x_hw", 24, "in_h * in_w: bytes of one input channel"),
        ("x_out_c", 16, ""),
        ("x_out_h", 16, ""),
        ("x_out_w", 16, ""),
        ("x_kh", 4, "kernel height"),
        ("x_kw", 3, "kernel width"),
        ("x_stride2", 1, "stride 2 (else 1)"),
        ("x_pad_top", 3, "zero rows above the input"),
        ("x_pad_left", 3, "zero columns left of the input"),
        ("x_pg_bits", 16, "group g's bits at [4g +: 4]"),
        ("x_pg_shift", 12, "group g's shift at [3g +: 3]"),
        ("x_active", 3, "active plane groups"),
        ("x_nch", 16, "chunks per K-vector"),
        ("x_wpr", 16, "64-bit words per plane row"),
        ("x_planes", 6, "active planes P"),
        ("x_tiles", 16, "tiles of R output channels"),
        ("x_items", 16, "outputs per tile: batch or out_h*out_w"),
        (
            "x_written",
            16,
            "outputs per tile written: x_items, or the pooled pixels",
        ),
        ("x_pool", 2, "max pooling window log2 k (0: none)"),
        ("x_block", 4, "window block width W"),
        ("x_slots2", 1, "tiles alternate between two weight slots"),
        ("x_out_addr", aw, "output_addr"),
        (
            "x_out_stride",
            17,
            "Dense: bytes between outputs of the batch",
        ),
        ("x_desc", 16, "the descriptor's index in the list"),
    ];
    if s.global_pool {
        params.extend([
            (
                "x_gpool",
                1,
                "global average pooling: one pixel per tile, each row's mean",
            ),
            ("x_pool_mult", 32, "global pooling: the mean's multiplier"),
            ("x_pool_shift", 6, "global pooling: the mean's shift"),
        ]);
    }
    params
}

/// k − 1 for the max-pooling window k = 2^`x_pool` (0 without pooling), 3 bits without an adder:
/// a pixel's place in its window is the low bits of its row and column.
pub const POOL_MASK: &str = "{x_pool == 2'd3, x_pool[1], x_pool != 2'd0}";

/// Verilog: output pixel (`row`, `col`) — 16-bit signals — lies in a whole max-pooling window
/// (the rows and columns past the last whole one are dropped); `m` is a wire of [`POOL_MASK`].
pub fn pool_in_window(row: &str, col: &str, m: &str) -> String {
    format!("{row} < (x_out_h & ~{{13'd0, {m}}}) && {col} < (x_out_w & ~{{13'd0, {m}}})")
}

/// Verilog: output pixel (`row`, `col`) is its max-pooling window's last (bottom right); the
/// window's maximum is written there when [`pool_in_window`] holds too. The execute stage (run
/// credits) and the result stage (the pooling line) both decide by these two rules.
pub fn pool_window_last(row: &str, col: &str, m: &str) -> String {
    format!("({row}[2:0] & {m}) == {m} && ({col}[2:0] & {m}) == {m}")
}

/// The meaning of `x_early`, a port of the fetch stage (out) and of the execute and result stages
/// (in) beside the run parameters (the window generator does not need it).
pub const X_EARLY_DOC: &str = "the descriptor was handed over early, while the previous Conv2d \
                               still requantizes and writes";

/// Declares every run parameter as an input of `m`.
pub fn x_inputs(m: &mut ModuleBuilder, s: &CoreShape) -> Result<()> {
    m.port_group("run parameters of the running descriptor (from caq_fetch)");
    m.port_lint_off(
        "UNUSEDSIGNAL",
        "every stage receives the whole parameter set and uses its part",
    );
    for (name, w, doc) in x_params(s) {
        if doc.is_empty() {
            m.port(Dir::Input, name, w)?;
        } else {
            m.port_doc(Dir::Input, name, w, doc)?;
        }
    }
    m.port_lint_on("UNUSEDSIGNAL");
    Ok(())
}
