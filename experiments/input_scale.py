"""How large the MLP's inputs are, for question 2.1's zca rows: the standard deviation of the training
images as every script feeds them (mean-subtracted pixels) and after ZCA whitening (eps 0.1, as the
sweep's zca rows and --preset best use it).

    python -m experiments.input_scale --data_dir ../shared/cifar10/cifar-10-batches-py

Writes docs/results/input_scale.json.
"""

import numpy as np

import cifar10_utils
import train_mlp_pytorch
from cli_utils import run_cli
from experiments.records import experiment_parser, write_json

ZCA_EPS = train_mlp_pytorch.PRESETS['best']['zca_eps']


def main():
    parser = experiment_parser(__doc__)
    args = parser.parse_args()
    data = cifar10_utils.get_cifar10(args.data_dir)
    whitened = train_mlp_pytorch.zca_whiten(data, ZCA_EPS)
    result = {'zca_eps': ZCA_EPS, 'mean_subtracted_pixels_std': float(np.std(data['train'].images, dtype=np.float64)),
              'zca_whitened_std': float(np.std(whitened['train'].images, dtype=np.float64))}
    result['ratio'] = result['mean_subtracted_pixels_std'] / result['zca_whitened_std']
    print(result)
    write_json('input_scale.json', result)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
