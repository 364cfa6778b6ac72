"""A disk that fills up during training, for real: a size-limited tmpfs as the runs folder (needs root to mount; CI runs
as root). A checkpoint that cannot be written is tried again after a wait; freed space lets training go on, and a disk
that stays full stops training with a message saying how the run resumes, the earlier checkpoints intact."""
import threading
import time

import pytest

from stackgan_nb.checkpoint import CheckpointWriteError
from stackgan_nb.core import TINY_OVERRIDES
from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.train import train

from conftest import fill

TINY_MODEL = list(TINY_OVERRIDES)


def test_a_full_disk_is_retried_then_training_goes_on(tmp_path, small_disk):
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    opts = dict(runs_root=small_disk, device='cpu', progress=False, keep=1, checkpoint_min_minutes=0)
    t = train(data, 1, 'stackgan', 'full', TINY_MODEL, epochs=1, **opts)           # fits: one small checkpoint kept
    filler = fill(small_disk)
    threading.Timer(1.0, filler.unlink).start()                                    # someone frees space a moment later
    t = train(data, 1, 'stackgan', 'full', TINY_MODEL, epochs=2, save_retry_seconds=0.5, **opts)
    said = t.dir.messages()
    assert t.epoch == 2 and 'No space left on device' in said and 'Trying again in 0.5 s (attempt 2 of 4)' in said, said


def test_a_disk_that_stays_full_stops_with_the_way_back(tmp_path, small_disk):
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    opts = dict(runs_root=small_disk, device='cpu', progress=False, keep=1, checkpoint_min_minutes=0)
    first = train(data, 1, 'stackgan', 'stays-full', TINY_MODEL, epochs=1, **opts)
    before = sorted(p.name for p in first.dir.path.glob('ckpt-*.pt'))
    fill(small_disk)
    t0 = time.time()
    with pytest.raises(CheckpointWriteError, match='Gave up after 3 attempts: training stopped at step .* run the same call again'):
        train(data, 1, 'stackgan', 'stays-full', TINY_MODEL, epochs=2, save_retries=2, save_retry_seconds=0.2, **opts)
    assert time.time() - t0 >= 0.2 + 0.8                                           # it waited 0.2 s, then 0.8 s
    assert sorted(p.name for p in first.dir.path.glob('ckpt-*.pt')) == before      # the earlier checkpoint intact
    assert not list(first.dir.path.glob('.*.tmp'))                                 # and no half-written file left
