"""The Colab tutorials run top to bottom in a real Jupyter kernel under SMOKE=1 (heavy parts shrunk, not skipped)."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / 'nbs' / 'tutorials').glob('*.ipynb'))


@pytest.mark.parametrize('path', TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_in_a_kernel(path, tmp_path, monkeypatch):
    monkeypatch.setenv('SMOKE', '1')
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:                                       # what nbdev marks as not to run (the Colab !pip installs)
        if cell.cell_type == 'code' and '#| eval: false' in cell.source: cell.source = ''
    NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert not errors
