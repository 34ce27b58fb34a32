"""NumPy building blocks of the MLP, each with a hand-written backward pass.

Every module follows one interface: `forward` caches exactly what `backward`
needs; `backward(dout)` fills `grads` (modules with parameters) and returns
dL/dx. All of them are vectorized over the batch and keep the input's dtype:
float64 for gradient checks, float32 for fast training.

Shapes: S samples per batch, M input features, N output features, C classes.
"""
import numpy as np

WEIGHT_INIT_STD = 1e-4  # the assignment's N(0, 0.0001**2) initialisation


class LinearModule:
    """Y = X W^T + b with W [N, M] and b [1, N]."""

    def __init__(self, in_features, out_features, dtype=np.float64, input_grad=True):
        """`dtype` of the parameters (float32 for fast training); `input_grad=False`
        skips dL/dX in backward (the network's first layer needs none)."""
        weight = np.random.normal(0.0, WEIGHT_INIT_STD, size=(out_features, in_features))
        self.params = {'weight': weight.astype(dtype),
                       'bias': np.zeros((1, out_features), dtype=dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.input_grad = input_grad
        self._x = None

    def forward(self, x):
        """x [S, M] -> [S, N]."""
        self._x = x  # dL/dW = dL/dY^T X needs the input
        out = x @ self.params['weight'].T
        out += self.params['bias']
        return out.astype(x.dtype, copy=False)

    def backward(self, dout):
        """dout [S, N] -> dL/dx [S, M] (None when input_grad is False)."""
        self.grads['weight'] = (dout.T @ self._x).astype(self.params['weight'].dtype, copy=False)
        self.grads['bias'] = dout.sum(axis=0, keepdims=True).astype(self.params['bias'].dtype, copy=False)
        if not self.input_grad:
            return None
        return (dout @ self.params['weight']).astype(dout.dtype, copy=False)


class ELUModule:
    """ELU(x) = x for x >= 0, exp(x) - 1 for x < 0, element-wise."""

    def __init__(self):
        self._out = None

    def forward(self, x):
        # max(x, 0) + (exp(min(x, 0)) - 1): exp never sees a positive argument, so it cannot
        # overflow. exp(x) - 1 instead of expm1: NumPy's float32 expm1 is not vectorized
        # (about 9x slower here) and its gain, precision for |x| << 1, is below one ulp of 1.
        neg = np.exp(np.minimum(x, 0))
        neg -= 1
        out = np.maximum(x, 0)
        out += neg
        self._out = out  # the output alone gives the slope: 1 where out >= 0, else exp(x) = out + 1
        return out

    def backward(self, dout):
        return dout * (np.minimum(self._out, 0) + 1)


class SoftMaxModule:
    """Row-wise softmax: Y_ij = exp(X_ij) / sum_k exp(X_ik)."""

    def __init__(self):
        self._out = None

    def forward(self, x):
        """x [S, C] logits -> [S, C] probabilities."""
        # max trick: after subtracting the row maximum every exponent is <= 0, so exp
        # cannot overflow, and the row sum is >= 1, so the division cannot blow up
        e = np.exp(x - x.max(axis=1, keepdims=True))
        out = e / e.sum(axis=1, keepdims=True)
        self._out = out
        return out

    def backward(self, dout):
        # dL/dX = Y o (dL/dY - rowsum(dL/dY o Y)): the Jacobian diag(y) - y^T y, row by row
        y = self._out
        return y * (dout - (dout * y).sum(axis=1, keepdims=True))


class CrossEntropyModule:
    """L = -1/S sum_ik T_ik log X_ik for probabilities X and (one-hot) targets T."""

    @staticmethod
    def _clip(x):
        # probabilities that underflow to 0 are raised to the smallest normal number,
        # so log(x) and 1/x stay finite (-log(tiny) is 708 in float64, 87 in float32)
        return np.maximum(x, np.finfo(x.dtype).tiny)

    def forward(self, x, y):
        """x [S, C] probabilities, y [S, C] targets -> scalar mean loss (x's dtype)."""
        return x.dtype.type(-(y * np.log(self._clip(x))).sum() / x.shape[0])

    def backward(self, x, y):
        """dL/dx [S, C] = -T / (S X)."""
        return (-y / (self._clip(x) * x.shape[0])).astype(x.dtype, copy=False)
