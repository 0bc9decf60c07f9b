"""Prompt-only data for the RL stages (and sequence-level distillation): rows → prompts rendered
with the run's chat template (generation prompt included) → token ids, with the data report.

A prompt that leaves no room for `max_completion_length` new tokens within `train.max_length`
is dropped and reported (data.overlong: error stops instead); it is never truncated, since a
cut prompt asks a different question."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from danlu.chat.messages import RowError
from danlu.data.dataset import iter_samples, split_eval
from danlu.data.report import DataReport
from danlu.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class PromptItem:
    messages: list[dict]  # ends with a user turn
    input_ids: list[int]  # the rendered prompt with the generation prompt, e.g. "...<|im_start|>assistant\n"
    extra: dict = field(default_factory=dict)  # the row's other fields
    where: str = ""


def encode_prompt(messages: list[dict], tpl) -> list[int]:
    text = tpl.render(messages, add_generation_prompt=True)
    ids = tpl.tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = getattr(tpl.tokenizer, "bos_token_id", None)
    if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
        ids = ids[1:]
    return list(ids)


def read_prompts(ctx, sources, split: str, *, room: int) -> list[PromptItem]:
    """Prompts of at most `room` tokens from `sources`; the report is appended to ctx.reports."""
    cfg = ctx.config
    data = cfg.data
    report = DataReport(split=split)
    items: list[PromptItem] = []
    for sample in iter_samples(sources, fmt=data.format, kinds=("prompt",), opts=ctx.format_options(),
                               on_bad_row=data.on_bad_row, report=report):
        try:
            ids = encode_prompt(sample.prompt, ctx.template)
        except RowError as exc:
            if data.on_bad_row == "error":
                raise DataError(str(exc), where=sample.where) from None
            report.drop(sample.where, str(exc))
            continue
        if len(ids) > room:
            reason = (f"over-long prompt: {len(ids)} tokens; at most {room} leave room for the answer "
                      f"(train.max_length - max_completion_length)")
            if data.overlong == "error":
                raise DataError(reason, where=sample.where,
                                hint="raise train.max_length, lower max_completion_length, or set data.overlong: drop")
            report.drop(sample.where, reason)
            continue
        items.append(PromptItem(sample.prompt, ids, dict(sample.extra), sample.where))
        if split == "train" and data.max_samples and len(items) >= data.max_samples:
            break
    report.kept = len(items)
    report.lengths = [len(p.input_ids) for p in items]
    ctx.reports.append(report)
    report.log_summary()
    if not items:
        raise DataError(f"no usable {split} prompts in {sources}", where=f"data.{split}",
                        hint="RL stages read a 'prompt' field (text or messages) or 'messages'; "
                             "see data_report.json for why each row was dropped")
    return items


def build_prompt_splits(ctx, max_completion_length: int):
    """(train prompts, eval prompts or None) as lists of PromptItem."""
    cfg = ctx.config
    room = cfg.train.max_length - max_completion_length
    train = read_prompts(ctx, cfg.data.train, "train", room=room)
    if cfg.data.eval:
        return train, read_prompts(ctx, cfg.data.eval, "eval", room=room)
    if cfg.data.eval_split > 0:
        seed = cfg.data.shuffle_seed if cfg.data.shuffle_seed is not None else cfg.train.seed
        kept, held = split_eval(train, cfg.data.eval_split, seed)
        return kept, held or None
    return train, None


def plain_messages(messages: list[dict]) -> list[dict]:
    """role + content only: one schema for every row of a datasets.Dataset."""
    return [{"role": m["role"], "content": m.get("content") or ""} for m in messages]


def to_hf_dataset(items: list[PromptItem]):
    """A datasets.Dataset with a conversational `prompt` column (what TRL's GRPO/RLOO read) and
    every extra field that all rows share (handed to reward functions as keyword arguments)."""
    from datasets import Dataset

    shared = set(items[0].extra)
    for item in items[1:]:
        shared &= set(item.extra)
    shared -= {"prompt", "prompts", "completion", "completions", "completion_ids", "trainer_state"}
    rows = [{"prompt": plain_messages(p.messages), **{k: p.extra[k] for k in sorted(shared)}} for p in items]
    try:
        return Dataset.from_list(rows)
    except Exception as exc:  # noqa: BLE001 — pyarrow raises many kinds for mixed column types
        log.warning("extra fields %s have mixed types across rows (%s); reward functions will not receive them",
                    ", ".join(sorted(shared)) or "-", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return Dataset.from_list([{"prompt": r["prompt"]} for r in rows])
