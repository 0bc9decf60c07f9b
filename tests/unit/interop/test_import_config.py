"""LLaMA-Factory training YAMLs (its documented keys, fixtures/) → danlu configs: every key is
mapped, marked not needed, or listed as dropped; LLaMA-Factory's defaults are written out where
danlu's differ; the result validates (stages this build lacks are checked when present)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from danlu.config.load import load_config_dict
from danlu.errors import ConfigError
from danlu.interop.llamafactory.config import convert, convert_file, to_yaml
from danlu.stages.registry import STAGES

FIXTURES = Path(__file__).parent / "fixtures"
ALL = sorted(FIXTURES.glob("*.yaml"))


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_every_key_is_accounted_for(path):
    source = yaml.safe_load(path.read_text())
    conv = convert_file(path)
    assert set(source) <= conv.accounted(), set(source) - conv.accounted()
    text = to_yaml(conv, str(path))
    for item in conv.dropped:
        assert f"#   {item}" in text  # dropped keys are in the written file's header, not only on screen
    if conv.config["stage"] in STAGES.names():
        load_config_dict(yaml.safe_load(text))  # validates as a danlu config


def test_llama3_lora_sft_maps_to_the_same_run():
    conv = convert_file(FIXTURES / "llama3_lora_sft.yaml")
    cfg = conv.config
    assert cfg["model"] == {"name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct", "trust_remote_code": True}
    assert cfg["data"]["train"] == ["lf:identity", "lf:alpaca_en_demo"]
    assert cfg["data"]["template"] == "llama3" and cfg["data"]["max_samples"] == 1000
    assert cfg["data"]["packing"] is False  # LLaMA-Factory does not pack for sft
    assert cfg["method"] == {"name": "lora", "r": 8, "dropout": 0.0, "target_modules": "all-linear"}
    assert cfg["stage"] == "sft"
    assert cfg["train"] == {"max_length": 2048, "num_workers": 4, "logging_steps": 10, "save_steps": 500,
                            "report_to": [], "batch_size": 1, "grad_accum": 8, "learning_rate": 1e-4, "epochs": 3.0,
                            "lr_scheduler": "cosine", "warmup_ratio": 0.1, "precision": "auto",
                            "gradient_checkpointing": True}
    assert cfg["output_dir"] == "saves/llama3-8b/lora/sft"
    assert conv.dropped == []
    run = load_config_dict(cfg)
    assert run.method.lora_alpha == 16.0  # LLaMA-Factory's default alpha 2·rank, danlu's too


def test_qlora_and_keys_without_equivalent():
    conv = convert_file(FIXTURES / "qwen2_5_qlora_toolcall.yaml")
    m = conv.config["method"]
    assert (m["quantize"], m["double_quant"], m["r"], m["alpha"], m["dropout"]) == ("nf4", True, 16, 32.0, 0.05)
    assert m["target_modules"] == ["q_proj", "v_proj"]
    assert conv.config["data"]["train"] == ["lf:glaive_toolcall_en_demo", "lf:glaive_toolcall_zh_demo"]
    assert conv.config["data"]["eval_split"] == 0.1 and conv.config["eval"]["strategy"] == "steps"
    dropped = {d.split(":")[0] for d in conv.dropped}
    assert dropped == {"deepspeed", "neftune_noise_alpha", "lr_scheduler_type"}
    assert "use_unsloth: False — off" in conv.not_needed


def test_preference_stages():
    dpo = convert_file(FIXTURES / "qwen3_lora_dpo.yaml").config
    assert dpo["stage"] == "dpo" and dpo["dpo"] == {"beta": 0.1, "loss": "sigmoid"}
    assert dpo["data"]["template"] == "auto"  # qwen3_nothink: the model's own template
    kto = convert_file(FIXTURES / "llama3_lora_kto.yaml").config
    assert kto["stage"] == "kto" and kto["kto"] == {"beta": 0.1}
    orpo = convert({"model_name_or_path": "m", "stage": "dpo", "pref_loss": "orpo", "pref_beta": 0.2}).config
    assert orpo["stage"] == "orpo" and orpo["orpo"] == {"beta": 0.2}
    simpo = convert({"model_name_or_path": "m", "stage": "dpo", "pref_loss": "simpo", "simpo_gamma": 0.7}).config
    assert simpo["dpo"] == {"loss": "simpo", "simpo_gamma": 0.7}


def test_llamafactory_defaults_are_written_out():
    conv = convert({"model_name_or_path": "m", "dataset": "a", "lora_alpha": 64})
    train = conv.config["train"]
    assert (train["learning_rate"], train["lr_scheduler"], train["warmup_ratio"], train["batch_size"],
            train["max_length"]) == (5e-5, "linear", 0.0, 8, 2048)
    assert conv.config["method"] == {"name": "lora", "r": 8, "dropout": 0.0, "target_modules": "all-linear",
                                     "alpha": 64.0}
    assert conv.config["data"]["train"] == "lf:a"
    assert any("learning_rate not given" in n for n in conv.notes)


def test_full_freeze_and_mismatched_keys():
    conv = convert({"model_name_or_path": "m", "finetuning_type": "full", "lora_rank": 16, "pref_beta": 0.1,
                    "learning_rate": "2e-5", "bf16": False})
    assert conv.config["method"] == {"name": "full"} and conv.config["train"]["learning_rate"] == 2e-5
    assert {d.split(":")[0] for d in conv.dropped} == {"lora_rank", "pref_beta"}
    freeze = convert({"model_name_or_path": "m", "finetuning_type": "freeze", "freeze_trainable_layers": 4,
                      "freeze_extra_modules": "embed_tokens,lm_head"}).config["method"]
    assert freeze == {"name": "freeze", "layers": 4, "modules": ["embed_tokens", "lm_head"]}


@pytest.mark.parametrize("lf, match", [
    ({"stage": "sft"}, "no model_name_or_path"),
    ({"model_name_or_path": "m", "stage": "grpo_x"}, "stage 'grpo_x' has no danlu equivalent"),
    ({"model_name_or_path": "m", "finetuning_type": "oft"}, "finetuning_type 'oft'"),
    ({"model_name_or_path": "m", "quantization_bit": 3}, "4 or 8 bits"),
    ({"model_name_or_path": "m", "finetuning_type": "full", "quantization_bit": 4}, "only for LoRA"),
    ({"model_name_or_path": "m", "cutoff_len": "long"}, "cutoff_len: expected int"),
])
def test_errors(lf, match):
    with pytest.raises(ConfigError, match=match) as exc:
        convert(lf)
    assert exc.value.exit_code == 2


def test_cli_in_process(tmp_path, capsys):
    """`danlu import-config` (the CLI's own entry point, in-process): writes the file, lists what
    was not carried over on stderr, exit 2 for a missing file."""
    from danlu.cli.main import main

    out = tmp_path / "out.yaml"
    with pytest.raises(SystemExit) as exc:
        main(["import-config", str(FIXTURES / "qwen2_5_qlora_toolcall.yaml"), "-o", str(out)])
    captured = capsys.readouterr()
    assert exc.value.code == 0 and out.is_file()
    assert "not carried over: deepspeed" in captured.err and f"next: danlu train {out}" in captured.out
    assert yaml.safe_load(out.read_text())["method"]["quantize"] == "nf4"
    with pytest.raises(SystemExit) as exc:
        main(["import-config", str(tmp_path / "missing.yaml")])
    assert exc.value.code == 2 and "config file not found" in capsys.readouterr().err


def test_liger_and_unsloth_offloaded_checkpointing_map_to_the_gpu_levers():
    conv = convert({"model_name_or_path": "Qwen/Qwen2.5-0.5B", "stage": "sft", "finetuning_type": "lora",
                    "dataset": "alpaca_en_demo", "enable_liger_kernel": True, "use_unsloth_gc": True})
    t = conv.config["train"]
    assert t["liger_kernel"] is True
    assert t["gradient_checkpointing"] is True and t["offload_activations"] is True
    assert any(m.startswith("use_unsloth_gc: True → train.offload_activations") for m in conv.mapped)


@pytest.mark.parametrize("create_new, mode", [(None, "continue"), (False, "continue"), (True, "stack")])
def test_adapter_name_or_path_maps_to_model_adapter(create_new, mode):
    lf = {"model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "stage": "dpo", "adapter_name_or_path": "saves/sft",
          "overwrite_output_dir": True}
    if create_new is not None:
        lf["create_new_adapter"] = create_new
    conv = convert(lf)
    assert conv.config["model"]["adapter"] == "saves/sft" and conv.config["model"]["adapter_mode"] == mode
    assert conv.config["overwrite_output_dir"] is True
    assert set(lf) <= conv.accounted() and not conv.dropped


def test_several_adapters_are_dropped_with_a_reason():
    conv = convert({"model_name_or_path": "x/y", "adapter_name_or_path": "a,b"})
    assert "adapter" not in conv.config["model"] and any("merge" in d for d in conv.dropped)
