"""Input-pipeline speed: our uint8 cache + on-device `Batcher` against the official per-image PIL + DataLoader pipeline.

    python bench/data_speed.py               # synthetic CUB with CUB-sized photos; CPU, and CUDA when available
    python bench/data_speed.py --root DATA   # the real CUB (DATA holds CUB_200_2011/ and birds/)
    python bench/data_speed.py --smoke       # a few seconds on CPU

Prints one row per (pipeline, crop size, device): images per second, steady state (the first batch, with worker start-up
or the copy to the GPU, is not timed). Both pipelines produce the same thing: (B, 3, px, px) float images in [-1, 1]
with random crop + flip, and one caption embedding per image. The goal (shared/BENCHMARKS.md): data never limits
training, i.e. the pipeline is much faster than the training step.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from stackgan_nb.data import Batcher, OfficialCUBDataset, build_cache, load_images, read_cub
from stackgan_nb.synthetic import make_synthetic_cub


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def time_batches(batches, seconds, device):
    "Images per second over `seconds` after one untimed batch; `batches` is an endless iterator of image tensors."
    next(batches)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += len(next(batches))
    sync(device)
    speed = n / (time.perf_counter() - t0)
    batches.close()        # ends the DataLoader's worker processes before the next row is timed
    return speed


def ours(split, images, px, batch_size, device):
    b = Batcher(images, split.embeddings, split.class_ids, batch_size, px, device=device)
    while True:
        for batch in b: yield batch.images


def official(split, px, batch_size, workers):
    ds = OfficialCUBDataset(split, px)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                                     persistent_workers=workers > 0)
    while True:
        for images, _ in dl: yield images


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', help='CUB root (default: a synthetic CUB written to a temporary folder)')
    p.add_argument('--smoke', action='store_true', help='tiny data, short timings')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--seconds', type=float, default=None, help='timing per row (default 5, smoke 1)')
    p.add_argument('--workers', type=int, default=os.cpu_count(), help='DataLoader workers of the official pipeline')
    p.add_argument('--devices', nargs='+', default=None, help='devices for our pipeline (default: cpu, and cuda if available)')
    p.add_argument('--threads', type=int, default=None, help="torch intra-op threads in this process (default: torch's)")
    args = p.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    seconds = args.seconds or (1.0 if args.smoke else 5.0)
    devices = [torch.device(d) for d in (args.devices or ['cpu'] + (['cuda'] if torch.cuda.is_available() else []))]
    tmp = tempfile.TemporaryDirectory()
    if args.root: root = Path(args.root)
    else:
        kw = dict(n_species=4, images_per_species=40, image_size=320) if args.smoke else dict(image_size=500)
        t = time.perf_counter()
        root = make_synthetic_cub(Path(tmp.name) / 'cub', progress=False, **kw)
        print(f'synthetic CUB {kw or "(default)"} with ~{kw["image_size"]} px photos: written in {time.perf_counter() - t:.1f} s')
    split = read_cub(root, 'train')
    cache = Path(tmp.name) / 'cache'
    t = time.perf_counter()
    build_cache(split, cache, sizes=(76, 304), progress=False)
    print(f'cache of {len(split)} train images at 76 and 304 px built in {time.perf_counter() - t:.1f} s '
          f'({os.cpu_count()} CPU threads)')
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(f'torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, load average {load:.2f}, '
          f'batch {args.batch_size}, {seconds:.0f} s per row\n')
    rows = []
    for px, size in ((64, 76), (256, 304)):
        images = load_images(split, size, cache)
        base = time_batches(official(split, px, args.batch_size, args.workers), seconds, torch.device('cpu'))
        rows.append(('official PIL + DataLoader', px, base, f'cpu, {args.workers} workers', 1.0))
        for dev in devices:
            speed = time_batches(ours(split, images, px, args.batch_size, dev), seconds, dev)
            name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'
            rows.append(('ours: uint8 cache + Batcher', px, speed, name, speed / base))
    print('| pipeline | px | images/s | device | vs official |\n|---|---|---|---|---|')
    for name, px, speed, dev, ratio in rows: print(f'| {name} | {px} | {speed:,.0f} | {dev} | {ratio:.1f}x |')
    tmp.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
