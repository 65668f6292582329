"""Minimal safetensors reading and writing for torch tensors, for the scripts in
this folder when the `safetensors` Python package is not installed (the format is
an 8-byte little-endian header length, a JSON header naming every tensor's dtype,
shape and byte range plus an optional `__metadata__` map of strings, then the
raw little-endian data).

    tensors, metadata = read(path)
    write(path, {"images": t, "labels": l}, {"dataset": "CIFAR10"})   # atomic
"""
import json
import os
import struct

import torch

DTYPES = {
    "F32": torch.float32,
    "F64": torch.float64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


def read_metadata(path):
    """The `__metadata__` map of a safetensors file ({} when there is none)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return header.get("__metadata__", {}) or {}


def read(path):
    """(dict name -> tensor, metadata dict) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: not a safetensors file (too short)" % path)
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError("%s: header of %d bytes in a file of %d" % (path, n, len(raw)))
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dt = DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError("%s: tensor %r has unsupported dtype %s" % (path, name, info["dtype"]))
        a, b = info["data_offsets"]
        buf = bytearray(data[a:b])
        t = torch.frombuffer(buf, dtype=dt) if buf else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out, meta


def write(path, tensors, metadata=None):
    """Writes `tensors` (dict name -> tensor) and string `metadata` to `path`
    atomically (a temporary file in the same folder, then a rename). Tensors are
    stored in name order; the header is padded with spaces to a multiple of 8."""
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in NAMES:
            raise ValueError("tensor %r: unsupported dtype %s" % (name, t.dtype))
        b = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * (-len(h) % 8)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
