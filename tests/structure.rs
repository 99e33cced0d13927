//! The engine's autograd is closed to applications: `src/autograd/` reaches no module built
//! on top of the engine (losses, model, training, data, CLI, layers, optimisers). Fused ops
//! from those come in through `autograd::record_custom` instead.

use std::path::{Path, PathBuf};

/// The modules built on the engine, which `src/autograd/` must not name.
const APPLICATION_MODULES: [&str; 7] = ["losses", "model", "train", "data", "cli", "nn", "optim"];

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The forbidden paths that `text` names: `crate::M` (in a `use`, a path or a `use crate::{…}`
/// group) for an application module `M`, and any `super::super` (which climbs out of
/// `src/autograd/` into the crate root and from there anywhere).
fn forbidden_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let squeezed: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if squeezed.contains("super::super") {
            found.push(format!("line {}: {}", no + 1, line.trim()));
            continue;
        }
        for m in APPLICATION_MODULES {
            let direct = format!("crate::{m}");
            let grouped = format!("crate::{{{m}");
            let hit = [direct, grouped].iter().any(|p| {
                squeezed.match_indices(p.as_str()).any(|(i, _)| {
                    // A whole module name: `crate::nn` but not `crate::nnue`.
                    let rest = &squeezed[i + p.len()..];
                    !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
            }) || grouped_mentions(&squeezed, m);
            if hit {
                found.push(format!("line {}: {}", no + 1, line.trim()));
            }
        }
    }
    found
}

/// Whether a `crate::{a, b::c, …}` group on the line names module `m` as one of its items.
fn grouped_mentions(squeezed: &str, m: &str) -> bool {
    squeezed.match_indices("crate::{").any(|(i, p)| {
        let group = &squeezed[i + p.len()..];
        let group = group.split('}').next().unwrap_or("");
        group
            .split(',')
            .any(|item| item == m || item.starts_with(&format!("{m}::")))
    })
}

#[test]
fn autograd_imports_nothing_from_the_applications() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/autograd");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("op.rs")),
        "no src/autograd/op.rs under {}",
        dir.display()
    );
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for hit in forbidden_paths(&text) {
            bad.push(format!("{}: {hit}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "src/autograd/ must not reach the modules built on the engine \
         (record fused ops with autograd::record_custom instead):\n{}",
        bad.join("\n")
    );
}

/// The scanner itself: it flags the forms of import it is meant to catch and nothing else.
#[test]
fn the_scanner_flags_application_paths() {
    for bad in [
        "use crate::losses::pixel::PixelConfig;",
        "use crate::losses;",
        "use crate::{error::Result, losses::aucseg};",
        "use crate::{model, ops};",
        "    let x = crate::train::loss::build(&cfg);",
        "use crate :: nn :: ParamStore;",
        "use super::super::optim::Sgd;",
        "use crate::cli::train;",
        "use crate::data::Groups;",
    ] {
        assert_eq!(forbidden_paths(bad).len(), 1, "not flagged: {bad}");
    }
    for good in [
        "use crate::ops::softmax::softmax_backward;",
        "use crate::tensor::{same_device, DType, Tensor};",
        "use crate::error::{Error, Result};",
        "// the losses of crate::losses are recorded through the door",
        "use super::custom::CustomOp;",
        "use crate::nnue::Thing;",
    ] {
        assert!(forbidden_paths(good).is_empty(), "flagged: {good}");
    }
}
