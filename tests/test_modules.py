"""Gradient checks (float64 centred differences), numerical stability and dtypes of
the NumPy modules and MLP."""
import numpy as np
import pytest
from conftest import REL_TOL

from gradient_check import numerical_gradient
from gradient_check import relative_error as rel_error
from mlp_numpy import MLP
from modules import WEIGHT_INIT_STD, CrossEntropyModule, ELUModule, LinearModule, SoftMaxModule


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ------------------------------------------------------------------ gradient checks

def test_linear_gradients(rng):
    layer = LinearModule(7, 5)
    layer.params['weight'] = rng.normal(size=(5, 7))  # larger than the 1e-4 init, for a meaningful check
    layer.params['bias'] = rng.normal(size=(1, 5))
    x = rng.normal(size=(4, 7))
    dout = rng.normal(size=(4, 5))

    def f():
        return np.sum(layer.forward(x) * dout)

    layer.forward(x)
    dx = layer.backward(dout)
    assert dx.shape == x.shape
    assert layer.grads['weight'].shape == layer.params['weight'].shape
    assert layer.grads['bias'].shape == layer.params['bias'].shape
    analytic = {'weight': layer.grads['weight'].copy(), 'bias': layer.grads['bias'].copy()}
    assert rel_error(dx, numerical_gradient(f, x)) < REL_TOL
    for name in ('weight', 'bias'):
        assert rel_error(analytic[name], numerical_gradient(f, layer.params[name])) < REL_TOL, name


def test_linear_skips_input_gradient_when_asked(rng):
    layer = LinearModule(6, 3, input_grad=False)
    x = rng.normal(size=(5, 6))
    dout = rng.normal(size=(5, 3))
    layer.forward(x)
    assert layer.backward(dout) is None
    np.testing.assert_allclose(layer.grads['weight'], dout.T @ x)


# ELU (alpha = 1) has slope 1 on both sides of 0, so it is C1 and the 1e-7 bound holds; only a point within the
# finite-difference step of the kink would see an O(H) error from the jump in curvature
@pytest.mark.parametrize('module, shape, scale', [(ELUModule, (6, 8), 3), (SoftMaxModule, (5, 4), 2)])
def test_elementwise_module_gradient(module, shape, scale, rng):
    module = module()
    x = rng.normal(size=shape) * scale
    dout = rng.normal(size=shape)
    module.forward(x)
    dx = module.backward(dout)
    assert rel_error(dx, numerical_gradient(lambda: np.sum(module.forward(x) * dout), x)) < REL_TOL


def test_elu_values():
    x = np.array([[-2.0, -1e-3, 0.0, 1e-3, 3.0]])
    np.testing.assert_allclose(ELUModule().forward(x), np.where(x >= 0, x, np.exp(x) - 1), rtol=1e-12, atol=1e-15)


def test_cross_entropy_gradient(rng):
    module = CrossEntropyModule()
    probs = SoftMaxModule().forward(rng.normal(size=(6, 4)))
    targets = np.eye(4)[rng.integers(0, 4, 6)]
    dx = module.backward(probs, targets)
    assert rel_error(dx, numerical_gradient(lambda: module.forward(probs, targets), probs)) < REL_TOL
    np.testing.assert_allclose(module.forward(probs, targets),
                               -np.mean(np.log(probs[targets.astype(bool)])), rtol=1e-12)


@pytest.mark.parametrize('hidden', [[], [6], [6, 5]])
def test_mlp_gradients(rng, hidden):
    model = MLP(4, hidden, 3)
    for param, _ in model.parameters():
        param[...] = rng.normal(size=param.shape) * 0.8
    x = rng.normal(size=(5, 4))
    targets = np.eye(3)[rng.integers(0, 3, 5)]
    loss = CrossEntropyModule()

    def f():
        return loss.forward(model.forward(x), targets)

    probs = model.forward(x)
    dx = model.backward(loss.backward(probs, targets))
    analytic = [grad.copy() for _, grad in model.parameters()]
    assert len(analytic) == 2 * (len(hidden) + 1)
    for (param, _), grad in zip(model.parameters(), analytic):
        assert rel_error(grad, numerical_gradient(f, param)) < REL_TOL
    assert rel_error(dx, numerical_gradient(f, x)) < REL_TOL


# ------------------------------------------------------------------ stability

def test_softmax_and_cross_entropy_with_extreme_logits():
    logits = np.array([[1000.0, -1000.0, 0.0],
                       [-1000.0, -1000.0, -1000.0],
                       [-1000.0, 1000.0, 999.0]])
    targets = np.eye(3)[[0, 2, 0]]  # the last row's target gets probability exp(-2000) = 0
    softmax, loss = SoftMaxModule(), CrossEntropyModule()
    with np.errstate(over='raise', divide='raise', invalid='raise'):
        probs = softmax.forward(logits)
        value = loss.forward(probs, targets)
        dlogits = softmax.backward(loss.backward(probs, targets))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[1], 1 / 3)
    assert probs[2, 0] == 0.0
    assert np.isfinite(value) and np.all(np.isfinite(dlogits))
    # where the target's probability is representable, the chain gives exactly (Y - T) / S
    np.testing.assert_allclose(dlogits[:2], (probs[:2] - targets[:2]) / 3, atol=1e-15)
    # an underflowed target costs -log(smallest normal) instead of infinity
    np.testing.assert_allclose(value, (0 + np.log(3) - np.log(np.finfo(np.float64).tiny)) / 3, rtol=1e-12)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_cross_entropy_with_zero_probabilities(dtype):
    probs = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    targets = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=dtype)
    module = CrossEntropyModule()
    with np.errstate(over='raise', divide='raise', invalid='raise'):
        assert np.isfinite(module.forward(probs, targets))
        assert np.all(np.isfinite(module.backward(probs, targets)))


def test_elu_with_large_inputs():
    x = np.array([[-1000.0, 1000.0, 700.0, -50.0]])
    module = ELUModule()
    with np.errstate(over='raise', invalid='raise'):
        out = module.forward(x)
        dx = module.backward(np.ones_like(x))
    np.testing.assert_allclose(out, [[-1.0, 1000.0, 700.0, np.expm1(-50.0)]])
    np.testing.assert_allclose(dx, [[0.0, 1.0, 1.0, np.exp(-50.0)]], atol=1e-15)  # slope = out + 1: exact to 1 ulp of 1


# ------------------------------------------------------------------ dtypes, shapes, init

@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_modules_keep_dtype(rng, dtype):
    x = rng.normal(size=(4, 6)).astype(dtype)
    targets = np.eye(3, dtype=dtype)[[0, 1, 2, 0]]
    linear = LinearModule(6, 3, dtype=np.float64)  # float64 parameters must not promote float32 data
    elu, softmax, loss = ELUModule(), SoftMaxModule(), CrossEntropyModule()
    h = linear.forward(x)
    e = elu.forward(h)
    p = softmax.forward(e)
    outputs = [h, e, p, loss.forward(p, targets)]
    grads = [loss.backward(p, targets)]
    grads.append(softmax.backward(grads[-1]))
    grads.append(elu.backward(grads[-1]))
    grads.append(linear.backward(grads[-1]))
    for array in outputs + grads:
        assert array.dtype == dtype


def test_linear_init():
    layer = LinearModule(3072, 100)
    assert layer.params['weight'].shape == (100, 3072)
    assert layer.params['bias'].shape == (1, 100)
    assert not layer.params['bias'].any()
    assert abs(layer.params['weight'].std() / WEIGHT_INIT_STD - 1) < 0.02
    assert abs(layer.params['weight'].mean()) < 3 * WEIGHT_INIT_STD / np.sqrt(3072 * 100) * 10


def test_mlp_structure_and_shapes(rng):
    model = MLP(3 * 4 * 4, [8, 5], 3)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ['LinearModule', 'ELUModule', 'LinearModule', 'ELUModule', 'LinearModule', 'SoftMaxModule']
    images = rng.normal(size=(2, 3, 4, 4))
    probs = model.forward(images)  # images are flattened per sample
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert model.backward(np.ones((2, 3))).shape == images.shape
    assert [type(layer).__name__ for layer in MLP(5, [], 2).layers] == ['LinearModule', 'SoftMaxModule']
    with pytest.raises(ValueError, match='expects 48 input features'):
        model.forward(rng.normal(size=(2, 47)))


def test_mlp_without_input_gradient(rng):
    model = MLP(6, [4], 2, input_grad=False)
    x = rng.normal(size=(3, 6))
    probs = model.forward(x)
    assert model.backward(probs) is None
    assert all(grad.shape == param.shape for param, grad in model.parameters())
