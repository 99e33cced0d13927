"""The architectures wgseg ships, as torch.nn.Modules with wgseg's tensor names.

Each class takes the keys of the `wgseg.model` checkpoint metadata (the `[model]` table of
a wgseg config) plus `num_classes`; its `state_dict()` names are exactly the checkpoint's
(docs/model.md of the wgseg repository describes each network). Every resize is bilinear
with align_corners=False; batch norm has eps 1e-5 and momentum 0.1.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

RATES = {32: (3, 6, 9), 16: (6, 12, 18), 8: (12, 24, 36)}  # ASPP rates by output stride
PLAN = {  # (stride, dilation) of layer1..layer4 by output stride
    32: [(1, 1), (2, 1), (2, 1), (2, 1)],
    16: [(1, 1), (2, 1), (2, 1), (1, 2)],
    8: [(1, 1), (2, 1), (1, 2), (1, 4)],
}


def resize(x, size):
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvBN(nn.Module):
    """conv (no bias) -> BatchNorm -> ReLU; a depthwise `dwconv` first when separable."""

    def __init__(self, cin, cout, k, dilation=1, separable=False):
        super().__init__()
        pad = dilation * (k - 1) // 2
        self.dwconv = None
        if separable:
            self.dwconv = nn.Conv2d(cin, cin, k, 1, pad, dilation, groups=cin, bias=False)
            self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        else:
            self.conv = nn.Conv2d(cin, cout, k, 1, pad, dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        if self.dwconv is not None:
            x = self.dwconv(x)
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock; every 3x3 conv of a dilated stage uses its dilation."""

    expansion = 1

    def __init__(self, cin, width, stride, dilation):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = None
        if stride != 1 or cin != width:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + idt)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3 conv, expansion 4)."""

    expansion = 4

    def __init__(self, cin, width, stride, dilation):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + idt)


class ResNet(nn.Module):
    """torchvision's names: conv1 (7x7 s2), bn1, max-pool 3x3 s2 p1, layer1..layer4."""

    def __init__(self, stem, widths, depths, block, output_stride):
        super().__init__()
        Block = Bottleneck if block == "bottleneck" else BasicBlock
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        cin = stem
        for i, (w, d, (s, dil)) in enumerate(zip(widths, depths, PLAN[output_stride])):
            blocks = []
            for j in range(d):
                blocks.append(Block(cin, w, s if j == 0 else 1, dil))
                cin = w * Block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.channels = [w * Block.expansion for w in widths]

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        low = self.layer1(x)
        return low, self.layer4(self.layer3(self.layer2(low)))


class ASPP(nn.Module):
    def __init__(self, cin, c, rates, separable):
        super().__init__()
        self.convs = nn.ModuleList(
            [ConvBN(cin, c, 1)] + [ConvBN(cin, c, 3, r, separable) for r in rates])
        self.pool = ConvBN(cin, c, 1)
        self.project = ConvBN(c * (len(rates) + 2), c, 1)

    def forward(self, x):
        ys = [b(x) for b in self.convs]
        ys.append(resize(self.pool(F.adaptive_avg_pool2d(x, 1)), x.shape[-2:]))
        return self.project(torch.cat(ys, 1))


class Decoder(nn.Module):
    def __init__(self, low_in, low, aspp, decoder, num_classes):
        super().__init__()
        self.low = ConvBN(low_in, low, 1)
        self.fuse = nn.Sequential(ConvBN(aspp + low, decoder, 3), ConvBN(decoder, decoder, 3))
        self.classifier = nn.Conv2d(decoder, num_classes, 1)

    def forward(self, low, x):
        low = self.low(low)
        return self.classifier(self.fuse(torch.cat([resize(x, low.shape[-2:]), low], 1)))


class DeepLabV3Plus(nn.Module):
    def __init__(self, num_classes, stem, widths, depths, aspp, low, decoder, output_stride,
                 block="basic", aspp_rates=None, separable_aspp=False):
        super().__init__()
        rates = tuple(aspp_rates or RATES[output_stride])
        self.backbone = ResNet(stem, widths, depths, block, output_stride)
        ch = self.backbone.channels
        self.aspp = ASPP(ch[3], aspp, rates, separable_aspp)
        self.decoder = Decoder(ch[0], low, aspp, decoder, num_classes)

    def forward(self, img):
        low, x = self.backbone(img)
        return resize(self.decoder(low, self.aspp(x)), img.shape[-2:])


class DeepLabV3(nn.Module):
    def __init__(self, num_classes, stem, widths, depths, aspp, output_stride, block="basic",
                 aspp_rates=None, separable_aspp=False):
        super().__init__()
        rates = tuple(aspp_rates or RATES[output_stride])
        self.backbone = ResNet(stem, widths, depths, block, output_stride)
        self.aspp = ASPP(self.backbone.channels[3], aspp, rates, separable_aspp)
        self.head = ConvBN(aspp, aspp, 3)
        self.classifier = nn.Conv2d(aspp, num_classes, 1)

    def forward(self, img):
        _, x = self.backbone(img)
        return resize(self.classifier(self.head(self.aspp(x))), img.shape[-2:])


class DoubleConv(nn.Sequential):
    """`.0` and `.1`: 3x3 conv -> BN -> ReLU, twice."""

    def __init__(self, cin, cout):
        super().__init__(ConvBN(cin, cout, 3), ConvBN(cout, cout, 3))


class Up(nn.Module):
    """A coarser map brought to a finer one's size: bilinear resize, or a 2x2 stride-2
    transposed convolution zero-padded at the bottom and right up to an odd size."""

    def __init__(self, how, coarse, fine):
        super().__init__()
        self.up = nn.ConvTranspose2d(coarse, fine, 2, stride=2) if how == "transposed" else None
        self.channels = fine if self.up is not None else coarse

    def forward(self, x, size):
        if self.up is None:
            return resize(x, size)
        y = self.up(x)
        return F.pad(y, [0, size[1] - y.shape[3], 0, size[0] - y.shape[2]])


class ConvNorm(nn.Module):
    """1x1 conv (no bias) -> BN."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class Gate(nn.Module):
    """Additive attention gate: x * sigmoid(psi(relu(wx(x) + wg(g))))."""

    def __init__(self, skip, gating, inter):
        super().__init__()
        self.wx = ConvNorm(skip, inter)
        self.wg = ConvNorm(gating, inter)
        self.psi = ConvNorm(inter, 1)

    def forward(self, x, g):
        return x * torch.sigmoid(self.psi(F.relu(self.wx(x) + self.wg(g))))


def check_size(x, levels):
    h, w = x.shape[-2:]
    if h >> levels == 0 or w >> levels == 0:
        raise ValueError(f"a {h}x{w} image is smaller than the {1 << levels} pixels "
                         f"{levels} pooling levels need")


class Level(nn.Module):
    def __init__(self, how, coarse, fine, attention):
        super().__init__()
        up = Up(how, coarse, fine)
        if up.up is not None:
            self.up = up.up
        self._up = [up]  # not a submodule: its `up` is registered above as `up`
        self.gate = Gate(fine, up.channels, max(fine // 2, 1)) if attention else None
        self.conv = DoubleConv(fine + up.channels, fine)

    def forward(self, skip, below):
        up = self._up[0](below, skip.shape[-2:])
        if self.gate is not None:
            skip = self.gate(skip, up)
        return self.conv(torch.cat([skip, up], 1))


class UNet(nn.Module):
    def __init__(self, num_classes, widths, upsampling="bilinear", attention=False):
        super().__init__()
        cins = [3] + list(widths[:-1])
        self.encoder = nn.ModuleList([DoubleConv(c, w) for c, w in zip(cins, widths)])
        self.decoder = nn.ModuleList([
            Level(upsampling, widths[j + 1], widths[j], attention)
            for j in range(len(widths) - 1)])
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, img):
        check_size(img, len(self.encoder) - 1)
        skips, y = [], img
        for i, level in enumerate(self.encoder):
            y = level(y if i == 0 else F.max_pool2d(y, 2, 2))
            skips.append(y)
        for j in reversed(range(len(self.decoder))):
            y = self.decoder[j](skips[j], y)
        return self.classifier(y)


class AttentionUNet(UNet):
    def __init__(self, num_classes, widths, upsampling="bilinear"):
        super().__init__(num_classes, widths, upsampling, attention=True)


class UNetPlusPlus(nn.Module):
    def __init__(self, num_classes, widths, upsampling="bilinear", deep_supervision=False):
        super().__init__()
        self.depth = depth = len(widths) - 1
        self.ups = {}
        cin = 3
        for i, w in enumerate(widths):
            setattr(self, f"conv{i}_0", DoubleConv(cin, w))
            cin = w
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                up = Up(upsampling, widths[i + 1], widths[i])
                if up.up is not None:
                    setattr(self, f"up{i}_{j}", up.up)
                self.ups[(i, j)] = up
                setattr(self, f"conv{i}_{j}", DoubleConv(j * widths[i] + up.channels, widths[i]))
        if deep_supervision:
            self.classifiers = nn.ModuleList(
                [nn.Conv2d(widths[0], num_classes, 1) for _ in range(depth)])
        else:
            self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        self.deep_supervision = deep_supervision

    def forward(self, img):
        d = self.depth
        check_size(img, d)
        grid = []
        y = img
        for i in range(d + 1):
            y = getattr(self, f"conv{i}_0")(y if i == 0 else F.max_pool2d(y, 2, 2))
            grid.append([y])
        for j in range(1, d + 1):
            for i in range(d + 1 - j):
                below = self.ups[(i, j)](grid[i + 1][j - 1], grid[i][0].shape[-2:])
                grid[i].append(getattr(self, f"conv{i}_{j}")(torch.cat(grid[i] + [below], 1)))
        if not self.deep_supervision:
            return self.classifier(grid[0][d])
        return sum(h(grid[0][k + 1]) for k, h in enumerate(self.classifiers)) / d


class SegNet(nn.Module):
    def __init__(self, num_classes, widths, depths):
        super().__init__()
        enc, dec, cin = [], [], 3
        for w, d in zip(widths, depths):
            enc.append(nn.ModuleList([ConvBN(cin if k == 0 else w, w, 3) for k in range(d)]))
            cin = w
        for b, (w, d) in enumerate(zip(widths, depths)):
            last = widths[b - 1] if b > 0 else widths[0]
            dec.append(nn.ModuleList(
                [ConvBN(w, last if k + 1 == d else w, 3) for k in range(d)]))
        self.encoder = nn.ModuleList(enc)
        self.decoder = nn.ModuleList(dec)
        self.classifier = nn.Conv2d(widths[0], num_classes, 3, padding=1)

    def forward(self, img):
        check_size(img, len(self.encoder))
        saved, y = [], img
        for convs in self.encoder:
            for c in convs:
                y = c(y)
            size = y.shape[-2:]
            y, idx = F.max_pool2d(y, 2, 2, return_indices=True)
            saved.append((size, idx))
        for convs, (size, idx) in reversed(list(zip(self.decoder, saved))):
            y = F.max_unpool2d(y, idx, 2, 2, output_size=size)
            for c in convs:
                y = c(y)
        return self.classifier(y)


class AttentionModule(nn.Module):
    """MSCAN's spatial gating unit: 5x5 depthwise, three 1xk / kx1 depthwise strip branches
    (k = 7, 11, 21) summed with it, a 1x1 mix, times the input."""

    def __init__(self, c):
        super().__init__()
        self.conv0 = nn.Conv2d(c, c, 5, padding=2, groups=c)
        for i, k in enumerate((7, 11, 21)):
            setattr(self, f"conv{i}_1", nn.Conv2d(c, c, (1, k), padding=(0, k // 2), groups=c))
            setattr(self, f"conv{i}_2", nn.Conv2d(c, c, (k, 1), padding=(k // 2, 0), groups=c))
        self.conv3 = nn.Conv2d(c, c, 1)

    def forward(self, x):
        a = self.conv0(x)
        s = a
        for i in range(3):
            s = s + getattr(self, f"conv{i}_2")(getattr(self, f"conv{i}_1")(a))
        return self.conv3(s) * x


class SpatialAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.proj_1 = nn.Conv2d(c, c, 1)
        self.spatial_gating_unit = AttentionModule(c)
        self.proj_2 = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.proj_2(self.spatial_gating_unit(F.gelu(self.proj_1(x)))) + x


class DWConv(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 3, padding=1, groups=c)

    def forward(self, x):
        return self.dwconv(x)


class Mlp(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x):
        return self.fc2(F.gelu(self.dwconv(self.fc1(x))))


class MSCABlock(nn.Module):
    def __init__(self, c, mlp_ratio):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(c)
        self.attn = SpatialAttention(c)
        self.norm2 = nn.BatchNorm2d(c)
        self.mlp = Mlp(c, c * mlp_ratio)
        self.layer_scale_1 = nn.Parameter(torch.full((c,), 1e-2))
        self.layer_scale_2 = nn.Parameter(torch.full((c,), 1e-2))

    def forward(self, x):
        x = x + self.layer_scale_1[:, None, None] * self.attn(self.norm1(x))
        return x + self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, 2, 1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.norm(self.proj(x))


class StemConv(nn.Module):
    def __init__(self, cout):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(3, cout // 2, 3, 2, 1), nn.BatchNorm2d(cout // 2), nn.GELU(),
            nn.Conv2d(cout // 2, cout, 3, 2, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.proj(x)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of every pixel of [N, C, H, W] (MSCAN's stage norms)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MSCAN(nn.Module):
    """mmsegmentation's MSCAN names: patch_embed1..4, block1..4, norm1..4."""

    def __init__(self, widths, depths, mlp_ratios):
        super().__init__()
        for i in range(4):
            embed = StemConv(widths[0]) if i == 0 else PatchEmbed(widths[i - 1], widths[i])
            setattr(self, f"patch_embed{i + 1}", embed)
            setattr(self, f"block{i + 1}", nn.ModuleList(
                [MSCABlock(widths[i], mlp_ratios[i]) for _ in range(depths[i])]))
            setattr(self, f"norm{i + 1}", ChannelLayerNorm(widths[i], eps=1e-6))

    def forward(self, x):
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"patch_embed{i}")(x)
            for b in getattr(self, f"block{i}"):
                x = b(x)
            x = getattr(self, f"norm{i}")(x)
            outs.append(x)
        return outs


class ConvGN(nn.Module):
    """1x1 conv (no bias) -> GroupNorm -> ReLU."""

    def __init__(self, cin, cout, groups):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.gn = nn.GroupNorm(groups, cout)

    def forward(self, x):
        return F.relu(self.gn(self.conv(x)))


NMF_STEPS = (6, 7)  # multiplicative updates without gradients: training, evaluation


def nmf_bases(d, r):
    """The NMF's initial bases [d, r]: frac((i + 1) * phi) over the row-major index i,
    columns scaled to unit L2 norm, in float64, then float32 (as wgseg computes them)."""
    import numpy as np
    phi = (5.0 ** 0.5 - 1.0) / 2.0
    u = np.modf((np.arange(d * r, dtype=np.float64) + 1.0) * phi)[0].reshape(d, r)
    u = u / np.maximum(np.sqrt((u * u).sum(0, keepdims=True)), 1e-12)
    return torch.from_numpy(u.astype(np.float32))


def _update_coef(x, bases, coef):
    num = x.transpose(1, 2) @ bases
    den = coef @ (bases.transpose(1, 2) @ bases)
    return coef * num / (den + 1e-6)


def nmf(x, rank, steps):
    """mmsegmentation's NMF2D (one group) with wgseg's fixed initial bases."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h * w)
    bases = nmf_bases(c, rank)[None].to(x.dtype)
    with torch.no_grad():
        xd = x.detach()
        coef = F.softmax(xd.transpose(1, 2) @ bases, dim=-1)
        for _ in range(steps):
            coef = _update_coef(xd, bases, coef)
            bases = bases * (xd @ coef) / (bases @ (coef.transpose(1, 2) @ coef) + 1e-6)
    coef = _update_coef(x, bases, coef)
    return (bases @ coef.transpose(1, 2)).reshape(b, c, h, w)


class HamOut(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, bias=False)
        self.gn = nn.GroupNorm(groups, c)

    def forward(self, x):
        return self.gn(self.conv(x))


class ConvBias(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.conv(x)


class Hamburger(nn.Module):
    """relu(x + ham_out(NMF(relu(ham_in(x)))))."""

    def __init__(self, c, groups, rank):
        super().__init__()
        self.ham_in = ConvBias(c)
        self.ham_out = HamOut(c, groups)
        self.rank = rank

    def forward(self, x):
        steps = NMF_STEPS[0] if self.training else NMF_STEPS[1]
        e = nmf(F.relu(self.ham_in(x)), self.rank, steps)
        return F.relu(x + self.ham_out(e))


class LightHamHead(nn.Module):
    """squeeze -> Hamburger (when ham_rank is set) -> align -> conv_seg over stages 2-4."""

    def __init__(self, widths, decoder, groups, num_classes, ham_rank=None):
        super().__init__()
        self.squeeze = ConvGN(sum(widths[1:]), decoder, groups)
        self.hamburger = Hamburger(decoder, groups, ham_rank) if ham_rank else None
        self.align = ConvGN(decoder, decoder, groups)
        self.conv_seg = nn.Conv2d(decoder, num_classes, 1)

    def forward(self, outs):
        size = outs[1].shape[-2:]
        x = self.squeeze(torch.cat([resize(o, size) for o in outs[1:]], 1))
        if self.hamburger is not None:
            x = self.hamburger(x)
        return self.conv_seg(self.align(x))


class SegNeXt(nn.Module):
    def __init__(self, num_classes, widths, depths, mlp_ratios, decoder, groups, ham_rank=None):
        super().__init__()
        self.backbone = MSCAN(widths, depths, mlp_ratios)
        self.decode_head = LightHamHead(widths, decoder, groups, num_classes, ham_rank)

    def forward(self, img):
        return resize(self.decode_head(self.backbone(img)), img.shape[-2:])


ARCHS = {
    "deeplabv3plus": DeepLabV3Plus,
    "deeplabv3": DeepLabV3,
    "unet": UNet,
    "attention_unet": AttentionUNet,
    "unetplusplus": UNetPlusPlus,
    "segnet": SegNet,
    "segnext": SegNeXt,
}
