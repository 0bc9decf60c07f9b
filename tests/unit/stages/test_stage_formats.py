"""Preference, unpaired and labelled layouts: each one read (explicitly and auto-detected), bad rows
reported with file:line and reason, LLaMA-Factory's own demo files read without a drop, and the
token ids of a pair equal to what SFT trains on."""

from __future__ import annotations

from pathlib import Path

import pytest

from danlu.chat.messages import Conversation, Labelled, Preference, Unpaired
from danlu.data.dataset import iter_samples
from danlu.data.formats.labelled import TokenLabelled
from danlu.data.report import DataReport
from danlu.errors import DataError
from tests.conftest import write_jsonl

USER, CHOSEN, REJECTED = "Is the sky blue?", "Yes, it is blue.", "No."
PREFERENCE_ROWS = {
    "preference": {"prompt": USER, "chosen": CHOSEN, "rejected": REJECTED, "system": "Be brief."},
    "sharegpt_preference": {"conversations": [{"from": "human", "value": USER}], "system": "Be brief.",
                            "chosen": {"from": "gpt", "value": CHOSEN}, "rejected": {"from": "gpt", "value": REJECTED}},
    "messages_preference": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": USER}],
                            "chosen": {"role": "assistant", "content": CHOSEN},
                            "rejected": {"role": "assistant", "content": REJECTED}},
    "alpaca_preference": {"instruction": USER, "input": "", "chosen": CHOSEN, "rejected": REJECTED,
                          "system": "Be brief."},
}
TRL_CONVERSATIONAL = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": USER}],
                      "chosen": [{"role": "assistant", "content": CHOSEN}],
                      "rejected": [{"role": "assistant", "content": REJECTED}]}
TRL_IMPLICIT = {"chosen": TRL_CONVERSATIONAL["prompt"] + TRL_CONVERSATIONAL["chosen"],
                "rejected": TRL_CONVERSATIONAL["prompt"] + TRL_CONVERSATIONAL["rejected"]}
UNPAIRED_ROWS = {
    "unpaired": {"prompt": USER, "completion": CHOSEN, "label": True},
    "messages_unpaired": {"messages": [{"role": "user", "content": USER}, {"role": "assistant", "content": CHOSEN}],
                          "label": "true"},
    "sharegpt_unpaired": {"conversations": [{"from": "human", "value": USER}, {"from": "gpt", "value": CHOSEN}],
                          "kto_tag": 1},
}
LLAMAFACTORY = Path("/work/shared/interop/llamafactory")


def read(tmp_path, rows, kinds, fmt="auto", on_bad_row="skip"):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    report = DataReport()
    return list(iter_samples(str(path), fmt=fmt, kinds=kinds, report=report, on_bad_row=on_bad_row)), report, path


@pytest.mark.parametrize("fmt", [*PREFERENCE_ROWS, "trl_conversational", "trl_implicit"])
@pytest.mark.parametrize("explicit", [False, True])
def test_preference_layouts(tmp_path, fmt, explicit):
    row = {"trl_conversational": TRL_CONVERSATIONAL, "trl_implicit": TRL_IMPLICIT}.get(fmt) or PREFERENCE_ROWS[fmt]
    name = fmt if fmt in PREFERENCE_ROWS else "preference"
    (s,), report, path = read(tmp_path, [row], ("preference",), fmt=name if explicit else "auto")
    assert isinstance(s, Preference) and report.formats[str(path)] == name and s.where == f"{path}:1"
    assert s.prompt == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": USER}]
    assert s.chosen == [{"role": "assistant", "content": CHOSEN}]
    assert s.rejected == [{"role": "assistant", "content": REJECTED}]


@pytest.mark.parametrize("fmt", list(UNPAIRED_ROWS))
def test_unpaired_layouts(tmp_path, fmt):
    (s,), report, path = read(tmp_path, [UNPAIRED_ROWS[fmt]], ("unpaired",))
    assert isinstance(s, Unpaired) and report.formats[str(path)] == fmt
    assert s.prompt == [{"role": "user", "content": USER}] and s.completion[0]["content"] == CHOSEN and s.label is True


@pytest.mark.parametrize("label, expected", [(False, False), (0, False), ("no", False), ("TRUE", True), (1, True)])
def test_unpaired_labels(tmp_path, label, expected):
    (s,), _, _ = read(tmp_path, [{"prompt": USER, "completion": CHOSEN, "label": label}], ("unpaired",))
    assert s.label is expected


def test_labelled_and_token_labelled(tmp_path):
    (s,), _, _ = read(tmp_path, [{"text": "refund please", "label": "billing"}], ("labelled",))
    assert isinstance(s, Labelled) and (s.text, s.label) == ("refund please", "billing")
    (s,), _, _ = read(tmp_path, [{"text": "refund please", "label": "3"}], ("labelled",))
    assert s.label == 3  # a numeric string is an id
    (s,), _, _ = read(tmp_path, [{"tokens": ["Ann", "paid"], "ner_tags": ["PER", "O"]}], ("token_labelled",))
    assert isinstance(s, TokenLabelled) and s.words == ["Ann", "paid"] and s.tags == ["PER", "O"]


def test_the_default_kinds_are_unchanged(tmp_path):
    """SFT still reads {prompt, completion} as a conversation; a label makes it a KTO row only for KTO."""
    (s,), _, _ = read(tmp_path, [{"prompt": USER, "completion": CHOSEN}], ("conversation", "text"))
    assert isinstance(s, Conversation)


BAD = [
    ({"prompt": USER, "chosen": CHOSEN}, "preference", "missing field 'rejected'"),
    ({"prompt": USER, "chosen": "  ", "rejected": REJECTED}, "preference", "field 'chosen' is empty"),
    ({"prompt": USER, "chosen": {"role": "user", "content": "x"}, "rejected": REJECTED}, "preference",
     "must be an assistant answer"),
    ({"prompt": [{"role": "user", "content": USER}, {"role": "assistant", "content": "hi"}],
      "chosen": CHOSEN, "rejected": REJECTED}, "preference", "must end with a user turn"),
    ({"chosen": [{"role": "assistant", "content": CHOSEN}], "rejected": [{"role": "assistant", "content": "x"}]},
     "preference", "sharing the prompt"),
    ({"prompt": USER, "completion": CHOSEN, "label": "maybe"}, "unpaired", "must be true or false"),
    ({"messages": [{"role": "user", "content": USER}], "label": True}, "unpaired", "does not end with an assistant"),
    ({"text": "x", "label": None}, "labelled", "must be a label name or id"),
    ({"tokens": ["a", "b"], "tags": ["O"]}, "token_labelled", "one label per word"),
]


@pytest.mark.parametrize("row, kind, reason", BAD, ids=[b[2] for b in BAD])
def test_bad_rows_are_reported_or_raise(tmp_path, row, kind, reason):
    good = {"preference": PREFERENCE_ROWS["preference"], "unpaired": UNPAIRED_ROWS["unpaired"],
            "labelled": {"text": "x", "label": "a"}, "token_labelled": {"tokens": ["a"], "tags": ["O"]}}[kind]
    if "messages" in row:  # the first row decides the layout of a file
        good = UNPAIRED_ROWS["messages_unpaired"]
    samples, report, path = read(tmp_path, [good, row], (kind,))
    assert len(samples) == 1 and report.num_dropped == 1
    (entry,) = [r for e in report.dropped.values() for r in e["rows"]]
    assert entry["where"] == f"{path}:2" and reason in entry["reason"]
    with pytest.raises(DataError) as err:
        read(tmp_path, [good, row], (kind,), on_bad_row="error")
    assert f"{path}:2" in str(err.value) and reason in str(err.value)


@pytest.mark.skipif(not LLAMAFACTORY.is_dir(), reason="LLaMA-Factory demo files not present")
@pytest.mark.parametrize("name, kind, fmt", [("dpo_en_demo.json", "preference", "sharegpt_preference"),
                                             ("dpo_zh_demo.json", "preference", "sharegpt_preference"),
                                             ("kto_en_demo.json", "unpaired", "messages_unpaired")])
def test_llamafactory_demo_files(name, kind, fmt):
    report = DataReport()
    samples = list(iter_samples(str(LLAMAFACTORY / name), kinds=(kind,), report=report))
    assert len(samples) == report.rows_read == 300 and report.num_dropped == 0
    assert report.formats[str(LLAMAFACTORY / name)] == fmt
    if kind == "unpaired":
        assert sum(s.label for s in samples) == 150  # the file is balanced


def test_pair_ids_are_the_sft_ids(tiny_tokenizer):
    """prompt_ids + chosen_ids is the SFT encoding of the conversation up to the answer's turn end,
    and chosen_ids are exactly its labelled tokens."""
    from danlu.chat.templates import resolve_template
    from danlu.config.load import load_config_dict
    from danlu.data.encode import IGNORE, encode_conversation
    from danlu.stages._preference_data import encode_pair

    tpl = resolve_template(tiny_tokenizer, "auto")
    data = load_config_dict({"model": {"name_or_path": "builtin:tiny"}, "data": {"train": "x"},
                             "method": {"name": "lora"}}).data
    sample = Preference(prompt=[{"role": "user", "content": USER}], chosen=[{"role": "assistant", "content": CHOSEN}],
                        rejected=[{"role": "assistant", "content": REJECTED}])
    (row,) = encode_pair(sample, tpl, data, 512)
    sft = encode_conversation(Conversation(sample.prompt + sample.chosen), tpl)
    labelled = [t for t in sft.labels if t != IGNORE]
    assert row["chosen_ids"] == labelled and row["chosen_ids"][-1] == tpl.turn_end_id
    assert row["prompt_ids"] + row["chosen_ids"] == sft.input_ids[: len(row["prompt_ids"]) + len(labelled)]
    assert tiny_tokenizer.decode(row["rejected_ids"]).startswith(REJECTED)
    (short,) = encode_pair(sample, tpl, data, len(row["prompt_ids"]) + 3)  # overlong: answers cut to fit
    assert len(short["chosen_ids"]) == 3 and short["prompt_ids"] == row["prompt_ids"]
