"""Data-parallel training under torchrun, as a user runs it: `torchrun --standalone --nproc_per_node=2` with gloo on the CPU.
A short run completes; the two ranks read disjoint shards and end with identical weights; rank 0 alone writes one set of
checkpoints (with every rank's random state); the job resumes from it under torchrun, through a script and through the
`stackgan` command."""
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from stackgan_nb.checkpoint import load_checkpoint
from stackgan_nb.core import TINY_OVERRIDES
from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.runs import read_jsonl

TINY_MODEL = list(TINY_OVERRIDES)
SCRIPT = """
import sys, torch
from stackgan_nb.train import Trainer, RunConfig

class Record:
    "Which dataset images this rank trained on, per epoch."
    def __init__(self): self.seen = []
    def after_step(self, trainer, parts): self.seen.append((trainer.epoch, trainer.batch.index.tolist()))

data, runs, out, epochs = sys.argv[1:5]
rec = Record()
t = Trainer(data, 1, 'stackgan', 'ddp', {model} + [f'train.epochs={{epochs}}'], runs, 'cpu', RunConfig(progress=False, keep=10, checkpoint_min_minutes=0),
            callbacks=[rec]).fit()
params = {{f'{{net}}.{{n}}': p.detach().clone() for net, m in (('G', t.G), ('D', t.D)) for n, p in m.named_parameters()}}
torch.save({{'seen': rec.seen, 'params': params, 'step': t.step, 'epoch': t.epoch, 'rank': t.dist.rank, 'world': t.dist.world_size}},
           f'{{out}}/rank{{t.dist.rank}}.pt')
""".format(model=TINY_MODEL)


def torchrun(*args):
    "Run `args` under torchrun with 2 processes (gloo on the CPU)."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TQDM_DISABLE': '1'}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', *map(str, args)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r


def ranks(out):
    return [torch.load(Path(out) / f'rank{r}.pt') for r in (0, 1)]


def check_job(res, step, epochs):
    "Both ranks at `step`; in each of `epochs`, disjoint shards covering 16 of the 18 images (drop_last); equal weights."
    assert [(x['rank'], x['world'], x['step']) for x in res] == [(0, 2, step), (1, 2, step)]
    for epoch in epochs:
        shard = [{i for e, idx in x['seen'] if e == epoch for i in idx} for x in res]
        assert shard[0] and not shard[0] & shard[1] and len(shard[0] | shard[1]) == 16, (epoch, shard)
    assert res[0]['params'].keys() == res[1]['params'].keys()
    for k in res[0]['params']: assert torch.equal(res[0]['params'][k], res[1]['params'][k]), k


def test_two_processes_train_checkpoint_once_and_resume(tmp_path):
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    script, runs, out = tmp_path / 'run.py', tmp_path / 'runs', tmp_path / 'out'
    script.write_text(SCRIPT); out.mkdir()
    folder = runs / 'ddp' / 'stage1'

    torchrun(script, data, runs, out, 2)                         # 2 epochs of 2 steps (18 images, 4 per rank per step)
    res = ranks(out)
    check_job(res, 4, epochs=(0, 1))
    files = sorted(folder.glob('ckpt-*.pt'))                    # one file per save (start, two epoch ends): rank 0 only
    assert [f.name for f in files] == ['ckpt-000001-step000000000.pt', 'ckpt-000002-step000000002.pt', 'ckpt-000003-step000000004.pt']
    assert not [p for p in folder.iterdir() if p.name.endswith('.tmp')]
    assert [r['epoch'] for r in read_jsonl(folder / 'log.jsonl')] == [1, 2]
    assert (folder / 'messages.txt').read_text().count('Speed:') == 1
    state = load_checkpoint(files[-1])
    assert state['step'] == 4 and state['world_size'] == 2 and len(state['rng_ranks']) == 2
    assert not torch.equal(state['rng_ranks'][0]['torch'], state['rng_ranks'][1]['torch'])   # each rank draws its own noise
    for k, v in res[0]['params'].items():
        net, name = k.split('.', 1)
        assert torch.equal(state[net][name], v), k                 # the checkpoint holds the trained weights

    torchrun(script, data, runs, out, 3)                         # resume: one more epoch
    res = ranks(out)
    check_job(res, 6, epochs=(2,))
    assert {e for x in res for e, _ in x['seen']} == {2}          # continued with epoch 3, nothing replayed
    assert (folder / 'messages.txt').read_text().count('Resumed') == 1
    assert 'at epoch 2, step 4 from ckpt-000003-step000000004.pt' in (folder / 'messages.txt').read_text()
    assert [load_checkpoint(f)['step'] for f in sorted(folder.glob('ckpt-*.pt'))] == [0, 2, 4, 6]
    assert [r['epoch'] for r in read_jsonl(folder / 'log.jsonl')] == [1, 2, 3]

    exe = Path(sys.executable).parent / 'stackgan'              # the console script, under torchrun, resumes too
    sets = [a for s in TINY_MODEL for a in ('--set', s)]           # ('--' below: else torchrun reads --run as its --run-path)
    r = torchrun(exe, '--', 'train', '--data', data, '--run', 'ddp', '--runs-root', runs, '--epochs', 4, '--device', 'cpu', '-q', *sets)
    assert 'Resumed' in r.stdout and 'epoch 4, step 8' in r.stdout
    assert load_checkpoint(sorted(folder.glob('ckpt-*.pt'))[-1])['step'] == 8
    assert [r['epoch'] for r in read_jsonl(folder / 'log.jsonl')] == [1, 2, 3, 4]


def test_two_processes_with_the_r1_penalty(tmp_path):
    "The R1 penalty (a double backward through D) trains under DistributedDataParallel: every epoch logs it, the weights stay finite."
    data, runs = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False), tmp_path / 'runs'
    exe = Path(sys.executable).parent / 'stackgan'
    sets = [a for s in (*TINY_MODEL, 'train.r1_weight=1', 'train.r1_every=2') for a in ('--set', s)]
    torchrun(exe, '--', 'train', '--data', data, '--run', 'ddp-r1', '--runs-root', runs, '--epochs', 2, '--device', 'cpu', '-q', *sets)
    folder = runs / 'ddp-r1' / 'stage1'
    log = read_jsonl(folder / 'log.jsonl')
    assert [r['epoch'] for r in log] == [1, 2] and all(r['d_r1'] > 0 and math.isfinite(r['d_loss']) for r in log)
    state = load_checkpoint(sorted(folder.glob('ckpt-*.pt'))[-1])
    assert state['step'] == 4 and all(torch.isfinite(v).all() for v in state['D'].values() if v.is_floating_point())


STAGE2_SCRIPT = """
import sys, torch
from stackgan_nb.train import Trainer, RunConfig
data, runs, out, *sets = sys.argv[1:]
t = Trainer(data, 2, 'stackgan', 'ddp-lesson', sets, runs, 'cpu', RunConfig(progress=False)).fit()
torch.save({'G': {n: p.detach().clone() for n, p in t.G.named_parameters() if p.requires_grad}, 'step': t.step},
           f'{out}/rank{t.dist.rank}.pt')
"""


def test_two_processes_stage2_lesson_warmup(tmp_path):
    "Stage-II's lesson steps (`train.repaint_warmup`) bypass DDP's forward: their gradients are averaged over the ranks all the same, so both end with one G."
    from stackgan_nb.train import train
    data, runs, out = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False), tmp_path / 'runs', tmp_path / 'out'
    sets = [*TINY_MODEL, 'train.repaint_coef=10', 'train.repaint_warmup=4']
    train(data, 1, 'stackgan', 'ddp-lesson', TINY_MODEL, epochs=1, runs_root=runs, device='cpu', progress=False)
    script = tmp_path / 'stage2.py'
    script.write_text(STAGE2_SCRIPT); out.mkdir()
    torchrun(script, data, runs, out, *sets, 'train.epochs=2')     # 4 steps (2 per epoch), all of them lesson steps
    res = ranks(out)
    assert [r['step'] for r in res] == [4, 4]
    for k in res[0]['G']: assert torch.equal(res[0]['G'][k], res[1]['G'][k]), k
    log = read_jsonl(runs / 'ddp-lesson' / 'stage2' / 'log.jsonl')
    assert [r['epoch'] for r in log] == [1, 2] and all('g_repaint' in r and 'd_loss' not in r and r['img_per_s'] > 0 for r in log)
