//! Float training of the caq reference architectures with candle on the CPU. Owns the
//! architectures (as caq `Graph`s), seeded initialisation, the AdamW loop, and the hand-over of
//! trained weights to a `FloatModel`; knows nothing of quantization or hardware.
//!
//! candle runs the caq `Graph` directly, node by node, with every weight held in the caq layout
//! (`[out, K]`, a conv's K in OIHW order), so exporting a trained network copies tensors and
//! never permutes them; the tests check candle's logits against `FloatModel::forward`. Inputs
//! follow the float model's convention, `pixel / max_value` in CHW.

pub use crate::arch::{Arch, graph_for};
use crate::data::Dataset;
use crate::error::{ModelError, Result};
use crate::graph::{FloatModel, FloatParams, Graph, Op, Padding, Src};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Hyper-parameters of one training run. `lr` is AdamW's peak learning rate, annealed to zero
/// over the run on a per-step cosine schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub arch: Arch,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

impl TrainConfig {
    /// Measured defaults (release, 2 cores, seed 0): the digits MLP on a stratified 1437/360
    /// split (split seed 0) reaches 99.2 % held-out accuracy in about 1 s; the LeNet on MNIST-10k
    /// split 8000/2000 (split seed 0) reaches 98.5 % in about 40 s.
    pub fn default_for(arch: Arch) -> Self {
        match arch {
            Arch::Mlp => TrainConfig {
                arch,
                epochs: 40,
                batch_size: 32,
                lr: 3e-3,
                weight_decay: 1e-4,
                seed: 0,
            },
            Arch::LeNet => TrainConfig {
                arch,
                epochs: 8,
                batch_size: 32,
                lr: 3e-3,
                weight_decay: 1e-4,
                seed: 0,
            },
            // The MLPerf Tiny shapes trained on the data here (MNIST): fewer epochs, the deeper
            // networks a lower rate. (The autoencoder is not a classifier: `train` refuses it.)
            Arch::ResNet8 | Arch::DsCnn | Arch::MobileNetV1 | Arch::AutoEncoder => TrainConfig {
                arch,
                epochs: 4,
                batch_size: 32,
                lr: 2e-3,
                weight_decay: 1e-4,
                seed: 0,
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub epochs: usize,
    /// Mean cross-entropy over the last epoch (NaN when `epochs` is 0).
    pub final_loss: f32,
    /// Accuracy of the trained network on the training set.
    pub train_accuracy: f32,
    pub seconds: f64,
}

pub(crate) fn candle_err(e: candle_core::Error) -> ModelError {
    ModelError::Train(e.to_string())
}

/// A caq graph with candle variables for its weights, in the caq layout.
///
/// Activations are held batch-last, `[C*H*W, batch]`, so that every conv and pool is a row
/// gather (`index_select`) followed by one GEMM or reduction. candle's own CPU `conv2d` backward
/// goes through a naive conv-transpose that also computes the unused gradient of the input
/// image; on the LeNet this layout trains several times faster.
pub(crate) struct Net {
    pub(crate) graph: Graph,
    pub(crate) params: Vec<Option<(Var, Var)>>,
    /// For conv and pool nodes, the input row each (window element, output position) reads.
    gathers: Vec<Option<Gather>>,
    /// Every node's output shape.
    shapes: Vec<crate::graph::Shape3>,
}

struct Gather {
    rows: Tensor,
    /// Conv padding reads a zero row appended after the input's rows.
    reads_zero_row: bool,
}

/// Gather rows for a conv or pool window of `kernel` over input `[c, h, w]`: entry
/// `k * positions + p` is the input row for reduction index `k = (ci*kh + ky)*kw + kx` (the caq
/// K order) at output position `p = oy*ow + ox`; pools use one channel at a time (`per_channel`),
/// laid out `[c*oh*ow, kh*kw]`. Padding reads row `c*h*w`.
fn gather_rows(
    [c, h, w]: [usize; 3],
    [kh, kw]: [usize; 2],
    stride: usize,
    pad: Padding,
    [oh, ow]: [usize; 2],
    per_channel: bool,
) -> (Vec<u32>, bool) {
    let zero_row = c * h * w;
    let mut padded = false;
    let mut read = |ci: usize, oy: usize, ox: usize, ky: usize, kx: usize| {
        let iy = (oy * stride + ky).checked_sub(pad.top).filter(|&y| y < h);
        let ix = (ox * stride + kx).checked_sub(pad.left).filter(|&x| x < w);
        match (iy, ix) {
            (Some(iy), Some(ix)) => ((ci * h + iy) * w + ix) as u32,
            _ => {
                padded = true;
                zero_row as u32
            }
        }
    };
    let mut rows = Vec::with_capacity(c * kh * kw * oh * ow);
    if per_channel {
        for ci in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            rows.push(read(ci, oy, ox, ky, kx));
                        }
                    }
                }
            }
        }
    } else {
        for ci in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            rows.push(read(ci, oy, ox, ky, kx));
                        }
                    }
                }
            }
        }
    }
    (rows, padded)
}

/// The gather rows of every conv and pool node of `graph` (None for other nodes).
fn gathers_for(graph: &Graph) -> Result<Vec<Option<Gather>>> {
    let shapes = graph.shapes()?;
    let mut gathers = Vec::with_capacity(graph.nodes.len());
    for (i, node) in graph.nodes.iter().enumerate() {
        let in_shape = match node.inputs[0] {
            Src::Input => graph.input_shape,
            Src::Node(j) => shapes[j],
        };
        let [_, oh, ow] = shapes[i];
        let gather = match node.op {
            Op::Conv2d {
                kernel,
                stride,
                padding,
                ..
            } => Some(gather_rows(
                in_shape,
                kernel,
                stride,
                padding,
                [oh, ow],
                false,
            )),
            Op::MaxPool { kernel, stride } | Op::AvgPool { kernel, stride } => Some(gather_rows(
                in_shape,
                [kernel, kernel],
                stride,
                Padding::uniform(0),
                [oh, ow],
                true,
            )),
            _ => None,
        };
        gathers.push(match gather {
            None => None,
            Some((rows, reads_zero_row)) => {
                let n = rows.len();
                Some(Gather {
                    rows: Tensor::from_vec(rows, n, &Device::Cpu).map_err(candle_err)?,
                    reads_zero_row,
                })
            }
        });
    }
    Ok(gathers)
}

/// A weight layer's parameters as trainable variables: weight `[out, K]`, bias `[out, 1]`.
fn vars_of(p: &FloatParams) -> Result<(Var, Var)> {
    let (out, k) = p.weight.dim();
    let w: Vec<f32> = p.weight.iter().copied().collect();
    Ok((
        Var::from_vec(w, (out, k), &Device::Cpu).map_err(candle_err)?,
        Var::from_vec(p.bias.to_vec(), (out, 1), &Device::Cpu).map_err(candle_err)?,
    ))
}

impl Net {
    /// Kaiming-uniform weights (gain √2 before a ReLU, 1 otherwise) and PyTorch-style biases
    /// U(±1/√fan_in), all drawn from `rng` so that a seed fixes the whole run.
    fn init(graph: Graph, rng: &mut ChaCha8Rng) -> Result<Net> {
        let gathers = gathers_for(&graph)?;
        let shapes = graph.shapes()?;
        let mut params = Vec::with_capacity(graph.nodes.len());
        for p in crate::arch::kaiming_params(&graph, rng) {
            params.push(match p {
                None => None,
                Some(p) => Some(vars_of(&p)?),
            });
        }
        Ok(Net {
            graph,
            params,
            gathers,
            shapes,
        })
    }

    /// A network holding a copy of `model`'s weights as trainable variables.
    pub(crate) fn from_model(model: &FloatModel) -> Result<Net> {
        model.validate()?;
        let gathers = gathers_for(&model.graph)?;
        let shapes = model.graph.shapes()?;
        let mut params = Vec::with_capacity(model.params.len());
        for p in &model.params {
            params.push(match p {
                None => None,
                Some(p) => Some(vars_of(p)?),
            });
        }
        Ok(Net {
            graph: model.graph.clone(),
            params,
            gathers,
            shapes,
        })
    }

    pub(crate) fn vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .flatten()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }

    /// The weight matrices alone (biases held).
    pub(crate) fn weight_vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .flatten()
            .map(|(w, _)| w.clone())
            .collect()
    }

    /// Logits `[batch, classes]` of a batch-last input `[C*H*W, batch]`.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let weights: Vec<Option<Tensor>> = self
            .params
            .iter()
            .map(|p| p.as_ref().map(|(w, _)| w.as_tensor().clone()))
            .collect();
        self.forward_with(x, &weights)
    }

    /// `forward` with the weight matrices replaced by `weights` (one per node, `None` for nodes
    /// without weights); the biases stay the network's own.
    pub(crate) fn forward_with(
        &self,
        x: &Tensor,
        weights: &[Option<Tensor>],
    ) -> candle_core::Result<Tensor> {
        let batch = x.dim(1)?;
        let mut outs: Vec<Tensor> = Vec::with_capacity(self.graph.nodes.len());
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let input = |s: Src| match s {
                Src::Input => x.clone(),
                Src::Node(j) => outs[j].clone(),
            };
            let a = input(node.inputs[0]);
            let gathered = || -> candle_core::Result<Tensor> {
                let Some(g) = &self.gathers[i] else {
                    candle_core::bail!("layer '{}': no gather rows", node.name)
                };
                let a = if g.reads_zero_row {
                    Tensor::cat(
                        &[&a, &Tensor::zeros((1, batch), DType::F32, a.device())?],
                        0,
                    )?
                } else {
                    a.clone()
                };
                a.index_select(&g.rows, 0)
            };
            let params = match (&self.params[i], weights.get(i)) {
                (Some((_, b)), Some(Some(w))) => Some((w, b)),
                _ => None,
            };
            let y = match (&node.op, params) {
                (Op::Dense { .. }, Some((w, b))) => w.matmul(&a)?.broadcast_add(b.as_tensor())?,
                (
                    Op::Conv2d {
                        out_channels,
                        groups,
                        ..
                    },
                    Some((w, b)),
                ) => {
                    // A group's K rows are contiguous (K is channel-major), so a grouped conv
                    // is one batched GEMM of [groups, O/groups, K] by [groups, K, P·batch].
                    let (o, k, g) = (*out_channels, w.dim(1)?, *groups);
                    let cols = gathered()?.reshape((g, k, ()))?;
                    let positions = cols.dim(2)? / batch;
                    w.reshape((g, o / g, k))?
                        .matmul(&cols)?
                        .reshape((o, ()))?
                        .broadcast_add(b.as_tensor())?
                        .reshape((o * positions, batch))?
                }
                (Op::GlobalAvgPool, None) => {
                    let c = self.shapes[i][0];
                    a.reshape((c, (), batch))?.mean(1)?
                }
                (Op::MaxPool { kernel, .. }, None) => {
                    gathered()?.reshape(((), kernel * kernel, batch))?.max(1)?
                }
                (Op::AvgPool { kernel, .. }, None) => {
                    gathered()?.reshape(((), kernel * kernel, batch))?.mean(1)?
                }
                (Op::Add { .. }, None) => (&a + &input(node.inputs[1]))?,
                (Op::Relu | Op::Flatten, None) => a,
                _ => candle_core::bail!("layer '{}': parameters do not match its op", node.name),
            };
            outs.push(if node.op.relu() { y.relu()? } else { y });
        }
        let logits = outs.pop().expect("Net::init rejects an empty graph");
        logits.t()?.contiguous()
    }

    pub(crate) fn to_model(&self) -> Result<FloatModel> {
        let mut params = Vec::with_capacity(self.params.len());
        for p in &self.params {
            params.push(match p {
                None => None,
                Some((w, b)) => {
                    let (out, k) = w.dims2().map_err(candle_err)?;
                    let w = w.flatten_all().and_then(|t| t.to_vec1::<f32>());
                    let b = b.flatten_all().and_then(|t| t.to_vec1::<f32>());
                    Some(FloatParams {
                        weight: Array2::from_shape_vec((out, k), w.map_err(candle_err)?)
                            .map_err(|e| ModelError::Train(e.to_string()))?,
                        bias: Array1::from(b.map_err(candle_err)?),
                    })
                }
            });
        }
        let model = FloatModel {
            graph: self.graph.clone(),
            params,
        };
        model.validate()?;
        Ok(model)
    }
}

/// The images of `set` as `pixel / max_value` f32, concatenated CHW, and the labels as u32.
pub(crate) fn as_f32(set: &Dataset) -> (Vec<f32>, Vec<u32>) {
    let scale = 1.0 / f32::from(set.max_value.max(1));
    let x = set.pixels.iter().map(|&p| f32::from(p) * scale).collect();
    let y = set.labels.iter().map(|&l| u32::from(l)).collect();
    (x, y)
}

/// The images `idx` of `x` (concatenated CHW) as a batch-last `[C*H*W, batch]` tensor.
pub(crate) fn batch_tensor(
    x: &[f32],
    shape: [usize; 3],
    idx: &[usize],
) -> candle_core::Result<Tensor> {
    let n: usize = shape.iter().product();
    let b = idx.len();
    let mut v = vec![0.0f32; n * b];
    for (col, &i) in idx.iter().enumerate() {
        for (row, &p) in x[i * n..(i + 1) * n].iter().enumerate() {
            v[row * b + col] = p;
        }
    }
    Tensor::from_vec(v, (n, b), &Device::Cpu)
}

pub(crate) fn check_inputs(
    set: &Dataset,
    batch_size: usize,
    lr: f64,
    weight_decay: f64,
) -> Result<()> {
    if set.is_empty() {
        return Err(ModelError::arg("train_set", "is empty"));
    }
    let n: usize = set.shape.iter().product();
    if set.pixels.len() != set.len() * n {
        return Err(ModelError::Shape {
            context: format!("dataset '{}' pixels", set.name),
            expected: format!(
                "{} ({} images of {:?})",
                set.len() * n,
                set.len(),
                set.shape
            ),
            found: set.pixels.len().to_string(),
        });
    }
    if let Some(&l) = set.labels.iter().find(|&&l| usize::from(l) >= set.classes) {
        return Err(ModelError::arg(
            "train_set",
            format!("label {l} is not below its {} classes", set.classes),
        ));
    }
    if batch_size == 0 {
        return Err(ModelError::arg("batch_size", "must be at least 1"));
    }
    if !(lr.is_finite() && lr > 0.0) {
        return Err(ModelError::arg(
            "lr",
            format!("{lr} must be finite and > 0"),
        ));
    }
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        return Err(ModelError::arg(
            "weight_decay",
            format!("{weight_decay} must be finite and >= 0"),
        ));
    }
    Ok(())
}

/// Trains `cfg.arch` on `train_set` with AdamW and cross-entropy. Reproducible: the seed fixes
/// the initial weights and every epoch's shuffle, so the same seed on the same machine gives
/// identical weights.
pub fn train(
    train_set: &Dataset,
    cfg: &TrainConfig,
    progress: bool,
) -> Result<(FloatModel, TrainReport)> {
    let (net, report) = fit(train_set, cfg, progress)?;
    Ok((net.to_model()?, report))
}

fn fit(train_set: &Dataset, cfg: &TrainConfig, progress: bool) -> Result<(Net, TrainReport)> {
    check_inputs(train_set, cfg.batch_size, cfg.lr, cfg.weight_decay)?;
    if cfg.arch == Arch::AutoEncoder {
        return Err(ModelError::arg(
            "arch",
            "the autoencoder reconstructs its input; training here fits classifiers to labels \
             (use `caq init` for seeded weights of its shape)",
        ));
    }
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let graph = graph_for(cfg.arch, train_set.shape, train_set.classes);
    let net = Net::init(graph, &mut rng)?;
    let schedule = Schedule {
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        prefix: format!("{:?}", cfg.arch),
    };
    let (xs, ys) = as_f32(train_set);
    let final_loss = run_epochs(
        net.vars(),
        train_set,
        &xs,
        &ys,
        &schedule,
        &mut rng,
        progress,
        |x, y| {
            let loss = candle_nn::loss::cross_entropy(&net.forward(x)?, y)?;
            Ok((loss, Vec::new()))
        },
    )?
    .0;
    let train_accuracy = candle_accuracy(&net, &xs, &ys, train_set.shape)?;
    let report = TrainReport {
        epochs: cfg.epochs,
        final_loss,
        train_accuracy,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((net, report))
}

/// The optimisation settings `run_epochs` needs.
pub(crate) struct Schedule {
    pub(crate) epochs: usize,
    pub(crate) batch_size: usize,
    pub(crate) lr: f64,
    pub(crate) weight_decay: f64,
    pub(crate) prefix: String,
}

/// The training loop shared by `train` and `finetune`: AdamW over `vars` (a network's variables,
/// all or some) on a per-step cosine schedule, one shuffle of `rng` per epoch. `step_loss` gives
/// a batch's loss and any parts it wants averaged (e.g. one loss per nesting level). Returns the
/// last epoch's mean loss and mean parts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_epochs(
    vars: Vec<Var>,
    set: &Dataset,
    xs: &[f32],
    ys: &[u32],
    s: &Schedule,
    rng: &mut ChaCha8Rng,
    progress: bool,
    mut step_loss: impl FnMut(&Tensor, &Tensor) -> candle_core::Result<(Tensor, Vec<f32>)>,
) -> Result<(f32, Vec<f32>)> {
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: s.lr,
            weight_decay: s.weight_decay,
            ..ParamsAdamW::default()
        },
    )
    .map_err(candle_err)?;
    let n = set.len();
    let steps_per_epoch = n.div_ceil(s.batch_size);
    let total_steps = (s.epochs * steps_per_epoch).max(1);
    let bar = if progress {
        let style = ProgressStyle::with_template(
            "{prefix} epoch {pos}/{len} {wide_bar} {elapsed}/{duration} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::new(s.epochs as u64)
            .with_style(style)
            .with_prefix(s.prefix.clone())
    } else {
        ProgressBar::hidden()
    };

    let mut order: Vec<usize> = (0..n).collect();
    let mut final_loss = f32::NAN;
    let mut final_parts = Vec::new();
    let mut step = 0usize;
    for _ in 0..s.epochs {
        order.shuffle(rng);
        let mut loss_sum = 0.0f64;
        let mut part_sums: Vec<f64> = Vec::new();
        for idx in order.chunks(s.batch_size) {
            let progress = step as f64 / total_steps as f64;
            opt.set_learning_rate(s.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
            let (loss, parts) = (|| {
                let x = batch_tensor(xs, set.shape, idx)?;
                let labels: Vec<u32> = idx.iter().map(|&i| ys[i]).collect();
                let y = Tensor::from_vec(labels, idx.len(), &Device::Cpu)?;
                let (loss, parts) = step_loss(&x, &y)?;
                opt.backward_step(&loss)?;
                Ok::<_, candle_core::Error>((loss.to_scalar::<f32>()?, parts))
            })()
            .map_err(candle_err)?;
            if !loss.is_finite() {
                return Err(ModelError::Train(format!(
                    "loss became {loss} at step {step}; lower lr ({})",
                    s.lr
                )));
            }
            loss_sum += f64::from(loss) * idx.len() as f64;
            part_sums.resize(parts.len(), 0.0);
            for (sum, p) in part_sums.iter_mut().zip(&parts) {
                *sum += f64::from(*p) * idx.len() as f64;
            }
            step += 1;
        }
        final_loss = (loss_sum / n as f64) as f32;
        final_parts = part_sums.iter().map(|p| (p / n as f64) as f32).collect();
        bar.set_message(format!("loss {final_loss:.4}"));
        bar.inc(1);
    }
    bar.finish();
    Ok((final_loss, final_parts))
}

pub(crate) fn candle_accuracy(net: &Net, xs: &[f32], ys: &[u32], shape: [usize; 3]) -> Result<f32> {
    const EVAL_BATCH: usize = 500;
    let all: Vec<usize> = (0..ys.len()).collect();
    let mut correct = 0usize;
    for idx in all.chunks(EVAL_BATCH) {
        let pred = batch_tensor(xs, shape, idx)
            .and_then(|x| net.forward(&x))
            .and_then(|l| l.argmax(1))
            .and_then(|p| p.to_dtype(DType::U32))
            .and_then(|p| p.to_vec1::<u32>())
            .map_err(candle_err)?;
        correct += idx.iter().zip(&pred).filter(|&(&i, &p)| ys[i] == p).count();
    }
    Ok(correct as f32 / ys.len().max(1) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;
    use ndarray::Array3;
    use rand::Rng;

    fn logits_agree(net: &Net, model: &FloatModel, images: &[Array3<f32>]) -> f32 {
        let shape = model.graph.input_shape;
        let flat: Vec<f32> = images.iter().flat_map(|x| x.iter().copied()).collect();
        let idx: Vec<usize> = (0..images.len()).collect();
        let candle = batch_tensor(&flat, shape, &idx)
            .and_then(|x| net.forward(&x))
            .and_then(|l| l.to_vec2::<f32>())
            .unwrap();
        let mut worst = 0.0f32;
        for (x, c) in images.iter().zip(&candle) {
            let r = model.forward(x.view());
            assert_eq!(r.len(), c.len());
            for (a, b) in r.iter().zip(c) {
                worst = worst.max((a - b).abs());
            }
        }
        worst
    }

    #[test]
    fn reference_graphs_validate_with_expected_shapes() {
        let mlp = graph_for(Arch::Mlp, [1, 8, 8], 10);
        assert_eq!(
            mlp.shapes().unwrap(),
            vec![[64, 1, 1], [128, 1, 1], [64, 1, 1], [10, 1, 1]]
        );
        let lenet = graph_for(Arch::LeNet, [1, 28, 28], 10);
        assert_eq!(
            lenet.shapes().unwrap(),
            vec![
                [16, 24, 24],
                [16, 12, 12],
                [32, 8, 8],
                [32, 4, 4],
                [512, 1, 1],
                [64, 1, 1],
                [10, 1, 1]
            ]
        );
        let params: usize = lenet
            .nodes
            .iter()
            .filter_map(|n| n.op.weight_matrix_dims())
            .map(|(o, k, _)| o * k + o)
            .sum();
        assert_eq!(params, 46_730);
        assert!(graph_for(Arch::LeNet, [1, 8, 8], 10).shapes().is_err());
    }

    #[test]
    fn lenet_candle_forward_matches_caq_reference_forward() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net = Net::init(graph_for(Arch::LeNet, [1, 28, 28], 10), &mut rng).unwrap();
        let images: Vec<Array3<f32>> = (0..4)
            .map(|_| Array3::from_shape_fn((1, 28, 28), |_| rng.random_range(0.0f32..1.0)))
            .collect();
        let model = net.to_model().unwrap();
        let diff = logits_agree(&net, &model, &images);
        assert!(diff < 1e-4, "max |logit diff| {diff}");
    }

    #[test]
    fn lenet_after_a_tiny_epoch_still_matches_the_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let noise = Dataset {
            name: "noise".into(),
            shape: [1, 28, 28],
            pixels: (0..48 * 784).map(|_| rng.random()).collect(),
            labels: (0..48).map(|_| rng.random_range(0..10)).collect(),
            max_value: 255,
            classes: 10,
        };
        let cfg = TrainConfig {
            epochs: 1,
            batch_size: 16,
            ..TrainConfig::default_for(Arch::LeNet)
        };
        let (net, _) = fit(&noise, &cfg, false).unwrap();
        let images: Vec<Array3<f32>> = (0..4).map(|i| noise.image_f32(i * 11)).collect();
        let diff = logits_agree(&net, &net.to_model().unwrap(), &images);
        assert!(diff < 1e-4, "max |logit diff| {diff}");
    }

    #[test]
    fn digits_mlp_learns_and_its_export_matches_candle() {
        let d = data::digits().unwrap();
        let (train_set, test) = d.stratified_split(360, 0).unwrap();
        let cfg = TrainConfig {
            epochs: 8,
            ..TrainConfig::default_for(Arch::Mlp)
        };
        let (net, report) = fit(&train_set, &cfg, false).unwrap();
        assert_eq!(report.epochs, 8);
        assert!(
            report.final_loss.is_finite() && report.train_accuracy > 0.9,
            "{report:?}"
        );
        let model = net.to_model().unwrap();
        let acc = crate::qmodel::float_accuracy(&model, &test).unwrap() as f32 / 100.0;
        assert!(acc > 0.9, "held-out accuracy {acc}");
        let images: Vec<Array3<f32>> = (0..8).map(|i| test.image_f32(i * 40)).collect();
        let diff = logits_agree(&net, &model, &images);
        assert!(diff < 1e-4, "max |logit diff| {diff}");
    }

    #[test]
    fn same_seed_gives_identical_weights_and_other_seeds_differ() {
        let d = data::digits()
            .unwrap()
            .subset(&(0..300).collect::<Vec<_>>());
        let cfg = TrainConfig {
            epochs: 2,
            ..TrainConfig::default_for(Arch::Mlp)
        };
        let (a, ra) = train(&d, &cfg, false).unwrap();
        let (b, rb) = train(&d, &cfg, false).unwrap();
        assert_eq!(a, b);
        assert_eq!(ra.final_loss, rb.final_loss);
        let (c, _) = train(&d, &TrainConfig { seed: 1, ..cfg }, false).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn bad_configs_and_data_are_errors() {
        let d = data::digits().unwrap().subset(&[0, 1, 2]);
        let cfg = TrainConfig::default_for(Arch::Mlp);
        let bad = |c: TrainConfig| train(&d, &c, false).unwrap_err().to_string();
        assert!(
            bad(TrainConfig {
                batch_size: 0,
                ..cfg.clone()
            })
            .contains("batch_size")
        );
        assert!(
            bad(TrainConfig {
                lr: f64::NAN,
                ..cfg.clone()
            })
            .contains("lr")
        );
        assert!(train(&d.subset(&[]), &cfg, false).is_err());
        assert!(
            bad(TrainConfig {
                arch: Arch::LeNet,
                ..cfg.clone()
            })
            .contains("conv")
        );
        let mut wrong = d.clone();
        wrong.labels[0] = 10;
        assert!(train(&wrong, &cfg, false).is_err());
        let (model, _) = train(&d, &TrainConfig { epochs: 1, ..cfg }, false).unwrap();
        let mnist_shaped = Dataset {
            shape: [1, 28, 28],
            pixels: vec![0; 784],
            labels: vec![0],
            ..d
        };
        assert!(crate::qmodel::float_accuracy(&model, &mnist_shaped).is_err());
    }
}
