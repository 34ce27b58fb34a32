"""A run's record and its files: History (config, losses, evaluations, status), saved as
strict JSON, two CSVs and a curves PNG into an output folder that the run holds locked.

NumPy-only (and matplotlib for the curves): never torch.
"""
import contextlib
import csv
import io
import json
import math
import os
import platform
import re
import signal
import sys
import threading
import time

import numpy as np
from matplotlib.figure import Figure  # a figure without pyplot: saving one changes no backend or global state

try:
    import fcntl  # POSIX file locks
except ImportError:  # Windows
    fcntl = None
    import msvcrt

from training_utils import RunError, SettingsError

LOSS_DECIMALS = 6  # per-step losses to 6 decimals: ample for curves, and long runs keep small records
LOCK_NAME = '.run.lock'


def environment():
    """Versions and machine facts saved with every run."""
    info = {'python': platform.python_version(), 'numpy': np.__version__,
            'platform': platform.platform(), 'cpu_count': os.cpu_count(),
            'date': time.strftime('%Y-%m-%d %H:%M:%S')}
    if 'torch' in sys.modules:  # recorded when the run uses torch, never imported for it
        torch = sys.modules['torch']
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    return info


def finite_or_none(value):
    """JSON has no NaN or Infinity: such numbers are stored as null."""
    return value if value is None or math.isfinite(value) else None


def record_json(record):
    """Strict JSON text of a run record (NaN/Infinity refused): indented, each list of numbers on one line."""
    text = json.dumps(record, indent=1, allow_nan=False)
    return re.sub(r'\[\n\s*([^\[\]{}]*?)\n\s*\]', lambda m: '[' + re.sub(r',\n\s*', ', ', m.group(1)) + ']', text)


@contextlib.contextmanager
def signals_deferred():
    """Hold Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt, so files
    written inside the block are never left half-written (a no-op outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    signals = [signal.SIGINT, signal.SIGTERM]
    previous = [signal.signal(number, lambda number, frame: caught.append(number)) for number in signals]
    try:
        yield
    finally:
        for number, handler in zip(signals, previous):
            signal.signal(number, handler)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def replacing(path):
    """A temporary path of this process beside `path`, moved onto `path` when the block has written it:
    readers never see half a file."""
    partial = f'{path}.{os.getpid()}.tmp'
    yield partial
    os.replace(partial, path)


def write_atomically(path, text):
    with replacing(path) as partial, open(partial, 'w', newline='') as f:
        f.write(text)


class History:
    """Everything a run records: its config, the data it used, train losses, test evaluations, status."""

    def __init__(self, config, data_source=None):
        self.config = dict(config)
        self.data_source = data_source  # which files the run read (cifar10_utils.DataSplits.source)
        self.train = {'step': [], 'loss': []}
        self.test = {'step': [], 'loss': [], 'accuracy': []}
        self.status = 'running'
        self.error = None  # why a run failed or diverged
        self.exception = None  # what made it fail (not saved)
        self.time_s = 0.0  # wall time of all steps and evaluations
        self.eval_time_s = 0.0
        self.extra = {}  # script-specific numbers for the summary (throughput, world size, ...)
        self.reduce_losses = None  # applied to each chunk of torch losses before it is recorded

    @property
    def steps(self):
        return self.train['step'][-1] if self.train['step'] else 0

    def add_train(self, losses):
        """Record the losses of the steps after the last recorded one."""
        if losses and hasattr(losses[0], 'detach'):  # torch tensors: one host copy for the whole chunk
            stacked = sys.modules['torch'].stack(losses).float()
            losses = (self.reduce_losses(stacked) if self.reduce_losses else stacked).cpu().tolist()
        first = self.steps + 1
        self.train['step'].extend(range(first, first + len(losses)))
        self.train['loss'].extend(float(loss) for loss in losses)

    def add_eval(self, step, loss, acc, more=None):
        """Record an evaluation; `more`: other test metrics by name (e.g. accuracy with test-time augmentation)."""
        self.test['step'].append(step)
        self.test['loss'].append(float(loss))
        self.test['accuracy'].append(float(acc))
        for name, value in (more or {}).items():
            self.test.setdefault(name, []).append(float(value))

    def summary(self):
        acc = self.test['accuracy']
        best = int(np.nanargmax(acc)) if acc and not np.isnan(acc).all() else None
        return {
            'status': self.status,
            'error': self.error,
            'steps': self.steps,
            'final_test_accuracy': finite_or_none(acc[-1]) if acc else None,
            'final_test_loss': finite_or_none(self.test['loss'][-1]) if acc else None,
            'best_test_accuracy': acc[best] if best is not None else None,
            'best_step': self.test['step'][best] if best is not None else None,
            'time_s': round(self.time_s, 3),
            'eval_time_s': round(self.eval_time_s, 3),
            **{f'final_test_{name}': finite_or_none(values[-1]) for name, values in self.test.items()
               if name not in ('step', 'loss', 'accuracy') and values},
            **self.extra,
        }

    def to_dict(self):
        train = {'step': self.train['step'],
                 'loss': [finite_or_none(round(loss, LOSS_DECIMALS)) for loss in self.train['loss']]}
        test = {key: [finite_or_none(v) for v in values] if key != 'step' else values
                for key, values in self.test.items()}
        return {'config': self.config, 'data': self.data_source, 'summary': self.summary(), 'train': train,
                'test': test, 'environment': environment()}

    def save(self, output_dir, plot=True):
        """Write history.json, train.csv, test.csv and (if plot) curves.png; Ctrl-C waits until all are written."""
        record = self.to_dict()
        with signals_deferred():
            write_atomically(os.path.join(output_dir, 'history.json'), record_json(record))
            for split in ('train', 'test'):
                text = io.StringIO()
                writer = csv.writer(text)
                writer.writerow(record[split])
                writer.writerows(zip(*record[split].values()))  # None (a non-finite number) as an empty cell
                write_atomically(os.path.join(output_dir, f'{split}.csv'), text.getvalue())
            if plot:
                plot_curves(record, os.path.join(output_dir, 'curves.png'))
        return record


# --------------------------------------------------------------------------- the output folder

class OutputFolder:
    """An output folder held by one run: created and checked before any work, locked for the run.

    A second run pointed at the same folder is refused (RunError) instead of mixing its
    files with the first's; the lock is released when the process ends, however it ends.
    A path that is a file, lies under a file or cannot be written raises SettingsError.
    A folder this run created and left empty (it stopped before writing anything) is removed.
    """

    def __init__(self, path):
        self.path = path
        self._lock_file = None
        self._created = False

    def __enter__(self):
        self._created = not os.path.exists(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
            self._lock_file = open(os.path.join(self.path, LOCK_NAME), 'a+')
        except (FileExistsError, NotADirectoryError):
            raise SettingsError(f"--output_dir '{self.path}' is a file or lies under one; "
                                'choose a folder path') from None
        except OSError as err:
            raise SettingsError(f"--output_dir '{self.path}' cannot be written ({err.strerror}); "
                                'choose a writable folder') from None
        if not _try_lock(self._lock_file):
            self._lock_file.close()
            raise RunError(f"--output_dir '{self.path}' is in use by another run; wait for it to end or "
                           'choose another folder')
        return self

    def __exit__(self, *exc):
        self._lock_file.close()  # closing releases the lock
        if self._created and os.listdir(self.path) == [LOCK_NAME]:
            os.remove(os.path.join(self.path, LOCK_NAME))
            os.rmdir(self.path)


def _try_lock(f):
    """Take an exclusive lock on the open file f without waiting; False if another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- curves

def plot_curves(record, path, title=None):
    """Loss (train and test) and test accuracy against step, drawn from a run record."""
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    draw_curves(record, ax_loss, ax_acc)
    fig.suptitle(title or record['config'].get('name', ''))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def draw_curves(record, ax_loss, ax_acc, label=''):
    """Draw a record's loss and accuracy curves into two matplotlib axes; `label` names the run in the legends."""
    train, test, summary = record['train'], record['test'], record['summary']
    steps, losses = np.asarray(train['step']), np.asarray(train['loss'], dtype=np.float64)  # None -> NaN
    finite = np.isfinite(losses)  # a diverged run ends in NaN: draw what came before
    prefix = f'{label}: ' if label else ''
    train_label, test_label = loss_labels(record['config'])
    if finite.any():
        line, = ax_loss.plot(steps[finite], smooth(losses[finite]), label=prefix + train_label)
        ax_loss.plot(steps[finite], losses[finite], color=line.get_color(), alpha=0.2, lw=0.8)
    ax_loss.plot(test['step'], np.asarray(test['loss'], dtype=np.float64), 'o-', ms=3, label=prefix + test_label)
    ax_loss.set(xlabel='step', ylabel='loss', title='loss')
    ax_loss.legend(fontsize='small')
    ax_acc.plot(test['step'], np.asarray(test['accuracy'], dtype=np.float64), 'o-', ms=3, label=f'{prefix}test')
    ax_acc.set(xlabel='step', ylabel='test accuracy', title='test accuracy')
    if summary['final_test_accuracy'] is not None and not label:
        ax_acc.annotate(f"final {summary['final_test_accuracy']:.4f}\nbest {summary['best_test_accuracy']:.4f}",
                        xy=(0.98, 0.04), xycoords='axes fraction', ha='right', va='bottom')
    if label:
        ax_acc.legend(fontsize='small')
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)


def loss_labels(config):
    """What the two loss curves measure. The training loss is each batch's, in training mode (dropout,
    batch statistics), on augmented images if the run augments, with label smoothing if it smooths;
    the test loss is the plain cross-entropy of the eval-mode network on the test images."""
    extras = [f"label smoothing {config['label_smoothing']}"] if config.get('label_smoothing') else []
    extras += ['augmented'] if config.get('augment') else []
    train = 'train: cross-entropy' + (f" ({', '.join(extras)})" if extras else '') + ', per batch, smoothed'
    return train, 'test: cross-entropy, eval mode'


def smooth(values, window=None):
    """Trailing moving average (window ~2% of the run, at least 1 step)."""
    values = np.asarray(values, dtype=np.float64)
    window = window or max(1, len(values) // 50)
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)
