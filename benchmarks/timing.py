"""Timing helpers the benchmarks share. This machine's speed drifts between rounds, so
variants are compared within rounds: every round times each variant once, a different
one first each round, and the medians and the within-round ratios are reported."""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from cli_utils import ArgumentParser, add_data_dir, positive_int

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def seconds_per_call(fn, repeats, warmup=1, synchronize=None):
    """Mean wall time of fn() over `repeats` calls, after `warmup` untimed calls; `synchronize()`, if
    given, is called before and after the timed calls (a GPU's work is asynchronous)."""
    for _ in range(warmup):
        fn()
    if synchronize:
        synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if synchronize:
        synchronize()
    return (time.perf_counter() - start) / repeats


def alternate(variants, rounds, measure, report=None):
    """{name: [measure(variant) of each round]} for a dict of variants; each round measures every
    variant once, rotating which goes first. report(name, value) is called after each measurement."""
    names = list(variants)
    results = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(measure(variants[name]))
            if report:
                report(name, results[name][-1])
    return results


def medians(results):
    return {name: float(np.median(values)) for name, values in results.items()}


def median_ratio(numerators, denominators):
    """Median over rounds of numerator / denominator measured in the same round."""
    return float(np.median(np.asarray(numerators) / np.asarray(denominators)))


def run_in_fresh_process(module, *args, cwd=ROOT):
    """Run `python -m module args` in cwd (the repository root); return the JSON of its last output line."""
    out = subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def writable_file(path):
    """An argparse type: a file path that can be written (tried now, before the measurement, and left as it was)."""
    existed = os.path.exists(path)
    try:
        with open(path, 'a'):
            pass
    except OSError as err:
        raise argparse.ArgumentTypeError(f"cannot write '{path}' ({err.strerror})") from None
    if not existed:
        os.remove(path)
    return path


def checkout(path):
    """An argparse type: another checkout of the project (a folder with the training scripts)."""
    if not os.path.isfile(os.path.join(path, 'train_mlp_numpy.py')):
        raise argparse.ArgumentTypeError(f"'{path}' is no checkout of this project (no train_mlp_numpy.py in it)")
    return path


def benchmark_parser(doc, rounds=None, data=True):
    """The flags every benchmark takes: --json (where the result goes), --rounds if it alternates variants,
    --data_dir if it reads CIFAR-10; one-line errors."""
    parser = ArgumentParser(doc)
    if rounds is not None:
        parser.add_argument('--rounds', type=positive_int, default=rounds, help='rounds of alternating measurements')
    parser.add_argument('--json', type=writable_file, help='save the result as this JSON file')
    if data:
        add_data_dir(parser)
    return parser


def publish(result, summary, json_path=None):
    """Print a benchmark's summary line and save its result as strict JSON at json_path (if given)."""
    print(summary)
    if json_path:
        os.makedirs(os.path.dirname(json_path) or '.', exist_ok=True)
        with open(json_path, 'w') as f:
            json.dump(result, f, indent=1, allow_nan=False)
            f.write('\n')
