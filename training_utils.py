"""What every training script shares: accuracy, seeding, device choice, command-line
parsing, the step/evaluation loop, and recording a run (JSON, CSV, curves PNG).

NumPy-only on import: torch and matplotlib are imported where they are needed,
so the NumPy MLP never pays for them.
"""
import argparse
import csv
import json
import math
import os
import platform
import random
import sys
import time

import numpy as np

LOG_EVERY = 50  # steps between progress-bar updates of the train loss (one host sync each)
DIVERGENCE_FACTOR = 10  # a mean loss this many times the first one (at least 1) means divergence


# --------------------------------------------------------------------------- metrics

def accuracy(predictions, targets):
    """Fraction of rows whose highest score is the target class.

    predictions: [batch, n_classes] scores (NumPy array or torch tensor);
    targets: one-hot [batch, n_classes] or class indices [batch]. Returns a float.
    """
    predicted = predictions.argmax(1)
    if targets.ndim == 2:
        targets = targets.argmax(1)
    return float((predicted == targets).sum()) / len(predicted)


# --------------------------------------------------------------------------- setup

def set_seed(seed):
    """Seed Python, NumPy and (if it is loaded) torch, as the skeleton's seed 42 does."""
    random.seed(seed)
    np.random.seed(seed)
    if 'torch' in sys.modules:
        sys.modules['torch'].manual_seed(seed)


def get_device(name='auto'):
    """torch.device for 'auto' (cuda, then mps, then cpu) or an explicit name."""
    import torch
    if name != 'auto':
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device('cuda')
    if getattr(torch.backends, 'mps', None) is not None and torch.backends.mps.is_available():
        return torch.device('mps')
    return torch.device('cpu')


def environment():
    """Versions and machine facts saved with every run."""
    info = {'python': platform.python_version(), 'numpy': np.__version__,
            'platform': platform.platform(), 'cpu_count': os.cpu_count(),
            'date': time.strftime('%Y-%m-%d %H:%M:%S')}
    if 'torch' in sys.modules:
        torch = sys.modules['torch']
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    return info


# --------------------------------------------------------------------------- command line

class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line: 'prog: error: what is wrong'."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def _number(kind, minimum, strict):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number(int, 0, strict=True)
nonnegative_int = _number(int, 0, strict=False)
positive_float = _number(float, 0.0, strict=True)
nonnegative_float = _number(float, 0.0, strict=False)


def hidden_units(text):
    """'100,50' -> [100, 50]; '' -> [] (no hidden layer)."""
    if not text.strip():
        return []
    try:
        units = [int(part) for part in text.split(',')]
    except ValueError:
        units = []
    if not units or min(units) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as '100' or '512,256', got {text!r}")
    return units


def base_parser(doc, learning_rate, max_steps, batch_size, eval_freq):
    """The flags all training scripts share, with each script's defaults."""
    parser = ArgumentParser(description=doc.strip().splitlines()[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--learning_rate', type=positive_float, default=learning_rate, help='learning rate')
    parser.add_argument('--max_steps', type=positive_int, default=max_steps, help='number of training steps')
    parser.add_argument('--batch_size', type=positive_int, default=batch_size, help='batch size')
    parser.add_argument('--eval_freq', type=positive_int, default=eval_freq,
                        help='evaluate on the whole test set every this many steps (and after the last)')
    parser.add_argument('--data_dir', default='./cifar10/cifar-10-batches-py',
                        help='folder with the CIFAR-10 batch files (downloaded there if missing)')
    parser.add_argument('--seed', type=int, default=42, help='random seed')
    parser.add_argument('--output_dir', default=None,
                        help='where history.json, the CSVs and curves.png go (default: runs/<script>)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar or evaluation lines')
    return parser


def run_cli(main):
    """Run main(); data errors become one line on stderr and exit status 1."""
    from cifar10_utils import CIFAR10Error
    try:
        return main()
    except CIFAR10Error as err:
        sys.exit(f'{os.path.basename(sys.argv[0])}: error: {err}')


def exit_status(history):
    """0 for a completed run, 1 if it diverged, 130 if interrupted (as a shell reports Ctrl-C)."""
    return {'completed': 0, 'diverged': 1, 'interrupted': 130}[history['summary']['status']]


# --------------------------------------------------------------------------- the run

class History:
    """Everything a run records: its config, train losses, test evaluations, status."""

    def __init__(self, config):
        self.config = dict(config)
        self.train = {'step': [], 'loss': []}
        self.test = {'step': [], 'loss': [], 'accuracy': []}
        self.status = 'running'
        self.time_s = 0.0  # wall time of all steps and evaluations
        self.eval_time_s = 0.0
        self.extra = {}  # script-specific numbers for the summary (throughput, ...)

    def add_train(self, first_step, losses):
        if losses and hasattr(losses[0], 'detach'):  # torch: one host copy for the whole chunk
            import torch
            losses = torch.stack(losses).float().cpu().tolist()
        self.train['step'].extend(range(first_step, first_step + len(losses)))
        self.train['loss'].extend(float(loss) for loss in losses)

    def add_eval(self, step, loss, acc):
        self.test['step'].append(step)
        self.test['loss'].append(float(loss))
        self.test['accuracy'].append(float(acc))

    def summary(self):
        acc = self.test['accuracy']
        best = int(np.argmax(acc)) if acc else None
        return {
            'status': self.status,
            'steps': self.train['step'][-1] if self.train['step'] else 0,
            'final_test_accuracy': acc[-1] if acc else None,
            'final_test_loss': self.test['loss'][-1] if acc else None,
            'best_test_accuracy': acc[best] if acc else None,
            'best_step': self.test['step'][best] if acc else None,
            'time_s': round(self.time_s, 3),
            'eval_time_s': round(self.eval_time_s, 3),
            **self.extra,
        }

    def to_dict(self):
        return {'config': self.config, 'summary': self.summary(), 'train': self.train,
                'test': self.test, 'environment': environment()}

    def save(self, output_dir, plot=True):
        """Write history.json, train.csv, test.csv and (if plot) curves.png."""
        os.makedirs(output_dir, exist_ok=True)
        record = self.to_dict()
        tmp = os.path.join(output_dir, 'history.json.tmp')
        with open(tmp, 'w') as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, os.path.join(output_dir, 'history.json'))  # never a half-written record
        for split in ('train', 'test'):
            with open(os.path.join(output_dir, f'{split}.csv'), 'w', newline='') as f:
                columns = record[split]
                writer = csv.writer(f)
                writer.writerow(columns)
                writer.writerows(zip(*columns.values()))
        if plot:
            plot_curves(record, os.path.join(output_dir, 'curves.png'))
        return record


def train_loop(train_step, evaluate, history, max_steps, eval_freq, progress=True, desc='train'):
    """Call train_step(step) for step = 1..max_steps and evaluate() every eval_freq
    steps and after the last one, recording both in history.

    train_step returns the batch loss, a float or a 0-dim tensor: tensors are copied
    to the host only every LOG_EVERY steps, so a GPU never waits on a single step.
    evaluate returns (test loss, test accuracy). A loss that is not finite or blows up
    (see diverged) stops the run as 'diverged', and Ctrl-C as 'interrupted'; what was
    recorded until then is kept.
    """
    from tqdm import tqdm
    pending = []  # losses of steps not yet copied into history
    bar = tqdm(total=max_steps, desc=desc, disable=None if progress else True, file=sys.stderr,
               dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for step in range(1, max_steps + 1):
            pending.append(train_step(step))
            bar.update()
            is_eval = step % eval_freq == 0 or step == max_steps
            if is_eval or step % LOG_EVERY == 0:
                history.add_train(step - len(pending) + 1, pending)
                pending = []
                recent = history.train['loss'][-LOG_EVERY:]
                bar.set_postfix(loss=f'{np.mean(recent):.3f}', refresh=False)
                if diverged(history.train['loss'][0], recent):
                    history.status = 'diverged'
                    break
            if is_eval:
                eval_start = time.perf_counter()
                history.add_eval(step, *evaluate())
                history.eval_time_s += time.perf_counter() - eval_start
                if progress:
                    bar.write(f'step {step:>6}/{max_steps}: train loss {np.mean(recent):.4f}  '
                              f'test loss {history.test["loss"][-1]:.4f}  '
                              f'test accuracy {history.test["accuracy"][-1]:.4f}', file=sys.stderr)
        else:
            history.status = 'completed'
    except KeyboardInterrupt:
        history.add_train(step - len(pending) + 1, pending)
        history.status = 'interrupted'
    finally:
        history.time_s = time.perf_counter() - start
        bar.close()
    if history.status != 'completed' and progress:
        print(f'{desc}: run {history.status} after step {step}; records kept', file=sys.stderr)
    return history


def diverged(first_loss, recent_losses):
    """True if a recent loss is not finite or their mean has blown up past the first loss.

    Needed beside the finiteness check: clipped probabilities keep the NumPy loss finite
    (at most -log(tiny) per sample) even when the weights have run away.
    """
    if not all(math.isfinite(loss) for loss in recent_losses):
        return True
    return np.mean(recent_losses) > DIVERGENCE_FACTOR * max(first_loss, 1.0)


def finish(history, output_dir, quiet=False):
    """Save the run (if output_dir) and return its record, printing where it went."""
    record = history.save(output_dir) if output_dir else history.to_dict()
    if not quiet:
        s = record['summary']
        print(f"final test accuracy {s['final_test_accuracy']:.4f} (best {s['best_test_accuracy']:.4f} "
              f"at step {s['best_step']}), {s['time_s']:.1f} s"
              + (f'; saved to {output_dir}' if output_dir else ''))
    return record


def default_output_dir(script):
    """runs/<script name without train_ and .py>."""
    name = os.path.splitext(os.path.basename(script))[0].replace('train_', '')
    return os.path.join('runs', name)


# --------------------------------------------------------------------------- plots

def plot_curves(record, path):
    """Loss (train and test) and test accuracy against step, drawn from a run record."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    train, test, summary = record['train'], record['test'], record['summary']
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    if train['step']:
        ax_loss.plot(train['step'], train['loss'], color='tab:blue', alpha=0.25, lw=0.8)
        ax_loss.plot(train['step'], smooth(train['loss']), color='tab:blue', label='train (batch, smoothed)')
    ax_loss.plot(test['step'], test['loss'], 'o-', color='tab:orange', label='test')
    ax_loss.set(xlabel='step', ylabel='cross-entropy loss', title='loss')
    ax_loss.legend()
    ax_acc.plot(test['step'], test['accuracy'], 'o-', color='tab:green', label='test')
    ax_acc.set(xlabel='step', ylabel='accuracy', title='test accuracy')
    if test['accuracy']:
        ax_acc.annotate(f"final {summary['final_test_accuracy']:.4f}\nbest {summary['best_test_accuracy']:.4f}",
                        xy=(0.98, 0.04), xycoords='axes fraction', ha='right', va='bottom')
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle(record['config'].get('name', ''))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def smooth(values, window=None):
    """Trailing moving average (window ~2% of the run, at least 1 step)."""
    values = np.asarray(values, dtype=np.float64)
    window = window or max(1, len(values) // 50)
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)
