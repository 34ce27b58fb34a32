"""PyTorch MLP: shapes, exact agreement with the NumPy MLP, every option, presets, CLI."""
import json
import pathlib

import numpy as np
import pytest
import torch

import mlp_pytorch
import train_mlp_pytorch
from custom_layernorm import find_compiler
from mlp_numpy import MLP as NumpyMLP
from mlp_pytorch import ACTIVATIONS, INITS, MLP, NORMS, WEIGHT_INIT_STD
from modules import CrossEntropyModule
from test_train_mlp_numpy import assert_one_line_error, assert_run_outputs, run_main_in_process, run_script
from training_utils import get_device


def test_output_shapes():
    x = torch.randn(4, 3, 32, 32)
    assert MLP(3072, [100], 10)(x).shape == (4, 10)
    assert MLP(3072, [], 10)(x).shape == (4, 10)
    assert MLP(3072, [64, 32, 16], 7)(x.flatten(1)).shape == (4, 7)
    with pytest.raises(ValueError, match='expects 3072 input features'):
        MLP(3072, [10], 10)(torch.randn(4, 100))


def test_default_is_the_assignment_network():
    model = MLP(3072, [100, 50], 10)
    assert [type(m).__name__ for m in model.layers] == ['Linear', 'ELU', 'Linear', 'ELU', 'Linear']
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
def test_every_preset_parses_and_builds(name, monkeypatch):
    parser = train_mlp_pytorch.build_parser()
    monkeypatch.setattr('sys.argv', ['train_mlp_pytorch.py', '--preset', name])
    args = train_mlp_pytorch.parse_args(parser, train_mlp_pytorch.PRESETS)
    for key, value in train_mlp_pytorch.PRESETS[name].items():
        expected = [int(v) for v in value.split(',')] if key == 'dnn_hidden_units' else value
        assert getattr(args, key) == expected, key
    model = MLP(3072, args.dnn_hidden_units, 10, args.activation, args.norm, args.dropout, args.init)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize('name', sorted(train_mlp_pytorch.PRESETS))
def test_every_preset_trains_from_python(name, fake_cifar_dir):
    import cifar10_utils
    data = cifar10_utils.get_cifar10(fake_cifar_dir)
    # as the README calls it, shortened to 3 steps on the 200 synthetic images
    config = dict(train_mlp_pytorch.PRESETS[name], epochs=None, max_steps=3, eval_freq=3, batch_size=64)
    record = train_mlp_pytorch.train(**config, data=data, progress=False)
    hidden = train_mlp_pytorch.PRESETS[name]['dnn_hidden_units']
    assert record['config']['dnn_hidden_units'] == [int(h) for h in hidden.split(',')]
    assert record['summary']['status'] == 'completed' and record['test']['step'] == [3]


def test_explicit_flags_beat_the_preset(monkeypatch):
    monkeypatch.setattr('sys.argv', ['train_mlp_pytorch.py', '--preset', 'best', '--learning_rate', '0.5'])
    args = train_mlp_pytorch.parse_args(train_mlp_pytorch.build_parser(), train_mlp_pytorch.PRESETS)
    assert args.learning_rate == 0.5 and args.optimizer == train_mlp_pytorch.PRESETS['best']['optimizer']


def test_cli_smoke_run(fake_cifar_dir, tmp_path):
    out = tmp_path / 'run'
    result = run_script('train_mlp_pytorch.py', '--data_dir', fake_cifar_dir, '--max_steps', '12', '--eval_freq', '5',
                        '--batch_size', '16', '--optimizer', 'adamw', '--scheduler', 'cosine', '--warmup_steps', '3',
                        '--augment', '--norm', 'custom_layernorm', '--label_smoothing', '0.1', '--output_dir', str(out))
    assert result.returncode == 0, result.stderr
    record = assert_run_outputs(out, [5, 10, 12])
    # --device auto: the run records the device it picked (cuda on a GPU machine)
    assert record['config']['norm'] == 'custom_layernorm' and record['config']['device'] == str(get_device('auto'))
    assert (out / 'best_model.pt').is_file()


def test_cli_epochs_set_the_step_count(fake_cifar_dir, tmp_path):
    result = run_script('train_mlp_pytorch.py', '--data_dir', fake_cifar_dir, '--epochs', '2', '--batch_size', '50',
                        '--eval_freq', '3', '--output_dir', str(tmp_path))
    assert result.returncode == 0, result.stderr
    record = json.loads(pathlib.Path(tmp_path / 'history.json').read_text())
    assert record['summary']['steps'] == 8  # 2 epochs x 200 images / 50
    assert record['test']['step'] == [3, 6, 8]


@pytest.mark.parametrize('flag, value, fragment', [
    ('--learning_rate', '-1', 'must be > 0'),
    ('--optimizer', 'lbfgs', 'invalid choice'),
    ('--dnn_hidden_units', '100,abc', 'comma-separated positive integers'),
    ('--dropout', '1.5', 'must be < 1'),
    ('--label_smoothing', '1', 'must be < 1'),
    ('--preset', 'fastest', 'invalid choice'),
])
def test_cli_rejects_bad_flags(fake_cifar_dir, flag, value, fragment, monkeypatch, capsys):
    code, stderr = run_main_in_process(train_mlp_pytorch, ['--data_dir', fake_cifar_dir, flag, value],
                                       monkeypatch, capsys)
    assert code == 2
    assert_one_line_error(stderr, flag, fragment)


@pytest.mark.slow
def test_default_run_on_real_data_matches_numpy_scale(real_cifar):
    record = train_mlp_pytorch.train(max_steps=300, eval_freq=100, data=real_cifar, progress=False)
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


# ------------------------------------------------------------------ the CPU kernels of Linear and ELU

def big_linear_inputs(bias=True, seed=0):
    """A float32 layer above Linear.ONEDNN_MIN_MACS (64 x 256 x 128 = 2M multiply-adds)."""
    torch.manual_seed(seed)
    layer = mlp_pytorch.Linear(256, 128, bias=bias)
    stock = torch.nn.Linear(256, 128, bias=bias)
    stock.load_state_dict(layer.state_dict())
    return layer, stock, torch.randn(64, 256) * 3


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('input_grad', [True, False])
def test_onednn_linear_matches_nn_linear(bias, input_grad):
    layer, stock, x = big_linear_inputs(bias)
    grad_out = torch.randn(64, 128)
    results = []
    for module in (layer, stock):
        xi = x.clone().requires_grad_(input_grad)
        out = module(xi)
        out.backward(grad_out)
        results.append([out, xi.grad, module.weight.grad] + ([module.bias.grad] if bias else []))
    if torch.backends.mkldnn.is_available():
        assert type(layer(x).grad_fn).__name__ == '_OneDNNLinearFunctionBackward'  # the oneDNN path ran
    for ours, reference in zip(*results):
        if reference is None:
            assert ours is None
        else:
            assert ours.shape == reference.shape
            assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())


def test_linear_falls_back_to_f_linear(monkeypatch):
    small = mlp_pytorch.Linear(100, 10)  # 8 x 100 x 10 multiply-adds: below ONEDNN_MIN_MACS
    assert type(small(torch.randn(8, 100, requires_grad=True)).grad_fn).__name__ == 'AddmmBackward0'
    layer, stock, x = big_linear_inputs()
    layer64 = mlp_pytorch.Linear(256, 128).double()
    assert type(layer64(x.double().requires_grad_()).grad_fn).__name__ == 'AddmmBackward0'  # float64
    monkeypatch.setattr(mlp_pytorch.Linear, 'onednn', False)
    assert type(layer(x.requires_grad_()).grad_fn).__name__ == 'AddmmBackward0'


def test_linear_switches_onednn_off_after_a_failure(monkeypatch):
    monkeypatch.setattr(mlp_pytorch.Linear, 'onednn', True)  # restored after the test

    def broken(*args):
        raise RuntimeError('no oneDNN here')
    monkeypatch.setattr(mlp_pytorch, '_onednn_linear', broken)
    layer, stock, x = big_linear_inputs()
    with pytest.warns(RuntimeWarning, match='oneDNN matmul failed'):
        out = layer(x)
    assert torch.allclose(out, stock(x)) and mlp_pytorch.Linear.onednn is False


def test_elu_matches_torch_elu():
    x = torch.randn(50, 40, dtype=torch.float64) * 3
    x[0, :3] = torch.tensor([0.0, -1e-8, 1e-8], dtype=torch.float64)  # around the kink
    assert torch.autograd.gradcheck(mlp_pytorch._ELUFunction.apply, (x.clone().requires_grad_(),))
    x32 = x.float().requires_grad_()
    ours = mlp_pytorch.ELU()(x32)
    grad_ours, = torch.autograd.grad(ours, x32, torch.ones_like(ours))
    reference = torch.nn.functional.elu(x32)
    grad_reference, = torch.autograd.grad(reference, x32, torch.ones_like(reference))
    assert torch.allclose(ours, reference, rtol=0, atol=1e-6)
    assert torch.allclose(grad_ours, grad_reference, rtol=0, atol=1e-6)


def test_elu_can_use_torch_kernel(monkeypatch):
    x = torch.randn(4, 5, requires_grad=True)
    assert type(mlp_pytorch.ELU()(x).grad_fn).__name__ == '_ELUFunctionBackward'
    monkeypatch.setattr(mlp_pytorch.ELU, 'exp_based', False)
    assert type(mlp_pytorch.ELU()(x).grad_fn).__name__ == 'EluBackward0'


@pytest.mark.skipif(find_compiler() is None, reason='inductor needs a C++ compiler')
def test_mlp_compiles_with_torch_compile():
    # inductor cannot lower the oneDNN op with a trainable weight: compiled graphs must take F.linear
    torch.manual_seed(0)
    model = MLP(256, [128], 10, init='pytorch')
    x, y = torch.randn(64, 256), torch.randint(0, 10, (64,))
    if torch.backends.mkldnn.is_available():  # eager takes the oneDNN path the compiled graph must avoid
        assert type(model.layers[0](x).grad_fn).__name__ == '_OneDNNLinearFunctionBackward'
    eager_loss = torch.nn.functional.cross_entropy(model(x), y)
    eager_grad, = torch.autograd.grad(eager_loss, model.layers[0].weight)
    compiled_loss = torch.nn.functional.cross_entropy(torch.compile(model)(x), y)
    compiled_grad, = torch.autograd.grad(compiled_loss, model.layers[0].weight)
    assert torch.allclose(compiled_loss, eager_loss, rtol=1e-5)
    assert torch.allclose(compiled_grad, eager_grad, rtol=1e-4, atol=1e-6)
