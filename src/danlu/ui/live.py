"""A run as the Train and Runs pages show it while it trains: a status line, a progress bar with
the ETA, the loss and learning-rate curves (hidden until there is a point to draw, so no empty
strips) and the log tail — all read from the run directory, which is all `danlu train` leaves."""

from __future__ import annotations

import html
import time

from danlu.errors import UserError
from danlu.ui.i18n import t
from danlu.ui.launch import JOB_FILE, progress, read_metrics, run_log, run_status

_SEEN: dict[str, tuple[float, int]] = {}  # run → (when, step) first seen training: the ETA's origin


def curves(rows: list[dict]):
    """(loss frame, learning-rate frame) for the line plots; eval_loss rows as a second series."""
    import pandas as pd

    loss = [{"step": r["step"], "loss": r["loss"], "series": "train"} for r in rows
            if r.get("loss") is not None and "step" in r]
    loss += [{"step": r["step"], "loss": r["eval_loss"], "series": "eval"} for r in rows
             if r.get("eval_loss") is not None and "step" in r]
    lr = [{"step": r["step"], "lr": r["lr"]} for r in rows if r.get("lr") is not None and "step" in r]
    return (pd.DataFrame(loss, columns=["step", "loss", "series"]), pd.DataFrame(lr, columns=["step", "lr"]))


def eta_seconds(run: str, status: str, step: int, total: int | None, now: float | None = None) -> float | None:
    """Seconds left at the pace seen since this UI first saw the run training (None: not yet known)."""
    now = time.time() if now is None else now
    if status != "running" or not total:
        _SEEN.pop(run, None)
        return None
    seen = _SEEN.setdefault(run, (now, step))
    if step <= seen[1] or now <= seen[0]:
        return None
    return (now - seen[0]) / (step - seen[1]) * max(0, total - step)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_html(step: int, total: int | None, eta: str | None, lang: str) -> str:
    """A progress bar; the ETA only while training (eta None: not training)."""
    pct = min(100.0, 100.0 * step / total) if total else 0.0
    text = t("live.progress", lang, step=step, total=total or "?", pct=f"{pct:.0f}")
    if eta is not None:
        text += " · " + t("live.eta", lang, eta=eta)
    return (f'<div class="danlu-progress"><progress max="100" value="{pct:.1f}"></progress>'
            f"<span>{html.escape(text)}</span></div>")


def snapshot(ws, jobs, run: str, lang: str) -> dict:
    """Everything shown about one run: line, progress (html), loss / lr frames (None: nothing yet), log."""
    empty = {"line": "", "progress": "", "loss": None, "lr": None, "log": "", "status": "none"}
    if not run:
        return {**empty, "line": t("runs.none", lang)}
    try:
        run_dir = ws.resolve(run, must_exist=True)
    except UserError as exc:
        return {**empty, "line": f"⚠️ {exc}"}
    rows = read_metrics(run_dir)
    step, total = progress(run_dir, rows)
    status = run_status(ws, jobs, ws.relative(run_dir))
    last = next((r for r in reversed(rows) if r.get("loss") is not None), {})
    line = t("runs.status_line", lang, run=ws.relative(run_dir), status=t(f"runs.status.{status}", lang), step=step,
             total=total or "?", loss=f"{last['loss']:.4f}" if "loss" in last else "-")
    loss, lr = curves(rows)
    eta = eta_seconds(ws.relative(run_dir), status, step, total)
    shown = status == "running" or step > 0 or (run_dir / JOB_FILE).exists()
    eta_text = fmt_duration(eta) if status == "running" else None
    return {"line": line, "progress": progress_html(step, total, eta_text, lang) if shown else "",
            "loss": loss if len(loss) else None, "lr": lr if len(lr) else None, "log": run_log(run_dir),
            "status": status}


def plot_updates(gr, snap: dict) -> tuple:
    """LinePlot updates: the frame and visible when there is a point, hidden otherwise."""
    return tuple(gr.update(value=snap[k], visible=True) if snap[k] is not None else gr.update(visible=False)
                 for k in ("loss", "lr"))
