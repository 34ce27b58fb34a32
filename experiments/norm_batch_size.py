"""Question 3.2 d), measured: an MLP with BatchNorm against the same MLP with (our manual)
LayerNorm, trained at batch sizes 2, 8, 32, 128 and 512 for the same number of epochs.

    python -m experiments.norm_batch_size --data_dir ../shared/cifar10/cifar-10-batches-py

Records go to docs/results/norm_batch_size/<norm>_bs<batch>/ (resumable, as the MLP
sweep); `python make_report.py` builds the table of docs/report.md from them.
"""
import os

import cifar10_utils
from cli_utils import run_cli
from experiments.records import RESULTS, experiment_parser, load_record, markdown_table, run_once

RECORDS = os.path.join(RESULTS, 'norm_batch_size')

BATCH_SIZES = [2, 8, 32, 128, 512]
NORMS = {'batchnorm': 'BatchNorm', 'custom_layernorm': 'LayerNorm (ours)'}
EPOCHS = 3
# the same MLP and optimiser for every cell; only the normalization and the batch size change
BASE = dict(dnn_hidden_units=[512, 512], activation='relu', init='kaiming', optimizer='adam', learning_rate=1e-3)


def name_of(norm, batch_size):
    return f'{norm}_bs{batch_size}'


def changes_for(norm, batch_size, n_train):
    steps_per_epoch = n_train // batch_size
    return dict(BASE, norm=norm, batch_size=batch_size, max_steps=EPOCHS * steps_per_epoch,
                eval_freq=steps_per_epoch)


def collect_rows():
    rows = []
    for norm in NORMS:
        for batch_size in BATCH_SIZES:
            record = load_record(RECORDS, name_of(norm, batch_size))
            if record is None:
                continue
            s = record['summary']
            rows.append(dict(norm=norm, batch_size=batch_size, steps=s['steps'],
                             final_test_accuracy=s['final_test_accuracy'], best_test_accuracy=s['best_test_accuracy'],
                             final_test_loss=s['final_test_loss'], time_s=s['time_s'], seed=record['config']['seed'],
                             status=s['status']))
    return rows


def table(rows):
    """Final / best test accuracy and time of each normalization at each batch size."""
    cells = []
    for batch_size in BATCH_SIZES:
        found = {r['norm']: r for r in rows if r['batch_size'] == batch_size}
        if found:
            accs = [f"{found[n]['final_test_accuracy']:.4f} / {found[n]['best_test_accuracy']:.4f}" if n in found
                    else '—' for n in NORMS]
            times = [f"{found[n]['time_s']:.0f}" if n in found else '—' for n in NORMS]
            cells.append([batch_size, next(iter(found.values()))['steps'], *accs, *times])
    return markdown_table(['batch size', 'steps', *(f'{label}: final / best test acc' for label in NORMS.values()),
                           *(f'{label}: time (s)' for label in NORMS.values())], cells)


def main():
    parser = experiment_parser(__doc__)
    parser.add_argument('--norm', choices=sorted(NORMS), default=None, help='run only this normalization')
    parser.add_argument('--rerun', action='store_true')
    args = parser.parse_args()
    data = cifar10_utils.get_cifar10(args.data_dir)
    for batch_size in BATCH_SIZES:
        for norm in [args.norm] if args.norm else NORMS:
            run_once(RECORDS, name_of(norm, batch_size), changes_for(norm, batch_size, data['train'].num_examples),
                    data, args.rerun)
    print(f'{len(collect_rows())} runs recorded; python make_report.py puts them into docs/report.md')


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
