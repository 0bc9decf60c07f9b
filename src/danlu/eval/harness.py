"""An adapter to EleutherAI's lm-evaluation-harness (`pip install lm-eval`), when installed:
the loaded model and tokenizer (a run, an adapter, a merged model) are handed to the harness
as an `HFLM`, so any of its hundreds of tasks (mmlu, ceval-valid, cmmlu, gsm8k ...) scores the
model exactly as the harness scores it. danlu's own `--bench` needs no harness."""

from __future__ import annotations

import logging

from danlu.errors import UserError

log = logging.getLogger(__name__)


def harness_available() -> bool:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return False
    return True


def _require():
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        raise UserError(
            "--harness needs lm-evaluation-harness, which is not installed",
            where="--harness",
            hint="pip install lm-eval   (or use danlu's own --bench FOLDER for MMLU / C-Eval / CMMLU files)",
        ) from None
    return lm_eval, HFLM


def run_harness(loaded, tasks: list[str], *, num_fewshot: int | None = None, limit: int | None = None,
                batch_size: int = 8) -> dict:
    """{task: {metric: value}} from lm_eval.simple_evaluate on the loaded model."""
    lm_eval, HFLM = _require()
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=batch_size)
    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=num_fewshot or None, limit=limit)
    except KeyError as exc:  # an unknown task name
        raise UserError(f"lm-evaluation-harness does not know the task {exc}", where="--harness",
                        hint="list its tasks with: lm-eval ls tasks") from None
    results = (out or {}).get("results", {})
    return {task: {k: v for k, v in metrics.items() if isinstance(v, (int, float))} for task, metrics in results.items()}
