//! The model bundle on disk: one safetensors file whose header carries the JSON manifest (graph,
//! shapes, activation quantizers, nesting levels, plane groups, schema version) and whose tensors
//! are the packed plane groups and per-channel constants. Each plane group is its own tensor, so a
//! reader can map the high part of every layer without touching the residual planes; switching to
//! full-bit pages the residual tensors in. Format reference: docs/bundle.md.

use crate::adaptive::{self, AdaptivePolicy, Layout};
use crate::error::{ModelError, Result};
use crate::graph::{Graph, Op};
use crate::nested::{self, NestedWeights, PlaneGroup};
use crate::planes::{self, PackedPlanes};
use crate::qmodel::{Gate, QLayer, QModel, QuantizeConfig};
use crate::quant::{ActQuant, GroupScales};
use crate::requant::{AddRequant, Requant};
use crate::store::{self, OutTensor, TensorFile};
use crate::validate::{self, Limits};
use ndarray::Array2;
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The bundle schema: version 2 added the header checksum (`store`) and the optional `adaptive`
/// input-adaptive policies; version 3 has gate networks read the max pool after the first weight
/// layer (`adaptive::gate_node`) where version 2's read the layer itself. Older bundles (no
/// header checksum) are refused with how to regenerate them, and so are version 2 gate networks
/// of models with such a pool (their features would come from another map).
pub const BUNDLE_SCHEMA_VERSION: u32 = 3;
/// The oldest schema this build reads.
pub const BUNDLE_OLDEST_SCHEMA: u32 = 2;
const BUNDLE_KIND: &str = "caq.bundle";

/// One plane group of a layer as listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    pub bits: u8,
    pub shift: u8,
    pub tensor: String,
    /// Stored bytes of the packed planes (rows padded to 64-bit words).
    pub bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerEntry {
    pub node: usize,
    pub name: String,
    pub out: usize,
    pub k: usize,
    pub kernel_len: usize,
    pub levels: Vec<u8>,
    /// High part first, then residuals from coarse to fine.
    pub plane_groups: Vec<GroupEntry>,
    pub group_size: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddEntry {
    pub node: usize,
    #[serde(flatten)]
    pub requant: AddRequant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: String,
    pub schema_version: u32,
    pub graph: Graph,
    pub input: ActQuant,
    pub acts: Vec<ActQuant>,
    pub quantize: QuantizeConfig,
    pub layers: Vec<LayerEntry>,
    pub adds: Vec<AddEntry>,
    /// Named per-layer precision settings (absent in bundles without gates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    /// Input-adaptive policies per context class (schema 2 and later).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adaptive: Vec<AdaptivePolicy>,
}

fn t_bias(n: &str) -> String {
    format!("{n}.bias")
}
fn t_mult(n: &str) -> String {
    format!("{n}.requant_mult")
}
fn t_shift(n: &str) -> String {
    format!("{n}.requant_shift")
}
fn t_scale(n: &str) -> String {
    format!("{n}.scale")
}
fn t_gmult(n: &str) -> String {
    format!("{n}.group_mult")
}
fn t_group(n: &str, g: usize) -> String {
    format!("{n}.g{g}")
}

/// Writes `q` as a bundle at `path`, atomically.
pub fn write(path: &Path, q: &QModel) -> Result<()> {
    let mut tensors = Vec::new();
    let mut layers = Vec::new();
    for (i, l) in q.layers.iter().enumerate() {
        let Some(l) = l else { continue };
        let n = &l.name;
        let (o, k) = (l.out_features(), l.k());
        let mut plane_groups = Vec::new();
        for (g, pg) in l.weights.groups.iter().enumerate() {
            let packed = planes::pack(pg.codes.view(), pg.bits)?;
            let bytes = packed.to_le_bytes();
            plane_groups.push(GroupEntry {
                bits: pg.bits,
                shift: pg.shift,
                tensor: t_group(n, g),
                bytes: bytes.len(),
            });
            tensors.push(OutTensor::u8s(t_group(n, g), bytes));
        }
        tensors.push(OutTensor::i32s(t_bias(n), vec![o], &l.bias));
        let mults: Vec<i32> = l.requant.iter().map(|r| r.mult).collect();
        tensors.push(OutTensor::i32s(t_mult(n), vec![o], &mults));
        tensors.push(OutTensor::u8s(
            t_shift(n),
            l.requant.iter().map(|r| r.shift).collect(),
        ));
        tensors.push(OutTensor::f32s(t_scale(n), vec![o], &l.channel_scale));
        if let Some(g) = &l.groups {
            let m: Vec<u16> = g.mult.iter().copied().collect();
            tensors.push(OutTensor::u16s(t_gmult(n), vec![o, g.mult.ncols()], &m));
        }
        layers.push(LayerEntry {
            node: i,
            name: n.clone(),
            out: o,
            k,
            kernel_len: l.kernel_len,
            levels: l.weights.levels.clone(),
            plane_groups,
            group_size: l.groups.as_ref().map(|g| g.group_size),
        });
    }
    let adds = q
        .adds
        .iter()
        .enumerate()
        .filter_map(|(node, a)| a.map(|requant| AddEntry { node, requant }))
        .collect();
    let manifest = Manifest {
        kind: BUNDLE_KIND.into(),
        schema_version: BUNDLE_SCHEMA_VERSION,
        graph: q.graph.clone(),
        input: q.input,
        acts: q.acts.clone(),
        quantize: q.config.clone(),
        layers,
        adds,
        gates: q.gates.clone(),
        adaptive: q.adaptive.clone(),
    };
    let doc = serde_json::to_value(&manifest).expect("manifest serializes");
    store::write_atomic(path, &doc, &tensors)
}

/// An opened bundle: the manifest is parsed and checked; tensors are read on demand.
pub struct Bundle {
    file: TensorFile,
    manifest: Manifest,
}

impl Bundle {
    pub fn open(path: &Path) -> Result<Bundle> {
        Bundle::open_inner(path, true)
    }

    /// [`Bundle::open`] without the input-adaptive policies, for a command that rebuilds them
    /// (`caq gate`): a policy this build would refuse (a schema 2 gate network of a model whose
    /// first layer has a max pool) does not stop it.
    pub fn open_without_adaptive(path: &Path) -> Result<Bundle> {
        Bundle::open_inner(path, false)
    }

    fn open_inner(path: &Path, keep_adaptive: bool) -> Result<Bundle> {
        let file = TensorFile::open(path)?;
        let version = store::check_version(
            path,
            file.doc(),
            BUNDLE_KIND,
            BUNDLE_OLDEST_SCHEMA,
            BUNDLE_SCHEMA_VERSION,
        )?;
        let mut manifest: Manifest = serde_json::from_value(file.doc().clone())
            .map_err(|e| ModelError::format(path, format!("manifest: {e}")))?;
        if !keep_adaptive {
            manifest.adaptive.clear();
        }
        let b = Bundle { file, manifest };
        b.check()
            .map_err(|e| ModelError::format(path, e.to_string()))?;
        if !b.manifest.adaptive.is_empty() {
            // The policies' settings are checked against the model the manifest describes.
            let m = &b.manifest;
            let layout = Layout::new(
                &m.graph,
                m.layers.iter().map(|l| l.name.clone()).collect(),
                m.layers.iter().map(|l| l.levels.clone()).collect(),
            )?;
            if version < 3
                && layout.gate_node != m.layers[0].node
                && m.adaptive.iter().any(|p| p.network.is_some())
            {
                return Err(ModelError::format(
                    path,
                    format!(
                        "adaptive: a schema {version} gate network reads layer '{}' before its \
                         max pool, and this build's reads the pool ('{}'); rebuild the policies \
                         with `caq gate --adaptive`",
                        m.layers[0].name, m.graph.nodes[layout.gate_node].name
                    ),
                ));
            }
            adaptive::check_policies(&layout, &m.gates, &m.adaptive)
                .map_err(|e| ModelError::format(path, e.to_string()))?;
        }
        Ok(b)
    }

    /// The manifest's validation (`validate`): every field against its range and against the
    /// graph, and every tensor it names present with its dtype and shape (header only; the data
    /// is checked when read).
    fn check(&self) -> Result<()> {
        let m = &self.manifest;
        let limits = Limits::for_this_machine();
        validate::graph(&m.graph, &limits)?;
        validate::quantize_config(&m.quantize)?;
        validate::activations(&m.input, &m.acts, &m.graph, m.quantize.act_bits)?;
        let wl = m.graph.weight_layers();
        if m.layers.len() != wl.len() || m.layers.iter().zip(&wl).any(|(l, &i)| l.node != i) {
            return Err(ModelError::arg(
                "layers",
                format!("do not match the graph's weight layers {wl:?}"),
            ));
        }
        let mut expected: Vec<(String, Dtype, Vec<usize>)> = Vec::new();
        for l in &m.layers {
            let node = &m.graph.nodes[l.node];
            let bad = |what: String| ModelError::Layer {
                layer: l.name.clone(),
                what,
            };
            if l.name != node.name {
                return Err(bad(format!(
                    "is node {} of the graph, named '{}'",
                    l.node, node.name
                )));
            }
            let (o, k, kl) = node.op.weight_matrix_dims().expect("weight layer");
            if (l.out, l.k, l.kernel_len) != (o, k, kl) {
                return Err(bad(format!(
                    "manifest says [{}, {}] kernel {}, graph says [{o}, {k}] kernel {kl}",
                    l.out, l.k, l.kernel_len
                )));
            }
            if l.levels != m.quantize.levels {
                return Err(bad(format!(
                    "levels {:?} differ from the model's quantize.levels {:?}",
                    l.levels, m.quantize.levels
                )));
            }
            let layout = nested::group_layout(&l.levels)?;
            let found: Vec<(u8, u8)> = l.plane_groups.iter().map(|g| (g.bits, g.shift)).collect();
            if found != layout {
                return Err(bad(format!(
                    "plane groups (bits, shift) {found:?}; levels {:?} store {layout:?}",
                    l.levels
                )));
            }
            if l.group_size != m.quantize.group_size {
                return Err(bad(format!(
                    "group_size {:?} differs from quantize.group_size {:?}",
                    l.group_size, m.quantize.group_size
                )));
            }
            for (g, e) in l.plane_groups.iter().enumerate() {
                let want = planes::stored_len(e.bits, o, k)?;
                if e.bytes != want || e.tensor != t_group(&l.name, g) {
                    return Err(bad(format!(
                        "plane group {g}: tensor '{}' of {} bytes; expected '{}' of {want} bytes",
                        e.tensor,
                        e.bytes,
                        t_group(&l.name, g)
                    )));
                }
                expected.push((e.tensor.clone(), Dtype::U8, vec![want]));
            }
            let n = &l.name;
            expected.push((t_bias(n), Dtype::I32, vec![o]));
            expected.push((t_mult(n), Dtype::I32, vec![o]));
            expected.push((t_shift(n), Dtype::U8, vec![o]));
            expected.push((t_scale(n), Dtype::F32, vec![o]));
            if let Some(gs) = l.group_size {
                expected.push((t_gmult(n), Dtype::U16, vec![o, k.div_ceil(gs)]));
            }
        }
        self.file.expect_tensors(&expected)?;
        for (i, a) in m.adds.iter().enumerate() {
            let is_add = m
                .graph
                .nodes
                .get(a.node)
                .is_some_and(|n| matches!(n.op, Op::Add { .. }));
            if !is_add || m.adds[..i].iter().any(|b| b.node == a.node) {
                return Err(ModelError::arg(
                    format!("adds[{i}]"),
                    format!("node {} is not an Add node of its own", a.node),
                ));
            }
            a.requant
                .check()
                .map_err(|e| ModelError::arg(format!("adds[{i}]"), e.to_string()))?;
        }
        let n_adds = m
            .graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Add { .. }))
            .count();
        if m.adds.len() != n_adds {
            return Err(ModelError::arg(
                "adds",
                format!("{} entries for {n_adds} Add nodes", m.adds.len()),
            ));
        }
        let levels: Vec<&[u8]> = m.layers.iter().map(|l| l.levels.as_slice()).collect();
        validate::gates(&m.gates, &levels)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn file_len(&self) -> usize {
        self.file.file_len()
    }

    /// The packed planes of plane group `g` of weight layer `layer` (index among weight layers).
    pub fn plane_group(&self, layer: usize, g: usize) -> Result<PackedPlanes> {
        let (l, e) = self.group_entry(layer, g)?;
        let bytes = self.file.u8s(&e.tensor, e.bytes)?;
        PackedPlanes::from_le_bytes(e.bits, l.out, l.k, bytes)
            .map_err(|err| ModelError::format(self.path(), format!("tensor '{}': {err}", e.tensor)))
    }

    /// The stored bytes of plane group `g` of weight layer `layer`, straight from the file's
    /// memory map (checksum verified): the device's planes layout, ready to copy into device
    /// memory. Only this tensor's pages are touched.
    pub fn plane_group_bytes(&self, layer: usize, g: usize) -> Result<&[u8]> {
        let (_, e) = self.group_entry(layer, g)?;
        self.file.u8s(&e.tensor, e.bytes)
    }

    fn group_entry(&self, layer: usize, g: usize) -> Result<(&LayerEntry, &GroupEntry)> {
        let l = self.layer_entry(layer)?;
        let e = l.plane_groups.get(g).ok_or_else(|| {
            ModelError::arg(
                "plane group",
                format!(
                    "layer '{}' has {} groups, asked for {g}",
                    l.name,
                    l.plane_groups.len()
                ),
            )
        })?;
        Ok((l, e))
    }

    fn layer_entry(&self, layer: usize) -> Result<&LayerEntry> {
        self.manifest.layers.get(layer).ok_or_else(|| {
            ModelError::arg(
                "layer",
                format!(
                    "{layer} is out of range ({} weight layers)",
                    self.manifest.layers.len()
                ),
            )
        })
    }

    /// The whole model, every plane group resident.
    pub fn load(&self) -> Result<QModel> {
        let full: Vec<u8> = self.manifest.layers.iter().map(|l| l.levels[0]).collect();
        self.load_resident(&full)
    }

    /// The model with, per weight layer, only the plane groups needed up to `max_bits[i]`
    /// (one of that layer's levels): residual planes above it are not read.
    pub fn load_resident(&self, max_bits: &[u8]) -> Result<QModel> {
        let m = &self.manifest;
        if max_bits.len() != m.layers.len() {
            return Err(ModelError::arg(
                "bits",
                format!(
                    "{} entries for {} weight layers",
                    max_bits.len(),
                    m.layers.len()
                ),
            ));
        }
        let mut layers: Vec<Option<QLayer>> = vec![None; m.graph.nodes.len()];
        for (li, (l, &top)) in m.layers.iter().zip(max_bits).enumerate() {
            let pos = l
                .levels
                .iter()
                .position(|&b| b == top)
                .ok_or_else(|| ModelError::Layer {
                    layer: l.name.clone(),
                    what: format!("{top} bits is not one of its levels {:?}", l.levels),
                })?;
            let keep = l.levels.len() - pos;
            let mut groups = Vec::with_capacity(keep);
            for g in 0..keep {
                let e = &l.plane_groups[g];
                groups.push(PlaneGroup {
                    bits: e.bits,
                    shift: e.shift,
                    codes: self.plane_group(li, g)?.unpack(),
                });
            }
            let o = l.out;
            let bias = self.file.i32s(&t_bias(&l.name), &[o])?;
            let mults = self.file.i32s(&t_mult(&l.name), &[o])?;
            let shifts = self.file.u8s(&t_shift(&l.name), o)?;
            let channel_scale = self.file.f32s(&t_scale(&l.name), &[o])?;
            for s in &channel_scale {
                validate::check_scale(&t_scale(&l.name), *s)?;
            }
            let groups_scales = match l.group_size {
                None => None,
                Some(gs) if gs > 0 => {
                    let ng = l.k.div_ceil(gs);
                    let v = self.file.u16s(&t_gmult(&l.name), &[o, ng])?;
                    let g = GroupScales {
                        group_size: gs,
                        mult: Array2::from_shape_vec((o, ng), v).expect("length checked"),
                    };
                    g.check(o, l.k).map_err(|e| ModelError::Layer {
                        layer: l.name.clone(),
                        what: e.to_string(),
                    })?;
                    Some(g)
                }
                Some(_) => {
                    return Err(ModelError::Layer {
                        layer: l.name.clone(),
                        what: "group_size 0".into(),
                    });
                }
            };
            let requant = mults
                .iter()
                .zip(shifts)
                .map(|(&mult, &shift)| {
                    let r = Requant { mult, shift };
                    r.check().map(|_| r)
                })
                .collect::<Result<Vec<_>>>()
                .map_err(|e| ModelError::Layer {
                    layer: l.name.clone(),
                    what: e.to_string(),
                })?;
            layers[l.node] = Some(QLayer {
                name: l.name.clone(),
                weights: NestedWeights {
                    levels: l.levels[pos..].to_vec(),
                    groups,
                },
                channel_scale,
                groups: groups_scales,
                kernel_len: l.kernel_len,
                bias,
                requant,
            });
        }
        let mut adds = vec![None; m.graph.nodes.len()];
        for a in &m.adds {
            if a.node >= adds.len() {
                return Err(ModelError::format(
                    self.path(),
                    format!("add entry names node {} of {}", a.node, adds.len()),
                ));
            }
            adds[a.node] = Some(a.requant);
        }
        Ok(QModel {
            graph: m.graph.clone(),
            input: m.input,
            acts: m.acts.clone(),
            layers,
            adds,
            config: m.quantize.clone(),
            gates: m.gates.clone(),
            adaptive: m.adaptive.clone(),
        })
    }
}
