"""Which CPU settings train the ConvNet fastest here: memory format x Adam implementation
x thread count, measured interleaved over several rounds (this machine's speed drifts).

    python -m benchmarks.bench_convnet_cpu --rounds 5 --json bench_convnet_cpu.json

Prints training images/s (median over rounds) for each setting on random data with the
default batch size 32.
"""
import itertools
import json

import torch

from benchmarks.convnet_step import convnet_training_step
from benchmarks.timing import alternate, benchmark_parser, medians, publish, seconds_per_call

BATCH_SIZE = 32
WARMUP_STEPS = 3


def images_per_second(arch, channels_last, fused, threads, steps):
    torch.set_num_threads(threads)
    step = convnet_training_step(arch=arch, batch_size=BATCH_SIZE, device=torch.device('cpu'),
                                 channels_last=channels_last, fused=fused)
    return BATCH_SIZE / seconds_per_call(step, steps, warmup=WARMUP_STEPS)


def main():
    parser = benchmark_parser(__doc__, rounds=5)
    parser.add_argument('--arch', default='vgg')
    parser.add_argument('--steps', type=int, default=10, help='timed steps per setting and round')
    parser.add_argument('--threads', default=f'{torch.get_num_threads()}', help='comma-separated thread counts')
    args = parser.parse_args()
    settings = {s: s for s in itertools.product([True, False], [False, True], [int(t) for t in args.threads.split(',')])}
    results = alternate(settings, args.rounds, lambda setting: images_per_second(args.arch, *setting, args.steps))
    median = medians(results)
    rows = []
    for (channels_last, fused, threads), values in results.items():
        rows.append({'arch': args.arch, 'channels_last': channels_last, 'adam': 'fused' if fused else 'default',
                     'threads': threads, 'median_images_per_s': round(median[(channels_last, fused, threads)], 1),
                     'all': [round(v, 1) for v in values]})
        print(json.dumps(rows[-1]))
    publish({'batch_size': BATCH_SIZE, 'steps': args.steps, 'rounds': args.rounds, 'rows': rows},
            f'{len(rows)} settings measured', args.json)


if __name__ == '__main__':
    main()
