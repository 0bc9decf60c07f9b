"""Vision-language samples: a Conversation with images → the processor's input ids (image tokens
expanded), labels and image tensors (pixel_values, image_grid_thw ...).

Labels: the conversation (content as parts, images as {"type": "image"}) is labelled by the text
path (data/encode.py: assistant turns and their turn end, through the model's own chat template)
with each image as its unexpanded placeholder; the processor then expands the placeholders into
the model's image tokens. The two id sequences are aligned (difflib): the tokens they share carry
their label, the inserted image tokens carry none. Image tokens are never labelled."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from danlu.chat.images import DEFAULT_MAX_PIXELS, IMAGE, content_parts
from danlu.chat.messages import Conversation, RowError
from danlu.data.encode import IGNORE, Encoded, SampleDropped, encode_conversation

SEQUENCE_KEYS = ("mm_token_type_ids", "token_type_ids")  # per-token extras: padded like input_ids


@dataclass
class VlmEncoded(Encoded):
    extra: dict = field(default_factory=dict)  # image tensors for the model: pixel_values, image_grid_thw ...


def parts_messages(messages: list[dict]) -> list[dict]:
    """Every message's content as content parts (what multimodal chat templates iterate over)."""
    return [{**m, "content": content_parts(m["content"] or "")} if isinstance(m.get("content"), str) else m
            for m in messages]


def image_token_ids(processor) -> set[int]:
    tok = processor.tokenizer
    ids = {getattr(processor, "image_token_id", None)}
    for owner in (processor, tok):  # Gemma 3 keeps its soft image token on the tokenizer only
        for name in ("image_token", "boi_token", "eoi_token", "video_token", "fake_image_token", "global_image_tag"):
            text = getattr(owner, name, None)
            if isinstance(text, str):
                ids.add(tok.convert_tokens_to_ids(text))
    return {i for i in ids if isinstance(i, int) and i != tok.unk_token_id}


def encode_vlm(conv: Conversation, tpl, processor, *, train_on_prompt: bool = False, mask_history: bool = False,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> VlmEncoded:
    msgs = parts_messages(conv.messages)
    if any(IMAGE in p.get("text", "") for m in msgs for p in m["content"] if isinstance(p, dict)):
        raise RowError("an image placeholder inside text was not split out")
    plain = encode_conversation(Conversation(msgs, conv.tools, conv.where), tpl, train_on_prompt=train_on_prompt,
                                mask_history=mask_history)
    full = tpl.render(msgs, tools=conv.tools)
    images = [ref.open(max_pixels) for ref in conv.images]
    out = processor(text=[full], images=images or None, return_tensors="pt", add_special_tokens=False)
    ids = out["input_ids"][0].tolist()
    labels = align_labels(plain.input_ids, plain.labels, ids)
    banned = image_token_ids(processor)
    labels = [IGNORE if i in banned else lab for i, lab in zip(ids, labels)]
    if sum(lab != IGNORE for lab in labels) != plain.num_labels:
        raise RowError("cannot place the answer tokens in the processor's output (its template differs)")
    extra = {k: (v[0] if k in SEQUENCE_KEYS else v) for k, v in out.items() if k not in ("input_ids", "attention_mask")}
    return VlmEncoded(ids, labels, extra=extra)


def align_labels(plain_ids: list[int], plain_labels: list[int], ids: list[int]) -> list[int]:
    """Labels for `ids` (the processor's output): a token shared with `plain_ids` takes its label;
    a token the processor inserted (expanded image tokens) takes none."""
    labels = [IGNORE] * len(ids)
    matcher = difflib.SequenceMatcher(a=plain_ids, b=ids, autojunk=False)
    for a, b, n in matcher.get_matching_blocks():
        labels[b:b + n] = plain_labels[a:a + n]
    return labels


def fit_vlm(enc: VlmEncoded, max_length: int, overlong: str, where: str, image_ids: set[int]) -> VlmEncoded:
    """data.overlong for a sample with images: truncation never cuts into image tokens (the model
    needs all of an image's tokens): such a sample is dropped instead."""
    from danlu.data.encode import fit_length

    if len(enc) > max_length and overlong == "truncate" and any(i in image_ids for i in enc.input_ids[max_length:]):
        raise SampleDropped(f"over-long: {len(enc)} tokens > train.max_length {max_length} and cutting would "
                            "split an image's tokens")
    cut = fit_length(enc, max_length, overlong, where)
    if len(cut) == len(enc):
        return enc
    extra = {k: (v[:max_length] if k in SEQUENCE_KEYS else v) for k, v in enc.extra.items()}
    return VlmEncoded(cut.input_ids, cut.labels, extra=extra)


def encode_vlm_sample(sample, ctx, max_length: int, report) -> VlmEncoded | None:
    """encode_vlm under the data policies (overlong, on_bad_row); None when dropped (reported)."""
    from danlu.errors import DataError

    data_cfg = ctx.config.data
    try:
        if not isinstance(sample, Conversation):
            raise RowError(f"a vision-language model trains on conversations, not {type(sample).__name__} rows")
        enc = encode_vlm(sample, ctx.template, ctx.processor, train_on_prompt=data_cfg.train_on_prompt,
                         mask_history=data_cfg.mask_history, max_pixels=data_cfg.max_image_pixels)
        if len(enc) > max_length and data_cfg.overlong == "truncate":
            report.truncate(sample.where, len(enc), False)
        return fit_vlm(enc, max_length, data_cfg.overlong, sample.where, image_token_ids(ctx.processor))
    except (SampleDropped, RowError) as exc:
        if isinstance(exc, RowError) and data_cfg.on_bad_row == "error":
            raise DataError(str(exc), where=sample.where) from None
        report.drop(sample.where, str(exc))
        return None


class VlmDataset:
    """Encoded vision-language samples as the dicts VlmCollator expects."""

    def __init__(self, items: list[VlmEncoded]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        e = self.items[i]
        return {"input_ids": e.input_ids, "labels": e.labels, **e.extra}

    @property
    def lengths(self) -> list[int]:
        return [len(e) for e in self.items]


class VlmCollator:
    """PaddingCollator's batch plus the image tensors: per-token extras padded with 0, the rest
    (pixel_values, image_grid_thw ...) concatenated over the batch's samples in order."""

    def __init__(self, pad_token_id: int):
        from danlu.data.collate import PaddingCollator

        self.pad = PaddingCollator(pad_token_id)

    def __call__(self, features: list[dict]) -> dict:
        import torch

        batch = self.pad([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
        width = batch["input_ids"].shape[1]
        keys = dict.fromkeys(k for f in features for k in f if k not in ("input_ids", "labels"))
        for key in keys:
            values = [f[key] for f in features if key in f]
            if key in SEQUENCE_KEYS:
                out = torch.zeros((len(features), width), dtype=values[0].dtype)
                for b, f in enumerate(features):
                    if key in f:
                        out[b, :len(f[key])] = f[key]
                batch[key] = out
            else:
                batch[key] = torch.cat(values, dim=0)
        return batch
