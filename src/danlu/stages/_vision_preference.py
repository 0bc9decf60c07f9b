"""Preference pairs whose prompt carries images (DPO / IPO / ORPO on a vision-language model).

Rows keep TRL's vision layout — {"images", "prompt", "chosen", "rejected"} with content parts —
and TRL's DataCollatorForVisionPreference renders them through the model's processor at batch time
(its chat template; image placeholders expanded into image tokens; pixel values beside). The
text-level ids danlu computes for every pair (`prompt_ids`, `chosen_ids`, `rejected_ids`, the
images as their unexpanded placeholders) stay in the row for the data report and the length
policy; the trainer never reads them.

DPO / IPO run TRL's DPOTrainer on these rows as it is. ORPO has no vision path in TRL
(trl.experimental.orpo reads token ids only), so `orpo_vision_loss` computes the same loss —
NLL(chosen) − λ·log σ(log odds(chosen) − log odds(rejected)) — from one forward pass over
[chosen; rejected] in a DPOTrainer subclass (no reference model). Held-out margins
(`vision_margins`) come from the same collator and forward."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from danlu.chat.messages import Preference


def is_vision_run(ctx) -> bool:
    """The run trains a vision-language model (read from the model's config: datasets are built
    before the model is loaded)."""
    from danlu.infer.vision import config_is_vision, is_vision_model

    model = getattr(ctx, "model", None)
    if model is not None:
        return config_is_vision(getattr(model, "config", None))
    return is_vision_model(ctx.config.model.name_or_path)


def processor_of(ctx):
    """The run's processor: the one the run context holds, else the base model's."""
    found = getattr(ctx, "processor", None)
    if found is not None:
        return found
    from danlu.infer.vision import load_processor

    ctx.processor = load_processor(ctx.config.model.name_or_path)
    return ctx.processor


def text_pair(sample: Preference, tpl, data_cfg, max_length: int) -> list[dict]:
    """encode_pair for a text-only model, refusing a row with images (a bad row, with its file:line)."""
    from danlu.chat.messages import RowError
    from danlu.stages._preference_data import encode_pair

    if sample.images:
        raise RowError(f"the row has {len(sample.images)} image(s) but the model is text-only; "
                       "train a vision-language model (e.g. builtin:tiny-vl) on it")
    return encode_pair(sample, tpl, data_cfg, max_length)


def encode_vision_pair(sample: Preference, tpl, data_cfg, max_length: int) -> list[dict]:
    """One pair row in TRL's vision layout (+ danlu's text-level ids, for the report)."""
    from danlu.data.vlm import parts_messages
    from danlu.stages._preference_data import encode_pair

    row = encode_pair(sample, tpl, data_cfg, max_length)[0]
    pixels = getattr(data_cfg, "max_image_pixels", None)
    images = [ref.open(pixels) if pixels else ref.open() for ref in sample.images]
    return [{**row, "images": images, "prompt": parts_messages(sample.prompt),
             "chosen": parts_messages(sample.chosen), "rejected": parts_messages(sample.rejected)}]


def clean_parts(messages: list[dict]) -> list[dict]:
    """Content parts as Arrow gives them back (every part has every key, missing ones None) →
    the plain parts a chat template expects."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [{k: v for k, v in part.items() if v is not None} for part in content]
        out.append({k: v for k, v in {**m, "content": content}.items() if v is not None})
    return out


def vision_collator(processor, max_length: int | None):
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    class Collator(DataCollatorForVisionPreference):
        def torch_call(self, examples):
            examples = [{"images": list(e["images"]), "prompt": clean_parts(e["prompt"]),
                         "chosen": clean_parts(e["chosen"]), "rejected": clean_parts(e["rejected"])}
                        for e in examples]
            return super().torch_call(examples)

    return Collator(processor=processor, max_length=max_length)


def save_tokenizer_only(trainer, ctx):
    """Checkpoints and the artefact save the tokenizer, as SFT's do (a processor without its video
    part cannot save_pretrained itself; the image processor is the base model's)."""
    trainer.processing_class = ctx.tokenizer
    return trainer


def completion_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of log-probs over each sequence's completion tokens, their number), for the rows of a
    vision preference batch ([chosen; rejected])."""
    kwargs = {k: v for k, v in batch.items() if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
    logits = model(**kwargs, use_cache=False).logits[:, :-1].float()
    ids = batch["input_ids"][:, 1:]
    token_logp = torch.gather(F.log_softmax(logits, dim=-1), -1, ids.unsqueeze(-1)).squeeze(-1)
    mask = batch["completion_mask"][:, 1:].to(token_logp.dtype)
    return (token_logp * mask).sum(-1), mask.sum(-1)


def log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    return mean_logp - torch.log1p(-torch.exp(mean_logp).clamp(max=1 - 1e-6))


def orpo_vision_loss(model, batch: dict, beta: float) -> tuple[torch.Tensor, dict]:
    """ORPO (Hong et al. 2024) on a vision preference batch: (loss, metrics)."""
    sums, counts = completion_logps(model, batch)
    means = sums / counts.clamp(min=1)
    chosen_mean, rejected_mean = means.chunk(2)
    chosen_sum, _ = sums.chunk(2)
    chosen_n, _ = counts.chunk(2)
    nll = -(chosen_sum.sum() / chosen_n.sum().clamp(min=1))
    ratio = F.logsigmoid(log_odds(chosen_mean) - log_odds(rejected_mean))
    loss = nll - beta * ratio.mean()
    return loss, {"nll_loss": float(nll.detach()), "log_odds_ratio": float(ratio.mean().detach()),
                  "rewards/accuracies": float((chosen_mean > rejected_mean).float().mean())}


@torch.no_grad()
def vision_margins(model, processor, rows: list[dict], *, kind: str, beta: float, ref_model=None,
                   batch_size: int = 8) -> torch.Tensor:
    """(N,) implicit reward margins of held-out vision pairs (as _preference_eval.reward_margins)."""
    from danlu.stages._preference_eval import _eval_mode, _reference

    collate = vision_collator(processor, None)
    device = next(model.parameters()).device

    def logps(m):
        out = []
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) if torch.is_tensor(v) else v
                     for k, v in collate([dict(r) for r in rows[start:start + batch_size]]).items()}
            sums, counts = completion_logps(m, batch)
            out.append(torch.stack([t.cpu() for t in (*sums.chunk(2), *counts.chunk(2))]))
        return torch.cat(out, dim=1)  # (4, N): chosen sum, rejected sum, chosen n, rejected n

    with _eval_mode(model):
        c, r, cn, rn = logps(model)
        if kind == "orpo":
            return log_odds(c / cn.clamp(min=1)) - log_odds(r / rn.clamp(min=1))
        if kind == "simpo":
            return beta * (c / cn.clamp(min=1) - r / rn.clamp(min=1))
        ref, switch = _reference(model, ref_model)
        with switch if switch is not None else contextlib.nullcontext():
            rc, rr, _, _ = logps(ref)
    return beta * ((c - rc) - (r - rr))
