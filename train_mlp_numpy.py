"""Train the NumPy MLP on CIFAR-10 with mini-batch SGD.

    python train_mlp_numpy.py --data_dir ../shared/cifar10/cifar-10-batches-py
    python train_mlp_numpy.py --dnn_hidden_units 200,100 --learning_rate 2e-3 --max_steps 3000

Writes history.json (config + every recorded number), train.csv, test.csv and
curves.png into --output_dir. From Python: `history = train(max_steps=500)`.
"""
import numpy as np

import cifar10_utils
from mlp_numpy import MLP
from modules import CrossEntropyModule
from training_utils import (accuracy, base_parser, default_output_dir, exit_status, finish,  # noqa: F401 (accuracy: the skeleton's API)
                            hidden_units, History, run_cli, set_seed, train_loop)

# Defaults of the assignment
DNN_HIDDEN_UNITS_DEFAULT = '100'
LEARNING_RATE_DEFAULT = 1e-3
MAX_STEPS_DEFAULT = 1400
BATCH_SIZE_DEFAULT = 200
EVAL_FREQ_DEFAULT = 100
DTYPE = np.float32  # training precision; the gradient checks use float64


def evaluate(model, loss_module, images, labels):
    """Mean loss and accuracy of the model on the whole of (images, labels)."""
    probs = model.forward(images)
    return loss_module.forward(probs, labels), accuracy(probs, labels)


def train(dnn_hidden_units=(100,), learning_rate=LEARNING_RATE_DEFAULT, max_steps=MAX_STEPS_DEFAULT,
          batch_size=BATCH_SIZE_DEFAULT, eval_freq=EVAL_FREQ_DEFAULT,
          data_dir=cifar10_utils.CIFAR10_FOLDER, seed=42, output_dir=None, progress=True, data=None):
    """Train an MLP with plain SGD and return its record (config, train/test curves, summary).

    `data`: already loaded get_cifar10() splits (else loaded from data_dir).
    `output_dir`: where to save the record and curves (None: nothing written).
    """
    config = dict(name='mlp_numpy', dnn_hidden_units=list(dnn_hidden_units), learning_rate=learning_rate,
                  max_steps=max_steps, batch_size=batch_size, eval_freq=eval_freq, seed=seed)
    set_seed(seed)
    cifar10 = data if data is not None else cifar10_utils.get_cifar10(data_dir)
    # a fresh batch iterator: runs with the same seed see the same batches, even on shared `data`
    train_set = cifar10_utils.DataSet(cifar10['train'].images, cifar10['train'].labels)
    test_images = cifar10['test'].images.reshape(cifar10['test'].num_examples, -1)  # [N, 3072]
    test_labels = cifar10['test'].labels
    n_inputs, n_classes = test_images.shape[1], test_labels.shape[1]

    model = MLP(n_inputs, list(dnn_hidden_units), n_classes, dtype=DTYPE, input_grad=False)
    loss_module = CrossEntropyModule()

    def train_step(step):
        x, y = train_set.next_batch(batch_size)
        probs = model.forward(x.reshape(batch_size, n_inputs))
        loss = loss_module.forward(probs, y)
        model.backward(loss_module.backward(probs, y))
        for param, grad in model.parameters():
            param -= learning_rate * grad
        return loss

    history = History(config)
    train_loop(train_step, lambda: evaluate(model, loss_module, test_images, test_labels),
               history, max_steps, eval_freq, progress, desc='mlp_numpy', save_dir=output_dir)
    return finish(history, output_dir, quiet=not progress)


def main():
    parser = base_parser(__doc__, LEARNING_RATE_DEFAULT, MAX_STEPS_DEFAULT, BATCH_SIZE_DEFAULT, EVAL_FREQ_DEFAULT)
    parser.add_argument('--dnn_hidden_units', type=hidden_units, default=DNN_HIDDEN_UNITS_DEFAULT,
                        help="comma-separated hidden layer widths ('' for none)")
    args = parser.parse_args()
    history = train(args.dnn_hidden_units, args.learning_rate, args.max_steps, args.batch_size, args.eval_freq,
                    args.data_dir, args.seed, args.output_dir or default_output_dir(__file__), not args.quiet)
    return exit_status(history)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
