"""Every entry of LLaMA-Factory's own dataset_info.json (../shared/interop/llamafactory, copied
unchanged from its data/ folder): an entry whose file is present loads through lf: and
tokenises on builtin:tiny; one that needs the hub or a missing file says so (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from danlu.chat.messages import Conversation, Preference, Text, Unpaired
from danlu.data.dataset import iter_samples
from danlu.data.encode import IGNORE, encode_conversation, encode_text
from danlu.data.formats import FormatOptions
from danlu.data.report import DataReport
from danlu.errors import DataError

# ../shared beside the checkout (found from a git worktree too: the first parent that has it)
LF_DIR = next((p / "shared" / "interop" / "llamafactory" for p in Path(__file__).resolve().parents
               if (p / "shared" / "interop" / "llamafactory").is_dir()), Path("../shared/interop/llamafactory"))
pytestmark = pytest.mark.skipif(not (LF_DIR / "dataset_info.json").is_file(),
                                reason=f"LLaMA-Factory demo data not present at {LF_DIR} (never shipped in the package)")
INFO = json.loads((LF_DIR / "dataset_info.json").read_text()) if (LF_DIR / "dataset_info.json").is_file() else {}
PRESENT = sorted(n for n, e in INFO.items() if "file_name" in e and (LF_DIR / e["file_name"]).exists()
                 and not {"images", "videos", "audios"} & set(e.get("columns", {})))
ABSENT = sorted(set(INFO) - set(PRESENT))
# rows per present entry; glaive_toolcall_zh_demo has 2 rows with a tool result after a plain
# assistant message (a translated function call that lost its function_call turn): dropped, reported
EXPECTED = {"identity": (91, Conversation), "alpaca_en_demo": (999, Conversation),
            "alpaca_zh_demo": (1000, Conversation), "glaive_toolcall_en_demo": (300, Conversation),
            "glaive_toolcall_zh_demo": (298, Conversation), "dpo_en_demo": (300, Preference),
            "dpo_zh_demo": (300, Preference), "kto_en_demo": (300, Unpaired), "c4_demo": (300, Text)}
KINDS = ("conversation", "text", "preference", "unpaired")
RENDERED = 12  # samples tokenised per entry (all 4,800 take ~50 s on 2 cores; loading all is < 2 s)


def encodings(sample, tpl):
    if isinstance(sample, Conversation):
        return [encode_conversation(sample, tpl)]
    if isinstance(sample, Preference):
        return [encode_conversation(Conversation(sample.prompt + a, sample.tools), tpl)
                for a in (sample.chosen, sample.rejected)]
    if isinstance(sample, Unpaired):
        return [encode_conversation(Conversation(sample.prompt + sample.completion), tpl)]
    return [encode_text(sample, tpl.tokenizer)]


@pytest.fixture(scope="module")
def tpl(tiny_tokenizer):
    import copy

    from danlu.chat.templates import resolve_template

    return resolve_template(copy.deepcopy(tiny_tokenizer), "auto")


def test_the_present_entries_are_the_shipped_demo_files():
    assert PRESENT == sorted(EXPECTED)


@pytest.mark.parametrize("name", PRESENT)
def test_present_entry_loads_and_renders(name, tpl):
    report = DataReport()
    opts = FormatOptions(dataset_dir=str(LF_DIR), placeholders={"name": "Acme助手", "author": "Acme"})
    samples = list(iter_samples(f"lf:{name}", kinds=KINDS, opts=opts, report=report))
    count, kind = EXPECTED[name]
    assert report.rows_read == (300 if name == "glaive_toolcall_zh_demo" else count)
    assert len(samples) == count and all(type(s) is kind for s in samples)
    if name == "glaive_toolcall_zh_demo":
        rows = report.dropped["wrong role order"]["rows"]
        assert [r["where"].split(":")[-1] for r in rows] == ["5819", "8763"]
        assert all("a tool result must follow an assistant tool call" in r["reason"] for r in rows)
    else:
        assert report.num_dropped == 0
    for sample in samples[:RENDERED]:
        for enc in encodings(sample, tpl):
            assert enc.num_labels > 0 and len(enc.input_ids) == len(enc.labels)
            if not isinstance(sample, Text):
                assert any(lab == IGNORE for lab in enc.labels)  # the prompt is never trained
    if name == "identity":
        assert "Acme助手" in samples[0].messages[-1]["content"] and "{{" not in str(samples)


@pytest.mark.parametrize("name", ABSENT)
def test_absent_entry_says_why(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as exc:
        list(iter_samples(f"lf:{name}", kinds=KINDS, opts=FormatOptions(dataset_dir=str(LF_DIR))))
    text = str(exc.value)
    assert exc.value.exit_code == 2 and f"'{name}'" in text
    assert any(why in text for why in ("Hugging Face hub", "ModelScope", "not found", "multimodal")), text
