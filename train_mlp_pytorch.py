"""Train the PyTorch MLP on CIFAR-10.

    python train_mlp_pytorch.py --data_dir ../shared/cifar10/cifar-10-batches-py   # the NumPy script's defaults
    python train_mlp_pytorch.py --preset best --data_dir ...                       # the tuned configuration

Same flags and defaults as train_mlp_numpy.py (plain SGD), plus tuning flags:
optimizer, weight decay, learning-rate schedule, label smoothing, augmentation,
activation, normalization, dropout, init, ZCA whitening, length in epochs, device.
Writes history.json, curves.png, best_model.pt and the state to resume from into --output_dir.
"""
import math
import time

import numpy as np
import torch
from torch.optim import swa_utils

import cifar10_utils
from cli_utils import ArgumentParser, add_run_flags, add_torch_flags, flag, run_cli, with_preset
from distributed import Processes
from mlp_pytorch import ACTIVATIONS, INITS, MLP, NORMS
from run_records import RunRecord
from torch_training import (TensorBatches, environment, evaluate, get_device, load_state,
                            make_optimizer, make_scheduler, random_crop_flip, save_state, to_tensors)
from train_mlp_numpy import BATCH_SIZE, DATA_DIR, DNN_HIDDEN_UNITS, EVAL_FREQ, LEARNING_RATE, MAX_STEPS, SEED
from training_utils import accuracy  # noqa: F401 (the skeleton's accuracy(predictions, targets) lives here too)
from training_utils import (SettingsError, check_batch_size, check_fits_in_memory, check_run_settings,
                            check_torch_settings, check_warmup, exit_status, hidden_units, is_number, require)

# Settings: each flag's default, written once; train() takes the same names. The assignment's flags have the
# NumPy script's defaults (the same network and training): DNN_HIDDEN_UNITS, LEARNING_RATE, MAX_STEPS (unless
# --epochs), BATCH_SIZE, EVAL_FREQ, SEED, DATA_DIR come from train_mlp_numpy.py.
OUTPUT_DIR = 'runs/mlp_pytorch'
ACTIVATION, NORM, DROPOUT, INIT = 'elu', 'none', 0.0, 'assignment'  # the assignment's network
OPTIMIZER, MOMENTUM, WEIGHT_DECAY = 'sgd', 0.9, 0.0  # plain SGD; momentum only for 'momentum' and 'nesterov'
SCHEDULER, WARMUP_STEPS, LABEL_SMOOTHING, AUGMENT = 'none', 0, 0.0, False
ZCA_EPS, EMA_DECAY, TTA, DEVICE = None, None, False, 'auto'  # no whitening, no weight averaging, no flip TTA

N_INPUTS, N_CLASSES = cifar10_utils.IMAGE_SIZE, cifar10_utils.N_CLASSES
EVAL_BATCH_SIZE = 10000  # the whole test set in one product, as the NumPy script does: fewer, larger products
PIXEL_MAX = 255.0  # ZCA works on pixels scaled to [0, 1]
BYTES_PER_PARAMETER = 16  # float32 weight, gradient and two optimizer moments (Adam)

# Recorded configurations: flag values applied by --preset NAME (flags given still win).
# 'best' comes from experiments/mlp_sweep.py (docs/report.md, question 2.1).
PRESETS = {
    'best': dict(dnn_hidden_units='1024,1024', activation='gelu', norm='batchnorm', dropout=0.1, init='kaiming',
                 optimizer='adamw', learning_rate=1e-3, weight_decay=0.05, scheduler='onecycle',
                 label_smoothing=0.1, augment=True, zca_eps=0.1, batch_size=256, epochs=60, eval_freq=1000),
}


def zca_whiten(cifar10, eps):
    """Splits whose images are ZCA-whitened with the training images' covariance.

    Pixels are scaled to [0, 1] first; eps (added to the eigenvalues) sets how strongly
    the small-variance directions are amplified. ZCA keeps the image layout (its filters
    are local and nearly translation- and mirror-invariant), so crops and flips still
    make sense after it. An MLP then sees decorrelated pixels: the same function class,
    better conditioned for gradient descent.
    """
    n_train = cifar10['train'].num_examples
    flat = cifar10['train'].images.reshape(n_train, N_INPUTS) / np.float32(PIXEL_MAX)  # [N, 3072], already centred
    covariance = (flat.T @ flat).astype(np.float64) / n_train
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    whitening = ((eigenvectors / np.sqrt(eigenvalues + eps)) @ eigenvectors.T).astype(np.float32)  # symmetric

    def whiten(split):
        images = (split.images.reshape(split.num_examples, N_INPUTS) / np.float32(PIXEL_MAX)) @ whitening  # [N, 3072]
        return cifar10_utils.DataSet(images.reshape(split.images.shape), split.labels)

    whitened = cifar10_utils.DataSplits({name: whiten(split) for name, split in cifar10.items()})
    whitened.source = getattr(cifar10, 'source', None)
    return whitened


def train(*, dnn_hidden_units=DNN_HIDDEN_UNITS, learning_rate=LEARNING_RATE, max_steps=None, batch_size=BATCH_SIZE,
          eval_freq=EVAL_FREQ, seed=SEED, data_dir=DATA_DIR, activation=ACTIVATION, norm=NORM, dropout=DROPOUT,
          init=INIT, optimizer=OPTIMIZER, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, scheduler=SCHEDULER,
          warmup_steps=WARMUP_STEPS, label_smoothing=LABEL_SMOOTHING, augment=AUGMENT, zca_eps=ZCA_EPS,
          ema_decay=EMA_DECAY, tta=TTA, epochs=None, device=DEVICE, output_dir=None, progress=True, resume=False,
          data=None):
    """Train an MLP and return its record (config, curves, summary). The defaults are the NumPy script's.

    The run lasts max_steps (MAX_STEPS if neither is given) or `epochs`. `zca_eps`: if given,
    ZCA-whiten the images first (see zca_whiten). `data`: already loaded get_cifar10() splits.
    `output_dir`: where the record, curves and checkpoints go (None: nothing written).
    Under torchrun the run is data-parallel (distributed.py).
    """
    check_run_settings(max_steps=max_steps, batch_size=batch_size, eval_freq=eval_freq, learning_rate=learning_rate,
                       seed=seed, epochs=epochs)
    check_torch_settings(optimizer=optimizer, momentum=momentum, weight_decay=weight_decay, scheduler=scheduler,
                         warmup_steps=warmup_steps, label_smoothing=label_smoothing, ema_decay=ema_decay)
    require(zca_eps is None or is_number(zca_eps) and zca_eps > 0,
            f'zca_eps must be a positive number, got {zca_eps!r}')
    require(not resume or output_dir, '--resume needs the --output_dir of the run to go on with')
    if epochs is None:  # in epochs, the run's length is known once the data are loaded
        max_steps = max_steps or MAX_STEPS
        check_warmup(warmup_steps, max_steps)
    hidden = hidden_units(dnn_hidden_units)
    processes = Processes()
    processes.check_batch_size(batch_size)
    require(not (resume and processes.distributed), '--resume is not supported under torchrun: resume in one process')
    device = get_device(processes.device_name(device))
    try:  # built on the meta device (no memory, no random numbers): the MLP checks its options
        with torch.device('meta'):
            shape = MLP(N_INPUTS, hidden, N_CLASSES, activation=activation, norm=norm, dropout=dropout, init=init)
    except ValueError as err:
        raise SettingsError(str(err)) from None
    free = torch.cuda.mem_get_info(device)[0] if device.type == 'cuda' else None  # else: the machine's memory
    check_fits_in_memory(sum(p.numel() for p in shape.parameters()) * BYTES_PER_PARAMETER, str(device), free)
    config = dict(name='mlp_pytorch', dnn_hidden_units=hidden, learning_rate=learning_rate, max_steps=max_steps,
                  batch_size=batch_size, eval_freq=eval_freq, seed=seed, data_dir=data_dir, activation=activation,
                  norm=norm, dropout=dropout, init=init, optimizer=optimizer, momentum=momentum,
                  weight_decay=weight_decay, scheduler=scheduler, warmup_steps=warmup_steps,
                  label_smoothing=label_smoothing, augment=augment, zca_eps=zca_eps, ema_decay=ema_decay, tta=tta,
                  epochs=epochs, device=str(device), world_size=processes.world_size, eval_batch_size=EVAL_BATCH_SIZE)
    is_main = processes.is_main  # under torchrun, rank 0 alone writes and prints
    with RunRecord(output_dir if is_main else None, config, progress=progress and is_main, silent=not is_main,
                   environment=environment(device), resume=resume) as run, processes.joined(device):
        np.random.seed(seed)
        torch.manual_seed(seed)  # the same initial weights in every process
        cifar10 = data if data is not None else cifar10_utils.get_cifar10(data_dir)
        if zca_eps is not None:
            start = time.perf_counter()
            cifar10 = zca_whiten(cifar10, zca_eps)
            run.config['preprocess_s'] = round(time.perf_counter() - start, 2)  # not part of the run's time_s
        n_train = cifar10['train'].num_examples
        check_batch_size(batch_size, n_train)
        max_steps = max_steps or math.ceil(epochs * n_train / batch_size)
        train_x, train_y = to_tensors(cifar10['train'], device)
        test_x, test_y = to_tensors(cifar10['test'], device)
        model = MLP(N_INPUTS, hidden, N_CLASSES, activation=activation, norm=norm, dropout=dropout, init=init)
        model = model.to(device)
        optimizer = make_optimizer(optimizer, model.parameters(), lr=learning_rate, weight_decay=weight_decay,
                                   momentum=momentum)
        scheduler = make_scheduler(scheduler, optimizer, total_steps=max_steps, warmup_steps=warmup_steps)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        batches = TensorBatches(train_x, train_y, batch_size, augment=random_crop_flip if augment else None,
                                generator=processes.batch_order(seed, device), shard=processes.shard)
        forward = processes.wrap(model, device)  # DistributedDataParallel under torchrun
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
    # the network
    flag(parser, '--dnn_hidden_units', DNN_HIDDEN_UNITS, "comma-separated hidden layer widths; '' for none, which "
         'is logistic regression on raw pixels and needs about --learning_rate 1e-6 (the default diverges)')
    flag(parser, '--activation', ACTIVATION, 'activation after each hidden layer', choices=sorted(ACTIVATIONS))
    flag(parser, '--norm', NORM, 'normalization after each hidden Linear', choices=list(NORMS))
    flag(parser, '--dropout', DROPOUT, 'dropout probability after each hidden activation', type=float)
    flag(parser, '--init', INIT, "weights: 'assignment' normal with standard deviation 1e-4 as in the NumPy MLP, "
         "'pytorch' nn.Linear's own, 'kaiming' He, 'xavier' Glorot", choices=INITS)
    # the run and its training
    add_run_flags(parser, learning_rate=LEARNING_RATE, max_steps=MAX_STEPS, batch_size=BATCH_SIZE, eval_freq=EVAL_FREQ,
                  seed=SEED, data_dir=DATA_DIR, output_dir=OUTPUT_DIR)
    flag(parser, '--zca_eps', ZCA_EPS, 'ZCA-whiten the images first, with this eigenvalue regulariser (pixels in '
         '[0, 1]; default: no whitening)', type=float)
    add_torch_flags(parser, optimizer=OPTIMIZER, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, scheduler=SCHEDULER,
                    warmup_steps=WARMUP_STEPS, label_smoothing=LABEL_SMOOTHING, augment=AUGMENT, ema_decay=EMA_DECAY,
                    tta=TTA, device=DEVICE, presets=PRESETS)
    return parser


def main(argv=None):
    return exit_status(train(**with_preset(vars(build_parser().parse_args(argv)), PRESETS)))


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
