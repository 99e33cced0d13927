//! `conv2d`: a hand-computed literal, parity (GPU vs CPU) and gradient checks (finite
//! differences in f64, GPU gradients vs CPU) over stride, padding, dilation, groups,
//! depthwise, non-square kernels, bias, batch and kernel-tiling edges; shape errors.

mod common;

use common::*;
use wgseg::ops::conv::{
    CONV_BC, CONV_BP, CONV_DIRECT_MIN_CHANNELS, CONV_GATHER_BC, CONV_GATHER_BP, CONV_GW_BT,
    CONV_GW_TARGET, CONV_WG, GW_IM2COL_MIN_MACS, WINOGRAD_GW_MIN_CHANNELS, WINOGRAD_MIN_CHANNELS,
};
use wgseg::ops::{conv2d_grad_input, Conv2dParams};
use wgseg::{Device, Error, Shape, Tensor};

/// One convolution case: `x [n, cin, h, w]`, `w [cout, cin/groups, kh, kw]`.
struct Case {
    n: usize,
    cin: usize,
    hw: (usize, usize),
    cout: usize,
    k: (usize, usize),
    p: Conv2dParams,
    bias: bool,
    /// Differentiate with respect to x (else it is held constant).
    grad_x: bool,
}

impl Case {
    fn new(n: usize, cin: usize, hw: (usize, usize), cout: usize, k: (usize, usize)) -> Case {
        Case {
            n,
            cin,
            hw,
            cout,
            k,
            p: Conv2dParams::default(),
            bias: true,
            grad_x: true,
        }
    }
    fn p(self, p: Conv2dParams) -> Case {
        Case { p, ..self }
    }
    fn no_bias(self) -> Case {
        Case {
            bias: false,
            ..self
        }
    }

    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.cin, self.hw.0, self.hw.1]
    }
    fn w_shape(&self) -> [usize; 4] {
        [self.cout, self.cin / self.p.groups, self.k.0, self.k.1]
    }

    fn check(&self, name: &str) {
        let (xs, ws) = (self.x_shape(), self.w_shape());
        let seed = xs.iter().chain(&ws).sum::<usize>() as u64;
        let x = uniform(xs.iter().product(), seed, -1.0, 1.0);
        let w = uniform(ws.iter().product(), seed + 1, -1.0, 1.0);
        let mut inputs = vec![
            if self.grad_x {
                Input::param(xs, x)
            } else {
                Input::constant(xs, x)
            },
            Input::param(ws, w),
        ];
        if self.bias {
            inputs.push(Input::param(
                [self.cout],
                uniform(self.cout, seed + 2, -1.0, 1.0),
            ));
        }
        let p = self.p;
        check_op(name, &inputs, Check::new(DOT, DOT), |t| {
            t[0].conv2d(&t[1], t.get(2), p)
        });
    }
}

#[test]
fn conv2d_literal_matches_hand_computation() {
    // x = 1..9 as a 3×3 image, a 2×2 kernel of ones: each output sums a 2×2 window.
    // Windows: 1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28; bias 0.5 added.
    let mut devs = vec![Device::Cpu];
    devs.extend(gpu());
    for dev in devs {
        let x = Tensor::from_vec((1..=9).map(|v| v as f32).collect(), [1, 1, 3, 3], &dev).unwrap();
        let w = Tensor::ones([1, 1, 2, 2], &dev).unwrap();
        let b = Tensor::full([1], 0.5, &dev).unwrap();
        let y = x.conv2d(&w, Some(&b), Conv2dParams::default()).unwrap();
        assert_eq!(y.dims(), [1, 1, 2, 2]);
        assert_eq!(y.to_vec().unwrap(), vec![12.5, 16.5, 24.5, 28.5]);
        // Stride 2, padding 1: windows at (−1, −1), (−1, 1), (1, −1), (1, 1) of the padded
        // image: 1, 2+3, 4+7, 5+6+8+9.
        let y = x.conv2d(&w, None, Conv2dParams::new(2, 1, 1, 1)).unwrap();
        assert_eq!(y.to_vec().unwrap(), vec![1.0, 5.0, 11.0, 28.0]);
    }
}

/// x shape, w shape, params, expected output shape.
type ShapeCase = ([usize; 4], [usize; 4], Conv2dParams, [usize; 4]);

#[test]
fn conv2d_output_shapes_follow_pytorch() {
    let dev = Device::Cpu;
    // (x [N, C, H, W], w, params, expected [N, Cout, Ho, Wo]) with
    // Ho = (H + 2·ph − dh·(KH − 1) − 1) / sh + 1.
    let cases: &[ShapeCase] = &[
        (
            [1, 1, 7, 5],
            [2, 1, 3, 3],
            Conv2dParams::new(2, 1, 1, 1),
            [1, 2, 4, 3],
        ),
        (
            [2, 1, 9, 9],
            [1, 1, 3, 3],
            Conv2dParams::new(1, 0, 2, 1),
            [2, 1, 5, 5],
        ),
        (
            [1, 4, 8, 8],
            [6, 2, 1, 3],
            Conv2dParams::default().with_padding(0, 1).with_groups(2),
            [1, 6, 8, 8],
        ),
        (
            [1, 1, 6, 6],
            [1, 1, 3, 3],
            Conv2dParams::new(3, 0, 1, 1),
            [1, 1, 2, 2],
        ),
    ];
    for (xs, ws, p, want) in cases {
        let x = Tensor::zeros(*xs, &dev).unwrap();
        let w = Tensor::zeros(*ws, &dev).unwrap();
        assert_eq!(
            x.conv2d(&w, None, *p).unwrap().dims(),
            want,
            "{xs:?} {ws:?} {p:?}"
        );
    }
}

#[test]
fn conv2d_1x1() {
    Case::new(2, 3, (5, 7), 5, (1, 1)).check("1x1 bias");
    Case::new(1, 1, (1, 1), 1, (1, 1))
        .no_bias()
        .check("1x1 single element");
}

#[test]
fn conv2d_3x3_pad1_odd_sizes() {
    let p = Conv2dParams::new(1, 1, 1, 1);
    Case::new(2, 3, (7, 5), 5, (3, 3))
        .p(p)
        .check("3x3 pad 1 bias");
    Case::new(2, 3, (7, 5), 5, (3, 3))
        .p(p)
        .no_bias()
        .check("3x3 pad 1 no bias");
    Case::new(1, 2, (4, 6), 3, (3, 3)).check("3x3 valid");
}

/// A private GPU context of the default options for the path assertions
/// ([`assert_winograd`], the im2col test: profiling a shared one would see other tests'
/// kernels), where the texture GEMM is on; `None` without a GPU or where it is off, as on
/// the GL backend (nothing to check).
fn winograd_context() -> Option<std::sync::Arc<wgseg::gpu::GpuContext>> {
    gpu()?;
    let ctx = wgseg::gpu::GpuContext::new(&wgseg::gpu::GpuOptions::default()).expect("context");
    ctx.texture_gemm().then_some(ctx)
}

/// Runs `case`'s forward and backward on `ctx` and asserts that the Winograd kernels ran,
/// grad-weight's too when `grad_weight`: the shapes of the Winograd cases must stay ones
/// the path takes.
fn assert_winograd(
    ctx: &std::sync::Arc<wgseg::gpu::GpuContext>,
    name: &str,
    case: &Case,
    grad_weight: bool,
) {
    let kernels = kernels_run(ctx, case);
    let ran = |k: &str| kernels.iter().any(|n| n == &format!("winograd.wgsl::{k}"));
    assert!(
        ran("wino_input") && ran("wino_output"),
        "{name}: no Winograd forward: {kernels:?}"
    );
    assert_eq!(
        ran("wino_grad_weight"),
        grad_weight,
        "{name}: grad-weight path: {kernels:?}"
    );
}

#[test]
fn conv2d_winograd_same_layers() {
    // 3×3, stride 1, padding = dilation and enough channels and pixels: the Winograd
    // F(4×4, 3×3) path on the texture GEMM's adapters (the storage-buffer kernels on the
    // others). Planes of whole and of cut 4 × 4 tiles, channels not a multiple of 4,
    // Cin ≠ Cout, with and without bias, x held constant (no grad-input), dilation 2.
    let p = Conv2dParams::new(1, 1, 1, 1);
    let c = WINOGRAD_MIN_CHANNELS;
    let cases = [
        (
            "winograd whole tiles, bias",
            Case::new(1, c, (36, 36), 2 * c + 1, (3, 3)).p(p),
        ),
        (
            "winograd cut tiles, channels not a multiple of 4",
            Case::new(1, c + 3, (35, 37), 2 * c + 3, (3, 3))
                .p(p)
                .no_bias(),
        ),
        (
            "winograd, x constant",
            Case {
                grad_x: false,
                ..Case::new(1, c + 8, (36, 36), 2 * c + 8, (3, 3)).p(p)
            },
        ),
        // Dilation 2 with padding 2: four phase sub-grids of 18 × 17 pixels, each an
        // undilated layer.
        (
            "winograd dilation 2",
            Case::new(1, c, (36, 34), 2 * c + 1, (3, 3)).p(Conv2dParams::new(1, 2, 2, 1)),
        ),
    ];
    let ctx = winograd_context();
    for (name, case) in &cases {
        case.check(name);
        if let Some(ctx) = &ctx {
            assert_winograd(ctx, name, case, false);
        }
    }
}

#[test]
fn conv2d_winograd_grad_weight() {
    // Enough channels for grad-weight's Winograd product too, in both orientations (the
    // product [Cout] × [Cin] or its transpose, whichever pads less), and dilated.
    let g = WINOGRAD_GW_MIN_CHANNELS;
    let p = Conv2dParams::new(1, 1, 1, 1);
    let cases = [
        (
            "winograd grad-weight, Cout > Cin",
            Case::new(1, g, (36, 36), g + 2, (3, 3)).p(p).no_bias(),
        ),
        (
            "winograd grad-weight, Cin > Cout",
            Case::new(1, g + 2, (36, 36), g, (3, 3)).p(p),
        ),
        (
            "winograd grad-weight, dilation 2",
            Case::new(1, g, (36, 36), g, (3, 3)).p(Conv2dParams::new(1, 2, 2, 1)),
        ),
    ];
    let ctx = winograd_context();
    for (name, case) in &cases {
        case.check(name);
        if let Some(ctx) = &ctx {
            assert_winograd(ctx, name, case, true);
        }
    }
}

/// Runs `case`'s forward and backward on `ctx` (profiled) and returns the kernels that ran.
fn kernels_run(ctx: &std::sync::Arc<wgseg::gpu::GpuContext>, case: &Case) -> Vec<String> {
    let dev = Device::Gpu(ctx.clone());
    let (xs, ws) = (case.x_shape(), case.w_shape());
    let x = Tensor::from_vec(uniform(xs.iter().product(), 5, -1.0, 1.0), xs, &dev)
        .unwrap()
        .as_param();
    let w = Tensor::from_vec(uniform(ws.iter().product(), 6, -1.0, 1.0), ws, &dev)
        .unwrap()
        .as_param();
    ctx.set_profiling(true);
    let loss = x.conv2d(&w, None, case.p).unwrap().sum().unwrap();
    wgseg::autograd::backward(&loss).unwrap();
    let kernels = ctx.profile_report().into_iter().map(|r| r.0).collect();
    ctx.set_profiling(false);
    kernels
}

#[test]
fn conv2d_grad_weight_im2col() {
    // Output rows not a multiple of 4 pixels wide and a product of at least
    // GW_IM2COL_MIN_MACS: the texture GEMM's grad-weight runs over an explicit im2col matrix
    // (K = output pixels, each image's padded to a multiple of 4). A `small` layer4 layer
    // (6×6, dilation 2, WIDE tiles on CPU adapters), and planes of 35 pixels (padded K) with
    // enough K steps for two bands.
    let cases = [
        (
            "im2col 6×6 dilation 2",
            Case::new(8, 128, (6, 6), 128, (3, 3)).p(Conv2dParams::new(1, 2, 2, 1)),
        ),
        (
            // Dilation 2 on odd planes: not a Winograd layer (whose narrow grad-weight
            // keeps the implicit window).
            "im2col 5×7 planes, two bands",
            Case::new(32, 128, (5, 7), 32, (3, 3))
                .p(Conv2dParams::new(1, 2, 2, 1))
                .no_bias(),
        ),
    ];
    for (name, case) in &cases {
        let (ws, px) = (case.w_shape(), case.n * case.hw.0 * case.hw.1);
        assert!(
            ws.iter().product::<usize>() * px >= GW_IM2COL_MIN_MACS,
            "{name}: too small a product for the im2col path"
        );
    }
    let ctx = winograd_context();
    for (name, case) in &cases {
        case.check(name);
        if let Some(ctx) = &ctx {
            let kernels = kernels_run(ctx, case);
            assert!(
                kernels.iter().any(|k| k == "pack.wgsl::pack_im2col"),
                "{name}: grad-weight did not take the im2col product: {kernels:?}"
            );
        }
    }
}

#[test]
fn conv2d_stride() {
    Case::new(2, 3, (7, 5), 5, (3, 3))
        .p(Conv2dParams::new(2, 1, 1, 1))
        .check("stride 2 pad 1");
    Case::new(1, 2, (8, 7), 3, (2, 3))
        .p(Conv2dParams::default().with_stride(2, 3).with_padding(0, 1))
        .no_bias()
        .check("stride (2, 3)");
    Case::new(1, 2, (9, 9), 2, (3, 3))
        .p(Conv2dParams::new(3, 2, 1, 1))
        .check("stride 3 pad 2");
}

#[test]
fn conv2d_dilation() {
    Case::new(2, 3, (7, 5), 4, (3, 3))
        .p(Conv2dParams::new(1, 2, 2, 1))
        .check("dilation 2 pad 2");
    // Dilation 6 with padding 6 (the ASPP setting): most taps of a small image read padding.
    Case::new(1, 2, (9, 7), 3, (3, 3))
        .p(Conv2dParams::new(1, 6, 6, 1))
        .check("dilation 6 pad 6");
    Case::new(1, 2, (9, 7), 3, (3, 3))
        .p(Conv2dParams::new(2, 2, 2, 1).with_dilation(2, 3))
        .no_bias()
        .check("stride 2 dilation (2, 3)");
}

#[test]
fn conv2d_groups_and_depthwise() {
    Case::new(2, 4, (5, 7), 6, (3, 3))
        .p(Conv2dParams::new(1, 1, 1, 2))
        .check("groups 2");
    Case::new(1, 6, (5, 5), 9, (3, 3))
        .p(Conv2dParams::new(2, 1, 1, 3))
        .no_bias()
        .check("groups 3 stride 2");
    Case::new(2, 3, (7, 5), 3, (3, 3))
        .p(Conv2dParams::new(1, 1, 1, 3))
        .check("depthwise");
    Case::new(1, 3, (7, 5), 6, (3, 3))
        .p(Conv2dParams::new(1, 2, 2, 3))
        .no_bias()
        .check("depthwise multiplier 2 dilation 2");
}

#[test]
fn conv2d_non_square_kernels() {
    Case::new(2, 3, (7, 5), 5, (1, 3))
        .p(Conv2dParams::default().with_padding(0, 1))
        .check("1x3");
    Case::new(2, 3, (7, 5), 5, (3, 1))
        .p(Conv2dParams::default().with_padding(1, 0))
        .no_bias()
        .check("3x1");
    Case::new(1, 2, (6, 9), 3, (2, 5)).check("2x5 valid");
}

#[test]
fn conv2d_weight_gradient_alone() {
    // x held constant: only the weight and bias gradients are computed.
    Case {
        grad_x: false,
        ..Case::new(2, 3, (5, 5), 4, (3, 3)).p(Conv2dParams::new(1, 1, 1, 1))
    }
    .check("x constant");
}

#[test]
fn conv2d_gather_kernels_more_than_one_workgroup() {
    // Few channels: the gather kernels. Forward 2·3·16·12 = 1152 outputs > one workgroup's
    // CONV_WG·BC·BP of the gather kernel.
    let c = Case::new(2, 2, (16, 12), 3, (3, 3)).p(Conv2dParams::new(1, 1, 1, 1));
    const { assert!(3 < CONV_DIRECT_MIN_CHANNELS) };
    const { assert!(2 * 3 * 16 * 12 > CONV_WG as usize * CONV_GATHER_BC * CONV_GATHER_BP) };
    c.check("more than one workgroup");
}

#[test]
fn conv2d_gather_tiling_remainders() {
    // Gather forward: Cout = 5 (channel block of 4 + 1), Ho·Wo = 17·17 = 289 pixels (72 blocks
    // of 4 + 1); gather grad-input (stride 2): Cin = 3 (< 4).
    const COUT: usize = 5;
    const CIN: usize = 3;
    const {
        assert!(COUT % CONV_GATHER_BC != 0 && (17 * 17) % CONV_GATHER_BP != 0);
        assert!(COUT < CONV_DIRECT_MIN_CHANNELS && CIN % CONV_GATHER_BC != 0);
    };
    Case::new(1, CIN, (17, 17), COUT, (3, 3))
        .p(Conv2dParams::new(1, 1, 1, 1))
        .check("remainders");
    Case::new(1, CIN, (17, 17), COUT, (3, 3))
        .p(Conv2dParams::new(2, 1, 1, 1))
        .check("remainders stride 2");
    // Groups whose channel blocks end mid-block, with stride and dilation remainders.
    Case::new(2, 6, (11, 9), 10, (3, 2))
        .p(Conv2dParams::new(2, 2, 2, 2).with_stride(2, 3))
        .check("grouped remainders");
}

#[test]
fn conv2d_direct_tiling_remainders_everywhere() {
    // Direct kernels (≥ CONV_DIRECT_MIN_CHANNELS channels per group). Forward: Cout = 17
    // (a 16-channel block + 1), N·Ho·Wo = 2·9·13 = 234 pixels (14 blocks of 16 + 10, blocks
    // straddling the two images), K = 18·9 = 162. Grad-input (stride 1, the flipped forward):
    // Cin = 18 channels (16 + 2), 234 pixels. Grad-weight: Cout = 17 (16 + 1), K = 162 taps
    // (10 blocks of 16 + 2), one chunk per output row (few invocations per chunk), so the
    // partial sums are added.
    const {
        assert!(17 % CONV_BC != 0 && 18 % CONV_BC != 0 && 234 % CONV_BP != 0);
        assert!(162 % CONV_GW_BT != 0 && 17 >= CONV_DIRECT_MIN_CHANNELS);
        assert!(2 * 2 * 11 < CONV_GW_TARGET);
    };
    Case::new(2, 18, (9, 13), 17, (3, 3))
        .p(Conv2dParams::new(1, 1, 1, 1))
        .check("direct remainders");
    // Dilation and asymmetric padding through the padded copy; grad-input with padding below
    // the dilated reach (flipped-kernel padding 2·2 − 1 = 3 and 2·1 − 0 = 2).
    Case::new(1, 9, (7, 8), 10, (3, 2))
        .p(Conv2dParams::default()
            .with_padding(1, 0)
            .with_dilation(2, 2))
        .no_bias()
        .check("direct dilation");
    // Stride 2: direct forward and grad-weight, gather grad-input.
    Case::new(1, 9, (9, 7), 8, (3, 3))
        .p(Conv2dParams::new(2, 1, 1, 1))
        .check("direct stride 2");
    // 1×1 with padding 1 (more than the kernel's reach of 0): grad-input falls back to the
    // gather kernel.
    Case::new(1, 8, (3, 4), 9, (1, 1))
        .p(Conv2dParams::new(1, 1, 1, 1))
        .check("direct 1x1 pad 1");
    // 1×1 without padding: no padded copy, flipped-kernel padding 0.
    Case::new(2, 9, (3, 5), 8, (1, 1)).check("direct 1x1");
    // Groups: 2 groups of 8 input → 9 output channels.
    Case::new(1, 16, (5, 6), 18, (3, 3))
        .p(Conv2dParams::new(1, 1, 1, 2))
        .check("direct groups");
}

#[test]
fn conv2d_direct_more_than_one_workgroup() {
    // 34·34 = 1156 pixels in 73 blocks of 16 × 2 channel blocks = 146 invocations, more than
    // one workgroup of CONV_WG.
    const { assert!(2 * (34 * 34usize).div_ceil(CONV_BP) > CONV_WG as usize) };
    Case::new(1, 8, (34, 34), 17, (3, 3))
        .p(Conv2dParams::new(1, 1, 1, 1))
        .check("direct more than one workgroup");
}

fn shape_err(r: wgseg::Result<Tensor>, needle: &str) {
    match r {
        Err(Error::Shape { op, msg }) => assert!(
            msg.contains(needle),
            "{op}: message {msg:?} does not mention {needle:?}"
        ),
        Err(e) => panic!("expected a shape error mentioning {needle:?}, got {e}"),
        Ok(t) => panic!("expected a shape error mentioning {needle:?}, got {t:?}"),
    }
}

#[test]
fn conv2d_shape_errors() {
    let dev = Device::Cpu;
    let t = |s: &[usize]| Tensor::zeros(s.to_vec(), &dev).unwrap();
    let d = Conv2dParams::default();
    let x = t(&[1, 4, 5, 5]);
    shape_err(t(&[4, 5, 5]).conv2d(&t(&[2, 4, 3, 3]), None, d), "rank 4");
    shape_err(x.conv2d(&t(&[2, 4, 3]), None, d), "rank 4");
    shape_err(x.conv2d(&t(&[2, 3, 3, 3]), None, d), "input channels");
    shape_err(
        t(&[1, 5, 5, 5]).conv2d(&t(&[2, 2, 3, 3]), None, d.with_groups(2)),
        "divisible by groups",
    );
    shape_err(
        x.conv2d(&t(&[3, 2, 3, 3]), None, d.with_groups(2)),
        "divisible by groups",
    );
    shape_err(
        x.conv2d(&t(&[2, 4, 7, 3]), None, d),
        "larger than the padded input",
    );
    shape_err(
        x.conv2d(&t(&[2, 4, 3, 3]), None, Conv2dParams::new(1, 1, 4, 1)),
        "larger than the padded input",
    );
    shape_err(x.conv2d(&t(&[2, 4, 3, 3]), Some(&t(&[3])), d), "bias");
    shape_err(
        x.conv2d(&t(&[2, 4, 3, 3]), None, Conv2dParams::new(0, 0, 1, 1)),
        "at least 1",
    );
    shape_err(
        x.conv2d(&t(&[2, 4, 3, 3]), None, d.with_groups(0)),
        "at least 1",
    );
    shape_err(t(&[0, 4, 5, 5]).conv2d(&t(&[2, 4, 3, 3]), None, d), "empty");
    // A padded input just large enough is fine: 7 × 7 kernel on 5 × 5 with padding 1.
    assert_eq!(
        x.conv2d(&t(&[2, 4, 7, 7]), None, Conv2dParams::new(1, 1, 1, 1))
            .unwrap()
            .dims(),
        [1, 2, 1, 1]
    );
    shape_err(
        conv2d_grad_input(
            &t(&[1, 2, 4, 4]),
            &t(&[2, 4, 3, 3]),
            &Shape::new(&[1, 4, 5, 5]),
            d,
        ),
        "dy has shape",
    );
}

#[test]
fn conv_shaders_validate_with_naga() {
    use wgseg::gpu::Shader;
    for s in [
        Shader::Conv,
        Shader::ConvDirect,
        Shader::ConvGradWeight,
        Shader::ConvPack,
    ] {
        let module = naga::front::wgsl::parse_str(&s.source())
            .unwrap_or_else(|e| panic!("{}: {}", s.file(), e.emit_to_string(&s.source())));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {e:?}", s.file()));
        assert!(s.body().lines().count() <= 300, "{} is too long", s.file());
    }
}
