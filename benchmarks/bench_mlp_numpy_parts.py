"""Where the NumPy MLP's default run spends its time: each part of a training step, the evaluations and
the loading, timed inside one run of the default training loop, with the products' share of the peak.

    python -m benchmarks.bench_mlp_numpy_parts --data_dir ../shared/cifar10/cifar-10-batches-py --json runs/bench_mlp_numpy_parts.json

Runs the loop of train_mlp_numpy.train (same modules, same order, same seed) with a clock around every
call, so the parts add up to the step; the last row is the record's own bookkeeping (RunRecord.log).
Loading is timed in a fresh process (get_cifar10, then its parts: unpickling and checks, the mean image,
the float32 subtraction, one-hot labels, the fingerprint it waits for).
"""
import collections
import json
import subprocess
import sys
import time

import numpy as np

import cifar10_utils
import train_mlp_numpy
from benchmarks.bench_mlp_numpy import sgemm_peak_gflops
from benchmarks.timing import ROOT, benchmark_parser, publish
from cli_utils import positive_int, run_cli
from mlp_numpy import MLP
from modules import CrossEntropyModule
from run_records import RunRecord, accuracy

LOADING = '''
import json, time, numpy as np, cifar10_utils as c
from cifar10_download import BATCH_FILES
import os
folder = {folder!r}
t = {{}}
start = time.perf_counter(); data = c.get_cifar10(folder, download=False); t['get_cifar10 (all of it)'] = time.perf_counter() - start
start = time.perf_counter(); parsed = [c.load_cifar10_batch(os.path.join(folder, n)) for n in BATCH_FILES]; t['unpickle and check six files'] = time.perf_counter() - start
x = np.concatenate([p[0] for p in parsed[:-1]])
start = time.perf_counter(); mean = c.mean_image_of(x); t['mean image'] = time.perf_counter() - start
start = time.perf_counter(); f = np.subtract(x, mean, dtype=np.float32); t['float32 and mean subtraction (train)'] = time.perf_counter() - start
start = time.perf_counter(); c.dense_to_one_hot(np.concatenate([p[1] for p in parsed[:-1]]), 10); t['one-hot labels'] = time.perf_counter() - start
start = time.perf_counter(); [c.file_md5(os.path.join(folder, n)) for n in BATCH_FILES]; t['MD5 of six files (on its own thread in a run)'] = time.perf_counter() - start
print(json.dumps(t))
'''


def timed_run(data, args, clock):
    """The training loop of train_mlp_numpy with the settings `args`, each call timed into clock[part] (seconds)."""
    np.random.seed(args.seed)
    batch_size, lr, max_steps, eval_freq = args.batch_size, args.learning_rate, args.max_steps, args.eval_freq
    hidden = args.dnn_hidden_units
    train_set = cifar10_utils.DataSet(data['train'].images, data['train'].labels)
    test_images = data['test'].images.reshape(data['test'].num_examples, -1)
    model = MLP(cifar10_utils.IMAGE_SIZE, hidden, cifar10_utils.N_CLASSES, dtype=np.float32, input_grad=False)
    loss_module = CrossEntropyModule()

    def timed(part, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        clock[part] += time.perf_counter() - start
        return out

    args.output_dir, args.quiet = None, True  # a record in memory only
    with RunRecord(args, 'parts', train_mlp_numpy.CHECKPOINT) as run:
        run.start(max_steps)
        start = time.perf_counter()
        for step in range(1, max_steps + 1):
            x, y = timed('batch (next_batch)', train_set.next_batch, batch_size)
            out = x.reshape(batch_size, -1)
            for i, layer in enumerate(model.layers):
                out = timed(f'forward {i}: {type(layer).__name__}', layer.forward, out)
            probs = out
            loss = timed('loss forward', loss_module.forward, probs, y)
            dout = timed('loss backward', loss_module.backward, probs, y)
            for i, layer in reversed(list(enumerate(model.layers))):
                dout = timed(f'backward {i}: {type(layer).__name__}', layer.backward, dout)
            update_start = time.perf_counter()
            for param, grad in model.parameters():
                param -= lr * grad
            clock['SGD update'] += time.perf_counter() - update_start
            acc = timed('batch accuracy', accuracy, probs, y)
            timed('record (RunRecord.log)', run.log, step, loss, acc)
            if step % eval_freq == 0 or step == max_steps:
                eval_start = time.perf_counter()
                test_probs = model.forward(test_images)
                run.evaluate(step, loss_module.forward(test_probs, data['test'].labels),
                             accuracy(test_probs, data['test'].labels))
                clock['evaluations (whole test set)'] += time.perf_counter() - eval_start
        return time.perf_counter() - start


def main():
    parser = benchmark_parser(__doc__)
    parser.add_argument('--repeats', type=positive_int, default=3, help='timed runs (the medians are reported)')
    args = parser.parse_args()
    loading = json.loads(subprocess.run([sys.executable, '-c', LOADING.format(folder=args.data_dir)], cwd=ROOT,
                                        capture_output=True, text=True, check=True).stdout)
    data = cifar10_utils.get_cifar10(args.data_dir, download=False)
    defaults = train_mlp_numpy.parse_args([])
    runs = []
    for _ in range(args.repeats):
        clock = collections.defaultdict(float)
        total = timed_run(data, defaults, clock)
        runs.append({'total_s': total, **clock})
    parts = [key for key in runs[0] if key != 'total_s']
    median = {key: float(np.median([run[key] for run in runs])) for key in ['total_s', *parts]}
    median['other (loop, clock)'] = median['total_s'] - sum(median[key] for key in parts)
    steps = defaults.max_steps
    rows = [{'part': key, 'ms_per_step': round(median[key] / steps * 1e3, 4),
             'share': round(median[key] / median['total_s'], 4)} for key in [*parts, 'other (loop, clock)']]
    peak = sgemm_peak_gflops()
    result = {'repeats': args.repeats, 'steps': steps, 'median_total_s': round(median['total_s'], 3), 'rows': rows,
              'loading_s': {key: round(value, 3) for key, value in loading.items()},
              'sgemm_peak_gflops': round(peak, 1)}
    for row in rows:
        print(f"{row['part']:42s} {row['ms_per_step']:8.4f} ms/step {row['share']:7.1%}")
    for key, value in loading.items():
        print(f'loading: {key:50s} {value:7.3f} s')
    publish(result, f"total {median['total_s']:.2f} s for {steps} steps (clocks included); sgemm peak {peak:.0f} GFLOP/s",
            args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
