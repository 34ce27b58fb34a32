"""What the PyTorch scripts share: their tuning flags and the checks between them, the device and torchrun's
processes, the data as tensors on the device, mini-batches and augmentation drawn there, evaluation, the
optimizer with its schedule and weight average, and the checkpoint a run resumes from."""
import argparse
import atexit
import math
import os

import torch
from torch.optim import lr_scheduler, swa_utils

from cli_utils import TRAIN_IMAGES, RunError, check_resume, number

CHECKPOINT = 'state.pt'
OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw')
SCHEDULERS = ('none', 'step', 'cosine', 'onecycle')
WORLD_SIZE, RANK = int(os.environ.get('WORLD_SIZE', 1)), int(os.environ.get('RANK', 0))  # set by torchrun


def device_type(name):
    """An argparse type: 'auto' (cuda, then mps, then cpu) or a device this machine has."""
    try:
        if name == 'auto' or name.split(':')[0] in ('cpu', 'cuda', 'mps') and torch.empty(0, device=name).numel() == 0:
            return name
    except RuntimeError:  # a name torch does not know, or a device this machine lacks
        pass
    raise argparse.ArgumentTypeError(f'{name!r} is not a device of this machine; use auto, cpu, cuda, cuda:N or mps '
                                     f'(it has {torch.cuda.device_count() or "no"} CUDA GPU(s))')


def add_torch_flags(parser, presets):
    """The tuning flags of the PyTorch scripts, with the defaults they share; each script sets its own others."""
    fraction = number(float, lambda x: 0 <= x < 1, 'in [0, 1)')
    parser.add_argument('--optimizer', choices=OPTIMIZERS,
                        help='sgd is plain SGD; momentum and nesterov use --momentum')
    parser.add_argument('--momentum', type=number(float, lambda x: x >= 0, 'a number >= 0'), default=0.9,
                        help='momentum of momentum and nesterov')
    parser.add_argument('--weight_decay', type=number(float, lambda x: x >= 0, 'a number >= 0'), default=0.0,
                        help='weight decay (decoupled for adamw)')
    parser.add_argument('--scheduler', choices=SCHEDULERS, default='none', help='per-step learning-rate schedule')
    parser.add_argument('--warmup_steps', type=number(int, lambda n: n >= 0, 'an integer >= 0'), default=0,
                        help="linear learning-rate warm-up (onecycle's own is 30%% of the run)")
    parser.add_argument('--label_smoothing', type=fraction, default=0.0, help='label smoothing of the training loss')
    add_switch(parser, 'augment', 'random crop (padding --crop_padding) and horizontal flip')
    parser.add_argument('--crop_padding', type=number(int, lambda n: 0 <= n <= 16, 'in 0..16'), default=4,
                        help="zero padding of --augment's random crop; 0: horizontal flips only")
    parser.add_argument('--ema_decay', type=number(float, lambda x: 0 < x < 1, 'in (0, 1)'),
                        help='evaluate an exponential moving average of the weights with this decay per step')
    add_switch(parser, 'tta', 'also report test accuracy with flip test-time augmentation')
    parser.add_argument('--epochs', type=number(float, lambda x: x > 0, 'a positive number'),
                        help='train this many epochs instead of --max_steps')
    parser.add_argument('--device', type=device_type, default='auto', help='auto (cuda, then mps, then cpu), cpu, '
                        'cuda, cuda:N or mps; under torchrun each process takes the GPU of its LOCAL_RANK')
    parser.add_argument('--preset', choices=sorted(presets), help='a recorded configuration (PRESETS in the script); '
                        'flags typed still win')


def add_switch(parser, name, help):
    """--NAME turns a setting on, --no_NAME off (the script's set_defaults gives its default)."""
    parser.add_argument(f'--{name}', action='store_true', help=f'{help}; --no_{name} turns it off')
    parser.add_argument(f'--no_{name}', dest=name, action='store_false', help=argparse.SUPPRESS)


def parse_torch_args(parser, argv, presets):
    """parser.parse_args(argv) with a --preset's values as defaults beneath the flags typed, and the run's length
    given once: --epochs replaces --max_steps, and a --max_steps typed replaces a preset's epochs."""
    typed = parser.parse_known_args(argv, argparse.Namespace(max_steps=None, epochs=None))[0]
    if typed.max_steps is not None and typed.epochs is not None:
        parser.error('give --epochs or --max_steps, not both')
    if typed.preset:
        parser.set_defaults(**presets[typed.preset])
    if typed.max_steps is not None:
        parser.set_defaults(epochs=None)
    args = parser.parse_args(argv)
    if args.epochs is not None:
        args.max_steps = None
    steps = args.max_steps or math.ceil(args.epochs * TRAIN_IMAGES / args.batch_size)
    if args.warmup_steps >= steps:
        parser.error(f'--warmup_steps ({args.warmup_steps}) must be shorter than the run ({steps} steps)')
    if WORLD_SIZE > 1 and (args.resume or args.batch_size % WORLD_SIZE or args.device not in ('auto', 'cuda', 'cpu')):
        parser.error(f'under torchrun: no --resume, --device auto, cuda or cpu, and a --batch_size divisible by the '
                     f'{WORLD_SIZE} processes')
    if args.resume:
        check_resume(parser, args, CHECKPOINT,
                     lambda path: torch.load(path, weights_only=True, mmap=True)['record']['config'])
    return args


def start_processes(name):
    """(device, rank, world size): under torchrun, the processes join one group (NCCL between GPUs, gloo
    between CPU processes) and each takes the GPU of its LOCAL_RANK; launched plainly, one process."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'mps' if torch.backends.mps.is_available() else 'cpu'
    if WORLD_SIZE > 1:
        if name == 'cuda':
            name = f"cuda:{os.environ['LOCAL_RANK']}"
            torch.cuda.set_device(name)
        torch.distributed.init_process_group('nccl' if name.startswith('cuda') else 'gloo')
        atexit.register(torch.distributed.destroy_process_group)
    return torch.device(name), RANK, WORLD_SIZE


def data_parallel(model, device):
    """The model as DistributedDataParallel under torchrun (gradients averaged over the processes), else itself."""
    ids = [device.index] if device.type == 'cuda' else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids) if WORLD_SIZE > 1 else model


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
    epoch's incomplete last batch is dropped), images passed through random_crop_flip if augment. Under
    torchrun every process draws the same order from a generator seeded alike, and takes its share of each."""

    def __init__(self, images, labels, batch_size, augment, seed, padding=4):
        if batch_size > len(images):
            raise RunError(f'--batch_size {batch_size} is larger than the {len(images)} training images')
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.augment, self.padding = augment, padding
        self.generator = torch.Generator(images.device).manual_seed(seed) if WORLD_SIZE > 1 else None
        self.order, self.position = None, len(images)  # position: where the next batch starts in the order

    def next(self):
        if self.position + self.batch_size > len(self.images):
            self.order = torch.randperm(len(self.images), device=self.images.device, generator=self.generator)
            self.position = 0
        idx = self.order[self.position:self.position + self.batch_size][RANK::WORLD_SIZE]
        self.position += self.batch_size
        x = self.images.index_select(0, idx)
        return (random_crop_flip(x, self.padding) if self.augment else x), self.labels.index_select(0, idx)


def random_crop_flip(images, padding=4):
    """Per-image random crop (zero padding) and horizontal flip of a [B, C, H, W] batch, on its device (torchvision's
    transforms draw one crop per call, i.e. per batch: one call per image would cost more than an MLP step)."""
    batch, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    top, left = (torch.randint(0, 2 * padding + 1, (batch, 1, 1), device=images.device) for _ in range(2))
    flip = torch.rand(batch, 1, 1, device=images.device) < 0.5
    cols = torch.arange(width, device=images.device).view(1, 1, width)
    cols = torch.where(flip, width - 1 - cols, cols) + left  # [B, 1, W]: a flipped image's columns read right to left
    rows = torch.arange(height, device=images.device).view(1, height, 1) + top  # [B, H, 1]
    return padded[torch.arange(batch, device=images.device).view(batch, 1, 1), :, rows, cols].permute(
        0, 3, 1, 2).contiguous()  # [B, H, W, C] gathered -> [B, C, H, W]


def evaluate(model, images, labels, batch_size, flip_tta=False):
    """(mean cross-entropy, accuracy, {'accuracy_tta': ...} with flip_tta) of `model` on all of (images,
    labels), in eval mode without gradients; flip TTA averages the logits of each image and its mirror."""
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
    loss, accuracy, accuracy_tta = [total / len(images) for total in sums.tolist()]
    return loss, accuracy, {'accuracy_tta': accuracy_tta} if flip_tta else {}


def make_optimizer(args, model, max_steps):
    """(optimizer, its per-step schedule, the weight average or None) for the model's trainable parameters.
    Schedules: 'none', 'step' (x0.1 at 50% and 75%), 'cosine' (to 0), each after a linear warm-up of
    --warmup_steps; 'onecycle': torch's one-cycle (warm-up 30% unless --warmup_steps)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer in ('sgd', 'momentum', 'nesterov'):
        momentum = 0.0 if args.optimizer == 'sgd' else args.momentum
        optimizer = torch.optim.SGD(params, lr=args.learning_rate, momentum=momentum,
                                    nesterov=args.optimizer == 'nesterov', weight_decay=args.weight_decay)
    else:  # one fused kernel for all parameters on CPU and CUDA: measured faster than the loop over them
        adam = torch.optim.Adam if args.optimizer == 'adam' else torch.optim.AdamW
        optimizer = adam(params, lr=args.learning_rate, weight_decay=args.weight_decay,
                         fused=all(p.device.type in ('cpu', 'cuda') for p in params) or None)
    warmup = args.warmup_steps
    if args.scheduler == 'onecycle':
        scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=args.learning_rate, total_steps=max_steps,
                                            pct_start=warmup / max_steps or 0.3)
    else:
        def factor(step):
            if step < warmup:  # from 1/warmup up to 1, as torch's LinearLR
                return (1 + (warmup - 1) * step / warmup) / warmup
            done = (step - warmup) / (max_steps - warmup)  # of the steps after the warm-up
            return {'none': 1.0, 'step': 0.1 ** ((done >= 0.5) + (done >= 0.75)),
                    'cosine': 0.5 * (1 + math.cos(math.pi * done))}[args.scheduler]
        scheduler = lr_scheduler.LambdaLR(optimizer, factor)
    ema = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(args.ema_decay),
                                  use_buffers=True) if args.ema_decay else None  # BatchNorm statistics averaged too
    return optimizer, scheduler, ema


def save_checkpoint(run, model, optimizer, scheduler, ema, batches):
    """At an evaluation: state.pt, all a resumed run needs to go on exactly as this one does (the record so far
    with its config, the state_dict of each part: model, optimizer, scheduler, ema; the batch order, the random
    state), and after the best evaluation yet best_model.pt, the evaluated weights with the run's config."""
    if not run.output_dir:
        return
    parts = dict(model=model, optimizer=optimizer, scheduler=scheduler, ema=ema)
    if run.test['accuracy'][-1] > max(run.test['accuracy'][:-1], default=-1.0):
        with run.writing('best_model.pt') as f:
            torch.save({'state_dict': (ema.module if ema else model).state_dict(), 'config': run.config}, f)
    with run.writing(CHECKPOINT) as f:
        torch.save({'record': run.state(), **{name: part.state_dict() for name, part in parts.items() if part},
                    'batches': (batches.order, batches.position), 'rng': torch.get_rng_state(),
                    'cuda_rng': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, f)


def load_checkpoint(run, data, model, optimizer, scheduler, ema, batches):
    """--resume: restore what save_checkpoint wrote into the run and these parts (tensors and plain values only,
    read with weights_only=True); RunError in one line if it does not fit them, or the data differ."""
    path = os.path.join(run.output_dir, CHECKPOINT)
    try:
        state = torch.load(path, map_location=batches.images.device, weights_only=True)
        for name, part in dict(model=model, optimizer=optimizer, scheduler=scheduler, ema=ema).items():
            if part:
                part.load_state_dict(state[name])
        batches.order, batches.position = state['batches']
        torch.set_rng_state(state['rng'].cpu())
        if state['cuda_rng']:
            torch.cuda.set_rng_state_all([rng.cpu() for rng in state['cuda_rng']])
    except Exception as err:  # noqa: BLE001 (truncated or foreign: one line, then stop)
        raise RunError(f"--resume: cannot restore '{path}' ({type(err).__name__}); run without --resume to start "
                       'the run again') from None
    run.restore(state['record'], data)
