"""Data-parallel training under torchrun on CPU processes (gloo): one record from rank 0 naming
the world size, the same learning as one process, each process a disjoint share of every batch."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from distributed import Processes
from training_utils import SettingsError

MLP_FLAGS = ['--device', 'cpu', '--max_steps', '200', '--eval_freq', '100', '--batch_size', '20', '--quiet']


def torchrun(script, args, n_processes=2):
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={n_processes}',
               os.path.join(ROOT, f'{script}.py'), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})


def record_of(folder):
    return json.loads(pathlib.Path(folder, 'history.json').read_text())


def test_the_mlp_trains_data_parallel_like_one_process(fake_cifar_dir, tmp_path):
    runs = tmp_path / 'runs'
    result = torchrun('train_mlp_pytorch', ['--data_dir', fake_cifar_dir, *MLP_FLAGS, '--output_dir', str(runs / 'ddp')])
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.listdir(runs) == ['ddp'] and result.stdout == ''  # one record, written by rank 0; --quiet on all
    parallel = record_of(runs / 'ddp')
    single = subprocess.run([sys.executable, os.path.join(ROOT, 'train_mlp_pytorch.py'), '--data_dir', fake_cifar_dir,
                             *MLP_FLAGS, '--output_dir', str(runs / 'single')], capture_output=True, cwd=ROOT)
    assert single.returncode == 0
    single = record_of(runs / 'single')
    assert parallel['config']['world_size'] == 2 and single['config']['world_size'] == 1
    assert parallel['summary']['status'] == 'completed' and parallel['test']['step'] == [100, 200]
    assert parallel['config']['batch_size'] == 20  # the global batch: the recipe does not change with the processes
    assert abs(parallel['summary']['final_test_accuracy'] - single['summary']['final_test_accuracy']) <= 0.05
    assert parallel['summary']['final_test_loss'] < 2 * single['summary']['final_test_loss'] + 0.01
    assert parallel['train']['loss'][-1] < 0.1 * parallel['train']['loss'][0]
    assert (runs / 'ddp' / 'best_model.pt').is_file()


def test_the_convnet_runs_under_torchrun(fake_cifar_dir, tmp_path):
    result = torchrun('train_convnet_pytorch', ['--data_dir', fake_cifar_dir, '--device', 'cpu', '--max_steps', '3',
                                                '--eval_freq', '3', '--batch_size', '8', '--augment', '--quiet',
                                                '--output_dir', str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    record = record_of(tmp_path)
    assert record['config']['world_size'] == 2 and record['summary']['steps'] == 3


def test_processes_from_the_environment():
    single = Processes(environ={})
    assert not single.distributed and single.is_main and single.device_name('auto') == 'auto'
    x = torch.arange(10)
    assert torch.equal(single.shard(x), x)
    second = Processes(environ={'WORLD_SIZE': '4', 'RANK': '1', 'LOCAL_RANK': '1'})
    assert second.distributed and not second.is_main
    assert second.shard(x).tolist() == [1, 5, 9]  # disjoint shares: rank r takes rows r, r + 4, ...
    assert second.device_name('cpu') == 'cpu'
    with pytest.raises(SettingsError, match='must be divisible by the 4 processes'):
        second.check_batch_size(30)
    with pytest.raises(SettingsError, match='under torchrun, --device must be auto, cuda or cpu'):
        second.device_name('cuda:3')
