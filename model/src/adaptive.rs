//! Input-adaptive precision: the rules that pick a per-layer setting for one input, and their
//! golden reference. Two kinds of policy serve a context class (docs/gates.md, "Input-adaptive
//! gating"):
//!
//! - a **confidence cascade** ([`Cascade`]): run the cheapest setting; while the output's
//!   confidence ([`margin`]) is below the stage's threshold, run the next setting again from the
//!   first weight layer where it differs ([`first_change`]; the layers before it give the same
//!   outputs, so their results stay);
//! - a **learned gate network** ([`GateNet`]): after the first weight layer (and the max pool
//!   that alone reads it, if there is one: [`gate_node`]), a small integer network over
//!   statistics of its output codes ([`features`]) picks one of a few settings (its codebook),
//!   which share the first layer's level; the rest of the network runs at it. Backends decide
//!   with its [`PreparedGate`], the same choice computed faster.
//!
//! Every decision is made on integers (output codes, integer features, integer weights), so the
//! same input gives the same setting wherever the outputs are bit-exact: the golden executor, the
//! functional device, the RTL, the CPU backend. This module owns the rules; the driver
//! (caq-host) applies them between device passes, and never decides anything itself. Knows
//! nothing of devices, costs or training.

use crate::error::{ModelError, Result};
use crate::graph::{Graph, Op, Shape3, Src};
use crate::qmodel::{Executor, Gate, QModel};
use caq_spec::descriptor::byte_code;
use serde::{Deserialize, Serialize};

/// The confidence of an output: the largest output code minus the second largest (0 on a tie, or
/// with fewer than two outputs). Integer logit codes share one scale, so this is the logit margin
/// in code units; a softmax margin or entropy would need floating-point `exp`, whose last bit may
/// differ between the host's libm and a board's, and so flip a decision at a threshold.
pub fn margin(codes: &[i32]) -> i32 {
    let (mut first, mut second) = (i32::MIN, i32::MIN);
    for &c in codes {
        if c > first {
            second = first;
            first = c;
        } else if c > second {
            second = c;
        }
    }
    if second == i32::MIN {
        0
    } else {
        first - second
    }
}

/// The first weight layer at which two settings differ (`a.len()` when they are equal): a re-run
/// at `b` after a run at `a` starts there.
pub fn first_change(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// The graph node whose output a gate network reads: the first weight layer's, or, when a max
/// pool is the only node that reads it, that pool's (the map the rest of the network sees, and
/// the one the device writes when it fuses the pool: a quarter of the codes for a 2×2 pool).
pub fn gate_node(graph: &Graph) -> Result<usize> {
    let first = *graph
        .weight_layers()
        .first()
        .ok_or_else(|| ModelError::arg("model", "has no weight layers"))?;
    let mut readers = graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.inputs.contains(&Src::Node(first)));
    Ok(match (readers.next(), readers.next()) {
        (Some((p, n)), None) if matches!(n.op, Op::MaxPool { .. }) => p,
        _ => first,
    })
}

/// What the policies are checked against: each weight layer's nesting levels (descending), and
/// the node a gate network reads ([`gate_node`]) and its shape. Built from a model, or from a
/// bundle's manifest without reading its tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub names: Vec<String>,
    pub levels: Vec<Vec<u8>>,
    pub gate_node: usize,
    pub gate_shape: Shape3,
}

impl Layout {
    /// `names` and `levels` of the graph's weight layers, with the graph's gate node.
    pub fn new(graph: &Graph, names: Vec<String>, levels: Vec<Vec<u8>>) -> Result<Layout> {
        let gate_node = gate_node(graph)?;
        Ok(Layout {
            names,
            levels,
            gate_node,
            gate_shape: graph.shapes()?[gate_node],
        })
    }

    pub fn of(q: &QModel) -> Result<Layout> {
        let wl = q.weight_layers();
        let mut names = Vec::new();
        let mut levels = Vec::new();
        for &i in &wl {
            let l = q.layers[i]
                .as_ref()
                .ok_or_else(|| ModelError::arg("model", format!("weight node {i} has no layer")))?;
            names.push(l.name.clone());
            levels.push(l.levels().to_vec());
        }
        Layout::new(&q.graph, names, levels)
    }

    /// Checks `bits` as a per-layer setting: one entry per weight layer, each one of its levels.
    pub fn check_bits(&self, bits: &[u8]) -> Result<()> {
        if bits.len() != self.levels.len() {
            return Err(ModelError::arg(
                "bits",
                format!(
                    "{} entries for {} weight layers",
                    bits.len(),
                    self.levels.len()
                ),
            ));
        }
        for ((name, levels), b) in self.names.iter().zip(&self.levels).zip(bits) {
            if !levels.contains(b) {
                return Err(ModelError::Layer {
                    layer: name.clone(),
                    what: format!("{b} bits is not one of its nesting levels {levels:?}"),
                });
            }
        }
        Ok(())
    }
}

/// Checks input-adaptive policies against a model's layout and its gates: each names a gate (its
/// context class), no class twice, every setting valid.
pub fn check_policies(layout: &Layout, gates: &[Gate], policies: &[AdaptivePolicy]) -> Result<()> {
    for (i, p) in policies.iter().enumerate() {
        if !gates.iter().any(|g| g.name == p.class) {
            return Err(ModelError::arg(
                "adaptive",
                format!(
                    "class '{}' is not one of the gates {:?}",
                    p.class,
                    gates.iter().map(|g| &g.name).collect::<Vec<_>>()
                ),
            ));
        }
        if policies[..i].iter().any(|o| o.class == p.class) {
            return Err(ModelError::arg(
                "adaptive",
                format!("class '{}' appears twice", p.class),
            ));
        }
        p.check(layout)?;
    }
    Ok(())
}

/// A confidence cascade: `stages[0]` runs first; stage k's output is final when its [`margin`]
/// is at least `thresholds[k]`, otherwise stage k + 1 runs from the first layer it changes. The
/// last stage's output is always final.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cascade {
    /// Per-layer settings, cheapest first.
    pub stages: Vec<Vec<u8>>,
    /// One per stage but the last, in output-code units.
    pub thresholds: Vec<i32>,
}

impl Cascade {
    /// Checks the cascade against `q`: at least one stage, each a valid setting, no two equal in a
    /// row, one threshold per stage but the last.
    pub fn check(&self, q: &Layout) -> Result<()> {
        if self.stages.is_empty() {
            return Err(ModelError::arg("cascade", "has no stages"));
        }
        if self.thresholds.len() + 1 != self.stages.len() {
            return Err(ModelError::arg(
                "cascade",
                format!(
                    "{} thresholds for {} stages (expected one per stage but the last)",
                    self.thresholds.len(),
                    self.stages.len()
                ),
            ));
        }
        for (k, s) in self.stages.iter().enumerate() {
            q.check_bits(s)
                .map_err(|e| ModelError::arg(format!("cascade stage {k}"), e.to_string()))?;
            if k > 0 && self.stages[k - 1] == *s {
                return Err(ModelError::arg(
                    format!("cascade stage {k}"),
                    format!("repeats stage {} ({s:?})", k - 1),
                ));
            }
        }
        Ok(())
    }

    /// Whether stage `k`'s output `codes` is final.
    pub fn accepts(&self, k: usize, codes: &[i32]) -> bool {
        self.thresholds.get(k).is_none_or(|&t| margin(codes) >= t)
    }
}

/// A weight layer's output codes as a backend holds them: the golden model's and the CPU
/// backend's `i32` codes, or the device's activation buffer as it is in memory (one byte per
/// code, two's complement when `signed`). The gate reads the bytes where they are, without
/// widening each code to `i32` first (a quarter of the memory traffic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerCodes {
    Codes(Vec<i32>),
    Bytes { bytes: Vec<u8>, signed: bool },
}

impl LayerCodes {
    /// The codes as `i32`.
    pub fn to_codes(&self) -> Vec<i32> {
        match self {
            LayerCodes::Codes(c) => c.clone(),
            LayerCodes::Bytes { bytes, signed } => {
                bytes.iter().map(|&b| byte_code(b, *signed)).collect()
            }
        }
    }

    /// [`features`] of these codes: the same values whichever form they are held in.
    pub fn features(&self, shape: Shape3, s: Sampling) -> Result<Vec<i64>> {
        // Bytes are summed in 16-bit lanes (twice as many per vector as 32-bit ones) while no
        // column sum can leave them: at most 255 rows of codes of at most 255 (or −128) each.
        let narrow = s.rows_per_cell(shape[1]) <= 255;
        match self {
            LayerCodes::Codes(c) => features(c, shape, s),
            LayerCodes::Bytes {
                bytes,
                signed: false,
            } if narrow => cell_sums(bytes, shape, s, |b| byte_code(b, false) as u16),
            LayerCodes::Bytes {
                bytes,
                signed: true,
            } if narrow => cell_sums(bytes, shape, s, |b| byte_code(b, true) as i16),
            LayerCodes::Bytes { bytes, signed } => {
                let signed = *signed;
                cell_sums(bytes, shape, s, move |b| byte_code(b, signed))
            }
        }
    }
}

/// Which codes of a `[C, H, W]` first-layer output the gate's [`features`] sum: a `grid × grid`
/// partition of each plane into cells, and within each cell every `row_step`-th row from the
/// cell's first (`row_step = 1`: every code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    pub grid: usize,
    pub row_step: usize,
}

impl Sampling {
    /// Every code of each cell.
    pub fn dense(grid: usize) -> Sampling {
        Sampling { grid, row_step: 1 }
    }

    /// Where each cell row of a plane of `n` rows (or cell column of `n` columns) starts, and
    /// where the last ends: row y is in cell row `y · grid / n`, so cell row i is the rows
    /// from ⌈i·n / grid⌉ to ⌈(i + 1)·n / grid⌉.
    fn cuts(self, n: usize) -> Vec<usize> {
        (0..=self.grid)
            .map(|j| (j * n).div_ceil(self.grid))
            .collect()
    }

    /// The rows of a plane of `h` rows the features read, ascending: in each cell row, its first
    /// row and every `row_step`-th after it.
    pub fn rows(self, h: usize) -> Vec<usize> {
        let cuts = self.cuts(h);
        cuts.windows(2)
            .flat_map(|c| (c[0]..c[1]).step_by(self.row_step.max(1)))
            .collect()
    }

    /// The most rows any cell of a plane of `h` rows sums: ⌈⌈H / grid⌉ / row_step⌉ (the tallest
    /// cell row has ⌈H / grid⌉ rows, and a cell row of r rows sums ⌈r / row_step⌉ of them).
    pub fn rows_per_cell(self, h: usize) -> usize {
        h.div_ceil(self.grid.max(1)).div_ceil(self.row_step.max(1))
    }

    /// How many codes of a `shape` tensor the features sum (each read once).
    pub fn codes_read(self, shape: Shape3) -> usize {
        let [c, h, w] = shape;
        c * self.rows(h).len() * w
    }

    /// Whether this sampling applies to planes of `shape` (grid 1..=min(H, W), row step
    /// 1..=H), or why not.
    pub fn check(self, shape: Shape3) -> std::result::Result<(), String> {
        let [_, h, w] = shape;
        if self.grid == 0 || self.grid > h || self.grid > w {
            return Err(format!(
                "grid {} for a {h}×{w} plane (expected 1..={})",
                self.grid,
                h.min(w)
            ));
        }
        if self.row_step == 0 || self.row_step > h {
            return Err(format!(
                "row step {} for a plane of {h} rows (expected 1..={h})",
                self.row_step
            ));
        }
        Ok(())
    }
}

/// Per channel of a `[C, H, W]` tensor of codes, the sum of the sampled codes in each cell of a
/// `grid × grid` partition of the plane (row y falls in cell row `y · grid / H`, likewise for
/// columns; within a cell, the rows `y0, y0 + row_step, …` from its first row `y0`, every column);
/// channel-major, then cell row, then cell column. A dense layer's output (`H = W = 1`) with
/// `grid = 1` is its codes themselves.
pub fn features(codes: &[i32], shape: Shape3, s: Sampling) -> Result<Vec<i64>> {
    cell_sums(codes, shape, s, i64::from)
}

/// [`features`] of codes of type `T`, each widened to `A` by `widen` for the column sums (`A`
/// narrower than `i64` only for 8-bit codes: 16 bits when a cell sums at most 255 rows, see
/// [`LayerCodes::features`]; a column sum in `i32` is exact over up to 2^23 rows, and taller
/// planes are summed in `i64`, the same values, only slower).
fn cell_sums<T: Copy + Default, A>(
    codes: &[T],
    shape: Shape3,
    s: Sampling,
    widen: impl Fn(T) -> A + Copy,
) -> Result<Vec<i64>>
where
    A: Copy + Default + std::ops::AddAssign + Into<i64>,
{
    let [c, h, w] = shape;
    if codes.len() != c * h * w {
        return Err(ModelError::Shape {
            context: "gate features".into(),
            expected: format!("{} codes for {shape:?}", c * h * w),
            found: codes.len().to_string(),
        });
    }
    s.check(shape)
        .map_err(|e| ModelError::arg("gate feature sampling", e))?;
    if h * w == 1 {
        // A dense layer's output (grid 1 is the only grid): each code is its own cell, without
        // the per-channel column pass below (on the digits MLP that pass was 60 % of the
        // gate's decision).
        return Ok(codes.iter().map(|&v| widen(v).into()).collect());
    }
    if std::mem::size_of::<A>() < 8 && h >= 1 << 23 {
        return Ok(column_pass(codes, shape, s, move |v| -> i64 {
            widen(v).into()
        }));
    }
    Ok(column_pass(codes, shape, s, widen))
}

/// [`cell_sums`]' sums, its arguments checked.
fn column_pass<T: Copy + Default, A>(
    codes: &[T],
    shape: Shape3,
    s: Sampling,
    widen: impl Fn(T) -> A + Copy,
) -> Vec<i64>
where
    A: Copy + Default + std::ops::AddAssign + Into<i64>,
{
    // Rows of up to 16 or 32 codes are summed as whole vectors of that many lanes (the gate's
    // host time is mostly these sums, and a loop over a 12-code row does not vectorize).
    match shape[2] {
        0..=16 => lane_pass::<T, A, 16>(codes, shape, s, widen),
        17..=32 => lane_pass::<T, A, 32>(codes, shape, s, widen),
        _ => lane_pass::<T, A, 0>(codes, shape, s, widen),
    }
}

/// [`column_pass`] with the column sums of each row accumulated `L` lanes at a time: each row's
/// first `L` codes are added whole (the lanes past the row's `W` codes hold the next row's and
/// are never read), so `L ≥ W`; `L = 0` adds exactly `W` lanes per row.
fn lane_pass<T: Copy + Default, A, const L: usize>(
    codes: &[T],
    shape: Shape3,
    s: Sampling,
    widen: impl Fn(T) -> A,
) -> Vec<i64>
where
    A: Copy + Default + std::ops::AddAssign + Into<i64>,
{
    let [c, h, w] = shape;
    let grid = s.grid;
    let lanes = if L == 0 { w } else { L };
    // Per plane, each cell row's column sums are accumulated a row at a time, then all cut
    // into cells at once.
    let (rows, cols) = (s.cuts(h), s.cuts(w));
    let mut f = vec![0i64; c * grid * grid];
    let mut col = vec![A::default(); grid * lanes];
    // The last rows of the tensor, padded to L codes.
    let mut tail = [T::default(); L];
    for (ch, out) in f.chunks_exact_mut(grid * grid).enumerate() {
        col.fill(A::default());
        for (i, acc) in col.chunks_exact_mut(lanes).enumerate() {
            let ys = (rows[i]..rows[i + 1]).step_by(s.row_step);
            if L == 0 {
                for y in ys {
                    let at = (ch * h + y) * w;
                    for (a, &v) in acc.iter_mut().zip(&codes[at..at + w]) {
                        *a += widen(v);
                    }
                }
                continue;
            }
            // In registers while the rows are added (not through `acc`, which the compiler
            // then adds a lane at a time).
            let mut sum = [A::default(); L];
            for y in ys {
                let at = (ch * h + y) * w;
                let row: &[T; L] = match codes[at..].first_chunk::<L>() {
                    Some(r) => r,
                    None => {
                        tail[..w].copy_from_slice(&codes[at..at + w]);
                        &tail
                    }
                };
                for l in 0..L {
                    sum[l] += widen(row[l]);
                }
            }
            acc.copy_from_slice(&sum);
        }
        for (acc, cells) in col.chunks_exact(lanes).zip(out.chunks_exact_mut(grid)) {
            for (j, cell) in cells.iter_mut().enumerate() {
                *cell = acc[cols[j]..cols[j + 1]].iter().map(|&a| a.into()).sum();
            }
        }
    }
    f
}

/// Whether `x` is small enough for [`affine`]'s i64 arithmetic over `x.len()` terms: every
/// |x| ≤ 2^31 / 2^⌈log2 len⌉, so that a sum of len products with 32-bit weights stays within
/// 2^62.
fn fits_narrow(x: &[i64]) -> bool {
    let limit = (1u64 << 31) >> x.len().next_power_of_two().trailing_zeros();
    x.iter().all(|v| v.unsigned_abs() <= limit)
}

/// `b + Σ w·x`, exact: in i64 when `narrow` ([`fits_narrow`] of `x`) and |b| < 2^62 rule out
/// overflow (the common case, and several times faster: no checks, the loop vectorizes), in
/// i128 otherwise.
fn affine(b: i64, w: &[i32], x: &[i64], narrow: bool) -> i128 {
    if narrow && b.unsigned_abs() < 1 << 62 {
        let dot: i64 = w.iter().zip(x).map(|(&w, &x)| i64::from(w) * x).sum();
        i128::from(b + dot)
    } else {
        w.iter().zip(x).fold(i128::from(b), |a, (&w, &x)| {
            a + i128::from(w) * i128::from(x)
        })
    }
}

/// The most features and hidden units a gate network may have: bounds its integer arithmetic
/// (features fit 40 bits for any plane of up to 2^24 8-bit codes per cell; products of 32-bit
/// weights summed over 2^16 terms fit an i128 with room).
pub const GATE_MAX_FEATURES: usize = 1 << 16;
pub const GATE_MAX_HIDDEN: usize = 1 << 10;

/// A learned gate: one hidden ReLU layer over [`features`] of the first weight layer's output,
/// one score per codebook entry; the highest score (the first on a tie) picks the setting.
///
/// All integer: `h = max(0, w1·f + b1) >> shift` (saturated to i64), `score = w2·h + b2`. The
/// feature normalization of training is folded into `w1` and `b1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateNet {
    /// Cells per side of the feature grid.
    pub grid: usize,
    /// Every `row_step`-th row of each cell is summed ([`Sampling`]); 1 (every row) in bundles
    /// written before the field existed.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub row_step: usize,
    pub hidden: usize,
    /// `[hidden][features]`, row-major.
    pub w1: Vec<i32>,
    pub b1: Vec<i64>,
    /// Right shift of the hidden units before the second layer.
    pub shift: u8,
    /// `[codebook][hidden]`, row-major.
    pub w2: Vec<i32>,
    pub b2: Vec<i64>,
    /// The settings the gate chooses between; all share the first weight layer's level, which
    /// runs before the choice.
    pub codebook: Vec<Vec<u8>>,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

impl GateNet {
    /// The codes its features sum.
    pub fn sampling(&self) -> Sampling {
        Sampling {
            grid: self.grid,
            row_step: self.row_step,
        }
    }

    /// Features the network reads for a first-layer output of `shape`.
    pub fn feature_count(&self, shape: Shape3) -> usize {
        shape[0] * self.grid * self.grid
    }

    /// The first weight layer's level, shared by the codebook.
    pub fn prefix_bits(&self) -> u8 {
        self.codebook[0][0]
    }

    /// Checks the network against `q`: sizes, the codebook's settings and their shared first
    /// level, the limits on its arithmetic.
    pub fn check(&self, q: &Layout) -> Result<()> {
        let shape = q.gate_shape;
        let bad = |what: String| Err(ModelError::arg("gate network", what));
        if let Err(e) = self.sampling().check(shape) {
            return bad(format!("for the gate's map of {shape:?}: {e}"));
        }
        let d = self.feature_count(shape);
        if d > GATE_MAX_FEATURES || self.hidden == 0 || self.hidden > GATE_MAX_HIDDEN {
            return bad(format!(
                "{d} features and {} hidden units (at most {GATE_MAX_FEATURES} and 1..={GATE_MAX_HIDDEN})",
                self.hidden
            ));
        }
        let k = self.codebook.len();
        for (name, len, want) in [
            ("w1", self.w1.len(), self.hidden * d),
            ("b1", self.b1.len(), self.hidden),
            ("w2", self.w2.len(), k * self.hidden),
            ("b2", self.b2.len(), k),
        ] {
            if len != want {
                return bad(format!("{name} has {len} entries, expected {want}"));
            }
        }
        if self.shift > 126 {
            return bad(format!("shift {} (at most 126)", self.shift));
        }
        if k == 0 {
            return bad("an empty codebook".into());
        }
        for (i, s) in self.codebook.iter().enumerate() {
            q.check_bits(s)
                .map_err(|e| ModelError::arg(format!("gate codebook entry {i}"), e.to_string()))?;
            if s[0] != self.codebook[0][0] {
                return bad(format!(
                    "codebook entry {i} runs the first layer at {} bits, entry 0 at {}: the \
                     first layer runs before the choice, so all must agree",
                    s[0], self.codebook[0][0]
                ));
            }
        }
        Ok(())
    }

    /// The codebook index for features `f` (from [`features`]); `f` must have
    /// [`GateNet::feature_count`] entries. The reference arithmetic, exact for any values;
    /// [`PreparedGate::choose`] gives the same index faster.
    pub fn choose(&self, f: &[i64]) -> usize {
        let d = f.len();
        debug_assert_eq!(self.w1.len(), self.hidden * d);
        let narrow = fits_narrow(f);
        let h: Vec<i64> = (0..self.hidden)
            .map(|j| self.unit(affine(self.b1[j], &self.w1[j * d..(j + 1) * d], f, narrow)))
            .collect();
        self.pick(&h)
    }

    /// Hidden unit value of pre-activation `pre`: ReLU, shift, saturated to i64 (`GateNet`'s
    /// rule).
    fn unit(&self, pre: i128) -> i64 {
        (pre.max(0) >> self.shift).min(i128::from(i64::MAX)) as i64
    }

    /// The codebook index of the highest score (the first on a tie) over hidden units `h`.
    fn pick(&self, h: &[i64]) -> usize {
        let narrow = fits_narrow(h);
        let mut best = (0, i128::MIN);
        for k in 0..self.codebook.len() {
            let s = affine(
                self.b2[k],
                &self.w2[k * self.hidden..(k + 1) * self.hidden],
                h,
                narrow,
            );
            if s > best.1 {
                best = (k, s);
            }
        }
        best.0
    }

    /// Integer operations of one choice: feature additions (one per code read), then
    /// multiply-adds of both layers.
    pub fn ops(&self, shape: Shape3) -> u64 {
        let d = self.feature_count(shape) as u64;
        self.sampling().codes_read(shape) as u64
            + self.hidden as u64 * d
            + (self.codebook.len() * self.hidden) as u64
    }
}

/// A [`GateNet`] ready to decide fast, its first layer's weights also held transposed
/// (`[feature][hidden]`) as `f64`: the hidden layer is then one vectorized multiply-add of all
/// hidden units per feature. Exact: a weight (|w| ≤ 2^31) times a feature is an integer, and
/// when the bitwise OR of all |feature| (at least the largest) times the largest Σ|w| over one
/// hidden unit's weights is below 2^53, every product and partial sum is an integer below 2^53, which `f64` holds exactly
/// whatever the order of the additions; otherwise the decision falls back to
/// [`GateNet::choose`]. Either way the index is [`GateNet::choose`]'s.
///
/// Serialized as its [`GateNet`] (the transposed weights are derived on reading).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "GateNet", into = "GateNet")]
pub struct PreparedGate {
    net: GateNet,
    /// `w1` transposed, `[feature][hidden]`; empty when `w1` is not `hidden ×` a whole number of
    /// features (a network [`GateNet::check`] refuses).
    w1t: Vec<f64>,
    /// The largest Σ_i |w1[j][i]| over hidden units j.
    abs_sum: u64,
}

impl PreparedGate {
    pub fn new(net: GateNet) -> PreparedGate {
        let h = net.hidden;
        let (mut w1t, mut abs_sum) = (Vec::new(), 0);
        if h > 0 && !net.w1.is_empty() && net.w1.len().is_multiple_of(h) {
            let d = net.w1.len() / h;
            w1t = (0..d * h)
                .map(|k| f64::from(net.w1[(k % h) * d + k / h]))
                .collect();
            abs_sum = net
                .w1
                .chunks_exact(d)
                .map(|r| r.iter().map(|w| u64::from(w.unsigned_abs())).sum())
                .max()
                .unwrap_or(0);
        }
        PreparedGate { net, w1t, abs_sum }
    }

    pub fn net(&self) -> &GateNet {
        &self.net
    }

    /// Hidden units `j..j + B` of features `f` (exact integers in `f64`, bounded as
    /// [`PreparedGate::choose`] checks) into `units`.
    fn units<const B: usize, const S: usize>(&self, j: usize, f: &[i64], units: &mut [i64]) {
        let h = self.net.hidden;
        // S sets of sums, taking the features in turn, so that S · B lanes (16) add
        // independently rather than each waiting for its last add; summed at the end (exact:
        // every partial sum is bounded as the whole is).
        let mut acc = [[0f64; B]; S];
        let mut rows = self.w1t[j..].chunks(h).zip(f);
        'features: loop {
            for a in acc.iter_mut() {
                let Some((w, &x)) = rows.next() else {
                    break 'features;
                };
                let x = x as f64;
                // Every chunk but the last holds h ≥ j + B weights, the last from j h − j.
                if let Some(w) = w.first_chunk::<B>() {
                    for l in 0..B {
                        a[l] += w[l] * x;
                    }
                }
            }
        }
        for l in 0..B {
            let sum: f64 = acc.iter().map(|a| a[l]).sum();
            units[j + l] = self
                .net
                .unit(i128::from(self.net.b1[j + l]) + i128::from(sum as i64));
        }
    }

    /// [`GateNet::choose`] of `f`: the same index.
    pub fn choose(&self, f: &[i64]) -> usize {
        let net = &self.net;
        let h = net.hidden;
        // At least the largest |f| and below twice it (an OR vectorizes, a max does not).
        let m = f.iter().fold(0, |a, v| a | v.unsigned_abs());
        if self.w1t.is_empty()
            || self.w1t.len() != h * f.len()
            || u128::from(m) * u128::from(self.abs_sum) >= 1 << 53
        {
            return net.choose(f);
        }
        let mut units = vec![0i64; h];
        // Hidden units in blocks whose sums stay in registers across all features.
        let mut j = 0;
        while j + 16 <= h {
            self.units::<16, 1>(j, f, &mut units);
            j += 16;
        }
        while j + 8 <= h {
            self.units::<8, 2>(j, f, &mut units);
            j += 8;
        }
        while j + 4 <= h {
            self.units::<4, 4>(j, f, &mut units);
            j += 4;
        }
        while j < h {
            self.units::<1, 8>(j, f, &mut units);
            j += 1;
        }
        net.pick(&units)
    }

    /// The codebook index for the first layer's output `codes` of `shape`.
    pub fn choose_for(&self, codes: &LayerCodes, shape: Shape3) -> Result<usize> {
        let net = &self.net;
        let f = codes.features(shape, net.sampling())?;
        if f.len() * net.hidden != net.w1.len() {
            return Err(ModelError::arg(
                "gate network",
                format!(
                    "{} features from {shape:?}, the network reads {}",
                    f.len(),
                    net.w1.len() / net.hidden.max(1)
                ),
            ));
        }
        Ok(self.choose(&f))
    }
}

impl From<GateNet> for PreparedGate {
    fn from(net: GateNet) -> PreparedGate {
        PreparedGate::new(net)
    }
}

impl From<PreparedGate> for GateNet {
    fn from(p: PreparedGate) -> GateNet {
        p.net
    }
}

impl PartialEq for PreparedGate {
    fn eq(&self, other: &PreparedGate) -> bool {
        self.net == other.net
    }
}

impl Eq for PreparedGate {}

/// The policies of context class `class` among `policies` (a model's), or an error naming the
/// classes there are.
pub fn policy_for<'p>(policies: &'p [AdaptivePolicy], class: &str) -> Result<&'p AdaptivePolicy> {
    policies.iter().find(|p| p.class == class).ok_or_else(|| {
        let known: Vec<&str> = policies.iter().map(|p| p.class.as_str()).collect();
        ModelError::arg(
            "adaptive",
            format!(
                "no input-adaptive policy for class '{class}' (the model has them for {known:?}; \
                 `caq gate --adaptive` builds them)"
            ),
        )
    })
}

/// The input-adaptive policies of one context class (the gate of the same name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptivePolicy {
    /// The context class, the name of one of the model's gates.
    pub class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cascade: Option<Cascade>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<PreparedGate>,
}

impl AdaptivePolicy {
    pub fn check(&self, q: &Layout) -> Result<()> {
        let ctx =
            |e: ModelError| ModelError::arg(format!("adaptive '{}'", self.class), e.to_string());
        if let Some(c) = &self.cascade {
            c.check(q).map_err(ctx)?;
        }
        if let Some(n) = &self.network {
            n.net().check(q).map_err(ctx)?;
        }
        Ok(())
    }

    /// The policy of kind `kind`, or an error naming what the class has.
    pub fn get(&self, kind: AdaptiveKind) -> Result<Adaptive<'_>> {
        let found = match kind {
            AdaptiveKind::Cascade => self.cascade.as_ref().map(Adaptive::Cascade),
            AdaptiveKind::Network => self.network.as_ref().map(Adaptive::Network),
        };
        found.ok_or_else(|| {
            ModelError::arg(
                "adaptive",
                format!(
                    "class '{}' has no {} (it has: {})",
                    self.class,
                    kind.name(),
                    self.kinds()
                ),
            )
        })
    }

    fn kinds(&self) -> String {
        let mut k = Vec::new();
        if self.cascade.is_some() {
            k.push("cascade");
        }
        if self.network.is_some() {
            k.push("network");
        }
        if k.is_empty() {
            "nothing".into()
        } else {
            k.join(", ")
        }
    }
}

/// Which input-adaptive policy to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdaptiveKind {
    Cascade,
    Network,
}

impl AdaptiveKind {
    pub const ALL: [AdaptiveKind; 2] = [AdaptiveKind::Cascade, AdaptiveKind::Network];

    pub fn name(self) -> &'static str {
        match self {
            AdaptiveKind::Cascade => "cascade",
            AdaptiveKind::Network => "network",
        }
    }

    /// The kind called `name` (`"cascade"` or `"network"`).
    pub fn from_name(name: &str) -> Result<AdaptiveKind> {
        AdaptiveKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                ModelError::arg(
                    "adaptive kind",
                    format!("'{name}' (expected \"cascade\" or \"network\")"),
                )
            })
    }
}

/// One policy to apply.
#[derive(Clone, Copy, Debug)]
pub enum Adaptive<'a> {
    Cascade(&'a Cascade),
    Network(&'a PreparedGate),
}

impl Adaptive<'_> {
    /// Checks the policy against `q`'s layout and returns the layout (where the gate's features
    /// come from): what every backend does before it prepares the policy's settings.
    pub fn checked_layout(&self, q: &QModel) -> Result<Layout> {
        let layout = Layout::of(q)?;
        match self {
            Adaptive::Cascade(c) => c.check(&layout)?,
            Adaptive::Network(n) => n.net().check(&layout)?,
        }
        Ok(layout)
    }

    /// Every setting the policy may run (the driver keeps them all resident).
    pub fn settings(&self) -> &[Vec<u8>] {
        match self {
            Adaptive::Cascade(c) => &c.stages,
            Adaptive::Network(n) => &n.net().codebook,
        }
    }
}

/// What an adaptive inference did: the output codes, the setting that produced them, and the
/// passes it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub output: Vec<i32>,
    /// The index of the final setting (cascade stage, or codebook entry).
    pub choice: usize,
    pub bits: Vec<u8>,
    /// Passes over the network: `(setting index, first weight layer run)`; a cascade re-run
    /// starts at the first layer its setting changes, the gate's second pass after layer 0.
    pub passes: Vec<(usize, usize)>,
}

/// One pass of an adaptive inference, as [`infer`] asks a backend for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The whole network from the input; returns the output codes.
    Full,
    /// Again from weight layer `i`, the layers before it unchanged since the last pass; returns
    /// the output codes.
    From(usize),
    /// From the input through the first weight layer, and the max pool after it when that is
    /// the [`gate_node`]; returns the gate node's output codes (CHW).
    FirstLayer,
    /// The rest of the network after [`Pass::FirstLayer`]; returns the output codes.
    AfterFirst,
}

/// A backend that runs passes at the settings of one policy (`k` indexes
/// [`Adaptive::settings`]). A backend without partial runs may compute a `From` or `AfterFirst`
/// pass whole: the outputs are the same, only its cost differs.
pub trait Passes {
    fn run(&mut self, k: usize, pass: Pass) -> Result<Vec<i32>>;

    /// The [`Pass::FirstLayer`] pass, its codes in the form the backend holds them (the
    /// device's bytes, unwidened).
    fn first_layer(&mut self, k: usize) -> Result<LayerCodes> {
        self.run(k, Pass::FirstLayer).map(LayerCodes::Codes)
    }
}

/// One adaptive inference: the policy's rules over the passes a backend runs. The only place
/// the rules are applied; every backend (golden, CPU, the driver on any device) calls it.
pub fn infer(
    policy: Adaptive<'_>,
    gate_shape: Shape3,
    backend: &mut impl Passes,
) -> Result<Outcome> {
    let settings = policy.settings();
    match policy {
        Adaptive::Cascade(c) => {
            let mut passes = vec![(0, 0)];
            let mut out = backend.run(0, Pass::Full)?;
            let mut k = 0;
            while !c.accepts(k, &out) {
                let from = first_change(&settings[k], &settings[k + 1]);
                k += 1;
                out = backend.run(k, Pass::From(from))?;
                passes.push((k, from));
            }
            Ok(Outcome {
                output: out,
                choice: k,
                bits: settings[k].clone(),
                passes,
            })
        }
        Adaptive::Network(n) => {
            // The codebook shares the first layer's level: entry 0 runs it for all.
            let first = backend.first_layer(0)?;
            let k = n.choose_for(&first, gate_shape)?;
            let output = backend.run(k, Pass::AfterFirst)?;
            Ok(Outcome {
                output,
                choice: k,
                bits: settings[k].clone(),
                passes: vec![(0, 0), (k, 1)],
            })
        }
    }
}

/// The golden reference of adaptive inference: [`infer`] over the golden executor, one executor
/// per setting prepared once; every pass is computed whole.
pub struct GoldenAdaptive<'a> {
    policy: Adaptive<'a>,
    executors: Vec<Executor<'a>>,
    gate_node: usize,
    gate_shape: Shape3,
}

struct GoldenPasses<'e, 'a> {
    executors: &'e [Executor<'a>],
    gate_node: usize,
    pixels: &'e [u8],
}

impl Passes for GoldenPasses<'_, '_> {
    fn run(&mut self, k: usize, pass: Pass) -> Result<Vec<i32>> {
        let ex = &self.executors[k];
        match pass {
            Pass::FirstLayer => Ok(ex.run(self.pixels)?[self.gate_node]
                .iter()
                .copied()
                .collect()),
            Pass::Full | Pass::From(_) | Pass::AfterFirst => ex.logits(self.pixels),
        }
    }
}

impl<'a> GoldenAdaptive<'a> {
    pub fn new(q: &'a QModel, policy: Adaptive<'a>) -> Result<GoldenAdaptive<'a>> {
        let layout = policy.checked_layout(q)?;
        let executors = policy
            .settings()
            .iter()
            .map(|s| q.executor(s))
            .collect::<Result<Vec<_>>>()?;
        Ok(GoldenAdaptive {
            policy,
            executors,
            gate_node: layout.gate_node,
            gate_shape: layout.gate_shape,
        })
    }

    /// One adaptive inference of `pixels`.
    pub fn infer(&self, pixels: &[u8]) -> Result<Outcome> {
        let mut passes = GoldenPasses {
            executors: &self.executors,
            gate_node: self.gate_node,
            pixels,
        };
        infer(self.policy, self.gate_shape, &mut passes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn margin_is_the_gap_between_the_two_largest_codes() {
        assert_eq!(margin(&[3, 9, -2, 7]), 2);
        assert_eq!(margin(&[5, 5, 1]), 0);
        assert_eq!(margin(&[-128, 127]), 255);
        assert_eq!(margin(&[4]), 0);
        assert_eq!(margin(&[]), 0);
    }

    #[test]
    fn first_change_finds_where_a_rerun_starts() {
        assert_eq!(first_change(&[8, 4, 2], &[8, 4, 8]), 2);
        assert_eq!(first_change(&[2, 4, 2], &[8, 4, 2]), 0);
        assert_eq!(first_change(&[8, 4], &[8, 4]), 2);
    }

    #[test]
    fn features_sum_each_cell_of_each_channel() {
        // 2 channels of 3×4, grid 2: rows {0, 1} and {2} (y·2/3), columns {0, 1} and {2, 3}.
        let codes: Vec<i32> = (0..24).collect();
        let f = features(&codes, [2, 3, 4], Sampling::dense(2)).unwrap();
        assert_eq!(f, vec![10, 18, 17, 21, 58, 66, 41, 45]);
        // Row step 2: cell row 0 reads row 0 only (its rows are 0 and 1), cell row 1 row 2.
        let s = Sampling {
            grid: 2,
            row_step: 2,
        };
        assert_eq!(
            features(&codes, [2, 3, 4], s).unwrap(),
            vec![1, 5, 17, 21, 25, 29, 41, 45]
        );
        assert_eq!(
            features(&codes, [24, 1, 1], Sampling::dense(1)).unwrap(),
            (0..24).collect::<Vec<i64>>()
        );
        let e = features(&codes, [2, 3, 4], Sampling::dense(4))
            .unwrap_err()
            .to_string();
        assert!(e.contains("grid") && e.contains("1..=3"), "{e}");
        let e = features(
            &codes,
            [2, 3, 4],
            Sampling {
                grid: 1,
                row_step: 4,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("row step 4") && e.contains("1..=3"), "{e}");
        assert!(
            features(
                &codes,
                [2, 3, 4],
                Sampling {
                    grid: 1,
                    row_step: 0
                }
            )
            .is_err()
        );
        assert!(features(&codes[..5], [2, 3, 4], Sampling::dense(1)).is_err());
    }

    #[test]
    fn features_follow_the_documented_cell_rule_on_random_shapes() {
        let seed: u64 = rand::rng().random();
        eprintln!("CAQ_SEED={seed}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for i in 0..200 {
            // Every tenth a dense layer's output (1×1 planes: `features`' shortcut); every
            // seventh a plane tall enough that a cell may sum more than 255 rows (the bytes'
            // 32-bit sums); rows of 1..=16, 17..=32 and longer (the three row widths of
            // `column_pass`).
            let (c, h, w) = if i % 10 == 0 {
                (rng.random_range(1..200), 1, 1)
            } else if i % 7 == 0 {
                (1, rng.random_range(256..700), rng.random_range(1..40))
            } else {
                (
                    rng.random_range(1..5),
                    rng.random_range(1..30),
                    rng.random_range(1..45),
                )
            };
            let grid = rng.random_range(1..=h.min(w));
            let row_step = if i % 3 == 0 {
                1
            } else {
                rng.random_range(1..=h)
            };
            let s = Sampling { grid, row_step };
            // Half the tensors at the extremes of the byte codes, where a narrow sum would
            // overflow first.
            let codes: Vec<i32> = (0..c * h * w)
                .map(|_| match i % 4 {
                    0 => [-128, 255][rng.random_range(0..2)],
                    _ => rng.random_range(-128..256),
                })
                .collect();
            // The rule as docs/gates.md states it: row y is in cell row y·grid/H, and it is
            // read when its distance from that cell row's first row is a multiple of the step.
            let mut want = vec![0i64; c * grid * grid];
            let mut read = 0;
            for ch in 0..c {
                for y in 0..h {
                    let cell_row = y * grid / h;
                    let first = (0..h).find(|&r| r * grid / h == cell_row).unwrap();
                    if (y - first) % row_step != 0 {
                        continue;
                    }
                    read += w;
                    for x in 0..w {
                        want[ch * grid * grid + cell_row * grid + x * grid / w] +=
                            i64::from(codes[(ch * h + y) * w + x]);
                    }
                }
            }
            assert_eq!(
                features(&codes, [c, h, w], s).unwrap(),
                want,
                "{c}×{h}×{w} {s:?}"
            );
            assert_eq!(s.codes_read([c, h, w]), read, "{c}×{h}×{w} {s:?}");
            // The tallest cell's sampled rows, as the bytes' 16-bit sums rely on.
            let tallest = (0..grid)
                .map(|i| {
                    (0..h)
                        .filter(|&y| y * grid / h == i)
                        .count()
                        .div_ceil(row_step)
                })
                .max()
                .unwrap();
            assert_eq!(s.rows_per_cell(h), tallest, "{h} rows, {s:?}");
            // The rows it reads are the rows the rule above sums.
            let rows = s.rows(h);
            assert_eq!(
                rows,
                (0..h)
                    .filter(|&y| {
                        let first = (0..h).find(|&r| r * grid / h == y * grid / h).unwrap();
                        (y - first) % row_step == 0
                    })
                    .collect::<Vec<_>>()
            );
            // The device's bytes of the same codes, unsigned when every code is 0..=255 and
            // signed when every code is -128..=127, give the same features.
            let signed = i % 2 == 1;
            let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
            let clamped: Vec<i32> = codes.iter().map(|&v| v.clamp(lo, hi)).collect();
            let bytes = LayerCodes::Bytes {
                bytes: clamped.iter().map(|&v| v as u8).collect(),
                signed,
            };
            assert_eq!(bytes.to_codes(), clamped);
            assert_eq!(
                bytes.features([c, h, w], s).unwrap(),
                features(&clamped, [c, h, w], s).unwrap(),
                "bytes (signed {signed}) {c}×{h}×{w} {s:?}"
            );
        }
    }

    #[test]
    fn the_gate_is_exact_on_both_sides_of_the_narrow_arithmetic() {
        // Magnitudes from tiny to the limits of the types, so that both of `affine`'s paths
        // run (and the bound between them is crossed), and both of the prepared gate's (f64
        // and the fallback), against i128 arithmetic throughout.
        let seed: u64 = rand::rng().random();
        eprintln!("CAQ_SEED={seed}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (mut narrow, mut wide, mut in_f64) = (0, 0, 0);
        for _ in 0..400 {
            let (d, hidden, k) = (
                rng.random_range(1..70),
                rng.random_range(1..20),
                rng.random_range(1..6),
            );
            let big = |rng: &mut rand_chacha::ChaCha8Rng, bits: u32| {
                let m = 1i64 << rng.random_range(0..bits);
                rng.random_range(-m..m)
            };
            let fb = rng.random_range(1..40);
            let f: Vec<i64> = (0..d).map(|_| big(&mut rng, fb)).collect();
            let net = GateNet {
                grid: 1,
                row_step: 1,
                hidden,
                w1: (0..hidden * d).map(|_| big(&mut rng, 32) as i32).collect(),
                b1: (0..hidden).map(|_| big(&mut rng, 63)).collect(),
                shift: rng.random_range(0..40),
                w2: (0..k * hidden).map(|_| big(&mut rng, 32) as i32).collect(),
                b2: (0..k).map(|_| big(&mut rng, 63)).collect(),
                codebook: vec![vec![8]; k],
            };
            if fits_narrow(&f) {
                narrow += 1;
            } else {
                wide += 1;
            }
            let h: Vec<i128> = (0..hidden)
                .map(|j| {
                    let pre = (0..d).fold(i128::from(net.b1[j]), |a, i| {
                        a + i128::from(net.w1[j * d + i]) * i128::from(f[i])
                    });
                    (pre.max(0) >> net.shift).min(i128::from(i64::MAX))
                })
                .collect();
            let scores: Vec<i128> = (0..k)
                .map(|c| {
                    (0..hidden).fold(i128::from(net.b2[c]), |a, j| {
                        a + i128::from(net.w2[c * hidden + j]) * h[j]
                    })
                })
                .collect();
            let want = (0..k).fold(0, |b, c| if scores[c] > scores[b] { c } else { b });
            assert_eq!(net.choose(&f), want, "d {d} hidden {hidden} k {k}");
            // The prepared gate: its f64 hidden layer where the bound allows, the same index.
            let abs_sum = (0..hidden)
                .map(|j| {
                    (0..d)
                        .map(|i| net.w1[j * d + i].unsigned_abs() as u128)
                        .sum()
                })
                .max()
                .unwrap_or(0u128);
            let m = f.iter().fold(0, |a, v| a | v.unsigned_abs()) as u128;
            if m * abs_sum < 1 << 53 {
                in_f64 += 1;
            }
            let prepared = PreparedGate::new(net);
            assert_eq!(
                prepared.choose(&f),
                want,
                "prepared: d {d} hidden {hidden} k {k}"
            );
        }
        assert!(
            narrow > 20 && wide > 20,
            "paths: narrow {narrow}, wide {wide}"
        );
        assert!(
            in_f64 > 20 && in_f64 < 380,
            "prepared gate's f64 path in {in_f64} of 400"
        );
    }

    #[test]
    fn the_prepared_gate_is_exact_to_the_last_unit() {
        // Each hidden unit set against a threshold at its exact value and one above, so that a
        // unit off by one flips the choice; near the bound of the f64 path (sums up to 2^53).
        let seed: u64 = rand::rng().random();
        eprintln!("CAQ_SEED={seed}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..200 {
            let (d, hidden) = (rng.random_range(1..140), rng.random_range(1..40));
            let w1: Vec<i32> = (0..hidden * d).map(|_| rng.random()).collect();
            let abs_sum: u128 = (0..hidden)
                .map(|j| (0..d).map(|i| w1[j * d + i].unsigned_abs() as u128).sum())
                .max()
                .unwrap();
            // The largest |f| with OR(|f|) · Σ|w| < 2^53: a power of two minus one.
            let bits = 127 - ((1u128 << 53) / abs_sum).leading_zeros();
            let top = (1i64 << bits) - 1;
            let f: Vec<i64> = (0..d).map(|_| rng.random_range(-top..=top)).collect();
            let b1: Vec<i64> = (0..hidden)
                .map(|_| rng.random_range(-1 << 40..1 << 40))
                .collect();
            let j = rng.random_range(0..hidden);
            let exact = (0..d).fold(i128::from(b1[j]), |a, i| {
                a + i128::from(w1[j * d + i]) * i128::from(f[i])
            });
            let unit = i64::try_from(exact.max(0)).unwrap();
            for (above, want) in [(0, 0), (1, 1)] {
                let mut w2 = vec![0; 2 * hidden];
                w2[j] = 1;
                let net = GateNet {
                    grid: 1,
                    row_step: 1,
                    hidden,
                    w1: w1.clone(),
                    b1: b1.clone(),
                    shift: 0,
                    w2,
                    b2: vec![0, unit + above],
                    codebook: vec![vec![8]; 2],
                };
                assert_eq!(net.choose(&f), want, "reference, d {d} hidden {hidden}");
                let p = PreparedGate::new(net);
                assert_eq!(
                    p.choose(&f),
                    want,
                    "prepared, d {d} hidden {hidden} unit {j}"
                );
            }
        }
    }

    #[test]
    fn the_integer_gate_matches_its_float_arithmetic() {
        let seed: u64 = rand::rng().random();
        eprintln!("CAQ_SEED={seed}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..50 {
            let (d, hidden, k) = (
                rng.random_range(1..20),
                rng.random_range(1..8),
                rng.random_range(1..5),
            );
            let net = GateNet {
                grid: 1,
                row_step: 1,
                hidden,
                w1: (0..hidden * d)
                    .map(|_| rng.random_range(-1000..1000))
                    .collect(),
                b1: (0..hidden).map(|_| rng.random_range(-5000..5000)).collect(),
                shift: rng.random_range(0..4),
                w2: (0..k * hidden)
                    .map(|_| rng.random_range(-1000..1000))
                    .collect(),
                b2: (0..k).map(|_| rng.random_range(-5000..5000)).collect(),
                codebook: vec![vec![8]; k],
            };
            let f: Vec<i64> = (0..d).map(|_| rng.random_range(-300..300)).collect();
            let h: Vec<f64> = (0..hidden)
                .map(|j| {
                    let pre: f64 = net.b1[j] as f64
                        + (0..d)
                            .map(|i| net.w1[j * d + i] as f64 * f[i] as f64)
                            .sum::<f64>();
                    (pre.max(0.0) / 2f64.powi(i32::from(net.shift))).floor()
                })
                .collect();
            let scores: Vec<f64> = (0..k)
                .map(|c| {
                    net.b2[c] as f64
                        + (0..hidden)
                            .map(|j| net.w2[c * hidden + j] as f64 * h[j])
                            .sum::<f64>()
                })
                .collect();
            assert_eq!(net.choose(&f), crate::qmodel::argmax(&scores));
        }
    }
}
