//! Every `#[repr(C)]` uniform parameter struct against naga's layout of its WGSL twin (no GPU
//! needed). The two are written by hand on each side; nothing else checks that they agree,
//! and a disagreement shows only as wrong numbers.
//!
//! The rule, per (Rust struct, shader, WGSL struct) listed in [`twins`]:
//!
//! 1. the WGSL struct is the type of the shader's `@group(0) @binding(0) var<uniform>`;
//! 2. `size_of` of the Rust struct = the WGSL struct's span;
//! 3. the listing names every Rust field: listed fields tile the struct without gap or
//!    overlap (`bytemuck::Pod` rules out implicit padding, so this proves none is missing);
//! 4. every WGSL member whose name does not start with `_` has a Rust field of the same name,
//!    at the same offset, of the same size and scalar kind (`f32`, `u32`, `i32`);
//! 5. Rust fields named `_…` are padding, and so are fields listed after `unused` (fields of
//!    a Rust struct shared with a shader that ignores them): each lies entirely on WGSL
//!    padding (bytes of WGSL members named `_…` or of no member at all);
//! 6. every other Rust field has a WGSL member of the same name (rule 4 then applies).
//!
//! Two completeness checks keep the listing honest: every `#[repr(C)]` struct under `src/`
//! is listed, and every registered shader has at least one entry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use super::shaders::Shader;
use super::strided::StridedParams;
use crate::losses::aucseg::closed::AucParams;
use crate::losses::aucseg::pairwise::PairParams;
use crate::losses::pixel_gpu::PixParams;
use crate::ops::confusion::ConfusionParams;
use crate::ops::conv::direct::DirectUniform;
use crate::ops::conv::winograd::WinoParams;
use crate::ops::conv::ConvUniform;
use crate::ops::fill::FillParams;
use crate::ops::gemm::{GemmParams, PackParams};
use crate::ops::matmul::MatmulParams;
use crate::ops::norm::BnParams;
use crate::ops::pool::PoolParams;
use crate::ops::reduce::ReduceParams;
use crate::ops::resize::ResizeParams;
use crate::ops::softmax::SoftmaxParams;
use crate::ops::unary::UnaryParams;
use crate::optim::kernels::OptimParams;

/// One field of a Rust parameter struct.
struct Field {
    name: &'static str,
    offset: usize,
    size: usize,
    rust_type: &'static str,
    /// Listed after `unused`: the shader does not read it, so it must lie on WGSL padding.
    unused: bool,
}

fn field<T, F>(name: &'static str, offset: usize, _access: fn(&T) -> &F, unused: bool) -> Field {
    Field {
        name,
        offset,
        size: std::mem::size_of::<F>(),
        rust_type: std::any::type_name::<F>(),
        unused,
    }
}

/// A Rust struct and the WGSL struct it mirrors in one shader.
struct Twin {
    rust: &'static str,
    size: usize,
    fields: Vec<Field>,
    shader: Shader,
    wgsl: &'static str,
}

/// `layout!(RustType, Shader::X, "WgslStruct", [field, …])`, optionally followed by
/// `unused [field, …]` (see the module docs). List every field of the Rust struct.
macro_rules! layout {
    ($t:ident, $shader:expr, $wgsl:literal, [$($f:ident),* $(,)?]
     $(unused [$($u:ident),* $(,)?])?) => {
        Twin {
            rust: stringify!($t),
            size: std::mem::size_of::<$t>(),
            fields: vec![
                $(field::<$t, _>(stringify!($f), std::mem::offset_of!($t, $f), |s: &$t| &s.$f, false),)*
                $($(field::<$t, _>(stringify!($u), std::mem::offset_of!($t, $u), |s: &$t| &s.$u, true),)*)?
            ],
            shader: $shader,
            wgsl: $wgsl,
        }
    };
}

/// The listing: one entry per (Rust struct, shader) pair that a kernel launch binds.
fn twins() -> Vec<Twin> {
    vec![
        layout!(UnaryParams, Shader::Unary, "Params", [n, a, b, _pad]),
        layout!(
            StridedParams,
            Shader::Binary,
            "Strided",
            [n, rank, _pad, offsets, shape, strides]
        ),
        layout!(
            StridedParams,
            Shader::Select,
            "Strided",
            [n, rank, _pad, offsets, shape, strides]
        ),
        layout!(
            StridedParams,
            Shader::Copy,
            "Strided",
            [n, rank, _pad, offsets, shape, strides]
        ),
        layout!(
            ReduceParams,
            Shader::Reduce,
            "Params",
            [outputs, r, inner, lanes, scale, in_offset, _pad]
        ),
        layout!(
            ReduceParams,
            Shader::Argmax,
            "Params",
            [outputs, r, inner, lanes, _pad] unused [scale, in_offset]
        ),
        layout!(
            PoolParams,
            Shader::Pool,
            "Params",
            [n, h, w, oh, ow, kh, kw, sh, sw, ph, pw, _pad]
        ),
        layout!(
            ResizeParams,
            Shader::Resize,
            "Params",
            [n, ih, iw, oh, ow, scale_h, scale_w, _pad]
        ),
        layout!(
            ConvUniform,
            Shader::Conv,
            "Params",
            [
                n, cin, h, w, cout, ho, wo, groups, cin_g, cout_g, kh, kw, sh, sw, ph, pw, dh, dw,
                cblocks, pblocks, kblocks, blocks, chunk, nchunks
            ]
        ),
        layout!(
            DirectUniform,
            Shader::ConvDirect,
            "ConvDirectParams",
            [
                n, cin, hp, wp, cout, ho, wo, groups, cin_g, cout_g, kh, kw, sh, sw, dh, dw, kt,
                cblocks, pblocks, total, rows, nchunks, ph, pw, h, w, _p0, _p1
            ]
        ),
        layout!(
            DirectUniform,
            Shader::ConvPack,
            "ConvDirectParams",
            [
                n, cin, hp, wp, cout, ho, wo, groups, cin_g, cout_g, kh, kw, sh, sw, dh, dw, kt,
                cblocks, pblocks, total, rows, nchunks, ph, pw, h, w, _p0, _p1
            ]
        ),
        layout!(
            DirectUniform,
            Shader::ConvGradWeight,
            "ConvDirectParams",
            [
                n, cin, hp, wp, cout, ho, wo, groups, cin_g, cout_g, kh, kw, sh, sw, dh, dw, kt,
                cblocks, pblocks, total, rows, nchunks, ph, pw, h, w, _p0, _p1
            ]
        ),
        layout!(
            SoftmaxParams,
            Shader::Softmax,
            "Params",
            [columns, c, inner, _pad]
        ),
        layout!(
            PixParams,
            Shader::PixelLoss,
            "Params",
            [
                n,
                c,
                inner,
                ignore_index,
                lanes,
                partials,
                key,
                den_const,
                scale,
                gamma,
                inv_t,
                eps,
                ls_keep,
                ls_each,
                _pad
            ]
        ),
        layout!(
            MatmulParams,
            Shader::Matmul,
            "MatmulParams",
            [
                m, n, k, batch, tiles_m, tiles_n, batch_rank, _p0, a_rs, a_cs, b_rs, b_cs, bshape,
                a_bs, b_bs
            ]
        ),
        layout!(
            MatmulParams,
            Shader::MatmulSg,
            "MatmulParams",
            [
                m, n, k, batch, tiles_m, tiles_n, batch_rank, _p0, a_rs, a_cs, b_rs, b_cs, bshape,
                a_bs, b_bs
            ]
        ),
        layout!(
            WinoParams,
            Shader::Winograd,
            "WinoParams",
            [total, c, h, w, tw, tiles_img, tiles, t4, c4, cout, cin, c4o, c4i, d, sh, sw]
        ),
        layout!(
            GemmParams,
            Shader::GemmTex,
            "GemmParams",
            [
                m,
                n,
                kq,
                batch,
                tiles_m,
                tiles_n,
                splits,
                k,
                a_row,
                a_k,
                a_batch,
                taps,
                b_col,
                b_k,
                b_batch,
                kw,
                c4,
                h,
                w,
                cin,
                ho,
                wo,
                rows_per_split,
                rows,
                sy,
                sx,
                ty,
                tx,
                oy,
                ox,
                taps_full,
                _p1,
                ky0,
                kys,
                kx0,
                kxs,
                kw_full,
                out_h,
                out_w,
                out_y0,
                out_sy,
                out_x0,
                out_sx,
                _p2
            ]
        ),
        layout!(
            PackParams,
            Shader::Pack,
            "PackParams",
            [
                total, dim0, dim1, dim2, stride0, stride1, stride2, limit, h, w, sy, sx, ty, tx,
                oy, ox
            ]
        ),
        layout!(
            BnParams,
            Shader::BatchNorm,
            "BnParams",
            [planes, c, hw, chunks, inv_n, eps, momentum, unbias]
        ),
        layout!(FillParams, Shader::Fill, "Params", [n, value, _p0, _p1]),
        layout!(
            OptimParams,
            Shader::Optim,
            "Params",
            [
                n,
                flags,
                lr,
                momentum,
                weight_decay,
                beta1,
                beta2,
                eps,
                decay,
                step_size,
                rsqrt_bc2,
                max_norm
            ]
        ),
        layout!(
            ConfusionParams,
            Shader::Confusion,
            "ConfusionParams",
            [n, classes, ignore, _p0]
        ),
        layout!(
            AucParams,
            Shader::Auc,
            "Params",
            [n, c, inner, ignore_index, chunks, chunk_len, margin, lambda]
        ),
        layout!(
            AucParams,
            Shader::AucQuad,
            "Params",
            [n, c, inner, ignore_index, chunks, chunk_len, margin, lambda]
        ),
        layout!(
            PairParams,
            Shader::AucPairwise,
            "PairParams",
            [n, c, inner, tiles, present, entries, _p0, _p1, margin, scale, _p2, _p3]
        ),
    ]
}

/// Scalar kind of a Rust field type (`u32`, `[[u32; 8]; 4]`, …), as naga names it.
fn rust_scalar(type_name: &str) -> Option<naga::ScalarKind> {
    let base = type_name.trim_start_matches('[');
    let base = base.split(';').next().unwrap_or(base);
    match base {
        "f32" => Some(naga::ScalarKind::Float),
        "u32" => Some(naga::ScalarKind::Uint),
        "i32" => Some(naga::ScalarKind::Sint),
        _ => None,
    }
}

/// Scalar kind of a WGSL member type (scalars, vectors, arrays of them).
fn wgsl_scalar(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Option<naga::ScalarKind> {
    match &module.types[ty].inner {
        naga::TypeInner::Scalar(s) => Some(s.kind),
        naga::TypeInner::Vector { scalar, .. } => Some(scalar.kind),
        naga::TypeInner::Array { base, .. } => wgsl_scalar(module, *base),
        _ => None,
    }
}

/// A WGSL member: name, byte range and scalar kind.
struct Member {
    name: String,
    start: usize,
    end: usize,
    scalar: Option<naga::ScalarKind>,
}

/// The members and span of struct `name` in `module`, or why not.
fn wgsl_struct(module: &naga::Module, name: &str) -> Result<(Vec<Member>, usize), String> {
    let (_, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .ok_or_else(|| format!("no WGSL type named {name}"))?;
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        return Err(format!("WGSL type {name} is not a struct"));
    };
    let members = members
        .iter()
        .map(|m| Member {
            name: m.name.clone().unwrap_or_default(),
            start: m.offset as usize,
            end: (m.offset + module.types[m.ty].inner.size(module.to_ctx())) as usize,
            scalar: wgsl_scalar(module, m.ty),
        })
        .collect();
    Ok((members, *span as usize))
}

/// Everything wrong with one twin (empty: they agree).
fn check(t: &Twin) -> Vec<String> {
    let src = t.shader.source();
    let module = match naga::front::wgsl::parse_str(&src) {
        Ok(m) => m,
        Err(e) => return vec![e.emit_to_string(&src)],
    };
    let mut errs = Vec::new();
    let uniform = module.global_variables.iter().find(|(_, g)| {
        g.space == naga::AddressSpace::Uniform
            && g.binding
                .as_ref()
                .is_some_and(|b| b.group == 0 && b.binding == 0)
    });
    match uniform {
        Some((_, g)) if module.types[g.ty].name.as_deref() == Some(t.wgsl) => {}
        Some((_, g)) => errs.push(format!(
            "the uniform at @binding(0) is a {:?}, not {}",
            module.types[g.ty].name, t.wgsl
        )),
        None => errs.push("no uniform at @group(0) @binding(0)".into()),
    }
    let (members, span) = match wgsl_struct(&module, t.wgsl) {
        Ok(v) => v,
        Err(e) => {
            errs.push(e);
            return errs;
        }
    };
    // 2. Size.
    if t.size != span {
        errs.push(format!("size {} bytes, WGSL span {span}", t.size));
    }
    // 3. The listed fields tile the Rust struct.
    let mut by_offset: Vec<&Field> = t.fields.iter().collect();
    by_offset.sort_by_key(|f| f.offset);
    let mut at = 0;
    for f in &by_offset {
        if f.offset != at {
            errs.push(format!(
                "listed fields leave bytes {at}..{} uncovered or overlapping before `{}`: \
                 list every field of the struct",
                f.offset, f.name
            ));
        }
        at = f.offset + f.size;
    }
    if at != t.size {
        errs.push(format!(
            "listed fields end at byte {at} of {}: list every field of the struct",
            t.size
        ));
    }
    // 4. Named WGSL members have a Rust twin.
    for m in members.iter().filter(|m| !m.name.starts_with('_')) {
        let Some(f) = t.fields.iter().find(|f| f.name == m.name) else {
            errs.push(format!("WGSL member `{}` has no Rust field", m.name));
            continue;
        };
        if f.unused {
            errs.push(format!(
                "`{}` is listed as unused but the WGSL has it",
                f.name
            ));
        }
        if f.offset != m.start {
            errs.push(format!(
                "`{}` at offset {} in Rust, {} in WGSL",
                f.name, f.offset, m.start
            ));
        }
        if f.size != m.end - m.start {
            errs.push(format!(
                "`{}` is {} bytes in Rust, {} in WGSL",
                f.name,
                f.size,
                m.end - m.start
            ));
        }
        if rust_scalar(f.rust_type) != m.scalar {
            errs.push(format!(
                "`{}` is {} in Rust, {:?} in WGSL",
                f.name, f.rust_type, m.scalar
            ));
        }
    }
    for f in &t.fields {
        let padding = f.unused || f.name.starts_with('_');
        if padding {
            // 5. Padding and unused fields lie on WGSL padding.
            let (a, b) = (f.offset, f.offset + f.size);
            for m in members.iter().filter(|m| !m.name.starts_with('_')) {
                if m.start < b && a < m.end {
                    errs.push(format!(
                        "Rust padding/unused `{}` (bytes {a}..{b}) overlaps WGSL member `{}`",
                        f.name, m.name
                    ));
                }
            }
        } else if !members.iter().any(|m| m.name == f.name) {
            // 6. Named Rust fields exist in WGSL.
            errs.push(format!(
                "Rust field `{}` has no WGSL member (name it `_…` if padding, or list it \
                 under `unused` if this shader ignores it)",
                f.name
            ));
        }
    }
    errs
}

#[test]
fn uniform_structs_match_their_wgsl_twins() {
    let mut failures = Vec::new();
    for t in twins() {
        for e in check(&t) {
            failures.push(format!(
                "{} vs {}::{}: {e}",
                t.rust,
                t.shader.file(),
                t.wgsl
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Names of the structs marked `#[repr(C)]` in the Rust files under `dir`.
fn repr_c_structs(dir: &std::path::Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            repr_c_structs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut marked = false;
            for line in text.lines().map(str::trim) {
                if line == "#[repr(C)]" {
                    marked = true;
                } else if marked {
                    if let Some(rest) = line.split("struct ").nth(1) {
                        let name = rest.split(|c: char| !c.is_alphanumeric() && c != '_');
                        out.insert(name.take(1).collect());
                        marked = false;
                    } else if !line.starts_with("#[") && !line.starts_with("//") {
                        marked = false;
                    }
                }
            }
        }
    }
}

#[test]
fn every_uniform_struct_and_shader_is_listed() {
    let twins = twins();
    let listed: BTreeSet<String> = twins.iter().map(|t| t.rust.to_string()).collect();
    let mut found = BTreeSet::new();
    repr_c_structs(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    let missing: Vec<&String> = found.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "#[repr(C)] structs not in twins() of src/gpu/layout_tests.rs: {missing:?}"
    );
    for s in Shader::ALL {
        assert!(
            twins.iter().any(|t| t.shader == *s),
            "{} has no entry in twins() of src/gpu/layout_tests.rs",
            s.file()
        );
    }
}
