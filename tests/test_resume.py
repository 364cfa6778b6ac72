"""Exact resume: training N steps straight gives bit-identical weights to training that is killed (SIGKILL) at random
moments and resumed, several times, to the same N steps. Real subprocesses, real checkpoints on disk. The run uses the
quickstart's options (a moving average of G, D reading the caption, Stage-II's skip from Stage-I) so that their state
resumes exactly too."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stackgan_nb.checkpoint import CheckpointManager
from stackgan_nb.synthetic import TINY, make_synthetic_cub

STEPS = 60
TRAIN = """
import sys
from stackgan_nb.core import TINY_OVERRIDES
from stackgan_nb.train import train
train(sys.argv[1], stage=int(sys.argv[3]), run='exact', runs_root=sys.argv[2], device='cpu', progress=False, max_steps={steps},
      checkpoint_minutes=0.001, overrides=[*TINY_OVERRIDES, 'train.batch_size=4', 'train.epochs=100', 'train.g_ema=0.9',
                                          'model.d_condition=text', 'model.stage2_skip=stage1'])
"""


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_synthetic_cub(tmp_path_factory.mktemp('data'), **TINY, progress=False)


def start(data, runs, stage, steps=STEPS):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TQDM_DISABLE': '1'}
    return subprocess.Popen([sys.executable, '-c', TRAIN.format(steps=steps), str(data), str(runs), str(stage)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-3000:]


def final_state(runs, stage):
    state, _ = CheckpointManager(Path(runs) / 'exact' / f'stage{stage}').latest()
    return state


def checkpoints_written(runs, stage):
    folder = Path(runs) / 'exact' / f'stage{stage}'
    return len(list(folder.glob('ckpt-*.pt'))) if folder.exists() else 0


@pytest.mark.parametrize('stage', [1, 2])
def test_kill_and_resume_is_bit_identical(data, tmp_path, stage):
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    if stage == 2:                                               # both need the same trained Stage-I
        for runs in (straight, killed): finish(start(data, runs, 1, steps=4))
    finish(start(data, straight, stage))
    rng, kills = random.Random(stage), 0
    for _ in range(3):
        proc = start(data, killed, stage)
        n0 = checkpoints_written(killed, stage)
        deadline = time.time() + 60
        while checkpoints_written(killed, stage) <= n0 and proc.poll() is None and time.time() < deadline: time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.15))                       # training is under way: kill it somewhere in a step
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL); proc.wait(); kills += 1
    assert kills >= 2, 'training finished before it could be killed: raise STEPS'
    finish(start(data, killed, stage))
    a, b = final_state(straight, stage), final_state(killed, stage)
    assert a['step'] == b['step'] == STEPS
    for net in ('G', 'D', 'G_ema'):
        for k in a[net]: assert torch.equal(a[net][k], b[net][k]), f'{net}.{k} differs after kill-and-resume'
    for k in a['opt_D']['state']: assert torch.equal(a['opt_D']['state'][k]['exp_avg'], b['opt_D']['state'][k]['exp_avg'])
