"""A run on Google Drive, for real: a size-limited tmpfs stands in for Drive (a quota that fills up), a folder for the
VM's disk. Checkpoints go to the VM's disk; Drive gets a copy at the start, by time and at the end; a full Drive is a
message and training goes on; a rerun puts the missing copy on Drive; a VM reset resumes from Drive's newest copy; what
Drive receives, and whether it will fit, is said."""
import shutil

import pytest

from stackgan_nb import runs
from stackgan_nb.checkpoint import read_header
from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.train import train

from conftest import fill


def steps(files): return [read_header(p)['step'] for p in files]


@pytest.fixture
def drive(small_disk, monkeypatch):
    "The tmpfs as Google Drive: its folders count as Drive's (`runs.DRIVE_MOUNT`)."
    monkeypatch.setattr(runs, 'DRIVE_MOUNT', str(small_disk))
    return small_disk


def test_copies_at_the_start_and_the_end_then_a_vm_reset_resumes_from_drive(tmp_path, drive):
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    opts = dict(runs_root=drive, device='cpu', progress=False, local_checkpoints=str(tmp_path / 'vm'),
                drive_copy_minutes=600, checkpoint_min_minutes=0, snapshots=0)
    t = train(data, 1, 'tiny', 'drive', epochs=3, **opts)
    per_epoch = t.step // 3
    assert t.mirrored and t.ckpt.local.run.is_relative_to(tmp_path / 'vm')
    assert steps(t.ckpt.local.list()) == [per_epoch, 2 * per_epoch, 3 * per_epoch]      # every save, on the VM's disk (keep 3)
    assert steps(t.ckpt.remote.list()) == [0, 3 * per_epoch]                             # Drive: the first save and the last
    said = t.dir.messages()
    assert "Checkpoints are written to the VM's disk" in said and 'free there' in said and 'Empty the bin' in said, said

    shutil.rmtree(tmp_path / 'vm')                                                       # the VM is gone
    again = train(data, 1, 'tiny', 'drive', epochs=4, **opts)
    assert f'at epoch 3, step {3 * per_epoch} from ckpt-' in again.dir.messages() and again.epoch == 4
    assert steps(again.ckpt.remote.list()) == [3 * per_epoch, 4 * per_epoch]


def test_a_full_drive_is_a_message_and_the_rerun_copies_what_is_missing(tmp_path, drive):
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    opts = dict(runs_root=drive, device='cpu', progress=False, local_checkpoints=str(tmp_path / 'vm'),
                drive_copy_minutes=600, checkpoint_min_minutes=0, snapshots=0)
    first = train(data, 1, 'tiny', 'full', epochs=1, **opts)
    before = steps(first.ckpt.remote.list())
    filler = fill(drive)
    t = train(data, 1, 'tiny', 'full', epochs=2, **opts)                                 # Drive full: training goes on
    said = t.dir.messages()
    assert t.epoch == 2 and 'Could not copy checkpoint' in said and 'No space left on device' in said, said
    assert steps(t.ckpt.remote.list()) == before and steps(t.ckpt.local.list())[-1] == t.step   # Drive's copies intact
    assert t.dir.latest(local=opts['local_checkpoints'])[0]['step'] == t.step            # what Stage-II would start from
    filler.unlink()                                                                      # the bin emptied
    rerun = train(data, 1, 'tiny', 'full', epochs=2, **opts)                             # nothing to train; the copy
    assert steps(rerun.ckpt.remote.list())[-1] == t.step


def test_a_drive_too_small_for_the_run_is_said_after_the_first_epoch(tmp_path, drive):
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    t = train(data, 1, 'tiny', 'small', epochs=3, runs_root=drive, device='cpu', progress=False, snapshots=0,
              local_checkpoints=str(tmp_path / 'vm'), drive_copy_minutes=1e-6)           # a copy at every save
    said = t.dir.messages()
    assert said.count('Google Drive may fill up') == 1 and 'Empty Drive' in said, said


def test_local_checkpoints_beside_a_run_folder_not_on_drive(tmp_path, small_disk):
    "--local-checkpoints with a run folder on a plain disk: the plan speaks of that disk and the copies it keeps, not of Drive's bin."
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    t = train(data, 1, 'tiny', 'plain', epochs=2, runs_root=small_disk, device='cpu', progress=False, snapshots=0,
              local_checkpoints=str(tmp_path / 'fast'), drive_copy_minutes=1e-6)       # a copy at every save
    said = t.dir.messages()
    assert t.mirrored and 'Checkpoints are written first to' in said and 'the newest 2' in said, said
    assert 'Drive' not in said and 'bin' not in said, said
