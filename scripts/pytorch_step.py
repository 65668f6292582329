#!/usr/bin/env python3
"""Times one DSA outer step in PyTorch (CPU autograd), written from the method as
docs/method.md describes it, to compare against `cargo bench --bench step`.

Default ConvNet (width 128, depth 3, instance norm = GroupNorm(C, C), ReLU, 2x2
average pooling), Fashion-MNIST shapes (1x28x28, 10 classes), ipc 1, batch_real 256,
metric `ours`, siamese DSA augmentation (one group per call, strategy
color_crop_cutout_flip_scale_rotate), image SGD lr 0.1 momentum 0.5.
Real data is random here: the cost does not depend on pixel values.

usage: python3 scripts/pytorch_step.py [--steps 20] [--threads 2]
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def convnet(channels=1, classes=10, width=128, depth=3):
    layers, c = [], channels
    for d in range(depth):
        pad = 3 if (d == 0 and channels == 1) else 1
        layers += [nn.Conv2d(c, width, 3, padding=pad), nn.GroupNorm(width, width, affine=True),
                   nn.ReLU(inplace=True), nn.AvgPool2d(2, 2)]
        c = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * 4 * 4, classes))


def augment(x, g, gen):
    """One siamese DSA draw: group g with parameters from generator state `gen`."""
    n, s = x.shape[0], x.shape[-1]
    r = torch.rand(4, generator=gen)
    if g == "scale":
        sx, sy = [1 / 1.2 + (1.2 - 1 / 1.2) * float(v) for v in r[:2]]
        theta = torch.tensor([[sx, 0, 0], [0, sy, 0]], dtype=x.dtype).expand(n, 2, 3)
    elif g == "rotate":
        a = (float(r[0]) - 0.5) * 2 * 15 / 180 * math.pi
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0]],
                             dtype=x.dtype).expand(n, 2, 3)
    if g in ("scale", "rotate"):
        grid = F.affine_grid(theta, x.shape, align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)
    if g == "flip":
        return x.flip(3) if float(r[0]) < 0.5 else x
    if g == "color":
        x = x + (float(r[0]) - 0.5)
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (float(r[1]) * 2) + m
        m = x.mean(dim=[1, 2, 3], keepdim=True)
        return (x - m) * (float(r[2]) + 0.5) + m
    if g == "crop":
        sh = int(s * 0.125 + 0.5)
        tx, ty = [int(v * (2 * sh + 1)) - sh for v in r[:2]]
        out = torch.zeros_like(x)
        i0, i1 = max(0, -tx), min(s, s - tx)
        j0, j1 = max(0, -ty), min(s, s - ty)
        out[:, :, i0:i1, j0:j1] = x[:, :, i0 + tx:i1 + tx, j0 + ty:j1 + ty]
        return out
    if g == "cutout":
        half = int(s * 0.5 + 0.5) // 2
        ox, oy = [int(v * (s + 1)) for v in r[:2]]
        mask = torch.ones(1, 1, s, s, dtype=x.dtype)
        mask[:, :, max(0, ox - half):min(s, ox + half), max(0, oy - half):min(s, oy + half)] = 0
        return x * mask
    raise ValueError(g)


def match_ours(gs, gr):
    d = 0
    for a, b in zip(gs, gr):
        if a.dim() == 1:
            continue
        a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        d = d + torch.sum(1 - torch.sum(a2 * b2, -1) / (a2.norm(dim=-1) * b2.norm(dim=-1) + 1e-6))
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-real", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    k, ipc = 10, 1
    real = [torch.randn(args.batch_real, 1, 28, 28) for _ in range(k)]
    syn = torch.randn(k * ipc, 1, 28, 28, requires_grad=True)
    opt = torch.optim.SGD([syn], lr=0.1, momentum=0.5)
    groups = ["color", "crop", "cutout", "flip", "scale", "rotate"]
    times = []
    for step in range(args.steps + 2):
        t0 = time.perf_counter()
        net = convnet()
        params = list(net.parameters())
        loss = 0
        for c in range(k):
            seed = step * 1000 + c
            g = groups[seed % 6]
            lab_r = torch.full((args.batch_real,), c)
            xr = augment(real[c], g, torch.Generator().manual_seed(seed))
            gr = [t.detach() for t in torch.autograd.grad(F.cross_entropy(net(xr), lab_r), params)]
            xs = augment(syn[c * ipc:(c + 1) * ipc], g, torch.Generator().manual_seed(seed))
            gs = torch.autograd.grad(F.cross_entropy(net(xs), torch.full((ipc,), c)), params,
                                     create_graph=True)
            loss = loss + match_ours(gs, gr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if step >= 2:  # two warm-up steps
            times.append(dt)
        print(f"step {step}: loss {float(loss):.4f}  {dt:.3f} s", flush=True)
    print(f"pytorch {torch.__version__}, {args.threads} threads: median {statistics.median(times):.3f} s "
          f"per outer step over {len(times)} steps (min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main()
