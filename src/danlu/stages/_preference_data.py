"""Preference and unpaired rows → token ids, tokenised by danlu (not by TRL) so every stage sees
exactly the ids SFT trains on: the run's chat template, the answer ending with the template's
turn-end token (or EOS), and the data policies (on_bad_row, overlong) with a data report.

  pair rows      {"prompt_ids", "chosen_ids", "rejected_ids"}       DPO / IPO / SimPO / ORPO
  unpaired rows  {"prompt_ids", "completion_ids", "label"}          KTO
  reward rows    {"chosen_ids", "rejected_ids"} (prompt included)   reward model

Splitting a conversation into prompt and answer: the prompt is rendered with the generation
prompt and tokenised; the answer is what follows that common prefix in the tokenised whole
conversation, up to and including the last labelled token (the turn end)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from danlu.chat.messages import Conversation, Preference, RowError, Unpaired
from danlu.data.dataset import iter_samples, split_eval
from danlu.data.encode import IGNORE, SampleDropped, char_budget, encode_conversation
from danlu.data.report import DataReport
from danlu.errors import DataError

log = logging.getLogger(__name__)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_answer(tpl, prompt: list[dict], answer: list[dict], tools=None) -> tuple[list[int], list[int]]:
    """(prompt_ids, answer_ids) for one prompt and answer under the chat template."""
    tok = tpl.tokenizer
    enc = encode_conversation(Conversation(prompt + answer, tools), tpl)
    prompt_ids = tok(tpl.render(prompt, tools=tools, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    n = common_prefix(prompt_ids, enc.input_ids)
    labelled = [i for i, lab in enumerate(enc.labels) if lab != IGNORE]
    end = labelled[-1] + 1 if labelled else 0
    if end <= n:
        raise SampleDropped("masked to nothing: the answer has no tokens after the prompt")
    return enc.input_ids[:n], enc.input_ids[n:end]


def fit_pair(prompt: list[int], answers: list[list[int]], max_length: int, overlong: str, where: str):
    """Apply data.overlong to prompt + each answer: truncate cuts the answers' tails."""
    longest = len(prompt) + max(len(a) for a in answers)
    if longest <= max_length:
        return answers
    if overlong == "drop":
        raise SampleDropped(f"over-long: {longest} tokens > train.max_length {max_length}")
    if overlong == "error":
        raise DataError(f"sample has {longest} tokens, more than train.max_length {max_length}", where=where,
                        hint="raise train.max_length, or set data.overlong: truncate | drop")
    room = max_length - len(prompt)
    if room <= 0:
        raise SampleDropped(f"over-long: the prompt alone has {len(prompt)} tokens ≥ train.max_length {max_length}")
    return [a[:room] for a in answers]


def bound_answers(tpl, prompt: list[dict], answers: list[list[dict]], max_length: int, overlong: str,
                  where: str) -> list[list[dict]]:
    """Bounded work for huge rows: a prompt longer than char_budget characters holds more than
    max_length tokens (dropped, or an error, as fit_pair would); an answer's text past that many
    characters lies past any truncation, so it is cut before rendering and tokenising."""
    budget = char_budget(tpl.tokenizer, max_length)
    if sum(len(m.get("content") or "") for m in prompt) > budget:
        if overlong == "error":
            raise DataError(f"the prompt has more than {max_length} tokens (train.max_length)", where=where,
                            hint="raise train.max_length, or set data.overlong: truncate | drop")
        raise SampleDropped(f"over-long: the prompt alone has more than {max_length} tokens ≥ train.max_length")
    return [[{**m, "content": m["content"][:budget]} if len(m.get("content") or "") > budget else m for m in a]
            for a in answers]


def encode_pair(sample: Preference, tpl, data_cfg, max_length: int) -> list[dict]:
    chosen_msgs, rejected_msgs = bound_answers(tpl, sample.prompt, [sample.chosen, sample.rejected], max_length,
                                               data_cfg.overlong, sample.where)
    p1, chosen = encode_answer(tpl, sample.prompt, chosen_msgs, sample.tools)
    p2, rejected = encode_answer(tpl, sample.prompt, rejected_msgs, sample.tools)
    n = common_prefix(p1, p2)  # a merge across the prompt's last token: the rest joins each answer
    prompt, chosen, rejected = p1[:n], p1[n:] + chosen, p2[n:] + rejected
    chosen, rejected = fit_pair(prompt, [chosen, rejected], max_length, data_cfg.overlong, sample.where)
    return [{"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected}]


def encode_unpaired(sample, tpl, data_cfg, max_length: int) -> list[dict]:
    """KTO rows; a preference pair gives two (chosen desirable, rejected not)."""
    if isinstance(sample, Preference):
        pair = encode_pair(sample, tpl, data_cfg, max_length)[0]
        return [{"prompt_ids": pair["prompt_ids"], "completion_ids": pair["chosen_ids"], "label": True},
                {"prompt_ids": pair["prompt_ids"], "completion_ids": pair["rejected_ids"], "label": False}]
    assert isinstance(sample, Unpaired)
    (completion_msgs,) = bound_answers(tpl, sample.prompt, [sample.completion], max_length, data_cfg.overlong,
                                       sample.where)
    prompt, completion = encode_answer(tpl, sample.prompt, completion_msgs)
    (completion,) = fit_pair(prompt, [completion], max_length, data_cfg.overlong, sample.where)
    return [{"prompt_ids": prompt, "completion_ids": completion, "label": bool(sample.label)}]


def encode_reward(sample: Preference, tpl, data_cfg, max_length: int) -> list[dict]:
    pair = encode_pair(sample, tpl, data_cfg, max_length)[0]
    return [{"chosen_ids": pair["prompt_ids"] + pair["chosen_ids"],
             "rejected_ids": pair["prompt_ids"] + pair["rejected_ids"]}]


def _row_length(row: dict) -> int:
    prompt = len(row.get("prompt_ids", []))
    return prompt + max(len(v) for k, v in row.items() if k.endswith("_ids") and k != "prompt_ids")


def _answer_tokens(row: dict) -> int:
    return sum(len(v) for k, v in row.items() if k.endswith("_ids") and k != "prompt_ids")


def read_rows(ctx, sources, split: str, kinds: tuple[str, ...], encode: Callable) -> list[list[dict]]:
    """Encoded rows of one split, grouped by the sample they came from (a pair unpaired for KTO
    gives two rows that stay in one split); dropped rows are reported (or raise under
    on_bad_row: error)."""
    data_cfg, max_length = ctx.config.data, ctx.config.train.max_length
    report = DataReport(split=split)
    groups: list[list[dict]] = []
    for sample in iter_samples(sources, fmt=data_cfg.format, kinds=kinds, opts=ctx.format_options(),
                               on_bad_row=data_cfg.on_bad_row, report=report):
        try:
            groups.append(encode(sample, ctx.template, data_cfg, max_length))
        except (SampleDropped, RowError) as exc:
            if isinstance(exc, RowError) and data_cfg.on_bad_row == "error":
                raise DataError(str(exc), where=sample.where) from None
            report.drop(sample.where, str(exc))
            continue
        if split == "train" and data_cfg.max_samples and len(groups) >= data_cfg.max_samples:
            break
    rows = [r for g in groups for r in g]
    report.kept = len(groups)
    report.lengths = [_row_length(r) for r in rows]
    report.label_tokens = sum(_answer_tokens(r) for r in rows)
    ctx.reports.append(report)
    report.log_summary()
    if not rows:
        raise DataError(f"no usable {split} samples in {sources}", where=f"data.{split}",
                        hint=f"this stage reads {' or '.join(kinds)} rows; see data_report.json for why rows were dropped")
    return groups


def build_row_datasets(ctx, kinds: tuple[str, ...], encode: Callable, *, shuffle: bool = False):
    """(train, eval or None) as datasets.Dataset, the way TRL's trainers take them."""
    from datasets import Dataset

    cfg = ctx.config
    data_cfg = cfg.data
    seed = data_cfg.shuffle_seed if data_cfg.shuffle_seed is not None else cfg.train.seed
    train = read_rows(ctx, data_cfg.train, "train", kinds, encode)
    held: list[list[dict]] = []
    if data_cfg.eval:
        held = read_rows(ctx, data_cfg.eval, "eval", kinds, encode)
    elif data_cfg.eval_split > 0:
        train, held = split_eval(train, data_cfg.eval_split, seed)
    train_rows = [r for g in train for r in g]
    if shuffle:  # for trainers that read in order (KTO): mix desirable and undesirable answers
        random.Random(seed).shuffle(train_rows)
    held_rows = [r for g in held for r in g]
    return Dataset.from_list(train_rows), (Dataset.from_list(held_rows) if held_rows else None)
