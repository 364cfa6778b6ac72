"""A data folder that cannot be written (a shared, read-only dataset): evaluation, the quality report and training keep
their caches in the user's cache folder instead, and the data folder is left as it was."""
import shutil

import pytest

from stackgan_nb.data import data_cache_dir
from stackgan_nb.evaluate import evaluate_run
from stackgan_nb.quality import quality_report
from stackgan_nb.testing import make_tiny_runs
from stackgan_nb.train import train

from conftest import read_only


def test_evaluate_quality_and_training_on_a_read_only_data_folder(tmp_path, monkeypatch):
    data, runs = make_tiny_runs(tmp_path / 'tiny')
    shutil.rmtree(data / 'cache')                          # (nothing cached yet: everything must be built elsewhere)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'user-cache'))
    assert data_cache_dir(data) == data / 'cache'          # writable: its own cache folder
    before = sorted(p.relative_to(data) for p in data.rglob('*'))
    with read_only(data):
        elsewhere = data_cache_dir(data)
        assert elsewhere.is_relative_to(tmp_path / 'user-cache' / 'stackgan_nb') and data.name in elsewhere.name
        ev = evaluate_run('demo', stage=1, samples=64, runs_root=runs, device='cpu', write=False)   # was: Errno 30 on data/cache
        assert ev['stage1']['is'] is not None
        q = quality_report('demo', n_captions=16, detail_images=4, runs_root=runs, device='cpu', write=False, scorer_epochs=1)
        assert q['stage2']['test']['detail']['stage2'] > 0
        t = train(data, 1, 'tiny', 'ro-data', epochs=1, runs_root=tmp_path / 'runs', device='cpu', progress=False)
        assert t.epoch == 1
        assert sorted(p.relative_to(data) for p in data.rglob('*')) == before      # the data folder as it was
        assert any(elsewhere.glob('test_*.npy')) and any(elsewhere.glob('train_*.npy'))
