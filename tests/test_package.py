"""Package-level checks that do not belong to one notebook: the console script, layering, import side effects."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import stackgan_nb

LIB = Path(stackgan_nb.__file__).parent

# Modules may import only from modules of a lower layer (core at the bottom, widgets and CLI at the top).
LAYERS = [
    {'core'},
    {'models', 'text', 'char_cnn_rnn', 'download', 'checkpoint'},
    {'losses', 'data', 'synthetic', 'runs'},
    {'steps', 'metrics', 'inception', 'scorer'},
    {'train', 'callbacks', 'distributed'},
    {'sample', 'evaluate', 'compare', 'quality', 'testing'},
    {'widgets', 'quickstart'},
    {'cli'},
]


def layer_of(name):
    for i, layer in enumerate(LAYERS):
        if name in layer: return i
    raise AssertionError(f'module {name} is not placed in a layer in tests/test_package.py::LAYERS')


def internal_imports(path):
    "Names of the package modules `path` imports (absolute `stackgan_nb.x` or relative `.x`, as nbdev exports them)."
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            if node.module: yield node.module.split('.')[0]
            else: yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('stackgan_nb.'):
            yield node.module.split('.')[1]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith('stackgan_nb.'): yield a.name.split('.')[1]


def test_layers_import_downward_only():
    assert set(internal_imports(LIB / 'steps.py')) >= {'core', 'losses'}   # the parser sees nbdev's relative imports
    for path in sorted(LIB.glob('*.py')):
        if path.name.startswith('_'): continue
        me = layer_of(path.stem)
        for dep in internal_imports(path):
            assert layer_of(dep) <= me and (dep != path.stem), f'{path.stem} (layer {me}) imports {dep} (layer {layer_of(dep)})'


def test_test_fixtures_stay_out_of_the_library():
    "Fixtures live in `testing`, which no library module imports (the layers alone would let its layer-mates import it)."
    fixtures = {'LocalServer', 'synthetic_download_server', 'T7Writer', 'write_t7', 'T7Storage', 'T7Tensor', 'T7Object', 'T7Function'}
    for path in sorted(LIB.glob('*.py')):
        if path.name.startswith('_') or path.stem == 'testing': continue
        assert 'testing' not in set(internal_imports(path)), f'{path.stem} imports the test fixtures (stackgan_nb.testing)'
        defined = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
        assert not defined & fixtures, f'{path.stem} defines the test fixture(s) {sorted(defined & fixtures)}: they belong in testing'
    import stackgan_nb.testing as testing
    assert all(hasattr(testing, name) for name in fixtures)


def test_import_has_no_side_effects():
    mods = [p.stem for p in LIB.glob('*.py') if not p.name.startswith('_')]
    code = ('import sys, torch\n' + ''.join(f'import stackgan_nb.{m}\n' for m in mods) +
            "assert 'google.colab' not in sys.modules, 'imported google.colab'\n"
            "assert not torch.cuda.is_initialized(), 'initialised CUDA at import'\n")
    subprocess.run([sys.executable, '-c', code], check=True, cwd='/')


def test_console_script_runs():
    exe = Path(sys.executable).parent / 'stackgan'
    out = subprocess.run([str(exe), '--help'], check=True, capture_output=True, text=True).stdout
    assert 'usage: stackgan' in out and 'summary' in out
    res = subprocess.run([str(exe), 'summary', '--preset', 'missing'], capture_output=True, text=True)
    assert res.returncode == 2 and "Unknown preset 'missing'" in res.stderr and 'Traceback' not in res.stderr
    res = subprocess.run([str(exe)], capture_output=True, text=True)                 # no command: a usage error
    assert res.returncode == 2 and 'usage: stackgan' in res.stderr
    reader_left = subprocess.Popen([str(exe), 'summary', '--preset', 'tiny', '-v'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader_left.stdout.close()                                                       # `| head`: gone before the first line
    assert 'Traceback' not in reader_left.communicate()[1].decode() and reader_left.returncode == 1


def test_runtime_requirements_are_ranges():
    from configparser import ConfigParser
    cfg = ConfigParser(delimiters=['=']); cfg.read(LIB.parent / 'settings.ini')
    for req in cfg['DEFAULT']['requirements'].split():
        assert '==' not in req, f'runtime requirement {req} is pinned: Colab would reinstall it; pin in constraints.txt instead'
