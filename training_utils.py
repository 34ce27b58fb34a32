"""What every training script shares, NumPy-only: errors, accuracy, seeding, checks of
settings, and the step/evaluation loop. Records and their files are in run_records.py,
command-line parsing in cli_utils.py, the PyTorch training routine in torch_training.py.
"""
import contextlib
import math
import os
import random
import sys
import time

import numpy as np

LOG_EVERY = 50  # steps between progress-bar updates of the train loss (one host sync each)
DIVERGENCE_FACTOR = 10  # a mean loss this many times the first one (at least 1) means divergence
SEED_MAX = 2 ** 32 - 1  # numpy's seeds are 32-bit
RUN_ARGUMENTS = ('output_dir', 'progress', 'data', 'network')  # what train() takes besides the run's settings


class SettingsError(ValueError):
    """Settings that cannot work, found before any work is done (the command line exits with 2)."""


class RunError(RuntimeError):
    """A run that cannot start or go on, e.g. its output folder is in use (the command line exits with 1)."""


class RunFailed(RunError):
    """An exception inside the training loop; the run's record was saved with status 'failed' first."""


# --------------------------------------------------------------------------- metrics and seeds

def accuracy(predictions, targets):
    """Fraction of rows whose highest score is the target class.

    predictions: [batch, n_classes] scores (NumPy array or torch tensor);
    targets: one-hot [batch, n_classes] or class indices [batch]. Returns a float.
    """
    predicted = predictions.argmax(1)
    if targets.ndim == 2:
        targets = targets.argmax(1)
    return float((predicted == targets).sum()) / len(predicted)


def set_seed(seed):
    """Seed Python, NumPy and (if it is loaded) torch, as the skeleton's seed 42 does."""
    random.seed(seed)
    np.random.seed(seed)
    if 'torch' in sys.modules:
        sys.modules['torch'].manual_seed(seed)


# --------------------------------------------------------------------------- settings

def run_config(name, arguments):
    """A run's config for its record: its name and the settings of a train() call
    (`arguments`: train's locals() before anything else is assigned)."""
    return {'name': name, **{key: value for key, value in arguments.items() if key not in RUN_ARGUMENTS}}


def require(condition, message):
    if not condition:
        raise SettingsError(message)


def require_choice(name, value, choices):
    require(value in choices, f'{name} must be one of {tuple(choices)}, got {value!r}')


def hidden_units(value):
    """'100,50' or [100, 50] -> [100, 50]; '' or [] -> [] (no hidden layer)."""
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(',')] if value.strip() else []
        units = [int(part) if part.isdigit() else -1 for part in parts]
    else:
        units = [unit if isinstance(unit, int) else -1 for unit in value]
    require(all(unit > 0 for unit in units),
            f"hidden units must be comma-separated positive integers such as '100' or '512,256', got {value!r}")
    return units


def check_run_settings(*, max_steps, batch_size, eval_freq, learning_rate, seed):
    """The settings every script shares; max_steps None means the length is given in epochs."""
    for name, value in (('max_steps', max_steps), ('batch_size', batch_size), ('eval_freq', eval_freq)):
        require(value is None and name == 'max_steps' or isinstance(value, int) and value > 0,
                f'{name} must be a positive integer, got {value!r}')
    require(isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0,
            f'learning_rate must be a positive number, got {learning_rate!r}')
    require(isinstance(seed, int) and 0 <= seed <= SEED_MAX, f"seed must be in 0..{SEED_MAX} (numpy's range), got {seed!r}")


def check_batch_size(batch_size, n_train):
    require(batch_size <= n_train, f'batch_size {batch_size} is larger than the {n_train} training images')


def physical_memory_bytes():
    """This machine's memory, or None where the OS does not say."""
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(n_bytes, available_bytes, where):
    """Refuse a network whose parameters and training state alone exceed the memory at hand (if known)."""
    if available_bytes is not None:
        gib = 2 ** 30
        require(n_bytes < available_bytes,
                f'the network needs about {n_bytes / gib:.1f} GiB for its parameters, gradients and optimizer '
                f'state, more than the {available_bytes / gib:.1f} GiB of {where}: choose fewer or narrower layers')


# --------------------------------------------------------------------------- the loop

def train_loop(train_step, evaluate, history, *, max_steps, eval_freq, progress=True, desc='train', save_dir=None):
    """Call train_step(step) for step = 1..max_steps and evaluate() every eval_freq
    steps and after the last one, recording both in history (and saving it into
    save_dir after each evaluation, so even a killed run leaves its record).

    train_step returns the batch loss, a float or a 0-dim tensor: tensors are copied
    to the host only every LOG_EVERY steps, so a GPU never waits on a single step.
    evaluate returns (test loss, test accuracy), optionally with a dict of other test
    metrics. The status ends as 'completed', 'diverged' (a loss not finite or blown up,
    see diverged), 'interrupted' (Ctrl-C) or 'failed' (any other exception, kept in
    history.exception); what was recorded until then is kept.
    """
    from tqdm import tqdm
    pending = []  # losses of steps not yet copied into history
    bar = tqdm(total=max_steps, desc=desc, disable=None if progress else True, file=sys.stderr, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for step in range(1, max_steps + 1):
            pending.append(train_step(step))
            bar.update()
            is_eval = step % eval_freq == 0 or step == max_steps
            if is_eval or step % LOG_EVERY == 0:
                history.add_train(pending)
                pending = []
                recent = history.train['loss'][-LOG_EVERY:]
                bar.set_postfix(loss=f'{np.mean(recent):.3f}', refresh=False)
                history.error = diverged(history.train['loss'][0], recent, history.steps)
                if history.error:
                    history.status = 'diverged'
                    break
            if is_eval:
                eval_start = time.perf_counter()
                history.add_eval(step, *evaluate())
                history.eval_time_s += time.perf_counter() - eval_start
                if save_dir and step < max_steps:  # the last record is saved by finish()
                    history.time_s = time.perf_counter() - start  # so far
                    history.save(save_dir, plot=False)
                if progress:
                    bar.write(f'step {step:>6}/{max_steps}: train loss {np.mean(recent):.4f}  '
                              f'test loss {history.test["loss"][-1]:.4f}  '
                              f'test accuracy {history.test["accuracy"][-1]:.4f}', file=sys.stderr)
        else:
            history.status = 'completed'
    except KeyboardInterrupt:
        history.add_train(pending)
        history.status = 'interrupted'
    except Exception as err:  # noqa: BLE001 (any failure: keep the record, then report it)
        with contextlib.suppress(Exception):
            history.add_train(pending)
        history.status, history.error, history.exception = 'failed', f'{type(err).__name__}: {err}', err
    finally:
        history.time_s = time.perf_counter() - start
        bar.close()
    return history


def diverged(first_loss, recent_losses, step):
    """Why the run diverged (a recent loss not finite, or their mean blown up past the first
    loss), or None. Needed beside the finiteness check: clipped probabilities keep the NumPy
    loss finite (at most -log(tiny) per sample) even when the weights have run away.
    """
    if not all(math.isfinite(loss) for loss in recent_losses):
        return f'the training loss was not finite by step {step} (stored as null)'
    if np.mean(recent_losses) > DIVERGENCE_FACTOR * max(first_loss, 1.0):
        return (f'the mean training loss {np.mean(recent_losses):.3g} by step {step} exceeds '
                f'{DIVERGENCE_FACTOR} x the first loss {first_loss:.3g}')
    return None


def finish(history, output_dir, progress=True, report=True):
    """Save the run (if output_dir) and return its record. A failed run raises RunFailed once
    its record is saved; a run that did not complete says so in one line on stderr (unless
    report is False: the other processes of a data-parallel run stay silent)."""
    record = history.save(output_dir) if output_dir else history.to_dict()
    s = record['summary']
    where = f'; record saved in {output_dir}' if output_dir else ''
    name = history.config.get('name', 'run')
    if s['status'] == 'failed':
        raise RunFailed(f"{name} failed after step {s['steps']} ({s['error']}){where}") from history.exception
    if not report:
        return record
    if s['status'] != 'completed':
        reason = f": {s['error']}" if s['error'] else ''
        print(f"{name}: run {s['status']} after step {s['steps']}{reason}{where}", file=sys.stderr)
    elif progress and s['final_test_accuracy'] is not None:
        print(f"final test accuracy {s['final_test_accuracy']:.4f} (best {s['best_test_accuracy']:.4f} "
              f"at step {s['best_step']}), {s['time_s']:.1f} s" + (f'; saved to {output_dir}' if output_dir else ''))
    return record


def exit_status(record):
    """0 for a completed run, 1 if it diverged, 130 if interrupted (as a shell reports Ctrl-C)."""
    return {'completed': 0, 'diverged': 1, 'interrupted': 130}[record['summary']['status']]
