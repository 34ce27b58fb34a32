"""The experiments' and benchmarks' command lines: a bad value is refused by argparse in one line before any
work (exit status 2), and a missing data folder is one line too (exit status 1)."""
import subprocess
import sys

import pytest
from conftest import OFFLINE, ROOT, assert_one_line_error


def run_module(module, args, env=None):
    import os
    return subprocess.run([sys.executable, '-m', module, *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize('module, args, fragment', [
    ('experiments.seeds', ['--only', 'nosuch'], 'argument --only: unknown: nosuch'),
    ('experiments.mlp_sweep', ['--seeds', 'abc'], "argument --seeds: must be comma-separated int values, got 'abc'"),
    ('experiments.mlp_sweep', ['--seeds', '-1'], 'argument --seeds: must be a seed'),
    ('experiments.mlp_sweep', ['--only', 'tanh,nosuch'], 'argument --only: unknown: nosuch'),
    ('benchmarks.bench_mlp_numpy_vs_pytorch', ['--repeats', '0'], 'argument --repeats: must be a positive integer'),
    ('benchmarks.bench_layernorm', ['--rounds', '0'], 'argument --rounds: must be a positive integer'),
    ('benchmarks.bench_malloc', ['--rounds', '0'], 'argument --rounds: must be a positive integer'),
    ('benchmarks.bench_whole_run', ['--compare_with', '/nonexistent'], "'/nonexistent' is no checkout of this project"),
    ('benchmarks.bench_convnet_layout', ['--steps', '0'], 'argument --steps: must be a positive integer'),
    ('benchmarks.bench_layernorm', ['--json', '/proc/x/result.json'], "argument --json: cannot write '/proc/x"),
    ('benchmarks.convnet_gpu', ['--out', __file__], 'is a file, a link to nowhere, or lies under one'),
])
def test_a_bad_value_is_refused_in_one_line_before_any_work(module, args, fragment):
    result = run_module(module, args)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, fragment)


@pytest.mark.parametrize('module', ['experiments.input_scale', 'experiments.seeds', 'benchmarks.bench_mlp_numpy'])
def test_no_data_is_one_line(module, tmp_path):
    result = run_module(module, ['--data_dir', str(tmp_path / 'none' / 'cifar-10-batches-py')], env=OFFLINE)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, 'cannot download CIFAR-10')
    assert not (tmp_path / 'none').exists()
