"""The real CLI on LLaMA-Factory's files: its glaive tool-call demos train on builtin:tiny (tool
calls trained, tool results not), `danlu import-config` output trains, identity placeholders
are filled, and entries danlu cannot read stop with exit 2 naming the entry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_cli, tiny_config, write_jsonl

LF_DIR = next((p / "shared" / "interop" / "llamafactory" for p in Path(__file__).resolve().parents
               if (p / "shared" / "interop" / "llamafactory").is_dir()), None)
needs_lf = pytest.mark.skipif(LF_DIR is None, reason="LLaMA-Factory demo data (../shared/interop/llamafactory) "
                                                     "not present; it is never shipped in the package")
FAST = {"OMP_NUM_THREADS": "1"}  # tiny matrices: one thread is faster on a shared 2-core machine


def rendered(target: str, overrides=(), limit: int = 3, model: str | None = None) -> list[tuple[str, str]]:
    """(whole text, trained text) of the first samples, as `danlu data render` shows them (called
    in-process: the same code without another interpreter start on a busy machine)."""
    from danlu.workbench.render import render_samples

    samples, tok = render_samples(target, model, limit, list(overrides))
    out = []
    for s in samples:
        trained = [t for t, lab in zip(s.encoded.input_ids, s.encoded.labels) if lab != -100]
        out.append((tok.decode(s.encoded.input_ids), tok.decode(trained)))
    return out


@needs_lf
def test_glaive_tool_call_demos_train(tmp_path):
    cfg = tiny_config(tmp_path, Path("unused"),
                      data={"train": ["lf:glaive_toolcall_en_demo", "lf:glaive_toolcall_zh_demo"],
                            "dataset_dir": str(LF_DIR), "max_samples": 16},
                      train={"max_steps": 3, "batch_size": 4, "max_length": 512, "save_steps": 3, "logging_steps": 1,
                             "learning_rate": 5e-3, "report_to": []})
    res = run_cli("train", str(cfg), env=FAST)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    report = json.loads((run / "data_report.json").read_text())["train"]
    assert report["formats"]["lf:glaive_toolcall_en_demo"] == "lf:sharegpt" and report["kept"] == 16
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(losses) == 3 and all(0 < v < 20 for v in losses)

    samples = rendered(str(cfg), limit=3)
    calls = [s for s in samples if "<tool_call>\n{\"name\"" in s[0]]
    assert calls, "no tool call among the first rendered samples"
    for whole, trained in calls:
        assert '<tool_call>\n{"name": "' in trained  # the assistant's call is trained
        assert "<tool_response>" in whole and "<tool_response>" not in trained  # the tool's result is not
        assert "<tools>" in whole and "<tools>" not in trained


def _lf_dataset_dir(tmp_path: Path) -> Path:
    """A LLaMA-Factory data/ folder: identity (this project's identity.jsonl) and a small alpaca file."""
    d = tmp_path / "lf_data"
    d.mkdir()
    shutil.copy(ROOT / "examples" / "data" / "identity.jsonl", d / "identity.jsonl")
    write_jsonl(d / "alpaca_en_demo.jsonl", [{"instruction": f"Add {i} and {i}.", "input": "", "output": str(2 * i)}
                                              for i in range(12)])
    info = {"identity": {"file_name": "identity.jsonl"}, "alpaca_en_demo": {"file_name": "alpaca_en_demo.jsonl"},
            "alpaca_en": {"hf_hub_url": "llamafactory/alpaca_en"}}
    (d / "dataset_info.json").write_text(json.dumps(info))
    return d


def test_import_config_then_train(tmp_path):
    out = tmp_path / "danlu.yaml"
    res = run_cli("import-config", str(ROOT / "tests/unit/interop/fixtures/llama3_lora_sft.yaml"), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout and "next: danlu train" in res.stdout
    text = out.read_text(encoding="utf-8")
    assert "# Not needed in danlu:" in text and "ddp_timeout" in text
    data_dir = _lf_dataset_dir(tmp_path)
    overrides = ["model.name_or_path=builtin:tiny", "data.template=auto", f"data.dataset_dir={data_dir}",
                 "data.placeholders={name: Acme助手, author: Acme}", "train.max_steps=1", "train.max_length=128",
                 "train.save_steps=1", "train.logging_steps=1", f"output_dir={tmp_path / 'run'}"]
    res = run_cli("train", str(out), *overrides, env=FAST)
    assert res.returncode == 0, res.stderr[-3000:]
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["method"]["r"] == 8 and resolved["method"]["dropout"] == 0.0
    assert resolved["train"]["grad_accum"] == 8 and resolved["train"]["gradient_checkpointing"] is True
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())["train"]
    assert report["kept"] == 32 and report["dropped"] == 0  # 20 identity + 12 alpaca rows

    answers = " ".join(trained for _, trained in rendered(str(out), overrides[:4], limit=20))
    assert "Acme助手" in answers and "{{name}}" not in answers


def test_identity_example_fills_placeholders():
    samples = rendered(str(ROOT / "examples" / "identity.yaml"), limit=20, model="builtin:tiny")
    assert len(samples) == 20
    assert all("{{" not in whole for whole, _ in samples)
    assert sum("Acme助手" in trained for _, trained in samples) >= 15


def test_bad_input_exits_2(tmp_path):
    data_dir = _lf_dataset_dir(tmp_path)
    cfg = tiny_config(tmp_path, Path("unused"), data={"train": "lf:alpaca_en", "dataset_dir": str(data_dir)})
    res = run_cli("train", str(cfg), env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 2 and "lf:alpaca_en" in res.stderr and "Hugging Face hub" in res.stderr
    assert "Traceback" not in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: m\nstage: grpo_x\n")
    res = run_cli("import-config", str(bad))
    assert res.returncode == 2 and "stage 'grpo_x'" in res.stderr and "Traceback" not in res.stderr
