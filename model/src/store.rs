//! Files of tensors: safetensors with a JSON document in the header metadata, written atomically
//! (temp file in the same directory, fsync, rename) and read through a memory map, so a reader that
//! needs one tensor touches only that tensor's pages. Every tensor carries a CRC-32 in the JSON
//! document and is checked when it is read; the document and the CRC table are covered by one more
//! CRC-32, checked at open, so a flipped digit of a manifest is caught like a flipped weight. A
//! header with a key twice (JSON leaves such a file's meaning to the reader) is refused. Used by
//! the float model file and the quantized bundle; knows nothing of what the tensors mean.

use crate::error::{ModelError, Result};
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One tensor to write: name, element type, shape, little-endian bytes.
pub struct OutTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl OutTensor {
    pub fn f32s(name: impl Into<String>, shape: Vec<usize>, v: &[f32]) -> Self {
        Self::raw(
            name,
            Dtype::F32,
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
    pub fn i32s(name: impl Into<String>, shape: Vec<usize>, v: &[i32]) -> Self {
        Self::raw(
            name,
            Dtype::I32,
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
    pub fn u16s(name: impl Into<String>, shape: Vec<usize>, v: &[u16]) -> Self {
        Self::raw(
            name,
            Dtype::U16,
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }
    pub fn u8s(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self::raw(name, Dtype::U8, vec![bytes.len()], bytes)
    }
    pub fn raw(name: impl Into<String>, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        OutTensor {
            name: name.into(),
            dtype,
            shape,
            bytes,
        }
    }
}

/// The metadata key under which the JSON document is stored.
const DOC_KEY: &str = "caq";
/// The metadata key holding the per-tensor CRC-32 table (JSON object name -> u32).
const CRC_KEY: &str = "caq.crc32";
/// The metadata key holding the CRC-32 of the document and the CRC table (`header_crc`).
const HEADER_CRC_KEY: &str = "caq.header_crc32";

/// CRC-32 of the document text, a newline, and the CRC table text.
fn header_crc(doc: &str, crcs: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(doc.as_bytes());
    h.update(b"\n");
    h.update(crcs.as_bytes());
    h.finalize()
}

/// How to make a file this build reads, for the errors that refuse an old or damaged one.
pub const REGENERATE: &str = "regenerate it with this caq (`caq train` or `caq import` for a \
                              float model, `caq quantize` for a bundle)";

/// Writes `tensors` and `doc` to `path` atomically: readers see the old file or the whole new
/// one, never a partial write.
pub fn write_atomic(path: &Path, doc: &serde_json::Value, tensors: &[OutTensor]) -> Result<()> {
    let crcs: BTreeMap<&str, u32> = tensors
        .iter()
        .map(|t| (t.name.as_str(), crc32fast::hash(&t.bytes)))
        .collect();
    let doc_text = doc.to_string();
    let crc_text = serde_json::to_string(&crcs).expect("map of u32 serializes");
    let meta = HashMap::from([
        (
            HEADER_CRC_KEY.to_string(),
            header_crc(&doc_text, &crc_text).to_string(),
        ),
        (DOC_KEY.to_string(), doc_text),
        (CRC_KEY.to_string(), crc_text),
    ]);
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let v = TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
            .map_err(|e| ModelError::format(path, format!("tensor '{}': {e}", t.name)))?;
        views.push((t.name.as_str(), v));
    }
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| ModelError::format(path, e.to_string()))?;
    write_bytes_atomic(path, &bytes)
}

/// Writes `bytes` to `path` without ever leaving a half-written file or replacing a device node
/// (`caq_spec::fsio::write_atomic`).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    caq_spec::fsio::write_atomic(path, bytes).map_err(|e| ModelError::io(path, e))
}

/// A tensor file opened for reading: memory-mapped, header parsed and checked.
pub struct TensorFile {
    path: PathBuf,
    map: memmap2::Mmap,
    /// The parsed header; offsets are relative to `data_start`. Validated against the file
    /// length once, at open.
    meta: Metadata,
    data_start: usize,
    doc: serde_json::Value,
    crcs: BTreeMap<String, u32>,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<TensorFile> {
        let file = caq_spec::fsio::open_regular(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read-only and private to this process; if another process truncates
        // or rewrites the file under us the bytes may change, which the per-tensor CRC detects
        // (caq itself only ever replaces files by rename, which leaves this mapping intact).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let (header_len, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
            ModelError::format(
                path,
                format!("not a readable tensor file ({e}); truncated or corrupted?"),
            )
        })?;
        // Full validation of offsets against the file length.
        SafeTensors::deserialize(&map).map_err(|e| {
            ModelError::format(
                path,
                format!("tensor table is inconsistent ({e}); truncated or corrupted?"),
            )
        })?;
        if let Some(key) = duplicate_key(&map[8..8 + header_len]) {
            return Err(ModelError::format(
                path,
                format!("the header has the key '{key}' twice; the file is corrupted or forged"),
            ));
        }
        let m = meta.metadata().as_ref();
        let get = |key: &str| {
            m.and_then(|m| m.get(key)).ok_or_else(|| {
                ModelError::format(
                    path,
                    format!("metadata key '{key}' is missing: not a caq file"),
                )
            })
        };
        let stored: u32 = get(HEADER_CRC_KEY)
            .map_err(|_| {
                ModelError::format(
                    path,
                    format!(
                        "has no header checksum ('{HEADER_CRC_KEY}'): written by a caq before \
                         manifests were checksummed, or not a caq file; {REGENERATE}"
                    ),
                )
            })?
            .parse()
            .map_err(|_| {
                ModelError::format(path, format!("metadata '{HEADER_CRC_KEY}' is not a u32"))
            })?;
        let found = header_crc(get(DOC_KEY)?, get(CRC_KEY)?);
        if found != stored {
            return Err(ModelError::format(
                path,
                format!(
                    "the manifest failed its checksum (stored crc32 {stored:#010x}, computed \
                     {found:#010x}); the file is corrupted"
                ),
            ));
        }
        for key in [DOC_KEY, CRC_KEY] {
            if let Some(dup) = duplicate_key(get(key)?.as_bytes()) {
                return Err(ModelError::format(
                    path,
                    format!("metadata '{key}' has the key '{dup}' twice"),
                ));
            }
        }
        let doc: serde_json::Value = serde_json::from_str(get(DOC_KEY)?).map_err(|e| {
            ModelError::format(path, format!("metadata '{DOC_KEY}' is not JSON: {e}"))
        })?;
        let crcs: BTreeMap<String, u32> = serde_json::from_str(get(CRC_KEY)?).map_err(|e| {
            ModelError::format(
                path,
                format!("metadata '{CRC_KEY}' is not a CRC table: {e}"),
            )
        })?;
        Ok(TensorFile {
            path: path.to_path_buf(),
            map,
            meta,
            data_start: 8 + header_len,
            doc,
            crcs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn doc(&self) -> &serde_json::Value {
        &self.doc
    }

    pub fn file_len(&self) -> usize {
        self.map.len()
    }

    /// The names of the file's tensors, sorted.
    pub fn tensor_names(&self) -> Vec<String> {
        let mut names = self.meta.offset_keys();
        names.sort();
        names
    }

    /// The checked bytes of one tensor, with its dtype and shape.
    pub fn tensor(&self, name: &str) -> Result<(Dtype, Vec<usize>, &[u8])> {
        let info = self
            .meta
            .info(name)
            .ok_or_else(|| ModelError::format(&self.path, format!("tensor '{name}' is missing")))?;
        let (begin, end) = info.data_offsets;
        let data: &[u8] = &self.map[self.data_start + begin..self.data_start + end];
        let expected = *self.crcs.get(name).ok_or_else(|| {
            ModelError::format(&self.path, format!("tensor '{name}' has no checksum entry"))
        })?;
        let found = crc32fast::hash(data);
        if found != expected {
            return Err(ModelError::Checksum {
                path: self.path.clone(),
                tensor: name.to_string(),
                expected,
                found,
            });
        }
        Ok((info.dtype, info.shape.clone(), data))
    }

    /// Every tensor of the file, checked, in [`TensorFile::tensor_names`]' order, as tensors to
    /// write (a file rewritten with the same tensors under another document).
    pub fn out_tensors(&self) -> Result<Vec<OutTensor>> {
        self.tensor_names()
            .into_iter()
            .map(|n| {
                let (dtype, shape, bytes) = self.tensor(&n)?;
                Ok(OutTensor::raw(n, dtype, shape, bytes.to_vec()))
            })
            .collect()
    }

    /// Checks, from the header alone, that the file holds exactly these tensors with these
    /// dtypes and shapes (each with a checksum entry), naming the first that is missing, extra or
    /// different.
    pub fn expect_tensors(&self, expected: &[(String, Dtype, Vec<usize>)]) -> Result<()> {
        for (name, dtype, shape) in expected {
            let info = self.meta.info(name).ok_or_else(|| {
                ModelError::format(&self.path, format!("tensor '{name}' is missing"))
            })?;
            if info.dtype != *dtype || info.shape != *shape {
                return Err(ModelError::format(
                    &self.path,
                    format!(
                        "tensor '{name}' is {:?} {:?}, expected {dtype:?} {shape:?}",
                        info.dtype, info.shape
                    ),
                ));
            }
            if !self.crcs.contains_key(name) {
                return Err(ModelError::format(
                    &self.path,
                    format!("tensor '{name}' has no checksum entry"),
                ));
            }
        }
        let names: std::collections::HashSet<&str> =
            expected.iter().map(|(n, _, _)| n.as_str()).collect();
        let extra = self
            .meta
            .offset_keys()
            .into_iter()
            .chain(self.crcs.keys().cloned())
            .find(|n| !names.contains(n.as_str()));
        if let Some(n) = extra {
            return Err(ModelError::format(
                &self.path,
                format!("tensor '{n}' is not part of the model the manifest describes"),
            ));
        }
        Ok(())
    }

    fn typed(&self, name: &str, want: Dtype, shape: &[usize]) -> Result<&[u8]> {
        let (dtype, found_shape, data) = self.tensor(name)?;
        if dtype != want || found_shape != shape {
            return Err(ModelError::format(
                &self.path,
                format!(
                    "tensor '{name}' is {dtype:?} {found_shape:?}, expected {want:?} {shape:?}"
                ),
            ));
        }
        Ok(data)
    }

    pub fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let d = self.typed(name, Dtype::F32, shape)?;
        Ok(d.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    pub fn i32s(&self, name: &str, shape: &[usize]) -> Result<Vec<i32>> {
        let d = self.typed(name, Dtype::I32, shape)?;
        Ok(d.chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    pub fn u16s(&self, name: &str, shape: &[usize]) -> Result<Vec<u16>> {
        let d = self.typed(name, Dtype::U16, shape)?;
        Ok(d.chunks_exact(2)
            .map(|c| u16::from_le_bytes(c.try_into().expect("2 bytes")))
            .collect())
    }

    pub fn u8s(&self, name: &str, len: usize) -> Result<&[u8]> {
        self.typed(name, Dtype::U8, &[len])
    }
}

/// Reads the `schema_version` of a document and refuses any outside `oldest..=supported`;
/// returns it.
pub fn check_version(
    path: &Path,
    doc: &serde_json::Value,
    kind: &str,
    oldest: u32,
    supported: u32,
) -> Result<u32> {
    let found_kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if found_kind != kind {
        return Err(ModelError::format(
            path,
            format!("is a '{found_kind}' file, expected '{kind}'"),
        ));
    }
    let found = doc
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| ModelError::format(path, "schema_version is missing"))?;
    if found < u64::from(oldest) || found > u64::from(supported) {
        return Err(ModelError::Version {
            path: path.to_path_buf(),
            found: found.min(u64::from(u32::MAX)) as u32,
            oldest,
            supported,
        });
    }
    Ok(found as u32)
}

/// The first key that appears twice in one object anywhere in the JSON text `json`; `None` for
/// text without duplicates or that is not JSON (the parse that follows reports that).
pub fn duplicate_key(json: &[u8]) -> Option<String> {
    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
    struct Dup(Option<String>);
    impl<'de> serde::Deserialize<'de> for Dup {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Dup, D::Error> {
            d.deserialize_any(DupVisitor)
        }
    }
    struct DupVisitor;
    impl<'de> Visitor<'de> for DupVisitor {
        type Value = Dup;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Dup, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut found = None;
            while let Some(k) = m.next_key::<String>()? {
                let inner: Dup = m.next_value()?;
                if found.is_none() {
                    found = if seen.contains(&k) {
                        Some(k.clone())
                    } else {
                        inner.0
                    };
                }
                seen.insert(k);
            }
            Ok(Dup(found))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> std::result::Result<Dup, A::Error> {
            let mut found = None;
            while let Some(inner) = s.next_element::<Dup>()? {
                found = found.or(inner.0);
            }
            Ok(Dup(found))
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<Dup, E> {
            Ok(Dup(None))
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<Dup, E> {
            Ok(Dup(None))
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<Dup, E> {
            Ok(Dup(None))
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<Dup, E> {
            Ok(Dup(None))
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<Dup, E> {
            Ok(Dup(None))
        }
        fn visit_unit<E>(self) -> std::result::Result<Dup, E> {
            Ok(Dup(None))
        }
    }
    serde_json::from_slice::<Dup>(json).ok().and_then(|d| d.0)
}
