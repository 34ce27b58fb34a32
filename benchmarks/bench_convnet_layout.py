"""Which memory layout the ConvNet trains fastest with on this CPU, as a user runs it: whole processes of
`train_convnet_pytorch.py --max_steps 300 --eval_freq 300` (300 steps of the default recipe and one full
test evaluation), NCHW against channels_last, alternating, a different one first each round.

    python -m benchmarks.bench_convnet_layout --data_dir ../shared/cifar10/cifar-10-batches-py --rounds 3 --json runs/bench_convnet_layout.json

The default layout on CPU is chosen from this machine's medians and those measured on other machines
(OTHER_MACHINES, cited, not re-measured): the layout with the lower geometric mean of whole-process time.
"""
import math
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.timing import ROOT, alternate, benchmark_parser, median_ratio, medians, publish
from cli_utils import positive_int, run_cli

LAYOUTS = {'NCHW': '--no_channels_last', 'channels_last': '--channels_last'}
# Measured elsewhere with the same 300-step command (seconds, whole process): cited from issue 20
OTHER_MACHINES = {'2-core AMD EPYC (AVX2)': {'NCHW': 260.0, 'channels_last': 210.0}}


def whole_run(flag, data_dir, steps):
    """Seconds of one training process, start to exit, and its record's time_s."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, 'train_convnet_pytorch.py', '--data_dir', data_dir, '--max_steps', str(steps),
                        '--eval_freq', str(steps), '--quiet', flag, '--output_dir', os.path.join(out, 'run')],
                       cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start


def main():
    parser = benchmark_parser(__doc__, rounds=3)
    parser.add_argument('--steps', type=positive_int, default=300)
    args = parser.parse_args()
    times = alternate(LAYOUTS, args.rounds, lambda flag: whole_run(flag, args.data_dir, args.steps),
                      report=lambda name, seconds: print(f'{name}: {seconds:.1f} s', flush=True))
    here = medians(times)
    machines = {'this machine': here, **OTHER_MACHINES}
    geometric = {layout: math.exp(sum(math.log(m[layout]) for m in machines.values()) / len(machines))
                 for layout in LAYOUTS}
    result = {'steps': args.steps, 'rounds': args.rounds, 'seconds': times, 'median_s': here,
              'median_round_ratio_channels_last_to_nchw': round(median_ratio(times['channels_last'], times['NCHW']), 3),
              'other_machines_cited': OTHER_MACHINES, 'geometric_mean_s': geometric,
              'chosen': min(geometric, key=geometric.get)}
    publish(result, f"medians here: NCHW {here['NCHW']:.1f} s, channels_last {here['channels_last']:.1f} s; geometric "
                    f"means over {len(machines)} machines: " + ', '.join(f'{k} {v:.1f} s' for k, v in geometric.items())
            + f"; chosen: {result['chosen']}", args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
