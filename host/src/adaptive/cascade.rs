//! Confidence cascades, calibrated on training images: the stages and thresholds that agree most
//! with the float model while the *average* energy per inference (re-runs included) stays within
//! a limit, the worst case (every stage run) within a latency limit, and the plane groups of all
//! stages within a resident limit.
//!
//! Search: for every pair of candidate settings (s0, s1) with s0 within the limits, the images
//! are ordered by their stage-0 margin; escalating the m least confident costs
//! `c0 + m/N · r01` on average (`r01` the re-run of s1 from its first changed layer), so for each
//! m whose threshold separates them the agreement is a prefix sum, and the best m within the
//! budget is found in one scan. A third stage is then tried the same way on the images the best
//! pair escalates, with the budget left. Exact over the candidates for two stages; greedy for the
//! third. "Within the limit" is with a confidence margin ([`super::mean_within`]): the mean
//! energy plus 1.645 standard errors of it, so that the average holds on inputs the calibration
//! did not see, not just on the calibration images.

use super::{PassPricer, Scored};
use crate::gates::Limits;
use caq_driver::Result;
use caq_model::adaptive::{self, Cascade};
use caq_spec::PerfCounters;
use serde::Serialize;

/// A cascade and what it did on the calibration images.
#[derive(Clone, Debug, Serialize)]
pub struct CascadeChoice {
    pub cascade: Cascade,
    /// Agreement with the float model's top-1 on the calibration images, %.
    pub agreement_pct: f64,
    /// Mean predicted dynamic energy per inference, J (re-runs included).
    pub energy_j: f64,
    /// Mean predicted cycles per inference.
    pub cycles: f64,
    /// Cycles when every stage runs.
    pub worst_cycles: u64,
    /// How many calibration images each stage's output was final for.
    pub histogram: Vec<usize>,
}

/// How a calibration prices settings.
pub struct Prices<'a> {
    pub pricer: &'a mut PassPricer,
    /// Counters to dynamic energy, J.
    pub energy: &'a dyn Fn(&PerfCounters) -> f64,
    /// Plane-group bytes resident for a setting.
    pub resident: &'a dyn Fn(&[u8]) -> Result<u64>,
}

/// Per-layer maximum of several settings: what keeps all of them resident.
pub fn union(settings: &[&[u8]]) -> Vec<u8> {
    let mut u = settings[0].to_vec();
    for s in &settings[1..] {
        for (a, &b) in u.iter_mut().zip(s.iter()) {
            *a = (*a).max(b);
        }
    }
    u
}

struct Stage {
    k: usize,
    full: PerfCounters,
}

/// The best cascade over `scored`'s settings within `limits` (energy on average with the
/// confidence margin of [`super::mean_within`], cycles in the worst case, resident bytes for all
/// stages at once), or `None` when no setting fits.
pub fn calibrate(
    scored: &Scored,
    prices: &mut Prices<'_>,
    limits: &Limits,
) -> Result<Option<CascadeChoice>> {
    let n = scored.images();
    if n == 0 {
        return Ok(None);
    }
    let ks = scored.settings.len();
    let mut stages = Vec::with_capacity(ks);
    for (k, s) in scored.settings.iter().enumerate() {
        stages.push(Stage {
            k,
            full: prices.pricer.model_pass(s, adaptive::Pass::Full)?,
        });
    }
    let fits_static = |perf: &PerfCounters, bits: &[&[u8]], p: &mut Prices<'_>| -> Result<bool> {
        Ok(limits.cycles.is_none_or(|c| perf.cycles <= c)
            && match limits.resident_bytes {
                None => true,
                Some(r) => (p.resident)(&union(bits))? <= r,
            })
    };
    let budget = limits.energy_j.unwrap_or(f64::INFINITY) * (1.0 + 1e-12);
    // Best so far: (agreement count, energy sum, cascade).
    let mut best: Option<(usize, f64, Cascade, Vec<usize>)> = None;
    let mut consider = |agree: usize, energy: f64, c: Cascade, escalated: Vec<usize>| {
        let better = match &best {
            None => true,
            Some((a, e, ..)) => agree > *a || (agree == *a && energy < *e),
        };
        if better {
            best = Some((agree, energy, c, escalated));
        }
    };
    for s0 in &stages {
        let b0 = &scored.settings[s0.k];
        let e0 = (prices.energy)(&s0.full);
        if e0 > budget || !fits_static(&s0.full, &[b0], prices)? {
            continue;
        }
        let a0: usize = scored.agree[s0.k].iter().filter(|&&a| a).count();
        consider(a0, e0 * n as f64, single(b0), Vec::new());
        let order = scored.order_by_margin(s0.k);
        for s1 in &stages {
            let b1 = &scored.settings[s1.k];
            if b1 == b0 {
                continue;
            }
            let from = adaptive::first_change(b0, b1);
            let rerun = prices.pricer.model_pass(b1, adaptive::Pass::From(from))?;
            let mut worst = s0.full;
            worst.add(&rerun);
            if !fits_static(&worst, &[b0, b1], prices)? {
                continue;
            }
            let er = (prices.energy)(&rerun);
            // Escalating the m least confident: the largest m within budget.
            let m_max = if er <= 0.0 {
                n
            } else {
                (((budget - e0) * n as f64 / er).floor().max(0.0) as usize).min(n)
            };
            let margins = &scored.margin[s0.k];
            // Per-image energy: e0, or e0 + er for the m escalated.
            let within = |m: usize| {
                let (mf, nf) = (m as f64, n as f64);
                super::mean_within(
                    nf * e0 + mf * er,
                    (nf - mf) * e0 * e0 + mf * (e0 + er) * (e0 + er),
                    n,
                    budget,
                )
            };
            let (mut gain, mut best_m, mut best_gain) = (0i64, 0usize, 0i64);
            for m in 1..=m_max {
                let i = order[m - 1];
                gain += i64::from(scored.agree[s1.k][i]) - i64::from(scored.agree[s0.k][i]);
                // A threshold separates the first m from the rest only between two margins.
                let separable = m == n || margins[order[m]] > margins[i];
                if separable && gain > best_gain && within(m) {
                    (best_m, best_gain) = (m, gain);
                }
            }
            if best_m == 0 {
                continue;
            }
            let t = if best_m == n {
                margins[order[n - 1]] + 1
            } else {
                margins[order[best_m]]
            };
            let c = Cascade {
                stages: vec![b0.clone(), b1.clone()],
                thresholds: vec![t],
            };
            let energy = e0 * n as f64 + er * best_m as f64;
            consider(
                (a0 as i64 + best_gain) as usize,
                energy,
                c,
                order[..best_m].to_vec(),
            );
        }
    }
    let Some((mut agree, mut energy, mut cascade, escalated)) = best else {
        return Ok(None);
    };
    // A third stage for the images the pair escalates, with the budget that is left.
    if cascade.stages.len() == 2 && !escalated.is_empty() {
        let k1 = scored.index(&cascade.stages[1]).expect("a candidate");
        let b0 = cascade.stages[0].clone();
        let b1 = cascade.stages[1].clone();
        let from01 = adaptive::first_change(&b0, &b1);
        let mut worst01 = prices.pricer.model_pass(&b0, adaptive::Pass::Full)?;
        let e0 = (prices.energy)(&worst01);
        let rerun01 = prices
            .pricer
            .model_pass(&b1, adaptive::Pass::From(from01))?;
        let e1 = e0 + (prices.energy)(&rerun01);
        worst01.add(&rerun01);
        let m1 = escalated.len() as f64;
        let mut order = escalated.clone();
        let margins = &scored.margin[k1];
        order.sort_by_key(|&i| (margins[i], i));
        let mut third: Option<(usize, f64, Cascade)> = None;
        for s2 in &stages {
            let b2 = &scored.settings[s2.k];
            if *b2 == b1 || *b2 == b0 {
                continue;
            }
            let from = adaptive::first_change(&b1, b2);
            let rerun = prices.pricer.model_pass(b2, adaptive::Pass::From(from))?;
            let mut worst = worst01;
            worst.add(&rerun);
            if !fits_static(&worst, &[&b0, &b1, b2], prices)? {
                continue;
            }
            let er = (prices.energy)(&rerun);
            let room = budget * n as f64 - energy;
            let m_max = if er <= 0.0 {
                order.len()
            } else {
                ((room / er).floor().max(0.0) as usize).min(order.len())
            };
            // Per-image energy: e0, e1 for the pair's escalated, e1 + er for the m of them
            // escalated again.
            let within = |m: usize| {
                let (mf, nf) = (m as f64, n as f64);
                let e2 = e1 + er;
                super::mean_within(
                    energy + mf * er,
                    (nf - m1) * e0 * e0 + (m1 - mf) * e1 * e1 + mf * e2 * e2,
                    n,
                    budget,
                )
            };
            let (mut gain, mut best_m, mut best_gain) = (0i64, 0usize, 0i64);
            for m in 1..=m_max {
                let i = order[m - 1];
                gain += i64::from(scored.agree[s2.k][i]) - i64::from(scored.agree[k1][i]);
                let separable = m == order.len() || margins[order[m]] > margins[i];
                if separable && gain > best_gain && within(m) {
                    (best_m, best_gain) = (m, gain);
                }
            }
            if best_m == 0 {
                continue;
            }
            let t = if best_m == order.len() {
                margins[order[best_m - 1]] + 1
            } else {
                margins[order[best_m]]
            };
            let total = agree + best_gain as usize;
            let e = energy + er * best_m as f64;
            if third
                .as_ref()
                .is_none_or(|(a, en, _)| total > *a || (total == *a && e < *en))
            {
                let mut c = cascade.clone();
                c.stages.push(b2.clone());
                c.thresholds.push(t);
                third = Some((total, e, c));
            }
        }
        if let Some((a, e, c)) = third {
            (agree, energy, cascade) = (a, e, c);
        }
    }
    Ok(Some(evaluate(scored, prices, cascade, agree, energy)?))
}

fn single(bits: &[u8]) -> Cascade {
    Cascade {
        stages: vec![bits.to_vec()],
        thresholds: Vec::new(),
    }
}

/// The cascade's figures on the calibration images, walked image by image with the model's
/// rules (a check on the search's bookkeeping: the agreement and energy must match).
fn evaluate(
    scored: &Scored,
    prices: &mut Prices<'_>,
    cascade: Cascade,
    agree_expected: usize,
    energy_expected: f64,
) -> Result<CascadeChoice> {
    let n = scored.images();
    let ks: Vec<usize> = cascade
        .stages
        .iter()
        .map(|s| scored.index(s).expect("stages are candidates"))
        .collect();
    let mut histogram = vec![0; ks.len()];
    let (mut agree, mut energy, mut cycles) = (0usize, 0f64, 0f64);
    let mut worst = PerfCounters::default();
    for (j, s) in cascade.stages.iter().enumerate() {
        let pass = if j == 0 {
            adaptive::Pass::Full
        } else {
            adaptive::Pass::From(adaptive::first_change(&cascade.stages[j - 1], s))
        };
        worst.add(&prices.pricer.model_pass(s, pass)?);
    }
    for i in 0..n {
        let mut j = 0;
        let mut perf = prices
            .pricer
            .model_pass(&cascade.stages[0], adaptive::Pass::Full)?;
        while j + 1 < ks.len() && scored.margin[ks[j]][i] < cascade.thresholds[j] {
            let from = adaptive::first_change(&cascade.stages[j], &cascade.stages[j + 1]);
            perf.add(
                &prices
                    .pricer
                    .model_pass(&cascade.stages[j + 1], adaptive::Pass::From(from))?,
            );
            j += 1;
        }
        histogram[j] += 1;
        agree += usize::from(scored.agree[ks[j]][i]);
        energy += (prices.energy)(&perf);
        cycles += perf.cycles as f64;
    }
    debug_assert_eq!(agree, agree_expected);
    debug_assert!((energy - energy_expected).abs() <= 1e-9 * energy.abs().max(1e-30));
    Ok(CascadeChoice {
        cascade,
        agreement_pct: 100.0 * agree as f64 / n as f64,
        energy_j: energy / n as f64,
        cycles: cycles / n as f64,
        worst_cycles: worst.cycles,
        histogram,
    })
}
