"""EfficientNet-Lite0 on this CPU, for question 4 b's settings: training and evaluation images/s at several
input sizes in both memory layouts (alternating rounds, medians), and where a training step's time goes
(torch.profiler: depthwise and 1x1 convolutions, BatchNorm, the upsampling, the rest).

    python -m benchmarks.bench_transfer --json docs/results/bench_transfer.json

Random images (the speed does not depend on them), batch 64, the ImageNet weights, SGD with Nesterov momentum
as train_transfer.py trains them.
"""
import collections
import statistics

import torch

from benchmarks.bench_step_overhead import training_step_of
from benchmarks.timing import alternate, benchmark_parser, publish, seconds_per_call
from cli_utils import run_cli
from efficientnet_lite0 import EfficientNetLite0, load_weights

BATCH_SIZE, STEPS = 64, 3
SIZES = (64, 96, 128, 160)
LAYOUTS = {'NCHW': torch.contiguous_format, 'channels_last': torch.channels_last}


def network(size, layout, frozen=False):
    model = EfficientNetLite0(image_size=size, frozen=frozen)
    load_weights(model, 'imagenet')
    model.new_head(10)
    return model.to(memory_format=layout)


def training_step(model, layout):
    """One SGD step on a fixed random batch of 32x32 images, upsampled inside the model."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                                nesterov=True)
    x = torch.randn(BATCH_SIZE, 3, 32, 32).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (BATCH_SIZE,))
    return training_step_of(model, optimizer, x, y)


def evaluation(model, layout):
    x = torch.randn(250, 3, 32, 32).contiguous(memory_format=layout)
    model.eval()

    def forward():
        with torch.inference_mode():
            model(x)
    return forward


def where_the_time_goes(size, layout):
    """Shares of a training step's CPU time by kind of operator (profiler self time, forward and backward)."""
    step = training_step(network(size, layout), layout)
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as profile:
        for _ in range(STEPS):
            step()
    kinds = collections.Counter()
    for event in profile.key_averages(group_by_input_shape=True):
        name = event.key
        if 'conv' in name:  # a depthwise convolution's weight is [channels, 1, k, k], k 3 or 5
            depthwise = any(len(s) == 4 and s[1] == 1 and s[2] in (3, 5) for s in event.input_shapes)
            kind = 'depthwise convolutions' if depthwise else 'other convolutions (1x1, stem)'
            kinds[kind] += event.self_cpu_time_total
        elif 'batch_norm' in name:
            kinds['BatchNorm'] += event.self_cpu_time_total
        elif 'upsample' in name or 'interpolate' in name:
            kinds['upsampling (bilinear)'] += event.self_cpu_time_total
        else:
            kinds['the rest (activations, optimizer, copies)'] += event.self_cpu_time_total
    total = sum(kinds.values())
    return {kind: round(time / total, 3) for kind, time in kinds.most_common()}


def main():
    parser = benchmark_parser(__doc__, rounds=3, data=False)
    args = parser.parse_args()
    torch.manual_seed(0)
    variants = {(size, name, mode): (size, layout, mode) for size in SIZES for name, layout in LAYOUTS.items()
                for mode in ('train', 'frozen', 'eval')}

    def measure(variant):
        size, layout, mode = variant
        model = network(size, layout, frozen=mode == 'frozen')
        if mode == 'eval':
            return 250 / seconds_per_call(evaluation(model, layout), STEPS)
        return BATCH_SIZE / seconds_per_call(training_step(model, layout), STEPS)
    runs = alternate(variants, args.rounds, measure, report=lambda name, rate: print(name, f'{rate:.1f} images/s',
                                                                                          flush=True))
    rows = [{'image_size': size, 'layout': name, 'mode': mode, 'images_per_s': round(statistics.median(rates), 1)}
            for (size, name, mode), rates in runs.items()]
    profile_size = 128
    result = {'batch_size': BATCH_SIZE, 'rounds': args.rounds, 'torch_threads': torch.get_num_threads(), 'rows': rows,
              'profile': {'image_size': profile_size, 'layout': 'channels_last',
                          'shares': where_the_time_goes(profile_size, torch.channels_last)}}
    for row in rows:
        print(row)
    print(result['profile'])
    publish(result, 'EfficientNet-Lite0 images/s measured', args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
