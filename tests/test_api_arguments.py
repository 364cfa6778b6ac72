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
from stackgan_nb.train import Trainer, train
from stackgan_nb.widgets import CaptionWidget, ExperimentExplorer


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "(data folder, runs folder) of `make_tiny_runs` (run `demo`: both stages)."
    return make_tiny_runs(tmp_path_factory.mktemp('api'))


@pytest.fixture(scope='module')
def runs(tiny): return tiny[1]


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
    (lambda R: Sampler(None), 'run=None: pass a run name'),                                    # was: pathlib's TypeError
    (lambda R: sample_main('demo', None, runs_root=R), 'caption=None: pass the caption as text'),  # was: AttributeError
    (lambda R: Trainer(R.parent / 'data', 1, 'tiny', 'x', runs_root=R, config=3), 'config=3: pass a RunConfig'),
    (lambda R: train(R.parent / 'data', 1, 'tiny', R.parent / 'elsewhere' / 'x', runs_root=R), 'is a folder outside runs_root'),
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


def test_a_run_folder_and_a_dict_of_run_options(tiny, tmp_path):
    "`train(run=Path(...))` trains that folder (as `Sampler` and `evaluate_run` read one); `Trainer(config={...})` takes a dict."
    data = tiny[0]
    t = train(data, 1, 'tiny', tmp_path / 'runs' / 'by-folder', epochs=1, device='cpu', progress=False)
    assert t.run.path == tmp_path / 'runs' / 'by-folder' and t.epoch == 1                # was: "Run name PosixPath(...) is not allowed"
    assert Trainer(data, 1, 'tiny', 'd', runs_root=tmp_path / 'runs', config={'progress': False}).cfg.progress is False
