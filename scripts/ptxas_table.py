#!/usr/bin/env python3
"""Markdown table of registers, static shared memory and spills per GEMM kernel
(conv2d_*, linear_*) from nvcc's `-Xptxas -v` report, the README's table.

    python3 scripts/ptxas_table.py target/release/build/dsa-condense-*/out/ptxas.txt

(the newest report of a build with nvcc; `dsa_condense::backend::cuda::PTXAS_REPORT`
holds the same text).
"""
import re
import sys

ARCHS = ["sm_80", "sm_86", "sm_89", "sm_90"]


def parse(text):
    cur, res = None, {}
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line)
        if m:
            cur = (m.group(1), m.group(2))
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            res.setdefault(cur, {})["spill"] = sum(int(g) for g in m.groups())
        m = re.search(r"Used (\d+) registers.*?(\d+) bytes smem", line)
        if m:
            res.setdefault(cur, {}).update(reg=int(m.group(1)), smem=int(m.group(2)))
    return res


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    res = parse(open(sys.argv[1]).read())
    names = sorted({k[0] for k in res if re.match(r"(conv2d|linear)_", k[0])})
    if not names:
        sys.exit(f"{sys.argv[1]}: no conv2d_/linear_ kernels (a build without nvcc?)")
    print("| kernel | registers sm_80 / 86 / 89 / 90 | static smem (B) | stack + spills (B) |")
    print("|---|---|---|---|")
    for n in names:
        regs = " / ".join(str(res.get((n, a), {}).get("reg", "?")) for a in ARCHS)
        smem = max(res.get((n, a), {}).get("smem", 0) for a in ARCHS)
        spill = max(res.get((n, a), {}).get("spill", 0) for a in ARCHS)
        print(f"| `{n}` | {regs} | {smem:,} | {spill} |")


if __name__ == "__main__":
    main()
