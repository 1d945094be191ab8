//! What `caq gate --adaptive` and `caq demo` share about input-adaptive gating: building every
//! class's cascade and gate network on training images, and the held-out table that sets them
//! beside the static gates and uniform precision (docs/gates.md). Running a bundle's policies
//! (`caq run --adaptive`, every build) is adaptive_run.rs.

use super::adapt::selection_images;
use super::adaptive_run::{bits_label, histogram_text};
use super::table;
use anyhow::{Context as _, Result};
use caq_cpu::CpuAdaptive;
use caq_driver::energy::model::EnergyModel;
use caq_host::adaptive::cascade::{self, CascadeChoice, Prices};
use caq_host::adaptive::network::{self, NetworkChoice};
use caq_host::adaptive::{PassPricer, Scored};
use caq_host::gates::{GateBuild, Limits};
use caq_model::adaptive::{Adaptive, AdaptiveKind, AdaptivePolicy, Pass};
use caq_model::data::Dataset;
use caq_model::graph::FloatModel;
use caq_model::qmodel::{self, QModel};
use caq_model::report;
use caq_spec::{AccelConfig, DeviceAddr, PerfCounters};
use serde::Serialize;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// Candidate settings kept from the energy/sensitivity front.
const FRONT: usize = 24;

/// A class's static gate on the calibration images.
#[derive(Clone, Debug, Serialize)]
pub struct StaticFigures {
    pub bits: Vec<u8>,
    pub agreement_pct: f64,
    pub energy_j: f64,
    pub cycles: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassBuild {
    pub class: String,
    /// The average-energy limit: the class's budget, and never more than its static gate.
    pub energy_limit_j: f64,
    pub limits: Limits,
    pub static_gate: StaticFigures,
    pub cascade: Option<CascadeChoice>,
    pub network: Option<NetworkChoice>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdaptiveBuild {
    /// Training images the policies were calibrated and trained on.
    pub images: usize,
    pub candidates: Vec<Vec<u8>>,
    pub classes: Vec<ClassBuild>,
    pub seed: u64,
    /// What the calibration images' outputs were scored against.
    pub reference: Reference,
    /// Whether the calibration images were validation images the backbone was not trained on
    /// (`caq gate --val-images`), rather than any of the training split.
    pub validation: bool,
}

/// What a calibration image's output is scored against.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    /// The float model's top-1 (label-free).
    Float,
    /// The dataset's labels.
    Labels,
}

impl Reference {
    /// The build table's column head for agreement with it.
    fn column(self) -> &'static str {
        match self {
            Reference::Float => "agree w/ f32 %",
            Reference::Labels => "top-1 vs labels %",
        }
    }

    /// How the report names it.
    fn describe(self) -> &'static str {
        match self {
            Reference::Float => "top-1 agreement with the float model (label-free)",
            Reference::Labels => "top-1 accuracy against the labels",
        }
    }

    /// Each image's reference class.
    fn classes(self, float: &FloatModel, images: &Dataset) -> Result<Vec<usize>> {
        Ok(match self {
            Reference::Float => report::float_logits(float, images)?
                .iter()
                .map(|l| qmodel::argmax(l))
                .collect(),
            Reference::Labels => images.labels.iter().map(|&l| l as usize).collect(),
        })
    }
}

/// Where the pricer compiles the model: any 4 KiB-aligned base gives the same DMA bursts.
const PRICE_BASE: DeviceAddr = DeviceAddr(0);

/// Builds a cascade and a gate network for every class with an energy budget whose static gate
/// fits it, on up to `images` training images, and stores them in `q`.
/// How `caq gate --adaptive` builds the policies.
pub struct BuildOptions {
    /// Training images the policies are calibrated and trained on (at most).
    pub images: usize,
    /// Seed of the gate networks' training.
    pub seed: u64,
    /// What calibration outputs are scored against.
    pub reference: Reference,
    /// Whether `train` holds validation images the backbone was not trained on.
    pub validation: bool,
    /// Every how many rows of a feature-map cell the gate networks' features read (`None`:
    /// `network::sampling`'s default).
    pub row_step: Option<usize>,
    /// The policies' mean energy is at most this fraction of the static gate's (and within the
    /// class's budget): 1 for the most accuracy at no more energy, 0.8 for the issue's other
    /// route (the same accuracy at 20 % less).
    pub energy_fraction: f64,
}

pub fn build_adaptive(
    q: &mut QModel,
    float: &FloatModel,
    train: &Dataset,
    cfg: &AccelConfig,
    em: &EnergyModel,
    gates: &GateBuild,
    opts: &BuildOptions,
) -> Result<AdaptiveBuild> {
    let (images, seed) = (opts.images, opts.seed);
    let sel = selection_images(train, images);
    eprintln!(
        "  adaptive: {:?} reference on {} {} images",
        opts.reference,
        sel.len(),
        if opts.validation {
            "validation"
        } else {
            "training"
        }
    );
    let reference = opts.reference.classes(float, &sel)?;
    let mut pricer = PassPricer::new(q, cfg, PRICE_BASE)?;
    let energy = |p: &PerfCounters| em.estimate(cfg, p).dynamic_j;
    let layout = caq_model::adaptive::Layout::of(q)?;
    let mut extra: Vec<Vec<u8>> = gates.gates.iter().map(|g| g.bits.clone()).collect();
    extra.extend(q.levels().iter().map(|&b| q.uniform_bits(b)));
    let cands = caq_host::adaptive::candidates(
        &mut pricer,
        &gates.sensitivity,
        &layout.levels,
        &energy,
        FRONT,
        &extra,
    )?;
    eprintln!(
        "  adaptive: {} candidate settings on {} images (CPU backend)",
        cands.len(),
        sel.len()
    );
    let scored = Scored::new(q, cands, &sel, &reference)?;
    let full = pricer.pass(
        &layout.levels.iter().map(|l| l[0]).collect::<Vec<_>>(),
        caq_driver::compile::PassStart::Input,
        None,
    )?;
    let costs = &gates.costs;
    let resident = |bits: &[u8]| -> caq_driver::Result<u64> {
        Ok(costs.cost(bits, &|_: &PerfCounters| 0.0)?.resident_bytes)
    };
    let sampling = network::sampling(layout.gate_shape, opts.row_step)?;
    let mut features: HashMap<u8, Vec<Vec<i64>>> = HashMap::new();
    let mut classes = Vec::new();
    let mut policies = Vec::new();
    for g in &gates.gates {
        let Some(fraction) = g.budget.energy_fraction else {
            continue;
        };
        if !g.within_budget {
            continue;
        }
        let k_static = scored
            .index(&g.bits)
            .context("static gates are candidates")?;
        let static_perf = pricer.pass(&g.bits, caq_driver::compile::PassStart::Input, None)?;
        let static_e = energy(&static_perf);
        let limit = (fraction * energy(&full)).min(opts.energy_fraction * static_e);
        let limits = Limits {
            energy_j: Some(limit),
            ..g.limits
        };
        eprintln!("  adaptive: class '{}': cascade", g.name);
        let mut prices = Prices {
            pricer: &mut pricer,
            energy: &energy,
            resident: &resident,
        };
        let casc = cascade::calibrate(&scored, &mut prices, &limits)?;
        eprintln!("  adaptive: class '{}': gate network", g.name);
        // One network per first-layer level (the codebook shares it); the best on the training
        // images wins (ties: less energy).
        let mut prefixes: Vec<u8> = scored.settings.iter().map(|s| s[0]).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        let mut net: Option<NetworkChoice> = None;
        for prefix in prefixes {
            let candidates: Vec<usize> = (0..scored.settings.len())
                .filter(|&k| scored.settings[k][0] == prefix)
                .collect();
            let cheapest = candidates
                .iter()
                .map(|&k| {
                    let mut p = prices
                        .pricer
                        .model_pass(&scored.settings[k], Pass::FirstLayer)?;
                    p.add(
                        &prices
                            .pricer
                            .model_pass(&scored.settings[k], Pass::AfterFirst)?,
                    );
                    Ok(energy(&p))
                })
                .collect::<caq_driver::Result<Vec<f64>>>()?
                .into_iter()
                .fold(f64::INFINITY, f64::min);
            if cheapest > limit {
                continue;
            }
            let feats = match features.entry(prefix) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => v.insert(network::image_features(q, prefix, &sel, sampling)?),
            };
            let problem = network::Problem {
                q,
                scored: &scored,
                features: feats,
                sampling,
                candidates,
                keep: (prefix == g.bits[0]).then_some(k_static),
                seed,
            };
            if let Some(c) = network::train_gate(&problem, &mut prices, &limits)?
                && net.as_ref().is_none_or(|b| {
                    c.agreement_pct > b.agreement_pct
                        || (c.agreement_pct == b.agreement_pct && c.energy_j < b.energy_j)
                })
            {
                net = Some(c);
            }
        }
        policies.push(AdaptivePolicy {
            class: g.name.clone(),
            cascade: casc.as_ref().map(|c| c.cascade.clone()),
            network: net.as_ref().map(|n| n.network.clone().into()),
        });
        classes.push(ClassBuild {
            class: g.name.clone(),
            energy_limit_j: limit,
            limits,
            static_gate: StaticFigures {
                bits: g.bits.clone(),
                agreement_pct: scored.agreement_pct(k_static),
                energy_j: static_e,
                cycles: static_perf.cycles,
            },
            cascade: casc,
            network: net,
        });
    }
    q.set_adaptive(policies)?;
    Ok(AdaptiveBuild {
        images: sel.len(),
        candidates: scored.settings.clone(),
        classes,
        seed,
        reference: opts.reference,
        validation: opts.validation,
    })
}

/// One policy on the held-out set.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyRow {
    pub class: String,
    /// `static`, `cascade`, `network`, or `uniform`.
    pub kind: String,
    pub accuracy_pct: f64,
    /// Mean per inference, from the predicted counters of the passes each input took (what the
    /// functional device reports, pass for pass).
    pub energy_dynamic_uj: f64,
    pub energy_total_uj: f64,
    pub cycles: f64,
    pub latency_us: f64,
    /// Passes per inference.
    pub passes: f64,
    /// How many images ended at each setting.
    pub histogram: Vec<(String, usize)>,
    /// Whether each image's top-1 was right (for the paired comparison with the static gate).
    #[serde(skip)]
    pub hits: Vec<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdaptiveTable {
    pub config: String,
    pub test_images: usize,
    pub rows: Vec<PolicyRow>,
}

/// What a policy did over a set of images: the sums a [`PolicyRow`] is the mean of.
struct Tally {
    images: usize,
    hits: Vec<bool>,
    perf: PerfCounters,
    passes: usize,
    histogram: Vec<(String, usize)>,
}

impl Tally {
    fn row(self, class: &str, kind: &str, cfg: &AccelConfig, em: &EnergyModel) -> PolicyRow {
        let e = em.estimate(cfg, &self.perf);
        let nf = self.images.max(1) as f64;
        let correct = self.hits.iter().filter(|&&h| h).count();
        PolicyRow {
            class: class.into(),
            kind: kind.into(),
            accuracy_pct: 100.0 * correct as f64 / nf,
            energy_dynamic_uj: e.dynamic_j / nf * 1e6,
            energy_total_uj: e.total_j / nf * 1e6,
            cycles: self.perf.cycles as f64 / nf,
            latency_us: self.perf.cycles as f64 / nf / cfg.clock_mhz,
            passes: self.passes as f64 / nf,
            histogram: self.histogram,
            hits: self.hits,
        }
    }
}

impl AdaptiveTable {
    /// Every class's static gate, cascade and gate network (and every uniform precision) on
    /// `test`, outcomes from the CPU backend, costs from the pass pricer.
    pub fn new(q: &QModel, test: &Dataset, cfg: &AccelConfig, em: &EnergyModel) -> Result<Self> {
        let mut pricer = PassPricer::new(q, cfg, PRICE_BASE)?;
        let n = test.len();
        let mut rows = Vec::new();
        let fixed =
            |pricer: &mut PassPricer, class: &str, kind: &str, bits: &[u8]| -> Result<PolicyRow> {
                let hits = setting_hits(q, bits, test)?;
                let mut perf = PerfCounters::default();
                let one = pricer.pass(bits, caq_driver::compile::PassStart::Input, None)?;
                for _ in 0..n {
                    perf.add(&one);
                }
                let tally = Tally {
                    images: n,
                    hits,
                    perf,
                    passes: n,
                    histogram: vec![(bits_label(bits), n)],
                };
                Ok(tally.row(class, kind, cfg, em))
            };
        for &b in q.levels() {
            rows.push(fixed(
                &mut pricer,
                &format!("{b}-bit"),
                "uniform",
                &q.uniform_bits(b),
            )?);
        }
        for p in &q.adaptive {
            let gate = q.gate(&p.class)?;
            rows.push(fixed(&mut pricer, &p.class, "static", &gate.bits)?);
            for kind in [AdaptiveKind::Cascade, AdaptiveKind::Network] {
                let Ok(policy) = p.get(kind) else { continue };
                rows.push(adaptive_tally(q, policy, &mut pricer, test)?.row(
                    &p.class,
                    kind.name(),
                    cfg,
                    em,
                ));
            }
        }
        Ok(AdaptiveTable {
            config: cfg.name.clone(),
            test_images: n,
            rows,
        })
    }

    pub fn print(&self) {
        println!(
            "\nInput-adaptive gating on {} held-out images (config {}; energy from the model over \
             the counters of the passes each input took, re-runs included):",
            self.test_images, self.config
        );
        table::print(&TABLE_COLUMNS, &self.text_rows(2));
    }

    /// The rows under [`TABLE_COLUMNS`], latencies with `latency_digits` decimals (the terminal
    /// shows two, the report one).
    fn text_rows(&self, latency_digits: usize) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| {
                vec![
                    r.class.clone(),
                    r.kind.clone(),
                    format!("{:.2}", r.accuracy_pct),
                    format!("{:.3}", r.energy_dynamic_uj),
                    format!("{:.3}", r.energy_total_uj),
                    format!("{:.0}", r.cycles),
                    format!("{:.*}", latency_digits, r.latency_us),
                    format!("{:.2}", r.passes),
                    histogram_text(&r.histogram),
                ]
            })
            .collect()
    }
}

/// The columns of [`AdaptiveTable`]'s rows, on the terminal and in the report.
const TABLE_COLUMNS: [&str; 9] = [
    "class",
    "policy",
    "top-1 %",
    "dynamic µJ",
    "total µJ",
    "cycles",
    "latency µs",
    "passes",
    "final setting: images",
];

/// Whether `bits` gets each image of `test` right (CPU backend, bit-exact with the golden
/// model): the scoring of the candidate settings, against the labels.
fn setting_hits(q: &QModel, bits: &[u8], test: &Dataset) -> Result<Vec<bool>> {
    let labels: Vec<usize> = test.labels.iter().map(|&l| l as usize).collect();
    let mut scored = Scored::new(q, vec![bits.to_vec()], test, &labels)?;
    Ok(scored.agree.swap_remove(0))
}

/// `policy` on every image of `test` (CPU backend), each input's passes priced.
fn adaptive_tally(
    q: &QModel,
    policy: Adaptive<'_>,
    pricer: &mut PassPricer,
    test: &Dataset,
) -> Result<Tally> {
    let cpu = CpuAdaptive::new(q, policy)?;
    let outcomes = qmodel::par_map(test.len(), |i| cpu.infer(test.image(i)));
    let settings = policy.settings();
    let mut hist = vec![0usize; settings.len()];
    let mut passes = 0usize;
    let mut hits = Vec::with_capacity(test.len());
    let mut perf = PerfCounters::default();
    for (i, o) in outcomes.into_iter().enumerate() {
        let o = o?;
        hits.push(qmodel::argmax(&o.output) == test.labels[i] as usize);
        hist[o.choice] += 1;
        passes += o.passes.len();
        perf.add(&pricer.outcome(policy, &o.passes)?);
    }
    let histogram = settings
        .iter()
        .zip(hist)
        .map(|(s, c)| (bits_label(s), c))
        .collect();
    Ok(Tally {
        images: test.len(),
        hits,
        perf,
        passes,
        histogram,
    })
}

/// The rows of the build table (the static gate, then each class's cascade and gate network) under
/// [`BUILD_COLUMNS`]; `markdown` picks the report's wording.
fn build_rows(b: &AdaptiveBuild, markdown: bool) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for c in &b.classes {
        let limit = format!("{:.3}", c.energy_limit_j * 1e6);
        rows.push(vec![
            c.class.clone(),
            "static".into(),
            bits_label(&c.static_gate.bits),
            format!("{:.2}", c.static_gate.agreement_pct),
            format!("{:.3}", c.static_gate.energy_j * 1e6),
            limit.clone(),
        ]);
        if let Some(k) = &c.cascade {
            let when = if markdown {
                "final if margin"
            } else {
                "margin"
            };
            rows.push(vec![
                c.class.clone(),
                "cascade".into(),
                k.cascade
                    .stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| match k.cascade.thresholds.get(i) {
                        Some(t) => format!("{} ({when} ≥ {t})", bits_label(s)),
                        None => bits_label(s),
                    })
                    .collect::<Vec<_>>()
                    .join(" → "),
                format!("{:.2}", k.agreement_pct),
                format!("{:.3}", k.energy_j * 1e6),
                limit.clone(),
            ]);
        }
        if let Some(nw) = &c.network {
            let book = nw.network.codebook.iter().map(|s| bits_label(s));
            let settings = if markdown {
                format!(
                    "{} hidden, codebook {}; λ {:.3}; {} integer ops per choice",
                    nw.network.hidden,
                    book.collect::<Vec<_>>().join(", "),
                    nw.lambda,
                    nw.ops
                )
            } else {
                format!(
                    "{} entries [{}], λ {:.3}, {} ops, int = float on {:.1} %",
                    nw.network.codebook.len(),
                    book.collect::<Vec<_>>().join(" "),
                    nw.lambda,
                    nw.ops,
                    nw.integer_match_pct
                )
            };
            rows.push(vec![
                c.class.clone(),
                "network".into(),
                settings,
                format!("{:.2}", nw.agreement_pct),
                format!("{:.3}", nw.energy_j * 1e6),
                limit,
            ]);
        }
    }
    rows
}

/// The columns of the build table; the fourth is agreement with `b.reference`.
fn build_columns(b: &AdaptiveBuild) -> [&'static str; 6] {
    [
        "class",
        "policy",
        "settings",
        b.reference.column(),
        "dynamic µJ",
        "limit µJ",
    ]
}

impl AdaptiveBuild {
    /// Which images the policies were calibrated on, as the tables name them.
    fn images_text(&self) -> &'static str {
        if self.validation {
            "validation"
        } else {
            "training"
        }
    }
}

/// Prints what the build found on the training images.
pub fn print_build(b: &AdaptiveBuild) {
    println!(
        "\nInput-adaptive policies, calibrated on {} {} images ({} candidate settings, \
         gate seed {}):",
        b.images,
        b.images_text(),
        b.candidates.len(),
        b.seed
    );
    let rows = build_rows(b, false);
    table::print(&build_columns(b), &rows);
}

/// One adaptive policy against its class's static gate on the held-out images: the issue's
/// target is ≥ 0.5 points above the static gate at no more average energy, or the same accuracy
/// at ≥ 20 % less average energy.
#[derive(Clone, Debug, Serialize)]
pub struct TargetRow {
    pub class: String,
    pub kind: String,
    pub points_above_static: f64,
    /// Standard error of `points_above_static`, paired image by image
    /// ([`caq_host::adaptive::paired_points_se`]).
    pub points_se: f64,
    /// Mean dynamic energy against the static gate's, % (negative: less).
    pub energy_vs_static_pct: f64,
    pub latency_vs_static_pct: f64,
    pub met: bool,
}

impl AdaptiveTable {
    /// Every adaptive policy against its class's static gate.
    pub fn targets(&self) -> Vec<TargetRow> {
        let mut out = Vec::new();
        for s in self.rows.iter().filter(|r| r.kind == "static") {
            for r in self
                .rows
                .iter()
                .filter(|r| r.class == s.class && (r.kind == "cascade" || r.kind == "network"))
            {
                let points = r.accuracy_pct - s.accuracy_pct;
                let de = 100.0 * (r.energy_dynamic_uj / s.energy_dynamic_uj - 1.0);
                out.push(TargetRow {
                    class: r.class.clone(),
                    kind: r.kind.clone(),
                    points_above_static: points,
                    points_se: caq_host::adaptive::paired_points_se(&r.hits, &s.hits),
                    energy_vs_static_pct: de,
                    latency_vs_static_pct: 100.0 * (r.latency_us / s.latency_us - 1.0),
                    // A hair of float noise on "no more energy" is not a miss.
                    met: (points >= 0.5 - 1e-9 && de <= 1e-9) || (points >= -1e-9 && de <= -20.0),
                });
            }
        }
        out
    }
}

/// What the Markdown report of `caq gate --adaptive --markdown` says about its run.
pub struct ReportSetup<'a> {
    pub command: String,
    pub model: &'a std::path::Path,
    pub dataset: &'a str,
    pub train_images: usize,
    pub test_images: usize,
    pub split_seed: u64,
    pub plot: Option<&'a std::path::Path>,
}

fn md_table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        head.iter().map(|_| " --- ").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

/// The Markdown report: setup, held-out table, the policies as built, the issue's target.
pub fn markdown(s: &ReportSetup<'_>, b: &AdaptiveBuild, t: &AdaptiveTable) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Input-adaptive gating: {} on {}\n\n<!-- Written by `caq gate --adaptive --markdown`; \
         do not edit by hand. -->\n\nGenerated by:\n\n```sh\n{}\n```\n",
        s.model.display(),
        s.dataset,
        s.command
    );
    let _ = writeln!(
        o,
        "Data: {} training / {} held-out images (stratified split, seed {}). The cascade \
         thresholds and the gate networks were chosen on {} **training** images only{}; every \
         figure below is on the held-out images, which chose nothing. Accelerator config `{}`. \
         Energy is the **energy model** (docs/energy.md) over the counters of the passes each \
         input took — a cascade's re-runs and the gate network's two passes included — not a \
         measurement; latency is device cycles at the config's clock. The functional device \
         reports exactly these counters pass for pass (`host/tests/adaptive.rs`).\n",
        s.train_images,
        s.test_images,
        s.split_seed,
        b.images,
        if b.validation {
            " (validation images carved from the training split, which the backbone was not \
             trained on: `caq gate --val-images`)"
        } else {
            ""
        },
        t.config
    );
    if let Some(p) = s.plot {
        let name = p.file_name().map_or(p.display().to_string(), |n| {
            n.to_string_lossy().into_owned()
        });
        let _ = writeln!(
            o,
            "![top-1 against energy and latency per inference]({name})\n"
        );
    }
    let _ = writeln!(
        o,
        "## Held-out accuracy, energy and latency per inference\n"
    );
    md_table(&mut o, &TABLE_COLUMNS, &t.text_rows(1));
    let _ = writeln!(
        o,
        "## Against the issue's target\n\nAt each class's budget: ≥ 0.5 points above the static \
         gate at no more average energy, or the same accuracy at ≥ 20 % less average energy \
         (dynamic energy, the part the precision changes; held-out images). The ± is the \
         standard error of the difference in points, paired image by image: only the images on \
         which the policy and the static gate disagree count, and a difference within about \
         two of them is what another sample of images could undo.\n"
    );
    let rows: Vec<Vec<String>> = t
        .targets()
        .iter()
        .map(|r| {
            vec![
                r.class.clone(),
                r.kind.clone(),
                format!("{:+.2} ± {:.2}", r.points_above_static, r.points_se),
                format!("{:+.1} %", r.energy_vs_static_pct),
                format!("{:+.1} %", r.latency_vs_static_pct),
                if r.met { "yes".into() } else { "**no**".into() },
            ]
        })
        .collect();
    md_table(
        &mut o,
        &[
            "class",
            "policy",
            "points vs static (± s.e.)",
            "energy vs static",
            "latency vs static",
            "met",
        ],
        &rows,
    );
    let _ = writeln!(
        o,
        "## The policies as built ({} images)\n\n{} candidate settings; gate-network \
         seed {}. Agreement is {}, energy the mean dynamic energy per inference; the limit is \
         the class's budget, never above its static gate.\n",
        b.images_text(),
        b.candidates.len(),
        b.seed,
        b.reference.describe()
    );
    let rows = build_rows(b, true);
    md_table(&mut o, &build_columns(b), &rows);
    o
}
