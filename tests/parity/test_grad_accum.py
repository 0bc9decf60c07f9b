"""RELIABILITY case 13 (and the foundation issue): batch 8 × accumulation 1 trains like
batch 1 × accumulation 8 — the loss is normalised over the loss tokens of the whole step.

The invariant is checked where it is exact up to float summation order: the accumulated gradient
of the first optimizer step (same starting weights in both runs). One GEMM over 8 rows and eight
GEMMs summed add the same terms in another order; the difference depends on the CPU's kernels
(oneDNN takes other blocking on AVX-512/AMX), of the order of fp32 epsilon × the gradient's
scale. Adam then divides each gradient by its own running RMS, so an element whose gradient is
itself near that noise level can move by a visible fraction of the learning rate (5e-6 = 0.5% of
lr after 3 steps on an Intel AMX Xeon): the weights are therefore compared as whole updates (a
relative norm), with an elementwise bound in units of lr × steps. A wrong normalisation (a mean
per micro-batch, a loss off by the accumulation factor) changes the gradient by percents or
more, and fails the gradient check by orders of magnitude — Adam's scale invariance would hide
a uniform factor from a weights-only check."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from danlu.config.load import load_config
from danlu.train.runner import run_training
from tests.conftest import tiny_config

LR, STEPS = 1e-3, 3
GRAD_RTOL = 1e-4  # of each tensor's largest gradient: 6e-7 measured; loss × 0.99 gives 1e-2
UPDATE_RTOL = 1e-3  # ‖Δw_a − Δw_b‖ / ‖Δw_a‖: 2e-6 measured (AMD EPYC); a per-micro-batch mean gives 0.26


class Probe(TrainerCallback):
    """The weights at the start and end of training, and the accumulated gradients just before
    the first optimizer step."""

    def __init__(self):
        self.start: dict[str, torch.Tensor] = {}
        self.end: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}

    @staticmethod
    def _weights(model) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start = self._weights(model)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if not self.grads:
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.end = self._weights(model)


def train(tmp_path, qa_file, bs: int, ga: int, packing: bool) -> Probe:
    out = tmp_path / f"b{bs}g{ga}"
    cfg = tiny_config(out, qa_file, method={"name": "full"},
                      train={"max_steps": STEPS, "batch_size": bs, "grad_accum": ga, "learning_rate": LR,
                             "precision": "fp32", "save_steps": 100, "warmup_steps": 0,
                             "lr_scheduler": "constant", "max_grad_norm": 0},
                      data={"train": str(qa_file), "packing": packing}, output_dir=str(out / "run"))
    probe = Probe()
    run_training(load_config(cfg), callbacks=[probe])
    return probe


def assert_same_gradients(a: dict, b: dict) -> None:
    assert a and a.keys() == b.keys()
    for name in a:
        scale = a[name].abs().max().clamp(min=1e-12)
        diff = (a[name] - b[name]).abs().max()
        assert diff <= GRAD_RTOL * scale, f"{name}: gradients differ by {diff:.3g} (scale {scale:.3g})"


def assert_same_updates(a: Probe, b: Probe) -> None:
    for name in a.start:
        torch.testing.assert_close(a.start[name], b.start[name], rtol=0, atol=0, msg=name)  # same start
    da = torch.cat([(a.end[n] - a.start[n]).flatten() for n in a.start])
    db = torch.cat([(b.end[n] - b.start[n]).flatten() for n in a.start])
    rel = (da - db).norm() / da.norm()
    assert rel <= UPDATE_RTOL, f"updates differ by {rel:.3g} of their norm"
    assert (da - db).abs().max() <= 2 * LR * STEPS  # no element moved more than Adam's steps allow


@pytest.mark.parametrize("packing", [True, False])
def test_batch8_equals_batch1_times_accum8(tmp_path, qa_file, packing):
    a, b = train(tmp_path, qa_file, 8, 1, packing), train(tmp_path, qa_file, 1, 8, packing)
    assert_same_gradients(a.grads, b.grads)
    assert_same_updates(a, b)
