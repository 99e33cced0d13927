//! The Oxford-IIIT Pet layout, as its archives unpack:
//!
//! ```text
//! <root>/images/<stem>.jpg                (RGB, grey or CMYK JPEGs; other files are skipped)
//! <root>/annotations/trimaps/<stem>.png   (values 1 = pet, 2 = background, 3 = border)
//! ```
//!
//! Three classes, as the PAT paper trains them: the trimap values 1, 2 and 3 become the class
//! ids 0 (`pet`), 1 (`background`) and 2 (`border`); any other value is an error naming the
//! file and the pixel. The dataset ships no train/val/test split of its trimaps that the
//! paper uses, so the samples (every image with a trimap, sorted by stem) are shuffled with a
//! fixed seed ([`SPLIT_SEED`]) and cut 0.8 / 0.1 / 0.1 into `train`, `val` and `test`: the
//! same split on every machine and for every run, whatever the run's seed. An image without
//! a trimap, or a trimap without an image, is an error.

use std::path::Path;

use super::folder::{list, pair};
use super::paired::Paired;
use super::{bad, DatasetInfo};
use crate::error::Result;

/// Seed of the shuffle that splits the samples (fixed: the split is part of the layout).
pub const SPLIT_SEED: u64 = 0x0005_EED0_F7E7;

/// The three classes, in id order, with the colours `wgseg infer` paints them.
const CLASSES: [(&str, [u8; 3]); 3] = [
    ("pet", [220, 20, 60]),
    ("background", [0, 0, 0]),
    ("border", [255, 255, 255]),
];

/// The trimap → class id table: 1, 2, 3 → 0, 1, 2; every other value → 3, which is not a
/// class (so [`load_pair`] reports it, with the trimap's own value).
fn trimap_to_class() -> [u8; 256] {
    let mut map = [3u8; 256];
    for (v, m) in map.iter_mut().enumerate().skip(1).take(3) {
        *m = (v - 1) as u8;
    }
    map
}

/// The three-class description.
pub fn pet_info() -> DatasetInfo {
    DatasetInfo::of("oxford-iiit-pet", CLASSES)
}

/// Whether `root` holds the Oxford-IIIT Pet layout (`images/` and `annotations/trimaps/`).
pub fn is_pet(root: &Path) -> bool {
    root.join("images").is_dir() && root.join("annotations").join("trimaps").is_dir()
}

/// The next value of the splitmix64 generator (Steele, Lea and Flood) in `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A permutation of `0..n` by Fisher–Yates on the splitmix64 sequence from `seed`: stable
/// across Rust and crate versions, as a split that is part of the layout must be.
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// The sample indices (into the sorted list of `n`) of `split`: the first 80 % of the
/// seeded permutation for `train`, the next 10 % (rounded) for `val`, the rest for `test`.
pub fn split_indices(n: usize, split: &str) -> Option<Vec<usize>> {
    let p = permutation(n, SPLIT_SEED);
    let train = (n * 8 + 5) / 10;
    let val = (n + 5) / 10;
    let range = match split {
        "train" => 0..train,
        "val" => train..(train + val).min(n),
        "test" => (train + val).min(n)..n,
        _ => return None,
    };
    let mut idx = p[range].to_vec();
    idx.sort_unstable();
    Some(idx)
}

/// Pairs `images/*.jpg` with `annotations/trimaps/*.png` under `root` and keeps `split`
/// (`train`, `val` or `test`).
pub fn open(root: &Path, split: &str, scale: f32) -> Result<Paired> {
    let image_dir = root.join("images");
    let label_dir = root.join("annotations").join("trimaps");
    let images = list(&image_dir, &["jpg", "jpeg"])?;
    let labels = list(&label_dir, &["png"])?;
    let all = pair(images, labels, &label_dir, &image_dir)?;
    if all.is_empty() {
        return Err(bad(&image_dir, "no images (*.jpg) with trimaps"));
    }
    let Some(idx) = split_indices(all.len(), split) else {
        return Err(bad(
            root,
            format!(
                "split \"{split}\" not found (the Oxford-IIIT Pet layout has train, val and \
                 test: 0.8 / 0.1 / 0.1 of its images)"
            ),
        ));
    };
    if idx.is_empty() {
        return Err(bad(
            &image_dir,
            format!(
                "split \"{split}\" is empty ({} images are too few to split 0.8 / 0.1 / 0.1)",
                all.len()
            ),
        ));
    }
    let items = idx.into_iter().map(|i| all[i].clone()).collect();
    Paired::new(pet_info(), trimap_to_class(), (root, split), scale, items)
}

#[cfg(test)]
mod tests {
    use super::{permutation, split_indices, splitmix64};

    #[test]
    fn the_split_is_a_partition_of_80_10_10() {
        for n in [1usize, 2, 9, 10, 11, 37, 7390] {
            let parts: Vec<Vec<usize>> = ["train", "val", "test"]
                .iter()
                .map(|s| split_indices(n, s).unwrap_or_default())
                .collect();
            let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "n = {n}: not a partition");
            assert_eq!(parts[0].len(), (n * 8 + 5) / 10, "n = {n}: train size");
        }
        // 7390 images, the dataset's count: 5912 / 739 / 739.
        let sizes: Vec<usize> = ["train", "val", "test"]
            .iter()
            .map(|s| split_indices(7390, s).map_or(0, |v| v.len()))
            .collect();
        assert_eq!(sizes, [5912, 739, 739]);
        assert!(split_indices(10, "validation").is_none());
    }

    #[test]
    fn the_permutation_is_fixed() {
        // The split is part of the layout, so the generator must be the published one:
        // splitmix64 from state 0 starts with 0xE220A8397B1DCDAF.
        let mut state = 0;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
        let p = permutation(10, super::SPLIT_SEED);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(p, (0..10).collect::<Vec<_>>(), "a shuffle");
    }
}
