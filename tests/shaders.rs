//! Every shader module (prelude + family file) parses and validates with naga: no GPU needed.

use wgseg::gpu::shaders::{Shader, PRELUDE};

fn validate(name: &str, src: &str, caps: naga::valid::Capabilities) -> naga::Module {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    module
}

/// Only the shaders built behind the SUBGROUP feature may use subgroup operations.
fn caps_for(s: Shader) -> naga::valid::Capabilities {
    if s.needs_subgroups() {
        naga::valid::Capabilities::SUBGROUP
    } else {
        naga::valid::Capabilities::empty()
    }
}

#[test]
fn every_shader_validates() {
    validate("prelude.wgsl", PRELUDE, naga::valid::Capabilities::empty());
    for s in Shader::ALL {
        let m = validate(s.file(), &s.source(), caps_for(*s));
        assert!(
            !m.entry_points.is_empty(),
            "{} has no entry point",
            s.file()
        );
        for ep in &m.entry_points {
            assert_eq!(
                ep.stage,
                naga::ShaderStage::Compute,
                "{}::{}",
                s.file(),
                ep.name
            );
        }
    }
}

#[test]
fn every_shader_file_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let registered: Vec<&str> = Shader::ALL.iter().map(|s| s.file()).collect();
    for entry in std::fs::read_dir(&dir).expect("shaders/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if name.ends_with(".wgsl") && name != "prelude.wgsl" {
            assert!(
                registered.contains(&name.as_str()),
                "shaders/{name} is not in the registry"
            );
        }
    }
}

#[test]
fn shaders_bind_at_most_six_storage_buffers_per_entry() {
    for s in Shader::ALL {
        let m = validate(s.file(), &s.source(), caps_for(*s));
        // Distinct binding slots: a file may declare differently typed views of one slot
        // for different entry points (pixel_loss.wgsl's vec4 views).
        let storage = m
            .global_variables
            .iter()
            .filter(|(_, v)| matches!(v.space, naga::AddressSpace::Storage { .. }))
            .filter_map(|(_, v)| v.binding.as_ref().map(|b| (b.group, b.binding)))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert!(
            storage <= 6,
            "{} declares {storage} storage bindings",
            s.file()
        );
    }
}
