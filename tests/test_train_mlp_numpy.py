"""train_mlp_numpy.py through its CLI and from Python, on synthetic data (and 300 real
steps when CIFAR10_DIR is set)."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import train_mlp_numpy
from conftest import ROOT
from training_utils import accuracy

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def run_script(script, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, **(env or {})})


def run_main_in_process(module, args, monkeypatch, capsys):
    """Call a script's main() with these command-line args; returns (exit code, stderr)."""
    monkeypatch.setattr('sys.argv', [module.__file__, *args])
    with pytest.raises(SystemExit) as exit_info:
        module.run_cli(module.main)
    return exit_info.value.code, capsys.readouterr().err


def assert_one_line_error(stderr, *fragments):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert 'error:' in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_run_outputs(output_dir, expected_eval_steps):
    record = json.loads(pathlib.Path(os.path.join(output_dir, 'history.json')).read_text())
    assert record['test']['step'] == expected_eval_steps
    assert len(record['test']['accuracy']) == len(expected_eval_steps)
    assert record['train']['step'] == list(range(1, expected_eval_steps[-1] + 1))
    assert record['summary']['status'] == 'completed'
    assert record['summary']['final_test_accuracy'] == record['test']['accuracy'][-1]
    assert open(os.path.join(output_dir, 'curves.png'), 'rb').read(8) == PNG_SIGNATURE
    rows = open(os.path.join(output_dir, 'test.csv')).read().splitlines()
    assert rows[0] == 'step,loss,accuracy' and len(rows) == len(expected_eval_steps) + 1
    return record


def test_cli_smoke_run(fake_cifar_dir, tmp_path):
    out = tmp_path / 'run'
    result = run_script('train_mlp_numpy.py', '--data_dir', fake_cifar_dir, '--max_steps', '25', '--eval_freq', '10',
                        '--batch_size', '20', '--dnn_hidden_units', '16,8', '--output_dir', str(out))
    assert result.returncode == 0, result.stderr
    record = assert_run_outputs(out, [10, 20, 25])  # every eval_freq steps and after the last
    assert record['config']['dnn_hidden_units'] == [16, 8]
    assert record['config']['learning_rate'] == 1e-3 and record['config']['seed'] == 42
    assert 'final test accuracy' in result.stdout


@pytest.mark.parametrize('flag, value, fragment', [
    ('--learning_rate', '-1', 'must be > 0'),
    ('--batch_size', '0', 'must be > 0'),
    ('--max_steps', '1.5', "expected a number, got '1.5'"),
    ('--eval_freq', 'often', "expected a number, got 'often'"),
    ('--dnn_hidden_units', '100,abc', "comma-separated positive integers"),
    ('--dnn_hidden_units', '100,-5', "comma-separated positive integers"),
])
def test_cli_rejects_bad_flags(fake_cifar_dir, flag, value, fragment, monkeypatch, capsys):
    code, stderr = run_main_in_process(train_mlp_numpy, ['--data_dir', fake_cifar_dir, flag, value], monkeypatch, capsys)
    assert code == 2
    assert_one_line_error(stderr, flag, fragment)


def test_cli_missing_data_is_one_line(tmp_path):
    result = run_script('train_mlp_numpy.py', '--data_dir', str(tmp_path / 'none' / 'cifar-10-batches-py'),
                        env={'CIFAR10_URL': 'http://127.0.0.1:9/cifar-10-python.tar.gz'})
    assert result.returncode == 1
    assert_one_line_error(result.stderr, 'cannot download CIFAR-10')


def test_train_from_python_returns_history(fake_cifar_dir):
    record = train_mlp_numpy.train(dnn_hidden_units=[], max_steps=30, eval_freq=15, batch_size=20,
                                   data_dir=fake_cifar_dir, progress=False)
    assert record['test']['step'] == [15, 30]
    assert record['config']['dnn_hidden_units'] == []
    assert record['train']['loss'][-1] < record['train']['loss'][0]
    assert record['summary']['final_test_accuracy'] > 0.5  # chance is 0.1 on the learnable synthetic classes


def test_same_seed_same_run(fake_cifar_dir):
    runs = [train_mlp_numpy.train(max_steps=20, eval_freq=10, batch_size=30, data_dir=fake_cifar_dir,
                                  progress=False, seed=3) for _ in range(2)]
    assert runs[0]['train']['loss'] == runs[1]['train']['loss']


def test_divergence_stops_and_keeps_records(fake_cifar_dir, tmp_path):
    out = tmp_path / 'diverged'
    result = run_script('train_mlp_numpy.py', '--data_dir', fake_cifar_dir, '--learning_rate', '1e4',
                        '--max_steps', '200', '--eval_freq', '100', '--batch_size', '20', '--output_dir', str(out))
    assert result.returncode == 1
    record = json.loads(pathlib.Path(out / 'history.json').read_text())
    assert record['summary']['status'] == 'diverged'
    assert 0 < record['summary']['steps'] < 200
    assert os.path.isfile(out / 'curves.png')


def test_accuracy_helper():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(scores, np.array([[0, 1], [0, 1], [0, 1]])) == pytest.approx(2 / 3)
    assert accuracy(scores, np.array([1, 0, 1])) == 1.0
    assert isinstance(accuracy(scores, np.array([1, 0, 1])), float)
    assert train_mlp_numpy.accuracy is accuracy  # the skeleton's name on the script


@pytest.mark.slow
def test_300_steps_on_real_data(real_cifar):
    record = train_mlp_numpy.train(max_steps=300, eval_freq=100, data=real_cifar, progress=False)
    assert record['summary']['final_test_accuracy'] > 0.35


def test_termination_keeps_the_record(fake_cifar_dir, tmp_path):
    import signal
    import time
    out = tmp_path / 'stopped'
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train_mlp_numpy.py'), '--data_dir', fake_cifar_dir,
                                '--max_steps', '10000000', '--eval_freq', '50', '--batch_size', '20',
                                '--output_dir', str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / 'history.json').exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)  # as Ctrl-C (SIGINT) would, through the same path
    _, stderr = process.communicate(timeout=60)  # waits, and closes the pipes
    assert process.returncode == 130, stderr.decode()[-2000:]
    record = json.loads(pathlib.Path(out / 'history.json').read_text())
    assert record['summary']['status'] == 'interrupted'
    assert record['summary']['steps'] >= 50 and record['test']['step'][0] == 50
    assert (out / 'curves.png').is_file()
