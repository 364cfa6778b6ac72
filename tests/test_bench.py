"""The training benchmark's smoke mode (tiny networks and data on the CPU): both stages, both modes and the numerics
check run through the real trainer, and the table and JSON carry every column."""
import json
import os
import subprocess
import sys
from pathlib import Path

from stackgan_nb.runs import Run

ROOT = Path(__file__).resolve().parent.parent


def test_train_speed_smoke(tmp_path):
    out = tmp_path / 'speed.json'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TQDM_DISABLE': '1'}
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'train_speed.py'), '--smoke', '--json', str(out)],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'TINY networks' in r.stdout and '| stage | batch | mode | img/s | ms/step | vs baseline |' in r.stdout
    res = json.loads(out.read_text())
    assert res['device'].startswith('CPU')
    assert [(x['stage'], x['mode']) for x in res['rows']] == [(1, 'baseline'), (1, 'fast'), (2, 'baseline'), (2, 'fast')]
    for x in res['rows']:
        assert x['img_s'] > 0 and x['ms_step'] > 0 and x['data_img_s'] > 0 and x['steps'] >= 3
        assert x['tflop_s'] > 0 and x['checkpoint_s'] > 0 and x['recipe_600_h'] > 0
    flops = {(x['stage'], x['mode']): x['gflop_img'] for x in res['rows']}
    assert flops[2, 'fast'] > flops[1, 'fast'] > 0
    assert flops[1, 'baseline'] > flops[1, 'fast']                   # the baseline also computes D's gradients in the G step
    assert '| I | 4 | fast |' in r.stdout and 'x |' in r.stdout        # the ratio column
    assert [n['stage'] for n in res['numerics']] == [1, 2] and all(n['finite'] for n in res['numerics'])
    assert res['numerics'][0]['first'] < 1e-4 < res['numerics'][0]['control']   # step 1 agrees; other noise does not


def test_stage2_probes_smoke(tmp_path):
    "Every probe of bench/stage2_probes.py trains and is measured (tiny networks: the numbers mean nothing), and the package is left as it was."
    out = tmp_path / 'probes.json'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TQDM_DISABLE': '1', 'STACKGAN_RUNS': str(tmp_path / 'runs')}
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'stage2_probes.py'), '--smoke', '--root', str(tmp_path / 'qs'),
                        '--device', 'cpu', '--json', str(out), '--set', 'model.condition_dim=6', '--seed', '1', '--curve', '1'],
                       capture_output=True, text=True,
                       timeout=900, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [x['probe'] for x in rows] == ['preset', 'lesson-only', 'warmup-2250', 'no-warmup', 'epochs2', 'epochs4', 'batch2', 'r1', 'batch2-epochs2', 'batch2-no-repaint', 'decay1',
                                          'repaint-3000', 'd-lr2e-3', 'batch8',
                                          'batch8-no-repaint', 'batch8-ema', 'batch8-repaint-300', 'batch8-repaint-3000',
                                          'batch8-g-lr2e-3', 'batch8-epochs3', 'before', 'full-d', 'full-d-lr1e-3', 'full-d-lr2e-4',
                                          'window-lr2e-4', 'window-lr2e-4-blur', 'window-long']
    assert all(x['steps'] > 0 and 0 <= x['test']['matched'] <= 1 and 0 <= x['test']['stage1_up_matched'] <= 1
               and x['train']['detail_x'] >= 0 and x['test']['lesson_x'] > 0 for x in rows)
    assert all(x['seed'] == 1 and [c[0] for c in x['curve']] == list(range(1, x['steps'] + 1)) and all(d >= 0 for _, d in x['curve'])
               for x in rows)                              # --curve 1: the detail after every step
    assert 'preset (seed 1), detail x real by step: 1: ' in r.stdout
    assert '| window-lr2e-4-blur |' in r.stdout and 'the numbers mean nothing' in r.stdout
    probes = tmp_path / 'runs' / 'stage2-probes'
    def log(name):                                         # a probe's Stage-II log; empty would make `not any` pass vacuously
        rows = [json.loads(l) for l in (probes / name / 'stage2' / 'log.jsonl').read_text().splitlines()]
        assert rows, f'probe {name} logged no epoch'
        return rows
    assert any('d_blur' in x for x in log('window-lr2e-4-blur')) and not any('d_blur' in x for x in log('window-lr2e-4'))
    stored = lambda name: Run.named(name, probes).stage(2).identity()
    assert [stored(n)['model'].get('stage2_d', 'full') for n in ('preset', 'full-d')] == ['window', 'full']   # (full: left out)
    assert any('g_repaint' in x for x in log('preset')) and not any('g_repaint' in x for x in log('batch2-no-repaint'))
    cfg = lambda name, part, field, old: stored(name)[part].get(field, old)                      # (old values: left out)
    assert [cfg(n, 'train', 'repaint_coef', 0.0) for n in ('preset', 'batch8-repaint-300', 'before')] == [1000, 300, 0]
    assert [cfg(n, 'train', 'lr_decay_every', 0) for n in ('preset', 'decay1')] == [0, 1]
    assert all(stored(n)['model']['condition_dim'] == 6 for n in ('preset', 'before'))          # --set reaches every probe
    assert all(Run.named(n, probes).stage(2).latest()[0]['run_config']['seed'] == 1 for n in ('preset', 'before'))   # --seed too
    assert any('d_r1' in x for x in log('r1')) and not any('d_r1' in x for x in log('no-warmup'))   # R1: Stage-I's, not Stage-II's
    assert [cfg(n, 'train', 'repaint_warmup', 0) for n in ('preset', 'no-warmup', 'lesson-only', 'before')] == [1800, 0, 2025, 0]
    assert not any('d_loss' in x for x in log('lesson-only')) and all('d_loss' in x for x in log('no-warmup'))   # lesson steps: no D


def test_stage1_curve_smoke(tmp_path):
    "bench/stage1_curve.py scores every Stage-I snapshot of a run (tiny networks, two epochs: the numbers mean nothing)."
    out = tmp_path / 'curve.json'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TQDM_DISABLE': '1', 'STACKGAN_RUNS': str(tmp_path / 'runs')}
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'stage1_curve.py'), '--smoke', '--root', str(tmp_path / 'qs'),
                        '--json', str(out)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [x['epoch'] for x in rows] == [1, 2] and rows[0]['step'] < rows[1]['step']
    assert all(0 <= x[sp][k] <= 1 for x in rows for sp in ('train', 'test') for k in ('matched', 'shuffled'))
    assert '| 2 |' in r.stdout and 'the numbers mean nothing' in r.stdout
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'stage1_curve.py'), '--root', str(tmp_path / 'none'), '--run', 'nothing'],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 2 and 'No Stage-I snapshots' in r.stderr and 'stackgan quickstart' in r.stderr
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'stage1_curve.py'), '--smoke', '--root', str(tmp_path / 'qs'),
                        '--train', 'no-r1', '--set', 'train.r1_weight=0'], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    stored = lambda run: Run.named(run, tmp_path / 'runs').stage(1).identity()
    r1 = lambda run: stored(run)['train'].get('r1_weight', 0.0)                 # (0, the value before the field: left out)
    assert (stored('no-r1')['preset'], r1('no-r1'), r1('quickstart'), stored('no-r1')['model']['gf_dim']) == ('quickstart', 0.0, 0.3, 4)
    for args, why in ((['--set', 'train.r1_weight=0'], '--train NAME'), (['--seed', '1'], '--train NAME'),
                      (['--train', 'quickstart'], "the quickstart's own run"), (['--train', 'x', '--seed', '-1'], 'argument --seed: -1 must be >= 0'),
                      (['--train', 'x', '--set', 'train.kl_coef=-1'], 'argument --set: TrainConfig.kl_coef=-1')):
        r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'stage1_curve.py'), '--root', str(tmp_path / 'qs'), *args],
                           capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert r.returncode == 2 and why in r.stderr, r.stderr


def test_quickstart_quality_smoke(tmp_path):
    "bench/quickstart_quality.py runs the quickstart (here tiny, from seed 2, with a preset change) and lists the bars it misses."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'TQDM_DISABLE': '1', 'STACKGAN_RUNS': str(tmp_path / 'runs')}
    script = str(ROOT / 'bench' / 'quickstart_quality.py')
    r = subprocess.run([sys.executable, script, '--smoke', '--root', str(tmp_path / 'qs'), '--seed', '2', '--set', 'train.kl_coef=0.5'],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 1 and 'MISSED:' in r.stdout and 'the report has a caveat' in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    run = Run.named('quickstart-seed2', tmp_path / 'runs')                    # another seed: a run of its own
    for stage in (1, 2):
        assert run.stage(stage).identity()['train']['kl_coef'] == 0.5
        ckpt, _ = run.stage(stage).latest()
        assert ckpt['run_config']['seed'] == 2
    assert not (tmp_path / 'runs' / 'quickstart').exists()
    r = subprocess.run([sys.executable, script, '--seed', '-1'], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 2 and 'argument --seed: -1 must be >= 0' in r.stderr
    r = subprocess.run([sys.executable, script, '--set', 'model.condition_dim=0'], capture_output=True, text=True, timeout=300, env=env,
                       cwd=tmp_path)
    assert r.returncode == 2 and 'argument --set' in r.stderr and 'condition_dim' in r.stderr and 'Traceback' not in r.stderr
