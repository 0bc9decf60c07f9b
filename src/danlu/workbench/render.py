"""Show exactly what the trainer will see: the tokenised samples of a config or a data file,
with the trained spans marked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from danlu.data.encode import IGNORE, Encoded


@dataclass
class Rendered:
    where: str
    encoded: Encoded


def load_for_render(target: str, model: str | None, overrides: list[str] | None = None):
    """(tokenizer, template, data config, sources, max_length) from a config file or a data file."""
    from danlu.chat.templates import resolve_template
    from danlu.config.load import load_config, load_config_dict
    from danlu.models.load import load_tokenizer

    if Path(target).suffix in (".yaml", ".yml"):
        cfg = load_config(target, overrides or [])
        if model:
            cfg.model.name_or_path = model
    else:
        cfg = load_config_dict({"model": {"name_or_path": model or "builtin:tiny"}, "data": {"train": target},
                                "method": {"name": "full"}})
    tok = load_tokenizer(cfg.model.name_or_path, revision=cfg.model.revision,
                         trust_remote_code=cfg.model.trust_remote_code)
    return cfg, tok, resolve_template(tok, cfg.data.template)


def render_samples(target: str, model: str | None = None, limit: int = 5, overrides=None) -> tuple[list[Rendered], object]:
    from danlu.data.dataset import encode_sample, iter_samples
    from danlu.data.formats import FormatOptions
    from danlu.data.report import DataReport

    cfg, tok, tpl = load_for_render(target, model, overrides)
    report = DataReport()
    opts = FormatOptions(system=cfg.data.system, placeholders=dict(getattr(cfg.data, "placeholders", None) or {}),
                         dataset_dir=getattr(cfg.data, "dataset_dir", "data"))
    out: list[Rendered] = []
    for sample in iter_samples(cfg.data.train, fmt=cfg.data.format, opts=opts, on_bad_row=cfg.data.on_bad_row,
                               report=report):
        enc = encode_sample(sample, tpl, cfg.data, cfg.train.max_length, report)
        if enc is not None:
            out.append(Rendered(sample.where, enc))
        if len(out) >= limit:
            break
    return out, tok


def spans(enc: Encoded) -> list[tuple[bool, list[int]]]:
    """Runs of consecutive tokens that are (True) or are not (False) trained."""
    runs: list[tuple[bool, list[int]]] = []
    for tid, lab in zip(enc.input_ids, enc.labels):
        trained = lab != IGNORE
        if runs and runs[-1][0] == trained:
            runs[-1][1].append(tid)
        else:
            runs.append((trained, [tid]))
    return runs
