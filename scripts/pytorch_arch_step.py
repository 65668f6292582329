#!/usr/bin/env python3
"""PyTorch versions of the evaluation architectures used by dataset condensation
(DC/DSA), for parameter-layout checks and CPU timing of one training step.

The networks follow the architecture list of the DC/DSA reference code
(MLP, ConvNet, LeNet, AlexNet, AlexNetBN, VGG11, VGG11BN, ResNet18, ResNet18BN,
ResNet18BN_AP). Submodules are created under the same attribute names and in the
same order as there, so `state_dict()` keys, `named_parameters()` and
`named_buffers()` come out identical, and a checkpoint saved by one loads into the
other.

Modes:
  --dump-params OUT.json   For each architecture and each input shape in
                           {1x28x28 / 10 classes, 3x32x32 / 10 classes,
                           3x32x32 / 100 classes}: total parameter count, the
                           ordered (name, shape) list of named_parameters(), and
                           the buffers. Prints a table of the counts.
  --bench (default)        Fashion-MNIST shapes (1x28x28, 10 classes). For each
                           architecture, time one training step: forward, mean
                           cross-entropy, backward to the parameter gradients
                           (no optimizer step). One warm-up step, then --steps
                           timed steps. Reports median/min/max seconds per step,
                           the step's GFLOP (3 x forward FLOP of the Conv2d and
                           Linear layers, 2 FLOP per multiply-add) and GFLOP/s.

Networks are in train mode (BatchNorm uses batch statistics). Inputs and labels
are random, drawn after torch.manual_seed(0). Nothing here touches the network.

usage:
  python3 scripts/pytorch_arch_step.py --dump-params /tmp/ref_params.json
  python3 scripts/pytorch_arch_step.py [--bench] [--steps 3] [--batch 256]
        [--threads 2] [--archs MLP,ConvNet,LeNet] [--json OUT.json]
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------------------
# Small helpers for building normalisation layers.
# "instancenorm" in the reference is GroupNorm with one group per channel.
# ---------------------------------------------------------------------------

class Swish(nn.Module):
    """x * sigmoid(x) (the reference's own module, no parameters)."""

    def forward(self, x):
        return x * torch.sigmoid(x)


def instance_norm(c):
    return nn.GroupNorm(c, c, affine=True)


def norm_layer(kind, c):
    if kind == "instancenorm":
        return instance_norm(c)
    if kind == "batchnorm":
        return nn.BatchNorm2d(c)
    raise ValueError("unknown norm: %s" % kind)


# ---------------------------------------------------------------------------
# MLP: three fully connected layers on the flattened image.
# The input size is fixed by the channel count: 1 channel means 28x28 (MNIST
# family), otherwise 3x32x32.
# ---------------------------------------------------------------------------

class MLP(nn.Module):
    def __init__(self, channel, num_classes):
        super().__init__()
        flat = 28 * 28 * 1 if channel == 1 else 32 * 32 * 3
        self.fc_1 = nn.Linear(flat, 128)
        self.fc_2 = nn.Linear(128, 128)
        self.fc_3 = nn.Linear(128, num_classes)

    def forward(self, x):
        h = torch.flatten(x, 1)
        h = F.relu(self.fc_1(h))
        h = F.relu(self.fc_2(h))
        return self.fc_3(h)


# ---------------------------------------------------------------------------
# ConvNet: `depth` blocks of [3x3 conv -> norm -> activation -> 2x2 pool],
# then one linear classifier. Default setting: width 128, depth 3, ReLU,
# instance norm, average pooling.
# A 28x28 input is treated as 32x32: with one input channel the first conv
# uses padding 3, which turns 28x28 into 32x32.
# Sequential indices per block are conv, norm, act, pool (4 entries each), so
# the parameters live at features.0/1, features.4/5, features.8/9, ...
# ---------------------------------------------------------------------------

class ConvNet(nn.Module):
    def __init__(self, channel, num_classes, net_width=128, net_depth=3,
                 net_act="relu", net_norm="instancenorm",
                 net_pooling="avgpooling", im_size=(32, 32)):
        super().__init__()
        self.features, feat_shape = self._build_features(
            channel, net_width, net_depth, net_norm, net_act, net_pooling, im_size)
        c, h, w = feat_shape
        self.classifier = nn.Linear(c * h * w, num_classes)

    def forward(self, x):
        h = self.features(x)
        return self.classifier(torch.flatten(h, 1))

    @staticmethod
    def _activation(kind):
        if kind == "relu":
            return nn.ReLU(inplace=True)
        if kind == "sigmoid":
            return nn.Sigmoid()
        if kind == "leakyrelu":
            return nn.LeakyReLU(negative_slope=0.01)
        if kind == "swish":
            return Swish()
        raise ValueError("unknown activation: %s" % kind)

    @staticmethod
    def _pool(kind):
        if kind == "avgpooling":
            return nn.AvgPool2d(kernel_size=2, stride=2)
        if kind == "maxpooling":
            return nn.MaxPool2d(kernel_size=2, stride=2)
        if kind == "none":
            return None
        raise ValueError("unknown pooling: %s" % kind)

    @staticmethod
    def _norm(kind, shape):
        c = shape[0]
        if kind == "instancenorm":
            return instance_norm(c)
        if kind == "batchnorm":
            return nn.BatchNorm2d(c, affine=True)
        if kind == "layernorm":
            return nn.LayerNorm(list(shape), elementwise_affine=True)
        if kind == "groupnorm":
            return nn.GroupNorm(4, c, affine=True)
        if kind == "none":
            return None
        raise ValueError("unknown norm: %s" % kind)

    def _build_features(self, channel, width, depth, norm, act, pooling, im_size):
        h, w = im_size
        if h == 28:  # MNIST-sized inputs are padded up to 32x32 by the first conv
            h, w = 32, 32
        layers = []
        in_c = channel
        for d in range(depth):
            pad = 3 if (channel == 1 and d == 0) else 1
            layers.append(nn.Conv2d(in_c, width, kernel_size=3, padding=pad))
            n = self._norm(norm, (width, h, w))
            if n is not None:
                layers.append(n)
            layers.append(self._activation(act))
            p = self._pool(pooling)
            if p is not None:
                layers.append(p)
                h, w = h // 2, w // 2
            in_c = width
        return nn.Sequential(*layers), (width, h, w)


# ---------------------------------------------------------------------------
# LeNet: two 5x5 convs with max pooling, then three linear layers.
# With one input channel the first conv pads by 2 (28 -> 28), otherwise by 0
# (32 -> 28); either way the features end at 16x5x5.
# ---------------------------------------------------------------------------

class LeNet(nn.Module):
    def __init__(self, channel, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channel, 6, kernel_size=5, padding=2 if channel == 1 else 0),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.fc_1 = nn.Linear(16 * 5 * 5, 120)
        self.fc_2 = nn.Linear(120, 84)
        self.fc_3 = nn.Linear(84, num_classes)

    def forward(self, x):
        h = torch.flatten(self.features(x), 1)
        h = F.relu(self.fc_1(h))
        h = F.relu(self.fc_2(h))
        return self.fc_3(h)


# ---------------------------------------------------------------------------
# AlexNet (small-image variant): five convs (128, 192, 256, 192, 192 channels)
# with three 2x2 max pools, then one linear layer on 192x4x4 features.
# The first conv pads by 4 with one input channel (28 -> 32), else by 2.
# AlexNetBN inserts BatchNorm2d after every conv, which shifts the Sequential
# indices.
# ---------------------------------------------------------------------------

def _alexnet_features(channel, with_bn):
    # (out_channels, kernel, padding, pool_after)
    spec = [
        (128, 5, 4 if channel == 1 else 2, True),
        (192, 5, 2, True),
        (256, 3, 1, False),
        (192, 3, 1, False),
        (192, 3, 1, True),
    ]
    layers = []
    in_c = channel
    for out_c, k, pad, pool in spec:
        layers.append(nn.Conv2d(in_c, out_c, kernel_size=k, stride=1, padding=pad))
        if with_bn:
            layers.append(nn.BatchNorm2d(out_c))
        layers.append(nn.ReLU(inplace=True))
        if pool:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        in_c = out_c
    return nn.Sequential(*layers)


class AlexNet(nn.Module):
    def __init__(self, channel, num_classes):
        super().__init__()
        self.features = _alexnet_features(channel, with_bn=False)
        self.fc = nn.Linear(192 * 4 * 4, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class AlexNetBN(nn.Module):
    def __init__(self, channel, num_classes):
        super().__init__()
        self.features = _alexnet_features(channel, with_bn=True)
        self.fc = nn.Linear(192 * 4 * 4, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


# ---------------------------------------------------------------------------
# VGG11: each number is [3x3 conv -> norm -> ReLU], 'M' is a 2x2 max pool;
# a trailing 1x1 average pool (identity) closes the feature stack, and a
# linear layer maps the 512 features to the classes. With one input channel
# the first conv pads by 3 (28 -> 32). VGG11 uses instance norm, VGG11BN
# BatchNorm2d.
# ---------------------------------------------------------------------------

VGG11_LAYOUT = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, layout, channel, num_classes, norm="instancenorm"):
        super().__init__()
        self.channel = channel
        self.features = self._build(layout, norm)
        self.classifier = nn.Linear(512, num_classes)

    def _build(self, layout, norm):
        layers = []
        in_c = self.channel
        for i, item in enumerate(layout):
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            pad = 3 if (self.channel == 1 and i == 0) else 1
            layers.append(nn.Conv2d(in_c, item, kernel_size=3, padding=pad))
            layers.append(norm_layer(norm, item))
            layers.append(nn.ReLU(inplace=True))
            in_c = item
        layers.append(nn.AvgPool2d(kernel_size=1, stride=1))
        return nn.Sequential(*layers)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def VGG11(channel, num_classes):
    return VGG(VGG11_LAYOUT, channel, num_classes, norm="instancenorm")


def VGG11BN(channel, num_classes):
    return VGG(VGG11_LAYOUT, channel, num_classes, norm="batchnorm")


# ---------------------------------------------------------------------------
# ResNet18 (CIFAR variant): 3x3 stem conv (no bias) + norm, four stages of two
# basic blocks (64, 128, 256, 512 channels; stages 2-4 start with stride 2),
# global 4x4 average pool, linear classifier on 512 features.
# A block's shortcut is an empty Sequential unless the shape changes, in which
# case it is a 1x1 strided conv + norm.
# ResNet18 uses instance norm, ResNet18BN BatchNorm2d.
# ---------------------------------------------------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, norm="instancenorm"):
        super().__init__()
        self.norm = norm
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride,
                               padding=1, bias=False)
        self.bn1 = norm_layer(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1,
                               padding=1, bias=False)
        self.bn2 = norm_layer(norm, planes)
        self.shortcut = nn.Sequential()
        out_planes = self.expansion * planes
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                norm_layer(norm, out_planes),
            )

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        h = h + self.shortcut(x)
        return F.relu(h)


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, channel=3, num_classes=10, norm="instancenorm"):
        super().__init__()
        self.in_planes = 64
        self.norm = norm
        self.conv1 = nn.Conv2d(channel, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(norm, 64)
        self.layer1 = self._stage(block, 64, num_blocks[0], 1)
        self.layer2 = self._stage(block, 128, num_blocks[1], 2)
        self.layer3 = self._stage(block, 256, num_blocks[2], 2)
        self.layer4 = self._stage(block, 512, num_blocks[3], 2)
        self.classifier = nn.Linear(512 * block.expansion, num_classes)

    def _stage(self, block, planes, n, first_stride):
        blocks = []
        for s in [first_stride] + [1] * (n - 1):
            blocks.append(block(self.in_planes, planes, s, self.norm))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*blocks)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        # 4x4 pool: 32x32 input ends at 4x4 (-> 1x1); 28x28 ends at 4x4 as well
        h = F.avg_pool2d(h, 4)
        return self.classifier(torch.flatten(h, 1))


def ResNet18(channel, num_classes):
    return ResNet(BasicBlock, [2, 2, 2, 2], channel=channel, num_classes=num_classes,
                  norm="instancenorm")


def ResNet18BN(channel, num_classes):
    return ResNet(BasicBlock, [2, 2, 2, 2], channel=channel, num_classes=num_classes,
                  norm="batchnorm")


# ---------------------------------------------------------------------------
# ResNet18BN_AP: as ResNet18BN, but every stride-2 conv is replaced by a
# stride-1 conv followed by a 2x2 average pool (in the main path after the
# first conv's activation; in the shortcut between the 1x1 conv and its norm).
# There is no global pool (only an identity 1x1 pool), so the classifier sees
# 512x4x4 features for 32x32 inputs and 512x3x3 for 28x28 (1-channel) inputs.
# ---------------------------------------------------------------------------

class BasicBlock_AP(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, norm="instancenorm"):
        super().__init__()
        self.norm = norm
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=1,
                               padding=1, bias=False)
        self.bn1 = norm_layer(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1,
                               padding=1, bias=False)
        self.bn2 = norm_layer(norm, planes)
        self.shortcut = nn.Sequential()
        out_planes = self.expansion * planes
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, bias=False),
                nn.AvgPool2d(kernel_size=2, stride=2),
                norm_layer(norm, out_planes),
            )

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        if self.stride != 1:
            h = F.avg_pool2d(h, kernel_size=2, stride=2)
        h = self.bn2(self.conv2(h))
        h = h + self.shortcut(x)
        return F.relu(h)


class ResNet_AP(nn.Module):
    def __init__(self, block, num_blocks, channel=3, num_classes=10, norm="instancenorm"):
        super().__init__()
        self.in_planes = 64
        self.norm = norm
        self.conv1 = nn.Conv2d(channel, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = norm_layer(norm, 64)
        self.layer1 = self._stage(block, 64, num_blocks[0], 1)
        self.layer2 = self._stage(block, 128, num_blocks[1], 2)
        self.layer3 = self._stage(block, 256, num_blocks[2], 2)
        self.layer4 = self._stage(block, 512, num_blocks[3], 2)
        side = 3 if channel == 1 else 4
        self.classifier = nn.Linear(512 * block.expansion * side * side, num_classes)

    def _stage(self, block, planes, n, first_stride):
        blocks = []
        for s in [first_stride] + [1] * (n - 1):
            blocks.append(block(self.in_planes, planes, s, self.norm))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*blocks)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        h = F.avg_pool2d(h, kernel_size=1, stride=1)  # identity, kept for parity
        return self.classifier(torch.flatten(h, 1))


def ResNet18BN_AP(channel, num_classes):
    return ResNet_AP(BasicBlock_AP, [2, 2, 2, 2], channel=channel,
                     num_classes=num_classes, norm="batchnorm")


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

ARCHS = ["MLP", "ConvNet", "LeNet", "AlexNet", "AlexNetBN", "VGG11", "VGG11BN",
         "ResNet18", "ResNet18BN", "ResNet18BN_AP"]

SHAPES = [  # (channels, height, width, classes)
    (1, 28, 28, 10),
    (3, 32, 32, 10),
    (3, 32, 32, 100),
]


# The ConvNet variants of the reference's factory: (width, depth, act, norm, pooling).
CONVNET_VARIANTS = {"ConvNet": {}}
for d in (1, 2, 3, 4):
    CONVNET_VARIANTS["ConvNetD%d" % d] = {"net_depth": d}
for w in (32, 64, 128, 256):
    CONVNET_VARIANTS["ConvNetW%d" % w] = {"net_width": w}
for suffix, act in (("AS", "sigmoid"), ("AR", "relu"), ("AL", "leakyrelu"), ("ASwish", "swish")):
    CONVNET_VARIANTS["ConvNet" + suffix] = {"net_act": act}
CONVNET_VARIANTS["ConvNetASwishBN"] = {"net_act": "swish", "net_norm": "batchnorm"}
for suffix, norm in (("NN", "none"), ("BN", "batchnorm"), ("LN", "layernorm"),
                     ("IN", "instancenorm"), ("GN", "groupnorm")):
    CONVNET_VARIANTS["ConvNet" + suffix] = {"net_norm": norm}
for suffix, pool in (("NP", "none"), ("MP", "maxpooling"), ("AP", "avgpooling")):
    CONVNET_VARIANTS["ConvNet" + suffix] = {"net_pooling": pool}


def build(arch, channel, num_classes, im_size):
    if arch in CONVNET_VARIANTS:
        opts = dict(net_width=128, net_depth=3, net_act="relu", net_norm="instancenorm",
                    net_pooling="avgpooling")
        opts.update(CONVNET_VARIANTS[arch])
        return ConvNet(channel, num_classes, im_size=im_size, **opts)
    if arch == "MLP":
        return MLP(channel, num_classes)
    if arch == "LeNet":
        return LeNet(channel, num_classes)
    if arch == "AlexNet":
        return AlexNet(channel, num_classes)
    if arch == "AlexNetBN":
        return AlexNetBN(channel, num_classes)
    if arch == "VGG11":
        return VGG11(channel, num_classes)
    if arch == "VGG11BN":
        return VGG11BN(channel, num_classes)
    if arch == "ResNet18":
        return ResNet18(channel, num_classes)
    if arch == "ResNet18BN":
        return ResNet18BN(channel, num_classes)
    if arch == "ResNet18BN_AP":
        return ResNet18BN_AP(channel, num_classes)
    raise ValueError("unknown architecture: %s" % arch)


def shape_key(c, h, w, k):
    return "%dx%dx%d_c%d" % (c, h, w, k)


# ---------------------------------------------------------------------------
# --dump-params
# ---------------------------------------------------------------------------

def dump_params(path, archs):
    """Writes, per architecture (and every ConvNet variant) and input shape, the
    parameter count, the ordered (name, shape) of named_parameters and the BatchNorm
    module paths (in buffer order): the fixture tests/architectures.rs compares the
    crate's model descriptions with (tests/data/reference_params.json)."""
    archs = list(archs) + [v for v in CONVNET_VARIANTS if v not in archs]
    out = {"generated_by": "scripts/pytorch_arch_step.py --dump-params (PyTorch %s)"
                           % torch.__version__.split("+")[0],
           "archs": {}}
    counts = {}
    for arch in archs:
        out["archs"][arch] = {}
        for c, h, w, k in SHAPES:
            torch.manual_seed(0)
            net = build(arch, c, k, (h, w))
            # Make sure the network really accepts this input shape.
            net.train()
            with torch.no_grad():
                y = net(torch.randn(2, c, h, w))
            assert tuple(y.shape) == (2, k), (arch, c, h, w, tuple(y.shape))
            total = sum(p.numel() for p in net.parameters())
            entry = {
                "total": total,
                "params": [[n, list(p.shape)] for n, p in net.named_parameters()],
                "batchnorm": [n[:-len(".running_mean")] for n, _ in net.named_buffers()
                              if n.endswith(".running_mean")],
            }
            out["archs"][arch][shape_key(c, h, w, k)] = entry
            counts[(arch, shape_key(c, h, w, k))] = total
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))

    keys = [shape_key(*s) for s in SHAPES]
    print("| arch | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for arch in archs:
        print("| %s | %s |" % (arch, " | ".join("{:,}".format(counts[(arch, k)]) for k in keys)))
    print("wrote %s" % path)


# ---------------------------------------------------------------------------
# FLOP counting with forward hooks (Conv2d and Linear only; 2 FLOP per MAC).
# ---------------------------------------------------------------------------

def attach_flop_hooks(net, tally):
    handles = []

    def conv_hook(mod, inp, out):
        n, o, oh, ow = out.shape
        kh, kw = mod.kernel_size
        tally[0] += 2 * n * o * oh * ow * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod, inp, out):
        rows = out.numel() // mod.out_features
        tally[0] += 2 * rows * mod.in_features * mod.out_features

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    return handles


# ---------------------------------------------------------------------------
# --bench
# ---------------------------------------------------------------------------

def train_step(net, x, y):
    net.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)  # mean reduction
    loss.backward()
    return loss


def bench(args, archs):
    torch.set_num_threads(args.threads)
    c, h, w, k = 1, 28, 28, 10
    start = time.strftime("%Y-%m-%d %H:%M:%S")
    print("start: %s" % start)
    print("torch %s, threads %d, batch %d, input %dx%dx%d, %d classes, %d timed steps"
          % (torch.__version__, torch.get_num_threads(), args.batch, c, h, w, k, args.steps))
    sys.stdout.flush()
    rows = []
    for arch in archs:
        torch.manual_seed(0)
        net = build(arch, c, k, (h, w))
        net.train()
        x = torch.randn(args.batch, c, h, w)
        y = torch.randint(0, k, (args.batch,))

        # Warm-up step, which also counts the forward FLOP via hooks.
        tally = [0]
        handles = attach_flop_hooks(net, tally)
        train_step(net, x, y)
        for hd in handles:
            hd.remove()
        fwd_flop = tally[0]
        step_flop = 3 * fwd_flop

        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            train_step(net, x, y)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        row = {
            "arch": arch,
            "params": sum(p.numel() for p in net.parameters()),
            "fwd_gflop": fwd_flop / 1e9,
            "step_gflop": step_flop / 1e9,
            "median_s": med,
            "min_s": min(times),
            "max_s": max(times),
            "gflops": step_flop / 1e9 / med if med > 0 else float("nan"),
            "times_s": times,
        }
        rows.append(row)
        print("  %-14s median %.4f s  (min %.4f, max %.4f)  %.2f GFLOP  %.1f GFLOP/s"
              % (arch, med, row["min_s"], row["max_s"], row["step_gflop"], row["gflops"]))
        sys.stdout.flush()
    end = time.strftime("%Y-%m-%d %H:%M:%S")

    print()
    print("| arch | params | step GFLOP | median s/step | min s | max s | GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %s | %.3f | %.4f | %.4f | %.4f | %.1f |"
              % (r["arch"], "{:,}".format(r["params"]), r["step_gflop"], r["median_s"],
                 r["min_s"], r["max_s"], r["gflops"]))
    print("end: %s" % end)

    if args.json:
        meta = {"torch_version": torch.__version__, "threads": args.threads,
                "batch": args.batch, "steps": args.steps,
                "input": [c, h, w], "classes": k,
                "flop_rule": "3 x forward FLOP of Conv2d+Linear, 2 FLOP per multiply-add",
                "start": start, "end": end, "results": rows}
        with open(args.json, "w") as f:
            json.dump(meta, f, indent=1)
        print("wrote %s" % args.json)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--dump-params", metavar="OUT.json",
                      help="write parameter names/shapes/counts for all input shapes")
    mode.add_argument("--bench", action="store_true",
                      help="time one training step per architecture (default mode)")
    ap.add_argument("--archs", default=",".join(ARCHS),
                    help="comma-separated subset of: " + ",".join(ARCHS))
    ap.add_argument("--batch", type=int, default=256, help="batch size (bench)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after 1 warm-up (bench)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (bench)")
    ap.add_argument("--json", metavar="OUT", help="also write bench results as JSON")
    args = ap.parse_args()

    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for a in archs:
        if a not in ARCHS:
            ap.error("unknown architecture %r (choose from %s)" % (a, ",".join(ARCHS)))

    if args.dump_params:
        dump_params(args.dump_params, archs)
    else:
        bench(args, archs)


if __name__ == "__main__":
    main()
