//! The tail-class memory bank (SPEC §4, `wgseg::data::bank`) on constructed batches and on
//! the built-in data through the loader. Data only: no GPU.

mod common;

use std::sync::Arc;

use common::Tmp;
use wgseg::data::bank::{Entry, Paste};
use wgseg::data::image_io::{resize_bilinear, resize_bilinear_f32, resize_nearest};
use wgseg::data::{
    self, scaled_dim, Augment, BankConfig, BankState, Batch, ClassStats, Dataset, Loader,
    LoaderState, MemoryBank,
};
use wgseg::Error;

type R = Result<(), Box<dyn std::error::Error>>;

/// Classes of the constructed batches: 0 and 1 are background, 2..=5 tail.
const C: usize = 6;

/// Distinct values for image `salt`: channel `k`, pixel `i` → `salt·10⁴ + k·10³ + i/4`.
fn values(h: usize, w: usize, salt: usize) -> Vec<f32> {
    (0..3 * h * w)
        .map(|j| (salt * 10_000 + (j / (h * w)) * 1000) as f32 + (j % (h * w)) as f32 * 0.25)
        .collect()
}

/// A batch of one or more `h×w` images with the given labels (concatenated).
fn batch(h: usize, w: usize, labels: Vec<u8>, salt: usize, k: usize) -> Batch {
    let b = labels.len() / (h * w);
    let images = (0..b).flat_map(|n| values(h, w, salt + n)).collect();
    Batch {
        images,
        labels,
        b,
        h,
        w,
        indices: (0..b).collect(),
        state: LoaderState {
            epoch: 0,
            batch_in_epoch: k,
        },
        bank: None,
    }
}

/// `h×w` label map of class 0 with `class` on the cells listed as `(y, x)`.
fn label_with(h: usize, w: usize, cells: &[(usize, usize, u8)]) -> Vec<u8> {
    let mut l = vec![0u8; h * w];
    for &(y, x, c) in cells {
        l[y * w + x] = c;
    }
    l
}

/// An L-shaped object of class 2 in an 8×10 image: rows 2..=4, cols 3..=6, not a rectangle.
fn l_shape() -> Vec<(usize, usize, u8)> {
    let mut v = vec![];
    for y in 2..=4 {
        v.push((y, 3, 2));
    }
    for x in 3..=6 {
        v.push((4, x, 2));
    }
    v.push((2, 4, 1)); // a background pixel inside the bounding box
    v
}

fn bank(tail: &[u8], slots: usize, rs: f32, resize: f32, seed: u64) -> MemoryBank {
    let cfg = BankConfig {
        tail: tail.to_vec(),
        slots,
        rs,
        resize,
    };
    MemoryBank::new(cfg, C, seed, None).unwrap_or_else(|e| panic!("{e}"))
}

/// Checks that `after` is `before` with exactly the class pixels of `patch` (an `ph×pw`
/// mask with CHW values) written at `p.offset` (clipped), and nothing else changed.
#[allow(clippy::too_many_arguments)]
fn check_paste(
    before: &Batch,
    after: &Batch,
    p: &Paste,
    mask: &[u8],
    vals: &[f32],
    (ph, pw): (usize, usize),
) {
    let (h, w) = (before.h, before.w);
    let hw = h * w;
    assert_eq!(p.size, (ph, pw), "patch size");
    let mut written = 0;
    for y in 0..h {
        for x in 0..w {
            let (py, px) = (y as i64 - p.offset.0, x as i64 - p.offset.1);
            let inside = (0..ph as i64).contains(&py) && (0..pw as i64).contains(&px);
            let at = p.image * hw + y * w + x;
            if inside && mask[py as usize * pw + px as usize] != 0 {
                let q = py as usize * pw + px as usize;
                written += 1;
                assert_eq!(after.labels[at], p.class, "label at ({y}, {x})");
                for k in 0..3 {
                    let got = after.images[p.image * 3 * hw + k * hw + y * w + x];
                    let want = vals[k * ph * pw + q];
                    assert_eq!(got.to_bits(), want.to_bits(), "channel {k} at ({y}, {x})");
                }
            } else {
                assert_eq!(after.labels[at], before.labels[at], "label at ({y}, {x})");
                for k in 0..3 {
                    let i = p.image * 3 * hw + k * hw + y * w + x;
                    assert_eq!(after.images[i].to_bits(), before.images[i].to_bits());
                }
            }
        }
    }
    assert_eq!(p.pixels, written);
}

/// The patch SPEC §4 pastes from a whole stored crop: resize the crop by `p` (bilinear
/// values, nearest mask), then the bounding box of the class's pixels. Returns mask, values,
/// size.
fn expected_patch(img: &[f32], lab: &[u8], h: usize, w: usize, class: u8, p: f32) -> Patch {
    let (nh, nw) = (scaled_dim(h, p), scaled_dim(w, p));
    let m: Vec<u8> = lab.iter().map(|&v| u8::from(v == class)).collect();
    let mr = resize_nearest(&m, h, w, nh, nw);
    let ir = resize_bilinear_f32(img, 3, h, w, nh, nw);
    let cells: Vec<(usize, usize)> = (0..nh * nw)
        .filter(|&i| mr[i] != 0)
        .map(|i| (i / nw, i % nw))
        .collect();
    let y0 = cells.iter().map(|c| c.0).min().unwrap_or(0);
    let y1 = cells.iter().map(|c| c.0).max().unwrap_or(0);
    let x0 = cells.iter().map(|c| c.1).min().unwrap_or(0);
    let x1 = cells.iter().map(|c| c.1).max().unwrap_or(0);
    let (ph, pw) = (y1 - y0 + 1, x1 - x0 + 1);
    let mut mask = vec![0u8; ph * pw];
    let mut vals = vec![0f32; 3 * ph * pw];
    for y in 0..ph {
        for x in 0..pw {
            let s = (y0 + y) * nw + x0 + x;
            mask[y * pw + x] = mr[s];
            for k in 0..3 {
                vals[(k * ph + y) * pw + x] = if mr[s] != 0 { ir[k * nh * nw + s] } else { 0.0 };
            }
        }
    }
    Patch {
        mask,
        vals,
        size: (ph, pw),
    }
}

struct Patch {
    mask: Vec<u8>,
    vals: Vec<f32>,
    size: (usize, usize),
}

#[test]
fn resize_bilinear_f32_matches_the_byte_resize() {
    // Same taps as the u8 resize: on byte-valued input they differ only by its rounding.
    let (h, w) = (5, 7);
    let bytes: Vec<u8> = (0..h * w * 3).map(|i| (i * 37 % 251) as u8).collect();
    let planes: Vec<f32> = (0..3 * h * w)
        .map(|j| bytes[(j % (h * w)) * 3 + j / (h * w)] as f32)
        .collect();
    for (nh, nw) in [(3, 4), (9, 11), (5, 7), (10, 14)] {
        let a = resize_bilinear(&bytes, h, w, 3, nh, nw);
        let b = resize_bilinear_f32(&planes, 3, h, w, nh, nw);
        for k in 0..3 {
            for i in 0..nh * nw {
                let (x, y) = (a[i * 3 + k] as f32, b[k * nh * nw + i]);
                assert!((x - y).abs() <= 0.5, "{nh}×{nw} c{k} px{i}: {x} vs {y}");
            }
        }
    }
    // Upscaling 1×2 → 1×4: taps s = (d + 0.5)/2 − 0.5 = −0.25 (clamped 0), 0.25, 0.75, 1.25
    // (edge-clamped) → values 10, 10·0.75 + 30·0.25 = 15, 25, 30.
    assert_eq!(
        resize_bilinear_f32(&[10.0, 30.0], 1, 1, 2, 1, 4),
        [10.0, 15.0, 25.0, 30.0]
    );
}

#[test]
fn a_missing_class_is_pasted_with_the_stored_pixels() -> R {
    let (h, w) = (8, 10);
    let mut bk = bank(&[2, 3], 5, 1.0, 1.0, 11);
    // Batch 0: class 2 present (stored), class 3 missing with no entry (picked, skipped).
    let src = batch(h, w, label_with(h, w, &l_shape()), 0, 0);
    let mut a = src.clone();
    let log = bk.apply(&mut a);
    assert_eq!(log.stored.len(), 1);
    assert_eq!((log.stored[0].class, log.stored[0].slot), (2, 0));
    assert!(log.pasted.is_empty());
    assert_eq!(log.skipped, [(0, 3)]);
    assert!(
        a.images == src.images && a.labels == src.labels,
        "nothing pasted"
    );
    assert_eq!(a.bank.as_ref().map(|s| s.entries(2).len()), Some(1));
    // The entry: bounding box rows 2..=4, cols 3..=6, grown by one → origin (1, 2), 5×6.
    let st = bk.state();
    let e: &Entry = &st.entries(2)[0];
    assert_eq!((e.crop(), e.origin(), e.size()), ((8, 10), (1, 2), (5, 6)));
    for k in 0..3 {
        for y in 0..5 {
            for x in 0..6 {
                let want = src.images[k * h * w + (1 + y) * w + 2 + x];
                assert_eq!(e.pixels()[(k * 5 + y) * 6 + x], want);
            }
        }
    }
    assert_eq!(e.mask().iter().filter(|&&m| m != 0).count(), 6);
    assert_eq!(bk.bytes(), 5 * 6 * 13);
    // Later batches without class 2: it is pasted, exactly, at an in-bounds offset that
    // varies from batch to batch (uniform over 0..=5 × 0..=6).
    let want = expected_patch(&src.images, &src.labels, h, w, 2, 1.0);
    assert_eq!(want.size, (3, 4));
    let mut seen = std::collections::BTreeSet::new();
    for k in 1..200 {
        let before = batch(h, w, vec![1u8; h * w], 7, k);
        let mut after = before.clone();
        let log = bk.apply(&mut after);
        assert_eq!(log.pasted.len(), 1, "one paste");
        let p = log.pasted[0];
        assert_eq!((p.image, p.class, p.slot), (0, 2, 0));
        assert!((0..=5).contains(&p.offset.0) && (0..=6).contains(&p.offset.1));
        check_paste(&before, &after, &p, &want.mask, &want.vals, want.size);
        assert_eq!(p.pixels, 6);
        seen.insert(p.offset);
    }
    assert!(seen.len() > 30, "offsets vary: {} distinct", seen.len());
    let s = bk.stats();
    assert_eq!(s.tail, [2, 3]);
    assert_eq!((s.stored, s.updates), (vec![1, 0], vec![1, 0]));
    assert_eq!(
        (s.pastes[0], s.pasted_pixels[0], s.skipped[1]),
        (199, 6 * 199, 200)
    );
    Ok(())
}

#[test]
fn resized_pastes_equal_resizing_the_whole_crop() -> R {
    let (h, w) = (8, 10);
    let src = batch(h, w, label_with(h, w, &l_shape()), 0, 0);
    // 0.6: 8×10 → 5×6 (downscaled, the L thins out); 1.5 → 12×15; 3 → 24×30, the patch
    // (9×12) is larger than the 8×10 target, so it is clipped and its offset is ≤ 0.
    for p in [0.6f32, 1.5, 3.0] {
        let mut bk = bank(&[2], 5, 1.0, p, 5);
        bk.apply(&mut src.clone());
        let want = expected_patch(&src.images, &src.labels, h, w, 2, p);
        for k in 1..40 {
            let before = batch(h, w, vec![0u8; h * w], 3, k);
            let mut after = before.clone();
            let log = bk.apply(&mut after);
            assert_eq!(log.pasted.len(), 1, "p = {p}");
            let q = log.pasted[0];
            let (dy, dx) = (h as i64 - want.size.0 as i64, w as i64 - want.size.1 as i64);
            assert!(
                (dy.min(0)..=dy.max(0)).contains(&q.offset.0),
                "p = {p}: {q:?}"
            );
            assert!(
                (dx.min(0)..=dx.max(0)).contains(&q.offset.1),
                "p = {p}: {q:?}"
            );
            check_paste(&before, &after, &q, &want.mask, &want.vals, want.size);
            assert!(q.pixels > 0);
        }
    }
    Ok(())
}

#[test]
fn present_classes_are_stored_and_pasted_classes_are_not() -> R {
    let (h, w) = (6, 6);
    let mut bk = bank(&[2, 3], 5, 1.0, 1.0, 3);
    // Stock both classes from one image.
    let mut stock = batch(h, w, label_with(h, w, &[(1, 1, 2), (4, 4, 3)]), 0, 0);
    bk.apply(&mut stock);
    let log = bk.apply(&mut stock.clone());
    assert_eq!(log.stored.len(), 2, "both present: both stored");
    assert!(
        log.pasted.is_empty() && log.skipped.is_empty(),
        "nothing missing"
    );
    // Image 0 has class 2 only, image 1 class 3 only.
    let mut labels = label_with(h, w, &[(0, 0, 2), (0, 1, 2)]);
    labels.extend(label_with(h, w, &[(5, 5, 3)]));
    let mut b = batch(h, w, labels, 5, 1);
    let log = bk.apply(&mut b);
    let stored: Vec<_> = log.stored.iter().map(|s| (s.image, s.class)).collect();
    let pasted: Vec<_> = log.pasted.iter().map(|p| (p.image, p.class)).collect();
    assert_eq!(stored, [(0, 2), (1, 3)]);
    assert_eq!(pasted, [(0, 3), (1, 2)]);
    // Image 0 now holds class 3 (pasted) but the bank did not take it: 2 + 1 updates of
    // class 3 (two stock images, image 1), and its newest entry is image 1's pixel.
    let s = bk.stats();
    assert_eq!(
        (s.updates.clone(), s.stored.clone()),
        (vec![3, 3], vec![3, 3])
    );
    let st = bk.state();
    let e = &st.entries(3)[2];
    assert_eq!((e.origin(), e.size()), ((4, 4), (2, 2)));
    assert_eq!(
        e.pixels()[3],
        values(h, w, 6)[5 * w + 5],
        "stored from image 1"
    );
    assert!(b.labels[..h * w].contains(&3) && b.labels[h * w..].contains(&2));
    Ok(())
}

#[test]
fn later_pastes_overwrite_earlier_ones() -> R {
    // Entries covering a whole 4×4 image: every paste lands at (0, 0) over every pixel,
    // so the image ends with the values and label of the class pasted last.
    let (h, w) = (4, 4);
    let mut bk = bank(&[2, 3], 5, 1.0, 1.0, 9);
    bk.apply(&mut batch(h, w, vec![2; 16], 1, 0));
    bk.apply(&mut batch(h, w, vec![3; 16], 2, 1));
    let mut orders = std::collections::BTreeSet::new();
    for k in 2..30 {
        let mut b = batch(h, w, vec![0; 16], 3, k);
        let log = bk.apply(&mut b);
        assert_eq!(log.pasted.len(), 2);
        assert!(log
            .pasted
            .iter()
            .all(|p| p.offset == (0, 0) && p.pixels == 16));
        let last = log.pasted[1].class;
        assert!(b.labels.iter().all(|&v| v == last));
        let salt = if last == 2 { 1 } else { 2 };
        assert!(b.images == values(h, w, salt));
        orders.insert(last);
    }
    assert_eq!(orders.len(), 2, "both orders occur");
    Ok(())
}

/// A pseudo-random label map with blobs of a few classes (xorshift, deterministic).
fn blobs(h: usize, w: usize, mut s: u64, classes: &[u8]) -> Vec<u8> {
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut l = vec![0u8; h * w];
    for &c in classes {
        if next() % 3 == 0 {
            continue;
        }
        let (y0, x0) = ((next() % h as u64) as usize, (next() % w as u64) as usize);
        let (bh, bw) = (1 + (next() % 5) as usize, 1 + (next() % 7) as usize);
        for y in y0..(y0 + bh).min(h) {
            for x in x0..(x0 + bw).min(w) {
                if next() % 4 != 0 {
                    l[y * w + x] = c;
                }
            }
        }
    }
    l
}

#[test]
fn slots_and_memory_stay_bounded() -> R {
    let (h, w, b) = (12, 16, 4);
    let tail = [2u8, 3, 4, 5];
    let mut bk = bank(&tail, 3, 1.0, 1.0, 21);
    let cap = bk.capacity_bytes(h, w);
    assert_eq!(cap, 3 * 4 * 13 * h * w);
    let mut max_bytes = 0;
    for k in 0..100 {
        let labels = (0..b)
            .flat_map(|n| blobs(h, w, 1 + (k * b + n) as u64, &tail))
            .collect();
        let mut bt = batch(h, w, labels, k, k);
        let log = bk.apply(&mut bt);
        let st = bt.bank.as_ref().ok_or("no state on the batch")?;
        assert!(log.stored.iter().all(|s| s.slot < 3));
        for &c in &tail {
            assert!(st.entries(c).len() <= 3);
        }
        assert_eq!(st.bytes(), bk.bytes());
        assert!(bk.bytes() <= cap, "{} > {cap}", bk.bytes());
        max_bytes = max_bytes.max(bk.bytes());
    }
    let s = bk.stats();
    assert_eq!(s.stored, [3, 3, 3, 3], "every class filled its slots");
    assert!(
        s.updates.iter().all(|&u| u > 100),
        "and kept overwriting: {:?}",
        s.updates
    );
    assert!(s.pastes.iter().all(|&p| p > 20), "{:?}", s.pastes);
    eprintln!("400 images: max {max_bytes} B of a {cap} B bound; stats {s:?}");
    Ok(())
}

/// Runs a bank over 30 batches of blobs; returns the logs and the batches.
fn run(seed: u64) -> (Vec<wgseg::data::BankLog>, Vec<Batch>) {
    let (h, w) = (10, 12);
    let tail = [2u8, 3, 4, 5];
    let mut bk = bank(&tail, 2, 0.5, 1.3, seed);
    (0..30)
        .map(|k| {
            let labels = (0..3)
                .flat_map(|n| blobs(h, w, 100 + (k * 3 + n) as u64, &tail))
                .collect();
            let mut b = batch(h, w, labels, k, k);
            (bk.apply(&mut b), b)
        })
        .unzip()
}

#[test]
fn same_seed_same_pastes_other_seed_other_pastes() {
    let (la, ba) = run(1);
    let (lb, bb) = run(1);
    let (lc, bc) = run(2);
    assert!(la == lb && ba == bb, "same seed");
    assert!(la != lc && ba != bc, "another seed");
    assert!(la.iter().map(|l| l.pasted.len()).sum::<usize>() > 20);
}

#[test]
fn ceil_rs_of_the_missing_classes_are_pasted() -> R {
    let (h, w) = (6, 8);
    let tail = [0u8, 1, 2, 3, 4, 5];
    // (rs, classes present in the image, picks = ceil(rs · missing)):
    // 0.5·6 = 3; 0.34·6 = 2.04 → 3; 0.05·6 = 0.3 → 1; 0.5·4 = 2; (1/3)·3 = 1 (the f32
    // 1/3 times 3 is 1.00000003, still 1); 1·2 = 2; 0.05·20-like rounding is the same case.
    let cases: [(f32, &[u8], usize); 6] = [
        (0.5, &[], 3),
        (0.34, &[], 3),
        (0.05, &[], 1),
        (0.5, &[0, 1], 2),
        (1.0 / 3.0, &[0, 1, 2], 1),
        (1.0, &[0, 1, 2, 3], 2),
    ];
    for (rs, present, picks) in cases {
        let mut bk = bank(&tail, 5, rs, 1.0, 4);
        // Stock every class: each image of this batch is one class.
        let stock: Vec<u8> = (0..6u8).flat_map(|c| vec![c; h * w]).collect();
        bk.apply(&mut batch(h, w, stock, 0, 0));
        // Images with `present` classes in one corner each; 255 elsewhere.
        for k in 1..20 {
            let mut l = vec![255u8; h * w];
            for (i, &c) in present.iter().enumerate() {
                l[i] = c;
            }
            let mut b = batch(h, w, l, 1, k);
            let log = bk.apply(&mut b);
            assert!(log.skipped.is_empty());
            assert_eq!(log.pasted.len(), picks, "rs = {rs}, present {present:?}");
            let mut classes: Vec<u8> = log.pasted.iter().map(|p| p.class).collect();
            assert!(
                classes.iter().all(|c| !present.contains(c)),
                "only missing ones"
            );
            classes.sort_unstable();
            classes.dedup();
            assert_eq!(classes.len(), picks, "distinct classes");
        }
    }
    Ok(())
}

fn builtin() -> Result<(Arc<dyn Dataset>, BankConfig), Error> {
    let ds: Arc<dyn Dataset> = Arc::from(data::open(None, "train", 0.25, 7)?);
    let stats = ClassStats::compute(ds.as_ref(), |_, _| {})?;
    let tail: Vec<u8> = stats
        .groups(ds.info())
        .tail
        .iter()
        .map(|&c| c as u8)
        .collect();
    Ok((ds, BankConfig::new(tail)))
}

fn take(l: &mut Loader, n: usize) -> Result<Vec<Batch>, Error> {
    l.by_ref().take(n).collect()
}

#[test]
fn loader_with_bank_is_the_same_for_any_worker_count() -> R {
    let (ds, cfg) = builtin()?;
    let c = ds.info().num_classes();
    assert_eq!(cfg.tail.len(), 3);
    let aug = Augment::train((16, 20));
    let start = LoaderState::default();
    let mk = |workers| -> Result<Loader, Error> {
        let bank = MemoryBank::new(cfg.clone(), c, 3, None)?;
        Loader::with_bank(ds.clone(), 4, aug, 3, workers, start, Some(bank))
    };
    let b0 = take(&mut mk(0)?, 8)?;
    assert_eq!(b0.len(), 8);
    for workers in [1, 3] {
        assert!(take(&mut mk(workers)?, 8)? == b0, "workers = {workers}");
    }
    // The bank changed the stream (pasted tail pixels) and its state rides on each batch.
    let plain = take(&mut Loader::new(ds.clone(), 4, aug, 3, 2, start)?, 8)?;
    assert!(plain.iter().all(|b| b.bank.is_none()));
    let differ = b0
        .iter()
        .zip(&plain)
        .filter(|(a, b)| a.labels != b.labels)
        .count();
    assert!(differ >= 4, "{differ} of 8 batches changed");
    let last = b0[7].bank.as_ref().ok_or("no bank state")?;
    assert!(cfg.tail.iter().all(|&t| !last.entries(t).is_empty()));
    Ok(())
}

#[test]
fn loader_resumes_from_loader_and_bank_state() -> R {
    let (ds, cfg) = builtin()?;
    let c = ds.info().num_classes();
    let cfg = BankConfig {
        slots: 2,
        rs: 0.7,
        resize: 0.8,
        ..cfg
    };
    let aug = Augment::train((16, 20));
    let start = LoaderState::default();
    let fresh = || MemoryBank::new(cfg.clone(), c, 5, None);
    // 64 samples, batch 10 → 6 batches per epoch: 9 batches cross an epoch.
    let all = take(
        &mut Loader::with_bank(ds.clone(), 10, aug, 5, 2, start, Some(fresh()?))?,
        9,
    )?;
    let mut l = Loader::with_bank(ds.clone(), 10, aug, 5, 3, start, Some(fresh()?))?;
    let head = take(&mut l, 4)?;
    let st = l.state();
    drop(l);
    assert!(head[..] == all[..4]);
    // Through a file, as a checkpoint would.
    let t = Tmp::new("resume");
    let file = t.0.join("bank.bin");
    head[3].bank.as_ref().ok_or("no state")?.save(&file)?;
    let saved = BankState::load(&file)?;
    assert!(Some(&saved) == head[3].bank.as_ref());
    for workers in [0, 2] {
        let bank = MemoryBank::new(cfg.clone(), c, 5, Some(saved.clone()))?;
        let mut r = Loader::with_bank(ds.clone(), 10, aug, 5, workers, st, Some(bank))?;
        assert!(
            take(&mut r, 5)?[..] == all[4..],
            "resumed, workers = {workers}"
        );
    }
    // A fresh bank at the same position does not reproduce the stream.
    let mut r = Loader::with_bank(ds.clone(), 10, aug, 5, 0, st, Some(fresh()?))?;
    assert!(take(&mut r, 5)?[..] != all[4..]);
    Ok(())
}

#[test]
fn bank_state_files_round_trip_and_bad_files_are_named() -> R {
    let (h, w) = (12, 16);
    let tail = [2u8, 3, 4, 5];
    let mut bk = bank(&tail, 3, 1.0, 1.0, 8);
    for k in 0..10 {
        let labels = (0..2)
            .flat_map(|n| blobs(h, w, 7 + (k * 2 + n) as u64, &tail))
            .collect();
        bk.apply(&mut batch(h, w, labels, k, k));
    }
    let st = bk.state();
    assert!(st.bytes() > 0);
    let t = Tmp::new("files");
    let file = t.0.join("bank.bin");
    st.save(&file)?;
    let back = BankState::load(&file)?;
    assert!(back == st);
    // Saving again over the file is atomic and leaves no temporary behind.
    st.save(&file)?;
    assert_eq!(std::fs::read_dir(&t.0)?.count(), 1);
    // A state from the file continues like the original.
    let mut a = MemoryBank::new(bk.config().clone(), C, 8, Some(back))?;
    let labels: Vec<u8> = blobs(h, w, 99, &[2]);
    let (mut b1, mut b2) = (
        batch(h, w, labels.clone(), 0, 50),
        batch(h, w, labels, 0, 50),
    );
    assert!(a.apply(&mut b1) == bk.apply(&mut b2) && b1 == b2);

    let bytes = std::fs::read(&file)?;
    let name = file.display().to_string();
    let bad = |data: &[u8], what: &str| -> R {
        std::fs::write(&file, data)?;
        let e = BankState::load(&file)
            .err()
            .ok_or(format!("{what}: loaded"))?;
        assert!(e.to_string().contains(&name), "{what}: {e}");
        Ok(())
    };
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    bad(&flipped, "a flipped bit")?;
    bad(&bytes[..bytes.len() - 9], "truncated")?;
    bad(b"hello", "too short")?;
    let mut magic = bytes.clone();
    magic[0] = b'X';
    bad(&magic, "bad magic")?;
    std::fs::remove_file(&file)?;
    let e = BankState::load(&file)
        .err()
        .ok_or("a missing file loaded")?;
    assert!(e.to_string().contains(&name), "{e}");
    Ok(())
}

#[test]
fn bad_configurations_are_errors() {
    let ok = BankConfig::new(vec![2, 3]);
    assert_eq!((ok.slots, ok.rs, ok.resize), (5, 1.0, 1.0), "SPEC defaults");
    assert!(MemoryBank::new(ok.clone(), C, 0, None).is_ok());
    let cases = [
        (BankConfig::new(vec![]), "no tail classes"),
        (BankConfig::new(vec![2, 6]), "tail class 6 does not exist"),
        (BankConfig::new(vec![2, 3, 2]), "listed twice"),
        (
            BankConfig {
                slots: 0,
                ..ok.clone()
            },
            "slots",
        ),
        (
            BankConfig {
                rs: 0.0,
                ..ok.clone()
            },
            "rs",
        ),
        (
            BankConfig {
                rs: 1.5,
                ..ok.clone()
            },
            "rs",
        ),
        (
            BankConfig {
                rs: f32::NAN,
                ..ok.clone()
            },
            "rs",
        ),
        (
            BankConfig {
                resize: 0.0,
                ..ok.clone()
            },
            "resize",
        ),
        (
            BankConfig {
                resize: f32::INFINITY,
                ..ok.clone()
            },
            "resize",
        ),
    ];
    for (cfg, want) in cases {
        match MemoryBank::new(cfg.clone(), C, 0, None) {
            Ok(_) => panic!("{cfg:?} accepted"),
            Err(e) => assert!(e.to_string().contains(want), "{cfg:?}: {e}"),
        }
    }
    // A saved state must match the configuration.
    let mut bk = bank(&[2, 3], 5, 1.0, 1.0, 0);
    for k in 0..3 {
        bk.apply(&mut batch(4, 4, vec![2; 16], k, k));
    }
    let st = bk.state();
    let other = MemoryBank::new(BankConfig::new(vec![3, 2]), C, 0, Some(st.clone()));
    assert!(other.is_err_and(|e| e.to_string().contains("tail classes [2, 3]")));
    let fewer = BankConfig {
        slots: 2,
        ..ok.clone()
    };
    let e = MemoryBank::new(fewer, C, 0, Some(st));
    assert!(e.is_err_and(|e| e.to_string().contains("3 entries of class 2")));
}
