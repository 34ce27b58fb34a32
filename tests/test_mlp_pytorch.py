"""PyTorch MLP: built from stock layers, exact agreement with the NumPy MLP, every option,
presets, ZCA; its command line is tested with the other scripts' in test_cli.py."""
import numpy as np
import pytest
import torch

import train_mlp_pytorch
from mlp_numpy import MLP as NumpyMLP
from mlp_pytorch import ACTIVATIONS, INITS, MLP, NORMS, WEIGHT_INIT_STD
from modules import CrossEntropyModule


def test_output_shapes():
    x = torch.randn(4, 3, 32, 32)
    assert MLP(3072, [100], 10)(x).shape == (4, 10)
    assert MLP(3072, [], 10)(x).shape == (4, 10)
    assert MLP(3072, [64, 32, 16], 7)(x.flatten(1)).shape == (4, 7)
    with pytest.raises(ValueError, match='expects 3072 input features'):
        MLP(3072, [10], 10)(torch.randn(4, 100))


def test_default_is_the_assignment_network_from_stock_layers():
    model = MLP(3072, [100, 50], 10)
    assert [type(m) for m in model.layers] == [torch.nn.Linear, torch.nn.ELU, torch.nn.Linear, torch.nn.ELU,
                                               torch.nn.Linear]
    weights = torch.cat([m.weight.flatten() for m in model.layers if isinstance(m, torch.nn.Linear)])
    assert abs(weights.std().item() / WEIGHT_INIT_STD - 1) < 0.02
    assert all(not m.bias.any() for m in model.layers if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize('hidden', [[], [7], [7, 5]])
def test_matches_numpy_mlp_outputs_and_gradients(hidden):
    rng = np.random.default_rng(0)
    numpy_model = NumpyMLP(12, hidden, 4)
    for param, _ in numpy_model.parameters():
        param[...] = rng.normal(size=param.shape) * 0.5
    torch_model = MLP(12, hidden, 4).double()
    linears = [m for m in torch_model.layers if isinstance(m, torch.nn.Linear)]
    numpy_linears = [layer for layer in numpy_model.layers if hasattr(layer, 'params')]
    with torch.no_grad():
        for linear, layer in zip(linears, numpy_linears):
            linear.weight.copy_(torch.from_numpy(layer.params['weight']))
            linear.bias.copy_(torch.from_numpy(layer.params['bias'][0]))

    x = rng.normal(size=(6, 12))
    labels = rng.integers(0, 4, 6)
    targets = np.eye(4)[labels]
    probs = numpy_model.forward(x)
    loss_module = CrossEntropyModule()
    numpy_loss = loss_module.forward(probs, targets)
    numpy_model.backward(loss_module.backward(probs, targets))

    logits = torch_model(torch.from_numpy(x))
    torch_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
    torch_loss.backward()
    np.testing.assert_allclose(torch.softmax(logits, 1).detach().numpy(), probs, atol=1e-6, rtol=0)
    np.testing.assert_allclose(torch_loss.item(), numpy_loss, rtol=1e-10)
    for linear, layer in zip(linears, numpy_linears):
        np.testing.assert_allclose(linear.weight.grad.numpy(), layer.grads['weight'], atol=1e-6, rtol=0)
        np.testing.assert_allclose(linear.bias.grad.numpy(), layer.grads['bias'][0], atol=1e-6, rtol=0)


def synthetic_batch(n=64, n_inputs=20, n_classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, n_inputs, generator=gen) * 2
    labels = torch.arange(n) % n_classes
    return centers[labels] + torch.randn(n, n_inputs, generator=gen), labels


@pytest.mark.parametrize('option', [('activation', a) for a in ACTIVATIONS] + [('norm', n) for n in NORMS]
                         + [('init', i) for i in INITS] + [('dropout', 0.3)])
def test_every_option_builds_and_learns(option):
    torch.manual_seed(0)
    x, y = synthetic_batch()
    kwargs = {'init': 'kaiming', option[0]: option[1]}  # a learnable init unless init itself is under test
    model = MLP(20, [32, 16], 3, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def eval_loss():
        model.eval()
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(model(x), y).item()
        model.train()
        return loss

    before = eval_loss()
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert eval_loss() < 0.5 * before


def test_bad_options():
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP(10, [5], 2, activation='swish2')
    with pytest.raises(ValueError, match="norm must be one of"):
        MLP(10, [5], 2, norm='groupnorm')
    with pytest.raises(ValueError, match='dropout'):
        MLP(10, [5], 2, dropout=1.0)


@pytest.mark.parametrize('name', sorted(train_mlp_pytorch.PRESETS))
def test_every_preset_parses_and_builds(name):
    args = train_mlp_pytorch.parse_args(['--preset', name])
    assert {key: getattr(args, key) for key in train_mlp_pytorch.PRESETS[name]} == train_mlp_pytorch.PRESETS[name]
    model = MLP(3072, args.dnn_hidden_units, 10, activation=args.activation, norm=args.norm, dropout=args.dropout,
                init=args.init)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize('name', sorted(train_mlp_pytorch.PRESETS))
def test_every_preset_trains_from_python(name, fake_cifar_dir, tmp_path):
    import cifar10_utils
    data = cifar10_utils.get_cifar10(fake_cifar_dir)
    # as the README calls it, shortened to 3 steps on the 200 synthetic images
    args = train_mlp_pytorch.parse_args(['--preset', name, '--max_steps', '3', '--eval_freq', '3', '--batch_size', '64',
                                         '--output_dir', str(tmp_path), '--quiet'])
    assert set(train_mlp_pytorch.PRESETS[name]) <= set(vars(args))  # every preset key is a flag
    record = train_mlp_pytorch.train(args, data=data)
    assert record['config']['dnn_hidden_units'] == train_mlp_pytorch.PRESETS[name]['dnn_hidden_units']
    assert record['summary']['status'] == 'completed' and record['test']['step'] == [3]


@pytest.mark.slow
def test_default_run_on_real_data_matches_numpy_scale(real_cifar):
    args = train_mlp_pytorch.parse_args(['--max_steps', '300', '--quiet'])
    args.output_dir = None  # from Python: a run that writes no files
    record = train_mlp_pytorch.train(args, data=real_cifar)
    assert record['summary']['final_test_accuracy'] > 0.35


def test_zca_whitening_gives_unit_variance_in_every_data_direction(fake_cifar_dir):
    import cifar10_utils
    data = cifar10_utils.get_cifar10(fake_cifar_dir)  # validation split empty, as by default
    white = train_mlp_pytorch.zca_whiten(data, eps=1e-4)
    assert white['validation'].num_examples == 0
    assert white['test'].images.shape == data['test'].images.shape and white['test'].images.dtype == np.float32
    n = white['train'].num_examples
    x = white['train'].images.reshape(n, -1).astype(np.float64)
    eigenvalues = np.linalg.eigvalsh(x @ x.T / n)  # the covariance's non-zero spectrum, from the n x n Gram matrix
    # centred data span n - 1 directions; whitened, each has variance lambda / (lambda + eps) ~ 1
    assert eigenvalues[0] < 1e-3
    np.testing.assert_allclose(eigenvalues[1:], 1.0, atol=1e-2)


def test_double_backward_works_through_the_stock_layers():
    model = MLP(12, [8], 3, init='pytorch').double()
    x = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    grad_x, = torch.autograd.grad(model(x).square().sum(), x, create_graph=True)
    grad_x.square().sum().backward()  # a gradient penalty needs the second derivative
    assert all(p.grad is not None for p in model.parameters())
