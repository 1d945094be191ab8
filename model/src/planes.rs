//! Bit-plane packing of signed weight codes, in the layout the hardware streams. Owns that layout
//! and the plane-serial dot product it implies. Knows nothing of scales or of how codes were chosen.
//!
//! # Layout
//!
//! A `[rows, cols]` matrix of signed `bits`-bit two's-complement codes (`bits` in 1..=8, code range
//! `[−2^(bits−1), 2^(bits−1) − 1]`) is stored as `bits` planes of `rows` rows of
//! `words_per_row = ceil(cols / 64)` little-endian `u64` words:
//!
//! ```text
//! words[(p * rows + r) * words_per_row + w]      p = 0..bits, r = 0..rows, w = 0..words_per_row
//! bit j of that word = bit p of the two's-complement code at (r, 64·w + j)
//! ```
//!
//! Plane-major order lets the hardware stream one plane of a whole row block at a time and stop
//! after the planes a level needs. Columns past `cols` in a row's last word are padding and must
//! be 0. Plane `p` has weight `+2^p`, except the top plane `p = bits − 1`, which has weight
//! `−2^(bits−1)` (the two's-complement sign). So `code = Σ_p weight_p · bit_p` and a dot product
//! is `Σ_p weight_p · Σ_j bit_p[j] · a[j]` (`plane_serial_matvec`). On disk (`to_le_bytes`) the
//! words are concatenated in this order, each as 8 little-endian bytes.

use crate::error::{ModelError, Result};
use ndarray::{Array2, ArrayView2};

/// Largest plane count: codes up to 8 bits.
pub const MAX_PLANE_BITS: u8 = 8;
const WORD_BITS: usize = 64;

/// Signed codes packed into bit planes (layout in the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedPlanes {
    pub bits: u8,
    pub rows: usize,
    pub cols: usize,
    pub words: Vec<u64>,
}

/// Packs `codes` as signed `bits`-bit integers (`bits` in 1..=8). An out-of-range code is an
/// error naming its position and the allowed range.
pub fn pack(codes: ArrayView2<i32>, bits: u8) -> Result<PackedPlanes> {
    check_plane_bits(bits)?;
    let (rows, cols) = codes.dim();
    let wpr = cols.div_ceil(WORD_BITS);
    let len = words_len(bits, rows, cols)?;
    let (lo, hi) = plane_code_range(bits);
    let mut words = vec![0u64; len];
    for ((r, c), &v) in codes.indexed_iter() {
        if !(lo..=hi).contains(&v) {
            return Err(ModelError::arg(
                "codes",
                format!(
                    "code {v} at (row {r}, col {c}) does not fit a signed {bits}-bit integer [{lo}, {hi}]"
                ),
            ));
        }
        // Two's-complement bit pattern of v.
        let pattern = v as u32;
        for p in 0..usize::from(bits) {
            if (pattern >> p) & 1 == 1 {
                words[(p * rows + r) * wpr + c / WORD_BITS] |= 1u64 << (c % WORD_BITS);
            }
        }
    }
    Ok(PackedPlanes {
        bits,
        rows,
        cols,
        words,
    })
}

impl PackedPlanes {
    pub fn words_per_row(&self) -> usize {
        self.cols.div_ceil(WORD_BITS)
    }

    /// Checks the bit count, the number of words and that every padding bit is 0.
    pub fn validate(&self) -> Result<()> {
        check_plane_bits(self.bits)?;
        let expected = words_len(self.bits, self.rows, self.cols)?;
        if self.words.len() != expected {
            return Err(ModelError::Shape {
                context: format!(
                    "bit planes ({} planes of [{}, {}])",
                    self.bits, self.rows, self.cols
                ),
                expected: format!("{expected} words"),
                found: format!("{} words", self.words.len()),
            });
        }
        let tail = self.cols % WORD_BITS;
        if tail != 0 {
            let wpr = self.words_per_row();
            let padding = !((1u64 << tail) - 1);
            for (i, row) in self.words.chunks(wpr).enumerate() {
                if row[wpr - 1] & padding != 0 {
                    return Err(ModelError::arg(
                        "words",
                        format!(
                            "plane {}, row {}: padding bits past column {} are set",
                            i / self.rows,
                            i % self.rows,
                            self.cols
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The codes back from the planes.
    ///
    /// # Panics
    /// If the value fails `validate` (only possible for a hand-built value; `pack` and
    /// `from_le_bytes` always produce valid ones).
    pub fn unpack(&self) -> Array2<i32> {
        let wpr = self.words_per_row();
        Array2::from_shape_fn((self.rows, self.cols), |(r, c)| {
            (0..self.bits)
                .map(|p| {
                    let word = self.words[(usize::from(p) * self.rows + r) * wpr + c / WORD_BITS];
                    let bit = ((word >> (c % WORD_BITS)) & 1) as i32;
                    bit * plane_weight(p, self.bits) as i32
                })
                .sum()
        })
    }

    /// The `rows · words_per_row` words of plane `p`; empty if `p ≥ bits`.
    pub fn plane(&self, p: u8) -> &[u64] {
        let n = self.rows * self.words_per_row();
        let start = usize::from(p) * n;
        self.words.get(start..start + n).unwrap_or(&[])
    }

    /// The words in layout order, each as 8 little-endian bytes.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// The inverse of `to_le_bytes`; errors on a wrong length, bad `bits` or nonzero padding.
    pub fn from_le_bytes(bits: u8, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self> {
        check_plane_bits(bits)?;
        let expected = words_len(bits, rows, cols)?
            .checked_mul(8)
            .ok_or_else(|| too_large(bits, rows, cols))?;
        if bytes.len() != expected {
            return Err(ModelError::Shape {
                context: format!("bit-plane bytes ({bits} planes of [{rows}, {cols}])"),
                expected: format!("{expected} bytes"),
                found: format!("{} bytes", bytes.len()),
            });
        }
        let words = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        let planes = PackedPlanes {
            bits,
            rows,
            cols,
            words,
        };
        planes.validate()?;
        Ok(planes)
    }

    /// Bytes held, padding included.
    pub fn stored_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Bits of payload, `bits · rows · cols`, padding excluded.
    pub fn payload_bits(&self) -> usize {
        usize::from(self.bits) * self.rows * self.cols
    }
}

/// `Σ_p weight_p · Σ_j plane_p[r][j] · a[j]` for every row r: the plane-serial dot product the
/// hardware computes. It equals `codes · a` exactly. Errors if `a.len() != cols` or the planes
/// fail `validate`.
pub fn plane_serial_matvec(p: &PackedPlanes, a: &[i32]) -> Result<Vec<i64>> {
    p.validate()?;
    if a.len() != p.cols {
        return Err(ModelError::Shape {
            context: "plane-serial matvec input".into(),
            expected: p.cols.to_string(),
            found: a.len().to_string(),
        });
    }
    let wpr = p.words_per_row();
    let mut out = vec![0i64; p.rows];
    for plane in 0..p.bits {
        let weight = plane_weight(plane, p.bits);
        for (r, row) in p.plane(plane).chunks(wpr.max(1)).enumerate() {
            let mut partial = 0i64;
            for (w, &word) in row.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let j = bits.trailing_zeros() as usize;
                    partial += i64::from(a[w * WORD_BITS + j]);
                    bits &= bits - 1;
                }
            }
            out[r] += weight * partial;
        }
    }
    Ok(out)
}

/// `+2^p`, or `−2^p` for the top (sign) plane.
fn plane_weight(p: u8, bits: u8) -> i64 {
    let w = 1i64 << p;
    if p + 1 == bits { -w } else { w }
}

fn plane_code_range(bits: u8) -> (i32, i32) {
    let half = 1i32 << (bits - 1);
    (-half, half - 1)
}

fn check_plane_bits(bits: u8) -> Result<()> {
    if !(1..=MAX_PLANE_BITS).contains(&bits) {
        return Err(ModelError::arg(
            "bits",
            format!("plane count {bits} is outside 1..={MAX_PLANE_BITS}"),
        ));
    }
    Ok(())
}

/// Bytes a `bits`-plane `[rows, cols]` matrix is stored in (padding included).
pub fn stored_len(bits: u8, rows: usize, cols: usize) -> Result<usize> {
    words_len(bits, rows, cols)?
        .checked_mul(8)
        .ok_or_else(|| too_large(bits, rows, cols))
}

fn words_len(bits: u8, rows: usize, cols: usize) -> Result<usize> {
    usize::from(bits)
        .checked_mul(rows)
        .and_then(|n| n.checked_mul(cols.div_ceil(WORD_BITS)))
        .ok_or_else(|| too_large(bits, rows, cols))
}

fn too_large(bits: u8, rows: usize, cols: usize) -> ModelError {
    ModelError::arg(
        "rows/cols",
        format!("{bits} planes of [{rows}, {cols}] overflow the address space"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_support::seeded_rng;
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;

    const COLS: &[usize] = &[1, 7, 8, 9, 63, 64, 65, 128, 130];

    /// Random codes in range, with both extremes forced in where there is room.
    fn random_codes(rng: &mut ChaCha8Rng, rows: usize, cols: usize, bits: u8) -> Array2<i32> {
        let (lo, hi) = plane_code_range(bits);
        let mut codes = Array2::from_shape_simple_fn((rows, cols), || rng.random_range(lo..=hi));
        codes[[0, 0]] = lo;
        codes[[rows - 1, cols - 1]] = hi;
        codes
    }

    #[test]
    fn pack_unpack_round_trips_every_width_and_shape() {
        let mut rng = seeded_rng("pack_unpack_round_trips_every_width_and_shape");
        for bits in 1..=MAX_PLANE_BITS {
            for &cols in COLS {
                for rows in [1, 3] {
                    let codes = random_codes(&mut rng, rows, cols, bits);
                    let p = pack(codes.view(), bits).unwrap();
                    assert_eq!(p.words_per_row(), cols.div_ceil(64));
                    assert_eq!(p.words.len(), usize::from(bits) * rows * p.words_per_row());
                    assert_eq!(p.payload_bits(), usize::from(bits) * rows * cols);
                    assert_eq!(p.stored_bytes(), p.words.len() * 8);
                    p.validate().unwrap();
                    assert_eq!(p.unpack(), codes, "bits {bits}, [{rows}, {cols}]");
                    let bytes = p.to_le_bytes();
                    assert_eq!(bytes.len(), p.stored_bytes());
                    assert_eq!(
                        PackedPlanes::from_le_bytes(bits, rows, cols, &bytes).unwrap(),
                        p
                    );
                }
            }
        }
    }

    #[test]
    fn plane_serial_matvec_equals_the_naive_product() {
        let mut rng = seeded_rng("plane_serial_matvec_equals_the_naive_product");
        for bits in 1..=MAX_PLANE_BITS {
            for &cols in COLS {
                let codes = random_codes(&mut rng, 4, cols, bits);
                let a: Vec<i32> = (0..cols).map(|_| rng.random_range(-128..=255)).collect();
                let p = pack(codes.view(), bits).unwrap();
                let naive: Vec<i64> = codes
                    .rows()
                    .into_iter()
                    .map(|row| {
                        row.iter()
                            .zip(&a)
                            .map(|(&c, &x)| i64::from(c) * i64::from(x))
                            .sum()
                    })
                    .collect();
                assert_eq!(
                    plane_serial_matvec(&p, &a).unwrap(),
                    naive,
                    "bits {bits}, cols {cols}"
                );
            }
        }
    }

    #[test]
    fn a_multi_bit_tail_is_packed_lsb_first_pinned_to_fixed_bytes() {
        // 70 columns: the second word of each plane holds a 6-column tail (64..=69). A 65-column
        // matrix has a 1-bit tail, where any bit order of the tail looks the same.
        let mut codes = Array2::zeros((1, 70));
        codes[[0, 0]] = 3; // 0b011
        codes[[0, 64]] = 1; // 0b001
        codes[[0, 66]] = 2; // 0b010
        codes[[0, 69]] = -4; // 0b100
        let p = pack(codes.view(), 3).unwrap();
        let word = |w: u64| w.to_le_bytes();
        let expected: Vec<u8> = [1u64, 0b1, 1, 0b100, 0, 0b10_0000]
            .into_iter()
            .flat_map(word)
            .collect();
        assert_eq!(p.to_le_bytes(), expected);
        assert_eq!(
            PackedPlanes::from_le_bytes(3, 1, 70, &expected)
                .unwrap()
                .unpack(),
            codes
        );
    }

    #[test]
    fn layout_is_plane_major_with_a_negative_top_plane() {
        // 2-bit codes 1 = 0b01 and -1 = 0b11, and a second row with -2 = 0b10 at column 64.
        let mut codes = Array2::zeros((2, 65));
        codes[[0, 0]] = 1;
        codes[[0, 1]] = -1;
        codes[[1, 64]] = -2;
        let p = pack(codes.view(), 2).unwrap();
        // [plane][row][word]: plane 0 row 0, plane 0 row 1, plane 1 row 0, plane 1 row 1.
        assert_eq!(p.words, vec![0b11, 0, 0, 0, 0b10, 0, 0, 0b1]);
        assert_eq!(p.plane(0), &[0b11, 0, 0, 0]);
        assert_eq!(p.plane(1), &[0b10, 0, 0, 0b1]);
        assert!(p.plane(2).is_empty());
        assert_eq!(&p.to_le_bytes()[..8], &[0b11, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(plane_weight(0, 2), 1);
        assert_eq!(plane_weight(1, 2), -2);
        // 1-bit codes are {-1, 0}, carried by one negative plane.
        let one = pack(Array2::from_elem((1, 3), -1).view(), 1).unwrap();
        assert_eq!(one.words, vec![0b111]);
        assert_eq!(plane_serial_matvec(&one, &[1, 2, 3]).unwrap(), vec![-6]);
    }

    #[test]
    fn out_of_range_codes_name_their_position() {
        let mut codes = Array2::zeros((2, 3));
        codes[[1, 2]] = 8;
        let msg = pack(codes.view(), 4).unwrap_err().to_string();
        assert!(
            msg.contains("row 1, col 2") && msg.contains("[-8, 7]"),
            "{msg}"
        );
        codes[[1, 2]] = 1;
        assert!(pack(codes.view(), 1).is_err());
        assert!(pack(codes.view(), 0).is_err());
        assert!(pack(codes.view(), 9).is_err());
    }

    #[test]
    fn bad_bytes_are_errors() {
        let p = pack(Array2::from_elem((2, 70), -3).view(), 3).unwrap();
        let bytes = p.to_le_bytes();
        assert!(PackedPlanes::from_le_bytes(3, 2, 70, &bytes[..bytes.len() - 1]).is_err());
        assert!(PackedPlanes::from_le_bytes(3, 2, 64, &bytes).is_err());
        assert!(PackedPlanes::from_le_bytes(0, 2, 70, &[]).is_err());
        let mut padded = bytes.clone();
        // Row 1 of plane 0, word 1, bit 6 (column 70): padding.
        padded[3 * 8] |= 1 << 6;
        let msg = PackedPlanes::from_le_bytes(3, 2, 70, &padded)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("plane 0, row 1"), "{msg}");
        assert!(PackedPlanes::from_le_bytes(3, usize::MAX, 70, &[]).is_err());
    }

    #[test]
    fn matvec_rejects_a_wrong_input_length() {
        let p = pack(Array2::zeros((2, 5)).view(), 4).unwrap();
        assert!(plane_serial_matvec(&p, &[0; 4]).is_err());
        let mut short = p.clone();
        short.words.pop();
        assert!(plane_serial_matvec(&short, &[0; 5]).is_err());
    }
}
