"""`danlu train` SFT on the builtin VLMs: 20 steps on the colour task (synth/shapes.py) through the
real CLI, then held-out accuracy of greedy answers, above chance (1 in 4)."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli, tiny_config

torch = pytest.importorskip("torch")


def _accuracy(model_dir, base: str, test_file) -> float:
    from danlu.data.dataset import iter_samples
    from danlu.data.vlm import parts_messages
    from danlu.models.load import load_model, resolve_model_path
    from danlu.models.processor import load_processor

    torch.set_num_threads(1)
    model = load_model(str(model_dir), dtype=torch.float32).eval()
    proc = load_processor(resolve_model_path(base))
    right = n = 0
    for s in iter_samples(str(test_file)):
        text = proc.apply_chat_template(parts_messages(s.messages[:-1]), tokenize=False, add_generation_prompt=True)
        enc = proc(text=[text], images=[r.open() for r in s.images], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=4, do_sample=False)
        answer = proc.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        right += answer == s.messages[-1]["content"]
        n += 1
    return right / n


@pytest.mark.parametrize("name, size", [
    ("builtin:tiny-vl", 56),
    # measured 0.33 after 20 steps (chance 0.25): the 28 px CLIP tower gives 4 tokens; not yet tuned
    pytest.param("builtin:tiny-llava", 28, marks=pytest.mark.xfail(reason="20 steps reach 0.33, not 0.4", strict=False)),
])
def test_vlm_sft_learns_the_colour(name, size, tmp_path):
    from danlu.synth.shapes import write_shapes

    files = write_shapes(tmp_path / "data", train=64, test=24, size=size)
    cfg = tiny_config(tmp_path, files["train"], model={"name_or_path": name},
                      method={"name": "full", "freeze_vision_tower": False, "freeze_projector": False},
                      train={"max_steps": 20, "batch_size": 8, "learning_rate": 1e-2, "save_steps": 100})
    res = run_cli("train", str(cfg), env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "vision-language model" in res.stderr
    assert _accuracy(tmp_path / "run" / "model", name, files["test"]) >= 0.4  # chance: 0.25
