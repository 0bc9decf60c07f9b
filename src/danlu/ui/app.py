"""The web UI: one Gradio Blocks app with a page per step of the furnace. Each page lives in
pages/<name>.py and gets a `Ctx`: the workspace, the jobs this UI started, and the `Labels`
that re-translate every string when the language switch changes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import gradio as gr

from danlu.ui.i18n import LANGS, Labels, lang_from_header, t
from danlu.ui.jobs import Jobs
from danlu.ui.workspace import Workspace

log = logging.getLogger(__name__)
PAGES = ("data", "train", "runs", "chat", "evaluate", "export")
CSS = """
.danlu-missing {opacity: .7}
#danlu-header {align-items: center; gap: 8px; margin: 0; padding: 0}
#danlu-title h1 {margin: 0; font-size: 1.35rem}
#danlu-title p {margin: 2px 0 0; font-size: .85rem; opacity: .75}
#danlu-lang {flex-grow: 0}
.danlu-progress {display: flex; align-items: center; gap: 10px}
.danlu-progress progress {flex: 1; height: 14px}
.danlu-status {margin-top: 4px; font-size: .9rem}
#train-actions button {white-space: nowrap}
"""
FIRST_PAGE = "train"  # as LlamaBoard: the page opens on training


@dataclass
class Ctx:
    ws: Workspace
    jobs: Jobs
    labels: Labels = field(default_factory=Labels)
    lang: object = None  # gr.State holding "en" | "zh"
    shared: dict = field(default_factory=dict)  # components one page hands to another (the Runs picker ...)


def build_app(ws: Workspace, jobs: Jobs | None = None):
    import importlib

    ctx = Ctx(ws, jobs or Jobs())
    with gr.Blocks(title="danlu 丹炉") as demo:
        ctx.lang = gr.State("en")
        with gr.Row(elem_id="danlu-header", equal_height=True):
            ctx.labels.add(gr.Markdown(elem_id="danlu-title", container=False),
                           value=lambda lang: t("app.title", lang) + "\n\n" + _workspace_line(ctx, lang))
            switch = gr.Radio(choices=[(v, k) for k, v in LANGS.items()], value="en", show_label=False,
                              container=False, elem_id="danlu-lang", scale=0, min_width=180)
        with gr.Tabs(selected=FIRST_PAGE):
            for name in PAGES:
                with ctx.labels.add(gr.Tab(id=name, elem_id=f"tab-{name}"), label=f"page.{name}"):
                    importlib.import_module(f"danlu.ui.pages.{name}").build(ctx)
        comps = ctx.labels.components

        def relabel(lang):
            return [lang, *ctx.labels.updates(lang)]

        switch.change(relabel, switch, [ctx.lang, *comps])

        demo.load(first_language, None, switch)
    return demo


def first_language(request: gr.Request) -> str:
    """The browser's language (Accept-Language) picks the first language of the page."""
    return lang_from_header(request.headers.get("accept-language") if request else None)


def _workspace_line(ctx: Ctx, lang: str) -> str:
    from danlu.ui.i18n import t

    return t("app.workspace", lang, path=str(ctx.ws.root))


def check_bind(host: str, auth: str | None) -> tuple[str, str] | None:
    """127.0.0.1 needs nothing; any other address needs --auth USER:PASS. Returns (user, pass)."""
    from danlu.errors import UserError

    loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
    if auth is not None:
        user, sep, password = auth.partition(":")
        if not sep or not user or not password:
            raise UserError("--auth must be USER:PASS (both non-empty)", where="--auth")
        return user, password
    if not loopback:
        raise UserError(f"binding to {host} exposes the UI (and training on this machine) to the network",
                        where="--host", hint="add --auth USER:PASS, or keep the default --host 127.0.0.1")
    return None


def serve(host: str = "127.0.0.1", port: int = 7860, workspace: str = ".", auth: str | None = None,
          block: bool = True):
    """Start the UI; returns (demo, url) when `block` is False (tests)."""
    credentials = check_bind(host, auth)
    ws = Workspace(workspace)
    jobs = Jobs()
    demo = build_app(ws, jobs)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(server_name=host, server_port=port, auth=credentials, prevent_thread_lock=True,
                            quiet=True, css=CSS, footer_links=[], allowed_paths=[str(ws.root)],
                            show_error=True)
    log.debug("danlu ui on %s (workspace %s)", url, ws.root)  # the CLI printed the address once already
    if not block:
        return demo, url
    try:
        demo.block_thread()
    finally:
        jobs.stop_all()
    return demo, url
