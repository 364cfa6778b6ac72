"""Sampling from trained runs: determinism across processes, the command-line entry point, runs without an encoder."""
import hashlib
import json
import subprocess
import sys
import warnings

import pytest
import torch
from PIL import Image

from stackgan_nb.char_cnn_rnn import CharCNNRNN
from stackgan_nb.sample import Sampler, sample_main
from stackgan_nb.synthetic import TINY, make_synthetic_cub
from stackgan_nb.train import train
from stackgan_nb.widgets import CaptionWidget
from stackgan_nb.testing import make_tiny_runs

CAPTION = 'this bird has wings that are black and a crown that is white'
DIGEST = ('import hashlib, sys; from stackgan_nb.sample import Sampler; '
          's = Sampler("demo", runs_root=sys.argv[1]); r = s.generate(sys.argv[2], n=4, seed=11, use_ca=True); '
          'print(hashlib.sha256(r.stage1.numpy().tobytes() + r.stage2.numpy().tobytes()).hexdigest())')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return make_tiny_runs(tmp_path_factory.mktemp('tiny'))


def digest(r): return hashlib.sha256(r.stage1.numpy().tobytes() + r.stage2.numpy().tobytes()).hexdigest()


def test_same_seed_same_images_in_other_processes(tiny):
    here = Sampler('demo', runs_root=tiny[1])
    torch.manual_seed(999)                                   # the global RNG state must not matter
    mine = digest(here.generate(CAPTION, n=4, seed=11))
    theirs = [subprocess.run([sys.executable, '-c', DIGEST, str(tiny[1]), CAPTION], capture_output=True, text=True,
                             check=True).stdout.strip() for _ in range(2)]
    assert theirs == [mine, mine]
    assert digest(here.generate(CAPTION, n=4, seed=12)) != mine


def test_sample_main_writes_pngs(tiny, tmp_path, capsys):
    meta = sample_main('demo', CAPTION, n=3, seed=0, out=tmp_path / 'out', runs_root=tiny[1], device='cpu')
    out = capsys.readouterr().out
    assert '3 samples (64x64 and 256x256)' in out and 'CA on' in out
    assert {p.name for p in (tmp_path / 'out').iterdir()} == {'grid.png', 'sample.json', *(f'stage{s}_0{i}.png' for s in (1, 2) for i in range(3))}
    assert (meta['n'], meta['written']) == (3, 3)
    assert Image.open(tmp_path / 'out' / 'stage1_00.png').size == (64, 64)
    assert Image.open(tmp_path / 'out' / 'stage2_00.png').size == (256, 256)
    meta = json.loads((tmp_path / 'out' / 'sample.json').read_text())
    assert (meta['caption'], meta['seed'], meta['use_ca'], meta['stage']) == (CAPTION, 0, True, 2)
    sample_main('only-stage1', CAPTION, n=2, out=tmp_path / 's1', runs_root=tiny[1], no_ca=True, device='cpu')
    out = capsys.readouterr().out
    assert 'note: Stage-I images only (64x64)' in out and 'CA off' in out
    assert not list((tmp_path / 's1').glob('stage2_*')) and (tmp_path / 's1' / 'stage1_01.png').exists()


def test_run_without_a_stored_encoder(tmp_path):
    "Runs on the official CUB store no encoder: the error names the fix, and a char-CNN-RNN file makes it work."
    data = make_synthetic_cub(tmp_path / 'data', **TINY, progress=False)
    (data / 'birds' / 'text_encoder.json').unlink()          # like the official metadata: embeddings, no encoder
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        train(data, 1, 'tiny', 'cub-like', epochs=1, runs_root=tmp_path / 'runs', device='cpu', progress=False)
    with pytest.raises(ValueError, match='stores no text encoder.*char-cnn-rnn'):
        Sampler('cub-like', runs_root=tmp_path / 'runs')
    w = CaptionWidget('cub-like', runs_root=tmp_path / 'runs')
    assert w.button.disabled and 'stores no text encoder' in w.messages[0][1] and '--encoder PATH' in w.messages[0][1]
    torch.manual_seed(0)
    torch.save(CharCNNRNN(conv_dims=(8, 8, 8), emb_dim=1024).state_dict(), tmp_path / 'char_cnn_rnn.pt')
    s = Sampler('cub-like', runs_root=tmp_path / 'runs', encoder=tmp_path / 'char_cnn_rnn.pt')
    r = s.generate('this bird is red with a short beak', n=2)
    assert r.stage1.shape == (2, 3, 64, 64) and s.encoder.spec()['kind'] == 'char-cnn-rnn'
