//! The evaluation suite behind `caq eval`: one float model quantized every way the issue asks
//! for (uniform INT-b, nested 8⊃b full-bit and part-bit, a multi-level chain, round-to-nearest and
//! adaptive rounding), scored on a held-out set, plus the exact storage of each variant. Produces
//! data (serializable); printing is the CLI's job.

use crate::data::Dataset;
use crate::error::Result;
use crate::graph::FloatModel;
use crate::planes;
use crate::qmodel::{self, QModel, QuantizeConfig};
use crate::quant::{Calibration, Rounding};
use serde::{Deserialize, Serialize};

/// What the suite sweeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SuiteOptions {
    /// The part-bit widths b of the nested pairs 8⊃b and of the uniform baselines.
    pub part_bits: Vec<u8>,
    /// A multi-level chain evaluated at every level, e.g. [8, 6, 4].
    pub chain: Vec<u8>,
    pub roundings: Vec<Rounding>,
    pub group_size: Option<usize>,
    pub clip_search: bool,
    pub nest_clip: bool,
    pub act_bits: u8,
    pub calibration: Calibration,
    pub calib_images: usize,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            part_bits: vec![6, 4, 3, 2],
            chain: vec![8, 6, 4],
            roundings: vec![Rounding::Nearest, Rounding::Adaptive],
            group_size: None,
            clip_search: true,
            nest_clip: false,
            act_bits: 8,
            calibration: Calibration::Percentile { pct: 99.99 },
            calib_images: 512,
        }
    }
}

/// One measured accuracy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccuracyRow {
    /// "f32", "uniform" or "nested".
    pub scheme: String,
    pub rounding: Option<Rounding>,
    /// The quantized model's levels ([] for f32).
    pub levels: Vec<u8>,
    /// The bit-width every layer ran at (32 for f32).
    pub bits: u8,
    /// True when a nested model ran below its full bit-width.
    pub part_bit: bool,
    pub accuracy_pct: f64,
    /// Share of test images whose top-1 class equals the f32 model's.
    pub agreement_pct: f64,
    /// Root-mean-square difference of the dequantized logits from the f32 logits: a finer
    /// measure than top-1 on small test sets, where one image moves accuracy by 1/N.
    pub logit_rmse: f64,
}

impl AccuracyRow {
    pub fn label(&self) -> String {
        let lv = |l: &[u8]| {
            l.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join("⊃")
        };
        match self.scheme.as_str() {
            "f32" => "f32".into(),
            "uniform" => format!("INT{} uniform PTQ", self.bits),
            _ => format!(
                "nested {} @{}-bit ({})",
                lv(&self.levels),
                self.bits,
                if self.part_bit {
                    "part-bit"
                } else {
                    "full-bit"
                }
            ),
        }
    }
}

/// Exact weight storage of the model's weight layers, in bytes (payload bits / 8, unpadded;
/// the packed tensors also add row padding, reported as `nested_stored_bytes`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StorageRow {
    pub what: String,
    pub bytes: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SuiteReport {
    pub dataset: String,
    pub test_images: usize,
    pub options: SuiteOptions,
    pub accuracy: Vec<AccuracyRow>,
    pub storage: Vec<StorageRow>,
}

/// Weight elements of every weight layer (the storage tables count weights; bias and requant
/// constants are the same 9 bytes per output channel in every integer variant and are listed
/// separately).
pub fn weight_counts(model: &FloatModel) -> (usize, usize) {
    let mut weights = 0;
    let mut channels = 0;
    for p in model.params.iter().flatten() {
        weights += p.weight.len();
        channels += p.bias.len();
    }
    (weights, channels)
}

/// Payload bytes of a quantized model's plane groups (exact bits / 8, rounded up per group) and
/// the stored bytes with the 64-bit row padding of the packed layout.
pub fn plane_bytes(q: &QModel) -> Result<(usize, usize)> {
    let mut payload = 0;
    let mut stored = 0;
    for l in q.layers.iter().flatten() {
        for g in &l.weights.groups {
            let p = planes::pack(g.codes.view(), g.bits)?;
            payload += p.payload_bits().div_ceil(8);
            stored += p.stored_bytes();
        }
    }
    Ok((payload, stored))
}

/// The f32 logits of every test image.
pub fn float_logits(float: &FloatModel, test: &Dataset) -> Result<Vec<Vec<f32>>> {
    qmodel::float_accuracy(float, test)?; // validates model and data shapes
    Ok(qmodel::par_map(test.len(), |i| {
        float.forward(test.image_f32(i).view()).to_vec()
    }))
}

/// Accuracy, agreement with the f32 top-1, and logit RMSE of an integer model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    pub accuracy_pct: f64,
    pub agreement_pct: f64,
    pub logit_rmse: f64,
}

pub fn score(q: &QModel, bits: &[u8], test: &Dataset, reference: &[Vec<f32>]) -> Result<Scores> {
    let ex = q.executor(bits)?;
    let out = *q.acts.last().expect("non-empty graph");
    let per_image = qmodel::par_map(test.len(), |i| {
        ex.logits(test.image(i)).map(|l| {
            let top = qmodel::argmax(&l);
            let se: f64 = l
                .iter()
                .zip(&reference[i])
                .map(|(&c, &f)| (out.dequantize(c) as f64 - f as f64).powi(2))
                .sum();
            (
                top == test.labels[i] as usize,
                top == qmodel::argmax(&reference[i]),
                se,
                l.len(),
            )
        })
    });
    let (mut hit, mut agree, mut se, mut n) = (0usize, 0usize, 0f64, 0usize);
    for r in per_image {
        let (h, a, e, len) = r?;
        hit += h as usize;
        agree += a as usize;
        se += e;
        n += len;
    }
    let images = test.len().max(1) as f64;
    Ok(Scores {
        accuracy_pct: 100.0 * hit as f64 / images,
        agreement_pct: 100.0 * agree as f64 / images,
        logit_rmse: (se / n.max(1) as f64).sqrt(),
    })
}

/// Runs the whole suite. `calib` is the calibration set (from the training split), `test` the
/// held-out set.
pub fn run_suite(
    float: &FloatModel,
    calib: &Dataset,
    test: &Dataset,
    opts: &SuiteOptions,
    mut progress: impl FnMut(&str),
) -> Result<SuiteReport> {
    let cfg = |levels: &[u8], rounding: Rounding| QuantizeConfig {
        levels: levels.to_vec(),
        rounding,
        group_size: opts.group_size,
        clip_search: opts.clip_search,
        nest_clip: opts.nest_clip && levels.len() > 1,
        act_bits: opts.act_bits,
        calibration: opts.calibration,
        calib_images: opts.calib_images,
    };
    let reference = float_logits(float, test)?;
    let mut rows = vec![AccuracyRow {
        scheme: "f32".into(),
        rounding: None,
        levels: vec![],
        bits: 32,
        part_bit: false,
        accuracy_pct: qmodel::float_accuracy(float, test)?,
        agreement_pct: 100.0,
        logit_rmse: 0.0,
    }];
    let acts = qmodel::calibrate_activations(float, calib, &cfg(&[8], Rounding::Nearest))?;
    let mut storage_nested = None;
    for &r in &opts.roundings {
        let mut eval = |levels: &[u8], rows: &mut Vec<AccuracyRow>| -> Result<QModel> {
            progress(&format!("levels {levels:?}, rounding {r:?}"));
            let q = qmodel::quantize_with(float, &acts, &cfg(levels, r))?;
            for &b in levels {
                let s = score(&q, &q.uniform_bits(b), test, &reference)?;
                rows.push(AccuracyRow {
                    scheme: if levels.len() == 1 {
                        "uniform"
                    } else {
                        "nested"
                    }
                    .into(),
                    rounding: Some(r),
                    levels: levels.to_vec(),
                    bits: b,
                    part_bit: b != levels[0],
                    accuracy_pct: s.accuracy_pct,
                    agreement_pct: s.agreement_pct,
                    logit_rmse: s.logit_rmse,
                });
            }
            Ok(q)
        };
        eval(&[8], &mut rows)?;
        for &b in &opts.part_bits {
            eval(&[8, b], &mut rows)?;
            eval(&[b], &mut rows)?;
        }
        if opts.chain.len() > 1 {
            let q = eval(&opts.chain, &mut rows)?;
            storage_nested = Some(q);
        }
    }
    let (weights, channels) = weight_counts(float);
    let mut storage = vec![
        StorageRow {
            what: "f32 weights".into(),
            bytes: 4 * weights,
        },
        StorageRow {
            what: "INT8 weights".into(),
            bytes: weights,
        },
    ];
    if let Some(q) = storage_nested {
        let chain = &opts.chain;
        let (payload, stored) = plane_bytes(&q)?;
        let name = chain
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join("⊃");
        storage.push(StorageRow {
            what: format!("nested {name} bundle planes (payload)"),
            bytes: payload,
        });
        storage.push(StorageRow {
            what: format!("nested {name} bundle planes (stored, rows padded to 64 bits)"),
            bytes: stored,
        });
        let separate: usize = chain
            .iter()
            .map(|&b| (weights * b as usize).div_ceil(8))
            .sum();
        storage.push(StorageRow {
            what: format!(
                "separate {} models",
                chain
                    .iter()
                    .map(|b| format!("INT{b}"))
                    .collect::<Vec<_>>()
                    .join("+")
            ),
            bytes: separate,
        });
        let part = q.levels().last().copied().unwrap_or(8);
        storage.push(StorageRow {
            what: format!("nested {name}: resident at the lowest level (high part only)"),
            bytes: (weights * part as usize).div_ceil(8),
        });
    }
    storage.push(StorageRow {
        what:
            "per-channel constants of any integer variant (bias i32 + requant i32+u8 + scale f32)"
                .into(),
        bytes: channels * 13,
    });
    Ok(SuiteReport {
        dataset: test.name.clone(),
        test_images: test.len(),
        options: opts.clone(),
        accuracy: rows,
        storage,
    })
}
