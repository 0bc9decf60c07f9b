"""Implicit reward margins on held-out preference pairs, computed directly from log-probabilities
(independently of the trainers' own logging):

  dpo / ipo / kto   β·[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))]   (sums over answer tokens)
  simpo             β·[mean log π(c) − mean log π(r)]                          (per-token means)
  orpo              log odds(c) − log odds(r), odds(y) = p/(1−p), p = exp(mean log π(y))

A pair counts as won when its margin is positive."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

NEEDS_REFERENCE = {"dpo": True, "ipo": True, "kto": True, "simpo": False, "orpo": False}


@torch.no_grad()
def answer_logps(model, prompts: list[list[int]], answers: list[list[int]], pad_id: int, batch_size: int = 16):
    """(sum of log-probs, number of tokens) of each answer given its prompt: two (N,) tensors."""
    sums, counts = [], []
    device = next(model.parameters()).device
    for start in range(0, len(prompts), batch_size):
        seqs = [p + a for p, a in zip(prompts[start:start + batch_size], answers[start:start + batch_size])]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        answer_mask = torch.zeros_like(ids, dtype=torch.bool)
        for b, (s, p) in enumerate(zip(seqs, prompts[start:start + batch_size])):
            ids[b, :len(s)] = torch.tensor(s)
            mask[b, :len(s)] = 1
            answer_mask[b, len(p):len(s)] = True
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits.float()
        logp = F.log_softmax(logits[:, :-1], dim=-1)  # (B, T-1, V): position t predicts token t+1
        token_logp = logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        keep = answer_mask[:, 1:].to(device)
        sums.append((token_logp * keep).sum(-1).cpu())
        counts.append(keep.sum(-1).cpu())
    return torch.cat(sums), torch.cat(counts)


def _reference(model, ref_model):
    """A context in which `model` (or `ref_model`) computes the reference log-probs."""
    if ref_model is not None:
        return ref_model, contextlib.nullcontext()
    adapters = getattr(model, "peft_config", {})
    if "ref" in adapters:
        from trl.trainer.utils import use_adapter

        return model, use_adapter(model, "ref")
    return model, model.disable_adapter()


def _log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    return mean_logp - torch.log1p(-torch.exp(mean_logp).clamp(max=1 - 1e-6))


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def reward_margins(model, rows: list[dict], *, kind: str, beta: float, pad_id: int, ref_model=None) -> torch.Tensor:
    """(N,) implicit reward margins (chosen − rejected) of pair rows {prompt_ids, chosen_ids, rejected_ids}."""
    prompts = [list(r["prompt_ids"]) for r in rows]
    chosen = [list(r["chosen_ids"]) for r in rows]
    rejected = [list(r["rejected_ids"]) for r in rows]
    with _eval_mode(model):
        c_sum, c_n = answer_logps(model, prompts, chosen, pad_id)
        r_sum, r_n = answer_logps(model, prompts, rejected, pad_id)
        if kind == "simpo":
            return beta * (c_sum / c_n.clamp(min=1) - r_sum / r_n.clamp(min=1))
        if kind == "orpo":
            return _log_odds(c_sum / c_n.clamp(min=1)) - _log_odds(r_sum / r_n.clamp(min=1))
        ref, ctx = _reference(model, ref_model)
        with ctx:
            rc_sum, _ = answer_logps(ref, prompts, chosen, pad_id)
            rr_sum, _ = answer_logps(ref, prompts, rejected, pad_id)
        return beta * ((c_sum - rc_sum) - (r_sum - rr_sum))


def label_accuracy(model, rows: list[dict], *, beta: float, pad_id: int, ref_model=None) -> dict:
    """KTO rows {prompt_ids, completion_ids, label}: how often the implicit reward
    β·(log π(y) − log π_ref(y)) is positive for a desirable answer and negative for an undesirable one."""
    prompts = [list(r["prompt_ids"]) for r in rows]
    answers = [list(r["completion_ids"]) for r in rows]
    with _eval_mode(model):
        policy, _ = answer_logps(model, prompts, answers, pad_id)
        ref, ctx = _reference(model, ref_model)
        with ctx:
            reference, _ = answer_logps(ref, prompts, answers, pad_id)
    reward = beta * (policy - reference)
    desirable = torch.tensor([bool(r["label"]) for r in rows])
    right = torch.where(desirable, reward > 0, reward < 0)
    return {"eval_label_accuracy": round(float(right.float().mean()), 4), "eval_answers": len(rows)}


def margin_summary(margins: torch.Tensor, prefix: str = "eval_") -> dict:
    return {
        f"{prefix}preference_accuracy": round(float((margins > 0).float().mean()), 4),
        f"{prefix}reward_margin": round(float(margins.mean()), 4),
        f"{prefix}pairs": int(margins.numel()),
    }


def held_out_pairs(eval_dataset) -> list[dict]:
    """Pair rows of an eval dataset; KTO's unpaired rows are re-paired by prompt where possible."""
    if eval_dataset is None or len(eval_dataset) == 0:
        return []
    cols = eval_dataset.column_names
    if "chosen_ids" in cols and "prompt_ids" in cols:
        return [eval_dataset[i] for i in range(len(eval_dataset))]
    if "completion_ids" not in cols:
        return []
    good, bad = {}, {}
    for row in eval_dataset:
        (good if row["label"] else bad).setdefault(tuple(row["prompt_ids"]), row["completion_ids"])
    return [{"prompt_ids": list(p), "chosen_ids": good[p], "rejected_ids": bad[p]} for p in good if p in bad]
