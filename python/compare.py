#!/usr/bin/env python3
"""Compare wgseg's inference with PyTorch's on the same checkpoint and PNG images.

    python3 python/compare.py CHECKPOINT IMAGE.png [IMAGE.png ...] [--wgseg PATH] [--device cpu]

For each image it runs `wgseg infer --scale 1 --ids --logits` (the network sees the image
as it is), rebuilds the checkpoint in PyTorch with the `wgseg_torch` package beside this
script, and prints the largest logit difference (absolute, and relative to the largest
logit magnitude) and the fraction of pixels whose predicted class is the same.

It also measures the model's own rounding sensitivity: PyTorch against PyTorch with every
convolution's output multiplied by (1 + u * --eps), u uniform in [-1, 1] (--trials seeded
draws, the largest difference kept). Two correct f32 implementations round differently
(wgseg's GPU path uses Winograd 3x3 convolutions, for one), and a network whose max-pool
windows hold near-ties (SegNet reuses the chosen positions for unpooling) turns such
rounding into large logit changes at a few pixels.

A result is "ok" when the relative difference is within --tol and at least --agree of the
pixels match; "ok (rounding)" when it misses that but is no larger than twice the model's
own sensitivity, in both logits and unequal pixels; "FAIL" otherwise (exit status 1).
Compare on PNG images: JPEG decoders differ by a few levels per channel.

Needs torch, numpy, safetensors and pillow.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wgseg_torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--wgseg", default="wgseg", help="the wgseg binary (default: on PATH)")
    ap.add_argument("--device", default="gpu", help="wgseg's --device (default gpu)")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="largest logit difference allowed, relative to the largest logit")
    ap.add_argument("--agree", type=float, default=0.999,
                    help="smallest fraction of equal predicted pixels allowed")
    ap.add_argument("--eps", type=float, default=1e-6,
                    help="relative perturbation of convolution outputs for the sensitivity")
    ap.add_argument("--trials", type=int, default=2,
                    help="perturbed PyTorch runs for the sensitivity (0: none)")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    net, meta = wgseg_torch.load(a.checkpoint)
    arch = wgseg_torch.model_args(*wgseg_torch.read(a.checkpoint))[0]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for image in a.images:
            cmd = [a.wgseg, "infer", "--checkpoint", a.checkpoint, "--scale", "1", "--ids",
                   "--logits", "--out", tmp, "--device", a.device, image]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                print(f"{image}: {' '.join(cmd)} failed:\n{run.stderr}")
                ok = False
                continue
            stem = Path(image).stem
            theirs = np.load(Path(tmp) / f"{stem}_logits.npy")
            from PIL import Image
            their_ids = np.asarray(Image.open(Path(tmp) / f"{stem}_ids.png"))
            x = wgseg_torch.preprocess(image)
            ours = net(x).numpy()
            if ours.shape != theirs.shape:
                print(f"{image}: PyTorch logits {ours.shape}, wgseg {theirs.shape}")
                ok = False
                continue
            diff = float(np.abs(ours - theirs).max())
            scale = float(np.abs(ours).max())
            rel = diff / max(scale, 1e-12)
            equal = float((ours[0].argmax(0) == their_ids).mean())
            h, w = ours.shape[2:]
            sens_rel, sens_equal = sensitivity(net, x, ours, a.eps, a.trials)
            if rel <= a.tol and equal >= a.agree:
                verdict = "ok"
            elif a.trials > 0 and rel <= 2 * sens_rel and 1 - equal <= 2 * (1 - sens_equal):
                verdict = "ok (rounding)"
            else:
                verdict = "FAIL"
            ok &= verdict != "FAIL"
            print(f"{arch:15s} {h}x{w:<5d} max |logit| {scale:9.4f}  max |diff| {diff:.3e} "
                  f"({rel:.2e} of max)  pixels equal {equal:.6f}  "
                  f"sensitivity {sens_rel:.2e} / {sens_equal:.6f}  {verdict}")
    return 0 if ok else 1


def sensitivity(net, x, ours, eps, trials):
    """The largest relative logit change and the smallest fraction of equal pixels when
    every convolution output of `net` is perturbed by a relative `eps` (seeded draws)."""
    worst_rel, worst_equal = 0.0, 1.0
    scale = max(float(np.abs(ours).max()), 1e-12)
    for trial in range(trials):
        gen = torch.Generator().manual_seed(trial)

        def perturb(_module, _inputs, out):
            u = torch.rand(out.shape, generator=gen, dtype=out.dtype) * 2 - 1
            return out * (1 + eps * u)

        hooks = [m.register_forward_hook(perturb) for m in net.modules()
                 if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        try:
            theirs = net(x).numpy()
        finally:
            for h in hooks:
                h.remove()
        worst_rel = max(worst_rel, float(np.abs(ours - theirs).max()) / scale)
        worst_equal = min(worst_equal, float((ours[0].argmax(0) == theirs[0].argmax(0)).mean()))
    return worst_rel, worst_equal


if __name__ == "__main__":
    sys.exit(main())
