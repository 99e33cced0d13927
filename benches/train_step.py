#!/usr/bin/env python3
"""PyTorch (CPU) counterpart of `cargo bench --bench train_step`.

One DeepLabV3+ training step — forward in training mode, cross-entropy (ignore index 255),
backward, SGD(lr 0.01, momentum 0.9, weight decay 1e-4) — on 8 random crops of 96x96 with
random labels over 11 classes, for the tiny and small configs of models/*.toml. Prints the
median step time over timed steps after warm-up and images/s. The network comes from a
PyTorch implementation of wgseg's DeepLabV3+ (docs/model.md) that is not part of wgseg: a
module deeplabv3plus.py, in the directory named by $WGSEG_REFERENCE, whose class
DeepLabV3Plus(stem, widths, depths, aspp_c, low_c, dec_c, num_classes, output_stride)
builds the network. Not run by CI.

  WGSEG_REFERENCE=DIR python3 benches/train_step.py [FILTER] [--threads N]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REFERENCE = os.environ.get("WGSEG_REFERENCE", "")
if not (REFERENCE and (Path(REFERENCE) / "deeplabv3plus.py").is_file()):
    sys.exit("benches/train_step.py: set WGSEG_REFERENCE to a directory holding "
             "deeplabv3plus.py, a PyTorch DeepLabV3+ (see the docstring)")
sys.path.insert(0, REFERENCE)
from deeplabv3plus import DeepLabV3Plus  # noqa: E402

# The architectures of models/tiny.toml and models/small.toml (output stride 16, ASPP
# rates 6/12/18, no separable ASPP), and the default [train] batch and crop.
CONFIGS = {
    "tiny": dict(stem=16, widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), aspp_c=64,
                 low_c=48, dec_c=64),
    "small": dict(stem=32, widths=(32, 64, 128, 256), depths=(2, 2, 2, 2), aspp_c=128,
                  low_c=48, dec_c=128),
}
CLASSES, BATCH, CROP = 11, 8, 96
WARMUP, RUNS = 2, 5


def bench(name, arch):
    torch.manual_seed(0)
    net = DeepLabV3Plus(**arch, num_classes=CLASSES, output_stride=16)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(BATCH, 3, CROP, CROP)
    y = torch.randint(0, CLASSES, (BATCH, CROP, CROP))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y, ignore_index=255)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(WARMUP):
        step()
    times, loss = [], 0.0
    for _ in range(RUNS):
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    params = sum(p.numel() for p in net.parameters())
    print(f"{name:<52} {med * 1e3:10.1f} ms  {BATCH / med:7.2f} images/s  "
          f"(n={RUNS}, min {min(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms, "
          f"loss {loss:.3f}, {params} params)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("filter", nargs="?", default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads; median of "
          f"{RUNS} timed steps after {WARMUP} warm-up steps\n")
    for cfg, arch in CONFIGS.items():
        name = f"train step {cfg}, batch {BATCH}, {CROP}x{CROP}, {CLASSES} classes"
        if args.filter is None or args.filter in name:
            bench(name, arch)


if __name__ == "__main__":
    main()
