"""Question 2.2, measured: how many hidden units of the default MLP sit in Tanh's flat
region after training, with Tanh and with ELU.

    python experiments/tanh_saturation.py --data_dir ../shared/cifar10/cifar-10-batches-py

Trains the default PyTorch MLP (1 x 100, SGD, 1400 steps, seed 42) with each activation,
then measures the hidden pre-activations on the test images: the share with |x| > 2,
where tanh'(x) = 1 - tanh(x)^2 < 0.071, and the median |x|. Writes
docs/results/tanh_saturation.json.
"""
import argparse
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cifar10_utils  # noqa: E402
import train_mlp_pytorch  # noqa: E402
from mlp_pytorch import MLP  # noqa: E402
from training_utils import set_seed  # noqa: E402

OUTPUT = os.path.join(ROOT, 'docs', 'results', 'tanh_saturation.json')
FLAT_BEYOND = 2.0  # |x| > 2: tanh' < 0.071, the unit passes back less than a tenth of its gradient


def first_layer_preactivations(model, images):
    """Hidden pre-activations [N, n_hidden] of the first layer."""
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        return first(torch.from_numpy(images.reshape(len(images), -1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--data_dir', default=cifar10_utils.CIFAR10_FOLDER)
    args = parser.parse_args()
    data = cifar10_utils.get_cifar10(args.data_dir)
    result = {}
    for activation in ('tanh', 'elu'):
        set_seed(42)  # the same initial weights as train() would draw
        model = MLP(train_mlp_pytorch.N_INPUTS, [100], train_mlp_pytorch.N_CLASSES, activation)
        record = train_mlp_pytorch.train(activation=activation, data=data, progress=False, model=model)
        pre = first_layer_preactivations(model, data['test'].images)
        result[activation] = {'final_test_accuracy': record['summary']['final_test_accuracy'],
                              'share_beyond_2': round(float((pre.abs() > FLAT_BEYOND).float().mean()), 4),
                              'median_abs_preactivation': round(float(pre.abs().median()), 3)}
        print(activation, json.dumps(result[activation]), flush=True)
    with open(OUTPUT, 'w') as f:
        json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
