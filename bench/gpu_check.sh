#!/usr/bin/env bash
# Everything danlu checks on a CUDA GPU, in one call of about 6–8 minutes:
#   1. packages: the wheels in .whl/ (bench/gpu_wheels.sh, for a machine without network) into
#      /tmp/danlu-site, else pip install -e .[all,test,gpu] (torch already there, else torch==2.13.0)
#   2. the GPU bench model (bench/make_gpu_bench.py: 1.5B random bf16 weights, from the carried
#      tokenizer and data in bench/.work/gpu)
#   3. pytest -m gpu tests/gpu (flash-attention varlen parity, Liger, activation offload, CUDA QLoRA)
#   4. danlu bench bench/gpu-lora.yaml (seed recipe vs danlu, MFU) → bench/results/<date>-<gpu>.json
# Copies the readings and logs into $OUT (the device tool's folder) or runs/gpu-check/.
# Usage, from a session with a lent GPU (after `bash bench/gpu_wheels.sh` and
# `python bench/make_gpu_bench.py --no-model` here):
#   run(command="bash bench/gpu_check.sh", carry=[".whl", "bench/.work/gpu"], timeout_s=600)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/runs/gpu-check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
step() { echo; echo "=== $(date +%H:%M:%S) $*"; }
status=0

step "packages"
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/danlu-site .whl/*.whl \
    || { echo "installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/danlu-site
else
  $PY -c "import torch" 2>/dev/null || $PY -m pip install -q "torch==2.13.0"
  $PY -m pip install -q -e ".[all,test,gpu]" || { echo "pip install failed (no network? see bench/README.md)"; exit 1; }
fi
export PYTHONPATH=$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}
$PY - <<'PY' || exit 1
import importlib, torch
print("python", __import__("sys").version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA")
for name in ("transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "liger_kernel", "flash_attn"):
    try:
        print(f"  {name} {getattr(importlib.import_module(name), '__version__', '?')}")
    except Exception as exc:  # noqa: BLE001 — report and go on: the tests skip what is missing
        print(f"  {name} missing ({type(exc).__name__}: {str(exc)[:120]})")
assert torch.cuda.is_available(), "no CUDA GPU"
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

step "GPU bench model"
$PY bench/make_gpu_bench.py || { echo "building the bench model failed"; status=1; }

step "pytest -m gpu"
timeout 240 $PY -m pytest -m gpu -q -rs -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT/pytest-gpu.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

step "danlu bench bench/gpu-lora.yaml"
marker=$(mktemp)
timeout 280 $PY -m danlu bench bench/gpu-lora.yaml --out runs/bench-gpu --results bench/results || status=1
find bench/results -name '*.json' -newer "$marker" -exec cp {} "$OUT/" \;
for f in seed.log danlu.log; do [ -f "runs/bench-gpu/$f" ] && cp "runs/bench-gpu/$f" "$OUT/bench-$f"; done

step "done (status $status); readings and logs in $OUT"
ls -la "$OUT"
exit $status
