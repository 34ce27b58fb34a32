"""What every training script shares, NumPy-only: the errors that end a run in one line, the
skeleton's accuracy(), and the checks of settings that train() makes before any data is loaded
(the same checks for the command line and for a call from Python)."""
import math
import os

SEED_MAX = 2 ** 32 - 1  # numpy's seeds are 32-bit
OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw')
SCHEDULERS = ('none', 'step', 'cosine', 'onecycle')


class SettingsError(ValueError):
    """Settings that cannot work, found before any work is done (the command line exits with 2)."""


class RunError(RuntimeError):
    """A run that cannot start or go on, e.g. its output folder is in use (the command line exits with 1)."""


class RunFailed(RunError):
    """An exception inside the training loop; the run's record was saved with status 'failed' first."""


def accuracy(predictions, targets):
    """The fraction of rows whose highest score is the target class, a float. predictions: [batch, n_classes]
    scores (NumPy array or torch tensor); targets: one-hot [batch, n_classes] or class indices [batch]."""
    predicted = predictions.argmax(1)
    if targets.ndim == 2:
        targets = targets.argmax(1)
    return float((predicted == targets).sum()) / len(predicted)


def require(condition, message):
    if not condition:
        raise SettingsError(message)


def require_choice(name, value, choices):
    require(value in choices, f'{name} must be one of {tuple(choices)}, got {value!r}')


def is_number(value, integer=False):
    """A finite int or float (an int if integer); True and False do not count."""
    kinds = int if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)


def hidden_units(value):
    """'100,50' or [100, 50] -> [100, 50]; '' or [] -> [] (no hidden layer)."""
    parts = ([part.strip() for part in value.split(',')] if value.strip() else []) if isinstance(value, str) else value
    units = [int(part) if isinstance(part, int) or str(part).isdigit() else -1 for part in parts]
    require(all(unit > 0 for unit in units), "dnn_hidden_units must be comma-separated positive integers such as "
                                             f"'100' or '512,256' ('' for none), got {value!r}")
    return units


def check_run_settings(*, max_steps, batch_size, eval_freq, learning_rate, seed, epochs=None):
    """The settings every script shares; a run's length is max_steps or epochs (not both; None: the default)."""
    for name, value in (('max_steps', max_steps), ('batch_size', batch_size), ('eval_freq', eval_freq)):
        require(value is None and name == 'max_steps' or is_number(value, integer=True) and value > 0,
                f'{name} must be a positive integer, got {value!r}')
    require(max_steps is None or epochs is None, 'give --epochs or --max_steps, not both')
    require(epochs is None or is_number(epochs) and epochs > 0, f'epochs must be a positive number, got {epochs!r}')
    require(is_number(learning_rate) and learning_rate > 0,
            f'learning_rate must be a positive number, got {learning_rate!r}')
    require(is_number(seed, integer=True) and 0 <= seed <= SEED_MAX,
            f"seed must be an integer in 0..{SEED_MAX} (numpy's range), got {seed!r}")


def check_torch_settings(*, optimizer, momentum, weight_decay, scheduler, warmup_steps, label_smoothing, ema_decay):
    """The tuning settings of the PyTorch scripts (torch_training's optimizers and schedules)."""
    require_choice('optimizer', optimizer, OPTIMIZERS)
    require_choice('scheduler', scheduler, SCHEDULERS)
    for name, value in (('momentum', momentum), ('weight_decay', weight_decay)):
        require(is_number(value) and value >= 0, f'{name} must be a number >= 0, got {value!r}')
    require(is_number(warmup_steps, integer=True) and warmup_steps >= 0,
            f'warmup_steps must be an integer >= 0, got {warmup_steps!r}')
    require(is_number(label_smoothing) and 0 <= label_smoothing < 1,
            f'label_smoothing must be in [0, 1), got {label_smoothing!r}')
    require(ema_decay is None or is_number(ema_decay) and 0 < ema_decay < 1,
            f'ema_decay must be in (0, 1), got {ema_decay!r}')


def check_warmup(warmup_steps, total_steps):
    require(warmup_steps < total_steps,
            f'warmup_steps ({warmup_steps}) must be shorter than the run ({total_steps} steps)')


def check_batch_size(batch_size, n_train):
    require(batch_size <= n_train, f'batch_size {batch_size} is larger than the {n_train} training images')


def check_fits_in_memory(n_bytes, where, available_bytes=None):
    """Refuse a network whose parameters and training state exceed the memory at hand (default: this machine's)."""
    if available_bytes is None and hasattr(os, 'sysconf') and 'SC_PHYS_PAGES' in os.sysconf_names:
        available_bytes = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    gib = 2 ** 30
    require(available_bytes is None or n_bytes < available_bytes,
            f'the network needs about {n_bytes / gib:.1f} GiB for its parameters, gradients and optimizer state, more '
            f'than the {(available_bytes or 0) / gib:.1f} GiB of {where}: choose fewer or narrower layers')


def exit_status(record):
    """0 for a completed run, 1 if it diverged, 130 if interrupted (as a shell reports Ctrl-C)."""
    return {'completed': 0, 'diverged': 1, 'interrupted': 130}[record['summary']['status']]
