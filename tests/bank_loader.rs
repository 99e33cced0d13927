//! The tail-class memory bank (docs/longtail.md) on the built-in data through the loader,
//! its saved state files, and its settings. Data only: no GPU.

#[path = "common/bank.rs"]
mod bank_common;
mod common;

use std::sync::Arc;

use bank_common::*;
use common::Tmp;
use wgseg::data::{
    self, Augment, BankConfig, BankState, Batch, ClassStats, Dataset, Loader, LoaderState,
    MemoryBank,
};
use wgseg::Error;

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
        size: 2,
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
    assert_eq!(
        (ok.enabled, ok.size, ok.rs, ok.resize),
        (false, 5, 1.0, 1.0),
        "the documented defaults"
    );
    assert!(MemoryBank::new(ok.clone(), C, 0, None).is_ok());
    let cases = [
        (BankConfig::new(vec![]), "no tail classes"),
        (BankConfig::new(vec![2, 6]), "tail class 6 does not exist"),
        (BankConfig::new(vec![2, 3, 2]), "listed twice"),
        (
            BankConfig {
                size: 0,
                ..ok.clone()
            },
            "tmb.size",
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
        size: 2,
        ..ok.clone()
    };
    let e = MemoryBank::new(fewer, C, 0, Some(st));
    assert!(e.is_err_and(|e| e.to_string().contains("3 entries of class 2")));
}
