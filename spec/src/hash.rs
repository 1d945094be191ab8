//! [`ConfigHash`]: the stable 64-bit fingerprint of an [`AccelConfig`] that the generated hardware
//! carries in CONFIG_HASH_LO/HI and the driver compares at open.
//!
//! Canonical form: the config as a JSON value (`serde_json::to_value`), written compactly with the keys
//! of every object sorted by byte order. The keys are sorted here rather than by relying on
//! serde_json's default `BTreeMap`, because another crate in a build enabling serde_json's
//! `preserve_order` feature would otherwise silently change every hash. Numbers are written by
//! serde_json (integers exactly, `f64` as the shortest string that round-trips), so `clock_mhz = 100`
//! and `clock_mhz = 100.0` hash alike. The hash is the first 8 bytes of the SHA-256 of that text, read
//! as a **little-endian** u64 (byte 0 is bits 7:0 of CONFIG_HASH_LO). A field added later with a
//! default the config leaves out of its serialized form when unchanged (`axi.coherence = "none"`)
//! does not appear, so the hashes of configs written before it stay what their bitstreams carry.
//!
//! This module knows the config's serialized form only; it does not know which fields the hardware
//! uses.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::AccelConfig;

/// A config fingerprint; displayed as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfigHash(pub u64);

impl ConfigHash {
    /// Hashes a config's canonical form.
    pub fn of(cfg: &AccelConfig) -> ConfigHash {
        let digest = Sha256::digest(canonical_json(cfg).as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        ConfigHash(u64::from_le_bytes(first))
    }

    /// The CONFIG_HASH_LO register value.
    pub const fn lo(self) -> u32 {
        self.0 as u32
    }

    /// The CONFIG_HASH_HI register value.
    pub const fn hi(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Rebuilds a hash from the CONFIG_HASH_LO/HI register values.
    pub const fn from_words(lo: u32, hi: u32) -> ConfigHash {
        ConfigHash((hi as u64) << 32 | lo as u64)
    }
}

impl fmt::Display for ConfigHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The canonical text a config's hash is taken over (also useful to print two mismatched configs).
pub fn canonical_json(cfg: &AccelConfig) -> String {
    // AccelConfig has only string keys and no maps with other key types, so this cannot fail; a
    // failure would be a bug in this crate, not bad input.
    let value = serde_json::to_value(cfg).expect("AccelConfig serializes to a JSON value");
    let mut out = String::new();
    write_sorted(&value, &mut out);
    out
}

fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_sorted(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::config_path;

    fn sim_small() -> AccelConfig {
        AccelConfig::load(config_path("sim-small.toml")).expect("configs/sim-small.toml")
    }

    /// Pinned so that any change to the canonical form (or to sim-small.toml) is a visible decision:
    /// every bitstream built before it would stop matching its driver.
    const SIM_SMALL_GOLDEN: u64 = 0xcda2_a8f1_e2c5_9d93;

    #[test]
    fn a_default_coherence_leaves_the_hash_alone_and_io_changes_it() {
        let plain = sim_small();
        let text = std::fs::read_to_string(config_path("sim-small.toml")).unwrap();
        let explicit = text.replace("[axi]\n", "[axi]\ncoherence = \"none\"\n");
        assert_ne!(explicit, text);
        let explicit = AccelConfig::from_toml_str(&explicit, "explicit").unwrap();
        assert_eq!(ConfigHash::of(&explicit), ConfigHash::of(&plain));
        let mut io = plain.clone();
        io.axi.coherence = crate::Coherence::Io;
        assert_ne!(ConfigHash::of(&io), ConfigHash::of(&plain));
        assert!(canonical_json(&io).contains(r#""coherence":"io""#));
    }

    #[test]
    fn sim_small_hash_is_pinned() {
        let hash = ConfigHash::of(&sim_small());
        assert_eq!(
            hash,
            ConfigHash(SIM_SMALL_GOLDEN),
            "the hash of configs/sim-small.toml changed to {hash}; if the config or the canonical \
             form changed on purpose, update SIM_SMALL_GOLDEN"
        );
    }

    #[test]
    fn canonical_form_is_compact_with_sorted_keys() {
        let json = canonical_json(&sim_small());
        assert!(
            json.starts_with(
                r#"{"array":{"act_bits":8,"cols":8,"global_pool":true,"group_size":16,"#
            ),
            "{json}"
        );
        assert!(json.contains(r#""clock_mhz":100.0,"#), "{json}");
        assert!(!json.contains(' ') && !json.contains('\n'), "{json}");
    }

    #[test]
    fn key_order_whitespace_and_comments_do_not_change_the_hash() {
        let reordered = r#"
            # same config as sim-small, written differently
            board="sim"
            clock_mhz = 1e2
            part = "sim"
            name = "sim-small"
            schema_version = 1

            [limits]
            max_dim = 1024
            max_k = 4096
            max_descriptors = 64

            [axi]
            max_outstanding_reads = 4
            id_width = 4
            addr_width = 32
            max_burst = 16
            data_width = 64

            [memory]
            acc_buf_kib = 4
            act_buf_kib = 4
            weight_buf_kib = 4

            [array]
            global_pool = true
            group_size = 16
            max_plane_groups = 4
            act_bits = 8
            weight_bits = [ 1,2,3,4,
                            5,6,7,8 ]
            cols = 8
            rows = 4
        "#;
        let cfg = AccelConfig::from_toml_str(reordered, "reordered").expect("valid");
        assert_eq!(ConfigHash::of(&cfg), ConfigHash::of(&sim_small()));
    }

    /// Every leaf of the canonical form, mutated one at a time, changes the hash: no field is left
    /// out of the fingerprint, including fields added later.
    #[test]
    fn every_field_changes_the_hash() {
        let base = sim_small();
        let base_value = serde_json::to_value(&base).expect("to_value");
        let mut paths = Vec::new();
        leaf_paths(&base_value, String::new(), &mut paths);
        assert!(paths.len() >= 25, "{paths:?}");
        let mut seen = vec![ConfigHash::of(&base)];
        for path in &paths {
            let mutated = mutate_leaf(&base_value, path)
                .unwrap_or_else(|| panic!("no valid mutation of {path}"));
            let hash = ConfigHash::of(&mutated);
            assert!(
                !seen.contains(&hash),
                "mutating {path} did not give a new hash"
            );
            seen.push(hash);
        }
    }

    fn leaf_paths(value: &Value, prefix: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    leaf_paths(v, format!("{prefix}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    leaf_paths(v, format!("{prefix}/{i}"), out);
                }
            }
            _ => out.push(prefix),
        }
    }

    /// Changes the leaf at a JSON pointer to another value that still deserializes.
    fn mutate_leaf(base: &Value, pointer: &str) -> Option<AccelConfig> {
        let original = base.pointer(pointer)?.clone();
        let candidates: Vec<Value> = match &original {
            Value::Number(n) if n.is_f64() => vec![(n.as_f64()? + 0.5).into()],
            Value::Number(n) => vec![(n.as_u64()? + 1).into()],
            Value::Bool(b) => vec![(!b).into()],
            Value::String(s) => ["pynq-z2", "zcu104", "sim"]
                .iter()
                .map(|b| Value::from(*b))
                .chain([Value::from(format!("{s}-x"))])
                .collect(),
            _ => Vec::new(),
        };
        candidates
            .into_iter()
            .filter(|c| *c != original)
            .find_map(|c| {
                let mut v = base.clone();
                *v.pointer_mut(pointer)? = c;
                serde_json::from_value(v).ok()
            })
    }

    #[test]
    fn hash_splits_into_lo_and_hi_words() {
        let h = ConfigHash(0x0123_4567_89ab_cdef);
        assert_eq!((h.lo(), h.hi()), (0x89ab_cdef, 0x0123_4567));
        assert_eq!(ConfigHash::from_words(h.lo(), h.hi()), h);
        assert_eq!(h.to_string(), "0123456789abcdef");
    }
}
