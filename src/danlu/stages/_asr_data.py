"""Speech recognition data and decoding for `stage: asr`: {audio, text} rows checked at load
(missing or unreadable audio counted with file:line; clips longer than the model's window follow
data.overlong), decoded lazily to log-mel features at the processor's rate (16 kHz for Whisper),
transcripts tokenised with the model's prefix (<|startoftranscript|> [language] [task]
<|notimestamps|>); held-out clips transcribed greedily for WER / CER."""

from __future__ import annotations

import logging

from danlu.data.media import MediaError, audio_seconds, read_audio
from danlu.data.report import DataReport
from danlu.errors import DataError
from danlu.stages._media_data import finish_report, media_rows, split_rows

log = logging.getLogger(__name__)
IGNORE = -100


def window_seconds(processor) -> float:
    fe = processor.feature_extractor
    return fe.n_samples / fe.sampling_rate


def _length_check(window: float, overlong: str, counts: dict):
    def check(row) -> None:
        seconds = audio_seconds(row.path)
        if seconds <= window + 1e-3:
            return
        if overlong == "error":
            raise DataError(f"clip is {seconds:.1f} s, longer than the model's {window:g} s window", where=row.where,
                            hint="cut the clip, or set data.overlong: truncate | drop")
        if overlong == "drop":
            raise MediaError(f"over-long: {seconds:.1f} s > the model's {window:g} s window")
        counts["cut"] += 1
    return check


def _read(ctx, opts, sources, split: str):
    report = DataReport(split=split)
    window, counts = window_seconds(ctx.tokenizer), {"cut": 0}
    rows = media_rows(sources, media_col=opts.audio_column, target_col=opts.text_column,
                      on_bad_row=ctx.config.data.on_bad_row, report=report,
                      check=_length_check(window, ctx.config.data.overlong, counts))
    if counts["cut"]:
        log.warning("%s: %d clip(s) longer than %g s are cut to it (data.overlong: truncate)", split, counts["cut"],
                    window)
    if split == "train" and ctx.config.data.max_samples:
        rows = rows[: ctx.config.data.max_samples]
    return rows, report


def max_label_tokens(ctx) -> int:
    """train.max_length, or less where the decoder has fewer positions (Whisper: 448)."""
    from danlu.models.load import model_config_dict

    m = ctx.config.model
    limit = model_config_dict(m.name_or_path, revision=m.revision).get("max_target_positions")
    return min(ctx.config.train.max_length, limit or ctx.config.train.max_length)


class AudioRows:
    """Rows → {input_features, labels}: log-mel features of the clip, the transcript's token ids."""

    def __init__(self, rows, processor, max_tokens: int):
        self.rows, self.processor, self.max_tokens = rows, processor, max_tokens

    def __len__(self) -> int:
        return len(self.rows)

    def features(self, i: int):
        fe = self.processor.feature_extractor
        audio = read_audio(self.rows[i].path, fe.sampling_rate)
        return fe(audio, sampling_rate=fe.sampling_rate, return_tensors="np")["input_features"][0]

    def labels(self, i: int) -> list[int]:
        ids = self.processor.tokenizer(self.rows[i].target)["input_ids"]
        return ids[: self.max_tokens - 1] + ids[-1:] if len(ids) > self.max_tokens else ids

    def __getitem__(self, i: int) -> dict:
        return {"input_features": self.features(i), "labels": self.labels(i)}


def build_asr_datasets(ctx, opts):
    """(train AudioRows, eval AudioRows or None)."""
    data_cfg = ctx.config.data
    train_rows, train_report = _read(ctx, opts, data_cfg.train, "train")
    if data_cfg.eval:
        held_rows, eval_report = _read(ctx, opts, data_cfg.eval, "eval")
    else:
        train_rows, held_rows = split_rows(ctx, train_rows)
        eval_report = None
    limit = max_label_tokens(ctx)
    tok = ctx.tokenizer.tokenizer
    for rows, report in ((train_rows, train_report), (held_rows, eval_report)):
        if report is not None:
            finish_report(ctx, report, len(rows or []), [len(tok(r.target)["input_ids"]) for r in rows or []])
    return AudioRows(train_rows, ctx.tokenizer, limit), (AudioRows(held_rows, ctx.tokenizer, limit)
                                                         if held_rows else None)


class SpeechCollator:
    """Features stacked (the processor pads every clip to the window); labels padded with -100,
    the decoder start token dropped (the model puts it back when it shifts the labels right)."""

    def __init__(self, decoder_start_id: int):
        self.start = decoder_start_id

    def __call__(self, rows: list[dict]) -> dict:
        import numpy as np
        import torch

        labels = [r["labels"][1:] if r["labels"] and r["labels"][0] == self.start else r["labels"] for r in rows]
        width = max(len(x) for x in labels)
        padded = [x + [IGNORE] * (width - len(x)) for x in labels]
        return {"input_features": torch.from_numpy(np.stack([r["input_features"] for r in rows])),
                "labels": torch.tensor(padded, dtype=torch.long)}


def transcribe(model, processor, dataset: AudioRows, *, batch_size: int, max_new_tokens: int) -> list[str]:
    """Greedy transcripts of every row, forced to start with the tokenizer's prefix (no language
    detection, no timestamps): transformers' generic generate loop on the model's own forward."""
    import numpy as np
    import torch
    from transformers import GenerationMixin

    tok = processor.tokenizer
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    device, dtype = next(base.parameters()).device, next(base.parameters()).dtype
    prefix = tok.prefix_tokens
    positions = getattr(base.config, "max_target_positions", None) or (len(prefix) + max_new_tokens)
    max_new_tokens = max(1, min(max_new_tokens, positions - len(prefix)))
    was_training, out = base.training, []
    base.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            idx = range(start, min(start + batch_size, len(dataset)))
            feats = torch.from_numpy(np.stack([dataset.features(i) for i in idx])).to(device, dtype)
            with torch.no_grad():
                ids = GenerationMixin.generate(
                    base, input_features=feats, decoder_input_ids=torch.tensor([prefix] * len(idx), device=device),
                    max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                    eos_token_id=tok.eos_token_id,
                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
            out += [t.strip() for t in tok.batch_decode(ids[:, len(prefix):], skip_special_tokens=True)]
    finally:
        base.train(was_training)
    return out


def held_out_scores(ctx, dataset: AudioRows, opts) -> dict:
    """WER and CER (percent) of the model's transcripts of the held-out rows, plus a few examples."""
    from danlu.eval.wer import chars, error_rate, words

    preds = transcribe(ctx.model, ctx.tokenizer, dataset, batch_size=ctx.config.train.batch_size,
                       max_new_tokens=opts.max_new_tokens)
    refs = [r.target for r in dataset.rows]
    return {"wer": round(error_rate(preds, refs, words)[0], 2), "cer": round(error_rate(preds, refs, chars)[0], 2),
            "examples": [{"reference": r, "transcript": p} for r, p in list(zip(refs, preds))[:3]]}
