"""Stage-I's caption following along its training: is the quickstart's Stage-I still learning when it stops?

    python bench/stage1_curve.py                       # after `stackgan quickstart` (its data and run in the default places)
    python bench/stage1_curve.py --root DIR --run quickstart --runs-root RUNS
    python bench/stage1_curve.py --train no-r1 --set train.r1_weight=0 --epochs 100   # a variant of the quickstart's Stage-I
    python bench/stage1_curve.py --train kl2-seed1 --set train.kl_coef=2 --seed 1 --epochs 60   # ... from another seed
    python bench/stage1_curve.py --smoke               # a tiny world and a two-epoch tiny Stage-I: that the script works

Scores every Stage-I generator snapshot the run kept (`stackgan_nb.callbacks.Snapshots`: five epochs spread over the
run, the last one included) as the quickstart's report does (`stackgan_nb.quality.stage_quality`): part-colour
accuracy against the captions the images were drawn from (matched) and against shuffled captions, for captions of the
training and of the held-out species. With no learning-rate decay (the preset `quickstart`), a shorter run is the
beginning of a longer one, so the table also says what fewer epochs would have reached.

`--train NAME` first trains (or continues) Stage-I of the run NAME on the quickstart's data: the preset `quickstart`
with the `--set` changes, to `--epochs`, keeping `--snapshots` generator snapshots; then scores that run. Variants
compared this way start from the same data as the quickstart's own Stage-I, and from its seed unless `--seed` says
otherwise: runs of one recipe differ by a few hundredths from seed to seed, so compare recipes over several seeds.
"""
import argparse
import json
import sys
from pathlib import Path

from stackgan_nb.cli import number_arg, setting_arg
from stackgan_nb.core import TINY_OVERRIDES
from stackgan_nb.data import read_cub
from stackgan_nb.quality import SPLIT_NAMES, stage_quality
from stackgan_nb.runs import Run, runs_root
from stackgan_nb.scorer import synthetic_scorer
from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.train import train


def table(rows: list[dict]) -> str:
    head = '| epoch | step | matched (train / held-out) | shuffled (train / held-out) |\n|---|---|---|---|'
    f = lambda r, k: ' / '.join(f'{r[sp][k]:.3f}' for sp in SPLIT_NAMES)
    return '\n'.join([head] + [f'| {r["epoch"]} | {r["step"]} | {f(r, "matched")} | {f(r, "shuffled")} |' for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--root', default='stackgan_quickstart', help="the quickstart's folder (its synthetic data in ROOT/data)")
    ap.add_argument('--run', default='quickstart')
    ap.add_argument('--runs-root', default=None, help='where that run is (default: the runs folder the quickstart used)')
    ap.add_argument('--captions', type=int, default=1000, help='captions per split, as the quickstart report')
    ap.add_argument('--json', default=None, help='also write the rows here')
    ap.add_argument('--train', default=None, metavar='NAME', help="first train (or continue) Stage-I of the run NAME: the quickstart's "
                    'preset with the --set changes; then score that run')
    ap.add_argument('--set', action='append', default=[], metavar='SECTION.FIELD=VALUE', type=setting_arg,
                    help='with --train: a change to the preset')
    ap.add_argument('--epochs', type=int, default=None, help="with --train: train to this many epochs (default: the preset's)")
    ap.add_argument('--snapshots', type=int, default=5, help='with --train: generator snapshots kept, spread over the run')
    ap.add_argument('--seed', type=number_arg(0), default=0, help="with --train: the run's seed (noise, data order, augmentation; the quickstart's: 0)")
    ap.add_argument('--smoke', action='store_true', help='tiny world and networks, two epochs: that the script works')
    a = ap.parse_args(argv)
    root, out = Path(a.root), runs_root(a.runs_root)
    data = root / 'data'
    if (a.set or a.epochs or a.seed) and not a.train: ap.error('--set, --epochs and --seed change a run that --train NAME trains.')
    if a.train == 'quickstart': ap.error("--train quickstart would change the quickstart's own run: choose another name.")
    if a.smoke:
        make_synthetic_cub(data, **TINY, progress=False)
        a.set, a.epochs, a.captions = [*TINY_OVERRIDES, *a.set], a.epochs or 2, 32
        a.train = a.train or a.run
    if a.train:
        if not data.exists(): ap.error(f'No data in {data}: run `stackgan quickstart` first (or pass --root).')
        train(data, 1, 'quickstart', a.train, a.set, epochs=a.epochs, runs_root=out, progress=False, snapshots=a.snapshots, seed=a.seed)
        a.run = a.train
    run = Run.named(a.run, out)
    snaps = run.stage(1).snapshots() if run.stage(1).exists() else []
    if not snaps:
        ap.error(f'No Stage-I snapshots in {run.path}: run `stackgan quickstart` first (or pass --root/--run/--runs-root).')
    scorer = synthetic_scorer(data, epochs=1 if a.smoke else 4)[0]
    splits = {sp: read_cub(data, sp) for sp in SPLIT_NAMES}
    rows = []
    for snap in snaps:
        G = run.load_generator(1, epoch=snap.epoch)[0]
        row = {'epoch': snap.epoch, 'step': snap.step}
        for sp, split in splits.items():
            f = stage_quality(G, split, scorer, a.captions)['following']
            row[sp] = {'matched': f['matched'], 'shuffled': f['shuffled']}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(('TINY networks, two epochs: the numbers mean nothing.\n' if a.smoke else '') + table(rows))
    if a.json: Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
