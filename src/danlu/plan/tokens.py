"""Tokens in the training data, counted the way `danlu train` will see them: the same readers,
formats, chat template and truncation (data.overlong), with the model's own tokenizer. The
tokenizer is read locally only (builtin, a local directory, the Hugging Face cache); when it is
not there, tokens are estimated from characters and the estimate says so."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
CHARS_PER_TOKEN = 3.2  # mixed English/Chinese text with a ~150k-token BPE vocabulary (rough)


@dataclass
class DataTokens:
    samples: int
    tokens: int  # after truncation to max_length
    label_tokens: int
    lengths: list[int] = field(default_factory=list)
    counted: bool = True  # False: estimated from characters
    note: str = ""

    def to_dict(self) -> dict:
        lengths = sorted(self.lengths)
        return {"samples": self.samples, "tokens": self.tokens, "label_tokens": self.label_tokens,
                "max_length_seen": lengths[-1] if lengths else None,
                "median_length": lengths[len(lengths) // 2] if lengths else None,
                "counted_with_tokenizer": self.counted, "note": self.note}


def count_tokens(cfg) -> DataTokens:
    """Tokens of cfg.data.train (conversation and text formats; images and speech: media_tokens)."""
    media = media_tokens(cfg)
    if media is not None:
        return media
    try:
        tok = _local_tokenizer(cfg)
    except Exception as exc:  # noqa: BLE001 — no local tokenizer: estimate instead
        log.info("tokenizer not available locally (%s); estimating tokens from characters", exc)
        return _estimate(cfg)
    from danlu.chat.templates import resolve_template
    from danlu.data.dataset import encode_sample, iter_samples
    from danlu.data.formats import FormatOptions
    from danlu.data.report import DataReport

    processor = _local_processor(cfg, tok)
    template = resolve_template(tok, cfg.data.template)
    report = DataReport(split="train")
    lengths, labels = [], 0
    opts = FormatOptions(system=cfg.data.system, dataset_dir=cfg.data.dataset_dir,
                         max_image_pixels=cfg.data.max_image_pixels)
    for sample in iter_samples(cfg.data.train, fmt=cfg.data.format, opts=opts, on_bad_row="skip", report=report):
        if processor is not None:  # image tokens counted as the processor expands them
            from types import SimpleNamespace

            from danlu.data.vlm import encode_vlm_sample

            run = SimpleNamespace(config=cfg, template=template, processor=processor)
            enc = encode_vlm_sample(sample, run, cfg.train.max_length, report)
        else:
            enc = encode_sample(sample, template, cfg.data, cfg.train.max_length, report)
        if enc is None:
            continue
        lengths.append(len(enc))
        labels += enc.num_labels
        if cfg.data.max_samples and len(lengths) >= cfg.data.max_samples:
            break
    if cfg.data.eval_split > 0:
        keep = len(lengths) - max(1, int(round(len(lengths) * cfg.data.eval_split)))
        lengths = lengths[:keep]
    return DataTokens(len(lengths), sum(lengths), labels, lengths)


def _local_processor(cfg, tok):
    """A local vision-language model's processor (its chat template put on `tok` if tok has none), else None."""
    from danlu.models.load import is_vision_language, resolve_model_path
    from danlu.models.processor import load_processor

    if not is_vision_language(cfg.model.name_or_path):
        return None
    processor = load_processor(resolve_model_path(cfg.model.name_or_path))
    if not getattr(tok, "chat_template", None) and getattr(processor, "chat_template", None):
        tok.chat_template = processor.chat_template
    return processor


def _local_tokenizer(cfg):
    from transformers import AutoTokenizer

    from danlu.models.builtin import is_builtin
    from danlu.models.gguf import is_gguf_source
    from danlu.models.load import load_tokenizer
    from danlu.models.packaged import is_packaged

    name = cfg.model.name_or_path
    if is_builtin(name) or is_packaged(name) or is_gguf_source(name):
        return load_tokenizer(name)
    from danlu.models.saved_tokenizer import follow_saved_file

    tok = AutoTokenizer.from_pretrained(name, revision=cfg.model.revision, local_files_only=True,
                                        trust_remote_code=cfg.model.trust_remote_code)
    tok = follow_saved_file(tok, name, revision=cfg.model.revision, local_files_only=True)  # as training will
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _estimate(cfg) -> DataTokens:
    from danlu.data.readers import read_rows

    sources = cfg.data.train if isinstance(cfg.data.train, list) else [cfg.data.train]
    lengths = []
    for source in sources:
        for row in read_rows(source):
            if row.error:
                continue
            chars = sum(len(str(v)) for v in (row.data.values() if isinstance(row.data, dict) else [row.data]))
            lengths.append(min(cfg.train.max_length, int(chars / CHARS_PER_TOKEN) + 16))
    return DataTokens(len(lengths), sum(lengths), sum(lengths) // 2, lengths, counted=False,
                      note=f"tokenizer of {cfg.model.name_or_path} not available locally: "
                           f"~{CHARS_PER_TOKEN} characters per token assumed")


def media_tokens(cfg) -> DataTokens | None:
    """Image classification: every image is (image_size / patch)² + 1 positions. Speech recognition:
    the transcripts' tokens (estimated from characters); the audio encoder's frames are not counted.
    None for text stages."""
    stage = cfg.stage_options()
    if cfg.stage == "classify" and stage.is_image(cfg.model.name_or_path, cfg.model.revision):
        from danlu.data.media import class_folder_rows, is_class_folder
        from danlu.models.load import model_config_dict
        from danlu.plan.media_arch import as_text_config

        sources = cfg.data.train if isinstance(cfg.data.train, list) else [cfg.data.train]
        n = sum(len(class_folder_rows(s)) if is_class_folder(s) else _rows(s) for s in sources)
        per = int(as_text_config(model_config_dict(cfg.model.name_or_path)).get("max_position_embeddings", 197))
        return DataTokens(n, n * per, 0, [per] * n, note=f"images: {per} positions each (patches + [CLS])")
    if cfg.stage == "asr":
        data = _estimate(cfg)
        data.note = "speech: transcript tokens estimated from characters; audio frames not counted"
        return data
    return None


def _rows(source: str) -> int:
    from danlu.data.readers import read_rows

    return sum(1 for row in read_rows(source) if not row.error)
