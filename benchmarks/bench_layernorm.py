"""Forward+backward time and bytes saved for backward of the LayerNorms, CPU float32.

    python -m benchmarks.bench_layernorm --json bench_layernorm.json

Variants: CustomLayerNormAutograd, CustomLayerNormManualModule and
torch.nn.functional.layer_norm (through nn.LayerNorm), on shapes (128, 1024) and
(1024, 4096). Timings are medians over rounds in which the variants alternate, so the
ratios come from one run under the same conditions.
"""
import json

import torch

from benchmarks.timing import alternate, benchmark_parser, medians, publish, seconds_per_call
from cli_utils import run_cli
from custom_layernorm import CustomLayerNormAutograd, CustomLayerNormManualModule

SHAPES = [(128, 1024), (1024, 4096)]
WORK_PER_MEASUREMENT = 2e8  # elements processed per timed loop, so both shapes get long, steady loops
VARIANTS = {'autograd module': CustomLayerNormAutograd, 'manual module': CustomLayerNormManualModule,
            'F.layer_norm': torch.nn.LayerNorm}


def saved_bytes(module, x):
    """Bytes autograd keeps for backward of module(x), each storage once, the input included."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(x)
    return sum(storages.values())


def main():
    args = benchmark_parser(__doc__, rounds=9, data=False).parse_args()
    rows = []
    for shape in SHAPES:
        x = torch.randn(*shape, requires_grad=True)
        grad = torch.randn(*shape)
        modules = {name: cls(shape[1]) for name, cls in VARIANTS.items()}
        repeats = max(3, int(WORK_PER_MEASUREMENT // x.numel()))
        times = alternate(modules, args.rounds, lambda module: seconds_per_call(lambda: module(x).backward(grad), repeats))
        median = medians(times)
        for name, module in modules.items():
            rows.append({'shape': list(shape), 'variant': name, 'fwd_bwd_ms': round(median[name] * 1e3, 4),
                         'vs_F_layer_norm': round(median[name] / median['F.layer_norm'], 3),
                         'vs_autograd': round(median[name] / median['autograd module'], 3),
                         'saved_bytes': saved_bytes(module, x)})
            print(json.dumps(rows[-1]), flush=True)
    publish({'threads': torch.get_num_threads(), 'rounds': args.rounds, 'torch': torch.__version__, 'rows': rows},
            f'{len(rows)} measurements', args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
