"""A run folder written by an earlier version of the package (main at cea1257, before the trainer was redesigned and
before `model.stage1_in_stage2` / `train.g_cond` existed) still loads, samples and resumes, as it was trained."""
import json
import shutil
from pathlib import Path

import torch

from stackgan_nb.checkpoint import load_checkpoint
from stackgan_nb.runs import Run, load_generator
from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.train import train

OLD = Path(__file__).parent / 'reference' / 'run_cea1257'
TINY_OLD = ['model.gf_dim=4', 'model.df_dim=4', 'model.condition_dim=4', 'model.z_dim=8', 'model.r_num=1', 'train.batch_size=8',
            'train.g_ema=0.9']     # what that run was trained with (preset 'stackgan')


def old_run(tmp_path):
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)   # the same world it was trained on (deterministic)
    shutil.copytree(OLD, tmp_path / 'runs' / 'old-main')
    for s in (1, 2): (tmp_path / 'runs' / 'old-main' / f'stage{s}' / 'data.json').write_text(json.dumps({'data': str(data)}))
    return data, tmp_path / 'runs'


def test_an_old_run_loads_and_resumes_as_it_was_trained(tmp_path):
    data, runs = old_run(tmp_path)
    stored = json.loads((runs / 'old-main' / 'stage2' / 'config.json').read_text())['config']
    assert 'stage1_in_stage2' not in stored['model'] and 'g_cond' not in stored['train']     # written before they existed
    G, info = load_generator('old-main', runs_root=runs)
    state = load_checkpoint(sorted((runs / 'old-main' / 'stage2').glob('ckpt-*.pt'))[-1])
    assert (info['stage'], info['epoch'], info['ema']) == (2, 1, True)
    for k, v in G.state_dict().items(): assert torch.equal(v, state['G_ema'][k]), k
    for stage in (1, 2):
        t = train(data, stage, 'stackgan', 'old-main', TINY_OLD, epochs=2, runs_root=runs, device='cpu', progress=False)
        assert (t.epoch, t.step) == (2, 2 * state['step'])
        assert (t.preset.model.stage1_in_stage2, t.preset.train.g_cond) == ('eval', 'grad')       # as it was trained
        said = t.dir.messages()
        assert f'Resumed {t.dir.path} at epoch 1' in said and "continues as it was trained: " in said
        assert [r['epoch'] for r in t.dir.log()] == [1, 2]
    assert Run.find('old-main', runs).trained_stages() == [1, 2]
