"""A training run's record, kept safe whatever happens to the run. NumPy-only: no torch.

    with RunRecord(output_dir, config) as run:              # creates and locks output_dir
        ...                                                  # load the data, build the model
        run.start(max_steps, eval_freq, data=cifar10.source)
        for step in range(1, max_steps + 1):
            ...                                              # one training step
            run.log(step, loss, accuracy)                    # raises Diverged if the loss runs away
            if step % eval_freq == 0 or step == max_steps:
                run.evaluate(step, test_loss, test_accuracy)  # the record is saved at once
    return run.record

Leaving the block ends the run as 'completed', 'interrupted' (Ctrl-C, SIGTERM), 'diverged' or
'failed' (any other exception, raised again as RunFailed); the record is saved every time, whole
(Ctrl-C waits): history.json (strict JSON), train.csv, test.csv, curves.png.
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
from tqdm import tqdm

from training_utils import RunError, RunFailed, SettingsError

try:
    import fcntl  # POSIX file locks
except ImportError:  # Windows: runs are not locked
    fcntl = None

LOG_EVERY = 50  # steps between reads of the losses (one host sync each on a GPU) and divergence checks
DIVERGENCE_FACTOR = 10  # a mean loss this many times the first one (at least 1) means divergence
DECIMALS = 6  # per-step numbers to 6 decimals: ample for curves, and long runs keep small records
LOCK_NAME = '.run.lock'


class Diverged(Exception):
    """The training loss is not finite or has run away: the run stops with status 'diverged'."""


class RunRecord:
    """Config, data source, per-step training loss and accuracy, test evaluations and status of a run.
    output_dir None: kept in memory only; silent: print nothing (a data-parallel run's other processes)."""

    def __init__(self, output_dir, config, *, progress=True, silent=False, environment=None):
        self.output_dir, self.config, self.progress, self.silent = output_dir, dict(config), progress, silent
        self.environment = {'python': platform.python_version(), 'numpy': np.__version__,
                            'platform': platform.platform(), 'cpu_count': os.cpu_count(),
                            'date': time.strftime('%Y-%m-%d %H:%M:%S'), **(environment or {})}
        self.data = None  # which files the run read (cifar10_utils.DataSplits.source)
        self.train = {'step': [], 'loss': [], 'accuracy': []}
        self.test = {'step': [], 'loss': [], 'accuracy': []}
        self.status, self.error, self.time_s, self.eval_time_s = 'running', None, 0.0, 0.0
        self.improved = False  # the last evaluation is the best so far
        self._pending, self._bar, self._lock = [], None, None  # _pending: (step, loss, accuracy) not read yet

    def __enter__(self):
        """Create and lock the output folder (the lock goes with the process, however it ends)."""
        path = self.output_dir
        if path:
            self._created = not os.path.exists(path)
            try:
                os.makedirs(path, exist_ok=True)
                self._lock = open(os.path.join(path, LOCK_NAME), 'a+')
            except (FileExistsError, NotADirectoryError):
                raise SettingsError(f"--output_dir '{path}' is a file or lies under one; choose a folder path") from None
            except OSError as err:
                raise SettingsError(f"--output_dir '{path}' cannot be written ({err.strerror}); "
                                    'choose a writable folder') from None
            try:
                if fcntl:
                    fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                raise RunError(f"--output_dir '{path}' is in use by another run; wait for it to end or choose "
                               'another folder') from None
        return self

    def start(self, max_steps, eval_freq, data=None):
        """Training begins: the clock and the progress bar start."""
        self.max_steps, self.eval_freq, self.data = max_steps, eval_freq, data
        self._bar = tqdm(total=max_steps, desc=self.config.get('name'), disable=None if self.progress else True,
                         file=sys.stderr, dynamic_ncols=True)
        self._start = self._mark = time.perf_counter()

    def log(self, step, loss, accuracy=None):
        """A step's batch loss and accuracy: floats or 0-dim tensors, read (float()) only every LOG_EVERY
        steps and before evaluations, so a GPU never waits on a single step."""
        self._pending.append((step, loss, accuracy))
        self._bar.update()
        if step % LOG_EVERY == 0 or step % self.eval_freq == 0 or step == self.max_steps:
            self._read_pending()
            self._mark = time.perf_counter()

    def _read_pending(self):
        for step, loss, accuracy in self._pending:
            self.train['step'].append(step)
            self.train['loss'].append(float(loss))
            self.train['accuracy'].append(None if accuracy is None else float(accuracy))
        self._pending, recent, first = [], self.train['loss'][-LOG_EVERY:], self.train['loss'][0]
        self._bar.set_postfix(loss=f'{np.mean(recent):.3f}', refresh=False)
        if not all(math.isfinite(loss) for loss in recent):
            raise Diverged(f"the training loss was not finite by step {self.train['step'][-1]} (stored as null)")
        if np.mean(recent) > DIVERGENCE_FACTOR * max(first, 1.0):  # clipped NumPy probabilities keep it finite
            raise Diverged(f"the mean training loss {np.mean(recent):.3g} by step {self.train['step'][-1]} exceeds "
                           f'{DIVERGENCE_FACTOR} x the first loss {first:.3g}')

    def evaluate(self, step, loss, accuracy, more=None):
        """Record a test evaluation (more: other metrics by name, e.g. accuracy_tta) and save the record."""
        self.improved = accuracy > max(self.test['accuracy'], default=-1.0)
        for name, value in dict(step=step, loss=loss, accuracy=accuracy, **(more or {})).items():
            self.test.setdefault(name, []).append(value if name == 'step' else float(value))
        if self.output_dir and step < self.max_steps:  # the last one is saved when the run ends
            self.time_s = time.perf_counter() - self._start
            self.save(plot=False)
        if self.progress:
            self._bar.write(f'step {step:>6}/{self.max_steps}: train loss {np.mean(self.train["loss"][-LOG_EVERY:]):.4f}'
                            f'  test loss {loss:.4f}  test accuracy {accuracy:.4f}', file=sys.stderr)
        now = time.perf_counter()
        self.eval_time_s, self._mark = self.eval_time_s + now - self._mark, now

    def __exit__(self, kind, error, traceback):
        if self._bar is None:  # stopped before training began (bad settings, no data): nothing to record
            self._release()
            return False
        self._bar.close()
        if kind is None:
            self.status = 'completed'
        elif issubclass(kind, Diverged):
            self.status, self.error = 'diverged', str(error)
        elif issubclass(kind, Exception):
            self.status, self.error = 'failed', f'{kind.__name__}: {error}'
        else:  # KeyboardInterrupt: Ctrl-C or SIGTERM
            self.status = 'interrupted'
        with contextlib.suppress(Exception):
            self._read_pending()  # the steps since the last read (a divergence among them changes nothing now)
        self.time_s = time.perf_counter() - self._start
        if self.output_dir:
            self.save()
        self._release()
        where, s = f'; record saved in {self.output_dir}' if self.output_dir else '', self.summary()
        line = f"{self.config.get('name', 'run')}: run {self.status} after step {s['steps']}"
        if self.status == 'failed':
            raise RunFailed(f'{line} ({self.error}){where}') from error
        if not self.silent and self.status != 'completed':
            print(line + (f': {self.error}' if self.error else '') + where, file=sys.stderr)
        elif not self.silent and self.progress and s['final_test_accuracy'] is not None:
            print(f"final test accuracy {s['final_test_accuracy']:.4f} (best {s['best_test_accuracy']:.4f} at step "
                  f"{s['best_step']}), {s['time_s']:.1f} s" + (f'; saved to {self.output_dir}' if where else ''))
        return kind is not None and issubclass(kind, (KeyboardInterrupt, Diverged))

    def _release(self):
        """Unlock the folder; one this run created and left empty (it stopped before writing) goes too."""
        if self._lock is not None:
            self._lock.close()
            if self._created and os.listdir(self.output_dir) == [LOCK_NAME]:
                os.remove(os.path.join(self.output_dir, LOCK_NAME))
                os.rmdir(self.output_dir)

    def summary(self):
        acc, steps = self.test['accuracy'], self.train['step'][-1] if self.train['step'] else 0
        best, train_time = int(np.argmax(acc)) if acc else None, self.time_s - self.eval_time_s
        return {'status': self.status, 'error': self.error, 'steps': steps,
                'final_test_accuracy': acc[-1] if acc else None,
                'final_test_loss': finite_or_none(self.test['loss'][-1]) if acc else None,
                'best_test_accuracy': acc[best] if acc else None, 'best_step': self.test['step'][best] if acc else None,
                'time_s': round(self.time_s, 3), 'eval_time_s': round(self.eval_time_s, 3),
                'train_images_per_s': round(steps * self.config['batch_size'] / train_time, 1) if steps else None,
                **{f'final_test_{name}': values[-1] for name, values in self.test.items()
                   if name not in ('step', 'loss', 'accuracy') and values}}

    @property
    def record(self):
        """The record as plain data, as history.json holds it."""
        train = {key: [finite_or_none(v if key == 'step' or v is None else round(v, DECIMALS)) for v in values]
                 for key, values in self.train.items()}
        test = {key: [finite_or_none(v) for v in values] for key, values in self.test.items()}
        return {'config': self.config, 'data': self.data, 'summary': self.summary(), 'train': train, 'test': test,
                'environment': self.environment}

    def save(self, plot=True):
        """Write history.json, train.csv, test.csv and (if plot) curves.png; Ctrl-C waits until all are written."""
        record = self.record
        with signals_deferred():
            write_atomically(os.path.join(self.output_dir, 'history.json'), record_json(record))
            for split in ('train', 'test'):
                text = io.StringIO()
                csv.writer(text).writerows([list(record[split]), *zip(*record[split].values())])  # None: empty cell
                write_atomically(os.path.join(self.output_dir, f'{split}.csv'), text.getvalue())
            if plot:
                with replacing(os.path.join(self.output_dir, 'curves.png')) as partial:
                    plot_curves(record, partial)


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
    caught, signals = [], (signal.SIGINT, signal.SIGTERM)
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
    """A temporary path beside `path`, moved onto it once the block has written it: never half a file."""
    partial = f'{path}.{os.getpid()}.tmp'
    yield partial
    os.replace(partial, path)


def write_atomically(path, text):
    with replacing(path) as partial, open(partial, 'w', newline='') as f:
        f.write(text)


def plot_curves(record, path, title=None):
    """Loss and accuracy against step, drawn from a run record into a PNG file."""
    fig = Figure(figsize=(11, 4))
    draw_curves(record, *fig.subplots(1, 2))
    fig.suptitle(title or record['config'].get('name', ''))
    fig.tight_layout()
    fig.savefig(path, dpi=110, format='png')


def draw_curves(record, ax_loss, ax_acc, label=''):
    """A record's loss and accuracy in two matplotlib axes; `label` names the run in the legends. Training:
    each batch's value (faint; in training mode, on the batch as trained) and their moving average
    over 2% of the run; test: the eval-mode network on the whole test set at each evaluation."""
    config, train, test, name = record['config'], record['train'], record['test'], f'{label}: ' if label else ''
    as_trained = ([f"label smoothing {config['label_smoothing']}"] if config.get('label_smoothing') else []) + (
        ['augmented'] if config.get('augment') else [])
    for ax, key in ((ax_loss, 'loss'), (ax_acc, 'accuracy')):
        values = np.asarray(train.get(key, []), dtype=np.float64)  # None (a diverged loss) -> NaN: drawn up to it
        steps, finite = np.asarray(train['step'])[:len(values)], np.isfinite(values)
        n, window = finite.sum(), max(1, finite.sum() // 50)
        if n:
            average = np.convolve(values[finite], np.ones(window))[:n] / np.minimum(np.arange(1, n + 1), window)
            line, = ax.plot(steps[finite], average, label=f'{name}train' + (f" ({', '.join(as_trained)})" * bool(as_trained)))
            ax.plot(steps[finite], values[finite], color=line.get_color(), alpha=0.2, lw=0.8)
        ax.plot(test['step'], np.asarray(test[key], dtype=np.float64), 'o-', ms=3, label=f'{name}test')
        ax.set(xlabel='step', ylabel=key, title=key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize='small')
