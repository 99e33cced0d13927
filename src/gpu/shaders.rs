//! The shader registry: every `.wgsl` file of `shaders/`, embedded once.
//!
//! A module's source is `prelude.wgsl` followed by the family's file (plain concatenation,
//! no templating); kernels are specialised only through `override` constants.

/// The prelude every module starts with.
pub const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");

/// Writes the registry from one line per shader (`Variant => "file.wgsl"`): the enum, its
/// `ALL` list, the file names and the embedded sources, so that a shader is registered in
/// one place.
macro_rules! shaders {
    ($($(#[$doc:meta])* $variant:ident => $file:literal,)+) => {
        /// One shader file (one op family).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Shader {
            $($(#[$doc])* $variant,)+
        }

        impl Shader {
            /// Every registered shader, for validation tests and warm-up.
            pub const ALL: &'static [Shader] = &[$(Shader::$variant,)+];

            /// File name inside `shaders/`.
            pub fn file(self) -> &'static str {
                match self {
                    $(Shader::$variant => $file,)+
                }
            }

            /// The family's own source (without the prelude).
            pub fn body(self) -> &'static str {
                match self {
                    $(Shader::$variant => include_str!(concat!("../../shaders/", $file)),)+
                }
            }
        }
    };
}

shaders! {
    Unary => "unary.wgsl",
    Binary => "binary.wgsl",
    Select => "select.wgsl",
    Reduce => "reduce.wgsl",
    Argmax => "argmax.wgsl",
    Copy => "copy.wgsl",
    Pool => "pool.wgsl",
    Resize => "resize.wgsl",
    Conv => "conv.wgsl",
    ConvGradWeight => "conv_grad_weight.wgsl",
    ConvPack => "conv_pack.wgsl",
    ConvDirect => "conv_direct.wgsl",
    Softmax => "softmax.wgsl",
    Matmul => "matmul.wgsl",
    MatmulSg => "matmul_sg.wgsl",
    GemmTex => "gemm_tex.wgsl",
    Pack => "pack.wgsl",
    BatchNorm => "batch_norm.wgsl",
    Confusion => "confusion.wgsl",
    Fill => "fill.wgsl",
    Optim => "optim.wgsl",
    Auc => "auc.wgsl",
    AucQuad => "auc_quad.wgsl",
    AucPairwise => "auc_pairwise.wgsl",
    PixelLoss => "pixel_loss.wgsl",
    Winograd => "winograd.wgsl",
}

impl Shader {
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
