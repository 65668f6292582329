//! SVHN cropped digits, `train_32x32.mat` / `test_32x32.mat`: MATLAB level-5 MAT
//! files holding `X` (32x32x3xN uint8, column-major) and `y` (N labels, 1..10 where
//! 10 means the digit 0).
//!
//! Format: a 128-byte header (text, subsystem offset, version 0x0100, endian mark
//! `IM` for little endian), then data elements, each an 8-byte tag (type, byte count)
//! or a 4-byte "small element" tag, padded to 8 bytes. `miCOMPRESSED` (15) holds a
//! zlib stream of one element; `miMATRIX` (14) holds the sub-elements array flags,
//! dimensions, name and real part.

use std::io::Read;
use std::path::Path;

use super::RawSplit;
use crate::{Error, Result};

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// A numeric MATLAB array read from a MAT file (real part only).
#[derive(Debug, Clone)]
pub struct MatArray {
    /// Variable name.
    pub name: String,
    /// Dimensions (column-major).
    pub dims: Vec<usize>,
    /// Element type of the stored data (miUINT8, miDOUBLE, ...).
    pub data_type: u32,
    /// Raw little-endian bytes of the real part.
    pub data: Vec<u8>,
}

impl MatArray {
    /// The values converted to f64.
    pub fn to_f64(&self, path: &Path) -> Result<Vec<f64>> {
        let d = &self.data;
        macro_rules! conv {
            ($t:ty, $n:expr) => {
                d.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])) as f64)
                    .collect()
            };
        }
        Ok(match self.data_type {
            MI_INT8 => d.iter().map(|&b| b as i8 as f64).collect(),
            MI_UINT8 => d.iter().map(|&b| b as f64).collect(),
            MI_INT16 => conv!(i16, 2),
            MI_UINT16 => conv!(u16, 2),
            MI_INT32 => conv!(i32, 4),
            MI_UINT32 => conv!(u32, 4),
            MI_SINGLE => conv!(f32, 4),
            MI_DOUBLE => conv!(f64, 8),
            MI_INT64 => conv!(i64, 8),
            MI_UINT64 => conv!(u64, 8),
            t => {
                return Err(Error::data(
                    path,
                    format!("variable {}: unsupported MAT data type {t}", self.name),
                ))
            }
        })
    }
}

fn elem_size(t: u32) -> usize {
    match t {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        _ => 8,
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn u32_at(&self, o: usize) -> Result<u32> {
        self.b
            .get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| Error::data(self.path, "truncated MAT element tag"))
    }

    /// Reads one element: (type, payload); advances past padding. `pad` is false
    /// after a compressed element (its payload is not padded).
    fn element(&mut self) -> Result<(u32, &'a [u8])> {
        let first = self.u32_at(self.pos)?;
        if first >> 16 != 0 {
            // Small data element: 2-byte count, 2-byte type, 4 bytes of data.
            let (n, t) = ((first >> 16) as usize, first & 0xffff);
            if n > 4 {
                return Err(Error::data(self.path, "corrupt small MAT element"));
            }
            let s = self.pos + 4;
            let data = self
                .b
                .get(s..s + n)
                .ok_or_else(|| Error::data(self.path, "truncated MAT element"))?;
            self.pos += 8;
            return Ok((t, data));
        }
        let t = first;
        let n = self.u32_at(self.pos + 4)? as usize;
        let s = self.pos + 8;
        let data = self.b.get(s..s + n).ok_or_else(|| {
            Error::data(
                self.path,
                format!(
                    "truncated: MAT element of {n} bytes at offset {} runs past the end",
                    self.pos
                ),
            )
        })?;
        self.pos = s + n;
        if t != MI_COMPRESSED {
            self.pos = (self.pos + 7) & !7;
        }
        Ok((t, data))
    }
}

fn parse_matrix(payload: &[u8], path: &Path) -> Result<Option<MatArray>> {
    let mut c = Cursor {
        b: payload,
        pos: 0,
        path,
    };
    let (_, flags) = c.element()?;
    if flags.len() < 4 {
        return Err(Error::data(path, "corrupt MAT array flags"));
    }
    let class = flags[0];
    let complex = flags[1] & 0x08 != 0;
    // Numeric classes are 4 (char) .. 15; cells, structs, sparse are skipped.
    if !(6..=15).contains(&class) {
        return Ok(None);
    }
    let (dt, dims_b) = c.element()?;
    if dt != MI_INT32 {
        return Err(Error::data(path, "corrupt MAT dimensions element"));
    }
    let raw_dims: Vec<i32> = dims_b
        .chunks_exact(4)
        .map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .collect();
    let (_, name_b) = c.element()?;
    let name = String::from_utf8_lossy(name_b).into_owned();
    if let Some(d) = raw_dims.iter().find(|&&d| d < 0) {
        return Err(Error::data(
            path,
            format!("variable {name}: negative dimension {d} in {raw_dims:?}"),
        ));
    }
    let dims: Vec<usize> = raw_dims.iter().map(|&d| d as usize).collect();
    let (data_type, data) = c.element()?;
    if complex {
        return Err(Error::data(
            path,
            format!("variable {name}: complex data not supported"),
        ));
    }
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count.and_then(|n| n.checked_mul(elem_size(data_type))) != Some(data.len()) {
        return Err(Error::data(
            path,
            format!(
                "variable {name}: {} data bytes for dimensions {dims:?}",
                data.len()
            ),
        ));
    }
    Ok(Some(MatArray {
        name,
        dims,
        data_type,
        data: data.to_vec(),
    }))
}

/// Largest MAT element this reader inflates: SVHN's largest variable, the training
/// split's `X` (32 x 32 x 3 x 73,257 bytes = 225 MB), with room to spare.
pub const MAX_ELEMENT_BYTES: usize = 256 << 20;

/// Parses the numeric variables of a level-5 MAT file (little endian).
pub fn parse_mat(bytes: &[u8], path: &Path) -> Result<Vec<MatArray>> {
    if bytes.len() < 128 {
        return Err(Error::data(path, "truncated: no MAT-file header"));
    }
    if bytes.starts_with(b"\x89HDF") || bytes[..128].windows(4).any(|w| w == b"7.3 ") {
        return Err(Error::data(
            path,
            "MAT v7.3 (HDF5) is not supported; expected a level-5 MAT file",
        ));
    }
    if &bytes[126..128] != b"IM" {
        return Err(Error::data(
            path,
            "not a little-endian level-5 MAT file (endian mark is not 'IM')",
        ));
    }
    let mut out = Vec::new();
    let mut c = Cursor {
        b: bytes,
        pos: 128,
        path,
    };
    while c.pos + 8 <= bytes.len() {
        let (t, payload) = c.element()?;
        match t {
            MI_MATRIX => out.extend(parse_matrix(payload, path)?),
            MI_COMPRESSED => {
                // Inflate the element's 8-byte tag first, then exactly the size it
                // declares (bounded by MAX_ELEMENT_BYTES), never more.
                let corrupt = |e: std::io::Error| {
                    Error::data(path, format!("corrupt compressed MAT element: {e}"))
                };
                let mut z = flate2::read::ZlibDecoder::new(payload);
                let mut tag = [0u8; 8];
                z.read_exact(&mut tag).map_err(corrupt)?;
                let declared = u32::from_le_bytes([tag[4], tag[5], tag[6], tag[7]]) as usize;
                if declared > MAX_ELEMENT_BYTES {
                    return Err(Error::data(
                        path,
                        format!(
                            "a compressed MAT element declares {declared} bytes, more than any \
                             SVHN variable ({MAX_ELEMENT_BYTES})"
                        ),
                    ));
                }
                let mut inner = tag.to_vec();
                z.take(declared as u64)
                    .read_to_end(&mut inner)
                    .map_err(corrupt)?;
                if inner.len() < 8 + declared {
                    return Err(Error::data(
                        path,
                        format!(
                            "truncated compressed MAT element: {} of the {declared} bytes it declares",
                            inner.len() - 8
                        ),
                    ));
                }
                let mut ic = Cursor {
                    b: &inner,
                    pos: 0,
                    path,
                };
                let (it, ip) = ic.element()?;
                if it == MI_MATRIX {
                    out.extend(parse_matrix(ip, path)?);
                }
            }
            _ => {}
        }
    }
    if c.pos < bytes.len() {
        return Err(Error::data(
            path,
            format!(
                "truncated: {} bytes after the last whole MAT element",
                bytes.len() - c.pos
            ),
        ));
    }
    if out.is_empty() {
        return Err(Error::data(
            path,
            format!(
                "truncated or empty: no numeric variables after the MAT-file header ({} bytes)",
                bytes.len()
            ),
        ));
    }
    Ok(out)
}

/// Reads one SVHN split: `X` 32x32x3xN uint8 (column-major) becomes NCHW, and
/// `y` (1..=10, 10 meaning digit 0) becomes 0..=9.
pub fn read_split(path: &Path) -> Result<RawSplit> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let vars = parse_mat(&bytes, path)?;
    let x = vars
        .iter()
        .find(|v| v.name == "X")
        .ok_or_else(|| Error::data(path, "no variable X"))?;
    let y = vars
        .iter()
        .find(|v| v.name == "y")
        .ok_or_else(|| Error::data(path, "no variable y"))?;
    if x.dims.len() != 4 || x.dims[0] != 32 || x.dims[1] != 32 || x.dims[2] != 3 {
        return Err(Error::data(
            path,
            format!("X has dimensions {:?}, expected 32x32x3xN", x.dims),
        ));
    }
    if x.data_type != MI_UINT8 {
        return Err(Error::data(
            path,
            format!("X has MAT data type {}, expected uint8", x.data_type),
        ));
    }
    let n = x.dims[3];
    if n == 0 {
        return Err(Error::data(path, "X holds no images (32x32x3x0)"));
    }
    let yv = y.to_f64(path)?;
    if yv.len() != n {
        return Err(Error::data(
            path,
            format!(
                "count mismatch: X has {n} images, y has {} labels",
                yv.len()
            ),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for (i, &v) in yv.iter().enumerate() {
        if v.fract() != 0.0 || !(1.0..=10.0).contains(&v) {
            return Err(Error::data(
                path,
                format!("label {v} at index {i} is not in 1..=10"),
            ));
        }
        labels.push(v as u32 % 10);
    }
    // MATLAB X(i, j, c, n) with i the row sits at i + 32 j + 1024 c + 3072 n.
    let mut pixels = vec![0u8; n * 3072];
    for img in 0..n {
        let src = &x.data[img * 3072..(img + 1) * 3072];
        let dst = &mut pixels[img * 3072..(img + 1) * 3072];
        for c in 0..3 {
            for j in 0..32 {
                for i in 0..32 {
                    dst[c * 1024 + i * 32 + j] = src[c * 1024 + j * 32 + i];
                }
            }
        }
    }
    Ok(RawSplit { pixels, labels })
}

/// File names of the two SVHN splits (train, test).
pub const FILES: [&str; 2] = ["train_32x32.mat", "test_32x32.mat"];
