"""Train the NumPy MLP on CIFAR-10 with mini-batch SGD.

    python train_mlp_numpy.py --data_dir ../shared/cifar10/cifar-10-batches-py
    python train_mlp_numpy.py --dnn_hidden_units 200,100 --learning_rate 2e-3 --max_steps 3000

Writes history.json (config + every recorded number) and curves.png into --output_dir.
From Python: `record = train(max_steps=500)`.
"""
import os

import numpy as np

import cifar10_utils
from cli_utils import ArgumentParser, add_run_flags, flag, run_cli
from mlp_numpy import MLP
from modules import CrossEntropyModule
from run_records import RunRecord
from training_utils import (RunError, accuracy, check_batch_size, check_fits_in_memory, check_run_settings, exit_status,
                            hidden_units, require)

# Settings: each flag's default, written once (the assignment's); train() takes the same names
DNN_HIDDEN_UNITS = '100'  # comma-separated widths; '' for no hidden layer
LEARNING_RATE = 1e-3
MAX_STEPS = 1400
BATCH_SIZE = 200
EVAL_FREQ = 100
SEED = 42
DATA_DIR = cifar10_utils.CIFAR10_FOLDER
OUTPUT_DIR = 'runs/mlp_numpy'

DTYPE = np.float32  # training precision; the gradient checks use float64
BYTES_PER_PARAMETER = 16  # float64 draw at initialisation, float32 weight and gradient


def evaluate(model, loss_module, images, labels):
    """Mean loss and accuracy of the model on the whole of (images, labels)."""
    probs = model.forward(images)
    return loss_module.forward(probs, labels), accuracy(probs, labels)


def save_state(run, step, model, train_set):
    """At an evaluation: the weights, the batch order and NumPy's random state, as output_dir/state.npz."""
    if run.output_dir:
        _, keys, position, has_gauss, gauss = np.random.get_state()
        order, index, epochs = train_set.position()
        params = {f'param_{i}': param for i, (param, _) in enumerate(model.parameters())}
        with run.writing('state.npz') as partial, open(partial, 'wb') as f:
            np.savez(f, step=step, rng_keys=keys, rng=[position, has_gauss, gauss], order=order,
                     batch=[index, epochs], **params)


def load_state(run, model, train_set):
    """Restore what save_state wrote and return its step (RunError in one line if it is missing or does not fit)."""
    path = os.path.join(run.output_dir, 'state.npz')
    try:
        with np.load(path, allow_pickle=False) as state:  # arrays only: a file cannot run code
            for i, (param, _) in enumerate(model.parameters()):
                param[...] = state[f'param_{i}']
            position, has_gauss, gauss = state['rng']
            np.random.set_state(('MT19937', state['rng_keys'], int(position), int(has_gauss), float(gauss)))
            train_set.set_position(state['order'], *state['batch'])
            return int(state['step'])
    except Exception as err:  # noqa: BLE001 (missing, truncated or foreign: one line, then stop)
        raise RunError(f"--resume: cannot restore '{path}' ({type(err).__name__}); delete the folder and run "
                       'again without --resume') from None


def train(*, dnn_hidden_units=DNN_HIDDEN_UNITS, learning_rate=LEARNING_RATE, max_steps=MAX_STEPS,
          batch_size=BATCH_SIZE, eval_freq=EVAL_FREQ, seed=SEED, data_dir=DATA_DIR, output_dir=None, progress=True,
          resume=False, data=None):
    """Train an MLP with plain SGD and return its record (config, train/test curves, summary).

    `dnn_hidden_units`: '100,50' or [100, 50]. `data`: already loaded get_cifar10() splits (else
    loaded from data_dir). `output_dir`: where to save the record and curves (None: nothing written).
    """
    check_run_settings(max_steps=max_steps, batch_size=batch_size, eval_freq=eval_freq, learning_rate=learning_rate,
                       seed=seed)
    require(not resume or output_dir, '--resume needs the --output_dir of the run to go on with')
    hidden = hidden_units(dnn_hidden_units)
    sizes = [cifar10_utils.IMAGE_SIZE, *hidden, cifar10_utils.N_CLASSES]
    n_parameters = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:]))
    check_fits_in_memory(n_parameters * BYTES_PER_PARAMETER, 'this machine')
    config = dict(name='mlp_numpy', dnn_hidden_units=hidden, learning_rate=learning_rate, max_steps=max_steps,
                  batch_size=batch_size, eval_freq=eval_freq, seed=seed, data_dir=data_dir)
    with RunRecord(output_dir, config, progress=progress, resume=resume) as run:
        np.random.seed(seed)  # as the skeleton: the weights and the batch order follow from it
        cifar10 = data if data is not None else cifar10_utils.get_cifar10(data_dir)
        check_batch_size(batch_size, cifar10['train'].num_examples)
        # a fresh batch iterator: runs with the same seed see the same batches, even on shared `data`
        train_set = cifar10_utils.DataSet(cifar10['train'].images, cifar10['train'].labels)
        test_images = cifar10['test'].images.reshape(cifar10['test'].num_examples, -1)  # [N, 3072]
        model = MLP(sizes[0], hidden, sizes[-1], dtype=DTYPE, input_grad=False)
        loss_module = CrossEntropyModule()
        first_step = load_state(run, model, train_set) + 1 if resume else 1

        run.start(max_steps, eval_freq, data=getattr(cifar10, 'source', None), first_step=first_step)
        for step in range(first_step, max_steps + 1):
            x, y = train_set.next_batch(batch_size)  # [B, 3, 32, 32], one-hot [B, 10]
            probs = model.forward(x.reshape(batch_size, -1))  # [B, 3072] -> [B, 10]
            loss = loss_module.forward(probs, y)
            model.backward(loss_module.backward(probs, y))  # every module fills its grads
            for param, grad in model.parameters():  # the SGD update, in place
                param -= learning_rate * grad
            run.log(step, loss, accuracy(probs, y))
            if step % eval_freq == 0 or step == max_steps:
                run.evaluate(step, *evaluate(model, loss_module, test_images, cifar10['test'].labels))
                save_state(run, step, model, train_set)
    return run.record


def build_parser():
    parser = ArgumentParser(__doc__)
    flag(parser, '--dnn_hidden_units', DNN_HIDDEN_UNITS, "comma-separated hidden layer widths; '' for none, which "
         'is logistic regression on raw pixels and needs about --learning_rate 1e-6 (the default diverges)')
    add_run_flags(parser, learning_rate=LEARNING_RATE, max_steps=MAX_STEPS, batch_size=BATCH_SIZE, eval_freq=EVAL_FREQ,
                  seed=SEED, data_dir=DATA_DIR, output_dir=OUTPUT_DIR)
    return parser


def main(argv=None):
    return exit_status(train(**vars(build_parser().parse_args(argv))))


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
