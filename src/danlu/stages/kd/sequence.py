"""Sequence-level distillation (Kim & Rush 2016): the teacher writes an answer to every prompt
(greedy by default) and the student is fine-tuned on those answers with the SFT loss. Works
across tokenizers, since only text passes from teacher to student.

Prompts come from a `prompt` field or from messages (a reference answer in the row is
ignored). The teacher's answers are written to RUN_DIR/distill_data.jsonl (the messages the
student trained on) so they can be read, filtered and reused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from danlu.chat.messages import Conversation
from danlu.data.dataset import TokenizedDataset, encode_sample
from danlu.errors import DataError

log = logging.getLogger(__name__)


def teacher_answers(teacher, prompts, stage, batch_size: int, seed: int) -> list[str]:
    from danlu.infer.generate import generate

    outputs = generate(teacher, [p.messages for p in prompts], max_new_tokens=stage.max_completion_length,
                       temperature=stage.teacher_temperature, seed=seed, batch_size=batch_size)
    return [o["text"].strip() for o in outputs]


def build_split(ctx, stage, sources, split: str, out_file: Path | None) -> TokenizedDataset:
    from danlu.stages.rl.prompts import read_prompts

    cfg = ctx.config
    prompts = read_prompts(ctx, sources, split, room=cfg.train.max_length - 1)
    report = ctx.reports[-1]
    answers = teacher_answers(ctx.teacher, prompts, stage, cfg.eval.batch_size, cfg.train.seed)
    items, written = [], []
    for prompt, answer in zip(prompts, answers):
        if not answer:
            report.drop(prompt.where, "the teacher wrote an empty answer")
            continue
        conv = Conversation(prompt.messages + [{"role": "assistant", "content": answer}], where=prompt.where)
        enc = encode_sample(conv, ctx.template, cfg.data, cfg.train.max_length, report)
        if enc is not None:
            items.append(enc)
            written.append({"messages": conv.messages, "source": prompt.where})
    report.kept = len(items)
    report.lengths = [len(e) for e in items]
    report.label_tokens = sum(e.num_labels for e in items)
    if out_file is not None and ctx.is_main:
        with open(out_file, "a", encoding="utf-8") as fh:
            for row in written:
                fh.write(json.dumps({**row, "split": split}, ensure_ascii=False) + "\n")
    if not items:
        raise DataError(f"the teacher wrote no usable {split} answers", where="distill.teacher",
                        hint="check the teacher with danlu chat, or raise distill.max_completion_length")
    log.info("%s: the teacher answered %d prompts", split, len(items))
    return TokenizedDataset(items)


def build_sequence_datasets(ctx, stage):
    """(train, eval or None) TokenizedDatasets of teacher-written conversations."""
    from danlu.data.dataset import split_eval

    cfg = ctx.config
    out_file = Path(ctx.run_dir) / "distill_data.jsonl"
    if ctx.is_main:
        out_file.unlink(missing_ok=True)
    train = build_split(ctx, stage, cfg.data.train, "train", out_file)
    if cfg.data.eval:
        return train, build_split(ctx, stage, cfg.data.eval, "eval", out_file)
    if cfg.data.eval_split > 0:
        seed = cfg.data.shuffle_seed if cfg.data.shuffle_seed is not None else cfg.train.seed
        kept, held = split_eval(train.items, cfg.data.eval_split, seed)
        return TokenizedDataset(kept), TokenizedDataset(held)
    return train, None
