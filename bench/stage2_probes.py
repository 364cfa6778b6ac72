"""Stage-II probes: does any choice within StackGAN's design make the quickstart's Stage-II add detail in CPU minutes?

    python bench/stage2_probes.py                      # after `stackgan quickstart` (its data and run in the default places)
    python bench/stage2_probes.py --root DIR --run quickstart --probes preset,full-d
    python bench/stage2_probes.py --root DIR --set model.condition_dim=32   # over a quickstart run with that change
    python bench/stage2_probes.py --probes preset --seed 1 --curve 75   # Stage-II from seed 1; its detail every 75 steps
    python bench/stage2_probes.py --smoke              # tiny networks and world, about a minute: that the script works

Each probe trains Stage-II again on top of the quickstart run's Stage-I (a copy of its `stage1/` folder, so every probe
starts from the same weights) in a run folder of its own, `RUNS/stage2-probes/NAME`, and measures it as the quickstart's
report does (`stackgan_nb.quality`, fewer captions): part-colour accuracy on matched and on shuffled captions (and the
Stage-I's matched beside it: Stage-II must not fall below it), and Stage-II's detail at 256 px beside the upsampled Stage-I's, both as a fraction of the real birds', and the detail of
Stage-II's repaint of the real birds' soft 64 px versions (its lesson, on whole images): what it draws on the inputs it
learnt from, against what it draws on Stage-I's samples. Stage-II trains
from seed 0 (its initial weights, noise and data order) whatever the Stage-I's seed was; `--seed` draws another, and
`--curve N` also measures the detail of the generator's weights every N steps (training species' captions), to show
when in the run the detail comes.

What each part of the quickstart's Stage-II buys (each probe leaves out or changes one):

- `preset`: the quickstart's Stage-II (9 epochs at batch 4, 2,025 steps, G lr 1e-3 without the moving average,
  Stage-I's statistics frozen, D on one random 64 px window of each image, over the upsampled Stage-I image:
  `model.stage2_skip=stage1`, and G repainting a 128 px window of each real bird from a soft 32 px version:
  `train.repaint_coef=1000`; the first 1,800 steps that lesson alone, `train.repaint_warmup=1800`; its images keep
  Stage-I's colours at 16 px when it draws, `model.stage2_keep=16`);
- `lesson-only`: all 2,025 steps the lesson alone (no D, no adversarial term); `warmup-2250`: 11 epochs, the first
  2,250 steps the lesson alone;
- `no-warmup`: the quickstart's Stage-II before the warm-up (3 epochs, 675 steps, every one a GAN step with the
  lesson); on top of it, one change each:
- `epochs2`, `epochs4`: 2 or 4 epochs; `batch2`, `batch2-epochs2`: batch 2 for 3 or 2 epochs (1,350 or 900 steps),
  and `batch2-no-repaint`: batch 2 for 3 epochs without the repaint term (the adversarial signal alone);
- `decay1`: the learning rates halved after each epoch; `repaint-3000`: the lesson at weight 3000; `d-lr2e-3`: D's
  learning rate 2e-3;
- `batch8`: batch 8 for 2 epochs (224 steps), the quickstart's Stage-II when the repaint lesson came, and on top of it
  `batch8-epochs3` (3 epochs), `batch8-ema` (samples from a moving average of G, 0.99, as Stage-I's),
  `batch8-repaint-300` / `batch8-repaint-3000` (the lesson's weight), `batch8-g-lr2e-3` (G lr 2e-3),
  `batch8-no-repaint` (without the repaint term).

The quickstart's Stage-II before the repaint (`before`: 2 epochs at batch 32, G lr 5e-5, the moving average, the skip
`stage1`, no repaint) and what was tried on top of it:

- `full-d`: the same with the full 256 px D (the paper's network; the quickstart's choice before the window D);
- `full-d-lr1e-3`, `full-d-lr2e-4`: faster G learning rates, no moving average (samples from the raw G);
- `window-lr2e-4`: the window D (at full resolution: the local edges and texture a 256 px image has and an upsampled
  64 px one lacks, at a sixteenth of D's cost), G lr 2e-4, no moving average;
- `window-lr2e-4-blur`: as `window-lr2e-4`, and each real bird also shown to D as a fake after a round trip through
  64 px (area down, bilinear up), with the right caption: an explicit "blurred is not real" signal;
- `window-long`: the window D with batch 8 for 3 epochs (336 steps instead of 56) and G lr 1e-3.

The blurred negatives are not an option of the package: the script wraps its D loss, only while that probe runs.
"""
import argparse
import contextlib
import copy
import json
import shutil
import sys
import time
from pathlib import Path

import torch.nn.functional as F

import torch

from stackgan_nb import losses, steps
from stackgan_nb.cli import number_arg, setting_arg
from stackgan_nb.core import TINY_OVERRIDES
from stackgan_nb.data import load_images, read_cub
from stackgan_nb.metrics import private_rng
from stackgan_nb.quality import SPLIT_NAMES, detail, quality_report, stage_quality, upsample
from stackgan_nb.scorer import center_crop
from stackgan_nb.runs import runs_root
from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.train import train

LOW = 64                                                  # the blur round trip's size (px)


def with_blurred_negatives(d_loss):
    "`d_loss` plus a fourth pair for Stage-II: each real image after a round trip through LOW px, labelled fake (right caption)."
    def wrapped(D, real, fake, cond, loss='bce', wrong_idx=None, gp_weight=10.0, r1_weight=0.0):
        total, parts = d_loss(D, real, fake, cond, loss, wrong_idx, gp_weight, r1_weight)
        if real.shape[-1] <= LOW: return total, parts
        low = upsample(F.interpolate(real, size=(LOW, LOW), mode='area'), real.shape[-1])   # what a 64 px image holds
        h = D.encode(low)
        blur = losses.adv_term(D.cond_logits(h, cond.detach()), False, loss)
        if D.has_uncond: blur = (blur + losses.adv_term(D.uncond_logits(h), False, loss)) / 2
        parts['d_blur'] = blur.detach()
        return total + blur, parts
    return wrapped


@contextlib.contextmanager
def blurred_negatives(on: bool):
    "Wrap the package's D loss in `with_blurred_negatives` while the block runs; the package is as it was afterwards."
    saved = steps.d_loss
    try:
        if on: steps.d_loss = with_blurred_negatives(steps.d_loss)
        yield
    finally:
        steps.d_loss = saved


NO_EMA = ('train.g_ema=0.0',)
FULL, WINDOW = ('model.stage2_d=full',), ('model.stage2_d=window',)
PREVIOUS = ('train.epochs=3', 'train.repaint_warmup=0')  # the quickstart's Stage-II before the lesson warm-up: 675 GAN steps
BATCH8 = PREVIOUS + ('train.batch_size=8', 'train.epochs=2')   # the quickstart's Stage-II when the lesson came (224 steps)
BEFORE = PREVIOUS + ('model.stage2_skip=stage1', 'train.batch_size=32', 'train.epochs=2', 'train.g_lr=5e-05',
                     'train.g_ema=0.99', 'train.repaint_coef=0')
PROBES = {   # name: (blurred negatives, Stage-II overrides of the preset `quickstart`; later ones win)
    'preset': (False, ()),
    'lesson-only': (False, ('train.repaint_warmup=2025',)),
    'warmup-2250': (False, ('train.epochs=11', 'train.repaint_warmup=2250')),
    'no-warmup': (False, PREVIOUS),
    'epochs2': (False, PREVIOUS + ('train.epochs=2',)),
    'epochs4': (False, PREVIOUS + ('train.epochs=4',)),
    'batch2': (False, PREVIOUS + ('train.batch_size=2',)),
    'r1': (False, PREVIOUS + ('train.r1_weight=1', 'train.r1_every=4')),
    'batch2-epochs2': (False, PREVIOUS + ('train.batch_size=2', 'train.epochs=2')),
    'batch2-no-repaint': (False, PREVIOUS + ('train.batch_size=2', 'train.repaint_coef=0')),
    'decay1': (False, PREVIOUS + ('train.lr_decay_every=1',)),
    'repaint-3000': (False, PREVIOUS + ('train.repaint_coef=3000',)),
    'd-lr2e-3': (False, PREVIOUS + ('train.d_lr=0.002',)),
    'batch8': (False, BATCH8),
    'batch8-no-repaint': (False, BATCH8 + ('train.repaint_coef=0',)),
    'batch8-ema': (False, BATCH8 + ('train.g_ema=0.99',)),
    'batch8-repaint-300': (False, BATCH8 + ('train.repaint_coef=300',)),
    'batch8-repaint-3000': (False, BATCH8 + ('train.repaint_coef=3000',)),
    'batch8-g-lr2e-3': (False, BATCH8 + ('train.g_lr=0.002',)),
    'batch8-epochs3': (False, BATCH8 + ('train.epochs=3',)),
    'before': (False, BEFORE),
    'full-d': (False, BEFORE + FULL),
    'full-d-lr1e-3': (False, BEFORE + FULL + ('train.g_lr=0.001',) + NO_EMA),
    'full-d-lr2e-4': (False, BEFORE + FULL + ('train.g_lr=0.0002',) + NO_EMA),
    'window-lr2e-4': (False, BEFORE + WINDOW + ('train.g_lr=0.0002',) + NO_EMA),
    'window-lr2e-4-blur': (True, BEFORE + WINDOW + ('train.g_lr=0.0002',) + NO_EMA),
    'window-long': (False, BEFORE + WINDOW + ('train.g_lr=0.001', 'train.batch_size=8', 'train.epochs=3') + NO_EMA),
}


class WeightsEvery:
    "Trainer callback: a copy of the generator's weights after every `every`-th step (for `detail_curve`)."
    def __init__(self, every: int): self.every, self.weights = every, {}

    def after_step(self, trainer, parts):
        if trainer.state.step % self.every == 0: self.weights[trainer.state.step] = copy.deepcopy(trainer.state.G.state_dict())


def detail_curve(G, weights: dict, data: Path, detail_images: int, real: float) -> list[list]:
    "[[step, Stage-II detail x the real birds'], ...] of each set of `weights` loaded into `G` (which keeps the last, in eval mode), on the training species' captions."
    split, rows = read_cub(data, 'train'), []
    for step, w in sorted(weights.items()):
        G.load_state_dict(w)
        rows.append([step, stage_quality(G.eval(), split, None, None, detail_images)['detail']['stage2'] / real])
    return rows


@torch.no_grad()
def lesson_detail(G, data: Path, split: str, n: int, seed: int = 0) -> float:
    "Stage-II's detail on its own lesson, whole images: its repaint of the first `n` real birds' soft 64 px versions, x theirs."
    s = read_cub(data, split)
    big = load_images(s, 304, s.root / 'cache', progress=False)[:n]
    real = center_crop(big, 256).float() / 127.5 - 1                                   # (n, 3, 256, 256), as the report crops
    emb = torch.as_tensor(s.embeddings[:len(real), 0]).float()                         # each bird's first caption
    with private_rng(seed):
        img, _, _ = G.eval().repaint(losses.soft_low(real, 64), emb)                    # (n, 3, 256, 256)
    return (detail(img).mean() / detail(real).mean()).item()


def probe(name: str, data: Path, stage1: Path, out: Path, device: str, n_captions: int, detail_images: int,
          extra=(), smoke=False, seed: int = 0, curve: int = 0) -> dict:
    "Train probe `name`'s Stage-II (from `seed`) on a copy of `stage1` in out/name and measure it; returns a row of the table."
    blur, overrides = PROBES[name]
    run = out / name
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(stage1, run / 'stage1', ignore=shutil.ignore_patterns('snapshots', 'samples'))
    every = WeightsEvery(curve) if curve else None
    t0 = time.time()
    with blurred_negatives(blur):
        t = train(data, 2, 'quickstart', name, list(overrides) + list(extra), runs_root=out, device=device, progress=False,
                  snapshots=0, seed=seed, callbacks=[every] if every else ())
    seconds, steps_done = time.time() - t0, t.state.step
    q = quality_report(run, data, n_captions, detail_images, device=device, smoke=smoke,
                       scorer_epochs=1 if smoke else 4)
    row = {'probe': name, 'seed': seed, 'steps': steps_done, 'train_s': round(seconds, 1)}
    for sp in SPLIT_NAMES:
        s2, real = q['stage2'][sp], q['real'][sp]['detail']['real']
        row[sp] = {'matched': s2['following']['matched'], 'shuffled': s2['following']['shuffled'],
                   'stage1_matched': q['stage1'][sp]['following']['matched'],
                   'stage1_up_matched': s2['following_stage1_upsampled']['matched'],
                   'detail_x': s2['detail']['stage2'] / real, 'stage1_up_x': s2['detail']['stage1_upsampled'] / real,
                   'lesson_x': lesson_detail(t.state.G, data, sp, detail_images, seed)}
    if every: row['curve'] = detail_curve(t.state.G, every.weights, data, detail_images, q['real']['train']['detail']['real'])
    return row


def table(rows: list[dict]) -> str:
    head = ('| probe | steps | train s | matched (train / held-out) | shuffled | Stage-I matched | Stage-I upsampled matched | '
            'Stage-II detail x real | Stage-I upsampled x real | repaint of soft real birds x real |\n|---|---|---|---|---|---|---|---|---|---|')
    f = lambda r, k, fmt: ' / '.join(format(r[sp][k], fmt) for sp in SPLIT_NAMES)
    return '\n'.join([head] + [f'| {r["probe"]} | {r["steps"]} | {r["train_s"]:.0f} | {f(r, "matched", ".3f")} | '
                               f'{f(r, "shuffled", ".3f")} | {f(r, "stage1_matched", ".3f")} | {f(r, "stage1_up_matched", ".3f")} | '
                               f'{f(r, "detail_x", ".2f")} | '
                               f'{f(r, "stage1_up_x", ".2f")} | '
                               f'{f(r, "lesson_x", ".2f")} |'
                               for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--root', default='stackgan_quickstart', help="the quickstart's folder (its synthetic data in ROOT/data)")
    ap.add_argument('--run', default='quickstart', help='the run whose Stage-I the probes start from')
    ap.add_argument('--runs-root', default=None, help='where that run is (default: the runs folder the quickstart used)')
    ap.add_argument('--probes', default=','.join(PROBES), help=f'comma-separated, of: {", ".join(PROBES)}')
    ap.add_argument('--captions', type=int, default=300, help='captions per split for caption following')
    ap.add_argument('--detail-images', type=int, default=128, help='images per split for the detail measure')
    ap.add_argument('--device', default='auto')
    ap.add_argument('--json', default=None, help='also write the rows here')
    ap.add_argument('--set', action='append', default=[], metavar='SECTION.FIELD=VALUE', type=setting_arg,
                    help="the Stage-I run's own changes to the preset, e.g. --set model.condition_dim=32 (every probe takes them)")
    ap.add_argument('--seed', type=number_arg(0), default=0, help="Stage-II's seed (its initial weights, noise and data order)")
    ap.add_argument('--curve', type=number_arg(1), default=0, metavar='N',
                    help="also measure the detail of the generator's weights every N steps (training species' captions)")
    ap.add_argument('--smoke', action='store_true', help='tiny world and networks, one epoch each: that the script works')
    a = ap.parse_args(argv)
    names = [p for p in a.probes.split(',') if p]
    unknown = [p for p in names if p not in PROBES]
    if unknown: ap.error(f'unknown probe(s) {", ".join(unknown)}; choose from {", ".join(PROBES)}')
    root, out = Path(a.root), runs_root(a.runs_root)
    extra = tuple(a.set)
    if a.smoke:                                            # a tiny world and a one-epoch tiny Stage-I to start from
        extra = TINY_OVERRIDES + ('train.epochs=1',) + extra
        make_synthetic_cub(root / 'data', **TINY, progress=False)
        train(root / 'data', 1, 'quickstart', a.run, TINY_OVERRIDES + tuple(a.set), epochs=1, runs_root=out, device=a.device, progress=False)
        a.captions, a.detail_images = 32, 8
    stage1 = out / a.run / 'stage1'
    if not any(stage1.glob('ckpt-*.pt')):
        ap.error(f'No trained Stage-I in {stage1}: run `stackgan quickstart` first (or pass --root/--run/--runs-root).')
    rows = []
    for name in names:
        rows.append(probe(name, root / 'data', stage1, out / 'stage2-probes', a.device, a.captions, a.detail_images, extra,
                          a.smoke, a.seed, a.curve))
        print(json.dumps(rows[-1]), flush=True)
    print(('TINY networks, one epoch: the numbers mean nothing.\n' if a.smoke else '') + table(rows))
    for r in rows:
        if 'curve' in r: print(f'{r["probe"]} (seed {r["seed"]}), detail x real by step:', ' '.join(f'{s}: {d:.2f}' for s, d in r['curve']))
    if a.json: Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
