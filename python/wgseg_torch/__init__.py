"""wgseg checkpoints in PyTorch.

    import wgseg_torch
    model, meta = wgseg_torch.load("runs/NAME/checkpoints/best/model.safetensors")
    logits = model(wgseg_torch.preprocess("image.png"))   # [1, classes, H, W]

`load` rebuilds the network a wgseg checkpoint describes (its `wgseg.model` metadata and
tensor shapes) as a `torch.nn.Module` in evaluation mode and loads every tensor, checking
that none is missing, extra, mis-shaped or not float32. Needs torch, numpy, safetensors and
(for `preprocess`) pillow; nothing else.
"""

import json
import re

import numpy as np
import torch

from .models import ARCHS

__all__ = ["ARCHS", "MEAN", "STD", "build", "load", "model_args", "preprocess", "read"]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def read(path):
    """(tensors, metadata) of a safetensors file, `num_batches_tracked` skipped."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.endswith("num_batches_tracked")}
    return tensors, meta


def _resnet(tensors, model):
    depths, widths = [], []
    for i in range(1, 5):
        idx = {int(m.group(1)) for k in tensors
               for m in [re.match(rf"backbone\.layer{i}\.(\d+)\.", k)] if m}
        depths.append(max(idx) + 1)
        widths.append(tensors[f"backbone.layer{i}.0.conv1.weight"].shape[0])
    block = "bottleneck" if "backbone.layer1.0.conv3.weight" in tensors else "basic"
    os_ = int(model["output_stride"])
    n_rates = len({k.split(".")[2] for k in tensors if k.startswith("aspp.convs.")}) - 1
    rates = tuple(model.get("aspp_rates") or ())
    if rates and len(rates) != n_rates:
        raise ValueError(f"metadata has {len(rates)} ASPP rates, the file {n_rates} branches")
    return dict(stem=tensors["backbone.conv1.weight"].shape[0], widths=widths, depths=depths,
                block=block, output_stride=os_, aspp_rates=rates or None,
                separable_aspp=bool(model.get("separable_aspp", False)),
                aspp=tensors["aspp.project.conv.weight"].shape[0])


def model_args(tensors, meta):
    """(arch, keyword arguments of its module class) from a checkpoint's contents: DeepLab
    models from the tensor shapes and `output_stride` (as wgseg reads them), the others
    from the keys their `wgseg.model` records."""
    if "wgseg.model" not in meta:
        raise ValueError("no 'wgseg.model' entry in the safetensors metadata")
    model = json.loads(meta["wgseg.model"])
    arch = model.pop("arch", "deeplabv3plus")
    if arch not in ARCHS:
        raise ValueError(f"architecture {arch!r} is not one of {sorted(ARCHS)}")
    if arch == "deeplabv3plus":
        args = _resnet(tensors, model)
        args.update(low=tensors["decoder.low.conv.weight"].shape[0],
                    decoder=tensors["decoder.fuse.0.conv.weight"].shape[0],
                    num_classes=tensors["decoder.classifier.weight"].shape[0])
        return arch, args
    if arch == "deeplabv3":
        args = _resnet(tensors, model)
        args.update(num_classes=tensors["classifier.weight"].shape[0])
        return arch, args
    if arch == "segnext":
        head = "decode_head.conv_seg.weight"
    elif model.get("deep_supervision"):
        head = "classifiers.0.weight"
    else:
        head = "classifier.weight"
    return arch, dict(model, num_classes=tensors[head].shape[0])


def build(tensors, meta):
    """The module of a checkpoint's architecture with its tensors loaded (strict)."""
    arch, args = model_args(tensors, meta)
    net = ARCHS[arch](**args)
    expected = {k: v for k, v in net.state_dict().items()
                if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        raise ValueError(f"{arch}: missing {missing[:8]}, extra {extra[:8]}")
    for k, v in tensors.items():
        if v.dtype != torch.float32:
            raise ValueError(f"{k} is {v.dtype}, not float32")
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ValueError(f"{k} has shape {tuple(v.shape)}, the model {tuple(expected[k].shape)}")
    net.load_state_dict(tensors, strict=False)
    return net.eval()


def load(path):
    """(model in evaluation mode, metadata) of the wgseg checkpoint at `path`."""
    tensors, meta = read(path)
    try:
        return build(tensors, meta), meta
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from e


def preprocess(path):
    """An image file as the network's input [1, 3, H, W]: RGB in [0, 1] normalised with
    ImageNet's mean and std, as wgseg does."""
    from PIL import Image
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    x = (rgb - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1)[None].copy())
