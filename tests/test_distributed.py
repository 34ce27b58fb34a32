"""Data-parallel training under torchrun on CPU processes (gloo): one record from rank 0 naming
the world size, the same learning as one process, each process a disjoint share of every batch."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, assert_one_line_error

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


def test_each_process_takes_its_share_of_every_batch_in_one_order(monkeypatch):
    import torch_training
    shares = []
    for rank in range(3):
        monkeypatch.setattr(torch_training, 'WORLD_SIZE', 3)
        monkeypatch.setattr(torch_training, 'RANK', rank)
        torch.manual_seed(100 + rank)  # the processes' own random streams differ ...
        batches = torch_training.TensorBatches(torch.arange(12.0).view(12, 1), torch.arange(12), 6, False, seed=5)
        shares.append(torch.cat([batches.next()[1] for _ in range(2)]).tolist())
    # ... yet they share one batch order: every image once per epoch, each in exactly one process's share
    assert sorted(sum(shares, [])) == list(range(12))
    assert all(len(share) == 4 for share in shares)


def test_flags_that_do_not_fit_torchrun_are_refused(monkeypatch, capsys):
    import torch_training
    import train_mlp_pytorch
    monkeypatch.setattr(torch_training, 'WORLD_SIZE', 4)
    with pytest.raises(SystemExit) as refused:
        train_mlp_pytorch.parse_args(['--batch_size', '30'])
    assert refused.value.code == 2
    assert_one_line_error(capsys.readouterr().err, 'a --batch_size divisible by the 4 processes')
