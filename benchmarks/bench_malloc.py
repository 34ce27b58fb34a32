"""glibc's allocator and train_transfer.py's default step: fresh processes with and without the MALLOC_* settings
train_transfer.py starts itself with (MALLOC_SETTINGS), alternating, a different one first each round; each times
training steps at the script's defaults (128 px, the first 5 blocks fixed, channels_last, batch 64) and counts the
minor page faults they cost.

    python -m benchmarks.bench_malloc --rounds 5 --json docs/results/bench_malloc.json

Random images (the speed does not depend on them). On a system without glibc the settings do nothing.
"""
import json
import os
import resource
import subprocess
import sys
import time

import torch

from benchmarks.bench_transfer import BATCH_SIZE, training_step
from benchmarks.timing import ROOT, alternate, benchmark_parser, median_ratio, medians, publish
from cli_utils import run_cli
from efficientnet_lite0 import EfficientNetLite0, load_weights
from train_transfer import MALLOC_SETTINGS

IMAGE_SIZE, FROZEN_BLOCKS, WARMUP, STEPS = 128, 5, 3, 8


def measure():
    """Print {seconds per step, minor page faults per step} of STEPS training steps, after WARMUP."""
    model = EfficientNetLite0(image_size=IMAGE_SIZE, frozen_blocks=FROZEN_BLOCKS)
    load_weights(model, 'imagenet')
    model.new_head(10)
    model = model.to(memory_format=torch.channels_last)
    step = training_step(model, torch.channels_last)
    for _ in range(WARMUP):
        step()
    faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(STEPS):
        step()
    seconds = (time.perf_counter() - start) / STEPS
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / STEPS
    print(json.dumps({'s_per_step': seconds, 'page_faults_per_step': faults}))


def fresh_process(env):
    """measure() in a new Python started with `env`: glibc reads its MALLOC_* settings only at start-up."""
    out = subprocess.run([sys.executable, '-m', 'benchmarks.bench_malloc', '--child'], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if sys.argv[1:] == ['--child']:
        return measure()
    parser = benchmark_parser(__doc__, rounds=5, data=False)
    args = parser.parse_args()
    plain = {k: v for k, v in os.environ.items() if k not in MALLOC_SETTINGS}
    variants = {'glibc_defaults': plain, 'malloc_settings': {**plain, **MALLOC_SETTINGS}}
    runs = alternate(variants, args.rounds, fresh_process, report=lambda name, r: print(
        f"{name}: {r['s_per_step']:.3f} s a step, {r['page_faults_per_step']:.0f} page faults a step", flush=True))
    seconds = {name: [r['s_per_step'] for r in values] for name, values in runs.items()}
    faults = {name: [r['page_faults_per_step'] for r in values] for name, values in runs.items()}
    result = {'settings': MALLOC_SETTINGS, 'image_size': IMAGE_SIZE, 'frozen_blocks': FROZEN_BLOCKS,
              'batch_size': BATCH_SIZE, 'steps': STEPS, 'rounds': args.rounds, 'torch_threads': torch.get_num_threads(),
              's_per_step': seconds, 'page_faults_per_step': faults, 'median_s_per_step': medians(seconds),
              'median_page_faults_per_step': medians(faults),
              'median_round_speedup': round(median_ratio(seconds['glibc_defaults'], seconds['malloc_settings']), 3)}
    publish(result, f"MALLOC_SETTINGS: {result['median_round_speedup']:.2f}x the training steps a second of glibc's "
                    f"defaults (median within a round of {args.rounds})", args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
