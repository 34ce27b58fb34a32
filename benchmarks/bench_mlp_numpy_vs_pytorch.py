"""Time the default NumPy and PyTorch MLP runs side by side (alternating, same process).

    python benchmarks/bench_mlp_numpy_vs_pytorch.py --data_dir ../shared/cifar10/cifar-10-batches-py --repeats 5

Both run the assignment defaults (1 x 100 ELU, SGD lr 1e-3, batch 200, 1400 steps,
test evaluation every 100 steps), data loading excluded. Prints each run, the median
times and the PyTorch/NumPy ratio of the medians.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cifar10_utils  # noqa: E402
import train_mlp_numpy  # noqa: E402
import train_mlp_pytorch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--data_dir', default=cifar10_utils.CIFAR10_FOLDER)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    data = cifar10_utils.get_cifar10(args.data_dir)
    scripts = {'numpy': train_mlp_numpy, 'pytorch': train_mlp_pytorch}
    runs = {name: [] for name in scripts}
    for _ in range(args.repeats):
        for name, script in scripts.items():
            summary = script.train(data=data, progress=False)['summary']
            runs[name].append({'time_s': summary['time_s'], 'final_test_accuracy': summary['final_test_accuracy']})
            print(name, json.dumps(runs[name][-1]), flush=True)
    medians = {name: float(np.median([r['time_s'] for r in rs])) for name, rs in runs.items()}
    result = {'runs': runs, 'median_time_s': medians, 'ratio_pytorch_to_numpy': round(medians['pytorch'] / medians['numpy'], 3)}
    print(f"median: numpy {medians['numpy']:.2f} s, pytorch {medians['pytorch']:.2f} s, "
          f"ratio pytorch/numpy {result['ratio_pytorch_to_numpy']:.2f}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
