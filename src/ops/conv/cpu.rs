//! The CPU reference of `conv2d` and its two gradients: plain loops in f64, written as the
//! direct definition (the forward loops over outputs and taps; both gradients scatter from
//! each (output, tap) pair), independently of the GPU kernels' gather formulations. The
//! helpers are inlined so that tests (built at opt-level 1) can afford layers of a few
//! thousand pixels and tens of channels.

use super::Geom;

/// Input coordinate read by output coordinate `o` through kernel tap `k`, if inside the input
/// (`o·stride − pad + k·dilation`, zero padding outside `[0, size)`).
#[inline(always)]
fn tap(o: usize, k: usize, stride: usize, pad: usize, dil: usize, size: usize) -> Option<usize> {
    (o * stride + k * dil)
        .checked_sub(pad)
        .filter(|&i| i < size)
}

/// Visits every (n, co, oh, ow, ci, ky, kx, ih, iw) term of the convolution sum whose input
/// tap lies inside the input; `ci` is the global input channel.
#[inline(always)]
fn for_each_term(g: &Geom, mut f: impl FnMut([usize; 4], [usize; 3], [usize; 2])) {
    for n in 0..g.n {
        for co in 0..g.cout {
            for oh in 0..g.ho {
                for ow in 0..g.wo {
                    for cl in 0..g.cin_g {
                        for ky in 0..g.kh {
                            let Some(ih) = tap(oh, ky, g.sh, g.ph, g.dh, g.h) else {
                                continue;
                            };
                            for kx in 0..g.kw {
                                let Some(iw) = tap(ow, kx, g.sw, g.pw, g.dw, g.w) else {
                                    continue;
                                };
                                f([n, co, oh, ow], [cl, ky, kx], [ih, iw]);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn out_index(g: &Geom, [n, co, oh, ow]: [usize; 4]) -> usize {
    ((n * g.cout + co) * g.ho + oh) * g.wo + ow
}

#[inline(always)]
fn in_index(g: &Geom, n: usize, co: usize, cl: usize, [ih, iw]: [usize; 2]) -> usize {
    let ci = (co / g.cout_g) * g.cin_g + cl;
    ((n * g.cin + ci) * g.h + ih) * g.w + iw
}

#[inline(always)]
fn w_index(g: &Geom, co: usize, [cl, ky, kx]: [usize; 3]) -> usize {
    ((co * g.cin_g + cl) * g.kh + ky) * g.kw + kx
}

/// `y = conv2d(x, w) + bias`, shape `[N, Cout, Ho, Wo]`.
pub(super) fn forward(g: &Geom, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; g.n * g.cout * g.ho * g.wo];
    for_each_term(g, |o, k, i| {
        y[out_index(g, o)] += w[w_index(g, o[1], k)] * x[in_index(g, o[0], o[1], k[0], i)];
    });
    if let Some(b) = bias {
        let plane = g.ho * g.wo;
        for (i, v) in y.iter_mut().enumerate() {
            *v += b[(i / plane) % g.cout];
        }
    }
    y
}

/// `∂L/∂x` from `dy = ∂L/∂y`, shape `[N, Cin, H, W]`.
pub(super) fn grad_input(g: &Geom, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; g.n * g.cin * g.h * g.w];
    for_each_term(g, |o, k, i| {
        dx[in_index(g, o[0], o[1], k[0], i)] += w[w_index(g, o[1], k)] * dy[out_index(g, o)];
    });
    dx
}

/// `∂L/∂w` from `dy = ∂L/∂y`, shape `[Cout, Cin/groups, KH, KW]`.
pub(super) fn grad_weight(g: &Geom, dy: &[f64], x: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; g.cout * g.cin_g * g.kh * g.kw];
    for_each_term(g, |o, k, i| {
        dw[w_index(g, o[1], k)] += x[in_index(g, o[0], o[1], k[0], i)] * dy[out_index(g, o)];
    });
    dw
}
