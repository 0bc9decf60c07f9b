"""Metrics on generated answers during training (`eval.metrics`), computed at every evaluation
beside eval_loss and logged in the same metrics.jsonl row, so `eval.early_stopping` can stop
on them. The answers come from the eval set the trainer already holds: each encoded sample's
last labelled span is the reference, everything before it the prompt, so the model is asked
exactly what it is trained to answer (also with data.eval_split)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def prompts_and_references(dataset, tokenizer, stop_ids: list[int], limit: int):
    """Up to `limit` (prompt ids, reference text) pairs from a TokenizedDataset."""
    from danlu.eval.generate import split_encoded

    pairs = []
    for enc in getattr(dataset, "items", [])[:limit]:
        split = split_encoded(getattr(enc, "input_ids", []), getattr(enc, "labels", []))
        if split is None or not split[0]:
            continue
        prompt, answer = split
        answer = [t for t in answer if t not in stop_ids]
        pairs.append((prompt, tokenizer.decode(answer, skip_special_tokens=True)))
    return pairs


def generation_metrics(trainer, prefix: str = "eval") -> dict[str, float]:
    """{prefix_<metric>: value} for every metric in eval.metrics on up to eval.max_samples samples."""
    from danlu.eval.generate import generate_from_ids
    from danlu.eval.metrics import compute

    ctx = trainer.danlu
    ev = ctx.config.eval
    if ctx.template is None:
        _warn_once("task", "eval.metrics needs a causal-LM stage with a chat template; skipped")
        return {}
    stop_ids = ctx.template.stop_token_ids()
    pairs = prompts_and_references(trainer.eval_dataset, ctx.tokenizer, stop_ids, ev.max_samples)
    if not pairs:
        _warn_once("data", "eval.metrics: the eval set holds no prompt/answer samples this stage can generate for; skipped")
        return {}
    model = trainer.accelerator.unwrap_model(trainer.model)
    was_training = model.training
    model.eval()
    try:
        preds = generate_from_ids(model, ctx.tokenizer, [p for p, _ in pairs], stop_ids,
                                  max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
    finally:
        model.train(was_training)
    refs = [r for _, r in pairs]
    scores = compute(list(ev.metrics), preds, refs)
    return {f"{prefix}_{name}": round(score.value, 4) for name, score in scores.items()}
