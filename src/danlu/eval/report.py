"""report.html: one self-contained page a manager can open offline — the metric table (model vs
base, with deltas), the judge's verdict, benchmark accuracy by subject, the training run's loss
curves (train and eval: over-fitting shows as eval loss rising while train loss falls), answer
length histograms, and the 10 biggest wins and losses side by side (a question's images as
thumbnails beside it). Plots and thumbnails are PNGs embedded as base64; no script, font or
stylesheet is fetched. Labels are in English and Chinese."""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)
TEMPLATE = Path(__file__).parent / "templates" / "report.html.jinja"
TOP_N = 10
THUMB = 96  # px, the longer side of an image thumbnail


def _fmt(value, name: str = "") -> str:
    """Loss with 4 decimals, every other figure with 2."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if name == "loss" else f"{value:.2f}"
    return str(value)


def _delta_class(delta, higher_is_better: bool) -> str:
    if delta is None or abs(delta) < 1e-12:
        return "same"
    return "better" if (delta > 0) == higher_is_better else "worse"


def metric_rows(summary: dict) -> list[dict]:
    m = summary["metrics"]
    base, delta = m.get("base") or {}, m.get("delta") or {}
    rows = []
    for name, label in summary["labels"].items():
        d = delta.get(name)
        rows.append({"name": name, "label": label["label"], "label_zh": label["label_zh"],
                     "model": _fmt(m["model"].get(name), name), "base": _fmt(base.get(name), name),
                     "delta": ("+" if d is not None and d > 0 else "") + _fmt(d, name) if d is not None else "–",
                     "cls": _delta_class(d, label["higher_is_better"]),
                     "arrow": "↑" if label["higher_is_better"] else "↓"})
    return rows


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def read_curves(run_dir: str | None) -> dict | None:
    """Train loss, eval loss and eval metrics by step from a run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl" if run_dir else None
    if path is None or not path.is_file():
        return None
    curves: dict[str, list[tuple[int, float]]] = {}
    stops = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "early_stop" in row:
            stops.append(row["step"])
        for key, value in row.items():
            if (key == "loss" or key.startswith("eval_")) and isinstance(value, (int, float)) \
                    and not key.endswith(("_runtime", "_per_second")):
                curves.setdefault(key, []).append((row.get("step", 0), float(value)))
    return {"curves": curves, "early_stop": stops} if curves else None


def loss_plot(data: dict) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for key, label in (("loss", "train loss"), ("eval_loss", "eval loss")):
        points = data["curves"].get(key)
        if points:
            ax.plot(*zip(*points), marker="o" if key == "eval_loss" else None, ms=3, label=label)
    for step in data["early_stop"]:
        ax.axvline(step, color="grey", ls="--", lw=1, label="early stop")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def eval_metric_plot(data: dict) -> str | None:
    keys = [k for k in data["curves"] if k.startswith("eval_") and k != "eval_loss"]
    if not keys:
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for key in keys:
        ax.plot(*zip(*data["curves"][key]), marker="o", ms=3, label=key)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def length_plot(samples: list[dict]) -> str | None:
    if not samples:
        return None
    import matplotlib.pyplot as plt

    series = [("reference", [len(s["reference"]) for s in samples]),
              ("model", [len(s["prediction"]) for s in samples])]
    if "base_prediction" in samples[0]:
        series.append(("base", [len(s["base_prediction"]) for s in samples]))
    top = max(max(v) for _, v in series) or 1
    bins = [top * i / 20 for i in range(21)]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist([v for _, v in series], bins=bins, label=[label for label, _ in series])  # bars side by side
    ax.set_xlabel("answer length (characters)")
    ax.set_ylabel("answers")
    ax.legend()
    return _png(fig)


def wins_and_losses(samples: list[dict], rank_by: str | None, higher_is_better: bool = True):
    """The TOP_N samples where the model improves most on the base (and falls behind most) on
    rank_by, as (wins, losses); for a lower-is-better figure (loss) a drop is a win."""
    if not rank_by or not samples or "base_scores" not in samples[0]:
        return [], []
    sign = 1.0 if higher_is_better else -1.0
    scored = [(s["scores"].get(rank_by), s["base_scores"].get(rank_by), s) for s in samples]
    gains = [(sign * (a - b), a, b, s) for a, b, s in scored if a is not None and b is not None and a != b]
    gains.sort(key=lambda t: (t[0], t[3]["index"]))
    wins = [_pair_row(*t) for t in reversed(gains) if t[0] > 0][:TOP_N]
    losses = [_pair_row(*t) for t in gains if t[0] < 0][:TOP_N]
    return wins, losses


def thumbnail(ref) -> str:
    """A question's image (chat.images.ImageRef) as a small base64 PNG; "" when it cannot be read."""
    from danlu.chat.images import ImageError

    try:
        img = ref.open()
    except ImageError as exc:
        log.warning("no thumbnail for %s: %s", ref.label, exc)
        return ""
    img.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pair_row(gain, a, b, s) -> dict:
    change = a - b
    return {"where": s["where"], "prompt": s["prompt"], "reference": s["reference"], "model": s["prediction"],
            "index": s["index"],
            "base": s.get("base_prediction", ""), "model_score": _fmt(a), "base_score": _fmt(b),
            "diff": ("+" if change > 0 else "") + _fmt(change), "judge": (s.get("judge") or {}).get("winner")}


def lowest(samples: list[dict], rank_by: str | None, higher_is_better: bool = True) -> list[dict]:
    """Without a base: the TOP_N worst answers."""
    if not rank_by or not samples or "base_scores" in samples[0]:
        return []
    sign = 1.0 if higher_is_better else -1.0
    scored = sorted((s for s in samples if s["scores"].get(rank_by) is not None),
                    key=lambda s: (sign * s["scores"][rank_by], s["index"]))
    return [{"where": s["where"], "prompt": s["prompt"], "reference": s["reference"], "model": s["prediction"],
             "model_score": _fmt(s["scores"][rank_by]), "index": s["index"]} for s in scored[:TOP_N]]


def bench_rows(summary: dict) -> list[dict]:
    model, base = summary["bench"]["model"] or {}, summary["bench"].get("base") or {}
    rows = []
    for name, s in model.items():
        b = base.get(name, {})
        meta = f"{s['layout']} · {s['split']} · {s['shots']}-shot · {s['style']}"
        rows.append({"name": name, "subject": "all 全部", "n": s["n"], "model": _fmt(s["accuracy"]),
                     "base": _fmt(b.get("accuracy")), "meta": meta})
        for subject, v in s["subjects"].items():
            bv = (b.get("subjects") or {}).get(subject, {})
            rows.append({"name": name, "subject": subject, "n": v["n"], "model": _fmt(v["accuracy"]),
                         "base": _fmt(bv.get("accuracy")), "meta": ""})
    return rows


def image_rows(samples: list[dict], thumbs: dict[int, list[str]]) -> list[dict]:
    """Every question with images (up to 50), its thumbnails and both answers."""
    rows = []
    for s in samples:
        if thumbs.get(s["index"]):
            rows.append({"index": s["index"], "where": s["where"], "prompt": s["prompt"], "reference": s["reference"],
                         "model": s["prediction"], "base": s.get("base_prediction")})
    return rows[:50]


def render(summary: dict, samples: list[dict], thumbs: dict[int, list[str]] | None = None) -> str:
    import jinja2
    import matplotlib

    matplotlib.use("Agg")
    curves = read_curves(summary.get("run_dir"))
    rank_by = summary.get("rank_by")
    higher = summary["labels"].get(rank_by or "", {}).get("higher_is_better", True)
    wins, losses = wins_and_losses(samples, rank_by, higher)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return template.render(
        s=summary, rows=metric_rows(summary), judge=summary.get("judge"), bench=bench_rows(summary),
        harness={k: v for k, v in (summary.get("harness") or {}).items() if v},
        loss_png=loss_plot(curves) if curves else None, eval_png=eval_metric_plot(curves) if curves else None,
        early_stop=curves["early_stop"] if curves else [], length_png=length_plot(samples),
        wins=wins, losses=losses, lowest=lowest(samples, rank_by, higher),
        has_base=summary.get("base") is not None, rank_by=summary.get("rank_by"),
        rank_label=(summary["labels"].get(summary.get("rank_by") or "", {}) or {}).get("label", summary.get("rank_by")),
        json=json, thumbs=thumbs or {}, image_rows=image_rows(samples, thumbs or {}),
    )


def write_report(path: Path, summary: dict, samples: list[dict], thumbs: dict[int, list[str]] | None = None) -> Path:
    path.write_text(render(summary, samples, thumbs), encoding="utf-8")
    log.debug("report written: %s", path)
    return path
