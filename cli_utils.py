"""The command line of the training scripts: flags whose defaults come from the script's
train() signature (the one place each default is written), presets, and running main()
so that every expected problem ends in one line on stderr.

    parser = training_parser(__doc__, train, __file__)     # the flags all scripts share
    parser.add_argument('--dnn_hidden_units', type=hidden_units, help='...')
    record = train(**parse_settings(parser))               # flags map onto train() by name

NumPy-only, like training_utils.
"""
import argparse
import inspect
import math
import os
import signal
import sys

from cifar10_utils import CIFAR10Error
from training_utils import RUN_ARGUMENTS, SEED_MAX, RunError, SettingsError
from training_utils import hidden_units as parse_hidden_units


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line: 'prog: error: what is wrong (see --help)'."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


# --------------------------------------------------------------------------- flag types

def _number(kind, minimum, strict, maximum=None):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected {"an integer" if kind is int else "a number"}, '
                                             f'got {text!r}') from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f'must be <= {maximum}, got {text}')
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _number(int, 0, strict=True)
nonnegative_int = _number(int, 0, strict=False)
positive_float = _number(float, 0.0, strict=True)
nonnegative_float = _number(float, 0.0, strict=False)
seed = _number(int, 0, strict=False, maximum=SEED_MAX)


def probability(text):
    """A float in [0, 1): dropout, label smoothing."""
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f'must be < 1, got {text}')
    return value


def hidden_units(text):
    """'100,50' -> [100, 50]; '' -> [] (no hidden layer)."""
    try:
        return parse_hidden_units(text)
    except SettingsError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class Switch(argparse.Action):
    """An on/off setting: --NAME turns it on, --no_NAME off; the help shows its default as on or off."""

    def __init__(self, option_strings, dest, default=False, help=None):
        names = [name for option in option_strings for name in (option, '--no_' + option[2:])]
        super().__init__(names, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, not option_string.startswith('--no_'))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's help ends with its true default: on/off for switches, nothing where it is None
    (the help says what happens then) or for plain flags such as --quiet."""

    def _get_help_string(self, action):
        if isinstance(action, Switch) and action.default is not None:
            return f"{action.help} (default: {'on' if action.default else 'off'})"
        if action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


# --------------------------------------------------------------------------- parsers

def settings_defaults(train):
    """The defaults of train()'s keyword arguments."""
    return {name: p.default for name, p in inspect.signature(train).parameters.items() if p.default is not p.empty}


def default_output_dir(script):
    """runs/<script name without train_ and .py>."""
    return os.path.join('runs', os.path.splitext(os.path.basename(script))[0].replace('train_', ''))


def training_parser(doc, train, script):
    """A parser with the flags all training scripts share; every flag's default is train()'s."""
    parser = ArgumentParser(description=doc.strip().splitlines()[0], formatter_class=HelpFormatter)
    parser.set_defaults(**{k: v for k, v in settings_defaults(train).items() if k not in RUN_ARGUMENTS})
    parser.add_argument('--learning_rate', type=positive_float, help='learning rate (the peak of a schedule)')
    parser.add_argument('--max_steps', type=positive_int, help='number of training steps')
    parser.add_argument('--batch_size', type=positive_int, help='training images per step')
    parser.add_argument('--eval_freq', type=positive_int,
                        help='evaluate on the whole test set every this many steps (and after the last)')
    parser.add_argument('--data_dir', help='folder with the CIFAR-10 batch files (downloaded there if it has none)')
    parser.add_argument('--seed', type=seed, help='random seed (numpy, torch, python)')
    parser.add_argument('--output_dir', default=default_output_dir(script),
                        help='where history.json, the CSVs and curves.png go')
    parser.add_argument('--quiet', action='store_true', help='no progress bar or evaluation lines')
    return parser


_NOT_GIVEN = object()


def parse_settings(parser, presets=None, argv=None):
    """Parse the command line into train()'s keyword arguments. --preset NAME puts its recorded
    values in place of the defaults, so flags given still win, and a --max_steps given replaces
    the preset's epochs."""
    args = vars(parser.parse_args(argv))
    # argparse fills in no default where the namespace already has a value: parsed into a namespace of
    # markers, the flags given on the command line are the values that are no longer markers
    marked = parser.parse_args(argv, namespace=argparse.Namespace(**{dest: _NOT_GIVEN for dest in args}))
    given = {dest for dest, value in vars(marked).items() if value is not _NOT_GIVEN}
    if {'epochs', 'max_steps'} <= given:
        parser.error('argument --epochs: give --epochs or --max_steps, not both')
    if args.get('preset'):
        values = dict(presets[args['preset']])
        if 'max_steps' in given:
            values.pop('epochs', None)
        parser.set_defaults(**values)  # parsed again: the preset's strings go through the flags' types
        args = vars(parser.parse_args(argv))
    args.pop('preset', None)
    args['progress'] = not args.pop('quiet')
    return args


def run_cli(main):
    """Run main() and return its exit status. Expected problems end in one line on stderr:
    bad settings exit with 2, data and run errors with 1, Ctrl-C or SIGTERM with 130 (a
    termination signal stops training as Ctrl-C does, records kept)."""
    prog = os.path.basename(sys.argv[0])

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)
    try:
        return main()
    except SettingsError as err:
        print(f'{prog}: error: {err} (see --help)', file=sys.stderr)
        return 2
    except (CIFAR10Error, RunError) as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        return 130
