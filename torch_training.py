"""What the PyTorch training loops call: the device, the data as tensors on it, mini-batches and augmentation
drawn there, evaluation, optimizers, schedules, and the checkpoints a run saves and resumes from."""
import math
import os

import torch
from torch.optim import lr_scheduler

from training_utils import RunError, SettingsError, check_warmup, require

def get_device(name='auto'):
    """torch.device for 'auto' (cuda, then mps, then cpu) or a name; SettingsError for a name torch does
    not know or a device this machine does not have."""
    if name == 'auto':
        mps = torch.backends.mps.is_available()
        return torch.device('cuda' if torch.cuda.is_available() else 'mps' if mps else 'cpu')
    try:
        device = torch.device(name)
        torch.empty(0, device=device)  # fails where this machine has no such device
    except (RuntimeError, AssertionError):
        raise SettingsError(f'device {name!r} is not available on this machine; use auto, cpu, cuda, cuda:N or mps '
                            f'(it has {torch.cuda.device_count() or "no"} CUDA GPU(s))') from None
    require(device.type in ('cpu', 'cuda', 'mps'),
            f'device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps')
    return device


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
    """Endless mini-batches from tensors on one device, in a fresh random order each epoch drawn there (an
    epoch's incomplete last batch is dropped), each image batch passed through `augment`. Data-parallel runs
    draw the order from a `generator` all processes share, and each takes only its `shard` of every batch."""

    def __init__(self, images, labels, batch_size, augment=None, generator=None, shard=None):
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
    kernels on CPU and CUDA (one kernel for all parameters, measured faster than the loop over them)."""
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


def save_state(run, step, model, optimizer, scheduler, ema, batches):
    """At an evaluation, into output_dir: state.pt, all a resumed run needs to go on exactly as this one does
    (weights, optimizer, schedule, weight average, batch order, torch's random state), and after an evaluation
    that beat every earlier one best_model.pt, the evaluated weights with the run's config. Both whole, always."""
    if run.output_dir and run.improved:
        with run.writing('best_model.pt') as partial:
            torch.save({'state_dict': (ema.module if ema else model).state_dict(), 'config': run.config}, partial)
    if run.output_dir:
        state = {'step': step, 'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                 'scheduler': scheduler.state_dict(), 'ema': ema.state_dict() if ema else None,
                 'batch_order': batches.order, 'batch_position': batches.position, 'rng': torch.get_rng_state(),
                 'cuda_rng': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
        with run.writing('state.pt') as partial:
            torch.save(state, partial)


def load_state(run, model, optimizer, scheduler, ema, batches):
    """Restore what save_state wrote into these objects and return its step (RunError in one line if there is
    no state or it does not fit); tensors only, read with weights_only=True."""
    path = os.path.join(run.output_dir, 'state.pt')
    try:
        state = torch.load(path, map_location=batches.images.device, weights_only=True)
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        if ema:
            ema.load_state_dict(state['ema'])
        batches.order, batches.position = state['batch_order'], state['batch_position']
        torch.set_rng_state(state['rng'].cpu())
        if state['cuda_rng']:
            torch.cuda.set_rng_state_all([rng.cpu() for rng in state['cuda_rng']])
    except Exception as err:  # noqa: BLE001 (missing, truncated or foreign: one line, then stop)
        raise RunError(f"--resume: cannot restore '{path}' ({type(err).__name__}); delete the folder and run "
                       'again without --resume') from None
    return state['step']
