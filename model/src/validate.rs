//! The one validation of a model's content, run when a float model, a bundle or an imported graph
//! is opened, before any backend sees it. Model files come from other people and other tools, so
//! everything a kernel, a compiler or a device would trip over is refused here, with the field and
//! the allowed range: shapes (with overflow-checked arithmetic), sizes against [`Limits`], names,
//! bit-widths, nesting levels and their plane groups, scales, quantizer settings, gates. After it
//! passes, no backend may find a problem in the model that this pass missed; a backend may still
//! refuse a model that does not fit its own capacity (a device config's `max_k`, its kernel sizes),
//! which is a property of the device, not of the file.
//!
//! Knows the model's structure and the numeric contract; knows nothing of files (`store`,
//! `bundle`, `graph` call it) or of devices.

use crate::error::{ModelError, Result};
use crate::graph::{FloatModel, Graph, Op, Shape3, Src, node_shape};
use crate::nested;
use crate::qmodel::{Gate, QuantizeConfig};
use crate::quant::{ActQuant, Calibration, MAX_BITS, MIN_BITS};

use caq_spec::descriptor::IN_C;
use std::collections::HashSet;

/// Bounds on the size of a model, so that a hostile file is refused at open instead of asking
/// for a 160 GB allocation, overflowing a shape or running for days.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest number of graph nodes.
    pub max_nodes: usize,
    /// Largest channel count, height, width, kernel side, stride or padding: the largest value a
    /// descriptor's 16-bit dimension field holds (caq_spec::descriptor).
    pub max_dim: usize,
    /// Longest reduction K of a layer: the accumulator bound of caq-spec at 8-bit weights and
    /// activations (`caq_spec::max_k_for`), the largest K any config may allow.
    pub max_k: usize,
    /// Multiply-accumulates of one image's forward pass (time, not memory: a model within the
    /// memory bound can still take days per image).
    pub max_macs: u64,
    /// Bytes a model may need: its f32 weights plus one image's f32 activations of every node
    /// (what a forward pass holds); calibration checks its own larger need against the same bound.
    pub max_bytes: u64,
}

/// The environment variable that overrides [`Limits::max_bytes`] (in MiB).
pub const MEMORY_LIMIT_ENV: &str = "CAQ_MEMORY_LIMIT_MB";
/// The environment variable that overrides [`Limits::max_macs`].
pub const MACS_LIMIT_ENV: &str = "CAQ_MAX_MACS";

impl Limits {
    /// The limits on this machine: half of its memory (from /proc/meminfo, 4 GiB where that is
    /// unreadable), or `CAQ_MEMORY_LIMIT_MB` when set; `CAQ_MAX_MACS` overrides the MAC bound.
    pub fn for_this_machine() -> Limits {
        let contract = Limits::contract();
        let max_macs = std::env::var(MACS_LIMIT_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(contract.max_macs);
        let max_bytes = std::env::var(MEMORY_LIMIT_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|mb| mb.saturating_mul(1 << 20))
            .unwrap_or_else(|| mem_total_bytes().map_or(4 << 30, |b| b / 2));
        Limits {
            max_bytes,
            max_macs,
            ..contract
        }
    }

    /// The bounds that come from the contract alone, with `max_bytes` unbounded.
    pub fn contract() -> Limits {
        let w8 = caq_spec::BitWidth::MAX;
        Limits {
            max_nodes: 1 << 20,
            max_dim: (1usize << IN_C.width) - 1,
            max_k: caq_spec::max_k_for(w8, w8) as usize,
            max_macs: 1 << 36,
            max_bytes: u64::MAX,
        }
    }
}

fn mem_total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The rule for a node name: it keys the node's tensors (`{name}.weight`) and is printed in
/// tables and errors, so it is short printable ASCII without spaces or control characters.
pub const NODE_NAME_RULE: &str = "1..=128 letters, digits, '-', '_', '.', '/' or ':'";

pub fn node_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
}

/// Smallest and largest accepted quantizer or channel scale: well inside f32's normal range, so
/// `code · scale` and `x / scale` stay finite for every 8-bit code.
pub const SCALE_RANGE: (f32, f32) = (1.0 / (1u128 << 100) as f32, (1u128 << 100) as f32);

/// Checks one scale: finite, positive, within [`SCALE_RANGE`].
pub fn check_scale(what: &str, scale: f32) -> Result<()> {
    let (lo, hi) = SCALE_RANGE;
    if !(scale.is_finite() && (lo..=hi).contains(&scale)) {
        return Err(ModelError::arg(
            what,
            format!("scale {scale} must be finite and in [2^-100, 2^100]"),
        ));
    }
    Ok(())
}

fn check_act(what: &str, a: &ActQuant) -> Result<()> {
    if !(MIN_BITS..=MAX_BITS).contains(&a.bits) {
        return Err(ModelError::arg(
            what,
            format!("bits {} is outside {MIN_BITS}..={MAX_BITS}", a.bits),
        ));
    }
    check_scale(what, a.scale)
}

/// The graph: node count, names (rule and uniqueness), shapes, every dimension, K and size
/// against `limits`. Returns every node's output shape.
pub fn graph(g: &Graph, limits: &Limits) -> Result<Vec<Shape3>> {
    if g.nodes.len() > limits.max_nodes {
        return Err(ModelError::arg(
            "graph",
            format!(
                "{} nodes; at most {} are accepted",
                g.nodes.len(),
                limits.max_nodes
            ),
        ));
    }
    let dim_ok = |v: usize| (1..=limits.max_dim).contains(&v);
    if !g.input_shape.iter().all(|&d| dim_ok(d)) {
        return Err(ModelError::arg(
            "input_shape",
            format!(
                "{:?}: every dimension must be in 1..={}",
                g.input_shape, limits.max_dim
            ),
        ));
    }
    let mut names = HashSet::with_capacity(g.nodes.len());
    for (i, n) in g.nodes.iter().enumerate() {
        if !node_name_ok(&n.name) {
            return Err(ModelError::arg(
                format!("node {i} name"),
                format!("{:?}: expected {NODE_NAME_RULE}", n.name),
            ));
        }
        if !names.insert(n.name.as_str()) {
            return Err(ModelError::arg(
                format!("node {i} name"),
                format!("'{}' is the name of an earlier node too", n.name),
            ));
        }
        let params = op_params(&n.op);
        if let Some((field, v)) = params.iter().find(|(_, v)| *v > limits.max_dim) {
            return Err(ModelError::Layer {
                layer: n.name.clone(),
                what: format!("{field} = {v} exceeds {}", limits.max_dim),
            });
        }
    }
    // Node by node, so the first problem reported is the earliest node's and no later shape is
    // computed from an out-of-bounds one.
    let mut shapes: Vec<Shape3> = Vec::with_capacity(g.nodes.len());
    let mut bytes: u64 = 0;
    let mut macs: u64 = 0;
    for (i, n) in g.nodes.iter().enumerate() {
        let mut ins = Vec::with_capacity(n.inputs.len());
        for src in &n.inputs {
            ins.push(match *src {
                Src::Input => g.input_shape,
                Src::Node(j) if j < i => shapes[j],
                Src::Node(j) => {
                    return Err(ModelError::Layer {
                        layer: n.name.clone(),
                        what: format!(
                            "input node {j} is not an earlier node (graph must be in topological order)"
                        ),
                    });
                }
            });
        }
        let s = node_shape(n, &ins)?;
        // A flattened vector is a reduction length for the next layer, bounded by max_k there.
        let spatial = !matches!(n.op, Op::Flatten);
        if let Some(d) = s.iter().find(|&&d| spatial && d > limits.max_dim) {
            return Err(ModelError::Layer {
                layer: n.name.clone(),
                what: format!(
                    "output shape {s:?}: dimension {d} exceeds {} (the descriptor's 16-bit fields)",
                    limits.max_dim
                ),
            });
        }
        // Each dimension ≤ 2^16 (a flattened one ≤ 2^48), so a shape's product fits u64.
        let values = s.iter().map(|&d| d as u64).product::<u64>();
        bytes = bytes.saturating_add(values.saturating_mul(4));
        if let Some((o, k, _)) = n.op.weight_matrix_dims() {
            if k == 0 || k > limits.max_k {
                return Err(ModelError::Layer {
                    layer: n.name.clone(),
                    what: format!(
                        "reduction length K = {k} is outside 1..={} (the 32-bit accumulator bound \
                         at 8-bit weights and activations)",
                        limits.max_k
                    ),
                });
            }
            let w = (o as u64).saturating_mul(k as u64);
            bytes = bytes.saturating_add(w.saturating_mul(4));
            macs = macs.saturating_add(values.saturating_mul(k as u64));
        }
        if bytes > limits.max_bytes {
            return Err(ModelError::Layer {
                layer: n.name.clone(),
                what: format!(
                    "the weights and one image's activations up to here take {} MiB; the limit is \
                     {} MiB (half this machine's memory, or {MEMORY_LIMIT_ENV})",
                    bytes >> 20,
                    limits.max_bytes >> 20
                ),
            });
        }
        shapes.push(s);
    }
    if g.nodes.is_empty() {
        return Err(ModelError::arg("graph", "has no nodes"));
    }
    if macs > limits.max_macs {
        return Err(ModelError::arg(
            "graph",
            format!(
                "{macs} multiply-accumulates per image; at most {} are accepted",
                limits.max_macs
            ),
        ));
    }
    Ok(shapes)
}

/// The integer parameters of an operator with their field names.
fn op_params(op: &Op) -> Vec<(&'static str, usize)> {
    match *op {
        // in_features is a reduction length, bounded by max_k.
        Op::Dense { out_features, .. } => vec![("out_features", out_features)],
        Op::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            groups,
            ..
        } => vec![
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("kernel[0]", kernel[0]),
            ("kernel[1]", kernel[1]),
            ("stride", stride),
            ("padding.top", padding.top),
            ("padding.left", padding.left),
            ("padding.bottom", padding.bottom),
            ("padding.right", padding.right),
            ("groups", groups),
        ],
        Op::MaxPool { kernel, stride } | Op::AvgPool { kernel, stride } => {
            vec![("kernel", kernel), ("stride", stride)]
        }
        Op::GlobalAvgPool | Op::Add { .. } | Op::Relu | Op::Flatten => Vec::new(),
    }
}

/// A float model: its graph, its parameters' shapes, every weight and bias finite.
pub fn float_model(m: &FloatModel, limits: &Limits) -> Result<()> {
    graph(&m.graph, limits)?;
    m.validate()?;
    for (node, p) in m.graph.nodes.iter().zip(&m.params) {
        let Some(p) = p else { continue };
        for (what, v) in [
            ("weight", &p.weight.as_slice()),
            ("bias", &p.bias.as_slice()),
        ] {
            let v = v.ok_or_else(|| ModelError::Layer {
                layer: node.name.clone(),
                what: format!("{what} is not contiguous"),
            })?;
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(ModelError::Layer {
                    layer: node.name.clone(),
                    what: format!("{what}[{i}] = {} is not finite", v[i]),
                });
            }
        }
    }
    Ok(())
}

/// Nesting levels: at least one, each in 2..=8, strictly descending.
pub fn levels(what: &str, levels: &[u8]) -> Result<()> {
    nested::group_layout(levels)
        .map(|_| ())
        .map_err(|e| match e {
            ModelError::Arg { what: why, .. } => ModelError::arg(what, why),
            other => other,
        })
}

/// A quantization setting, as a manifest or a command gives it.
pub fn quantize_config(c: &QuantizeConfig) -> Result<()> {
    levels("quantize.levels", &c.levels)?;
    if !(MIN_BITS..=MAX_BITS).contains(&c.act_bits) {
        return Err(ModelError::arg(
            "quantize.act_bits",
            format!("{} is outside {MIN_BITS}..={MAX_BITS}", c.act_bits),
        ));
    }
    if c.group_size == Some(0) {
        return Err(ModelError::arg(
            "quantize.group_size",
            "0; a region holds at least 1 element (or leave it out)",
        ));
    }
    if c.calib_images == 0 {
        return Err(ModelError::arg("quantize.calib_images", "0; at least 1"));
    }
    if let Calibration::Percentile { pct } = c.calibration
        && !(pct > 0.0 && pct <= 100.0)
    {
        return Err(ModelError::arg(
            "quantize.calibration",
            format!("percentile {pct} is outside (0, 100]"),
        ));
    }
    Ok(())
}

/// The input and per-node activation quantizers, against the graph and the hidden layers' bit
/// width `act_bits`: each in range, and each what quantization makes of its node (so a hand
/// edit cannot give a node a quantizer its codes do not follow). The input takes unsigned pixel
/// codes; a weight layer's or an add's output is signed unless the node applies a ReLU (and is
/// not read by an add: an add's inputs share one quantizer, signed if either is), at
/// `act_bits` (8 for the last node, the logits); a ReLU node keeps its input's quantizer as
/// unsigned; every other node (pooling, flatten) passes its input's quantizer on unchanged.
pub fn activations(input: &ActQuant, acts: &[ActQuant], g: &Graph, act_bits: u8) -> Result<()> {
    check_act("input", input)?;
    if input.signed {
        return Err(ModelError::arg(
            "input",
            "signed; the input quantizer takes unsigned pixel codes",
        ));
    }
    let nodes = g.nodes.len();
    if acts.len() != nodes {
        return Err(ModelError::arg(
            "acts",
            format!("{} entries for {nodes} nodes", acts.len()),
        ));
    }
    for (i, a) in acts.iter().enumerate() {
        check_act(&format!("acts[{i}]"), a)?;
    }
    let add_sources = g.add_sources();
    for (i, (node, a)) in g.nodes.iter().zip(acts).enumerate() {
        let what = format!("acts[{i}] (node '{}')", node.name);
        let in_act = match node.inputs.first() {
            Some(Src::Node(j)) if *j < i => acts[*j],
            _ => *input,
        };
        if node.op.has_weights() || matches!(node.op, Op::Add { .. }) {
            let bits = if i + 1 == nodes { 8 } else { act_bits };
            // A ReLU node's output may be signed when an add reads it: it shares the add's
            // quantizer with the add's other input, signed if that one is
            // (`qmodel::share_add_quantizers`).
            let signed = !node.op.relu() || (a.signed && add_sources[i]);
            if (a.bits, a.signed) != (bits, signed) {
                return Err(ModelError::arg(
                    what,
                    format!(
                        "{} bits {}; this node's output is {bits} bits {}",
                        a.bits,
                        if a.signed { "signed" } else { "unsigned" },
                        if signed { "signed" } else { "unsigned" }
                    ),
                ));
            }
        } else {
            let want = ActQuant {
                signed: in_act.signed && !matches!(node.op, Op::Relu),
                ..in_act
            };
            if *a != want {
                return Err(ModelError::arg(
                    what,
                    format!("{a:?}; this node passes its input's quantizer on: {want:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// The rule for a gate name, the policy class rule of caq-spec (a gate is named after its class).
pub fn gates(gates: &[Gate], layer_levels: &[&[u8]]) -> Result<()> {
    for (i, g) in gates.iter().enumerate() {
        if !caq_spec::name_ok(&g.name) {
            return Err(ModelError::arg(
                format!("gates[{i}].name"),
                format!("{:?}: expected {}", g.name, caq_spec::NAME_RULE),
            ));
        }
        if gates[..i].iter().any(|o| o.name == g.name) {
            return Err(ModelError::arg(
                format!("gates[{i}].name"),
                format!("'{}' appears twice", g.name),
            ));
        }
        if g.bits.len() != layer_levels.len() {
            return Err(ModelError::arg(
                format!("gate '{}'", g.name),
                format!(
                    "{} entries for {} weight layers",
                    g.bits.len(),
                    layer_levels.len()
                ),
            ));
        }
        for (li, (levels, b)) in layer_levels.iter().zip(&g.bits).enumerate() {
            if !levels.contains(b) {
                return Err(ModelError::arg(
                    format!("gate '{}'", g.name),
                    format!("weight layer {li}: {b} bits is not one of its levels {levels:?}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Arch, graph_for};

    fn lenet() -> Graph {
        graph_for(Arch::LeNet, [1, 28, 28], 10)
    }

    fn err(g: &Graph) -> String {
        graph(g, &Limits::contract()).unwrap_err().to_string()
    }

    fn set_padding(g: &mut Graph, p: usize) {
        if let Op::Conv2d { padding, .. } = &mut g.nodes[0].op {
            *padding = crate::graph::Padding::uniform(p);
        }
    }

    #[test]
    fn reference_graphs_pass() {
        graph(&lenet(), &Limits::for_this_machine()).unwrap();
        graph(&graph_for(Arch::Mlp, [1, 8, 8], 10), &Limits::contract()).unwrap();
    }

    #[test]
    fn a_padding_that_would_overflow_the_shape_is_refused() {
        let mut g = lenet();
        set_padding(&mut g, 1 << 62);
        let e = err(&g);
        assert!(e.contains("conv1") && e.contains("padding"), "{e}");
        set_padding(&mut g, usize::MAX);
        assert!(g.shapes().is_err());
    }

    #[test]
    fn an_activation_larger_than_memory_is_refused_before_any_allocation() {
        // padding 60,000 on a 28×28 input: 16 channels of 120,024² outputs, ~1 TB of f32.
        let mut g = lenet();
        set_padding(&mut g, 60_000);
        let e = err(&g);
        assert!(e.contains("exceeds 65535"), "{e}");
        // Within the dimension bound but not the memory bound.
        set_padding(&mut g, 2_000);
        let small = Limits {
            max_bytes: 1 << 30,
            ..Limits::contract()
        };
        let e = graph(&g, &small).unwrap_err().to_string();
        assert!(e.contains("MiB") && e.contains("1024 MiB"), "{e}");
    }

    #[test]
    fn duplicate_or_hostile_node_names_are_refused() {
        let mut g = lenet();
        g.nodes[1].name = "conv1".into();
        assert!(err(&g).contains("earlier node"), "{}", err(&g));
        let mut g = lenet();
        g.nodes[1].name = "\u{1b}[31mred".into();
        assert!(err(&g).contains("node 1 name"), "{}", err(&g));
    }

    #[test]
    fn a_reduction_over_the_accumulator_bound_is_refused() {
        let mut g = graph_for(Arch::Mlp, [1, 300, 300], 10);
        assert!(err(&g).contains("K = 90000"), "{}", err(&g));
        g.input_shape = [1, 8, 8];
        g.nodes[1].op = Op::Dense {
            in_features: 64,
            out_features: 128,
            relu: true,
        };
        graph(&g, &Limits::contract()).unwrap();
    }

    #[test]
    fn quantize_settings_out_of_range_are_named() {
        let ok = QuantizeConfig::nested(&[8, 4]);
        quantize_config(&ok).unwrap();
        let e = |f: fn(&mut QuantizeConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            quantize_config(&c).unwrap_err().to_string()
        };
        assert!(e(|c| c.levels.clear()).contains("quantize.levels"));
        assert!(e(|c| c.levels = vec![4, 8]).contains("descending"));
        assert!(e(|c| c.levels = vec![9]).contains("quantize.levels"));
        assert!(e(|c| c.act_bits = 0).contains("quantize.act_bits"));
        assert!(e(|c| c.act_bits = 255).contains("quantize.act_bits"));
        assert!(e(|c| c.group_size = Some(0)).contains("quantize.group_size"));
    }

    #[test]
    fn scales_must_be_finite_positive_and_moderate() {
        for bad in [0.0, -1.0, 1e38, f32::NAN, f32::INFINITY, 1e-38] {
            assert!(check_scale("s", bad).is_err(), "{bad}");
        }
        check_scale("s", 1.0 / 255.0).unwrap();
    }

    #[test]
    fn gate_names_follow_the_policy_rule() {
        let g = |name: &str| Gate {
            name: name.into(),
            bits: vec![8],
        };
        let levels: [&[u8]; 1] = [&[8, 4]];
        gates(&[g("low-power_2")], &levels).unwrap();
        let e = gates(&[g("\u{1b}[2J")], &levels).unwrap_err().to_string();
        assert!(e.contains("gates[0].name"), "{e}");
    }
}
