//! The operators without weights on a batch of CHW code tensors (image-major): pools, residual
//! add, ReLU, global average pooling. Each follows the rule of its golden kernel in `caq_model::kernels` exactly (the
//! table in docs/numerics.md, "Other operators").

use caq_model::graph::Shape3;
use caq_model::kernels::window_mean;
use caq_model::requant::{AddRequant, OutRange};

/// Max or average pooling (`k×k` window, `stride`, no padding) of `n` images of shape `s`.
pub(crate) fn pool(x: &[i32], s: Shape3, k: usize, stride: usize, avg: bool) -> Vec<i32> {
    let [c, h, w] = s;
    let (oh, ow) = ((h - k) / stride + 1, (w - k) / stride + 1);
    let area = (k * k) as i64;
    let mut y = Vec::with_capacity(x.len() / (h * w) * oh * ow);
    for plane in x.chunks_exact(h * w).take(x.len() / (h * w).max(1)) {
        for oy in 0..oh {
            for ox in 0..ow {
                let rows = plane[oy * stride * w..].chunks(w).take(k);
                let window = rows.flat_map(|r| &r[ox * stride..ox * stride + k]);
                y.push(if avg {
                    window_mean(window.map(|&v| i64::from(v)).sum(), area)
                } else {
                    window.copied().max().unwrap_or(0)
                });
            }
        }
    }
    debug_assert_eq!(y.len(), x.len() / (c * h * w).max(1) * c * oh * ow);
    y
}

/// Global average pooling of `n` images of shape `s`: each channel's map averaged
/// (`kernels::global_avg_pool`).
pub(crate) fn global_avg_pool(x: &[i32], s: Shape3) -> Vec<i32> {
    let area = s[1] * s[2];
    x.chunks_exact(area.max(1))
        .map(|plane| window_mean(plane.iter().map(|&v| i64::from(v)).sum(), area as i64))
        .collect()
}

/// Residual add with one shared shift, then ReLU and saturation.
pub(crate) fn add(a: &[i32], b: &[i32], rq: &AddRequant, out: OutRange) -> Vec<i32> {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| out.finish(rq.apply(a, b)))
        .collect()
}

pub(crate) fn relu(x: &[i32]) -> Vec<i32> {
    x.iter().map(|&v| v.max(0)).collect()
}
