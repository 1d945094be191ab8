//! The evaluation suite: its rows, the exact equality of nested full-bit and uniform INT8, and the
//! storage arithmetic.

mod common;
use caq_model::report::{self, SuiteOptions};
use common::{tiny_data, tiny_model};

#[test]
fn suite_rows_and_storage_are_consistent() {
    let model = tiny_model(11);
    let (calib, test) = (tiny_data(40, 1), tiny_data(30, 2));
    let opts = SuiteOptions {
        calib_images: 40,
        ..SuiteOptions::default()
    };
    let r = report::run_suite(&model, &calib, &test, &opts, |_| {}).unwrap();
    // f32, then per rounding: INT8, (8⊃b full + part, INTb) for 4 b's, and the 3-level chain.
    assert_eq!(r.accuracy.len(), 1 + 2 * (1 + 4 * 3 + 3));
    assert_eq!(r.accuracy[0].agreement_pct, 100.0);
    assert_eq!(r.accuracy[0].logit_rmse, 0.0);
    for rounding in &opts.roundings {
        let rows: Vec<_> = r
            .accuracy
            .iter()
            .filter(|x| x.rounding == Some(*rounding))
            .collect();
        let int8 = rows
            .iter()
            .find(|x| x.scheme == "uniform" && x.bits == 8)
            .unwrap();
        // Same scale, same rounding: the full-bit level of every nested model is INT8 exactly.
        for full in rows.iter().filter(|x| x.scheme == "nested" && !x.part_bit) {
            assert_eq!(full.bits, 8);
            assert_eq!(
                (full.accuracy_pct, full.logit_rmse),
                (int8.accuracy_pct, int8.logit_rmse),
                "{:?}",
                full.levels
            );
        }
        assert!(
            rows.iter()
                .all(|x| x.logit_rmse.is_finite() && x.logit_rmse >= 0.0)
        );
    }
    // Weights: conv 3x9 + dense 5x48 = 267. Chain 8⊃6⊃4 stores 4 + 3 + 3 bits per weight.
    let bytes = |what: &str| {
        r.storage
            .iter()
            .find(|s| s.what.starts_with(what))
            .unwrap_or_else(|| panic!("no storage row '{what}'"))
            .bytes
    };
    assert_eq!(bytes("f32 weights"), 4 * 267);
    assert_eq!(bytes("INT8 weights"), 267);
    let per_group = |o: usize, k: usize| (o * k * 4).div_ceil(8) + 2 * (o * k * 3).div_ceil(8);
    assert_eq!(
        bytes("nested 8⊃6⊃4 bundle planes (payload)"),
        per_group(3, 9) + per_group(5, 48)
    );
    assert_eq!(bytes("separate INT8+INT6+INT4"), 267 + 201 + 134);
}
