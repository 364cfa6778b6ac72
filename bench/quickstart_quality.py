"""The quickstart's quality bar: does the default `stackgan quickstart` learn to follow its captions?

    python bench/quickstart_quality.py                      # the default quickstart in ./stackgan_quickstart (~6 min, 2 CPU cores)
    python bench/quickstart_quality.py --root DIR --bar 3   # another folder / bar

Runs (or, when ROOT already holds a finished run, resumes to nothing new and re-evaluates) the README's main job and
prints its caption-attribute accuracy, Stage-I and Stage-II, on captions of the training species and of the held-out
species, against chance (1 / palette size). Exits 1 when a stage misses the bar on the training species' captions;
the held-out species are reported, not gated (README, "Quality of the quickstart", says where they stand).
"""
import argparse
import sys
import time

from stackgan_nb.quickstart import SPLIT_NAMES, quickstart


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--root', default='stackgan_quickstart', help='quickstart folder (data and runs)')
    ap.add_argument('--device', default='auto')
    ap.add_argument('--bar', type=float, default=3.0, help='required multiple of chance on the training species')
    args = ap.parse_args(argv)
    t0 = time.time()
    res = quickstart(args.root, device=args.device, smoke=False, progress=False)
    acc = res['caption_accuracy']
    print(f'\n| stage | captions of | part-colour accuracy | x chance | majority baseline |\n|---|---|---|---|---|')
    for stage in ('stage1', 'stage2'):
        for split in ('train', 'test'):
            a = acc[f'{stage}_{split}']
            print(f'| Stage-{"I" * int(stage[-1])} | {SPLIT_NAMES[split]} | {a["colour_accuracy"]:.3f} | '
                  f'{a["colour_vs_chance"]:.1f}x | {a["colour_majority"]:.2f} |')
    ts = res['train_seconds']
    print(f'\nTraining: Stage-I {ts["stage1"]:.0f} s, Stage-II {ts["stage2"]:.0f} s on {res["device"]}; this call {time.time() - t0:.0f} s.')
    missed = [s for s in ('stage1', 'stage2') if acc[f'{s}_train']['colour_vs_chance'] < args.bar]
    if missed:
        print(f'MISSED: {", ".join(missed)} below {args.bar}x chance on the training species\' captions.')
        return 1
    print(f'OK: both stages at least {args.bar}x chance on the training species\' captions.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
