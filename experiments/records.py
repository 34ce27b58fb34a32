"""What the experiments, the benchmarks and the report builder share: where the records live,
reading and writing them, running an experiment into its record folder (resumably), and
Markdown tables."""
import argparse
import json
import os
import pathlib
import re

import numpy as np

import train_mlp_pytorch
from cli_utils import ArgumentParser, RunError, add_data_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'docs', 'results')


class BadRecord(RunError):
    """A record that is not strict JSON (truncated, or NaN or Infinity in it); the message names the file."""


def load_json(path):
    """The JSON file at path (relative paths under docs/results/), or None if there is none; BadRecord if
    it is not strict JSON."""
    full = os.path.join(RESULTS, path)
    if not os.path.isfile(full):
        return None
    shown = os.path.relpath(full, ROOT)

    def refuse(token):
        raise BadRecord(f"record '{shown}' holds {token}, which is no number: rerun the command that made it")
    try:
        return json.loads(pathlib.Path(full).read_text(), parse_constant=refuse)
    except json.JSONDecodeError as err:
        raise BadRecord(f"record '{shown}' is not valid JSON ({err.msg} at line {err.lineno}; truncated?): rerun the "
                        'command that made it') from None


def write_json(path, result):
    """Save a benchmark's or experiment's result as indented strict JSON (relative paths under docs/results/)."""
    with open(os.path.join(RESULTS, path), 'w') as f:
        json.dump(result, f, indent=1, allow_nan=False)
        f.write('\n')


def seed_location(run, seed, headline_seed=42):
    """(records folder, run name) of a headline run with another seed: the headline record itself for its
    own seed (the README's command writes it), docs/results/seeds/<run>/seed_<seed>/ for the others."""
    return (RESULTS, run) if seed == headline_seed else (os.path.join(RESULTS, 'seeds'), f'{run}/seed_{seed}')


def load_record(records_dir, name):
    """A run's history.json from records_dir/name, or None."""
    return load_json(os.path.join(records_dir, name, 'history.json'))


def has_ended(record):
    """A run that is a result: completed, or diverged (the same seed diverges again); a run still going,
    interrupted or failed is not."""
    return record is not None and record['summary']['status'] in ('completed', 'diverged')


def spread(accuracies):
    """(mean, sample standard deviation) of accuracies over seeds; the deviation is None for fewer than two."""
    values = np.asarray(accuracies, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


def is_done(records_dir, name, changes):
    record = load_record(records_dir, name)
    return has_ended(record) and all(record['config'].get(key) == value for key, value in changes.items())


def as_flags(changes):
    """Settings as a script's command line: {'dnn_hidden_units': [512, 256], 'augment': True} ->
    ['--dnn_hidden_units', '512,256', '--augment']."""
    flags = []
    for key, value in changes.items():
        if isinstance(value, bool):
            flags.append(f'--{key}' if value else f'--no_{key}')
        else:
            flags += [f'--{key}', ','.join(map(str, value)) if isinstance(value, list) else str(value)]
    return flags


def run_once(records_dir, name, changes, data, rerun=False, script=train_mlp_pytorch):
    """script.train(script.parse_args(flags of the changes)) (the PyTorch MLP's by default) into
    records_dir/name, unless a run with these settings has ended there."""
    if is_done(records_dir, name, changes) and not rerun:
        print(f'{name}: done, skipped', flush=True)
        return load_record(records_dir, name)
    print(f'{name}: running {changes}', flush=True)
    args = script.parse_args([*as_flags(changes), '--output_dir', os.path.join(records_dir, name), '--quiet'])
    record = script.train(args, data=data)
    s = record['summary']
    if s['final_test_accuracy'] is None:
        print(f"{name}: {s['status']} at step {s['steps']}, before any evaluation", flush=True)
    else:
        print(f"{name}: {s['status']}, final {s['final_test_accuracy']:.4f} best {s['best_test_accuracy']:.4f} "
              f"in {s['time_s']:.0f} s", flush=True)
    return record


def experiment_parser(doc):
    """An experiment's command line: one-line errors, --data_dir ($CIFAR10_DIR by default)."""
    parser = ArgumentParser(doc)
    add_data_dir(parser)
    return parser


def comma_separated(choices=None, kind=str):
    """An argparse type: 'a,b' -> ['a', 'b'], each a `kind` (and one of `choices`, if given)."""
    def parse(text):
        try:
            values = [kind(part) for part in text.split(',') if part]
        except ValueError:
            raise argparse.ArgumentTypeError(f'must be comma-separated {kind.__name__} values, got {text!r}') from None
        unknown = [value for value in values if choices is not None and value not in choices]
        if not values or unknown:
            raise argparse.ArgumentTypeError(f"{'unknown: ' + ', '.join(map(str, unknown)) if unknown else 'empty'};"
                                             f" choose from {', '.join(map(str, choices or [])) or 'any'}")
        return values
    return parse


def markdown_table(header, rows):
    """A Markdown table from a header list and rows of cell lists. The separator's dashes follow each column's
    longest cell (7 to 40): pandoc gives the PDF's columns those relative widths (7: room for a short number)."""
    shown = lambda cell: re.sub(r'\]\([^)]*\)', ']', str(cell))  # a link's text, not its address  # noqa: E731
    widths = [min(40, max(7, *(len(shown(cell)) for cell in column))) for column in zip(header, *rows)]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ''.join('-' * (width + 2) + '|' for width in widths)]
    return '\n'.join(lines + ['| ' + ' | '.join(map(str, row)) + ' |' for row in rows])
