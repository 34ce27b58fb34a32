"""Time the default NumPy and PyTorch MLP runs side by side, each run in a fresh process.

    python benchmarks/bench_mlp_numpy_vs_pytorch.py --data_dir ../shared/cifar10/cifar-10-batches-py --repeats 21 --json docs/results/bench_mlp_numpy_vs_pytorch.json

Both run the assignment defaults (1 x 100 ELU, SGD lr 1e-3, batch 200, 1400 steps,
test evaluation every 100 steps); each run's time_s excludes loading the data. A third
variant runs the PyTorch MLP with torch's stock kernels (mlp_pytorch.Linear.onednn and
ELU.exp_based switched off: nn.Linear's MKL sgemm and nn.ELU), to show what those two buy.
The variants alternate, each in its own process: a run sharing a process with the
other library would start while that library's idle BLAS threads still spin on our two
cores. Each round runs every variant once, a different one first each round. Prints each
run, the medians and their ratios to NumPy's, and the median of the ratios within a round.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cifar10_utils  # noqa: E402

VARIANTS = ('numpy', 'pytorch', 'pytorch, stock kernels')


def run_one(variant, data_dir):
    """One default run in this process; returns its summary."""
    data = cifar10_utils.get_cifar10(data_dir)
    if variant == 'numpy':
        import train_mlp_numpy
        return train_mlp_numpy.train(data=data, progress=False)['summary']
    import mlp_pytorch
    import train_mlp_pytorch
    if variant == 'pytorch, stock kernels':
        mlp_pytorch.Linear.onednn = mlp_pytorch.ELU.exp_based = False
    return train_mlp_pytorch.train(data=data, progress=False)['summary']


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--data_dir', default=cifar10_utils.CIFAR10_FOLDER)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--json', default=None)
    parser.add_argument('--worker', choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one run, JSON out
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_one(args.worker, args.data_dir)))
        return
    runs = {name: [] for name in VARIANTS}
    for round_index in range(args.repeats):
        shift = round_index % len(VARIANTS)  # each variant goes first in turn: drift favours none
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), '--worker', name, '--data_dir',
                                  args.data_dir], capture_output=True, text=True, check=True).stdout
            summary = json.loads(out.strip().splitlines()[-1])
            runs[name].append({'time_s': summary['time_s'], 'final_test_accuracy': summary['final_test_accuracy']})
            print(name, json.dumps(runs[name][-1]), flush=True)
    times = {name: np.array([r['time_s'] for r in rs]) for name, rs in runs.items()}
    medians = {name: float(np.median(t)) for name, t in times.items()}
    # the machine's speed drifts between rounds: ratios within a round are the fairer comparison
    paired = {name: times[name] / times['numpy'] for name in VARIANTS[1:]}
    result = {'repeats': args.repeats, 'runs': runs, 'median_time_s': medians,
              'min_max_time_s': {name: [float(t.min()), float(t.max())] for name, t in times.items()},
              'ratio_pytorch_to_numpy': round(medians['pytorch'] / medians['numpy'], 3),
              'ratio_stock_kernels_to_numpy': round(medians['pytorch, stock kernels'] / medians['numpy'], 3),
              'median_round_ratio_pytorch_to_numpy': round(float(np.median(paired['pytorch'])), 3),
              'median_round_ratio_stock_kernels_to_numpy': round(float(np.median(paired['pytorch, stock kernels'])), 3),
              'rounds_pytorch_faster': int((paired['pytorch'] < 1).sum())}
    print(f"median: numpy {medians['numpy']:.2f} s, pytorch {medians['pytorch']:.2f} s "
          f"(stock kernels {medians['pytorch, stock kernels']:.2f} s); ratio pytorch/numpy "
          f"{result['ratio_pytorch_to_numpy']:.2f} (stock kernels {result['ratio_stock_kernels_to_numpy']:.2f}); "
          f"median ratio within a round {result['median_round_ratio_pytorch_to_numpy']:.2f}, "
          f"pytorch faster in {result['rounds_pytorch_faster']} of {args.repeats} rounds")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
