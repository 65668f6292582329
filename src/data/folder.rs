//! An image folder: one subfolder per class (sorted by name: label 0, 1, ...),
//! PNG or JPEG files, all of the same size. Layout `ROOT/train/<class>/` plus
//! `ROOT/test/<class>/` gives both splits; `ROOT/<class>/` alone gives a training
//! split and an empty test split. Images are grey (1 channel) when every image is
//! grey, RGB (3 channels) otherwise. The normalisation mean and std are computed
//! per channel from the training split. Images above [`MAX_IMAGE_SIDE`] pixels on a
//! side are refused from their header, before they are decoded. At least two classes
//! are needed, and the test split must have exactly the training split's classes.

use std::path::{Path, PathBuf};

use super::{Dataset, RawSplit};
use crate::{Error, Result};

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// Class folders of `dir`: its subdirectories, sorted.
fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect())
}

struct Decoded {
    rgb: Vec<u8>,
    grey: bool,
    w: u32,
    h: u32,
}

/// Largest side, in pixels, of an image-folder image. Condensation learns tiny
/// images (the reference's datasets are 28x28 and 32x32); an image larger than this
/// is a mistake or a photo to resize first, and decoding it could take seconds and
/// gigabytes.
pub const MAX_IMAGE_SIDE: u32 = 1024;

fn reader(p: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(p)
        .map_err(|e| Error::io(p, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(p, e))
}

fn decode(p: &Path) -> Result<Decoded> {
    let (w, h) = reader(p)?
        .into_dimensions()
        .map_err(|e| Error::data(p, format!("cannot read the image header: {e}")))?;
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(Error::data(
            p,
            format!(
                "image is {w}x{h}, larger than {MAX_IMAGE_SIDE} pixels on a side; resize the \
                 folder's images first (e.g. `mogrify -resize 32x32! */*/*.png` with \
                 ImageMagick, or PIL's Image.resize)"
            ),
        ));
    }
    let img = reader(p)?
        .decode()
        .map_err(|e| Error::data(p, format!("cannot decode image: {e}")))?;
    let grey = !img.color().has_color();
    let rgb = img.to_rgb8();
    Ok(Decoded {
        w: rgb.width(),
        h: rgb.height(),
        rgb: rgb.into_raw(),
        grey,
    })
}

/// Images of a split: per image its label and HWC RGB bytes.
type LabelledImages = Vec<(u32, Vec<u8>)>;

/// Reads one split's images: (per image its label and HWC RGB bytes, all grey?).
fn read_split(
    classes: &[PathBuf],
    size: &mut Option<(u32, u32, PathBuf)>,
) -> Result<(LabelledImages, bool)> {
    let mut items = Vec::new();
    let mut all_grey = true;
    for (label, cdir) in classes.iter().enumerate() {
        for f in sorted_entries(cdir)?
            .into_iter()
            .filter(|p| p.is_file() && is_image(p))
        {
            let d = decode(&f)?;
            match size {
                None => *size = Some((d.w, d.h, f.clone())),
                Some((w, h, first)) if (*w, *h) != (d.w, d.h) => {
                    return Err(Error::data(
                        &f,
                        format!(
                            "image is {}x{}, but {} is {w}x{h}; all images must have one size",
                            d.w,
                            d.h,
                            first.display()
                        ),
                    ))
                }
                _ => {}
            }
            all_grey &= d.grey;
            items.push((label as u32, d.rgb));
        }
    }
    Ok((items, all_grey))
}

fn to_raw(items: Vec<(u32, Vec<u8>)>, channels: usize, plane: usize) -> RawSplit {
    let mut raw = RawSplit::default();
    for (l, rgb) in items {
        raw.labels.push(l);
        for c in 0..channels {
            raw.pixels.extend((0..plane).map(|i| rgb[i * 3 + c]));
        }
    }
    raw
}

/// Loads an image folder (see the module docs).
pub fn load(root: &Path) -> Result<Dataset> {
    let (train_root, test_root) = (root.join("train"), root.join("test"));
    let split_layout = train_root.is_dir() && test_root.is_dir();
    let classes = class_dirs(if split_layout { &train_root } else { root })?;
    if classes.is_empty() {
        return Err(Error::data(
            root,
            "no class subfolders (expected ROOT/<class>/*.png or ROOT/train/<class>/ and ROOT/test/<class>/)",
        ));
    }
    let names: Vec<String> = classes
        .iter()
        .map(|p| {
            p.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    if names.len() < 2 {
        return Err(Error::data(
            root,
            format!(
                "one class folder ('{}'): a classification dataset needs at least two",
                names[0]
            ),
        ));
    }
    let mut size = None;
    let (train_items, train_grey) = read_split(&classes, &mut size)?;
    if train_items.is_empty() {
        return Err(Error::data(root, "no PNG/JPEG images in the class folders"));
    }
    let (test_items, test_grey) = if split_layout {
        let test_classes: Vec<PathBuf> = names.iter().map(|n| test_root.join(n)).collect();
        if let Some(missing) = test_classes.iter().find(|p| !p.is_dir()) {
            return Err(Error::data(
                missing,
                "test class folder missing (train and test must have the same classes)",
            ));
        }
        if let Some(extra) = class_dirs(&test_root)?
            .into_iter()
            .find(|p| !test_classes.contains(p))
        {
            return Err(Error::data(
                extra,
                "class folder in test but not in train (train and test must have the same classes)",
            ));
        }
        read_split(&test_classes, &mut size)?
    } else {
        (Vec::new(), true)
    };
    let (w, h, _) = size.unwrap_or((0, 0, PathBuf::new()));
    let (w, h) = (w as usize, h as usize);
    let channels = if train_grey && test_grey { 1 } else { 3 };
    let train = to_raw(train_items, channels, w * h);
    let test = to_raw(test_items, channels, w * h);
    let (mean, std) = super::channel_stats(
        &train
            .pixels
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect::<Vec<_>>(),
        channels,
        w * h,
    );
    let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    // A constant channel has std 0; use 1 so normalisation stays finite.
    let std: Vec<f32> = std
        .iter()
        .map(|&s| if s > 1e-6 { s as f32 } else { 1.0 })
        .collect();
    let mut ds = Dataset::from_raw(
        format!("folder:{}", root.display()),
        root,
        (channels, h, w),
        names.len(),
        mean,
        std,
        &train,
        &test,
    )?;
    ds.class_names = names;
    ds.files = vec![root.to_path_buf()];
    Ok(ds)
}
