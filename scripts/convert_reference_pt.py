#!/usr/bin/env python3
"""Converts a synthetic set saved by the DC/DSA reference code (`main.py` of
VICO-UoE/DatasetCondensation) from its `.pt` file into the safetensors file that
`dsa-condense evaluate --synset` reads.

The reference saves, after every experiment,
    torch.save({'data': data_save, 'accs_all_exps': accs_all_exps},
               'res_<method>_<dataset>_<model>_<ipc>ipc.pt')
where data_save holds one [image_syn, label_syn] pair per experiment: image_syn
(N, C, H, W) float in normalised space (the dataset's mean/std), label_syn (N,)
long, class-major; accs_all_exps maps each evaluation model to its accuracies.

The output has what `evaluate` reads: tensors `images` f32 [N, C, H, W] (the
values unchanged: both normalise with the same per-channel mean and std) and
`labels` i64 [N]; metadata `dataset` (as dsa-condense spells it), `ipc`,
`method` (DC or DSA), and for the record `mean`, `std`, `model`, `experiment`,
`num_classes`, `source` and `source_sha256` (the .pt file), `converted_by`, and
`reference_accuracies` (accs_all_exps as JSON).

Method, dataset, model and ipc are taken from the reference's file name
(`res_DSA_CIFAR10_ConvNet_10ipc.pt`) unless given; the ipc is checked against the
labels (every class must have ipc images), the image size and class count against
the dataset. The file is loaded with `torch.load(weights_only=True)` (numpy
scalars in accs_all_exps allowed); --trusted loads with full pickle instead, for a
file you trust that still fails.

usage:
  python3 scripts/convert_reference_pt.py res_DSA_CIFAR10_ConvNet_10ipc.pt \
      [--exp 0] [-o set.safetensors] [--dataset CIFAR10] [--method DSA] \
      [--model ConvNet] [--ipc 10] [--trusted]
  dsa-condense evaluate --synset set.safetensors     # dataset, ipc, method from it

Default output: next to the input, `<input stem>_exp<E>.safetensors`. Requires
torch; the `safetensors` package is not needed (scripts/st_lite.py writes it).
"""
import argparse
import hashlib
import json
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_lite  # noqa: E402

# The reference's datasets: (canonical name, channels, side, classes, mean, std),
# mean/std as the reference's utils.get_dataset (and dsa-condense) use them.
DATASETS = {
    "mnist": ("MNIST", 1, 28, 10, [0.1307], [0.3081]),
    "fashionmnist": ("FashionMNIST", 1, 28, 10, [0.2861], [0.3530]),
    "svhn": ("SVHN", 3, 32, 10, [0.4377, 0.4438, 0.4728], [0.1980, 0.2010, 0.1970]),
    "cifar10": ("CIFAR10", 3, 32, 10, [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
    "cifar100": ("CIFAR100", 3, 32, 100, [0.5071, 0.4866, 0.4409], [0.2673, 0.2564, 0.2762]),
}

NAME_RE = re.compile(r"^res_([A-Za-z]+)_([A-Za-z0-9]+)_(.+)_(\d+)ipc\.pt$")


class ConvertError(Exception):
    pass


def fmt_list(values):
    """[0.4914, 0.4822] as dsa-condense writes a list of f32 (`{:?}`)."""
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def numpy_safe_globals():
    """The numpy types a weights-only load needs for numpy scalars (accs_all_exps)."""
    try:
        import numpy as np
    except ImportError:
        return []
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    found = [getattr(getattr(core, "multiarray", None), "scalar", None), np.dtype]
    for t in ("float64", "float32", "int64"):
        found.append(type(np.dtype(t)))
    return [g for g in found if g is not None]


def load_pt(path, trusted):
    if trusted:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle content beyond tensors, lists, dicts, numbers
        raise ConvertError("%s: a weights-only load failed (%s); if you trust the file, "
                           "rerun with --trusted" % (path, str(e).splitlines()[0]))


def convert(args):
    src = args.pt
    base = os.path.basename(src)
    m = NAME_RE.match(base)
    method = args.method or (m.group(1) if m else None)
    dataset = args.dataset or (m.group(2) if m else None)
    model = args.model or (m.group(3) if m else None)
    name_ipc = int(m.group(4)) if m else None
    if method is None or dataset is None:
        raise ConvertError("%s: not named as the reference names its results "
                           "(res_<method>_<dataset>_<model>_<ipc>ipc.pt): give --method and "
                           "--dataset" % src)
    if method.upper() not in ("DC", "DSA"):
        raise ConvertError("--method: '%s' is neither DC nor DSA" % method)
    key = re.sub(r"[^a-z0-9]", "", dataset.lower())
    if key not in DATASETS:
        raise ConvertError("--dataset: unknown dataset '%s' (expected one of %s)"
                           % (dataset, ", ".join(d[0] for d in DATASETS.values())))
    ds_name, channels, side, classes, mean, std = DATASETS[key]

    with open(src, "rb") as f:
        raw = f.read()
    obj = load_pt(src, args.trusted)
    if not isinstance(obj, dict) or "data" not in obj:
        raise ConvertError("%s: expected a dict with 'data' (as the reference's main.py saves), "
                           "found %s" % (src, type(obj).__name__ if not isinstance(obj, dict)
                                         else "keys %s" % sorted(obj)))
    data = obj["data"]
    if not isinstance(data, (list, tuple)) or not data:
        raise ConvertError("%s: 'data' should be a non-empty list of [images, labels] per "
                           "experiment" % src)
    n_exp = len(data)
    exp = args.exp if args.exp >= 0 else n_exp + args.exp
    if not 0 <= exp < n_exp:
        raise ConvertError("--exp: %d out of range, %s holds %d experiment(s)" % (args.exp, src, n_exp))
    entry = data[exp]
    if not isinstance(entry, (list, tuple)) or len(entry) != 2:
        raise ConvertError("%s: data[%d] should be [images, labels]" % (src, exp))
    images, labels = entry
    if not torch.is_tensor(images) or not images.is_floating_point() or images.dim() != 4:
        raise ConvertError("%s: data[%d][0] should be a float tensor [N, C, H, W], found %s"
                           % (src, exp, getattr(images, "shape", type(images).__name__)))
    if not torch.is_tensor(labels) or labels.is_floating_point() or labels.dim() != 1:
        raise ConvertError("%s: data[%d][1] should be an integer tensor [N]" % (src, exp))
    n = images.shape[0]
    if labels.shape[0] != n or n == 0:
        raise ConvertError("%s: %d images but %d labels" % (src, n, labels.shape[0]))
    if tuple(images.shape[1:]) != (channels, side, side):
        raise ConvertError("%s: images are %s, %s has %dx%dx%d" % (
            src, "x".join(map(str, images.shape[1:])), ds_name, channels, side, side))
    images = images.detach().to("cpu", torch.float32).contiguous()
    labels = labels.detach().to("cpu", torch.int64).contiguous()
    if not torch.isfinite(images).all():
        raise ConvertError("%s: data[%d] images hold NaN or infinity" % (src, exp))
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= classes:
        raise ConvertError("%s: labels span %d..%d, %s has %d classes" % (src, lo, hi, ds_name, classes))
    counts = torch.bincount(labels, minlength=classes).tolist()
    if len(set(counts)) != 1:
        raise ConvertError("%s: not the same number of images per class: %s" % (src, counts))
    ipc = counts[0]
    for what, given in (("--ipc", args.ipc), ("the file name", name_ipc)):
        if given is not None and given != ipc:
            raise ConvertError("%s: %s says %d images per class, the labels have %d"
                               % (src, what, given, ipc))

    meta = {
        "dataset": ds_name,
        "ipc": str(ipc),
        "method": method.upper(),
        "mean": fmt_list(mean),
        "std": fmt_list(std),
        "num_classes": str(classes),
        "experiment": str(exp),
        "source": base,
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "converted_by": "scripts/convert_reference_pt.py",
    }
    if model:
        meta["model"] = model
    accs = obj.get("accs_all_exps")
    if isinstance(accs, dict):
        try:
            clean = {str(k): [float(a) for a in v] for k, v in accs.items()}
            meta["reference_accuracies"] = json.dumps(clean, sort_keys=True)
        except (TypeError, ValueError):
            print("note: accs_all_exps is not model -> list of numbers; not recorded",
                  file=sys.stderr)

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(src)),
                                   "%s_exp%d.safetensors" % (os.path.splitext(base)[0], exp))
    st_lite.write(out, {"images": images, "labels": labels}, meta)
    print("wrote %s: experiment %d of %d, %d images (%d per class) of %s, %s, method %s"
          % (out, exp, n_exp, n, ipc, ds_name, "x".join(map(str, images.shape[1:])), meta["method"]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pt", help="the reference's res_<method>_<dataset>_<model>_<ipc>ipc.pt")
    ap.add_argument("-o", "--out", help="output .safetensors (default: next to the input)")
    ap.add_argument("--exp", type=int, default=0,
                    help="which experiment's set (default 0; negative counts from the end)")
    ap.add_argument("--dataset", help="MNIST, FashionMNIST, SVHN, CIFAR10 or CIFAR100 "
                                      "(default: from the file name)")
    ap.add_argument("--method", help="DC or DSA (default: from the file name)")
    ap.add_argument("--model", help="the training model, recorded only (default: from the file name)")
    ap.add_argument("--ipc", type=int, help="images per class, checked against the labels")
    ap.add_argument("--trusted", action="store_true",
                    help="load with full pickle (only for a file you trust)")
    args = ap.parse_args()
    try:
        convert(args)
    except (ConvertError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
