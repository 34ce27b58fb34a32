"""The two CPU kernels mlp_pytorch swaps in, against torch's stock ones, float32.

    python benchmarks/bench_mlp_kernels.py --json docs/results/bench_mlp_kernels.json

Linear: the three matrix products of a layer (forward X W^T + b, weight gradient dY^T X,
input gradient dY W) through torch's default BLAS (MKL here) and through oneDNN
(mlp_pytorch's Linear), in GFLOP/s, for the default run's layers and test evaluation
and for the layers of --preset best. ELU: nn.ELU against mlp_pytorch.ELU on the default
run's shapes, in microseconds. Medians over rounds in which the variants alternate.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mlp_pytorch import ELU, _onednn_linear  # noqa: E402

# (batch, in, out): default run's first and second layer, its test evaluation, --preset best's layers
LINEAR_SHAPES = [(200, 3072, 100), (200, 100, 10), (10000, 3072, 100), (256, 3072, 1024), (256, 1024, 1024)]
ELU_CASES = [((200, 100), 'forward+backward'), ((10000, 100), 'forward, no grad')]
WORK_PER_MEASUREMENT = 3e9  # FLOPs (Linear) or elements x 1000 (ELU) per timed loop


def time_per_call(fn, repeats):
    """Seconds per call of fn over `repeats` calls, after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def linear_rows(rounds):
    rows = []
    for batch, n_in, n_out in LINEAR_SHAPES:
        x, w, b, dy = torch.randn(batch, n_in), torch.randn(n_out, n_in), torch.randn(n_out), torch.randn(batch, n_out)
        products = {
            'forward': {'BLAS': lambda: torch.addmm(b, x, w.t()), 'oneDNN': lambda: _onednn_linear(x, w, b)},
            'weight gradient': {'BLAS': lambda: dy.t().mm(x),
                                'oneDNN': lambda: _onednn_linear(dy.t(), x.t())},
            'input gradient': {'BLAS': lambda: dy.mm(w), 'oneDNN': lambda: _onednn_linear(dy, w.t())},
        }
        flops = 2 * batch * n_in * n_out
        repeats = max(3, int(WORK_PER_MEASUREMENT // flops))
        times = {(product, name): [] for product, variants in products.items() for name in variants}
        for _ in range(rounds):
            for product, variants in products.items():
                for name, fn in variants.items():
                    times[(product, name)].append(time_per_call(fn, repeats))
        for product in products:
            rates = {name: flops / float(np.median(times[(product, name)])) / 1e9 for name in ('BLAS', 'oneDNN')}
            rows.append({'shape': [batch, n_in, n_out], 'product': product, 'blas_gflops': round(rates['BLAS'], 1),
                         'onednn_gflops': round(rates['oneDNN'], 1),
                         'onednn_speedup': round(rates['oneDNN'] / rates['BLAS'], 3)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def elu_rows(rounds):
    rows = []
    for shape, mode in ELU_CASES:
        x = torch.randn(*shape, requires_grad=mode == 'forward+backward')
        grad = torch.randn(*shape)
        variants = {'nn.ELU': torch.nn.ELU(), 'mlp_pytorch.ELU': ELU()}

        def call(module):
            if mode == 'forward+backward':
                module(x).backward(grad)
            else:
                with torch.no_grad():
                    module(x)
        repeats = max(3, int(WORK_PER_MEASUREMENT / 1000 // x.numel()))
        times = {name: [] for name in variants}
        for _ in range(rounds):
            for name, module in variants.items():
                times[name].append(time_per_call(lambda: call(module), repeats))
        medians = {name: float(np.median(t)) for name, t in times.items()}
        rows.append({'shape': list(shape), 'mode': mode, 'nn_elu_us': round(medians['nn.ELU'] * 1e6, 1),
                     'ours_us': round(medians['mlp_pytorch.ELU'] * 1e6, 1),
                     'speedup': round(medians['nn.ELU'] / medians['mlp_pytorch.ELU'], 3)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    result = {'threads': torch.get_num_threads(), 'cpu_capability': torch.backends.cpu.get_cpu_capability(),
              'torch': torch.__version__, 'rounds': args.rounds,
              'linear': linear_rows(args.rounds), 'elu': elu_rows(args.rounds)}
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
