"""Train the NumPy MLP on CIFAR-10 with mini-batch SGD.

    python train_mlp_numpy.py --data_dir ../shared/cifar10/cifar-10-batches-py
    python train_mlp_numpy.py --dnn_hidden_units 200,100 --learning_rate 2e-3 --max_steps 3000

Writes history.json (config + every recorded number), train.csv, test.csv and
curves.png into --output_dir. From Python: `record = train(max_steps=500)`.
"""
import contextlib

import numpy as np

import cifar10_utils
from cli_utils import hidden_units, parse_settings, run_cli, training_parser
from mlp_numpy import MLP
from modules import CrossEntropyModule
from run_records import History, OutputFolder
from training_utils import accuracy  # noqa: F401 (the skeleton's accuracy(predictions, targets) lives here too)
from training_utils import (check_batch_size, check_fits_in_memory, check_run_settings, exit_status, finish,
                            physical_memory_bytes, run_config, set_seed, train_loop)
from training_utils import hidden_units as parse_hidden_units

DTYPE = np.float32  # training precision; the gradient checks use float64
BYTES_PER_PARAMETER = 16  # float64 draw at initialisation, float32 weight and gradient


def evaluate(model, loss_module, images, labels):
    """Mean loss and accuracy of the model on the whole of (images, labels)."""
    probs = model.forward(images)
    return loss_module.forward(probs, labels), accuracy(probs, labels)


def train(*, dnn_hidden_units='100', learning_rate=1e-3, max_steps=1400, batch_size=200, eval_freq=100, seed=42,
          data_dir=cifar10_utils.CIFAR10_FOLDER, output_dir=None, progress=True, data=None):
    """Train an MLP with plain SGD and return its record (config, train/test curves, summary).

    The defaults are the assignment's. `dnn_hidden_units`: '100,50' or [100, 50].
    `data`: already loaded get_cifar10() splits (else loaded from data_dir).
    `output_dir`: where to save the record and curves (None: nothing written).
    """
    config = run_config('mlp_numpy', locals())
    check_run_settings(max_steps=max_steps, batch_size=batch_size, eval_freq=eval_freq, learning_rate=learning_rate,
                       seed=seed)
    hidden = config['dnn_hidden_units'] = parse_hidden_units(dnn_hidden_units)
    sizes = [cifar10_utils.IMAGE_SIZE, *hidden, cifar10_utils.N_CLASSES]
    n_parameters = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
    check_fits_in_memory(n_parameters * BYTES_PER_PARAMETER, physical_memory_bytes(), 'this machine')
    with OutputFolder(output_dir) if output_dir else contextlib.nullcontext():
        set_seed(seed)
        cifar10 = data if data is not None else cifar10_utils.get_cifar10(data_dir)
        check_batch_size(batch_size, cifar10['train'].num_examples)
        # a fresh batch iterator: runs with the same seed see the same batches, even on shared `data`
        train_set = cifar10_utils.DataSet(cifar10['train'].images, cifar10['train'].labels)
        test_images = cifar10['test'].images.reshape(cifar10['test'].num_examples, -1)  # [N, 3072]
        test_labels = cifar10['test'].labels
        model = MLP(sizes[0], hidden, sizes[-1], dtype=DTYPE, input_grad=False)
        loss_module = CrossEntropyModule()

        def train_step(step):
            x, y = train_set.next_batch(batch_size)
            probs = model.forward(x.reshape(batch_size, -1))
            loss = loss_module.forward(probs, y)
            model.backward(loss_module.backward(probs, y))
            for param, grad in model.parameters():
                param -= learning_rate * grad
            return loss

        history = History(config, data_source=getattr(cifar10, 'source', None))
        train_loop(train_step, lambda: evaluate(model, loss_module, test_images, test_labels), history,
                   max_steps=max_steps, eval_freq=eval_freq, progress=progress, desc='mlp_numpy', save_dir=output_dir)
        return finish(history, output_dir, progress)


def build_parser():
    parser = training_parser(__doc__, train, __file__)
    parser.add_argument('--dnn_hidden_units', type=hidden_units, help="comma-separated hidden layer widths ('' for none)")
    return parser


def main(argv=None):
    return exit_status(train(**parse_settings(build_parser(), argv=argv)))


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
