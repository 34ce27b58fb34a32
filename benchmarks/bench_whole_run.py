"""A script's default run as a user starts it, this checkout against another one: whole processes
(start to exit: imports, loading, training, evaluations, saving), alternating, a different one first
each round; also each run's training time (its record's time_s).

    python -m benchmarks.bench_whole_run --script train_mlp_numpy --compare_with ../e52992d --data_dir ../shared/cifar10/cifar-10-batches-py --rounds 9 --json runs/bench_whole_run.json

The other checkout needs no code of ours: its script is run with the same flags.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.timing import ROOT, alternate, benchmark_parser, checkout, median_ratio, medians, publish
from cli_utils import run_cli

PAUSE_S = 2  # between runs: the kernel reclaims the last process's 1.3 GB first (else the next run pays for it)


def whole_run(folder, script, data_dir):
    """(wall seconds of the process, the record's time_s) of one default run of `script` in the checkout `folder`."""
    time.sleep(PAUSE_S)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, f'{script}.py', '--data_dir', os.path.abspath(data_dir), '--quiet',
                        '--output_dir', os.path.join(out, 'run')], cwd=folder, check=True, capture_output=True)
        wall = time.perf_counter() - start
        with open(os.path.join(out, 'run', 'history.json')) as f:
            return wall, json.load(f)['summary']['time_s']


def main():
    parser = benchmark_parser(__doc__, rounds=9)
    parser.add_argument('--script', default='train_mlp_numpy', choices=['train_mlp_numpy', 'train_mlp_pytorch',
                        'train_convnet_pytorch', 'train_transfer'])
    parser.add_argument('--compare_with', type=checkout, required=True, help='another checkout of the project')
    args = parser.parse_args()
    checkouts = {'this checkout': ROOT, 'other checkout': args.compare_with}
    runs = alternate(checkouts, args.rounds, lambda checkout: whole_run(checkout, args.script, args.data_dir),
                     report=lambda name, run: print(f'{name}: {run[0]:.2f} s whole, {run[1]:.2f} s training', flush=True))
    wall = {name: [run[0] for run in values] for name, values in runs.items()}
    train = {name: [run[1] for run in values] for name, values in runs.items()}
    result = {'script': args.script, 'compared_with': args.compare_with, 'rounds': args.rounds,
              'whole_s': wall, 'train_s': train, 'median_whole_s': medians(wall), 'median_train_s': medians(train),
              'median_round_ratio_whole': round(median_ratio(wall['this checkout'], wall['other checkout']), 3),
              'median_round_ratio_train': round(median_ratio(train['this checkout'], train['other checkout']), 3)}
    publish(result, f"{args.script}: this checkout / {args.compare_with}, median within a round: whole process "
                    f"{result['median_round_ratio_whole']:.3f}, training {result['median_round_ratio_train']:.3f} "
                    f"(medians {medians(wall)['this checkout']:.2f} s / {medians(wall)['other checkout']:.2f} s whole)",
            args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
