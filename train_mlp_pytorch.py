"""Train the PyTorch MLP on CIFAR-10.

    python train_mlp_pytorch.py --data_dir ../shared/cifar10/cifar-10-batches-py   # the NumPy script's defaults
    python train_mlp_pytorch.py --preset best --data_dir ...                       # the tuned configuration

Same flags and defaults as train_mlp_numpy.py (plain SGD), plus tuning flags:
optimizer, weight decay, learning-rate schedule, label smoothing, augmentation,
activation, normalization, dropout, init, training length in epochs, device.
Writes history.json, CSVs, curves.png and best_model.pt into --output_dir.
"""
import time

import numpy as np

import cifar10_utils
from mlp_pytorch import ACTIVATIONS, INITS, MLP, NORMS
from training_utils import (accuracy, add_torch_args, base_parser, default_output_dir,  # noqa: F401 (accuracy: the skeleton's API)
                            exit_status, get_device, hidden_units, nonnegative_float, parse_args, positive_float,
                            run_cli, set_seed, train_torch)

# Defaults of the assignment (as train_mlp_numpy.py)
DNN_HIDDEN_UNITS_DEFAULT = '100'
LEARNING_RATE_DEFAULT = 1e-3
MAX_STEPS_DEFAULT = 1400
BATCH_SIZE_DEFAULT = 200
EVAL_FREQ_DEFAULT = 100
EVAL_BATCH_SIZE = 10000  # the whole test set in one product, as the NumPy script does: fewer, larger products
N_INPUTS = int(cifar10_utils.IMAGE_SIZE)
N_CLASSES = cifar10_utils.N_CLASSES
PIXEL_MAX = 255.0  # ZCA works on pixels scaled to [0, 1]

# Recorded configurations: flag values applied by --preset NAME (explicit flags still win).
# 'best' comes from experiments/mlp_sweep.py (docs/mlp_sweep.md).
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

    return cifar10_utils.DataSplits({name: whiten(split) for name, split in cifar10.items()})


def train(dnn_hidden_units=(100,), learning_rate=LEARNING_RATE_DEFAULT, max_steps=MAX_STEPS_DEFAULT,
          batch_size=BATCH_SIZE_DEFAULT, eval_freq=EVAL_FREQ_DEFAULT, data_dir=cifar10_utils.CIFAR10_FOLDER,
          seed=42, output_dir=None, activation='elu', norm='none', dropout=0.0, init='assignment',
          optimizer='sgd', momentum=0.9, weight_decay=0.0, scheduler='none', warmup_steps=0,
          label_smoothing=0.0, augment=False, zca_eps=None, epochs=None, device='auto', progress=True, data=None,
          model=None):
    """Train an MLP and return its record (config, curves, summary).

    `zca_eps`: if given, ZCA-whiten the images first (see zca_whiten). `epochs`: if
    given, train this many epochs instead of max_steps. `data`: already loaded
    get_cifar10() splits. `output_dir`: where the record, curves and best_model.pt go
    (None: nothing written). `model`: train this MLP (built by the caller, who can then
    inspect it) instead of building one from the arguments.
    """
    if isinstance(dnn_hidden_units, str):  # as the flag and PRESETS write it: '1024,1024'
        dnn_hidden_units = hidden_units(dnn_hidden_units)
    device = get_device(device)
    config = dict(name='mlp_pytorch', dnn_hidden_units=list(dnn_hidden_units), learning_rate=learning_rate,
                  max_steps=max_steps, batch_size=batch_size, eval_freq=eval_freq, seed=seed,
                  activation=activation, norm=norm, dropout=dropout, init=init, optimizer=optimizer,
                  momentum=momentum, weight_decay=weight_decay, scheduler=scheduler, warmup_steps=warmup_steps,
                  label_smoothing=label_smoothing, augment=augment, zca_eps=zca_eps, epochs=epochs,
                  device=str(device), eval_batch_size=EVAL_BATCH_SIZE)
    set_seed(seed)
    cifar10 = data if data is not None else cifar10_utils.get_cifar10(data_dir)
    if zca_eps is not None:
        start = time.perf_counter()
        cifar10 = zca_whiten(cifar10, zca_eps)
        config['preprocess_s'] = round(time.perf_counter() - start, 2)  # not part of the run's time_s
    if model is None:
        model = MLP(N_INPUTS, list(dnn_hidden_units), N_CLASSES, activation, norm, dropout, init)
    return train_torch(model, cifar10, config, device, output_dir, progress)


def build_parser():
    parser = base_parser(__doc__, LEARNING_RATE_DEFAULT, MAX_STEPS_DEFAULT, BATCH_SIZE_DEFAULT, EVAL_FREQ_DEFAULT)
    parser.add_argument('--dnn_hidden_units', type=hidden_units, default=DNN_HIDDEN_UNITS_DEFAULT,
                        help="comma-separated hidden layer widths ('' for none)")
    parser.add_argument('--activation', choices=sorted(ACTIVATIONS), default='elu')
    parser.add_argument('--norm', choices=list(NORMS), default='none', help='normalization after each hidden Linear')
    parser.add_argument('--dropout', type=nonnegative_float, default=0.0, help='dropout after each hidden activation')
    parser.add_argument('--init', choices=INITS, default='assignment',
                        help="weights: 'assignment' is N(0, 1e-4) as in the NumPy MLP")
    parser.add_argument('--zca_eps', type=positive_float, default=None,
                        help='ZCA-whiten the images first, with this eigenvalue regulariser (pixels in [0, 1])')
    add_torch_args(parser, PRESETS, optimizer='sgd')
    return parser


def main():
    parser = build_parser()
    args = parse_args(parser, PRESETS)
    if args.dropout >= 1:
        parser.error(f'argument --dropout: must be < 1, got {args.dropout}')
    history = train(args.dnn_hidden_units, args.learning_rate, args.max_steps, args.batch_size, args.eval_freq,
                    args.data_dir, args.seed, args.output_dir or default_output_dir(__file__), args.activation,
                    args.norm, args.dropout, args.init, args.optimizer, args.momentum, args.weight_decay,
                    args.scheduler, args.warmup_steps, args.label_smoothing, args.augment, args.zca_eps,
                    args.epochs, args.device, not args.quiet)
    return exit_status(history)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
