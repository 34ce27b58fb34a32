"""Forward+backward time and bytes saved for backward of three LayerNorms, CPU float32.

    python benchmarks/bench_layernorm.py --json docs/results/bench_layernorm.json

Variants: CustomLayerNormAutograd, CustomLayerNormManualModule (its fused CPU kernels,
and once more forced onto its eager closed form) and torch.nn.functional.layer_norm
(through nn.LayerNorm), on shapes (128, 1024) and (1024, 4096). Timings are medians
over rounds in which the variants alternate, so the ratios come from one run under
the same conditions.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import custom_layernorm  # noqa: E402
from custom_layernorm import CustomLayerNormAutograd, CustomLayerNormManualModule  # noqa: E402

SHAPES = [(128, 1024), (1024, 4096)]
WORK_PER_MEASUREMENT = 2e8  # elements processed per timed loop, so both shapes get long, steady loops


class EagerManualModule(CustomLayerNormManualModule):
    """The manual module with its fused kernels switched off (what runs without a C++ compiler)."""

    def forward(self, input):
        fused, custom_layernorm.FUSED = custom_layernorm.FUSED, False
        try:
            return super().forward(input)
        finally:
            custom_layernorm.FUSED = fused


VARIANTS = {'autograd module': CustomLayerNormAutograd, 'manual module': CustomLayerNormManualModule,
            'manual module, eager closed form': EagerManualModule, 'F.layer_norm': torch.nn.LayerNorm}


def saved_bytes(module, x):
    """Bytes autograd keeps for backward of module(x) (each storage once)."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(x)
    # the input itself is kept by the caller anyway; count only what the layer adds
    storages.pop(x.untyped_storage().data_ptr(), None)
    return sum(storages.values())


def time_fwd_bwd(module, x, grad, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        module(x).backward(grad)
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--rounds', type=int, default=9)
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    rows = []
    for shape in SHAPES:
        x = torch.randn(*shape, requires_grad=True)
        grad = torch.randn(*shape)
        modules = {name: cls(shape[1]) for name, cls in VARIANTS.items()}
        repeats = max(3, int(WORK_PER_MEASUREMENT // x.numel()))
        times = {name: [] for name in modules}
        for module in modules.values():
            time_fwd_bwd(module, x, grad, 2)  # warm-up
        for _ in range(args.rounds):
            for name, module in modules.items():
                times[name].append(time_fwd_bwd(module, x, grad, repeats))
        median = {name: float(np.median(t)) for name, t in times.items()}
        for name, module in modules.items():
            rows.append({'shape': list(shape), 'variant': name, 'fwd_bwd_ms': round(median[name] * 1e3, 4),
                         'vs_F_layer_norm': round(median[name] / median['F.layer_norm'], 3),
                         'vs_autograd': round(median[name] / median['autograd module'], 3),
                         'saved_bytes': saved_bytes(module, x)})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'threads': torch.get_num_threads(), 'rounds': args.rounds, 'torch': torch.__version__,
                       'fused_kernels': custom_layernorm.fused_kernels() is not None, 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
