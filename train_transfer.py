"""Fine-tune an ImageNet ResNet from torchvision on CIFAR-10 (question 4 b, bonus).

    python train_transfer.py --data_dir ../shared/cifar10/cifar-10-batches-py              # resnet18, ImageNet weights
    python train_transfer.py --weights ~/resnet18-f37072fd.pth --data_dir ...               # a local weights file
    python train_transfer.py --weights none --data_dir ...                                  # the same network from scratch
    python train_transfer.py --freeze --input resize --data_dir ...                         # linear probe on 224x224 inputs

The network and its input adaptation ('stem' or 'resize') are in transfer_pytorch.py. Images are
normalised with the ImageNet mean and std. --freeze trains only the new classifier (backbone and its
BatchNorm statistics fixed).
Writes history.json, curves.png, best_model.pt and the state to resume from into --output_dir.
"""
import math

import numpy as np
import torch
from torch import nn
from torch.optim import swa_utils

import cifar10_utils
from cifar10_download import maybe_download
from cli_utils import ArgumentParser, Switch, add_run_flags, add_torch_flags, flag, run_cli, with_preset
from distributed import Processes
from run_records import RunRecord
from torch_training import (TensorBatches, environment, evaluate, get_device, load_state, make_optimizer,
                            make_scheduler, random_crop_flip, save_state, to_tensors)
from training_utils import accuracy  # noqa: F401 (the skeleton's accuracy(predictions, targets) lives here too)
from training_utils import (check_batch_size, check_run_settings, check_torch_settings, check_warmup, exit_status,
                            require, require_choice)
from transfer_pytorch import (IMAGENET_MEAN, IMAGENET_STD, INPUT_MODES, MODELS, TransferError,  # noqa: F401
                              build_model, load_weights)

# Settings: each flag's default, written once (the usual fine-tuning recipe: SGD with momentum, cosine schedule)
MODEL, WEIGHTS, INPUT_MODE, FREEZE = 'resnet18', 'imagenet', 'stem', False
LEARNING_RATE = 1e-2
MAX_STEPS = 2000  # unless --epochs
BATCH_SIZE = 128
EVAL_FREQ = 500
SEED = 42
DATA_DIR = cifar10_utils.CIFAR10_FOLDER
OUTPUT_DIR = 'runs/transfer'
OPTIMIZER, MOMENTUM, WEIGHT_DECAY = 'momentum', 0.9, 5e-4
SCHEDULER, WARMUP_STEPS, LABEL_SMOOTHING, AUGMENT = 'cosine', 0, 0.0, True
EMA_DECAY, TTA, DEVICE = None, False, 'auto'  # no weight averaging, no flip TTA

EVAL_BATCH_SIZE = 250
PIXEL_MAX = 255.0


def imagenet_normalized(data_dir):
    """CIFAR-10 splits with images scaled to [0, 1] and normalised per channel with the
    ImageNet statistics (what the pretrained weights expect), labels one-hot."""
    maybe_download(data_dir)
    source = cifar10_utils.fingerprint_in_background(data_dir)
    x_train, y_train, x_test, y_test = cifar10_utils.load_cifar10(data_dir)
    mean = np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1) * PIXEL_MAX
    scale = 1.0 / (np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1) * PIXEL_MAX)

    def split(images, labels):
        normalized = np.subtract(images, mean, dtype=np.float32)
        normalized *= scale
        return cifar10_utils.DataSet(normalized, cifar10_utils.dense_to_one_hot(labels, cifar10_utils.N_CLASSES))

    empty = cifar10_utils.DataSet(np.zeros((0, *cifar10_utils.IMAGE_SHAPE), np.float32),
                                  np.zeros((0, cifar10_utils.N_CLASSES), np.float32))
    splits = cifar10_utils.DataSplits(train=split(x_train, y_train), validation=empty, test=split(x_test, y_test))
    splits.source = source()
    return splits


def train(*, model=MODEL, weights=WEIGHTS, input_mode=INPUT_MODE, freeze=FREEZE, learning_rate=LEARNING_RATE,
          max_steps=None, batch_size=BATCH_SIZE, eval_freq=EVAL_FREQ, seed=SEED, data_dir=DATA_DIR,
          optimizer=OPTIMIZER, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, scheduler=SCHEDULER,
          warmup_steps=WARMUP_STEPS, label_smoothing=LABEL_SMOOTHING, augment=AUGMENT, ema_decay=EMA_DECAY, tta=TTA,
          epochs=None, device=DEVICE, output_dir=None, progress=True, resume=False, data=None):
    """Fine-tune and return the run record. The run lasts max_steps (MAX_STEPS if neither is given) or
    `epochs`. `data`: splits from imagenet_normalized(). Under torchrun the run is data-parallel."""
    check_run_settings(max_steps=max_steps, batch_size=batch_size, eval_freq=eval_freq, learning_rate=learning_rate,
                       seed=seed, epochs=epochs)
    check_torch_settings(optimizer=optimizer, momentum=momentum, weight_decay=weight_decay, scheduler=scheduler,
                         warmup_steps=warmup_steps, label_smoothing=label_smoothing, ema_decay=ema_decay)
    require_choice('model', model, MODELS)
    require_choice('input_mode', input_mode, INPUT_MODES)
    require(not resume or output_dir, '--resume needs the --output_dir of the run to go on with')
    if epochs is None:  # in epochs, the run's length is known once the data are loaded
        max_steps = max_steps or MAX_STEPS
        check_warmup(warmup_steps, max_steps)
    processes = Processes()
    processes.check_batch_size(batch_size)
    require(not (resume and processes.distributed), '--resume is not supported under torchrun: resume in one process')
    device = get_device(processes.device_name(device))
    memory_format = torch.channels_last if device.type == 'cuda' else torch.contiguous_format
    state = load_weights(model, weights)  # before any data is loaded: a missing file fails at once
    config = dict(name=f'transfer_{model}', model=model, weights=weights, input_mode=input_mode, freeze=freeze,
                  learning_rate=learning_rate, max_steps=max_steps, batch_size=batch_size, eval_freq=eval_freq,
                  seed=seed, data_dir=data_dir, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                  scheduler=scheduler, warmup_steps=warmup_steps, label_smoothing=label_smoothing, augment=augment,
                  ema_decay=ema_decay, tta=tta, epochs=epochs, device=str(device), world_size=processes.world_size,
                  eval_batch_size=EVAL_BATCH_SIZE)
    is_main = processes.is_main  # under torchrun, rank 0 alone writes and prints
    with RunRecord(output_dir if is_main else None, config, progress=progress and is_main, silent=not is_main,
                   environment=environment(device), resume=resume) as run, processes.joined(device):
        np.random.seed(seed)
        torch.manual_seed(seed)  # the same new classifier in every process
        cifar10 = data if data is not None else imagenet_normalized(data_dir)
        n_train = cifar10['train'].num_examples
        check_batch_size(batch_size, n_train)
        max_steps = max_steps or math.ceil(epochs * n_train / batch_size)
        train_x, train_y = to_tensors(cifar10['train'], device, memory_format)
        test_x, test_y = to_tensors(cifar10['test'], device, memory_format)
        net = build_model(model, state, input_mode, freeze).to(device, memory_format=memory_format)
        optimizer = make_optimizer(optimizer, net.parameters(), lr=learning_rate, weight_decay=weight_decay,
                                   momentum=momentum)
        scheduler = make_scheduler(scheduler, optimizer, total_steps=max_steps, warmup_steps=warmup_steps)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        batches = TensorBatches(train_x, train_y, batch_size, augment=random_crop_flip if augment else None,
                                generator=processes.batch_order(seed, device), shard=processes.shard)
        forward = processes.wrap(net, device)  # DistributedDataParallel under torchrun
        ema = swa_utils.AveragedModel(net, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(ema_decay),
                                      use_buffers=True) if ema_decay else None  # BatchNorm statistics averaged too
        evaluated = ema.module if ema else net
        first_step = load_state(run, net, optimizer, scheduler, ema, batches) + 1 if resume else 1

        run.start(max_steps, eval_freq, data=getattr(cifar10, 'source', None), first_step=first_step)
        for step in range(first_step, max_steps + 1):
            x, y = batches.next()  # [B, 3, 32, 32] normalised images, [B] class indices, on the device
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == 'cuda'):  # bf16 on CUDA only
                logits = forward(x)  # [B, 10]
                loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema:
                ema.update_parameters(net)
            batch_accuracy = (logits.argmax(1) == y).float().mean()
            run.log(step, processes.mean(loss.detach()), processes.mean(batch_accuracy))  # read as floats in chunks
            if step % eval_freq == 0 or step == max_steps:
                run.evaluate(step, *evaluate(evaluated, test_x, test_y, batch_size=EVAL_BATCH_SIZE, flip_tta=tta,
                                             processes=processes))
                save_state(run, step, net, optimizer, scheduler, ema, batches)
    return run.record


def build_parser():
    parser = ArgumentParser(__doc__)
    flag(parser, '--model', MODEL, 'which torchvision ResNet', choices=sorted(MODELS))
    flag(parser, '--weights', WEIGHTS,
         "'imagenet' (torchvision download), a local state_dict file, or 'none' (from scratch)")
    flag(parser, '--input', INPUT_MODE, 'stem: 3x3/1 first convolution, no max-pool, 32x32 inputs; resize: upsample '
         'to 224x224', dest='input_mode', choices=INPUT_MODES)
    flag(parser, '--freeze', FREEZE, 'train only the new classifier', action=Switch)
    add_run_flags(parser, learning_rate=LEARNING_RATE, max_steps=MAX_STEPS, batch_size=BATCH_SIZE, eval_freq=EVAL_FREQ,
                  seed=SEED, data_dir=DATA_DIR, output_dir=OUTPUT_DIR)
    add_torch_flags(parser, optimizer=OPTIMIZER, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, scheduler=SCHEDULER,
                    warmup_steps=WARMUP_STEPS, label_smoothing=LABEL_SMOOTHING, augment=AUGMENT, ema_decay=EMA_DECAY,
                    tta=TTA, device=DEVICE)
    return parser


def main(argv=None):
    return exit_status(train(**with_preset(vars(build_parser().parse_args(argv)), {})))


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
