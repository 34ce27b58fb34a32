"""Experiment bookkeeping: which runs count as done, and tables that show stopped runs."""
import json

from experiments import mlp_sweep
from experiments.records import is_done, load_record


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


def test_sweep_table_shows_runs_that_stopped_before_evaluating():
    rows = [dict(name='default', group='single', changes='none', why='w', final_test_accuracy=0.5,
                 best_test_accuracy=0.51, steps=1400, time_s=4.0, seed=42, status='completed'),
            dict(name='lr_1e-2', group='single', changes='learning_rate=0.01', why='w', final_test_accuracy=None,
                 best_test_accuracy=None, steps=50, time_s=0.2, seed=42, status='diverged')]
    lines = mlp_sweep.markdown_table(rows).splitlines()
    assert len(lines) == 4
    assert '| 0.5000 | +0.0000 | 0.5100 | 1400 |' in lines[2]
    assert '| — (diverged) |  | — | 50 |' in lines[3]


def test_every_experiment_name_is_unique_and_has_a_reason():
    names = [e[0] for e in mlp_sweep.EXPERIMENTS]
    assert len(names) == len(set(names))
    assert all(e[1] in ('single', 'combo') and e[2] for e in mlp_sweep.EXPERIMENTS)
    assert {'default', 'tanh', 'best'} <= set(names)  # Q2.2 and the preset are measured rows


def test_tanh_saturation_measures_the_first_hidden_layer():
    import numpy as np
    import torch
    from experiments import tanh_saturation
    from mlp_pytorch import MLP
    model = MLP(12, [5, 4], 3, 'tanh')
    images = np.random.default_rng(0).normal(size=(7, 3, 2, 2)).astype(np.float32)  # flattened to 12 inputs
    pre = tanh_saturation.first_layer_preactivations(model, images)
    first = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][0]  # 12 -> 5
    expected = torch.from_numpy(images.reshape(7, 12)) @ first.weight.T + first.bias
    assert pre.shape == (7, 5)
    torch.testing.assert_close(pre, expected.detach())
