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
import re
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


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where it is None (the help says what happens then)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def base_parser(doc, learning_rate, max_steps, batch_size, eval_freq):
    """The flags all training scripts share, with each script's defaults."""
    parser = ArgumentParser(description=doc.strip().splitlines()[0], formatter_class=DefaultsHelpFormatter)
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
    """Run main(); data errors become one line on stderr and exit status 1, and a
    termination signal stops training like Ctrl-C (records kept)."""
    import signal
    from cifar10_utils import CIFAR10Error

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return main()
    except CIFAR10Error as err:
        sys.exit(f'{os.path.basename(sys.argv[0])}: error: {err}')


def exit_status(history):
    """0 for a completed run, 1 if it diverged, 130 if interrupted (as a shell reports Ctrl-C)."""
    return {'completed': 0, 'diverged': 1, 'interrupted': 130}[history['summary']['status']]


# --------------------------------------------------------------------------- the run

LOSS_DECIMALS = 6


def record_json(record):
    """JSON text of a run record: indented, but each list of numbers on one line."""
    text = json.dumps(record, indent=1)
    return re.sub(r'\[\n\s*([^\[\]{}]*?)\n\s*\]', lambda m: '[' + re.sub(r',\n\s*', ', ', m.group(1)) + ']', text)


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

    def add_train(self, losses):
        """Record the losses of the steps after the last recorded one."""
        if losses and hasattr(losses[0], 'detach'):  # torch: one host copy for the whole chunk
            import torch
            losses = torch.stack(losses).float().cpu().tolist()
        first_step = self.train['step'][-1] + 1 if self.train['step'] else 1
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
        # per-step losses to 6 decimals: ample for curves, and long runs keep small records
        train = {'step': self.train['step'], 'loss': [round(loss, LOSS_DECIMALS) for loss in self.train['loss']]}
        return {'config': self.config, 'summary': self.summary(), 'train': train,
                'test': self.test, 'environment': environment()}

    def save(self, output_dir, plot=True):
        """Write history.json, train.csv, test.csv and (if plot) curves.png."""
        os.makedirs(output_dir, exist_ok=True)
        record = self.to_dict()
        tmp = os.path.join(output_dir, 'history.json.tmp')
        with open(tmp, 'w') as f:
            f.write(record_json(record))
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


def train_loop(train_step, evaluate, history, max_steps, eval_freq, progress=True, desc='train', save_dir=None):
    """Call train_step(step) for step = 1..max_steps and evaluate() every eval_freq
    steps and after the last one, recording both in history (and saving its JSON and
    CSVs into save_dir after each evaluation, so even a killed run leaves its record).

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
                history.add_train(pending)
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
    s = record['summary']
    if not quiet and s['final_test_accuracy'] is not None:
        print(f"final test accuracy {s['final_test_accuracy']:.4f} (best {s['best_test_accuracy']:.4f} "
              f"at step {s['best_step']}), {s['time_s']:.1f} s" + (f'; saved to {output_dir}' if output_dir else ''))
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
    steps, losses = np.asarray(train['step']), np.asarray(train['loss'], dtype=np.float64)
    finite = np.isfinite(losses)  # a diverged run ends in inf/NaN: draw what came before
    if finite.any():
        ax_loss.plot(steps[finite], losses[finite], color='tab:blue', alpha=0.25, lw=0.8)
        ax_loss.plot(steps[finite], smooth(losses[finite]), color='tab:blue', label='train (batch, smoothed)')
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


# --------------------------------------------------------------------------- PyTorch helpers
# (torch is imported inside each function, so importing this module stays NumPy-only)

def to_tensors(split, device, memory_format=None):
    """A DataSet's images and labels as tensors on `device`: images float32 [N, 3, 32, 32]
    (in `memory_format` if given), labels int64 class indices [N] (one-hot is converted)."""
    import torch
    labels = split.labels.argmax(1) if split.labels.ndim == 2 else split.labels
    images = torch.from_numpy(split.images).to(device)
    if memory_format is not None:
        images = images.contiguous(memory_format=memory_format)
    return images, torch.from_numpy(labels).long().to(device)


class TensorBatches:
    """Endless mini-batches from tensors kept on one device: a fresh random permutation
    per epoch, drawn on that device, so a GPU never waits for the host. The incomplete
    last batch of an epoch is dropped. `augment`: a function applied to each image batch."""

    def __init__(self, images, labels, batch_size, augment=None):
        if not 0 < batch_size <= len(images):
            raise ValueError(f'batch_size must be in 1..{len(images)}, got {batch_size}')
        self.images, self.labels, self.batch_size, self.augment = images, labels, batch_size, augment
        self.epochs_completed = -1
        self._order, self._position = None, len(images)

    def next(self):
        import torch
        if self._position + self.batch_size > len(self.images):
            self._order = torch.randperm(len(self.images), device=self.images.device)
            self._position = 0
            self.epochs_completed += 1
        idx = self._order[self._position:self._position + self.batch_size]
        self._position += self.batch_size
        x = self.images.index_select(0, idx)
        return (self.augment(x) if self.augment else x), self.labels.index_select(0, idx)


def random_crop_flip(images, padding=4):
    """Per-image random crop (zero padding) and horizontal flip of a [B, C, H, W] batch,
    on its device. torchvision.transforms.v2 draws one crop per call, i.e. per batch;
    one call per image would cost more than an MLP training step, so this indexes all
    crops at once instead."""
    import torch
    batch, _, height, width = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (batch, 1, 1), device=device)
    left = torch.randint(0, 2 * padding + 1, (batch, 1, 1), device=device)
    flip = torch.rand(batch, 1, 1, device=device) < 0.5
    cols = torch.arange(width, device=device).view(1, 1, width)
    cols = torch.where(flip, width - 1 - cols, cols) + left  # [B, 1, W]: flipped columns read right to left
    rows = torch.arange(height, device=device).view(1, height, 1) + top  # [B, H, 1]
    flat = (rows * (width + 2 * padding) + cols).flatten(1)  # [B, H*W] positions in the padded image
    crops = padded.flatten(2).gather(2, flat.unsqueeze(1).expand(-1, images.shape[1], -1))
    return crops.view(images.shape)


def evaluate(model, images, labels, batch_size=1000, loss_fn=None, autocast_dtype=None):
    """(mean loss, accuracy) of `model` on all of (images, labels) in eval mode without
    gradients; sums stay on the device and are read back once at the end."""
    import torch
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    with torch.inference_mode(), torch.autocast(images.device.type, dtype=autocast_dtype,
                                                enabled=autocast_dtype is not None):
        for start in range(0, len(images), batch_size):
            x, y = images[start:start + batch_size], labels[start:start + batch_size]
            logits = model(x).float()
            total_loss += loss_fn(logits, y, reduction='sum')
            correct += (logits.argmax(1) == y).sum()
    model.train(was_training)
    return total_loss.item() / len(images), correct.item() / len(images)


OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw')
SCHEDULERS = ('none', 'step', 'cosine', 'onecycle')


def make_optimizer(name, params, lr, weight_decay=0.0, momentum=0.9):
    """'sgd' (plain), 'momentum', 'nesterov', 'adam' or 'adamw'. Adam and AdamW use
    the fused kernels on CPU and CUDA (one kernel for all parameters; faster here,
    see benchmarks/bench_convnet_cpu.py)."""
    import torch
    params = list(params)
    fused = all(p.device.type in ('cpu', 'cuda') for p in params) or None
    if name == 'sgd':
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name in ('momentum', 'nesterov'):
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=name == 'nesterov',
                               weight_decay=weight_decay)
    if name == 'adam':
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == 'adamw':
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {name!r}')


def make_scheduler(name, optimizer, total_steps, warmup_steps=0):
    """Per-step learning-rate schedule: 'none', 'step' (x0.1 at 50% and 75%), 'cosine'
    (to 0), 'onecycle' (warm-up then cosine down; its warm-up is 30% unless warmup_steps
    is given). warmup_steps > 0 adds a linear warm-up in front of 'none', 'step' and 'cosine'."""
    import torch
    from torch.optim import lr_scheduler
    if name == 'onecycle':
        max_lrs = [group['lr'] for group in optimizer.param_groups]
        pct = warmup_steps / total_steps if warmup_steps else 0.3
        return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total_steps, pct_start=pct)
    main_steps = max(1, total_steps - warmup_steps)
    if name == 'none':
        main = lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    elif name == 'step':
        main = lr_scheduler.MultiStepLR(optimizer, milestones=[main_steps // 2, main_steps * 3 // 4], gamma=0.1)
    elif name == 'cosine':
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=main_steps)
    else:
        raise ValueError(f'scheduler must be one of {SCHEDULERS}, got {name!r}')
    if not warmup_steps:
        return main
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup_steps, total_iters=warmup_steps)
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def add_torch_args(parser, presets, optimizer='sgd'):
    """The tuning flags both PyTorch scripts share."""
    parser.add_argument('--optimizer', choices=OPTIMIZERS, default=optimizer,
                        help='sgd is plain SGD; momentum and nesterov use --momentum')
    parser.add_argument('--momentum', type=nonnegative_float, default=0.9, help='for momentum and nesterov')
    parser.add_argument('--weight_decay', type=nonnegative_float, default=0.0)
    parser.add_argument('--scheduler', choices=SCHEDULERS, default='none', help='per-step learning-rate schedule')
    parser.add_argument('--warmup_steps', type=nonnegative_int, default=0, help='linear learning-rate warm-up')
    parser.add_argument('--label_smoothing', type=nonnegative_float, default=0.0)
    parser.add_argument('--augment', action='store_true', help='random crop (padding 4) and horizontal flip')
    parser.add_argument('--epochs', type=positive_float, default=None,
                        help='train this many epochs of the training set (overrides --max_steps)')
    parser.add_argument('--device', default='auto', help='auto (cuda, mps, cpu) or a torch device name')
    if presets:
        parser.add_argument('--preset', choices=sorted(presets), default=None,
                            help='a recorded configuration (see PRESETS in the script); explicit flags still win')


def parse_args(parser, presets):
    """Parse, applying --preset's values as defaults so explicit flags still win."""
    args = parser.parse_args()
    if getattr(args, 'preset', None):
        parser.set_defaults(**presets[args.preset])
        args = parser.parse_args()
    if args.label_smoothing >= 1:
        parser.error(f'argument --label_smoothing: must be < 1, got {args.label_smoothing}')
    return args


def train_torch(model, cifar10, config, device, output_dir=None, progress=True):
    """Train a PyTorch classifier on CIFAR-10 splits as `config` says; return the run record.

    config keys: learning_rate, max_steps (or epochs), batch_size, eval_freq, optimizer,
    momentum, weight_decay, scheduler, warmup_steps, label_smoothing, augment, and
    optionally channels_last, compile, eval_batch_size. The data stay on `device`;
    on CUDA the steps run under bf16 autocast. The best model's state_dict goes to
    output_dir/best_model.pt. Seed before building the model: batches continue the
    same torch RNG.
    """
    import torch
    c = config
    memory_format = torch.channels_last if c.get('channels_last') else torch.contiguous_format
    autocast_dtype = torch.bfloat16 if device.type == 'cuda' else None  # CPU: float32 measured fastest
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    train_x, train_y = to_tensors(cifar10['train'], device, memory_format)
    test_x, test_y = to_tensors(cifar10['test'], device, memory_format)
    if c.get('epochs'):
        c['max_steps'] = math.ceil(c['epochs'] * len(train_x) / c['batch_size'])
    model = model.to(device, memory_format=memory_format)
    opt = make_optimizer(c['optimizer'], model.parameters(), c['learning_rate'], c['weight_decay'], c['momentum'])
    sched = make_scheduler(c['scheduler'], opt, c['max_steps'], c['warmup_steps'])
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=c['label_smoothing'])
    batches = TensorBatches(train_x, train_y, c['batch_size'], augment=random_crop_flip if c['augment'] else None)
    forward = torch.compile(model) if c.get('compile') else model

    def train_step(step):
        x, y = batches.next()
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = loss_fn(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return loss.detach()  # no .item(): the host reads losses back every LOG_EVERY steps

    best_accuracy = [-1.0]

    def evaluate_and_keep_best():
        loss, acc = evaluate(forward, test_x, test_y, c.get('eval_batch_size', 1000), autocast_dtype=autocast_dtype)
        if acc > best_accuracy[0] and output_dir:
            best_accuracy[0] = acc
            os.makedirs(output_dir, exist_ok=True)
            torch.save({'state_dict': model.state_dict(), 'config': c}, os.path.join(output_dir, 'best_model.pt'))
        return loss, acc

    history = History(c)
    train_loop(train_step, evaluate_and_keep_best, history, c['max_steps'], c['eval_freq'], progress, desc=c['name'],
               save_dir=output_dir)
    steps, train_time = len(history.train['step']), history.time_s - history.eval_time_s
    history.extra['train_images_per_s'] = round(steps * c['batch_size'] / train_time, 1) if steps else None
    return finish(history, output_dir, quiet=not progress)
