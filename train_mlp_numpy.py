"""Train the NumPy MLP on CIFAR-10 with mini-batch SGD.

    python train_mlp_numpy.py --data_dir ../shared/cifar10/cifar-10-batches-py
    python train_mlp_numpy.py --dnn_hidden_units 200,100 --learning_rate 2e-3 --max_steps 3000

Writes history.json (config + every recorded number), curves.png and state.npz (to --resume from) into
--output_dir. From Python: `record = train(parse_args(['--max_steps', '500']))`.
"""
import json
import os

import numpy as np

import cifar10_utils
from cli_utils import EXIT_STATUS, ArgumentParser, RunError, add_run_flags, check_resume, hidden_units, run_cli
from mlp_numpy import MLP
from modules import CrossEntropyModule
from run_records import RunRecord, accuracy

CHECKPOINT = 'state.npz'
DTYPE = np.float32  # training precision; the gradient checks use float64


def evaluate(model, loss_module, images, labels):
    """Mean loss and accuracy of the model on the whole of (images, labels)."""
    probs = model.forward(images)
    return loss_module.forward(probs, labels), accuracy(probs, labels)


def save_checkpoint(run, model, train_set):
    """At an evaluation: the record so far (with its config), the weights, the batch order and NumPy's random
    state, as output_dir/state.npz (arrays and one JSON string: loading it needs no pickle)."""
    if run.output_dir:
        _, keys, position, has_gauss, gauss = np.random.get_state()
        order, index, epochs = train_set.position()
        params = {f'param_{i}': param for i, (param, _) in enumerate(model.parameters())}
        with run.writing(CHECKPOINT) as f:
            np.savez(f, record=json.dumps(run.state()), rng_keys=keys, rng=[position, has_gauss, gauss], order=order,
                     batch=[index, epochs], **params)


def load_checkpoint(run, data, model, train_set):
    """--resume: restore what save_checkpoint wrote (RunError in one line if it does not fit)."""
    path = os.path.join(run.output_dir, CHECKPOINT)
    try:
        with np.load(path, allow_pickle=False) as state:  # arrays only: a file cannot run code
            for i, (param, _) in enumerate(model.parameters()):
                param[...] = state[f'param_{i}']
            position, has_gauss, gauss = state['rng']
            np.random.set_state(('MT19937', state['rng_keys'], int(position), int(has_gauss), float(gauss)))
            train_set.set_position(state['order'], *state['batch'])
            saved = json.loads(str(state['record']))
    except Exception as err:  # noqa: BLE001 (truncated or foreign: one line, then stop)
        raise RunError(f"--resume: cannot restore '{path}' ({type(err).__name__}); run without --resume to start "
                       'the run again') from None
    run.restore(saved, data)


def train(args, data=None):
    """Train an MLP with plain SGD and return its record (config, train/test curves, summary).
    `data`: already loaded get_cifar10() splits (else loaded from --data_dir)."""
    with RunRecord(args, 'mlp_numpy', CHECKPOINT) as run:  # creates and locks --output_dir
        np.random.seed(args.seed)  # as the skeleton: the weights and the batch order follow from it
        cifar10 = data if data is not None else cifar10_utils.get_cifar10(args.data_dir)
        # after the data, as the skeleton: built before them, the weights ran measurably slower on this CPU
        model = MLP(cifar10_utils.IMAGE_SIZE, args.dnn_hidden_units, cifar10_utils.N_CLASSES, dtype=DTYPE,
                    input_grad=False)
        loss_module = CrossEntropyModule()
        if args.batch_size > cifar10.train.num_examples:
            raise RunError(f'--batch_size {args.batch_size} is larger than the {cifar10.train.num_examples} '
                           'training images')
        # a fresh batch iterator: runs with the same seed see the same batches, even on shared `data`
        train_set = cifar10_utils.DataSet(cifar10.train.images, cifar10.train.labels)
        test_images = cifar10.test.images.reshape(cifar10.test.num_examples, -1)  # [N, 3072]
        if args.resume:
            load_checkpoint(run, cifar10.source, model, train_set)

        run.start(args.max_steps, data=cifar10.source)
        try:
            for step in range(run.step + 1, args.max_steps + 1):
                x, y = train_set.next_batch(args.batch_size)  # [B, 3, 32, 32], one-hot [B, 10]
                probs = model.forward(x.reshape(args.batch_size, -1))  # [B, 3072] -> [B, 10]
                loss = loss_module.forward(probs, y)
                model.backward(loss_module.backward(probs, y))  # every module fills its grads
                for param, grad in model.parameters():  # the SGD update, in place
                    param -= args.learning_rate * grad
                run.log(step, loss, accuracy(probs, y))
                if (reason := run.divergence()):  # the loss is not finite or has run away
                    return run.end('diverged', reason)
                if step % args.eval_freq == 0 or step == args.max_steps:
                    run.evaluate(step, *evaluate(model, loss_module, test_images, cifar10.test.labels))
                    save_checkpoint(run, model, train_set)
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
    add_run_flags(parser)
    parser.set_defaults(learning_rate=1e-3, max_steps=1400, batch_size=200, eval_freq=100,
                        output_dir='runs/mlp_numpy')  # the assignment's
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume:
        check_resume(parser, args, CHECKPOINT,
                     lambda path: json.loads(str(np.load(path, allow_pickle=False)['record']))['config'])
    return args


def main(argv=None):
    return EXIT_STATUS[train(parse_args(argv))['summary']['status']]


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
