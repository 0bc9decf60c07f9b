"""model.adapter: SFT then DPO on the same LoRA (continue) and a new LoRA on top (stack), through
the real CLI on builtin:tiny. The DPO reference of a continued adapter is the SFT policy (the first
step's DPO loss is exactly log 2), the policy comes to prefer the chosen answers more than the SFT
adapter did, the chain is recorded, and the final adapter merges and exports."""

from __future__ import annotations

import json
import math
import stat

import pytest

from tests.conftest import one_torch_thread, tiny_config, write_jsonl
from tests.e2e.test_stages_a import cli
from tests.unit.stages.synthetic import preference_rows


one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """An SFT LoRA on answers that say blue and red equally often (no preference learnt)."""
    d = tmp_path_factory.mktemp("chain")
    pairs = preference_rows(16, seed=5)
    sft = [{"instruction": p["prompt"], "output": p[k]} for p in pairs for k in ("chosen", "rejected")]
    files = {"sft": write_jsonl(d / "sft.jsonl", sft), "pairs": write_jsonl(d / "pairs.jsonl", pairs)}
    cfg = tiny_config(d / "sft", files["sft"], train={"max_steps": 4, "save_steps": 4, "max_length": 64},
                      eval={"strategy": "no"}, method={"name": "lora", "r": 4}, output_dir=str(d / "sft-run"))
    from danlu.cli.main import main

    try:
        main(["train", str(cfg)])
    except SystemExit as exc:
        assert not exc.code
    return d, files


def preference(target: str, pairs: list[dict]) -> float:
    """Mean log p(chosen) − log p(rejected) of the policy at `target` (a run directory)."""
    from danlu.infer.load import load_for_inference
    from danlu.stages._preference_eval import answer_logps

    loaded = load_for_inference(target, device="cpu")
    tok = loaded.tokenizer
    prompts = [tok.apply_chat_template([{"role": "user", "content": p["prompt"]}], add_generation_prompt=True,
                                       tokenize=False) for p in pairs]
    prompt_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in prompts]
    c, _ = answer_logps(loaded.model, prompt_ids, [tok(p["chosen"])["input_ids"] for p in pairs], tok.pad_token_id)
    r, _ = answer_logps(loaded.model, prompt_ids, [tok(p["rejected"])["input_ids"] for p in pairs], tok.pad_token_id)
    return float((c - r).mean())


def dpo_config(d, files, name: str, mode: str, **extra):
    return tiny_config(d / name, files["pairs"], stage="dpo", method={"name": "lora", "r": 4},
                       model={"name_or_path": "builtin:tiny", "adapter": str(d / "sft-run"), "adapter_mode": mode},
                       train={"max_steps": 8, "save_steps": 8, "max_length": 64, "learning_rate": 1e-2,
                              "precision": "fp32"},
                       eval={"strategy": "no"}, output_dir=str(d / f"{name}-run"), **extra)


def test_sft_then_dpo_on_the_same_adapter(sft_run, capsys):
    d, files = sft_run
    code, out, err = cli(capsys, "train", str(dpo_config(d, files, "dpo", "continue")))
    assert code == 0, err[-3000:]
    run = d / "dpo-run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = next(r["loss"] for r in rows if "loss" in r)
    assert first == pytest.approx(math.log(2), abs=1e-3), "reference = the SFT policy: the first DPO loss is log 2"
    meta = json.loads((run / "adapter" / "danlu.json").read_text())
    assert meta["method"]["r"] == 4 and meta["base_model"] == "builtin:tiny"
    assert [(link["stage"], link["mode"]) for link in meta["chain"]] == [("sft", "continue")]
    info = json.loads((run / "run_info.json").read_text())
    assert info["adapter_chain"][0]["source"].endswith("sft-run/adapter")
    pairs = [json.loads(line) for line in files["pairs"].read_text().splitlines()]
    before, after = preference(str(d / "sft-run"), pairs), preference(str(run), pairs)
    assert after > before + 0.5, (before, after)
    code, out, err = cli(capsys, "export", str(run), "--merge", "-o", str(d / "merged"))
    assert code == 0, err[-3000:]
    assert (d / "merged" / "model.safetensors").exists() or list((d / "merged").glob("*.safetensors"))
    assert "sft" in out + err  # the chain is shown
    for weights in [*(run / "adapter").glob("*.safetensors"), *(d / "merged").glob("*.safetensors")]:
        assert stat.S_IMODE(weights.stat().st_mode) & 0o044 == 0o044, f"{weights} must be readable by others"


def test_stack_and_run_dir_as_model(sft_run, capsys):
    """A run directory given as name_or_path is base + adapter; stack merges it and trains a new LoRA."""
    d, files = sft_run
    cfg = dpo_config(d, files, "stack", "stack")
    text = cfg.read_text().replace("name_or_path: builtin:tiny", f"name_or_path: {d / 'sft-run'}")
    cfg.write_text(text.replace(f"adapter: {d / 'sft-run'}", "adapter: null"))
    code, out, err = cli(capsys, "train", str(cfg), "train.max_steps=2", "train.save_steps=2")
    assert code == 0, err[-3000:]
    art = d / "stack-run" / "adapter"
    meta = json.loads((art / "danlu.json").read_text())
    assert meta["stacked"] == ["stacked/00"] and (art / "stacked" / "00" / "adapter_config.json").exists()
    rows = [json.loads(line) for line in (d / "stack-run" / "metrics.jsonl").read_text().splitlines()]
    assert next(r["loss"] for r in rows if "loss" in r) == pytest.approx(math.log(2), abs=1e-3)
    code, out, err = cli(capsys, "chat", str(d / "stack-run"), "--prompt", "hi", "--max-new-tokens", "4")
    assert code == 0, err[-3000:]


def test_run_without_artefact_hint(tmp_path, capsys, qa_file):
    (tmp_path / "half" / "checkpoints").mkdir(parents=True)
    cfg = tiny_config(tmp_path, qa_file, model={"name_or_path": "builtin:tiny", "adapter": str(tmp_path / "half")})
    code, out, err = cli(capsys, "train", str(cfg), "--dry-run")
    assert code == 2 and "model.adapter" in err and "--resume" in err
    cfg = tiny_config(tmp_path, qa_file, model={"name_or_path": str(tmp_path / "nothing-here")})
    (tmp_path / "nothing-here").mkdir()
    code, out, err = cli(capsys, "train", str(cfg), "--dry-run")
    assert code == 2 and "model.adapter" in err and "danlu export" in err
