"""The quickstart's quality bar: does the default `stackgan quickstart` follow its captions, and does Stage-II add detail?

    python bench/quickstart_quality.py                       # the default quickstart in ./stackgan_quickstart (~8 min, 2 CPU cores)
    python bench/quickstart_quality.py --root DIR --max-minutes 8
    python bench/quickstart_quality.py --seed 1                                  # the same recipe from another seed
    python bench/quickstart_quality.py --root DIR --set model.condition_dim=32   # a variant (a fresh runs folder: $STACKGAN_RUNS)
    python bench/quickstart_quality.py --smoke --root DIR                         # tiny sizes, seconds: that the script works

Runs (or, when ROOT already holds a finished run, resumes to nothing new and re-measures) the README's main job and
prints its quality report (stackgan_nb.quality): part-colour accuracy of each stage on captions of the training and of
the held-out species, against the captions the images were drawn from (matched), against shuffled captions (the same
images: what ignoring the caption scores) and the real birds' own (the ceiling); and Stage-II's detail at 256 px against
the real birds' and the upsampled Stage-I's. Exits 1 when the final images (Stage-II) miss a bar on either split:

- matched accuracy >= 0.5 (--matched),
- matched >= 3x the shuffled accuracy of the same images (--lift),
- Stage-II's matched accuracy not below Stage-I's (by more than --tolerance, the measurement's noise),
- Stage-II's detail >= 0.8x the real birds' (--detail),
- and, with --max-minutes, the whole call within that many minutes.
"""
import argparse
import sys
import time

from stackgan_nb.cli import number_arg, setting_arg
from stackgan_nb.quality import SPLIT_NAMES, quality_lines
from stackgan_nb.quickstart import quickstart


def misses(q: dict, matched=0.5, lift=3.0, tolerance=0.01, detail=0.8) -> list[str]:
    "The bars a quality report (stackgan_nb.quality.quality_report of a two-stage run) misses."
    out = []
    for sp, name in SPLIT_NAMES.items():
        s1, s2 = q['stage1'][sp]['following'], q['stage2'][sp]['following']
        if s2['matched'] < matched: out.append(f'Stage-II matched {s2["matched"]:.3f} < {matched} ({name})')
        if s2['matched'] < lift * s2['shuffled']:
            out.append(f'Stage-II matched {s2["matched"]:.3f} < {lift}x its shuffled {s2["shuffled"]:.3f} ({name})')
        if s2['matched'] < s1['matched'] - tolerance:
            out.append(f'Stage-II matched {s2["matched"]:.3f} below Stage-I\'s {s1["matched"]:.3f} ({name})')
        d, real = q['stage2'][sp]['detail']['stage2'], q['real'][sp]['detail']['real']
        if d < detail * real: out.append(f'Stage-II detail {d / real:.2f}x < {detail}x the real birds\' ({name})')
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--root', default='stackgan_quickstart', help='quickstart folder (data and runs)')
    ap.add_argument('--device', default='auto')
    ap.add_argument('--matched', type=float, default=0.5, help='required matched part-colour accuracy of Stage-II, both splits')
    ap.add_argument('--lift', type=float, default=3.0, help='required matched / shuffled ratio of Stage-II, both splits')
    ap.add_argument('--tolerance', type=float, default=0.01, help='how far Stage-II may fall below Stage-I (noise)')
    ap.add_argument('--detail', type=float, default=0.8, help="required Stage-II detail as a fraction of the real birds'")
    ap.add_argument('--max-minutes', type=float, help='also require the whole call to take at most this long')
    ap.add_argument('--seed', type=number_arg(0), default=0, help="the run's seed (default 0, the README's run; another trains quickstart-seedN)")
    ap.add_argument('--set', action='append', default=[], metavar='SECTION.FIELD=VALUE', type=setting_arg,
                    help="change the preset for both stages, e.g. --set model.condition_dim=32 (the epochs stay the quickstart's)")
    ap.add_argument('--smoke', action='store_true', help='tiny world and networks, one epoch each: that the script works')
    args = ap.parse_args(argv)
    t0 = time.time()
    res = quickstart(args.root, device=args.device, smoke=args.smoke, progress=False, seed=args.seed, overrides=args.set)
    minutes = (time.time() - t0) / 60
    q = res['quality']
    print('\n' + '\n'.join(quality_lines(q)))
    ts = res['train_seconds']
    print(f'Training: Stage-I {ts["stage1"]:.0f} s, Stage-II {ts["stage2"]:.0f} s on {res["device"]}; this call {minutes:.1f} min.')
    missed = misses(q, args.matched, args.lift, args.tolerance, args.detail)
    if args.max_minutes is not None and minutes > args.max_minutes: missed.append(f'{minutes:.1f} min > {args.max_minutes} min')
    if q.get('caveat'): missed.append(f'the report has a caveat: {q["caveat"]}')
    if missed:
        print('MISSED:\n- ' + '\n- '.join(missed))
        return 1
    print(f'OK: Stage-II matched >= {args.matched} and >= {args.lift}x shuffled on both splits, not below Stage-I, '
          f'detail >= {args.detail}x real.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
