//! Datasets: the 8×8 digits CSV the repo carries, MNIST IDX files, and deterministic stratified
//! splits. Owns file formats and the float input convention (`pixel / max_value`, CHW); knows
//! nothing of models, quantization or hardware.
//!
//! Compressed files are recognised by the gzip magic bytes (1f 8b), never by their extension, so
//! a raw file named `.gz` or a gzip file without the suffix both load.

use crate::error::{ModelError, Result};
use flate2::read::MultiGzDecoder;
use ndarray::Array3;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Images with their labels, all of one shape.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub name: String,
    /// `[channels, height, width]`: digits `[1, 8, 8]`, MNIST `[1, 28, 28]`.
    pub shape: [usize; 3],
    /// `len() * C*H*W` bytes, each image row-major CHW.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    /// The largest pixel value of the format: 16 for digits, 255 for MNIST.
    pub max_value: u8,
    pub classes: usize,
}

impl Dataset {
    /// Whether this is [`synthetic`] data, whose labels (and so accuracy) mean nothing.
    pub fn is_synthetic(&self) -> bool {
        self.name == SYNTHETIC
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The raw pixels of image `i`. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Image `i` as the float model sees it: `pixel / max_value`, shape CHW.
    /// Panics if `i >= len()`, like slice indexing.
    pub fn image_f32(&self, i: usize) -> Array3<f32> {
        let [c, h, w] = self.shape;
        let scale = 1.0 / f32::from(self.max_value.max(1));
        let v = self
            .image(i)
            .iter()
            .map(|&p| f32::from(p) * scale)
            .collect();
        Array3::from_shape_vec((c, h, w), v).expect("image length is C*H*W")
    }

    /// The images at `idx`, in that order. Panics if an index is `>= len()`.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut pixels = Vec::with_capacity(idx.len() * self.image_len());
        for &i in idx {
            pixels.extend_from_slice(self.image(i));
        }
        Dataset {
            name: self.name.clone(),
            shape: self.shape,
            pixels,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            max_value: self.max_value,
            classes: self.classes,
        }
    }

    /// How many images each class has; index = label. At least `classes` entries.
    pub fn class_counts(&self) -> Vec<usize> {
        let top = self.labels.iter().map(|&l| usize::from(l) + 1).max();
        let mut counts = vec![0; self.classes.max(top.unwrap_or(0))];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// Splits into `(train, test)` with exactly `test_count` test images. Each class gives
    /// `test_count * class_size / len` test images, rounded so that the total is exact (largest
    /// remainder first, ties to the lower label); which images is drawn by a ChaCha8 RNG seeded
    /// with `seed`. Both halves keep the original order.
    pub fn stratified_split(&self, test_count: usize, seed: u64) -> Result<(Dataset, Dataset)> {
        let (train, test) = self.split_indices(test_count, seed)?;
        Ok((self.subset(&train), self.subset(&test)))
    }

    /// The image indices of [`Dataset::stratified_split`]'s two halves, `(train, test)`, each in
    /// file order (docs/bundle.md states the rule in prose).
    pub fn split_indices(&self, test_count: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
        let n = self.len();
        if test_count == 0 || test_count >= n {
            return Err(ModelError::arg(
                "test_count",
                format!("{test_count} must be in 1..{n} for a dataset of {n} images"),
            ));
        }
        let counts = self.class_counts();
        // Integer largest-remainder apportionment: exact, and never more than a class holds
        // (test_count < n makes each exact share strictly less than the class size).
        let mut quota: Vec<usize> = counts.iter().map(|&c| test_count * c / n).collect();
        let mut order: Vec<usize> = (0..counts.len()).collect();
        order.sort_by_key(|&k| (std::cmp::Reverse(test_count * counts[k] % n), k));
        let missing = test_count - quota.iter().sum::<usize>();
        for &k in order.iter().take(missing) {
            quota[k] += 1;
        }

        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); counts.len()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[usize::from(l)].push(i);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut is_test = vec![false; n];
        for (members, &q) in by_class.iter_mut().zip(&quota) {
            members.shuffle(&mut rng);
            for &i in members.iter().take(q) {
                is_test[i] = true;
            }
        }
        let (test, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| is_test[i]);
        Ok((train, test))
    }
}

/// The scikit-learn 8×8 digits (1,797 images), carried by the repo; see `data/README.md`.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

const DIGITS_SIDE: usize = 8;
const DIGITS_MAX: u8 = 16;
const CLASSES: usize = 10;

/// The embedded digits set.
pub fn digits() -> Result<Dataset> {
    let path = Path::new("<embedded data/digits.csv.gz>");
    let text = decode_text(path, maybe_gunzip(path, DIGITS_CSV_GZ.to_vec())?)?;
    parse_digits_csv(path, &text, "digits")
}

/// A digits CSV, gzip or plain: 65 integers a row, 64 pixels 0..=16 then the label 0..=9.
pub fn load_digits_csv(path: &Path) -> Result<Dataset> {
    let text = decode_text(path, read_maybe_gz(path)?)?;
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "digits".into());
    parse_digits_csv(path, &text, &name)
}

fn parse_digits_csv(path: &Path, text: &str, name: &str) -> Result<Dataset> {
    let per_image = DIGITS_SIDE * DIGITS_SIDE;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let line_no = line_no + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != per_image + 1 {
            return Err(ModelError::format(
                path,
                format!(
                    "line {line_no}: {} fields, expected {} (64 pixels and a label)",
                    fields.len(),
                    per_image + 1
                ),
            ));
        }
        for (f, field) in fields.iter().enumerate() {
            let is_label = f == per_image;
            let max = if is_label {
                (CLASSES - 1) as u8
            } else {
                DIGITS_MAX
            };
            let what = if is_label { "label" } else { "pixel" };
            let v = field
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&v| v <= max)
                .ok_or_else(|| {
                    ModelError::format(
                        path,
                        format!(
                            "line {line_no}, field {}: {what} '{}' is not an integer 0..={max}",
                            f + 1,
                            field.trim()
                        ),
                    )
                })?;
            if is_label {
                labels.push(v);
            } else {
                pixels.push(v);
            }
        }
    }
    if labels.is_empty() {
        return Err(ModelError::format(path, "no data rows"));
    }
    Ok(Dataset {
        name: name.into(),
        shape: [1, DIGITS_SIDE, DIGITS_SIDE],
        pixels,
        labels,
        max_value: DIGITS_MAX,
        classes: CLASSES,
    })
}

/// An MNIST directory: `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte` (or the `train-`
/// pair when there is no `t10k-` one), each raw or with a `.gz` suffix.
pub fn load_mnist_dir(dir: &Path) -> Result<Dataset> {
    let find = |prefix: &str, kind: &str| -> Option<PathBuf> {
        let base = format!("{prefix}-{kind}");
        [base.clone(), format!("{base}.gz")]
            .into_iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
    };
    for prefix in ["t10k", "train"] {
        let Some(images_path) = find(prefix, "images-idx3-ubyte") else {
            continue;
        };
        let labels_path = find(prefix, "labels-idx1-ubyte").ok_or_else(|| {
            ModelError::format(
                dir,
                format!(
                    "has {} but no {prefix}-labels-idx1-ubyte[.gz]",
                    images_path.display()
                ),
            )
        })?;
        let (n, rows, cols, pixels) = load_idx_images(&images_path)?;
        let labels = load_idx_labels(&labels_path)?;
        if labels.len() != n {
            return Err(ModelError::format(
                &labels_path,
                format!(
                    "{} labels for the {n} images of {}",
                    labels.len(),
                    images_path.display()
                ),
            ));
        }
        return Ok(Dataset {
            name: format!("mnist-{prefix}"),
            shape: [1, rows, cols],
            pixels,
            labels,
            max_value: 255,
            classes: CLASSES,
        });
    }
    Err(ModelError::format(
        dir,
        "no t10k-images-idx3-ubyte[.gz] or train-images-idx3-ubyte[.gz] in this directory",
    ))
}

const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn idx_header(path: &Path, bytes: &[u8], magic: u32, dims: usize) -> Result<Vec<usize>> {
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(ModelError::format(
            path,
            format!("truncated IDX header: {} bytes, need {header}", bytes.len()),
        ));
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(ModelError::format(
            path,
            format!("bad IDX magic {found:#010x}, expected {magic:#010x}"),
        ));
    }
    let dims: Vec<usize> = (0..dims)
        .map(|d| be_u32(bytes, 4 + 4 * d) as usize)
        .collect();
    let payload = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|p| p.checked_add(header));
    match payload {
        Some(want) if want == bytes.len() => Ok(dims),
        Some(want) if want > bytes.len() => Err(ModelError::format(
            path,
            format!(
                "truncated: dims {dims:?} need {want} bytes, file has {}",
                bytes.len()
            ),
        )),
        Some(want) => Err(ModelError::format(
            path,
            format!(
                "{} trailing bytes after the {want} that dims {dims:?} describe",
                bytes.len() - want
            ),
        )),
        None => Err(ModelError::format(path, format!("dims {dims:?} overflow"))),
    }
}

/// An IDX3 image file (magic 0x00000803): `(count, rows, cols, pixels)`.
/// Every count and side must be at least 1 (a 0×0 image is nothing a model can take) and a side
/// at most the largest dimension a model may have (`validate::Limits::max_dim`).
pub fn load_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>)> {
    let bytes = read_maybe_gz(path)?;
    let dims = idx_header(path, &bytes, IDX_IMAGES_MAGIC, 3)?;
    let max_dim = crate::validate::Limits::contract().max_dim;
    if dims[0] == 0 {
        return Err(ModelError::format(path, "holds no images (count 0)"));
    }
    if dims[1..].iter().any(|&d| d == 0 || d > max_dim) {
        return Err(ModelError::format(
            path,
            format!(
                "images of {} × {}: each side must be in 1..={max_dim}",
                dims[1], dims[2]
            ),
        ));
    }
    Ok((dims[0], dims[1], dims[2], bytes[16..].to_vec()))
}

/// An IDX1 label file (magic 0x00000801); every label must be 0..=9.
pub fn load_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gz(path)?;
    idx_header(path, &bytes, IDX_LABELS_MAGIC, 1)?;
    let labels = bytes[8..].to_vec();
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= CLASSES)
    {
        return Err(ModelError::format(
            path,
            format!("label {i} is {l}, expected 0..={}", CLASSES - 1),
        ));
    }
    Ok(labels)
}

/// The name of [`synthetic`] data sets (and of the `--data` value that asks for one).
pub const SYNTHETIC: &str = "synthetic";

/// `n` seeded random images of `shape` (every pixel uniform in 0..=255, ChaCha8 seeded with
/// `seed`) with seeded random labels in `0..classes`: the inputs of a network whose data is not
/// here (CIFAR-10, Speech Commands, VWW). Its labels mean nothing, so accuracy on it does not
/// either ([`Dataset::is_synthetic`]); what it measures is latency, bytes and that every backend
/// computes the same codes.
pub fn synthetic(shape: [usize; 3], classes: usize, n: usize, seed: u64) -> Result<Dataset> {
    use rand::Rng;
    let len = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|l| l.checked_mul(n))
        .filter(|&l| l > 0 && (l as u64) <= crate::validate::Limits::for_this_machine().max_bytes)
        .ok_or_else(|| {
            ModelError::arg(
                "synthetic data",
                format!("{n} image(s) of {shape:?} is empty or too large"),
            )
        })?;
    if classes == 0 || classes > 256 {
        return Err(ModelError::arg(
            "synthetic data",
            format!("{classes} classes; expected 1..=256"),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = (0..len).map(|_| rng.random::<u8>()).collect();
    let labels = (0..n).map(|_| rng.random_range(0..classes) as u8).collect();
    Ok(Dataset {
        name: SYNTHETIC.into(),
        shape,
        pixels,
        labels,
        max_value: 255,
        classes,
    })
}

/// A dataset by name or path: `digits` (the embedded set), a directory (MNIST IDX files), or a
/// `.csv` / `.csv.gz` file (digits CSV).
pub fn load(spec: &str) -> Result<Dataset> {
    if spec == "digits" {
        return digits();
    }
    if spec == SYNTHETIC {
        return Err(ModelError::arg(
            "dataset",
            "'synthetic' takes its image shape from a model (`data::synthetic`); this use has none",
        ));
    }
    let path = Path::new(spec);
    let meta = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    if meta.is_dir() {
        return load_mnist_dir(path);
    }
    if spec.ends_with(".csv") || spec.ends_with(".csv.gz") {
        return load_digits_csv(path);
    }
    Err(ModelError::arg(
        "dataset",
        format!(
            "'{spec}' is neither 'digits', a directory of MNIST IDX files, nor a .csv/.csv.gz file"
        ),
    ))
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = caq_spec::fsio::read_regular(path).map_err(|e| ModelError::io(path, e))?;
    maybe_gunzip(path, bytes)
}

/// Decompresses a gzip stream, refusing one that inflates past the memory limit (a few KB of
/// gzip can claim terabytes).
fn maybe_gunzip(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let limit = crate::validate::Limits::for_this_machine().max_bytes;
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes.as_slice())
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| ModelError::format(path, format!("bad gzip stream: {e}")))?;
    if out.len() as u64 > limit {
        return Err(ModelError::format(
            path,
            format!(
                "inflates past {} MiB (half this machine's memory, or {})",
                limit >> 20,
                crate::validate::MEMORY_LIMIT_ENV
            ),
        ));
    }
    Ok(out)
}

fn decode_text(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        ModelError::format(
            path,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn idx_images(n: u32, rows: u32, cols: u32, fill: impl Fn(usize) -> u8) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IDX_IMAGES_MAGIC, n, rows, cols] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend((0..(n * rows * cols) as usize).map(fill));
        b
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&IDX_LABELS_MAGIC.to_be_bytes());
        b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        b.extend_from_slice(labels);
        b
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn assert_format_err(r: Result<impl std::fmt::Debug>, path: &Path, needle: &str) {
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains(needle),
            "error '{e}' should name {} and say '{needle}'",
            path.display()
        );
    }

    #[test]
    fn embedded_digits_has_1797_images_in_10_balanced_classes() {
        let d = digits().unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.shape, [1, 8, 8]);
        assert_eq!(d.pixels.len(), 1797 * 64);
        assert!(d.pixels.iter().all(|&p| p <= 16));
        assert_eq!(d.max_value, 16);
        let counts = d.class_counts();
        assert_eq!(counts.len(), 10);
        assert!(counts.iter().all(|c| (174..=183).contains(c)), "{counts:?}");
    }

    #[test]
    fn image_f32_scales_by_max_value_in_chw() {
        let d = digits().unwrap();
        let x = d.image_f32(3);
        assert_eq!(x.dim(), (1, 8, 8));
        for (k, &p) in d.image(3).iter().enumerate() {
            assert_eq!(x[[0, k / 8, k % 8]], f32::from(p) / 16.0);
        }
    }

    #[test]
    fn stratified_split_is_exact_proportional_disjoint_and_covering() {
        let d = digits().unwrap();
        let (train, test) = d.stratified_split(360, 0).unwrap();
        assert_eq!((train.len(), test.len()), (1437, 360));
        let (all, tc) = (d.class_counts(), test.class_counts());
        for k in 0..10 {
            let want = 360.0 * all[k] as f64 / 1797.0;
            assert!(
                (tc[k] as f64 - want).abs() <= 1.0,
                "class {k}: {} vs {want}",
                tc[k]
            );
        }
        // Every image appears in exactly one half: compare the multisets of (pixels, label).
        let key = |s: &Dataset, i: usize| (s.image(i).to_vec(), s.labels[i]);
        let mut parts: Vec<_> = (0..train.len()).map(|i| key(&train, i)).collect();
        parts.extend((0..test.len()).map(|i| key(&test, i)));
        let mut whole: Vec<_> = (0..d.len()).map(|i| key(&d, i)).collect();
        parts.sort();
        whole.sort();
        assert_eq!(parts, whole);
    }

    #[test]
    fn stratified_split_is_deterministic_per_seed() {
        let d = digits().unwrap();
        let (_, a) = d.stratified_split(100, 7).unwrap();
        let (_, b) = d.stratified_split(100, 7).unwrap();
        let (_, c) = d.stratified_split(100, 8).unwrap();
        assert_eq!(a.pixels, b.pixels);
        assert_eq!(a.labels, b.labels);
        assert_ne!(a.pixels, c.pixels);
        assert_eq!(c.len(), 100);
    }

    #[test]
    fn stratified_split_rejects_empty_or_whole_test_sets() {
        let d = digits().unwrap();
        assert!(d.stratified_split(0, 0).is_err());
        assert!(d.stratified_split(1797, 0).is_err());
        assert!(d.stratified_split(1796, 0).is_ok());
    }

    #[test]
    fn idx_files_round_trip_raw_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let images = idx_images(5, 3, 4, |k| (k * 7 % 256) as u8);
        let labels = [3u8, 1, 4, 1, 5];
        for (suffix, enc) in [("", false), (".gz", true)] {
            let ip = dir.path().join(format!("img{suffix}"));
            let lp = dir.path().join(format!("lab{suffix}"));
            let write =
                |p: &Path, b: &[u8]| std::fs::write(p, if enc { gz(b) } else { b.to_vec() });
            write(&ip, &images).unwrap();
            write(&lp, &idx_labels(&labels)).unwrap();
            let (n, r, c, px) = load_idx_images(&ip).unwrap();
            assert_eq!((n, r, c), (5, 3, 4));
            assert_eq!(px, images[16..]);
            assert_eq!(load_idx_labels(&lp).unwrap(), labels);
        }
    }

    #[test]
    fn mnist_dir_finds_gzip_and_raw_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(
            p.join("t10k-images-idx3-ubyte.gz"),
            gz(&idx_images(4, 28, 28, |k| (k % 256) as u8)),
        )
        .unwrap();
        std::fs::write(p.join("t10k-labels-idx1-ubyte"), idx_labels(&[0, 9, 2, 2])).unwrap();
        let d = load(p.to_str().unwrap()).unwrap();
        assert_eq!((d.len(), d.shape, d.max_value), (4, [1, 28, 28], 255));
        assert_eq!(d.class_counts(), vec![1, 0, 2, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(d.image(1)[0], (784 % 256) as u8);
    }

    #[test]
    fn idx_errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);

        let mut bad = idx_images(2, 2, 2, |_| 0);
        bad[3] = 0x01;
        std::fs::write(p("magic"), &bad).unwrap();
        assert_format_err(load_idx_images(&p("magic")), &p("magic"), "magic");

        let good = idx_images(2, 2, 2, |_| 0);
        std::fs::write(p("short"), &good[..good.len() - 1]).unwrap();
        assert_format_err(load_idx_images(&p("short")), &p("short"), "truncated");
        std::fs::write(p("header"), &good[..10]).unwrap();
        assert_format_err(load_idx_images(&p("header")), &p("header"), "truncated");
        let mut long = good.clone();
        long.push(0);
        std::fs::write(p("long"), &long).unwrap();
        assert_format_err(load_idx_images(&p("long")), &p("long"), "trailing");

        // 0×0 images panicked `caq train` (a NaN loss unwrapped); no images at all said
        // `test_count: 0 must be in 1..0`.
        std::fs::write(p("empty-side"), idx_images(3, 0, 0, |_| 0)).unwrap();
        assert_format_err(
            load_idx_images(&p("empty-side")),
            &p("empty-side"),
            "images of 0 × 0: each side must be in 1..=65535",
        );
        std::fs::write(p("none"), idx_images(0, 28, 28, |_| 0)).unwrap();
        assert_format_err(
            load_idx_images(&p("none")),
            &p("none"),
            "holds no images (count 0)",
        );

        std::fs::write(p("nine"), idx_labels(&[1, 10])).unwrap();
        assert_format_err(load_idx_labels(&p("nine")), &p("nine"), "label 1 is 10");

        std::fs::write(p("t10k-images-idx3-ubyte"), &good).unwrap();
        std::fs::write(p("t10k-labels-idx1-ubyte"), idx_labels(&[1, 2, 3])).unwrap();
        let labels_path = p("t10k-labels-idx1-ubyte");
        assert_format_err(
            load_mnist_dir(dir.path()),
            &labels_path,
            "3 labels for the 2 images",
        );
    }

    #[test]
    fn mnist_dir_without_files_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_format_err(load_mnist_dir(dir.path()), dir.path(), "t10k-images");
    }

    #[test]
    fn digits_csv_loads_plain_and_reports_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let row = |label: u8, px: u8| {
            let mut f: Vec<String> = (0..64).map(|_| px.to_string()).collect();
            f.push(label.to_string());
            f.join(",")
        };
        let good = dir.path().join("d.csv");
        std::fs::write(&good, format!("{}\n{}\n", row(3, 16), row(7, 0))).unwrap();
        let d = load(good.to_str().unwrap()).unwrap();
        assert_eq!(d.labels, vec![3, 7]);
        assert_eq!(d.image(0), &[16u8; 64][..]);

        let gz_path = dir.path().join("d.csv.gz");
        std::fs::write(&gz_path, gz(std::fs::read(&good).unwrap().as_slice())).unwrap();
        assert_eq!(load_digits_csv(&gz_path).unwrap().labels, vec![3, 7]);

        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, format!("{}\n{}\n", row(3, 16), row(7, 17))).unwrap();
        assert_format_err(load_digits_csv(&bad), &bad, "line 2, field 1: pixel '17'");
        std::fs::write(&bad, format!("{}\n{},0\n", row(3, 1), row(7, 1))).unwrap();
        assert_format_err(load_digits_csv(&bad), &bad, "line 2: 66 fields");
        std::fs::write(&bad, row(12, 1)).unwrap();
        assert_format_err(load_digits_csv(&bad), &bad, "field 65: label '12'");
    }

    #[test]
    fn load_rejects_unknown_specs() {
        assert!(load("/nonexistent/caq/dataset").is_err());
        let f = tempfile::NamedTempFile::new().unwrap();
        assert!(load(f.path().to_str().unwrap()).is_err());
    }

    #[test]
    fn shared_mnist_t10k_loads_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/mnist-t10k");
        if !dir.is_dir() {
            eprintln!("skipped: {} is absent", dir.display());
            return;
        }
        let d = load_mnist_dir(&dir).unwrap();
        assert_eq!((d.len(), d.shape, d.max_value), (10_000, [1, 28, 28], 255));
        assert_eq!(
            d.class_counts(),
            vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
    }
}
