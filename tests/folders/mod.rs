//! Small image-folder datasets (`folder:PATH`) written by tests (`mod folders;`).

use std::path::Path;

/// Writes a two-class image folder under `root`: `train` and `test` grey
/// `side`x`side` PNG images per class (`root/{train,test}/{a,b}/<i>.png`), each a
/// pattern of its class, its index and `seed` (another seed, other pixels).
/// Returns the `folder:` dataset name.
pub fn grey_folder(root: &Path, side: u32, train: u32, test: u32, seed: u8) -> String {
    for (class_index, class) in ["a", "b"].into_iter().enumerate() {
        for (split, n) in [("train", train), ("test", test)] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                image::GrayImage::from_fn(side, side, |x, y| {
                    let v = x * 13 + y * 7 + i * 31 + class_index as u32 * 50;
                    image::Luma([(v as u8).wrapping_mul(seed)])
                })
                .save(dir.join(format!("{i}.png")))
                .unwrap();
            }
        }
    }
    format!("folder:{}", root.display())
}
