"""How far a run's accuracy moves with its seed alone: the headline configurations trained again with other
seeds (the noise the sweep's differences are judged against, and the spread beside a cross-machine change).

    python -m experiments.seeds --data_dir ../shared/cifar10/cifar-10-batches-py
    python -m experiments.seeds --data_dir ... --only mlp_numpy_default,mlp_pytorch_default

Seed 42's record is the headline one (docs/results/<run>/, as the README's command writes it), the other
seeds' go to docs/results/seeds/<run>/seed_<seed>/; a run whose record exists with its settings is skipped.
"""

import cifar10_utils
import train_convnet_pytorch
import train_mlp_numpy
import train_mlp_pytorch
from cli_utils import run_cli
from experiments.records import (
    comma_separated,
    experiment_parser,
    has_ended,
    load_record,
    markdown_table,
    run_once,
    seed_location,
    spread,
)

# headline run: (what it is, its script, its settings, the seeds)
STUDIES = {
    'mlp_numpy_default': ('NumPy MLP, defaults', train_mlp_numpy, {}, (42, 43, 44, 45, 46)),
    'mlp_pytorch_default': ('PyTorch MLP, defaults', train_mlp_pytorch, {}, (42, 43, 44, 45, 46)),
    'mlp_pytorch_best': ('PyTorch MLP, --preset best', train_mlp_pytorch, train_mlp_pytorch.PRESETS['best'],
                         (42, 43, 44)),
    'convnet_vgg_default': ('ConvNet Table 1, defaults', train_convnet_pytorch, {}, (42, 43, 44)),
    'convnet_preact_default': ('ConvNet pre-activation, defaults', train_convnet_pytorch, {'arch': 'preact'},
                               (42, 43, 44)),
}


def collect_rows():
    """Per study: its final test accuracies over the seeds whose runs have ended (a run still going, stopped or
    failed is no result yet), and their mean and spread."""
    rows = []
    for run, (label, _, _, seeds) in STUDIES.items():
        found = {seed: record for seed in seeds if has_ended(record := load_record(*seed_location(run, seed)))}
        accuracies = [record['summary']['final_test_accuracy'] for record in found.values()]
        if accuracies:
            mean, std = spread(accuracies)
            rows.append(dict(run=run, label=label, seeds=list(found), n=len(found), accuracies=accuracies, mean=mean,
                             std=std, low=min(accuracies), high=max(accuracies)))
    return rows


def table(rows):
    return markdown_table(['configuration', 'seeds', 'final test acc: mean ± std', 'lowest, highest'],
                          [[r['label'], f"{r['seeds'][0]}-{r['seeds'][-1]}",
                            f"{r['mean']:.4f}" + ('' if r['std'] is None else f" ± {r['std']:.4f}"),
                            f"{r['low']:.4f}, {r['high']:.4f}"] for r in rows])


def main():
    parser = experiment_parser(__doc__)
    parser.add_argument('--only', type=comma_separated(STUDIES), default=list(STUDIES),
                        help='comma-separated headline runs')
    parser.add_argument('--rerun', action='store_true', help='run even if a matching record exists')
    args = parser.parse_args()
    data = cifar10_utils.get_cifar10(args.data_dir)
    for run in args.only:
        _, script, settings, seeds = STUDIES[run]
        for seed in seeds:
            run_once(*seed_location(run, seed), dict(settings, seed=seed), data, args.rerun, script=script)
    for row in collect_rows():
        print(f"{row['label']}: {row['mean']:.4f} ± {row['std'] or 0:.4f} over seeds {row['seeds']}")


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
