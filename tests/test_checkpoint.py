"""Checkpoint-and-resume storage (stackgan_nb.checkpoint): real files in temp folders; only Colab's `google.colab.drive`
module is faked (through sys.modules), and real write failures come from a child process with a file-size limit."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from stackgan_nb.checkpoint import (HEADER_SIZE, CheckpointManager, CheckpointWarning, CheckpointWriteError, NonFiniteCheckpoint,
                                    load_checkpoint, read_header, rng_state, set_rng_state)
from stackgan_nb.runs import RunConfigMismatch, check_run_config, flush_drive, run_dir
from stackgan_nb.core import ModelConfig, TrainConfig, config_dict
from stackgan_nb.models import build_models
from stackgan_nb.steps import make_optimizers

TINY = ModelConfig(gf_dim=8, df_dim=8, condition_dim=4, z_dim=6, text_dim=16, r_num=1)


def run_child(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, timeout=120, **kw)


def latest_warned(m: CheckpointManager):
    "m.latest() and the messages of the CheckpointWarnings it raised."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        res = m.latest()
    return res, [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]


def realistic_state(step=7):
    "What the trainer saves: configs, both networks, both Adam states, schedulers, RNG, sampler, scaler, loss history."
    torch.manual_seed(0)
    G, D = build_models(1, TINY)
    tcfg = TrainConfig(batch_size=4)
    opt_g, opt_d = make_optimizers(G, D, tcfg)
    emb, z = torch.randn(4, TINY.text_dim), torch.randn(4, TINY.z_dim)
    _, fake, mu, _ = G(emb, z)
    D.cond_logits(D.encode(fake), mu).mean().backward()
    opt_g.step(); opt_d.step()
    sched = torch.optim.lr_scheduler.StepLR(opt_g, 100, 0.5)
    return {'config': {'model': config_dict(TINY), 'train': config_dict(tcfg), 'preset': 'stackgan'},
            'G': G.state_dict(), 'D': D.state_dict(), 'opt_G': opt_g.state_dict(), 'opt_D': opt_d.state_dict(),
            'sched_G': sched.state_dict(), 'epoch': 1, 'step': step, 'rng': rng_state(),
            'sampler': {'epoch': 1, 'perm': torch.randperm(20), 'pos': 8, 'seed': 0},
            'scaler': torch.amp.GradScaler('cpu').state_dict(),
            'history': {'d_loss': [0.69, 0.5, 0.41], 'g_loss': [2.0, 1.5, 1.2], 'kl': []},
            'misc': [None, True, 'text', (1, 2.5), [[1, 2], {'a': None}]]}


def assert_same(a, b, path='state'):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert type(b) is type(a) and list(a) == list(b), path
        for k in a: assert_same(a[k], b[k], f'{path}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)): assert_same(x, y, f'{path}[{i}]')
    else:
        assert a == b and type(a) is type(b), path


# ---------------------------------------------------------------- round trip

def test_realistic_state_round_trips_with_weights_only(tmp_path):
    state = realistic_state()
    m = CheckpointManager(tmp_path)
    path = m.save(state, 7)
    assert path.name == 'ckpt-000001-step000000007.pt'
    loaded, p = m.latest()
    assert p == path
    assert_same(state, loaded)
    # the file is what torch.load(weights_only=True) reads after the header
    assert read_header(path)['step'] == 7 and os.path.getsize(path) == HEADER_SIZE + read_header(path)['size']
    # and it restores working objects
    G, D = build_models(1, TINY)
    G.load_state_dict(loaded['G']); D.load_state_dict(loaded['D'])
    opt_g, _ = make_optimizers(G, D, TrainConfig(batch_size=4))
    opt_g.load_state_dict(loaded['opt_G'])
    assert int(opt_g.state_dict()['state'][0]['step']) == 1


def test_rng_state_restores_every_generator_exactly(tmp_path):
    def draw(): return random.random(), np.random.randn(5).tolist(), torch.rand(4).tolist(), torch.randn(3).tolist()
    draw()
    CheckpointManager(tmp_path).save({'rng': rng_state()}, 1)
    first = draw()
    draw()  # move on further
    set_rng_state(CheckpointManager(tmp_path).latest()[0]['rng'])
    assert draw() == first


# ---------------------------------------------------------------- damaged files

def _three_checkpoints(tmp_path):
    m = CheckpointManager(tmp_path, keep=3)
    for step in (1, 2, 3): m.save({'step': step, 'w': torch.full((1000,), float(step))}, step)
    return m


def test_truncated_newest_falls_back_to_previous(tmp_path):
    m = _three_checkpoints(tmp_path)
    newest = m.list()[-1]
    newest.write_bytes(newest.read_bytes()[:HEADER_SIZE + 500])
    (state, path), msgs = latest_warned(m)
    assert state['step'] == 2 and path == m.list()[1]
    assert len(msgs) == 1 and newest.name in msgs[0] and 'truncated' in msgs[0]


def test_truncated_inside_header_falls_back(tmp_path):
    m = _three_checkpoints(tmp_path)
    m.list()[-1].write_bytes(m.list()[-1].read_bytes()[:100])
    (state, _), msgs = latest_warned(m)
    assert state['step'] == 2 and 'no checkpoint header' in msgs[0]


@pytest.mark.parametrize('where', ['payload', 'header fields', 'header padding', 'magic'])
def test_flipped_byte_in_newest_falls_back(tmp_path, where):
    m = _three_checkpoints(tmp_path)
    newest = m.list()[-1]
    data = bytearray(newest.read_bytes())
    head = read_header(newest)
    i = {'payload': len(data) - 2000, 'header fields': data.index(head['saved_at'].encode()) + 3,
         'header padding': HEADER_SIZE - 10, 'magic': 3}[where]
    data[i] ^= 0x01
    newest.write_bytes(bytes(data))
    (state, _), msgs = latest_warned(m)
    assert state['step'] == 2
    assert {'payload': 'hash mismatch', 'header fields': 'hash mismatch', 'header padding': 'damaged header',
            'magic': 'no checkpoint header'}[where] in msgs[0]


def test_every_single_bit_flip_in_a_small_checkpoint_is_detected(tmp_path):
    m = CheckpointManager(tmp_path)
    path = m.save({'w': torch.arange(4.)}, 1)
    good = path.read_bytes()
    from stackgan_nb.checkpoint import CorruptCheckpoint, verify_checkpoint
    for i in range(0, len(good), 7):  # every 7th byte, one bit each, across header and payload
        bad = bytearray(good); bad[i] ^= 1 << (i % 8)
        path.write_bytes(bytes(bad))
        with pytest.raises(CorruptCheckpoint):
            verify_checkpoint(path)


def test_all_corrupt_returns_none_with_a_report(tmp_path):
    m = _three_checkpoints(tmp_path)
    a, b, c = m.list()
    a.write_bytes(b''); b.write_bytes(b'\0' * 5000); c.write_bytes(c.read_bytes()[:-1])
    res, msgs = latest_warned(m)
    assert res is None
    assert 'No usable checkpoint' in msgs[-1] and all(p.name in msgs[-1] for p in (a, b, c))
    # the damaged files are moved aside (evidence, never deleted), and a fresh start works and does not reuse their names
    assert m.list() == [] and sorted(p.name for p in (tmp_path / 'damaged').glob('*.pt')) == [a.name, b.name, c.name]
    new = m.save({'step': 0}, 0)
    assert m.latest()[0] == {'step': 0} and m.list() == [new] and new.name == 'ckpt-000004-step000000000.pt'


def test_load_refuses_pickled_code_even_with_a_valid_hash(tmp_path):
    "weights_only=True: a well-formed file whose payload pickles an arbitrary object is refused, not executed."
    m = CheckpointManager(tmp_path)
    m.save({'x': 1}, 1)
    bad = m.run / 'ckpt-000002-step000000002.pt'
    code = f'''
        import hashlib, json, os, torch
        from stackgan_nb.checkpoint import MAGIC, HEADER_SIZE, _canonical
        class Evil:
            def __reduce__(self): return (os.system, ('touch {tmp_path}/pwned',))
        with open({str(bad)!r}, 'wb') as f:
            f.write(b' ' * HEADER_SIZE); torch.save({{'x': Evil()}}, f); size = f.tell() - HEADER_SIZE
        data = open({str(bad)!r}, 'rb').read()[HEADER_SIZE:]
        sha = hashlib.sha256(data + _canonical({{'size': size}})).hexdigest()
        head = MAGIC + json.dumps({{'size': size, 'sha256': sha}}).encode()
        with open({str(bad)!r}, 'r+b') as f: f.write(head.ljust(HEADER_SIZE - 1) + b'\\n')
    '''
    assert run_child(code).returncode == 0
    (state, path), msgs = latest_warned(m)
    assert state == {'x': 1} and 'weights_only=True' in msgs[0]
    assert not (tmp_path / 'pwned').exists()


# ---------------------------------------------------------------- failed and interrupted writes

def test_failed_write_keeps_previous_checkpoint(tmp_path):
    "A real EFBIG from the OS (file size limit in a child process), the same path as a full disk's ENOSPC."
    code = f'''
        import resource, signal, torch
        from stackgan_nb.checkpoint import CheckpointManager, CheckpointWriteError
        m = CheckpointManager({str(tmp_path)!r})
        m.save({{'w': torch.arange(100.)}}, 1)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try: m.save({{'w': torch.ones(1_000_000)}}, 2)
        except CheckpointWriteError as e: print('ERROR', e, '| errno', e.__cause__.errno)
        else: print('NO ERROR')
    '''
    res = run_child(code)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith('ERROR') and 'File too large' in out and 'errno 27' in out
    assert 'intact' in out and 'ckpt-000001-step000000001.pt' in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt-000001-step000000001.pt']  # temp file removed
    state, _ = CheckpointManager(tmp_path).latest()
    assert torch.equal(state['w'], torch.arange(100.))


def test_killed_mid_write_leaves_previous_checkpoint(tmp_path):
    "SIGKILL while a big checkpoint is being written (a VM that dies): the old one still loads, the leftover goes later."
    code = f'''
        import torch
        from stackgan_nb.checkpoint import CheckpointManager
        m = CheckpointManager({str(tmp_path)!r})
        m.save({{'step': 1}}, 1)
        print('saved', flush=True)
        m.save({{'w': torch.ones(50_000_000)}}, 2)  # 200 MB
        print('finished', flush=True)
    '''
    child = subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == 'saved'
        def partial():  # the temp file of the second save, once it has more than a header
            files = list(tmp_path.glob('.ckpt-000002-step000000002.pt.*.tmp'))
            return files[0] if files and files[0].stat().st_size > HEADER_SIZE else None
        deadline = time.monotonic() + 60
        while (tmp_file := partial()) is None and time.monotonic() < deadline:
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    m = CheckpointManager(tmp_path)
    assert [p.name for p in m.list()] == ['ckpt-000001-step000000001.pt'] and tmp_file.exists()
    assert m.latest()[0] == {'step': 1}
    m.save({'step': 2}, 2)  # the next successful save removes the leftover temp file
    assert not tmp_file.exists() and m.latest()[0] == {'step': 2}


def test_non_finite_state_is_refused_and_nothing_written(tmp_path):
    m = CheckpointManager(tmp_path)
    m.save({'w': torch.ones(3)}, 1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    state = realistic_state()
    state['opt_D']['state'][3]['exp_avg_sq'][0] = float('inf')
    with pytest.raises(NonFiniteCheckpoint, match=r"state\['opt_D'\]\['state'\]\[3\]\['exp_avg_sq'\] holds NaN or inf"):
        m.save(state, 2)
    with pytest.raises(NonFiniteCheckpoint, match=r"state\['history'\]\['g_loss'\]\[1\]"):
        m.save({'history': {'g_loss': [1.0, float('nan')]}}, 2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_values_weights_only_cannot_load_are_refused_before_writing(tmp_path):
    m = CheckpointManager(tmp_path)
    with pytest.raises(TypeError, match=r"state\['sampler'\]\['perm'\] is a numpy.ndarray"):
        m.save({'sampler': {'perm': np.arange(5)}}, 1)
    with pytest.raises(TypeError, match='TrainConfig'):
        m.save({'config': TrainConfig()}, 1)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- pruning and autosave

def test_keeps_the_last_k(tmp_path):
    m = CheckpointManager(tmp_path, keep=2)
    for step in range(1, 6): m.save({'step': step}, step * 10)
    assert [p.name for p in m.list()] == ['ckpt-000004-step000000040.pt', 'ckpt-000005-step000000050.pt']
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in m.list()]


@pytest.mark.parametrize('damage', ['truncated', 'flipped byte, full size'])
def test_damaged_files_do_not_count_toward_k(tmp_path, damage):
    "A file damaged by a bad sync (cut short, or its full size with a changed byte) neither counts nor is deleted."
    m = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2): m.save({'step': step, 'w': torch.arange(100.)}, step)
    second = m.list()[-1]
    data = bytearray(second.read_bytes())
    if damage == 'truncated': data = data[:-10]
    else: data[-50] ^= 0x10
    second.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        m.save({'step': 3}, 3)
    assert [read_header(p)['step'] for p in m.list()] == [1, 3]  # the good older one survives; 1 and 3 are the two whole ones
    aside = tmp_path / 'damaged' / second.name
    assert aside.read_bytes() == bytes(data)                      # moved aside as evidence, byte for byte
    why = (tmp_path / 'damaged' / (second.name + '.why.txt')).read_text()
    assert ('truncated' if damage == 'truncated' else 'hash mismatch') in why
    assert any(second.name in str(w.message) and 'moved to' in str(w.message) for w in caught)
    m.save({'step': 4}, 4)
    assert [read_header(p)['step'] for p in m.list()] == [3, 4] and aside.exists()


def test_prune_hashes_each_file_once_per_process(tmp_path, monkeypatch):
    "Verifying whole files costs a read; a file this process wrote or checked is not read again while it is unchanged."
    import stackgan_nb.checkpoint as ck
    m = CheckpointManager(tmp_path, keep=3)
    for step in (1, 2, 3): m.save({'w': torch.ones(10)}, step)
    calls, real = [], ck.verify_checkpoint
    monkeypatch.setattr(ck, 'verify_checkpoint', lambda p: calls.append(p.name) or real(p))   # counts, then the real check
    m.save({'w': torch.ones(10)}, 4)
    assert calls == []                                            # all written by this manager
    fresh = CheckpointManager(tmp_path, keep=3)                   # a resumed process: checks each older file once
    fresh.save({'w': torch.ones(10)}, 5)
    fresh.save({'w': torch.ones(10)}, 6)
    assert sorted(calls) == ['ckpt-000003-step000000003.pt', 'ckpt-000004-step000000004.pt']


def _write_unchecked(m, state, step):
    "A checkpoint written by the real writer but without `check_state` (what an older version, or another tool, could leave)."
    from stackgan_nb.checkpoint import _write_payload
    from stackgan_nb.core import write_atomic
    seq = m._next_seq()
    path = m.run / f'{m.prefix}-{seq:06d}-step{step:09d}.pt'
    write_atomic(path, lambda f: _write_payload(f, state, {'step': step, 'seq': seq}))
    return path


def test_rollback_walks_back_past_non_finite_checkpoints(tmp_path):
    from stackgan_nb.checkpoint import check_finite, verify_checkpoint
    m = CheckpointManager(tmp_path, keep=5)
    good = m.save({'G': {'w': torch.ones(3)}, 'lr_scale': 1.0}, 10)
    bad1 = _write_unchecked(m, {'G': {'w': torch.tensor([1., float('nan'), 2.])}, 'lr_scale': 1.0}, 20)
    bad2 = _write_unchecked(m, {'G': {'w': torch.ones(3)}, 'lr_scale': float('inf')}, 30)
    verify_checkpoint(bad1); verify_checkpoint(bad2)               # their hashes are valid: only their contents are bad
    assert m.latest()[1] == bad2                                  # without a check: the newest that loads
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        state, path = m.latest(check=check_finite)
    msgs = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    assert path == good and torch.equal(state['G']['w'], torch.ones(3))
    assert any(bad2.name in x and "state['lr_scale'] holds NaN or inf" in x for x in msgs)
    assert any(bad1.name in x and "state['G']['w'] holds NaN or inf" in x for x in msgs)
    assert m.list() == [good] and (tmp_path / 'damaged' / bad1.name).exists() and (tmp_path / 'damaged' / bad2.name).exists()
    assert m.latest(check=check_finite)[1] == good                # the next rollback goes straight there


def test_a_file_that_verifies_but_cannot_be_loaded_here_stays(tmp_path):
    "Not the file's fault (a device this machine lacks, another torch): skipped with a warning, not moved aside."
    m = CheckpointManager(tmp_path)
    path = m.save({'w': torch.ones(2)}, 1)
    def no_such_device(storage, location): raise RuntimeError('no such device on this machine')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert m.latest(map_location=no_such_device) is None
    assert any('no such device on this machine' in str(w.message) for w in caught)
    assert m.list() == [path] and not (tmp_path / 'damaged').exists()
    assert torch.equal(m.latest()[0]['w'], torch.ones(2))


def test_missing_key_is_a_named_error(tmp_path):
    from stackgan_nb.checkpoint import CorruptCheckpoint, IncompleteCheckpoint, require_keys
    m = CheckpointManager(tmp_path)
    m.save({'G': {'w': torch.ones(1)}, 'config': {'train': {}}, 'step': 3}, 3)
    state, path = m.latest()
    assert require_keys(state, ['G', 'config.train', 'step'], path) is state
    with pytest.raises(IncompleteCheckpoint) as e:
        require_keys(state, ['G', 'D', 'opt_G', 'config.model'], path)
    assert isinstance(e.value, CorruptCheckpoint) and e.value.missing == ['D', 'opt_G', 'config.model']
    assert str(path) in str(e.value) and 'lacks D, opt_G, config.model' in str(e.value) and 'it holds: G, config, step' in str(e.value)


def test_a_live_writers_temp_file_is_kept_and_a_dead_ones_removed(tmp_path):
    "Two trainers on one folder: the second one's save must not delete the first one's file while it is being written."
    m = CheckpointManager(tmp_path)
    m.save({'step': 1}, 1)
    code = (f'import sys; from stackgan_nb.core import temp_path; p = temp_path({str(tmp_path / "ckpt-000002-step000000002.pt")!r}); '
            'p.write_bytes(b"half a checkpoint"); print(p, flush=True); sys.stdin.read()')
    writer = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(writer.stdout.readline().strip())
        assert tmp.exists() and f'-{writer.pid}-' in tmp.name
        m.save({'step': 2}, 2)                                    # prunes: the live writer's temp file stays
        assert tmp.read_bytes() == b'half a checkpoint'
    finally:
        writer.stdin.close(); writer.wait(30)
    m.save({'step': 3}, 3)                                        # its writer has exited: a leftover now
    assert not tmp.exists()


def test_order_is_by_save_not_by_step(tmp_path):
    "After a fallback the run repeats steps: a newer save with a smaller step must win."
    m = CheckpointManager(tmp_path)
    m.save({'step': 100}, 100)
    m.save({'step': 200}, 200)
    p200 = m.list()[-1]
    p200.write_bytes(p200.read_bytes()[:-1])
    assert latest_warned(m)[0][0]['step'] == 100
    m.save({'step': 150}, 150)
    assert m.latest()[0]['step'] == 150


def test_due_with_injected_clock(tmp_path):
    now = [1000.0]
    m = CheckpointManager(tmp_path, every_minutes=10, clock=lambda: now[0])
    assert not m.due()
    now[0] += 599; assert not m.due()
    now[0] += 1; assert m.due()
    m.save({'s': 1}, 1); assert not m.due()
    now[0] += 600; assert m.due()
    assert CheckpointManager(tmp_path, every_minutes=0.5, clock=lambda: now[0]).due() is False
    now[0] += 30; assert m.due()


def test_failed_save_restarts_the_clock(tmp_path):
    now = [0.0]
    m = CheckpointManager(tmp_path / 'file', every_minutes=1, clock=lambda: now[0])
    (tmp_path / 'file').write_text('a file where the run folder should be')
    now[0] = 61
    with pytest.raises(CheckpointWriteError, match='there was no earlier checkpoint'):
        m.save({'s': 1}, 1)
    assert not m.due()


# ---------------------------------------------------------------- run folders and Drive

@pytest.fixture
def fake_colab(monkeypatch):
    "Pretend to be Colab: google.colab.drive with a mount that creates MyDrive and counts its calls."
    calls = []

    def mount(path):
        calls.append(('mount', path))
        (Path(path) / 'MyDrive').mkdir(parents=True)

    drive = types.SimpleNamespace(mount=mount, flush_and_unmount=lambda: calls.append(('flush',)))
    colab = types.ModuleType('google.colab'); colab.drive = drive
    google = types.ModuleType('google'); google.colab = colab
    for name, mod in (('google', google), ('google.colab', colab), ('google.colab.drive', drive)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delenv('STACKGAN_RUNS', raising=False)
    return calls


def test_run_dir_on_colab_mounts_drive_once_lazily(fake_colab, tmp_path):
    mp = tmp_path / 'drive'
    assert fake_colab == []
    run = run_dir('birds-stage1', mount_point=mp)
    assert run == mp / 'MyDrive' / 'stackgan_nb' / 'runs' / 'birds-stage1' and run.is_dir()
    assert run_dir('birds-stage1', mount_point=mp) == run
    assert run_dir('other', mount_point=mp).parent == run.parent
    assert fake_colab == [('mount', str(mp))]
    # a root on the VM's disk needs no Drive; one under the mount point mounts it
    assert run_dir('x', root=tmp_path / 'local', mount_point=tmp_path / 'd2') == tmp_path / 'local' / 'x'
    assert not (tmp_path / 'd2').exists()
    run_dir('y', root=tmp_path / 'd3' / 'MyDrive' / 'mine', mount_point=tmp_path / 'd3')
    assert fake_colab[-1] == ('mount', str(tmp_path / 'd3'))
    flush_drive()
    assert fake_colab[-1] == ('flush',)


def test_importing_the_module_does_not_mount(tmp_path):
    code = '''
        import sys, types
        calls = []
        drive = types.SimpleNamespace(mount=lambda *a, **k: calls.append(a), flush_and_unmount=lambda: calls.append('f'))
        colab = types.ModuleType('google.colab'); colab.drive = drive
        google = types.ModuleType('google'); google.colab = colab
        sys.modules.update({'google': google, 'google.colab': colab, 'google.colab.drive': drive})
        import stackgan_nb.checkpoint, stackgan_nb.runs as r
        assert r.is_colab() and calls == [], calls
        print('ok')
    '''
    res = run_child(code, cwd=tmp_path)
    assert res.stdout.strip() == 'ok', res.stderr
    assert list(tmp_path.iterdir()) == []  # and wrote nothing


def test_run_dir_elsewhere_is_local(tmp_path, monkeypatch):
    monkeypatch.delenv('STACKGAN_RUNS', raising=False)
    monkeypatch.chdir(tmp_path)
    assert run_dir('a') == tmp_path / 'runs' / 'a'
    monkeypatch.setenv('STACKGAN_RUNS', str(tmp_path / 'elsewhere'))
    assert run_dir('a') == tmp_path / 'elsewhere' / 'a'
    assert run_dir('a', root=tmp_path / 'explicit') == tmp_path / 'explicit' / 'a'
    monkeypatch.delenv('STACKGAN_RUNS')
    with pytest.raises(RuntimeError, match='only be mounted inside Google Colab'):
        run_dir('a', mount_drive=True, mount_point=tmp_path / 'nodrive')
    flush_drive()  # a no-op with a message


@pytest.mark.parametrize('name', ['', '.', '..', '../up', 'a/b', '/abs', 'a\\b', '.hidden', 'sp ace', 'ü'])
def test_bad_run_names_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match='is not allowed'):
        run_dir(name, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_refused_config_change_lists_fields_and_force_records(tmp_path):
    run = run_dir('r', root=tmp_path)
    a = {'preset': 'stackgan', 'model': config_dict(TINY), 'train': config_dict(TrainConfig())}
    check_run_config(run, a)
    check_run_config(run, a)  # same config: resume
    b = {**a, 'train': config_dict(TrainConfig(batch_size=32, g_lr=1e-3)), 'data': 'cub'}
    with pytest.raises(RunConfigMismatch) as e:
        check_run_config(run, b)
    msg = str(e.value)
    assert 'train.g_lr: 0.0002 -> 0.001' in msg and 'train.batch_size: 64 -> 32' in msg and "data: '<absent>' -> 'cub'" in msg
    assert 'new run name' in msg and 'force=True' in msg and '--force' in msg
    assert 'train.d_lr' not in msg
    assert json.loads((run / 'config.json').read_text())['config'] == a  # refused: nothing changed
    check_run_config(run, b, force=True)
    stored = json.loads((run / 'config.json').read_text())
    assert stored['config'] == b
    assert stored['forced_changes'][0]['changes'] == {'train.batch_size': [64, 32], 'train.g_lr': [0.0002, 0.001],
                                                      'data': ['<absent>', 'cub']}
    check_run_config(run, b)
    assert sorted(p.name for p in run.iterdir()) == ['config.json']


def test_config_dataclasses_and_damaged_config_json(tmp_path):
    check_run_config(tmp_path, TrainConfig())
    with pytest.raises(RunConfigMismatch, match='batch_size: 64 -> 16'):
        check_run_config(tmp_path, TrainConfig(batch_size=16))
    (tmp_path / 'config.json').write_text('{"config": {"loss": "bce", ')  # cut short by a bad sync
    with pytest.raises(RunConfigMismatch, match='cannot be read'):
        check_run_config(tmp_path, TrainConfig())
    check_run_config(tmp_path, TrainConfig(), force=True)
    check_run_config(tmp_path, TrainConfig())
