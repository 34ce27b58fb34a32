"""Question 2.1's list of modifications, from real runs: one change at a time from the
default PyTorch MLP, then combinations of what helped, up to the best configuration.

    python -m experiments.mlp_sweep --data_dir ../shared/cifar10/cifar-10-batches-py --list
    python -m experiments.mlp_sweep --data_dir ... --group single        # one change at a time
    python -m experiments.mlp_sweep --data_dir ... --only tanh,relu      # some experiments

Each experiment runs with seeds 42, 43 and 44: seed 42's record goes to docs/results/mlp_sweep/<name>/,
the others' to <name>/seed_<seed>/ (history.json, curves.png); a run whose record exists with the same
settings is skipped, so the sweep resumes where it stopped and can run in parts. `python make_report.py`
builds the table of docs/report.md from those records: each row's mean and spread over its seeds, and
its difference from the row it changes, called an effect only where it exceeds twice its standard error.
"""
import math
import os

from scipy import stats

import cifar10_utils
import train_mlp_pytorch
from cli_utils import SEED_MAX, number, run_cli
from experiments.records import (
    RESULTS,
    comma_separated,
    experiment_parser,
    is_done,
    load_record,
    markdown_table,
    run_once,
    seed_location,
    spread,
)

RECORDS = os.path.join(RESULTS, 'mlp_sweep')

LONG = dict(batch_size=256, eval_freq=1000)  # the combinations train for epochs, with fewer evaluations
# what the last combinations share: everything that had helped up to +onecycle_ls_gelu
RECIPE = dict(optimizer='adamw', weight_decay=0.05, dropout=0.1, init='kaiming', norm='batchnorm', activation='gelu',
              augment=True, scheduler='onecycle', label_smoothing=0.1)
SEEDS = (42, 43, 44)
ALPHA = 0.05  # an effect: a difference that no-effect rows show by chance in 5% of cases (Welch's t-test)
# The last row is the README's `train_mlp_pytorch.py --preset best` run, recorded once where that command writes it
# (seed 42), its other seeds with the seed study's (experiments/records.py, seed_location).
ELSEWHERE = {'best': 'mlp_pytorch_best'}


def location(name, seed=SEEDS[0]):
    """(records folder, run name) of an experiment's record with `seed` (42, the scripts' default, is the headline)."""
    if name in ELSEWHERE:
        return seed_location(ELSEWHERE[name], seed)
    return RECORDS, name if seed == SEEDS[0] else f'{name}/seed_{seed}'


# (name, group, the change in one line, settings that differ from train_mlp_pytorch.py's defaults)
EXPERIMENTS = [
    ('default', 'single', 'the assignment\'s MLP and SGD', {}),
    # activation (Q2.2: tanh against ELU)
    ('tanh', 'single', 'Tanh instead of ELU', dict(activation='tanh')),
    ('relu', 'single', 'ReLU instead of ELU', dict(activation='relu')),
    ('gelu', 'single', 'GELU instead of ELU', dict(activation='gelu')),
    # optimisation
    ('lr_1e-2', 'single', 'learning rate 1e-2', dict(learning_rate=1e-2)),
    ('lr_2e-3', 'single', 'learning rate 2e-3', dict(learning_rate=2e-3)),
    ('momentum', 'single', 'SGD with momentum 0.9', dict(optimizer='momentum')),
    ('adam', 'single', 'Adam', dict(optimizer='adam')),
    ('steps_10k', 'single', '10,000 steps, not 1400', dict(max_steps=10000, eval_freq=500)),
    ('batch_64', 'single', 'batch 64, same epochs', dict(batch_size=64, max_steps=4375)),
    ('cosine', 'single', 'cosine schedule', dict(scheduler='cosine')),
    # initialisation and architecture
    ('kaiming_init', 'single', 'He init, not std 1e-4', dict(init='kaiming')),
    ('wide_1000', 'single', '1000 hidden units', dict(dnn_hidden_units=[1000])),
    ('deep_3x500', 'single', '3 hidden layers of 500', dict(dnn_hidden_units=[500, 500, 500])),
    ('batchnorm', 'single', 'BatchNorm', dict(norm='batchnorm')),
    ('layernorm', 'single', 'LayerNorm', dict(norm='layernorm')),
    # regularisation
    ('dropout_0.2', 'single', 'dropout 0.2', dict(dropout=0.2)),
    ('weight_decay', 'single', 'weight decay 5e-4', dict(weight_decay=5e-4)),
    ('label_smoothing', 'single', 'label smoothing 0.1', dict(label_smoothing=0.1)),
    ('augment', 'single', 'random crops and flips', dict(augment=True)),
    ('zca', 'single', 'ZCA-whitened inputs', dict(zca_eps=0.1)),
    # combinations: each adds what helped, or what the previous one needs
    ('adam_kaiming_bn', 'combo', 'Adam, He, BatchNorm, 1024-512, 10 epochs',
     dict(optimizer='adam', init='kaiming', norm='batchnorm', dnn_hidden_units=[1024, 512], epochs=10, **LONG)),
    ('+dropout_wd', 'combo', 'AdamW, weight decay 0.05, dropout 0.2',
     dict(optimizer='adamw', weight_decay=0.05, dropout=0.2, init='kaiming', norm='batchnorm',
          dnn_hidden_units=[1024, 512], epochs=10, **LONG)),
    ('+augment', 'combo', 'crops, flips, dropout 0.1, 20 epochs',
     dict(optimizer='adamw', weight_decay=0.05, dropout=0.1, init='kaiming', norm='batchnorm',
          dnn_hidden_units=[1024, 512], augment=True, epochs=20, **LONG)),
    ('+onecycle_ls_gelu', 'combo', 'one-cycle, label smoothing 0.1, GELU',
     dict(RECIPE, dnn_hidden_units=[1024, 512], epochs=20, **LONG)),
    ('+wider_40ep', 'combo', 'a 1024-1024 net, 40 epochs',
     dict(RECIPE, dnn_hidden_units=[1024, 1024], epochs=40, **LONG)),
    ('+zca', 'combo', 'ZCA (1024-512 net, 20 epochs)',
     dict(RECIPE, dnn_hidden_units=[1024, 512], zca_eps=0.1, epochs=20, **LONG)),
    ('best', 'combo', 'ZCA, 1024-1024, 60 epochs', dict(train_mlp_pytorch.PRESETS['best'])),
]


# a combination is measured against the combination before it, except where it branches off an earlier one
BASES = {'+zca': '+onecycle_ls_gelu', 'best': '+wider_40ep'}  # the table names them


def describe(changes):
    if not changes:
        return 'none (defaults)'
    return ', '.join(f'{key}={",".join(map(str, value)) if isinstance(value, list) else value}'
                     for key, value in changes.items())


def collect_rows():
    """One row per experiment that has records, in EXPERIMENTS order, with its final test accuracies over
    its seeds, and the row it is measured against: the default for a single change, the previous
    combination (or its BASES entry) for a combination."""
    rows, base = [], None
    for name, group, change, changes in EXPERIMENTS:
        records = [record for seed in SEEDS if (record := load_record(*location(name, seed))) is not None]
        if not records:
            continue
        diverged = sum(r['summary']['status'] == 'diverged' for r in records)
        rows.append(dict(name=name, group=group, change=change, settings=describe(changes),
                         accuracies=[r['summary']['final_test_accuracy'] for r in records  # a diverged run has none
                                     if r['summary']['status'] == 'completed'],
                         seeds=[r['config']['seed'] for r in records],
                         status=f'diverged ({diverged}/{len(records)})' if diverged else 'completed',
                         base=BASES.get(name, base) if group == 'combo' else ('default' if name != 'default' else None)))
        if name == 'default' or group == 'combo':
            base = name
    return rows


def effect(row, base):
    """(difference of the means, its standard error, Welch's two-sided p-value) of a row against its base row,
    the p-value from the t distribution with Welch's degrees of freedom (2 to 4 for 3 seeds a side); an effect
    is p < ALPHA. (None, None) in place of the last two when either row has a single seed."""
    (mean, std), (base_mean, base_std) = spread(row['accuracies']), spread(base['accuracies'])
    if std is None or base_std is None:
        return mean - base_mean, None, None
    a, b = std ** 2 / len(row['accuracies']), base_std ** 2 / len(base['accuracies'])
    error = math.sqrt(a + b)
    if error == 0:  # every seed of both rows alike (e.g. all at chance)
        return mean - base_mean, error, 0.0 if mean != base_mean else 1.0
    df = (a + b) ** 2 / (a ** 2 / (len(row['accuracies']) - 1) + b ** 2 / (len(base['accuracies']) - 1))
    return mean - base_mean, error, float(2 * stats.t.sf(abs(mean - base_mean) / error, df))


def effect_over_base(row, by_name):
    """effect(row, its base row) from rows by name, or None while either has no accuracies (or it has no base)."""
    base = by_name.get(row['base'])
    return effect(row, base) if row['accuracies'] and base and base['accuracies'] else None


def table(rows):
    """The report's table (one line a row, to fit the page; the changes are in the text): experiment, final test
    accuracy over the seeds (mean ± standard deviation), the difference from its base row, the verdict."""
    by_name, cells, previous = {r['name']: r for r in rows}, [], None
    for r in rows:
        if r['accuracies']:
            mean, std = spread(r['accuracies'])
            final = f'{mean:.4f}' + (f' ± {std:.4f}' if std is not None else '') + (
                f" ({len(r['accuracies'])})" if len(r['accuracies']) != len(SEEDS) else '')  # the seeds that ended
        else:
            final = '—'
        final += '' if r['status'] == 'completed' else f" {r['status']}"
        delta = verdict = ''
        judged = effect_over_base(r, by_name)
        if judged:
            difference, _, p = judged
            usual = r['base'] == ('default' if r['group'] == 'single' else previous)  # else: name the base
            delta = f'{difference:+.4f}' + ('' if usual else f" vs {r['base']}")
            if p is not None:
                verdict = f"{'effect' if p < ALPHA else 'noise'}, p {'< 0.01' if p < 0.005 else f'= {p:.2f}'}"
        previous = r['name']
        folder = os.path.relpath(os.path.join(*location(r['name'])), os.path.dirname(RESULTS))
        cells.append([f"[{r['name']}]({folder}/history.json)", final, delta, verdict])
    return markdown_table(['experiment', 'final test acc', 'Δ mean', 'judged (Welch)'], cells)


def main():
    parser = experiment_parser(__doc__)
    parser.add_argument('--group', choices=['single', 'combo', 'all'], default='all')
    parser.add_argument('--only', type=comma_separated([e[0] for e in EXPERIMENTS]),
                        help='comma-separated experiment names')
    parser.add_argument('--list', action='store_true', help='list the experiments and whether they are done')
    parser.add_argument('--rerun', action='store_true', help='run even if a matching record exists')
    parser.add_argument('--seeds', type=comma_separated(kind=number(int, lambda n: 0 <= n <= SEED_MAX, 'a seed')),
                        default=list(SEEDS), help='comma-separated seeds of every row')
    args = parser.parse_args()
    seeds, only = args.seeds, set(args.only) if args.only else None
    todo = [e for e in EXPERIMENTS if (args.group in ('all', e[1])) and (only is None or e[0] in only)]
    if args.list:
        for name, group, _, changes in EXPERIMENTS:
            done = sum(is_done(*location(name, seed), dict(changes, seed=seed)) for seed in seeds)
            print(f'{name:20s} {group:7s} {done}/{len(seeds)} seeds done  {describe(changes)}')
        return
    data = cifar10_utils.get_cifar10(args.data_dir)
    for name, _, _, changes in todo:
        for seed in seeds:
            run_once(*location(name, seed), dict(changes, seed=seed), data, args.rerun)
    print(f'{len(collect_rows())} experiments recorded; python make_report.py puts them into docs/report.md')


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
