#!/usr/bin/env bash
# gpu-check.sh: the one prepared GPU run (cuda-backend parity tests against `cpu`,
# then the benchmarks), for a machine with a GPU but probably no Rust toolchain.
#
# PREPARE (on a build machine with Rust; nvcc from scripts/install-nvcc.sh):
#     scripts/gpu-check.sh --prepare
#   builds the test and bench binaries with the kernels compiled by nvcc (fatbin
#   embedded: SASS sm_80/86/89/90 + PTX compute_80) and copies them, with this
#   script, into target/gpu-bundle/ (a folder to carry to the GPU machine).
#
# RUN (on the GPU machine, from the repository root):
#     scripts/gpu-check.sh                      # or: target/gpu-bundle/gpu-check.sh
#   env: BUNDLE=<dir> (default target/gpu-bundle), DSA_CUDA_SYNC=1 to synchronise
#   after every launch (blames the right kernel for an asynchronous fault),
#   SKIP_BENCH=1 to run the tests only.
#   Runs every cuda test of emu_parity, emu_parity_math (one test body per op, the same
#   as `emu` runs in CI), emu_parity_precision (the TF32/BF16 matrix-unit kernels),
#   emu_step (whole matching and train steps) and emu_graph (CUDA graph capture/replay
#   against direct launches, bit for bit), the library's unit tests, then measures the
#   dense GEMM peaks with PyTorch and runs benches/gpu.rs (per conv layer and per outer
#   step, fp32 / tf32 / bf16), and prints a short table.
#   Exit status: non-zero when any test failed or a GPU test was skipped (on a GPU
#   machine "skipped" means the cuda backend could not start: that is a failure here).
#
# The binaries link glibc of the build machine: if they do not start on the GPU image,
# build there instead (cargo test --no-run) or on an older base image.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="${BUNDLE:-$ROOT/target/gpu-bundle}"

if [[ "${1:-}" == "--prepare" ]]; then
    set -e
    cd "$ROOT"
    if [[ -z "${NVCC:-}" ]]; then NVCC="$(scripts/install-nvcc.sh | tail -1)"; export NVCC; fi
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/tests" "$BUNDLE/benches"
    cargo test --release --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    try: m=json.loads(l)
    except Exception: continue
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"] in (["test"],["lib"]):
        print(m["target"]["name"], m["executable"])' |
        while read -r name exe; do
            case "$name" in
            # only what the GPU run executes (the bundle must stay under the 64 MiB
            # a device call carries)
            emu_parity | emu_parity_math | emu_parity_precision | emu_step | emu_graph | dsa_condense)
                cp "$exe" "$BUNDLE/tests/$name" ;;
            esac
        done
    if ls benches/*.rs >/dev/null 2>&1; then
        cargo bench --no-run --message-format=json 2>/dev/null |
            python3 -c 'import json,sys
for l in sys.stdin:
    try: m=json.loads(l)
    except Exception: continue
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]==["bench"]:
        print(m["target"]["name"], m["executable"])' |
            while read -r name exe; do
                # the GPU benchmark only: the others time the CPU backend
                [[ "$name" == gpu ]] && cp "$exe" "$BUNDLE/benches/$name"
            done
    fi
    # release builds keep line tables (debug = 1): strip them, ~60 MB -> ~5 MB a binary
    if command -v strip >/dev/null; then strip --strip-debug "$BUNDLE"/tests/* "$BUNDLE"/benches/*; fi
    cp scripts/gpu-check.sh "$BUNDLE/"
    du -sh "$BUNDLE"
    echo "bundle ready: $BUNDLE"; ls -la "$BUNDLE"/tests "$BUNDLE"/benches
    exit 0
fi

[[ -d "$BUNDLE/tests" ]] || BUNDLE="$(cd "$(dirname "$0")" && pwd)"
[[ -d "$BUNDLE/tests" ]] || { echo "no bundle: run 'scripts/gpu-check.sh --prepare' on a build machine" >&2; exit 2; }
cd "$ROOT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(nvidia-smi unavailable)"

LOG="$(mktemp -d)"
status=0
printf '\n%-44s %s\n' "test" "result"
printf '%-44s %s\n' "----" "------"
# cuda tests: kernel parity (emu_parity*), whole steps (emu_step), graph capture and
# replay (emu_graph); each binary runs its tests whose name contains "cuda"
for t in emu_parity emu_parity_math emu_parity_precision emu_step emu_graph; do
    if [[ ! -x "$BUNDLE/tests/$t" ]]; then
        echo "missing $BUNDLE/tests/$t"; status=1; continue
    fi
    "$BUNDLE/tests/$t" cuda --test-threads=1 --nocapture >"$LOG/$t.txt" 2>&1
    rc=$?
    grep -E '^test .* \.\.\. ' "$LOG/$t.txt" | while read -r _ name _ res; do
        printf '%-44s %s\n' "$t::$name" "$res"
    done
    if grep -q '^skipped' "$LOG/$t.txt"; then
        echo "cuda backend did not start ($t):"; grep -m1 '^skipped' "$LOG/$t.txt"; status=1
    fi
    if [[ $rc -ne 0 ]]; then
        status=1; echo "--- failures ($t) ---"; sed -n '/^failures:/,$p' "$LOG/$t.txt" | head -80
    fi
done
# library unit tests (layout checks etc.)
if [[ -x "$BUNDLE/tests/dsa_condense" ]]; then
    if "$BUNDLE/tests/dsa_condense" --test-threads=2 >"$LOG/unit.txt" 2>&1; then r=ok; else r=FAILED; status=1; fi
    printf '%-44s %s\n' "lib unit tests" "$r"
fi
# benchmarks: the machine's dense GEMM peaks per precision (PyTorch's cuBLAS, 8192^3:
# FP32 with TF32 off, TF32, BF16), then benches/gpu.rs (every conv layer's three
# passes, a square GEMM and the outer step in fp32 / tf32 / bf16, against those peaks)
if [[ "${SKIP_BENCH:-0}" != "1" ]]; then
    echo; echo "== dense GEMM peaks (torch.matmul 8192^3) =="
    peaks="$(python3 - <<'PYEOF' 2>&1
import time, torch
def peak(dtype, tf32):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 / ((time.perf_counter() - t) / 10) / 1e12
print(f"DSA_PEAK_FP32={peak(torch.float32, False):.1f}")
print(f"DSA_PEAK_TF32={peak(torch.float32, True):.1f}")
print(f"DSA_PEAK_BF16={peak(torch.bfloat16, False):.1f}")
PYEOF
)"
    echo "$peaks"
    for kv in $(echo "$peaks" | grep -E '^DSA_PEAK_[A-Z0-9]+=[0-9.]+$'); do export "$kv"; done
    for b in "$BUNDLE"/benches/*; do
        [[ -x "$b" ]] || continue
        echo; echo "== bench $(basename "$b") (TFLOP/s; % of the peak above) =="
        "$b" --bench 2>&1 | head -200 || status=1
    done
fi
echo; [[ $status -eq 0 ]] && echo "gpu-check: PASS" || echo "gpu-check: FAIL (logs in $LOG)"
exit $status
