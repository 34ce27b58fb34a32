"""Time the default NumPy and PyTorch MLP runs side by side, each run in a fresh process.

    python -m benchmarks.bench_mlp_numpy_vs_pytorch --data_dir ../shared/cifar10/cifar-10-batches-py --repeats 11 --json bench_mlp_numpy_vs_pytorch.json
    python -m benchmarks.bench_mlp_numpy_vs_pytorch --data_dir ... --compare_with /tmp/before   # and another checkout's

Both run the assignment defaults (1 x 100 ELU, SGD lr 1e-3, batch 200, 1400 steps, test
evaluation every 100 steps); each run's time_s excludes loading the data. The runs alternate,
each in its own process (a run sharing a process with the other library would start while that
library's idle BLAS threads still spin on the cores), a different one first each round. Prints
each run, the medians, their ratio, and the median of the ratios within a round; with
--compare_with, the same two runs of another checkout of the project (one with the same
--worker flag) join every round, and this checkout's times are compared with its.
"""
import argparse
import importlib
import json
import os

import cifar10_utils
from benchmarks.timing import (
    ROOT,
    alternate,
    benchmark_parser,
    checkout,
    median_ratio,
    medians,
    publish,
    run_in_fresh_process,
)
from cli_utils import positive_int, run_cli

SCRIPTS = {'numpy': 'train_mlp_numpy', 'pytorch': 'train_mlp_pytorch'}


def run_one(script, data_dir):
    """One default run in this process, writing no files; returns its summary."""
    module = importlib.import_module(script)
    args = module.parse_args(['--quiet'])
    args.output_dir = None  # the training alone, as the records' time_s measures it
    return module.train(args, data=cifar10_utils.get_cifar10(data_dir))['summary']


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument('--repeats', type=positive_int, default=5, help='alternating rounds')
    parser.add_argument('--compare_with', type=checkout, help='another checkout of the project, timed in the same rounds')
    parser.add_argument('--worker', choices=sorted(SCRIPTS.values()), help=argparse.SUPPRESS)  # one run, JSON out
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_one(args.worker, args.data_dir)))
        return
    variants = {name: (ROOT, script) for name, script in SCRIPTS.items()}
    if args.compare_with:
        variants.update({f'{name} (other)': (args.compare_with, script) for name, script in SCRIPTS.items()})
    data_dir = os.path.abspath(args.data_dir)  # the other checkout runs in its own folder
    runs = alternate(variants, args.repeats, lambda variant: run_in_fresh_process(
        'benchmarks.bench_mlp_numpy_vs_pytorch', '--worker', variant[1], '--data_dir', data_dir, cwd=variant[0]),
        report=lambda name, summary: print(name, summary['time_s'], summary['final_test_accuracy'], flush=True))
    times = {name: [summary['time_s'] for summary in summaries] for name, summaries in runs.items()}
    median = medians(times)
    result = {'repeats': args.repeats, 'time_s': times,
              'final_test_accuracy': {name: [s['final_test_accuracy'] for s in summaries]
                                      for name, summaries in runs.items()},
              'median_time_s': median, 'min_max_time_s': {name: [min(t), max(t)] for name, t in times.items()},
              'ratio_pytorch_to_numpy': round(median['pytorch'] / median['numpy'], 3),
              'median_round_ratio_pytorch_to_numpy': round(median_ratio(times['pytorch'], times['numpy']), 3),
              'rounds_pytorch_faster': sum(p < n for p, n in zip(times['pytorch'], times['numpy']))}
    summary = (f"median: numpy {median['numpy']:.2f} s, pytorch {median['pytorch']:.2f} s; ratio pytorch/numpy "
               f"{result['ratio_pytorch_to_numpy']:.2f}; median ratio within a round "
               f"{result['median_round_ratio_pytorch_to_numpy']:.2f}; pytorch faster in "
               f"{result['rounds_pytorch_faster']} of {args.repeats} rounds")
    if args.compare_with:
        result['compared_with'] = args.compare_with  # as given
        result['median_round_ratio_to_other'] = {name: round(median_ratio(times[name], times[f'{name} (other)']), 3)
                                                 for name in SCRIPTS}
        summary += '; this checkout / the other (median within a round): ' + ', '.join(
            f'{name} {ratio:.3f}' for name, ratio in result['median_round_ratio_to_other'].items())
    publish(result, summary, args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
