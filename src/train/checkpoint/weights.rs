//! Model weights as one `safetensors` file (docs/model.md): save, load with exact name / shape /
//! dtype checks, metadata, and backbone initialisation from a torchvision ResNet.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde_json::{json, Value};

use super::{atomic_write, data_err, io_err};
use crate::device::Device;
use crate::error::Result;
use crate::model::{ModelConfig, Segmenter};
use crate::nn::ParamStore;
use crate::tensor::{DType, Tensor};

/// Metadata key of the architecture: [`Segmenter::metadata_json`], a JSON object whose
/// `arch` names the architecture (files written before `arch` existed are DeepLabV3+;
/// DeepLabV3+ records at least `output_stride`, `aspp_rates`, `separable_aspp`;
/// docs/model.md).
pub const META_MODEL: &str = "wgseg.model";
/// Metadata key of the class names: a JSON list of strings (see [`classes_entry`]).
pub const META_CLASSES: &str = "wgseg.classes";
/// Metadata key of the wgseg version that wrote the file.
pub const META_VERSION: &str = "wgseg.version";
/// Metadata key of the training split's pixel count per class (a JSON list of integers,
/// class id order), written by the trainer: `wgseg eval` takes the head / middle / tail
/// groups from it when the dataset has no training split.
pub const META_CLASS_PIXELS: &str = "wgseg.class_pixels";

/// PyTorch's batch-norm step counter (int64). wgseg does not keep it; readers skip it,
/// whatever its dtype.
const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";

/// The header key of the string-to-string metadata in the safetensors format.
const METADATA_KEY: &str = "__metadata__";

/// At most this many problems are listed in one error message.
const MAX_LISTED: usize = 8;

/// What a checkpoint says about itself: the architecture (`arch` of `wgseg.model`; for the
/// crate's architectures also the [`ModelConfig`], from `wgseg.model` and the tensor
/// shapes), the number of classes, the class names if recorded, and every metadata entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    /// The `arch` of `wgseg.model` (`deeplabv3plus` when the file names none).
    pub arch: String,
    /// The architecture, defaults resolved, when the crate ships it (`None`: an
    /// architecture from outside the crate; [`model_json`](Self::model_json) describes it).
    pub model: Option<ModelConfig>,
    /// `wgseg.model`, raw.
    pub model_json: String,
    /// Classes of the logits: the architecture's classifier (the crate's architectures),
    /// else the length of `wgseg.classes`.
    pub num_classes: usize,
    /// `wgseg.classes`, when present (its length is `num_classes`).
    pub classes: Option<Vec<String>>,
    /// `wgseg.version`, when present.
    pub version: Option<String>,
    /// Every metadata entry of the file, raw.
    pub entries: BTreeMap<String, String>,
}

impl Metadata {
    /// The recorded class names, or `class0`, `class1`, … when the file has none.
    pub fn class_names(&self) -> Vec<String> {
        match &self.classes {
            Some(c) => c.clone(),
            None => (0..self.num_classes).map(|i| format!("class{i}")).collect(),
        }
    }

    /// Builds the checkpoint's network (tensors registered in `store`, not loaded: see
    /// [`load_weights`]); an error for an architecture the crate does not ship.
    pub fn build(&self, store: &mut ParamStore) -> Result<Box<dyn Segmenter>> {
        match &self.model {
            Some(m) => m.build(self.num_classes, store, 0),
            None => Err(crate::error::Error::shape(
                "checkpoint",
                format!(
                    "architecture \"{}\" is not one wgseg ships ({}); build it yourself and \
                     load the weights with load_weights",
                    self.arch,
                    crate::model::ARCHS.join(", ")
                ),
            )),
        }
    }

    /// `wgseg.class_pixels`: the training split's pixel count per class, when recorded
    /// (checkpoints written before the key existed have none).
    pub fn class_pixels(&self) -> Option<Vec<u64>> {
        let v: Vec<u64> = serde_json::from_str(self.entries.get(META_CLASS_PIXELS)?).ok()?;
        (v.len() == self.num_classes).then_some(v)
    }
}

/// The `wgseg.classes` entry for [`save_weights`]'s `extra_metadata`: the names as a JSON list.
pub fn classes_entry<S: AsRef<str>>(names: &[S]) -> (&'static str, String) {
    let list: Vec<&str> = names.iter().map(|s| s.as_ref()).collect();
    (META_CLASSES, Value::from(list).to_string())
}

/// Writes named tensors (f32 or u32) with `metadata` to `path` atomically, in the
/// safetensors format: an 8-byte little-endian header length, the JSON header (padded with
/// spaces to a multiple of 8 bytes), then the data. The header is written here rather than
/// by `safetensors::serialize` because that one orders the metadata by a randomly seeded
/// `HashMap`: with sorted keys and tensors in name order, equal weights give equal bytes.
pub(crate) fn write_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut sorted: Vec<&(String, Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        // Sorted whether or not serde_json's `preserve_order` feature is on.
        let sorted: BTreeMap<String, String> = metadata.into_iter().collect();
        let meta: serde_json::Map<String, Value> = sorted
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        header.insert(METADATA_KEY.into(), Value::Object(meta));
    }
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in sorted {
        let start = data.len();
        let dtype = match t.dtype() {
            DType::F32 => {
                data.extend(t.to_vec()?.iter().flat_map(|v| v.to_le_bytes()));
                "F32"
            }
            DType::U32 => {
                data.extend(t.to_vec_u32()?.iter().flat_map(|v| v.to_le_bytes()));
                "U32"
            }
        };
        let info = json!({"dtype": dtype, "shape": t.dims(), "data_offsets": [start, data.len()]});
        if header.insert(name.clone(), info).is_some() {
            return Err(data_err(path, format!("tensor {name} is given twice")));
        }
    }
    let mut head = Value::Object(header).to_string().into_bytes();
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut bytes = Vec::with_capacity(8 + head.len() + data.len());
    bytes.extend((head.len() as u64).to_le_bytes());
    bytes.extend(head);
    bytes.extend(data);
    atomic_write(path, &bytes)
}

/// Reads a whole file (errors name it).
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(io_err(path))
}

/// Parses safetensors bytes read from `path`; returns the tensors and the metadata.
pub(crate) fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let bad = |e: safetensors::SafeTensorError| {
        data_err(path, format!("not a valid safetensors file: {e}"))
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(bad)?;
    let meta = header.metadata().clone().unwrap_or_default();
    Ok((SafeTensors::deserialize(bytes).map_err(bad)?, meta))
}

/// The values of an f32 tensor view as a tensor on `dev`.
pub(crate) fn to_tensor(view: &TensorView<'_>, dev: &Device) -> Result<Tensor> {
    let data = view.data();
    match view.dtype() {
        Dtype::U32 => {
            let v = data
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_u32(v, view.shape().to_vec(), dev)
        }
        _ => {
            let v = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_vec(v, view.shape().to_vec(), dev)
        }
    }
}

/// `"first; second; … and N more"`.
pub(crate) fn list_problems(problems: &[String]) -> String {
    let mut s = problems
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > MAX_LISTED {
        s.push_str(&format!(
            "; … and {} more ({} problems)",
            problems.len() - MAX_LISTED,
            problems.len()
        ));
    }
    s
}

/// Saves every tensor of `store` (parameters and buffers, under their PyTorch names, as
/// f32) to one safetensors file at `path`, atomically, with the metadata `wgseg.model` =
/// `net.metadata_json()`, `wgseg.version`, and `extra_metadata` (e.g. [`classes_entry`]).
/// `extra_metadata` may not redefine `wgseg.model` or `wgseg.version`.
pub fn save_weights(
    path: &Path,
    store: &ParamStore,
    net: &dyn Segmenter,
    extra_metadata: &[(&str, String)],
) -> Result<()> {
    let model = net.metadata_json()?;
    let arch = serde_json::from_str::<Value>(&model)
        .ok()
        .and_then(|v| v.get("arch").and_then(Value::as_str).map(String::from));
    if arch.as_deref() != Some(net.arch()) {
        return Err(data_err(
            path,
            format!(
                "{META_MODEL} must be a JSON object with \"arch\": \"{}\", got {model}",
                net.arch()
            ),
        ));
    }
    let mut meta = HashMap::new();
    meta.insert(META_MODEL.to_string(), model);
    meta.insert(
        META_VERSION.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    for (k, v) in extra_metadata {
        if meta.contains_key(*k) {
            return Err(data_err(
                path,
                format!("metadata {k} is written by save_weights itself"),
            ));
        }
        if *k == META_CLASSES {
            parse_classes(path, v)?;
        }
        meta.insert(k.to_string(), v.clone());
    }
    let tensors: Vec<(String, Tensor)> = store
        .iter()
        .map(|(n, t, _)| (n.to_string(), t.clone()))
        .collect();
    write_tensors(path, &tensors, meta)
}

fn parse_classes(path: &Path, json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| {
        data_err(
            path,
            format!("metadata {META_CLASSES} is not a JSON list of strings: {e}"),
        )
    })
}

/// The metadata of the checkpoint at `path`, to build the model before loading it: the
/// `arch` of `wgseg.model` (none: DeepLabV3+) and, for the crate's architectures, the
/// [`ModelConfig`] and class count from `wgseg.model` and the tensor shapes (see
/// [`ModelConfig::from_checkpoint`]; DeepLabV3+ needs only `output_stride`, as a PyTorch
/// loader does). Any architecture key that the shapes contradict is an error.
pub fn read_metadata(path: &Path) -> Result<Metadata> {
    let bytes = read_file(path)?;
    let (st, meta) = parse(path, &bytes)?;
    metadata_of(path, &st, meta)
}

fn metadata_of(
    path: &Path,
    st: &SafeTensors<'_>,
    meta: HashMap<String, String>,
) -> Result<Metadata> {
    let json = meta.get(META_MODEL).ok_or_else(|| {
        data_err(
            path,
            format!(
                "no '{META_MODEL}' entry in the safetensors metadata (not a wgseg checkpoint?)"
            ),
        )
    })?;
    let bad = |msg: String| data_err(path, format!("{META_MODEL}: {msg}"));
    let obj: serde_json::Map<String, Value> =
        serde_json::from_str(json).map_err(|e| bad(format!("not a JSON object: {e}")))?;
    let arch = crate::model::arch_of(&obj)
        .map_err(|e| data_err(path, e.to_string()))?
        .to_string();
    let shape = |name: &str| st.tensor(name).ok().map(|v| v.shape().to_vec());
    let names = st.names();
    let known = ModelConfig::from_checkpoint(&obj, &shape, &names)
        .map_err(|e| data_err(path, e.to_string()))?;
    let classes = match meta.get(META_CLASSES) {
        Some(c) => Some(parse_classes(path, c)?),
        None => None,
    };
    let (model, num_classes) = match (known, &classes) {
        (Some((m, n)), _) => (Some(m), n),
        (None, Some(names)) => (None, names.len()),
        (None, None) => {
            return Err(data_err(
                path,
                format!(
                    "architecture \"{arch}\" is not one wgseg ships ({}) and the file has no \
                     {META_CLASSES} to count its classes",
                    crate::model::ARCHS.join(", ")
                ),
            ))
        }
    };
    if let Some(names) = &classes {
        if names.len() != num_classes {
            return Err(data_err(
                path,
                format!(
                    "{META_CLASSES} lists {} names, the model's classifier has {num_classes} classes",
                    names.len()
                ),
            ));
        }
    }
    Ok(Metadata {
        arch,
        model,
        model_json: json.clone(),
        num_classes,
        classes,
        version: meta.get(META_VERSION).cloned(),
        entries: meta.into_iter().collect(),
    })
}

/// Checks `view` (file name `src`) against the store tensor `dst`; a problem is pushed.
fn check(
    problems: &mut Vec<String>,
    src: &str,
    view: &TensorView<'_>,
    dst: &str,
    want: &Tensor,
) -> bool {
    if view.dtype() != Dtype::F32 {
        problems.push(format!("{src} is {}, expected F32", view.dtype()));
        false
    } else if view.shape() != want.dims() {
        problems.push(format!(
            "{src} has shape {:?}, the model's {dst} has {:?}",
            view.shape(),
            want.dims()
        ));
        false
    } else {
        true
    }
}

/// Loads the checkpoint at `path` into `store`: every tensor of the store must be in the
/// file as F32 with the same shape, and the file may hold nothing else (except PyTorch's
/// `num_batches_tracked`, skipped whatever its dtype). All problems are checked before
/// anything is written, so on error the store is unchanged; the message names the file and
/// the tensors. Loaded parameters are new autograd leaves: create the optimiser after
/// loading. Returns the file's [`Metadata`].
pub fn load_weights(path: &Path, store: &mut ParamStore) -> Result<Metadata> {
    let bytes = read_file(path)?;
    let (st, meta) = parse(path, &bytes)?;
    let mut problems = Vec::new();
    let mut ok = Vec::new();
    for (name, want, _) in store.iter() {
        match st.tensor(name) {
            Ok(view) => {
                if check(&mut problems, name, &view, name, want) {
                    ok.push((name.to_string(), view));
                }
            }
            Err(_) => problems.push(format!("missing {name}")),
        }
    }
    let mut extra: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| store.kind(n).is_none() && !n.ends_with(NUM_BATCHES_TRACKED))
        .collect();
    extra.sort_unstable();
    problems.extend(extra.iter().map(|n| format!("unexpected {n}")));
    if !problems.is_empty() {
        return Err(data_err(
            path,
            format!("does not match the model: {}", list_problems(&problems)),
        ));
    }
    let metadata = metadata_of(path, &st, meta)?;
    let dev = store.device().clone();
    for (name, view) in ok {
        store.set(&name, to_tensor(&view, &dev)?)?;
    }
    Ok(metadata)
}

/// Initialises `backbone.*` of `store` from a torchvision ResNet state dict saved as
/// safetensors (`conv1.weight`, `bn1.*`, `layer1.0.conv1.weight`, …): each file tensor
/// `T` goes to `backbone.T`. `fc.*` and `num_batches_tracked` are ignored. Every backbone
/// tensor of the store must be in the file, F32, with the same shape, and every other file
/// tensor must have a backbone counterpart (a ResNet with other widths, depths or block
/// type is an error that names the tensors); on error the store is unchanged. Basic and
/// bottleneck ResNets (torchvision's resnet18/34 and resnet50/101) both load.
/// Returns the number of tensors loaded.
pub fn init_backbone(path: &Path, store: &mut ParamStore) -> Result<usize> {
    let bytes = read_file(path)?;
    let (st, _) = parse(path, &bytes)?;
    let mut problems = Vec::new();
    let mut ok = Vec::new();
    let mut names = st.names();
    names.sort_unstable();
    for src in names {
        if src.starts_with("fc.") || src.ends_with(NUM_BATCHES_TRACKED) {
            continue;
        }
        let dst = format!("backbone.{src}");
        let (Ok(view), Ok(want)) = (st.tensor(src), store.get(&dst)) else {
            problems.push(format!("{src} has no counterpart {dst} in the model"));
            continue;
        };
        if check(&mut problems, src, &view, &dst, want) {
            ok.push((dst, view));
        }
    }
    for (name, _, _) in store.iter() {
        if let Some(src) = name.strip_prefix("backbone.") {
            if st.tensor(src).is_err() {
                problems.push(format!("missing {src} (for {name})"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(data_err(
            path,
            format!("does not fit the backbone: {}", list_problems(&problems)),
        ));
    }
    let dev = store.device().clone();
    for (name, view) in &ok {
        store.set(name, to_tensor(view, &dev)?)?;
    }
    Ok(ok.len())
}
