"""--resume: a run stopped by Ctrl-C, SIGKILL (also in the middle of a save) or a full disk goes on from
its last evaluation and ends with the record of the run that was never stopped, every step, loss and
accuracy to the last bit; a changed flag, a missing or corrupt state, or torchrun are refused in one line."""
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, assert_one_line_error, read_record, run_main, run_script, write_fake_cifar

TIMING = ('time_s', 'eval_time_s', 'train_images_per_s')
# each script: flags of a short run with several evaluations, and what to count to stop it between them
RUNS = {
    'train_mlp_numpy': (['--max_steps', '40', '--eval_freq', '10', '--batch_size', '20', '--dnn_hidden_units', '16'],
                        'modules.CrossEntropyModule.forward'),
    'train_mlp_pytorch': (['--max_steps', '40', '--eval_freq', '10', '--batch_size', '16', '--optimizer', 'adamw',
                           '--scheduler', 'onecycle', '--augment', '--dropout', '0.1', '--norm', 'batchnorm',
                           '--ema_decay', '0.9', '--tta'], 'mlp_pytorch.MLP.forward'),
    'train_convnet_pytorch': (['--max_steps', '8', '--eval_freq', '2', '--batch_size', '4', '--augment',
                               '--scheduler', 'cosine'], 'convnet_pytorch.ConvNet.forward'),
    'train_transfer': (['--max_steps', '8', '--eval_freq', '2', '--batch_size', '4', '--image_size', '32'],
                       'efficientnet_lite0.EfficientNetLite0.forward'),  # the ImageNet weights, 5 blocks fixed
}
# a script run whose counted function stops the process at its n-th call: by a signal, or by a disk that is full
STOPPED_RUN = '''
import importlib, os, signal, sys
module_name, attribute = sys.argv[1].rsplit('.', 1)
owner_name, function_name = module_name.rsplit('.', 1) if module_name.count('.') else (module_name, None)
owner = importlib.import_module(owner_name)
owner = getattr(owner, function_name) if function_name else owner
original, calls, stop_at, how = getattr(owner, attribute), [], int(sys.argv[2]), sys.argv[3]

def counted(*args, **kwargs):
    calls.append(1)
    if len(calls) == stop_at:
        if how == 'disk full':  # from now on no file the run writes can be put in place
            def full(*args):
                raise OSError(28, 'No space left on device')
            os.replace = full
        else:
            os.kill(os.getpid(), getattr(signal, how))
    return original(*args, **kwargs)
setattr(owner, attribute, counted)
script = importlib.import_module(sys.argv[4])
sys.argv = [sys.argv[4] + '.py'] + sys.argv[5:]
sys.exit(script.run_cli(script.main))
'''


def stopped_run(script, counted, stop_at, how, args):
    return subprocess.run([sys.executable, '-c', STOPPED_RUN, counted, str(stop_at), how, script, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def checkpoint_step(folder):
    """The step of the checkpoint in a run folder (state.npz or state.pt)."""
    if (folder / 'state.npz').exists():
        import numpy as np
        return json.loads(str(np.load(folder / 'state.npz')['record']))['step']
    import torch
    return torch.load(folder / 'state.pt', weights_only=True)['record']['step']


def without_timing(record):
    return {**record, 'summary': {k: v for k, v in record['summary'].items() if k not in TIMING},
            'environment': None}


@pytest.fixture(scope='module')
def straight_runs(tmp_path_factory):
    """Each script's run, never stopped, on one synthetic data folder: {script: (its flags, its record)}."""
    folder = tmp_path_factory.mktemp('straight')
    data_dir = write_fake_cifar(folder / 'cifar-10-batches-py')
    runs = {}
    for script, (flags, _) in RUNS.items():
        flags = ['--data_dir', data_dir, '--quiet', *flags]
        assert run_script(script, [*flags, '--output_dir', str(folder / script)]).returncode == 0
        runs[script] = flags, read_record(folder / script)
    return runs


@pytest.mark.parametrize('script, how, exit_status', [(script, how, status) for script in RUNS for how, status in (
    ('SIGINT', 130), ('SIGKILL', -9))] + [('train_mlp_numpy', 'disk full', 1)])
def test_a_stopped_run_resumes_into_the_straight_run(script, how, exit_status, straight_runs, tmp_path):
    flags, straight = straight_runs[script]
    stop_at = 6 if script in ('train_convnet_pytorch', 'train_transfer') else 25  # a call of the counted function between evaluations
    stopped = stopped_run(script, RUNS[script][1], stop_at, how, [*flags, '--output_dir', str(tmp_path)])
    assert stopped.returncode == exit_status, stopped.stderr[-2000:]
    if how == 'disk full':
        assert_one_line_error(stopped.stderr, 'No space left on device', 'free some space, then run the same command with --resume')
    assert read_record(tmp_path)['summary']['steps'] < straight['summary']['steps']
    resumed = run_script(script, [*flags, '--output_dir', str(tmp_path), '--resume'])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert without_timing(read_record(tmp_path)) == without_timing(straight)
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.tmp')]


def test_sigkill_in_the_middle_of_a_save_then_resume(fake_cifar_dir, tmp_path):
    flags = ['--data_dir', fake_cifar_dir, '--quiet', *RUNS['train_mlp_numpy'][0]]
    assert run_script('train_mlp_numpy', [*flags, '--output_dir', str(tmp_path / 'straight')]).returncode == 0
    # the second evaluation's save dies between writing history.json's temporary file and moving it into place
    # (the first evaluation moved history.json and state.npz)
    stopped = stopped_run('train_mlp_numpy', 'os.replace', 3, 'SIGKILL', [*flags, '--output_dir', str(tmp_path / 'x')])
    assert stopped.returncode == -9
    assert read_record(tmp_path / 'x')['test']['step'] == [10]  # the last whole record; a .tmp lies beside it
    resumed = run_script('train_mlp_numpy', [*flags, '--output_dir', str(tmp_path / 'x'), '--resume'])
    assert resumed.returncode == 0, resumed.stderr
    assert without_timing(read_record(tmp_path / 'x')) == without_timing(read_record(tmp_path / 'straight'))
    assert not [name for name in os.listdir(tmp_path / 'x') if name.endswith('.tmp')]  # the dead run's is gone


@pytest.fixture
def finished_run(fake_cifar_dir, tmp_path):
    flags = ['--data_dir', fake_cifar_dir, '--quiet', *RUNS['train_mlp_numpy'][0], '--output_dir', str(tmp_path / 'run')]
    assert run_script('train_mlp_numpy', flags).returncode == 0
    return flags


def test_resuming_a_finished_run_changes_nothing_but_its_time(finished_run, tmp_path):
    before = read_record(tmp_path / 'run')
    assert run_script('train_mlp_numpy', [*finished_run, '--resume']).returncode == 0
    assert without_timing(read_record(tmp_path / 'run')) == without_timing(before)


def test_a_changed_flag_is_refused_naming_it(finished_run, tmp_path):
    result = run_script('train_mlp_numpy', [*finished_run, '--resume', '--max_steps', '50', '--learning_rate', '0.01'])
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "--learning_rate (0.001 then, 0.01 now)", "--max_steps (40 then, 50 now)")


def test_a_missing_or_corrupt_checkpoint_is_refused(finished_run, tmp_path):
    state = tmp_path / 'run' / 'state.npz'
    state.write_bytes(state.read_bytes()[:100])
    result = run_script('train_mlp_numpy', [*finished_run, '--resume'])
    assert result.returncode == 1
    assert_one_line_error(result.stderr, f"cannot read the checkpoint '{state}'", 'run without --resume')
    state.unlink()
    result = run_script('train_mlp_numpy', [*finished_run, '--resume'])
    assert result.returncode == 2
    assert_one_line_error(result.stderr, 'holds no checkpoint (state.npz) to go on from; run without --resume')


def test_nothing_to_resume_is_refused(fake_cifar_dir, tmp_path, monkeypatch, capsys):
    code, stderr = run_main('train_mlp_numpy', ['--data_dir', fake_cifar_dir, '--output_dir', str(tmp_path / 'empty'),
                                                '--resume'], monkeypatch, capsys)
    assert code == 2
    assert_one_line_error(stderr, 'holds no checkpoint')
    assert not (tmp_path / 'empty').exists()


def test_resume_under_torchrun_is_refused_in_one_line(fake_cifar_dir, tmp_path, monkeypatch, capsys):
    import torch_training
    monkeypatch.setattr(torch_training, 'WORLD_SIZE', 2)
    code, stderr = run_main('train_mlp_pytorch', ['--data_dir', fake_cifar_dir, '--device', 'cpu', '--resume',
                                                  '--output_dir', str(tmp_path / 'run')], monkeypatch, capsys)
    assert code == 2
    assert_one_line_error(stderr, 'under torchrun: no --resume')


@pytest.mark.parametrize('script', RUNS)
def test_killed_after_its_last_checkpoint_the_run_resumes_complete(script, straight_runs, tmp_path):
    """SIGKILL after the final checkpoint is written and before the final record: the record on disk still says
    'running' at an earlier step; --resume ends with the straight run's record, every step there."""
    flags, straight = straight_runs[script]
    n_evaluations = len(straight['test']['step'])
    # each evaluation but the last writes history.json and the checkpoint (and best_model.pt when it improves)
    replaces = 2 * (n_evaluations - 1) + 1 + (sum(
        acc > max(straight['test']['accuracy'][:i], default=-1) for i, acc in enumerate(straight['test']['accuracy']))
        if script != 'train_mlp_numpy' else 0)
    stopped = stopped_run(script, 'os.replace', replaces + 1, 'SIGKILL', [*flags, '--output_dir', str(tmp_path)])
    assert stopped.returncode == -9
    assert read_record(tmp_path)['summary']['status'] == 'running'
    assert checkpoint_step(tmp_path) == straight['summary']['steps']  # the last step's checkpoint is whole
    resumed = run_script(script, [*flags, '--output_dir', str(tmp_path), '--resume'])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert without_timing(read_record(tmp_path)) == without_timing(straight)


def test_a_hand_edited_record_is_ignored_and_rewritten_from_the_checkpoint(finished_run, tmp_path):
    straight = read_record(tmp_path / 'run')
    edited = dict(straight, train={'step': [1], 'loss': ['NaN']}, summary={'status': 'completed'})
    (tmp_path / 'run' / 'history.json').write_text(json.dumps(edited))
    assert run_script('train_mlp_numpy', [*finished_run, '--resume']).returncode == 0
    assert without_timing(read_record(tmp_path / 'run')) == without_timing(straight)


def test_a_checkpoint_of_another_run_is_refused(finished_run, fake_cifar_dir, tmp_path):
    """A finished 40-step run's checkpoint copied into the folder of a 20-step run: the flags differ."""
    shorter = [*finished_run[:-1], str(tmp_path / 'short'), '--max_steps', '20']
    assert run_script('train_mlp_numpy', shorter).returncode == 0
    (tmp_path / 'short' / 'state.npz').write_bytes((tmp_path / 'run' / 'state.npz').read_bytes())
    result = run_script('train_mlp_numpy', [*shorter, '--resume'])
    assert result.returncode == 2
    assert_one_line_error(result.stderr, '--max_steps (40 then, 20 now)')


def test_changed_data_are_refused_and_the_same_data_by_another_path_are_not(finished_run, fake_cifar_dir, tmp_path):
    data_dir = finished_run[finished_run.index('--data_dir') + 1]
    other_path = [*finished_run, '--resume', '--data_dir', data_dir + '/']  # the same files: resumed
    os.symlink(data_dir, tmp_path / 'link')
    for path in (data_dir + '/', str(tmp_path / 'link')):
        assert run_script('train_mlp_numpy', [*finished_run, '--resume', '--data_dir', path]).returncode == 0, path
    write_fake_cifar(data_dir, seed=7)  # other images at the same path
    result = run_script('train_mlp_numpy', other_path)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, 'are not those the run began with', 'run without --resume')


def test_a_checkpoint_of_an_earlier_version_is_refused_in_one_line(finished_run, tmp_path):
    import numpy as np
    np.savez(tmp_path / 'run' / 'state.npz', step=40, order=np.arange(3))  # as today's main wrote it: no record
    result = run_script('train_mlp_numpy', [*finished_run, '--resume'])
    assert result.returncode == 1
    assert_one_line_error(result.stderr, 'cannot read the checkpoint', '(KeyError)', 'run without --resume')
