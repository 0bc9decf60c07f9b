"""Vision-language runs through the real CLI after training: `danlu chat --image`, `danlu serve`
with the official openai client sending base64 data URLs (and every refusal), `danlu eval` on image
questions (report.html thumbnails), DPO / ORPO on image preference pairs, and `danlu export --merge`
reloaded with plain transformers (AutoModelForImageTextToText + AutoProcessor).

The task: a solid red or blue picture, the question "Colour?", the answer its colour — 24 LoRA
steps on builtin:tiny-vl answer every held-out picture right (measured 8/8)."""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import openai
import pytest

from tests.conftest import run_cli, tiny_config, write_jsonl
from tests.e2e.test_serve import start_server

torch = pytest.importorskip("torch")
ENV = {"OMP_NUM_THREADS": "1"}
COLOURS = {"red": (230, 20, 20), "blue": (20, 40, 230)}


def picture(colour: str, rng: random.Random, size: int = 56):
    from PIL import Image

    return Image.new("RGB", (size, size), tuple(max(0, min(255, v + rng.randint(-20, 20))) for v in COLOURS[colour]))


def write_task(folder: Path, split: str, n: int, seed: int, size: int = 56) -> Path:
    """n rows (alternating blue, red: even rows blue) in folder/SPLIT.jsonl, their PNGs in folder/img/."""
    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour = sorted(COLOURS)[i % 2]
        rel = f"img/{split}{i}.png"
        picture(colour, rng, size).save(folder / rel)
        rows.append({"messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": rel}},
                                         {"type": "text", "text": "Colour?"}]},
            {"role": "assistant", "content": colour}]})
    return write_jsonl(folder / f"{split}.jsonl", rows)


def pairs_from(task: Path, out: Path) -> Path:
    """Preference pairs: the prompt with its image, chosen the right colour, rejected the other."""
    rows = []
    for line in task.read_text().splitlines():
        row = json.loads(line)
        right = row["messages"][1]["content"]
        rows.append({"prompt": [row["messages"][0]], "chosen": right,
                     "rejected": next(c for c in COLOURS if c != right)})
    return write_jsonl(out, rows)


def train(folder: Path, data_file: Path, model: str = "builtin:tiny-vl", steps: int = 24, **sections) -> Path:
    cfg = tiny_config(folder, data_file, model={"name_or_path": model},
                      train={"max_steps": steps, "batch_size": 4, "learning_rate": 1e-2, "save_steps": 1000,
                             "precision": "fp32"}, **sections)
    res = run_cli("train", str(cfg), env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    return folder / "run"


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("colours")
    return {"dir": folder, "train": write_task(folder, "train", 32, 0), "test": write_task(folder, "test", 8, 1)}


@pytest.fixture(scope="module")
def run(task, tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("sft"), task["train"])


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_chat_with_images(run, task):
    res = run_cli("chat", str(run), "--image", str(task["dir"] / "img/test1.png"), "-p", "Colour?",
                  "--max-new-tokens", "4", env=ENV)  # serve checks both colours
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "red"
    text_only = run_cli("chat", "builtin:tiny", "--image", str(task["dir"] / "img/test0.png"), "-p", "hi", env=ENV)
    assert text_only.returncode == 2 and "text-only model" in text_only.stderr and "Traceback" not in text_only.stderr
    missing = run_cli("chat", str(run), "--image", str(task["dir"] / "nope.png"), "-p", "hi", env=ENV)
    assert missing.returncode == 2 and "no image file" in missing.stderr


def test_serve_answers_images_from_the_openai_client(run, task, tmp_path):
    srv = start_server([str(run), "--image-dir", str(task["dir"] / "img")], {"run": run}, tmp_path / "server.log")
    try:
        client = srv.client()
        model = client.models.list().data[-1].id  # the run (data[0] is its base)
        assert model == run.name
        for colour, index in (("blue", 0), ("red", 1)):
            url = data_url(task["dir"] / f"img/test{index}.png")
            answer = client.chat.completions.create(model=model, max_tokens=4, temperature=0, messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": "Colour?"}]}])
            assert answer.choices[0].message.content == colour
            assert answer.usage.prompt_tokens > 10  # the image's tokens count
        by_path = client.chat.completions.create(model=model, max_tokens=4, temperature=0, stream=True, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": str(task["dir"] / "img/test1.png")}},
                                         {"type": "text", "text": "Colour?"}]}])
        assert "".join(c.choices[0].delta.content or "" for c in by_path if c.choices) == "red"
        refused = {"https://example.com/cat.png": "remote_image_refused",
                   str(task["dir"] / "train.jsonl"): "image_path_refused",  # outside --image-dir
                   "data:image/png;base64,AAAA": "invalid_image"}
        for url, code in refused.items():
            with pytest.raises(openai.BadRequestError) as info:
                client.chat.completions.create(model=model, max_tokens=4, messages=[
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
            assert info.value.code == code and info.value.param == "messages[0].content[0]"
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(model=model, prompt="Colour?", max_tokens=2)
        assert info.value.code == "unsupported_for_vision_model"
    finally:
        srv.proc.terminate()
        srv.proc.wait(timeout=20)


def test_eval_on_image_questions_shows_thumbnails(run, task, tmp_path):
    out = tmp_path / "eval"
    res = run_cli("eval", str(run), "--data", str(task["test"]), "-o", str(out), env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]["model"]
    assert metrics["exact_match"] >= 87.5
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line][-1]
    assert abs(metrics["loss"] - last["loss"]) < 0.3  # held-out loss with the images = the last training loss
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert samples[0]["images"] == ["img/test0.png"]
    html = (out / "report.html").read_text()
    assert 'id="images"' in html and html.count('class="thumb"') >= 8
    text_only = run_cli("eval", "builtin:tiny", "--data", str(task["test"]), "-o", str(tmp_path / "e2"), env=ENV)
    assert text_only.returncode == 2 and "carry images" in text_only.stderr


@pytest.mark.parametrize("stage", ["dpo", "orpo"])
def test_preference_training_on_image_pairs(stage, task, tmp_path):
    pairs = pairs_from(task["train"], task["dir"] / "pairs.jsonl")  # beside img/: image paths are relative
    run = train(tmp_path, pairs, steps=20, stage=stage, **{stage: {"beta": 0.5}},
                data={"eval_split": 0.25})
    info = json.loads((run / "run_info.json").read_text())
    found = {k: v for k, v in info.items() if "preference_accuracy" in k}
    assert found.get("eval_preference_accuracy", 0) >= 0.75, found
    if stage == "orpo":  # reference-free: the starting model's preference is measured too
        assert found["eval_preference_accuracy"] > found["eval_before_preference_accuracy"]


def test_export_merge_reloads_in_plain_transformers(task, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    data = write_task(tmp_path / "small", "train", 32, 0, size=28)
    run = train(tmp_path, data, model="builtin:tiny-llava", steps=8)
    out = tmp_path / "merged"
    res = run_cli("export", str(run), "--merge", "-o", str(out), env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    image = tmp_path / "small" / "img" / "train1.png"
    chat = run_cli("chat", str(run), "--image", str(image), "-p", "Colour?", "--max-new-tokens", "6", env=ENV)
    assert chat.returncode == 0, chat.stderr[-2000:]
    torch.set_num_threads(1)
    model = AutoModelForImageTextToText.from_pretrained(str(out), dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(str(out))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    from PIL import Image

    enc = processor(text=[text], images=[Image.open(image).convert("RGB")], return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=6, do_sample=False)
    answer = processor.tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer.strip() == chat.stdout.strip()
    report = json.loads((out / "export_report.json").read_text()) if (out / "export_report.json").exists() else {}
    assert not report or report["merge"]["reload_error"]["max_rel"] < 1e-4
    gguf = run_cli("export", str(run), "--gguf", "-o", str(tmp_path / "g"), env=ENV)
    assert gguf.returncode == 2 and "vision-language" in gguf.stderr
