//! The shader registry: every `.wgsl` file of `shaders/`, embedded once.
//!
//! A module's source is `prelude.wgsl` followed by the family's file (plain concatenation,
//! no templating); kernels are specialised only through `override` constants.

/// The prelude every module starts with.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// One shader file (one op family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Unary,
    Binary,
    Select,
    Reduce,
    Argmax,
    Copy,
    Pool,
    Resize,
    Conv,
    ConvGradWeight,
    ConvPack,
    ConvDirect,
    Softmax,
    CrossEntropy,
    Matmul,
    MatmulSg,
    GemmTex,
    Pack,
    BatchNorm,
    Metrics,
    Fill,
    Optim,
    Auc,
    AucQuad,
    AucPairwise,
    PixelLoss,
}

impl Shader {
    /// Every registered shader, for validation tests and warm-up.
    pub const ALL: &'static [Shader] = &[
        Shader::Unary,
        Shader::Binary,
        Shader::Select,
        Shader::Reduce,
        Shader::Argmax,
        Shader::Copy,
        Shader::Pool,
        Shader::Resize,
        Shader::Conv,
        Shader::ConvGradWeight,
        Shader::ConvPack,
        Shader::ConvDirect,
        Shader::Softmax,
        Shader::CrossEntropy,
        Shader::Matmul,
        Shader::MatmulSg,
        Shader::GemmTex,
        Shader::Pack,
        Shader::BatchNorm,
        Shader::Metrics,
        Shader::Fill,
        Shader::Optim,
        Shader::Auc,
        Shader::AucQuad,
        Shader::AucPairwise,
        Shader::PixelLoss,
    ];

    /// File name inside `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            Shader::Unary => "unary.wgsl",
            Shader::Binary => "binary.wgsl",
            Shader::Select => "select.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Argmax => "argmax.wgsl",
            Shader::Copy => "copy.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::Resize => "resize.wgsl",
            Shader::Conv => "conv.wgsl",
            Shader::ConvGradWeight => "conv_grad_weight.wgsl",
            Shader::ConvPack => "conv_pack.wgsl",
            Shader::ConvDirect => "conv_direct.wgsl",
            Shader::Softmax => "softmax.wgsl",
            Shader::CrossEntropy => "cross_entropy.wgsl",
            Shader::Matmul => "matmul.wgsl",
            Shader::MatmulSg => "matmul_sg.wgsl",
            Shader::GemmTex => "gemm_tex.wgsl",
            Shader::Pack => "pack.wgsl",
            Shader::BatchNorm => "batch_norm.wgsl",
            Shader::Metrics => "metrics.wgsl",
            Shader::Fill => "fill.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Auc => "auc.wgsl",
            Shader::AucQuad => "auc_quad.wgsl",
            Shader::AucPairwise => "auc_pairwise.wgsl",
            Shader::PixelLoss => "pixel_loss.wgsl",
        }
    }

    /// The family's own source (without the prelude).
    pub fn body(self) -> &'static str {
        match self {
            Shader::Unary => include_str!("../../shaders/unary.wgsl"),
            Shader::Binary => include_str!("../../shaders/binary.wgsl"),
            Shader::Select => include_str!("../../shaders/select.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Argmax => include_str!("../../shaders/argmax.wgsl"),
            Shader::Copy => include_str!("../../shaders/copy.wgsl"),
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::Resize => include_str!("../../shaders/resize.wgsl"),
            Shader::Conv => include_str!("../../shaders/conv.wgsl"),
            Shader::ConvGradWeight => include_str!("../../shaders/conv_grad_weight.wgsl"),
            Shader::ConvPack => include_str!("../../shaders/conv_pack.wgsl"),
            Shader::ConvDirect => include_str!("../../shaders/conv_direct.wgsl"),
            Shader::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Shader::CrossEntropy => include_str!("../../shaders/cross_entropy.wgsl"),
            Shader::Matmul => include_str!("../../shaders/matmul.wgsl"),
            Shader::MatmulSg => include_str!("../../shaders/matmul_sg.wgsl"),
            Shader::GemmTex => include_str!("../../shaders/gemm_tex.wgsl"),
            Shader::Pack => include_str!("../../shaders/pack.wgsl"),
            Shader::BatchNorm => include_str!("../../shaders/batch_norm.wgsl"),
            Shader::Metrics => include_str!("../../shaders/metrics.wgsl"),
            Shader::Fill => include_str!("../../shaders/fill.wgsl"),
            Shader::Optim => include_str!("../../shaders/optim.wgsl"),
            Shader::Auc => include_str!("../../shaders/auc.wgsl"),
            Shader::AucQuad => include_str!("../../shaders/auc_quad.wgsl"),
            Shader::AucPairwise => include_str!("../../shaders/auc_pairwise.wgsl"),
            Shader::PixelLoss => include_str!("../../shaders/pixel_loss.wgsl"),
        }
    }

    /// Whether the module uses subgroup operations: it is only built on devices with the
    /// `SUBGROUP` feature (and naga validates it with that capability).
    pub fn needs_subgroups(self) -> bool {
        matches!(self, Shader::MatmulSg | Shader::GemmTex)
    }

    /// The complete module source: prelude + body.
    pub fn source(self) -> String {
        let mut s = String::with_capacity(PRELUDE.len() + self.body().len() + 1);
        s.push_str(PRELUDE);
        s.push('\n');
        s.push_str(self.body());
        s
    }
}
