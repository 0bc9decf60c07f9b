"""Vision-language data: image content parts and LLaMA-Factory's images column, image checks at
load, and labels golden-tested against each builtin VLM processor's own apply_chat_template."""

from __future__ import annotations

import base64
import io
import json

import pytest

from danlu.chat.images import IMAGE
from danlu.data.dataset import iter_samples
from danlu.data.encode import IGNORE
from danlu.data.report import DataReport

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _png(path, colour=(255, 0, 0), size=(30, 30)):
    Image.new("RGB", size, colour).save(path)
    return path


def _rows(tmp_path, rows):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _data_url(colour=(0, 0, 255)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _user(parts):
    return {"role": "user", "content": parts}


def test_image_parts_and_lf_layout_read_with_file_line(tmp_path):
    _png(tmp_path / "red.png")
    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    ans = {"role": "assistant", "content": "red"}
    rows = [
        {"messages": [_user([{"type": "image_url", "image_url": {"url": "red.png"}}, {"type": "text", "text": "c?"}]), ans]},
        {"messages": [_user([{"type": "image_url", "image_url": {"url": _data_url()}}, {"type": "text", "text": "c?"}]), ans]},
        {"messages": [{"role": "user", "content": "<image>c?"}, ans], "images": ["red.png"]},  # LLaMA-Factory mllm_demo
        {"messages": [{"role": "user", "content": "c?"}, ans], "images": ["red.png"]},  # no placeholder: put first
        {"messages": [{"role": "user", "content": "<image>c?"}, ans], "images": ["missing.png"]},
        {"messages": [{"role": "user", "content": "<image>c?"}, ans], "images": ["bad.png"]},
        {"messages": [{"role": "user", "content": "<image>c?"}, ans], "images": ["big.png"]},
        {"messages": [{"role": "user", "content": "<image><image>c?"}, ans], "images": ["red.png"]},
    ]
    report = DataReport()
    from danlu.data.formats import FormatOptions

    samples = list(iter_samples(str(_rows(tmp_path, rows)), report=report, opts=FormatOptions(max_image_pixels=200 * 200)))
    assert [s.where.rsplit(":", 1)[1] for s in samples] == ["1", "2", "3", "4"]
    assert all(len(s.images) == 1 and s.messages[-2]["content"] == f"{IMAGE}c?" for s in samples)
    assert [s.images[0].open().size for s in samples] == [(30, 30), (20, 20), (30, 30), (30, 30)]
    dropped = [r for v in report.dropped.values() for r in v["rows"]]
    reasons = {r["where"].rsplit(":", 1)[1]: r["reason"] for r in dropped}
    assert "image not found" in reasons["5"] and "not a readable image" in reasons["6"]
    assert "more than data.max_image_pixels" in reasons["7"] and "2 <image> placeholder(s)" in reasons["8"]


def test_text_model_refuses_image_rows(tmp_path):
    from types import SimpleNamespace

    from danlu.data.dataset import encode_sample

    _png(tmp_path / "red.png")
    rows = [{"messages": [{"role": "user", "content": "<image>c?"}, {"role": "assistant", "content": "red"}],
             "images": ["red.png"]}]
    sample = next(iter_samples(str(_rows(tmp_path, rows))))
    report = DataReport()
    cfg = SimpleNamespace(on_bad_row="skip", train_on_prompt=False, mask_history=False, overlong="truncate")
    assert encode_sample(sample, None, cfg, 64, report) is None
    assert "model is text-only" in json.dumps(report.dropped)


@pytest.mark.parametrize("name", ["builtin:tiny-vl", "builtin:tiny-llava", "builtin:tiny-gemma3",
                                  "builtin:tiny-idefics3"])
def test_labels_golden_against_the_processor(name, tmp_path):
    """ids = the processor's own apply_chat_template + expansion; labels exactly the answers'
    tokens and their <|im_end|>; no image token is ever labelled."""
    from danlu.chat.messages import Conversation
    from danlu.chat.templates import resolve_template
    from danlu.data.vlm import VlmCollator, encode_vlm, image_token_ids, parts_messages
    from danlu.models.builtin import builtin_path
    from danlu.models.load import load_tokenizer
    from danlu.models.processor import load_processor

    proc = load_processor(builtin_path(name))
    tpl = resolve_template(load_tokenizer(name), "auto")
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", (0, 200, 0), (56, 28))
    from danlu.chat.images import ImageRef

    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": f"{IMAGE}what?"},
            {"role": "assistant", "content": "red square"}, {"role": "user", "content": f"and {IMAGE}?"},
            {"role": "assistant", "content": "green"}]
    refs = [ImageRef(str(tmp_path / "a.png")), ImageRef(str(tmp_path / "b.png"))]
    enc = encode_vlm(Conversation(msgs, images=refs), tpl, proc)
    text = proc.apply_chat_template(parts_messages(msgs), tokenize=False)
    want = proc(text=[text], images=[r.open() for r in refs], return_tensors="pt", add_special_tokens=False)
    assert enc.input_ids == want["input_ids"][0].tolist()
    assert torch.equal(enc.extra["pixel_values"], want["pixel_values"])
    tok = proc.tokenizer
    learned = tok.decode([i for i, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])
    assert learned == "red square<|im_end|>green<|im_end|>"
    assert all(lab == IGNORE for i, lab in zip(enc.input_ids, enc.labels) if i in image_token_ids(proc))
    assert sum(i in image_token_ids(proc) for i in enc.input_ids) >= 8  # two images, each expanded
    batch = VlmCollator(tok.pad_token_id)([{"input_ids": enc.input_ids, "labels": enc.labels, **enc.extra}] * 2)
    assert batch["input_ids"].shape == (2, len(enc)) and batch["pixel_values"].shape[0] == 2 * want["pixel_values"].shape[0]


def test_lora_targets_the_language_model_only():
    from danlu.methods.lora import Lora as LoRA
    from danlu.models.load import load_model
    from danlu.models.processor import freeze_vision, vision_part

    model = load_model("builtin:tiny-llava", dtype=torch.float32)
    targets = LoRA(name="lora")._targets(model)
    assert targets and all(vision_part(t) is None and "language_model" in t for t in targets)
    both = LoRA(name="lora", freeze_vision_tower=False, freeze_projector=False)._targets(model)
    assert {vision_part(t) for t in both} == {None, "tower", "projector"}
    for p in model.parameters():
        p.requires_grad_(True)
    assert freeze_vision(model, tower=True, projector=False) > 0
    trainable = {vision_part(n) for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {None, "projector"}
    from danlu.methods.probe import layer_prefixes  # method freeze trains the language model's last blocks

    assert layer_prefixes(model) == ["model.language_model.layers.0.", "model.language_model.layers.1."]


def test_vlm_samples_are_image_questions(tmp_path):
    from danlu.cli.data import samples

    samples("vlm", str(tmp_path), n=8, seed=0)
    rows = list(iter_samples(str(tmp_path / "train.jsonl")))
    assert len(rows) == 8 and len(list(iter_samples(str(tmp_path / "test.jsonl")))) == 24
    assert all(len(r.images) == 1 and r.images[0].open().size == (56, 56) for r in rows)
    assert {r.messages[-1]["content"] for r in rows} <= {"red", "green", "blue", "yellow"}
