"""The README's sequence once a run exists (issue 20, Why 3): a dry run is read-only and is never
stopped by an earlier run in output_dir; a missing data file is reported before that check; and
`overwrite_output_dir: true` in the YAML means `--overwrite`."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_config
from tests.e2e.test_stages_a import cli


@pytest.fixture
def earlier_run(tmp_path, qa_file):
    cfg = tiny_config(tmp_path, qa_file, train={"max_steps": 1, "save_steps": 1})
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    return cfg, run


def test_dry_run_after_a_run(earlier_run, capsys):
    cfg, run = earlier_run
    code, out, err = cli(capsys, "train", str(cfg), "--dry-run", "train.learning_rate=1e-4")
    assert code == 0, err[-2000:]
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n', "a dry run changes nothing"
    code, out, err = cli(capsys, "train", str(cfg))
    assert code == 2 and "already holds a run" in err and "overwrite_output_dir" in err


def test_missing_data_file_first(earlier_run, capsys, tmp_path):
    cfg, run = earlier_run
    code, out, err = cli(capsys, "train", str(cfg), f"data.train={tmp_path / 'nope.jsonl'}")
    assert code == 2 and "data.train: data file not found" in err and "already holds" not in err


def test_overwrite_output_dir_in_yaml(earlier_run, capsys):
    cfg, run = earlier_run
    cfg.write_text(cfg.read_text() + "overwrite_output_dir: true\n")
    code, out, err = cli(capsys, "train", str(cfg))
    assert code == 0, err[-2000:]
    assert '"step": 1}\n' != (run / "metrics.jsonl").read_text()[:12] and (run / "adapter" / "danlu.json").exists()


def test_overwrite_output_dir_never_wipes_a_resumed_run(tmp_path, qa_file):
    """A config with overwrite_output_dir: true, run again with --resume: the run is kept."""
    from danlu.config.load import load_config
    from danlu.train.runner import prepare_run_dir

    cfg_path = tiny_config(tmp_path, qa_file)
    cfg_path.write_text(cfg_path.read_text() + "overwrite_output_dir: true\n")
    run = tmp_path / "run"
    (run / "checkpoints" / "step-1").mkdir(parents=True)
    (run / "checkpoints" / "step-1" / "COMPLETE").write_text("{}")  # (incomplete ones are tidied away)
    prepare_run_dir(load_config(str(cfg_path)), resume=True, overwrite=False, is_main=True)
    assert (run / "checkpoints" / "step-1").is_dir()
    prepare_run_dir(load_config(str(cfg_path)), resume=False, overwrite=False, is_main=True)
    assert not (run / "checkpoints").exists()
