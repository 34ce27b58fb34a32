"""The command line of every training script, NumPy-only: argparse with one-line errors and every default in
--help, value types that refuse a bad flag before any work, the flags all scripts share, and run_cli(): the one
place where a problem becomes one line on stderr and an exit status."""
import argparse
import errno
import math
import os
import signal
import sys

from cifar10_utils import CIFAR10_FOLDER, CIFAR10Error

SEED_MAX = 2 ** 32 - 1  # numpy's seeds are 32-bit
TRAIN_IMAGES = 50000  # CIFAR-10's training images: the steps of --epochs, for checks before loading
EXIT_STATUS = {'completed': 0, 'diverged': 1, 'interrupted': 130}  # 130: as a shell reports Ctrl-C


class RunError(RuntimeError):
    """A run that cannot start or go on (its folder is in use, its checkpoint does not fit): exit status 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose --help shows every default and whose errors are one line (exit status 2)."""

    def __init__(self, doc):
        super().__init__(description=doc.strip().splitlines()[0],
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def number(kind, check, wanted):
    """An argparse type: a finite int or float (`kind`) for which check(value) holds; `wanted` says which."""
    def parse(text):
        value = kind(text)  # a ValueError: argparse says "invalid int value: 'x'"
        if not (math.isfinite(value) and check(value)):
            raise argparse.ArgumentTypeError(f'must be {wanted}, got {text}')
        return value
    parse.__name__ = kind.__name__
    return parse


positive_int = number(int, lambda n: n > 0, 'a positive integer')


def hidden_units(text):
    """'100,50' -> [100, 50]; '' -> [] (no hidden layer); ASCII digits only ('²' is no width)."""
    parts = [part.strip() for part in text.split(',')] if text.strip() else []
    if not all(part.isascii() and part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers such as '100' or '512,256' "
                                         f"('' for none), got {text!r}")
    return [int(part) for part in parts]


def output_folder(path):
    """A folder a run can create and write, checked before any folder is made."""
    if not path or len(path) > 4000 or any(len(part.encode()) > 255 for part in path.split(os.sep)):
        raise argparse.ArgumentTypeError(f'must be a folder path of at most 4000 characters, names of at most 255 bytes, '
                                         f'got {len(path)} characters: {path[:40]!r}...')
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing.rstrip(os.sep)) or '.'
    if not os.path.isdir(existing):
        raise argparse.ArgumentTypeError(f"'{path}' is a file, a link to nowhere, or lies under one; choose a folder")
    if not os.access(existing, os.W_OK):
        raise argparse.ArgumentTypeError(f"'{path}' cannot be written ('{existing}' is read-only); choose another")
    return path


def add_data_dir(parser):
    parser.add_argument('--data_dir', default=os.environ.get('CIFAR10_DIR') or CIFAR10_FOLDER,
                        help='folder with the CIFAR-10 batch files, downloaded there if it has none; '
                             '$CIFAR10_DIR, if set, is the default')


def add_run_flags(parser):
    """The flags every script has; each script gives its own defaults with parser.set_defaults."""
    parser.add_argument('--learning_rate', type=number(float, lambda x: x > 0, 'a positive number'),
                        help='learning rate (the peak of a schedule)')
    parser.add_argument('--max_steps', type=positive_int, help='number of training steps')
    parser.add_argument('--batch_size', type=positive_int, help='training images per step')
    parser.add_argument('--eval_freq', type=positive_int,
                        help='evaluate on the whole test set every this many steps (and after the last)')
    parser.add_argument('--seed', type=number(int, lambda n: 0 <= n <= SEED_MAX, f'an integer in 0..{SEED_MAX}'),
                        default=42, help='random seed (numpy and torch)')
    add_data_dir(parser)
    parser.add_argument('--output_dir', type=output_folder, help='where history.json, curves.png and the checkpoint go')
    parser.add_argument('--quiet', action='store_true', help='no progress bar or evaluation lines')
    parser.add_argument('--resume', action='store_true', help='go on with the run in --output_dir from its last '
                        'evaluation, given the same flags; ends as the run would have without a stop')


def check_resume(parser, args, checkpoint, read_config):
    """--resume: the checkpoint in --output_dir is of a run with these flags (one line, before any work);
    read_config(path) reads the config saved in it. The data are compared later, by their fingerprint."""
    path = os.path.join(args.output_dir, checkpoint)
    if not os.path.isfile(path):
        parser.error(f"--resume: '{args.output_dir}' holds no checkpoint ({checkpoint}) to go on from; run without "
                     '--resume')
    try:
        saved = read_config(path)
    except Exception as err:  # noqa: BLE001 (truncated, foreign, or written by an earlier version)
        raise RunError(f"--resume: cannot read the checkpoint '{path}' ({type(err).__name__}); run without --resume "
                       'to start the run again') from None
    changed = [f'--{key} ({saved.get(key)!r} then, {value!r} now)' for key, value in vars(args).items()
               if key not in ('output_dir', 'resume', 'quiet', 'data_dir', 'device') and saved.get(key) != value]
    if changed:
        parser.error(f"--resume: {', '.join(changed)} differ from the run in '{args.output_dir}'; resume it with the "
                     'same flags, or start a new run in another --output_dir')


def run_cli(main):
    """main()'s exit status: 0 completed, 1 diverged or a data or run error, 2 bad flags (argparse), 130
    interrupted; every problem one line on stderr. SIGTERM stops a run as Ctrl-C does."""
    prog = os.path.basename(sys.argv[0])
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        return main()
    except KeyboardInterrupt:  # outside the training loop, which records its own stop
        print(f'{prog}: interrupted', file=sys.stderr)
        return 130
    except (CIFAR10Error, RunError) as err:
        print(f'{prog}: error: {err}', file=sys.stderr)
        return 1
    except OSError as err:  # a file or folder the system refused (full disk, read-only, no permission)
        if err.filename is None:
            raise
        cure = 'free some space' if err.errno in (errno.ENOSPC, errno.EDQUOT) else 'make it writable'
        print(f"{prog}: error: cannot write '{err.filename}' ({err.strerror}); {cure}, then run the command again",
              file=sys.stderr)
        return 1
