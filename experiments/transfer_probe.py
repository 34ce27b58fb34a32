"""Question 4 b: what the ImageNet weights of EfficientNet-Lite0 know about CIFAR-10 before any fine-tuning,
measured by a linear probe: logistic regression on the frozen network's pooled features of a fixed subset
(the first N_TRAIN training images and N_TEST test images spread over the test batch, upsampled to SIZE px). It decides how the weights want
their input: TensorFlow 'same' or symmetric padding, ImageNet or [-1, 1] normalisation (every combination),
against the same network with random weights.

    python -m experiments.transfer_probe --data_dir ../shared/cifar10/cifar-10-batches-py

Writes docs/results/transfer_probe.json.
"""

import torch

import cifar10_utils
from cli_utils import run_cli
from efficientnet_lite0 import NORMALIZATION, EfficientNetLite0, load_weights
from experiments.records import experiment_parser, write_json

N_TRAIN, N_TEST, SIZE = 2000, 1000, 128
L2 = 1e-3  # the probe's weight penalty on standardised features


def features(model, images, normalization, batch_size=200):
    """Pooled features [N, 1280] of uint8 images [N, 3, 32, 32], normalised as NORMALIZATION[normalization]."""
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in NORMALIZATION[normalization])
    model.eval()
    with torch.inference_mode():
        return torch.cat([model.features((torch.from_numpy(images[i:i + batch_size]).float() / 255 - mean) / std)
                          for i in range(0, len(images), batch_size)])


def probe_accuracy(train_features, train_labels, test_features, test_labels):
    """Test accuracy of multinomial logistic regression (L-BFGS, L2 penalty) on standardised features."""
    mean, std = train_features.mean(0), train_features.std(0)
    std[std == 0] = 1.0  # a constant feature stays 0; random weights give features of any scale, even 1e-9
    x_train, x_test = (train_features - mean) / std, (test_features - mean) / std
    y_train = torch.as_tensor(train_labels)
    linear = torch.nn.Linear(x_train.shape[1], cifar10_utils.N_CLASSES)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=300, line_search_fn='strong_wolfe')

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(linear(x_train), y_train) + L2 * linear.weight.square().sum()
        value.backward()
        return value
    optimizer.step(loss)
    with torch.no_grad():
        return float((linear(x_test).argmax(1) == torch.as_tensor(test_labels)).float().mean())


def probe(subset, weights, same_padding, normalization, size=SIZE):
    """Linear-probe accuracy of EfficientNet-Lite0 (weights 'imagenet' or 'none') on subset =
    (train images, train labels, test images, test labels), uint8 images."""
    torch.manual_seed(0)
    model = EfficientNetLite0(image_size=size, same_padding=same_padding)
    if weights != 'none':
        load_weights(model, weights)
    x_train, y_train, x_test, y_test = subset
    return probe_accuracy(features(model, x_train, normalization), y_train, features(model, x_test, normalization),
                          y_test)


def fixed_subset(data_dir, n_train=N_TRAIN, n_test=N_TEST):
    """The first n_train training images (the training batches are shuffled) and n_test test images spread
    evenly over the test batch (the JPEG-75 copy stores it class by class), uint8, with their labels."""
    x_train, y_train, x_test, y_test = cifar10_utils.load_cifar10(data_dir)
    every = len(x_test) // n_test
    return x_train[:n_train], y_train[:n_train], x_test[::every][:n_test], y_test[::every][:n_test]


def main():
    parser = experiment_parser(__doc__)
    args = parser.parse_args()
    subset = fixed_subset(args.data_dir)
    rows = []
    for weights in ('imagenet', 'none'):
        for same_padding in (True, False):
            for normalization in sorted(NORMALIZATION):
                accuracy = probe(subset, weights, same_padding, normalization)
                rows.append(dict(weights=weights, padding='tf_same' if same_padding else 'symmetric',
                                 normalization=normalization, probe_test_accuracy=round(accuracy, 4)))
                print(rows[-1], flush=True)
    write_json('transfer_probe.json', {'n_train': N_TRAIN, 'n_test': N_TEST, 'image_size': SIZE, 'l2': L2,
                                       'rows': rows})


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
