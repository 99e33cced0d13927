//! The tail-class memory bank (docs/longtail.md, `wgseg::data::bank`) on constructed
//! batches: what is stored and pasted, resizing, overwriting, bounds and seeding. The
//! loader, saved states and settings: `bank_loader.rs`. Data only: no GPU.

#[path = "common/bank.rs"]
mod bank_common;
mod common;

use bank_common::*;
use wgseg::data::bank::{Entry, Paste};
use wgseg::data::image_io::{resize_bilinear, resize_bilinear_f32, resize_nearest};
use wgseg::data::{scaled_dim, Batch};

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

/// The patch the bank (docs/longtail.md) pastes from a whole stored crop: resize the crop
/// by `p` (bilinear values, nearest mask), then the bounding box of the class's pixels.
/// Returns mask, values, size.
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
