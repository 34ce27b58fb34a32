"""Numerical gradient checks for the NumPy modules: centred differences in float64.

    dx = layer.backward(dout)                                    # the analytic gradient
    numeric = numerical_gradient(lambda: np.sum(layer.forward(x) * dout), x)
    relative_error(dx, numeric)                                  # ~1e-10 when the backward is right

With f = sum(forward(x) * dout), the gradient of f with respect to x is exactly what
backward(dout) must return, so any module can be checked this way.
"""
import numpy as np

STEP = 1e-6  # finite-difference step in float64: truncation ~STEP^2, round-off ~1e-16/STEP, both far below 1e-7


def relative_error(a, b):
    """||a - b|| / max(||a||, ||b||)."""
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def numerical_gradient(f, x, h=STEP):
    """Centred-difference gradient of the scalar f() w.r.t. every entry of x (changed in place, then restored)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = f()
        x[idx] = old - h
        minus = f()
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad
