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
    from danlu.chat.messages import RowError
    from danlu.infer.load import load_for_inference

    try:
        loaded = load_for_inference(target, device=device_of_this_process(), merge=True)
    except RowError as exc:  # its chat template cannot render a conversation
        raise UserError(f"teacher {target} cannot chat: {exc}", where="distill.teacher",
                        hint="a teacher must be a causal LM with a chat template (or a danlu run of one)") from None
    if loaded.info.get("task", "causal_lm") != "causal_lm":
        raise UserError(f"teacher {target} is a {loaded.info['task']} model; a teacher must be a causal LM",
                        where="distill.teacher")
    loaded.model.requires_grad_(False)
    loaded.model.eval()
    log.info("teacher: %s (%s parameters)", target, f"{sum(p.numel() for p in loaded.model.parameters()):,}")
    return loaded


def teacher_tokenizer(target: str):
    """The teacher's tokenizer alone (cheap: checked before any model is loaded)."""
    from danlu.infer.load import find_artefact
    from danlu.models.load import load_tokenizer

    artefact = find_artefact(target)
    return load_tokenizer(str(artefact) if artefact else target)


def logit_width(model) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def check_same_vocabulary(student_tok, teacher_tok) -> int:
    """Logit distillation compares the two distributions token by token: the tokenizers must
    agree on every id. → the number of logits both share (the tokenizer's length)."""
    s_vocab, t_vocab = student_tok.get_vocab(), teacher_tok.get_vocab()
    if s_vocab != t_vocab:
        differ = len(set(s_vocab.items()) ^ set(t_vocab.items()))
        raise UserError(
            f"the teacher's vocabulary ({len(t_vocab):,} tokens) differs from the student's ({len(s_vocab):,} tokens; "
            f"{differ:,} token↔id pairs differ), so their logits cannot be compared token by token",
            where="distill.teacher",
            hint="pick a teacher with the student's tokenizer (same model family), or set distill.mode: sequence "
                 "(the teacher writes answers and the student learns them; any tokenizer works)")
    return len(student_tok)


def check_logit_width(n_tokens: int, *models) -> None:
    widths = [logit_width(m) for m in models]
    if min(widths) < n_tokens:
        raise UserError(f"a model has {min(widths)} logits for a tokenizer of {n_tokens} tokens",
                        where="distill.teacher",
                        hint="the teacher and student must share the tokenizer they were built with")
