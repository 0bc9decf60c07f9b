#!/usr/bin/env bash
# LLaMA-Factory vs danlu on the CPU bench, back to back, one results file (issue 24).
# Bench tooling, not shipped. From the repository root:
#   bash bench/peer_llamafactory.sh            # build the LF venv once, then run LF default, LF neat_packing, danlu
#   bash bench/peer_llamafactory.sh --only danlu --danlu-train '{"compile": true}'   # one side, a lever
# Needs: bench/.work/model + alpaca400.jsonl (python bench/make_cpu_bench.py), the danlu venv
# (DANLU_PY, default /work/main/.venv/bin/python or .venv/bin/python), PyPI for the first build,
# and the CPU torch wheel (TORCH_WHEEL, else torch==2.13.0 from the index: a CUDA torch is GBs).
set -euo pipefail
cd "$(dirname "$0")/.."
LF_VERSION=0.9.5
VENV=bench/.work/lf-venv
DANLU_PY=${DANLU_PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo /work/main/.venv/bin/python )}
TORCH_WHEEL=${TORCH_WHEEL:-$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -1 || true)}

build_venv() {
  python3 -m venv "$VENV"
  # torch first, from the local CPU wheel: anything else resolves to a CUDA build
  "$VENV/bin/pip" install -q "${TORCH_WHEEL:-torch==2.13.0}"
  echo "torch==2.13.0" > bench/.work/lf-constraints.txt
  # LF pins its own transformers/peft/trl range: it gets them in its own venv
  "$VENV/bin/pip" install -q "llamafactory==$LF_VERSION" -c bench/.work/lf-constraints.txt
  # torchvision from PyPI is built against another torch and breaks `import transformers` paths
  # that probe it; torchaudio has no CPU build for this torch. LF imports torchaudio only for
  # audio data: an empty stub package satisfies the import.
  "$VENV/bin/pip" uninstall -y -q torchvision torchaudio || true
  local site
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$site/torchaudio"
  echo '"""Empty stub: LLaMA-Factory imports torchaudio; the CPU bench uses no audio."""' > "$site/torchaudio/__init__.py"
  "$VENV/bin/python" -c "import llamafactory, torch; print('LLaMA-Factory', llamafactory.__version__, 'torch', torch.__version__)"
  touch "$VENV/.built"
}

[ -f "$VENV/.built" ] || build_venv
[ -f bench/.work/model/config.json ] || "$DANLU_PY" bench/make_cpu_bench.py --shared "${SHARED:-../shared}"  # from a worktree: SHARED=/work/shared
echo "load before: $(uptime)"
nice "$DANLU_PY" bench/peer_llamafactory.py "$@"
echo "load after: $(uptime)"
