"""`danlu synth`: training data from a teacher model behind an OpenAI-compatible endpoint.

- `synth_answers`: the teacher answers every prompt of a file (sequence-level distillation;
  a conversation's own last answer is replaced by the teacher's).
- `synth_tasks`: new instruction/input/output tasks in the style of seed tasks (self-instruct).
- `synth_docs`: question/answer pairs grounded in seed documents, one request per chunk.

Every row is checked (it parses, is complete, was not cut off by max_tokens, reads back in the
output format `danlu train` will read), de-duplicated (exact and near) and appended to the
output as soon as it arrives, with an `id` naming its unit of work; a re-run reads the output
first and only does what is missing (see synth_store)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from danlu.chat.messages import Conversation, RowError
from danlu.data.formats import FORMATS, FormatOptions
from danlu.data.formats.messages import parse_messages
from danlu.data.formats.sharegpt import sharegpt_messages
from danlu.data.readers import read_rows
from danlu.errors import DanluError, UserError
from danlu.synth.client import RequestFailed, Teacher, TeacherConfig
from danlu.synth.prompts import doc_prompt, parse_json_array, read_qa, read_task, tasks_prompt
from danlu.synth.store import AppendLog, UniqueTexts
from danlu.workbench.convert import as_prompt, detect, reader_for, writer_for
from danlu.workbench.rowio import Summary, check_output, iter_good_rows
from danlu.workbench.rowtext import content_text

log = logging.getLogger(__name__)


@dataclass
class SynthOptions:
    format: str = "messages"  # layout of the output rows (a conversation layout danlu train reads)
    per_call: int = 5  # tasks per request (tasks), question/answer pairs per chunk (docs)
    examples: int = 3  # seed tasks shown in each self-instruct request
    similarity: float = 0.7  # generated instructions this similar to an earlier one are dropped
    chunk_chars: int = 2000  # document chunk size (docs)
    seed: int = 42
    keep_truncated: bool = False  # keep answers cut off by max_tokens
    max_failures: int = 20  # stop after this many requests in a row fail for good
    on_bad_row: str = "error"


@dataclass
class Unit:
    """One request's worth of work; the rows it yields carry ids starting with `id`."""

    id: str
    where: str
    prompt: list[dict]


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()[:16]


class Run:
    """Shared state of one synth run: the teacher, the output, the writer and the summary."""

    def __init__(self, command: str, inputs: list[str], output: str, teacher: TeacherConfig, opts: SynthOptions,
                 on_existing: Callable[[dict], None] | None = None):
        self.opts = opts
        self.out = check_output(output, inputs, suffixes=(".jsonl",))
        self.writer = writer_for(opts.format)
        if self.writer.kind != "conversation":
            raise UserError(f"synth writes conversations; {opts.format!r} is a {self.writer.kind} layout",
                            where="--format", hint="use messages, sharegpt, alpaca or prompt_response")
        self.check_fmt = FORMATS.get(opts.format)() if opts.format in FORMATS else None
        self.teacher_cfg = teacher.resolved()
        self.log = AppendLog(self.out)
        self.done_units: set[str] = set()  # ids of the units whose rows are in the output already

        def seen(row: dict) -> None:
            self.done_units.add(row["id"].split("#")[0])
            if on_existing is not None:
                on_existing(row)

        self.n_existing = self.log.scan(seen)
        self.summary = Summary(command, inputs=inputs, outputs=[str(self.out)])
        self.summary.counts["rows already there"] = self.n_existing

    def row(self, prompt: list[dict], answer: str, row_id: str, **extra) -> dict | None:
        """The output row for one exchange, or None (counted) when it does not read back."""
        row = self.writer.row(Conversation(prompt + [{"role": "assistant", "content": answer}]))
        try:
            if self.check_fmt is not None:
                self.check_fmt.convert(row, FormatOptions())
        except RowError as exc:
            log.debug("rejected %s: %s", row_id, exc)
            self.summary.drop("invalid row")
            return None
        return {**row, "id": row_id, **extra}

    def execute(self, units: Iterator[Unit], handle: Callable[[Teacher, Unit], Awaitable[list[dict]]],
                stop: Callable[[], bool] = lambda: False) -> Summary:
        asyncio.run(self._pool(units, handle, stop))
        self.summary.counts["rows in output"] = self.n_existing + self.summary.rows_out
        return self.summary.done()

    async def _pool(self, units, handle, stop) -> None:
        teacher = Teacher(self.teacher_cfg)
        failures = {"in_a_row": 0}

        async def worker() -> None:
            for unit in units:  # one shared iterator: each unit goes to exactly one worker
                if stop():
                    return
                try:
                    rows = await handle(teacher, unit)
                except RequestFailed as exc:
                    self.summary.drop("request failed")
                    log.warning("%s: %s", unit.where, exc)
                    failures["in_a_row"] += 1
                    if failures["in_a_row"] >= self.opts.max_failures:
                        raise DanluError(f"{failures['in_a_row']} requests in a row failed; the last: {exc}. "
                                         "Rows received so far are saved: run the same command again to resume."
                                         ) from None
                    continue
                failures["in_a_row"] = 0
                self.log.append(rows)
                self.summary.rows_out += len(rows)

        try:
            await asyncio.gather(*(worker() for _ in range(self.teacher_cfg.concurrency)))
        finally:
            await teacher.close()
            self.summary.counts.update(dict(teacher.stats))


# --- answers (sequence-level distillation) -------------------------------------------------

def prompt_of(row: dict) -> list[dict]:
    """The prompt of a row as messages ending with a user turn: a prompt-only row ({"prompt"},
    {"instruction"}, messages ending with a user turn, {"text"}) or any readable sample."""
    name = detect(row)
    if name is not None:
        try:
            return as_prompt(reader_for(name)(row))
        except RowError:
            pass
    if isinstance(row.get("prompt"), str):
        msgs = [{"role": "user", "content": row["prompt"]}]
    elif isinstance(row.get("instruction"), str):
        text = "\n".join(x for x in (row["instruction"], row.get("input")) if isinstance(x, str) and x)
        msgs = [{"role": "user", "content": text}]
    elif isinstance(row.get("messages"), list) or isinstance(row.get("conversations"), list):
        msgs = parse_messages(row["messages"]) if "messages" in row else sharegpt_messages(row["conversations"])
    elif isinstance(row.get("text"), str):
        msgs = [{"role": "user", "content": row["text"]}]
    else:
        raise RowError(f"no prompt in a row with fields {sorted(row)}")
    last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=-1)
    if last_user < 0 or not (msgs[last_user].get("content") or "").strip():
        raise RowError("no user turn to answer")
    system = row.get("system")
    if isinstance(system, str) and system.strip() and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": system})
        last_user += 1
    return msgs[:last_user + 1]


def synth_answers(source: str, output: str, teacher: TeacherConfig, opts: SynthOptions | None = None) -> Summary:
    """The teacher's answer to every prompt of `source`, appended to `output` (JSONL)."""
    opts = opts or SynthOptions()
    run = Run("synth answers", [source], output, teacher, opts)
    seen: set[str] = set()

    def units() -> Iterator[Unit]:
        for raw in iter_good_rows(source, opts.on_bad_row, run.summary):
            run.summary.rows_in += 1
            try:
                prompt = prompt_of(raw.data)
            except RowError as exc:
                if opts.on_bad_row == "error":
                    raise UserError(str(exc), where=raw.where, hint="--on-bad-row skip skips such rows") from None
                run.summary.drop("no prompt")
                continue
            uid = "a-" + _digest(prompt)
            if uid in seen:
                run.summary.drop("duplicate prompt")
                continue
            seen.add(uid)
            if uid in run.done_units:
                counts = run.summary.counts
                counts["prompts already answered"] = counts.get("prompts already answered", 0) + 1
                continue
            yield Unit(uid, raw.where, prompt)

    async def handle(t: Teacher, unit: Unit) -> list[dict]:
        reply = await t.chat(unit.prompt)
        if reply.finish_reason == "length" and not opts.keep_truncated:
            run.summary.drop("truncated (max_tokens)")
            return []
        if not reply.text.strip():
            run.summary.drop("empty answer")
            return []
        row = run.row(unit.prompt, reply.text.strip(), unit.id)
        return [row] if row else []

    return run.execute(units(), handle)


# --- tasks (self-instruct) -----------------------------------------------------------------

def _conversation(row: dict) -> Conversation | None:
    name = detect(row)
    try:
        sample = reader_for(name)(row) if name else None
    except RowError:
        return None
    return sample if isinstance(sample, Conversation) else None


def first_user_text(row: dict) -> str:
    """The first user turn of a row (what generated rows are compared on)."""
    conv = _conversation(row)
    return next((m["content"] for m in conv.messages if m["role"] == "user"), "") if conv else ""


def read_seed_tasks(source: str) -> list[dict]:
    """{"instruction", "input", "output"} of every seed row (any conversation format; rows with
    only an instruction are fine too)."""
    tasks = []
    for raw in iter_good_rows(source):
        conv = _conversation(raw.data)
        if conv is not None:
            user = next(m["content"] for m in conv.messages if m["role"] == "user")
            answer = next(m["content"] for m in reversed(conv.messages) if m["role"] == "assistant")
            tasks.append({"instruction": user, "input": "", "output": answer})
        elif isinstance(raw.data.get("instruction"), str) and raw.data["instruction"].strip():
            tasks.append({"instruction": raw.data["instruction"], "input": raw.data.get("input") or "", "output": ""})
        else:
            raise UserError("a seed task needs an instruction (and ideally an answer)", where=raw.where)
    if not tasks:
        raise UserError("no seed tasks", where=source)
    return tasks


def synth_tasks(seeds: str, output: str, teacher: TeacherConfig, n: int, opts: SynthOptions | None = None) -> Summary:
    """`n` new tasks written in the style of the seed tasks of `seeds`."""
    opts = opts or SynthOptions()
    seed_tasks = read_seed_tasks(seeds)
    unique = UniqueTexts(opts.similarity)
    for t in seed_tasks:
        unique.reject_reason(t["instruction"])
    run = Run("synth tasks", [seeds], output, teacher, opts, lambda r: unique.reject_reason(first_user_text(r)))
    run.summary.rows_in = len(seed_tasks)
    have = {"rows": run.n_existing}
    rounds_max = math.ceil(max(n - have["rows"], 0) / opts.per_call) * 4 + 8

    def units() -> Iterator[Unit]:
        for r in range(rounds_max):
            uid = f"t{r:06d}"
            if uid in run.done_units:
                continue
            rng = random.Random(f"{opts.seed}:{r}")
            examples = rng.sample(seed_tasks, min(opts.examples, len(seed_tasks)))
            yield Unit(uid, f"round {r}", tasks_prompt(examples, opts.per_call))

    async def handle(t: Teacher, unit: Unit) -> list[dict]:
        reply = await t.chat(unit.prompt)
        return _accept(run, unique, reply.text, read_task, unit, n, have)

    return run.execute(units(), handle, stop=lambda: have["rows"] >= n)


def _accept(run: Run, unique: UniqueTexts, text: str, read_item, unit: Unit, n: int | None, have: dict,
            **extra) -> list[dict]:
    """Rows from one JSON-array reply: parsed, complete, new; at most up to `n` rows in all."""
    try:
        items = parse_json_array(text)
    except RowError:
        run.summary.drop("reply not a JSON array")
        return []
    rows = []
    for j, item in enumerate(items):
        if n is not None and have["rows"] + len(rows) >= n:
            break
        try:
            task = read_item(item)
        except RowError:
            run.summary.drop("incomplete item")
            continue
        user = task["instruction"] + (f"\n{task['input']}" if task["input"] else "")
        reason = unique.reject_reason(user)
        if reason:
            run.summary.drop(reason)
            continue
        row = run.row([{"role": "user", "content": user}], task["output"], f"{unit.id}#{j}", **extra)
        if row:
            rows.append(row)
    have["rows"] += len(rows)
    return rows


# --- documents -----------------------------------------------------------------------------

def doc_chunks(source: str, chunk_chars: int) -> Iterator[tuple[str, str]]:
    """(where, text) chunks of about `chunk_chars` characters, cut at paragraph ends. Text and
    markdown files are documents; rows of data files are documents (their content text)."""
    p = Path(source)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if f.suffix.lower() in (".md", ".markdown", ".txt", ".rst"):
            docs = [(f"{f}:1", f.read_text(encoding="utf-8"))]
        else:
            docs = ((raw.where, content_text(raw.data)) for raw in read_rows(str(f)) if raw.data)
        for where, text in docs:
            yield from _chunks(where, text, chunk_chars)


def _chunks(where: str, text: str, size: int) -> Iterator[tuple[str, str]]:
    """Paragraphs packed into chunks of at most `size` characters (a longer paragraph is cut
    into pieces of `size`)."""
    pieces = (para[i:i + size] for para in (p.strip() for p in text.split("\n\n")) for i in range(0, len(para), size))
    buf, n = [], 0
    for piece in pieces:
        if buf and n + len(piece) > size:
            yield where, "\n\n".join(buf)
            buf, n = [], 0
        buf.append(piece)
        n += len(piece)
    if buf:
        yield where, "\n\n".join(buf)


def synth_docs(docs: str, output: str, teacher: TeacherConfig, opts: SynthOptions | None = None) -> Summary:
    """Question/answer pairs grounded in the documents of `docs` (a file or a folder)."""
    opts = opts or SynthOptions()
    unique = UniqueTexts(opts.similarity)
    run = Run("synth docs", [docs], output, teacher, opts, lambda r: unique.reject_reason(first_user_text(r)))
    have = {"rows": run.n_existing}

    def units() -> Iterator[Unit]:
        for where, text in doc_chunks(docs, opts.chunk_chars):
            run.summary.rows_in += 1
            uid = "d-" + _digest(text)
            if uid not in run.done_units:
                yield Unit(uid, where, doc_prompt(text, where, opts.per_call))

    async def handle(t: Teacher, unit: Unit) -> list[dict]:
        reply = await t.chat(unit.prompt)
        return _accept(run, unique, reply.text, read_qa, unit, None, have, source=unit.where)

    return run.execute(units(), handle)
