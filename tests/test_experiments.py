"""Experiment bookkeeping: which runs count as done, and tables that show stopped runs."""
import json

import train_mlp_pytorch
from experiments import mlp_sweep, seeds, tanh_saturation
from experiments.records import as_flags, is_done, load_record


def write_record(folder, name, status, config, accuracy=None):
    (folder / name).mkdir(parents=True)
    summary = dict(status=status, steps=50, final_test_accuracy=accuracy, best_test_accuracy=accuracy,
                   time_s=1.0)
    (folder / name / 'history.json').write_text(json.dumps({'config': config, 'summary': summary}))


def test_is_done_needs_the_same_settings_and_a_finished_run(tmp_path):
    write_record(tmp_path, 'ok', 'completed', dict(learning_rate=0.01, seed=42), 0.5)
    write_record(tmp_path, 'blew_up', 'diverged', dict(learning_rate=1.0, seed=42))
    write_record(tmp_path, 'stopped', 'interrupted', dict(learning_rate=0.01, seed=42), 0.3)
    assert is_done(tmp_path, 'ok', dict(learning_rate=0.01))
    assert not is_done(tmp_path, 'ok', dict(learning_rate=0.02))  # settings changed: run again
    assert is_done(tmp_path, 'blew_up', dict(learning_rate=1.0))  # divergence is a result, not redone
    assert not is_done(tmp_path, 'stopped', dict(learning_rate=0.01))
    assert not is_done(tmp_path, 'missing', {})
    assert load_record(tmp_path, 'missing') is None


def test_sweep_table_gives_each_row_its_mean_and_judges_its_difference_against_the_noise():
    rows = [dict(name='default', group='single', change='defaults', accuracies=[0.50, 0.49, 0.51], status='completed',
                 base=None),
            dict(name='lr_1e-2', group='single', change='lr', accuracies=[], status='diverged', base='default'),
            dict(name='small', group='single', change='s', accuracies=[0.505, 0.495, 0.515], status='completed',
                 base='default'),
            dict(name='combo_a', group='combo', change='a', accuracies=[0.55, 0.56, 0.54], status='completed',
                 base='default')]
    lines = mlp_sweep.table(rows).splitlines()
    assert len(lines) == 6
    assert '| 0.5000 ± 0.0100 |' in lines[2]  # three seeds, as every row (else their count)
    assert lines[3].endswith('| — diverged |  |  |')
    # +0.005 against a standard error of sqrt(0.01^2/3 + 0.01^2/3) = 0.0082: t = 0.61 with 4 degrees of freedom
    assert lines[4].endswith('| +0.0050 | noise, p = 0.57 |')
    assert lines[5].endswith('| +0.0500 vs default | effect, p < 0.01 |')  # t = 6.1; a combination's base is named
    assert lines[5].startswith('| [combo_a](results/mlp_sweep/combo_a/history.json) |')


def test_sweep_rows_measure_combinations_against_the_previous_one(monkeypatch):
    record = {'summary': dict(final_test_accuracy=0.5, best_test_accuracy=0.5, steps=1, time_s=1.0,
                              status='completed'), 'config': {'seed': 42}}
    monkeypatch.setattr(mlp_sweep, 'load_record', lambda folder, name: record)
    rows = {row['name']: row for row in mlp_sweep.collect_rows()}
    assert rows['default']['base'] is None and rows['tanh']['base'] == 'default'
    assert rows['adam_kaiming_bn']['base'] == 'default' and rows['+dropout_wd']['base'] == 'adam_kaiming_bn'
    assert rows['+wider_40ep']['base'] == '+onecycle_ls_gelu' and rows['+zca']['base'] == '+onecycle_ls_gelu'
    assert rows['best']['base'] == '+wider_40ep'
    assert rows['tanh']['accuracies'] == [0.5, 0.5, 0.5]  # one record per seed


def test_the_seed_study_counts_only_runs_that_ended(tmp_path, monkeypatch):
    for seed, status, accuracy in ((42, 'completed', 0.50), (43, 'completed', 0.48), (44, 'running', 0.30)):
        write_record(tmp_path, f'mlp_numpy_default/seed_{seed}', status, dict(seed=seed), accuracy)
    monkeypatch.setattr(seeds, 'seed_location', lambda run, seed: (tmp_path, f'{run}/seed_{seed}'))
    row = next(row for row in seeds.collect_rows() if row['run'] == 'mlp_numpy_default')
    assert row['seeds'] == [42, 43] and row['accuracies'] == [0.50, 0.48]  # the run still going is left out
    assert abs(row['mean'] - 0.49) < 1e-12


def test_each_seed_has_its_own_record_and_the_best_row_is_the_presets():
    assert mlp_sweep.location('tanh') == (mlp_sweep.RECORDS, 'tanh')
    assert mlp_sweep.location('tanh', 43) == (mlp_sweep.RECORDS, 'tanh/seed_43')
    assert mlp_sweep.location('best')[1] == 'mlp_pytorch_best'  # where --preset best's README command writes it
    assert mlp_sweep.location('best', 44)[1] == 'mlp_pytorch_best/seed_44'


def test_every_experiment_name_is_unique_and_has_a_reason():
    names = [e[0] for e in mlp_sweep.EXPERIMENTS]
    assert len(names) == len(set(names))
    assert all(e[1] in ('single', 'combo') and e[2] for e in mlp_sweep.EXPERIMENTS)
    for name, _, _, changes in mlp_sweep.EXPERIMENTS:  # every row is a command line the script takes
        args = train_mlp_pytorch.parse_args(as_flags(changes))
        assert {key: getattr(args, key) for key in changes} == changes, name
    assert {'default', 'tanh', 'best'} <= set(names)  # Q2.2 and the preset are measured rows


def test_tanh_saturation_measures_the_first_hidden_layer():
    import numpy as np
    import torch

    from mlp_pytorch import MLP
    model = MLP(12, [5, 4], 3, 'tanh')
    images = np.random.default_rng(0).normal(size=(7, 3, 2, 2)).astype(np.float32)  # flattened to 12 inputs
    pre = tanh_saturation.first_layer_preactivations(model, images)
    first = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][0]  # 12 -> 5
    expected = torch.from_numpy(images.reshape(7, 12)) @ first.weight.T + first.bias
    assert pre.shape == (7, 5)
    torch.testing.assert_close(pre, expected.detach())


def test_saturation_shares():
    import torch
    pre = torch.tensor([[-3.0, -1.0, 0.5, 2.5]])
    shares = tanh_saturation.saturation(pre)
    assert shares == {'share_beyond_2': 0.5, 'share_below_minus_2': 0.25, 'median_abs_preactivation': 1.0}


def test_settings_become_the_flags_a_script_takes():
    import train_convnet_pytorch
    flags = as_flags(dict(dnn_hidden_units=[512, 256], augment=True, tta=False, learning_rate=1e-3, epochs=10))
    assert flags == ['--dnn_hidden_units', '512,256', '--augment', '--no_tta', '--learning_rate', '0.001',
                     '--epochs', '10']
    args = train_convnet_pytorch.parse_args(as_flags(dict(train_convnet_pytorch.PRESETS['cpu'], seed=43)))
    preset = train_convnet_pytorch.parse_args(['--preset', 'cpu', '--seed', '43'])
    assert vars(args) == {**vars(preset), 'preset': None}  # a preset's flags typed out are the preset


def test_a_diverged_seed_has_no_accuracy_and_its_row_says_so(monkeypatch):
    def record(name, seed):
        diverged = name.startswith('momentum') and not name.endswith('seed_44')
        return {'summary': dict(final_test_accuracy=0.3 if diverged else 0.5, best_test_accuracy=0.5, steps=1,
                                time_s=1.0, status='diverged' if diverged else 'completed'), 'config': {'seed': seed}}
    monkeypatch.setattr(mlp_sweep, 'load_record', lambda folder, name: record(name, int(name[-2:]) if
                                                                               'seed_' in name else 42))
    row = next(row for row in mlp_sweep.collect_rows() if row['name'] == 'momentum')
    assert row['status'] == 'diverged (2/3)' and row['accuracies'] == [0.5]  # the last evaluation of a diverged run
