"""End to end in a real browser: headless Chromium (Playwright) drives `tunewise ui` on a tiny model.

Configure (parameters, check, YAML, preview) -> train (live curve, verdict) -> evaluate -> chat ->
export -> switch to Chinese. Screenshots of each tab go to tmp_path, or to $TUNEWISE_SCREENSHOTS
(docs/make_screenshots.py sets it to docs/screenshots).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
STEPS = 40  # long enough that the board shows the run in progress even on a fast, idle machine
REPO = Path(__file__).resolve().parents[2]

import playwright.sync_api as sync_api  # noqa: E402  (a requirement: missing means a broken install, not a skip)

from tunewise.ui import knowledge  # noqa: E402

# `make install` installs Debian's chromium; without it this test must fail loudly, not be skipped.
assert Path(CHROMIUM).exists(), "needs Debian's chromium at /usr/bin/chromium: run `make browser`"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the board exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the board did not answer at {url} within {timeout}s")


@pytest.fixture
def board(tmp_path, tiny_model_dirs, tw_home):
    port = _free_port()
    root = tmp_path / "runs"
    env = dict(os.environ, TUNEWISE_HOME=str(tw_home), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), NO_PROXY="127.0.0.1,localhost")
    log = open(tmp_path / "board.log", "w")
    # own process group: the board and every job it starts are ended together at teardown
    proc = subprocess.Popen([sys.executable, "-m", "tunewise", "ui", "--port", str(port), "--root", str(root)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc, 120)
        yield url, root
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the board stops its jobs, then exits
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group
        except ProcessLookupError:
            pass
        proc.wait(10)
        log.close()


def _shot(page, name: str, tmp_path: Path) -> None:
    out = Path(os.environ.get("TUNEWISE_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    raw = tmp_path / f"{name}.raw.png"
    page.screenshot(path=str(raw), full_page=True)
    from PIL import Image

    img = Image.open(raw).convert("RGB")
    img = img.crop((0, 0, img.width, min(img.height, 2600)))  # the long Configure page: its first screens
    if img.width > 960:
        img = img.resize((960, round(img.height * 960 / img.width)), Image.LANCZOS)
    img.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out / f"{name}.png", optimize=True)


def _box(page, elem_id: str):
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def _set_number(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def _text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def _wait_text(page, elem_id: str, pattern: str, timeout: float) -> str:
    end = time.time() + timeout
    txt = ""
    while time.time() < end:
        txt = _text(page, elem_id)
        if re.search(pattern, txt, re.S):
            return txt
        time.sleep(0.5)
    raise AssertionError(f"#{elem_id} never matched {pattern!r} within {timeout}s; it shows: {txt[:800]!r}")


def test_board_end_to_end(board, tmp_path):
    url, root = board
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                   "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(url)
            page.wait_for_selector("#tw-check", timeout=60_000)

            # --- configure: name, demo data, parameters, more settings, check, preview
            _box(page, "tw-run-name").fill("ui-run")
            page.click("#tw-demo-data")
            assert _wait_text_value(page, "tw-data-path", r"demo\.jsonl", 20)
            _set_number(page, "tw-p-train-max_steps", STEPS)
            _set_number(page, "tw-p-train-learning_rate", 0.0001)
            _set_number(page, "tw-p-train-logging_steps", 2)
            _set_number(page, "tw-p-train-eval_steps", 8)
            _set_number(page, "tw-p-train-per_device_batch_size", 8)
            _set_number(page, "tw-p-train-gradient_accumulation_steps", 1)
            _set_number(page, "tw-p-data-max_length", 128)
            _set_number(page, "tw-p-method-lora_alpha", 4)  # alpha/r = 4/16: the advisor's lint flags it
            _box(page, "tw-more").fill("data.clean.dedup_near=false")
            page.click("#tw-check")
            check = _wait_text(page, "tw-check-result", r"valid", 120)
            if knowledge.advise_available():  # advice and lint come from the advise stage
                assert "lora-alpha-ratio" in check, check
                assert "Hardware" in _text(page, "tw-advisor")
                assert "advisor:" in _text(page, "tw-p-train-learning_rate")
            else:
                assert "unavailable" in _text(page, "tw-advisor")
            yaml_text = (root / ".board" / "ui-run.yaml").read_text(encoding="utf-8")
            assert f"max_steps: {STEPS}" in yaml_text and "learning_rate: 0.0001" in yaml_text and "dedup_near: false" in yaml_text
            assert "name: ui-run" in _text(page, "tw-yaml")  # the editor renders only the lines in view
            # the download is the same file `tunewise train` would take
            href = page.locator("#tw-yaml-file a").first.get_attribute("href")
            assert href and "ui-run.yaml" in href
            with urllib.request.urlopen(href if href.startswith("http") else url.rstrip("/") + href, timeout=10) as r:
                assert r.read().decode("utf-8") == yaml_text
            # every parameter carries its explanation
            assert "Peak learning rate" in _text(page, "tw-p-train-learning_rate") or "学习率" in _text(page, "tw-p-train-learning_rate")
            page.click("#tw-preview-btn")
            page.wait_for_selector("#tw-preview mark.tw-sup", timeout=120_000)
            assert "supervised" in _text(page, "tw-preview")
            _wait_text_value(page, "tw-data-report", r"train", 10)
            _shot(page, "configure", tmp_path)

            # --- train: start, live curve, verdict
            page.get_by_role("tab", name=re.compile("Train")).click()
            page.click("#tw-start")
            started = _wait_text(page, "tw-train-msg", r"Training started", 120)
            if knowledge.advise_available():
                assert "Checks before training" in started and "lora-alpha-ratio" in started, started
            first = _wait_text(page, "tw-status", r"running", 60)
            # a step shown while the run is still going (so the view is live, not drawn once at the end) ...
            s1 = _wait_step(page, lambda s: 1 <= s < STEPS, 150)
            page.wait_for_selector("#tw-loss-plot canvas, #tw-loss-plot svg", timeout=30_000)
            s2 = _wait_step(page, lambda s: s > s1, 150)
            assert s2 > s1, first
            # after a few logged steps the curves are drawn, not just their axes: a visible train-loss line ...
            _wait_lines(page, "tw-loss-plot", 1, 60)
            _wait_lines(page, "tw-lr-plot", 1, 30)
            verdict = _wait_text(page, "tw-verdict", r"Verdict", 180)
            assert re.search(r"underfit|well_fit|overfit|gap_growing|val_stagnant|stagnant_high|unstable|too_short|diverged|does_not_stop|not_learned_yet", verdict)
            assert "What to do" in verdict
            status = _text(page, "tw-status")
            assert "finished" in status and f"{STEPS}/{STEPS}" in status
            run = root / "ui-run"
            assert (run / "adapter").exists() and (run / "ui_train.log").exists()
            # ... and by the end both train and validation loss, each in its own colour
            _wait_lines(page, "tw-loss-plot", 2, 30)
            _shot(page, "train", tmp_path)

            # --- evaluate (background) and chat
            page.get_by_role("tab", name=re.compile("Evaluate")).click()
            _set_number(page, "tw-eval-samples", 4)
            page.click("#tw-eval-btn")
            _box(page, "tw-chat-input").fill("Who are you?")
            page.click("#tw-send")
            page.wait_for_function(
                "() => { const c = document.querySelector('#tw-chatbot'); return c && c.innerText.includes('Who are you?')"
                " && c.querySelectorAll('.message, [data-testid=bot], [data-testid=user]').length >= 2 }", timeout=120_000)
            _wait_text(page, "tw-eval-status", r"report\.md|Report", 180)
            table = _text(page, "tw-eval-table")
            assert "perplexity" in table and "before" in table
            _shot(page, "evaluate_chat", tmp_path)

            # --- export
            page.get_by_role("tab", name=re.compile("Export")).click()
            page.click("#tw-export-btn")
            result = _wait_text(page, "tw-export-result", r"PASS|FAIL|not installed", 240)
            _shot(page, "export", tmp_path)
            if "not installed" not in result:
                assert "PASS" in result, result

            # --- language switch
            page.locator("#tw-lang").get_by_text("中文").click()
            page.get_by_role("tab", name=re.compile("训练")).wait_for(timeout=20_000)
            page.get_by_role("tab", name=re.compile("配置")).click()
            _wait_text(page, "tw-run-name", r"运行名称", 10)
            _shot(page, "configure_zh", tmp_path)
        finally:
            browser.close()


def _wait_text_value(page, elem_id: str, pattern: str, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if re.search(pattern, _box(page, elem_id).input_value()):
            return True
        time.sleep(0.3)
    raise AssertionError(f"#{elem_id} value never matched {pattern!r}: {_box(page, elem_id).input_value()!r}")


def _wait_step(page, ok, timeout: float) -> int:
    end = time.time() + timeout
    step = -1
    while time.time() < end:
        m = re.search(rf"(?<![\d.])(\d+)/{STEPS}(?!\d)", _text(page, "tw-status"))
        if m:
            step = int(m.group(1))
            if ok(step):
                return step
        time.sleep(0.3)
    raise AssertionError(f"the step shown never advanced as expected (last {step}); status: {_text(page, 'tw-status')!r}")


# Lines in a plot that a reader can see: Vega's SVG path of each line mark, with at least two points
# and a stroke that paints. A series the colour scale does not know still gets a path (with its `d`),
# only without a stroke, so counting paths alone would not catch an empty-looking chart.
_DRAWN_LINES = """(id) => [...document.querySelectorAll('#' + id + ' svg g.mark-line path')].filter(p => {
    const cs = getComputedStyle(p);
    return /L/.test(p.getAttribute('d') || '') && cs.stroke !== 'none' && cs.visibility !== 'hidden'
        && parseFloat(cs.strokeOpacity) > 0 && parseFloat(cs.strokeWidth) > 0 && parseFloat(cs.opacity) > 0;
}).map(p => getComputedStyle(p).stroke)"""


def _wait_lines(page, elem_id: str, n: int, timeout: float) -> list[str]:
    """Wait until #elem_id shows at least n visible lines of different colours; their colours."""
    end = time.time() + timeout
    while True:
        strokes = page.evaluate(_DRAWN_LINES, elem_id)
        if len(set(strokes)) >= n:
            return strokes
        if time.time() > end:
            paths = page.evaluate("(id) => [...document.querySelectorAll('#' + id + ' svg path')].map(p => "
                                  "[(p.getAttribute('d') || '').slice(0, 40), getComputedStyle(p).stroke])", elem_id)
            raise AssertionError(f"#{elem_id} draws {len(set(strokes))} visible line(s), expected {n}; "
                                 f"its paths (d, stroke): {paths[:12]}")
        time.sleep(0.5)
