"""stage: classify on images (builtin:tiny-vit) and stage: asr (builtin:tiny-whisper) through the
real CLI, on samples made by code at test time (danlu.data.samples): colour decides an image's
class; tone pairs are the spoken "words"."""

from __future__ import annotations

import json

import pytest

from danlu.data.samples import make_image_samples, make_speech_samples
from tests.conftest import one_torch_thread, run_cli, tiny_config

one_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_samples(tmp_path_factory.mktemp("img"), per_class=14, seed=1)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return make_speech_samples(tmp_path_factory.mktemp("speech"), n_train=96, n_eval=16, seed=2)


def _train(tmp_path, data_file, **sections):
    cfg = tiny_config(tmp_path, data_file, **sections)
    proc = run_cli("train", str(cfg), env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "run" / "run_info.json").read_text())


@pytest.mark.parametrize("method, source, lr, epochs", [
    ({"name": "full"}, "images", 2e-3, 6),  # a folder per class
    ({"name": "lora", "r": 8}, "labels.jsonl", 1e-2, 6),  # {image, label} rows, head trained whole
])
def test_image_classify_beats_majority(tmp_path, images, method, source, lr, epochs):
    info = _train(tmp_path, images / source, model={"name_or_path": "builtin:tiny-vit"}, stage="classify",
                  method=method, data={"eval_split": 0.25},
                  train={"max_steps": -1, "epochs": epochs, "batch_size": 8, "learning_rate": lr, "save_steps": 1000})
    assert info["eval_samples"] == 10
    assert info["eval_accuracy"] >= info["majority_baseline_accuracy"] + 0.3, info
    artefact = tmp_path / "run" / ("model" if method["name"] == "full" else "adapter")
    assert (artefact / "preprocessor_config.json").exists()  # the image processor travels with the artefact
    meta = json.loads((artefact / "danlu.json").read_text())
    assert meta["task"] == "image_cls" and meta["labels"] == ["blue", "green", "red"]


def test_bad_image_row_is_counted_or_stops_with_file_line(tmp_path, images):
    rows = (images / "labels.jsonl").read_text().splitlines()[:12]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows += ['{"image": "images/red/none.png", "label": "red"}', '{"image": "broken.png", "label": "blue"}']
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(r.replace('"images/', f'"{images}/images/') for r in rows) + "\n")
    common = dict(model={"name_or_path": "builtin:tiny-vit"}, stage="classify", method={"name": "full"},
                  train={"max_steps": 1, "batch_size": 4, "save_steps": 1000})
    info = _train(tmp_path / "skip", data, **common)
    report = json.loads((tmp_path / "skip" / "run" / "data_report.json").read_text())["train"]
    assert (report["rows_read"], report["kept"], report["dropped"]) == (14, 12, 2)
    where = sorted(r["where"] for e in report["dropped_by_reason"].values() for r in e["rows"])
    assert where == [f"{data}:13", f"{data}:14"]
    assert info["global_step"] == 1
    cfg = tiny_config(tmp_path / "error", data, data={"on_bad_row": "error"}, **common)
    proc = run_cli("train", str(cfg), env=ENV)
    assert proc.returncode == 2 and f"{data}:13" in proc.stderr and "file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_asr_wer_falls_on_held_out_clips(tmp_path, speech):
    info = _train(tmp_path, speech / "train.jsonl", model={"name_or_path": "builtin:tiny-whisper"}, stage="asr",
                  method={"name": "full"}, data={"eval": str(speech / "eval.jsonl")}, asr={"max_new_tokens": 12},
                  train={"max_steps": 120, "batch_size": 8, "learning_rate": 5e-3, "save_steps": 1000})
    assert info["eval_samples"] == 16
    # it listens: the tones decide the words (measured: 64 % WER after 120 steps, from over 400 %)
    assert info["eval_wer"] < 85 and info["eval_wer"] < info["eval_wer_before"] / 2, info
    assert info["eval_cer"] < info["eval_cer_before"], info
    model = tmp_path / "run" / "model"
    assert (model / "processor_config.json").exists() and (model / "tokenizer.json").exists()


def test_asr_lora_trains_an_adapter(tmp_path, speech):
    info = _train(tmp_path, speech / "train.jsonl", model={"name_or_path": "builtin:tiny-whisper"}, stage="asr",
                  method={"name": "lora", "r": 8}, data={"eval": str(speech / "eval.jsonl")},
                  asr={"eval_before": True, "max_new_tokens": 12},
                  train={"max_steps": 60, "batch_size": 8, "learning_rate": 1e-2, "save_steps": 1000})
    assert info["trainable_params"] < info["total_params"] / 2
    assert info["eval_wer"] < info["eval_wer_before"], info
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()


def test_samples_command_writes_both_layouts(tmp_path):
    proc = run_cli("data", "samples", "image", str(tmp_path / "img"), "-n", "2")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "img" / "images").glob("*/*.png"))) == 6
    assert len((tmp_path / "img" / "labels.jsonl").read_text().splitlines()) == 6
    proc = run_cli("data", "samples", "voice", str(tmp_path / "x"))
    assert proc.returncode == 2 and "image, speech or vlm" in proc.stderr
