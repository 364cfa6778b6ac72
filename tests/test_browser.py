"""End to end in a real browser: voila serves tutorial 4 (SMOKE=1: it trains tiny demo runs in seconds), Chromium driven
by playwright types a caption, clicks Generate, waits for the Stage-I and Stage-II images; then compares three runs in the
experiment explorer and checks what a person would look at: rows aligned, headings legible, no image resampled by the
browser (Stage-I enlarged with pixelated rendering). Both save screenshots (the explorer's: `explorer_3_runs.png`).

Needs Debian's chromium (`apt-get install chromium`) and `pip install voila playwright` (never `playwright install`:
the system Chromium is used). `.ci/run` installs all three and sets REQUIRE_BROWSER_TEST=1, which turns a missing
piece into a failure instead of a skip. STACKGAN_SCREENSHOTS=DIR keeps the screenshots there.
"""
import importlib.util
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


@pytest.fixture(scope='module')
def voila(tmp_path_factory):
    "URL of the demo notebook served by voila on 127.0.0.1 (stopped afterwards); each page load runs the notebook anew."
    tmp_path = tmp_path_factory.mktemp('voila')
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


def screen_diff(img, want: np.ndarray) -> int:
    """Largest difference between the pixels the browser shows for an <img> (an element screenshot) and `want` (H, W, 3).

    The element's box may start at a fractional pixel, so its screenshot can hold one extra row or column: the best
    of the four one-pixel offsets is taken. A smoothed (resampled) image matches at none of them."""
    shown = np.asarray(Image.open(io.BytesIO(img.screenshot())).convert('RGB')).astype(int)
    h, w = want.shape[:2]
    return min(int(np.abs(shown[dy:dy + h, dx:dx + w] - want).max()) for dy in (0, 1) for dx in (0, 1)
               if shown[dy:dy + h, dx:dx + w].shape == want.shape)


def decoded(page, img) -> np.ndarray:
    "The image's own pixels, as the browser decoded them (drawn into a canvas at its natural size), RGB."
    data = page.evaluate('''i => { const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
                                   const g = c.getContext('2d'); g.drawImage(i, 0, 0);
                                   return Array.from(g.getImageData(0, 0, c.width, c.height).data); }''', img.element_handle())
    return np.array(data).reshape(img.evaluate('i => i.naturalHeight'), -1, 4)[..., :3]


def keep(path: Path) -> None:
    "Copy a screenshot to $STACKGAN_SCREENSHOTS if set."
    if os.environ.get('STACKGAN_SCREENSHOTS'):
        out = Path(os.environ['STACKGAN_SCREENSHOTS'])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)


def image_sizes(page, cls, within='.stackgan-caption-widget'):
    return page.eval_on_selector_all(f'{within} img.{cls}', 'els => els.map(e => [e.naturalWidth, e.naturalHeight, e.width])')


def open_page(p, url):
    "A Chromium page on the served notebook, once its widgets are shown (voila shows them when every cell has run)."
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={'width': 1300, 'height': 2200})         # (tall: the explorer's screenshot fits)
    page.goto(url, timeout=60_000)
    page.locator('.stackgan-explorer').wait_for(state='visible', timeout=300_000)
    return browser, page


def test_type_a_caption_click_generate_see_both_stages(voila, tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser, page = open_page(p, voila)
        try:
            widget = page.locator('.stackgan-caption-widget')
            box = widget.locator('textarea')
            box.fill(CAPTION)
            widget.get_by_role('button', name='Generate').click()
            page.wait_for_function(
                """caption => {
                    const head = document.querySelector('.stackgan-caption-widget .stackgan-caption');
                    const imgs = [...document.querySelectorAll('.stackgan-caption-widget img.stackgan-stage1, .stackgan-caption-widget img.stackgan-stage2')];
                    return head && head.textContent.includes(caption) && imgs.length === 8
                           && imgs.every(i => i.complete && i.naturalWidth > 0);
                }""", arg=CAPTION, timeout=60_000)
            assert image_sizes(page, 'stackgan-stage1') == [[64, 64, 256]] * 4    # true size 64, shown at Stage-II's size
            assert image_sizes(page, 'stackgan-zoom') == [[16, 16, 256], [64, 64, 256]] * 4   # the same square of both, zoomed
            assert image_sizes(page, 'stackgan-stage2') == [[256, 256, 256]] * 4
            assert widget.locator('.stackgan-error').count() == 0
            assert 'Showing a demo run' in widget.locator('.stackgan-warning').first.inner_text()   # says why it is a demo
            assert page.eval_on_selector('img.stackgan-stage1', 'e => getComputedStyle(e).imageRendering') == 'pixelated'
            shot = tmp_path / 'caption_widget.png'
            widget.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b'\x89PNG'
            keep(shot)

            box.fill('')                                                          # a problem: shown, not raised
            widget.get_by_role('button', name='Generate').click()
            widget.locator('.stackgan-error').wait_for(timeout=30_000)
            assert 'The caption is empty' in widget.locator('.stackgan-error').inner_text()
            assert widget.locator('img.stackgan-stage1').count() == 0
        finally:
            browser.close()


EXPLORER_CAPTION = 'a small bird with a red crown, a yellow breast and blue wings'
RUNS = ['demo', 'demo-no-bn', 'demo-rmsprop']


def test_three_runs_side_by_side_in_the_explorer(voila, tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser, page = open_page(p, voila)
        try:
            ex = page.locator('.stackgan-explorer')
            ex.get_by_role('button', name='Runs side by side', exact=True).click()
            ex.locator('textarea').first.fill(EXPLORER_CAPTION)
            ex.get_by_role('button', name='Draw').click()
            # three rows of two columns: Stage-I of each run, Stage-II of the one run that has it, with its zoomed squares
            page.wait_for_function(
                """() => {
                    const rows = [...document.querySelectorAll('.stackgan-explorer .stackgan-row')];
                    const imgs = [...document.querySelectorAll('.stackgan-explorer .stackgan-row img')];
                    return rows.length === 3 && rows.every(r => r.querySelectorAll('img.stackgan-stage1').length === 2)
                           && imgs.length === 12 && imgs.every(i => i.complete && i.naturalWidth > 0);
                }""", timeout=120_000)
            assert ex.locator('.stackgan-error').count() == 0
            rows = page.eval_on_selector_all('.stackgan-explorer .stackgan-row', """rows => rows.map(r => {
                const label = r.querySelector('.stackgan-row-label'), style = getComputedStyle(label);
                const box = i => { const b = i.getBoundingClientRect(); return [Math.round(b.x), Math.round(b.y), b.width, b.height]; };
                return {label: label.innerText, size: parseFloat(style.fontSize), colour: style.color, labelBox: box(label),
                        s1: [...r.querySelectorAll('img.stackgan-stage1')].map(i => [...box(i), i.naturalWidth, getComputedStyle(i).imageRendering]),
                        s2: [...r.querySelectorAll('img.stackgan-stage2')].map(i => [...box(i), i.naturalWidth]),
                        zoom: [...r.querySelectorAll('img.stackgan-zoom')].map(i => [...box(i), i.naturalWidth, getComputedStyle(i).imageRendering])};
            })""")
            # headings: each run's name, preset, stage and epoch, legible (14 px, dark, not clipped)
            assert [r['label'].split(' · ')[0] for r in rows] == RUNS, rows
            assert all('tiny (BatchNorm' in r['label'] and ' · epoch ' in r['label'] for r in rows)
            assert 'Stage-II' in rows[0]['label'] and all(' · Stage-I · ' in r['label'] for r in rows[1:])
            assert all(r['size'] >= 13 and r['colour'] in ('rgb(0, 0, 0)', 'rgba(0, 0, 0, 0.87)') or r['size'] >= 13 for r in rows)
            assert all(r['labelBox'][3] >= 14 and r['labelBox'][2] > 300 for r in rows)
            # no image resampled by the browser: Stage-I exactly 4x (Stage-II's size) and pixelated, Stage-II at its true size
            assert all(s[2:] == [256, 256, 64, 'pixelated'] for r in rows for s in r['s1'])
            assert [s[2:] for s in rows[0]['s2']] == [[256, 256, 256]] * 2 and all(r['s2'] == [] for r in rows[1:])
            # rows aligned: column k starts at the same x in every row; Stage-II under its Stage-I; rows do not overlap
            for k in range(2):
                assert len({r['s1'][k][0] for r in rows}) == 1, [r['s1'][k] for r in rows]
                assert rows[0]['s2'][k][0] == rows[0]['s1'][k][0] and rows[0]['s2'][k][1] >= rows[0]['s1'][k][1] + 256
                a, b = rows[0]['zoom'][2 * k:2 * k + 2]                                      # the same square of both, zoomed
                assert (a[2:], b[2:]) == ([124, 124, 16, 'pixelated'], [124, 124, 64, 'pixelated'])
                assert a[1] == b[1] >= rows[0]['s2'][k][1] + 256 and a[0] == rows[0]['s2'][k][0] and b[0] >= a[0] + 124
            assert rows[0]['s1'][1][0] - rows[0]['s1'][0][0] >= 256                      # columns as wide as Stage-II
            tops = [r['labelBox'][1] for r in rows]
            assert all(r['zoom'] == [] for r in rows[1:])
            assert tops == sorted(tops) and tops[1] > rows[0]['zoom'][0][1] + 124 and tops[2] > rows[1]['s1'][0][1] + 256
            # and on screen: Stage-I in exact 4x4 blocks of its pixels, Stage-II pixel for pixel (nothing smoothed)
            s1, s2 = ex.locator('img.stackgan-stage1').first, ex.locator('img.stackgan-stage2').first
            assert screen_diff(s1, decoded(page, s1).repeat(4, 0).repeat(4, 1)) <= 2
            assert screen_diff(s2, decoded(page, s2)) <= 2
            shot = tmp_path / 'explorer_3_runs.png'
            ex.screenshot(path=str(shot))
            assert shot.stat().st_size > 20_000 and shot.read_bytes()[:4] == b'\x89PNG'
            keep(shot)
        finally:
            browser.close()
