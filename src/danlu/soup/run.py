"""`danlu merge`: combine fine-tuned models (or adapters) of one base into one model directory,
tensor by tensor (one tensor of each input in memory at a time; the output is written in shards),
with danlu.json so chat / eval / serve / export load it like a trained artefact."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import danlu
from danlu.errors import UserError
from danlu.soup.sources import Source, common_base, open_source, weight_map

log = logging.getLogger(__name__)
SHARD_BYTES = 4 * 2**30
SKIP_FILES = {"danlu.json", "README.md", "training_args.bin", "adapter_config.json"}


@dataclass
class MergeSpec:
    models: list[str]
    method: str = "linear"
    base: str | None = None
    weights: list[float] | None = None
    density: float = 0.5
    lam: float = 1.0
    seed: int = 0
    dtype: str = "auto"  # auto: the first model's dtype


def check_spec(spec: MergeSpec) -> None:
    from danlu.soup.formulas import MERGERS

    if spec.method not in MERGERS:
        raise UserError(f"unknown merge method {spec.method!r}; choose one of: {', '.join(MERGERS)}", where="--method")
    if len(spec.models) < (2 if spec.method == "linear" else 1):
        raise UserError(f"{spec.method} needs at least {2 if spec.method == 'linear' else 1} models", where="MODELS")
    if spec.weights is not None and len(spec.weights) != len(spec.models):
        raise UserError(f"{len(spec.weights)} weights for {len(spec.models)} models", where="--weights",
                        hint="give one weight per model, in the same order")
    if spec.weights is not None and sum(spec.weights) <= 0:
        raise UserError("the weights must sum to more than 0", where="--weights")
    if not 0 < spec.density <= 1:
        raise UserError(f"density must be in (0, 1], got {spec.density}", where="--density")


class ShardWriter:
    """Collects output tensors and writes them in shards of at most SHARD_BYTES."""

    def __init__(self, out: Path):
        self.out, self.pending, self.size, self.files, self.index = out, {}, 0, [], {}

    def add(self, name: str, tensor) -> None:
        self.pending[name] = tensor.contiguous()
        self.size += tensor.numel() * tensor.element_size()
        if self.size >= SHARD_BYTES:
            self.flush()

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        path = self.out / f".shard-{len(self.files)}.safetensors"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.files.append((path, list(self.pending)))
        self.pending, self.size = {}, 0

    def close(self) -> None:
        self.flush()
        n = len(self.files)
        for i, (path, names) in enumerate(self.files):
            final = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            path.rename(self.out / final)
            self.index.update({name: final for name in names})
        if n > 1:
            (self.out / "model.safetensors.index.json").write_text(
                json.dumps({"metadata": {}, "weight_map": self.index}, indent=2), encoding="utf-8")


class Reader:
    """The tensors of one model folder, each safetensors file opened once."""

    def __init__(self, source: Source):
        self.name, self.map, self._files = source.name, weight_map(source.folder), {}

    def __contains__(self, key: str) -> bool:
        return key in self.map

    def get(self, key: str):
        from safetensors import safe_open

        path = self.map[key]
        if path not in self._files:
            self._files[path] = safe_open(str(path), framework="pt")
        return self._files[path].get_tensor(key)


def check_same_architecture(readers: list[Reader]) -> None:
    keys = set(readers[0].map)
    for r in readers[1:]:
        if set(r.map) != keys:
            diff = sorted(keys ^ set(r.map))[:3]
            raise UserError(f"{r.name} has different tensors than {readers[0].name} (e.g. {', '.join(diff)})",
                            hint="merge only models of one architecture (fine-tunes of one base)")


def merge_one(spec: MergeSpec, key: str, readers: list[Reader], base: Reader | None, gen):
    """The merged tensor `key` (fp32), and whether the base lacked it (then averaged linearly)."""
    from danlu.soup.formulas import merge_tensor

    tensors = [r.get(key) for r in readers]
    if any(t.shape != tensors[0].shape for t in tensors):
        raise UserError(f"tensor {key} has shapes {[tuple(t.shape) for t in tensors]} in the inputs",
                        hint="merge only models of one architecture (fine-tunes of one base)")
    ref = base.get(key) if base is not None and key in base else None
    method = spec.method
    if base is not None and (ref is None or ref.shape != tensors[0].shape):
        method, ref = "linear", None  # e.g. a new classification head the base does not have
    merged = merge_tensor(method, tensors, base=ref, weights=spec.weights, density=spec.density,
                          lam=spec.lam, generator=gen)
    return merged, method != spec.method


def merge_tensors(spec: MergeSpec, sources: list[Source], base: Source | None, writer: ShardWriter) -> int:
    import torch

    readers = [Reader(s) for s in sources]
    check_same_architecture(readers)
    base_reader = Reader(base) if base else None
    gen = torch.Generator().manual_seed(spec.seed)  # DARE's masks: same seed, same merge
    dtype = getattr(torch, spec.dtype) if spec.dtype != "auto" else None
    from danlu.progress import track

    no_base = []
    for key in track(sorted(readers[0].map), desc=f"merge ({spec.method})", unit="tensor"):
        first = readers[0].get(key)
        if not first.is_floating_point():  # integer buffers are copied
            writer.add(key, first)
            continue
        merged, fell_back = merge_one(spec, key, readers, base_reader, gen)
        if fell_back:
            no_base.append(key)
        writer.add(key, merged.to(dtype or first.dtype))
    if no_base:
        log.warning("%d tensors are not in the base model (%s): averaged linearly", len(no_base), ", ".join(no_base[:3]))
    return len(readers[0].map)


def copy_model_files(src: Path, out: Path) -> None:
    """config, generation config, tokenizer and chat template of the first input."""
    for f in src.iterdir():
        if f.is_file() and f.suffix not in (".safetensors", ".bin") and f.name not in SKIP_FILES \
                and not f.name.endswith(".index.json"):
            shutil.copy2(f, out / f.name)


def write_info(out: Path, spec: MergeSpec, sources: list[Source], base_name: str | None) -> None:
    first = sources[0].info
    info = {
        "danlu_version": danlu.__version__,
        "base_model": base_name or first.get("base_model") or sources[0].name,
        "method": {"name": "full"},
        "stage": "merge",
        "task": sources[0].task,
        "artefact": "model",
        "merge": asdict(spec),
    }
    for key in ("template", "turn_end", "stop_token_ids", "labels", "num_labels"):
        if key in first:
            info[key] = first[key]
    (out / "danlu.json").write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")


def run_merge(spec: MergeSpec, out: str | Path, *, overwrite: bool = False) -> dict:
    """Merge `spec.models` into `out` (a model directory with danlu.json); returns a summary."""
    from danlu.soup.formulas import NEEDS_BASE

    check_spec(spec)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} already exists and is not empty", where="--out",
                        hint="pick another folder, or pass --overwrite")
    with tempfile.TemporaryDirectory(prefix="danlu-merge-") as tmp:
        sources = [open_source(m, Path(tmp)) for m in spec.models]
        base_name = common_base(sources, spec.base)
        if NEEDS_BASE[spec.method] and not base_name:
            raise UserError(f"{spec.method} needs the base model the inputs were fine-tuned from", where="--base",
                            hint="pass --base MODEL (adapters name their base themselves)")
        base = open_source(base_name, Path(tmp)) if base_name and NEEDS_BASE[spec.method] else None
        staging = out.parent / f".tmp-{out.name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            writer = ShardWriter(staging)
            n = merge_tensors(spec, sources, base, writer)
            writer.close()
            copy_model_files(sources[0].folder, staging)
            write_info(staging, spec, sources, base_name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    from danlu.files import normal_modes

    normal_modes(staging)  # safetensors leaves its files 0600
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    # the CLI says "merged N models ... → out" (said once: the summary is the command's result)
    return {"out": str(out), "method": spec.method, "models": len(spec.models), "tensors": n, "base": base_name}
