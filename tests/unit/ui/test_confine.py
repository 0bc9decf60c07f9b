"""UI workspace confinement from ONE list (danlu.ui.confine), tested by enumerating the whole
RunConfig schema: a text-holding field that is neither confined nor declared plain fails here,
so a new path-valued or importable field cannot slip through (RELIABILITY.md case 18)."""

from __future__ import annotations

import typing
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from danlu.errors import UserError
from danlu.ui.confine import confine_config, is_plain, kind_of
from danlu.ui.workspace import Workspace

PATHLIKE_WORDS = ("path", "file", "folder", "directory", "checkpoint", "module:function", ".py")


def _holds_text(ann) -> bool:
    if ann in (str, Any) or ann is dict:
        return True
    if typing.get_origin(ann) is typing.Literal:
        return False
    return any(_holds_text(a) for a in typing.get_args(ann))


def _submodel(ann) -> type[BaseModel] | None:
    cands = [a for a in (typing.get_args(ann) or (ann,)) if a is not type(None)]
    ok = [a for a in cands if isinstance(a, type) and issubclass(a, BaseModel)]
    return ok[0] if len(ok) == 1 and len(cands) == 1 else None


def schema_text_fields() -> dict[str, str]:
    """Every leaf of RunConfig (all methods, all stages) that can hold text → its description."""
    from danlu.config.schema import get_run_config_class
    from danlu.methods.registry import METHODS
    from danlu.stages.registry import STAGES

    out: dict[str, str] = {}

    def walk(cls, prefix: str) -> None:
        for name, f in cls.model_fields.items():
            sub = _submodel(f.annotation)
            if sub is not None:
                walk(sub, f"{prefix}{name}.")
            elif _holds_text(f.annotation) and f"{prefix}{name}" != "method.name":
                out[f"{prefix}{name}"] = f.description or ""

    run = get_run_config_class()
    for name, f in run.model_fields.items():
        sub = _submodel(f.annotation)
        if name == "method":
            for _, mcls in METHODS:
                walk(mcls, "method.")
        elif sub is not None:
            walk(sub, f"{name}.")
        elif _holds_text(f.annotation) and name != "stage":
            out[name] = f.description or ""
    assert {n for n, _ in STAGES} <= {k.split(".")[0] for k in out} | set(run.model_fields)
    return out


def test_every_text_field_of_the_schema_is_confined_or_declared_plain():
    fields = schema_text_fields()
    assert len(fields) > 30 and "train.resume" in fields and "grpo.reward_functions" in fields
    unclassified = sorted(k for k in fields if kind_of(k) is None and not is_plain(k))
    assert not unclassified, f"add these to danlu.ui.confine.CONFINED or PLAIN: {unclassified}"
    both = sorted(k for k in fields if kind_of(k) and is_plain(k))
    assert not both, both


def test_fields_described_as_paths_are_confined():
    fields = schema_text_fields()
    pathlike = {k for k, d in fields.items() if any(w in d.lower() for w in PATHLIKE_WORDS)}
    missed = sorted(k for k in pathlike if kind_of(k) is None)
    assert not missed, f"described as a path or code, not in CONFINED: {missed}"
    assert {"train.resume", "grpo.reward_functions", "data.train", "output_dir"} <= pathlike


def _ws(tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    (ws.root / "rewards.py").write_text("def f(prompts=None, completions=(), **kw):\n    return [0.0] * len(completions)\n")
    (ws.root / "myrewards").mkdir()
    (ws.root / "myrewards" / "__init__.py").write_text("def g(**kw):\n    return []\n")
    (tmp_path / "evil.py").write_text("def f(**kw):\n    raise SystemExit('ran')\n")
    return ws


@pytest.mark.parametrize("bad", [
    {"train": {"resume": "/tmp/elsewhere/checkpoints/step-4"}},
    {"train": {"resume": "../other/run"}},
    {"grpo": {"reward_functions": ["/any/path.py:function"]}},
    {"grpo": {"reward_functions": ["json_valid", "../evil.py:f"]}},
    {"rloo": {"reward_functions": ["os:system"]}},
    {"ppo": {"reward_functions": ["subprocess:run"]}},
    {"grpo": {"reward_functions": ["json:loads"]}},
    {"grpo": {"reward_functions": ["danlu.stages.rl.rewards:json_valid_reward"]}},
    {"grpo": {"reward_model": "/root/rm"}},
    {"distill": {"teacher": "../teacher"}},
    {"data": {"template": "/etc/chat.jinja"}},
    {"data": {"dataset_dir": "/srv/lf"}},
])
def test_paths_and_code_outside_the_workspace_are_refused(tmp_path, bad):
    ws = _ws(tmp_path)
    key, value = next(iter(bad.items()))
    with pytest.raises(UserError, match="outside the workspace|not a file of the workspace") as exc:
        confine_config(ws, bad)
    assert f"{key}.{next(iter(value))}" in str(exc.value)  # the message names the config key


def test_workspace_code_and_builtins_pass(tmp_path):
    ws = _ws(tmp_path)
    confine_config(ws, {"grpo": {"reward_functions": ["json_valid", "regex:^A", "contains:x", "rewards.py:f",
                                                      "./rewards.py:f", "rewards:f", "myrewards:g"]},
                        "train": {"resume": "auto"}, "model": {"name_or_path": "builtin:tiny"},
                        "data": {"template": "chatml", "train": ["data/a.jsonl", "lf:identity"]},
                        "output_dir": "runs/a"})
    confine_config(ws, {"train": {"resume": "runs/a/checkpoints/step-4"}})


def test_resume_refuses_a_config_on_disk_that_points_out(tmp_path):
    from danlu.ui.jobs import Jobs
    from danlu.ui.launch import resume_run

    ws = _ws(tmp_path)
    run = ws.root / "runs" / "a"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"train": "/etc/passwd"}, "output_dir": "runs/a"}))
    with pytest.raises(UserError, match="data.train: '/etc/passwd' is outside the workspace"):
        resume_run(ws, Jobs(), "runs/a")
