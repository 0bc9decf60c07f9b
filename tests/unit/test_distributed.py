"""train.distributed → TrainingArguments entries, config-time refusals, launcher command."""

from __future__ import annotations

import sys

import pytest

from danlu.errors import ConfigError, UserError
from danlu.train import distributed
from danlu.train.launch import LaunchSpec, command


def _cfg(method=None, stage="sft", **train):
    from danlu.config.schema import RunConfig

    return RunConfig.model_validate({"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "x.jsonl"},
                                     "method": method or {"name": "lora"}, "stage": stage, "train": train})


def test_none_and_ddp_add_only_the_timeout():
    for kind in ("none", "ddp"):
        assert distributed.training_kwargs(_cfg(distributed=kind, ddp_timeout=60).train) == {"ddp_timeout": 60}


def test_fsdp_maps_to_fsdp2_with_checkpointing_moved_into_fsdp():
    kw = distributed.training_kwargs(_cfg(distributed="fsdp", offload="params", gradient_checkpointing=True).train)
    assert kw["fsdp_config"]["version"] == 2 and kw["fsdp_config"]["cpu_offload"] is True
    assert kw["fsdp_config"]["activation_checkpointing"] is True and kw["gradient_checkpointing"] is False


@pytest.mark.parametrize("kind,stage", [("zero1", 1), ("zero2", 2), ("zero3", 3)])
def test_zero_stages_give_a_deepspeed_dict(kind, stage):
    ds = distributed.training_kwargs(_cfg(distributed=kind).train)["deepspeed"]
    assert ds["zero_optimization"]["stage"] == stage
    assert "offload_optimizer" not in ds["zero_optimization"]
    assert ds["train_micro_batch_size_per_gpu"] == "auto"  # filled from TrainingArguments


def test_offload_entries():
    z = distributed.deepspeed_config(3, "params")["zero_optimization"]
    assert z["offload_param"]["device"] == "cpu" and z["offload_optimizer"]["device"] == "cpu"
    assert z["stage3_gather_16bit_weights_on_model_save"] is True
    assert "offload_param" not in distributed.deepspeed_config(2, "optimizer")["zero_optimization"]


@pytest.mark.parametrize("kind", ["zero1", "zero2", "zero3"])
def test_deepspeed_configs_are_accepted_by_deepspeed(kind):
    """Built, not run: DeepSpeed's own config parser accepts what danlu writes (auto values filled)."""
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig

    ds = distributed.training_kwargs(_cfg(distributed=kind, offload="optimizer").train)["deepspeed"]
    filled = {**ds, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2, "train_batch_size": 8,
              "gradient_clipping": 1.0, "bf16": {"enabled": True}, "fp16": {"enabled": False}}
    zero = dict(filled["zero_optimization"])
    for key, value in list(zero.items()):
        if value == "auto":
            zero[key] = 1_000_000
    filled["zero_optimization"] = zero
    parsed = DeepSpeedConfig(filled)
    assert parsed.zero_optimization_stage == int(kind[-1])
    assert parsed.train_batch_size == 8


@pytest.mark.parametrize("method,train,stage,key", [
    ({"name": "lora"}, {"distributed": "ddp", "offload": "optimizer"}, "sft", "train.offload"),
    ({"name": "lora"}, {"distributed": "zero2", "offload": "params"}, "sft", "train.offload"),
    ({"name": "lora"}, {"distributed": "fsdp", "offload": "optimizer"}, "sft", "train.offload"),
    ({"name": "lora", "quantize": "int8"}, {"distributed": "zero3"}, "sft", "method.quantize"),
    ({"name": "lora", "quantize": "int8"}, {"distributed": "fsdp"}, "sft", "method.quantize"),
    ({"name": "qlora"}, {"distributed": "zero2"}, "sft", "train.distributed"),
    ({"name": "lora"}, {"distributed": "fsdp"}, "ppo", "train.distributed"),
])
def test_refused_combinations_name_the_key(method, train, stage, key):
    with pytest.raises(ConfigError) as err:
        distributed.check(_cfg(method, stage, **train))
    assert key in str(err.value) and "hint:" in str(err.value)


@pytest.mark.parametrize("method,train", [
    ({"name": "qlora"}, {"distributed": "fsdp"}),  # the FSDP + QLoRA recipe
    ({"name": "qlora"}, {"distributed": "zero3", "offload": "params"}),
    ({"name": "full"}, {"distributed": "zero2", "offload": "optimizer"}),
    ({"name": "lora"}, {"distributed": "ddp"}),
])
def test_allowed_combinations(method, train):
    """Allowed as a combination; a ZeRO stage without the deepspeed package installed is refused by name."""
    import importlib.util

    if train["distributed"].startswith("zero") and importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match="needs the deepspeed package"):
            distributed.check(_cfg(method, **train))
        return
    distributed.check(_cfg(method, **train))


def test_zero_and_fsdp_refused_on_a_cpu_only_machine(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for kind in ("zero2", "fsdp"):
        with pytest.raises(ConfigError, match="train.distributed"):
            distributed.check_hardware(_cfg(distributed=kind))
    distributed.check_hardware(_cfg(distributed="ddp"))


def test_accelerate_launch_config_must_agree(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match="accelerate launch config asks for fsdp"):
        distributed._check_launcher_agrees("ddp")
    distributed._check_launcher_agrees("fsdp")


def test_launch_commands():
    one = command(LaunchSpec(nproc=2), ["train", "c.yaml"])
    assert one[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--standalone" in one
    assert one[-4:] == ["-m", "danlu", "train", "c.yaml"]
    multi = command(LaunchSpec(nproc=8, nnodes=2, node_rank=1, master_addr="10.0.0.1"), ["train", "c.yaml"])
    assert "--standalone" not in multi
    for a, b in (("--nnodes", "2"), ("--node_rank", "1"), ("--master_addr", "10.0.0.1"), ("--master_port", "29500")):
        assert multi[multi.index(a) + 1] == b
    with pytest.raises(UserError, match="--master-addr"):
        LaunchSpec(nproc=8, nnodes=2).validate()
    with pytest.raises(UserError, match="--node-rank"):
        LaunchSpec(nproc=8, nnodes=2, node_rank=2, master_addr="h").validate()


@pytest.mark.parametrize("kind", ["ddp", "fsdp", "zero1", "zero2", "zero3"])
def test_shipped_accelerate_configs_parse_and_agree(kind, monkeypatch):
    """examples/accelerate/<kind>.yaml: read by Accelerate's own loader; the environment `accelerate launch`
    derives from it passes danlu's agreement check for that strategy and fails it for another."""
    from pathlib import Path

    from accelerate.commands.config.config_args import load_config_from_file

    path = Path(__file__).resolve().parents[2] / "examples" / "accelerate" / f"{kind}.yaml"
    config = load_config_from_file(str(path))
    expected = {"ddp": "MULTI_GPU", "fsdp": "FSDP"}.get(kind, "DEEPSPEED")
    assert config.distributed_type.value == expected
    for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(name, raising=False)
    if expected == "FSDP":
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
        assert config.fsdp_config["fsdp_version"] == 2
    elif expected == "DEEPSPEED":
        monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
        monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", str(config.deepspeed_config["zero_stage"]))
    distributed._check_launcher_agrees(kind)
    if expected != "MULTI_GPU":
        other = "zero1" if kind in ("fsdp", "zero3") else "zero3"
        with pytest.raises(ConfigError, match="accelerate launch config asks for"):
            distributed._check_launcher_agrees(other)


def test_launch_templates_are_well_formed():
    """examples/launch: the SLURM script is valid bash and the SkyPilot task names the rendezvous danlu needs."""
    import shutil
    import subprocess
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "examples" / "launch"
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(root / "slurm.sbatch")]).returncode == 0
    assert "--node-rank \\$SLURM_NODEID" in (root / "slurm.sbatch").read_text()
    task = yaml.safe_load((root / "skypilot.yaml").read_text())
    assert task["num_nodes"] >= 2 and "accelerators" in task["resources"]
    for flag in ("--nproc", "--nnodes", "--node-rank", "--master-addr", "--resume"):
        assert flag in task["run"], flag
