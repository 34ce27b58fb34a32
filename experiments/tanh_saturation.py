"""Question 2.2, measured: how many hidden units of the default MLP sit where their activation
is nearly flat after training, with Tanh and with ELU.

    python -m experiments.tanh_saturation --data_dir ../shared/cifar10/cifar-10-batches-py

Trains the default PyTorch MLP (1 x 100, SGD, 1400 steps, seed 42) with each activation, exactly the
sweep's runs mlp_sweep/tanh and mlp_sweep/default (the same settings and seed give the same record, bit
for bit, which is checked), then loads each run's final weights and measures the hidden pre-activations
x on the test images: the share with |x| > 2,
where tanh'(x) = 1 - tanh(x)^2 < 0.071 (both sides are flat for Tanh), the share with
x < -2, where ELU'(x) = e^x < 0.135 (ELU is flat on its negative side only), and the
median |x|. Writes docs/results/tanh_saturation.json.
"""
import os
import tempfile

import torch
from matplotlib.figure import Figure

import cifar10_utils
import train_mlp_pytorch
from cli_utils import run_cli
from experiments.records import RESULTS, experiment_parser, load_record, write_json
from mlp_pytorch import MLP
from run_records import draw_curves

FLAT_BEYOND = 2.0  # beyond |x| = 2 tanh passes back less than a tenth of the gradient, ELU (x < -2) less than 0.14


def first_layer_preactivations(model, images):
    """Hidden pre-activations [N, n_hidden] of the first layer."""
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        return first(torch.from_numpy(images.reshape(len(images), -1)))


def saturation(pre):
    """Shares of pre-activations in each activation's flat region, and their median magnitude."""
    return {'share_beyond_2': round(float((pre.abs() > FLAT_BEYOND).float().mean()), 4),
            'share_below_minus_2': round(float((pre < -FLAT_BEYOND).float().mean()), 4),
            'median_abs_preactivation': round(float(pre.abs().median()), 3)}


def plot_curves_side_by_side(path):
    """The sweep's Tanh and ELU (default) runs in one figure: loss and accuracy against step, one legend below both."""
    runs = {'ELU (default)': 'default', 'Tanh': 'tanh'}
    records = {label: load_record(os.path.join(RESULTS, 'mlp_sweep'), name) for label, name in runs.items()}
    if None in records.values():
        return
    fig = Figure(figsize=(11, 4.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for label, record in records.items():
        draw_curves(record, ax_loss, ax_acc, label=label)
    handles, labels = ax_loss.get_legend_handles_labels()
    for ax in (ax_loss, ax_acc):
        ax.get_legend().remove()
    fig.legend(handles, labels, loc='lower center', ncol=2, fontsize='small', frameon=False)
    fig.suptitle('The default MLP with ELU and with Tanh (seed 42)')
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)


def main():
    parser = experiment_parser(__doc__)
    args = parser.parse_args()
    data = cifar10_utils.get_cifar10(args.data_dir)
    result = {}
    for activation, sweep_row in (('tanh', 'tanh'), ('elu', 'default')):
        with tempfile.TemporaryDirectory() as out:
            args = train_mlp_pytorch.parse_args(['--activation', activation, '--output_dir', out, '--quiet'])
            record = train_mlp_pytorch.train(args, data=data)
            model = MLP(train_mlp_pytorch.N_INPUTS, args.dnn_hidden_units, train_mlp_pytorch.N_CLASSES,
                        activation=activation)
            model.load_state_dict(torch.load(os.path.join(out, 'state.pt'), weights_only=True)['model'])  # final
        sweep = load_record(os.path.join(RESULTS, 'mlp_sweep'), sweep_row)
        same = sweep is not None and sweep['test'] == record['test'] and sweep['train']['loss'] == record['train']['loss']
        pre = first_layer_preactivations(model, data['test'].images)
        result[activation] = {'run': f'mlp_sweep/{sweep_row}', 'same_record_as_that_run': same,
                              'final_test_accuracy': record['summary']['final_test_accuracy'], **saturation(pre)}
        print(activation, result[activation], flush=True)
    write_json('tanh_saturation.json', result)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
