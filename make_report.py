"""Rebuild docs/report.md (from docs/report_template.md) and README.md's results table
from the run records.

    python make_report.py            # write docs/report.md, the README table, and redraw the figures
    python make_report.py --check    # exit 1 if either is not what the records give

The template holds the prose; every number, table and figure in it is a placeholder
filled from the JSON records under docs/results/ (written by the training scripts,
the experiment scripts and the benchmarks):

    {{value:PATH:KEY[:FORMAT]}}   KEY (dotted, list indices allowed) of the JSON file docs/results/PATH,
                                  or of DERIVED (PATH 'derived'): numbers computed from several records
    {{table:NAME}}                one of the TABLES below
    {{figure:RUN}}                the curves of docs/results/RUN/history.json, redrawn from it
"""
import argparse
import functools
import math
import os
import pathlib
import re
import sys

import numpy as np

import cifar10_utils
import train_mlp_numpy
import train_transfer
from convnet_pytorch import ConvNet
from experiments import mlp_sweep, norm_batch_size, tanh_saturation
from experiments.records import DATA_FLAG as DATA
from benchmarks.model_size import macs_per_image, n_parameters, network_of
from experiments.records import RESULTS, ROOT, BadRecord, load_json, markdown_table
from mlp_pytorch import MLP
from run_records import plot_curves

DOCS = os.path.join(ROOT, 'docs')
TEMPLATE = os.path.join(DOCS, 'report_template.md')
REPORT = os.path.join(DOCS, 'report.md')
PLACEHOLDER = re.compile(r'\{\{(value|table|figure):([^}]+)\}\}')
MISSING = '*(not run yet)*'


def load(path):
    return load_json(os.path.join(RESULTS, path))


def lookup(record, key):
    for part in key.split('.'):
        record = record[int(part)] if isinstance(record, list) else record[part]
    return record


def value(spec):
    path, key, *fmt = spec.split(':')
    record = derived() if path == 'derived' else load(path)
    if record is None or (path == 'derived' and key not in record):
        return MISSING
    result = lookup(record, key)
    if isinstance(result, float) and not math.isfinite(result):
        raise BadRecord(f"'{path}' gives {result} for {key}: rerun the command that made it")
    return format(result, fmt[0]) if fmt else str(result)


# --------------------------------------------------------------------------- numbers from several records

@functools.cache
def derived():
    """Numbers the report quotes that no single record holds as such."""
    out = {}
    steps_10k = load('mlp_sweep/steps_10k/history.json')
    if steps_10k:
        lowest = int(np.argmin(steps_10k['test']['loss']))
        out.update(steps_10k_lowest_test_loss_step=steps_10k['test']['step'][lowest],
                   steps_10k_lowest_test_loss=steps_10k['test']['loss'][lowest])
    vgg = load('convnet_vgg_default/history.json')
    if vgg:  # train loss averaged over the 250 steps before an evaluation: single batches are noisy
        losses = np.asarray(vgg['train']['loss'], dtype=float)
        out.update(vgg_train_loss_at_2500=losses[2250:2500].mean(), vgg_train_loss_at_5000=losses[-250:].mean())
    steps, runs = load('bench_step_overhead.json'), load('bench_mlp_numpy_vs_pytorch.json')
    if steps and runs:  # per-step differences over the default run's 1400 steps, against the runs' difference
        default_steps = train_mlp_numpy.MAX_STEPS
        out.update(framework_overhead_per_run_s=steps['rows'][2]['pytorch_minus_numpy_us'] * default_steps / 1e6,
                   step_difference_per_run_s=-steps['rows'][0]['pytorch_minus_numpy_us'] * default_steps / 1e6,
                   weight_work_saving_us=-steps['rows'][1]['pytorch_minus_numpy_us'],
                   run_difference_s=runs['median_time_s']['numpy'] - runs['median_time_s']['pytorch'])
    mlp, convnet = MLP(cifar10_utils.IMAGE_SIZE, [100], cifar10_utils.N_CLASSES), ConvNet()
    out['convnet_to_mlp_macs'] = macs_per_image(convnet) / macs_per_image(mlp)
    out['preact_to_vgg_macs'] = macs_per_image(ConvNet(arch='preact')) / macs_per_image(convnet)
    out['transfer_resize_to_stem_macs'] = (macs_per_image(train_transfer.build_model('resnet18', None, 'resize'))
                                           / macs_per_image(train_transfer.build_model('resnet18', None, 'stem')))
    best_mlp = MLP(cifar10_utils.IMAGE_SIZE, [1024, 1024], cifar10_utils.N_CLASSES, norm='batchnorm')
    out['convnet_to_mlp_parameters'] = n_parameters(convnet) / n_parameters(mlp)
    out['best_mlp_to_convnet_parameters'] = n_parameters(best_mlp) / n_parameters(convnet)
    return out


def figure(run, draw):
    record = load(os.path.join(run, 'history.json'))
    if record is None:
        return MISSING
    if draw:
        plot_curves(record, os.path.join(RESULTS, run, 'curves.png'), title=run)
    return f'![{run} curves](results/{run}/curves.png)'


# --------------------------------------------------------------------------- tables

def duration(seconds):
    return f'{seconds:.1f} s' if seconds < 120 else f'{seconds / 60:.1f} min'


def machine(record):
    """Where a run ran, from its record: the GPU's name, else the CPU's core count."""
    env = record.get('environment', {})
    return env.get('cuda') or f"{env.get('cpu_count', '?')}-core CPU"


def table_runs(runs):
    """Summary rows of training runs: (label, run folder, command)."""
    rows = []
    for label, run, command in runs:
        record = load(os.path.join(run, 'history.json'))
        if record is None:
            rows.append([label, '', MISSING, '', '', '', '', f'`{command}`'])
            continue
        s = record['summary']
        speed = f"{s['train_images_per_s']:.0f}" if s.get('train_images_per_s') else '—'
        status = '' if s['status'] == 'completed' else f" ({s['status']})"
        rows.append([label, machine(record), f"{s['final_test_accuracy']:.4f}{status}",
                     f"{s['best_test_accuracy']:.4f} ({s['best_step']})", s['steps'], duration(s['time_s']), speed,
                     f'`{command}`'])
    return markdown_table(['run', 'machine', 'final test acc', 'best test acc (step)', 'steps', 'wall time',
                           'train images/s', 'command'], rows)


CONVNET_RUNS = [
    ('Table 1 (vgg), defaults', 'convnet_vgg_default',
     f'python train_convnet_pytorch.py {DATA} --output_dir runs/convnet_vgg_default'),
    ('pre-activation, defaults', 'convnet_preact_default',
     f'python train_convnet_pytorch.py --arch preact {DATA} --output_dir runs/convnet_preact_default'),
    ('Table 1, --preset cpu', 'convnet_vgg_preset_cpu',
     f'python train_convnet_pytorch.py --preset cpu {DATA} --output_dir runs/convnet_vgg_preset_cpu'),
    # GPU runs (device auto picks cuda)
    ('pre-activation, --preset best (60 epochs)', 'convnet_preact_preset_best',
     f'python train_convnet_pytorch.py --preset best {DATA} --output_dir runs/convnet_preact_preset_best'),
    ('Table 1, --preset best --arch vgg (60 epochs)', 'convnet_vgg_preset_best',
     f'python train_convnet_pytorch.py --preset best --arch vgg {DATA} --output_dir runs/convnet_vgg_preset_best'),
    ('pre-activation, --preset best --epochs 30', 'convnet_preact_best_30ep',
     f'python train_convnet_pytorch.py --preset best --epochs 30 {DATA} --output_dir runs/convnet_preact_best_30ep'),
    ('Table 1, --preset best --arch vgg --epochs 30', 'convnet_vgg_best_30ep',
     f'python train_convnet_pytorch.py --preset best --arch vgg --epochs 30 {DATA} '
     '--output_dir runs/convnet_vgg_best_30ep'),
]
MLP_RUNS = [
    ('NumPy MLP, defaults', 'mlp_numpy_default',
     f'python train_mlp_numpy.py {DATA} --output_dir runs/mlp_numpy_default'),
    ('PyTorch MLP, defaults', 'mlp_pytorch_default',
     f'python train_mlp_pytorch.py {DATA} --output_dir runs/mlp_pytorch_default'),
    ('PyTorch MLP, --preset best', 'mlp_pytorch_best',
     f'python train_mlp_pytorch.py --preset best {DATA} --output_dir runs/mlp_pytorch_best'),
]


def table_layernorm_bench():
    bench = load('bench_layernorm.json')
    if bench is None:
        return MISSING
    return markdown_table(
        ['shape', 'variant', 'forward+backward (ms)', '× F.layer_norm', '× autograd module', 'bytes saved for backward'],
        [[f"{r['shape'][0]}×{r['shape'][1]}", r['variant'], f"{r['fwd_bwd_ms']:.3f}", f"{r['vs_F_layer_norm']:.2f}",
          f"{r['vs_autograd']:.2f}", f"{r['saved_bytes']:,}"] for r in bench['rows']])


def table_convnet_cpu_bench():
    bench = load('bench_convnet_cpu.json')
    if bench is None:
        return MISSING
    return markdown_table(
        ['memory format', 'Adam', 'threads', 'training images/s (median)', 'all rounds'],
        [['channels_last' if r['channels_last'] else 'NCHW', r['adam'], r['threads'], f"{r['median_images_per_s']:.1f}",
          ', '.join(f'{v:.0f}' for v in r['all'])] for r in bench['rows']])


MLP_VS_CNN = [('MLP 3072-100-10, assignment defaults (SGD, 1400 steps of 200)', 'mlp_pytorch_default'),
              ("MLP 3072-100-10, the ConvNet's defaults (Adam 1e-4, 5000 steps of 32)", 'mlp_convnet_recipe'),
              ('MLP 1024-1024, --preset best (60 epochs)', 'mlp_pytorch_best'),
              ('ConvNet Table 1, defaults (Adam 1e-4, 5000 steps of 32)', 'convnet_vgg_default'),
              ('ConvNet Table 1, --preset cpu (4 epochs)', 'convnet_vgg_preset_cpu')]


def table_mlp_vs_cnn():
    rows = []
    for label, run in MLP_VS_CNN:
        record = load(os.path.join(run, 'history.json'))
        if record is not None:
            model = network_of(record)
            rows.append([label, f"{record['summary']['final_test_accuracy']:.4f}",
                         f'{n_parameters(model):,}', f'{macs_per_image(model) / 1e6:,.1f} M',
                         f"{record['summary']['steps'] * record['config']['batch_size'] / 50000:.1f}"])
    return markdown_table(['network, recipe', 'final test acc', 'parameters', 'multiply-adds per image',
                           'epochs'], rows) if rows else MISSING


def table_experiment(module):
    rows = module.collect_rows()
    return module.table(rows) if rows else MISSING


TABLES = {
    'mlp_runs': lambda: table_runs(MLP_RUNS),
    'convnet_runs': lambda: table_runs(CONVNET_RUNS),
    'layernorm_bench': table_layernorm_bench,
    'convnet_cpu_bench': table_convnet_cpu_bench,
    'mlp_sweep': lambda: table_experiment(mlp_sweep),
    'norm_batch_size': lambda: table_experiment(norm_batch_size),
    'mlp_vs_cnn': table_mlp_vs_cnn,
}


def readme_results():
    """The README's results table: headline numbers, each with the command behind it."""
    def v(path, key, fmt=''):
        return value(f'{path}:{key}:{fmt}' if fmt else f'{path}:{key}')

    def run(name, key, fmt='.4f'):
        return v(f'{name}/history.json', f'summary.{key}', fmt)

    rows = [
        ('NumPy MLP, defaults: final (best) test accuracy',
         f"{run('mlp_numpy_default', 'final_test_accuracy')} ({run('mlp_numpy_default', 'best_test_accuracy')})",
         MLP_RUNS[0][2]),
        ('NumPy MLP default run, 1400 steps + 14 test evaluations: time (median); share of sgemm peak',
         f"{v('bench_mlp_numpy.json', 'median_time_s', '.2f')} s; {v('bench_mlp_numpy.json', 'median_fraction_of_peak', '.0%')}",
         f'python -m benchmarks.bench_mlp_numpy {DATA} --json runs/bench_mlp_numpy.json'),
        ('Loading all six batch files into float32, with the safe unpickler, checks and MD5 fingerprint '
         '(median); × the plain-pickle loader it replaced (median within-round ratio)',
         f"{v('bench_load.json', 'median_s.this checkout', '.2f')} s; "
         f"{v('bench_load.json', 'median_round_ratio', '.2f')}×",
         f'git worktree add ../before e52992d; python -m benchmarks.bench_load {DATA} --compare_with ../before '
         '--repeats 15 --json runs/bench_load.json'),
        ('PyTorch MLP, defaults: final (best) test accuracy',
         f"{run('mlp_pytorch_default', 'final_test_accuracy')} ({run('mlp_pytorch_default', 'best_test_accuracy')})",
         MLP_RUNS[1][2]),
        ('PyTorch / NumPy default-run time (medians of alternating rounds, each run in a fresh process); '
         'median ratio within a round; rounds PyTorch was faster',
         f"{v('bench_mlp_numpy_vs_pytorch.json', 'ratio_pytorch_to_numpy', '.2f')} "
         f"({v('bench_mlp_numpy_vs_pytorch.json', 'median_time_s.pytorch', '.2f')} s / "
         f"{v('bench_mlp_numpy_vs_pytorch.json', 'median_time_s.numpy', '.2f')} s); "
         f"{v('bench_mlp_numpy_vs_pytorch.json', 'median_round_ratio_pytorch_to_numpy', '.2f')}; "
         f"{v('bench_mlp_numpy_vs_pytorch.json', 'rounds_pytorch_faster')} of {v('bench_mlp_numpy_vs_pytorch.json', 'repeats')}",
         f"python -m benchmarks.bench_mlp_numpy_vs_pytorch {DATA} --repeats {v('bench_mlp_numpy_vs_pytorch.json', 'repeats')} "
         '--json runs/bench_mlp_numpy_vs_pytorch.json'),
        ('PyTorch MLP, --preset best: final (best) test accuracy; wall time',
         f"{run('mlp_pytorch_best', 'final_test_accuracy')} ({run('mlp_pytorch_best', 'best_test_accuracy')}); "
         f"{v('mlp_pytorch_best/history.json', 'summary.time_s', '.0f')} s", MLP_RUNS[2][2]),
        ('Manual LayerNorm module, forward+backward, CPU float32: × F.layer_norm and × the autograd module '
         '(128×1024; 1024×4096)',
         f"{v('bench_layernorm.json', 'rows.1.vs_F_layer_norm', '.2f')}× and "
         f"{v('bench_layernorm.json', 'rows.1.vs_autograd', '.2f')}×; "
         f"{v('bench_layernorm.json', 'rows.4.vs_F_layer_norm', '.2f')}× and "
         f"{v('bench_layernorm.json', 'rows.4.vs_autograd', '.2f')}×",
         'python -m benchmarks.bench_layernorm --json runs/bench_layernorm.json'),
    ]
    rows.append(('Transfer pipeline, ResNet-18 from random weights (--weights none), 400 steps of 64 on 2-core CPU: '
                 'test accuracy; wall time; train images/s',
                 f"{run('transfer_resnet18_scratch', 'final_test_accuracy')}; "
                 f"{v('transfer_resnet18_scratch/history.json', 'summary.time_s', '.0f')} s; "
                 f"{v('transfer_resnet18_scratch/history.json', 'summary.train_images_per_s', '.0f')}",
                 f'python train_transfer.py --weights none --max_steps 400 --batch_size 64 --eval_freq 200 {DATA} '
                 '--output_dir runs/transfer_resnet18_scratch'))
    for label, run_name, command in CONVNET_RUNS:
        record = load(os.path.join(run_name, 'history.json'))
        where = f' on {machine(record)}' if record else ''
        rows.append((f'ConvNet {label}{where}: final (best) test accuracy; wall time; train images/s',
                     f"{run(run_name, 'final_test_accuracy')} ({run(run_name, 'best_test_accuracy')}); "
                     f"{v(f'{run_name}/history.json', 'summary.time_s', '.0f')} s; "
                     f"{v(f'{run_name}/history.json', 'summary.train_images_per_s', '.0f')}", command))
    return markdown_table(['what', 'result', 'command'], [[label, result, f'`{command}`'] for label, result, command in rows])


README = os.path.join(ROOT, 'README.md')
README_BLOCK = re.compile(r'(<!-- results: generated by make_report.py -->\n)(?:.*?\n)?(<!-- end of results -->)', re.S)


def render_readme():
    text = pathlib.Path(README).read_text()
    return README_BLOCK.sub(lambda m: m.group(1) + readme_results() + '\n' + m.group(2), text)


# --------------------------------------------------------------------------- rendering

def render(draw_figures=False):
    template = pathlib.Path(TEMPLATE).read_text()

    def fill(match):
        kind, spec = match.groups()
        if kind == 'value':
            return value(spec)
        if kind == 'table':
            return TABLES[spec]()
        return figure(spec, draw_figures)

    notice = '<!-- generated by make_report.py from docs/report_template.md and docs/results/; do not edit -->\n'
    return notice + PLACEHOLDER.sub(fill, template)


def main(argv=None):
    try:
        build(argv)
    except BadRecord as err:
        sys.exit(f'make_report.py: error: {err}')


def build(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--check', action='store_true', help='only compare docs/report.md with the records')
    args = parser.parse_args(argv)
    if args.check:
        stale = [os.path.relpath(path, ROOT) for path, text in ((README, render_readme()), (REPORT, render()))
                 if not os.path.isfile(path) or pathlib.Path(path).read_text() != text]
        if stale:
            sys.exit(f"{' and '.join(stale)} differ{'s' if len(stale) == 1 else ''} from what the records give: "
                     'run python make_report.py')
        print('README.md and docs/report.md match the records')
        return
    text = render(draw_figures=True)
    with open(REPORT, 'w') as f:
        f.write(text)
    readme = render_readme()
    with open(README, 'w') as f:
        f.write(readme)
    rows = norm_batch_size.collect_rows()
    if rows:
        norm_batch_size.plot(rows, os.path.join(DOCS, 'norm_batch_size.png'))
    tanh_saturation.plot_curves_side_by_side(os.path.join(DOCS, 'tanh_vs_elu.png'))
    print(f'wrote {os.path.relpath(REPORT, ROOT)}')


if __name__ == '__main__':
    main()
