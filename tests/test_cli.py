"""The `stackgan` command as a user meets it: options checked as they are read, one-line errors for what a user can fix
(a bad number, a device this machine lacks, a read-only or full disk, more samples than the disk holds), tracebacks
for bugs, memory that does not grow with `-n`, and keyword calls into the library."""
import ast
import contextlib
import errno
import importlib
import inspect
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import stackgan_nb
from stackgan_nb.callbacks import CancelEpoch   # (control flow inside the training loop: never reaches a user)
from stackgan_nb import cli
from stackgan_nb.testing import make_tiny_runs

from conftest import read_only

EXE = Path(sys.executable).parent / 'stackgan'
CAPTION = 'a small bird with a red crown, a yellow breast and blue wings'


class Result:
    def __init__(self, returncode, stdout, stderr, max_rss_mb):
        self.returncode, self.stdout, self.stderr, self.max_rss_mb = returncode, stdout, stderr, max_rss_mb


def stackgan(*args, timeout=300, env=None) -> Result:
    "Run the console script in a subprocess (in `env`, default this one's); also measures its peak memory (max RSS, MB)."
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen([str(EXE), *map(str, args)], stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)     # wait4: this child's own peak memory
            if pid: break
            if time.monotonic() > deadline:
                p.kill(); os.wait4(p.pid, 0)
                raise TimeoutError(f'stackgan {" ".join(map(str, args))} ran over {timeout} s')
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0); err.seek(0)
        return Result(p.returncode, out.read().decode(), err.read().decode(), usage.ru_maxrss / 1024)


def one_line_error(r: Result, start: str):
    "Exit status 2 and the error as the last line of stderr, no traceback."
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert 'Traceback' not in r.stderr, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(start), r.stderr[-3000:]
    return last


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "(data folder, runs folder) with runs `demo` (both stages) and `only-stage1`, fixed weights."
    return make_tiny_runs(tmp_path_factory.mktemp('tiny'))


# --- B: every numeric option is checked when it is read, and the error names the option and its range
REQUIRED = {'train': ['--data', '/nonexistent'], 'sample': ['--run', 'r', '--caption', 'c'], 'evaluate': ['--run', 'r'],
            'quickstart': ['--root', '/nonexistent/qs']}
NUMERIC = [
    ('train', ['--epochs', '0'], 'argument --epochs: 0 must be >= 1'),              # was: the preset's 600 epochs
    ('train', ['--max-steps', '-5'], 'argument --max-steps: -5 must be >= 1'),      # was: silently nothing
    ('train', ['--set', 'train.kl_coef=inf'], 'argument --set: TrainConfig.kl_coef=inf must be a finite number >= 0'),
    ('train', ['--checkpoint-minutes', 'nan'], 'argument --checkpoint-minutes: nan must be a finite number > 0'),
    ('train', ['--seed', str(2**64)], f'argument --seed: {2**64} must fit in 64 bits (at most 2**63-1)'),
    ('sample', ['-n', '0'], 'argument -n: 0 must be >= 1'),
    ('sample', ['--seed', str(2**64)], f'argument --seed: {2**64} must fit in 64 bits (at most 2**63-1)'),
    ('evaluate', ['--samples', '10'], 'argument --samples: 10 must be >= 64 and <= 100000'),
    ('quickstart', ['--seed', '-1'], 'argument --seed: -1 must be >= 0'),
]


@pytest.mark.parametrize('command,argv,why', NUMERIC, ids=[f'{c} {" ".join(a)}'[:40] for c, a, _ in NUMERIC])
def test_numeric_options_are_checked(command, argv, why):
    r = stackgan(command, *REQUIRED[command], *argv)
    one_line_error(r, f'stackgan {command}: error: {why}')
    assert r.stderr.count('\n') == 1, r.stderr


def test_device_is_checked_before_anything_loads(tmp_path):
    n = torch.cuda.device_count()
    r = stackgan('train', *REQUIRED['train'], '--device', 'tpu9')
    one_line_error(r, "stackgan train: error: argument --device: device='tpu9' is not a device: use 'auto', 'cpu'")
    r = stackgan('sample', *REQUIRED['sample'], '--device', f'cuda:{n}')       # one GPU past the last (or none at all)
    one_line_error(r, f"stackgan sample: error: argument --device: device='cuda:{n}', but this machine has")
    r = stackgan('quickstart', '--root', tmp_path / 'qs', '--device', 'tpu9')
    one_line_error(r, "stackgan quickstart: error: argument --device: device='tpu9' is not a device")
    assert not (tmp_path / 'qs').exists()                                    # refused before any work
    if n == 0:
        r = stackgan('evaluate', *REQUIRED['evaluate'], '--device', 'cuda')
        one_line_error(r, "stackgan evaluate: error: argument --device: device='cuda', but this machine has no CUDA GPU: use 'cpu'")


# --- C: errors a user can fix are one line; a bug keeps its traceback
BUG = '''import sys
import numpy as np
import stackgan_nb.cli as cli
from stackgan_nb.data import read_cub
fail = {'bug': lambda args: np.random.SeedSequence(-1),             # a ValueError from inside numpy: a bug of ours
        'user': lambda args: read_cub('/nonexistent', 'train')}     # a FileNotFoundError the package raises for the user
cli.cmd_presets = fail[sys.argv[1]]                                 # (a command that fails in a known way)
sys.exit(cli.main(['presets']))
'''


def test_a_bug_keeps_its_traceback():
    r = subprocess.run([sys.executable, '-c', BUG, 'bug'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and 'Traceback' in r.stderr and 'ValueError' in r.stderr, r.stderr[-2000:]
    r = subprocess.run([sys.executable, '-c', BUG, 'user'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith('stackgan: error: Missing /nonexistent') and 'Traceback' not in r.stderr, r.stderr


def test_every_package_error_is_a_user_error():
    "The package's own error classes (every one, also those added later) print one line."
    found = []
    for m in pkgutil.iter_modules(stackgan_nb.__path__):
        if m.name.startswith('_'): continue
        mod = importlib.import_module(f'stackgan_nb.{m.name}')
        for name, cls in vars(mod).items():
            if (inspect.isclass(cls) and issubclass(cls, Exception) and not issubclass(cls, Warning)
                    and cls.__module__ == mod.__name__ and not name.startswith('_') and cls is not CancelEpoch):
                found.append(cls)
                assert issubclass(cls, cli.PACKAGE_ERRORS), f'{mod.__name__}.{name} is missing from cli.PACKAGE_ERRORS'
    assert len(found) >= 12


@contextlib.contextmanager
def full_disk(folder: Path):
    "`folder` on a file system with 0 bytes free: a 256 KiB tmpfs, filled (mounting needs root; skipped otherwise)."
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', folder],
                                           capture_output=True).returncode != 0:
        pytest.skip('no permission to mount a small tmpfs: cannot make a full disk here')
    try:
        with pytest.raises(OSError) as e, open(folder / 'filler', 'wb') as f:
            while True: f.write(b'\0' * 65536); f.flush()
        assert e.value.errno == errno.ENOSPC and shutil.disk_usage(folder).free == 0
        yield folder
    finally: subprocess.run(['umount', folder], check=True)


def test_read_only_run_folder_and_output_folder(tiny, tmp_path):
    data, runs = tiny[0], tmp_path / 'runs'
    shutil.copytree(tiny[1], runs)
    (tmp_path / 'out').mkdir()
    with read_only(runs / 'demo'), read_only(tmp_path / 'out'):
        r = stackgan('train', '--data', data, '--runs-root', runs, '--run', 'demo', '--preset', 'tiny', '--epochs', 2,
                     '--device', 'cpu', '-q')                                  # resuming a run whose folder is read-only
        last = one_line_error(r, 'stackgan: error: ')
        assert str(runs / 'demo') in last and 'choose a folder' in last, last
        r = stackgan('sample', '--run', 'demo', '--runs-root', runs, '--caption', CAPTION, '--out', tmp_path / 'out' / 's',
                     '--device', 'cpu')
        last = one_line_error(r, 'stackgan: error: ')
        assert str(tmp_path / 'out') in last and 'choose a folder' in last, last


def test_no_space_left(tiny, tmp_path):
    with full_disk(tmp_path / 'full') as full:
        r = stackgan('train', '--data', tiny[0], '--runs-root', full, '--run', 'x', '--preset', 'tiny', '--epochs', 1,
                     '--device', 'cpu', '-q')
        last = one_line_error(r, 'stackgan: error: No space left on device')
        assert 'free some space' in last, last
        r = stackgan('sample', '--run', 'demo', '--runs-root', tiny[1], '--caption', CAPTION, '--out', full / 's', '--device', 'cpu')
        assert 'free some space' in one_line_error(r, 'stackgan: error: No space left on device')


def test_sample_memory_does_not_grow_with_n(tiny, tmp_path):
    common = ['sample', '--run', 'demo', '--runs-root', tiny[1], '--caption', CAPTION, '--device', 'cpu']
    small = stackgan(*common, '-n', 64, '--out', tmp_path / 'small')                # one chunk: the forward pass's memory
    big = stackgan(*common, '-n', 400, '--out', tmp_path / 'big')
    assert small.returncode == 0 and big.returncode == 0, big.stderr[-2000:]
    # 400 Stage-II samples held at once take over 1 GB (images, their upsampled Stage-I, the grid); a chunk takes 64's worth
    assert big.max_rss_mb - small.max_rss_mb < 300, (small.max_rss_mb, big.max_rss_mb)
    meta = json.loads((tmp_path / 'big' / 'sample.json').read_text())
    assert (meta['n'], meta['written'], meta['grid']) == (400, 400, 32)
    assert len(list((tmp_path / 'big').glob('stage2_*.png'))) == 400 and (tmp_path / 'big' / 'stage1_399.png').exists()
    assert Image.open(tmp_path / 'big' / 'grid.png').size == (32 * 258 + 2, 2 * 258 + 2)  # the first 32 samples, both stages
    huge = stackgan(*common, '-n', 100_000_000, '--out', tmp_path / 'huge', timeout=120)
    last = one_line_error(huge, 'stackgan: error: 100,000,000 samples need about')
    assert 'ask for fewer' in last and huge.max_rss_mb - small.max_rss_mb < 300, (last, huge.max_rss_mb)
    assert json.loads((tmp_path / 'huge' / 'sample.json').read_text())['written'] == 64


# --- issue 15: the CLI calls the library with keyword arguments only
def test_cli_calls_the_library_with_keywords():
    tree = ast.parse(Path(cli.__file__).read_text())
    library = {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.level >= 1 for a in n.names}
    commands = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith('cmd_')]
    assert {'cmd_train', 'cmd_sample', 'cmd_evaluate', 'cmd_compare'} <= {c.name for c in commands}
    for fn in commands:
        for call in ast.walk(fn):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in library:
                positional = [a for a in call.args if not isinstance(a, ast.Starred)]
                assert len(positional) <= 1, f'{fn.name} passes {len(positional)} positional arguments to {call.func.id}: use keywords'


def test_evaluate_shows_progress_unless_quiet(tiny, tmp_path):
    "`stackgan evaluate` draws its samples (IS/FID, then the quality report's) under progress bars; -q leaves them out."
    runs = tmp_path / 'runs'
    shutil.copytree(tiny[1], runs)
    common = ['evaluate', '--run', 'demo', '--runs-root', runs, '--samples', 64, '--quality-captions', 16, '--device', 'cpu']
    env = {k: v for k, v in os.environ.items() if k != 'TQDM_DISABLE'}   # (.ci/run turns every bar off)
    loud, quiet = stackgan(*common, env=env), stackgan(*common, '-q', env=env)
    assert loud.returncode == 0 and quiet.returncode == 0, loud.stderr[-3000:] + quiet.stderr[-3000:]
    for bar in ('Stage-I samples', 'Stage-II samples', 'test captions'):
        assert bar in loud.stderr and bar not in quiet.stderr, (bar, loud.stderr[-2000:])
    assert quiet.stdout.count('FID') == loud.stdout.count('FID') > 0      # the same report either way
