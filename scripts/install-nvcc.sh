#!/usr/bin/env bash
# Installs nvcc 13.0 from PyPI's NVIDIA wheels (no GPU needed) and prints the path of
# the nvcc binary to use, e.g.:
#   export NVCC="$(scripts/install-nvcc.sh | tail -1)"
# Idempotent: pip skips what is already installed. All five wheels are pinned to
# 13.0.*: with only nvcc pinned, pip pulls a newer nvvm whose PTX ptxas 13.0 rejects.
# nvidia-cuda-cccl carries <nv/target>, which cuda_bf16.h (the BF16 kernels) includes.
# PTX built by this toolkit loads on drivers >= 580 (CUDA 13.0).
set -euo pipefail
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check \
    'nvidia-cuda-nvcc==13.0.*' 'nvidia-nvvm==13.0.*' 'nvidia-cuda-crt==13.0.*' \
    'nvidia-cuda-runtime==13.0.*' 'nvidia-cuda-cccl==13.0.*' >&2
NVCC_PATH="$("$PY" - <<'PYEOF'
import os, sys, importlib.util
spec = importlib.util.find_spec("nvidia")
roots = list(spec.submodule_search_locations) if spec else []
for root in roots:
    for dirpath, _, files in os.walk(root):
        if "nvcc" in files and os.path.basename(dirpath) == "bin":
            print(os.path.join(dirpath, "nvcc"))
            sys.exit(0)
sys.exit("nvcc not found in the nvidia wheels")
PYEOF
)"
"$NVCC_PATH" --version >&2
echo "$NVCC_PATH"
