#!/usr/bin/env bash
# Run HERE (a machine that reaches PyPI), before bench/gpu_check.sh on a GPU machine that reaches
# no network: downloads into .whl/ (git-ignored) the wheels danlu needs beyond that machine's image
# (CPython 3.12 with torch, accelerate, tokenizers, huggingface-hub, triton ...): the versions
# danlu is pinned to and tested with, no dependencies resolved. bitsandbytes is slimmed to its
# CUDA 12.8/13.x and CPU libraries (43 MB → ~10 MB) so the carried tree stays under 64 MiB.
#   bash bench/gpu_wheels.sh && python bench/make_gpu_bench.py --no-model
# then, with the device tool: run("bash bench/gpu_check.sh", carry=[".whl", "bench/.work/gpu"])
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
rm -rf .whl && mkdir -p .whl
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  transformers==5.23.0 peft==0.21.2 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 regex==2026.11.19 \
  liger-kernel==0.8.5 bitsandbytes==0.50.2
$PY - <<'PY'
"""Drop bitsandbytes' libraries for CUDA < 12.8, ROCm and XPU (and their RECORD lines)."""
import glob, os, re, zipfile
drop = re.compile(r"libbitsandbytes_(cuda11\d|cuda12[0-7]|rocm\d+|xpu\d+)\.so$")
for path in glob.glob(".whl/bitsandbytes-*.whl"):
    tmp = path + ".tmp"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if drop.search(item.filename):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(l for l in data.splitlines(True) if not drop.search(l.split(b",")[0].decode()))
            dst.writestr(item, data)
    os.replace(tmp, path)
PY
du -sh .whl
