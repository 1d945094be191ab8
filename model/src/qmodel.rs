//! The quantized model: per weight layer a set of nested plane groups with their scales, integer
//! bias and requantization constants; per node an activation quantizer. `quantize` builds it from a
//! float model and a calibration set; `Executor` runs it with the golden kernels at any per-layer
//! precision. Knows nothing of files (bundle.rs) or devices.
//!
//! Scale bookkeeping (see docs/numerics.md): a weight layer with input scale s_in, channel scale
//! s_c and output scale s_out accumulates in units of u_c = s_c·s_in (u_c = s_c·s_in/2^8 with local
//! quantization regions, whose integer multipliers carry the 2^8); bias codes are b/u_c rounded;
//! the requant factor is u_c/s_out. Part-bit levels use the same constants: their effective codes
//! are the high part shifted back into full-bit units (h·2^l), so nothing is re-derived on a switch.

use crate::adaptive::AdaptivePolicy;
use crate::data::Dataset;
use crate::error::{ModelError, Result};
use crate::graph::{FloatModel, Graph, Op, Src};
use crate::kernels::{self, ConvGeom, GroupMult, IntLayer};
use crate::nested::{self, NestedWeights};
use crate::quant::{
    self, ActQuant, Calibration, GROUP_MULT_BITS, GroupScales, Rounding, WeightQuantConfig,
};
use crate::requant::{AddRequant, OutRange, Requant};
use ndarray::{Array2, Array3, ArrayView3};
use serde::{Deserialize, Serialize};

/// How a float model is quantized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeConfig {
    /// Nesting levels, strictly descending; `[8, 4]` is INT8 ⊃ INT4, `[6]` is a plain 6-bit model.
    pub levels: Vec<u8>,
    pub rounding: Rounding,
    /// Local quantization regions: group size along K, or none for per-channel scales only.
    pub group_size: Option<usize>,
    /// Per-channel MSE clip search for the full-bit scale.
    pub clip_search: bool,
    /// Choose the full-bit scale for the error summed over all nesting levels.
    pub nest_clip: bool,
    /// Activation bits of every layer output (the network input stays 8-bit).
    pub act_bits: u8,
    pub calibration: Calibration,
    /// How many images of the calibration set are used.
    pub calib_images: usize,
}

impl QuantizeConfig {
    pub fn nested(levels: &[u8]) -> Self {
        QuantizeConfig {
            levels: levels.to_vec(),
            rounding: Rounding::Adaptive,
            group_size: None,
            clip_search: false,
            nest_clip: false,
            act_bits: 8,
            calibration: Calibration::Percentile { pct: 99.99 },
            calib_images: 512,
        }
    }
}

/// One quantized weight layer.
#[derive(Clone, Debug, PartialEq)]
pub struct QLayer {
    pub name: String,
    pub weights: NestedWeights,
    pub channel_scale: Vec<f32>,
    pub groups: Option<GroupScales>,
    pub kernel_len: usize,
    pub bias: Vec<i32>,
    pub requant: Vec<Requant>,
}

impl QLayer {
    pub fn out_features(&self) -> usize {
        self.bias.len()
    }
    pub fn k(&self) -> usize {
        self.weights.groups[0].codes.ncols()
    }
    pub fn levels(&self) -> &[u8] {
        &self.weights.levels
    }

    /// The layer restricted to output channels `rows` (one group of a grouped convolution):
    /// every plane group's rows, scales, region multipliers, biases and requantization.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> QLayer {
        let r = || ndarray::s![rows.clone(), ..];
        QLayer {
            name: self.name.clone(),
            weights: NestedWeights {
                levels: self.weights.levels.clone(),
                groups: self
                    .weights
                    .groups
                    .iter()
                    .map(|g| nested::PlaneGroup {
                        bits: g.bits,
                        shift: g.shift,
                        codes: g.codes.slice(r()).to_owned(),
                    })
                    .collect(),
            },
            channel_scale: self.channel_scale[rows.clone()].to_vec(),
            groups: self.groups.as_ref().map(|g| GroupScales {
                group_size: g.group_size,
                mult: g.mult.slice(r()).to_owned(),
            }),
            kernel_len: self.kernel_len,
            bias: self.bias[rows.clone()].to_vec(),
            requant: self.requant[rows].to_vec(),
        }
    }
}

/// A quantized network.
#[derive(Clone, Debug, PartialEq)]
pub struct QModel {
    pub graph: Graph,
    /// The network input: image pixels as unsigned 8-bit codes with scale 1/max_value.
    pub input: ActQuant,
    /// Output quantizer of every node.
    pub acts: Vec<ActQuant>,
    /// Per node: the weight layer, for Dense and Conv2d.
    pub layers: Vec<Option<QLayer>>,
    /// Per node: the rescaling of a residual add.
    pub adds: Vec<Option<AddRequant>>,
    pub config: QuantizeConfig,
    /// Named per-layer precision settings (gates) a runtime can switch between; empty after
    /// quantization.
    pub gates: Vec<Gate>,
    /// Input-adaptive policies per context class (cascade thresholds, gate networks); empty
    /// after quantization (crate::adaptive).
    pub adaptive: Vec<AdaptivePolicy>,
}

/// A named precision setting: one bit-width per weight layer, each one of that layer's nesting
/// levels. A runtime applies it by name (`Accelerator::apply_gate`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub name: String,
    /// Per weight layer, in graph order.
    pub bits: Vec<u8>,
}

fn act_of(model_input: &ActQuant, acts: &[ActQuant], s: Src) -> ActQuant {
    match s {
        Src::Input => *model_input,
        Src::Node(j) => acts[j],
    }
}

fn out_range(a: &ActQuant, relu: bool) -> OutRange {
    OutRange {
        qmin: a.qmin(),
        qmax: a.qmax(),
        relu,
    }
}

/// Activation quantizers of a model: the input's and every node's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Activations {
    pub input: ActQuant,
    pub nodes: Vec<ActQuant>,
}

/// Calibrates every node's output quantizer on the first `cfg.calib_images` images of `calib`
/// (float forward passes). Depends only on the float model and the activation settings, so one
/// calibration serves every weight quantization of the same model.
pub fn calibrate_activations(
    model: &FloatModel,
    calib: &Dataset,
    cfg: &QuantizeConfig,
) -> Result<Activations> {
    model.validate()?;
    if calib.shape != model.graph.input_shape {
        return Err(ModelError::Shape {
            context: "calibration set".into(),
            expected: format!("{:?}", model.graph.input_shape),
            found: format!("{:?}", calib.shape),
        });
    }
    if !(2..=8).contains(&cfg.act_bits) {
        return Err(ModelError::arg(
            "act_bits",
            format!("{} is outside 2..=8", cfg.act_bits),
        ));
    }
    let n = cfg.calib_images.min(calib.len());
    if n == 0 {
        return Err(ModelError::arg("calibration set", "is empty"));
    }
    // Every node's f32 output of every calibration image is held at once (the percentile needs
    // all samples of a node): refuse a model and image count that would not fit in memory rather
    // than abort on the allocation.
    let per_image: u64 = model
        .graph
        .shapes()?
        .iter()
        .map(|s| s.iter().map(|&d| d as u64).product::<u64>())
        .sum::<u64>()
        .saturating_mul(4);
    let need = per_image.saturating_mul(n as u64);
    let limit = crate::validate::Limits::for_this_machine().max_bytes;
    if need > limit {
        return Err(ModelError::arg(
            "calib_images",
            format!(
                "calibrating on {n} images holds {} MiB of activations ({} MiB per image); the \
                 limit is {} MiB (half this machine's memory, or {}): use fewer calibration images",
                need >> 20,
                per_image >> 20,
                limit >> 20,
                crate::validate::MEMORY_LIMIT_ENV
            ),
        ));
    }
    let nodes = &model.graph.nodes;
    let last = nodes.len() - 1;
    // Nodes whose output gets its own quantizer: weight layers and adds.
    let calibrated: Vec<bool> = nodes
        .iter()
        .map(|nd| nd.op.has_weights() || matches!(nd.op, Op::Add { .. }))
        .collect();
    let outs = par_map(n, |i| model.forward_all(calib.image_f32(i).view()));
    let input = ActQuant {
        bits: 8,
        signed: false,
        scale: 1.0 / calib.max_value as f32,
    };
    // The calibrated nodes' quantizers (the others' are set below, from their inputs').
    let mut acts: Vec<ActQuant> = vec![input; nodes.len()];
    for (i, node) in nodes.iter().enumerate().filter(|&(i, _)| calibrated[i]) {
        let samples: Vec<f32> = outs.iter().flat_map(|o| o[i].iter().copied()).collect();
        let signed = !node.op.relu();
        // The logits keep 8 bits whatever the hidden activations use.
        let bits = if i == last { 8 } else { cfg.act_bits };
        acts[i] = quant::calibrate(&samples, bits, signed, cfg.calibration)
            .map_err(|e| layer_err(&node.name, e))?;
    }
    share_add_quantizers(&model.graph, &mut acts);
    // Every other node passes its input's quantizer on (a ReLU node as unsigned).
    for (i, node) in nodes.iter().enumerate() {
        if !calibrated[i] {
            let in_act = act_of(&input, &acts, node.inputs[0]);
            acts[i] = ActQuant {
                signed: in_act.signed && !matches!(node.op, Op::Relu),
                ..in_act
            };
        }
    }
    Ok(Activations { input, nodes: acts })
}

/// Gives the two inputs of every Add one quantizer (docs/numerics.md, "Residual add"), so that
/// the add's two multipliers are equal and a device can run it as a layer with unit weights
/// (docs/hardware.md, "Residual adds as layers"). An input is traced back through the nodes that
/// pass their input's quantizer on unchanged (pools, flatten) to the weight layer or add that
/// calibrated it; an input that reaches the network input or a standalone ReLU keeps its own.
/// The nodes so linked, through any number of adds, form one class: its quantizer is signed if
/// any member's is, and its scale the largest that covers every member's calibrated range (an
/// unsigned member's `scale · qmax` within the signed range), so no member clips more than it
/// did.
fn share_add_quantizers(graph: &Graph, acts: &mut [ActQuant]) {
    let nodes = &graph.nodes;
    let root = |s: Src| graph.quantizer_source(s);
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for node in nodes.iter().filter(|n| matches!(n.op, Op::Add { .. })) {
        let (Some(a), Some(b)) = (
            root(node.inputs[0]),
            node.inputs.get(1).and_then(|&s| root(s)),
        ) else {
            continue;
        };
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb && acts[ra].bits == acts[rb].bits {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let class: Vec<usize> = (0..nodes.len()).map(|i| find(&mut parent, i)).collect();
    for r in 0..nodes.len() {
        let members: Vec<usize> = (0..nodes.len()).filter(|&i| class[i] == r).collect();
        if members.len() < 2 {
            continue;
        }
        let signed = members.iter().any(|&i| acts[i].signed);
        let bits = acts[r].bits;
        let shared = ActQuant {
            bits,
            signed,
            scale: 1.0,
        };
        let scale = members
            .iter()
            .map(|&i| acts[i].scale * acts[i].qmax() as f32 / shared.qmax() as f32)
            .fold(0.0f32, f32::max);
        for &i in &members {
            acts[i] = ActQuant { scale, ..shared };
        }
    }
}

/// Quantizes `model` with activation ranges calibrated on `calib`.
pub fn quantize(model: &FloatModel, calib: &Dataset, cfg: &QuantizeConfig) -> Result<QModel> {
    let acts = calibrate_activations(model, calib, cfg)?;
    quantize_with(model, &acts, cfg)
}

/// Quantizes the weights of `model` against already calibrated activations.
pub fn quantize_with(
    model: &FloatModel,
    acts: &Activations,
    cfg: &QuantizeConfig,
) -> Result<QModel> {
    model.validate()?;
    if cfg.levels.is_empty() {
        return Err(ModelError::arg(
            "levels",
            "at least one bit-width is needed",
        ));
    }
    let nodes = &model.graph.nodes;
    if acts.nodes.len() != nodes.len() {
        return Err(ModelError::arg(
            "activations",
            format!("{} quantizers for {} nodes", acts.nodes.len(), nodes.len()),
        ));
    }
    let input = acts.input;
    let acts = &acts.nodes;
    let mut layers = Vec::with_capacity(nodes.len());
    let mut adds = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let in_act = act_of(&input, acts, node.inputs[0]);
        let act = acts[i];
        let layer = match &model.params[i] {
            Some(p) => {
                let (_, _, kernel_len) = node.op.weight_matrix_dims().expect("weight layer");
                Some(
                    quantize_layer(&node.name, &p.weight, &p.bias, kernel_len, in_act, act, cfg)
                        .map_err(|e| layer_err(&node.name, e))?,
                )
            }
            None => None,
        };
        let add = match node.op {
            Op::Add { .. } => {
                let b_act = act_of(&input, acts, node.inputs[1]);
                Some(
                    AddRequant::from_real(
                        (in_act.scale / act.scale) as f64,
                        (b_act.scale / act.scale) as f64,
                    )
                    .map_err(|e| layer_err(&node.name, e))?,
                )
            }
            _ => None,
        };
        layers.push(layer);
        adds.push(add);
    }
    Ok(QModel {
        graph: model.graph.clone(),
        input,
        acts: acts.clone(),
        layers,
        adds,
        config: cfg.clone(),
        gates: Vec::new(),
        adaptive: Vec::new(),
    })
}

fn layer_err(name: &str, e: ModelError) -> ModelError {
    match e {
        ModelError::Layer { .. } => e,
        other => ModelError::Layer {
            layer: name.to_string(),
            what: other.to_string(),
        },
    }
}

fn quantize_layer(
    name: &str,
    w: &Array2<f32>,
    b: &ndarray::Array1<f32>,
    kernel_len: usize,
    in_act: ActQuant,
    out_act: ActQuant,
    cfg: &QuantizeConfig,
) -> Result<QLayer> {
    let wcfg = WeightQuantConfig {
        bits: cfg.levels[0],
        rounding: cfg.rounding,
        group_size: cfg.group_size,
        clip_search: cfg.clip_search,
    };
    let (full, weights) = if cfg.nest_clip {
        nested::quantize_for_nesting(w.view(), kernel_len, &wcfg, &cfg.levels, cfg.rounding)?
    } else {
        let full = quant::quantize_weights(w.view(), kernel_len, &wcfg)?;
        let nestedw = nested::nest(&full, &cfg.levels, kernel_len, cfg.rounding)?;
        (full, nestedw)
    };
    let group_div = if full.groups.is_some() {
        (1u64 << GROUP_MULT_BITS) as f64
    } else {
        1.0
    };
    let mut bias = Vec::with_capacity(b.len());
    let mut requant = Vec::with_capacity(b.len());
    for (o, &bo) in b.iter().enumerate() {
        let unit = full.channel_scale[o] as f64 * in_act.scale as f64 / group_div;
        let code = (bo as f64 / unit).round();
        bias.push(code.clamp(i32::MIN as f64, i32::MAX as f64) as i32);
        requant.push(Requant::from_real(unit / out_act.scale as f64)?);
    }
    Ok(QLayer {
        name: name.to_string(),
        weights,
        channel_scale: full.channel_scale,
        groups: full.groups,
        kernel_len,
        bias,
        requant,
    })
}

impl QModel {
    /// Indices of the weight layers, in graph order.
    pub fn weight_layers(&self) -> Vec<usize> {
        self.graph.weight_layers()
    }

    /// The nesting levels every layer offers (the model is quantized with one level list).
    pub fn levels(&self) -> &[u8] {
        &self.config.levels
    }

    /// The gate called `name`.
    pub fn gate(&self, name: &str) -> Result<&Gate> {
        self.gates.iter().find(|g| g.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.gates.iter().map(|g| g.name.as_str()).collect();
            ModelError::arg(
                "gate",
                format!("no gate named '{name}' (the model has {known:?})"),
            )
        })
    }

    /// Checks `bits` as a per-layer setting: one entry per weight layer, each one of its levels.
    pub fn check_bits(&self, bits: &[u8]) -> Result<()> {
        let wl = self.weight_layers();
        if bits.len() != wl.len() {
            return Err(ModelError::arg(
                "bits",
                format!("{} entries for {} weight layers", bits.len(), wl.len()),
            ));
        }
        for (&i, &b) in wl.iter().zip(bits) {
            let l = self.layers[i].as_ref().expect("weight layer");
            if !l.levels().contains(&b) {
                return Err(ModelError::Layer {
                    layer: l.name.clone(),
                    what: format!("{b} bits is not one of its nesting levels {:?}", l.levels()),
                });
            }
        }
        Ok(())
    }

    /// Replaces the gates, after checking each (unique names, valid bits).
    pub fn set_gates(&mut self, gates: Vec<Gate>) -> Result<()> {
        for (i, g) in gates.iter().enumerate() {
            if g.name.is_empty() || gates[..i].iter().any(|o| o.name == g.name) {
                return Err(ModelError::arg(
                    "gate",
                    format!("gate names must be non-empty and unique: '{}'", g.name),
                ));
            }
            self.check_bits(&g.bits)
                .map_err(|e| ModelError::arg(format!("gate '{}'", g.name), e.to_string()))?;
        }
        self.gates = gates;
        Ok(())
    }

    /// Replaces the input-adaptive policies, after checking each against the model: one per
    /// class at most, each class one of the gates.
    pub fn set_adaptive(&mut self, policies: Vec<AdaptivePolicy>) -> Result<()> {
        crate::adaptive::check_policies(
            &crate::adaptive::Layout::of(self)?,
            &self.gates,
            &policies,
        )?;
        self.adaptive = policies;
        Ok(())
    }

    /// The input-adaptive policies of context class `class`.
    pub fn adaptive_policy(&self, class: &str) -> Result<&AdaptivePolicy> {
        crate::adaptive::policy_for(&self.adaptive, class)
    }

    /// Every weight layer at the same bit-width.
    pub fn uniform_bits(&self, bits: u8) -> Vec<u8> {
        vec![bits; self.weight_layers().len()]
    }

    /// An executor at the given per-layer bit-widths (one entry per weight layer, in order).
    pub fn executor(&self, bits: &[u8]) -> Result<Executor<'_>> {
        let wl = self.weight_layers();
        if bits.len() != wl.len() {
            return Err(ModelError::arg(
                "bits",
                format!("{} entries for {} weight layers", bits.len(), wl.len()),
            ));
        }
        let mut eff = vec![None; self.graph.nodes.len()];
        for (&i, &b) in wl.iter().zip(bits) {
            let l = self.layers[i].as_ref().expect("weight layer");
            eff[i] = Some(
                l.weights
                    .effective_codes(b)
                    .map_err(|e| layer_err(&l.name, e))?,
            );
        }
        Ok(Executor { model: self, eff })
    }
}

/// A quantized model bound to one per-layer precision.
pub struct Executor<'a> {
    model: &'a QModel,
    eff: Vec<Option<Array2<i32>>>,
}

impl Executor<'_> {
    /// Every node's output codes for one image of pixel codes (CHW).
    pub fn run(&self, pixels: &[u8]) -> Result<Vec<Array3<i32>>> {
        self.run_through(pixels, self.model.graph.nodes.len().saturating_sub(1))
    }

    /// The output codes of nodes `0..=last` for one image (the rest is not computed).
    pub fn run_through(&self, pixels: &[u8], last: usize) -> Result<Vec<Array3<i32>>> {
        let m = self.model;
        let shape = m.graph.input_shape;
        let x = Array3::from_shape_vec(
            (shape[0], shape[1], shape[2]),
            pixels.iter().map(|&p| p as i32).collect(),
        )
        .map_err(|_| ModelError::Shape {
            context: "input image".into(),
            expected: format!("{} pixels", shape.iter().product::<usize>()),
            found: format!("{}", pixels.len()),
        })?;
        let mut outs: Vec<Array3<i32>> = Vec::with_capacity(m.graph.nodes.len());
        for (i, node) in m
            .graph
            .nodes
            .iter()
            .enumerate()
            .take(last.saturating_add(1))
        {
            let src = |s: Src| -> ArrayView3<i32> {
                match s {
                    Src::Input => x.view(),
                    Src::Node(j) => outs[j].view(),
                }
            };
            let a = src(node.inputs[0]);
            let out = out_range(&m.acts[i], node.op.relu());
            let int_layer = || {
                let l = m.layers[i].as_ref().expect("weight layer");
                IntLayer {
                    codes: self.eff[i].as_ref().expect("prepared").view(),
                    groups: l.groups.as_ref().map(|g| GroupMult {
                        mult: g.mult.view(),
                        group_size: g.group_size,
                    }),
                    bias: &l.bias,
                    requant: &l.requant,
                    out,
                }
            };
            let y = match node.op {
                Op::Dense { .. } => {
                    let v: Vec<i32> = a.iter().copied().collect();
                    let y = kernels::dense(&int_layer(), &v)?;
                    let n = y.len();
                    Array3::from_shape_vec((n, 1, 1), y).expect("vector")
                }
                Op::Conv2d { .. } => kernels::conv2d(
                    &int_layer(),
                    a,
                    ConvGeom::of(&node.op).expect("a Conv2d node"),
                )?,
                Op::MaxPool { kernel, stride } => kernels::max_pool(a, kernel, stride)?,
                Op::AvgPool { kernel, stride } => kernels::avg_pool(a, kernel, stride)?,
                Op::GlobalAvgPool => kernels::global_avg_pool(a)?,
                Op::Add { .. } => kernels::add(
                    a,
                    src(node.inputs[1]),
                    m.adds[i].as_ref().expect("add node"),
                    out,
                )?,
                Op::Relu => kernels::relu(a),
                Op::Flatten => {
                    let n = a.len();
                    Array3::from_shape_vec((n, 1, 1), a.iter().copied().collect()).expect("vector")
                }
            };
            outs.push(y);
        }
        Ok(outs)
    }

    /// Output codes of the last node.
    pub fn logits(&self, pixels: &[u8]) -> Result<Vec<i32>> {
        let out = self.run(pixels)?.pop().expect("non-empty graph");
        Ok(out.iter().copied().collect())
    }
}

/// Index of the largest value; the first one on ties (as the device reports it).
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Runs `f` over every image index on all cores; results in index order.
pub fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(n.max(1));
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || {
                    (t * chunk..((t + 1) * chunk).min(n))
                        .map(f)
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread panicked"))
            .collect()
    })
}

/// Top-1 accuracy (in %) of the integer model at the given per-layer bits.
pub fn int_accuracy(model: &QModel, bits: &[u8], set: &Dataset) -> Result<f64> {
    let ex = model.executor(bits)?;
    let hits = par_map(set.len(), |i| {
        ex.logits(set.image(i))
            .map(|l| argmax(&l) == set.labels[i] as usize)
    });
    let mut correct = 0usize;
    for h in hits {
        correct += h? as usize;
    }
    Ok(100.0 * correct as f64 / set.len().max(1) as f64)
}

/// Top-1 accuracy (in %) of the f32 reference model.
pub fn float_accuracy(model: &FloatModel, set: &Dataset) -> Result<f64> {
    model.validate()?;
    if set.shape != model.graph.input_shape {
        return Err(ModelError::Shape {
            context: format!("data set {}", set.name),
            expected: format!("{:?}", model.graph.input_shape),
            found: format!("{:?}", set.shape),
        });
    }
    let hits = par_map(set.len(), |i| {
        let l = model.forward(set.image_f32(i).view());
        argmax(l.as_slice().expect("contiguous")) == set.labels[i] as usize
    });
    Ok(100.0 * hits.iter().filter(|&&h| h).count() as f64 / set.len().max(1) as f64)
}
