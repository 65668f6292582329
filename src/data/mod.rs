//! Real datasets: readers, normalisation, per-class index.
//!
//! Every reader returns raw `u8` pixels in NCHW order; [`Dataset`] holds them
//! normalised per channel as `(x / 255 - mean) / std` (docs/method.md §6), with the mean and
//! std of the table for the named datasets and computed from the training split for
//! an image folder. [`locate`] finds the files (`--data-dir`, `$DSA_DATA_DIR`,
//! standard places, then a checksum-verified download).

pub mod cifar;
#[cfg(feature = "image-folder")]
pub mod folder;
pub mod idx;
pub mod locate;
pub mod svhn;

use std::fmt;
use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::{Error, Result};

pub use locate::{load, LoadOptions};

/// The datasets this crate can load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetKind {
    /// MNIST digits (IDX files), 1x28x28, 10 classes.
    Mnist,
    /// Fashion-MNIST (IDX files), 1x28x28, 10 classes.
    FashionMnist,
    /// SVHN cropped digits (`train_32x32.mat`, `test_32x32.mat`), 3x32x32, 10 classes.
    Svhn,
    /// CIFAR-10 binary version, 3x32x32, 10 classes.
    Cifar10,
    /// CIFAR-100 binary version (fine labels), 3x32x32, 100 classes.
    Cifar100,
    /// A folder of PNG/JPEG images, one subfolder per class (see the `folder`
    /// module; reading one needs the `image-folder` feature).
    ImageFolder(PathBuf),
}

impl DatasetKind {
    /// Parses a dataset name as the CLI spells it (case-insensitive): `MNIST`,
    /// `FashionMNIST`, `SVHN`, `CIFAR10`, `CIFAR100`, or `folder:PATH`.
    pub fn parse(name: &str) -> Result<Self> {
        if let Some(p) = name.strip_prefix("folder:") {
            if p.is_empty() {
                return Err(Error::option(
                    "dataset",
                    "folder: needs a path (folder:PATH)",
                ));
            }
            return Ok(DatasetKind::ImageFolder(PathBuf::from(p)));
        }
        let norm: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match norm.as_str() {
            "mnist" => Ok(DatasetKind::Mnist),
            "fashionmnist" => Ok(DatasetKind::FashionMnist),
            "svhn" => Ok(DatasetKind::Svhn),
            "cifar10" => Ok(DatasetKind::Cifar10),
            "cifar100" => Ok(DatasetKind::Cifar100),
            _ => Err(Error::option(
                "dataset",
                format!(
                    "unknown dataset '{name}' (expected MNIST, FashionMNIST, SVHN, CIFAR10, \
                     CIFAR100 or folder:PATH)"
                ),
            )),
        }
    }

    /// The canonical name (`FashionMNIST`, ...; `folder:PATH` for an image folder).
    pub fn name(&self) -> String {
        match self {
            DatasetKind::Mnist => "MNIST".into(),
            DatasetKind::FashionMnist => "FashionMNIST".into(),
            DatasetKind::Svhn => "SVHN".into(),
            DatasetKind::Cifar10 => "CIFAR10".into(),
            DatasetKind::Cifar100 => "CIFAR100".into(),
            DatasetKind::ImageFolder(p) => format!("folder:{}", p.display()),
        }
    }

    /// Per-channel mean and std of docs/method.md §6 (`None` for an image folder, whose
    /// statistics are computed from its training split).
    pub fn normalisation(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        match self {
            DatasetKind::Mnist => Some((vec![0.1307], vec![0.3081])),
            DatasetKind::FashionMnist => Some((vec![0.2861], vec![0.3530])),
            DatasetKind::Svhn => Some((vec![0.4377, 0.4438, 0.4728], vec![0.1980, 0.2010, 0.1970])),
            DatasetKind::Cifar10 => {
                Some((vec![0.4914, 0.4822, 0.4465], vec![0.2023, 0.1994, 0.2010]))
            }
            DatasetKind::Cifar100 => {
                Some((vec![0.5071, 0.4866, 0.4409], vec![0.2673, 0.2564, 0.2762]))
            }
            DatasetKind::ImageFolder(_) => None,
        }
    }

    /// The number of classes (`None` for an image folder: it is the subfolder count).
    pub fn num_classes(&self) -> Option<usize> {
        match self {
            DatasetKind::Cifar100 => Some(100),
            DatasetKind::ImageFolder(_) => None,
            _ => Some(10),
        }
    }

    /// Whether the dataset holds digits, where a horizontal flip changes meaning
    /// (MNIST, SVHN): the README strategy drops `flip` for them (docs/method.md §2.3).
    pub fn is_digits(&self) -> bool {
        matches!(self, DatasetKind::Mnist | DatasetKind::Svhn)
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Raw pixels of one split as a reader returns them: `u8` NCHW, labels in `0..K`.
#[derive(Debug, Clone, Default)]
pub struct RawSplit {
    /// `n * C * H * W` bytes, NCHW.
    pub pixels: Vec<u8>,
    /// `n` labels.
    pub labels: Vec<u32>,
}

/// One split of a dataset: normalised NCHW images and their labels.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// `n * C * H * W` values, NCHW, normalised per channel.
    pub images: Vec<f32>,
    /// `n` labels in `0..num_classes`.
    pub labels: Vec<u32>,
    /// Number of images.
    pub n: usize,
}

impl Split {
    /// Copies the images at `indices` (each `image_len = C*H*W` values) into one
    /// contiguous NCHW batch. Indices out of range give a shape error.
    pub fn gather(&self, indices: &[u32], image_len: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(indices.len() * image_len);
        for &i in indices {
            let i = i as usize;
            if i >= self.n {
                return Err(Error::Shape(format!(
                    "gather: index {i} out of range for a split of {} images",
                    self.n
                )));
            }
            out.extend_from_slice(&self.images[i * image_len..(i + 1) * image_len]);
        }
        Ok(out)
    }

    /// A class-balanced subset of at most `limit` images: class `c` keeps its first
    /// `limit / K` images (plus one for the first `limit % K` classes), in the
    /// original order. Deterministic; used by `--limit-train` / `--limit-test`.
    pub fn limit_balanced(&self, limit: usize, num_classes: usize, image_len: usize) -> Split {
        if limit >= self.n || num_classes == 0 {
            return self.clone();
        }
        let mut quota: Vec<usize> = (0..num_classes)
            .map(|c| limit / num_classes + usize::from(c < limit % num_classes))
            .collect();
        let mut keep = Vec::with_capacity(limit);
        for (i, &l) in self.labels.iter().enumerate() {
            let l = l as usize;
            if l < num_classes && quota[l] > 0 {
                quota[l] -= 1;
                keep.push(i);
            }
        }
        let mut images = Vec::with_capacity(keep.len() * image_len);
        let mut labels = Vec::with_capacity(keep.len());
        for &i in &keep {
            images.extend_from_slice(&self.images[i * image_len..(i + 1) * image_len]);
            labels.push(self.labels[i]);
        }
        Split {
            n: labels.len(),
            images,
            labels,
        }
    }
}

/// A loaded dataset: both splits normalised, with the statistics used.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Canonical name (see [`DatasetKind::name`]).
    pub name: String,
    /// Channels C.
    pub channels: usize,
    /// Height H.
    pub height: usize,
    /// Width W.
    pub width: usize,
    /// Number of classes K.
    pub num_classes: usize,
    /// Class names (folder names for an image folder, `"0"`.. otherwise).
    pub class_names: Vec<String>,
    /// Per-channel mean used for normalisation (in \[0, 1\] pixel units).
    pub mean: Vec<f32>,
    /// Per-channel std used for normalisation.
    pub std: Vec<f32>,
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
    /// The files (or, for an image folder, the folder) the splits were read from,
    /// as found; empty for a dataset built in memory.
    pub files: Vec<PathBuf>,
}

impl Dataset {
    /// Values per image, `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// SHA-256 (hex) of what the computation sees of this dataset: shape, class
    /// names, normalisation and both splits' normalised images and labels. Not the
    /// name (an image folder's name holds its path): independent of where the files
    /// were found or how their path was spelled.
    pub fn digest(&self) -> String {
        let mut h = crate::digest::Fields::default();
        for d in [self.channels, self.height, self.width, self.num_classes] {
            h.put(&(d as u64).to_le_bytes());
        }
        for c in &self.class_names {
            h.put(c.as_bytes());
        }
        h.put(bytemuck::cast_slice(&self.mean));
        h.put(bytemuck::cast_slice(&self.std));
        for split in [&self.train, &self.test] {
            h.put(bytemuck::cast_slice(&split.images));
            h.put(bytemuck::cast_slice(&split.labels));
        }
        h.hex()
    }

    /// Builds a dataset from raw `u8` splits, normalising with `mean`/`std`
    /// (`x/255 - mean) / std` per channel). Checks sizes and label ranges;
    /// `source` names the data in errors.
    #[allow(clippy::too_many_arguments)]
    pub fn from_raw(
        name: impl Into<String>,
        source: impl Into<PathBuf>,
        (channels, height, width): (usize, usize, usize),
        num_classes: usize,
        mean: Vec<f32>,
        std: Vec<f32>,
        train: &RawSplit,
        test: &RawSplit,
    ) -> Result<Dataset> {
        let source = source.into();
        if mean.len() != channels || std.len() != channels {
            return Err(Error::data(
                &source,
                format!(
                    "normalisation has {} means and {} stds for {channels} channels",
                    mean.len(),
                    std.len()
                ),
            ));
        }
        if let Some(s) = std
            .iter()
            .find(|s| (**s).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
        {
            return Err(Error::data(&source, format!("std {s} is not positive")));
        }
        let norm = |raw: &RawSplit, what: &str| -> Result<Split> {
            let len = channels * height * width;
            let n = raw.labels.len();
            if raw.pixels.len() != n * len {
                return Err(Error::data(
                    &source,
                    format!(
                        "{what}: {} pixel bytes for {n} labels of {channels}x{height}x{width}",
                        raw.pixels.len()
                    ),
                ));
            }
            if let Some(l) = raw.labels.iter().find(|l| **l as usize >= num_classes) {
                return Err(Error::data(
                    &source,
                    format!("{what}: label {l} out of range for {num_classes} classes"),
                ));
            }
            let plane = height * width;
            let mut images = vec![0f32; raw.pixels.len()];
            for (i, (o, &p)) in images.iter_mut().zip(&raw.pixels).enumerate() {
                let c = (i / plane) % channels;
                *o = (p as f32 / 255.0 - mean[c]) / std[c];
            }
            Ok(Split {
                images,
                labels: raw.labels.clone(),
                n,
            })
        };
        let train = norm(train, "train split")?;
        let test = norm(test, "test split")?;
        Ok(Dataset {
            name: name.into(),
            channels,
            height,
            width,
            num_classes,
            class_names: (0..num_classes).map(|c| c.to_string()).collect(),
            mean,
            std,
            train,
            test,
            files: Vec::new(),
        })
    }

    /// Class-balanced subsets (see [`Split::limit_balanced`]); `None` keeps a split whole.
    pub fn limit(&mut self, train: Option<usize>, test: Option<usize>) {
        let (k, len) = (self.num_classes, self.image_len());
        if let Some(n) = train {
            self.train = self.train.limit_balanced(n, k, len);
        }
        if let Some(n) = test {
            self.test = self.test.limit_balanced(n, k, len);
        }
    }

    /// Per-channel mean and (population) std of the normalised training images.
    pub fn train_channel_stats(&self) -> (Vec<f64>, Vec<f64>) {
        channel_stats(&self.train.images, self.channels, self.height * self.width)
    }
}

/// Per-channel mean and population std of NCHW values (`plane = H*W`).
pub fn channel_stats(values: &[f32], channels: usize, plane: usize) -> (Vec<f64>, Vec<f64>) {
    let mut sum = vec![0f64; channels];
    let mut sq = vec![0f64; channels];
    let mut cnt = vec![0f64; channels];
    if plane == 0 || channels == 0 {
        return (sum, sq);
    }
    for (i, chunk) in values.chunks(plane).enumerate() {
        let c = i % channels;
        for &v in chunk {
            sum[c] += v as f64;
            sq[c] += (v as f64) * (v as f64);
        }
        cnt[c] += chunk.len() as f64;
    }
    let mean: Vec<f64> = (0..channels).map(|c| sum[c] / cnt[c].max(1.0)).collect();
    let std = (0..channels)
        .map(|c| {
            (sq[c] / cnt[c].max(1.0) - mean[c] * mean[c])
                .max(0.0)
                .sqrt()
        })
        .collect();
    (mean, std)
}

/// Per-class index lists of a split, for sampling real images (docs/method.md §4.3).
#[derive(Debug, Clone)]
pub struct ClassIndex {
    by_class: Vec<Vec<u32>>,
}

impl ClassIndex {
    /// Indexes `labels` into `num_classes` lists (labels >= `num_classes` are ignored).
    pub fn new(labels: &[u32], num_classes: usize) -> Self {
        let mut by_class = vec![Vec::new(); num_classes];
        for (i, &l) in labels.iter().enumerate() {
            if let Some(v) = by_class.get_mut(l as usize) {
                v.push(i as u32);
            }
        }
        ClassIndex { by_class }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.by_class.len()
    }

    /// Number of images of `class` (0 for an unknown class).
    pub fn class_len(&self, class: usize) -> usize {
        self.by_class.get(class).map_or(0, Vec::len)
    }

    /// The smallest class size.
    pub fn min_class_len(&self) -> usize {
        self.by_class.iter().map(Vec::len).min().unwrap_or(0)
    }

    /// All indices of `class`, in split order.
    pub fn indices(&self, class: usize) -> &[u32] {
        self.by_class.get(class).map_or(&[], Vec::as_slice)
    }

    /// The first `n` entries of a fresh random permutation of the class's indices
    /// (all of them, shuffled, if `n` exceeds the class size): no repetition within
    /// one draw, a new permutation at every call.
    pub fn sample<R: Rng + ?Sized>(&self, class: usize, n: usize, rng: &mut R) -> Vec<u32> {
        let mut idx = self.indices(class).to_vec();
        idx.shuffle(rng);
        idx.truncate(n);
        idx
    }
}
