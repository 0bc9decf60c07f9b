"""`danlu train` SFT on the builtin VLMs: 20 steps on the colour task (synth/shapes.py) through the
real CLI, then held-out accuracy of greedy answers, above chance (1 in 4)."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli, tiny_config

torch = pytest.importorskip("torch")


def _accuracy(model_dir, test_file) -> float:
    from danlu.data.dataset import iter_samples
    from danlu.data.vlm import parts_messages
    from danlu.models.load import load_model
    from danlu.models.processor import load_processor

    torch.set_num_threads(1)
    model = load_model(str(model_dir), dtype=torch.float32).eval()
    proc = load_processor(model_dir)  # the artefact carries the processor
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


@pytest.mark.parametrize("name", ["builtin:tiny-vl", "builtin:tiny-llava", "builtin:tiny-gemma3",
                                  "builtin:tiny-idefics3"])
def test_vlm_sft_learns_the_colour(name, tmp_path):
    from danlu.synth.shapes import write_shapes

    files = write_shapes(tmp_path / "data", train=64, test=24, size=56)
    cfg = tiny_config(tmp_path, files["train"], model={"name_or_path": name},
                      method={"name": "full", "freeze_vision_tower": False, "freeze_projector": False},
                      train={"max_steps": 20, "batch_size": 8, "learning_rate": 1e-2, "save_steps": 100})
    res = run_cli("train", str(cfg), env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "vision-language model" in res.stderr
    assert _accuracy(tmp_path / "run" / "model", files["test"]) >= 0.4  # chance: 0.25


def test_missing_image_exits_2_under_on_bad_row_error(tmp_path):
    from tests.conftest import write_jsonl

    rows = [{"messages": [{"role": "user", "content": "<image>colour?"}, {"role": "assistant", "content": "red"}],
             "images": ["nowhere.png"]}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = tiny_config(tmp_path, data, model={"name_or_path": "builtin:tiny-vl"}, data={"on_bad_row": "error"})
    res = run_cli("train", str(cfg), env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 2, res.stderr[-2000:]
    assert "d.jsonl:1" in res.stderr and "image not found" in res.stderr and "Traceback" not in res.stderr
