"""Train the PyTorch MLP on CIFAR-10.

    python train_mlp_pytorch.py --data_dir ../shared/cifar10/cifar-10-batches-py   # the assignment's defaults
    python train_mlp_pytorch.py --preset best --data_dir ...                       # the tuned configuration

The assignment's flags and defaults (as train_mlp_numpy.py: plain SGD), plus tuning flags: optimizer,
weight decay, learning-rate schedule, label smoothing, augmentation, activation, normalization, dropout,
init, ZCA whitening, length in epochs, device. Writes history.json, curves.png, best_model.pt and state.pt
(to --resume from) into --output_dir. From Python: `record = train(parse_args(['--max_steps', '500']))`.
"""
import math
import time

import numpy as np
import torch

import cifar10_utils
from cli_utils import EXIT_STATUS, ArgumentParser, add_run_flags, hidden_units, number, run_cli
from mlp_pytorch import ACTIVATIONS, INITS, MLP, NORMS
from run_records import RunRecord, accuracy  # noqa: F401 (the skeleton's accuracy(predictions, targets))
from torch_training import (
    CHECKPOINT,
    TensorBatches,
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

N_INPUTS, N_CLASSES = cifar10_utils.IMAGE_SIZE, cifar10_utils.N_CLASSES
EVAL_BATCH_SIZE = 10000  # the whole test set in one product, as the NumPy script does: fewer, larger products
PIXEL_MAX = 255.0  # ZCA works on pixels scaled to [0, 1]

# Recorded configurations: flag values applied by --preset NAME (flags typed still win).
# 'best' comes from experiments/mlp_sweep.py (docs/report.md, question 2.1).
PRESETS = {
    'best': dict(dnn_hidden_units=[1024, 1024], activation='gelu', norm='batchnorm', dropout=0.1, init='kaiming',
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
    whitened.source = cifar10.source
    return whitened


def train(args, data=None):
    """Train an MLP and return its record (config, curves, summary). `data`: already loaded get_cifar10()
    splits (else loaded from --data_dir). Under torchrun the run is data-parallel (torch_training.py)."""
    device, rank, world_size = start_processes(args.device)
    with RunRecord(args, 'mlp_pytorch', CHECKPOINT, main_process=rank == 0, environment=environment(device),
                   device=str(device), world_size=world_size, eval_batch_size=EVAL_BATCH_SIZE) as run:
        np.random.seed(args.seed)
        torch.manual_seed(args.seed + rank)  # under torchrun DDP gives every process rank 0's first weights
        cifar10 = data if data is not None else cifar10_utils.get_cifar10(args.data_dir)
        if args.zca_eps is not None:
            start = time.perf_counter()
            cifar10 = zca_whiten(cifar10, args.zca_eps)
            run.config['preprocess_s'] = round(time.perf_counter() - start, 2)  # not part of the run's time_s
        train_x, train_y = to_tensors(cifar10.train, device)
        test_x, test_y = to_tensors(cifar10.test, device)
        model = MLP(N_INPUTS, args.dnn_hidden_units, N_CLASSES, activation=args.activation, norm=args.norm,
                    dropout=args.dropout, init=args.init).to(device)  # after the data (see train_mlp_numpy.py)
        max_steps = args.max_steps or math.ceil(args.epochs * len(train_y) / args.batch_size)
        optimizer, scheduler, ema = make_optimizer(args, model, max_steps)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
        batches = TensorBatches(train_x, train_y, args.batch_size, args.augment, args.seed, args.crop_padding)
        if args.resume:
            load_checkpoint(run, cifar10.source, model, optimizer, scheduler, ema, batches)
        forward = data_parallel(model, device)

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
    parser.add_argument('--dnn_hidden_units', type=hidden_units, default='100',
                        help="comma-separated hidden layer widths; '' for none, which is logistic regression on raw "
                             'pixels and needs about --learning_rate 1e-6 (the default diverges)')
    parser.add_argument('--activation', choices=sorted(ACTIVATIONS), default='elu',
                        help='activation after each hidden layer')
    parser.add_argument('--norm', choices=list(NORMS), default='none', help='normalization after each hidden Linear')
    parser.add_argument('--dropout', type=number(float, lambda x: 0 <= x < 1, 'in [0, 1)'), default=0.0,
                        help='dropout probability after each hidden activation')
    parser.add_argument('--init', choices=INITS, default='assignment', help="weights: 'assignment' normal with "
                        "standard deviation 1e-4 as in the NumPy MLP, 'pytorch' nn.Linear's own, 'kaiming' He, "
                        "'xavier' Glorot")
    parser.add_argument('--zca_eps', type=number(float, lambda x: x > 0, 'a positive number'),
                        help='ZCA-whiten the images first, with this eigenvalue regulariser (pixels in [0, 1])')
    add_run_flags(parser)
    add_torch_flags(parser, PRESETS)
    parser.set_defaults(learning_rate=1e-3, max_steps=1400, batch_size=200, eval_freq=100, optimizer='sgd',
                        augment=False, tta=False, output_dir='runs/mlp_pytorch')  # the assignment's: plain SGD
    return parser


def parse_args(argv=None):
    return parse_torch_args(build_parser(), argv, PRESETS)


def main(argv=None):
    return EXIT_STATUS[train(parse_args(argv))['summary']['status']]


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
