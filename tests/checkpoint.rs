//! Checkpoints (docs/model.md): round trips give identical logits, loading errors name the file
//! and the tensor, torchvision backbones initialise `backbone.*`, writes are atomic, and
//! run directories resolve.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde_json::json;
use wgseg::model::{DeepLabConfig, DeepLabV3Plus, Segmenter};
use wgseg::nn::ParamStore;
use wgseg::train::checkpoint::{
    atomic_write, classes_entry, find_checkpoint, init_backbone, load_train_state, load_weights,
    newest_run, read_metadata, save_checkpoint, save_train_state, save_weights, RunDir, MODEL_FILE,
    OPTIMIZER_FILE, STATE_FILE,
};
use wgseg::{no_grad, Device, Tensor};

const CLASSES: [&str; 3] = ["road", "car", "bike"];

/// A fresh scratch directory per test (name), inside cargo's target tmp dir.
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("checkpoint")
        .join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn tiny(separable: bool) -> DeepLabConfig {
    DeepLabConfig {
        stem: 4,
        widths: [4, 6, 8, 8],
        depths: [1, 2, 1, 1],
        aspp: 6,
        low: 3,
        decoder: 5,
        output_stride: 16,
        aspp_rates: None,
        separable_aspp: separable,
        block: Default::default(),
    }
}

fn images(dev: &Device, seed: u64, n: usize) -> Tensor {
    Tensor::from_vec(
        uniform(n * 3 * 24 * 24, seed, -2.0, 2.0),
        [n, 3, 24, 24],
        dev,
    )
    .unwrap()
}

/// A model whose batch-norm running statistics have moved off their init (two training
/// forwards), with its values rounded to f32 so that saving loses nothing.
fn trained(dev: &Device, cfg: &DeepLabConfig, seed: u64) -> (DeepLabV3Plus, ParamStore) {
    let mut store = ParamStore::new(dev);
    let net = DeepLabV3Plus::new(cfg, CLASSES.len(), &mut store, seed).unwrap();
    let _g = no_grad();
    for s in 0..2 {
        net.forward(&mut store, &images(dev, 100 + s, 2), true)
            .unwrap();
    }
    let names = store.names().to_vec();
    for n in names {
        let t = store.get(&n).unwrap();
        let v = Tensor::from_vec(t.to_vec().unwrap(), t.shape().clone(), dev).unwrap();
        store.set(&n, v).unwrap();
    }
    (net, store)
}

fn logits(net: &dyn Segmenter, store: &mut ParamStore, dev: &Device) -> Vec<f64> {
    let _g = no_grad();
    net.forward(store, &images(dev, 7, 1), false)
        .unwrap()
        .to_vec_f64()
        .unwrap()
}

fn save(path: &Path, store: &ParamStore, net: &dyn Segmenter) {
    save_weights(path, store, net, &[classes_entry(&CLASSES)]).unwrap();
}

/// Saves, reads the metadata, builds a differently seeded model from it, loads, and
/// checks that the logits are identical; saving the loaded store gives the same bytes.
fn round_trip(dev: &Device, dir: &Path, cfg: &DeepLabConfig) {
    let (net, mut store) = trained(dev, cfg, 1);
    let want = logits(&net, &mut store, dev);
    let path = dir.join(MODEL_FILE);
    save(&path, &store, &net);

    let meta = read_metadata(&path).unwrap();
    assert_eq!(meta.model, Some(net.model_config()));
    assert_eq!(meta.arch, "deeplabv3plus");
    assert_eq!(meta.num_classes, 3);
    assert_eq!(meta.class_names(), CLASSES);
    assert_eq!(meta.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));

    let mut store2 = ParamStore::new(dev);
    let net2 = meta.build(&mut store2).unwrap();
    assert_ne!(logits(&*net2, &mut store2, dev), want, "seeds must differ");
    let meta2 = load_weights(&path, &mut store2).unwrap();
    assert_eq!(meta2, meta);
    assert_close(
        "logits after load",
        &logits(&*net2, &mut store2, dev),
        &want,
        EXACT,
    );

    let again = dir.join("again.safetensors");
    save(&again, &store2, &*net2);
    assert_eq!(fs::read(&path).unwrap(), fs::read(&again).unwrap());
}

#[test]
fn round_trip_cpu_identical_logits() {
    round_trip(&Device::Cpu, &scratch("rt_cpu"), &tiny(false));
}

#[test]
fn round_trip_cpu_separable_os8() {
    let mut cfg = tiny(true);
    cfg.output_stride = 8;
    round_trip(&Device::Cpu, &scratch("rt_cpu_sep"), &cfg);
}

#[test]
fn round_trip_gpu_identical_logits_and_cross_device() {
    let Some(gpu) = gpu() else { return };
    let dir = scratch("rt_gpu");
    round_trip(&gpu, &dir, &tiny(false));
    // The GPU-saved weights on the CPU backend: same network up to f32 summation order.
    let (net, mut store) = trained(&gpu, &tiny(false), 1);
    let want = logits(&net, &mut store, &gpu);
    let mut cpu_store = ParamStore::new(&Device::Cpu);
    let cpu_net = DeepLabV3Plus::new(&tiny(false), 3, &mut cpu_store, 5).unwrap();
    load_weights(&dir.join(MODEL_FILE), &mut cpu_store).unwrap();
    assert_close(
        "CPU logits of GPU weights",
        &logits(&cpu_net, &mut cpu_store, &Device::Cpu),
        &want,
        DOT,
    );
}

type Entries = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

/// Rewrites the safetensors file `src` to `dst` after `edit` changed its tensors or metadata.
fn rewrite(src: &Path, dst: &Path, edit: impl FnOnce(&mut Entries, &mut HashMap<String, String>)) {
    let bytes = fs::read(src).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut entries: Entries = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut entries, &mut meta);
    write_entries(dst, &entries, meta);
}

fn write_entries(dst: &Path, entries: &Entries, meta: HashMap<String, String>) {
    let views: Vec<(&str, TensorView<'_>)> = entries
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    fs::write(dst, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

fn f32_bytes(n: usize, v: f32) -> Vec<u8> {
    (0..n).flat_map(|_| v.to_le_bytes()).collect()
}

/// Loading `path` into `store` fails with a message that names the file and contains `want`;
/// the store is left unchanged.
fn load_fails(path: &Path, store: &mut ParamStore, want: &str) {
    let probe = "backbone.conv1.weight";
    let before = store.get(probe).unwrap().to_vec().unwrap();
    let err = load_weights(path, store).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()),
        "error does not name the file: {err}"
    );
    assert!(
        err.contains(want),
        "error {err:?} does not contain {want:?}"
    );
    assert_eq!(store.get(probe).unwrap().to_vec().unwrap(), before);
}

#[test]
fn load_errors_name_file_and_tensor() {
    let dir = scratch("errors");
    let cfg = tiny(false);
    let (net, store) = trained(&Device::Cpu, &cfg, 1);
    let good = dir.join("good.safetensors");
    save(&good, &store, &net);
    let mut target = ParamStore::new(&Device::Cpu);
    DeepLabV3Plus::new(&cfg, 3, &mut target, 2).unwrap();
    let bad = dir.join("bad.safetensors");

    rewrite(&good, &bad, |e, _| {
        e.retain(|t| t.0 != "aspp.pool.bn.running_var")
    });
    load_fails(&bad, &mut target, "missing aspp.pool.bn.running_var");

    rewrite(&good, &bad, |e, _| {
        e.push((
            "decoder.extra.weight".into(),
            Dtype::F32,
            vec![2],
            f32_bytes(2, 1.0),
        ))
    });
    load_fails(&bad, &mut target, "unexpected decoder.extra.weight");

    rewrite(&good, &bad, |e, _| {
        for t in e.iter_mut().filter(|t| t.0 == "decoder.low.conv.weight") {
            t.2 = vec![3, 4, 1, 2];
            t.3 = f32_bytes(24, 0.5);
        }
    });
    load_fails(
        &bad,
        &mut target,
        "decoder.low.conv.weight has shape [3, 4, 1, 2], the model's decoder.low.conv.weight has [3, 4, 1, 1]",
    );

    rewrite(&good, &bad, |e, _| {
        for t in e.iter_mut().filter(|t| t.0 == "backbone.bn1.weight") {
            t.1 = Dtype::F64;
            t.3 = (0..4).flat_map(|_| 1.0f64.to_le_bytes()).collect();
        }
    });
    load_fails(
        &bad,
        &mut target,
        "backbone.bn1.weight is F64, expected F32",
    );

    rewrite(&good, &bad, |_, m| {
        m.remove("wgseg.model");
    });
    load_fails(&bad, &mut target, "no 'wgseg.model' entry");
    let err = read_metadata(&bad).unwrap_err().to_string();
    assert!(
        err.contains("bad.safetensors") && err.contains("wgseg.model"),
        "{err}"
    );

    fs::write(&bad, b"not a safetensors file").unwrap();
    load_fails(&bad, &mut target, "not a valid safetensors file");
    let missing = dir.join("absent.safetensors");
    let err = load_weights(&missing, &mut target).unwrap_err().to_string();
    assert!(err.contains("absent.safetensors"), "{err}");
}

#[test]
fn num_batches_tracked_is_skipped_and_minimal_metadata_suffices() {
    let dir = scratch("nbt");
    let cfg = tiny(false);
    let (net, mut store) = trained(&Device::Cpu, &cfg, 1);
    let want = logits(&net, &mut store, &Device::Cpu);
    let good = dir.join("good.safetensors");
    save(&good, &store, &net);
    // What PyTorch's state_dict() adds (int64) plus only the three keys a PyTorch loader needs.
    let torchlike = dir.join("torch.safetensors");
    rewrite(&good, &torchlike, |e, m| {
        let bns: Vec<String> = e
            .iter()
            .filter_map(|t| t.0.strip_suffix(".running_mean").map(String::from))
            .collect();
        for bn in bns {
            let name = format!("{bn}.num_batches_tracked");
            e.push((name, Dtype::I64, vec![], 7i64.to_le_bytes().to_vec()));
        }
        m.clear();
        m.insert(
            "wgseg.model".into(),
            r#"{"output_stride": 16, "aspp_rates": [6, 12, 18], "separable_aspp": false}"#.into(),
        );
    });
    let meta = read_metadata(&torchlike).unwrap();
    assert_eq!(meta.model, Some(net.model_config()));
    assert_eq!(meta.arch, "deeplabv3plus");
    assert_eq!(meta.classes, None);
    assert_eq!(meta.class_names(), ["class0", "class1", "class2"]);
    let mut s2 = ParamStore::new(&Device::Cpu);
    let n2 = meta.build(&mut s2).unwrap();
    load_weights(&torchlike, &mut s2).unwrap();
    assert_close("logits", &logits(&*n2, &mut s2, &Device::Cpu), &want, EXACT);

    // Metadata that the shapes contradict.
    let lying = dir.join("lying.safetensors");
    rewrite(&good, &lying, |_, m| {
        let model = m.get_mut("wgseg.model").unwrap();
        *model = model.replace("\"stem\":4", "\"stem\":16");
    });
    let err = read_metadata(&lying).unwrap_err().to_string();
    assert!(
        err.contains("stem = 16, but the tensor shapes imply 4"),
        "{err}"
    );
    // Class names that do not match the classifier.
    let names = dir.join("names.safetensors");
    rewrite(&good, &names, |_, m| {
        m.insert("wgseg.classes".into(), r#"["a", "b"]"#.into());
    });
    let err = read_metadata(&names).unwrap_err().to_string();
    assert!(err.contains("lists 2 names"), "{err}");
}

#[test]
fn torchvision_backbone_initialises_backbone() {
    let dir = scratch("backbone");
    let cfg = tiny(false);
    let (_, source) = trained(&Device::Cpu, &cfg, 11);
    // A torchvision-style state dict: no `backbone.` prefix, `fc.*`, int64 counters.
    let mut entries: Entries = Vec::new();
    for (name, t, _) in source.iter() {
        let Some(tv) = name.strip_prefix("backbone.") else {
            continue;
        };
        let bytes = t
            .to_vec()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        entries.push((tv.into(), Dtype::F32, t.dims().to_vec(), bytes));
        if let Some(bn) = tv.strip_suffix(".running_var") {
            let n = format!("{bn}.num_batches_tracked");
            entries.push((n, Dtype::I64, vec![], 3i64.to_le_bytes().to_vec()));
        }
    }
    let n_backbone = source
        .names()
        .iter()
        .filter(|n| n.starts_with("backbone."))
        .count();
    entries.push((
        "fc.weight".into(),
        Dtype::F32,
        vec![10, 8],
        f32_bytes(80, 0.1),
    ));
    entries.push(("fc.bias".into(), Dtype::F32, vec![10], f32_bytes(10, 0.0)));
    let tv = dir.join("resnet.safetensors");
    write_entries(&tv, &entries, HashMap::new());

    let mut store = ParamStore::new(&Device::Cpu);
    DeepLabV3Plus::new(&cfg, 3, &mut store, 2).unwrap();
    let head_before = store
        .get("aspp.project.conv.weight")
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(init_backbone(&tv, &mut store).unwrap(), n_backbone);
    for (name, t, _) in source.iter() {
        let got = store.get(name).unwrap().to_vec().unwrap();
        let want = t.to_vec().unwrap();
        if name.starts_with("backbone.") {
            assert_eq!(got, want, "{name}");
        }
    }
    let head_after = store
        .get("aspp.project.conv.weight")
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(head_before, head_after, "only the backbone is initialised");

    // Other widths: an error naming the tensor, the store unchanged.
    let mut wrong = entries.clone();
    for t in wrong.iter_mut().filter(|t| t.0 == "layer1.0.conv1.weight") {
        t.2 = vec![4, 4, 1, 9];
    }
    write_entries(&tv, &wrong, HashMap::new());
    let mut fresh = ParamStore::new(&Device::Cpu);
    DeepLabV3Plus::new(&cfg, 3, &mut fresh, 2).unwrap();
    let before = fresh
        .get("backbone.conv1.weight")
        .unwrap()
        .to_vec()
        .unwrap();
    let err = init_backbone(&tv, &mut fresh).unwrap_err().to_string();
    assert!(err.contains("resnet.safetensors"), "{err}");
    assert!(
        err.contains("layer1.0.conv1.weight has shape [4, 4, 1, 9]"),
        "{err}"
    );
    assert_eq!(
        fresh
            .get("backbone.conv1.weight")
            .unwrap()
            .to_vec()
            .unwrap(),
        before
    );

    // A deeper ResNet (layer2.2 does not exist here) and a missing tensor.
    let mut deeper = entries.clone();
    deeper.push((
        "layer2.2.conv1.weight".into(),
        Dtype::F32,
        vec![6, 6, 3, 3],
        f32_bytes(324, 0.0),
    ));
    deeper.retain(|t| t.0 != "layer4.0.bn2.bias");
    write_entries(&tv, &deeper, HashMap::new());
    let err = init_backbone(&tv, &mut fresh).unwrap_err().to_string();
    assert!(
        err.contains("layer2.2.conv1.weight has no counterpart"),
        "{err}"
    );
    assert!(err.contains("missing layer4.0.bn2.bias"), "{err}");
}

/// A torchvision-style ResNet of bottleneck blocks (resnet50's layout) initialises the
/// backbone of a DeepLabV3 on bottlenecks, and is refused by a basic-block one (its
/// `conv3` tensors have no counterpart).
#[test]
fn bottleneck_backbone_initialises_deeplabv3() {
    use wgseg::model::{Block, DeepLabV3Config, ModelConfig};
    let dir = scratch("bottleneck");
    let cfg = |block| {
        ModelConfig::DeepLabV3(DeepLabV3Config {
            stem: 4,
            widths: [2, 4, 4, 4],
            depths: [2, 1, 1, 1],
            block,
            aspp: 6,
            output_stride: 16,
            aspp_rates: None,
            separable_aspp: false,
        })
    };
    let mut source = ParamStore::new(&Device::Cpu);
    cfg(Block::Bottleneck).build(3, &mut source, 5).unwrap();
    let entries: Entries = source
        .iter()
        .filter_map(|(name, t, _)| {
            let tv = name.strip_prefix("backbone.")?;
            let bytes = t
                .to_vec()
                .unwrap()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            Some((tv.to_string(), Dtype::F32, t.dims().to_vec(), bytes))
        })
        .collect();
    assert!(entries.iter().any(|e| e.0 == "layer1.0.conv3.weight"));
    let tv = dir.join("resnet50.safetensors");
    write_entries(&tv, &entries, HashMap::new());
    let mut store = ParamStore::new(&Device::Cpu);
    cfg(Block::Bottleneck).build(3, &mut store, 6).unwrap();
    assert_eq!(init_backbone(&tv, &mut store).unwrap(), entries.len());
    for (name, t, _) in source.iter().filter(|(n, _, _)| n.starts_with("backbone.")) {
        assert_eq!(
            store.get(name).unwrap().to_vec().unwrap(),
            t.to_vec().unwrap(),
            "{name}"
        );
    }
    let mut basic = ParamStore::new(&Device::Cpu);
    cfg(Block::Basic).build(3, &mut basic, 6).unwrap();
    let err = init_backbone(&tv, &mut basic).unwrap_err().to_string();
    assert!(
        err.contains("layer1.0.conv3.weight has no counterpart"),
        "{err}"
    );
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn atomic_write_replaces_and_leaves_no_temp_files() {
    let dir = scratch("atomic");
    let p = dir.join("x.json");
    atomic_write(&p, b"old").unwrap();
    atomic_write(&p, b"new content").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new content");
    assert_eq!(listing(&dir), ["x.json"]);
    // A write that cannot happen leaves the old file and no temporary file.
    let err = atomic_write(&dir.join("missing/y.json"), b"z").unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(listing(&dir), ["x.json"]);
}

fn optimizer_state(dev: &Device, step: u64) -> Vec<(String, Tensor)> {
    vec![
        (
            "backbone.conv1.weight.momentum".into(),
            Tensor::from_vec(uniform(6, step, -1.0, 1.0), [2, 3], dev).unwrap(),
        ),
        (
            "adamw.t".into(),
            Tensor::from_u32(vec![step as u32], [1], dev).unwrap(),
        ),
    ]
}

#[test]
fn checkpoint_save_resume_and_crash_recovery() {
    let dev = Device::Cpu;
    let run = RunDir::new(scratch("run").join("exp"));
    let cfg = tiny(false);
    let (net, store) = trained(&dev, &cfg, 1);
    let classes = [classes_entry(&CLASSES)];
    let rng = json!({"rng": [1, 2, 3], "best_miou": 0.25});
    for step in [10, 20] {
        let opt = optimizer_state(&dev, step);
        save_checkpoint(&run.last(), &store, &net, &classes, step, &opt, &rng).unwrap();
    }
    assert_eq!(listing(&run.checkpoints()), ["last"]);
    assert_eq!(
        listing(&run.last()),
        [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE]
    );
    let ts = load_train_state(&run.last(), &dev).unwrap();
    assert_eq!(ts.step, 20);
    assert_eq!(ts.state, rng);
    let want = optimizer_state(&dev, 20);
    let names: Vec<&str> = ts.optimizer.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["adamw.t", "backbone.conv1.weight.momentum"]);
    assert_eq!(ts.optimizer[0].1.to_vec_u32().unwrap(), [20]);
    assert_eq!(
        ts.optimizer[1].1.to_vec().unwrap(),
        want[0].1.to_vec().unwrap()
    );
    assert_eq!(ts.optimizer[1].1.dims(), [2, 3]);

    // A crash between the two renames: no `last/`, complete `last.old/`, partial `last.tmp/`.
    fs::rename(run.last(), run.checkpoints().join("last.old")).unwrap();
    fs::create_dir_all(run.checkpoints().join("last.tmp")).unwrap();
    fs::write(run.checkpoints().join("last.tmp").join(MODEL_FILE), b"torn").unwrap();
    let found = find_checkpoint(&run.root).unwrap();
    assert_eq!(found, run.checkpoints().join("last.old").join(MODEL_FILE));
    assert_eq!(find_checkpoint(&run.last()).unwrap(), found);
    let mut s2 = ParamStore::new(&dev);
    DeepLabV3Plus::new(&cfg, 3, &mut s2, 4).unwrap();
    load_weights(&found, &mut s2).unwrap();
    assert_eq!(
        load_train_state(found.parent().unwrap(), &dev)
            .unwrap()
            .step,
        20
    );
    // A save that fails (here: a reserved metadata key) first puts `last/` back.
    let reserved = [("wgseg.model", "{}".to_string())];
    let opt = optimizer_state(&dev, 30);
    save_checkpoint(&run.last(), &store, &net, &reserved, 30, &opt, &rng).unwrap_err();
    assert_eq!(
        find_checkpoint(&run.root).unwrap(),
        run.last().join(MODEL_FILE)
    );
    assert_eq!(load_train_state(&run.last(), &dev).unwrap().step, 20);
    save_checkpoint(&run.last(), &store, &net, &classes, 30, &opt, &rng).unwrap();
    assert_eq!(listing(&run.checkpoints()), ["last"]);
    assert_eq!(load_train_state(&run.last(), &dev).unwrap().step, 30);

    // Files of different checkpoints are not mixed.
    let other = run.root.join("other");
    save_train_state(&other, 31, &optimizer_state(&dev, 31), &rng).unwrap();
    fs::copy(other.join(STATE_FILE), run.last().join(STATE_FILE)).unwrap();
    let err = load_train_state(&run.last(), &dev).unwrap_err().to_string();
    assert!(
        err.contains("written at step 30, but state.json says step 31"),
        "{err}"
    );
}

fn touch_model(dir: &Path, time: SystemTime) {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join(MODEL_FILE);
    fs::write(&p, b"weights").unwrap();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

#[test]
fn find_checkpoint_and_newest_run() {
    let root = scratch("find");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let a = RunDir::new(root.join("runs/a"));
    touch_model(&a.last(), t0);
    assert_eq!(find_checkpoint(&a.root).unwrap(), a.last().join(MODEL_FILE));
    touch_model(&a.best(), t0);
    assert_eq!(find_checkpoint(&a.root).unwrap(), a.best().join(MODEL_FILE));
    assert_eq!(
        find_checkpoint(&a.last()).unwrap(),
        a.last().join(MODEL_FILE)
    );
    let file = a.last().join(MODEL_FILE);
    assert_eq!(find_checkpoint(&file).unwrap(), file);

    let empty = root.join("runs/empty");
    fs::create_dir_all(&empty).unwrap();
    let err = find_checkpoint(&empty).unwrap_err().to_string();
    assert!(
        err.contains("empty") && err.contains("checkpoints/best/model.safetensors"),
        "{err}"
    );
    let err = find_checkpoint(&root.join("nope.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nope.safetensors") && err.contains("no such checkpoint"),
        "{err}"
    );

    let b = RunDir::new(root.join("runs/b"));
    touch_model(&b.last(), t0 + Duration::from_secs(60));
    assert_eq!(newest_run(&root.join("runs")).unwrap(), b.root);
    touch_model(&a.best(), t0 + Duration::from_secs(120));
    assert_eq!(newest_run(&root.join("runs")).unwrap(), a.root);

    let err = newest_run(&root.join("missing")).unwrap_err().to_string();
    assert!(
        err.contains("missing") && err.contains("--checkpoint"),
        "{err}"
    );
    let err = newest_run(&root.join("runs/empty"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no run with a checkpoint"), "{err}");
}
