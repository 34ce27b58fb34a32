"""Train the PyTorch MLP on CIFAR-10.

    python train_mlp_pytorch.py --data_dir ../shared/cifar10/cifar-10-batches-py   # the NumPy script's defaults
    python train_mlp_pytorch.py --preset best --data_dir ...                       # the tuned configuration

Same flags and defaults as train_mlp_numpy.py (plain SGD), plus tuning flags:
optimizer, weight decay, learning-rate schedule, label smoothing, augmentation,
activation, normalization, dropout, init, ZCA whitening, length in epochs, device.
Writes history.json, CSVs, curves.png and best_model.pt into --output_dir.
"""
import time

import numpy as np
import torch

import cifar10_utils
from cli_utils import hidden_units, parse_settings, positive_float, probability, run_cli, training_parser
from mlp_pytorch import ACTIVATIONS, INITS, MLP, NORMS
from torch_training import add_torch_flags, train_torch
from training_utils import accuracy  # noqa: F401 (the skeleton's accuracy(predictions, targets) lives here too)
from training_utils import SettingsError, exit_status, require, run_config
from training_utils import hidden_units as parse_hidden_units

N_INPUTS, N_CLASSES = cifar10_utils.IMAGE_SIZE, cifar10_utils.N_CLASSES
EVAL_BATCH_SIZE = 10000  # the whole test set in one product, as the NumPy script does: fewer, larger products
PIXEL_MAX = 255.0  # ZCA works on pixels scaled to [0, 1]

# Recorded configurations: flag values applied by --preset NAME (flags given still win).
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

    whitened = cifar10_utils.DataSplits({name: whiten(split) for name, split in cifar10.items()})
    whitened.source = getattr(cifar10, 'source', None)
    return whitened


def train(*, dnn_hidden_units='100', learning_rate=1e-3, max_steps=1400, batch_size=200, eval_freq=100, seed=42,
          data_dir=cifar10_utils.CIFAR10_FOLDER, activation='elu', norm='none', dropout=0.0, init='assignment',
          optimizer='sgd', momentum=0.9, weight_decay=0.0, scheduler='none', warmup_steps=0, label_smoothing=0.0,
          augment=False, zca_eps=None, ema_decay=None, tta=False, epochs=None, device='auto', output_dir=None,
          progress=True, data=None, network=None):
    """Train an MLP and return its record (config, curves, summary). The defaults are the NumPy script's.

    `zca_eps`: if given, ZCA-whiten the images first (see zca_whiten). `epochs`: if given,
    train this many epochs instead of max_steps. `data`: already loaded get_cifar10()
    splits. `output_dir`: where the record, curves and best_model.pt go (None: nothing
    written). `network`: train this MLP (built by the caller, who can then inspect it)
    instead of building one from the settings.
    """
    config = run_config('mlp_pytorch', locals())
    hidden = config['dnn_hidden_units'] = parse_hidden_units(dnn_hidden_units)
    require(zca_eps is None or zca_eps > 0, f'zca_eps must be > 0, got {zca_eps}')
    config['eval_batch_size'] = EVAL_BATCH_SIZE

    def load_data():
        cifar10 = data if data is not None else cifar10_utils.get_cifar10(data_dir)
        if zca_eps is None:
            return cifar10
        start = time.perf_counter()
        cifar10 = zca_whiten(cifar10, zca_eps)
        config['preprocess_s'] = round(time.perf_counter() - start, 2)  # not part of the run's time_s
        return cifar10

    def build_model():
        return network if network is not None else MLP(N_INPUTS, hidden, N_CLASSES, activation=activation,
                                                       norm=norm, dropout=dropout, init=init)

    try:  # built on the meta device (no memory, no random numbers): the MLP checks its options, and counts
        with torch.device('meta'):
            n_parameters = sum(p.numel() for p in build_model().parameters())
    except ValueError as err:
        raise SettingsError(str(err)) from None
    return train_torch(config, build_model, load_data, output_dir=output_dir, progress=progress,
                       n_parameters=n_parameters)


def build_parser():
    parser = training_parser(__doc__, train, __file__)
    parser.add_argument('--dnn_hidden_units', type=hidden_units, help="comma-separated hidden layer widths ('' for none)")
    parser.add_argument('--activation', choices=sorted(ACTIVATIONS), help='activation after each hidden layer')
    parser.add_argument('--norm', choices=list(NORMS), help='normalization after each hidden Linear')
    parser.add_argument('--dropout', type=probability, help='dropout probability after each hidden activation')
    parser.add_argument('--init', choices=INITS,
                        help="weights: 'assignment' normal with standard deviation 1e-4 as in the NumPy MLP, "
                             "'pytorch' nn.Linear's own, 'kaiming' He, 'xavier' Glorot")
    parser.add_argument('--zca_eps', type=positive_float,
                        help='ZCA-whiten the images first, with this eigenvalue regulariser (pixels in [0, 1])')
    add_torch_flags(parser, PRESETS)
    return parser


def main(argv=None):
    return exit_status(train(**parse_settings(build_parser(), PRESETS, argv)))


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
