"""A tiny trained run for the sampling and widget tests (a few seconds on a CPU)."""
import shutil
import warnings
from pathlib import Path

from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.train import train

# Ten times the paper's learning rate so that a few steps move the weights (and BatchNorm's running statistics)
# far enough that samples depend on the noise; Stage-II for a single epoch.
TINY_MODEL = ['model.gf_dim=8', 'model.df_dim=4', 'model.condition_dim=4', 'model.z_dim=8', 'model.r_num=1',
              'train.batch_size=4', 'train.g_lr=0.002', 'train.d_lr=0.002']


def make_tiny_runs(root) -> tuple[Path, Path]:
    "(data folder, runs folder) with run 'demo' (Stage-I and Stage-II) and run 'only-stage1' (Stage-I only)."
    root = Path(root)
    data = make_synthetic_cub(root / 'data', **TINY, progress=False)
    runs = root / 'runs'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')                       # a tiny run's mode-collapse warnings
        for stage, epochs in ((1, 10), (2, 1)):
            train(data, stage, 'stackgan', 'demo', TINY_MODEL, epochs=epochs, runs_root=runs, device='cpu', progress=False)
    shutil.copytree(runs / 'demo' / 'stage1', runs / 'only-stage1' / 'stage1')
    return data, runs
