#!/usr/bin/env python3
"""Loads networks saved by `dsa-condense evaluate --save-nets DIR` into the
reference PyTorch architectures (scripts/pytorch_arch_step.py: the modules of the
DC/DSA reference code under the same names) with strict `load_state_dict`, and
optionally compares their logits with logits computed by dsa-condense.

Each network file is a safetensors `state_dict` whose metadata names the
architecture (`model`, `channel`, `im_size`, `num_classes`); the network is built
as `pytorch_arch_step.build(model, channel, num_classes, im_size)`, loaded, and
put in eval mode (BatchNorm uses the saved running statistics).

With --expect DIR, DIR/<file name of the network> must be a safetensors file
with `inputs` f32 [N, C, H, W] and `logits` f32 [N, K] (what dsa-condense computed
for those inputs); the script runs the PyTorch network on `inputs` and compares:
the relative difference is max|torch - ours| / max|torch| over the batch, and a
network fails when it exceeds --tol. Without --expect, each network runs on a
random batch and the logits are checked to be finite.

Files are read with `safetensors.torch.load_file` when the `safetensors` package
is installed (else with the small reader in scripts/st_lite.py); when it is, the
two readers are also checked to agree.

usage:
  python3 scripts/check_saved_nets.py NETS/*.safetensors
  python3 scripts/check_saved_nets.py --expect CHECKS --json out.json --tol 1e-4 NETS/*.safetensors

Exit status 0 when every network loads (and matches), 1 otherwise.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_arch_step  # noqa: E402
import st_lite  # noqa: E402

try:
    import safetensors.torch as st_torch
except ImportError:  # the package is optional
    st_torch = None


def load(path):
    """(state_dict, metadata, reader name)."""
    sd, meta = st_lite.read(path)
    if st_torch is None:
        return sd, meta, "st_lite"
    official = st_torch.load_file(path)
    if sorted(official) != sorted(sd) or any(
            official[k].dtype != sd[k].dtype or not torch.equal(official[k], sd[k])
            for k in sd):
        raise ValueError("%s: safetensors.torch and st_lite read different tensors" % path)
    return official, meta, "safetensors.torch"


def build(meta, path):
    try:
        model = meta["model"]
        channel = int(meta["channel"])
        classes = int(meta["num_classes"])
        im_size = tuple(json.loads(meta["im_size"]))
    except (KeyError, ValueError) as e:
        raise ValueError("%s: metadata lacks the architecture (%s): %r" % (path, e, meta))
    return pytorch_arch_step.build(model, channel, classes, im_size), (model, channel, classes, im_size)


def check(path, expect_dir, tol):
    sd, meta, reader = load(path)
    net, (model, channel, classes, im_size) = build(meta, path)
    net.load_state_dict(sd, strict=True)  # raises on a missing, extra or misshapen key
    for name, buf in net.named_buffers():
        if name.endswith("num_batches_tracked"):
            assert buf.dtype == torch.int64 and buf.dim() == 0, (name, buf.dtype, buf.shape)
    net.eval()
    row = {"file": os.path.basename(path), "model": model, "reader": reader,
           "accuracy": meta.get("accuracy")}
    if expect_dir:
        exp, _ = st_lite.read(os.path.join(expect_dir, os.path.basename(path)))
        x, ours = exp["inputs"], exp["logits"]
        with torch.no_grad():
            theirs = net(x)
        diff = (theirs - ours).abs().max().item()
        scale = theirs.abs().max().item()
        rel = diff / scale if scale > 0 else diff
        row.update({"inputs": list(x.shape), "max_abs_diff": diff, "max_abs_logit": scale,
                    "rel_diff": rel, "ok": bool(rel <= tol and torch.isfinite(theirs).all())})
    else:
        torch.manual_seed(0)
        x = torch.randn(4, channel, *im_size)
        with torch.no_grad():
            y = net(x)
        row.update({"ok": bool(y.shape == (4, classes) and torch.isfinite(y).all())})
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("nets", nargs="+", help="network files written by evaluate --save-nets")
    ap.add_argument("--expect", metavar="DIR",
                    help="folder of files with `inputs` and our `logits`, named as the networks")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="largest relative logit difference accepted (default 1e-4)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    rows, failed = [], 0
    for path in args.nets:
        try:
            row = check(path, args.expect, args.tol)
        except Exception as e:  # report every file, then fail
            row = {"file": os.path.basename(path), "ok": False, "error": "%s: %s" % (type(e).__name__, e)}
        rows.append(row)
        failed += not row["ok"]
        if "error" in row:
            print("FAIL %s: %s" % (row["file"], row["error"]))
        elif "rel_diff" in row:
            print("%s %-16s %-28s max |diff| %.3e, max |logit| %.3e, relative %.3e (%s)"
                  % ("OK  " if row["ok"] else "FAIL", row["model"], row["file"],
                     row["max_abs_diff"], row["max_abs_logit"], row["rel_diff"], row["reader"]))
        else:
            print("%s %-16s %s loads strictly, finite logits (%s)"
                  % ("OK  " if row["ok"] else "FAIL", row["model"], row["file"], row["reader"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "tol": args.tol, "results": rows}, f, indent=1)
    print("%d of %d networks OK" % (len(rows) - failed, len(rows)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
