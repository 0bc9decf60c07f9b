"""The issue's flow in a real browser: open the UI, switch language, upload the quickstart data and
see the preview, start a run on builtin:tiny from the form, watch the loss curve appear, chat with
the result. A screenshot of every page is saved under test-artefacts/browser/."""

from __future__ import annotations

import socket

import pytest

from tests.browser.conftest import CHROMIUM
from tests.conftest import ROOT
from tests.e2e.test_ui import start_ui, wait_http

pytestmark = pytest.mark.browser
QUICKSTART = ROOT / "examples" / "data" / "support_qa.jsonl"
TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws = tmp_path_factory.mktemp("ws")
    proc = start_ui(ws, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, timeout=180)
        yield f"http://127.0.0.1:{port}/", ws
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        pg.goto(ui[0])
        yield pg
        browser.close()


def tab(page, name: str):
    page.locator(f"#tab-{name}-button").click()


def fill(page, elem_id: str, text: str, enter: bool = False):
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(text)
    if enter:
        box.press("Enter")
    else:
        box.blur()


def test_the_whole_flow(page, ui, artefacts):
    from playwright.sync_api import expect

    _, ws = ui
    expect(page.get_by_role("tab", name="Data")).to_be_visible()
    page.screenshot(path=artefacts / "00-start-en.png", full_page=True)

    page.get_by_text("中文", exact=True).click()  # language switch: every label follows
    expect(page.get_by_role("tab", name="训练")).to_be_visible()
    expect(page.get_by_role("button", name="预览")).to_be_visible()
    page.screenshot(path=artefacts / "01-data-zh.png", full_page=True)
    page.get_by_text("English", exact=True).click()
    expect(page.get_by_role("tab", name="Train")).to_be_visible()

    # Data: upload the quickstart file, preview it
    page.locator("#data-upload input[type=file]").set_input_files(str(QUICKSTART))
    expect(page.locator("#data-status")).to_contain_text("data/support_qa.jsonl", timeout=TIMEOUT_MS)
    assert (ws / "data" / "support_qa.jsonl").read_bytes() == QUICKSTART.read_bytes()
    page.locator("#data-preview").click()
    expect(page.locator("#data-status")).to_contain_text("alpaca", timeout=120_000)
    expect(page.locator("#data-samples")).not_to_contain_text(str(ws))  # paths shown workspace-relative
    expect(page.locator("#data-samples")).to_contain_text("password", timeout=60_000)
    page.screenshot(path=artefacts / "02-data-preview.png", full_page=True)

    # Train: the form, on builtin:tiny
    tab(page, "train")
    fill(page, "f-model-name_or_path", "builtin:tiny")
    fill(page, "f-data-train", "data/support_qa.jsonl", enter=True)
    fill(page, "f-train-max_steps", "4")
    fill(page, "f-train-logging_steps", "1")
    fill(page, "f-train-batch_size", "4")
    fill(page, "f-train-max_length", "128")
    fill(page, "f-train-report_to", "")
    fill(page, "f-output_dir", "runs/browser")
    page.screenshot(path=artefacts / "03-train-form.png", full_page=True)
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text("runs/browser", timeout=TIMEOUT_MS)

    # Runs: status and the loss curve appear while / after it trains
    tab(page, "runs")
    expect(page.locator("#runs-status")).to_contain_text("finished", timeout=TIMEOUT_MS)
    expect(page.locator("#runs-loss canvas, #runs-loss svg").first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("#runs-log")).to_be_visible()
    assert (ws / "runs" / "browser" / "adapter" / "danlu.json").is_file()
    page.screenshot(path=artefacts / "04-runs.png", full_page=True)

    # Chat: the run against its base, side by side
    tab(page, "chat")
    fill(page, "chat-tuned", "runs/browser", enter=True)
    expect(page.locator("#chat-base input")).to_have_value("builtin:tiny", timeout=TIMEOUT_MS)
    fill(page, "chat-prompt", "What is FlowDesk?")
    page.locator("#chat-send").click()
    expect(page.locator("#chat-tuned-out")).to_contain_text("What is FlowDesk?", timeout=TIMEOUT_MS)
    expect(page.locator("#chat-tuned-out .bot, #chat-tuned-out [data-testid=bot]").first).to_be_visible(
        timeout=TIMEOUT_MS)
    page.screenshot(path=artefacts / "05-chat.png", full_page=True)

    for name in ("evaluate", "export"):
        tab(page, name)
        page.wait_for_timeout(500)
        page.screenshot(path=artefacts / f"06-{name}.png", full_page=True)
    assert len(list(artefacts.glob("*.png"))) >= 8


def test_traversal_from_the_browser_is_refused(page, ui):
    from playwright.sync_api import expect

    tab(page, "data")
    fill(page, "data-pick", "../../etc/passwd", enter=True)
    page.locator("#data-preview").click()
    expect(page.locator("#data-status")).to_contain_text("outside the workspace", timeout=60_000)
