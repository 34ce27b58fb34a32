"""Train the ConvNet (Table 1, or the pre-activation variant) on CIFAR-10.

    python train_convnet_pytorch.py --data_dir ../shared/cifar10/cifar-10-batches-py
    python train_convnet_pytorch.py --arch preact --data_dir ...
    python train_convnet_pytorch.py --preset best --data_dir ...      # the GPU recipe (pre-activation net, 60 epochs)
    python train_convnet_pytorch.py --preset cpu --data_dir ...       # the same recipe on Table 1, cut to 4 epochs

Defaults are the assignment's: Adam, lr 1e-4, batch 32, 5000 steps, test evaluation
every 500 steps. Device auto (cuda, mps, cpu); channels_last memory layout. On CUDA: bf16 autocast,
the data set held on the GPU, no per-step host sync. Writes history.json,
curves.png, the best model's state_dict (best_model.pt) and the state to resume from into --output_dir.
"""
import math

import numpy as np
import torch
from torch.optim import swa_utils

import cifar10_utils
from cli_utils import ArgumentParser, Switch, add_run_flags, add_torch_flags, flag, run_cli, with_preset
from convnet_pytorch import ARCHS, ConvNet
from distributed import Processes
from run_records import RunRecord
from torch_training import (TensorBatches, environment, evaluate, get_device, load_state, make_optimizer,
                            make_scheduler, random_crop_flip, save_state, to_tensors)
from training_utils import accuracy  # noqa: F401 (the skeleton's accuracy(predictions, targets) lives here too)
from training_utils import (check_batch_size, check_run_settings, check_torch_settings, check_warmup, exit_status,
                            require, require_choice)

# Settings: each flag's default, written once (the assignment's: Adam, lr 1e-4, batch 32, 5000 steps)
ARCH = 'vgg'  # Table 1
LEARNING_RATE = 1e-4
MAX_STEPS = 5000  # unless --epochs
BATCH_SIZE = 32
EVAL_FREQ = 500
SEED = 42
DATA_DIR = cifar10_utils.CIFAR10_FOLDER
OUTPUT_DIR = 'runs/convnet_pytorch'
OPTIMIZER, MOMENTUM, WEIGHT_DECAY = 'adam', 0.9, 0.0  # momentum only for 'momentum' and 'nesterov'
SCHEDULER, WARMUP_STEPS, LABEL_SMOOTHING, AUGMENT = 'none', 0, 0.0, False
EMA_DECAY, TTA, DEVICE = None, False, 'auto'  # no weight averaging, no flip TTA
COMPILE = False
CHANNELS_LAST = True  # NHWC: CUDA's bf16 convolutions want it; on CPU it won over two machines (bench_convnet_layout)

EVAL_BATCH_SIZE = 500  # test-set batches: large, no gradients
N_CHANNELS, N_CLASSES = cifar10_utils.IMAGE_SHAPE[0], cifar10_utils.N_CLASSES

# Recorded configurations: flag values applied by --preset NAME (flags given still win).
# 'best' is meant for a GPU: 60 epochs of the pre-activation net would take about 10 hours on 2 CPU
# cores; 'cpu' is the same recipe on the Table 1 net cut to 4 epochs (docs/report.md, question 4 a).
PRESETS = {
    'best': dict(arch='preact', augment=True, optimizer='adamw', learning_rate=2e-3, weight_decay=5e-2,
                 scheduler='onecycle', label_smoothing=0.1, batch_size=256, epochs=60, eval_freq=1000),
    'cpu': dict(augment=True, optimizer='adamw', learning_rate=2e-3, weight_decay=5e-2, scheduler='onecycle',
                label_smoothing=0.1, batch_size=128, epochs=4, eval_freq=500),
}


def train(*, arch=ARCH, learning_rate=LEARNING_RATE, max_steps=None, batch_size=BATCH_SIZE, eval_freq=EVAL_FREQ,
          seed=SEED, data_dir=DATA_DIR, optimizer=OPTIMIZER, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
          scheduler=SCHEDULER, warmup_steps=WARMUP_STEPS, label_smoothing=LABEL_SMOOTHING, augment=AUGMENT,
          ema_decay=EMA_DECAY, tta=TTA, epochs=None, device=DEVICE, compile=COMPILE, channels_last=CHANNELS_LAST,
          output_dir=None, progress=True, resume=False, data=None):
    """Train a ConvNet and return its record (config, curves, summary with images/s).

    The run lasts max_steps (MAX_STEPS if neither is given) or `epochs`. `channels_last`: the NHWC memory
    layout (False: NCHW). `data`: already loaded get_cifar10() splits.
    `output_dir`: where the record, curves and best_model.pt go (None: nothing written).
    Under torchrun the run is data-parallel (distributed.py).
    """
    check_run_settings(max_steps=max_steps, batch_size=batch_size, eval_freq=eval_freq, learning_rate=learning_rate,
                       seed=seed, epochs=epochs)
    check_torch_settings(optimizer=optimizer, momentum=momentum, weight_decay=weight_decay, scheduler=scheduler,
                         warmup_steps=warmup_steps, label_smoothing=label_smoothing, ema_decay=ema_decay)
    require_choice('arch', arch, ARCHS)
    require(not resume or output_dir, '--resume needs the --output_dir of the run to go on with')
    if epochs is None:  # in epochs, the run's length is known once the data are loaded
        max_steps = max_steps or MAX_STEPS
        check_warmup(warmup_steps, max_steps)
    processes = Processes()
    processes.check_batch_size(batch_size)
    require(not (resume and processes.distributed), '--resume is not supported under torchrun: resume in one process')
    device = get_device(processes.device_name(device))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    config = dict(name=f'convnet_{arch}', arch=arch, learning_rate=learning_rate, max_steps=max_steps,
                  batch_size=batch_size, eval_freq=eval_freq, seed=seed, data_dir=data_dir, optimizer=optimizer,
                  momentum=momentum, weight_decay=weight_decay, scheduler=scheduler, warmup_steps=warmup_steps,
                  label_smoothing=label_smoothing, augment=augment, ema_decay=ema_decay, tta=tta, epochs=epochs,
                  device=str(device), compile=compile, channels_last=channels_last, world_size=processes.world_size,
                  eval_batch_size=EVAL_BATCH_SIZE)
    is_main = processes.is_main  # under torchrun, rank 0 alone writes and prints
    with RunRecord(output_dir if is_main else None, config, progress=progress and is_main, silent=not is_main,
                   environment=environment(device), resume=resume) as run, processes.joined(device):
        np.random.seed(seed)
        torch.manual_seed(seed)  # the same initial weights in every process
        if device.type == 'cuda':
            torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN may pick its fastest kernels
        cifar10 = data if data is not None else cifar10_utils.get_cifar10(data_dir)
        n_train = cifar10['train'].num_examples
        check_batch_size(batch_size, n_train)
        max_steps = max_steps or math.ceil(epochs * n_train / batch_size)
        train_x, train_y = to_tensors(cifar10['train'], device, memory_format)
        test_x, test_y = to_tensors(cifar10['test'], device, memory_format)
        model = ConvNet(N_CHANNELS, N_CLASSES, arch).to(device, memory_format=memory_format)
        optimizer = make_optimizer(optimizer, model.parameters(), lr=learning_rate, weight_decay=weight_decay,
                                   momentum=momentum)
        scheduler = make_scheduler(scheduler, optimizer, total_steps=max_steps, warmup_steps=warmup_steps)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        batches = TensorBatches(train_x, train_y, batch_size, augment=random_crop_flip if augment else None,
                                generator=processes.batch_order(seed, device), shard=processes.shard)
        forward = processes.wrap(model, device)  # DistributedDataParallel under torchrun
        forward = torch.compile(forward) if compile else forward
        ema = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(ema_decay),
                                      use_buffers=True) if ema_decay else None  # BatchNorm statistics averaged too
        evaluated = ema.module if ema else model
        first_step = load_state(run, model, optimizer, scheduler, ema, batches) + 1 if resume else 1

        run.start(max_steps, eval_freq, data=getattr(cifar10, 'source', None), first_step=first_step)
        for step in range(first_step, max_steps + 1):
            x, y = batches.next()  # [B, 3, 32, 32] images, [B] class indices, on the device
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == 'cuda'):  # bf16 on CUDA only
                logits = forward(x)  # [B, 10]
                loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema:
                ema.update_parameters(model)
            batch_accuracy = (logits.argmax(1) == y).float().mean()
            run.log(step, processes.mean(loss.detach()), processes.mean(batch_accuracy))  # read as floats in chunks
            if step % eval_freq == 0 or step == max_steps:
                run.evaluate(step, *evaluate(evaluated, test_x, test_y, batch_size=EVAL_BATCH_SIZE, flip_tta=tta,
                                             processes=processes))
                save_state(run, step, model, optimizer, scheduler, ema, batches)
    return run.record


def build_parser():
    parser = ArgumentParser(__doc__)
    flag(parser, '--arch', ARCH, 'vgg: Table 1; preact: pre-activation residual variant', choices=sorted(ARCHS))
    add_run_flags(parser, learning_rate=LEARNING_RATE, max_steps=MAX_STEPS, batch_size=BATCH_SIZE, eval_freq=EVAL_FREQ,
                  seed=SEED, data_dir=DATA_DIR, output_dir=OUTPUT_DIR)
    add_torch_flags(parser, optimizer=OPTIMIZER, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, scheduler=SCHEDULER,
                    warmup_steps=WARMUP_STEPS, label_smoothing=LABEL_SMOOTHING, augment=AUGMENT, ema_decay=EMA_DECAY,
                    tta=TTA, device=DEVICE, presets=PRESETS)
    flag(parser, '--compile', COMPILE, 'torch.compile the model', action=Switch)
    flag(parser, '--channels_last', CHANNELS_LAST, 'channels_last memory layout (NHWC); --no_channels_last: NCHW',
         action=Switch)
    return parser


def main(argv=None):
    return exit_status(train(**with_preset(vars(build_parser().parse_args(argv)), PRESETS)))


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
