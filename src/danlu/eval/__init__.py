"""Evaluation: metrics on generated answers (metrics.py), held-out loss and option
log-likelihoods (likelihood.py), multiple-choice benchmarks (mc.py), an LLM judge (judge.py),
the `danlu eval` pipeline (run.py), metrics during training (during.py) and report.html
(report.py)."""
