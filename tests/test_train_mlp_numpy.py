"""train_mlp_numpy.train(parse_args([...])) from Python, as a notebook calls it, on synthetic data (and 300
real steps when CIFAR10_DIR is set); its command line is tested with the other scripts' in test_cli.py."""
import numpy as np
import pytest

import train_mlp_numpy
from cli_utils import RunError
from run_records import accuracy
from train_mlp_numpy import parse_args


def test_train_from_python_returns_history(fake_cifar_dir):
    record = train_mlp_numpy.train(parse_args(['--dnn_hidden_units', '', '--max_steps', '30', '--eval_freq', '15',
                                               '--batch_size', '20', '--data_dir', fake_cifar_dir, '--quiet',
                                               '--output_dir', str(fake_cifar_dir) + '_run']))
    assert record['test']['step'] == [15, 30]
    assert record['config']['dnn_hidden_units'] == []
    assert record['train']['loss'][-1] < record['train']['loss'][0]
    assert record['summary']['final_test_accuracy'] > 0.5  # chance is 0.1 on the learnable synthetic classes


def test_same_seed_same_run(fake_cifar_dir):
    args = parse_args(['--max_steps', '20', '--eval_freq', '10', '--batch_size', '30', '--data_dir', fake_cifar_dir,
                       '--quiet', '--seed', '3'])
    args.output_dir = None  # from Python: a run that writes no files
    runs = [train_mlp_numpy.train(args) for _ in range(2)]
    assert runs[0]['train']['loss'] == runs[1]['train']['loss']


def test_accuracy_helper():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(scores, np.array([[0, 1], [0, 1], [0, 1]])) == pytest.approx(2 / 3)
    assert accuracy(scores, np.array([1, 0, 1])) == 1.0
    assert isinstance(accuracy(scores, np.array([1, 0, 1])), float)
    assert train_mlp_numpy.accuracy is accuracy  # the skeleton's name on the script


@pytest.mark.slow
def test_300_steps_on_real_data(real_cifar):
    args = parse_args(['--max_steps', '300', '--quiet'])
    args.output_dir = None
    record = train_mlp_numpy.train(args, data=real_cifar)
    assert record['summary']['final_test_accuracy'] > 0.35


def test_a_failure_in_training_raises_after_saving_the_record(fake_cifar_dir, tmp_path):
    import cifar10_utils
    data = cifar10_utils.get_cifar10(fake_cifar_dir)
    data['test'] = cifar10_utils.DataSet(data['test'].images[:, :2], data['test'].labels)  # wrong shape for the MLP
    with pytest.raises(RunError, match='failed after step 5 .*ValueError.*record saved in') as failure:
        train_mlp_numpy.train(parse_args(['--max_steps', '10', '--eval_freq', '5', '--batch_size', '20', '--quiet',
                                          '--output_dir', str(tmp_path)]), data=data)
    assert isinstance(failure.value.__cause__, ValueError)  # the original error, for a notebook's traceback
    assert '"status": "failed"' in (tmp_path / 'history.json').read_text()
