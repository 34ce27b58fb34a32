"""The NumPy side of the project works without torch: its modules, its training script and its
benchmark import no torch (checked in a fresh process, where nothing else has loaded it)."""
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.parametrize('module', ['cifar10_download', 'cifar10_utils', 'modules', 'mlp_numpy', 'gradient_check',
                                    'run_records', 'cli_utils', 'train_mlp_numpy',
                                    'benchmarks.bench_mlp_numpy'])
def test_the_numpy_side_does_not_import_torch(module):
    code = f'import sys, {module}; print("torch" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'False'
