"""The shared training helpers: augmentation, batching, schedules, optimizers, and the run record
(evaluations, divergence, Ctrl-C, failures, strict JSON, whole files, the output folder)."""
import json
import math

import numpy as np
import pytest
import torch

from cli_utils import RunError
from run_records import RunRecord
from torch_training import OPTIMIZERS, TensorBatches, make_optimizer, random_crop_flip


def settings(**changes):
    """The namespace train(args) gets, with the tuning flags the factories read."""
    import argparse
    defaults = dict(optimizer='sgd', learning_rate=1.0, momentum=0.9, weight_decay=0.0, scheduler='none',
                    warmup_steps=0, ema_decay=None, output_dir=None, quiet=True, resume=False, batch_size=4,
                    eval_freq=2)
    return argparse.Namespace(**{**defaults, **changes})


def test_random_crop_flip_gives_shifted_or_mirrored_crops():
    torch.manual_seed(0)
    pad = 2
    images = torch.randn(64, 3, 8, 8)
    out = random_crop_flip(images, padding=pad)
    assert out.shape == images.shape and out.dtype == images.dtype
    padded = torch.nn.functional.pad(images, (pad,) * 4)
    flipped = 0
    for i in range(len(images)):
        matches = [(top, left, flip) for top in range(2 * pad + 1) for left in range(2 * pad + 1)
                   for flip in (False, True)
                   if torch.equal(out[i], (lambda crop: crop.flip(-1) if flip else crop)(
                       padded[i, :, top:top + 8, left:left + 8]))]
        assert matches, f'image {i} is not a crop of its padded original'
        flipped += matches[0][2]
    assert 16 < flipped < 48  # about half are mirrored
    positions = {(int(torch.nonzero(out[i].abs().sum(0))[0, 0])) for i in range(len(images))}
    assert len(positions) > 1  # crops differ between images of one batch


def test_crop_padding_0_only_mirrors():
    """--crop_padding 0 (flips only): each image of a batch is itself or its mirror, about half mirrored."""
    torch.manual_seed(0)
    images = torch.randn(64, 3, 8, 8)
    batches = TensorBatches(images, torch.arange(64), batch_size=64, augment=True, seed=0, padding=0)
    x, y = batches.next()
    same = [torch.equal(x[i], images[y[i]]) for i in range(64)]
    mirrored = [torch.equal(x[i], images[y[i]].flip(-1)) for i in range(64)]
    assert all(a or b for a, b in zip(same, mirrored)) and 16 < sum(mirrored) < 48


def test_tensor_batches_cover_each_epoch_once():
    torch.manual_seed(0)
    images = torch.arange(10, dtype=torch.float32).view(10, 1)
    batches = TensorBatches(images, torch.arange(10), batch_size=3, augment=False, seed=0)
    epoch = [batches.next() for _ in range(3)]  # 9 of 10, the last incomplete batch is dropped
    seen = torch.cat([y for _, y in epoch])
    assert len(set(seen.tolist())) == 9 and batches.position == 9
    assert all(torch.equal(x[:, 0].long(), y) for x, y in epoch)
    first_order = batches.order
    batches.next()
    assert batches.position == 3 and not torch.equal(batches.order, first_order)  # a new epoch, a new order


def lr_curve(name, steps=100, warmup=0):
    opt, sched, _ = make_optimizer(settings(scheduler=name, warmup_steps=warmup), torch.nn.Linear(1, 1), steps)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    return lrs


def test_schedules():
    assert lr_curve('none') == [1.0] * 100
    step = lr_curve('step')
    assert step[0] == 1.0 and step[49] == 1.0 and math.isclose(step[50], 0.1) and math.isclose(step[75], 0.01)
    cosine = lr_curve('cosine')
    assert cosine[0] == 1.0 and math.isclose(cosine[50], 0.5, abs_tol=0.02) and cosine[-1] < 0.01
    warm = lr_curve('cosine', warmup=10)
    assert warm[0] == pytest.approx(0.1) and warm[9] < 1.0 and warm[10] == pytest.approx(1.0)
    one_cycle = lr_curve('onecycle')
    assert one_cycle[0] < 0.1 and max(one_cycle) == pytest.approx(1.0, rel=0.01) and one_cycle[-1] < 1e-3
    assert int(np.argmax(one_cycle)) == pytest.approx(30, abs=1)


@pytest.mark.parametrize('name', OPTIMIZERS)
def test_optimizers_step(name):
    model = torch.nn.Linear(3, 1, bias=False)
    torch.nn.init.ones_(model.weight)
    opt, _, ema = make_optimizer(settings(optimizer=name, learning_rate=0.1, weight_decay=0.01, ema_decay=0.5), model, 10)
    model.weight.square().sum().backward()
    opt.step()
    ema.update_parameters(model)
    assert (model.weight < 1).all() and (ema.module.weight < 1).all()


def test_a_frozen_parameter_is_left_out_of_the_optimizer():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    opt, _, _ = make_optimizer(settings(), model, 10)
    assert [p for group in opt.param_groups for p in group['params']] == list(model[1].parameters())


def run_toy(losses, output_dir=None, eval_freq=2, stop=None):
    """A toy run through the record as a training loop drives it; `stop(step)` may raise."""
    with RunRecord(settings(output_dir=output_dir, eval_freq=eval_freq), 'toy', 'state.npz') as run:
        run.start(len(losses))
        try:
            for step, loss in enumerate(losses, start=1):
                if stop:
                    stop(step)
                run.log(step, loss, 0.5)
                if (reason := run.divergence()):
                    run.end('diverged', reason)
                    return run
                if step % eval_freq == 0 or step == len(losses):
                    run.evaluate(step, 0.5, 0.75 + step / 100)
        except KeyboardInterrupt:
            run.end('interrupted')
            return run
        except Exception as err:
            raise run.failed(err) from err
        run.end('completed')
    return run


def test_the_record_stops_a_run_whose_loss_is_not_finite(tmp_path):
    run = run_toy([3.0, 2.0, 1.0, float('nan'), 1.0], str(tmp_path))
    assert run.status == 'diverged' and run.test['step'] == [2]  # step 4 reads the NaN before evaluating
    assert run.train['step'] == [1, 2, 3, 4] and 'not finite by step 4' in run.error
    record = json.loads((tmp_path / 'history.json').read_text(), parse_constant=lambda t: pytest.fail(f'{t}: not strict'))
    assert record['summary']['status'] == 'diverged' and record['train']['loss'] == [3.0, 2.0, 1.0, None]
    assert record['summary']['best_test_accuracy'] == 0.77


def test_divergence_is_a_mean_loss_far_above_the_first():
    assert run_toy([2.3] * 60).status == 'completed'
    run = run_toy([2.3] + [30.0] * 59, eval_freq=100)
    assert run.status == 'diverged' and 'exceeds 10 x the first loss' in run.error and run.train['step'][-1] == 50
    assert run_toy([0.01] + [5.0] * 59).status == 'completed'  # a tiny first loss is floored at 1


def test_the_record_keeps_what_came_before_ctrl_c():
    def ctrl_c(step):
        if step == 4:
            raise KeyboardInterrupt
    run = run_toy([torch.tensor(1.0 / step) for step in range(1, 11)], stop=ctrl_c)  # tensors are read as floats
    assert run.status == 'interrupted' and run.test['step'] == [2]
    assert run.train['step'] == [1, 2, 3] and run.train['loss'][2] == pytest.approx(1 / 3)


def test_a_failure_is_saved_then_raised_as_run_failed(tmp_path):
    def fail(step):
        if step == 5:
            raise ZeroDivisionError('boom')
    with pytest.raises(RunError, match='toy: run failed after step 4 \\(ZeroDivisionError: boom\\); record saved in') as failure:
        run_toy([1.0] * 10, str(tmp_path), stop=fail)
    assert isinstance(failure.value.__cause__, ZeroDivisionError)
    record = json.loads((tmp_path / 'history.json').read_text())
    assert record['summary']['status'] == 'failed' and record['test']['step'] == [2, 4]


def test_an_error_before_training_leaves_no_folder_and_no_lock(tmp_path):
    with pytest.raises(RunError):
        with RunRecord(settings(output_dir=str(tmp_path / 'out')), 'toy', 'state.npz'):
            raise RunError('found after loading the data')
    assert not (tmp_path / 'out').exists()


def test_the_saved_record_is_compact_strict_json_that_loses_nothing(tmp_path):
    run = run_toy([0.5 + step / 1e4 for step in range(1000)], str(tmp_path), eval_freq=500)
    text = (tmp_path / 'history.json').read_text()
    assert json.loads(text) == run.record
    assert len(text.splitlines()) < 80  # each list of 1000 numbers on one line


def test_a_record_the_disk_refuses_never_claims_completion(tmp_path, monkeypatch):
    import errno
    import os

    import run_records
    replace = os.replace

    def full_for_curves(partial, path):
        if path.endswith('curves.png'):
            raise OSError(errno.ENOSPC, 'No space left on device')
        replace(partial, path)
    monkeypatch.setattr(run_records.os, 'replace', full_for_curves)
    with pytest.raises(OSError, match='No space left on device') as refused:
        run_toy([1.0] * 4, str(tmp_path))
    assert refused.value.filename == str(tmp_path / 'curves.png')  # run_cli names it in one line
    record = json.loads((tmp_path / 'history.json').read_text())
    assert record['summary']['status'] == 'running' and record['test']['step'] == [2]  # the last record that fit
    assert sorted(os.listdir(tmp_path)) == ['.run.lock', 'history.json']  # no .tmp, no PNG


def test_evaluation_time_is_the_evaluations_alone(tmp_path):
    """time_s - eval_time_s is the training time the records report (training images per second)."""
    import time

    def slow_step(step):
        time.sleep(0.01)  # training: 10 ms a step; the toy's evaluations take no time
    run = run_toy([1.0] * 20, eval_freq=5, stop=slow_step)
    summary = run.record['summary']
    assert summary['time_s'] >= 0.2 and summary['eval_time_s'] < 0.05
    assert summary['train_images_per_s'] == pytest.approx(20 * 4 / (summary['time_s'] - summary['eval_time_s']), rel=0.01)
