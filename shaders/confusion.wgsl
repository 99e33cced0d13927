// The confusion matrix of predicted against true class ids (src/ops/confusion.rs).
//
// confusion: for every pixel whose label is not the ignore index, adds one to
// cm[label · classes + pred] with a u32 atomic (counts are integers: no f32 atomics). The
// matrix lives in a buffer owned by its `Confusion` and accumulates over batches on the
// device. Labels ≥ classes other than the ignore index are counted in cm[classes²] (the
// "bad label" slot) so the host can report them instead of corrupting the matrix.

override WG: u32 = 256u;

struct ConfusionParams {
    n: u32,
    classes: u32,
    ignore: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: ConfusionParams;
@group(0) @binding(1) var<storage, read> pred: array<u32>;
@group(0) @binding(2) var<storage, read> label: array<u32>;
@group(0) @binding(3) var<storage, read_write> cm: array<atomic<u32>>;

@compute @workgroup_size(WG)
fn confusion(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = wg_linear(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let y = label[i];
    if (y == p.ignore) {
        return;
    }
    if (y >= p.classes) {
        atomicAdd(&cm[p.classes * p.classes], 1u);
        return;
    }
    let q = min(pred[i], p.classes - 1u);
    atomicAdd(&cm[y * p.classes + q], 1u);
}
