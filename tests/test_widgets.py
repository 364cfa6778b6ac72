"""Headless tests of the caption widget, driven as a user drives it (set the caption, click, look at the images).

They run against whichever ipywidgets is importable: `.ci/run` runs this file twice, with the pinned ipywidgets 8 and
with ipywidgets 7.7.1 (what Colab ships) first on PYTHONPATH. `EXPECT_IPYWIDGETS` makes the run prove its version.
"""
import os
from io import BytesIO

import ipywidgets
import pytest
from PIL import Image

from stackgan_nb.sample import Sampler, default_examples, examples_from_data, png_bytes
from stackgan_nb.widgets import CaptionWidget
from stackgan_nb.testing import make_tiny_runs

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
    assert (w.sample_views[0][0].width, w.sample_views[0][1].width) == ('128', '256')
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
    assert w.messages[0][0] == 'error' and 'no words the encoder can read' in w.messages[0][1]
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
