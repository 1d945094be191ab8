//! Files of tensors: safetensors with a JSON document in the header metadata, written atomically
//! (temp file in the same directory, fsync, rename) and read through a memory map, so a reader that
//! needs one tensor touches only that tensor's pages. Every tensor carries a CRC-32 in the JSON
//! document and is checked when it is read. Used by the float model file and the quantized bundle;
//! knows nothing of what the tensors mean.

use crate::error::{ModelError, Result};
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
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

/// Writes `tensors` and `doc` to `path` atomically: readers see the old file or the whole new
/// one, never a partial write.
pub fn write_atomic(path: &Path, doc: &serde_json::Value, tensors: &[OutTensor]) -> Result<()> {
    let crcs: BTreeMap<&str, u32> = tensors
        .iter()
        .map(|t| (t.name.as_str(), crc32fast::hash(&t.bytes)))
        .collect();
    let meta = HashMap::from([
        (DOC_KEY.to_string(), doc.to_string()),
        (
            CRC_KEY.to_string(),
            serde_json::to_string(&crcs).expect("map of u32 serializes"),
        ),
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

/// Temp file in the target's directory, fsync, rename over the target.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| ModelError::io(&dir, e))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| ModelError::format(path, "is not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::io(path, e));
    }
    Ok(())
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
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
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
        let m = meta.metadata().as_ref();
        let get = |key: &str| {
            m.and_then(|m| m.get(key)).ok_or_else(|| {
                ModelError::format(
                    path,
                    format!("metadata key '{key}' is missing: not a caq file"),
                )
            })
        };
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
