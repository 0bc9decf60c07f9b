"""Throughput of every `danlu data` command on 100,000 mixed Chinese/English rows of about 200
characters, each run as the real CLI in its own process (wall time, the command's own time,
rows/s, peak RSS), with the machine's load average before and after.

    python bench/data_bench.py                 # generate bench/work/rows.jsonl, run all, write bench/results/
    python bench/data_bench.py --rows 20000 --only dedup,scrub
    python bench/data_bench.py --generate-only

The data is generated here (seeded) and never committed: support-desk style instructions and
answers built from the LLaMA-Factory demo sentences when ../shared/interop is present, else from
a built-in phrase list; with near duplicates (edits, reordered clauses), exact duplicates (case
and spacing changed), personal data, HTML, control characters and empty answers mixed in, and an
evaluation file of 500 rows, 100 copied from the training file (the other 400 use
sentences held out of it; copied rows' sentences recur in other training rows, so decontam drops
more than 100 rows)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
INTEROP = next((p / "shared" / "interop" / "llamafactory" for p in ROOT.parents
                if (p / "shared" / "interop" / "llamafactory").is_dir()), ROOT / "missing")

ZH = ["在设置里选择导出，支持 CSV 和 JSON。", "我们会在一个工作日内回复你的工单。", "登录页点击忘记密码即可重置。",
      "团队版每位坐席每月十二美元。", "数据可以存放在法兰克福或新加坡。", "支持企业微信、钉钉和飞书集成。",
      "两步验证需要先绑定验证器应用。", "发票会在每月一号自动发送到管理员邮箱。", "超过三十天的工单会自动归档。",
      "你可以在报表页查看平均响应时间。", "客服主管可以为坐席设置技能组。", "移动端应用支持离线查看工单。"]
EN = ["Click Forgot password on the sign-in page.", "The Team plan is 12 dollars per agent per month.",
      "Exports are available as CSV or JSON.", "We answer every ticket within one business day.",
      "Your data stays in Frankfurt or Singapore.", "Slack, Jira and GitHub integrations are built in.",
      "Two-factor sign-in needs an authenticator app.", "Invoices go to the billing contact on the first day.",
      "Tickets older than thirty days are archived.", "Average first response time is on the reports page.",
      "Supervisors can assign skills to each agent.", "The mobile app shows tickets offline."]


def load_phrases() -> tuple[list[str], list[str]]:
    """Sentences from the LLaMA-Factory demo data when available (realistic shingle statistics)."""
    zh, en = list(ZH), list(EN)
    for name, bucket, split in (("alpaca_zh_demo.json", zh, r"(?<=[。！？])"), ("alpaca_en_demo.json", en, r"(?<=[.!?])\s+")):
        path = INTEROP / name
        if path.exists():
            for row in json.loads(path.read_text(encoding="utf-8")):
                for text in (row.get("instruction", ""), row.get("output", "")):
                    bucket += [s.strip() for s in re.split(split, text) if 8 <= len(s.strip()) <= 120]
    return zh, en


def pii(rng: random.Random) -> str:
    def luhn_card(prefix: str, n: int) -> str:
        digits = [int(c) for c in prefix] + [rng.randrange(10) for _ in range(n - len(prefix) - 1)]
        total = sum(d if i % 2 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
        return "".join(map(str, digits)) + str((10 - total % 10) % 10)

    return rng.choice([f"邮箱 user{rng.randrange(10**6)}@example.com", f"电话 13{rng.randrange(10**9):09d}",
                       f"card {luhn_card('62', 16)}", f"server 10.{rng.randrange(256)}.{rng.randrange(256)}.7"])


def make_row(rng: random.Random, zh: list[str], en: list[str]) -> dict:
    pool = zh if rng.random() < 0.5 else en
    instruction = rng.choice(pool)
    answer = []
    while sum(map(len, answer)) < 200 - len(instruction):
        answer.append(rng.choice(pool if rng.random() < 0.85 else (en if pool is zh else zh)))
    output = (" " if pool is en else "").join(answer)[: 220 - len(instruction)]
    return {"instruction": instruction, "input": "", "output": output}


def variant(rng: random.Random, row: dict) -> dict:
    """A near duplicate: a few characters changed, or two clauses swapped."""
    out = row["output"]
    if rng.random() < 0.5 and ("，" in out or ", " in out):
        sep = "，" if "，" in out else ", "
        parts = out.split(sep)
        i = rng.randrange(len(parts) - 1)
        parts[i], parts[i + 1] = parts[i + 1], parts[i]
        out = sep.join(parts)
    else:
        chars = list(out)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(len(chars))] = rng.choice("的了是在和有abcdeit ")
        out = "".join(chars)
    return {**row, "output": out}


def generate(path: Path, eval_path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    zh, en = load_phrases()
    rng.shuffle(zh)
    rng.shuffle(en)
    # a tenth of the sentences only ever appear in the evaluation file's fresh rows
    (zh, held_zh), (en, held_en) = ((p[len(p) // 10:], p[:len(p) // 10]) for p in (zh, en))
    rows: list[dict] = []
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            r = rng.random()
            if rows and r < 0.08:
                row = variant(rng, rng.choice(rows[-2000:]))
            elif rows and r < 0.12:
                src = rng.choice(rows[-2000:])
                row = {**src, "instruction": src["instruction"].upper() + "  "}
            else:
                row = make_row(rng, zh, en)
                if r < 0.15:
                    row["output"] = row["output"][:120] + " " + pii(rng)
                elif r < 0.17:
                    row["output"] = f"<p>{row['output']}</p><br>"
                elif r < 0.18:
                    row["output"] = row["output"].replace(" ", "\u200b ", 1) + "\x07"
                elif r < 0.185:
                    row["output"] = "   "
            rows.append(row)
            if len(rows) > 4000:
                rows = rows[-2000:]
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(path, encoding="utf-8") as fh:
        sample = [json.loads(line) for line, _ in zip(fh, range(2000))]
    with open(eval_path, "w", encoding="utf-8") as fh:
        for row in rng.sample(sample, 100) + [make_row(rng, held_zh, held_en) for _ in range(400)]:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def run(args: list[str]) -> dict:
    """One CLI run: wall seconds, peak RSS of that process alone (wait4), and its --json summary."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "danlu", *args], stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read()
        if proc.returncode:
            raise RuntimeError(f"danlu {' '.join(args)} failed:\n{err.read()[-2000:]}")
    summary = json.loads(text) if text.strip().startswith("{") else {}
    return {"wall_s": round(wall, 2), "summary": summary, "usage": usage}


def commands(data: Path, evals: Path) -> dict[str, list[str]]:
    w = WORK
    return {
        "inspect": ["data", "inspect", str(data), "--json", "--examples", "0"],
        "inspect --no-tokens": ["data", "inspect", str(data), "--json", "--examples", "0", "--no-tokens"],
        "validate": ["data", "validate", str(data), "--json"],
        "clean": ["data", "clean", str(data), "-o", str(w / "clean.jsonl"), "--json"],
        "dedup": ["data", "dedup", str(data), "-o", str(w / "dedup.jsonl"), "--report", str(w / "clusters.json"), "--json"],
        "scrub": ["data", "scrub", str(data), "-o", str(w / "scrub.jsonl"), "--json"],
        "decontam": ["data", "decontam", str(data), "--against", str(evals), "-o", str(w / "decontam.jsonl"), "--json"],
        "split": ["data", "split", str(data), "-o", str(w / "split"), "--json"],
        "convert": ["data", "convert", str(data), "--to", "messages", "-o", str(w / "messages.jsonl"), "--on-bad-row",
                    "skip", "--json"],
        "mix": ["data", "mix", str(data), str(w / "clean.jsonl"), "-o", str(w / "mix.jsonl"), "--weights", "0.5,0.5",
                "--json"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--only", default="", help="comma-separated commands")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/data-DATE.json)")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / ".gitignore").write_text("*\n")  # generated data stays out of git
    data, evals = WORK / f"rows-{a.rows}.jsonl", WORK / "eval.jsonl"
    if not data.exists():
        generate(data, evals, a.rows)
    if a.generate_only:
        return
    results = {}
    for name, args in commands(data, evals).items():
        if a.only and name not in a.only.split(","):
            continue
        load_before = os.getloadavg()[0]
        r = run(args)
        s, usage = r["summary"], r.pop("usage")
        seconds = s.get("seconds") or r["wall_s"]
        results[name] = {"rows": a.rows, "wall_s": r["wall_s"], "command_s": seconds,
                         "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # less load-dependent
                         "rows_per_s": round(a.rows / seconds), "peak_rss_mib": round(usage.ru_maxrss / 1024),
                         "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
                         "dropped": s.get("dropped"), "changed": s.get("changed"), "command": "danlu " + " ".join(args)}
        print(f"{name:20} {results[name]['command_s']:7.2f} s  {results[name]['rows_per_s']:>8,} rows/s  "
              f"cpu {results[name]['process_cpu_s']:6.1f} s  {results[name]['peak_rss_mib']:>5} MiB  "
              f"load {load_before:.1f}", flush=True)
    doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "rows": a.rows, "data": str(data.name),
           "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
           "versions": _versions(), "results": results}
    out = Path(a.out) if a.out else RESULTS / f"data-{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"→ {out}")


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("numpy", "datasketch", "scipy", "transformers")}


if __name__ == "__main__":
    main()
