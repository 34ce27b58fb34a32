"""A training run's record, kept safe whatever happens to the run (NumPy-only). The loop reports each step
(run.log) and evaluation (run.evaluate saves history.json) and decides how the run ends (run.end, or raise
run.failed(err)). Every file goes through a temporary name and os.replace: never half a file. A checkpoint holds
run.state(), so a resumed run (run.restore) and its record cannot disagree."""
import contextlib
import errno
import glob
import json
import math
import os
import platform
import sys
import time

import numpy as np
from filelock import FileLock, Timeout
from tqdm import tqdm

from cli_utils import RunError

LOG_EVERY = 50  # steps between reads of the losses (one host sync each on a GPU) and divergence checks
DIVERGENCE_FACTOR = 10  # a mean loss this many times the first one (at least 1) means divergence
DECIMALS = 6  # per-step numbers to 6 decimals: ample for curves, and long runs keep small records
LOCK = '.run.lock'
RUN_CONTROL = ('output_dir', 'resume', 'quiet')  # flags of how this process runs, not of what the run is


def accuracy(predictions, targets):
    """The fraction of rows whose highest score is the target class: predictions [batch, n_classes] scores (NumPy
    or torch), targets one-hot [batch, n_classes] or class indices [batch]."""
    predicted = predictions.argmax(1)
    if targets.ndim == 2:
        targets = targets.argmax(1)
    return float((predicted == targets).sum()) / len(predicted)


class RunRecord:
    """Config (the flags, and `facts` the run learns such as its device), data source, per-step training loss
    and accuracy, test evaluations and status of a run. main_process False (torchrun's other processes):
    nothing written or printed. `checkpoint`: the file name of the script's checkpoint."""

    def __init__(self, args, name, checkpoint, main_process=True, environment=None, **facts):
        self.config = {'name': name, **{k: v for k, v in vars(args).items() if k not in RUN_CONTROL}, **facts}
        self.output_dir, self.checkpoint = args.output_dir if main_process else None, checkpoint
        self.main_process, self.progress = main_process, main_process and not args.quiet
        self.environment = {'python': platform.python_version(), 'numpy': np.__version__,
                            'platform': platform.platform(), 'cpu_count': os.cpu_count(),
                            'date': time.strftime('%Y-%m-%d %H:%M:%S'), **(environment or {})}
        self.train, self.test = {'step': [], 'loss': [], 'accuracy': []}, {'step': [], 'loss': [], 'accuracy': []}
        self.status, self.error, self.time_s, self.eval_time_s, self.data = 'running', None, 0.0, 0.0, None
        self.step, self.checkpoint_step, self._pending, self._lock = 0, None, [], None

    def __enter__(self):
        """Create and lock --output_dir: a second run into it is refused (the lock goes with the process)."""
        if self.output_dir:
            self._created = not os.path.isdir(self.output_dir)
            os.makedirs(self.output_dir, exist_ok=True)
            self._lock = FileLock(os.path.join(self.output_dir, LOCK))
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                raise RunError(f"--output_dir '{self.output_dir}' is in use by another run; wait for it to end or "
                               'choose another folder') from None
            for partial in glob.glob(os.path.join(glob.escape(self.output_dir), '*.tmp')):  # a killed run's
                os.remove(partial)
        return self

    def __exit__(self, *exception):
        """Unlock; a folder this run created and left empty goes again. An exception passes on."""
        if self._lock is not None:
            self._lock.release()
            if self._created and os.listdir(self.output_dir) == [LOCK]:
                os.remove(os.path.join(self.output_dir, LOCK))
                os.rmdir(self.output_dir)

    def restore(self, saved, data):
        """--resume: the record so far from the checkpoint's run.state(), whose data must be these."""
        then, now = saved['data']['fingerprint'], data['fingerprint'] if data else None
        if then != now:
            raise RunError(f"--resume: the data in '{self.config['data_dir']}' are not those the run began with "
                           f'(fingerprint {then} then, {now} now); run without --resume')
        self.config, self.train, self.test = saved['config'], saved['train'], saved['test']
        self.time_s, self.eval_time_s, self.step = saved['time_s'], saved['eval_time_s'], saved['step']

    def state(self):
        """What a checkpoint keeps of the record (at an evaluation, when every step so far has been read)."""
        return {'config': self.config, 'data': self.data, 'train': self.train, 'test': self.test,
                'time_s': time.perf_counter() - self._start, 'eval_time_s': self.eval_time_s, 'step': self.step}

    def start(self, max_steps, data=None):
        """Training begins, or goes on after run.step: the clock and the progress bar start."""
        self.max_steps, self.data = max_steps, data
        self._bar = tqdm(total=max_steps, initial=self.step, desc=self.config['name'], file=sys.stderr,
                         disable=None if self.progress else True, dynamic_ncols=True)
        self._start = self._mark = time.perf_counter() - self.time_s

    def log(self, step, loss, accuracy=None):
        """A step's batch loss and accuracy (floats or 0-dim tensors), read only every LOG_EVERY steps and
        before evaluations, so a GPU never waits on a single step."""
        self._pending.append((step, loss, accuracy))
        self.step = step
        self._bar.update()
        if step % LOG_EVERY == 0 or step % self.config['eval_freq'] == 0 or step == self.max_steps:
            self._read_pending()
            self._mark = time.perf_counter()  # an evaluation right after this step is timed from here

    def _read_pending(self):
        for step, loss, accuracy in self._pending:
            self.train['step'].append(step)
            self.train['loss'].append(float(loss))
            self.train['accuracy'].append(None if accuracy is None else float(accuracy))
        self._pending = []
        self._bar.set_postfix(loss=f"{np.mean(self.train['loss'][-LOG_EVERY:]):.3f}", refresh=False)

    def divergence(self):
        """Why the training loss has diverged (not finite, or far above its first value), or None."""
        recent = self.train['loss'][-LOG_EVERY:]
        if self._pending or not recent:  # checked when the losses have just been read
            return None
        if not all(math.isfinite(loss) for loss in recent):
            return f"the training loss was not finite by step {self.step} (stored as null)"
        if np.mean(recent) > DIVERGENCE_FACTOR * max(self.train['loss'][0], 1.0):  # NumPy's clipping keeps it finite
            return (f"the mean training loss {np.mean(recent):.3g} by step {self.step} exceeds {DIVERGENCE_FACTOR} "
                    f"x the first loss {self.train['loss'][0]:.3g}")

    def evaluate(self, step, loss, accuracy, more=None):
        """Record a test evaluation (more: other metrics by name, e.g. accuracy_tta) and save the record."""
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

    def end(self, status, error=None):
        """The loop ends the run ('completed', 'diverged', 'interrupted'): the record is saved, one line says how
        it ended, and the record is returned."""
        self._finish(status, error)
        s, saved = self.summary(), f'; record saved in {self.output_dir}' if self.output_dir else ''
        if status != 'completed' and self.main_process:
            print(f"{self.config['name']}: run {status} after step {s['steps']}{f': {error}' if error else ''}{saved}",
                  file=sys.stderr)
        elif self.progress:
            print(f"final test accuracy {s['final_test_accuracy']:.4f} (best {s['best_test_accuracy']:.4f} at step "
                  f"{s['best_step']}), {s['time_s']:.1f} s" + (f'; saved to {self.output_dir}' if saved else ''))
        return self.record

    def failed(self, err):
        """An exception stopped training: the record is saved as 'failed'; returns the one-line error to raise."""
        where = f'; record saved in {self.output_dir}' if self.output_dir else ''
        try:
            self._finish('failed', f'{type(err).__name__}: {err}')
        except OSError as refused:  # the disk refuses the record too: the checkpoint still holds the run
            where = f'; record not saved ({refused.strerror})'
        cure = ''
        if isinstance(err, OSError):  # the disk refused a file: say what to do, and only what works
            again = f'with --resume (from step {self.checkpoint_step})' if self.checkpoint_step else 'again'
            room = 'free some space' if err.errno in (errno.ENOSPC, errno.EDQUOT) else 'make it writable'
            cure = f'; {room}, then run the same command {again}'
        return RunError(f"{self.config['name']}: run failed after step {self.summary()['steps']} ({self.error}){where}"
                        f'{cure}')

    def _finish(self, status, error):
        self._bar.close()
        with contextlib.suppress(Exception):  # the steps since the last read (after a failure, if they can be)
            self._read_pending()
        self.status, self.error, self.time_s = status, error, time.perf_counter() - self._start
        if self.output_dir:
            self.save()  # an OSError (the disk refused) ends the run in run_cli's one line

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
        """Write curves.png (if plot), then history.json, which vouches for it."""
        if plot:
            with self.writing('curves.png') as f:
                plot_curves(self.record, f)
        with self.writing('history.json') as f:
            f.write(record_json(self.record).encode())

    @contextlib.contextmanager
    def writing(self, name):
        """output_dir/name opened for writing, whole or not at all (atomic_write)."""
        with atomic_write(os.path.join(self.output_dir, name)) as f:
            yield f
        if name == self.checkpoint:
            self.checkpoint_step = self.step


@contextlib.contextmanager
def atomic_write(path):
    """path opened for binary writing under a temporary name, moved onto it once the block has written it and
    removed if the block fails: never half a file. An OSError names path."""
    partial = f'{path}.{os.getpid()}.tmp'
    try:
        with open(partial, 'wb') as f:
            yield f
        os.replace(partial, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.remove(partial)
        if isinstance(err, OSError):
            err.filename = path
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


def plot_curves(record, path, title=None):
    """Loss and accuracy against step, drawn from a run record into a PNG file (a path or a binary file)."""
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
