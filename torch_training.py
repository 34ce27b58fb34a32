"""What the PyTorch training scripts share: the device, the data as tensors on it, mini-batches and
augmentation drawn there, evaluation, optimizers, schedules and the best checkpoint. Each script's
own train() holds its training loop and calls these."""
import math
import os

import torch
from torch.optim import lr_scheduler

from run_records import replacing, signals_deferred
from training_utils import OPTIMIZERS, SCHEDULERS, SettingsError, check_fits_in_memory, check_warmup, require, require_choice

BYTES_PER_PARAMETER = 16  # float32 weight, gradient and two optimizer moments


def get_device(name='auto'):
    """torch.device for 'auto' (cuda, then mps, then cpu) or a name; SettingsError for a name torch does
    not know or a device this machine does not have."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingsError(f'unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps') from None
    require(device.type in ('cpu', 'cuda', 'mps'), f'device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps')
    require(device.type != 'cuda' or (device.index or 0) < torch.cuda.device_count(),
            f'device {name!r} is not available: this machine has {torch.cuda.device_count() or "no"} CUDA GPU(s)')
    require(device.type != 'mps' or torch.backends.mps.is_available(), f'device {name!r} is not available here')
    return device


def check_memory(n_parameters, device):
    """Refuse a network whose weights, gradients and optimizer state exceed the device's (free) memory."""
    if device.type != 'mps':
        check_fits_in_memory(n_parameters * BYTES_PER_PARAMETER, str(device),
                             torch.cuda.mem_get_info(device)[0] if device.type == 'cuda' else None)


def environment(device):
    """What a run's record says of torch and the device."""
    return {'torch': torch.__version__, 'torch_threads': torch.get_num_threads(),
            'cuda': torch.cuda.get_device_name(device) if device.type == 'cuda' else None}


def to_tensors(split, device, memory_format=torch.contiguous_format):
    """A DataSet as tensors on `device`: images float32 [N, 3, 32, 32] in `memory_format`, labels int64 [N]."""
    labels = split.labels.argmax(1) if split.labels.ndim == 2 else split.labels  # one-hot -> class indices
    images = torch.from_numpy(split.images).to(device).contiguous(memory_format=memory_format)
    return images, torch.from_numpy(labels).long().to(device)


class TensorBatches:
    """Endless mini-batches of tensors kept on one device: a fresh random order each epoch, drawn on that
    device (a GPU never waits for the host); an epoch's incomplete last batch is dropped. `augment` is
    applied to each image batch. Data-parallel runs draw the order from a `generator` all processes
    share, and each gathers and augments only its `shard` of every batch."""

    def __init__(self, images, labels, batch_size, augment=None, generator=None, shard=None):
        require(0 < batch_size <= len(images), f'batch_size must be in 1..{len(images)}, got {batch_size}')
        self.images, self.labels, self.batch_size, self.augment = images, labels, batch_size, augment
        self.generator, self.shard = generator, shard
        self.order, self.position = None, len(images)  # position: where the next batch starts in the order

    def next(self):
        if self.position + self.batch_size > len(self.images):
            self.order = torch.randperm(len(self.images), device=self.images.device, generator=self.generator)
            self.position = 0
        idx = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        idx = self.shard(idx) if self.shard else idx
        x = self.images.index_select(0, idx)
        return (self.augment(x) if self.augment else x), self.labels.index_select(0, idx)


def random_crop_flip(images, padding=4):
    """Per-image random crop (zero padding) and horizontal flip of a [B, C, H, W] batch, on its device.
    torchvision.transforms.v2 draws one crop per call, i.e. per batch; one call per image would cost
    more than an MLP training step, so all crops are gathered at once."""
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


def evaluate(model, images, labels, *, batch_size, processes, flip_tta=False):
    """(mean cross-entropy, accuracy, {'accuracy_tta': ...} with flip_tta) of `model` on all of (images,
    labels), in eval mode without gradients; flip TTA averages the logits of each image and its mirror.
    Under torchrun each process evaluates its share (with rank 0's buffers) and the sums are added."""
    processes.share_buffers(model)
    n_images, images, labels = len(labels), processes.shard(images), processes.shard(labels)
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, device=images.device)  # summed loss, correct, correct with TTA
    with torch.inference_mode(), torch.autocast(images.device.type, torch.bfloat16, images.device.type == 'cuda'):
        for start in range(0, len(images), batch_size):
            x, y = images[start:start + batch_size], labels[start:start + batch_size]
            logits = model(x).float()
            sums[0] += torch.nn.functional.cross_entropy(logits, y, reduction='sum')
            sums[1] += (logits.argmax(1) == y).sum()
            if flip_tta:
                sums[2] += ((logits + model(x.flip(-1)).float()).argmax(1) == y).sum()
    model.train(was_training)
    loss, accuracy, accuracy_tta = [total / n_images for total in processes.sum(sums).tolist()]
    return loss, accuracy, {'accuracy_tta': accuracy_tta} if flip_tta else {}


def make_optimizer(name, params, lr, weight_decay=0.0, momentum=0.9):
    """'sgd' (plain), 'momentum', 'nesterov', 'adam' or 'adamw'. Adam and AdamW use the fused
    kernels on CPU and CUDA (one kernel for all parameters; see benchmarks/bench_convnet_cpu.py)."""
    require_choice('optimizer', name, OPTIMIZERS)
    params = list(params)
    fused = all(p.device.type in ('cpu', 'cuda') for p in params) or None
    if name in ('sgd', 'momentum', 'nesterov'):
        return torch.optim.SGD(params, lr=lr, momentum=0.0 if name == 'sgd' else momentum,
                               nesterov=name == 'nesterov', weight_decay=weight_decay)
    adam = torch.optim.Adam if name == 'adam' else torch.optim.AdamW
    return adam(params, lr=lr, weight_decay=weight_decay, fused=fused)


def make_scheduler(name, optimizer, total_steps, warmup_steps=0):
    """Per-step learning-rate factor: 'none' (1), 'step' (x0.1 at 50% and 75%), 'cosine' (to 0), each after
    a linear warm-up of warmup_steps; 'onecycle': torch's one-cycle (warm-up 30% unless warmup_steps given)."""
    require_choice('scheduler', name, SCHEDULERS)
    check_warmup(warmup_steps, total_steps)
    if name == 'onecycle':
        return lr_scheduler.OneCycleLR(optimizer, max_lr=[group['lr'] for group in optimizer.param_groups],
                                       total_steps=total_steps, pct_start=warmup_steps / total_steps or 0.3)

    def factor(step):
        if step < warmup_steps:  # from 1/warmup_steps up to 1, as torch's LinearLR
            return (1 + (warmup_steps - 1) * step / warmup_steps) / warmup_steps
        done = (step - warmup_steps) / (total_steps - warmup_steps)  # of the steps after the warm-up
        return {'none': 1.0, 'step': 0.1 ** ((done >= 0.5) + (done >= 0.75)),
                'cosine': 0.5 * (1 + math.cos(math.pi * done))}[name]
    return lr_scheduler.LambdaLR(optimizer, factor)


def save_best(run, model, config):
    """After an evaluation that beat every earlier one: the model's state_dict and the config to
    output_dir/best_model.pt, through a temporary file with Ctrl-C held (never half a checkpoint)."""
    if run.improved and run.output_dir:
        with signals_deferred(), replacing(os.path.join(run.output_dir, 'best_model.pt')) as partial:
            torch.save({'state_dict': model.state_dict(), 'config': config}, partial)
