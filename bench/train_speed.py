"""Training speed: the fast mode against the official recipe (the baseline mode), both stages, data included.

    python bench/train_speed.py              # CUDA: full sizes (birds networks, batch 64); CPU: tiny networks
    python bench/train_speed.py --smoke      # tiny networks and data on the CPU, a few seconds (CI)
    python bench/train_speed.py --root DATA  # the real CUB (DATA holds CUB_200_2011/ and birds/)
    python bench/train_speed.py --profile    # also torch.profiler on the fast steps: top kernels, GPU busy share, launches

For each stage and mode it builds the `Trainer` that `train(...)` builds (same data pipeline, precision, layout, CUDA
graph, optimizers), warms it up (cuDNN autotuning, graph recording), then times real training steps fed by the mode's
own input pipeline: the official per-image PIL + DataLoader pipeline with 6 workers (baseline), or the uint8 cache and
the on-device Batcher (fast). Epoch boundaries inside the timed window are included (the baseline restarts its workers
each epoch, as the official code does). Printed per row: images/s and ms per step, the ratio to the baseline of the
same stage measured in this run, the input pipeline alone (images/s), GFLOP per image (FlopCounterMode on one eager
step of that mode), achieved TFLOP/s, peak GPU memory, the epoch-end work (sample grid, diversity, checkpoint) and the
resulting time of the 600-epoch recipe; then a numerics check: fast and baseline from the same weights on the same
batches with the same noise (GAN training amplifies rounding, so its printed numbers are to be read as explained).

The default data is a synthetic CUB with CUB-sized (500 px) photos whose training list is repeated up to CUB's 8,855
entries, so an epoch is as long as CUB's (138 steps at batch 64). Networks start from the same seed in both modes.
"""
import argparse
import contextlib
import io
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from stackgan_nb.data import load_images, read_cub
from stackgan_nb.synthetic import make_synthetic_cub, write_pickle
from stackgan_nb.callbacks import DiversityCheck, EpochLog, SampleGrid, run_event
from stackgan_nb.core import TINY_OVERRIDES, load_size
from stackgan_nb.train import RunConfig, Trainer

FULL = []                                              # the birds networks: ModelConfig defaults
TINY_MODEL = [o for o in TINY_OVERRIDES if o.startswith('model.')]   # (the batch comes from --batch-size)
CUB_TRAIN = 8855


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def device_name(device) -> str:
    if device.type == 'cuda': return torch.cuda.get_device_name(device)
    return f'CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)'


def make_data(root: Path, smoke: bool, images: int) -> Path:
    "A synthetic CUB; for full runs with `images` training entries (epochs as long as CUB's), repeats under new names."
    if smoke: return make_synthetic_cub(root, n_species=4, images_per_species=8, image_size=96, progress=False)
    make_synthetic_cub(root, n_species=30, images_per_species=40, image_size=500, progress=False)
    split = read_cub(root, 'train')
    if images > len(split): repeat_training_images(root, split, images)
    return root


def repeat_training_images(root: Path, split, images: int) -> None:
    "Extend the training split to `images` entries with copies of its images under new names (hard links), as CUB lists them."
    cub, birds = root / 'CUB_200_2011', root / 'birds'
    lines = {n: (cub / f'{n}.txt').read_text().splitlines() for n in ('images', 'bounding_boxes', 'image_class_labels', 'train_test_split')}
    ids = {line.split()[1][:-len('.jpg')]: line.split()[0] for line in lines['images']}
    rows = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines['bounding_boxes']}
    keys, next_id = list(split.filenames), max(int(i) for i in ids.values()) + 1
    for n in range(images - len(split)):
        key = split.filenames[n % len(split)]
        new = f'{key}_copy{n // len(split) + 1}'
        os.link(cub / 'images' / f'{key}.jpg', cub / 'images' / f'{new}.jpg')
        (birds / 'text_c10' / f'{new}.txt').write_bytes((birds / 'text_c10' / f'{key}.txt').read_bytes())
        lines['images'].append(f'{next_id} {new}.jpg'); lines['bounding_boxes'].append(f'{next_id} {rows[ids[key]]}')
        lines['image_class_labels'].append(f'{next_id} {split.class_ids[n % len(split)]}'); lines['train_test_split'].append(f'{next_id} 1')
        keys.append(new); next_id += 1
    for name, ls in lines.items(): (cub / f'{name}.txt').write_text('\n'.join(ls) + '\n')
    reps = math.ceil(images / len(split))
    write_pickle(keys, birds / 'train' / 'filenames.pickle')
    write_pickle(np.concatenate([split.embeddings] * reps)[:images], birds / 'train' / 'char-CNN-RNN-embeddings.pickle')
    write_pickle([int(c) for c in np.concatenate([split.class_ids] * reps)[:images]], birds / 'train' / 'class_info.pickle')


def make_trainer(data, stage, mode, args, device, run=None, **options) -> Trainer:
    "The Trainer `train(...)` would build for this mode, in the bench's run folder, never saving on its own."
    sets = (TINY_MODEL if args.size == 'tiny' else FULL) + [f'train.batch_size={args.batch_size}']
    opts = dict(mode=mode, progress=False, checkpoint_minutes=1e9, workers=args.workers, cuda_graph=args.cuda_graph, seed=0)
    if mode == 'fast': opts['compile'] = args.compile
    with contextlib.redirect_stdout(io.StringIO()):                 # (its 'Speed:'/'Resumed' lines: the table says it)
        return Trainer(data, stage, 'stackgan', run or f'bench-{mode}', sets, args.runs, device, RunConfig(**{**opts, **options}),
                       cache_dir=args.cache).start()                # (resumes, or writes its step-0 checkpoint)


def gflop_per_image(trainer, batch) -> float:
    "FLOPs of one eager training step of this trainer (a real step), per image."
    with FlopCounterMode(display=False) as fc:
        trainer.eager_step(batch.images, batch.embeddings, trainer.step, batch.wrong_idx)
    return fc.get_total_flops() / len(batch.images) / 1e9


def timed(fn, seconds, min_steps, device) -> tuple[int, float]:
    "(calls, seconds) of calling `fn` repeatedly for about `seconds` (at least `min_steps` calls), device work included."
    sync(device)
    n, t0 = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - t0 < seconds:
        fn(); n += 1
    sync(device)
    return n, time.perf_counter() - t0


def row(data, stage, mode, args, device) -> dict:
    "Time one (stage, mode): end-to-end steps, the data pipeline alone, FLOPs, memory, epoch-end work."
    t = make_trainer(data, stage, mode, args, device)
    it = t.batches()
    gflop = gflop_per_image(t, next(it))
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup): t.train_batch(next(it))          # autotuning, CUDA graph recording, worker start
    steps, secs = timed(lambda: t.train_batch(next(it)), args.seconds, 3, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == 'cuda' else float('nan')
    it.close()                                                       # (ends the baseline's DataLoader workers)
    data_it = t.batches()
    n_data, data_secs = timed(lambda: next(data_it), args.seconds / 2, 3, device)
    epoch_end = [cb for cb in t.callbacks if isinstance(cb, (SampleGrid, DiversityCheck, EpochLog))]
    run_event(epoch_end, 'after_epoch', t, {'epoch': 1, 'step': t.step})   # once untimed: cuDNN tunes the new (eval, batch 8) shapes
    sync(device); t0 = time.perf_counter()
    run_event(epoch_end, 'after_epoch', t, {'epoch': 1, 'step': t.step})   # sample grid + diversity + log, as after every epoch
    sync(device); t1 = time.perf_counter()
    t.save()                                                         # the epoch-end checkpoint (checkpoint_epochs=1)
    t2 = time.perf_counter()
    b = args.batch_size
    out = {'stage': stage, 'batch': b, 'mode': mode, 'img_s': steps * b / secs, 'ms_step': 1000 * secs / steps, 'steps': steps,
           'data_img_s': n_data * b / data_secs, 'gflop_img': gflop, 'tflop_s': gflop * steps * b / secs / 1000, 'peak_gib': peak,
           'epoch_extras_s': t1 - t0, 'checkpoint_s': t2 - t1, 'steps_per_epoch': len(t.batcher), 'settings': t.speed.describe(),
           'graph': None if t.graphed is None else (t.graphed.graph is not None, t.graphed.reason)}
    out['recipe_600_h'] = 600 * (out['steps_per_epoch'] * out['ms_step'] / 1000 + out['epoch_extras_s'] + out['checkpoint_s']) / 3600
    data_it.close()
    del t, it, data_it
    gc.collect()
    if device.type == 'cuda': torch.cuda.empty_cache()
    return out


def numerics(data, stage, args, device) -> dict:
    "Fast (eager and as configured) and baseline from the same weights on the same batches with the same noise."
    if stage == 2:                                                   # Stage-II trainers need their run's Stage-I
        for mode in ('baseline', 'fast'): make_trainer(data, 1, mode, args, device, run=f'num-{mode}')
    base = make_trainer(data, stage, 'baseline', args, device, run='num-baseline')
    fast = make_trainer(data, stage, 'fast', args, device, run='num-fast')
    batches = [fast.batcher.batch(p // len(fast.batcher), p % len(fast.batcher)) for p in range(args.numerics)]

    def losses(trainer, seed=0):
        torch.manual_seed(seed)
        return [{k: float(v) for k, v in trainer.train_batch(b).items()} for b in batches]

    out = {'stage': stage, 'steps': args.numerics, 'fast': fast.speed.describe()}
    ref = losses(base); del base
    res = {'fast': losses(fast)}; del fast
    eager = make_trainer(data, stage, 'fast', args, device, run='num-fast', cuda_graph='off')   # resumes the same step-0 weights
    res['eager'] = losses(eager)
    del eager
    ctrl = make_trainer(data, stage, 'fast', args, device, run='num-fast', cuda_graph='off')
    res['control'] = losses(ctrl, seed=1); del ctrl
    gc.collect()
    if device.type == 'cuda': torch.cuda.empty_cache()

    def dev(a, b, upto=None):
        return max(abs(x[k] - y[k]) for x, y in list(zip(a, b))[:upto] for k in x if k in y)
    out.update(first=dev(res['eager'], ref, 1), first10=dev(res['eager'], ref, 10), all=dev(res['eager'], ref),
               graph_vs_eager=dev(res['fast'], res['eager']), control=dev(res['control'], ref),
               finite=all(math.isfinite(v) for r in (ref, *res.values()) for row_ in r for v in row_.values()))
    return out


def profile(data, stage, args, device, steps=10) -> str:
    "torch.profiler over `steps` eager steps of the fast mode: GPU busy share, kernel launches per step, the top kernels."
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    if stage == 2: make_trainer(data, 1, 'fast', args, device, run='prof')      # (Stage-II needs its run's Stage-I)
    t = make_trainer(data, stage, 'fast', args, device, run='prof', cuda_graph='off')   # eager: kernels visible one by one
    it = t.batches()
    for _ in range(5): t.train_batch(next(it))
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    sync(device)
    with torch_profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps): t.train_batch(next(it))
        sync(device)
        wall = (time.perf_counter() - t0) / steps
    events = prof.key_averages()
    dev_us = lambda e: getattr(e, 'self_device_time_total', None) or getattr(e, 'self_cuda_time_total', 0)
    busy = sum(dev_us(e) for e in events if e.device_type == DeviceType.CUDA) / steps / 1e6
    launches = sum(e.count for e in events if e.key in ('cudaLaunchKernel', 'cudaLaunchKernelExC', 'cuLaunchKernel', 'cuLaunchKernelEx')) / steps
    sort = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    try: top = events.table(sort_by=sort, row_limit=15, max_name_column_width=70)
    except Exception: top = events.table(sort_by='self_device_time_total', row_limit=15, max_name_column_width=70)
    it.close()
    del t, it
    gc.collect()
    return (f'Stage-{"I" * stage} fast, eager (no CUDA graph), {steps} steps: wall {wall * 1000:.2f} ms/step, GPU busy '
            f'{busy * 1000:.2f} ms/step ({busy / wall:.0%} of the wall time), {launches:.0f} kernel launches/step\n{top}')


def table(rows, device, args) -> str:
    base = {r['stage']: r['img_s'] for r in rows if r['mode'] == 'baseline'}
    lines = [f'Training speed on {device_name(device)}, torch {torch.__version__}'
             + (f', CUDA {torch.version.cuda}' if device.type == 'cuda' else '')
             + f'; {"TINY networks (not the paper size)" if args.size == "tiny" else "full birds networks"}; '
             f'{args.seconds:g} s timed per row',
             '', '| stage | batch | mode | img/s | ms/step | vs baseline | data img/s | GFLOP/img | TFLOP/s | peak GiB '
             '| epoch end s (grid / ckpt) | 600 epochs | device |', '|' + '---|' * 13]
    for r in rows:
        ratio = f'{r["img_s"] / base[r["stage"]]:.2f}x' if r['stage'] in base else 'n/a'
        lines.append(f'| {"I" * r["stage"]} | {r["batch"]} | {r["mode"]} | {r["img_s"]:,.0f} | {r["ms_step"]:.2f} | {ratio} | '
                     f'{r["data_img_s"]:,.0f} | {r["gflop_img"]:.2f} | {r["tflop_s"]:.1f} | '
                     f'{"n/a" if math.isnan(r["peak_gib"]) else format(r["peak_gib"], ".1f")} | '
                     f'{r["epoch_extras_s"]:.2f} / {r["checkpoint_s"]:.2f} | {r["recipe_600_h"] * 60:.0f} min | {device_name(device)} |')
    lines += [''] + [f'- Stage-{"I" * r["stage"]} {r["mode"]}: {r["settings"]}'
                     + ('' if r['graph'] is None else f'; graph recorded: {r["graph"][0]}' + (f' ({r["graph"][1]})' if r['graph'][1] else ''))
                     for r in rows]
    return '\n'.join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--smoke', action='store_true', help='tiny networks and data on the CPU, short timings (CI)')
    p.add_argument('--root', help='CUB root (default: a synthetic CUB in a temporary folder)')
    p.add_argument('--device', default=None, help='default: cuda if available, else cpu (--smoke: cpu)')
    p.add_argument('--size', choices=['full', 'tiny'], default=None, help='networks (default: full on CUDA, tiny on CPU)')
    p.add_argument('--stages', type=int, nargs='+', default=[1, 2], choices=[1, 2])
    p.add_argument('--modes', nargs='+', default=['baseline', 'fast'], choices=['baseline', 'fast'])
    p.add_argument('--batch-size', type=int, default=None, help='default 64 (smoke: 4)')
    p.add_argument('--seconds', type=float, default=None, help='timed seconds per row (default 10, smoke 0.5)')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps per row (default 10, smoke 2)')
    p.add_argument('--workers', type=int, default=6, help="baseline DataLoader workers (official: 6)")
    p.add_argument('--cuda-graph', default='auto', choices=['auto', 'on', 'off'])
    p.add_argument('--compile', default='off', choices=['off', 'default', 'max-autotune-no-cudagraphs'])
    p.add_argument('--numerics', type=int, default=None, help='steps of the numerics check per stage, 0 = skip (default 100, smoke 5)')
    p.add_argument('--images', type=int, default=CUB_TRAIN, help="synthetic data: training entries (default CUB's 8,855)")
    p.add_argument('--json', help='also write the results here')
    p.add_argument('--profile', action='store_true', help='also profile the fast steps (torch.profiler: top kernels, GPU busy share)')
    args = p.parse_args(argv)
    device = torch.device(args.device or ('cpu' if args.smoke or not torch.cuda.is_available() else 'cuda'))
    args.size = args.size or ('full' if device.type == 'cuda' and not args.smoke else 'tiny')
    args.batch_size = args.batch_size or (4 if args.smoke else 64)
    args.seconds = args.seconds if args.seconds is not None else (0.5 if args.smoke else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.smoke else 10)
    args.numerics = args.numerics if args.numerics is not None else (5 if args.smoke else 100)
    if args.smoke: args.workers = min(args.workers, 2)
    os.environ.setdefault('TQDM_DISABLE', '1')

    tmp = tempfile.TemporaryDirectory()
    work = Path(tmp.name)
    args.runs, args.cache = work / 'runs', work / 'cache'
    t0 = time.perf_counter()
    data = Path(args.root) if args.root else make_data(work / 'cub', args.smoke, args.images)
    split = read_cub(data, 'train')
    for stage in args.stages: load_images(split, load_size(stage), args.cache, progress=False)
    print(f'data: {"synthetic, " if not args.root else ""}{len(split)} training entries ({len(set(split.filenames))} distinct images), '
          f'cache ready in {time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPU threads')

    rows, checks = [], []
    for stage in args.stages:
        if stage == 2 and 1 not in args.stages:                      # Stage-II trainers need their run's Stage-I
            for mode in args.modes: make_trainer(data, 1, mode, args, device)
        for mode in args.modes:
            rows.append(row(data, stage, mode, args, device))
            r = rows[-1]
            print(f'Stage-{"I" * stage} {mode}: {r["img_s"]:,.0f} img/s ({r["ms_step"]:.2f} ms/step, {r["steps"]} steps), '
                  f'data alone {r["data_img_s"]:,.0f} img/s', flush=True)
    print('\n' + table(rows, device, args))
    if args.numerics:
        print(f'\nNumerics: {args.numerics} steps from the same weights, batches and noise; max |loss difference| over all loss parts')
        print('| stage | fast(eager) - baseline: step 1 | first 10 | all | fast(graph) - fast(eager) | control (other noise) | finite |')
        print('|---|---|---|---|---|---|---|')
        for stage in args.stages:
            n = numerics(data, stage, args, device)
            checks.append(n)
            print(f'| {"I" * stage} | {n["first"]:.2e} | {n["first10"]:.2e} | {n["all"]:.2e} | {n["graph_vs_eager"]:.2e} | '
                  f'{n["control"]:.2e} | {n["finite"]} |', flush=True)
        print('(GAN training amplifies any rounding difference about tenfold every ten steps: compare "all" with the control, '
              'not with zero. The first steps show the precision difference itself; float64 equality is tested in the training notebook.)')
    profiles = []
    if args.profile:
        for stage in args.stages:
            try: profiles.append(profile(data, stage, args, device))
            except Exception as e: profiles.append(f'Stage-{"I" * stage}: profiling failed: {type(e).__name__}: {e}')
            print('\n' + profiles[-1], flush=True)
    if args.json: Path(args.json).write_text(json.dumps({'device': device_name(device), 'torch': torch.__version__, 'args':
                                                           {k: str(v) for k, v in vars(args).items()}, 'rows': rows, 'numerics': checks,
                                                           'profiles': profiles}, indent=1))
    print(f'\ntotal {time.perf_counter() - t0:.0f} s')
    tmp.cleanup()
    return 0 if all(c['finite'] for c in checks) else 1


if __name__ == '__main__':
    sys.exit(main())
