"""Every metric against a reference: sacrebleu's own BLEU/chrF, hand-computed ROUGE and token F1
on English, Chinese and mixed strings, hand-computed accuracy/macro-F1, JSON validity and shape;
the registry (auto-selection, unknown names, one function adds a metric)."""

from __future__ import annotations

import pytest
import sacrebleu

from danlu.errors import UserError
from danlu.eval import metrics as M
from danlu.eval.metrics import METRICS, MetricInputs, Score, choose, compute

PREDS_EN = ["The cat sat.", "the cat on the mat", "completely different"]
REFS_EN = ["the cat sat on the mat", "the cat sat on the mat", "a help-desk product"]
PREDS_ZH = ["今天没有下雨", "一款面向小团队的工单系统。", "支持 CSV 和 JSON"]
REFS_ZH = ["今天下雨了", "一款面向小团队的工单系统。", "支持 CSV 格式"]


def one(name, pred, ref, **kw):
    return compute([name], [pred], [ref], MetricInputs(**kw))[name]


@pytest.mark.parametrize("pred,ref,expected", [
    ("Yes, 14 days.", "Yes, 14 days.", 100.0),
    ("  Yes,  14 days.\n", "Yes, 14 days.", 100.0),  # whitespace is not an answer
    ("yes, 14 days.", "Yes, 14 days.", 0.0),  # case is
    ("一款工单系统。", "一款工单系统", 0.0),
])
def test_exact_match(pred, ref, expected):
    assert one("exact_match", pred, ref).value == expected


@pytest.mark.parametrize("pred,ref,expected", [
    ("The cat sat.", "the cat sat on the mat", 2 / 3),  # P 3/3, R 3/6
    ("the cat on the mat", "the cat sat on the mat", 10 / 11),  # P 5/5, R 5/6
    ("今天没有下雨", "今天下雨了", 16 / 22),  # characters: P 4/6, R 4/5
    ("支持 CSV 和 JSON", "支持 CSV 格式", 3 / 5),  # 支 持 csv 和 json | 支 持 csv 格 式: P 3/5, R 3/5
    ("", "", 1.0),
    ("anything", "", 0.0),
])
def test_token_f1_hand_computed(pred, ref, expected):
    assert one("token_f1", pred, ref).value == pytest.approx(100 * expected)


def test_f1_tokens_split_cjk_characters_and_drop_punctuation():
    assert M.f1_tokens("支持 CSV，和 JSON!") == ["支", "持", "csv", "和", "json"]


@pytest.mark.parametrize("preds,refs,tok", [(PREDS_EN, REFS_EN, "13a"), (PREDS_ZH, REFS_ZH, "zh")])
def test_bleu_and_chrf_equal_sacrebleu(preds, refs, tok):
    got = compute(["bleu", "chrf"], preds, refs)
    assert got["bleu"].value == pytest.approx(sacrebleu.corpus_bleu(preds, [refs], tokenize=tok).score)
    assert got["bleu"].detail["tokenize"] == tok
    assert got["chrf"].value == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score)
    for p, r, s in zip(preds, refs, got["chrf"].per_sample):
        assert s == pytest.approx(sacrebleu.sentence_chrf(p, [r]).score)


def test_chinese_bleu_uses_chinese_tokenisation():
    zh = compute(["bleu"], PREDS_ZH, REFS_ZH)["bleu"].value
    assert zh != pytest.approx(sacrebleu.corpus_bleu(PREDS_ZH, [REFS_ZH], tokenize="13a").score)


@pytest.mark.parametrize("pred,ref,r1,r2,rl", [
    # English: rouge-score's own tokeniser
    ("the cat on the mat", "the cat sat on the mat", 10 / 11, 2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5), 10 / 11),
    # Chinese: jieba words 今天/没有/下雨 vs 今天/下雨/了; no shared bigram; LCS 今天 下雨
    ("今天没有下雨", "今天下雨了", 2 / 3, 0.0, 2 / 3),
    # mixed: 支持/csv/和/json vs 支持/csv/格式
    ("支持 CSV 和 JSON", "支持 CSV 格式", 4 / 7, 0.4, 4 / 7),
    ("我喜欢猫", "我喜欢猫", 1.0, 1.0, 1.0),
])
def test_rouge_hand_computed(pred, ref, r1, r2, rl):
    got = compute(["rouge1", "rouge2", "rougeL"], [pred], [ref])
    assert got["rouge1"].value == pytest.approx(100 * r1)
    assert got["rouge2"].value == pytest.approx(100 * r2)
    assert got["rougeL"].value == pytest.approx(100 * rl)


def test_rouge_tokenises_chinese_into_words():
    from rouge_score import tokenize

    assert tokenize.tokenize("今天下雨了", None) == []  # rouge-score alone would see nothing
    assert M.RougeTokenizer().tokenize("今天没有下雨。") == ["今天", "没有", "下雨"]
    assert M.RougeTokenizer().tokenize("The Cat, sat!") == ["the", "cat", "sat"]


def test_accuracy_and_macro_f1_hand_computed():
    refs = ["billing", "billing", "bug_report", "bug_report", "feature_request"]
    preds = ["Billing", "bug_report", "bug_report.", "bug_report", "billing\nbecause ..."]
    got = compute(["accuracy", "macro_f1"], preds, refs)
    assert got["accuracy"].value == pytest.approx(60.0)
    # billing: tp 1 fp 1 fn 1 → 0.5; bug_report: tp 2 fp 1 fn 0 → 0.8; feature_request: 0
    assert got["macro_f1"].detail["per_class"] == pytest.approx({"billing": 50.0, "bug_report": 80.0,
                                                                 "feature_request": 0.0})
    assert got["macro_f1"].value == pytest.approx(100 * 1.3 / 3)


def test_json_valid_and_schema_match():
    refs = ['{"intent": "refund", "order": 12}', '{"intent": "refund", "order": 7}',
            '{"intent": "other", "order": 1}', '[{"a": 1}]']
    preds = ['```json\n{"intent": "refund", "order": 3}\n```',  # fenced, right shape
             '{"intent": "refund"}',  # valid, missing a key
             'intent: refund',  # not JSON
             '[{"a": 2}, {"a": 3}]']  # array of the right items
    got = compute(["json_valid", "schema_match"], preds, refs)
    assert got["json_valid"].per_sample == [100.0, 100.0, 0.0, 100.0]
    assert got["schema_match"].per_sample == [100.0, 0.0, 0.0, 100.0]
    schema = {"type": "object", "required": ["intent"], "properties": {"intent": {"enum": ["refund", "other"]}}}
    with_schema = compute(["schema_match"], preds, refs, MetricInputs(schema=schema))["schema_match"]
    assert with_schema.per_sample == [100.0, 100.0, 0.0, 0.0]


def test_auto_selection_follows_the_references():
    text = choose(REFS_EN, MetricInputs())
    assert {"exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL"} <= set(text)
    assert not {"accuracy", "macro_f1", "json_valid", "schema_match"} & set(text)
    labels = choose(["yes", "no", "no", "yes", "yes", "no"], MetricInputs())
    assert {"accuracy", "macro_f1"} <= set(labels)
    structured = choose(['{"a": 1}', '{"a": 2}'], MetricInputs())
    assert {"json_valid", "schema_match"} <= set(structured)


def test_unknown_metric_is_a_user_error_with_a_suggestion():
    with pytest.raises(UserError, match="did you mean 'rougeL'"):
        choose(REFS_EN, MetricInputs(), ["rougel"])


@pytest.fixture
def temporary_metric():
    yield "answer_length_test"
    METRICS._items.pop("answer_length_test", None)


def test_one_function_adds_a_metric(temporary_metric):
    @M.metric(temporary_metric, label="Answer length", label_zh="回答长度", higher_is_better=False,
              applies=lambda refs, inputs: True)
    def answer_length(preds, refs, inputs):
        return Score(sum(map(len, preds)) / len(preds), [float(len(p)) for p in preds])

    assert temporary_metric in choose(REFS_EN, MetricInputs())
    assert compute([temporary_metric], ["ab", "abcd"], ["x", "y"])[temporary_metric].value == 3.0
    assert M.describe(temporary_metric)["label_zh"] == "回答长度"
    assert M.higher_is_better(f"eval_{temporary_metric}") is False
    with pytest.raises(ValueError, match="registered twice"):
        M.metric(temporary_metric, label="x", label_zh="x")(answer_length)


def test_directions():
    assert M.higher_is_better("eval_loss") is False
    assert M.higher_is_better("eval_exact_match") is True
    assert M.describe("bench:ceval")["label"] == "ceval accuracy"


def test_tool_call_metrics_score_parsed_calls_against_the_reference_calls():
    from danlu.eval.generate import EvalItem

    gold = [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    items = [EvalItem([{"role": "user", "content": "q"}], "", {"role": "assistant", "tool_calls": gold})] * 4
    preds = ['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
             '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
             '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
             "It is sunny."]
    inputs = M.MetricInputs(items=items)
    assert {"tool_call_name", "tool_call_valid_json", "tool_call_exact"} <= set(M.choose([""] * 4, inputs))
    scores = M.compute(["tool_call_name", "tool_call_valid_json", "tool_call_exact"], preds, [""] * 4, inputs)
    assert scores["tool_call_name"].per_sample == [100, 100, 0, 0]
    assert scores["tool_call_valid_json"].value == 75 and scores["tool_call_exact"].value == 25
    text_item = EvalItem([{"role": "user", "content": "q"}], "a", {"role": "assistant", "content": "a"})
    mixed = M.compute(["tool_call_exact"], preds[:2], ["", "a"], M.MetricInputs(items=[items[0], text_item]))
    assert mixed["tool_call_exact"].value == 100 and mixed["tool_call_exact"].per_sample is None
    assert "tool_call_exact" not in M.choose(["a"], M.MetricInputs(items=[text_item]))


@pytest.mark.parametrize("answer,facts,stated", [
    ("The reset link is valid for 30 minutes.", ["30"], True),
    ("重置链接 30 分钟内有效。", ["30"], True),  # a digit next to CJK is still a number on its own
    ("It is valid for 300 minutes.", ["30"], False),  # not a prefix of a longer number ...
    ("Version 2.30 of the app", ["30"], False),  # ... nor its decimal part
    ("We guarantee 99.99% uptime.", ["99.9"], False),
    ("We guarantee 99.9% uptime.", ["99.9"], True),
    ("Business is $29 per agent.", ["$29"], True),
    ("Business is ＄２９ per agent.", ["$29"], True),  # full-width forms (NFKC)
    ("You get ten backup codes.", [["10", "ten"]], True),
    ("We often help.", [["10", "ten"]], False),  # a word, not a substring
    ("审计日志保留 1 年。", [["一年", "1年"]], True),  # spaces beside CJK do not count
    ("Data stays in FRANKFURT or Singapore.", ["Frankfurt", "Singapore"], True),
    ("Data stays in Frankfurt.", ["Frankfurt", "Singapore"], False),  # every fact is needed
    ("Write to support@flowdesk.example.", ["support@flowdesk.example"], True),
])
def test_states_facts(answer, facts, stated):
    assert M.states_facts(answer, facts) is stated


def test_facts_metric_scores_rows_with_facts_and_is_chosen_only_for_them(tmp_path):
    from danlu.eval.generate import read_items

    data = tmp_path / "recall.jsonl"
    data.write_text('{"instruction": "Price?", "output": "$29 per agent.", "facts": ["$29"]}\n'
                    '{"instruction": "Limit?", "output": "600 a minute.", "facts": [["600", "six hundred"]]}\n'
                    '{"instruction": "Hi", "output": "Hello."}\n', encoding="utf-8")
    items = read_items(str(data))
    inputs = M.MetricInputs(items=items)
    assert "facts" in M.choose([i.reference for i in items], inputs)
    score = M.compute(["facts"], ["It is $29.", "About 60 a minute.", "Hello."], [i.reference for i in items], inputs)
    assert score["facts"].value == 50 and score["facts"].per_sample is None
    assert score["facts"].detail == {"answers_with_facts": 2}
    plain = M.MetricInputs(items=items[2:])
    assert "facts" not in M.choose(["Hello."], plain)


@pytest.mark.parametrize("facts", [[], "30", [""], [["30", 7]], [[]]])
def test_malformed_facts_are_a_row_error(tmp_path, facts):
    import json

    from danlu.data.formats.alpaca import Alpaca
    from danlu.data.formats.base import FormatOptions
    from danlu.chat.messages import RowError

    with pytest.raises(RowError, match="'facts'"):
        Alpaca().convert(json.loads(json.dumps({"instruction": "q", "output": "a", "facts": facts})), FormatOptions())
