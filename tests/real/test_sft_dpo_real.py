"""SFT → DPO on real weights: the facts LoRA run (SFT on SmolLM2) is merged with `danlu export --merge`,
then `danlu train` runs DPO (LoRA) from the merged folder through the real CLI: 10 steps, the loss
falls from log 2 and the chosen answers gain reward over the rejected ones."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from tests.conftest import run_cli, write_jsonl
from tests.real.conftest import FACTS, first_last, losses, needs_smollm2, small_config

pytestmark = [pytest.mark.real, needs_smollm2]

WRONG = ["The FlowDesk support phone number is 555-0199.", "FlowDesk's head office is in Oslo.",
         "The FlowDesk mascot is a blue owl called Byte."]


def test_dpo_trains_from_the_merged_sft_model(merged_dir, tmp_path):
    pairs = [{"prompt": q, "chosen": a, "rejected": w} for (q, a), w in zip(FACTS, WRONG)] * 3
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    cfg = small_config(tmp_path / "dpo", data, method={"name": "lora", "r": 8}, steps=10, lr=2e-3,
                       model={"name_or_path": str(merged_dir)}, stage="dpo", dpo={"beta": 0.1})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    res = run_cli("train", str(path))
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "dpo"
    values = losses(run)
    assert len(values) == 10 and values[0] == pytest.approx(math.log(2), abs=0.02), values  # policy = reference
    first, last = first_last(values)
    assert last < first, values
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    margins = [r["rewards/margins"] for r in rows if "rewards/margins" in r]
    assert margins and margins[-1] > 0, rows[-3:]
    assert json.loads((run / "adapter" / "danlu.json").read_text())["base_model"] == str(merged_dir)
