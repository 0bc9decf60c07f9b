"""train.group_by_length: without packing, each batch holds samples of similar length (less padding)."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from danlu.config.load import load_config
from danlu.train.runner import run_training
from tests.conftest import tiny_config


class _Widths(TrainerCallback):
    """Counts the padding positions of every training batch the model sees."""

    def __init__(self):
        self.pads = []

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kw):
        def hook(_module, _args, kwargs):
            mask = kwargs.get("attention_mask")
            if mask is not None and _module.training:
                self.pads.append(int((mask == 0).sum()))
        model.register_forward_pre_hook(hook, with_kwargs=True)


def _padding(tmp_path, group: bool) -> int:
    rows = []
    for i in range(200):  # alternating short and long answers: random batches mix them (transformers sorts
        # within "megabatches" of min(n // (4 * batch), 50) batches, so n must be large enough to group)
        answer = ("ok. " if i % 2 else "a long answer with many words in it " * 6) + str(i)
        rows.append({"instruction": f"question {i}", "output": answer})
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    path = tiny_config(tmp_path / ("g" if group else "r"), data, data={"train": str(data), "packing": False},
                       train={"max_steps": 8, "batch_size": 4, "report_to": [], "save_steps": 100,
                              "group_by_length": group, "logging_steps": 4})
    widths = _Widths()
    run_training(load_config(str(path), []), callbacks=[widths])
    assert len(widths.pads) == 8
    return sum(widths.pads)


@pytest.mark.slow
def test_grouping_by_length_pads_less(tmp_path):
    random_order, grouped = _padding(tmp_path, False), _padding(tmp_path, True)
    assert grouped < 0.3 * random_order, (grouped, random_order)
