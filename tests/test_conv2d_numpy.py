"""Bonus 1.1 d): the NumPy Conv2dModule, gradient-checked, and the report's closed forms
for Y21, dL/dK11 and dL/dX12 (3x3 input, 2x2 kernel, stride 1, no padding)."""
import numpy as np
import pytest
from conftest import REL_TOL

from gradient_check import numerical_gradient
from gradient_check import relative_error as rel_error
from modules import Conv2dModule


@pytest.mark.parametrize('shape, kernel', [((2, 3, 5, 6), (2, 3)), ((1, 1, 3, 3), (2, 2)), ((3, 2, 4, 4), (1, 1))])
def test_conv2d_gradients(shape, kernel):
    rng = np.random.default_rng(0)
    module = Conv2dModule(shape[1], 4, kernel)
    module.params['bias'] = rng.normal(size=4)
    x = rng.normal(size=shape)
    out = module.forward(x)
    assert out.shape == (shape[0], 4, shape[2] - kernel[0] + 1, shape[3] - kernel[1] + 1)
    dout = rng.normal(size=out.shape)
    dx = module.backward(dout)
    analytic = {name: grad.copy() for name, grad in module.grads.items()}

    def f():
        return np.sum(module.forward(x) * dout)

    assert rel_error(dx, numerical_gradient(f, x)) < REL_TOL
    for name in ('weight', 'bias'):
        assert rel_error(analytic[name], numerical_gradient(f, module.params[name])) < REL_TOL, name


def test_conv2d_keeps_float32():
    module = Conv2dModule(2, 3, 2, dtype=np.float32)
    x = np.ones((1, 2, 4, 4), np.float32)
    out = module.forward(x)
    assert out.dtype == np.float32 and module.backward(np.ones_like(out)).dtype == np.float32


def test_report_closed_forms_for_question_1_1_d():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, 3))
    K = rng.normal(size=(2, 2))
    dY = rng.normal(size=(2, 2))
    module = Conv2dModule(1, 1, 2)
    module.params['weight'][0, 0] = K
    Y = module.forward(X[None, None])[0, 0]
    dX = module.backward(dY[None, None])[0, 0]
    dK = module.grads['weight'][0, 0]
    x = lambda i, j: X[i - 1, j - 1]  # 1-based indices, as in the report
    k = lambda i, j: K[i - 1, j - 1]
    dy = lambda i, j: dY[i - 1, j - 1]
    # Y21 = X21 K11 + X22 K12 + X31 K21 + X32 K22
    assert np.isclose(Y[1, 0], x(2, 1) * k(1, 1) + x(2, 2) * k(1, 2) + x(3, 1) * k(2, 1) + x(3, 2) * k(2, 2))
    # dL/dK11 = sum_ij dL/dY_ij X_ij
    assert np.isclose(dK[0, 0], dy(1, 1) * x(1, 1) + dy(1, 2) * x(1, 2) + dy(2, 1) * x(2, 1) + dy(2, 2) * x(2, 2))
    # dL/dX12 = dL/dY11 K12 + dL/dY12 K11
    assert np.isclose(dX[0, 1], dy(1, 1) * k(1, 2) + dy(1, 2) * k(1, 1))
