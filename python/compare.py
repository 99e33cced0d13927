#!/usr/bin/env python3
"""Compare wgseg's inference with PyTorch's on the same checkpoint and PNG images.

    python3 python/compare.py CHECKPOINT IMAGE.png [IMAGE.png ...] [--wgseg PATH] [--device cpu]

For each image it runs `wgseg infer --scale 1 --ids --logits` (the network sees the image
as it is), rebuilds the checkpoint in PyTorch with the `wgseg_torch` package beside this
script, and prints the largest logit difference (absolute, and relative to the largest
logit magnitude) and the fraction of pixels whose predicted class is the same. It exits
with 1 when a relative difference exceeds --tol or fewer than --agree of the pixels match.
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
            ours = net(wgseg_torch.preprocess(image)).numpy()
            if ours.shape != theirs.shape:
                print(f"{image}: PyTorch logits {ours.shape}, wgseg {theirs.shape}")
                ok = False
                continue
            diff = float(np.abs(ours - theirs).max())
            scale = float(np.abs(ours).max())
            rel = diff / max(scale, 1e-12)
            equal = float((ours[0].argmax(0) == their_ids).mean())
            h, w = ours.shape[2:]
            good = rel <= a.tol and equal >= a.agree
            ok &= good
            print(f"{arch:15s} {h}x{w:<5d} max |logit| {scale:9.4f}  max |diff| {diff:.3e} "
                  f"({rel:.2e} of max)  pixels equal {equal:.6f}  {'ok' if good else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
