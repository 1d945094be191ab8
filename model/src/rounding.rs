//! SQuant-style data-free adaptive rounding (Guo et al., ICLR 2022, as used by NestQuant; see
//! research notes §A1). Owns one decision: for each value given in quantization units, which of its
//! two integer neighbours becomes the code. Knows nothing of scales, bit-widths or layers beyond the
//! `[lo, hi]` clamp it is handed.
//!
//! The pass starts from round-to-nearest (half away from zero) and then flips elements to their
//! other neighbour so that accumulated rounding errors stay small:
//!
//! 1. **Kernel pass.** For every kernel (`kernel_len` consecutive elements of a row: the kh·kw
//!    spatial kernel of one (out, in) pair of a conv, a single element for a dense layer) with
//!    accumulated error `e = Σ (q − x)` and `|e| > 0.5`, the `round(|e|)` elements whose error has
//!    the sign of `e` and the largest magnitude are flipped. Afterwards `|e| ≤ 0.5`.
//! 2. **Channel pass.** If the row's accumulated error `e_c` has `|e_c| > 0.5`, `round(|e_c|)`
//!    kernels each flip one element, so that afterwards `|e_c| ≤ 0.5`. Only kernels whose own error
//!    has the sign of `e_c` (or is zero) take part, and in each the element whose error has that
//!    sign and the largest magnitude is the candidate; kernels are taken in decreasing order of their
//!    candidate's error. One flip moves a kernel's error by 1 across zero, so every kernel ends
//!    within ±1 (SQuant's bound after its channel stage). The candidate may be an element the kernel
//!    pass flipped the other way; flipping it back returns it to round-to-nearest. SQuant does the same.
//!    Because of this, the channel pass is never short of candidates unless values are clamped.
//!
//! Every result is `floor(x)` or `ceil(x)` (after clamping), so it stays within 1 of `x`. Ties go
//! to the lower index, so the pass is deterministic.

use crate::error::{ModelError, Result};
use ndarray::{Array2, ArrayView2};

/// Adaptive rounding of `x` (`[out, K]`, in quantization units `w / scale`) to integer codes in
/// `[lo, hi]`. Each code is `floor(x)` or `ceil(x)`, clamped. `kernel_len` must divide K.
pub fn adaptive_round(
    x: ArrayView2<f32>,
    kernel_len: usize,
    lo: i32,
    hi: i32,
) -> Result<Array2<i32>> {
    if lo > hi {
        return Err(ModelError::arg(
            "lo/hi",
            format!("code range [{lo}, {hi}] is empty"),
        ));
    }
    // `as i32` saturates; a non-finite x is rejected by `adaptive_round_between`.
    let down = x.mapv(|v| (v.floor() as i32).clamp(lo, hi));
    let up = x.mapv(|v| (v.ceil() as i32).clamp(lo, hi));
    adaptive_round_between(x, down.view(), up.view(), kernel_len)
}

/// The same pass with the two candidates of each element given, `down ≤ up ≤ down + 1`.
/// Nesting uses this with candidates computed exactly in integers (floor and ceil of `h / 2^l`,
/// clamped to the lower level's range). `down == up` pins an element.
pub fn adaptive_round_between(
    x: ArrayView2<f32>,
    down: ArrayView2<i32>,
    up: ArrayView2<i32>,
    kernel_len: usize,
) -> Result<Array2<i32>> {
    let (rows, cols) = x.dim();
    for (name, dim) in [("down", down.dim()), ("up", up.dim())] {
        if dim != x.dim() {
            return Err(ModelError::Shape {
                context: format!("adaptive rounding candidates '{name}'"),
                expected: format!("{:?}", x.dim()),
                found: format!("{dim:?}"),
            });
        }
    }
    check_kernel_len(cols, kernel_len)?;
    let mut out = Array2::zeros((rows, cols));
    let mut cells = Vec::with_capacity(cols);
    for r in 0..rows {
        cells.clear();
        for c in 0..cols {
            let (v, d, u) = (x[[r, c]], down[[r, c]], up[[r, c]]);
            if !v.is_finite() {
                return Err(ModelError::arg(
                    "x",
                    format!("value at (row {r}, col {c}) is {v}; values must be finite"),
                ));
            }
            if u < d || i64::from(u) - i64::from(d) > 1 {
                return Err(ModelError::arg(
                    "down/up",
                    format!(
                        "candidates at (row {r}, col {c}) are {d} and {u}; need down ≤ up ≤ down + 1"
                    ),
                ));
            }
            cells.push(Cell::nearest(f64::from(v), d, u));
        }
        kernel_pass(&mut cells, kernel_len);
        channel_pass(&mut cells, kernel_len);
        for (c, cell) in cells.iter().enumerate() {
            out[[r, c]] = cell.q;
        }
    }
    Ok(out)
}

/// `kernel_len` must be at least 1 and divide the reduction length K.
pub(crate) fn check_kernel_len(k: usize, kernel_len: usize) -> Result<()> {
    if kernel_len == 0 || !k.is_multiple_of(kernel_len) {
        return Err(ModelError::arg(
            "kernel_len",
            format!("kernel_len {kernel_len} must be at least 1 and divide K = {k}"),
        ));
    }
    Ok(())
}

/// One element: its value, its two candidates and the current choice.
#[derive(Clone, Copy, Debug)]
struct Cell {
    x: f64,
    down: i32,
    up: i32,
    q: i32,
}

impl Cell {
    /// Round to the nearer candidate; a tie goes away from zero.
    fn nearest(x: f64, down: i32, up: i32) -> Self {
        let to_down = (x - f64::from(down)).abs();
        let to_up = (f64::from(up) - x).abs();
        let q = if to_down < to_up {
            down
        } else if to_up < to_down || x >= 0.0 {
            up
        } else {
            down
        };
        Cell { x, down, up, q }
    }

    fn err(&self) -> f64 {
        f64::from(self.q) - self.x
    }

    /// Whether flipping moves this element's error by `−sign` and so reduces an accumulated
    /// error of sign `sign`.
    fn can_flip(&self, sign: f64) -> bool {
        let on_side = if sign > 0.0 {
            self.q == self.up
        } else {
            self.q == self.down
        };
        self.down < self.up && on_side && self.err() * sign > 0.0
    }

    fn flip(&mut self) {
        self.q = if self.q == self.up {
            self.down
        } else {
            self.up
        };
    }
}

/// The number of unit flips that bring an accumulated error `e` within ±0.5 (0 if it already is).
fn flips_needed(e: f64) -> usize {
    if e.abs() > 0.5 {
        e.abs().round() as usize
    } else {
        0
    }
}

fn kernel_pass(cells: &mut [Cell], kernel_len: usize) {
    for kernel in cells.chunks_mut(kernel_len) {
        let e: f64 = kernel.iter().map(Cell::err).sum();
        let n = flips_needed(e);
        if n == 0 {
            continue;
        }
        let sign = e.signum();
        let mut cand: Vec<usize> = (0..kernel.len())
            .filter(|&i| kernel[i].can_flip(sign))
            .collect();
        // Stable sort: equal errors keep index order.
        cand.sort_by(|&a, &b| kernel[b].err().abs().total_cmp(&kernel[a].err().abs()));
        for &i in cand.iter().take(n) {
            kernel[i].flip();
        }
    }
}

fn channel_pass(cells: &mut [Cell], kernel_len: usize) {
    let e: f64 = cells.iter().map(Cell::err).sum();
    let n = flips_needed(e);
    if n == 0 {
        return;
    }
    let sign = e.signum();
    // (element index, |error|) of each eligible kernel's best candidate.
    let mut cand: Vec<(usize, f64)> = Vec::new();
    for (ki, kernel) in cells.chunks(kernel_len).enumerate() {
        let ek: f64 = kernel.iter().map(Cell::err).sum();
        if ek * sign < 0.0 {
            continue;
        }
        let best = kernel
            .iter()
            .enumerate()
            .filter(|(_, c)| c.can_flip(sign))
            .max_by(|(ia, a), (ib, b)| a.err().abs().total_cmp(&b.err().abs()).then(ib.cmp(ia)));
        if let Some((i, c)) = best {
            cand.push((ki * kernel_len + i, c.err().abs()));
        }
    }
    cand.sort_by(|a, b| b.1.total_cmp(&a.1));
    for &(i, _) in cand.iter().take(n) {
        cells[i].flip();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use proptest::prelude::*;

    const EPS: f64 = 1e-6;

    fn errors(x: &Array2<f32>, q: &Array2<i32>) -> Array2<f64> {
        Array2::from_shape_fn(x.dim(), |i| f64::from(q[i]) - f64::from(x[i]))
    }

    fn rtn(x: &Array2<f32>) -> Array2<i32> {
        x.mapv(|v| v.round() as i32)
    }

    /// Matrices of `rows × (kernels · kernel_len)` values in [-20, 20].
    fn matrix() -> impl Strategy<Value = (Array2<f32>, usize)> {
        (1usize..4, 1usize..8, 1usize..10).prop_flat_map(|(rows, kernels, kl)| {
            proptest::collection::vec(-20.0f32..20.0, rows * kernels * kl).prop_map(move |v| {
                (
                    Array2::from_shape_vec((rows, kernels * kl), v).expect("shape matches"),
                    kl,
                )
            })
        })
    }

    proptest! {
        #[test]
        fn kernel_pass_brings_every_kernel_within_half((x, kl) in matrix()) {
            for row in x.rows() {
                let mut cells: Vec<Cell> = row
                    .iter()
                    .map(|&v| Cell::nearest(f64::from(v), v.floor() as i32, v.ceil() as i32))
                    .collect();
                kernel_pass(&mut cells, kl);
                for kernel in cells.chunks(kl) {
                    let e: f64 = kernel.iter().map(Cell::err).sum();
                    prop_assert!(e.abs() <= 0.5 + EPS, "kernel error {e}");
                }
            }
        }

        #[test]
        fn channels_end_within_half_and_kernels_within_one((x, kl) in matrix()) {
            let q = adaptive_round(x.view(), kl, -1000, 1000).unwrap();
            let err = errors(&x, &q);
            for (r, row) in err.rows().into_iter().enumerate() {
                let ec: f64 = row.sum();
                prop_assert!(ec.abs() <= 0.5 + EPS, "row {r}: channel error {ec}");
                for kernel in row.as_slice().unwrap().chunks(kl) {
                    let ek: f64 = kernel.iter().sum();
                    prop_assert!(ek.abs() <= 1.0 + EPS, "row {r}: kernel error {ek}");
                }
            }
            for (i, &v) in x.indexed_iter() {
                prop_assert!(q[i] == v.floor() as i32 || q[i] == v.ceil() as i32, "{v} -> {}", q[i]);
            }
        }

        #[test]
        fn balanced_rtn_is_left_unchanged(
            (ints, kl) in matrix(),
            noise in proptest::collection::vec(-1.0f32..1.0, 1..64),
        ) {
            // Integers plus errors below 0.5 / K: every kernel and channel sum is within ±0.5.
            let cols = ints.ncols();
            let x = Array2::from_shape_fn(ints.dim(), |(r, c)| {
                ints[[r, c]].round() + noise[(r * cols + c) % noise.len()] * 0.49 / cols as f32
            });
            let q = adaptive_round(x.view(), kl, -1000, 1000).unwrap();
            prop_assert_eq!(q, rtn(&x));
        }

        #[test]
        fn clamped_codes_stay_in_range((x, kl) in matrix(), lo in -8i32..0, width in 0i32..8) {
            let hi = lo + width;
            let q = adaptive_round(x.view(), kl, lo, hi).unwrap();
            for (i, &v) in x.indexed_iter() {
                let d = (v.floor() as i32).clamp(lo, hi);
                let u = (v.ceil() as i32).clamp(lo, hi);
                prop_assert!(q[i] == d || q[i] == u, "{v} -> {} outside {{{d}, {u}}}", q[i]);
            }
        }

        #[test]
        fn rounding_is_deterministic((x, kl) in matrix()) {
            let a = adaptive_round(x.view(), kl, -1000, 1000).unwrap();
            let b = adaptive_round(x.view(), kl, -1000, 1000).unwrap();
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn kernel_flips_the_largest_error_first() {
        // RTN gives [0, 0, 1] with errors [-0.4, -0.45, 0.3]; kernel error -0.55 → one flip up,
        // of the element with the largest negative error (index 1).
        let x = Array2::from_shape_vec((1, 3), vec![0.4, 0.45, 0.7]).unwrap();
        let q = adaptive_round(x.view(), 3, -8, 7).unwrap();
        assert_eq!(q.row(0).to_vec(), vec![0, 1, 1]);
    }

    #[test]
    fn equal_errors_flip_the_lowest_index() {
        let x = Array2::from_shape_vec((1, 3), vec![0.4, 0.4, 0.4]).unwrap();
        let q = adaptive_round(x.view(), 3, -8, 7).unwrap();
        assert_eq!(q.row(0).to_vec(), vec![1, 0, 0]);
    }

    #[test]
    fn dense_channel_is_balanced_by_element_flips() {
        // kernel_len 1: the kernel pass does nothing, the channel pass flips one element.
        let x = Array2::from_shape_vec((1, 4), vec![0.3, 1.4, 2.35, -0.1]).unwrap();
        let q = adaptive_round(x.view(), 1, -8, 7).unwrap();
        // Errors -0.3, -0.4, -0.35, 0.1: sum -0.95 → flip 1.4 up.
        assert_eq!(q.row(0).to_vec(), vec![0, 2, 2, 0]);
    }

    #[test]
    fn pinned_candidates_are_never_flipped() {
        let x = Array2::from_shape_vec((1, 2), vec![9.4, 9.4]).unwrap();
        let q = adaptive_round(x.view(), 2, -8, 7).unwrap();
        assert_eq!(q.row(0).to_vec(), vec![7, 7]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = Array2::<f32>::zeros((2, 6));
        assert!(adaptive_round(x.view(), 0, -8, 7).is_err());
        assert!(adaptive_round(x.view(), 4, -8, 7).is_err());
        assert!(adaptive_round(x.view(), 3, 7, -8).is_err());
        let mut nan = x.clone();
        nan[[1, 2]] = f32::NAN;
        let msg = adaptive_round(nan.view(), 3, -8, 7)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("row 1, col 2"), "{msg}");
        let down = Array2::<i32>::zeros((2, 6));
        let wide = Array2::<i32>::from_elem((2, 6), 2);
        assert!(adaptive_round_between(x.view(), down.view(), wide.view(), 3).is_err());
        let small = Array2::<i32>::zeros((2, 5));
        assert!(adaptive_round_between(x.view(), down.view(), small.view(), 3).is_err());
    }
}
