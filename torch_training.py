"""What the PyTorch training scripts share: the device, the data as tensors on it, mini-batches
and augmentation drawn there, evaluation, optimizers and schedules, their flags, and
train_torch, the routine that trains any of the models.
"""
import contextlib
import math
import os

import torch
from torch.optim import lr_scheduler, swa_utils

from cli_utils import Switch, nonnegative_float, nonnegative_int, positive_float, probability
from distributed import Processes
from run_records import History, OutputFolder, replacing, signals_deferred
from training_utils import (SettingsError, check_batch_size, check_fits_in_memory, check_run_settings, finish,
                            physical_memory_bytes, require, require_choice, set_seed, train_loop)

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw')
SCHEDULERS = ('none', 'step', 'cosine', 'onecycle')
BYTES_PER_PARAMETER = 16  # float32 weight, gradient and two optimizer moments


# --------------------------------------------------------------------------- device and data

def get_device(name='auto'):
    """torch.device for 'auto' (cuda, then mps, then cpu) or an explicit name; SettingsError
    for a name torch does not know or a device this machine does not have."""
    if name == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda')
        if torch.backends.mps.is_available():
            return torch.device('mps')
        return torch.device('cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingsError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == 'cuda':
        require(torch.cuda.is_available(), f'device {name!r} is not available: this machine has no CUDA GPU')
        require((device.index or 0) < torch.cuda.device_count(),
                f'device {name!r} is not available: this machine has {torch.cuda.device_count()} CUDA GPU(s)')
    elif device.type == 'mps':
        require(torch.backends.mps.is_available(), f'device {name!r} is not available on this machine')
    else:
        require(device.type == 'cpu', f"device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


def device_memory_bytes(device):
    """Memory of the device (free memory of a GPU), or None where it is not known."""
    if device.type == 'cuda':
        return torch.cuda.mem_get_info(device)[0]
    return physical_memory_bytes() if device.type == 'cpu' else None


def to_tensors(split, device, memory_format=torch.contiguous_format):
    """A DataSet's images and labels as tensors on `device`: images float32 [N, 3, 32, 32]
    in `memory_format`, labels int64 class indices [N] (one-hot is converted)."""
    labels = split.labels.argmax(1) if split.labels.ndim == 2 else split.labels
    images = torch.from_numpy(split.images).to(device).contiguous(memory_format=memory_format)
    return images, torch.from_numpy(labels).long().to(device)


class TensorBatches:
    """Endless mini-batches from tensors kept on one device: a fresh random permutation
    per epoch, drawn on that device, so a GPU never waits for the host. The incomplete
    last batch of an epoch is dropped. `augment`: a function applied to each image batch.
    Data-parallel runs draw the permutation from a `generator` all processes share, and
    each gathers and augments only its `shard` of every batch."""

    def __init__(self, images, labels, batch_size, augment=None, generator=None, shard=None):
        if not 0 < batch_size <= len(images):
            raise ValueError(f'batch_size must be in 1..{len(images)}, got {batch_size}')
        self.images, self.labels, self.batch_size, self.augment = images, labels, batch_size, augment
        self.generator, self.shard = generator, shard
        self.epochs_completed = -1
        self._order, self._position = None, len(images)

    def next(self):
        if self._position + self.batch_size > len(self.images):
            self._order = torch.randperm(len(self.images), device=self.images.device, generator=self.generator)
            self._position = 0
            self.epochs_completed += 1
        idx = self._order[self._position:self._position + self.batch_size]
        self._position += self.batch_size
        if self.shard:
            idx = self.shard(idx)
        x = self.images.index_select(0, idx)
        return (self.augment(x) if self.augment else x), self.labels.index_select(0, idx)


def random_crop_flip(images, padding=4):
    """Per-image random crop (zero padding) and horizontal flip of a [B, C, H, W] batch, on
    its device. torchvision.transforms.v2 draws one crop per call, i.e. per batch; one call
    per image would cost more than an MLP training step, so all crops are gathered at once."""
    batch, channels, height, width = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    top = torch.randint(0, 2 * padding + 1, (batch, 1, 1), device=device)
    left = torch.randint(0, 2 * padding + 1, (batch, 1, 1), device=device)
    flip = torch.rand(batch, 1, 1, device=device) < 0.5
    cols = torch.arange(width, device=device).view(1, 1, width)
    cols = torch.where(flip, width - 1 - cols, cols) + left  # [B, 1, W]: flipped columns read right to left
    rows = torch.arange(height, device=device).view(1, height, 1) + top  # [B, H, 1]
    flat = (rows * (width + 2 * padding) + cols).flatten(1)  # [B, H*W] positions in the padded image
    crops = padded.flatten(2).gather(2, flat.unsqueeze(1).expand(-1, channels, -1))
    return crops.view(images.shape)


def evaluate(model, images, labels, batch_size=1000, autocast_dtype=None, flip_tta=False):
    """Summed cross-entropy and number correct of `model` on all of (images, labels), and with
    flip_tta also the number correct when the logits of each image and its mirror image are
    averaged (None otherwise): 0-dim tensors on the device; eval mode, no gradients."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    correct_tta = torch.zeros_like(correct) if flip_tta else None
    with torch.inference_mode(), torch.autocast(images.device.type, dtype=autocast_dtype,
                                                enabled=autocast_dtype is not None):
        for start in range(0, len(images), batch_size):
            x, y = images[start:start + batch_size], labels[start:start + batch_size]
            logits = model(x).float()
            total_loss += torch.nn.functional.cross_entropy(logits, y, reduction='sum')
            correct += (logits.argmax(1) == y).sum()
            if flip_tta:
                correct_tta += ((logits + model(x.flip(-1)).float()).argmax(1) == y).sum()
    model.train(was_training)
    return total_loss, correct, correct_tta


# --------------------------------------------------------------------------- optimisation

def make_optimizer(name, params, lr, weight_decay=0.0, momentum=0.9):
    """'sgd' (plain), 'momentum', 'nesterov', 'adam' or 'adamw'. Adam and AdamW use the fused
    kernels on CPU and CUDA (one kernel for all parameters; see benchmarks/bench_convnet_cpu.py)."""
    require_choice('optimizer', name, OPTIMIZERS)
    params = list(params)
    fused = all(p.device.type in ('cpu', 'cuda') for p in params) or None
    if name == 'sgd':
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name in ('momentum', 'nesterov'):
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=name == 'nesterov',
                               weight_decay=weight_decay)
    if name == 'adam':
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def make_scheduler(name, optimizer, total_steps, warmup_steps=0):
    """Per-step learning-rate schedule: 'none', 'step' (x0.1 at 50% and 75%), 'cosine'
    (to 0), 'onecycle' (warm-up then cosine down; its warm-up is 30% unless warmup_steps
    is given). warmup_steps > 0 adds a linear warm-up in front of 'none', 'step' and 'cosine'."""
    require_choice('scheduler', name, SCHEDULERS)
    check_warmup(warmup_steps, total_steps)
    if name == 'onecycle':
        max_lrs = [group['lr'] for group in optimizer.param_groups]
        pct = warmup_steps / total_steps if warmup_steps else 0.3
        return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total_steps, pct_start=pct)
    main_steps = total_steps - warmup_steps
    if name == 'none':
        main = lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    elif name == 'step':
        main = lr_scheduler.MultiStepLR(optimizer, milestones=[main_steps // 2, main_steps * 3 // 4], gamma=0.1)
    else:
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=main_steps)
    if not warmup_steps:
        return main
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup_steps, total_iters=warmup_steps)
    return lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def check_warmup(warmup_steps, total_steps):
    require(warmup_steps < total_steps, f'warmup_steps ({warmup_steps}) must be shorter than the run ({total_steps} steps)')


def add_torch_flags(parser, presets=None):
    """The tuning flags the PyTorch scripts share (defaults from the script's train())."""
    parser.add_argument('--optimizer', choices=OPTIMIZERS, help='sgd is plain SGD; momentum and nesterov use --momentum')
    parser.add_argument('--momentum', type=nonnegative_float, help='momentum of momentum and nesterov')
    parser.add_argument('--weight_decay', type=nonnegative_float, help='weight decay (decoupled for adamw)')
    parser.add_argument('--scheduler', choices=SCHEDULERS, help='per-step learning-rate schedule')
    parser.add_argument('--warmup_steps', type=nonnegative_int,
                        help="linear learning-rate warm-up (onecycle's own warm-up is 30%% of the run)")
    parser.add_argument('--label_smoothing', type=probability, help='label smoothing of the training loss')
    parser.add_argument('--augment', action=Switch, help='random crop (padding 4) and horizontal flip')
    parser.add_argument('--ema_decay', type=probability,
                        help='evaluate an exponential moving average of the weights with this decay per step')
    parser.add_argument('--tta', action=Switch,
                        help='also report test accuracy with flip test-time augmentation (image and mirror averaged)')
    parser.add_argument('--epochs', type=positive_float,
                        help='train this many epochs of the training set instead of --max_steps')
    parser.add_argument('--device', help='auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps')
    if presets:
        parser.add_argument('--preset', choices=sorted(presets),
                            help='a recorded configuration (PRESETS in the script); flags given still win')


def check_torch_settings(config):
    """The settings train_torch reads, checked before any work."""
    check_run_settings(max_steps=config['max_steps'], batch_size=config['batch_size'], eval_freq=config['eval_freq'],
                       learning_rate=config['learning_rate'], seed=config['seed'])
    require_choice('optimizer', config['optimizer'], OPTIMIZERS)
    require_choice('scheduler', config['scheduler'], SCHEDULERS)
    require(0 <= config['label_smoothing'] < 1, f"label_smoothing must be in [0, 1), got {config['label_smoothing']}")
    require(config['warmup_steps'] >= 0 and config['momentum'] >= 0 and config['weight_decay'] >= 0,
            'warmup_steps, momentum and weight_decay must be >= 0')
    require(config.get('epochs') is None or config['epochs'] > 0, f"epochs must be > 0, got {config.get('epochs')}")
    require(config.get('ema_decay') is None or 0 < config['ema_decay'] < 1,
            f"ema_decay must be in (0, 1), got {config.get('ema_decay')}")
    if config.get('epochs') is None:  # in epochs, the run's length is known once the data are loaded
        check_warmup(config['warmup_steps'], config['max_steps'])


# --------------------------------------------------------------------------- the routine

def save_checkpoint(state, path):
    """torch.save through a temporary file, Ctrl-C held until it is in place: never half a checkpoint."""
    with signals_deferred(), replacing(path) as partial:
        torch.save(state, partial)


def train_torch(config, build_model, load_data, *, output_dir=None, progress=True, n_parameters=None):
    """Train a PyTorch classifier on CIFAR-10 as `config` (a run_config) says; return the run record.

    build_model() makes the model (after seeding); load_data() returns get_cifar10()-style
    splits; n_parameters, if given, is checked against the device's memory first. The
    settings, the device and the output folder are checked before any data is loaded.
    The data stay on the device; on CUDA the steps run under bf16 autocast. The best
    model's state_dict goes to output_dir/best_model.pt. Under torchrun the run is
    data-parallel (distributed.py): the batch size stays the global one.
    """
    c = config
    processes = Processes()
    check_torch_settings(c)
    processes.check_batch_size(c['batch_size'])
    device = get_device(processes.device_name(c['device']))
    c['device'] = str(device)
    if n_parameters is not None:
        check_fits_in_memory(n_parameters * BYTES_PER_PARAMETER, device_memory_bytes(device), str(device))
    output_dir = output_dir if processes.is_main else None  # rank 0 alone writes and prints
    with OutputFolder(output_dir) if output_dir else contextlib.nullcontext():
        processes.start(device)
        try:
            set_seed(c['seed'])  # the same initial weights in every process
            cifar10 = load_data()
            n_train = cifar10['train'].num_examples
            check_batch_size(c['batch_size'], n_train)
            if c.get('epochs'):  # make_scheduler checks the warm-up against this length before the first step
                c['max_steps'] = math.ceil(c['epochs'] * n_train / c['batch_size'])
            history = _train(c, build_model(), cifar10, device=device, output_dir=output_dir,
                             progress=progress and processes.is_main, processes=processes)
        finally:
            processes.stop()
        return finish(history, output_dir, progress, report=processes.is_main)


def _train(c, model, cifar10, *, device, output_dir, progress, processes):
    channels_last = c.get('channels_last')
    channels_last = device.type == 'cuda' if channels_last is None else channels_last  # None: on CUDA only
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    autocast_dtype = torch.bfloat16 if device.type == 'cuda' else None  # CPU: float32 measured fastest
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    train_x, train_y = to_tensors(cifar10['train'], device, memory_format)
    test_x, test_y = to_tensors(cifar10['test'], device, memory_format)
    model = model.to(device, memory_format=memory_format)
    opt = make_optimizer(c['optimizer'], model.parameters(), lr=c['learning_rate'], weight_decay=c['weight_decay'],
                         momentum=c['momentum'])
    sched = make_scheduler(c['scheduler'], opt, total_steps=c['max_steps'], warmup_steps=c['warmup_steps'])
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=c['label_smoothing'])
    order = None
    if processes.distributed:  # one batch order for all processes; augmentation and dropout differ between them
        order = torch.Generator(device=device).manual_seed(c['seed'])
        torch.manual_seed(c['seed'] + processes.rank)
    batches = TensorBatches(train_x, train_y, c['batch_size'], augment=random_crop_flip if c['augment'] else None,
                            generator=order, shard=processes.shard if processes.distributed else None)
    wrapped = processes.wrap(model, device)
    forward = torch.compile(wrapped) if c.get('compile') else wrapped
    # the evaluated model: the weights, or their moving average (BatchNorm statistics included)
    ema = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(c['ema_decay']),
                                  use_buffers=True) if c.get('ema_decay') else None
    evaluated = ema.module if ema else model

    def train_step(step):
        x, y = batches.next()
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = loss_fn(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema:
            ema.update_parameters(model)
        return loss.detach()  # no .item(): the host reads losses back every LOG_EVERY steps

    best_accuracy = -1.0
    test_shard = processes.shard(test_x), processes.shard(test_y)

    def evaluate_and_keep_best():
        nonlocal best_accuracy
        processes.share_buffers(evaluated)
        total_loss, correct, correct_tta = evaluate(forward if ema is None else ema.module, *test_shard,
                                                    batch_size=c['eval_batch_size'], autocast_dtype=autocast_dtype,
                                                    flip_tta=c.get('tta'))
        loss = processes.sum_(total_loss).item() / len(test_x)
        acc = processes.sum_(correct).item() / len(test_x)
        if acc > best_accuracy and output_dir:
            best_accuracy = acc
            save_checkpoint({'state_dict': evaluated.state_dict(), 'config': c},
                            os.path.join(output_dir, 'best_model.pt'))
        more = {'accuracy_tta': processes.sum_(correct_tta).item() / len(test_x)} if correct_tta is not None else {}
        return loss, acc, more

    history = History(c, data_source=getattr(cifar10, 'source', None))
    history.reduce_losses = processes.mean_  # every process records (and judges divergence on) the same mean
    train_loop(train_step, evaluate_and_keep_best, history, max_steps=c['max_steps'], eval_freq=c['eval_freq'],
               progress=progress, desc=c['name'], save_dir=output_dir)
    steps, train_time = history.steps, history.time_s - history.eval_time_s
    history.extra['train_images_per_s'] = round(steps * c['batch_size'] / train_time, 1) if steps else None
    history.extra['world_size'] = processes.world_size
    return history
