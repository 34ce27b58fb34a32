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

Leaving the block ends the run as 'completed', 'interrupted' (Ctrl-C, SIGTERM), 'diverged' or 'failed'
(any other exception, raised again as RunFailed); the record (history.json, strict JSON, and curves.png)
is saved every time, whole. With resume=True the record so far is read back (its settings must be these)
and run.start(..., first_step) goes on after the state the loop wrote with run.writing('state.pt').
"""
import contextlib
import io
import json
import math
import os
import pathlib
import platform
import signal
import sys
import threading
import time

import numpy as np
from tqdm import tqdm

from training_utils import RunError, RunFailed, SettingsError, require

try:
    import fcntl  # POSIX file locks
except ImportError:  # Windows: runs are not locked
    fcntl = None

LOG_EVERY = 50  # steps between reads of the losses (one host sync each on a GPU) and divergence checks
DIVERGENCE_FACTOR = 10  # a mean loss this many times the first one (at least 1) means divergence
DECIMALS = 6  # per-step numbers to 6 decimals: ample for curves, and long runs keep small records
LOCK = '.run.lock'


class Diverged(Exception):
    """The training loss is not finite or has run away: the run stops with status 'diverged'."""


class RunRecord:
    """Config, data source, per-step training loss and accuracy, test evaluations and status of a run.
    output_dir None: kept in memory only; silent: print nothing (a data-parallel run's other processes)."""

    def __init__(self, output_dir, config, *, progress=True, silent=False, environment=None, resume=False):
        self.output_dir, self.config, self.progress, self.silent = output_dir, dict(config), progress, silent
        self.resume, self.data, self.improved = resume, None, False  # improved: the last evaluation is the best yet
        self.environment = {'python': platform.python_version(), 'numpy': np.__version__,
                            'platform': platform.platform(), 'cpu_count': os.cpu_count(),
                            'date': time.strftime('%Y-%m-%d %H:%M:%S'), **(environment or {})}
        self.train, self.test = {'step': [], 'loss': [], 'accuracy': []}, {'step': [], 'loss': [], 'accuracy': []}
        self.status, self.error, self.time_s, self.eval_time_s = 'running', None, 0.0, 0.0
        self._pending, self._bar, self._lock = [], None, None  # _pending: (step, loss, accuracy) not read yet

    def __enter__(self):
        """Create and lock the output folder (the lock goes with the process, however it ends)."""
        path = self.output_dir
        if path:
            self._created = not os.path.exists(path)
            try:
                os.makedirs(path, exist_ok=True)
                self._lock = open(os.path.join(path, LOCK), 'a+')
            except (FileExistsError, NotADirectoryError):
                raise SettingsError(f"--output_dir '{path}' is a file or lies under one; choose a folder "
                                    'path') from None
            except OSError as err:
                raise SettingsError(f"--output_dir '{path}' cannot be written ({err.strerror}); choose a writable "
                                    'folder') from None
            try:
                if fcntl:
                    fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                raise RunError(f"--output_dir '{path}' is in use by another run; wait for it to end or choose "
                               'another folder') from None
            for name in os.listdir(path):  # what a killed run left half-written: this run holds the folder now
                if name.endswith('.tmp'):
                    os.remove(os.path.join(path, name))
        try:
            if self.resume:
                self._read_back()
        except SettingsError:
            self._release()
            raise
        return self

    def _read_back(self):
        """--resume: the record so far, of a run with these settings (SettingsError in one line otherwise)."""
        path = os.path.join(self.output_dir, 'history.json')
        try:
            saved = json.loads(pathlib.Path(path).read_text())
            config, self.train, self.test, summary = saved['config'], saved['train'], saved['test'], saved['summary']
        except (OSError, ValueError, KeyError, TypeError) as err:  # missing, truncated or not ours
            raise SettingsError(f"--resume: '{self.output_dir}' holds no run to resume ({path}: {type(err).__name__}); "
                                'run without --resume') from None
        changed = [f'--{key} ({config.get(key)!r} then, {value!r} now)' for key, value in self.config.items()
                   if config.get(key) != value]
        require(not changed, f"--resume: {', '.join(changed)} differ from the run in '{self.output_dir}'; resume it "
                             'with the same flags, or start a new run in another --output_dir')
        self.time_s, self.eval_time_s = summary['time_s'], summary['eval_time_s']

    def start(self, max_steps, eval_freq, data=None, first_step=1):
        """Training begins (at first_step, when resumed from the state of step first_step - 1): the clock and
        the progress bar start; what the record holds of later steps is dropped, as they will be run again."""
        self.max_steps, self.eval_freq, self.data = max_steps, eval_freq, data
        for history in (self.train, self.test):
            kept = sum(step < first_step for step in history['step'])
            for values in history.values():
                del values[kept:]
        self._bar = tqdm(total=max_steps, initial=first_step - 1, desc=self.config.get('name'),
                         disable=None if self.progress else True, file=sys.stderr, dynamic_ncols=True)
        self._start = self._mark = time.perf_counter() - self.time_s

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
            recent = np.mean(self.train['loss'][-LOG_EVERY:])
            self._bar.write(f'step {step:>6}/{self.max_steps}: train loss {recent:.4f}  test loss {loss:.4f}  '
                            f'test accuracy {accuracy:.4f}', file=sys.stderr)
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
        elif issubclass(kind, RunError):  # our own (a write the disk refused) says what it is already
            self.status, self.error = 'failed', str(error)
        elif issubclass(kind, Exception):
            self.status, self.error = 'failed', f'{kind.__name__}: {error}'
        else:  # KeyboardInterrupt: Ctrl-C or SIGTERM
            self.status = 'interrupted'
        with contextlib.suppress(Exception):
            self._read_pending()  # the steps since the last read (a divergence among them changes nothing now)
        self.time_s = time.perf_counter() - self._start
        s = self.summary()
        name, saved = self.config.get('name', 'run'), f'; record saved in {self.output_dir}' if self.output_dir else ''
        try:
            if self.output_dir:
                self.save()
        except RunError as err:  # the disk refused the record: the run can call itself nothing else
            raise RunError(f"{name}: run stopped after step {s['steps']}, its record not saved: {err}") from None
        finally:
            self._release()
        if self.status == 'failed':
            raise RunFailed(f"{name}: run failed after step {s['steps']} ({self.error}){saved}") from error
        if not self.silent and self.status != 'completed':
            reason = f': {self.error}' if self.error else ''
            print(f"{name}: run {self.status} after step {s['steps']}{reason}{saved}", file=sys.stderr)
        elif not self.silent and self.progress and s['final_test_accuracy'] is not None:
            print(f"final test accuracy {s['final_test_accuracy']:.4f} (best {s['best_test_accuracy']:.4f} at step "
                  f"{s['best_step']}), {s['time_s']:.1f} s" + (f'; saved to {self.output_dir}' if saved else ''))
        return kind is not None and issubclass(kind, (KeyboardInterrupt, Diverged))

    def _release(self):
        """Unlock the folder; one this run created and left empty (it stopped before writing) goes too."""
        if self._lock is not None:
            self._lock.close()
            if self._created and os.listdir(self.output_dir) == [LOCK]:
                os.remove(os.path.join(self.output_dir, LOCK))
                os.rmdir(self.output_dir)

    def summary(self):
        acc, steps = self.test['accuracy'], self.train['step'][-1] if self.train['step'] else 0
        best, train_time = int(np.argmax(acc)) if acc else None, self.time_s - self.eval_time_s
        return {'status': self.status, 'error': self.error, 'steps': steps,
                'final_test_accuracy': acc[-1] if acc else None,
                'final_test_loss': finite_or_none(self.test['loss'][-1]) if acc else None,
                'best_test_accuracy': acc[best] if acc else None, 'best_step': self.test['step'][best] if acc else None,
                'time_s': round(self.time_s, 3), 'eval_time_s': round(self.eval_time_s, 3),
                'train_images_per_s': round(steps * self.config['batch_size'] / train_time, 1) if train_time > 0
                else None,
                **{f'final_test_{name}': values[-1] for name, values in self.test.items()
                   if name not in ('step', 'loss', 'accuracy') and values}}

    @property
    def record(self):
        """The record as plain data, as history.json holds it (a number that is not finite as null)."""
        train = {key: [finite_or_none(v if key == 'step' or v is None else round(v, DECIMALS)) for v in values]
                 for key, values in self.train.items()}
        test = {key: [finite_or_none(v) for v in values] for key, values in self.test.items()}
        return {'config': self.config, 'data': self.data, 'summary': self.summary(), 'train': train, 'test': test,
                'environment': self.environment}

    def save(self, plot=True):
        """Write curves.png (if plot), then history.json, which vouches for it: a save the disk refuses leaves
        the last record as it was. Ctrl-C waits until both are written."""
        record, png = self.record, io.BytesIO()
        if plot:
            plot_curves(record, png)
        text = record_json(record)
        with signals_deferred():
            for name, content in (('curves.png', png.getvalue()), ('history.json', text.encode())):
                if content:
                    with self.writing(name) as partial, open(partial, 'wb') as f:
                        f.write(content)

    @contextlib.contextmanager
    def writing(self, name):
        """A temporary path for output_dir/name, moved onto it once the block has written it, and removed if
        the block fails (never half a file); a disk that refuses the write ends the run in one line."""
        path = os.path.join(self.output_dir, name)
        partial = f'{path}.{os.getpid()}.tmp'
        try:
            yield partial
            os.replace(partial, path)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.remove(partial)
            if isinstance(err, OSError):
                raise RunError(f"cannot write '{path}' ({err.strerror or err}); free some space or make the folder "
                               'writable, then run again with --resume') from None
            raise


def record_json(record):
    """Strict JSON text of a record (NaN or Infinity refused): each entry of each section on a line of its own."""
    def entry(key, value, indent):
        if isinstance(value, dict) and value and indent == 1:
            return f'{indent * " "}"{key}": {{\n' + ',\n'.join(entry(k, v, 2) for k, v in value.items()) + '\n }'
        return f'{indent * " "}{json.dumps(key)}: {json.dumps(value, allow_nan=False)}'
    return '{\n' + ',\n'.join(entry(key, value, 1) for key, value in record.items()) + '\n}\n'


def finite_or_none(value):
    """JSON has no NaN or Infinity: such numbers are stored as null."""
    return value if value is None or math.isfinite(value) else None


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


def plot_curves(record, path, title=None):
    """Loss and accuracy against step, drawn from a run record into a PNG file."""
    from matplotlib.figure import Figure  # here: a run imports matplotlib only to draw; no pyplot, no global state
    fig = Figure(figsize=(11, 4.4))
    draw_curves(record, *fig.subplots(1, 2))
    fig.suptitle(title or record['config'].get('name', ''))
    fig.tight_layout()
    fig.savefig(path, dpi=110, format='png')


def draw_curves(record, ax_loss, ax_acc, label=''):
    """A record's loss and accuracy in two matplotlib axes, legends below them; `label` names the run. Training:
    each batch's value (faint; in training mode, on the batch as trained: augmented, label-smoothed) and
    their moving average over 2% of the run; test: the eval-mode network on the whole test set."""
    name, train, test = f'{label}: ' if label else '', record['train'], record['test']
    for ax, key in ((ax_loss, 'loss'), (ax_acc, 'accuracy')):
        values = np.asarray(train.get(key, []), dtype=np.float64)  # None (a diverged loss) -> NaN: drawn up to it
        steps, finite = np.asarray(train['step'])[:len(values)], np.isfinite(values)
        n, window = finite.sum(), max(1, finite.sum() // 50)
        if n:
            average = np.convolve(values[finite], np.ones(window))[:n] / np.minimum(np.arange(1, n + 1), window)
            line, = ax.plot(steps[finite], average, label=f'{name}training batches (moving average)')
            ax.plot(steps[finite], values[finite], color=line.get_color(), alpha=0.2, lw=0.8)
        ax.plot(test['step'], np.asarray(test[key], dtype=np.float64), 'o-' if len(test['step']) > 2 else 'o', ms=3,
                label=f'{name}test set')
        ax.set(xlabel='step', ylabel=key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize='small', loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
