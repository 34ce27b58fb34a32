"""Which CPU settings train the ConvNet fastest here: memory format x Adam implementation
x thread count, measured interleaved over several rounds (this machine's speed drifts).

    python -m benchmarks.bench_convnet_cpu --rounds 5 --json bench_convnet_cpu.json

Prints training images/s (median over rounds) for each setting on random data with the
default batch size 32.
"""
import itertools
import json

import torch
from torch import nn

from benchmarks.timing import alternate, benchmark_parser, medians, publish, seconds_per_call
from convnet_pytorch import ConvNet

BATCH_SIZE = 32
WARMUP_STEPS = 3


def images_per_second(arch, channels_last, fused, threads, steps):
    torch.set_num_threads(threads)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = ConvNet(3, 10, arch).to(memory_format=memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused)
    x = torch.randn(BATCH_SIZE, 3, 32, 32).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (BATCH_SIZE,))

    def step():
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

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
