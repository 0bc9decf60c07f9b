"""The teacher: any model danlu loads (a run directory, an artefact, a hub id or local model, a
builtin), frozen, in eval mode, with a LoRA teacher merged into its base for speed."""

from __future__ import annotations

import logging
import os

from danlu.errors import UserError

log = logging.getLogger(__name__)


def device_of_this_process() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def load_teacher(target: str):
    from danlu.infer.load import load_for_inference

    loaded = load_for_inference(target, device=device_of_this_process(), merge=True)
    if loaded.info.get("task", "causal_lm") != "causal_lm":
        raise UserError(f"teacher {target} is a {loaded.info['task']} model; a teacher must be a causal LM",
                        where="distill.teacher")
    loaded.model.requires_grad_(False)
    loaded.model.eval()
    log.info("teacher: %s (%s parameters)", target, f"{sum(p.numel() for p in loaded.model.parameters()):,}")
    return loaded


def logit_width(model) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def check_same_vocabulary(student_tok, teacher, student_width: int | None = None) -> int:
    """Logit distillation compares the two distributions token by token: the tokenizers must
    agree on every id. → the number of logits both share (the tokenizer's length)."""
    s_vocab, t_vocab = student_tok.get_vocab(), teacher.tokenizer.get_vocab()
    if s_vocab != t_vocab:
        differ = len(set(s_vocab.items()) ^ set(t_vocab.items()))
        raise UserError(
            f"the teacher's vocabulary ({len(t_vocab):,} tokens) differs from the student's ({len(s_vocab):,} tokens; "
            f"{differ:,} token↔id pairs differ), so their logits cannot be compared token by token",
            where="distill.teacher",
            hint="pick a teacher with the student's tokenizer (same model family), or set distill.mode: sequence "
                 "(the teacher writes answers and the student learns them; any tokenizer works)")
    n = len(student_tok)
    widths = [logit_width(teacher.model)] + ([student_width] if student_width else [])
    if min(widths) < n:
        raise UserError(f"a model has {min(widths)} logits for a tokenizer of {n} tokens", where="distill.teacher")
    return n
