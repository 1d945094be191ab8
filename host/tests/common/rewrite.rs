//! Rewriting a model file's manifest, for the host tests of bad and old files (kept apart from
//! `common`, which the C bindings' tests include too).
#![allow(dead_code)]

/// Writes `src`'s tensors to `dst` under its manifest as `edit` leaves it (a valid header
/// checksum over an edited document).
pub fn rewrite_doc(
    src: &std::path::Path,
    dst: &std::path::Path,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    rewrite_parts(src, dst, edit, |_| {});
}

/// [`rewrite_doc`], with `edit_tensors` applied to the tensors too (fresh checksums over both).
pub fn rewrite_parts(
    src: &std::path::Path,
    dst: &std::path::Path,
    edit_doc: impl FnOnce(&mut serde_json::Value),
    edit_tensors: impl FnOnce(&mut Vec<caq_model::store::OutTensor>),
) {
    use caq_model::store::{self, TensorFile};
    let f = TensorFile::open(src).unwrap();
    let mut doc = f.doc().clone();
    let mut tensors = f.out_tensors().unwrap();
    edit_doc(&mut doc);
    edit_tensors(&mut tensors);
    store::write_atomic(dst, &doc, &tensors).unwrap();
}
