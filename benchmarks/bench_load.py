"""Time loading all six CIFAR-10 batch files into mean-subtracted float32 arrays.

    python benchmarks/bench_load.py --data_dir ../shared/cifar10/cifar-10-batches-py --json docs/results/bench_load.json

Each repeat runs in a fresh Python process (so no file or allocator state carries
over) and times get_cifar10() alone, import excluded; prints the median.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMED = ('import time, cifar10_utils; start = time.perf_counter(); '
         'cifar10_utils.get_cifar10({!r}, download=False); print(time.perf_counter() - start)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--data_dir', default='cifar10/cifar-10-batches-py')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    times = [float(subprocess.run([sys.executable, '-c', TIMED.format(os.path.abspath(args.data_dir))], cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout) for _ in range(args.repeats)]
    result = {'seconds': [round(t, 3) for t in times], 'median_s': round(float(np.median(times)), 3)}
    print(json.dumps(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
