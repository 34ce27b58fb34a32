"""Every training script through its command line, on tiny synthetic CIFAR files: a run and its
files, --help, one-line errors with the right exit status, settings refused before any work,
the output folder, presets, divergence, failures and termination."""
import argparse
import importlib
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import OFFLINE, PNG_SIGNATURE, ROOT, assert_one_line_error, read_record, run_main, run_script

from run_records import RunRecord

# each script with the flags of a run short enough for a test: (flags, evaluation steps it records)
SCRIPTS = {
    'train_mlp_numpy': (['--max_steps', '25', '--eval_freq', '10', '--batch_size', '20', '--dnn_hidden_units', '16,8'],
                        [10, 20, 25]),
    'train_mlp_pytorch': (['--max_steps', '12', '--eval_freq', '5', '--batch_size', '16', '--optimizer', 'adamw',
                           '--scheduler', 'cosine', '--warmup_steps', '3', '--augment', '--norm', 'custom_layernorm',
                           '--label_smoothing', '0.1'], [5, 10, 12]),
    'train_convnet_pytorch': (['--max_steps', '3', '--eval_freq', '2', '--batch_size', '4', '--augment',
                               '--scheduler', 'onecycle'], [2, 3]),
    'train_transfer': (['--weights', 'none', '--max_steps', '2', '--eval_freq', '2', '--batch_size', '4',
                        '--image_size', '32'], [2]),
}
TORCH_SCRIPTS = [name for name in SCRIPTS if name != 'train_mlp_numpy']


@pytest.mark.parametrize('script', SCRIPTS)
def test_a_run_writes_its_record_curves_and_checkpoint(script, fake_cifar_dir, tmp_path):
    flags, eval_steps = SCRIPTS[script]
    out = tmp_path / 'run'
    result = run_script(script, ['--data_dir', fake_cifar_dir, *flags, '--output_dir', str(out)])
    assert result.returncode == 0, result.stderr
    record = read_record(out)
    assert record['summary']['status'] == 'completed' and record['test']['step'] == eval_steps
    assert record['train']['step'] == list(range(1, eval_steps[-1] + 1))
    assert record['summary']['final_test_accuracy'] == record['test']['accuracy'][-1]
    assert record['data']['folder'] == fake_cifar_dir and record['data']['official'] is False  # as given
    assert len(record['data']['fingerprint']) == 16
    assert record['config']['seed'] == 42 and record['config']['name'] in (script[6:], 'convnet_vgg',
                                                                          'transfer_efficientnet_lite0')
    assert len(record['train']['accuracy']) == len(record['train']['loss'])  # each batch's accuracy beside its loss
    assert (out / 'curves.png').read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(record['test']) == ['accuracy', 'loss', 'step'] and len(record['test']['loss']) == len(eval_steps)
    assert 'final test accuracy' in result.stdout
    if script in TORCH_SCRIPTS:
        import torch
        checkpoint = torch.load(out / 'best_model.pt', weights_only=True)  # plain tensors and config values only
        assert checkpoint['config']['max_steps'] == eval_steps[-1] and checkpoint['state_dict']
    assert sorted(name for name in os.listdir(out) if name.endswith('.tmp')) == []


@pytest.mark.parametrize('script', SCRIPTS)
def test_every_flag_has_its_default_in_the_parser_and_the_help(script):
    module = importlib.import_module(script)
    parser = module.build_parser()
    flags = [action for action in parser._actions if action.option_strings and action.help != argparse.SUPPRESS]
    help_text = ' '.join(parser.format_help().split())
    for action in flags:
        assert action.help and action.option_strings[0] in help_text
    assert help_text.count('(default: ') == len(flags) - 1  # every flag but --help shows its default
    assert 'random seed (numpy and torch) (default: 42)' in help_text
    args = module.parse_args([])
    assert args.seed == 42 and args.quiet is False and args.resume is False  # train(args) reads every setting here
    assert set(vars(args)) == {action.dest for action in flags} - {'help'}
    if script in ('train_mlp_numpy', 'train_mlp_pytorch'):  # the assignment's defaults, and no hidden layer
        assert (args.dnn_hidden_units, args.learning_rate, args.max_steps, args.batch_size, args.eval_freq) == (
            [100], 1e-3, 1400, 200, 100)
        assert 'number of training steps (default: 1400)' in help_text
        assert "'' for none, which is logistic regression on raw pixels and needs about --learning_rate 1e-6" in help_text
    if script == 'train_convnet_pytorch':
        assert (args.learning_rate, args.max_steps, args.batch_size, args.eval_freq, args.optimizer) == (
            1e-4, 5000, 32, 500, 'adam')
        assert args.channels_last and not module.parse_args(['--no_channels_last']).channels_last
    if script == 'train_transfer':
        assert args.augment and not module.parse_args(['--no_augment']).augment
        assert args.weights == 'imagenet'


def test_cifar10_dir_is_the_default_data_dir(monkeypatch):
    import train_mlp_numpy
    monkeypatch.setenv('CIFAR10_DIR', '/data/cifar-10-batches-py')
    assert train_mlp_numpy.parse_args([]).data_dir == '/data/cifar-10-batches-py'
    assert train_mlp_numpy.parse_args(['--data_dir', 'mine']).data_dir == 'mine'
    monkeypatch.delenv('CIFAR10_DIR')
    assert train_mlp_numpy.parse_args([]).data_dir == 'cifar10/cifar-10-batches-py'


@pytest.mark.parametrize('script, flag, value, fragment', [
    ('train_mlp_numpy', '--learning_rate', '-1', 'argument --learning_rate: must be a positive number, got -1'),
    ('train_mlp_numpy', '--learning_rate', 'nan', 'argument --learning_rate: must be a positive number, got nan'),
    ('train_mlp_numpy', '--learning_rate', 'fast', "argument --learning_rate: invalid float value: 'fast'"),
    ('train_mlp_numpy', '--batch_size', '0', 'argument --batch_size: must be a positive integer, got 0'),
    ('train_mlp_numpy', '--max_steps', '1.5', "argument --max_steps: invalid int value: '1.5'"),
    ('train_mlp_numpy', '--eval_freq', 'often', "argument --eval_freq: invalid int value: 'often'"),
    ('train_mlp_numpy', '--dnn_hidden_units', '100,abc', 'must be comma-separated positive integers'),
    ('train_mlp_numpy', '--dnn_hidden_units', '100,-5', 'must be comma-separated positive integers'),
    ('train_mlp_numpy', '--dnn_hidden_units', '\u00b2', 'must be comma-separated positive integers'),  # not a digit here
    ('train_mlp_numpy', '--seed', str(2 ** 32), 'argument --seed: must be an integer in 0..4294967295'),
    ('train_mlp_numpy', '--seed', '-3', 'argument --seed: must be an integer in 0..4294967295'),
    ('train_mlp_numpy', '--output_dir', 'x' * 300, 'argument --output_dir: must be a folder path of at most 4000 characters'),
    ('train_mlp_pytorch', '--optimizer', 'lbfgs', 'argument --optimizer: invalid choice'),
    ('train_mlp_pytorch', '--dropout', '1.5', 'argument --dropout: must be in [0, 1)'),
    ('train_mlp_pytorch', '--label_smoothing', '1', 'argument --label_smoothing: must be in [0, 1)'),
    ('train_mlp_pytorch', '--ema_decay', '1', 'argument --ema_decay: must be in (0, 1)'),
    ('train_mlp_pytorch', '--zca_eps', '0', 'argument --zca_eps: must be a positive number'),
    ('train_mlp_pytorch', '--preset', 'fastest', 'invalid choice'),
    ('train_mlp_pytorch', '--device', 'cuda:7', "'cuda:7' is not a device of this machine"),
    ('train_mlp_pytorch', '--device', 'tpu', "'tpu' is not a device of this machine"),
    ('train_mlp_pytorch', '--device', 'meta', "'meta' is not a device of this machine"),
    ('train_convnet_pytorch', '--arch', 'resnet', 'invalid choice'),
    ('train_convnet_pytorch', '--scheduler', 'linear', 'invalid choice'),
    ('train_transfer', '--image_size', '16', 'argument --image_size: must be in 32..1024'),
    ('train_transfer', '--normalization', 'other', 'invalid choice'),
])
def test_bad_flags_are_one_line_usage_errors(script, flag, value, fragment, tmp_path, monkeypatch, capsys):
    code, stderr = run_main(script, ['--data_dir', str(tmp_path / 'none'), '--output_dir', str(tmp_path / 'out'), flag,
                                     value], monkeypatch, capsys, env=OFFLINE)
    assert code == 2
    assert_one_line_error(stderr, fragment, '(see --help)')
    assert not (tmp_path / 'none').exists() and not (tmp_path / 'out').exists()  # refused before any work


@pytest.mark.parametrize('script, flags, fragment', [
    ('train_mlp_pytorch', ['--scheduler', 'onecycle', '--warmup_steps', '100', '--max_steps', '100'],
     '--warmup_steps (100) must be shorter than the run (100 steps)'),
    ('train_mlp_pytorch', ['--warmup_steps', '400', '--epochs', '1', '--batch_size', '128'],
     '--warmup_steps (400) must be shorter than the run (391 steps)'),
    ('train_convnet_pytorch', ['--epochs', '2', '--max_steps', '10'], 'give --epochs or --max_steps, not both'),
    ('train_convnet_pytorch', ['--preset', 'cpu', '--epochs', '2', '--max_steps', '10'],
     'give --epochs or --max_steps, not both'),
])
def test_flags_that_cannot_work_together_are_refused_before_loading_data(script, flags, fragment, tmp_path, monkeypatch,
                                                                   capsys):
    # a data folder with nothing in it and no way to download: any attempt to load would end in a data error
    code, stderr = run_main(script, ['--data_dir', str(tmp_path / 'none'), '--output_dir', str(tmp_path / 'out'), *flags],
                            monkeypatch, capsys, env=OFFLINE)
    assert code == 2, stderr
    assert_one_line_error(stderr, fragment)
    assert not (tmp_path / 'none').exists()


@pytest.mark.parametrize('script', ['train_mlp_numpy', 'train_mlp_pytorch'])
def test_a_batch_larger_than_the_training_set_is_refused_before_training(script, fake_cifar_dir, tmp_path,
                                                                         monkeypatch, capsys):
    code, stderr = run_main(script, ['--data_dir', fake_cifar_dir, '--batch_size', '500', '--output_dir',
                                     str(tmp_path / 'out')], monkeypatch, capsys)
    assert code == 1  # a fact of these data, found once they are loaded
    assert_one_line_error(stderr, '--batch_size 500 is larger than the 200 training images')
    assert not (tmp_path / 'out').exists()  # nothing written: the folder made for the run went again


@pytest.mark.parametrize('script', ['train_mlp_numpy', 'train_convnet_pytorch'])
@pytest.mark.parametrize('where', ['a file', 'under a file'])
def test_an_output_dir_that_cannot_be_a_folder_is_refused_first(script, where, tmp_path, monkeypatch, capsys):
    (tmp_path / 'taken').write_text('not a folder')
    output_dir = tmp_path / 'taken' if where == 'a file' else tmp_path / 'taken' / 'run'
    code, stderr = run_main(script, ['--data_dir', str(tmp_path / 'none'), '--output_dir', str(output_dir)],
                            monkeypatch, capsys, env=OFFLINE)
    assert code == 2
    assert_one_line_error(stderr, 'is a file, a link to nowhere, or lies under one')
    assert not (tmp_path / 'none').exists()  # refused before any data was looked for


def test_a_second_run_on_the_same_output_dir_is_refused(fake_cifar_dir, tmp_path, monkeypatch, capsys):
    import train_mlp_numpy
    out = tmp_path / 'out'
    with RunRecord(train_mlp_numpy.parse_args(['--output_dir', str(out)]), 'other', 'state.npz'):  # as a run holds it
        code, stderr = run_main('train_mlp_numpy', ['--data_dir', fake_cifar_dir, '--output_dir', str(out)],
                                monkeypatch, capsys)
        assert sorted(os.listdir(out)) == ['.run.lock']  # nothing of the refused run
    assert code == 1
    assert_one_line_error(stderr, 'is in use by another run')
    code, _ = run_main('train_mlp_numpy', ['--data_dir', fake_cifar_dir, '--output_dir', str(out),
                                           '--max_steps', '5', '--batch_size', '20'], monkeypatch, capsys)
    assert code == 0  # free again once the first run ends


def test_missing_data_is_one_line_and_leaves_no_output_folder(tmp_path):
    result = run_script('train_mlp_numpy', ['--data_dir', str(tmp_path / 'none' / 'cifar-10-batches-py'),
                                            '--output_dir', str(tmp_path / 'out')], env=OFFLINE)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, 'cannot download CIFAR-10', str(tmp_path / 'none' / 'cifar-10-batches-py'))
    assert not (tmp_path / 'out').exists()  # created for the run, removed again as it stayed empty


@pytest.mark.parametrize('script, flags', [('train_mlp_numpy', ['--learning_rate', '1e4']),
                                           ('train_mlp_pytorch', ['--learning_rate', '1e4', '--init', 'pytorch'])])
def test_divergence_stops_and_keeps_a_strict_json_record(script, flags, fake_cifar_dir, tmp_path):
    out = tmp_path / 'diverged'
    result = run_script(script, ['--data_dir', fake_cifar_dir, *flags, '--max_steps', '200', '--eval_freq', '100',
                                 '--batch_size', '20', '--output_dir', str(out)])
    assert result.returncode == 1
    record = read_record(out)  # fails on NaN or Infinity tokens
    assert record['summary']['status'] == 'diverged' and record['summary']['error']
    assert 0 < record['summary']['steps'] < 200 and (out / 'curves.png').is_file()
    assert f"run diverged after step {record['summary']['steps']}" in result.stderr


def test_an_exception_in_training_saves_a_failed_record_then_exits_1(fake_cifar_dir, tmp_path, monkeypatch, capsys):
    import mlp_numpy
    calls = []

    def breaks_at_step_7(self, dout):
        calls.append(1)
        if len(calls) == 7:
            raise FloatingPointError('injected failure')
        return original(self, dout)
    original = mlp_numpy.MLP.backward
    monkeypatch.setattr(mlp_numpy.MLP, 'backward', breaks_at_step_7)
    code, stderr = run_main('train_mlp_numpy', ['--data_dir', fake_cifar_dir, '--max_steps', '20', '--eval_freq', '5',
                                                '--batch_size', '20', '--quiet', '--output_dir', str(tmp_path)],
                            monkeypatch, capsys)
    assert code == 1
    assert_one_line_error(stderr, 'failed after step 6', 'FloatingPointError: injected failure', str(tmp_path))
    record = read_record(tmp_path)
    assert record['summary']['status'] == 'failed' and record['summary']['steps'] == 6
    assert record['summary']['error'] == 'FloatingPointError: injected failure' and record['test']['step'] == [5]
    assert (tmp_path / 'curves.png').is_file()


@pytest.mark.parametrize('flags, expected', [
    ([], {'optimizer': 'adamw', 'epochs': 60, 'max_steps': None, 'learning_rate': 1e-3}),
    (['--learning_rate', '0.5'], {'optimizer': 'adamw', 'epochs': 60, 'learning_rate': 0.5}),
    (['--max_steps', '7'], {'optimizer': 'adamw', 'epochs': None, 'max_steps': 7}),  # steps typed beat the preset's epochs
    (['--max_steps', '1400'], {'epochs': None, 'max_steps': 1400}),  # even at the script's default value
    (['--epochs', '3'], {'epochs': 3, 'max_steps': None}),
    (['--no_augment', '--dnn_hidden_units', '64'], {'augment': False, 'dnn_hidden_units': [64]}),
    (['--batch_size', '200'], {'batch_size': 200}),  # a flag typed with the script's default value still wins
])
def test_flags_typed_beat_the_preset(flags, expected):
    import train_mlp_pytorch
    args = train_mlp_pytorch.parse_args(['--preset', 'best', *flags])
    for key, value in expected.items():
        assert getattr(args, key) == value, key
    assert args.preset == 'best' and args.zca_eps == 0.1


def test_epochs_replace_the_default_max_steps():
    import train_convnet_pytorch
    args = train_convnet_pytorch.parse_args(['--epochs', '2'])
    assert (args.epochs, args.max_steps) == (2, None)
    assert train_convnet_pytorch.parse_args([]).max_steps == 5000


def test_termination_keeps_the_record_and_names_its_last_step(fake_cifar_dir, tmp_path):
    out = tmp_path / 'stopped'
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train_mlp_numpy.py'), '--data_dir', fake_cifar_dir,
                                '--max_steps', '10000000', '--eval_freq', '50', '--batch_size', '20',
                                '--output_dir', str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / 'history.json').exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)  # as Ctrl-C (SIGINT) would, through the same path
    _, stderr = process.communicate(timeout=60)
    stderr = stderr.decode()
    assert process.returncode == 130, stderr[-2000:]
    record = read_record(out)
    assert record['summary']['status'] == 'interrupted' and record['summary']['steps'] >= 50
    assert f"run interrupted after step {record['summary']['steps']}" in stderr and 'Traceback' not in stderr
    assert (out / 'curves.png').read_bytes()[:8] == PNG_SIGNATURE
    assert not [name for name in os.listdir(out) if name.endswith('.tmp')]
