// Packing of tensors into texel arrays (rgba32float textures, see GpuTex in
// src/gpu/pool.rs) for the texture GEMM (gemm_tex.wgsl). One invocation per texel: four
// storage loads (zero where a padded index is out of range) and one texture store. Each is
// one pass over a tensor that the GEMM then reads many times through the cheaper texel
// fetches. Layouts (t = texel index):
//   pack_rows:    a strided matrix, rows of k-packed texels: t = (b·rows + r)·kq + q holds
//                 src[b·stride0 + r·stride1 + (4q + j)·stride2], j = 0..3, zero for 4q+j ≥ k.
//                 (dim0 = rows, dim1 = kq, dim2 = k = limit.)
//   pack_weights: conv weights as GEMM rows: t = m·(taps·c4) + tap·c4 + q holds
//                 src[m·stride0 + (4q + j)·stride1 + tap·stride2], zero for 4q+j ≥ limit.
//                 (dim0 = taps, dim1 = c4.) Forward: m = co, channels ci; grad-input: m = ci,
//                 channels co (the transposed weights).
//   pack_atlas:   an NCHW tensor channel-packed: t = (img·c4 + q)·hw + pixel holds the 4
//                 channels 4q..4q+3 of that pixel, zero for channels ≥ limit = C.
//                 (dim0 = c4, dim1 = hw.)
//   pack_pixels:  an NCHW tensor as rows of pixel-packed texels per channel: row m = channel,
//                 t = m·(n·ho·wq) + (img·ho + y)·wq + x4 holds x = 4·x4 + j of row y, zero for
//                 x ≥ wo = limit. (dim0 = channels, dim1 = ho, dim2 = wq, stride0 = n.)
//   pack_dy:      both pack_atlas (into dst) and pack_pixels (into dst2) of one NCHW tensor
//                 (a convolution's output gradient, which grad-input reads as an atlas and
//                 grad-weight as pixel rows) in one pass: one invocation per 4 channels × 4
//                 pixels of a row, t = ((img·c4 + q)·ho + y)·wq + x4. (dim0 = c4, dim1 = ho,
//                 dim2 = wq, stride0 = n, stride1 = wo, limit = C.)
//   pack_im2col:  a convolution's explicit im2col matrix for grad-weight, n-packed: texel
//                 t = (k·taps + tap)·c4 + q holds channels 4q .. 4q+3 of the atlas pixel that
//                 tap (ty, tx) = (tap / kw, tap % kw) of the window reads for output pixel
//                 k = img·hw4 + y·wo + x (zero outside the plane and for y·wo + x ≥ ho·wo):
//                 (y·sy + ty·ty_step + oy, x·sx + tx·tx_step + ox), the texture GEMM's
//                 B_MODE 2 window. One invocation per (k, tap) writes its c4 texels.
//                 (total = K·taps, dim0 = c4, dim1 = taps, dim2 = kw, stride0 = ho·wo,
//                 stride1 = hw4, stride2 = wo.)
//   pack_atlas4, pack_dy4: pack_atlas where hw % 4 = 0 and pack_dy where wo % 4 = 0, one
//                 invocation per 4 channels × 4 pixels reading one vec4 per channel (a
//                 quarter of the loads); pack_atlas4's t = (img·c4 + q)·(hw/4) + pixel/4.
//   pack_weights2: both pack_weights layouts of conv weights [co, ci, taps] in one pass: the
//                 forward's (rows co, channels ci) into dst and grad-input's (rows ci,
//                 channels co) into dst2; one invocation per 4 co × 4 ci of a tap,
//                 t = (qo·c4i + qi)·taps + tap. (dim0 = taps, dim1 = c4i, dim2 = c4o,
//                 stride0 = Cout, limit = Cin.)

struct PackParams {
    total: u32,
    dim0: u32,
    dim1: u32,
    dim2: u32,
    stride0: u32,
    stride1: u32,
    stride2: u32,
    limit: u32,
    // pack_im2col only.
    h: u32,
    w: u32,
    sy: i32,
    sx: i32,
    ty: i32,
    tx: i32,
    oy: i32,
    ox: i32,
}

@group(0) @binding(0) var<uniform> p: PackParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;
// pack_dy and pack_weights2: the second layout.
@group(0) @binding(3) var dst2: texture_storage_2d<rgba32float, write>;
// pack_atlas4, pack_dy4: the source as vec4 (planes, or rows, of a multiple of 4 values).
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
// pack_im2col: the input's channel-packed atlas (pack_atlas's layout).
@group(0) @binding(1) var atlas_in: texture_2d<f32>;

// src[i] if ok, else 0 (index 0 is read instead: no branch).
fn load_or_zero(i: u32, ok: bool) -> f32 {
    return select(0.0, src[select(0u, i, ok)], ok);
}

// src[base + j·step] for j = 0..3, zero where first + j ≥ limit (the padded tail).
fn gather4(base: u32, step: u32, first: u32, limit: u32) -> vec4<f32> {
    return vec4<f32>(load_or_zero(base, first < limit),
                     load_or_zero(base + step, first + 1u < limit),
                     load_or_zero(base + 2u * step, first + 2u < limit),
                     load_or_zero(base + 3u * step, first + 3u < limit));
}

@compute @workgroup_size(64)
fn pack_rows(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.total) {
        return;
    }
    let q = t % p.dim1;
    let r = (t / p.dim1) % p.dim0;
    let b = t / (p.dim1 * p.dim0);
    let k = 4u * q;
    let base = b * p.stride0 + r * p.stride1 + k * p.stride2;
    textureStore(dst, texel_xy(t), gather4(base, p.stride2, k, p.limit));
}

@compute @workgroup_size(64)
fn pack_weights(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.total) {
        return;
    }
    let q = t % p.dim1;
    let tap = (t / p.dim1) % p.dim0;
    let m = t / (p.dim1 * p.dim0);
    let c = 4u * q;
    let base = m * p.stride0 + tap * p.stride2 + c * p.stride1;
    textureStore(dst, texel_xy(t), gather4(base, p.stride1, c, p.limit));
}

@compute @workgroup_size(64)
fn pack_atlas(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.total) {
        return;
    }
    let pix = t % p.dim1;
    let q = (t / p.dim1) % p.dim0;
    let img = t / (p.dim1 * p.dim0);
    let c = 4u * q;
    let base = (img * p.limit + c) * p.dim1 + pix;
    textureStore(dst, texel_xy(t), gather4(base, p.dim1, c, p.limit));
}

@compute @workgroup_size(64)
fn pack_pixels(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.total) {
        return;
    }
    let x4 = t % p.dim2;
    let y = (t / p.dim2) % p.dim1;
    let img = (t / (p.dim2 * p.dim1)) % p.stride0;
    let m = t / (p.dim2 * p.dim1 * p.stride0);
    let x = 4u * x4;
    let base = ((img * p.dim0 + m) * p.dim1 + y) * p.limit + x;
    textureStore(dst, texel_xy(t), gather4(base, 1u, x, p.limit));
}

// The block of pack_dy / pack_dy4 invocation t: (x4, y, q, img).
fn dy_block(t: u32) -> vec4<u32> {
    let wq = p.dim2;
    let ho = p.dim1;
    return vec4<u32>(t % wq, (t / wq) % ho, (t / (wq * ho)) % p.dim0, t / (wq * ho * p.dim0));
}

@compute @workgroup_size(64)
fn pack_dy(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.total) {
        return;
    }
    let ho = p.dim1;
    let wo = p.stride1;
    let chans = p.limit;
    let b = dy_block(t);
    let y = b.y;
    let q = b.z;
    let img = b.w;
    let x = 4u * b.x;
    // r[j]: the 4 pixels x .. x+3 of channel 4q + j (zero past the row or the channels).
    var r: array<vec4<f32>, 4>;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let ch = 4u * q + j;
        let base = ((img * chans + min(ch, chans - 1u)) * ho + y) * wo + x;
        r[j] = gather4(base, 1u, x, select(0u, wo, ch < chans));
    }
    store_dy(b, r);
}

// Stores pack_dy / pack_dy4's block b = (x4, y, q, img): r[j] holds pixels 4·x4 .. +3 of
// channel 4q + j, written as pixel rows (dst2, channels that exist) and as atlas texels
// (dst, pixels inside the row).
fn store_dy(b: vec4<u32>, r: array<vec4<f32>, 4>) {
    let c4 = p.dim0;
    let ho = p.dim1;
    let wq = p.dim2;
    let wo = p.stride1;
    let chans = p.limit;
    let x4 = b.x;
    let y = b.y;
    let q = b.z;
    let img = b.w;
    let rows = p.stride0 * ho * wq;
    let row = (img * ho + y) * wq + x4;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let ch = 4u * q + j;
        if (ch < chans) {
            textureStore(dst2, texel_xy(ch * rows + row), r[j]);
        }
    }
    let x = 4u * x4;
    let pix0 = (img * c4 + q) * ho * wo + y * wo + x;
    for (var i = 0u; i < 4u; i = i + 1u) {
        if (x + i < wo) {
            textureStore(dst, texel_xy(pix0 + i), vec4<f32>(r[0][i], r[1][i], r[2][i], r[3][i]));
        }
    }
}

@compute @workgroup_size(64)
fn pack_weights2(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.total) {
        return;
    }
    let taps = p.dim0;
    let c4i = p.dim1;
    let c4o = p.dim2;
    let cout = p.stride0;
    let cin = p.limit;
    let tap = t % taps;
    let qi = (t / taps) % c4i;
    let qo = t / (taps * c4i);
    // r[j]: input channels 4qi .. 4qi+3 of output channel 4qo + j at this tap.
    var r: array<vec4<f32>, 4>;
    for (var j = 0u; j < 4u; j = j + 1u) {
        let co = 4u * qo + j;
        let base = (min(co, cout - 1u) * cin + 4u * qi) * taps + tap;
        r[j] = gather4(base, taps, 4u * qi, select(0u, cin, co < cout));
        if (co < cout) {
            textureStore(dst, texel_xy(co * taps * c4i + tap * c4i + qi), r[j]);
        }
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let ci = 4u * qi + i;
        if (ci < cin) {
            textureStore(dst2, texel_xy(ci * taps * c4o + tap * c4o + qo),
                         vec4<f32>(r[0][i], r[1][i], r[2][i], r[3][i]));
        }
    }
}

// The vec4 of channel 4q + j at vec4 index i4 of its plane from src4 (zero past the
// channels).
fn channel4(plane0: u32, j: u32, q: u32, chans: u32, plane4: u32, i4: u32) -> vec4<f32> {
    let ch = 4u * q + j;
    let v = src4[(plane0 + min(ch, chans - 1u)) * plane4 + i4];
    return select(vec4<f32>(0.0), v, ch < chans);
}

@compute @workgroup_size(64)
fn pack_atlas4(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.total) {
        return;
    }
    let c4 = p.dim0;
    let hw4 = p.dim1 / 4u;
    let chans = p.limit;
    let pq = t % hw4;
    let q = (t / hw4) % c4;
    let img = t / (hw4 * c4);
    let r0 = channel4(img * chans, 0u, q, chans, hw4, pq);
    let r1 = channel4(img * chans, 1u, q, chans, hw4, pq);
    let r2 = channel4(img * chans, 2u, q, chans, hw4, pq);
    let r3 = channel4(img * chans, 3u, q, chans, hw4, pq);
    let pix0 = (img * c4 + q) * p.dim1 + 4u * pq;
    textureStore(dst, texel_xy(pix0), vec4<f32>(r0.x, r1.x, r2.x, r3.x));
    textureStore(dst, texel_xy(pix0 + 1u), vec4<f32>(r0.y, r1.y, r2.y, r3.y));
    textureStore(dst, texel_xy(pix0 + 2u), vec4<f32>(r0.z, r1.z, r2.z, r3.z));
    textureStore(dst, texel_xy(pix0 + 3u), vec4<f32>(r0.w, r1.w, r2.w, r3.w));
}

@compute @workgroup_size(64)
fn pack_dy4(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let t = wg_linear(wid, nwg) * 64u + lid;
    if (t >= p.total) {
        return;
    }
    let ho = p.dim1;
    let wq = p.dim2;
    let chans = p.limit;
    let b = dy_block(t);
    // Planes of ho·wq vec4; this row's vec4 x4.
    let i4 = b.y * wq + b.x;
    var r: array<vec4<f32>, 4>;
    for (var j = 0u; j < 4u; j = j + 1u) {
        r[j] = channel4(b.w * chans, j, b.z, chans, ho * wq, i4);
    }
    store_dy(b, r);
}

@compute @workgroup_size(64)
fn pack_im2col(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    // One invocation per (k, tap), writing its c4 texels: the index arithmetic (integer
    // divisions, slow on CPU adapters) once per pixel and tap, not per texel.
    let i = wg_linear(wid, nwg) * 64u + lid;
    if (i >= p.total) {
        return;
    }
    let c4 = p.dim0;
    let tap = i % p.dim1;
    let k = i / p.dim1;
    let img = k / p.stride1;
    let pix = k % p.stride1;
    let yy = i32(pix / p.stride2) * p.sy + i32(tap / p.dim2) * p.ty + p.oy;
    let xx = i32(pix % p.stride2) * p.sx + i32(tap % p.dim2) * p.tx + p.ox;
    let ok = pix < p.stride0 && yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w);
    let plane = p.h * p.w;
    let at = select(0u, (img * c4 * p.h + u32(max(yy, 0))) * p.w + u32(max(xx, 0)), ok);
    for (var q = 0u; q < c4; q = q + 1u) {
        let v = textureLoad(atlas_in, texel_xy(at + q * plane), 0);
        textureStore(dst, texel_xy(i * c4 + q), select(vec4<f32>(0.0), v, ok));
    }
}
