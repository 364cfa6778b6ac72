"""Headless tests of the caption widget and the experiment explorer, driven as a user drives them (set the caption, click,
move the slider, look at the images).

They run against whichever ipywidgets is importable: `.ci/run` runs this file twice, with the pinned ipywidgets 8 and
with ipywidgets 7.7.1 (what Colab ships) first on PYTHONPATH. `EXPECT_IPYWIDGETS` makes the run prove its version.
"""
import json
import os
import threading
import time
import warnings
from io import BytesIO
from pathlib import Path

import ipywidgets
import numpy as np
import pytest
import torch
from PIL import Image

from stackgan_nb.runs import Run, runs_root
from stackgan_nb.sample import Sampler, default_examples, examples_from_data, png_bytes
from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.testing import fixed_weights_, make_tiny_runs, save_fixed_run
from stackgan_nb.widgets import CaptionWidget, ExperimentExplorer, LoadedSampler, compose_view, run_or_demo

CAPTION = 'a small bird with a red crown, a yellow breast and blue wings'


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return make_tiny_runs(tmp_path_factory.mktemp('tiny'))


@pytest.fixture(scope='module')
def sampler(tiny):
    return Sampler('demo', runs_root=tiny[1])


def png_size(img): return Image.open(BytesIO(img.value)).size


def test_ipywidgets_version_is_the_expected_one():
    want = os.environ.get('EXPECT_IPYWIDGETS')
    if want is None: pytest.skip('EXPECT_IPYWIDGETS not set (.ci/run sets it)')
    assert ipywidgets.__version__ == want, f'testing ipywidgets {ipywidgets.__version__}, expected {want}'


def test_type_click_and_see_both_stages(sampler, tiny):
    w = CaptionWidget(sampler, examples=examples_from_data(tiny[0], n=3), n=3)
    w.caption.value, w.seed.value = CAPTION, 5
    w.button.click()
    assert w.messages == [] and len(w.sample_views) == 3
    assert [(png_size(a), png_size(b)) for a, b in w.sample_views] == [((64, 64), (256, 256))] * 3
    ref = sampler.generate(CAPTION, n=3, seed=5)
    assert [a.value for a, _ in w.sample_views] == [png_bytes(x) for x in ref.stage1]
    assert [b.value for _, b in w.sample_views] == [png_bytes(x) for x in ref.stage2]
    assert bytes(w.sample_views[0][1].value).startswith(b'\x89PNG')         # 8 returns a memoryview, 7 bytes
    assert CAPTION in w.gallery.children[0].value and 'seed 5' in w.gallery.children[0].value
    assert (w.sample_views[0][0].width, w.sample_views[0][1].width) == ('256', '256')      # Stage-I at Stage-II's size
    assert [(png_size(a), png_size(b), a.width) for a, b in w.zoom_views] == [((16, 16), (64, 64), '256')] * 3   # one square of both
    assert (w.button.disabled, w.button.description) == (False, 'Generate')
    w.close()


def test_same_seed_same_images_ca_toggle(sampler):
    w = CaptionWidget(sampler, n=2)
    w.caption.value = CAPTION
    w.generate()
    first = [a.value for a, _ in w.sample_views]
    w.button.click()
    assert [a.value for a, _ in w.sample_views] == first                 # same seed: same images
    w.use_ca.value = False
    w.button.click()
    assert w.result.use_ca is False and 'Conditioning Augmentation off' in w.gallery.children[0].value
    assert [a.value for a, _ in w.sample_views] == [png_bytes(x) for x in sampler.generate(CAPTION, 2, 0, use_ca=False).stage1]
    w.n.value = 99                                                        # bounded: at most max_n
    assert w.n.value == 16
    w.close()


def test_problems_are_shown_not_raised(sampler):
    w = CaptionWidget(sampler, n=2)
    w.caption.value = CAPTION
    w.button.click()
    w.caption.value = ''
    w.button.click()                                                      # no exception
    assert w.messages == [('error', 'The caption is empty: type a sentence describing a bird.')]
    assert w.sample_views == [] and 'stackgan-error' in w.notice.value      # no stale images under the message
    w.caption.value = 'a red bird ☺ <b>'
    w.button.click()
    assert w.messages == [('warning', 'These characters are ignored by the text encoder: < > ☺')]
    assert len(w.sample_views) == 2 and '&lt;b&gt;' in w.gallery.children[0].value
    w.caption.value = '?!'
    w.button.click()
    assert w.messages[0][0] == 'error' and 'has no words (letters and digits): describe the bird' in w.messages[0][1]
    w.close()


def test_examples_fill_the_caption(sampler, tiny):
    examples = examples_from_data(tiny[0], n=3)
    w = CaptionWidget(sampler, examples=examples)
    assert w.caption.value == examples[0]
    w.examples.value = examples[2]
    assert w.caption.value == examples[2]
    assert CaptionWidget(sampler).caption.value == default_examples(sampler.encoder)[0]
    w.close()


def test_stage1_only_run_shows_stage1_and_says_why(tiny):
    w = CaptionWidget('only-stage1', runs_root=tiny[1], n=2)
    assert 'Stage-I images only (64x64): run only-stage1 has no Stage-II checkpoint yet' in w.notice.value
    w.button.click()
    assert [(png_size(a), b) for a, b in w.sample_views] == [((64, 64), None)] * 2
    assert w.messages and 'stackgan train --stage 2 --run only-stage1' in w.messages[0][1]
    w.close()


def test_unloadable_run_is_reported_in_the_widget(tiny):
    w = CaptionWidget('missing-run', runs_root=tiny[1])
    assert w.sampler is None and w.button.disabled and w.messages[0][0] == 'error'
    assert 'Could not load run missing-run' in w.notice.value
    assert w.generate() is None
    w.close()


def test_ipython_display(sampler, capsys):
    w = CaptionWidget(sampler)
    w._ipython_display_()                                                  # without a kernel IPython prints the repr
    assert 'VBox' in capsys.readouterr().out
    w.close()


# -- finding the run -------------------------------------------------------------------------------------------------

def test_no_run_means_a_demo_run_and_a_notice_that_says_why(tmp_path):
    folder, notes = run_or_demo('quickstart', tmp_path / 'runs', demo_root=tmp_path / 'demo')
    assert folder == tmp_path / 'demo' / 'runs' / 'demo' and notes[0][0] == 'warning'
    assert f'Showing a demo run: there is no run "quickstart" in {tmp_path / "runs"} (no runs there yet)' in notes[0][1]
    assert 'run the quickstart (tutorial 1, or `stackgan quickstart` in a terminal)' in notes[0][1]
    w = CaptionWidget(folder, notices=notes, n=1)
    w.button.click()
    assert w.messages == [] and len(w.sample_views) == 1 and 'Showing a demo run' in w.notice.value
    w.close()


def test_quickstart_then_the_widget_finds_that_run(tmp_path, monkeypatch, capsys):
    "The newcomer's path: `stackgan quickstart` with its defaults, then tutorial 4's widget, in the same folder."
    from stackgan_nb.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('STACKGAN_RUNS', raising=False)
    assert main(['quickstart', '--smoke', '--quiet', '--device', 'cpu']) == 0
    folder, notes = run_or_demo('quickstart', demo_root=tmp_path / 'demo')        # what tutorial 4 does
    assert folder == runs_root() / 'quickstart' == tmp_path / 'runs' / 'quickstart', (folder, notes)
    assert notes[0][0] == 'info' and notes[0][1].startswith(f'Run "quickstart" from {tmp_path / "runs"}: Stage-I 1 epochs, Stage-II 1 epochs')
    w = CaptionWidget(folder, notices=notes, n=1)
    w.button.click()
    assert [(png_size(a), png_size(b)) for a, b in w.sample_views] == [((64, 64), (256, 256))]
    ex = ExperimentExplorer()                                                         # the explorer lists it too
    assert [o[1] for o in ex.runs.options] == [str(folder)] and ex.runs.value == (str(folder),)
    w.close(); ex.close()


# -- the experiment explorer ----------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def three(tiny):
    "Runs folder with three fixed-weight runs to compare: demo (both stages), only-stage1, no-bn (Stage-I without BatchNorm)."
    data, runs = tiny
    if not (runs / 'no-bn').exists(): save_fixed_run(data, runs, 'no-bn', stages=(1,), overrides=['model.norm=none'], seed=5)
    return runs


def decoded(img) -> np.ndarray: return np.asarray(Image.open(BytesIO(bytes(img.value))).convert('RGB'))


def test_three_runs_side_by_side(three):
    ex = ExperimentExplorer(['demo', 'only-stage1', 'no-bn'], runs_root=three, n=2, seed=3)
    assert ex.runs.value == tuple(str(three / r) for r in ('demo', 'only-stage1', 'no-bn'))
    assert ex.rows_box.children == () and ex._loads == {}                        # nothing loaded before a draw
    ex.draw_button.click()
    assert [(r.run, r.stage, r.error) for r in ex.rows] == [('demo', 2, None), ('only-stage1', 1, None), ('no-bn', 1, None)]
    assert [[(png_size(a), b and png_size(b)) for a, b in v] for v in ex.row_views] == \
           [[((64, 64), (256, 256))] * 2, [((64, 64), None)] * 2, [((64, 64), None)] * 2]
    assert {a.width for v in ex.row_views for a, _ in v} == {'256'} and {b.width for b in (ex.row_views[0][0][1],)} == {'256'}
    assert [[z and [(png_size(x), x.width) for x in z] for z in v] for v in ex.zoom_views] == \
           [[[((16, 16), '124'), ((64, 64), '124')]] * 2, [None] * 2, [None] * 2]     # the same square of both, zoomed
    ref = Sampler('demo', runs_root=three).generate(ex.caption.value, n=2, seed=3, use_ca=False)
    assert [bytes(b.value) for _, b in ex.row_views[0]] == [png_bytes(x) for x in ref.stage2]
    assert [bytes(a.value) for a, _ in ex.row_views[1]] == [png_bytes(x) for x in ref.stage1]   # only-stage1 = demo's Stage-I
    assert ex.rows[2].heading.startswith('no-bn · tiny (BatchNorm off, adam 0.002, bce) · Stage-I · epoch 0 · ')
    assert 'stackgan-stage1' in ex.row_views[0][0][0]._dom_classes and ex.messages == []
    heads = [c.children[0].value for c in ex.rows_box.children]                   # the headings shown, escaped
    assert '<b>demo</b> · tiny (BatchNorm on, adam 0.002, bce) · Stage-II (its Stage-I above) · epoch 0' in heads[0]
    ex.seed.value = 4
    ex.draw()
    assert [bytes(b.value) for _, b in ex.row_views[0]] != [png_bytes(x) for x in ref.stage2]   # another seed, other birds
    ex.close()


def test_scores_in_the_heading(tiny, tmp_path):
    data, _ = tiny
    save_fixed_run(data, tmp_path, 'scored', stages=(1,))
    run = Run(tmp_path / 'scored')
    ex = ExperimentExplorer(runs_root=tmp_path)                                        # runs=None: every run of the folder
    ex.draw()
    assert ex.rows[0].heading.endswith('epoch 0 · not evaluated at this epoch')
    run.save_evaluation([{'stage': 1, 'epoch': 0}], [{'stage': 1, 'epoch': 0, 'is': 2.345, 'fid': 81.06, 'colour_accuracy': 0.3}])
    ex.draw()
    assert ex.rows[0].heading.endswith('epoch 0 · IS 2.35, FID 81.1, caption colours 30%')
    ex.close()


@pytest.fixture
def epochs_run(tiny, tmp_path):
    "A Stage-I run whose snapshots of epochs 1, 2, 3 hold different fixed weights."
    data, _ = tiny
    run = Run(save_fixed_run(data, tmp_path, 'epochs', stages=(1,)))
    G, info = run.load_generator(1)
    for e in (1, 2, 3):
        fixed_weights_(G, seed=10 + e)
        state = {k: info[k] for k in ('stage', 'preset', 'model_config', 'train_config', 'text_encoder')}
        run.stage(1).save_snapshot({**state, 'epoch': e, 'step': e, 'ema': False, 'G': G.state_dict()}, e, e)
    return run


def test_the_epoch_slider_draws_the_epochs_a_run_kept(epochs_run):
    ex = ExperimentExplorer([epochs_run.path], n=1)
    ex.view.value = 'epochs'
    assert ex.epoch_controls.layout.display is None and ex.n.layout.display is None and ex.steps.layout.display == 'none'
    assert ex.epoch_run.value == str(epochs_run.path) and [v for _, v in ex.epoch.options] == [1, 2, 3]
    ex.epoch.value = 2                                                                # moving the slider draws
    assert [(r.epoch, r.error) for r in ex.rows] == [(2, None)] and ' · epoch 2 · ' in ex.rows[0].heading
    G2, info2 = epochs_run.load_generator(1, epoch=2)
    want = LoadedSampler(G2, info2).generate(ex.caption.value, 1, 0, False)
    assert bytes(ex.row_views[0][0][0].value) == png_bytes(want.stage1[0])
    ex.all_epochs.value = True
    assert [r.epoch for r in ex.rows] == [1, 2, 3]
    firsts = [bytes(v[0][0].value) for v in ex.row_views]
    assert len(set(firsts)) == 3                                                     # three epochs, three generators
    ex.close()


def test_the_epoch_where_diversity_fell_is_pointed_at(epochs_run):
    sd = epochs_run.stage(1)
    sd.write_log([{'epoch': e, 'step': e, 'diversity_ratio': r, 'collapsed': c} for e, r, c in ((1, 0.4, False), (2, 0.02, True), (3, 0.01, True))])
    ex = ExperimentExplorer([epochs_run.path])
    ex.view.value = 'epochs'
    assert [label for label, _ in ex.epoch.options] == ['1', '2 (collapsed)', '3 (collapsed)']
    assert ex.messages[0][0] == 'warning' and 'diversity fell below the threshold at epoch 2 (0.020x that of real birds)' in ex.messages[0][1]
    ex.epoch.value = 2
    assert ex.rows[0].heading.endswith('diversity 0.02x real (flagged: mode collapse)')
    ex.close()


def test_walks(three):
    ex = ExperimentExplorer(['demo', 'no-bn'], runs_root=three, steps=4, seed=2)
    ex.view.value = 'captions'
    assert ex.caption_b.layout.display is None and ex.n.layout.display == 'none'
    ex.draw()
    walk = Sampler('demo', runs_root=three).interpolate_captions(ex.caption.value, ex.caption_b.value, 4, 2, False)
    assert torch.equal(ex.rows[0].result.stage2, walk.stage2) and ex.rows[0].result.labels == walk.labels
    assert ex.row_views[1][0][0].width == '256' and len(ex.row_views[1]) == 4
    ex.view.value = 'noise'
    assert (ex.caption.layout.display, ex.caption_b.layout.display, ex.steps.layout.display) == (None, 'none', None)
    ex.draw()
    strip = Sampler('no-bn', runs_root=three).interpolate_noise(ex.caption.value, 2, 3, 4, False)
    assert torch.equal(ex.rows[1].result.stage1, strip.stage1)
    ex.close()


def test_different_text_encoders_are_refused(tiny, tmp_path):
    data, runs = tiny
    other = make_synthetic_cub(tmp_path / 'data7', **TINY, encoder_seed=7, progress=False)
    save_fixed_run(other, tmp_path / 'runs', 'other-encoder', stages=(1,))
    ex = ExperimentExplorer([runs / 'demo', tmp_path / 'runs' / 'other-encoder'], runs_root=tmp_path / 'runs')
    ex.draw()
    assert all(r.result is None and 'different text encoders' in r.error for r in ex.rows)
    assert all(v == [] for v in ex.row_views)
    level, text = ex.messages[0]
    assert level == 'error' and text.startswith('These runs use different text encoders, so one caption would mean different things')
    assert 'demo: {"dim": 1024, "kind": "hash", "pair_weight": 2.0, "seed": 0}' in text and '"seed": 7}' in text
    ex.close()


def test_a_broken_or_slow_run_shows_in_its_row_while_the_others_draw(three, tmp_path):
    import shutil
    shutil.copytree(three / 'only-stage1', tmp_path / 'broken')
    for p in Run(tmp_path / 'broken').stage(1).checkpoints().list(): p.write_bytes(b'\0' * 100)
    ex = ExperimentExplorer(['demo', tmp_path / 'broken', 'only-stage1', 'gone'], runs_root=three, load_timeout=3)
    load, gate = ex.load, threading.Event()
    ex.load = lambda folder, stage, epoch=None: (Path(folder).name == 'only-stage1' and gate.wait(), load(folder, stage, epoch))[1]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ex.draw()
    assert [r.result is not None for r in ex.rows] == [True, False, False, False]
    assert ex.rows[1].error.startswith('Could not load run broken: Run broken has no Stage-I checkpoint')
    assert ex.rows[2].error.startswith('Still loading after 3 s') and ex.rows[3].error.startswith('No run gone in')
    assert 'stackgan-error' in ex.rows_box.children[2].children[1].value                 # shown in its row
    gate.set()
    while not all(f.done() for f in ex._loads.values()): time.sleep(0.05)
    ex.draw()
    assert [r.result is not None for r in ex.rows] == [True, False, True, False]
    shutil.rmtree(tmp_path / 'broken')                                                  # a run deleted while it is shown
    ex.draw()
    assert ex.rows[1].error == f'{tmp_path / "broken"} is gone (deleted, or Google Drive unmounted?): press Refresh list.'
    ex.caption.value = ''
    ex.draw()                                                                         # no exception
    assert ex.messages == [('error', 'The caption is empty: type a sentence describing a bird.')] and ex.rows_box.children == ()
    ex.close()


def test_every_view_saves_as_one_png_with_its_words(three, tmp_path):
    ex = ExperimentExplorer(['demo', 'no-bn'], runs_root=three, n=2, save_dir=tmp_path / 'views')
    ex.save_button.click()                                                            # nothing drawn yet: said, not raised
    assert ex.messages[-1] == ('error', 'Could not save the view: Nothing drawn yet: press Draw first.')
    ex.draw()
    ex.save_button.click()
    saved = sorted((tmp_path / 'views').glob('runs-*.png'))
    assert len(saved) == 1 and ex.messages[-1] == ('info', f'Saved {saved[0]}')
    pic = np.asarray(Image.open(saved[0]).convert('RGB'))
    _, boxes = compose_view(ex.title(), ex.rows)
    (ax, ay, aw, ah), (bx, by, bw, bh), (za, zb) = boxes[0][1]
    assert np.array_equal(pic[by:by + bh, bx:bx + bw], decoded(ex.row_views[0][1][1]))          # Stage-II at its pixels
    s1 = decoded(ex.row_views[0][1][0])
    assert np.array_equal(pic[ay:ay + ah, ax:ax + aw], s1.repeat(4, 0).repeat(4, 1))            # Stage-I in 4x4 blocks
    assert np.array_equal(pic[zb[1]:zb[1] + zb[3], zb[0]:zb[0] + zb[2]],                        # the zoomed square as shown
                          np.asarray(Image.open(BytesIO(bytes(ex.zoom_views[0][1][1].value))).convert('RGB').resize((124, 124), Image.NEAREST)))
    assert (pic[:ay - 40] < 100).any() and (pic[boxes[1][0][0][1] - 40:boxes[1][0][0][1] - 20] < 100).any()  # title, heading
    ex.view.value = 'captions'
    ex.draw()
    path = ex.save_png()
    assert path.parent == tmp_path / 'views' and path.name.startswith('captions-') and Image.open(path).width >= 4 * 256
    assert ExperimentExplorer(runs_root=three).save_dir == three.parent / 'views'     # default: beside the runs folder
    ex.close()


def test_explorer_loads_on_the_device_it_was_given(three):
    ex = ExperimentExplorer(['no-bn'], runs_root=three, device='cpu')
    ex.draw()
    (key, future), = ex._loads.items()
    assert future.result().device == torch.device('cpu') and ex.rows[0].result is not None
    ex.close()


def test_a_run_without_a_finished_epoch_in_the_epochs_view(tiny):
    "`demo` has a checkpoint but no logged epoch: the Epochs view says so and points to the Runs view, which draws it."
    ex = ExperimentExplorer(['demo'], runs_root=tiny[1], n=1)
    ex.view.value = 'epochs'
    ex.draw()
    assert ex.rows == [] and 'no finished epoch to show yet (the Runs view draws its newest checkpoint)' in ex.messages[0][1], ex.messages
    ex.view.value = 'runs'
    ex.draw()
    assert len(ex.rows) == 1 and ex.rows[0].error is None
    ex.close()
