"""Every CUDA path of the package in one run on a GPU machine, with the speed table: the script a lent GPU runs.

    PYTHONPATH=$PWD python bench/gpu_check.py --out OUT          # on a CUDA machine, about 8 minutes
    PYTHONPATH=$PWD python bench/gpu_check.py --out OUT --cpu    # the same sections on the CPU, tiny sizes (a dry run)

Sections, each in its own process with its own time limit (a hang or crash in one does not stop the others), in order
of importance; what each measures or checks is printed under its heading, and a summary table comes last:

- env        the card, its compute capability, torch/CUDA versions, and what the speed options resolve to on it
- speed      `bench/train_speed.py` at full size (birds networks, batch 64, both stages, baseline vs fast), with the
             numerics check and a torch.profiler breakdown of the fast steps (top kernels, GPU busy share, launches)
- paths      short Stage-I and Stage-II runs through `train(...)`: amp auto / bf16 / fp16, CUDA graph on and off,
             channels_last, fused Adam, a moving average of G; each must finish with finite weights and resume
- nan        the NaN rollback on the GPU: preset lr-x10 with a NaN injected into D (caught, rolled back, finished)
- quickstart `stackgan quickstart --device cuda`, timed, with its report
- cli        `stackgan sample` and `stackgan evaluate` on the GPU
- resume     SIGKILL during GPU training, twice, then resume: weights against an uninterrupted run
- notebook   the steps notebook's cells, the `#| cuda` cell included (the CUDA-graph step against eager)
- compile    torch.compile with the CUDA graph (Stage-I, one epoch)
- torchrun   2 processes with NCCL when the machine has 2+ GPUs (else says so)
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {  # name: seconds allowed (the GPU budget of the whole run is --budget)
    'env': 30, 'speed': 190, 'paths': 130, 'nan': 45, 'quickstart': 150, 'cli': 60, 'resume': 90, 'notebook': 60,
    'compile': 150, 'torchrun': 60}


def _env() -> dict:
    "This environment with the repository first on PYTHONPATH (kept: what the caller put there, e.g. carried wheels)."
    return {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))}


def say(*a, **kw):
    print(*a, **kw, flush=True)


# ---------------------------------------------------------------------------------------------------------- sections
def sec_env(args):
    import torch
    from stackgan_nb.core import TrainConfig
    from stackgan_nb.train import RunConfig, speed_settings
    dev = torch.device(args.device)
    info = {'torch': torch.__version__, 'cuda': torch.version.cuda, 'python': sys.version.split()[0], 'cpus': os.cpu_count()}
    if dev.type == 'cuda':
        p = torch.cuda.get_device_properties(dev)
        info.update(gpu=p.name, capability=f'{p.major}.{p.minor}', memory_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count,
                    gpus=torch.cuda.device_count(), cudnn=torch.backends.cudnn.version(),
                    bf16_supported_including_emulation=torch.cuda.is_bf16_supported())
        try: info['nvidia_smi'] = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception as e: info['nvidia_smi'] = repr(e)
    for stage in (1, 2): info[f'speed_stage{stage}'] = speed_settings(RunConfig(), dev, stage, TrainConfig()).describe()
    say(json.dumps(info, indent=1))
    return {'ok': True, **info}


def sec_speed(args):
    sys.path.insert(0, str(ROOT / 'bench'))
    import train_speed
    argv = ['--json', str(args.out / 'speed.json'), '--profile', '--device', args.device]
    argv += (['--smoke'] if args.cpu else ['--seconds', '3', '--warmup', '8', '--numerics', '10'])
    rc = train_speed.main(argv)
    res = json.loads((args.out / 'speed.json').read_text())
    return {'ok': rc == 0, 'rc': rc, 'rows': [{k: r[k] for k in ('stage', 'mode', 'img_s', 'ms_step', 'data_img_s', 'tflop_s', 'peak_gib')} for r in res['rows']]}


def _world(args, name='world', **kw):
    from stackgan_nb.synthetic import TINY, make_synthetic_cub
    size = TINY if args.cpu else dict(n_species=8, images_per_species=12, image_size=128)
    return make_synthetic_cub(args.work / name, **{**size, **kw}, progress=False)


SMALL = ['model.gf_dim=16', 'model.df_dim=8', 'model.condition_dim=16', 'model.z_dim=16', 'model.r_num=1', 'train.batch_size=16']


def _small(args):
    from stackgan_nb.core import TINY_OVERRIDES
    return [*TINY_OVERRIDES, 'train.batch_size=4'] if args.cpu else SMALL


def _finite(trainer):
    import torch
    return all(bool(torch.isfinite(v).all()) for net in (trainer.G, trainer.D) for v in net.state_dict().values() if v.is_floating_point())


def sec_paths(args):
    import torch
    from stackgan_nb.train import train
    data, rows = _world(args), []
    variants = [  # (stage, run options, overrides, what it exercises)
        (1, {}, [], 'auto: bf16 on 8.0+, CUDA graph (Stage-I), channels_last, fused Adam'),
        (1, {'amp': 'bf16', 'cuda_graph': 'off'}, [], 'bf16 eager'),
        (1, {'amp': 'fp16'}, [], 'fp16 + GradScaler (graph off by design)'),
        (1, {'amp': 'off', 'channels_last': 'off'}, [], 'float32, NCHW'),
        (1, {}, ['train.g_ema=0.9', 'model.d_condition=text', 'model.stage2_skip=stage1'], 'quickstart options: EMA, text D'),
        (2, {}, [], 'Stage-II auto (graph off for Stage-II)'),
        (2, {'amp': 'fp16'}, [], 'Stage-II fp16'),
        (2, {'cuda_graph': 'on'}, [], 'Stage-II with the CUDA graph'),
    ]
    for i, (stage, opts, extra, what) in enumerate(variants):
        run = f'p{i}'
        if stage == 2:                                                   # Stage-II on the first variant's Stage-I
            shutil.copytree(args.work / 'runs' / 'p0' / 'stage1', args.work / 'runs' / run / 'stage1')
        t0 = time.perf_counter()
        try:
            t = train(data, stage, 'stackgan', run, _small(args) + extra, epochs=2, runs_root=args.work / 'runs', device=args.device,
                      progress=False, **opts)
            again = train(data, stage, 'stackgan', run, _small(args) + extra, epochs=3, runs_root=args.work / 'runs', device=args.device,
                          progress=False, **opts)   # resumes and trains one more epoch
            msgs = (t.folder / 'messages.txt').read_text().splitlines()
            row = {'stage': stage, 'what': what, 'options': opts, 'ok': _finite(again) and again.epoch == 3, 'epochs': again.epoch,
                   'settings': again.speed.describe(), 'graph': None if again.graphed is None else
                   (again.graphed.graph is not None, again.graphed.reason), 'first_log_line': msgs[0] if msgs else None,
                   'seconds': round(time.perf_counter() - t0, 1), 'last_losses': {k: round(v, 4) for k, v in again.history[-1].items()
                                                                                  if k in ('d_loss', 'g_loss', 'kl')}}
        except Exception as e:
            row = {'stage': stage, 'what': what, 'options': opts, 'ok': False, 'error': f'{type(e).__name__}: {e}',
                   'traceback': traceback.format_exc()[-2000:]}
        rows.append(row)
        say(json.dumps(row))
    return {'ok': all(r['ok'] for r in rows), 'rows': rows}


class _PoisonOnce:
    def __init__(self, at): self.at, self.done = at, False

    def after_step(self, trainer, parts):
        import torch
        if trainer.step == self.at and not self.done:
            self.done = True
            with torch.no_grad(): p = next(trainer.D.parameters()); p[(0,) * p.dim()] = float('nan')


def sec_nan(args):
    from stackgan_nb.train import RunConfig, Trainer
    data = _world(args)
    t = Trainer(data, 1, 'lr-x10', 'nan', _small(args) + ['train.epochs=3'], args.work / 'runs', args.device,
                RunConfig(progress=False, check_every=5), callbacks=[_PoisonOnce(7)]).fit()
    msgs = (t.folder / 'messages.txt').read_text()
    out = {'rollbacks': t.rollbacks, 'lr_scale': t.lr_scale, 'finite': _finite(t), 'epoch': t.epoch, 'rolled_back': 'rolled back' in msgs,
           'graph': None if t.graphed is None else (t.graphed.graph is not None, t.graphed.reason),
           'messages': msgs.strip().splitlines()[-3:]}
    plain = Trainer(data, 1, 'lr-x10', 'lr-x10', _small(args) + ['train.epochs=10'], args.work / 'runs', args.device, RunConfig(progress=False)).fit()
    out['lr_x10_10_epochs'] = {'rollbacks': plain.rollbacks, 'finite': _finite(plain), 'd_loss': plain.history[-1]['d_loss']}
    out['ok'] = out['rollbacks'] == 1 and out['finite'] and out['epoch'] == 3 and out['rolled_back']
    say(json.dumps(out, indent=1))
    return out


def sec_quickstart(args):
    from stackgan_nb.quickstart import quickstart
    t0 = time.perf_counter()
    summary = quickstart(args.work / 'qs', device=args.device, smoke=args.cpu, progress=False, runs_root=args.work / 'qs' / 'runs')
    minutes = (time.perf_counter() - t0) / 60
    report = (args.work / 'qs' / 'runs' / 'quickstart' / 'REPORT.md').read_text()
    say(report)
    (args.out / 'quickstart_REPORT.md').write_text(report)
    return {'ok': True, 'minutes': round(minutes, 2), 'train_seconds': summary.get('train_seconds'),
            'matched_vs_shuffled': {f'{st}_{sp}': (r['following']['matched'], r['following']['shuffled'])
                                    for st in ('stage1', 'stage2') for sp, r in summary['quality'].get(st, {}).items()
                                    if isinstance(r, dict) and 'following' in r}}


def _cli(*argv):
    "Run the `stackgan` CLI in a subprocess (as a user does); (returncode, output)."
    code = 'import sys; from stackgan_nb.cli import main; sys.exit(main(sys.argv[1:]))'
    r = subprocess.run([sys.executable, '-c', code, *map(str, argv)], capture_output=True, text=True, timeout=300,
                       env=_env())
    return r.returncode, (r.stdout + r.stderr)[-3000:]


def sec_cli(args):
    from stackgan_nb.train import train
    data = _world(args, 'cli-world')
    for stage in (1, 2): train(data, stage, 'stackgan', 'cli', _small(args), epochs=1, runs_root=args.work / 'runs', device=args.device, progress=False)
    rc1, out1 = _cli('sample', '--run', 'cli', '--runs-root', args.work / 'runs', '--caption', 'a red bird with a yellow beak', '-n', 4,
                     '--out', args.work / 'samples', '--device', args.device)
    rc2, out2 = _cli('evaluate', '--run', 'cli', '--runs-root', args.work / 'runs', '--samples', 64, '--device', args.device)
    say(out1, out2, sep='\n')
    pngs = sorted(p.name for p in (args.work / 'samples').glob('*.png'))
    return {'ok': rc1 == 0 and rc2 == 0 and 'stage2_03.png' in pngs, 'sample_rc': rc1, 'evaluate_rc': rc2, 'pngs': len(pngs)}


RESUME = """
import sys
from stackgan_nb.train import train
train(sys.argv[1], stage=1, run='exact', runs_root=sys.argv[2], device=sys.argv[3], progress=False, max_steps=int(sys.argv[4]),
      checkpoint_minutes=0.01, overrides=sys.argv[5:] + ['train.epochs=1000', 'train.g_ema=0.9'])
"""


def sec_resume(args):
    import random
    import torch
    from stackgan_nb.checkpoint import CheckpointManager
    data, steps = _world(args, 'resume-world'), 400 if not args.cpu else 40

    def start(runs):
        return subprocess.Popen([sys.executable, '-c', RESUME, str(data), str(runs), args.device, str(steps), *_small(args)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env())

    def n_ckpt(runs):
        return len(list((runs / 'exact' / 'stage1').glob('ckpt-*.pt')))

    straight, killed, kills, rng = args.work / 'straight', args.work / 'killed', 0, random.Random(0)
    p = start(straight); out = p.communicate()[0]
    assert p.returncode == 0, out.decode()[-2000:]
    for _ in range(2):
        p, n0, deadline = start(killed), n_ckpt(killed), time.time() + 120
        while n_ckpt(killed) <= n0 + 1 and p.poll() is None and time.time() < deadline: time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        if p.poll() is None: p.send_signal(signal.SIGKILL); p.wait(); kills += 1
    p = start(killed); out = p.communicate()[0]
    assert p.returncode == 0, out.decode()[-2000:]
    a, b = CheckpointManager(straight / 'exact' / 'stage1').latest()[0], CheckpointManager(killed / 'exact' / 'stage1').latest()[0]
    diffs = {net: max(float((a[net][k].float() - b[net][k].float()).abs().max()) for k in a[net] if a[net][k].is_floating_point())
             for net in ('G', 'D', 'G_ema')}
    equal = all(torch.equal(a[n][k], b[n][k]) for n in ('G', 'D', 'G_ema') for k in a[n])
    out = {'ok': a['step'] == b['step'] == steps and kills >= 1, 'kills': kills, 'steps': steps, 'bit_identical': equal, 'max_abs_diff': diffs}
    say(json.dumps(out, indent=1))
    return out


def sec_notebook(args):
    "Run nbs/03_steps.ipynb's code cells in order in one namespace (the `#| cuda` cell too, on a GPU)."
    nb = json.loads((ROOT / 'nbs' / '03_steps.ipynb').read_text())
    ns, ran = {'__name__': '__main__'}, 0
    os.chdir(ROOT / 'nbs')
    for cell in nb['cells']:
        src = ''.join(cell['source'])
        if cell['cell_type'] != 'code' or '#| eval: false' in src or 'nbdev_export(' in src: continue
        if '#| cuda' in src and args.cpu: continue
        exec(compile(src, f'03_steps cell {ran}', 'exec'), ns)
        ran += 1
    return {'ok': True, 'cells_run': ran}


def sec_compile(args):
    from stackgan_nb.train import train
    data = _world(args, 'compile-world')
    t0 = time.perf_counter()
    t = train(data, 1, 'stackgan', 'compiled', _small(args), epochs=2, runs_root=args.work / 'runs', device=args.device, progress=False,
              compile='default', cuda_graph='on')
    out = {'ok': _finite(t) and t.epoch == 2, 'seconds': round(time.perf_counter() - t0, 1), 'settings': t.speed.describe(),
           'graph': None if t.graphed is None else (t.graphed.graph is not None, t.graphed.reason)}
    say(json.dumps(out, indent=1))
    return out


def sec_torchrun(args):
    import torch
    n = torch.cuda.device_count() if args.device == 'cuda' else 0
    if n < 2:
        say(f'{n} GPU(s): no 2-process NCCL run here (the fp16 path that 1-GPU T4s take ran in the paths section).')
        return {'ok': True, 'skipped': f'{n} GPU(s)'}
    data = _world(args, 'ddp-world')
    script = args.work / 'stackgan_cli.py'
    script.write_text('import sys\nfrom stackgan_nb.cli import main\nsys.exit(main())\n')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(script), 'train',
           '--data', str(data), '--run', 'ddp', '--runs-root', str(args.work / 'runs'), '--epochs', '2', '--device', 'cuda', '-q',
           *[a for s in SMALL for a in ('--set', s)]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    say(r.stdout[-3000:], r.stderr[-3000:])
    return {'ok': r.returncode == 0, 'rc': r.returncode}


# ---------------------------------------------------------------------------------------------------------- driver
def run_section(name, args):
    "Run one section in this process and write its result as JSON."
    os.environ.setdefault('TQDM_DISABLE', '1')
    args.out, args.work = Path(args.out), Path(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try: res = globals()[f'sec_{name}'](args)
    except Exception as e:
        res = {'ok': False, 'error': f'{type(e).__name__}: {e}'}
        traceback.print_exc()
    res['seconds'] = round(time.perf_counter() - t0, 1)
    (args.work / f'{name}.json').write_text(json.dumps(res, default=str))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True, help='folder for the log, speed.json and summary.json')
    p.add_argument('--work', help='scratch folder (default: OUT/../gpu_check_work)')
    p.add_argument('--cpu', action='store_true', help='dry run on the CPU with tiny sizes')
    p.add_argument('--budget', type=float, default=540, help='seconds for all sections together')
    p.add_argument('--only', nargs='+', choices=list(SECTIONS), help='run only these sections')
    p.add_argument('--section', help=argparse.SUPPRESS)                 # (internal: run one section in this process)
    args = p.parse_args(argv)
    args.device = 'cpu' if args.cpu else 'cuda'
    args.work = args.work or str(Path(args.out).resolve().parent / 'gpu_check_work')
    if args.section: return run_section(args.section, args)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    t_start, results = time.perf_counter(), {}
    for name in args.only or SECTIONS:
        left = args.budget - (time.perf_counter() - t_start)
        limit = min(SECTIONS[name] * (0.3 if args.cpu else 1), left - 5) if not args.cpu else SECTIONS[name] * 3
        if limit < 10: results[name] = {'ok': False, 'error': 'no time left in the budget'}; continue
        say(f'\n===== {name} (limit {limit:.0f} s, {left:.0f} s left)')
        cmd = [sys.executable, __file__, '--out', str(out), '--work', args.work, '--section', name] + (['--cpu'] if args.cpu else [])
        try:
            subprocess.run(cmd, timeout=limit, env={**_env(), 'PYTHONUNBUFFERED': '1'})
            results[name] = json.loads((Path(args.work) / f'{name}.json').read_text())
        except subprocess.TimeoutExpired:
            results[name] = {'ok': False, 'error': f'timed out after {limit:.0f} s'}
        except FileNotFoundError:
            results[name] = {'ok': False, 'error': 'the section wrote no result (crashed)'}
        (out / 'summary.json').write_text(json.dumps(results, indent=1, default=str))
    say('\n===== summary')
    for name, r in results.items():
        say(f'{name:11} {"ok  " if r.get("ok") else "FAIL"} {r.get("seconds", "")!s:>6} s  {r.get("error", "")}')
    say(f'total {time.perf_counter() - t_start:.0f} s')
    return 0 if all(r.get('ok') for r in results.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
