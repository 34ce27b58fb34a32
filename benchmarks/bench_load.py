"""Time loading all six CIFAR-10 batch files into mean-subtracted float32 arrays.

    python -m benchmarks.bench_load --data_dir ../shared/cifar10/cifar-10-batches-py --json bench_load.json
    python -m benchmarks.bench_load --data_dir ... --compare_with /path/to/another/checkout   # before/after

Each repeat runs in a fresh Python process (so no file or allocator state carries over)
and times get_cifar10() alone, import excluded. --compare_with alternates those runs with
the same measurement in another checkout of the project (for example the commit before a
change), in one run, and reports the medians and the median within-round ratio.
"""
import json
import os
import subprocess
import sys
import time

from benchmarks.timing import ROOT, alternate, benchmark_parser, checkout, median_ratio, medians, publish
from cli_utils import positive_int, run_cli

PAUSE_S = 2


def time_in_checkout(checkout, data_dir):
    """Seconds of one get_cifar10() in a fresh process of the checkout's own cifar10_utils, after a
    pause in which the kernel reclaims the previous process's 1.3 GB (without it, whichever run
    comes first in a round is often twice as slow)."""
    time.sleep(PAUSE_S)
    code = ('import sys, time, cifar10_utils; start = time.perf_counter(); '
            f'cifar10_utils.get_cifar10({data_dir!r}, download=False); print(time.perf_counter() - start)')
    out = subprocess.run([sys.executable, '-c', code], cwd=checkout, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument('--repeats', type=positive_int, default=7, help='alternating rounds, each run in a fresh process')
    parser.add_argument('--compare_with', type=checkout, help='another checkout of the project, timed alternately')
    args = parser.parse_args()
    data_dir = os.path.abspath(args.data_dir)
    checkouts = {'this checkout': ROOT}
    if args.compare_with:
        checkouts['other checkout'] = os.path.abspath(args.compare_with)
    times = alternate(checkouts, args.repeats, lambda checkout: time_in_checkout(checkout, data_dir),
                      report=lambda name, seconds: print(f'{name}: {seconds:.3f} s', flush=True))
    result = {'repeats': args.repeats, 'seconds': times, 'median_s': medians(times)}
    if args.compare_with:
        result['compared_with'] = args.compare_with  # as given
        result['median_round_ratio'] = median_ratio(times['this checkout'], times['other checkout'])
    publish(result, json.dumps(result), args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
