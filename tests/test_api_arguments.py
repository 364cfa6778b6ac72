"""The library's public calls, as a notebook user makes them: a wrong type or value is a ValueError/TypeError that names
the argument and what to pass, raised before anything is computed or written (not a TypeError from inside torch or
pathlib, and never a silent choice)."""
import os

import pytest

from stackgan_nb.compare import compare_runs
from stackgan_nb.evaluate import evaluate_run
from stackgan_nb.quality import quality_report
from stackgan_nb.runs import load_generator
from stackgan_nb.sample import Sampler, sample_main
from stackgan_nb.testing import make_tiny_runs
from stackgan_nb.widgets import CaptionWidget, ExperimentExplorer


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "The runs folder of `make_tiny_runs` (run `demo`: both stages)."
    return make_tiny_runs(tmp_path_factory.mktemp('api'))[1]


CASES = [
    (lambda R: evaluate_run('demo', samples=64.0, runs_root=R), 'samples=64.0 must be a whole number >= 64'),
    (lambda R: evaluate_run('demo', samples='64', runs_root=R), "samples='64' must be a whole number >= 64"),
    (lambda R: evaluate_run('demo', samples=64, seed=-1, runs_root=R), 'seed=-1 must be >= 0'),
    (lambda R: quality_report('demo', detail_images='8', runs_root=R), "detail_images='8' must be a whole number >= 0"),
    (lambda R: quality_report('demo', detail_images=-1, runs_root=R), 'detail_images=-1 must be >= 0'),   # was: no detail, silently
    (lambda R: quality_report('demo', seed=-1, runs_root=R), 'seed=-1 must be >= 0'),
    (lambda R: compare_runs(['demo'], runs_root=R, stage='2'), "stage='2': StackGAN has stage 1"),
    (lambda R: Sampler('demo', runs_root=R, stage=1.0), 'stage=1.0: StackGAN has stage 1'),
    (lambda R: Sampler('demo', runs_root=R, stage=True), 'stage=True: StackGAN has stage 1'),  # was: "no Stage-I checkpoint"
    (lambda R: load_generator('demo', 1, R, epoch='3'), "epoch='3' must be a whole number >= 0"),
    (lambda R: sample_main('demo', 'a red bird', runs_root=R, no_ca='False'), "no_ca='False': pass True or False"),  # was: CA off
    (lambda R: CaptionWidget(Sampler('demo', runs_root=R), zoom='2'), "zoom='2' must be a whole number >= 1"),
    (lambda R: ExperimentExplorer(runs_root=R, zoom=-1), 'zoom=-1 must be >= 1'),
]


@pytest.mark.parametrize('call, says', CASES, ids=[s.split(' ')[0] for _, s in CASES])
def test_a_wrong_argument_is_named(runs, tmp_path, call, says):
    before = sorted(p.relative_to(runs) for p in runs.rglob('*'))
    cwd = os.getcwd()
    os.chdir(tmp_path)                                     # (sample_main's default folder would be ./samples)
    try:
        with pytest.raises((ValueError, TypeError)) as e: call(runs)
    finally: os.chdir(cwd)
    assert says in str(e.value), str(e.value)
    assert sorted(p.relative_to(runs) for p in runs.rglob('*')) == before and not any(tmp_path.iterdir())   # nothing written
