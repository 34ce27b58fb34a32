"""Train the ConvNet (Table 1, or the pre-activation variant) on CIFAR-10.

    python train_convnet_pytorch.py --data_dir ../shared/cifar10/cifar-10-batches-py
    python train_convnet_pytorch.py --arch preact --data_dir ...
    python train_convnet_pytorch.py --preset best --data_dir ...      # the GPU recipe (pre-activation net, 60 epochs)
    python train_convnet_pytorch.py --preset cpu --data_dir ...       # the same recipe on Table 1, cut to 4 epochs

Defaults are the assignment's: Adam, lr 1e-4, batch 32, 5000 steps, test evaluation every 500 steps.
Device auto (cuda, mps, cpu); channels_last memory layout. On CUDA: bf16 autocast, the data set held on
the GPU, no per-step host sync. Writes history.json, curves.png, the best model's state_dict (best_model.pt)
and state.pt (to --resume from) into --output_dir. From Python: `train(parse_args(['--max_steps', '500']))`.
"""
import math

import numpy as np
import torch

import cifar10_utils
from cli_utils import EXIT_STATUS, ArgumentParser, add_run_flags, run_cli
from convnet_pytorch import ARCHS, ConvNet
from run_records import RunRecord, accuracy  # noqa: F401 (the skeleton's accuracy(predictions, targets))
from torch_training import (
    CHECKPOINT,
    TensorBatches,
    add_switch,
    add_torch_flags,
    data_parallel,
    environment,
    evaluate,
    load_checkpoint,
    make_optimizer,
    parse_torch_args,
    save_checkpoint,
    start_processes,
    to_tensors,
)

EVAL_BATCH_SIZE = 500  # test-set batches: large, no gradients
N_CHANNELS, N_CLASSES = cifar10_utils.IMAGE_SHAPE[0], cifar10_utils.N_CLASSES

# Recorded configurations: flag values applied by --preset NAME (flags typed still win).
# 'best' is meant for a GPU: 60 epochs of the pre-activation net would take about 10 hours on 2 CPU
# cores; 'cpu' is the same recipe on the Table 1 net cut to 4 epochs (docs/report.md, question 4 a).
PRESETS = {
    'best': dict(arch='preact', augment=True, optimizer='adamw', learning_rate=2e-3, weight_decay=5e-2,
                 scheduler='onecycle', label_smoothing=0.1, batch_size=256, epochs=60, eval_freq=1000),
    'cpu': dict(augment=True, optimizer='adamw', learning_rate=2e-3, weight_decay=5e-2, scheduler='onecycle',
                label_smoothing=0.1, batch_size=128, epochs=4, eval_freq=500),
}


def train(args, data=None):
    """Train a ConvNet and return its record (config, curves, summary with images/s). `data`: already loaded
    get_cifar10() splits (else loaded from --data_dir). Under torchrun the run is data-parallel."""
    device, rank, world_size = start_processes(args.device)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    with RunRecord(args, f'convnet_{args.arch}', CHECKPOINT, main_process=rank == 0, environment=environment(device),
                   device=str(device), world_size=world_size, eval_batch_size=EVAL_BATCH_SIZE) as run:
        np.random.seed(args.seed)
        torch.manual_seed(args.seed + rank)  # under torchrun DDP gives every process rank 0's first weights
        torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN may pick its fastest kernels
        cifar10 = data if data is not None else cifar10_utils.get_cifar10(args.data_dir)
        train_x, train_y = to_tensors(cifar10.train, device, layout)
        test_x, test_y = to_tensors(cifar10.test, device, layout)
        model = ConvNet(N_CHANNELS, N_CLASSES, args.arch).to(device, memory_format=layout)
        max_steps = args.max_steps or math.ceil(args.epochs * len(train_y) / args.batch_size)
        optimizer, scheduler, ema = make_optimizer(args, model, max_steps)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
        batches = TensorBatches(train_x, train_y, args.batch_size, args.augment, args.seed, args.crop_padding)
        if args.resume:
            load_checkpoint(run, cifar10.source, model, optimizer, scheduler, ema, batches)
        forward = data_parallel(model, device)
        forward = torch.compile(forward) if args.compile else forward

        run.start(max_steps, data=cifar10.source)
        try:
            for step in range(run.step + 1, max_steps + 1):
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
                run.log(step, loss.detach(), (logits.argmax(1) == y).float().mean())  # read as floats in chunks
                if (reason := run.divergence()):  # the loss is not finite or has run away
                    return run.end('diverged', reason)
                if step % args.eval_freq == 0 or step == max_steps:
                    run.evaluate(step, *evaluate(ema.module if ema else model, test_x, test_y, EVAL_BATCH_SIZE,
                                                 args.tta))
                    save_checkpoint(run, model, optimizer, scheduler, ema, batches)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (run_cli makes it one)
            return run.end('interrupted')
        except Exception as err:  # saved as 'failed', then one line naming the step
            raise run.failed(err) from err
        return run.end('completed')


def build_parser():
    parser = ArgumentParser(__doc__)
    parser.add_argument('--arch', choices=sorted(ARCHS), default='vgg',
                        help='vgg: Table 1; preact: pre-activation residual variant')
    add_run_flags(parser)
    add_torch_flags(parser, PRESETS)
    add_switch(parser, 'compile', 'torch.compile the model')
    add_switch(parser, 'channels_last', 'channels_last memory layout (NHWC; NCHW when off): CUDA\'s bf16 '
               'convolutions want it, and on CPU it won over two machines (benchmarks/bench_convnet_layout.py)')
    parser.set_defaults(learning_rate=1e-4, max_steps=5000, batch_size=32, eval_freq=500, optimizer='adam',
                        augment=False, tta=False, compile=False, channels_last=True,
                        output_dir='runs/convnet_pytorch')  # the assignment's: Adam, lr 1e-4, batch 32
    return parser


def parse_args(argv=None):
    return parse_torch_args(build_parser(), argv, PRESETS)


def main(argv=None):
    return EXIT_STATUS[train(parse_args(argv))['summary']['status']]


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
