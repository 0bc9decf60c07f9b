"""A hub id on a machine that cannot reach the hub: the cached copy without minutes of retries,
or at once a message that says what to do (a mirror, a download elsewhere, a local folder)."""

from __future__ import annotations

import time

import pytest

from danlu.errors import UserError
from danlu.models import load


@pytest.fixture
def offline(monkeypatch, tmp_path):
    load.hub_reachable.cache_clear()
    monkeypatch.setattr(load, "hub_reachable", lambda: False)
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def _cache(root, repo: str, files: dict[str, str], rev: str = "a" * 40):
    folder = root / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(rev)
    for name, text in files.items():
        (snap / name).write_text(text)
    return snap


def test_uncached_hub_id_fails_at_once_saying_what_to_do(offline):
    t0 = time.perf_counter()
    with pytest.raises(UserError) as err:
        load.load_tokenizer("Acme/NotHere-0.5B")
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "model.name_or_path" in msg and "not reachable" in msg and "Acme/NotHere-0.5B" in msg
    assert "HF_ENDPOINT" in msg and "huggingface-cli download Acme/NotHere-0.5B" in msg


def test_cached_hub_id_is_read_from_the_cache_only(offline):
    _cache(offline, "Acme/Cached-0.5B", {"config.json": "{}", "tokenizer_config.json": "{}"})
    assert load.hub_kwargs("Acme/Cached-0.5B") == {"local_files_only": True}
    assert load.hub_kwargs("Acme/Cached-0.5B", "tokenizer_config.json") == {"local_files_only": True}


def test_local_folder_and_reachable_hub_need_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(load, "hub_reachable", lambda: True)
    assert load.hub_kwargs("Qwen/Qwen2.5-0.5B-Instruct") == {}
    monkeypatch.setattr(load, "hub_reachable", lambda: False)
    assert load.hub_kwargs(str(tmp_path)) == {}


@pytest.mark.parametrize("env, expected", [({"HF_HUB_OFFLINE": "1"}, False), ({"HTTPS_PROXY": "http://p:3128"}, True)])
def test_reachability_respects_offline_mode_and_proxies(monkeypatch, env, expected):
    for k in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    load.hub_reachable.cache_clear()
    try:
        assert load.hub_reachable() is expected
    finally:
        load.hub_reachable.cache_clear()


def test_a_hub_dataset_name_offline_fails_at_once_naming_data_train(monkeypatch):
    from danlu.data.readers import read_rows
    from danlu.errors import DataError

    monkeypatch.setattr(load, "hub_reachable", lambda: False)
    t0 = time.perf_counter()
    with pytest.raises(DataError) as err:
        list(read_rows("acme/support-tickets"))
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "data.train" in msg and "not reachable" in msg and "check the file name" in msg
