//! IDX files (MNIST, Fashion-MNIST): big-endian header `0 0 type ndims`, `ndims`
//! u32 sizes, then the data. Images are `idx3-ubyte` (type 0x08, 3 dims), labels
//! `idx1-ubyte` (1 dim). Files may be gzip-compressed (detected by content).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::RawSplit;
use crate::{Error, Result};

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone)]
pub struct IdxArray {
    /// Dimension sizes.
    pub dims: Vec<usize>,
    /// `prod(dims)` bytes.
    pub data: Vec<u8>,
}

/// Reads a whole file, transparently decompressing gzip content (magic `1f 8b`).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decompress_if_gz(raw, path)
}

/// The first two bytes of every gzip member.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decompresses `raw` if it starts with the gzip magic; `path` names it in errors.
pub fn decompress_if_gz(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    // Member by member (a file may hold several), so that bytes after the last
    // member are reported as what they are instead of as a broken member.
    let mut out = Vec::new();
    let mut rest: &[u8] = &raw;
    while !rest.is_empty() {
        if !rest.starts_with(&GZIP_MAGIC) {
            return Err(Error::data(
                path,
                format!(
                    "{} bytes of trailing data after the gzip stream (the file was \
                     appended to or damaged)",
                    rest.len()
                ),
            ));
        }
        let mut member = flate2::bufread::GzDecoder::new(rest);
        member
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path, format!("invalid or truncated gzip data: {e}")))?;
        rest = member.into_inner();
    }
    Ok(out)
}

/// Parses IDX content of unsigned bytes with `expect_dims` dimensions.
pub fn parse_idx_u8(bytes: &[u8], expect_dims: usize, path: &Path) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(Error::data(path, "truncated: no IDX header"));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::data(
            path,
            format!(
                "wrong magic {:02x}{:02x}{:02x}{:02x}: not an IDX file",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(Error::data(
            path,
            format!(
                "IDX element type 0x{:02x}, expected 0x08 (unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims != expect_dims {
        return Err(Error::data(
            path,
            format!("IDX file has {ndims} dimensions, expected {expect_dims}"),
        ));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(Error::data(path, "truncated: incomplete IDX header"));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::data(path, "IDX dimensions overflow"))?;
    let have = bytes.len() - header;
    if have < count {
        return Err(Error::data(
            path,
            format!("truncated: dimensions {dims:?} need {count} data bytes, file has {have}"),
        ));
    }
    if have > count {
        return Err(Error::data(
            path,
            format!(
                "{} unexpected trailing bytes after {count} data bytes",
                have - count
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads an image file and a label file of one split into `RawSplit` (1 channel),
/// returning it with the image height and width. Checks that the counts agree and
/// that labels are below `num_classes`.
pub fn read_split(
    images: &Path,
    labels: &Path,
    num_classes: usize,
) -> Result<(RawSplit, usize, usize)> {
    let img = parse_idx_u8(&read_maybe_gz(images)?, 3, images)?;
    let lab = parse_idx_u8(&read_maybe_gz(labels)?, 1, labels)?;
    let (n, h, w) = (img.dims[0], img.dims[1], img.dims[2]);
    if n == 0 {
        return Err(Error::data(
            images,
            "holds no images (the IDX header says 0)",
        ));
    }
    if h == 0 || w == 0 {
        return Err(Error::data(
            images,
            format!("images of {h}x{w} pixels (the IDX header says so): no pixels to learn from"),
        ));
    }
    if lab.dims[0] != n {
        return Err(Error::data(
            labels,
            format!(
                "count mismatch: {} labels but {} has {n} images",
                lab.dims[0],
                images.display()
            ),
        ));
    }
    if let Some((i, l)) = lab
        .data
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= num_classes)
    {
        return Err(Error::data(
            labels,
            format!("label {l} at index {i} out of range for {num_classes} classes"),
        ));
    }
    Ok((
        RawSplit {
            pixels: img.data,
            labels: lab.data.iter().map(|&l| l as u32).collect(),
        },
        h,
        w,
    ))
}

/// The four IDX file stems of a dataset: train images, train labels, test images,
/// test labels (each may be present raw or with `.gz`).
pub const IDX_STEMS: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Finds `stem` or `stem.gz` in `dir`.
pub fn find_stem(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_string(), format!("{stem}.gz")]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Loads both splits from a directory holding the four IDX files.
pub fn read_dir(dir: &Path, num_classes: usize) -> Result<(RawSplit, RawSplit, usize, usize)> {
    let f = |s: &str| {
        find_stem(dir, s).ok_or_else(|| Error::data(dir, format!("missing {s} (or {s}.gz)")))
    };
    let (train, h, w) = read_split(&f(IDX_STEMS[0])?, &f(IDX_STEMS[1])?, num_classes)?;
    let test_img = f(IDX_STEMS[2])?;
    let (test, th, tw) = read_split(&test_img, &f(IDX_STEMS[3])?, num_classes)?;
    if (th, tw) != (h, w) {
        return Err(Error::data(
            test_img,
            format!("test images are {th}x{tw}, train images {h}x{w}"),
        ));
    }
    Ok((train, test, h, w))
}
