"""What is evaluated and how answers are produced: eval items read from a data file (the prompt
is every message before the last assistant turn, the reference is that turn), batched
generation with a loaded model, and generation from token ids during training."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from danlu.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class EvalItem:
    prompt: list[dict]  # messages before the answer: [system], user, (assistant, user)...
    reference: str  # the reference answer's text (tool calls as JSON when it has no text)
    reference_message: dict = field(default_factory=dict)
    tools: list[dict] | None = None
    where: str = ""
    images: list = field(default_factory=list)  # chat.images.ImageRef, one per "<image>" in the prompt

    @property
    def question(self) -> str:
        users = [m.get("content") or "" for m in self.prompt if m["role"] == "user"]
        return users[-1] if users else ""

    def conversation(self):
        from danlu.chat.messages import Conversation

        return Conversation(self.prompt + [self.reference_message], tools=self.tools, where=self.where,
                            images=list(self.images))

    def vision_prompt(self) -> list[dict]:
        """The prompt with each "<image>" as an image content part holding its picture (for a VLM)."""
        from danlu.chat.images import content_parts

        images, out = iter(self.images), []
        for m in self.prompt:
            content = m.get("content")
            if isinstance(content, str) and "<image>" in content:
                parts = [{**p, "image": next(images).open()} if p["type"] == "image" else p
                         for p in content_parts(content)]
                m = {**m, "content": parts}
            out.append(m)
        return out


def reference_text(message: dict) -> str:
    content = message.get("content") or ""
    if content.strip() or not message.get("tool_calls"):
        return content
    return json.dumps(message["tool_calls"], ensure_ascii=False)


def read_items(sources, *, fmt: str = "auto", system: str | None = None, limit: int | None = None,
               on_bad_row: str = "skip") -> list[EvalItem]:
    """Eval items from data file(s) in any conversation format (alpaca, sharegpt, messages ...)."""
    from danlu.data.dataset import iter_samples
    from danlu.data.formats import FormatOptions
    from danlu.data.report import DataReport

    report = DataReport(split="eval")
    items = []
    for sample in iter_samples(sources, fmt=fmt, kinds=("conversation",), opts=FormatOptions(system=system),
                               on_bad_row=on_bad_row, report=report):
        last = max(i for i, m in enumerate(sample.messages) if m["role"] == "assistant")
        msg = sample.messages[last]
        items.append(EvalItem(sample.messages[:last], reference_text(msg), msg, sample.tools, sample.where,
                              list(getattr(sample, "images", None) or [])))
        if limit and len(items) >= limit:
            break
    report.kept = len(items)
    report.log_summary()
    if not items:
        raise DataError(f"no usable eval rows in {sources}", where="--data",
                        hint="give a file of question/answer rows (alpaca, sharegpt, messages, prompt_response)")
    return items


def generate_answers(loaded, items: list[EvalItem], *, max_new_tokens: int, batch_size: int,
                     temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                     desc: str = "answers") -> list[dict]:
    """One generation per item, in item order. Items are batched by prompt length (less
    padding); with sampling, `seed` makes the run repeatable. A progress bar counts questions."""
    from danlu.infer.generate import generate
    from danlu.progress import bar

    check_images(loaded, items)
    order = sorted(range(len(items)), key=lambda i: len(json.dumps(items[i].prompt, ensure_ascii=False)))
    out: list[dict | None] = [None] * len(items)
    by_tools: dict[str, list[int]] = {}
    for i in order:  # one tools list per generate() call (keys in the data's order: the prompt as trained)
        by_tools.setdefault(json.dumps(items[i].tools, ensure_ascii=False), []).append(i)
    with bar(total=len(items), desc=desc, unit="question") as progress:
        for group in by_tools.values():
            tools = items[group[0]].tools
            for start in range(0, len(group), batch_size):
                idx = group[start:start + batch_size]
                prompts = [items[i].vision_prompt() if loaded.vision else items[i].prompt for i in idx]
                answers = generate(loaded, prompts, max_new_tokens=max_new_tokens,
                                   temperature=temperature, top_p=top_p, batch_size=batch_size, tools=tools,
                                   seed=seed if start == 0 else None)  # seeded once per group, as one call
                for i, a in zip(idx, answers):
                    out[i] = a
                progress.update(len(idx))
    return out  # type: ignore[return-value]


def check_images(loaded, items: list[EvalItem]) -> None:
    """Questions with images need a vision-language model."""
    from danlu.errors import UserError

    with_images = [it for it in items if it.images]
    if with_images and not getattr(loaded, "vision", False):
        raise UserError(f"{len(with_images)} eval question(s) carry images (first: {with_images[0].where}) but "
                        f"{loaded.source or 'the model'} is a text-only model", where="--data",
                        hint="evaluate a vision-language run or model (e.g. one trained on builtin:tiny-vl), "
                             "or give questions without images")


def split_encoded(input_ids: list[int], labels: list[int], ignore: int = -100):
    """(prompt ids, answer ids) of an encoded training sample: the answer is its last labelled
    span, the prompt everything before it. None when the sample carries no label."""
    end = max((i for i, y in enumerate(labels) if y != ignore), default=None)
    if end is None:
        return None
    start = end
    while start > 0 and labels[start - 1] != ignore:
        start -= 1
    return input_ids[:start], labels[start:end + 1]


def generate_from_ids(model, tokenizer, prompts: list[list[int]], stop_ids: list[int], *,
                      max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy answers to prompts given as token ids (left-padded batches), decoded."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    device = next(model.parameters()).device
    texts = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, p in enumerate(chunk):
            ids[b, width - len(p):], mask[b, width - len(p):] = torch.tensor(p), 1
        with torch.no_grad():
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=pad,
                                 use_cache=True, temperature=None, top_p=None, top_k=None)
        for row in gen[:, width:].tolist():
            stop = next((k for k, t in enumerate(row) if t in stop_ids), len(row))
            texts.append(tokenizer.decode(row[:stop], skip_special_tokens=True))
    return texts
