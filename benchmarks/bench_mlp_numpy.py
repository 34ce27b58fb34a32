"""Time the NumPy MLP's default training run against this machine's float32 matmul peak.

    python benchmarks/bench_mlp_numpy.py --data_dir ../shared/cifar10/cifar-10-batches-py

Times train_mlp_numpy.train() with the default flags (all steps and every
evaluation; data loading excluded) over --repeats runs, counts its arithmetic,
and measures the sgemm peak in the same process. Prints one JSON line per run
and a summary; --json PATH saves them.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cifar10_utils  # noqa: E402
import train_mlp_numpy  # noqa: E402

PEAK_SIZE = 2048  # square sgemm used to measure the peak
PEAK_REPEATS = 10


def sgemm_peak_gflops(size=PEAK_SIZE, repeats=PEAK_REPEATS):
    """Best observed float32 GFLOP/s of a square matrix product."""
    a = np.random.standard_normal((size, size)).astype(np.float32)
    b = np.random.standard_normal((size, size)).astype(np.float32)
    a @ b  # warm-up: threads and caches
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_gflop(n_inputs, hidden, n_classes, batch_size, max_steps, eval_freq, n_test):
    """Matrix-multiply GFLOP of a run: forward, weight gradients, input gradients of all
    but the first layer (training never needs dL/dx of the data), and the evaluations."""
    sizes = [n_inputs, *hidden, n_classes]
    macs = [fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    per_step = 2 * batch_size * (2 * sum(macs) + sum(macs[1:]))
    n_evals = max_steps // eval_freq + (max_steps % eval_freq != 0)
    return (max_steps * per_step + n_evals * 2 * n_test * sum(macs)) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--data_dir', default=cifar10_utils.CIFAR10_FOLDER)
    parser.add_argument('--repeats', type=int, default=5, help='timed training runs')
    parser.add_argument('--json', default=None, help='save the results here')
    args = parser.parse_args()

    data = cifar10_utils.get_cifar10(args.data_dir)
    hidden = [int(h) for h in train_mlp_numpy.DNN_HIDDEN_UNITS_DEFAULT.split(',')]
    gflop = training_gflop(data['train'].images[0].size, hidden, data['test'].labels.shape[1],
                           train_mlp_numpy.BATCH_SIZE_DEFAULT, train_mlp_numpy.MAX_STEPS_DEFAULT,
                           train_mlp_numpy.EVAL_FREQ_DEFAULT, data['test'].num_examples)
    runs = []
    for _ in range(args.repeats):
        # the peak is measured next to every run: this shared machine's speed drifts by 30% and more
        peak = sgemm_peak_gflops()
        record = train_mlp_numpy.train(data=data, progress=False)
        seconds = record['summary']['time_s']
        runs.append({'time_s': seconds, 'gflops': round(gflop / seconds, 1), 'sgemm_peak_gflops': round(peak, 1),
                     'fraction_of_peak': round(gflop / seconds / peak, 3),
                     'final_test_accuracy': record['summary']['final_test_accuracy']})
        print(json.dumps(runs[-1]), flush=True)
    median = {key: float(np.median([r[key] for r in runs])) for key in ('time_s', 'sgemm_peak_gflops', 'fraction_of_peak')}
    result = {'runs': runs, 'repeats': len(runs), 'gflop': round(gflop, 1), 'median_time_s': round(median['time_s'], 3),
              'median_gflops': round(gflop / median['time_s'], 1),
              'median_sgemm_peak_gflops': round(median['sgemm_peak_gflops'], 1),
              'median_fraction_of_peak': round(median['fraction_of_peak'], 3)}
    print(f"default run: median {median['time_s']:.2f} s over {len(runs)} runs, {gflop:.0f} GFLOP -> "
          f"{result['median_gflops']:.0f} GFLOP/s; sgemm peak (median) {median['sgemm_peak_gflops']:.0f} GFLOP/s; "
          f"median fraction of peak {median['fraction_of_peak']:.0%}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
