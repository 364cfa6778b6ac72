"""The CLI trains one CPU epoch of each stage on the synthetic CUB, resumes, and refuses a changed config - as a user runs it."""
import subprocess
import sys
from pathlib import Path

from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.runs import read_jsonl
from stackgan_nb.core import TINY_OVERRIDES

TINY_MODEL = [a for s in TINY_OVERRIDES for a in ('--set', s)]


def stackgan(*args):
    exe = Path(sys.executable).parent / 'stackgan'
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_one_epoch_of_each_stage_then_resume(tmp_path):
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    common = ['--data', data, '--run', 'cli', '--runs-root', tmp_path / 'runs', '--epochs', 1, '--device', 'cpu', '-q', *TINY_MODEL]
    for stage in (1, 2):
        r = stackgan('train', '--stage', stage, *common)
        assert r.returncode == 0, r.stderr[-2000:]
        folder = tmp_path / 'runs' / 'cli' / f'stage{stage}'
        assert f'Stage-{"I" * stage} of run cli: epoch 1' in r.stdout
        assert read_jsonl(folder / 'log.jsonl')[-1]['epoch'] == 1 and (folder / 'samples' / 'epoch_0001.png').exists()
    r = stackgan('train', '--stage', 1, *common, '--epochs', 2)            # resume and continue
    assert r.returncode == 0 and 'epoch 2' in r.stdout and 'Resumed' in r.stdout + r.stderr
    r = stackgan('train', '--stage', 1, *common, '--set', 'train.g_lr=0.001')
    assert r.returncode == 2 and 'g_lr' in r.stderr and 'Traceback' not in r.stderr
    r = stackgan('train', '--stage', 2, '--data', data, '--run', 'no-stage1', '--runs-root', tmp_path / 'runs', '-q', *TINY_MODEL)
    assert r.returncode == 2 and 'Train it first' in r.stderr


def test_evaluate_and_compare_commands(tmp_path):
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    for run, preset in (('a', 'stackgan'), ('b', 'no-bn-rmsprop')):
        r = stackgan('train', '--data', data, '--run', run, '--preset', preset, '--runs-root', tmp_path / 'runs', '--epochs', 1,
                     '--device', 'cpu', '-q', *TINY_MODEL)
        assert r.returncode == 0, r.stderr[-2000:]
    r = stackgan('evaluate', '--run', 'a', '--runs-root', tmp_path / 'runs', '--samples', 64, '--device', 'cpu')
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / 'runs' / 'a' / 'evaluation.json').exists() and (tmp_path / 'runs' / 'a' / 'quality.json').exists()
    assert 'Quality: trained for' in r.stdout and 'x chance' not in r.stdout     # one epoch of a tiny world: the numbers mean nothing
    r = stackgan('compare', 'a', 'b', '--runs-root', tmp_path / 'runs', '--out', tmp_path / 'cmp')
    assert r.returncode == 0, r.stderr[-2000:]
    assert {p.name for p in (tmp_path / 'cmp').iterdir()} >= {'stage1.png', 'stage1.md', 'stage1.csv'}
    r = stackgan('sample', '--run', 'a', '--runs-root', tmp_path / 'runs', '--caption', 'a bird with a red crown', '-n', 2,
                 '--out', tmp_path / 'samples', '--device', 'cpu')
    assert r.returncode == 0 and (tmp_path / 'samples' / 'stage1_01.png').exists(), r.stderr[-2000:]
    r = stackgan('evaluate', '--run', 'a', '--runs-root', tmp_path / 'runs', '--samples', 10)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
