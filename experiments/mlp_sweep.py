"""Question 2.1's list of modifications, from real runs: one change at a time from the
default PyTorch MLP, then combinations of what helped, up to the best configuration.

    python experiments/mlp_sweep.py --data_dir ../shared/cifar10/cifar-10-batches-py --list
    python experiments/mlp_sweep.py --data_dir ... --group single        # one change at a time
    python experiments/mlp_sweep.py --data_dir ... --only tanh,relu      # some experiments
    python experiments/mlp_sweep.py --table                              # rebuild the table only

Each experiment's record goes to docs/results/mlp_sweep/<name>/ (history.json, CSVs,
curves.png); an experiment whose record exists with the same settings is skipped, so
the sweep resumes where it stopped and can run in parts. The table, generated from
those records, goes to docs/mlp_sweep.md and docs/results/mlp_sweep.json.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cifar10_utils  # noqa: E402
import train_mlp_pytorch  # noqa: E402
from experiments.records import is_done, load_record, run_mlp  # noqa: E402
from training_utils import hidden_units  # noqa: E402

RECORDS = os.path.join(ROOT, 'docs', 'results', 'mlp_sweep')
TABLE_MD = os.path.join(ROOT, 'docs', 'mlp_sweep.md')
TABLE_JSON = os.path.join(ROOT, 'docs', 'results', 'mlp_sweep.json')

LONG = dict(batch_size=256, eval_freq=1000)  # the combinations train for epochs, with fewer evaluations
# what the last combinations share: everything that had helped up to +onecycle_ls_gelu
RECIPE = dict(optimizer='adamw', weight_decay=0.05, dropout=0.1, init='kaiming', norm='batchnorm', activation='gelu',
              augment=True, scheduler='onecycle', label_smoothing=0.1)
# The last row is the README's `train_mlp_pytorch.py --preset best` run, recorded once where that command writes it.
ELSEWHERE = {'best': (os.path.join(ROOT, 'docs', 'results'), 'mlp_pytorch_best')}


def location(name):
    """(records folder, run name) of an experiment's record."""
    return ELSEWHERE.get(name, (RECORDS, name))


# (name, group, why, changes from train_mlp_pytorch.train's defaults)
EXPERIMENTS = [
    ('default', 'single', 'the assignment network and training (as the NumPy MLP)', {}),
    # activation (Q2.2: tanh against ELU)
    ('tanh', 'single', 'Q2.2: saturating activation', dict(activation='tanh')),
    ('relu', 'single', 'cheaper non-saturating activation', dict(activation='relu')),
    ('gelu', 'single', 'smooth activation used by modern MLPs', dict(activation='gelu')),
    # optimisation
    ('lr_1e-2', 'single', 'the default learning rate looks too small for the 1e-4 init', dict(learning_rate=1e-2)),
    ('lr_2e-3', 'single', 'a smaller step up of the learning rate', dict(learning_rate=2e-3)),
    ('momentum', 'single', 'SGD with momentum 0.9', dict(optimizer='momentum')),
    ('adam', 'single', 'adaptive steps', dict(optimizer='adam')),
    ('steps_10k', 'single', 'is 1400 steps (5.6 epochs) too short?', dict(max_steps=10000, eval_freq=500)),
    ('batch_64', 'single', 'more, noisier updates in the same number of epochs', dict(batch_size=64, max_steps=4375)),
    ('cosine', 'single', 'learning rate annealed to 0', dict(scheduler='cosine')),
    # initialisation and architecture
    ('kaiming_init', 'single', 'He init instead of N(0, 1e-4): no vanishing start', dict(init='kaiming')),
    ('wide_1000', 'single', 'more hidden units', dict(dnn_hidden_units=[1000])),
    ('deep_3x500', 'single', 'more layers', dict(dnn_hidden_units=[500, 500, 500])),
    ('batchnorm', 'single', 'normalised pre-activations', dict(norm='batchnorm')),
    ('layernorm', 'single', 'per-sample normalisation', dict(norm='layernorm')),
    # regularisation
    ('dropout_0.2', 'single', 'regularisation', dict(dropout=0.2)),
    ('weight_decay', 'single', 'L2 regularisation', dict(weight_decay=5e-4)),
    ('label_smoothing', 'single', 'softer targets', dict(label_smoothing=0.1)),
    ('augment', 'single', 'random crops and flips', dict(augment=True)),
    ('zca', 'single', 'ZCA-whitened pixels: decorrelated inputs are easier for an MLP', dict(zca_eps=0.1)),
    # combinations: each adds what helped, or what the previous one needs
    ('adam_kaiming_bn', 'combo', 'fast optimisation: Adam, He init, BatchNorm, wider and deeper',
     dict(optimizer='adam', init='kaiming', norm='batchnorm', dnn_hidden_units=[1024, 512], epochs=10, **LONG)),
    ('+dropout_wd', 'combo', 'the net now overfits: dropout and AdamW weight decay',
     dict(optimizer='adamw', weight_decay=0.05, dropout=0.2, init='kaiming', norm='batchnorm',
          dnn_hidden_units=[1024, 512], epochs=10, **LONG)),
    ('+augment', 'combo', 'crops and flips let it train longer without overfitting',
     dict(optimizer='adamw', weight_decay=0.05, dropout=0.1, init='kaiming', norm='batchnorm',
          dnn_hidden_units=[1024, 512], augment=True, epochs=20, **LONG)),
    ('+onecycle_ls_gelu', 'combo', 'one-cycle schedule, label smoothing, GELU',
     dict(RECIPE, dnn_hidden_units=[1024, 512], epochs=20, **LONG)),
    ('+wider_40ep', 'combo', 'a wider 1024-1024 net, twice as long (the first --preset best, before ZCA)',
     dict(RECIPE, dnn_hidden_units=[1024, 1024], epochs=40, **LONG)),
    ('+zca', 'combo', 'ZCA-whitened inputs, on the 1024-512 net of +onecycle_ls_gelu',
     dict(RECIPE, dnn_hidden_units=[1024, 512], zca_eps=0.1, epochs=20, **LONG)),
    ('best', 'combo', "train_mlp_pytorch.py --preset best", dict(train_mlp_pytorch.PRESETS['best'])),
]


def normalized(changes):
    """The changes as the records store them: hidden units as a list of ints."""
    changes = dict(changes)
    if isinstance(changes.get('dnn_hidden_units'), str):
        changes['dnn_hidden_units'] = hidden_units(changes['dnn_hidden_units'])
    return changes


def describe(changes):
    if not changes:
        return 'none (defaults)'
    return ', '.join(f'{key}={",".join(map(str, value)) if isinstance(value, list) else value}'
                     for key, value in changes.items())


def collect_rows():
    """One row per experiment that has a record, in EXPERIMENTS order."""
    rows = []
    for name, group, why, changes in EXPERIMENTS:
        record = load_record(*location(name))
        if record is None:
            continue
        s = record['summary']
        rows.append(dict(name=name, group=group, why=why, changes=describe(normalized(changes)),
                         final_test_accuracy=s['final_test_accuracy'], best_test_accuracy=s['best_test_accuracy'],
                         steps=s['steps'], time_s=s['time_s'], seed=record['config']['seed'], status=s['status']))
    return rows


def markdown_table(rows):
    default = next((r['final_test_accuracy'] for r in rows if r['name'] == 'default'), None)
    lines = ['| experiment | group | changes from the default | why | final test acc | Δ vs default '
             '| best test acc | steps | wall time (s) | seed |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        status = '' if r['status'] == 'completed' else f" ({r['status']})"
        if r['final_test_accuracy'] is None:  # stopped before its first evaluation
            final, delta, best = f"—{status}", '', '—'
        else:
            final, best = f"{r['final_test_accuracy']:.4f}{status}", f"{r['best_test_accuracy']:.4f}"
            delta = f"{r['final_test_accuracy'] - default:+.4f}" if default is not None else ''
        lines.append(f"| {r['name']} | {r['group']} | {r['changes']} | {r['why']} | {final} | {delta} | {best} "
                     f"| {r['steps']} | {r['time_s']:.1f} | {r['seed']} |")
    return '\n'.join(lines)


def write_table():
    rows = collect_rows()
    with open(TABLE_JSON, 'w') as f:
        json.dump(rows, f, indent=1)
    header = ['# PyTorch MLP: modifications tried (question 2.1)', '',
              'Generated by `python experiments/mlp_sweep.py --table` from the run records in',
              '`docs/results/mlp_sweep/*/history.json`; each row is one real run of',
              '`train_mlp_pytorch.train` on CIFAR-10 (JPEG-75 copy), CPU, 2 cores, seed as listed.',
              '"single" rows change one thing from the default run; "combo" rows combine changes.',
              'Wall time covers all steps and test evaluations.', '']
    with open(TABLE_MD, 'w') as f:
        f.write('\n'.join(header) + '\n' + markdown_table(rows) + '\n')
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--data_dir', default=cifar10_utils.CIFAR10_FOLDER)
    parser.add_argument('--group', choices=['single', 'combo', 'all'], default='all')
    parser.add_argument('--only', default=None, help='comma-separated experiment names')
    parser.add_argument('--list', action='store_true', help='list the experiments and whether they are done')
    parser.add_argument('--table', action='store_true', help='only rebuild the table from the records')
    parser.add_argument('--rerun', action='store_true', help='run even if a matching record exists')
    args = parser.parse_args()

    names = {e[0] for e in EXPERIMENTS}
    only = set(args.only.split(',')) if args.only else None
    if only and only - names:
        parser.error(f"unknown experiments: {', '.join(sorted(only - names))}; see --list")
    todo = [e for e in EXPERIMENTS if (args.group in ('all', e[1])) and (only is None or e[0] in only)]
    if args.list:
        for name, group, why, changes in EXPERIMENTS:
            done = 'done' if is_done(*location(name), normalized(changes)) else 'todo'
            print(f'{name:20s} {group:7s} {done:5s} {describe(normalized(changes))}')
        return
    if not args.table:
        data = cifar10_utils.get_cifar10(args.data_dir)
        for name, group, why, changes in todo:
            run_mlp(*location(name), normalized(changes), data, args.rerun)
            write_table()
    rows = write_table()
    print(f'{len(rows)} rows in {os.path.relpath(TABLE_MD, ROOT)}')


if __name__ == '__main__':
    main()
