"""data_report.json: rows read, kept, dropped by reason (with file:line), token statistics."""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
MAX_LISTED = 200  # rows listed per reason; the count is always complete


def reason_category(reason: str) -> str:
    r = reason.lower()
    for key, cat in (
        ("invalid json", "invalid JSON"),
        ("utf-8", "not UTF-8"),
        ("nested too deeply", "invalid JSON"),
        ("must be a string", "wrong type"),
        ("has no 'content'", "missing field"),
        ("has no 'value'", "missing field"),
        ("missing field", "missing field"),
        ("empty assistant", "empty assistant turn"),
        ("is empty", "empty field"),
        ("role order", "wrong role order"),
        ("may only come first", "wrong role order"),
        ("must follow", "wrong role order"),
        ("does not end with an assistant", "wrong role order"),
        ("no user turn", "wrong role order"),
        ("over-long", "over-long"),
        ("file not found", "media file not found"),
        ("unreadable image", "unreadable media file"),
        ("unreadable audio", "unreadable media file"),
        ("image too large", "image too large"),
        ("masked to nothing", "masked to nothing"),
    ):
        if key in r:
            return cat
    return "malformed row"


def token_stats(lengths: list[int]) -> dict:
    if not lengths:
        return {"count": 0}
    s = sorted(lengths)

    def pct(q: float) -> int:
        return s[min(len(s) - 1, int(q * len(s)))]

    return {
        "count": len(s),
        "total": sum(s),
        "min": s[0],
        "max": s[-1],
        "mean": round(statistics.fmean(s), 1),
        "median": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
    }


@dataclass
class DataReport:
    split: str = "train"
    sources: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)  # source → detected format
    rows_read: int = 0
    kept: int = 0
    truncated: int = 0
    truncated_rows: list[dict] = field(default_factory=list)  # the first MAX_LISTED, with file:line
    dropped: dict[str, dict] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)
    label_tokens: int = 0

    def drop(self, where: str, reason: str) -> None:
        entry = self.dropped.setdefault(reason_category(reason), {"count": 0, "rows": []})
        entry["count"] += 1
        if len(entry["rows"]) < MAX_LISTED:
            entry["rows"].append({"where": where, "reason": reason})

    def truncate(self, where: str, tokens: int, cut: bool = False) -> None:
        self.truncated += 1
        if len(self.truncated_rows) < MAX_LISTED:
            self.truncated_rows.append({"where": where, "tokens": f"more than {tokens}" if cut else tokens})

    @property
    def num_dropped(self) -> int:
        return sum(e["count"] for e in self.dropped.values())

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "sources": self.sources,
            "formats": self.formats,
            "rows_read": self.rows_read,
            "kept": self.kept,
            "dropped": self.num_dropped,
            "truncated": self.truncated,
            "truncated_rows": self.truncated_rows,
            "dropped_by_reason": self.dropped,
            "tokens": {**token_stats(self.lengths), "label_tokens": self.label_tokens},
        }

    def log_summary(self) -> None:
        fmt = ", ".join(f"{src}: {f}" for src, f in self.formats.items())
        log.info("%s data: %d rows read, %d kept, %d dropped (format %s)", self.split, self.rows_read, self.kept,
                 self.num_dropped, fmt)
        for cat, entry in self.dropped.items():
            first = entry["rows"][0]
            log.warning("  dropped %d × %s — first at %s: %s", entry["count"], cat, first["where"], first["reason"])


def write_reports(reports: list[DataReport], path: Path) -> None:
    data = {r.split: r.to_dict() for r in reports}
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
