"""The shape of the code base the README promises: the NumPy side never imports torch, no
source file is longer than a reader can hold, and no call passes long positional lists."""
import ast
import pathlib
import subprocess
import sys

import pytest

from conftest import ROOT

MAX_LINES = 350
MAX_POSITIONAL = 6
SOURCES = sorted(p for p in pathlib.Path(ROOT).rglob('*.py') if not {'.git', '.venv'} & set(p.parts))


@pytest.mark.parametrize('module', ['cifar10_utils', 'cifar10_download', 'modules', 'mlp_numpy', 'training_utils',
                                    'run_records', 'cli_utils', 'train_mlp_numpy'])
def test_the_numpy_side_does_not_import_torch(module):
    code = f'import sys, {module}; print("torch" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'False'


def test_no_source_file_is_too_long():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f'over {MAX_LINES} lines: {long}'


def test_no_call_passes_long_positional_lists():
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and len(node.args) > MAX_POSITIONAL:
                offenders.append(f'{path.relative_to(ROOT)}:{node.lineno}')
    assert not offenders, offenders
