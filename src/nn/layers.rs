//! The layers of the shipped architectures (docs/model.md), each a description whose tensors live in a
//! [`ParamStore`] under PyTorch's names.

use super::{kaiming_normal_fan_out, InitRng, Kind, ParamStore};
use crate::error::{Error, Result};
use crate::ops::{
    batch_norm2d_with, group_norm, layer_norm2d, Activation, BatchNormState, Conv2dParams,
    Epilogue, BN_EPS, BN_MOMENTUM,
};
use crate::tensor::Tensor;

/// The epilogue `ReLU(bn(x))`.
pub const RELU: Epilogue<'static> = Epilogue {
    act: Activation::Relu,
    residual: None,
};

/// `name.suffix`, or `suffix` at the root.
fn join(prefix: &str, suffix: &str) -> String {
    if prefix.is_empty() {
        suffix.to_string()
    } else {
        format!("{prefix}.{suffix}")
    }
}

/// Registers a convolution's `{prefix}.weight` of `shape` (Kaiming-normal, fan-out over
/// `shape[0]·shape[2]·shape[3]`) and, given its length, `{prefix}.bias` (zeros); returns
/// their names.
fn conv_tensors(
    store: &mut ParamStore,
    rng: &mut InitRng,
    prefix: &str,
    shape: [usize; 4],
    bias: Option<usize>,
) -> Result<(String, Option<String>)> {
    let dev = store.device().clone();
    let weight = join(prefix, "weight");
    let w = kaiming_normal_fan_out(rng, shape);
    store.insert(&weight, Tensor::from_vec(w, shape, &dev)?, Kind::Param)?;
    let bias = match bias {
        Some(n) => {
            let name = join(prefix, "bias");
            store.insert(&name, Tensor::zeros([n], &dev)?, Kind::Param)?;
            Some(name)
        }
        None => None,
    };
    Ok((weight, bias))
}

/// A 2-D convolution (`torch.nn.Conv2d`): `{prefix}.weight [cout, cin/groups, kh, kw]`
/// (Kaiming-normal, fan-out, ReLU gain) and, optionally, `{prefix}.bias [cout]` (zeros).
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: String,
    bias: Option<String>,
    params: Conv2dParams,
}

impl Conv2d {
    /// A square `k × k` convolution; padding keeps the size at stride 1
    /// (`dilation·(k − 1)/2`), as every conv of DeepLabV3+ does.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &mut ParamStore,
        rng: &mut InitRng,
        prefix: &str,
        (cin, cout): (usize, usize),
        k: usize,
        stride: usize,
        dilation: usize,
        groups: usize,
        bias: bool,
    ) -> Result<Conv2d> {
        let params = Conv2dParams::new(stride, dilation * (k - 1) / 2, dilation, groups);
        Conv2d::with_params(store, rng, prefix, (cin, cout), (k, k), params, bias)
    }

    /// A `kh × kw` convolution with explicit stride, padding, dilation and groups (PyTorch's
    /// `Conv2d` arguments), Kaiming-normal over `cout·kh·kw`.
    pub fn with_params(
        store: &mut ParamStore,
        rng: &mut InitRng,
        prefix: &str,
        (cin, cout): (usize, usize),
        (kh, kw): (usize, usize),
        params: Conv2dParams,
        bias: bool,
    ) -> Result<Conv2d> {
        let shape = [cout, cin / params.groups.max(1), kh, kw];
        let (weight, bias) = conv_tensors(store, rng, prefix, shape, bias.then_some(cout))?;
        Ok(Conv2d {
            weight,
            bias,
            params,
        })
    }

    pub fn forward(&self, store: &ParamStore, x: &Tensor) -> Result<Tensor> {
        let w = store.get(&self.weight)?;
        let b = match &self.bias {
            Some(n) => Some(store.get(n)?),
            None => None,
        };
        x.conv2d(w, b, self.params)
    }
}

/// Batch normalisation (`torch.nn.BatchNorm2d`, momentum 0.1, ε = 1e-5): parameters
/// `{prefix}.weight` (γ = 1) and `{prefix}.bias` (β = 0), buffers `{prefix}.running_mean`
/// (0) and `{prefix}.running_var` (1). Training normalises with the batch statistics and
/// replaces the running statistics in the store; evaluation uses the running statistics.
/// With a store in a synchronised data-parallel run ([`ParamStore::set_sync_bn`]) the batch
/// statistics are those of every replica's batch together ([`crate::dist::sync_batch_norm2d`]).
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    prefix: String,
}

impl BatchNorm2d {
    pub fn new(store: &mut ParamStore, prefix: &str, c: usize) -> Result<BatchNorm2d> {
        affine(store, prefix, c)?;
        let dev = store.device().clone();
        store.insert(
            &join(prefix, "running_mean"),
            Tensor::zeros([c], &dev)?,
            Kind::Buffer,
        )?;
        store.insert(
            &join(prefix, "running_var"),
            Tensor::ones([c], &dev)?,
            Kind::Buffer,
        )?;
        Ok(BatchNorm2d {
            prefix: prefix.to_string(),
        })
    }

    pub fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        self.forward_with(store, x, training, Epilogue::default())
    }

    /// `act(bn(x) + residual)`, the epilogue fused into the normalisation pass.
    pub fn forward_with(
        &self,
        store: &mut ParamStore,
        x: &Tensor,
        training: bool,
        ep: Epilogue,
    ) -> Result<Tensor> {
        let name = |s| join(&self.prefix, s);
        let (mean_name, var_name) = (name("running_mean"), name("running_var"));
        let state = BatchNormState {
            running_mean: store.get(&mean_name)?.clone(),
            running_var: store.get(&var_name)?.clone(),
        };
        let (gamma, beta) = (store.get(&name("weight"))?, store.get(&name("bias"))?);
        let (y, updated) = match (training, store.sync_bn()) {
            (true, Some(comm)) => {
                let (y, s) = crate::dist::sync_batch_norm2d(
                    x,
                    gamma,
                    beta,
                    &state,
                    BN_MOMENTUM,
                    BN_EPS,
                    ep,
                    comm,
                )?;
                (y, Some(s))
            }
            _ => batch_norm2d_with(x, gamma, beta, &state, training, BN_MOMENTUM, BN_EPS, ep)?,
        };
        if let Some(s) = updated {
            store.set(&mean_name, s.running_mean)?;
            store.set(&var_name, s.running_var)?;
        }
        Ok(y)
    }
}

/// `conv (no bias) → BatchNorm → ReLU` (the reference's `ConvBN`): `{prefix}.conv`,
/// `{prefix}.bn`, and with `separable` a depthwise `{prefix}.dwconv` (no BN) before a 1×1
/// `conv`.
#[derive(Clone, Debug)]
pub struct ConvBn {
    dwconv: Option<Conv2d>,
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBn {
    pub fn new(
        store: &mut ParamStore,
        rng: &mut InitRng,
        prefix: &str,
        (cin, cout): (usize, usize),
        k: usize,
        dilation: usize,
        separable: bool,
    ) -> Result<ConvBn> {
        let (dwconv, conv) = if separable {
            let dw = Conv2d::new(
                store,
                rng,
                &join(prefix, "dwconv"),
                (cin, cin),
                k,
                1,
                dilation,
                cin,
                false,
            )?;
            let pw = Conv2d::new(
                store,
                rng,
                &join(prefix, "conv"),
                (cin, cout),
                1,
                1,
                1,
                1,
                false,
            )?;
            (Some(dw), pw)
        } else {
            let c = Conv2d::new(
                store,
                rng,
                &join(prefix, "conv"),
                (cin, cout),
                k,
                1,
                dilation,
                1,
                false,
            )?;
            (None, c)
        };
        let bn = BatchNorm2d::new(store, &join(prefix, "bn"), cout)?;
        Ok(ConvBn { dwconv, conv, bn })
    }

    pub fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let x = match &self.dwconv {
            Some(dw) => dw.forward(store, x)?,
            None => x.clone(),
        };
        let y = self.conv.forward(store, &x)?;
        self.bn.forward_with(store, &y, training, RELU)
    }
}

/// A residual block's shortcut: the identity, or `downsample` (`.0` 1×1 conv with the
/// stride, no bias; `.1` BN) when the stride is not 1 or the channels change.
#[derive(Clone, Debug)]
struct Shortcut(Option<(Conv2d, BatchNorm2d)>);

impl Shortcut {
    fn new(
        store: &mut ParamStore,
        rng: &mut InitRng,
        prefix: &str,
        (cin, cout): (usize, usize),
        stride: usize,
    ) -> Result<Shortcut> {
        if stride == 1 && cin == cout {
            return Ok(Shortcut(None));
        }
        let name = join(prefix, "downsample.0");
        let c = Conv2d::new(store, rng, &name, (cin, cout), 1, stride, 1, 1, false)?;
        let bn = BatchNorm2d::new(store, &join(prefix, "downsample.1"), cout)?;
        Ok(Shortcut(Some((c, bn))))
    }

    fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        match &self.0 {
            Some((c, bn)) => {
                let y = c.forward(store, x)?;
                bn.forward(store, &y, training)
            }
            None => Ok(x.clone()),
        }
    }
}

/// `ReLU(bn(y) + identity)`: a residual block's last norm with the add fused in.
fn add_relu(
    bn: &BatchNorm2d,
    store: &mut ParamStore,
    y: &Tensor,
    training: bool,
    identity: &Tensor,
) -> Result<Tensor> {
    let ep = Epilogue {
        act: Activation::Relu,
        residual: Some(identity),
    };
    bn.forward_with(store, y, training, ep)
}

/// torchvision's `BasicBlock`: `conv1` 3×3 (stride, dilation) → `bn1` → ReLU → `conv2` 3×3
/// (dilation) → `bn2`, plus the identity or `downsample` (`.0` 1×1 conv with the stride,
/// `.1` BN) when the stride is not 1 or the width changes, → ReLU.
#[derive(Clone, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    downsample: Shortcut,
}

impl BasicBlock {
    pub fn new(
        store: &mut ParamStore,
        rng: &mut InitRng,
        prefix: &str,
        (cin, cout): (usize, usize),
        stride: usize,
        dilation: usize,
    ) -> Result<BasicBlock> {
        let p = |s| join(prefix, s);
        let conv1 = Conv2d::new(
            store,
            rng,
            &p("conv1"),
            (cin, cout),
            3,
            stride,
            dilation,
            1,
            false,
        )?;
        let bn1 = BatchNorm2d::new(store, &p("bn1"), cout)?;
        let conv2 = Conv2d::new(
            store,
            rng,
            &p("conv2"),
            (cout, cout),
            3,
            1,
            dilation,
            1,
            false,
        )?;
        let bn2 = BatchNorm2d::new(store, &p("bn2"), cout)?;
        let downsample = Shortcut::new(store, rng, prefix, (cin, cout), stride)?;
        Ok(BasicBlock {
            conv1,
            bn1,
            conv2,
            bn2,
            downsample,
        })
    }

    pub fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let identity = self.downsample.forward(store, x, training)?;
        let y = self.conv1.forward(store, x)?;
        let y = self.bn1.forward_with(store, &y, training, RELU)?;
        let y = self.conv2.forward(store, &y)?;
        add_relu(&self.bn2, store, &y, training, &identity)
    }
}

/// torchvision's `Bottleneck` (ResNet-50/101, expansion 4): `conv1` 1×1 to `width` → `bn1`
/// → ReLU → `conv2` 3×3 (stride, dilation) → `bn2` → ReLU → `conv3` 1×1 to `4·width` →
/// `bn3`, plus the identity or `downsample` (`.0` 1×1 conv with the stride, `.1` BN) when
/// the stride is not 1 or the channels change, → ReLU.
#[derive(Clone, Debug)]
pub struct Bottleneck {
    convs: [(Conv2d, BatchNorm2d); 3],
    downsample: Shortcut,
}

impl Bottleneck {
    /// Output channels per unit of `width`.
    pub const EXPANSION: usize = 4;

    pub fn new(
        store: &mut ParamStore,
        rng: &mut InitRng,
        prefix: &str,
        (cin, width): (usize, usize),
        stride: usize,
        dilation: usize,
    ) -> Result<Bottleneck> {
        let cout = width * Self::EXPANSION;
        let mut conv_bn = |i: usize, (ci, co): (usize, usize), k, s, d| -> Result<_> {
            let c = Conv2d::new(
                store,
                rng,
                &join(prefix, &format!("conv{i}")),
                (ci, co),
                k,
                s,
                d,
                1,
                false,
            )?;
            let bn = BatchNorm2d::new(store, &join(prefix, &format!("bn{i}")), co)?;
            Ok((c, bn))
        };
        let convs = [
            conv_bn(1, (cin, width), 1, 1, 1)?,
            conv_bn(2, (width, width), 3, stride, dilation)?,
            conv_bn(3, (width, cout), 1, 1, 1)?,
        ];
        let downsample = Shortcut::new(store, rng, prefix, (cin, cout), stride)?;
        Ok(Bottleneck { convs, downsample })
    }

    pub fn forward(&self, store: &mut ParamStore, x: &Tensor, training: bool) -> Result<Tensor> {
        let identity = self.downsample.forward(store, x, training)?;
        let [(c1, b1), (c2, b2), (c3, b3)] = &self.convs;
        let y = c1.forward(store, x)?;
        let y = b1.forward_with(store, &y, training, RELU)?;
        let y = c2.forward(store, &y)?;
        let y = b2.forward_with(store, &y, training, RELU)?;
        let y = c3.forward(store, &y)?;
        add_relu(b3, store, &y, training, &identity)
    }
}

/// A transposed convolution whose kernel equals its stride (`torch.nn.ConvTranspose2d(cin,
/// cout, k, stride=k)`, no padding): every input pixel becomes a `k × k` block of the
/// output, `y[n, o, k·i + a, k·j + b] = bias[o] + Σ_c w[c, o, a, b] · x[n, c, i, j]`.
/// `{prefix}.weight [cin, cout, k, k]` (PyTorch's layout; Kaiming-normal over `cin·k²`) and
/// `{prefix}.bias [cout]` (zeros). Computed as a 1×1 convolution to `cout·k²` channels
/// followed by a depth-to-space copy, so it needs no kernel of its own.
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    weight: String,
    bias: String,
}

impl ConvTranspose2d {
    pub fn new(
        store: &mut ParamStore,
        rng: &mut InitRng,
        prefix: &str,
        (cin, cout): (usize, usize),
        k: usize,
    ) -> Result<ConvTranspose2d> {
        let (weight, bias) = conv_tensors(store, rng, prefix, [cin, cout, k, k], Some(cout))?;
        let bias = bias.ok_or_else(|| Error::shape("ConvTranspose2d", "no bias registered"))?;
        Ok(ConvTranspose2d { weight, bias })
    }

    /// `[N, cin, H, W]` → `[N, cout, k·H, k·W]`.
    pub fn forward(&self, store: &ParamStore, x: &Tensor) -> Result<Tensor> {
        let w = store.get(&self.weight)?;
        let &[cin, cout, k, _] = w.dims() else {
            return Err(Error::shape(
                "ConvTranspose2d",
                format!("weight {} is not [cin, cout, k, k]", w.shape()),
            ));
        };
        let &[n, _, h, wd] = x.dims() else {
            return Err(Error::shape(
                "ConvTranspose2d",
                format!("expected [N, C, H, W], got {}", x.shape()),
            ));
        };
        // [cin, cout, k, k] -> [cout, k, k, cin] -> a 1x1 conv to cout·k² channels.
        let w1 = w
            .permute(&[1, 2, 3, 0])?
            .reshape([cout * k * k, cin, 1, 1])?;
        let y = x.conv2d(&w1, None, Conv2dParams::new(1, 0, 1, 1))?;
        // [N, cout, k, k, H, W] -> [N, cout, H, k, W, k] -> [N, cout, kH, kW].
        let y = y
            .reshape([n, cout, k, k, h, wd])?
            .permute(&[0, 1, 4, 2, 5, 3])?
            .reshape([n, cout, k * h, k * wd])?;
        y.add(&store.get(&self.bias)?.reshape([1, cout, 1, 1])?)
    }
}

/// Inserts `{prefix}.weight` (ones) and `{prefix}.bias` (zeros) of `c` channels.
fn affine(store: &mut ParamStore, prefix: &str, c: usize) -> Result<()> {
    let dev = store.device().clone();
    store.insert(
        &join(prefix, "weight"),
        Tensor::ones([c], &dev)?,
        Kind::Param,
    )?;
    store.insert(
        &join(prefix, "bias"),
        Tensor::zeros([c], &dev)?,
        Kind::Param,
    )
}

/// `{prefix}.weight` and `{prefix}.bias`.
fn affine_of<'a>(store: &'a ParamStore, prefix: &str) -> Result<(&'a Tensor, &'a Tensor)> {
    Ok((
        store.get(&join(prefix, "weight"))?,
        store.get(&join(prefix, "bias"))?,
    ))
}

/// Layer normalisation over the channels of every pixel of `[N, C, H, W]` (PyTorch's
/// `nn.LayerNorm(C)` on the `[N, H·W, C]` tokens, ε = 10⁻⁶ as SegNeXt's MSCAN uses):
/// `{prefix}.weight` (ones) and `{prefix}.bias` (zeros); see [`layer_norm2d`].
#[derive(Clone, Debug)]
pub struct LayerNorm2d {
    prefix: String,
}

impl LayerNorm2d {
    /// ε of SegNeXt's MSCAN stage norms.
    pub const EPS: f64 = 1e-6;

    pub fn new(store: &mut ParamStore, prefix: &str, c: usize) -> Result<LayerNorm2d> {
        affine(store, prefix, c)?;
        Ok(LayerNorm2d {
            prefix: prefix.to_string(),
        })
    }

    pub fn forward(&self, store: &ParamStore, x: &Tensor) -> Result<Tensor> {
        let (g, b) = affine_of(store, &self.prefix)?;
        layer_norm2d(x, g, b, Self::EPS)
    }
}

/// Group normalisation (`torch.nn.GroupNorm(groups, C)`, ε = 10⁻⁵): `{prefix}.weight`
/// (ones) and `{prefix}.bias` (zeros); see [`group_norm`].
#[derive(Clone, Debug)]
pub struct GroupNorm {
    prefix: String,
    groups: usize,
}

impl GroupNorm {
    pub const EPS: f64 = 1e-5;

    pub fn new(store: &mut ParamStore, prefix: &str, groups: usize, c: usize) -> Result<GroupNorm> {
        if groups == 0 || c % groups != 0 {
            return Err(Error::shape(
                "GroupNorm",
                format!("{c} channels do not split into {groups} groups"),
            ));
        }
        affine(store, prefix, c)?;
        Ok(GroupNorm {
            prefix: prefix.to_string(),
            groups,
        })
    }

    pub fn forward(&self, store: &ParamStore, x: &Tensor) -> Result<Tensor> {
        let (g, b) = affine_of(store, &self.prefix)?;
        group_norm(x, self.groups, g, b, Self::EPS)
    }
}
