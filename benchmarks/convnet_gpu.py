"""Every GPU measurement of the ConvNet in one call, for a lent GPU's short lease.

    python -m benchmarks.convnet_gpu --data_dir /tmp/data/cifar-10-batches-py --out $OUT/convnet_gpu
    python -m benchmarks.convnet_gpu --data_dir ... --out /tmp/check --tiny   # a CPU dry run of the same steps

1. Ceilings: the device's bf16 matrix-multiply rate (8192^3, random data, CUDA events).
2. Throughput of a training step of the pre-activation net (images/s and share of that
   rate) for the current path (eager, bf16 autocast, channels_last) at batch 256 and 512,
   and for torch.compile in three modes at batch 512; each after a warm-up, the median of
   several timed blocks.
3. Accuracy: `--preset best` with flip test-time augmentation for three seeds, and the
   assignment's default run (5000 steps of 32) once; their records go to --out/<name>/.

Prints a short table last and writes everything to --out/results.json.
"""
import json
import os
import statistics

import torch

import cifar10_utils
import train_convnet_pytorch
from benchmarks.convnet_step import convnet_training_step
from benchmarks.model_size import macs_per_image
from benchmarks.timing import seconds_per_call
from cli_utils import ArgumentParser, add_data_dir, output_folder, run_cli
from convnet_pytorch import ConvNet
from torch_training import start_processes

SEEDS = (0, 1, 2)
MODES = {'eager': None, 'compile default': 'default', 'compile max-autotune-no-cudagraphs': 'max-autotune-no-cudagraphs',
         'compile reduce-overhead (CUDA graphs)': 'reduce-overhead'}


def synchronizer(device):
    """What makes the host wait for the device's queued work (nothing on a CPU)."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else None


def matmul_tflops(device, size, repeats=10):
    """Measured bf16 (float32 on a CPU) matrix-multiply rate, TFLOP/s, median of `repeats` products."""
    dtype = torch.bfloat16 if device.type == 'cuda' else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    seconds = [seconds_per_call(lambda: a @ b, 1, warmup=2 if i == 0 else 0, synchronize=synchronizer(device))
               for i in range(repeats)]
    return 2 * size ** 3 / statistics.median(seconds) / 1e12


def step_images_per_s(device, batch_size, mode, steps, blocks=5):
    """Training images/s of the pre-activation net (Adam, bf16 autocast on CUDA, channels_last) on random
    data: the median of `blocks` timed blocks after a warm-up (compilation, cuDNN's choices, CUDA graphs)."""
    step = convnet_training_step(arch='preact', batch_size=batch_size, device=device, channels_last=True,
                                 compile_mode=mode)
    rates = [batch_size / seconds_per_call(step, steps, warmup=3 if i == 0 else 0, synchronize=synchronizer(device))
             for i in range(blocks)]
    return statistics.median(rates)


def training_flop_per_image():
    """2 FLOP per multiply-add, 3 times the forward's (forward, and backward for inputs and for weights)."""
    return 3 * 2 * macs_per_image(ConvNet(3, 10, 'preact'))


def main():
    parser = ArgumentParser(__doc__)
    add_data_dir(parser)
    parser.add_argument('--out', type=output_folder, required=True, help='folder for the records and results.json')
    parser.add_argument('--tiny', action='store_true', help='a few steps of everything: a dry run on a CPU')
    args = parser.parse_args()
    device = start_processes('auto')[0]
    os.makedirs(args.out, exist_ok=True)
    tiny = args.tiny
    result = {'device': torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu', 'torch': torch.__version__}
    result['matmul_tflops'] = matmul_tflops(device, 512 if tiny else 8192)
    flop = training_flop_per_image()
    result['throughput'] = []
    for name, mode in MODES.items():
        for batch_size in ((8,) if tiny else (256, 512) if mode is None else (512,)):
            rate = step_images_per_s(device, batch_size, mode, steps=2 if tiny else 50, blocks=2 if tiny else 5)
            result['throughput'].append({'variant': name, 'batch_size': batch_size, 'images_per_s': round(rate, 1),
                                         'share_of_matmul_rate': round(rate * flop / 1e12 / result['matmul_tflops'], 4)})
            print(json.dumps(result['throughput'][-1]), flush=True)
            if tiny:
                break
    data = cifar10_utils.get_cifar10(args.data_dir)
    short = ['--max_steps', '3', '--eval_freq', '3', '--batch_size', '8'] if tiny else []
    runs = {f'preset_best_seed{seed}': ['--preset', 'best', '--seed', str(seed), '--tta', *short] for seed in SEEDS}
    runs['default'] = short
    result['runs'] = {}
    for name, flags in runs.items():
        run_args = train_convnet_pytorch.parse_args([*flags, '--output_dir', os.path.join(args.out, name), '--quiet'])
        record = train_convnet_pytorch.train(run_args, data=data)
        s = record['summary']
        result['runs'][name] = {key: s.get(key) for key in ('final_test_accuracy', 'final_test_accuracy_tta', 'time_s',
                                                            'train_images_per_s')}
        print(name, json.dumps(result['runs'][name]), flush=True)
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump(result, f, indent=1)
    print(f"{result['device']}: bf16 matmul {result['matmul_tflops']:.1f} TFLOP/s")
    for row in result['throughput']:
        print(f"{row['variant']:40s} batch {row['batch_size']:4d}: {row['images_per_s']:9.0f} images/s, "
              f"{row['share_of_matmul_rate']:.1%} of the matmul rate")
    for name, row in result['runs'].items():
        print(f'{name:20s} {row}')


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
