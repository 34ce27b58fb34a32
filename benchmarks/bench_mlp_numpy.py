"""Time the NumPy MLP's default training run against this machine's float32 matmul peak.

    python -m benchmarks.bench_mlp_numpy --data_dir ../shared/cifar10/cifar-10-batches-py --json runs/bench_mlp_numpy.json

Times train_mlp_numpy.train(parse_args([])) (its defaults (all steps and every evaluation; data
loading excluded) over --repeats runs, counts its arithmetic, and measures the sgemm peak
beside every run (this machine's speed drifts by 30% and more). Also times the run's matrix
products alone (the same shapes and layouts, in the same order, on random data): the most
of the peak any loop around them could reach. Prints one JSON line per run and a summary.
"""
import json
import time

import numpy as np

import cifar10_utils
import train_mlp_numpy
from benchmarks.timing import benchmark_parser, publish, seconds_per_call
from cli_utils import positive_int, run_cli

PEAK_SIZE = 2048  # square sgemm used to measure the peak
PEAK_REPEATS = 10


def sgemm_peak_gflops(size=PEAK_SIZE, repeats=PEAK_REPEATS):
    """Best observed float32 GFLOP/s of a square matrix product."""
    a = np.random.standard_normal((size, size)).astype(np.float32)
    b = np.random.standard_normal((size, size)).astype(np.float32)
    best = min(seconds_per_call(lambda: a @ b, repeats=1) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def training_gflop(sizes, batch_size, max_steps, eval_freq, n_test):
    """Matrix-multiply GFLOP of a run: forward, weight gradients, input gradients of all
    but the first layer (training never needs dL/dx of the data), and the evaluations."""
    macs = [fan_in * fan_out for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    per_step = 2 * batch_size * (2 * sum(macs) + sum(macs[1:]))
    n_evals = max_steps // eval_freq + (max_steps % eval_freq != 0)
    return (max_steps * per_step + n_evals * 2 * n_test * sum(macs)) / 1e9


def products_only_s(sizes, batch_size, max_steps, eval_freq, n_test):
    """Seconds of the run's matrix products and nothing else: per step the forward X W^T and the weight
    gradients (X^T dY)^T of every layer and dY W of all but the first, and the test set's forward at each
    evaluation; weights stored as LinearModule stores them (column by column)."""
    rng = np.random.default_rng(0)
    weights = [np.asfortranarray(rng.standard_normal((fan_out, fan_in), dtype=np.float32))
               for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    batch = [rng.standard_normal((batch_size, w.shape[1]), dtype=np.float32) for w in weights]
    grads = [rng.standard_normal((batch_size, w.shape[0]), dtype=np.float32) for w in weights]
    test = rng.standard_normal((n_test, sizes[0]), dtype=np.float32)
    start = time.perf_counter()
    for step in range(1, max_steps + 1):
        for i, (w, x, dy) in enumerate(zip(weights, batch, grads)):
            x @ w.T
            (x.T @ dy).T
            if i:
                dy @ w
        if step % eval_freq == 0 or step == max_steps:
            out = test
            for w in weights:
                out = out @ w.T
    return time.perf_counter() - start


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument('--repeats', type=positive_int, default=5, help='timed training runs')
    args = parser.parse_args()

    data = cifar10_utils.get_cifar10(args.data_dir)
    run_args = train_mlp_numpy.parse_args(['--quiet'])  # the defaults
    run_args.output_dir = None  # the training alone: no record files
    sizes = [cifar10_utils.IMAGE_SIZE, *run_args.dnn_hidden_units, cifar10_utils.N_CLASSES]
    shape = (sizes, run_args.batch_size, run_args.max_steps, run_args.eval_freq, data['test'].num_examples)
    gflop = training_gflop(*shape)
    runs = []
    for _ in range(args.repeats):
        peak = sgemm_peak_gflops()
        record = train_mlp_numpy.train(run_args, data=data)
        seconds, products = record['summary']['time_s'], products_only_s(*shape)
        runs.append({'time_s': seconds, 'gflops': round(gflop / seconds, 1), 'sgemm_peak_gflops': round(peak, 1),
                     'fraction_of_peak': round(gflop / seconds / peak, 3), 'products_only_s': round(products, 3),
                     'products_only_fraction_of_peak': round(gflop / products / peak, 3),
                     'final_test_accuracy': record['summary']['final_test_accuracy']})
        print(json.dumps(runs[-1]), flush=True)
    keys = ('time_s', 'sgemm_peak_gflops', 'fraction_of_peak', 'products_only_s', 'products_only_fraction_of_peak')
    median = {key: float(np.median([r[key] for r in runs])) for key in keys}
    result = {'runs': runs, 'repeats': len(runs), 'gflop': round(gflop, 1), 'median_time_s': round(median['time_s'], 3),
              'median_gflops': round(gflop / median['time_s'], 1),
              'median_sgemm_peak_gflops': round(median['sgemm_peak_gflops'], 1),
              'median_fraction_of_peak': round(median['fraction_of_peak'], 3),
              'median_products_only_s': round(median['products_only_s'], 3),
              'median_products_only_fraction_of_peak': round(median['products_only_fraction_of_peak'], 3)}
    publish(result, f"default run: median {median['time_s']:.2f} s over {len(runs)} runs, {gflop:.0f} GFLOP -> "
                    f"{result['median_gflops']:.0f} GFLOP/s; sgemm peak (median) {median['sgemm_peak_gflops']:.0f} "
                    f"GFLOP/s; median fraction of peak {median['fraction_of_peak']:.0%}; its products alone "
                    f"{median['products_only_s']:.2f} s, {median['products_only_fraction_of_peak']:.0%} of the peak",
            args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
