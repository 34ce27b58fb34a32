"""The command line of the training scripts, NumPy-only. Each script writes every default once, in its
settings block: train()'s keyword arguments default to those constants and the help shows them; the parser
keeps only the flags given, so a preset is a dict beneath them, and train() checks every value:

    given = vars(build_parser().parse_args(argv))       # only the flags on the command line
    record = train(**with_preset(given, PRESETS))        # a preset's values, then the flags given
"""
import argparse
import os
import signal
import sys

from cifar10_utils import CIFAR10Error
from training_utils import OPTIMIZERS, SCHEDULERS, RunError, SettingsError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that keeps only the flags given (train() has the defaults), and whose errors are one
    line: 'prog: error: what is wrong (see --help)'."""

    def __init__(self, doc):
        super().__init__(description=doc.strip().splitlines()[0], argument_default=argparse.SUPPRESS)

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def flag(parser, name, default, help, **kwargs):
    """parser.add_argument, with the default (the script's constant, which train() uses) shown in the help."""
    shown = ('on' if default else 'off') if isinstance(default, bool) else default
    parser.add_argument(name, help=help if default is None else f'{help} (default: {shown})', **kwargs)


class Switch(argparse.Action):
    """An on/off setting: --NAME turns it on, --no_NAME off."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__([name for option in option_strings for name in (option, '--no_' + option[2:])], dest,
                         nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, not option_string.startswith('--no_'))


def add_run_flags(parser, *, learning_rate, max_steps, batch_size, eval_freq, seed, data_dir, output_dir):
    """The flags every script has, with the script's defaults."""
    flag(parser, '--learning_rate', learning_rate, 'learning rate (the peak of a schedule)', type=float)
    flag(parser, '--max_steps', max_steps, 'number of training steps', type=int)
    flag(parser, '--batch_size', batch_size, 'training images per step', type=int)
    flag(parser, '--eval_freq', eval_freq, 'evaluate on the whole test set every this many steps (and after the last)',
         type=int)
    flag(parser, '--data_dir', data_dir, 'folder with the CIFAR-10 batch files (downloaded there if it has none)')
    flag(parser, '--seed', seed, 'random seed (numpy and torch)', type=int)
    parser.add_argument('--output_dir', default=output_dir,
                        help=f'where history.json, curves.png and the checkpoints go (default: {output_dir})')
    parser.add_argument('--quiet', dest='progress', action='store_false', default=True,
                        help='no progress bar or evaluation lines')
    parser.add_argument('--resume', action='store_true', help='go on with the run in --output_dir from its last '
                        'evaluation, given the same flags; ends as the run would have without a stop')


def add_torch_flags(parser, *, optimizer, momentum, weight_decay, scheduler, warmup_steps, label_smoothing, augment,
                    ema_decay, tta, device, presets=None):
    """The tuning flags the PyTorch scripts share, with the script's defaults."""
    flag(parser, '--optimizer', optimizer, 'sgd is plain SGD; momentum and nesterov use --momentum', choices=OPTIMIZERS)
    flag(parser, '--momentum', momentum, 'momentum of momentum and nesterov', type=float)
    flag(parser, '--weight_decay', weight_decay, 'weight decay (decoupled for adamw)', type=float)
    flag(parser, '--scheduler', scheduler, 'per-step learning-rate schedule', choices=SCHEDULERS)
    flag(parser, '--warmup_steps', warmup_steps, "linear learning-rate warm-up (onecycle's own is 30%% of the run)",
         type=int)
    flag(parser, '--label_smoothing', label_smoothing, 'label smoothing of the training loss', type=float)
    flag(parser, '--augment', augment, 'random crop (padding 4) and horizontal flip', action=Switch)
    flag(parser, '--ema_decay', ema_decay, 'evaluate an exponential moving average of the weights with this decay '
         'per step (default: off)', type=float)
    flag(parser, '--tta', tta, 'also report test accuracy with flip test-time augmentation', action=Switch)
    parser.add_argument('--epochs', type=float, help='train this many epochs instead of --max_steps')
    flag(parser, '--device', device, 'auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps')
    if presets:
        parser.add_argument('--preset', choices=sorted(presets),
                            help='a recorded configuration (PRESETS in the script); flags given still win')


def with_preset(given, presets):
    """train()'s keyword arguments: a --preset's values, then the flags given, which win; a --max_steps
    given replaces the preset's epochs."""
    if 'epochs' in given and 'max_steps' in given:
        raise SettingsError('give --epochs or --max_steps, not both')
    preset = dict(presets[given.pop('preset')]) if 'preset' in given else {}
    if 'max_steps' in given:
        preset.pop('epochs', None)
    return {**preset, **given}


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
