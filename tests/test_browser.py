"""End to end in a real browser: voila serves the demo notebook (SMOKE=1: it trains a tiny run in seconds), Chromium
driven by playwright types a caption, clicks Generate, waits for the Stage-I and Stage-II images, saves a screenshot.

Needs Debian's chromium (`apt-get install chromium`) and `pip install voila playwright` (never `playwright install`:
the system Chromium is used). `.ci/run` installs all three and sets REQUIRE_BROWSER_TEST=1, which turns a missing
piece into a failure instead of a skip. STACKGAN_SCREENSHOTS=DIR keeps the screenshots there.
"""
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / 'nbs' / 'tutorials' / '04_caption_widget.ipynb'
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
CAPTION = 'this bird has wings that are black and a crown that is white'

MISSING = [what for what, ok in (('chromium (apt-get install -y chromium)', Path(CHROMIUM).is_file()),
                                 ('voila (pip install voila)', importlib.util.find_spec('voila') is not None),
                                 ('playwright (pip install playwright)', importlib.util.find_spec('playwright') is not None))
           if not ok]
if MISSING and os.environ.get('REQUIRE_BROWSER_TEST') == '1':
    raise RuntimeError(f'REQUIRE_BROWSER_TEST=1 but the browser test lacks {", ".join(MISSING)}')
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f'the browser test needs {", ".join(MISSING)} (.ci/run installs them)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def voila(tmp_path):
    "URL of the demo notebook served by voila on 127.0.0.1 (stopped afterwards)."
    port, log = free_port(), open(tmp_path / 'voila.log', 'w')
    env = {**os.environ, 'SMOKE': '1', 'TQDM_DISABLE': '1', 'MPLBACKEND': 'Agg'}
    proc = subprocess.Popen([sys.executable, '-m', 'voila', str(NOTEBOOK), '--no-browser', f'--port={port}',
                             '--Voila.ip=127.0.0.1'], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f'http://127.0.0.1:{port}/'
    try:
        for _ in range(300):                                 # the server itself starts in about a second
            if proc.poll() is not None: break
            try:
                urllib.request.urlopen(url + 'api', timeout=1)
                break
            except urllib.error.HTTPError: break               # it answers: it is up
            except OSError: time.sleep(0.2)
        if proc.poll() is not None: pytest.fail(f'voila exited: {(tmp_path / "voila.log").read_text()[-3000:]}')
        yield url
    finally:
        proc.terminate()
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


def keep(path: Path) -> None:
    "Copy a screenshot to $STACKGAN_SCREENSHOTS if set."
    if os.environ.get('STACKGAN_SCREENSHOTS'):
        out = Path(os.environ['STACKGAN_SCREENSHOTS'])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)


def image_sizes(page, cls):
    return page.eval_on_selector_all(f'img.{cls}', 'els => els.map(e => [e.naturalWidth, e.naturalHeight, e.width])')


def test_type_a_caption_click_generate_see_both_stages(voila, tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={'width': 1300, 'height': 1000})
            page.goto(voila, timeout=60_000)
            # voila shows the cells once all have run (the notebook trains its tiny run first)
            box = page.locator('.stackgan-caption-widget textarea')
            box.wait_for(state='visible', timeout=240_000)
            box.fill(CAPTION)
            page.get_by_role('button', name='Generate').click()
            page.wait_for_function(
                """caption => {
                    const head = document.querySelector('.stackgan-caption');
                    const imgs = [...document.querySelectorAll('img.stackgan-stage1, img.stackgan-stage2')];
                    return head && head.textContent.includes(caption) && imgs.length === 8
                           && imgs.every(i => i.complete && i.naturalWidth > 0);
                }""", arg=CAPTION, timeout=60_000)
            assert image_sizes(page, 'stackgan-stage1') == [[64, 64, 128]] * 4    # true size 64, shown 2x
            assert image_sizes(page, 'stackgan-stage2') == [[256, 256, 256]] * 4
            assert page.locator('.stackgan-error').count() == 0
            assert page.eval_on_selector('img.stackgan-stage1', 'e => getComputedStyle(e).imageRendering') == 'pixelated'
            shot = tmp_path / 'caption_widget.png'
            page.locator('.stackgan-caption-widget').screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b'\x89PNG'
            keep(shot)

            box.fill('')                                                          # a problem: shown, not raised
            page.get_by_role('button', name='Generate').click()
            page.locator('.stackgan-error').wait_for(timeout=30_000)
            assert 'The caption is empty' in page.locator('.stackgan-error').inner_text()
            assert page.locator('img.stackgan-stage1').count() == 0
        finally:
            browser.close()
